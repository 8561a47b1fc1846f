//! One tenant's settings as the tenants file gives them: its id, invoice prefix, time zone,
//! rates, SimplyBook account and the secrets that authenticate what arrives for it.

use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::money::{Currency, Rate};
use crate::secret::Secret;
use crate::standard_webhooks::SigningKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id {0:?}: use 1-50 lowercase letters, digits, '-' or '_'")]
pub struct TenantIdError(String);

/// Longest invoice prefix. Stripe accepts an invoice `number` of at most 26 characters
/// (`PostInvoices`, `number.maxLength` in stripe/openapi); `{prefix}-{year}-{seq:04}` with a
/// 12-character prefix is 22 characters and stays within 26 up to sequence 99,999,999.
/// See docs/contracts/stripe.md.
pub const MAX_INVOICE_PREFIX: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invoice_prefix {0:?}: use 1-12 of A-Z, 0-9, '-', '_' (Stripe takes invoice numbers of at \
     most 26 characters)"
)]
pub struct InvoicePrefixError(pub String);

/// Checks an invoice prefix: 1 to [`MAX_INVOICE_PREFIX`] of `A-Z`, `0-9`, `-`, `_`.
pub fn check_invoice_prefix(prefix: &str) -> Result<(), InvoicePrefixError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_INVOICE_PREFIX
        && prefix
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    ok.then_some(())
        .ok_or_else(|| InvoicePrefixError(prefix.to_string()))
}

/// A tenant's identifier as it appears in URLs and subjects: `[a-z0-9_-]{1,50}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = TenantIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 50
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        ok.then(|| TenantId(s.to_string()))
            .ok_or_else(|| TenantIdError(s.to_string()))
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

fn default_time_zone() -> Tz {
    chrono_tz::Australia::Sydney
}

fn default_rate() -> Rate {
    Rate::twenty_percent()
}

fn default_terms() -> u32 {
    7
}

fn deserialize_tz<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    use serde::Deserialize;
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|_| serde::de::Error::custom(format!("unknown IANA time zone {s:?}")))
}

/// One tenant's settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: TenantId,
    /// Legal or trading name, printed on invoices.
    pub name: String,
    /// Where invoices are emailed.
    pub billing_email: String,
    /// IANA zone that defines the tenant's billing months.
    #[serde(default = "default_time_zone", deserialize_with = "deserialize_tz")]
    pub time_zone: Tz,
    pub currency: Currency,
    #[serde(default = "default_rate")]
    pub deposit_rate: Rate,
    #[serde(default = "default_rate")]
    pub platform_fee_rate: Rate,
    /// Days from issue to due date.
    #[serde(default = "default_terms")]
    pub payment_terms_days: u32,
    /// Invoice numbers look like `{prefix}-{year}-{seq:04}`; defaults to the upper-cased id.
    /// At most 12 characters (explicit or default: a tenant whose id is longer needs one).
    #[serde(default)]
    pub invoice_prefix: Option<String>,
    /// Standard Webhooks secrets (`whsec_…`) accepted for this tenant; several during a rotation.
    #[serde(default)]
    pub webhook_secrets: Vec<Secret<String>>,
    /// The tenant's SimplyBook.me company login; callbacks naming another company are refused.
    #[serde(default)]
    pub simplybook_company: Option<String>,
    /// Secret tokens accepted in the SimplyBook callback URL; several during a rotation.
    /// Callbacks are refused for a tenant without a company login and at least one token.
    #[serde(default)]
    pub callback_tokens: Vec<Secret<String>>,
    /// SimplyBook API key (`getToken`) and secret key (`getBookingDetails`' sign), with which the
    /// ledger confirms each callback. Required with `callback_tokens`.
    #[serde(default)]
    pub simplybook_api_key: Option<Secret<String>>,
    #[serde(default)]
    pub simplybook_secret_key: Option<Secret<String>>,
    /// Login of the SimplyBook admin user with which the ledger lists the company's bookings
    /// (Company Administration API) for reconciliation. Optional; needs `simplybook_company` and
    /// `simplybook_user_password`.
    #[serde(default)]
    pub simplybook_user_login: Option<String>,
    /// That admin user's password. Optional; needs `simplybook_user_login`.
    #[serde(default)]
    pub simplybook_user_password: Option<Secret<String>>,
    /// The company's API domain (e.g. `https://user-api.simplybook.asia`), when it must not be
    /// asked of SimplyBook's `getServiceUrl` (which is what happens without it).
    #[serde(default)]
    pub simplybook_api_url: Option<String>,
    /// What the company's SimplyBook Status-feature labels mean, e.g.
    /// `{"Completed": "completed", "No show": "no_show"}` (matched ignoring case). A confirmed
    /// booking showing a label not listed here stays confirmed, is recorded with the label and
    /// is flagged; labels are the tenant's own words and are never guessed.
    #[serde(default)]
    pub simplybook_status_labels: crate::simplybook::StatusLabels,
}

impl TenantConfig {
    pub fn invoice_prefix(&self) -> String {
        self.invoice_prefix
            .clone()
            .unwrap_or_else(|| self.id.as_str().to_ascii_uppercase())
    }

    /// Whether `token` is one of the tenant's callback tokens. Compares SHA-256 digests in
    /// constant time and checks every token, so timing reveals neither a token nor which matched.
    pub fn accepts_callback_token(&self, token: &str) -> bool {
        let presented = Sha256::digest(token.as_bytes());
        self.callback_tokens
            .iter()
            .map(|t| Sha256::digest(t.expose().as_bytes()).ct_eq(&presented))
            .fold(Choice::from(0), |any, this| any | this)
            .into()
    }

    pub fn signing_keys(&self) -> Vec<SigningKey> {
        // Validated at load time, so parsing cannot fail here.
        self.webhook_secrets
            .iter()
            .filter_map(|s| SigningKey::parse(s.expose()).ok())
            .collect()
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_prefixes_are_at_most_twelve_characters() {
        let cases = [
            ("CLAIRE", true),
            ("ABCDEFGHIJKL", true),
            ("A-1_B", true),
            ("ABCDEFGHIJKLM", false),
            ("", false),
            ("claire", false),
            ("CLAIRE 1", false),
            ("CLAIRÉ", false),
        ];
        for (prefix, ok) in cases {
            assert_eq!(check_invoice_prefix(prefix).is_ok(), ok, "{prefix:?}");
        }
        let err = check_invoice_prefix("ABCDEFGHIJKLM")
            .expect_err("13")
            .to_string();
        assert!(err.contains("1-12") && err.contains("26"), "{err}");
    }
}
