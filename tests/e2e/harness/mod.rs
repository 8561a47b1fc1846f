//! Starts the system, or the part of it a test needs ([`System::builder`]), for one test and
//! tears it down afterwards. Each service's settings are parsed by its own parser from the few
//! flags a test sets ([`parse_config`](config::parse_config)); the rest keep the defaults
//! production has.
//!
//! Under nextest every test has a process of its own; under `cargo test` they share one, and
//! with it the metrics recorder every service records into: a test that reads `/metrics` starts
//! its system [`alone`](builder::Builder::alone) and reads counts since its start
//! ([`Metrics::since_start`](metrics::Metrics::since_start)).

mod builder;
mod clients;
mod config;
mod metrics;
mod occupancy;
mod system;

pub use system::{Mail, System};

use std::path::Path;
use std::time::Duration;

/// Obviously fake secret for the test tenant.
pub const CLAIRE_SECRET: &str = "whsec_ZmFrZS10ZXN0LXNlY3JldC1ub3QtcmVhbA==";
/// Obviously fake secret of the second tenant, who bills in yen from Tokyo.
pub const KENJI_SECRET: &str = "whsec_ZmFrZS1rZW5qaS10ZXN0LXNlY3JldA==";
/// An older secret of Claire's, still accepted during a rotation.
pub const CLAIRE_OLD_SECRET: &str = "whsec_b2xkLWZha2UtdGVzdC1zZWNyZXQ=";
/// Obviously fake token in Claire's SimplyBook callback URL, and her SimplyBook company login.
pub const CLAIRE_CALLBACK_TOKEN: &str = "fake-callback-token-0123456789-abcdefghij";
pub const CLAIRE_COMPANY: &str = "claireh";
/// Obviously fake SimplyBook API credentials of Claire's company (the fake API checks them).
pub const CLAIRE_API_KEY: &str = "fake-simplybook-api-key";
pub const CLAIRE_SECRET_KEY: &str = "fake-simplybook-secret-key";
/// Obviously fake SimplyBook admin user the ledger lists Claire's bookings with.
pub const CLAIRE_ADMIN_LOGIN: &str = "fake-admin";
pub const CLAIRE_ADMIN_PASSWORD: &str = "fake-admin-password";
pub const CLAIRE_EMAIL: &str = "claire.billing@example.test";
/// Obviously fake key of the ledger's keyed hash chain (`LEDGER_CHAIN_KEY_FILE`).
pub const CHAIN_KEY: &str = "fake-ledger-chain-key-for-tests-not-secret-0123";
/// Obviously fake client keyring of the ledger (`LEDGER_CLIENT_KEYRING_FILE`): the identity
/// key is base64 of "fake-client-identity-key-for-tests-only!", the key-encryption key
/// `test-kek-1` of "fake-kek-one-for-tests-only-0001".
pub const CLIENT_KEYRING: &str = r#"{"identity_key": "ZmFrZS1jbGllbnQtaWRlbnRpdHkta2V5LWZvci10ZXN0cy1vbmx5IQ==",
 "current": "test-kek-1",
 "keys": {"test-kek-1": "ZmFrZS1rZWstb25lLWZvci10ZXN0cy1vbmx5LTAwMDE="}}"#;
/// The same keyring after a rotation: `test-kek-2` (base64 of "fake-kek-two-for-tests-only-0002")
/// is current, `test-kek-1` is still held to open keys it wrapped.
pub const CLIENT_KEYRING_ROTATED: &str = r#"{"identity_key": "ZmFrZS1jbGllbnQtaWRlbnRpdHkta2V5LWZvci10ZXN0cy1vbmx5IQ==",
 "current": "test-kek-2",
 "keys": {"test-kek-1": "ZmFrZS1rZWstb25lLWZvci10ZXN0cy1vbmx5LTAwMDE=",
          "test-kek-2": "ZmFrZS1rZWstdHdvLWZvci10ZXN0cy1vbmx5LTAwMDI="}}"#;
/// Kenji's SimplyBook company lives on another API domain (a second fake, which SimplyBook's
/// `getServiceUrl` on the first one names); obviously fake credentials.
pub const KENJI_COMPANY: &str = "kenjisato";
pub const KENJI_CALLBACK_TOKEN: &str = "fake-kenji-callback-token-0123456789-abcdef";
pub const KENJI_API_KEY: &str = "fake-kenji-simplybook-api-key";
pub const KENJI_SECRET_KEY: &str = "fake-kenji-simplybook-secret-key";
/// Small enough for a test to reach, large enough for every other test's traffic.
pub const RATE_LIMIT_PER_SEC: u32 = 20;
pub const RATE_LIMIT_BURST: u32 = 40;
/// Obviously fake Stripe signing secrets (current and previous).
pub const STRIPE_SECRET: &str = "whsec_test_fake_stripe_signing_secret";
pub const STRIPE_OLD_SECRET: &str = "whsec_test_fake_stripe_old_secret";
/// Obviously fake Stripe API key invoicing calls the fake Stripe with.
pub const STRIPE_API_KEY: &str = "sk_test_fake_not_a_real_key";
/// Printed on bank-transfer invoices.
pub const BANK_DETAILS: &str = "Platform Operator Pty Ltd, BSB 000-000, account 00000000 (fake)";
/// Where the notifier sends operator alerts.
pub const OPERATOR_EMAIL: &str = "ops@platform.example.test";
/// Obviously fake gRPC bearer tokens, one per role.
pub const ADMIN_TOKEN: &str = "fake-admin-grpc-token-not-secret-0001";
pub const BILLING_TOKEN: &str = "fake-billing-grpc-token-not-secret-0002";
pub const VIEWER_TOKEN: &str = "fake-viewer-grpc-token-not-secret-0003";
/// ingest answers 408 to a request not done within this time.
pub const REQUEST_TIMEOUT_MS: u64 = 3000;

/// Set in a test process [`in_own_process`] started.
const OWN_PROCESS: &str = "BILLING_E2E_OWN_PROCESS";

/// For a test that changes what is process-wide beyond the metrics (as a service's `main`
/// installing the global subscriber): `None` when the test has its process to itself (nextest
/// runs every test so), and the caller runs it; otherwise (`cargo test` runs all tests as
/// threads of one process) its outcome run alone in a process of its own, `name` being its
/// path as `cargo test` lists it.
pub fn in_own_process(name: &str) -> Option<anyhow::Result<()>> {
    let nextest =
        std::env::var_os("NEXTEST_EXECUTION_MODE").is_some_and(|m| m == "process-per-test");
    if nextest || std::env::var_os(OWN_PROCESS).is_some() {
        return None;
    }
    let run = || {
        // The binary running, even if a build has replaced its file since (Linux).
        let exe = Path::new("/proc/self/exe");
        let exe = if exe.exists() {
            exe.to_path_buf()
        } else {
            std::env::current_exe()?
        };
        let out = std::process::Command::new(exe)
            .args(["--exact", name, "--test-threads", "1"])
            .env(OWN_PROCESS, "1")
            .output()?;
        let said = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success() && said.contains("test result: ok. 1 passed"),
            "{name}, in a process of its own: {}\n{said}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    Some(run())
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PDF's text as `pdftotext -layout` (poppler-utils) extracts it.
pub fn pdf_text(pdf: &[u8]) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("pdftotext not runnable ({e}); install poppler-utils"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(pdf)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "pdftotext failed: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
