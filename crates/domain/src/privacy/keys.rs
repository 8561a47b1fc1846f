//! Data keys and the key-encryption keys that wrap them (envelope encryption).
//!
//! Each client's details are sealed under a random 256-bit [`DataKey`]. The database keeps only
//! the data key wrapped (AES-256-GCM) by a key-encryption key (KEK) it never holds, named by an
//! id stored beside it, so KEKs can rotate: a new KEK wraps new keys, [`KeyProvider::unwrap`]
//! still opens keys wrapped by any KEK it holds, and re-wrapping every data key under the current
//! KEK lets the old one be retired. Erasing a client destroys their wrapped data key.
//!
//! [`Keyring`] is the provider kept in a file (a Kubernetes Secret); a cloud KMS implements the
//! same trait. Wrapping binds the key to its row through associated data, so a wrapped key copied
//! to another client does not unwrap.

use std::collections::BTreeMap;

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::IdentityKey;
use crate::Secret;

/// Why a key could not be had or used. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The keyring (or one of its keys) is malformed.
    #[error("invalid keyring: {0}")]
    Invalid(String),
    /// A wrapped key names a KEK this provider does not hold (retired too early, or a newer one
    /// this replica has not loaded yet).
    #[error("no key-encryption key {0:?} in the keyring")]
    UnknownKek(String),
    /// Decryption failed: the wrapped key or ciphertext was altered, moved to another row, or
    /// made with another key.
    #[error("a ciphertext does not open: altered, moved to another row, or under another key")]
    Refused,
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system")]
    Random,
}

/// A client's data key (256 bits). `Debug` never prints it.
#[derive(Clone)]
pub struct DataKey(Secret<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        Ok(DataKey(Secret::new(bytes)))
    }

    pub(super) fn aead(&self) -> LessSafeKey {
        aead_key(self.0.expose())
    }
}

/// A data key as stored: encrypted by the KEK named `kek_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_id: String,
    /// Nonce, then the ciphertext and its tag.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedKey(kek {:?}, ..)", self.kek_id)
    }
}

/// Where key-encryption keys live. Implementations must never expose a KEK.
pub trait KeyProvider: Send + Sync {
    /// The KEK new keys are wrapped with.
    fn current_kek(&self) -> &str;
    /// `key` wrapped by the current KEK, bound to `context` (associated data naming its row).
    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, KeyError>;
    /// The data key inside `wrapped`, if `context` is the one it was wrapped with.
    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, KeyError>;
}

fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256 takes 32 bytes"))
}

/// `plaintext` sealed under `key` with a random nonce: nonce ‖ ciphertext ‖ tag.
pub(super) fn seal(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KeyError::Random)?;
    let mut body = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| KeyError::Refused)?;
    let mut out = Vec::with_capacity(NONCE_LEN + body.len() + tag.as_ref().len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// What [`seal`] sealed, if `aad` matches and nothing was altered.
pub(super) fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(KeyError::Refused);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Refused)?;
    let mut buf = body.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| KeyError::Refused)?;
    Ok(plain.to_vec())
}

/// Key-encryption keys and the identity key, from a JSON file (a Kubernetes Secret):
///
/// ```json
/// { "identity_key": "<base64, at least 32 bytes>",
///   "current": "kek-2026-12",
///   "keys": { "kek-2026-12": "<base64, 32 bytes>", "kek-2026-01": "<base64, 32 bytes>" } }
/// ```
///
/// To rotate: add a key, make it `current`, roll the replicas, re-wrap (`billingctl clients
/// rewrap`), then remove the old key.
pub struct Keyring {
    current: String,
    keks: BTreeMap<String, LessSafeKey>,
    identity: IdentityKey,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("keks", &self.keks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    identity_key: Secret<String>,
    current: String,
    keys: BTreeMap<String, Secret<String>>,
}

fn base64_key(what: &str, value: &str) -> Result<Vec<u8>, KeyError> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| KeyError::Invalid(format!("{what} is not base64")))
}

impl Keyring {
    /// Parses a keyring file's contents. Errors name the key, never its value.
    pub fn parse(json: &[u8]) -> Result<Self, KeyError> {
        // serde's message could quote a value: only its position is kept.
        let file: KeyringFile = serde_json::from_slice(json).map_err(|e| {
            KeyError::Invalid(format!(
                "not a keyring (line {}, column {}: expected identity_key, current and keys)",
                e.line(),
                e.column()
            ))
        })?;
        let identity = IdentityKey::new(base64_key("identity_key", file.identity_key.expose())?)?;
        let mut keks = BTreeMap::new();
        for (id, value) in &file.keys {
            let bytes = base64_key(&format!("key {id:?}"), value.expose())?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                KeyError::Invalid(format!("key {id:?} must be 32 bytes (it has {})", b.len()))
            })?;
            keks.insert(id.clone(), aead_key(&bytes));
        }
        if !keks.contains_key(&file.current) {
            return Err(KeyError::Invalid(format!(
                "the current key {:?} is not among the keys",
                file.current
            )));
        }
        Ok(Keyring {
            current: file.current,
            keks,
            identity,
        })
    }

    /// The key of client identity digests.
    pub fn identity_key(&self) -> &IdentityKey {
        &self.identity
    }

    /// The KEK ids this keyring holds.
    pub fn kek_ids(&self) -> impl Iterator<Item = &str> {
        self.keks.keys().map(String::as_str)
    }
}

impl KeyProvider for Keyring {
    fn current_kek(&self) -> &str {
        &self.current
    }

    fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, KeyError> {
        let kek = &self.keks[&self.current];
        Ok(WrappedKey {
            kek_id: self.current.clone(),
            bytes: seal(kek, &wrap_aad(&self.current, context), key.0.expose())?,
        })
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, KeyError> {
        let kek = self
            .keks
            .get(&wrapped.kek_id)
            .ok_or_else(|| KeyError::UnknownKek(wrapped.kek_id.clone()))?;
        let plain = open(kek, &wrap_aad(&wrapped.kek_id, context), &wrapped.bytes)?;
        let bytes: [u8; 32] = plain.try_into().map_err(|_| KeyError::Refused)?;
        Ok(DataKey(Secret::new(bytes)))
    }
}

/// Associated data of a wrapped key: what it is, the KEK's id and the row's context.
fn wrap_aad(kek_id: &str, context: &[u8]) -> Vec<u8> {
    let mut aad = b"client-data-key-v1\0".to_vec();
    aad.extend_from_slice(kek_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(context);
    aad
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A keyring of obviously fake keys: KEKs of the bytes given, identity key of 9s.
    pub(crate) fn keyring(current: &str, keks: &[(&str, u8)]) -> Keyring {
        let b64 = |b: u8, n: usize| base64::engine::general_purpose::STANDARD.encode(vec![b; n]);
        let keys: serde_json::Map<String, serde_json::Value> = keks
            .iter()
            .map(|(id, b)| (id.to_string(), b64(*b, 32).into()))
            .collect();
        let json = serde_json::json!({
            "identity_key": b64(9, 32), "current": current, "keys": keys,
        });
        Keyring::parse(json.to_string().as_bytes()).expect("keyring")
    }

    #[test]
    fn a_wrapped_key_unwraps_only_in_its_context() {
        let ring = keyring("a", &[("a", 1)]);
        let key = DataKey::generate().expect("key");
        let wrapped = ring.wrap(&key, b"claire/k1").expect("wrap");
        assert_eq!(wrapped.kek_id, "a");
        let back = ring.unwrap(&wrapped, b"claire/k1").expect("unwrap");
        assert_eq!(back.0.expose(), key.0.expose());
        assert_eq!(
            ring.unwrap(&wrapped, b"claire/k2").err(),
            Some(KeyError::Refused)
        );
        let mut altered = wrapped.clone();
        altered.bytes[20] ^= 1;
        assert_eq!(
            ring.unwrap(&altered, b"claire/k1").err(),
            Some(KeyError::Refused)
        );
        // Two wraps of one key differ (random nonces).
        assert_ne!(ring.wrap(&key, b"claire/k1").expect("wrap"), wrapped);
    }

    #[test]
    fn rotation_unwraps_old_keys_and_wraps_with_the_new_one() {
        let old = keyring("a", &[("a", 1)]);
        let key = DataKey::generate().expect("key");
        let wrapped = old.wrap(&key, b"ctx").expect("wrap");
        let rotated = keyring("b", &[("a", 1), ("b", 2)]);
        let unwrapped = rotated
            .unwrap(&wrapped, b"ctx")
            .expect("old KEK still held");
        let rewrapped = rotated.wrap(&unwrapped, b"ctx").expect("wrap");
        assert_eq!(rewrapped.kek_id, "b");
        let retired = keyring("b", &[("b", 2)]);
        assert!(retired.unwrap(&rewrapped, b"ctx").is_ok());
        assert_eq!(
            retired.unwrap(&wrapped, b"ctx").err(),
            Some(KeyError::UnknownKek("a".into()))
        );
        // A KEK id cannot be relabelled: the id is in the associated data.
        let mut relabelled = wrapped.clone();
        relabelled.kek_id = "b".into();
        assert_eq!(
            rotated.unwrap(&relabelled, b"ctx").err(),
            Some(KeyError::Refused)
        );
    }

    #[test]
    fn bad_keyrings_are_refused_without_echoing_values() {
        let err = Keyring::parse(br#"{"identity_key":"c2VjcmV0","current":"a","keys":{}}"#)
            .expect_err("short identity key");
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let json = format!(r#"{{"identity_key":"{b64}","current":"x","keys":{{"a":"{b64}"}}}}"#);
        let err = Keyring::parse(json.as_bytes()).expect_err("current missing");
        assert!(err.to_string().contains("\"x\" is not among"), "{err}");
        let json = format!(r#"{{"identity_key":"{b64}","current":"a","keys":{{"a":"AAAA"}}}}"#);
        let err = Keyring::parse(json.as_bytes()).expect_err("short KEK");
        assert!(err.to_string().contains("32 bytes"), "{err}");
        let err = Keyring::parse(br#"{"identity_key": "topsecretvalue", "#).expect_err("json");
        assert!(!err.to_string().contains("topsecretvalue"), "{err}");
        assert!(!format!("{:?}", keyring("a", &[("a", 1)])).contains("AQEB"));
    }
}
