//! Every configured tenant, by id: the tenants file read, each tenant checked (secrets, callback
//! tokens, admin user, API URL, invoice prefix) and the ids made unique.

use std::collections::BTreeMap;
use std::path::Path;

use super::config::{InvoicePrefixError, TenantConfig, TenantId, check_invoice_prefix};
use crate::secret::Secret;

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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    tenants: Vec<TenantConfig>,
}

/// Every configured tenant, by id.
#[derive(Debug, Clone, Default)]
pub struct Tenants(BTreeMap<TenantId, TenantConfig>);

impl Tenants {
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
    fn a_mistyped_secret_is_never_echoed() {
        let text = r#"{"tenants":[{"id":"a","name":"A","billing_email":"a@example.test",
            "currency":"AUD","webhook_secrets":"whsec_bm90LWEtbGlzdC1zZWNyZXQ="}]}"#;
        let err = Tenants::from_json(text).expect_err("a string, not a list");
        let shown = err.to_string();
        assert!(shown.contains("invalid type at line 2"), "{shown}");
        assert!(!shown.contains("whsec_"), "{shown}");
    }
}
