//! Reconciliation with the money received: bank transfers from a statement matched to invoices.
//!
//! A transfer matches the invoice whose number its reference or description names (see
//! [`billing_domain::bank::mentions`]: bank-mangled separators are fine, another tenant's number
//! that merely ends the same is not). A matched transfer is recorded as a payment when it is at
//! most the balance due (in full → paid, less → partially paid), checked again under the
//! invoice's lock; anything else is left for a person with the reason. Each line's idempotency
//! key comes from its date, amount, reference and occurrence in the statement, so importing an
//! overlapping statement again records nothing twice. One line's problem never stops the others.

use billing_domain::bank::{mentions, transfer_key};
use billing_proto::invoicing::{BankTransfer, TransferMatch};
use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::lifecycle::{Lifecycle, LifecycleError, PaymentLimit, Transfer};
use crate::store::{InvoiceRow, InvoiceStatus, Store};

const RECORDED: &str = "recorded";
const ALREADY_RECORDED: &str = "already_recorded";
const WOULD_RECORD: &str = "would_record";
const UNMATCHED: &str = "unmatched";

/// The invoices a transfer's reference or description names.
fn named<'a>(transfer: &BankTransfer, invoices: &'a [InvoiceRow]) -> Vec<&'a InvoiceRow> {
    invoices
        .iter()
        .filter(|i| {
            mentions(&transfer.reference, &i.number) || mentions(&transfer.description, &i.number)
        })
        .collect()
}

fn unmatched(line: u32, detail: impl Into<String>) -> TransferMatch {
    TransferMatch {
        line,
        outcome: UNMATCHED.into(),
        detail: detail.into(),
        ..Default::default()
    }
}

pub struct BankMatcher<'a> {
    pub store: &'a Store,
    pub lifecycle: &'a Lifecycle,
}

impl BankMatcher<'_> {
    /// Matches each transfer, in order, recording payments unless `dry_run`. A line that cannot
    /// be recorded is reported unmatched with the reason; only a database failure fails the call.
    pub async fn run(
        &self,
        transfers: &[BankTransfer],
        dry_run: bool,
    ) -> Result<Vec<TransferMatch>, LifecycleError> {
        let mut invoices: Vec<InvoiceRow> = self
            .store
            .list(None, None, None)
            .await?
            .into_iter()
            .filter(|i| {
                i.status.is_open() || matches!(i.status, InvoiceStatus::Paid | InvoiceStatus::Void)
            })
            .collect();
        let mut results = Vec::with_capacity(transfers.len());
        for t in transfers {
            let result = match self.one(t, &mut invoices, dry_run).await {
                Ok(result) => result,
                Err(LifecycleError::Db(err)) => return Err(LifecycleError::Db(err)),
                Err(err) => unmatched(t.line, err.to_string()),
            };
            results.push(result);
        }
        Ok(results)
    }

    async fn one(
        &self,
        t: &BankTransfer,
        invoices: &mut [InvoiceRow],
        dry_run: bool,
    ) -> Result<TransferMatch, LifecycleError> {
        let received_on = match NaiveDate::parse_from_str(t.received_on.trim(), "%Y-%m-%d") {
            Ok(date) => date,
            Err(_) => {
                return Ok(unmatched(
                    t.line,
                    format!("date {:?} is not YYYY-MM-DD", t.received_on),
                ));
            }
        };
        let Ok(written) = Decimal::from_str_exact(t.amount.trim()) else {
            return Ok(unmatched(
                t.line,
                format!("amount {:?} is not a number", t.amount),
            ));
        };
        let key = transfer_key(
            received_on,
            written,
            &t.reference,
            &t.description,
            t.occurrence.max(1),
        );
        let named = named(t, invoices);
        // A voided invoice is named only to say so: a transfer is never recorded against one.
        let (void, named): (Vec<_>, Vec<_>) = named
            .into_iter()
            .partition(|i| i.status == InvoiceStatus::Void);
        let invoice = match named.as_slice() {
            [one] => (*one).clone(),
            [] if !void.is_empty() => {
                let numbers: Vec<&str> = void.iter().map(|i| i.number.as_str()).collect();
                return Ok(unmatched(
                    t.line,
                    format!(
                        "names invoice {}, which is void: refund it, or record it against the \
                         invoice that replaced it with `billingctl invoices pay`",
                        numbers.join(", ")
                    ),
                ));
            }
            [] => return Ok(unmatched(t.line, self.no_number(t, invoices))),
            several => {
                let numbers: Vec<&str> = several.iter().map(|i| i.number.as_str()).collect();
                return Ok(unmatched(
                    t.line,
                    format!("names several invoices: {}", numbers.join(", ")),
                ));
            }
        };
        let mut result = TransferMatch {
            line: t.line,
            invoice_id: invoice.id.to_string(),
            invoice_number: invoice.number.clone(),
            ..Default::default()
        };
        let Some(currency) = invoice.currency() else {
            return Ok(unmatched(t.line, "the invoice's currency is unknown"));
        };
        if !t.currency.trim().is_empty() && !t.currency.trim().eq_ignore_ascii_case(currency.code())
        {
            result.outcome = UNMATCHED.into();
            result.detail = format!(
                "transfer in {}, invoice {} in {currency}",
                t.currency.trim(),
                invoice.number
            );
            return Ok(result);
        }
        let amount = match currency.parse_amount(t.amount.trim()) {
            Ok(amount) if amount > Decimal::ZERO => amount,
            Ok(_) => {
                result.outcome = UNMATCHED.into();
                result.detail = "not money received (zero or negative)".into();
                return Ok(result);
            }
            Err(err) => {
                result.outcome = UNMATCHED.into();
                result.detail = format!("amount {:?}: {err}", t.amount);
                return Ok(result);
            }
        };
        result.amount = Some(invoice.money(amount));
        let balance = invoice.total - invoice.amount_paid;
        // The lifecycle prefixes keys of bank payments with `bank:`.
        let full_key = format!("bank:{key}");
        if let Some((paid_invoice, _)) = self.store.payment_by_key(&full_key).await?
            && paid_invoice == invoice.id
        {
            result.outcome = ALREADY_RECORDED.into();
            result.detail = invoice.status.to_string();
            result.balance_after = Some(invoice.money(balance));
            return Ok(result);
        }
        if invoice.status == InvoiceStatus::Paid {
            result.outcome = UNMATCHED.into();
            result.detail = format!(
                "invoice {} is already paid: a duplicate transfer? refund or record it by hand",
                invoice.number
            );
            return Ok(result);
        }
        if amount > balance {
            result.outcome = UNMATCHED.into();
            result.detail = format!(
                "{} is more than the balance due of {}: check it, then record it with \
                 `billingctl invoices pay`",
                currency.format(amount),
                currency.format(balance)
            );
            return Ok(result);
        }
        if dry_run {
            // Later lines of the statement see this one as paid, as they would for real.
            let after = paid(&invoice, amount);
            result.outcome = WOULD_RECORD.into();
            result.detail = after.status.to_string();
            result.balance_after = Some(after.money(after.total - after.amount_paid));
            replace(invoices, after);
            return Ok(result);
        }
        let reference = match t.reference.trim() {
            "" => t.description.trim(),
            reference => reference,
        };
        let recorded = self
            .lifecycle
            .record_payment(
                invoice.id,
                Transfer {
                    amount: &currency.format(amount),
                    received_on,
                    reference,
                    idempotency_key: &key,
                    limit: PaymentLimit::Balance,
                },
                Utc::now(),
            )
            .await?;
        let updated = recorded.invoice;
        result.outcome = if recorded.recorded {
            RECORDED
        } else {
            ALREADY_RECORDED
        }
        .into();
        result.detail = updated.status.to_string();
        result.balance_after = Some(updated.money(updated.total - updated.amount_paid));
        replace(invoices, updated);
        Ok(result)
    }

    /// Why a transfer naming no invoice did not match, with the invoice whose balance it equals
    /// when there is exactly one (a person decides: amounts alone are not proof).
    fn no_number(&self, t: &BankTransfer, invoices: &[InvoiceRow]) -> String {
        let same: Vec<&InvoiceRow> = invoices
            .iter()
            .filter(|i| i.status.is_open())
            .filter(|i| {
                i.currency()
                    .and_then(|c| c.parse_amount(t.amount.trim()).ok())
                    .is_some_and(|a| a == i.total - i.amount_paid)
            })
            .collect();
        match same.as_slice() {
            [one] => format!(
                "no invoice number in reference or description; the amount equals the balance \
                 of {} ({}): if it is theirs, record it with `billingctl invoices pay`",
                one.number, one.tenant_id
            ),
            _ => "no invoice number in reference or description".into(),
        }
    }
}

/// The invoice as recording `amount` leaves it (what a dry run reports): the status the
/// lifecycle would settle it in, by the same rule.
fn paid(invoice: &InvoiceRow, amount: Decimal) -> InvoiceRow {
    let mut after = invoice.clone();
    after.amount_paid += amount;
    after.status = invoice
        .status
        .after_payment(after.amount_paid >= after.total);
    after
}

fn replace(invoices: &mut [InvoiceRow], updated: InvoiceRow) {
    let id: Uuid = updated.id;
    if let Some(slot) = invoices.iter_mut().find(|i| i.id == id) {
        *slot = updated;
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::paid;
    use crate::store::{InvoiceStatus, example_invoice};

    #[test]
    fn a_dry_run_settles_the_invoice_as_recording_the_payment_would() {
        // Total 35.20, 10.00 paid: 25.20 due.
        let part = Decimal::new(500, 2);
        let rest = Decimal::new(2520, 2);
        let mut invoice = example_invoice();
        assert_eq!(paid(&invoice, part).status, InvoiceStatus::PartiallyPaid);
        assert_eq!(paid(&invoice, part).amount_paid, Decimal::new(1500, 2));
        assert_eq!(paid(&invoice, rest).status, InvoiceStatus::Paid);
        // An overdue invoice stays overdue until paid in full (the dry run said
        // partially_paid, which recording it never does).
        invoice.status = InvoiceStatus::Overdue;
        assert_eq!(paid(&invoice, part).status, InvoiceStatus::Overdue);
        assert_eq!(paid(&invoice, rest).status, InvoiceStatus::Paid);
    }
}
