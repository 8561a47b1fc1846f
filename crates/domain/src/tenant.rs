//! Tenants: the practitioners who take bookings, with the settings every service reads.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
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

#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    #[error("cannot read tenants file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid tenants file {path}: {}", parse_message(source))]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("tenant {0} is listed twice")]
    Duplicate(TenantId),
    #[error("tenant {0} has a webhook secret that is not whsec_<base64>")]
    BadSecret(TenantId),
    #[error(
        "tenant {0} has a callback token that is not 32-128 letters, digits, '-' or '_', \
         or callback tokens without simplybook_company"
    )]
    BadCallbackToken(TenantId),
    #[error(
        "tenant {0} has only one of simplybook_user_login and simplybook_user_password, \
         or them without simplybook_company"
    )]
    BadAdminUser(TenantId),
    #[error("tenant {0} has a simplybook_api_url that is not an http(s) URL without a path")]
    BadApiUrl(TenantId),
    #[error("the secrets file names tenant {0}, which the tenants file does not have")]
    SecretsForUnknownTenant(TenantId),
    #[error("the secrets file sets {1} for tenant {0}, which is not a secret setting")]
    NotASecret(TenantId, String),
    #[error("{1} of tenant {0} is in both the tenants file and the secrets file")]
    SecretTwice(TenantId, String),
    #[error("tenant {0}: {1}; without invoice_prefix the prefix is the upper-cased tenant id")]
    BadInvoicePrefix(TenantId, InvoicePrefixError),
}

/// serde's message about a tenants file, without the value it quotes when a value has the
/// wrong type or form: that value may be a secret (a webhook secret given as a string where a
/// list belongs), and this message reaches logs and terminals.
fn parse_message(e: &serde_json::Error) -> String {
    let message = e.to_string();
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        let what = message.split(':').next().unwrap_or("invalid value");
        format!("{what} at line {} column {}", e.line(), e.column())
    } else {
        message
    }
}

/// The settings that are secrets, and may come from a service's own secrets file.
const SECRET_SETTINGS: [&str; 6] = [
    "webhook_secrets",
    "callback_tokens",
    "simplybook_api_key",
    "simplybook_secret_key",
    "simplybook_user_login",
    "simplybook_user_password",
];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    tenants: BTreeMap<TenantId, serde_json::Map<String, serde_json::Value>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    tenants: Vec<TenantConfig>,
}

/// Every configured tenant, by id.
#[derive(Debug, Clone, Default)]
pub struct Tenants(BTreeMap<TenantId, TenantConfig>);

impl Tenants {
    /// The tenants file at `path` with the secrets file at `secrets` merged in, when given: the
    /// profile (names, zones, rates, company logins) is shared, and each service mounts only the
    /// secrets it uses — ingest its webhook secrets and callback tokens, the ledger SimplyBook's
    /// keys and admin user — so a service's compromise exposes no other's.
    pub fn load_with_secrets(path: &Path, secrets: Option<&Path>) -> Result<Self, TenantsError> {
        let Some(secrets) = secrets else {
            return Self::load(path);
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TenantsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let (profile, secret_text) = (read(path)?, read(secrets)?);
        Self::from_json_with_secrets(&profile, &secret_text).map_err(|e| match e {
            TenantsError::Parse { source, path: p } if p == "<secrets>" => TenantsError::Parse {
                path: secrets.display().to_string(),
                source,
            },
            TenantsError::Parse { source, .. } => TenantsError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// [`Tenants::from_json`] of `profile` with `secrets` (`{"tenants": {"<id>": {…}}}`, only
    /// the secret settings) merged into it. A secret given in both, or for an unknown tenant,
    /// is refused.
    pub fn from_json_with_secrets(profile: &str, secrets: &str) -> Result<Self, TenantsError> {
        let parse = |path: &str, e| TenantsError::Parse {
            path: path.into(),
            source: e,
        };
        let mut profile: serde_json::Value =
            serde_json::from_str(profile).map_err(|e| parse("<inline>", e))?;
        let secrets: SecretsFile =
            serde_json::from_str(secrets).map_err(|e| parse("<secrets>", e))?;
        let entries = profile["tenants"].as_array_mut();
        let mut entries = entries.into_iter().flatten().collect::<Vec<_>>();
        for (id, fields) in secrets.tenants {
            let entry = entries
                .iter_mut()
                .find(|t| t["id"].as_str() == Some(id.as_str()))
                .ok_or_else(|| TenantsError::SecretsForUnknownTenant(id.clone()))?;
            for (key, value) in fields {
                if !SECRET_SETTINGS.contains(&key.as_str()) {
                    return Err(TenantsError::NotASecret(id.clone(), key));
                }
                if entry.get(&key).is_some() {
                    return Err(TenantsError::SecretTwice(id.clone(), key));
                }
                entry[key.as_str()] = value;
            }
        }
        Self::from_json(&profile.to_string())
    }

    /// Tenants with a SimplyBook company but without the API key and secret key that confirm
    /// their callbacks: the ledger says so at start-up (their callbacks would be refused).
    pub fn missing_simplybook_api(&self) -> Vec<&TenantId> {
        self.0
            .values()
            .filter(|t| {
                t.simplybook_company.is_some()
                    && (t.simplybook_api_key.is_none() || t.simplybook_secret_key.is_none())
            })
            .map(|t| &t.id)
            .collect()
    }

    pub fn load(path: &Path) -> Result<Self, TenantsError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TenantsError::Read {
            path: display.clone(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| match e {
            TenantsError::Parse { source, .. } => TenantsError::Parse {
                path: display,
                source,
            },
            other => other,
        })
    }

    pub fn from_json(text: &str) -> Result<Self, TenantsError> {
        let file: TenantsFile =
            serde_json::from_str(text).map_err(|source| TenantsError::Parse {
                path: "<inline>".into(),
                source,
            })?;
        let mut map = BTreeMap::new();
        for tenant in file.tenants {
            if tenant.signing_keys().len() != tenant.webhook_secrets.len() {
                return Err(TenantsError::BadSecret(tenant.id));
            }
            let token_ok = |t: &Secret<String>| {
                let t = t.expose();
                (32..=128).contains(&t.len())
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            // The API key and secret key that confirm callbacks are the ledger's secrets and
            // may live in its own file: the ledger checks them (`missing_simplybook_api`).
            if !tenant.callback_tokens.iter().all(token_ok)
                || (!tenant.callback_tokens.is_empty() && tenant.simplybook_company.is_none())
            {
                return Err(TenantsError::BadCallbackToken(tenant.id));
            }
            match (
                &tenant.simplybook_user_login,
                &tenant.simplybook_user_password,
            ) {
                (None, None) => {}
                (Some(_), Some(_)) if tenant.simplybook_company.is_some() => {}
                _ => return Err(TenantsError::BadAdminUser(tenant.id)),
            }
            if let Some(url) = &tenant.simplybook_api_url {
                // The same check as getServiceUrl's answers get: a scheme and a host name only.
                let scheme = if url.starts_with("http://") {
                    "http"
                } else {
                    "https"
                };
                if !url.contains("://") || crate::simplybook::service_url(url, scheme).is_err() {
                    return Err(TenantsError::BadApiUrl(tenant.id));
                }
            }
            if let Err(e) = check_invoice_prefix(&tenant.invoice_prefix()) {
                return Err(TenantsError::BadInvoicePrefix(tenant.id, e));
            }
            let id = tenant.id.clone();
            if map.insert(id.clone(), tenant).is_some() {
                return Err(TenantsError::Duplicate(id));
            }
        }
        Ok(Tenants(map))
    }

    pub fn get(&self, id: &str) -> Option<&TenantConfig> {
        let id: TenantId = id.parse().ok()?;
        self.0.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TenantConfig> {
        self.0.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_file_applies_defaults_and_validates() {
        let tenants = Tenants::from_json(
            r#"{"tenants":[{"id":"claire","name":"Claire","billing_email":"c@example.test",
                "currency":"AUD","webhook_secrets":["whsec_ZmFrZQ=="]}]}"#,
        )
        .expect("valid file");
        let claire = tenants.get("claire").expect("claire");
        assert_eq!(claire.time_zone, chrono_tz::Australia::Sydney);
        assert_eq!(claire.payment_terms_days, 7);
        assert_eq!(claire.invoice_prefix(), "CLAIRE");
        assert_eq!(claire.signing_keys().len(), 1);
        assert!(tenants.get("Claire").is_none());
    }

    #[test]
    fn bad_tenant_files_are_rejected_with_the_reason() {
        let bad_secret = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","webhook_secrets":["whsec_%%%"]}]}"#;
        assert!(matches!(
            Tenants::from_json(bad_secret),
            Err(TenantsError::BadSecret(_))
        ));
        let bad_zone = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","time_zone":"Mars/Olympus"}]}"#;
        let err = Tenants::from_json(bad_zone)
            .expect_err("bad zone")
            .to_string();
        assert!(err.contains("Mars/Olympus"), "{err}");
        let bad_rate = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","platform_fee_rate":"1.5"}]}"#;
        assert!(Tenants::from_json(bad_rate).is_err());
        assert!("Bad Id".parse::<TenantId>().is_err());
        let short_token = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","simplybook_company":"a","callback_tokens":["short"]}]}"#;
        assert!(matches!(
            Tenants::from_json(short_token),
            Err(TenantsError::BadCallbackToken(_))
        ));
        let no_company = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","callback_tokens":["fake-token-0123456789-0123456789-abcdef"]}]}"#;
        assert!(matches!(
            Tenants::from_json(no_company),
            Err(TenantsError::BadCallbackToken(_))
        ));
    }

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

    #[test]
    fn the_tenants_file_refuses_an_invoice_prefix_stripe_could_not_number() {
        let file = |extra: &str, id: &str| {
            format!(
                r#"{{"tenants":[{{"id":"{id}","name":"A","billing_email":"a@example.test",
                "currency":"AUD"{extra}}}]}}"#
            )
        };
        let twelve = Tenants::from_json(&file(r#","invoice_prefix":"ABCDEFGHIJKL""#, "a"))
            .expect("12 characters");
        assert_eq!(
            twelve.get("a").map(TenantConfig::invoice_prefix).as_deref(),
            Some("ABCDEFGHIJKL")
        );
        for (extra, id) in [
            (r#","invoice_prefix":"ABCDEFGHIJKLM""#, "a"),
            (r#","invoice_prefix":"lower""#, "a"),
            // No prefix: the upper-cased id, here 13 characters, would be the default.
            ("", "physiotherapy"),
        ] {
            let err = Tenants::from_json(&file(extra, id)).expect_err(extra);
            assert!(
                matches!(err, TenantsError::BadInvoicePrefix(..)),
                "{extra}: {err}"
            );
            assert!(err.to_string().contains("invoice_prefix"), "{err}");
        }
        assert!(Tenants::from_json(&file("", "physiother12")).is_ok());
    }

    #[test]
    fn callback_tokens_match_exactly_and_any_of_several() {
        let tenants = Tenants::from_json(
            r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test","currency":"AUD",
                "simplybook_company":"a","simplybook_api_key":"fake-key",
                "simplybook_secret_key":"fake-secret","callback_tokens":[
                "fake-token-new-0123456789-0123456789","fake-token-old-0123456789-0123456789"]}]}"#,
        )
        .expect("valid file");
        let a = tenants.get("a").expect("a");
        assert!(a.accepts_callback_token("fake-token-new-0123456789-0123456789"));
        assert!(a.accepts_callback_token("fake-token-old-0123456789-0123456789"));
        assert!(!a.accepts_callback_token("fake-token-new-0123456789-012345678"));
        assert!(!a.accepts_callback_token(""));
    }

    #[test]
    fn the_simplybook_admin_user_is_optional_and_comes_as_a_pair() {
        let tenants = Tenants::from_json(
            r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test","currency":"AUD",
                "simplybook_company":"a","simplybook_user_login":"admin",
                "simplybook_user_password":"fake-password"},
                {"id":"b","name":"B","billing_email":"b@example.test","currency":"AUD"}]}"#,
        )
        .expect("valid file");
        let a = tenants.get("a").expect("a");
        assert_eq!(a.simplybook_user_login.as_deref(), Some("admin"));
        assert_eq!(
            a.simplybook_user_password
                .as_ref()
                .map(|p| p.expose().as_str()),
            Some("fake-password")
        );
        let b = tenants.get("b").expect("b");
        assert!(b.simplybook_user_login.is_none() && b.simplybook_user_password.is_none());
        let login_only = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","simplybook_company":"a","simplybook_user_login":"admin"}]}"#;
        assert!(matches!(
            Tenants::from_json(login_only),
            Err(TenantsError::BadAdminUser(_))
        ));
        let no_company = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","simplybook_user_login":"admin","simplybook_user_password":"p"}]}"#;
        assert!(matches!(
            Tenants::from_json(no_company),
            Err(TenantsError::BadAdminUser(_))
        ));
        let misspelt = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","simplybook_user_name":"admin"}]}"#;
        assert!(matches!(
            Tenants::from_json(misspelt),
            Err(TenantsError::Parse { .. })
        ));
    }

    #[test]
    fn status_labels_map_to_our_statuses_and_an_api_url_is_a_host() {
        let ok = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","simplybook_company":"a",
            "simplybook_api_url":"https://user-api.simplybook.asia/",
            "simplybook_status_labels":{"Completed":"completed","No show":"no_show"}}]}"#;
        let tenants = Tenants::from_json(ok).expect("tenants");
        let a = tenants.get("a").expect("a");
        assert_eq!(
            a.simplybook_status_labels.get("No show"),
            Some(&crate::BookingStatus::NoShow)
        );
        for url in [
            "ftp://x",
            "https://evil.test/path",
            "https://user@host",
            "https://",
        ] {
            let bad = ok.replace("https://user-api.simplybook.asia/", url);
            assert!(
                matches!(Tenants::from_json(&bad), Err(TenantsError::BadApiUrl(_))),
                "{url}"
            );
        }
        let unknown = ok.replace(r#""no_show"}"#, r#""arrived"}"#);
        assert!(matches!(
            Tenants::from_json(&unknown),
            Err(TenantsError::Parse { .. })
        ));
    }

    #[test]
    fn each_service_gets_its_secrets_from_its_own_file() {
        let profile = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","simplybook_company":"a"}]}"#;
        let ingest = r#"{"tenants":{"a":{"webhook_secrets":["whsec_ZmFrZS10ZXN0LXNlY3JldA=="],
            "callback_tokens":["fake-token-0123456789-0123456789-abcdef"]}}}"#;
        let tenants = Tenants::from_json_with_secrets(profile, ingest).expect("merged");
        let a = tenants.get("a").expect("a");
        assert_eq!(a.webhook_secrets.len(), 1);
        assert!(a.accepts_callback_token("fake-token-0123456789-0123456789-abcdef"));
        assert!(
            a.simplybook_api_key.is_none(),
            "ingest never sees SimplyBook's keys"
        );
        assert_eq!(tenants.missing_simplybook_api().len(), 1);

        let ledger = r#"{"tenants":{"a":{"simplybook_api_key":"fake-key",
            "simplybook_secret_key":"fake-secret"}}}"#;
        let tenants = Tenants::from_json_with_secrets(profile, ledger).expect("merged");
        assert!(tenants.missing_simplybook_api().is_empty());
        assert!(tenants.get("a").expect("a").webhook_secrets.is_empty());

        let cases = [
            (
                r#"{"tenants":{"b":{"simplybook_api_key":"k"}}}"#,
                "names tenant b",
            ),
            (
                r#"{"tenants":{"a":{"currency":"NZD"}}}"#,
                "currency for tenant a",
            ),
        ];
        for (secrets, expected) in cases {
            let err = Tenants::from_json_with_secrets(profile, secrets).expect_err(secrets);
            assert!(err.to_string().contains(expected), "{err}");
        }
        let twice = profile.replace(
            r#""simplybook_company":"a""#,
            r#""simplybook_company":"a","simplybook_api_key":"k""#,
        );
        let err = Tenants::from_json_with_secrets(&twice, ledger).expect_err("twice");
        assert!(matches!(err, TenantsError::SecretTwice(_, _)), "{err}");
        assert!(!err.to_string().contains("fake-key"), "never the value");
    }

    #[test]
    fn a_mistyped_secret_is_never_echoed() {
        let text = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","webhook_secrets":"whsec_bm90LWEtbGlzdC1zZWNyZXQ="}]}"#;
        let err = Tenants::from_json(text).expect_err("a string, not a list");
        let shown = err.to_string();
        assert!(shown.contains("invalid type at line 2"), "{shown}");
        assert!(!shown.contains("whsec_"), "{shown}");
    }
}
