//! A booking's client details sealed under the client's data key.
//!
//! The associated data names the tenant, the booking and the data key, so a ciphertext copied
//! onto another booking (or another tenant's row) is refused rather than shown as that booking's
//! client; the leading format byte lets the encoding change later.

use super::ClientDetails;
use super::keys::{self, DataKey, KeyError};

const FORMAT_V1: u8 = 1;

/// Which row a sealed value belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SealContext<'a> {
    pub tenant_id: &'a str,
    /// The booking's id in the ledger.
    pub booking_id: &'a str,
    /// The id of the client's data key row.
    pub key_id: &'a str,
}

impl SealContext<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96);
        for part in [
            "booking-client-v1",
            self.tenant_id,
            self.booking_id,
            self.key_id,
        ] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// `details` sealed for the row `context` names.
pub fn seal(
    key: &DataKey,
    context: SealContext<'_>,
    details: &ClientDetails,
) -> Result<Vec<u8>, KeyError> {
    let plain = serde_json::to_vec(details).expect("client details serialize");
    let mut out = vec![FORMAT_V1];
    out.extend(keys::seal(&key.aead(), &context.aad(), &plain)?);
    Ok(out)
}

/// The details sealed in `sealed`, if it was sealed for `context` under `key` and not altered.
pub fn open(
    key: &DataKey,
    context: SealContext<'_>,
    sealed: &[u8],
) -> Result<ClientDetails, KeyError> {
    match sealed.split_first() {
        Some((&FORMAT_V1, rest)) => {
            let plain = keys::open(&key.aead(), &context.aad(), rest)?;
            serde_json::from_slice(&plain).map_err(|_| KeyError::Refused)
        }
        _ => Err(KeyError::Refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> ClientDetails {
        ClientDetails {
            name: Some("Jo Bloggs".into()),
            email: Some("jo@example.test".into()),
            phone: None,
            client_id: Some("515".into()),
        }
    }

    fn ctx<'a>(tenant: &'a str, booking: &'a str) -> SealContext<'a> {
        SealContext {
            tenant_id: tenant,
            booking_id: booking,
            key_id: "k1",
        }
    }

    #[test]
    fn sealed_details_open_only_for_their_row_and_key() {
        let key = DataKey::generate().expect("key");
        let sealed = seal(&key, ctx("claire", "b1"), &details()).expect("seal");
        assert!(!String::from_utf8_lossy(&sealed).contains("example.test"));
        assert_eq!(open(&key, ctx("claire", "b1"), &sealed), Ok(details()));
        assert_eq!(
            open(&key, ctx("claire", "b2"), &sealed),
            Err(KeyError::Refused)
        );
        assert_eq!(
            open(&key, ctx("tokyo", "b1"), &sealed),
            Err(KeyError::Refused)
        );
        let other = DataKey::generate().expect("key");
        assert_eq!(
            open(&other, ctx("claire", "b1"), &sealed),
            Err(KeyError::Refused)
        );
        let mut altered = sealed.clone();
        *altered.last_mut().expect("bytes") ^= 1;
        assert_eq!(
            open(&key, ctx("claire", "b1"), &altered),
            Err(KeyError::Refused)
        );
        assert_eq!(open(&key, ctx("claire", "b1"), &[]), Err(KeyError::Refused));
    }

    #[test]
    fn context_fields_cannot_be_shifted_into_each_other() {
        let key = DataKey::generate().expect("key");
        let a = SealContext {
            tenant_id: "ab",
            booking_id: "c",
            key_id: "k",
        };
        let b = SealContext {
            tenant_id: "a",
            booking_id: "bc",
            key_id: "k",
        };
        let sealed = seal(&key, a, &details()).expect("seal");
        assert_eq!(open(&key, b, &sealed), Err(KeyError::Refused));
    }
}
