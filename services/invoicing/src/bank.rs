//! Reconciliation with the money received: bank transfers from a statement matched to invoices.
//!
//! A transfer matches the invoice whose number appears in its reference or description. Banks
//! mangle references (case, spaces, dashes dropped: "claire 2026 0001", "CLAIRE20260001"), so
//! both are compared as upper-case letters and digits only, and a number must not run on into
//! more digits ("…00011" is not "…0001"). A matched transfer is recorded as a payment when it is
//! at most the balance due (in full → paid, less → partially paid); anything else is left for a
//! person with the reason. Each statement line has an idempotency key derived from its content,
//! so importing an overlapping statement again records nothing twice.

use std::collections::HashMap;

use billing_proto::invoicing::{BankTransfer, TransferMatch};
use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::store::{InvoiceRow, Status, Store};

pub const RECORDED: &str = "recorded";
pub const ALREADY_RECORDED: &str = "already_recorded";
pub const WOULD_RECORD: &str = "would_record";
pub const UNMATCHED: &str = "unmatched";

/// Upper-case ASCII letters and digits of `s`, nothing else.
fn normalize(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Whether `number` (normalized) occurs in `text` (normalized) not followed by another digit.
fn mentions(text: &str, number: &str) -> bool {
    if number.is_empty() {
        return false;
    }
    text.match_indices(number).any(|(at, _)| {
        !text[at + number.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// The invoices a transfer's reference or description names.
fn named<'a>(transfer: &BankTransfer, invoices: &'a [InvoiceRow]) -> Vec<&'a InvoiceRow> {
    let text = normalize(&format!("{} {}", transfer.reference, transfer.description));
    invoices
        .iter()
        .filter(|i| mentions(&text, &normalize(&i.number)))
        .collect()
}

/// The payment idempotency key of a statement line: the same date, amount, reference and
/// description are the same transfer.
fn line_key(t: &BankTransfer) -> String {
    let mut sha = Sha256::new();
    for field in [&t.received_on, &t.amount, &t.reference, &t.description] {
        sha.update(field.trim().as_bytes());
        sha.update([0]);
    }
    format!("statement:{}", hex::encode(sha.finalize()))
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
    /// Matches each transfer, in order, recording payments unless `dry_run`.
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
            .filter(|i| i.status().is_open() || i.status() == Status::Paid)
            .collect();
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut results = Vec::with_capacity(transfers.len());
        for t in transfers {
            let key = line_key(t);
            if let Some(first) = seen.get(&key) {
                results.push(unmatched(
                    t.line,
                    format!(
                        "same date, amount and reference as line {first}: if it is a second \
                         payment, record it with `billingctl invoices pay --key`"
                    ),
                ));
                continue;
            }
            seen.insert(key.clone(), t.line);
            let result = self.one(t, &key, &mut invoices, dry_run).await?;
            results.push(result);
        }
        Ok(results)
    }

    async fn one(
        &self,
        t: &BankTransfer,
        key: &str,
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
        let named = named(t, invoices);
        let invoice = match named.as_slice() {
            [one] => (*one).clone(),
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
        let full_key = format!("bank:{key}");
        if let Some((paid_invoice, _)) = self.store.payment_by_key(&full_key).await?
            && paid_invoice == invoice.id
        {
            result.outcome = ALREADY_RECORDED.into();
            result.detail = invoice.status.clone();
            result.balance_after = Some(invoice.money(balance));
            return Ok(result);
        }
        if invoice.status() == Status::Paid {
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
            result.outcome = WOULD_RECORD.into();
            let after = if amount == balance {
                Status::Paid
            } else {
                Status::PartiallyPaid
            };
            result.detail = after.as_str().into();
            result.balance_after = Some(invoice.money(balance - amount));
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
                &currency.format(amount),
                received_on,
                reference,
                key,
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
        result.detail = updated.status.clone();
        result.balance_after = Some(updated.money(updated.total - updated.amount_paid));
        replace(invoices, updated);
        Ok(result)
    }

    /// Why a transfer naming no invoice did not match, with the invoice whose balance it equals
    /// when there is exactly one (a person decides: amounts alone are not proof).
    fn no_number(&self, t: &BankTransfer, invoices: &[InvoiceRow]) -> String {
        let same: Vec<&InvoiceRow> = invoices
            .iter()
            .filter(|i| i.status().is_open())
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

fn replace(invoices: &mut [InvoiceRow], updated: InvoiceRow) {
    let id: Uuid = updated.id;
    if let Some(slot) = invoices.iter_mut().find(|i| i.id == id) {
        *slot = updated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found_whatever_the_bank_did_to_them() {
        let number = normalize("CLAIRE-2026-0001");
        for reference in [
            "CLAIRE-2026-0001",
            "claire 2026 0001",
            "Inv CLAIRE20260001 thanks",
            "PAYMENT/claire-2026-0001/",
        ] {
            assert!(mentions(&normalize(reference), &number), "{reference}");
        }
        for other in [
            "CLAIRE-2026-00011",
            "CLAIRE-2026-001",
            "KENJI-2026-0001",
            "",
        ] {
            assert!(!mentions(&normalize(other), &number), "{other}");
        }
    }

    #[test]
    fn a_line_key_depends_on_every_field_and_nothing_else() {
        let t = BankTransfer {
            line: 3,
            received_on: "2026-11-05".into(),
            amount: "75.10".into(),
            currency: String::new(),
            reference: "CLAIRE-2026-0001".into(),
            description: "Transfer".into(),
        };
        let moved = BankTransfer {
            line: 9,
            ..t.clone()
        };
        assert_eq!(line_key(&t), line_key(&moved));
        let other = BankTransfer {
            amount: "75.11".into(),
            ..t.clone()
        };
        assert_ne!(line_key(&t), line_key(&other));
        // Fields are separated: moving text between them is another transfer.
        let shifted = BankTransfer {
            reference: "CLAIRE-2026-0001Transfer".into(),
            description: String::new(),
            ..t.clone()
        };
        assert_ne!(line_key(&t), line_key(&shifted));
    }
}
