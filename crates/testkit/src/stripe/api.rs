//! The endpoints the fake serves and the objects it keeps, in the shapes of Stripe's spec
//! (sources in the parent module's docs).

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Inner, MAX_NUMBER_LEN, Request};

pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    /// Whether the endpoint had begun (the answer is then saved under the idempotency key).
    pub(super) began: bool,
}

pub(super) fn invalid(param: &str, message: &str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        body: error("invalid_request_error", None, Some(param), message),
        began: false,
    }
}

pub(super) fn refused(message: &str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        body: error("invalid_request_error", None, None, message),
        began: true,
    }
}

pub(super) fn missing(kind: &str, id: &str) -> Refusal {
    Refusal {
        status: StatusCode::NOT_FOUND,
        body: error(
            "invalid_request_error",
            Some("resource_missing"),
            Some("id"),
            &format!("No such {kind}: '{id}'"),
        ),
        began: true,
    }
}

pub(super) fn route(
    inner: &mut Inner,
    req: &Request,
    now: DateTime<Utc>,
) -> Result<Value, Refusal> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let form = &req.form;
    match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "customers"]) => Ok(create_customer(inner, form)),
        ("GET", ["v1", "customers"]) => {
            Ok(list(&inner.customers, &req.query, "/v1/customers", |c| {
                req.query.get("email").is_none_or(|e| c["email"] == *e)
            }))
        }
        ("POST", ["v1", "invoices"]) => create_invoice(inner, form, now),
        ("GET", ["v1", "invoices"]) => Ok(list(&inner.invoices, &req.query, "/v1/invoices", |i| {
            req.query
                .get("customer")
                .is_none_or(|c| i["customer"] == *c)
        })),
        ("GET", ["v1", "invoices", id]) => inner
            .invoices
            .get(*id)
            .cloned()
            .ok_or_else(|| missing("invoice", id)),
        ("DELETE", ["v1", "invoices", id]) => {
            match inner.invoices.get(*id).map(|i| i["status"] == "draft") {
                Some(true) => {
                    inner.invoices.remove(*id);
                    inner.items.retain(|_, item| item["invoice"] != *id);
                    Ok(json!({"id": id, "object": "invoice", "deleted": true}))
                }
                Some(false) => Err(refused("You can only delete draft invoices.")),
                None => Err(missing("invoice", id)),
            }
        }
        ("POST", ["v1", "invoices", id, action]) => invoice_action(inner, id, action),
        ("POST", ["v1", "invoiceitems"]) => create_item(inner, form),
        ("GET", ["v1", "invoiceitems"]) => {
            Ok(list(&inner.items, &req.query, "/v1/invoiceitems", |i| {
                req.query.get("invoice").is_none_or(|v| i["invoice"] == *v)
            }))
        }
        _ => Err(Refusal {
            status: StatusCode::NOT_FOUND,
            body: error(
                "invalid_request_error",
                None,
                None,
                &format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or \
                     we can help at https://support.stripe.com/.",
                    req.method, req.path
                ),
            ),
            began: false,
        }),
    }
}

pub(super) fn invoice_action(inner: &mut Inner, id: &str, action: &str) -> Result<Value, Refusal> {
    let total: i64 = inner
        .items
        .values()
        .filter(|i| i["invoice"] == id)
        .filter_map(|i| i["amount"].as_i64())
        .sum();
    let invoice = inner
        .invoices
        .get_mut(id)
        .ok_or_else(|| missing("invoice", id))?;
    let status = invoice["status"].as_str().unwrap_or_default().to_string();
    match (action, status.as_str()) {
        ("finalize", "draft") => {
            invoice["status"] = json!("open");
            for field in ["total", "subtotal", "amount_due", "amount_remaining"] {
                invoice[field] = json!(total);
            }
            invoice["hosted_invoice_url"] = json!(format!("https://invoice.stripe.test/{id}"));
            if invoice["number"].is_null() {
                invoice["number"] = json!(format!("STRIPE-{id}"));
            }
        }
        ("finalize", _) => return Err(refused("This invoice is already finalized")),
        ("send", "open") => {
            inner.sent.insert(id.to_string());
        }
        ("void", "open") => invoice["status"] = json!("void"),
        _ => return Err(refused(&format!("cannot {action} a {status} invoice"))),
    }
    Ok(inner.invoices.get(id).cloned().unwrap_or_default())
}

/// A page of `objects` that pass `keep`, newest first, after `starting_after`.
pub(super) fn list(
    objects: &BTreeMap<String, Value>,
    query: &HashMap<String, String>,
    url: &str,
    keep: impl Fn(&Value) -> bool,
) -> Value {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let matching = objects.iter().rev().filter(|(_, o)| keep(o));
    let after: Vec<&Value> = match query.get("starting_after") {
        Some(after) => matching
            .skip_while(|(id, _)| *id != after)
            .skip(1)
            .map(|(_, o)| o)
            .collect(),
        None => matching.map(|(_, o)| o).collect(),
    };
    let data: Vec<&Value> = after.iter().take(limit).copied().collect();
    json!({"object": "list", "data": data, "has_more": after.len() > limit, "url": url})
}

/// Stripe's error object (`components.schemas.error`).
pub(super) fn error(kind: &str, code: Option<&str>, param: Option<&str>, message: &str) -> Value {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    json!({ "error": error })
}

pub(super) fn next_id(inner: &mut Inner, prefix: &str) -> String {
    inner.next_id += 1;
    format!("{prefix}_fake{:06}", inner.next_id)
}

pub(super) fn metadata(form: &BTreeMap<String, String>) -> Value {
    let entries: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_string(), json!(v)))
        })
        .collect();
    Value::Object(entries)
}

pub(super) fn create_customer(inner: &mut Inner, form: &BTreeMap<String, String>) -> Value {
    let id = next_id(inner, "cus");
    let customer = json!({
        "id": id, "object": "customer", "created": 1_767_225_600, "livemode": false,
        "email": form.get("email"), "name": form.get("name"), "metadata": metadata(form),
    });
    inner.customers.insert(id, customer.clone());
    customer
}

pub(super) fn create_invoice(
    inner: &mut Inner,
    form: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Value, Refusal> {
    if let Some(number) = form.get("number")
        && number.chars().count() > MAX_NUMBER_LEN
    {
        return Err(invalid(
            "number",
            &format!("Invalid string: {number}; must be at most {MAX_NUMBER_LEN} characters"),
        ));
    }
    let due_date = match form.get("due_date") {
        Some(due) => match due.parse::<i64>() {
            Ok(due) if due > now.timestamp() => Some(due),
            _ => {
                return Err(invalid(
                    "due_date",
                    "Invalid timestamp: must be an integer Unix timestamp in the future.",
                ));
            }
        },
        None => None,
    };
    let customer = form.get("customer").cloned().unwrap_or_default();
    if !inner.customers.contains_key(&customer) {
        return Err(missing("customer", &customer));
    }
    let id = next_id(inner, "in");
    let invoice = json!({
        "id": id, "object": "invoice", "customer": customer, "status": "draft",
        "number": form.get("number"), "description": form.get("description"),
        "currency": form.get("currency").cloned().unwrap_or_else(|| "aud".into()),
        "collection_method": form.get("collection_method").cloned().unwrap_or_default(),
        "due_date": due_date,
        "days_until_due": form.get("days_until_due").and_then(|d| d.parse::<i64>().ok()),
        "metadata": metadata(form),
        "amount_due": 0, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": 0,
        "amount_shipping": 0, "attempt_count": 0, "attempted": false,
        "automatic_tax": {"enabled": false}, "created": now.timestamp(),
        "default_tax_rates": [], "discounts": [], "issuer": {"type": "self"},
        "lines": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/invoices/{id}/lines")},
        "livemode": false, "payment_settings": {}, "period_end": now.timestamp(),
        "period_start": now.timestamp(), "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "starting_balance": 0, "status_transitions": {},
        "subtotal": 0, "total": 0,
    });
    inner.invoices.insert(id, invoice.clone());
    Ok(invoice)
}

pub(super) fn create_item(
    inner: &mut Inner,
    form: &BTreeMap<String, String>,
) -> Result<Value, Refusal> {
    let invoice_id = form.get("invoice").cloned().unwrap_or_default();
    let amount: i64 = form
        .get("amount")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| invalid("amount", "Missing required param: amount."))?;
    match inner
        .invoices
        .get(&invoice_id)
        .map(|i| i["status"] == "draft")
    {
        None => return Err(missing("invoice", &invoice_id)),
        Some(false) => return Err(refused("items can only be added to draft invoices")),
        Some(true) => {}
    }
    let id = next_id(inner, "ii");
    let item = json!({
        "id": id, "object": "invoiceitem", "amount": amount,
        "currency": form.get("currency").cloned().unwrap_or_else(|| "aud".into()),
        "customer": form.get("customer"), "date": 1_767_225_600,
        "description": form.get("description"), "discountable": true, "invoice": invoice_id,
        "livemode": false, "metadata": metadata(form),
        "period": {"start": 1_767_225_600, "end": 1_767_225_600},
        "proration": false, "quantity": 1, "quantity_decimal": "1",
    });
    inner.items.insert(id, item.clone());
    Ok(item)
}
