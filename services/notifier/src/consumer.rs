//! Consumes `invoicing.invoice.issued`: fetch the invoice, render its PDF, email it, record the
//! delivery, then ack. A redelivered event finds the delivery row and sends nothing.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use billing_proto::events::InvoiceIssuedV1;
use billing_proto::invoicing::GetInvoiceRequest;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_runtime::{Shutdown, Subjects, nats};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use prost::Message as _;
use sqlx::PgPool;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::mail::{self, MailError};
use crate::pdf::{self, Issuer};

const CONSUMER: &str = "notifier";
const KIND_INVOICE_ISSUED: &str = "invoice-issued";

pub struct Consumer {
    js: jetstream::Context,
    consumer: PullConsumer,
    subjects: Subjects,
    pool: PgPool,
    invoicing: InvoicingServiceClient<Channel>,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

enum Disposition {
    Ack,
    Retry(String),
    DeadLetter(String),
}

impl Consumer {
    pub async fn create(
        js: jetstream::Context,
        subjects: Subjects,
        pool: PgPool,
        invoicing: InvoicingServiceClient<Channel>,
        smtp: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    ) -> Result<Self, async_nats::Error> {
        let stream = js.get_stream(subjects.stream_name("INVOICING")).await?;
        let consumer = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    filter_subject: subjects.invoice("issued"),
                    ack_policy: AckPolicy::Explicit,
                    // Rendering and SMTP can be slow; a message is redelivered only after this.
                    ack_wait: Duration::from_secs(120),
                    max_deliver: -1,
                    max_ack_pending: 100,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Consumer {
            js,
            consumer,
            subjects,
            pool,
            invoicing,
            smtp,
            from,
        })
    }

    pub async fn run(self, shutdown: Shutdown) {
        nats::consume(&self.consumer, 10, &shutdown, |msg| self.handle(msg)).await;
        tracing::info!("notifier consumer stopped");
    }

    async fn handle(&self, msg: jetstream::Message) {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let disposition = match InvoiceIssuedV1::decode(msg.payload.as_ref()) {
            Ok(event) => self.invoice_issued(&event).await,
            Err(err) => Disposition::DeadLetter(format!("undecodable InvoiceIssuedV1: {err}")),
        };
        let result = match disposition {
            Disposition::Ack => msg.ack().await,
            Disposition::Retry(reason) => {
                metrics::counter!("notifier_retries_total").increment(1);
                let delay = nats::retry_delay(delivered, Duration::from_secs(60));
                tracing::warn!(delivered, reason, ?delay, "email will be retried");
                msg.ack_with(AckKind::Nak(Some(delay))).await
            }
            Disposition::DeadLetter(reason) => match self.dead_letter(&msg, &reason).await {
                Ok(()) => msg.ack().await,
                Err(err) => {
                    tracing::warn!(error = %err, "dead-letter publish failed, will retry");
                    msg.ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                        .await
                }
            },
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "acknowledging failed");
        }
    }

    async fn invoice_issued(&self, event: &InvoiceIssuedV1) -> Disposition {
        let Ok(invoice_id) = event.invoice_id.parse::<Uuid>() else {
            return Disposition::DeadLetter(format!(
                "invoice_id {:?} is not a UUID",
                event.invoice_id
            ));
        };
        match already_sent(&self.pool, KIND_INVOICE_ISSUED, invoice_id).await {
            Ok(true) => {
                tracing::info!(invoice = %event.invoice_number, "invoice email already sent");
                return Disposition::Ack;
            }
            Ok(false) => {}
            Err(err) => return Disposition::Retry(format!("database: {err}")),
        }
        let invoice = match self
            .invoicing
            .clone()
            .get_invoice(GetInvoiceRequest {
                invoice_id: event.invoice_id.clone(),
            })
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Disposition::DeadLetter(format!(
                    "invoice {} does not exist",
                    event.invoice_id
                ));
            }
            Err(status) => return Disposition::Retry(format!("invoicing: {status}")),
        };

        let issuer = Issuer {
            name: self
                .from
                .name
                .clone()
                .unwrap_or_else(|| self.from.email.to_string()),
            email: self.from.email.to_string(),
        };
        let started = std::time::Instant::now();
        let render_input = invoice.clone();
        let rendered =
            tokio::task::spawn_blocking(move || pdf::render(&render_input, &issuer)).await;
        let pdf = match rendered {
            Ok(Ok(pdf)) => pdf,
            Ok(Err(err)) => return Disposition::DeadLetter(format!("pdf: {err}")),
            Err(err) => return Disposition::Retry(format!("pdf task: {err}")),
        };
        metrics::histogram!("notifier_pdf_render_seconds").record(started.elapsed().as_secs_f64());

        let message_id = mail::message_id(KIND_INVOICE_ISSUED, &event.invoice_id, &self.from);
        let message = match mail::invoice_issued(&self.from, &invoice, pdf, &message_id) {
            Ok(m) => m,
            Err(err) => return Disposition::DeadLetter(err.to_string()),
        };
        match mail::send(&self.smtp, message).await {
            Ok(()) => {}
            Err(MailError::Transient(reason)) => return Disposition::Retry(reason),
            Err(err) => {
                metrics::counter!("notifier_emails_total", "kind" => KIND_INVOICE_ISSUED, "result" => "rejected").increment(1);
                return Disposition::DeadLetter(err.to_string());
            }
        }
        // Sent. If recording fails, the redelivery resends with the same Message-ID, which mail
        // clients treat as the same message.
        if let Err(err) = record_sent(
            &self.pool,
            KIND_INVOICE_ISSUED,
            invoice_id,
            &message_id,
            &invoice.billing_email,
        )
        .await
        {
            tracing::error!(error = %err, invoice = %invoice.number, "email sent but delivery not recorded");
            return Disposition::Retry(format!("database: {err}"));
        }
        metrics::counter!("notifier_emails_total", "kind" => KIND_INVOICE_ISSUED, "result" => "sent").increment(1);
        tracing::info!(invoice = %invoice.number, tenant = %invoice.tenant_id, "invoice email sent");
        Disposition::Ack
    }

    async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        reason: &str,
    ) -> Result<(), async_nats::Error> {
        let message_id = msg
            .info()
            .map(|i| format!("dlq:{}:{}", i.stream, i.stream_sequence))
            .unwrap_or_else(|_| format!("dlq:{}", Uuid::now_v7()));
        nats::dead_letter(
            &self.js,
            self.subjects.dead_letter("invoicing", CONSUMER),
            msg,
            &message_id,
            reason,
        )
        .await?;
        metrics::counter!("notifier_dead_letters_total").increment(1);
        tracing::warn!(reason, "invoice event dead-lettered");
        Ok(())
    }
}

async fn already_sent(pool: &PgPool, kind: &str, invoice_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from deliveries where kind = $1 and invoice_id = $2)",
    )
    .bind(kind)
    .bind(invoice_id)
    .fetch_one(pool)
    .await
}

async fn record_sent(
    pool: &PgPool,
    kind: &str,
    invoice_id: Uuid,
    message_id: &str,
    recipient: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into deliveries (kind, invoice_id, message_id, recipient) values ($1, $2, $3, $4)
         on conflict do nothing",
    )
    .bind(kind)
    .bind(invoice_id)
    .bind(message_id)
    .bind(recipient)
    .execute(pool)
    .await?;
    Ok(())
}
