//! A service's own secrets file merged into the shared tenants file: the profile is shared, and
//! each service mounts only the secret settings it uses.

use std::collections::BTreeMap;
use std::path::Path;

use super::config::TenantId;
use super::tenants::{Tenants, TenantsError};

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
}
#[cfg(test)]
mod tests {
    use super::*;

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
}
