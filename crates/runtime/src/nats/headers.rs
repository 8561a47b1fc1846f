//! The headers that carry verified metadata next to an event's raw body (where it came from, its
//! tenant and identity, how ingest authenticated it), the ones a dead letter adds, and reading or
//! copying them.

use async_nats::HeaderMap;

/// Header: where the event came from (`simplybook`, `stripe`).
pub const HDR_SOURCE: &str = "Billing-Source";
/// Header: the tenant the event belongs to.
pub const HDR_TENANT: &str = "Billing-Tenant";
/// Header: the event's identity at its source, also used as `Nats-Msg-Id`.
pub const HDR_EVENT_ID: &str = "Billing-Event-Id";
/// Header: how ingest authenticated the request (`standard-webhooks`).
pub const HDR_AUTH: &str = "Billing-Auth";
/// Header: when ingest received the request (RFC 3339, UTC).
pub const HDR_RECEIVED_AT: &str = "Billing-Received-At";
/// Header: when the sender signed the event (its verified timestamp, Unix seconds). The ledger
/// orders a booking's states by it, so a late-arriving older event cannot undo a newer one.
pub const HDR_SENT_AT: &str = "Billing-Sent-At";
/// Header: the event's type at its source (e.g. Stripe's `invoice.paid`).
pub const HDR_EVENT_TYPE: &str = "Billing-Event-Type";
/// `Billing-Auth` of a signed rich booking payload (Standard Webhooks).
pub const AUTH_STANDARD_WEBHOOKS: &str = "standard-webhooks";
/// `Billing-Auth` of a SimplyBook.me native callback (secret token in the URL; details unsigned).
pub const AUTH_CALLBACK_TOKEN: &str = "callback-token";
/// `Billing-Auth` of a booking reconciliation found missing or different: the body names the
/// booking only, and the ledger confirms it through SimplyBook's Company Administration API.
pub const AUTH_RECONCILIATION_REPAIR: &str = "reconciliation-repair";
/// `Billing-Auth` of a Stripe event (`Stripe-Signature`).
pub const AUTH_STRIPE_SIGNATURE: &str = "stripe-signature";
/// Header on dead letters: why the event could not be processed.
pub const HDR_DLQ_REASON: &str = "Billing-Dlq-Reason";
/// Header on dead letters: the subject the event was first published on.
pub const HDR_DLQ_SUBJECT: &str = "Billing-Dlq-Subject";

/// The header name JetStream deduplicates by.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// A header value from a JetStream message, if present.
pub fn header<'a>(msg: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

/// A copy of `headers` without the named ones (names compare case-insensitively).
pub fn headers_without(headers: Option<&HeaderMap>, skip: &[&str]) -> HeaderMap {
    let mut copy = HeaderMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let name_bytes: &[u8] = name.as_ref();
        if skip
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(name_bytes))
        {
            continue;
        }
        for value in values {
            copy.append(name.clone(), value.as_str());
        }
    }
    copy
}
