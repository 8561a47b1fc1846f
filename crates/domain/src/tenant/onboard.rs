//! Onboarding: a new tenant written into the tenant files, with a callback token and a webhook
//! secret made for it. The files stay what every service reads (and re-reads when they change):
//! the profile into the shared tenants file, ingest's secrets into ingest's secrets file, the
//! SimplyBook keys into the ledger's, each into the tenants file itself when the deployment
//! keeps no file apart. Nothing is written unless every service's view of the result loads.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use super::config::TenantId;
use super::tenants::{Tenants, TenantsError};
use crate::secret::Secret;

/// What the operator says about the new tenant.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    pub billing_email: String,
    /// ISO 4217, e.g. AUD.
    pub currency: String,
    /// IANA zone; the services' default (Australia/Sydney) when `None`.
    pub time_zone: Option<String>,
    pub invoice_prefix: Option<String>,
    pub payment_terms_days: Option<u32>,
    /// Decimal fractions as text, e.g. "0.20"; the default 20% when `None`.
    pub deposit_rate: Option<String>,
    pub platform_fee_rate: Option<String>,
    /// The company login its SimplyBook callbacks name.
    pub simplybook_company: String,
    /// SimplyBook's API key and secret key (Settings → API), with which the ledger confirms
    /// each callback.
    pub simplybook_api_key: Secret<String>,
    pub simplybook_secret_key: Secret<String>,
}

/// The tenant files' texts: the shared tenants file and, where the deployment keeps them apart,
/// ingest's and the ledger's secrets files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantFiles {
    pub profile: String,
    pub ingest_secrets: Option<String>,
    pub ledger_secrets: Option<String>,
}

/// What onboarding made: shown to the operator once, kept nowhere but the files.
#[derive(Debug)]
pub struct Credentials {
    /// Goes into the callback URL SimplyBook calls (`…/callback/<token>`).
    pub callback_token: Secret<String>,
    /// A Standard Webhooks secret (`whsec_…`) for a forwarder that signs booking details.
    pub webhook_secret: Secret<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("the tenant files do not load as they are, so nothing was changed: {0}")]
    CurrentFiles(TenantsError),
    #[error("tenant {0} exists already")]
    Exists(TenantId),
    #[error("SimplyBook company {company:?} belongs to tenant {tenant} already")]
    CompanyTaken { company: String, tenant: TenantId },
    #[error("{0}")]
    Invalid(String),
}

impl NewTenant {
    /// The tenant files with this tenant added, and its new credentials, made from `random`
    /// (64 bytes from the system's secure generator).
    pub fn onboard(
        &self,
        files: &TenantFiles,
        random: &[u8; 64],
    ) -> Result<(TenantFiles, Credentials), OnboardError> {
        let views = |files: &TenantFiles| -> Result<[Tenants; 2], TenantsError> {
            let view = |secrets: &Option<String>| match secrets {
                Some(secrets) => Tenants::from_json_with_secrets(&files.profile, secrets),
                None => Tenants::from_json(&files.profile),
            };
            Ok([view(&files.ingest_secrets)?, view(&files.ledger_secrets)?])
        };
        let [ingest, _] = views(files).map_err(OnboardError::CurrentFiles)?;
        if ingest.get(self.id.as_str()).is_some() {
            return Err(OnboardError::Exists(self.id.clone()));
        }
        let company = self.simplybook_company.trim();
        if let Some(owner) = ingest
            .iter()
            .find(|t| t.simplybook_company.as_deref() == Some(company))
        {
            return Err(OnboardError::CompanyTaken {
                company: company.to_string(),
                tenant: owner.id.clone(),
            });
        }
        if !crate::callback::is_token_like(company) {
            return Err(OnboardError::Invalid(
                "simplybook_company must be the company's login: 1-64 letters or digits".into(),
            ));
        }
        if self.simplybook_api_key.expose().trim().is_empty()
            || self.simplybook_secret_key.expose().trim().is_empty()
        {
            return Err(OnboardError::Invalid(
                "the SimplyBook API key and secret key are both required: the ledger confirms \
                 every callback with them"
                    .into(),
            ));
        }

        let (token, secret) = random.split_at(32);
        let credentials = Credentials {
            callback_token: Secret::new(URL_SAFE_NO_PAD.encode(token)),
            webhook_secret: Secret::new(format!("whsec_{}", STANDARD.encode(secret))),
        };
        let mut entry = Map::new();
        entry.insert("id".into(), json!(self.id.as_str()));
        entry.insert("name".into(), json!(self.name.trim()));
        entry.insert("billing_email".into(), json!(self.billing_email.trim()));
        if let Some(zone) = &self.time_zone {
            entry.insert("time_zone".into(), json!(zone.trim()));
        }
        entry.insert("currency".into(), json!(self.currency.trim()));
        for (key, rate) in [
            ("deposit_rate", &self.deposit_rate),
            ("platform_fee_rate", &self.platform_fee_rate),
        ] {
            if let Some(rate) = rate {
                entry.insert(key.into(), json!(rate.trim()));
            }
        }
        if let Some(days) = self.payment_terms_days {
            entry.insert("payment_terms_days".into(), json!(days));
        }
        if let Some(prefix) = &self.invoice_prefix {
            entry.insert("invoice_prefix".into(), json!(prefix.trim()));
        }
        entry.insert("simplybook_company".into(), json!(company));
        let ingest_secrets = json!({
            "callback_tokens": [credentials.callback_token.expose()],
            "webhook_secrets": [credentials.webhook_secret.expose()],
        });
        let ledger_secrets = json!({
            "simplybook_api_key": self.simplybook_api_key.expose().trim(),
            "simplybook_secret_key": self.simplybook_secret_key.expose().trim(),
        });

        let mut next = files.clone();
        for (file, secrets) in [
            (&mut next.ingest_secrets, ingest_secrets),
            (&mut next.ledger_secrets, ledger_secrets),
        ] {
            match file {
                Some(text) => *text = with_secrets(text, &self.id, secrets)?,
                // No file apart: the secrets go into the tenant's entry.
                None => entry.extend(secrets.as_object().cloned().unwrap_or_default()),
            }
        }
        next.profile = with_entry(&files.profile, entry)?;

        // Every service's view of the result must load, with the new tenant in it.
        let [ingest, ledger] = views(&next).map_err(|e| OnboardError::Invalid(e.to_string()))?;
        let added = ingest.get(self.id.as_str()).ok_or_else(|| {
            OnboardError::Invalid("the new tenant is missing from the result".into())
        })?;
        if !added.accepts_callback_token(credentials.callback_token.expose())
            || added.signing_keys().is_empty()
            || ledger.missing_simplybook_api().contains(&&self.id)
        {
            return Err(OnboardError::Invalid(
                "the new tenant's secrets did not reach the services that use them".into(),
            ));
        }
        Ok((next, credentials))
    }
}

/// The tenants file with `entry` appended to its `tenants`, the rest of it as it was.
fn with_entry(profile: &str, entry: Map<String, Value>) -> Result<String, OnboardError> {
    let mut file: Value = serde_json::from_str(profile)
        .map_err(|e| OnboardError::Invalid(format!("tenants file: {e}")))?;
    let tenants = file
        .get_mut("tenants")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| OnboardError::Invalid("the tenants file has no \"tenants\" list".into()))?;
    tenants.push(Value::Object(entry));
    pretty(&file)
}

/// A secrets file with the tenant's `secrets` added under its id.
fn with_secrets(text: &str, id: &TenantId, secrets: Value) -> Result<String, OnboardError> {
    let mut file: Value = serde_json::from_str(text)
        .map_err(|e| OnboardError::Invalid(format!("secrets file: {e}")))?;
    let tenants = file
        .get_mut("tenants")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| OnboardError::Invalid("a secrets file has no \"tenants\" map".into()))?;
    tenants.insert(id.to_string(), secrets);
    pretty(&file)
}

fn pretty(file: &Value) -> Result<String, OnboardError> {
    serde_json::to_string_pretty(file)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|e| OnboardError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"{"tenants":[{"id":"claire","name":"Claire","billing_email":"c@example.test",
        "currency":"AUD","simplybook_company":"clairehamilton"}]}"#;
    const INGEST: &str =
        r#"{"tenants":{"claire":{"callback_tokens":["fake-token-0123456789-0123456789-abcdef"]}}}"#;
    const LEDGER: &str = r#"{"tenants":{"claire":{"simplybook_api_key":"fake-key","simplybook_secret_key":"fake-secret"}}}"#;

    fn dana() -> NewTenant {
        NewTenant {
            id: "dana".parse().expect("id"),
            name: "Dana Osteopathy".into(),
            billing_email: "dana@example.test".into(),
            currency: "NZD".into(),
            time_zone: Some("Pacific/Auckland".into()),
            invoice_prefix: None,
            payment_terms_days: Some(14),
            deposit_rate: None,
            platform_fee_rate: Some("0.15".into()),
            simplybook_company: "danaosteo".into(),
            simplybook_api_key: Secret::new("fake-dana-key".into()),
            simplybook_secret_key: Secret::new("fake-dana-secret".into()),
        }
    }

    fn files() -> TenantFiles {
        TenantFiles {
            profile: PROFILE.into(),
            ingest_secrets: Some(INGEST.into()),
            ledger_secrets: Some(LEDGER.into()),
        }
    }

    #[test]
    fn a_new_tenant_reaches_each_service_with_only_its_own_secrets() {
        let random = [7u8; 64];
        let (next, credentials) = dana().onboard(&files(), &random).expect("onboarded");
        let token = credentials.callback_token.expose();
        assert_eq!(token.len(), 43);
        assert!(credentials.webhook_secret.expose().starts_with("whsec_"));
        assert!(
            !next.profile.contains(token),
            "no secret in the shared file"
        );
        assert!(!next.profile.contains("fake-dana-key"));

        let ingest = Tenants::from_json_with_secrets(
            &next.profile,
            next.ingest_secrets.as_deref().expect("ingest"),
        )
        .expect("ingest's view");
        let dana = ingest.get("dana").expect("dana");
        assert!(dana.accepts_callback_token(token));
        assert_eq!(
            dana.platform_fee_rate,
            crate::money::Rate::new(rust_decimal::Decimal::new(15, 2)).expect("rate")
        );
        assert_eq!(dana.time_zone, chrono_tz::Pacific::Auckland);
        assert!(
            dana.simplybook_api_key.is_none(),
            "ingest never sees SimplyBook's keys"
        );
        assert!(
            ingest
                .get("claire")
                .expect("claire")
                .accepts_callback_token("fake-token-0123456789-0123456789-abcdef")
        );

        let ledger = Tenants::from_json_with_secrets(
            &next.profile,
            next.ledger_secrets.as_deref().expect("ledger"),
        )
        .expect("ledger's view");
        let dana = ledger.get("dana").expect("dana");
        assert!(
            dana.callback_tokens.is_empty(),
            "the ledger never sees callback tokens"
        );
        assert_eq!(
            dana.simplybook_api_key
                .as_ref()
                .map(|k| k.expose().as_str()),
            Some("fake-dana-key")
        );
    }

    #[test]
    fn without_files_apart_the_secrets_go_into_the_tenants_entry() {
        let files = TenantFiles {
            profile: PROFILE.into(),
            ingest_secrets: None,
            ledger_secrets: None,
        };
        let (next, credentials) = dana().onboard(&files, &[1u8; 64]).expect("onboarded");
        let all = Tenants::from_json(&next.profile).expect("loads");
        let dana = all.get("dana").expect("dana");
        assert!(dana.accepts_callback_token(credentials.callback_token.expose()));
        let missing: Vec<String> = all
            .missing_simplybook_api()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(missing, ["claire"], "dana's keys are in her entry");
    }

    #[test]
    fn taken_ids_and_companies_and_broken_files_change_nothing() {
        let mut claire = dana();
        claire.id = "claire".parse().expect("id");
        assert!(matches!(
            claire.onboard(&files(), &[0; 64]),
            Err(OnboardError::Exists(_))
        ));

        let mut copycat = dana();
        copycat.simplybook_company = "clairehamilton".into();
        let err = copycat.onboard(&files(), &[0; 64]).expect_err("taken");
        assert!(
            err.to_string().contains("belongs to tenant claire"),
            "{err}"
        );

        let mut bad = dana();
        bad.currency = "XXQ".into();
        assert!(matches!(
            bad.onboard(&files(), &[0; 64]),
            Err(OnboardError::Invalid(_))
        ));

        let mut keyless = dana();
        keyless.simplybook_secret_key = Secret::new(" ".into());
        assert!(matches!(
            keyless.onboard(&files(), &[0; 64]),
            Err(OnboardError::Invalid(_))
        ));

        let mut broken = files();
        broken.ledger_secrets = Some(r#"{"tenants":{"nobody":{"simplybook_api_key":"k"}}}"#.into());
        let err = dana().onboard(&broken, &[0; 64]).expect_err("broken");
        assert!(matches!(err, OnboardError::CurrentFiles(_)), "{err}");
        assert!(!err.to_string().contains("\"k\""), "never a secret's value");
    }
}
