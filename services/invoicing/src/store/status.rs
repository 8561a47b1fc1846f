//! An invoice's status. [`InvoiceStatus::as_str`] is the only spelling of the statuses (the
//! `invoices.status` column, history rows, event subjects and payloads, metric labels);
//! [`FromStr`] is its inverse. In SQL the type binds and decodes as `text`, so the column and
//! its check constraint are unchanged.

use std::fmt;
use std::str::FromStr;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvoiceStatus {
    /// Numbered and stored, not yet accepted by Stripe (Stripe mode only).
    Draft,
    Issued,
    PartiallyPaid,
    Paid,
    Overdue,
    Void,
}

impl InvoiceStatus {
    pub const ALL: [InvoiceStatus; 6] = [
        InvoiceStatus::Draft,
        InvoiceStatus::Issued,
        InvoiceStatus::PartiallyPaid,
        InvoiceStatus::Paid,
        InvoiceStatus::Overdue,
        InvoiceStatus::Void,
    ];

    /// The statuses the overdue sweep moves to overdue once the due date has passed.
    pub const FALLS_OVERDUE: [InvoiceStatus; 2] =
        [InvoiceStatus::Issued, InvoiceStatus::PartiallyPaid];

    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Issued => "issued",
            InvoiceStatus::PartiallyPaid => "partially_paid",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Overdue => "overdue",
            InvoiceStatus::Void => "void",
        }
    }

    /// Paid and void are final: no event moves an invoice out of them.
    pub fn is_final(self) -> bool {
        matches!(self, InvoiceStatus::Paid | InvoiceStatus::Void)
    }

    /// Issued and not settled: payments and the overdue sweep apply.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            InvoiceStatus::Issued | InvoiceStatus::PartiallyPaid | InvoiceStatus::Overdue
        )
    }

    /// The status a payment leaves an invoice in: paid once paid in full; a part payment moves
    /// an issued invoice to partially paid, and leaves any other (an overdue one stays overdue
    /// until paid in full) as it is.
    pub fn after_payment(self, paid_in_full: bool) -> InvoiceStatus {
        if paid_in_full {
            InvoiceStatus::Paid
        } else if self == InvoiceStatus::Issued {
            InvoiceStatus::PartiallyPaid
        } else {
            self
        }
    }
}

impl FromStr for InvoiceStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InvoiceStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown invoice status {s:?}"))
    }
}

impl fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Encoded and decoded as the `text` it is stored as (what `derive(sqlx::Type)` with
// `type_name = "text"` would do, without looking the type's OID up on every new connection).
impl Type<Postgres> for InvoiceStatus {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for InvoiceStatus {
    fn array_type_info() -> PgTypeInfo {
        <&str as PgHasArrayType>::array_type_info()
    }

    fn array_compatible(ty: &PgTypeInfo) -> bool {
        <&str as PgHasArrayType>::array_compatible(ty)
    }
}

impl Encode<'_, Postgres> for InvoiceStatus {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for InvoiceStatus {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(<&str as Decode<Postgres>>::decode(value)?.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use super::InvoiceStatus::{self, *};

    #[test]
    fn every_status_parses_back_from_its_name_and_nothing_else_parses() {
        for status in InvoiceStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(
            "Paid".parse::<InvoiceStatus>(),
            Err("unknown invoice status \"Paid\"".to_string())
        );
        assert!("".parse::<InvoiceStatus>().is_err());
    }

    #[test]
    fn open_final_and_falling_overdue_are_the_lifecycles_sets() {
        let open: Vec<_> = InvoiceStatus::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
        assert_eq!(open, [Issued, PartiallyPaid, Overdue]);
        let done: Vec<_> = InvoiceStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(done, [Paid, Void]);
        assert!(InvoiceStatus::FALLS_OVERDUE.iter().all(|s| s.is_open()));
    }

    #[test]
    fn a_part_payment_leaves_an_overdue_invoice_overdue() {
        assert_eq!(Issued.after_payment(false), PartiallyPaid);
        assert_eq!(PartiallyPaid.after_payment(false), PartiallyPaid);
        assert_eq!(Overdue.after_payment(false), Overdue);
        assert_eq!(Paid.after_payment(false), Paid);
        for status in [Issued, PartiallyPaid, Overdue, Paid] {
            assert_eq!(status.after_payment(true), Paid);
        }
    }
}
