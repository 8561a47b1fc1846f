//! What happened to an event: applied (and how), or rejected (and why). A leaf: the decoding of
//! incoming events, the batch's plan and the store all speak these types, and depend on nothing
//! else of the crate for them.

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
    pub fn as_str(&self) -> &'static str {
        match self {
            Applied::Stored => "stored",
            Applied::StatusChanged => "status_changed",
            Applied::Revised => "revised",
            Applied::Stale => "stale",
            Applied::Duplicate => "duplicate",
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
