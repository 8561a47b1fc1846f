//! Test support shared by the integration tests: an isolated database per test, an isolated
//! JetStream namespace per test, a real SMTP server on loopback that keeps what it receives, and
//! a fake SimplyBook.me API, a fake Stripe API, and sample invoices.
#![forbid(unsafe_code)]

pub mod db;
pub mod invoices;
pub mod nats;
mod shared;
pub mod simplybook;
pub mod smtp;
pub mod stripe;

pub use db::TestDatabase;
pub use nats::PrivateNats;
pub use simplybook::{Details, FakeSimplyBook};
pub use smtp::{MailSink, ReceivedMail};
pub use stripe::{FakeStripe, StripeCall};

/// A unique, lowercase namespace for one test's NATS subjects and streams.
pub fn unique_namespace() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
        .chars()
        .take(13)
        .collect()
}

/// Logs go to the test output only when `TEST_LOG=1`.
pub fn init_test_logging() {
    if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .with_test_writer()
            .try_init();
    }
}

/// The NATS server tests use (`TEST_NATS_URL`, default the local one).
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}
