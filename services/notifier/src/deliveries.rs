//! The record that makes each logical email go out once. An email is named by
//! (kind, reference, version); its row is locked while the message is handed to SMTP and
//! marked `sent` in the same transaction. A second delivery of the same event waits for the
//! lock, then finds `sent` and sends nothing.
//!
//! A second copy can only happen when the server accepted a message but its `sent` mark was
//! not committed: the process died in between, the commit failed, or PostgreSQL dropped the
//! session (and the lock) while SMTP was still talking. The next delivery then sends it again
//! with the same Message-ID, and mail clients show one message per Message-ID.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::mail::MailError;

// `emails.kind`, bound and read as its `text`.
billing_runtime::text_enum! {
    /// What an email is about.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind as "email kind" {
        InvoiceIssued = "invoice_issued",
        PaymentReminder = "payment_reminder",
        PaymentReceived = "payment_received",
        OperatorAlert = "operator_alert",
        /// The invoice's email again, at an operator's request.
        InvoiceResent = "invoice_resent",
    }
}

// `emails.state`, bound and read as its `text`.
billing_runtime::text_enum! {
    /// Where an email stands (`emails.state`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum State as "email state" {
        /// Not handed to SMTP yet, or the last attempt failed.
        Pending = "pending",
        /// Accepted by the server.
        Sent = "sent",
        /// Refused for good (550–556, or an invalid address); its event was dead-lettered.
        Rejected = "rejected",
    }
}

/// Names one logical email.
#[derive(Debug, Clone)]
pub struct Key {
    pub kind: Kind,
    /// The invoice id, or the alert id.
    pub reference: String,
    pub version: u32,
}

impl Key {
    /// The same for every attempt at this email, and no internal id in it
    /// ([`crate::mail::message_id`]).
    pub fn message_id(&self, domain: &str) -> String {
        crate::mail::message_id(self.kind.as_str(), &self.reference, self.version, domain)
    }
}

/// What the email is, as recorded.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub message_id: String,
    pub recipient: String,
    pub subject: String,
    pub invoice_id: Option<Uuid>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to SMTP by this call.
    Sent,
    /// An earlier delivery already sent it; nothing was sent now.
    AlreadySent,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("recording the delivery: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Mail(MailError),
}

/// One email's record, for the operator.
#[derive(Debug)]
pub struct Delivery {
    pub kind: Kind,
    pub reference: String,
    pub version: i32,
    pub state: State,
    pub message_id: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// An operator alert's email, for the operator.
#[derive(Debug)]
pub struct AlertEmail {
    pub alert_id: String,
    pub subject: String,
    pub state: State,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(Clone)]
pub struct Deliveries {
    pool: PgPool,
}

impl Deliveries {
    pub fn new(pool: PgPool) -> Self {
        Deliveries { pool }
    }

    /// A cheap check before any work (fetching the invoice, rendering the PDF).
    pub async fn is_sent(&self, key: &Key) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar!(
            r#"select exists (select 1 from notifier.emails
                   where kind = $1 and reference = $2 and version = $3 and state = $4) as "sent!""#,
            key.kind as Kind,
            key.reference,
            version(key),
            State::Sent as State
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Sends the email through `send` unless it was sent before; records the attempt either
    /// way. The row lock is held across `send`, so concurrent deliveries serialise here.
    pub async fn send_once<F, Fut>(
        &self,
        key: &Key,
        envelope: &Envelope,
        send: F,
    ) -> Result<Outcome, DeliveryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), MailError>>,
    {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "insert into notifier.emails (kind, reference, version, invoice_id, state, message_id,
                recipient, subject)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             on conflict (kind, reference, version) do nothing",
            key.kind as Kind,
            key.reference,
            version(key),
            envelope.invoice_id,
            State::Pending as State,
            envelope.message_id,
            envelope.recipient,
            envelope.subject
        )
        .execute(&mut *tx)
        .await?;
        let state = sqlx::query_scalar!(
            r#"select state as "state: State" from notifier.emails
               where kind = $1 and reference = $2 and version = $3
               for update"#,
            key.kind as Kind,
            key.reference,
            version(key)
        )
        .fetch_one(&mut *tx)
        .await?;
        if state == State::Sent {
            tx.commit().await?;
            return Ok(Outcome::AlreadySent);
        }

        let result = send().await;
        let (state, error) = match &result {
            Ok(()) => (State::Sent, None),
            Err(err @ (MailError::Permanent(_) | MailError::Address(_) | MailError::Build(_))) => {
                (State::Rejected, Some(err.to_string()))
            }
            Err(err) => (State::Pending, Some(err.to_string())),
        };
        sqlx::query!(
            "update notifier.emails set state = $4, attempts = attempts + 1, last_error = $5,
                recipient = $6, subject = $7,
                sent_at = case when $8 then now() else sent_at end
             where kind = $1 and reference = $2 and version = $3",
            key.kind as Kind,
            key.reference,
            version(key),
            state as State,
            error,
            envelope.recipient,
            envelope.subject,
            state == State::Sent
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        match result {
            Ok(()) => Ok(Outcome::Sent),
            Err(err) => Err(DeliveryError::Mail(err)),
        }
    }

    /// Records an email that could not be sent at all (its address is invalid) as `rejected`.
    pub async fn refused(
        &self,
        key: &Key,
        envelope: &Envelope,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "insert into notifier.emails (kind, reference, version, invoice_id, state, message_id,
                recipient, subject, attempts, last_error)
             values ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)
             on conflict (kind, reference, version) do update
                set state = excluded.state, attempts = emails.attempts + 1,
                    last_error = excluded.last_error, recipient = excluded.recipient
                where emails.state <> $10",
            key.kind as Kind,
            key.reference,
            version(key),
            envelope.invoice_id,
            State::Rejected as State,
            envelope.message_id,
            envelope.recipient,
            envelope.subject,
            error,
            State::Sent as State
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every email about `invoice_id`, oldest first.
    pub async fn for_invoice(&self, invoice_id: Uuid) -> Result<Vec<Delivery>, sqlx::Error> {
        sqlx::query_as!(
            Delivery,
            r#"select kind as "kind: Kind", reference, version, state as "state: State",
                      message_id, attempts, last_error, sent_at
               from notifier.emails where invoice_id = $1 order by created_at, kind, version"#,
            invoice_id
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The latest `limit` operator alerts' emails, newest first.
    pub async fn recent_alerts(&self, limit: i64) -> Result<Vec<AlertEmail>, sqlx::Error> {
        sqlx::query_as!(
            AlertEmail,
            r#"select reference as alert_id, subject, state as "state: State", created_at,
                      sent_at, last_error
               from notifier.emails where kind = $1
               order by created_at desc, reference limit $2"#,
            Kind::OperatorAlert as Kind,
            limit
        )
        .fetch_all(&self.pool)
        .await
    }
}

fn version(key: &Key) -> i32 {
    i32::try_from(key.version).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::{Kind, State};

    #[test]
    fn every_kind_and_state_parses_back_from_its_name_and_nothing_else_parses() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
        }
        for state in State::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert_eq!(
            "Sent".parse::<State>(),
            Err("unknown email state \"Sent\"".to_string())
        );
        assert!("invoice-issued".parse::<Kind>().is_err());
    }
}
