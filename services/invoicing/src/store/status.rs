//! An invoice's status. [`InvoiceStatus::as_str`] is the only spelling of the statuses (the
//! `invoices.status` column, history rows, event subjects and payloads, metric labels);
//! [`FromStr`](std::str::FromStr) is its inverse. In SQL the type binds and decodes as `text`
//! (`billing_runtime::text_enum!`), so the column and its check constraint are unchanged. One
//! spelling is also written into SQL: `status <> 'void'`, which PostgreSQL needs as a literal to
//! use the partial index `invoices_one_per_period`; a test below pins it.

// Bound and read as the `text` it is stored as: `query!(…, status as InvoiceStatus)`, and
// `status as "status: InvoiceStatus"` in a query's columns.
billing_runtime::text_enum! {
    /// An invoice's status.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum InvoiceStatus as "invoice status" {
        /// Numbered and stored, not yet accepted by Stripe (Stripe mode only).
        Draft = "draft",
        Issued = "issued",
        PartiallyPaid = "partially_paid",
        Paid = "paid",
        Overdue = "overdue",
        Void = "void",
    }
}

impl InvoiceStatus {
    /// The statuses the overdue sweep moves to overdue once the due date has passed.
    pub const FALLS_OVERDUE: [InvoiceStatus; 2] =
        [InvoiceStatus::Issued, InvoiceStatus::PartiallyPaid];

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
    fn void_is_spelled_as_the_live_invoice_queries_write_it() {
        // `status <> 'void'` in the store's queries (a literal, for the partial index).
        assert_eq!(Void.as_str(), "void");
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
