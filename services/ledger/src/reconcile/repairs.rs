//! Repairs: a booking reconciliation found missing or different is put back on the webhook
//! stream (`Billing-Auth: reconciliation-repair`), where the ledger's consumer confirms it with
//! SimplyBook's admin API and records it like any event.

use std::time::Duration;

use async_nats::jetstream;
use billing_domain::TenantConfig;
use billing_runtime::Subjects;
use billing_runtime::nats::{
    AUTH_RECONCILIATION_REPAIR, HDR_AUTH, HDR_EVENT_ID, HDR_RECEIVED_AT, HDR_SOURCE, HDR_TENANT,
};
use chrono::Utc;

/// A gap's `repair` when the booking was put on the webhook stream.
pub(super) const REPAIR_SENT: &str = "sent";

/// Puts repairs on the webhook stream, where the ledger's consumer confirms them.
#[derive(Clone)]
pub struct Repairs {
    js: jetstream::Context,
    subjects: Subjects,
}

impl Repairs {
    pub fn new(js: jetstream::Context, subjects: Subjects) -> Self {
        Repairs { js, subjects }
    }

    /// `sent`, or why the repair was not put on the stream.
    pub(super) async fn send(&self, tenant: &TenantConfig, booking_id: &str, run: &str) -> String {
        let event_id = format!("repair:{}:{booking_id}:{run}", tenant.id);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event_id.as_str());
        headers.insert(HDR_EVENT_ID, event_id.as_str());
        headers.insert(HDR_SOURCE, "simplybook");
        headers.insert(HDR_AUTH, AUTH_RECONCILIATION_REPAIR);
        headers.insert(HDR_TENANT, tenant.id.as_str());
        headers.insert(HDR_RECEIVED_AT, Utc::now().to_rfc3339().as_str());
        let body = serde_json::json!({"booking_id": booking_id}).to_string();
        let subject = self.subjects.simplybook(tenant.id.as_str());
        let published = async {
            self.js
                .publish_with_headers(subject, headers, body.into())
                .await?
                .await
                .map_err(async_nats::Error::from)
        };
        match tokio::time::timeout(Duration::from_secs(10), published).await {
            Ok(Ok(_)) => REPAIR_SENT.into(),
            Ok(Err(err)) => format!("not repaired: the webhook stream refused it: {err}"),
            Err(_) => "not repaired: the webhook stream timed out".into(),
        }
    }
}
