//! Turns events into emails. Two durable consumers:
//! - `notifier-invoices` on `invoicing.invoice.>`: `issued` → the invoice with its PDF;
//!   `overdue` → a payment reminder with the current PDF; `payment_recorded` → a receipt for
//!   that payment; `email_resent` → the invoice's email once more, with the current PDF (an
//!   operator's ResendInvoiceEmail). Other events send nothing.
//! - `notifier-alerts` on `alerts.>`: each alert is emailed to the operator.
//!
//! Each email goes through [`Deliveries::send_once`], keyed by what it is about, so redelivered
//! events never send twice: (invoice_issued, invoice, 0) — an invoice is issued once;
//! (payment_reminder, invoice, position of the `overdue` entry in its history);
//! (payment_received, payment, 0); (invoice_resent, invoice, position of the resend's note in its
//! history): each resend one email; (operator_alert, alert id, 0). SMTP trouble (connection
//! refused, timeouts, 4xx, a session the server refuses) leaves the event unacknowledged and
//! retried with a growing delay; a refusal of the message or its recipient (550–556) or an
//! invalid address dead-letters the event and raises an operator alert.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use billing_proto::convert::{Timestamp, timestamp};
use billing_proto::events::{AlertV1, InvoiceIssuedV1, InvoiceStatusChangedV1, PaymentRecordedV1};
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{GetInvoiceRequest, Invoice};
use billing_runtime::error::{ErrorCode, ServiceError};
use billing_runtime::nats::{Disposition, Settled, Settler};
use billing_runtime::trace::TracedChannel;
use billing_runtime::{Shutdown, Subjects, nats, trace};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use prost::Message as _;
use tracing::Instrument;
use uuid::Uuid;

use crate::deliveries::{Deliveries, DeliveryError, Envelope, Key, Kind, Outcome};
use crate::mail::{self, Email, MailError};
use crate::pdf::{self, Issuer, Rendered};

pub const INVOICES_CONSUMER: &str = "notifier-invoices";
pub const ALERTS_CONSUMER: &str = "notifier-alerts";
/// The consumer of earlier versions (invoice-issued events only), removed at start-up.
const LEGACY_CONSUMER: &str = "notifier";
/// Messages pulled at a time; each consumer handles them one by one.
const BATCH: usize = 10;
/// The longest wait between attempts while SMTP is down.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Everything an email needs: invoices over gRPC, PDFs, SMTP and the delivery record.
pub struct Notifier {
    pub js: jetstream::Context,
    pub subjects: Subjects,
    pub deliveries: Deliveries,
    pub invoicing: InvoicingServiceClient<TracedChannel>,
    pub smtp: AsyncSmtpTransport<Tokio1Executor>,
    pub from: Mailbox,
    pub operator: Mailbox,
    pub issuer: Issuer,
    /// DejaVu Sans and the fallback fonts, loaded at start-up.
    pub fonts: Arc<pdf::Fonts>,
}

/// Getting an invoice from invoicing, or rendering its PDF.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    #[error("invoice {0} does not exist")]
    NotFound(String),
    #[error("invoicing: {0}")]
    Unavailable(tonic::Status),
    #[error(transparent)]
    Pdf(#[from] pdf::PdfError),
    #[error("pdf task: {0}")]
    Task(String),
}

impl ServiceError for InvoiceError {
    fn error_code(&self) -> ErrorCode {
        match self {
            InvoiceError::NotFound(_) => ErrorCode::NotFound,
            InvoiceError::Unavailable(_) => ErrorCode::Unavailable,
            InvoiceError::Pdf(_) | InvoiceError::Task(_) => ErrorCode::Internal,
        }
    }
}

/// The email an invoice event asks for.
struct Wanted {
    key: Key,
    invoice_id: Uuid,
    /// For receipts: the payment, as the event tells it.
    payment: Option<PaymentRecordedV1>,
}

impl Notifier {
    pub async fn invoice(&self, invoice_id: &str) -> Result<Invoice, InvoiceError> {
        match self
            .invoicing
            .clone()
            .get_invoice(GetInvoiceRequest {
                invoice_id: invoice_id.to_string(),
            })
            .await
        {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(InvoiceError::NotFound(invoice_id.to_string()))
            }
            Err(status) => Err(InvoiceError::Unavailable(status)),
        }
    }

    /// Renders on the blocking pool: a long invoice is seconds of CPU the runtime must not
    /// spend.
    pub async fn render(&self, invoice: Invoice) -> Result<Rendered, InvoiceError> {
        let issuer = self.issuer.clone();
        let fonts = self.fonts.clone();
        let started = Instant::now();
        let rendered =
            tokio::task::spawn_blocking(move || pdf::render_with(&fonts, &invoice, &issuer))
                .await
                .map_err(|e| InvoiceError::Task(e.to_string()))??;
        metrics::histogram!("notifier_pdf_render_seconds").record(started.elapsed().as_secs_f64());
        Ok(rendered)
    }

    pub async fn create_consumers(
        &self,
    ) -> Result<(PullConsumer, PullConsumer), async_nats::Error> {
        let config = |name: &str, filter: String, deliver_policy| pull::Config {
            durable_name: Some(name.into()),
            filter_subject: filter,
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            // Rendering and SMTP can be slow; a message is redelivered only after this.
            ack_wait: Duration::from_secs(120),
            max_deliver: -1,
            max_ack_pending: 100,
            ..Default::default()
        };
        let invoicing = self
            .js
            .get_stream(self.subjects.stream_name("INVOICING"))
            .await?;
        // Earlier versions read only `invoicing.invoice.issued`, with the `notifier` durable.
        // Its successor starts after the last event that one acknowledged, so the stream's
        // history (receipts and reminders that were never sent back then) is not replayed.
        let deliver_policy = match invoicing.consumer_info(LEGACY_CONSUMER).await {
            Ok(legacy) => DeliverPolicy::ByStartSequence {
                start_sequence: legacy.ack_floor.stream_sequence + 1,
            },
            Err(_) => DeliverPolicy::All,
        };
        let invoices = invoicing
            .get_or_create_consumer(
                INVOICES_CONSUMER,
                config(
                    INVOICES_CONSUMER,
                    self.subjects.invoice(">"),
                    deliver_policy,
                ),
            )
            .await?;
        if let DeliverPolicy::ByStartSequence { start_sequence } = deliver_policy {
            // Another replica may have removed it first.
            match invoicing.delete_consumer(LEGACY_CONSUMER).await {
                Ok(_) => tracing::info!(start_sequence, "replaced the legacy `notifier` consumer"),
                Err(err) => tracing::info!(error = %err, "legacy consumer already removed"),
            }
        }
        let alerts = self
            .js
            .get_stream(self.subjects.stream_name("ALERTS"))
            .await?
            .get_or_create_consumer(
                ALERTS_CONSUMER,
                config(
                    ALERTS_CONSUMER,
                    self.subjects.alerts_all(),
                    DeliverPolicy::All,
                ),
            )
            .await?;
        Ok((invoices, alerts))
    }

    /// Handles both consumers' events, one at a time each, until `shutdown`.
    pub async fn run(&self, invoices: PullConsumer, alerts: PullConsumer, shutdown: Shutdown) {
        tokio::join!(
            nats::consume(&invoices, BATCH, &shutdown, |msg| self
                .on_invoice_event(msg)),
            nats::consume(&alerts, BATCH, &shutdown, |msg| self.on_alert(msg)),
        );
        tracing::info!("notifier consumers stopped");
    }

    async fn on_invoice_event(&self, msg: jetstream::Message) {
        let span =
            trace::span(|| tracing::info_span!("notifier.invoice_event", subject = %msg.subject));
        trace::follow_nats(&span, msg.headers.as_ref());
        async {
            let disposition = self.invoice_event(&msg).await;
            self.settle(msg, disposition, "invoicing", INVOICES_CONSUMER)
                .await;
        }
        .instrument(span)
        .await
    }

    async fn on_alert(&self, msg: jetstream::Message) {
        let span = trace::span(|| tracing::info_span!("notifier.alert", subject = %msg.subject));
        trace::follow_nats(&span, msg.headers.as_ref());
        async {
            let disposition = self.alert_event(&msg).await;
            self.settle(msg, disposition, "alerts", ALERTS_CONSUMER)
                .await;
        }
        .instrument(span)
        .await
    }

    /// Which email, if any, an invoice event calls for.
    fn wanted(msg: &jetstream::Message) -> Result<Option<Wanted>, String> {
        let what = msg.subject.rsplit('.').next().unwrap_or_default();
        let payload = msg.payload.as_ref();
        let (kind, invoice_id, reference, payment) = match what {
            "issued" => {
                let e = InvoiceIssuedV1::decode(payload)
                    .map_err(|e| format!("undecodable InvoiceIssuedV1: {e}"))?;
                let id = e.invoice_id.clone();
                (Kind::InvoiceIssued, e.invoice_id, (id, 0), None)
            }
            "overdue" => {
                let e = InvoiceStatusChangedV1::decode(payload)
                    .map_err(|e| format!("undecodable InvoiceStatusChangedV1: {e}"))?;
                if e.version == 0 {
                    // Published before events carried versions, when no reminders were sent.
                    return Ok(None);
                }
                let id = e.invoice_id.clone();
                (Kind::PaymentReminder, e.invoice_id, (id, e.version), None)
            }
            "email_resent" => {
                let e = InvoiceStatusChangedV1::decode(payload)
                    .map_err(|e| format!("undecodable InvoiceStatusChangedV1: {e}"))?;
                if e.version == 0 {
                    return Err("email_resent without the position of its note".into());
                }
                let id = e.invoice_id.clone();
                (Kind::InvoiceResent, e.invoice_id, (id, e.version), None)
            }
            "payment_recorded" => {
                let e = PaymentRecordedV1::decode(payload)
                    .map_err(|e| format!("undecodable PaymentRecordedV1: {e}"))?;
                let payment_id = e.payment_id.clone();
                (
                    Kind::PaymentReceived,
                    e.invoice_id.clone(),
                    (payment_id, 0),
                    Some(e),
                )
            }
            // issued → partially_paid → paid | overdue | void, payment_failed: no email.
            _ => return Ok(None),
        };
        let invoice_id = invoice_id
            .parse::<Uuid>()
            .map_err(|_| format!("invoice_id {invoice_id:?} is not a UUID"))?;
        let (reference, version) = reference;
        Ok(Some(Wanted {
            key: Key {
                kind,
                reference,
                version,
            },
            invoice_id,
            payment,
        }))
    }

    async fn invoice_event(&self, msg: &jetstream::Message) -> Disposition {
        // Names this delivery of the event: a replayed dead letter gets a new one, so a
        // second refusal raises a second alert.
        let delivery = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let wanted = match Self::wanted(msg) {
            Ok(Some(wanted)) => wanted,
            Ok(None) => return Disposition::Ack,
            Err(reason) => return Disposition::DeadLetter(reason),
        };
        let key = &wanted.key;
        match self.deliveries.is_sent(key).await {
            Ok(true) => {
                tracing::info!(kind = key.kind.as_str(), invoice = %wanted.invoice_id, "email already sent");
                return Disposition::Ack;
            }
            Ok(false) => {}
            Err(err) => return Disposition::Retry(format!("database: {err}")),
        }
        let invoice = match self.invoice(&wanted.invoice_id.to_string()).await {
            Ok(invoice) => invoice,
            Err(err @ InvoiceError::NotFound(_)) => {
                return Disposition::DeadLetter(err.to_string());
            }
            Err(err) => return Disposition::Retry(err.to_string()),
        };
        if let Some(why) = stale(key.kind, &invoice.status) {
            tracing::info!(kind = key.kind.as_str(), invoice = %invoice.number, why, "email no longer wanted");
            return Disposition::Ack;
        }
        let email = match key.kind {
            Kind::InvoiceIssued | Kind::PaymentReminder | Kind::InvoiceResent => {
                let pdf = match self.render(invoice.clone()).await {
                    Ok(rendered) => rendered.bytes,
                    // Rendering is deterministic: a second try would fail the same way.
                    Err(err) => {
                        return self
                            .refused(key, &invoice, delivery, &err.to_string())
                            .await;
                    }
                };
                match key.kind {
                    Kind::InvoiceIssued => mail::invoice_issued(&invoice, pdf),
                    Kind::InvoiceResent => mail::invoice_resent(&invoice, pdf),
                    _ => mail::payment_reminder(&invoice, pdf),
                }
            }
            Kind::PaymentReceived => match &wanted.payment {
                Some(payment) => mail::payment_received(&invoice, payment),
                None => return Disposition::DeadLetter("a receipt without its payment".into()),
            },
            Kind::OperatorAlert => {
                return Disposition::DeadLetter("an alert on an invoice subject".into());
            }
        };
        let email = match email {
            Ok(email) => email,
            Err(err) => {
                let reason = err.to_string();
                let envelope = Envelope {
                    message_id: key.message_id(self.from.email.domain()),
                    recipient: invoice.billing_email.clone(),
                    subject: String::new(),
                    invoice_id: Some(wanted.invoice_id),
                };
                let recorded = self.deliveries.refused(key, &envelope, &reason).await;
                if let Err(err) = recorded {
                    return Disposition::Retry(format!("database: {err}"));
                }
                return self.refused(key, &invoice, delivery, &reason).await;
            }
        };
        match self.send(key, Some(wanted.invoice_id), email).await {
            Ok(Outcome::Sent) => {
                tracing::info!(kind = key.kind.as_str(), invoice = %invoice.number, tenant = %invoice.tenant_id, "email sent");
                Disposition::Ack
            }
            Ok(Outcome::AlreadySent) => Disposition::Ack,
            Err(DeliveryError::Mail(
                err @ (MailError::Permanent(_) | MailError::Address(_) | MailError::Build(_)),
            )) => {
                self.refused(key, &invoice, delivery, &err.to_string())
                    .await
            }
            Err(err) => Disposition::Retry(err.to_string()),
        }
    }

    async fn alert_event(&self, msg: &jetstream::Message) -> Disposition {
        let alert = match AlertV1::decode(msg.payload.as_ref()) {
            Ok(alert) if !alert.alert_id.is_empty() => alert,
            Ok(_) => return Disposition::DeadLetter("alert without an alert_id".into()),
            Err(err) => return Disposition::DeadLetter(format!("undecodable AlertV1: {err}")),
        };
        let key = Key {
            kind: Kind::OperatorAlert,
            reference: alert.alert_id.clone(),
            version: 0,
        };
        let email = mail::operator_alert(&self.operator, &alert);
        match self.send(&key, None, email).await {
            Ok(_) => Disposition::Ack,
            // No alert about an alert the mail server refused: that would loop.
            Err(DeliveryError::Mail(
                err @ (MailError::Permanent(_) | MailError::Address(_) | MailError::Build(_)),
            )) => Disposition::DeadLetter(format!("operator alert refused: {err}")),
            Err(err) => Disposition::Retry(err.to_string()),
        }
    }

    /// Builds the message with the key's stable Message-ID and sends it once.
    async fn send(
        &self,
        key: &Key,
        invoice_id: Option<Uuid>,
        email: Email,
    ) -> Result<Outcome, DeliveryError> {
        let message_id = key.message_id(self.from.email.domain());
        let envelope = Envelope {
            message_id: message_id.clone(),
            recipient: email.to.email.to_string(),
            subject: email.subject.clone(),
            invoice_id,
        };
        let message = email
            .build(&self.from, &message_id)
            .map_err(DeliveryError::Mail)?;
        let outcome = self
            .deliveries
            .send_once(key, &envelope, || mail::send(&self.smtp, message))
            .await;
        let result = match &outcome {
            Ok(Outcome::Sent) => "sent",
            Ok(Outcome::AlreadySent) => "duplicate",
            Err(DeliveryError::Mail(MailError::Transient(_))) => "deferred",
            Err(DeliveryError::Mail(MailError::Server(err))) => {
                tracing::error!(error = %err, "the SMTP server refuses our session; fix the SMTP settings");
                "server_refused"
            }
            Err(DeliveryError::Mail(_)) => "rejected",
            Err(DeliveryError::Db(_)) => "db_error",
        };
        metrics::counter!("notifier_emails_total", "kind" => key.kind.as_str(), "result" => result)
            .increment(1);
        outcome
    }

    /// The mail server (or the address) refused an email for good: tell the operator, then
    /// dead-letter the event. If the alert cannot be raised, the event is retried (the alert's
    /// id makes raising it again harmless).
    async fn refused(
        &self,
        key: &Key,
        invoice: &Invoice,
        delivery: u64,
        error: &str,
    ) -> Disposition {
        let kind = key.kind.as_str();
        let alert = AlertV1 {
            alert_id: format!(
                "email_rejected:{kind}:{}:{}:{delivery}",
                key.reference, key.version
            ),
            kind: "email_rejected".into(),
            severity: "critical".into(),
            summary: format!(
                "The {} email for invoice {} was refused by the mail server",
                kind.replace('_', " "),
                invoice.number
            ),
            details: format!(
                "Tenant {} did not get the {} email for invoice {}: {error}. The event is in the \
                 dead-letter stream {}. If the address is wrong, correct the tenant's billing \
                 email in their profile; then publish the dead letter again (its original \
                 subject is in its Billing-Dlq-Subject header).",
                invoice.tenant_id,
                kind.replace('_', " "),
                invoice.number,
                self.subjects.dead_letter("invoicing", INVOICES_CONSUMER)
            ),
            tenant_id: invoice.tenant_id.clone(),
            source: "notifier".into(),
            raised_at: Some(now()),
        };
        match self.raise(&alert).await {
            Ok(()) => Disposition::DeadLetter(format!("{kind} email refused: {error}")),
            Err(err) => Disposition::Retry(format!("raising the operator alert failed: {err}")),
        }
    }

    /// Acknowledges, schedules a retry, or dead-letters, as decided.
    async fn settle(
        &self,
        msg: jetstream::Message,
        disposition: Disposition,
        stream: &str,
        consumer: &'static str,
    ) {
        let settler = Settler {
            js: self.js.clone(),
            dead_letter_subject: self.subjects.dead_letter(stream, consumer),
            max_retry_delay: MAX_RETRY_DELAY,
        };
        match settler.settle(&msg, disposition).await {
            Settled::Retried(_) => {
                metrics::counter!("notifier_retries_total", "consumer" => consumer).increment(1);
            }
            Settled::DeadLettered => {
                metrics::counter!("notifier_dead_letters_total", "consumer" => consumer)
                    .increment(1);
            }
            Settled::Acked | Settled::DeadLetterFailed => {}
        }
    }

    /// Publishes an alert; its id is the message id, so raising it again is deduplicated.
    async fn raise(&self, alert: &AlertV1) -> Result<(), async_nats::Error> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, alert.alert_id.as_str());
        self.js
            .publish_with_headers(
                self.subjects.alert(&alert.kind),
                headers,
                alert.encode_to_vec().into(),
            )
            .await?
            .await?;
        metrics::counter!("notifier_alerts_raised_total", "kind" => alert.kind.clone())
            .increment(1);
        Ok(())
    }
}

/// Why an email is no longer worth sending, given the invoice's status now.
fn stale(kind: Kind, status: &str) -> Option<&'static str> {
    match (kind, status) {
        (_, "void") => Some("the invoice was voided"),
        (Kind::PaymentReminder, "paid") => Some("the invoice was paid since it fell overdue"),
        _ => None,
    }
}

fn now() -> Timestamp {
    timestamp(chrono::Utc::now())
}
