//! Clients' personal data in the ledger: kept only sealed, under a data key per client, so a
//! client can be erased without touching the books (crypto-shredding; the primitives are in
//! `billing_domain::privacy`).
//!
//! - this module: the [`Vault`] (the keyring: key-encryption keys and the identity key) and
//!   [`Kept`], what of an event's client is kept and under which identity;
//! - [`seal`]: a batch's new bookings sealed in its transaction, creating client keys as needed;
//! - [`grpc`]: the clients' RPCs (ShowClient, EraseClient, RewrapClientKeys);
//! - [`manage`]: showing a client's details, erasing a client, re-wrapping keys after a
//!   key-encryption key rotates, and sealing details stored in plaintext before this existed.
//!
//! Without a keyring (`LEDGER_CLIENT_KEYRING_FILE`) the ledger keeps no client details at all.

pub mod grpc;
pub mod manage;
pub mod seal;

use std::path::Path;
use std::sync::Arc;

use billing_domain::booking::ClientInfo;
use billing_domain::privacy::keys::{KeyError, KeyProvider, Keyring};
use billing_domain::privacy::{ClientDetails, ClientIdentity, IdentityKey};

/// The keys client data is kept with: a provider of key-encryption keys and the identity key.
#[derive(Clone)]
pub struct Vault {
    provider: Arc<dyn KeyProvider>,
    identity: IdentityKey,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault(current KEK {:?})", self.provider.current_kek())
    }
}

impl Vault {
    pub fn new(provider: Arc<dyn KeyProvider>, identity: IdentityKey) -> Self {
        Vault { provider, identity }
    }

    /// The vault of a keyring file. Errors name the file and the fault, never a key.
    pub fn from_keyring_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the client keyring {}: {e}", path.display()))?;
        let keyring = Keyring::parse(&bytes)
            .map_err(|e| format!("client keyring {}: {e}", path.display()))?;
        let identity = keyring.identity_key().clone();
        Ok(Vault::new(Arc::new(keyring), identity))
    }

    pub fn provider(&self) -> &dyn KeyProvider {
        self.provider.as_ref()
    }

    /// The keyed digest of `identity` within `tenant_id`.
    pub fn digest(&self, tenant_id: &str, identity: &ClientIdentity) -> String {
        self.identity.digest(tenant_id, identity)
    }

    /// What is kept of an event's client: `None` when the event names no one who could later
    /// ask to be erased (no SimplyBook client id, email or phone), and then nothing is kept.
    pub fn keep(&self, tenant_id: &str, info: &ClientInfo) -> Option<Kept> {
        let details = ClientDetails::from_info(info)?;
        let identity = details.identity()?;
        let mut lookups = vec![self.digest(tenant_id, &identity)];
        // The identities an erasure can be asked by (`manage::Selector`); a phone only as the
        // identity itself (a client known by nothing else).
        let others = [
            details
                .client_id
                .clone()
                .map(ClientIdentity::SimplyBookClient),
            details.email.as_deref().and_then(ClientIdentity::email),
        ];
        for other in others.into_iter().flatten() {
            // The identity itself is digested once.
            if other != identity {
                lookups.push(self.digest(tenant_id, &other));
            }
        }
        Some(Kept { lookups, details })
    }
}

/// An event's client as the ledger keeps it.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The client's identity (its key's, in `client_keys`), then every other identity an
    /// erasure can name (SimplyBook's client id, the email), recorded as lookups for erasure
    /// to find the key by.
    pub lookups: Vec<String>,
    pub details: ClientDetails,
}

impl Kept {
    /// Whose data key seals the details, and what the booking's record chains.
    pub fn identity_digest(&self) -> &str {
        &self.lookups[0]
    }
}

/// The associated data a client key is wrapped with: its tenant and id.
pub fn key_context(tenant_id: &str, key_id: uuid::Uuid) -> Vec<u8> {
    format!("{tenant_id}\0{key_id}").into_bytes()
}

/// Why client data could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum ClientDataError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("client data key: {0}")]
    Key(#[from] KeyError),
    /// Another transaction changed a client's keys under this one (an erasure).
    #[error("client keys changed meanwhile: {0}")]
    Raced(String),
}

impl ClientDataError {
    /// When a batch that failed so should be tried again as it is (nothing in it is at fault):
    /// the `ledger_db_write_failures_total` kind and the reason; `None` when the database
    /// refuses something in the batch.
    pub fn retry(&self) -> Option<(&'static str, String)> {
        match self {
            ClientDataError::Key(e) => Some(("client_keys", format!("client keys: {e}"))),
            ClientDataError::Raced(e) => Some(("unavailable", format!("client keys: {e}"))),
            ClientDataError::Db(e) if billing_runtime::db::is_transient(e) => {
                Some(("unavailable", format!("database: {e}")))
            }
            ClientDataError::Db(_) => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine as _;

    use super::*;

    /// A vault over an obviously fake keyring whose only KEK is made of `kek` bytes.
    pub(crate) fn vault(current: &str, keks: &[(&str, u8)]) -> Vault {
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        let keys: serde_json::Map<String, serde_json::Value> = keks
            .iter()
            .map(|(id, b)| (id.to_string(), b64(*b).into()))
            .collect();
        let json = serde_json::json!({"identity_key": b64(9), "current": current, "keys": keys});
        let keyring = Keyring::parse(json.to_string().as_bytes()).expect("fake keyring");
        let identity = keyring.identity_key().clone();
        Vault::new(Arc::new(keyring), identity)
    }

    fn info(email: Option<&str>, id: Option<&str>) -> ClientInfo {
        ClientInfo {
            name: Some("Jo Bloggs".into()),
            email: email.map(str::to_string),
            phone: Some("+61 400 000 000".into()),
            client_id: id.map(str::to_string),
        }
    }

    #[test]
    fn a_client_is_kept_under_one_identity_and_found_by_each() {
        let v = vault("a", &[("a", 1)]);
        let kept = v
            .keep("claire", &info(Some("Jo@Example.test"), Some("515")))
            .expect("kept");
        let by_id = v.digest("claire", &ClientIdentity::SimplyBookClient("515".into()));
        let by_email = v.digest(
            "claire",
            &ClientIdentity::email("jo@example.test").expect("e"),
        );
        assert_eq!(kept.identity_digest(), by_id);
        // The phone is no identity an erasure is asked by: it is not looked up.
        assert_eq!(kept.lookups, [by_id.clone(), by_email.clone()]);
        // Without SimplyBook's id the email is the identity, and erasure by email finds both.
        let kept = v
            .keep("claire", &info(Some("jo@example.test"), None))
            .expect("kept");
        assert_eq!(kept.identity_digest(), by_email);
        let name_only = ClientInfo {
            name: Some("Jo".into()),
            ..ClientInfo::default()
        };
        assert!(v.keep("claire", &name_only).is_none());
    }
}
