//! Tenants: the practitioners who take bookings, with the settings every service reads.
//!
//! # Layout
//!
//! - `config`: one tenant's settings: its id, its invoice prefix, its zone, rates and SimplyBook
//!   account, and whether a callback token is one of its own.
//! - `tenants`: every configured tenant, read from the tenants file and checked as a whole.
//! - `secrets`: a service's own secrets file merged into the shared tenants file.
//! - `onboard`: a new tenant written into those files, with credentials made for it.

mod config;
mod onboard;
mod secrets;
mod tenants;

pub use config::{
    InvoicePrefixError, MAX_INVOICE_PREFIX, TenantConfig, TenantId, TenantIdError,
    check_invoice_prefix,
};
pub use onboard::{Credentials, NewTenant, OnboardError, TenantFiles};
pub use tenants::{Tenants, TenantsError};
