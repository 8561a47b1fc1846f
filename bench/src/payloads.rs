//! The requests the benchmark sends: genuine, freshly signed SimplyBook booking payloads and
//! Stripe events, each with its own identity so none is a duplicate.

use billing_domain::standard_webhooks::SigningKey;
use billing_domain::stripe_signature;
use bytes::Bytes;

/// Obviously fake secrets, used only by the benchmark's own tenant and ingest.
pub const SIMPLYBOOK_SECRET: &str = "whsec_YmVuY2gtb25seS1mYWtlLXNpbXBseWJvb2stc2VjcmV0";
pub const STRIPE_SECRET: &str = "whsec_bench_only_fake_stripe_secret";
pub const TENANT: &str = "bench";

/// One HTTP request, ready to send.
pub struct Request {
    pub path: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

pub struct Payloads {
    key: SigningKey,
    /// Distinguishes runs, so a second run against the same stream is not deduplicated.
    run: String,
}

impl Payloads {
    pub fn new(run: &str) -> anyhow::Result<Self> {
        Ok(Payloads {
            key: SigningKey::parse(SIMPLYBOOK_SECRET)?,
            run: run.to_string(),
        })
    }

    /// Request `n`: even numbers are SimplyBook bookings, odd ones Stripe events.
    pub fn request(&self, n: u64, now: i64) -> Request {
        if n.is_multiple_of(2) {
            self.simplybook(n, now)
        } else {
            self.stripe(n, now)
        }
    }

    /// A booking as the signed forwarder sends it (about 1 KB). Built with `format!` rather
    /// than a JSON tree so the load generator spends its CPU on sending, not on building.
    fn simplybook(&self, n: u64, now: i64) -> Request {
        let body = format!(
            r#"{{"booking_id":"{n}","booking_hash":"{n:032x}","price":"120.00","currency":"AUD","datetime":"2026-10-14 10:00:00","status":"confirmed","service":{{"id":"7","name":"Remedial massage, 60 minutes","duration":60}},"provider":{{"name":"Claire Hamilton"}},"client":{{"name":"Bench Client","email":"bench.client@example.test","phone":"0400 000 000"}},"notes":"Prefers the quiet room. Allergic to lavender oil. Parking at the back.","additional_fields":[{{"name":"How did you hear about us?","value":"A friend recommended the clinic"}},{{"name":"Health conditions","value":"None reported at the time of booking"}},{{"name":"Consent to treatment","value":"Yes, read and accepted the policy"}}],"location":{{"name":"Surry Hills clinic","address":"1 Example Street, Sydney NSW 2010"}},"created_at":"2026-10-01 09:12:44","payment":{{"processor":"stripe","deposit":"24.00","status":"paid"}}}}"#
        );
        let id = format!("{}-{n}", self.run);
        let signature = self.key.sign(&id, now, body.as_bytes());
        Request {
            path: "/api/v1/webhooks/simplybook/bench",
            headers: vec![
                ("webhook-id", id),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", signature),
            ],
            body: Bytes::from(body),
        }
    }

    /// A Stripe event of the kind invoicing consumes (about 1 KB).
    fn stripe(&self, n: u64, now: i64) -> Request {
        let run = &self.run;
        let period_start = now - 2_592_000;
        let body = format!(
            r#"{{"id":"evt_{run}x{n}","object":"event","api_version":"2024-06-20","created":{now},"type":"invoice.paid","livemode":false,"pending_webhooks":1,"request":{{"id":null,"idempotency_key":null}},"data":{{"object":{{"id":"in_{n}","object":"invoice","amount_due":3200,"amount_paid":3200,"amount_remaining":0,"currency":"aud","customer":"cus_BenchOnlyFake","number":"CLAIRE-2026-0007","status":"paid","collection_method":"send_invoice","hosted_invoice_url":"https://invoice.stripe.com/i/bench_only_fake","metadata":{{"invoice_id":"0192f0c0-0000-7000-8000-000000000000","tenant":"claire"}},"period_start":{period_start},"period_end":{now},"lines":{{"object":"list","data":[{{"id":"il_{n}","amount":3200,"currency":"aud","description":"Platform fees, October 2026"}}]}}}}}}}}"#
        );
        let signature = stripe_signature::sign(STRIPE_SECRET, now, body.as_bytes());
        Request {
            path: "/api/v1/webhooks/stripe",
            headers: vec![("stripe-signature", signature)],
            body: Bytes::from(body),
        }
    }
}
