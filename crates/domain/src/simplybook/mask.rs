//! SimplyBook answers with every client detail masked, so a live account's shapes can be kept
//! as fixtures (the go-live check prints them).

/// Members whose every value, at any depth, is masked: a client object, comments, intake-form
/// answers, and who changed a booking and from where (`history`).
const PERSONAL_SUBTREES: [&str; 4] = ["client", "comments", "additional_fields", "history"];

/// Members that hold a client's personal data in SimplyBook's answers.
const PERSONAL: [&str; 10] = [
    "client",
    "client_name",
    "client_email",
    "client_phone",
    "client_address1",
    "client_address2",
    "client_city",
    "client_zip",
    "comment",
    "value",
];

/// A copy of an answer with every client name, email, phone, address, comment and form answer,
/// and every trace of who changed a booking, replaced by a mask at any depth, so a live
/// account's shapes can be kept as fixtures. Types are kept where they matter for a shape:
/// `null` stays `null`, an empty string stays empty, containers keep their members.
pub fn mask_personal(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let masked = match v {
                        Value::Object(_) | Value::Array(_)
                            if PERSONAL_SUBTREES.contains(&k.as_str()) =>
                        {
                            mask_all(v, k)
                        }
                        Value::Object(_) | Value::Array(_) => mask_personal(v),
                        _ if PERSONAL.contains(&k.as_str()) => mask_scalar(v, k),
                        _ => v.clone(),
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_personal).collect()),
        other => other.clone(),
    }
}

fn mask_scalar(v: &serde_json::Value, key: &str) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Null => Value::Null,
        Value::String(s) if s.is_empty() => Value::String(String::new()),
        _ => Value::String(format!("<masked {key}>")),
    }
}

/// Every scalar under `v` masked, its structure kept.
fn mask_all(v: &serde_json::Value, key: &str) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mask_all(v, k)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| mask_all(i, key)).collect()),
        scalar => mask_scalar(scalar, key),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::simplybook::testing::fixture;

    #[test]
    fn masking_leaves_no_client_detail_and_keeps_the_shape() {
        let value: serde_json::Value =
            serde_json::from_str(fixture!("details/confirmed_plain")).expect("json");
        let masked = mask_personal(&value);
        let text = masked.to_string();
        for personal in [
            "Test Client",
            "test.client@example.test",
            "+61 400 000 000",
            "192.0.2.10",
        ] {
            assert!(!text.contains(personal), "{personal} survived masking");
        }
        assert_eq!(masked["client_name"], "<masked client_name>");
        assert_eq!(masked["price"], serde_json::json!([]));
        assert_eq!(masked["event_name"], value["event_name"]);
        assert_eq!(masked["history"][0]["login"], "<masked login>");
        assert_eq!(
            masked["history"][0]["id"], "<masked id>",
            "history is masked whole"
        );

        // Members the fixtures show empty, filled in: comments, form answers, a client object.
        let mut filled = value.clone();
        filled["comments"] = serde_json::json!([{"text": "Back pain since March"}]);
        filled["additional_fields"] =
            serde_json::json!([{"field_title": "Allergies", "value": "Peanuts"}]);
        filled["comment"] = serde_json::json!("Please call Jane on 0400 111 222");
        filled["client"] = serde_json::json!({"name": "Jane Doe", "email": "jane@example.test"});
        let text = mask_personal(&filled).to_string();
        for personal in [
            "Back pain",
            "Peanuts",
            "Jane",
            "0400 111 222",
            "jane@example.test",
        ] {
            assert!(!text.contains(personal), "{personal} survived masking");
        }
    }
}
