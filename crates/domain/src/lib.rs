//! The billing domain: exact money, billing periods, tenants, booking payloads, record hashing,
//! webhook signatures and bank statements. Pure code with no I/O, shared by every service.
#![forbid(unsafe_code)]

pub mod bank;
pub mod booking;
pub mod callback;
pub mod deposits;
pub mod hash;
pub mod local_time;
pub mod money;
pub mod period;
pub mod privacy;
pub mod secret;
pub mod simplybook;
pub mod standard_webhooks;
pub mod stripe_signature;
pub mod tenant;

pub use booking::{BookingPayload, BookingStatus};
pub use money::{BookingAmounts, Currency, MoneyError, Rate};
pub use period::BillingPeriod;
pub use secret::Secret;
pub use tenant::{TenantConfig, TenantId, Tenants};
