//! What happened to an event: applied (and how), or rejected (and why), and how the audit log
//! spells it. A leaf: the decoding of incoming events, the batch's plan and the store all speak
//! these types, and depend on nothing else of the crate for them.

use uuid::Uuid;

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new booking record was appended to the tenant's chain.
    Stored,
    /// The booking's status, session time or service changed (financial fields untouched).
    StatusChanged,
    /// The price changed: a revision with the delta was appended (and any status change applied).
    Revised,
    /// Older than the booking's recorded state: changes nothing (a late delivery).
    Stale,
    /// Nothing new: the event was seen before, or the booking already says this.
    Duplicate,
}

impl Applied {
    /// Its spelling in the audit log and metric labels ([`AuditOutcome::as_str`]).
    pub fn as_str(&self) -> &'static str {
        AuditOutcome::from(*self).as_str()
    }
}

// Bound and read as the `text` it is stored as: `query!(…, outcome as AuditOutcome)`, and
// `outcome as "outcome: AuditOutcome"` in a query's columns.
billing_runtime::text_enum! {
    /// What the audit log (`audit_log.outcome`, checked by its constraint) says became of an
    /// event: how it was [`Applied`], or what happened to one that was not.
    /// [`AuditOutcome::as_str`] is the only spelling; in SQL the type binds and decodes as `text`
    /// (`billing_runtime::text_enum!`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum AuditOutcome as "audit outcome" {
        Stored = "stored",
        StatusChanged = "status_changed",
        Revised = "revised",
        Stale = "stale",
        Duplicate = "duplicate",
        /// Could not be applied and went to the dead-letter stream.
        DeadLettered = "dead_lettered",
        /// An operator published a dead letter again.
        Replayed = "replayed",
        /// A request ingest refused (bad signature or token, unknown tenant, malformed body).
        Rejected = "rejected",
    }
}

impl From<Applied> for AuditOutcome {
    fn from(applied: Applied) -> Self {
        match applied {
            Applied::Stored => AuditOutcome::Stored,
            Applied::StatusChanged => AuditOutcome::StatusChanged,
            Applied::Revised => AuditOutcome::Revised,
            Applied::Stale => AuditOutcome::Stale,
            Applied::Duplicate => AuditOutcome::Duplicate,
        }
    }
}

/// What one event of a batch did.
#[derive(Debug)]
pub enum Outcome {
    Applied(Applied, Option<Uuid>),
    /// The event contradicts the record (e.g. another currency) and must be dead-lettered.
    Rejected(Reject),
}

/// Why an event cannot become a booking. `code` is a small fixed set (metrics label);
/// `message` explains this event in particular.
#[derive(Debug, Clone)]
pub struct Reject {
    pub code: &'static str,
    pub message: String,
}

/// Every `Reject::code` (each is also a `ledger_dead_letters_total` series, created at 0 when
/// the ledger starts so the first dead letter of a kind raises the alert).
pub const REJECT_CODES: [&str; 11] = [
    "currency_change",
    "currency_mismatch",
    "database_refused",
    "invalid_amount",
    "invalid_session_time",
    "malformed_payload",
    "malformed_record",
    "price_unknown",
    "tenant_mismatch",
    "unconfirmed_callback",
    "unknown_tenant",
];

impl Reject {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            REJECT_CODES.contains(&code),
            "{code} is missing from REJECT_CODES"
        );
        Reject {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Applied, AuditOutcome};

    #[test]
    fn every_audit_outcome_parses_back_from_its_name_and_nothing_else_parses() {
        for outcome in AuditOutcome::ALL {
            assert_eq!(outcome.as_str().parse(), Ok(outcome));
            assert_eq!(outcome.to_string(), outcome.as_str());
        }
        assert_eq!(
            "Stored".parse::<AuditOutcome>(),
            Err("unknown audit outcome \"Stored\"".to_string())
        );
        assert!("".parse::<AuditOutcome>().is_err());
    }

    #[test]
    fn an_applied_event_is_audited_and_counted_with_the_same_spelling() {
        let applied = [
            Applied::Stored,
            Applied::StatusChanged,
            Applied::Revised,
            Applied::Stale,
            Applied::Duplicate,
        ];
        for a in applied {
            assert_eq!(a.as_str(), AuditOutcome::from(a).as_str());
        }
    }
}
