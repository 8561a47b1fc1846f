//! Audit records of refused webhooks, published for the ledger's audit log.
//!
//! A refusal is always counted in metrics and logged. The audit record is published in the
//! background so it never delays the answer, and under its own rate limit per source: a flood of
//! forged requests must not turn into a flood of database writes. Records above the limit are
//! counted as dropped.

use async_nats::jetstream;
use billing_domain::TenantId;
use billing_proto::events::WebhookRejectedV1;
use billing_runtime::Subjects;
use chrono::{DateTime, Utc};
use prost::Message;

use billing_runtime::limiter::RateLimiter;

pub struct RejectionAudit {
    js: jetstream::Context,
    subjects: Subjects,
    limiter: RateLimiter,
}

/// One refused request, as the audit log keeps it.
pub struct Rejection<'a> {
    pub source: &'static str,
    pub tenant: &'a str,
    pub reason: &'static str,
    pub body_sha256: String,
    pub http_status: u16,
    pub received_at: DateTime<Utc>,
}

impl RejectionAudit {
    pub fn new(js: jetstream::Context, subjects: Subjects, limiter: RateLimiter) -> Self {
        RejectionAudit {
            js,
            subjects,
            limiter,
        }
    }

    /// Publishes the record in the background, within the audit rate limit.
    pub fn record(&self, rejection: Rejection<'_>) {
        if !self.limiter.allow(rejection.source) {
            metrics::counter!("ingest_rejection_audits_total", "result" => "dropped_rate_limited")
                .increment(1);
            return;
        }
        // The URL's tenant is attacker-controlled: keep it only when it is a well-formed id.
        let tenant_id = rejection
            .tenant
            .parse::<TenantId>()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let record = WebhookRejectedV1 {
            rejection_id: uuid::Uuid::now_v7().to_string(),
            source: rejection.source.to_string(),
            tenant_id,
            reason: rejection.reason.to_string(),
            body_sha256: rejection.body_sha256,
            http_status: u32::from(rejection.http_status),
            received_at: Some(billing_proto::convert::timestamp(rejection.received_at)),
        };
        let subject = self.subjects.rejected(rejection.source);
        let js = self.js.clone();
        tokio::spawn(async move {
            let published = match js.publish(subject, record.encode_to_vec().into()).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            let result = match published {
                Ok(()) => "published",
                Err(err) => {
                    tracing::warn!(error = %err, "publishing a rejection audit record failed");
                    "failed"
                }
            };
            metrics::counter!("ingest_rejection_audits_total", "result" => result).increment(1);
        });
    }
}
