//! Stripe's invoice events (`invoice.finalized`, `invoice.paid`, `invoice.payment_failed`,
//! `invoice.voided`), applied once per event id and only when bound to our records: the invoice
//! that `metadata.invoice_id` names (or, without it, the one Stripe's invoice id is stored on)
//! belongs to a tenant in Stripe mode, was issued through Stripe, has exactly the event's
//! Stripe invoice id stored, and the event's currency and amounts agree with ours. Anything
//! else is refused whole (nothing changes), recorded with its reason in `stripe_events`, and
//! raises `alerts.stripe_event_refused`.

use billing_domain::Currency;
use billing_proto::convert::timestamp;
use billing_proto::events::AlertV1;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::Lifecycle;
use crate::store::{InvoiceRow, InvoiceStatus, InvoicingMode, PaymentMethod, StripeOutcome};
use crate::stripe::{from_minor_units, minor_units};

/// The Stripe events invoicing acts on; others are recorded as ignored.
pub const HANDLED_STRIPE_EVENTS: [&str; 4] = [
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
];

/// The alert a refused event raises (`alerts.stripe_event_refused`).
pub const REFUSED_ALERT: &str = "stripe_event_refused";

/// The parts of a Stripe `invoice.*` event invoicing acts on, as the event states them.
#[derive(Debug, Clone, Default)]
pub struct StripeInvoiceEvent {
    pub event_id: String,
    pub event_type: String,
    pub created: DateTime<Utc>,
    /// `data.object.id`; empty when absent.
    pub stripe_invoice_id: String,
    /// `metadata.invoice_id`, which invoicing sets when it creates the Stripe invoice.
    pub metadata_invoice_id: Option<String>,
    /// ISO code in Stripe's lower case, e.g. `aud`.
    pub currency: Option<String>,
    /// Minor units, as Stripe reports them.
    pub total: Option<i64>,
    /// Minor units: everything paid on this Stripe invoice so far.
    pub amount_paid: Option<i64>,
}

impl StripeInvoiceEvent {
    /// Our invoice the event names, if it names one; a name that is not our id is a refusal.
    fn named_invoice(&self) -> Result<Option<Uuid>, String> {
        match self.metadata_invoice_id.as_deref() {
            None | Some("") => Ok(None),
            Some(id) => id
                .parse()
                .map(Some)
                .map_err(|_| format!("metadata.invoice_id {} is not an invoice id", clip(id))),
        }
    }

    fn is_handled(&self) -> bool {
        HANDLED_STRIPE_EVENTS.contains(&self.event_type.as_str())
    }

    /// The type as a metric label: Stripe's many other types are counted as `other`.
    pub fn type_label(&self) -> &str {
        if self.is_handled() {
            &self.event_type
        } else {
            "other"
        }
    }
}

/// What became of an event, and why when it was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeDecision {
    pub outcome: StripeOutcome,
    pub reason: String,
}

impl StripeDecision {
    fn new(outcome: StripeOutcome, reason: impl Into<String>) -> Self {
        StripeDecision {
            outcome,
            reason: reason.into(),
        }
    }
}

impl Lifecycle {
    /// Applies one Stripe invoice event, once per event id, if it is bound to our records
    /// (module docs). Events only move an invoice forward (draft → issued → paid | void), so
    /// one that arrives late changes nothing.
    pub async fn apply_stripe_event(
        &self,
        event: &StripeInvoiceEvent,
        now: DateTime<Utc>,
    ) -> Result<StripeDecision, sqlx::Error> {
        let handled = event.is_handled();
        let named = event.named_invoice();
        let invoice_id = match &named {
            _ if !handled => None,
            Ok(Some(id)) => Some(*id),
            Ok(None) if !event.stripe_invoice_id.is_empty() => {
                self.store.by_stripe_id(&event.stripe_invoice_id).await?
            }
            _ => None,
        };
        let mut tx = self.store.begin().await?;
        if !self
            .store
            .claim_stripe_event(&mut tx, &event.event_id, &event.event_type, event.created)
            .await?
        {
            return Ok(StripeDecision::new(StripeOutcome::Duplicate, ""));
        }
        if event.event_type == "invoice.voided"
            && let Some(id) = invoice_id
            && let Some(unlocked) = self.store.invoice(id).await?
        {
            // Voiding takes the tenant's lock first, as a close and a manual void do.
            self.store.lock_tenant(&mut tx, &unlocked.tenant_id).await?;
        }
        let invoice = match invoice_id {
            Some(id) => self.store.lock_invoice(&mut tx, id).await?,
            None => None,
        };
        let recorded_id = invoice.as_ref().map(|i| i.id);
        let decision = match (handled, named, invoice) {
            (false, _, _) => StripeDecision::new(StripeOutcome::Ignored, ""),
            (true, Err(reason), _) => self.refuse(&mut tx, event, None, reason, now).await?,
            (true, Ok(Some(id)), None) => {
                let reason = format!("metadata.invoice_id {id} names no invoice of ours");
                self.refuse(&mut tx, event, None, reason, now).await?
            }
            (true, Ok(None), None) => StripeDecision::new(
                StripeOutcome::Unmatched,
                format!(
                    "no invoice of ours is Stripe invoice {} and the event names none",
                    clip(&event.stripe_invoice_id)
                ),
            ),
            (true, Ok(_), Some(invoice)) => {
                let mode = self.store.tenant_mode(&mut tx, &invoice.tenant_id).await?;
                match refusal(event, &invoice, mode) {
                    Some(reason) => {
                        self.refuse(&mut tx, event, Some(&invoice), reason, now)
                            .await?
                    }
                    None => {
                        StripeDecision::new(self.apply_to(&mut tx, invoice, event, now).await?, "")
                    }
                }
            }
        };
        self.store
            .stripe_event_outcome(
                &mut tx,
                &event.event_id,
                recorded_id,
                decision.outcome,
                &decision.reason,
            )
            .await?;
        tx.commit().await?;
        self.relay.notify_one();
        Ok(decision)
    }

    /// Raises `alerts.stripe_event_refused` in the transaction that records the refusal: one
    /// alert per invoice (or per day for events naming none) and day, however many events are
    /// refused; each is in `stripe_events` with its reason.
    async fn refuse(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &StripeInvoiceEvent,
        invoice: Option<&InvoiceRow>,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<StripeDecision, sqlx::Error> {
        metrics::counter!("invoicing_stripe_events_refused_total").increment(1);
        tracing::warn!(event = %clip(&event.event_id), kind = %event.event_type, reason, "stripe event refused");
        let (about, subject, tenant) = match invoice {
            Some(i) => (
                i.id.to_string(),
                format!("invoice {}", i.number),
                i.tenant_id.clone(),
            ),
            None => (
                "unknown".to_string(),
                "no invoice of ours".to_string(),
                String::new(),
            ),
        };
        let alert = AlertV1 {
            alert_id: format!("{REFUSED_ALERT}:{about}:{}", now.date_naive()),
            kind: REFUSED_ALERT.into(),
            severity: "critical".into(),
            summary: format!(
                "A Stripe {} event for {subject} was refused",
                event.event_type
            ),
            details: format!(
                "Stripe event {} ({}) was not applied and changed nothing: {reason}. If Stripe \
                 really collected a payment, check the invoice in Stripe's dashboard and record \
                 the payment with `billingctl invoices pay`. If the event is not Stripe's, \
                 someone can sign Stripe events or publish to NATS: rotate \
                 INGEST_STRIPE_WEBHOOK_SECRETS and check who holds NATS credentials. Further \
                 refusals today are in invoicing.stripe_events (outcome refused) without \
                 another alert.",
                clip(&event.event_id),
                event.event_type,
            ),
            tenant_id: tenant,
            source: "invoicing".into(),
            raised_at: Some(timestamp(now)),
        };
        self.store.raise_alert(tx, &alert).await?;
        Ok(StripeDecision::new(StripeOutcome::Refused, reason))
    }

    async fn apply_to(
        &self,
        tx: &mut sqlx::PgConnection,
        invoice: InvoiceRow,
        event: &StripeInvoiceEvent,
        now: DateTime<Utc>,
    ) -> Result<StripeOutcome, sqlx::Error> {
        let status = invoice.status;
        let stripe_ref = &event.stripe_invoice_id;
        // A draft Stripe finalized or settled was issued, whatever else the event says.
        let invoice = if status == InvoiceStatus::Draft
            && matches!(
                event.event_type.as_str(),
                "invoice.finalized" | "invoice.paid" | "invoice.payment_failed"
            ) {
            self.store
                .transition(
                    tx,
                    &invoice,
                    InvoiceStatus::Issued,
                    &format!("finalized in Stripe as {stripe_ref}"),
                    now,
                )
                .await?
        } else {
            invoice
        };
        Ok(match event.event_type.as_str() {
            "invoice.finalized" if status == InvoiceStatus::Draft => StripeOutcome::Applied,
            "invoice.paid" if invoice.status.is_open() => {
                let Some(currency) = invoice.currency() else {
                    return Ok(StripeOutcome::Ignored);
                };
                // Checked present and within the total by `refusal`.
                let paid = from_minor_units(event.amount_paid.unwrap_or(0), currency);
                let owed = paid - invoice.amount_paid;
                let (invoice, payment) = if owed > Decimal::ZERO {
                    match self
                        .store
                        .add_payment(
                            tx,
                            &invoice,
                            PaymentMethod::Stripe,
                            owed,
                            event.created.date_naive(),
                            stripe_ref,
                            &format!("stripe:{}", event.event_id),
                        )
                        .await?
                    {
                        Some((updated, payment)) => (updated, Some(payment)),
                        None => (invoice, None),
                    }
                } else {
                    (invoice, None)
                };
                metrics::counter!(
                    "invoicing_payments_recorded_total",
                    "method" => PaymentMethod::Stripe.as_str()
                )
                .increment(1);
                // Stripe says it is paid (perhaps from the customer's credit balance or out of
                // band, with less or nothing collected): it is paid.
                let reason = format!("paid in Stripe ({} collected)", format_paid(paid, currency));
                let invoice = self
                    .store
                    .transition(tx, &invoice, InvoiceStatus::Paid, &reason, now)
                    .await?;
                if let Some(payment) = payment {
                    self.store
                        .payment_recorded(tx, &invoice, &payment, now)
                        .await?;
                }
                StripeOutcome::Applied
            }
            "invoice.payment_failed" if invoice.status.is_open() => {
                self.store
                    .note(
                        tx,
                        &invoice,
                        "payment_failed",
                        "a payment attempt failed in Stripe",
                        now,
                    )
                    .await?;
                StripeOutcome::Applied
            }
            "invoice.voided" if !invoice.status.is_final() => {
                let voided = self
                    .store
                    .transition(tx, &invoice, InvoiceStatus::Void, "voided in Stripe", now)
                    .await?;
                self.store.remark_lines(tx, &voided).await?;
                StripeOutcome::Applied
            }
            _ => StripeOutcome::Stale,
        })
    }
}

/// Why `event` may not touch `invoice`, if it may not. `tenant_mode` is the tenant's mode now.
///
/// Amounts: Stripe's `amount_paid` is everything paid on its invoice so far, so it may not
/// exceed our total (what it adds to ours is what we have not recorded yet); a `total`, when
/// the event has one, must be ours exactly. `invoice.paid` must state `amount_paid`; every
/// handled event must state a currency, and it must be the invoice's.
fn refusal(
    event: &StripeInvoiceEvent,
    invoice: &InvoiceRow,
    tenant_mode: Option<InvoicingMode>,
) -> Option<String> {
    let number = &invoice.number;
    let tenant = &invoice.tenant_id;
    match tenant_mode {
        Some(InvoicingMode::Stripe) => {}
        Some(mode) => return Some(format!("tenant {tenant} is in {mode} mode, not stripe")),
        None => return Some(format!("tenant {tenant} has no billing profile")),
    }
    if invoice.invoicing_mode != InvoicingMode::Stripe {
        return Some(format!(
            "invoice {number} was issued in {} mode, not through Stripe",
            invoice.invoicing_mode
        ));
    }
    match invoice.stripe_invoice_id.as_deref() {
        None => return Some(format!("invoice {number} has no Stripe invoice")),
        Some(stored) if stored != event.stripe_invoice_id => {
            return Some(format!(
                "the event is about Stripe invoice {}, invoice {number} is Stripe invoice {stored}",
                clip(&event.stripe_invoice_id)
            ));
        }
        Some(_) => {}
    }
    let Some(currency) = invoice.currency() else {
        return Some(format!(
            "invoice {number} has an unknown currency {:?}",
            invoice.currency
        ));
    };
    match event.currency.as_deref() {
        None => return Some("the event states no currency".into()),
        Some(c) if !c.eq_ignore_ascii_case(currency.code()) => {
            return Some(format!(
                "the event's currency {} is not the invoice's {}",
                clip(c),
                currency.code()
            ));
        }
        Some(_) => {}
    }
    let Ok(total) = minor_units(invoice.total, currency) else {
        return Some(format!(
            "invoice {number}'s total is not in whole minor units"
        ));
    };
    let show = |minor: i64| format_paid(from_minor_units(minor, currency), currency);
    if let Some(stripe_total) = event.total
        && stripe_total != total
    {
        return Some(format!(
            "Stripe's total {} is not invoice {number}'s {}",
            show(stripe_total),
            show(total)
        ));
    }
    if event.event_type == "invoice.paid" {
        match event.amount_paid {
            None => return Some("the payment event states no amount_paid".into()),
            Some(paid) if paid < 0 => {
                return Some(format!("amount_paid {paid} is negative"));
            }
            Some(paid) if paid > total => {
                return Some(format!(
                    "amount paid {} is more than invoice {number}'s total {}",
                    show(paid),
                    show(total)
                ));
            }
            Some(_) => {}
        }
    }
    None
}

pub(super) fn format_paid(amount: Decimal, currency: Currency) -> String {
    format!("{} {}", currency.code(), currency.format(amount))
}

/// Text from an event, shortened for a reason or a log line.
fn clip(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::example_invoice as invoice;

    const OURS: &str = "in_ours";

    fn paid(amount: i64) -> StripeInvoiceEvent {
        StripeInvoiceEvent {
            event_id: "evt_1".into(),
            event_type: "invoice.paid".into(),
            stripe_invoice_id: OURS.into(),
            metadata_invoice_id: Some(Uuid::nil().to_string()),
            currency: Some("aud".into()),
            total: Some(3520),
            amount_paid: Some(amount),
            ..Default::default()
        }
    }

    #[test]
    fn an_event_bound_to_our_invoice_is_accepted() {
        let stripe = Some(InvoicingMode::Stripe);
        assert_eq!(refusal(&paid(3520), &invoice(), stripe), None);
        // Stripe's amount_paid is cumulative: less than the total is a partial payment.
        assert_eq!(refusal(&paid(0), &invoice(), stripe), None);
        let mut voided = paid(0);
        voided.event_type = "invoice.voided".into();
        voided.amount_paid = None;
        voided.total = None;
        assert_eq!(refusal(&voided, &invoice(), stripe), None);
    }

    #[test]
    fn an_event_not_bound_to_our_invoice_is_refused_with_its_reason() {
        type Edit = fn(&mut StripeInvoiceEvent, &mut InvoiceRow, &mut Option<InvoicingMode>);
        let cases: [(Edit, &str); 13] = [
            (
                |_, _, m| *m = Some(InvoicingMode::Manual),
                "tenant claire is in manual mode",
            ),
            (|_, _, m| *m = None, "tenant claire has no billing profile"),
            (
                |_, i, _| i.invoicing_mode = InvoicingMode::Manual,
                "was issued in manual mode",
            ),
            (
                |_, i, _| i.stripe_invoice_id = None,
                "invoice CLAIRE-2026-0001 has no Stripe invoice",
            ),
            (
                |e, _, _| e.stripe_invoice_id = "in_other_tenants".into(),
                "the event is about Stripe invoice \"in_other_tenants\", invoice \
                 CLAIRE-2026-0001 is Stripe invoice in_ours",
            ),
            (
                |e, _, _| e.stripe_invoice_id = String::new(),
                "the event is about Stripe invoice \"\"",
            ),
            (|e, _, _| e.currency = None, "the event states no currency"),
            (
                |e, _, _| e.currency = Some("jpy".into()),
                "the event's currency \"jpy\" is not the invoice's AUD",
            ),
            (
                |e, _, _| e.total = Some(352),
                "Stripe's total AUD 3.52 is not invoice CLAIRE-2026-0001's AUD 35.20",
            ),
            (
                |e, _, _| e.amount_paid = None,
                "the payment event states no amount_paid",
            ),
            (
                |e, _, _| e.amount_paid = Some(-1),
                "amount_paid -1 is negative",
            ),
            (
                |e, _, _| e.amount_paid = Some(3521),
                "amount paid AUD 35.21 is more than invoice CLAIRE-2026-0001's total AUD 35.20",
            ),
            (
                |_, i, _| i.total = Decimal::new(35201, 3),
                "total is not in whole minor units",
            ),
        ];
        for (edit, expected) in cases {
            let stripe = Some(InvoicingMode::Stripe);
            let (mut event, mut invoice, mut mode) = (paid(3520), invoice(), stripe);
            edit(&mut event, &mut invoice, &mut mode);
            let reason = refusal(&event, &invoice, mode).unwrap_or_default();
            assert!(reason.contains(expected), "{expected:?} not in {reason:?}");
        }
    }

    #[test]
    fn a_name_that_is_not_our_id_is_refused_and_none_is_no_name() {
        let mut event = paid(0);
        event.metadata_invoice_id = Some("INV-1; drop table".into());
        let err = event.named_invoice().expect_err("refused");
        assert!(err.starts_with("metadata.invoice_id \"INV-1"), "{err}");
        event.metadata_invoice_id = Some(String::new());
        assert_eq!(event.named_invoice(), Ok(None));
        event.metadata_invoice_id = None;
        assert_eq!(event.named_invoice(), Ok(None));
    }

    #[test]
    fn event_text_is_clipped_in_reasons() {
        let long = "x".repeat(500);
        let clipped = clip(&long);
        assert!(clipped.chars().count() < 90, "{clipped}");
        assert_eq!(clip("in_1"), "\"in_1\"");
    }
}
