//! Turning a webhook message into a booking to apply: a signed payload carries it; a SimplyBook
//! callback, or a repair sent by reconciliation, is confirmed with SimplyBook first.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use billing_domain::Tenants;
use billing_domain::callback::Callback;
use billing_domain::simplybook::DetailsError;
use billing_runtime::nats::{AUTH_CALLBACK_TOKEN, AUTH_RECONCILIATION_REPAIR, HDR_AUTH, header};
use billing_runtime::tenants::LiveTenants;
use billing_runtime::{Subjects, trace};
use tracing::Instrument;

use super::message::{Meta, sent_at};
use crate::incoming::{self, NewBooking};
use crate::outcome::Reject;
use crate::simplybook::{FetchError, SimplyBook};

/// How long an event for a tenant this replica does not know is retried before it is
/// dead-lettered, by default. Ingest accepted it, so ingest's files named the tenant: a tenant onboarded a
/// moment ago, whose files reach this replica later (a Kubernetes Secret update reaches each
/// pod on its own kubelet's schedule, up to a minute or two apart).
pub(super) const UNKNOWN_TENANT_GRACE: Duration = Duration::from_secs(600);

/// Why an event did not become a booking to apply.
pub(super) enum Unapplied {
    /// It never can: dead-letter it.
    Reject(Reject),
    /// Not now (SimplyBook unavailable): try again later.
    Retry(String),
}

/// Decodes the webhook consumer's messages.
pub(super) struct Decoder {
    pub(super) subjects: Subjects,
    pub(super) tenants: LiveTenants,
    pub(super) simplybook: Arc<SimplyBook>,
    pub(super) unknown_tenant_grace: Duration,
}

impl Decoder {
    /// A booking from a message: a signed payload carries it; a callback is confirmed with
    /// SimplyBook first.
    pub(super) async fn decode(&self, msg: &jetstream::Message) -> Result<NewBooking, Unapplied> {
        let meta = Meta::of(msg);
        // Each event of a batch continues the trace its headers carry (ingest's request).
        let span = trace::span(|| tracing::info_span!("ledger.decode", event_id = %meta.event_id));
        trace::follow_nats(&span, msg.headers.as_ref());
        self.decode_event(msg, meta).instrument(span).await
    }

    /// The tenants in force, with `tenant_id` among them. A tenant not known is looked for again
    /// in the files at once (it may have been onboarded a moment ago); one still not known is
    /// retried for `unknown_tenant_grace` after the event was stored, then dead-lettered
    /// (replayable once the tenant is configured).
    fn tenants_naming(
        &self,
        tenant_id: &str,
        msg: &jetstream::Message,
    ) -> Result<Arc<Tenants>, Unapplied> {
        let tenants = self.tenants.current();
        if tenants.get(tenant_id).is_some() {
            return Ok(tenants);
        }
        // A small file read, at most once a second across the consumer.
        self.tenants.refresh();
        let tenants = self.tenants.current();
        let Some(unknown) = incoming::tenant(&tenants, tenant_id).err() else {
            return Ok(tenants);
        };
        let stored_secs_ago = msg
            .info()
            .map(|info| chrono::Utc::now().timestamp() - info.published.unix_timestamp())
            .unwrap_or(i64::MAX);
        if u64::try_from(stored_secs_ago)
            .is_ok_and(|secs| secs < self.unknown_tenant_grace.as_secs())
        {
            return Err(Unapplied::Retry(unknown.message));
        }
        Err(Unapplied::Reject(unknown))
    }

    async fn decode_event(
        &self,
        msg: &jetstream::Message,
        meta: Meta<'_>,
    ) -> Result<NewBooking, Unapplied> {
        // The subject is what NATS's permissions vouch for (only ingest, and the ledger's own
        // replays and repairs, may publish there); a tenant header that disagrees is forged.
        if msg.subject.as_str() != self.subjects.simplybook(meta.tenant) {
            return Err(Unapplied::Reject(Reject::new(
                "tenant_mismatch",
                format!(
                    "the tenant header says {:?} but the event was published on {}",
                    meta.tenant, msg.subject
                ),
            )));
        }
        let tenants = self.tenants_naming(meta.tenant, msg)?;
        match header(msg, HDR_AUTH) {
            Some(AUTH_CALLBACK_TOKEN) => {
                return self
                    .confirm_callback(&tenants, meta.tenant, &meta.event_id, &msg.payload)
                    .await;
            }
            Some(AUTH_RECONCILIATION_REPAIR) => {
                return self
                    .confirm_repair(&tenants, meta.tenant, &meta.event_id, &msg.payload)
                    .await;
            }
            _ => {}
        }
        {
            incoming::decode(
                &tenants,
                meta.tenant,
                &meta.event_id,
                sent_at(msg),
                &msg.payload,
            )
            .map_err(Unapplied::Reject)
        }
    }

    /// A native callback names a booking without its details: fetch them from SimplyBook, which
    /// both proves the callback genuine (the sign covers the booking hash) and gives the
    /// booking's current state, so duplicates and out-of-order callbacks converge.
    async fn confirm_callback(
        &self,
        tenants: &Tenants,
        tenant_id: &str,
        event_id: &str,
        body: &[u8],
    ) -> Result<incoming::NewBooking, Unapplied> {
        let tenant = incoming::tenant(tenants, tenant_id).map_err(Unapplied::Reject)?;
        let callback = Callback::parse(body)
            .map_err(|e| Unapplied::Reject(Reject::new("malformed_payload", e.to_string())))?;
        self.simplybook
            .admit_lookup(tenant)
            .map_err(|e| fetch_unapplied(e, &callback.booking_id))?;
        // The fetched details are SimplyBook's state as of now.
        let as_of = chrono::Utc::now();
        let resolved = self
            .simplybook
            .session(tenant)
            .confirm(&callback)
            .await
            .map_err(|e| fetch_unapplied(e, &callback.booking_id))?;
        if resolved.payload.booking_id != callback.booking_id {
            return Err(Unapplied::Reject(Reject::new(
                "unconfirmed_callback",
                format!(
                    "SimplyBook answered booking {} for callback booking {}",
                    resolved.payload.booking_id, callback.booking_id
                ),
            )));
        }
        incoming::resolved(tenant, event_id, as_of, resolved, None).map_err(Unapplied::Reject)
    }

    /// A booking reconciliation found missing or different: the message names it only, and
    /// SimplyBook's Company Administration API says what it is now, so a forged repair message
    /// can do no more than make the ledger look the booking up.
    async fn confirm_repair(
        &self,
        tenants: &Tenants,
        tenant_id: &str,
        event_id: &str,
        body: &[u8],
    ) -> Result<incoming::NewBooking, Unapplied> {
        #[derive(serde::Deserialize)]
        struct Repair {
            booking_id: String,
        }
        let tenant = incoming::tenant(tenants, tenant_id).map_err(Unapplied::Reject)?;
        let repair: Repair = serde_json::from_slice(body)
            .ok()
            .filter(|r: &Repair| billing_domain::callback::is_token_like(&r.booking_id))
            .ok_or_else(|| {
                Unapplied::Reject(Reject::new(
                    "malformed_payload",
                    "a repair names no valid booking_id",
                ))
            })?;
        self.simplybook
            .admit_lookup(tenant)
            .map_err(|e| fetch_unapplied(e, &repair.booking_id))?;
        let as_of = chrono::Utc::now();
        let resolved = self
            .simplybook
            .session(tenant)
            .admin_details(&repair.booking_id)
            .await
            .map_err(|e| fetch_unapplied(e, &repair.booking_id))?;
        if resolved.payload.booking_id != repair.booking_id {
            return Err(Unapplied::Reject(Reject::new(
                "unconfirmed_callback",
                format!(
                    "SimplyBook answered booking {} for repair of booking {}",
                    resolved.payload.booking_id, repair.booking_id
                ),
            )));
        }
        let note =
            Some("repair: reconciliation with SimplyBook's Company Administration API".into());
        incoming::resolved(tenant, event_id, as_of, resolved, note).map_err(Unapplied::Reject)
    }
}

/// What a failed SimplyBook lookup means for the event.
fn fetch_unapplied(e: FetchError, booking_id: &str) -> Unapplied {
    match e {
        FetchError::Unavailable(reason) => Unapplied::Retry(reason),
        FetchError::Refused(reason)
        | FetchError::NotFound(reason)
        | FetchError::FeatureOff(reason)
        | FetchError::NotPossible(reason) => Unapplied::Reject(Reject::new(
            "unconfirmed_callback",
            format!("SimplyBook does not confirm booking {booking_id}: {reason}"),
        )),
        FetchError::Details(DetailsError::PriceUnknown(reason)) => {
            Unapplied::Reject(Reject::new("price_unknown", reason))
        }
        FetchError::Details(DetailsError::Payload(e)) => {
            Unapplied::Reject(incoming::payload_reject(e))
        }
    }
}
