//! Clients' personal data, kept so it can be erased: crypto-shredding.
//!
//! A financial ledger must never change, and a client may ask to be forgotten. Both hold when a
//! client's details (name, email, phone, SimplyBook client id) are only ever stored encrypted
//! under a data key of their own, one per (tenant, client identity): destroying that key makes
//! every copy unreadable while the bookings, their amounts and the hash chain stay as they were.
//!
//! - [`ClientIdentity`] / [`IdentityKey`]: who a client is (SimplyBook client id, else email,
//!   else phone) and its keyed digest. The digest is what the chain covers and what erasure looks
//!   clients up by; it is not the plaintext, and without the identity key it cannot be tested
//!   against a guess.
//! - [`keys`]: a client's [`DataKey`](keys::DataKey), wrapped (encrypted) by a key-encryption key
//!   that the database never holds, behind the [`KeyProvider`](keys::KeyProvider) trait; the
//!   [`Keyring`](keys::Keyring) file is the provider shipped here (a cloud KMS can replace it).
//! - [`sealed`]: the details sealed with AES-256-GCM under the data key, with associated data
//!   binding each ciphertext to its tenant, booking and key, so a ciphertext moved to another
//!   row does not open.
//!
//! - [`strip`]: raw webhook bodies with personal members masked, for old dead letters.
//!
//! Randomness (nonces, new data keys) comes from the operating system through `ring`.

pub mod keys;
pub mod sealed;
pub mod strip;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Secret;
use crate::booking::ClientInfo;

/// A client's personal details as a booking carries them. `Debug` never prints them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// SimplyBook's id of the client (`client_id` of `getBookingDetails`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl std::fmt::Debug for ClientDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientDetails([personal data])")
    }
}

impl ClientDetails {
    /// The details of a booking's client, blank values dropped; `None` when nothing is left.
    pub fn from_info(info: &ClientInfo) -> Option<Self> {
        let keep = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let details = ClientDetails {
            name: keep(&info.name),
            email: keep(&info.email),
            phone: keep(&info.phone),
            client_id: keep(&info.client_id),
        };
        (details != ClientDetails::default()).then_some(details)
    }

    /// Who the client is, for their data key: SimplyBook's client id, else the email, else the
    /// phone. `None` when the details name no one that could later ask to be erased (a name
    /// alone): such details are not kept at all.
    pub fn identity(&self) -> Option<ClientIdentity> {
        if let Some(id) = &self.client_id {
            return Some(ClientIdentity::SimplyBookClient(id.clone()));
        }
        if let Some(email) = self.email.as_deref().and_then(ClientIdentity::email) {
            return Some(email);
        }
        self.phone.as_deref().and_then(ClientIdentity::phone)
    }
}

/// Who a client is, normalized so one person is one identity however the value was typed.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// SimplyBook's client id, as SimplyBook sends it.
    SimplyBookClient(String),
    /// An email address, trimmed and lower-cased.
    Email(String),
    /// A phone number, its digits with a leading `+` if it had one.
    Phone(String),
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientIdentity::SimplyBookClient(_) => "ClientIdentity::SimplyBookClient(..)",
            ClientIdentity::Email(_) => "ClientIdentity::Email(..)",
            ClientIdentity::Phone(_) => "ClientIdentity::Phone(..)",
        })
    }
}

impl ClientIdentity {
    /// An email identity; `None` for a value with no `@` between non-empty parts.
    pub fn email(value: &str) -> Option<Self> {
        let v = value.trim().to_lowercase();
        let (local, domain) = v.split_once('@')?;
        (!local.is_empty() && !domain.is_empty()).then_some(ClientIdentity::Email(v))
    }

    /// A phone identity; `None` for a value with fewer than 5 digits.
    pub fn phone(value: &str) -> Option<Self> {
        let digits: String = value.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 5 {
            return None;
        }
        let plus = if value.trim_start().starts_with('+') {
            "+"
        } else {
            ""
        };
        Some(ClientIdentity::Phone(format!("{plus}{digits}")))
    }

    fn parts(&self) -> (&'static str, &str) {
        match self {
            ClientIdentity::SimplyBookClient(v) => ("simplybook-client", v),
            ClientIdentity::Email(v) => ("email", v),
            ClientIdentity::Phone(v) => ("phone", v),
        }
    }
}

/// The key of the client identity digests (HMAC-SHA256). Unlike key-encryption keys it never
/// rotates: the digests on the chain and the erasure lookups are made with it.
#[derive(Clone)]
pub struct IdentityKey(Secret<Vec<u8>>);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(..)")
    }
}

impl IdentityKey {
    pub fn new(bytes: Vec<u8>) -> Result<Self, keys::KeyError> {
        if bytes.len() < 32 {
            return Err(keys::KeyError::Invalid(format!(
                "the identity key must be at least 32 bytes (it has {})",
                bytes.len()
            )));
        }
        Ok(IdentityKey(Secret::new(bytes)))
    }

    /// Lowercase hex HMAC-SHA256 of the identity within its tenant: equal for one client of one
    /// tenant, unrelated across tenants.
    pub fn digest(&self, tenant_id: &str, identity: &ClientIdentity) -> String {
        let (kind, value) = identity.parts();
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose())
            .expect("HMAC takes a key of any length");
        for part in ["client-identity-v1", tenant_id, kind, value] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, email: &str, phone: &str, id: &str) -> ClientInfo {
        let some = |s: &str| Some(s.to_string());
        ClientInfo {
            name: some(name),
            email: some(email),
            phone: some(phone),
            client_id: some(id),
        }
    }

    fn key() -> IdentityKey {
        IdentityKey::new(vec![7; 32]).expect("key")
    }

    #[test]
    fn identity_prefers_simplybook_id_then_email_then_phone() {
        let d = ClientDetails::from_info(&info("Jo", "Jo@Example.test ", "+61 400 000 000", "42"))
            .expect("details");
        assert_eq!(
            d.identity(),
            Some(ClientIdentity::SimplyBookClient("42".into()))
        );
        let d = ClientDetails::from_info(&info("Jo", " Jo@Example.TEST", "+61 400", "  "))
            .expect("details");
        assert_eq!(
            d.identity(),
            Some(ClientIdentity::Email("jo@example.test".into()))
        );
        let d = ClientDetails::from_info(&info("Jo", "not-an-email", "+61 (400) 000-001", ""))
            .expect("details");
        assert_eq!(
            d.identity(),
            Some(ClientIdentity::Phone("+61400000001".into()))
        );
        let d = ClientDetails::from_info(&info("Jo", "", "12", "")).expect("a name is kept");
        assert_eq!(d.identity(), None, "a name alone names no one to erase");
        assert!(ClientDetails::from_info(&info(" ", "", "", "")).is_none());
    }

    #[test]
    fn digests_are_per_tenant_and_per_kind_and_hide_the_value() {
        let k = key();
        let email = ClientIdentity::email("jo@example.test").expect("email");
        let same = ClientIdentity::email("  JO@example.TEST").expect("email");
        assert_eq!(k.digest("claire", &email), k.digest("claire", &same));
        assert_ne!(k.digest("claire", &email), k.digest("tokyo", &email));
        let as_id = ClientIdentity::SimplyBookClient("jo@example.test".into());
        assert_ne!(k.digest("claire", &email), k.digest("claire", &as_id));
        let other = IdentityKey::new(vec![8; 32]).expect("key");
        assert_ne!(k.digest("claire", &email), other.digest("claire", &email));
        assert_eq!(k.digest("claire", &email).len(), 64);
        assert!(!k.digest("claire", &email).contains("example"));
    }

    #[test]
    fn nothing_personal_reaches_debug_output() {
        let d = ClientDetails::from_info(&info("Jo Bloggs", "jo@example.test", "0400", "42"))
            .expect("details");
        let shown = format!("{d:?} {:?} {:?}", d.identity(), key());
        for secret in ["Jo Bloggs", "jo@example.test", "0400", "42", "7, 7"] {
            assert!(!shown.contains(secret), "{shown} shows {secret}");
        }
    }

    #[test]
    fn short_identity_keys_are_refused() {
        assert!(IdentityKey::new(vec![1; 31]).is_err());
    }
}
