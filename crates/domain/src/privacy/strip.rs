//! Raw webhook bodies with the personal data taken out, for dead letters kept past their replay
//! window: a client's details (SimplyBook's and our forwarder's `client` members, every
//! `client_*` field) and a Stripe customer's contact details are masked, everything else (ids,
//! amounts, statuses, the shape) is kept so the dead letter can still be read and replayed.

use serde_json::Value;

use crate::simplybook::mask_personal;

/// Stripe's members that hold a person's contact details (invoice, customer, charge and payment
/// method objects); the value is replaced, the member kept.
const STRIPE_PERSONAL: [&str; 9] = [
    "customer_email",
    "customer_name",
    "customer_phone",
    "customer_address",
    "customer_shipping",
    "billing_details",
    "receipt_email",
    "email",
    "phone",
];

fn mask_stripe(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if STRIPE_PERSONAL.contains(&k.as_str()) && !v.is_null() {
                        Value::String(format!("<removed {k}>"))
                    } else {
                        mask_stripe(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(mask_stripe).collect()),
        other => other,
    }
}

/// `body` with every personal member masked; `None` when it is not JSON (its contents cannot be
/// told apart, so nothing of it may be kept).
pub fn strip_personal(body: &[u8]) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let stripped = mask_stripe(mask_personal(&value));
    Some(serde_json::to_vec(&stripped).expect("a JSON value serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_booking_keeps_its_money_and_loses_its_client() {
        let body = br#"{"booking_id":"9001","price":"150.00","service":{"name":"Massage"},
            "client":{"name":"Jo Bloggs","email":"jo@example.test","phone":"0400 111 222"}}"#;
        let stripped = strip_personal(body).expect("json");
        let text = String::from_utf8(stripped.clone()).expect("utf-8");
        for personal in ["Jo Bloggs", "jo@example.test", "0400"] {
            assert!(!text.contains(personal), "{text}");
        }
        let v: Value = serde_json::from_slice(&stripped).expect("json");
        assert_eq!(v["price"], "150.00");
        assert_eq!(v["booking_id"], "9001");
        assert_eq!(v["service"]["name"], "Massage");
    }

    #[test]
    fn a_stripe_event_loses_its_customers_contact_details() {
        let body = br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1",
            "amount_paid":3200,"customer_email":"claire@example.test","customer_name":"Claire",
            "customer_address":{"line1":"1 Main St"},"metadata":{"invoice_id":"x"}}}}"#;
        let stripped = strip_personal(body).expect("json");
        let text = String::from_utf8(stripped).expect("utf-8");
        for personal in ["claire@example.test", "\"Claire\"", "1 Main St"] {
            assert!(!text.contains(personal), "{text}");
        }
        assert!(
            text.contains("\"amount_paid\":3200") && text.contains("in_1"),
            "{text}"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_not_kept() {
        assert_eq!(strip_personal(b"name=Jo&email=jo%40example.test"), None);
    }
}
