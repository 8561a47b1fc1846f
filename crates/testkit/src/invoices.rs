//! Invoices as the invoicing service returns them, for rendering tests and the PDF benchmark.

use billing_proto::Money;
use billing_proto::convert::timestamp;
use billing_proto::invoicing::{Invoice, InvoiceLine};
use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;

fn money(amount: Decimal) -> Option<Money> {
    Some(Money {
        currency_code: "AUD".into(),
        amount: format!("{amount:.2}"),
    })
}

const SERVICES: [&str; 4] = [
    "Counselling session (60 min)",
    "Remedial massage (90 min)",
    "Initial consultation",
    "Follow-up session (45 min)",
];

/// An issued AUD invoice with `n` lines for Claire's October 2026; every 25th line (from the
/// 11th) is an adjustment (a September booking cancelled after it was invoiced).
pub fn sample_invoice(n: usize, tax_rate: Decimal) -> Invoice {
    let start = Utc.with_ymd_and_hms(2026, 9, 30, 14, 0, 0).single();
    let end = Utc.with_ymd_and_hms(2026, 10, 31, 13, 0, 0).single();
    let mut subtotal = Decimal::ZERO;
    let mut booking_value = Decimal::ZERO;
    let mut bookings = 0;
    let lines: Vec<InvoiceLine> = (0..n)
        .map(|i| {
            let total = Decimal::new(8000 + (i as i64 % 9) * 1250, 2);
            let adjustment = i % 25 == 10;
            let (amount, kind, description) = if adjustment {
                (
                    -total,
                    "adjustment",
                    format!(
                        "cancelled; {:.2} billed up to invoice CLAIRE-2026-0009",
                        total / Decimal::new(5, 0)
                    ),
                )
            } else {
                bookings += 1;
                booking_value += total;
                (total, "booking", String::new())
            };
            let fee = (amount * Decimal::new(20, 2)).round_dp(2);
            subtotal += fee;
            // An adjustment corrects a booking of an earlier month.
            let month = if adjustment { 9 } else { 10 };
            let session = Utc
                .with_ymd_and_hms(2026, month, 1, 0, 0, 0)
                .single()
                .map(|t| {
                    t + chrono::Duration::minutes(
                        i64::try_from(i).unwrap_or(0) * 29 % (30 * 24 * 60),
                    )
                });
            InvoiceLine {
                position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                booking_ref: format!("SB-{:06}", 104_000 + i),
                session_at: session.map(timestamp),
                service_name: SERVICES[i % SERVICES.len()].into(),
                booking_amount: money(amount),
                platform_fee: money(fee),
                kind: kind.into(),
                description,
                booking_id: format!("booking-{i}"),
            }
        })
        .collect();
    let tax = (subtotal * tax_rate).round_dp(2);
    let total = subtotal + tax;
    let paid = Decimal::ZERO;
    Invoice {
        id: "0195f000-0000-7000-8000-000000000001".into(),
        number: "CLAIRE-2026-0010".into(),
        tenant_id: "claire".into(),
        tenant_name: "Claire Hamilton Therapies Pty Ltd".into(),
        billing_email: "accounts@claire.example".into(),
        period: "2026-10".into(),
        period_start: start.map(timestamp),
        period_end: end.map(timestamp),
        time_zone: "Australia/Sydney".into(),
        status: "issued".into(),
        issue_date: "2026-11-01".into(),
        due_date: "2026-11-08".into(),
        booking_count: bookings,
        total_booking_value: money(booking_value),
        total: money(total),
        lines,
        subtotal: money(subtotal),
        tax_rate: tax_rate.to_string(),
        tax: money(tax),
        amount_paid: money(paid),
        balance: money(total - paid),
        address: "Suite 2, 15 Harbour Road\nManly NSW 2095".into(),
        tax_id: "ABN 11 111 111 111 (example)".into(),
        invoicing_mode: "manual".into(),
        payment_instructions: "Example Booking Platform Pty Ltd, BSB 000-000, account 00000000 \
                               (example bank details)."
            .into(),
        ..Default::default()
    }
}
