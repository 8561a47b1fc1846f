//! `billingctl bookings`: a tenant's booking records in the ledger, one booking's history and
//! revisions, and the check of the tenant's hash chain.

use billing_proto::ledger::{
    Booking, GetBookingDepositsRequest, GetBookingRequest, ListBookingsRequest,
    VerifyIntegrityRequest,
};

use crate::clients::Conn;
use crate::exit::Outcome;
use crate::output::{self, Table, amount, json_time, left, outln, right, utc_minute};

#[derive(clap::Subcommand)]
pub enum BookingsCmd {
    /// List a tenant's bookings, oldest session first.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One booking with its status history and price revisions.
    Show {
        /// SimplyBook's booking id.
        booking_ref: String,
        #[arg(long)]
        tenant: String,
    },
    /// Recompute a tenant's hash chain; exit status 3 when a record was altered or removed.
    Verify {
        #[arg(long)]
        tenant: String,
    },
}

const LIST: Table<7> = Table::new([
    left("BOOKING", 12),
    left("STATUS", 10),
    left("SESSION (UTC)", 22),
    right("TOTAL", 14),
    right("DEPOSIT", 14),
    right("CASH", 14),
    right("FEE", 14),
]);

pub async fn run(conn: &Conn, json: bool, cmd: BookingsCmd) -> anyhow::Result<Outcome> {
    let mut ledger = conn.ledger()?;
    match cmd {
        BookingsCmd::List { tenant, limit } => {
            let bookings = ledger
                .list_bookings(ListBookingsRequest {
                    tenant_id: tenant,
                    limit,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .bookings;
            output::print_list(json, &bookings, booking_json, |bookings| {
                LIST.header();
                for b in bookings {
                    LIST.row([
                        &b.booking_ref,
                        &b.status,
                        &utc_minute(b.session_at.as_ref()),
                        &amount(b.total.as_ref()),
                        &amount(b.deposit.as_ref()),
                        &amount(b.cash.as_ref()),
                        &amount(b.platform_fee.as_ref()),
                    ]);
                }
            })?;
            Ok(Outcome::Done)
        }
        BookingsCmd::Show {
            booking_ref,
            tenant,
        } => {
            let reply = ledger
                .get_booking(GetBookingRequest {
                    tenant_id: tenant,
                    booking_ref,
                })
                .await?
                .into_inner();
            let b = reply.booking.unwrap_or_default();
            let deposit = ledger
                .get_booking_deposits(GetBookingDepositsRequest {
                    tenant_id: b.tenant_id.clone(),
                    booking_refs: vec![b.booking_ref.clone()],
                })
                .await?
                .into_inner()
                .bookings
                .pop()
                .unwrap_or_default();
            if json {
                output::print_json(&serde_json::json!({
                    "booking": booking_json(&b),
                    "deposit": {
                        "expected": amount(deposit.expected.as_ref()),
                        "received": amount(deposit.received.as_ref()),
                        "received_on": (!deposit.last_received_on.is_empty())
                            .then_some(&deposit.last_received_on),
                        "outcome": deposit.outcome, "lines": deposit.lines,
                    },
                    "history": reply.history.iter().map(|h| serde_json::json!({
                        "status": h.status, "service": h.service_name, "event_id": h.event_id,
                        "session_at": json_time(h.session_at.as_ref()),
                        "changed_at": json_time(h.changed_at.as_ref()),
                    })).collect::<Vec<_>>(),
                    "revisions": reply.revisions.iter().map(|r| serde_json::json!({
                        "revision": r.revision, "total_delta": amount(r.total_delta.as_ref()),
                        "fee_delta": amount(r.fee_delta.as_ref()),
                        "total_after": amount(r.total_after.as_ref()),
                        "fee_after": amount(r.fee_after.as_ref()), "event_id": r.event_id,
                        "record_hash": r.record_hash,
                        "recorded_at": json_time(r.recorded_at.as_ref()),
                    })).collect::<Vec<_>>(),
                }))?;
                return Ok(Outcome::Done);
            }
            outln!(
                "Booking {} of {}  ({})",
                b.booking_ref,
                b.tenant_id,
                b.status
            );
            outln!(
                "Session   {} UTC, {}",
                utc_minute(b.session_at.as_ref()),
                b.service_name
            );
            outln!(
                "Amounts   total {}, deposit {}, cash {}, platform fee {} (revision {})",
                amount(b.total.as_ref()),
                amount(b.deposit.as_ref()),
                amount(b.cash.as_ref()),
                amount(b.platform_fee.as_ref()),
                b.revision
            );
            outln!(
                "Rates     deposit {}, fee {}",
                b.deposit_rate,
                b.platform_fee_rate
            );
            outln!(
                "Recorded  {} UTC, hash {}",
                utc_minute(b.recorded_at.as_ref()),
                b.record_hash
            );
            outln!(
                "Deposit   expected {}, received {} ({}){}",
                amount(deposit.expected.as_ref()),
                amount(deposit.received.as_ref()),
                deposit.outcome,
                if deposit.last_received_on.is_empty() {
                    String::new()
                } else {
                    format!(", last on {}", deposit.last_received_on)
                }
            );
            for line in &deposit.lines {
                outln!("          from {line}");
            }
            outln!("History");
            for h in &reply.history {
                outln!(
                    "  {}  {:<10} session {}  {}",
                    utc_minute(h.changed_at.as_ref()),
                    h.status,
                    utc_minute(h.session_at.as_ref()),
                    h.event_id
                );
            }
            for r in &reply.revisions {
                outln!(
                    "  revision {}: total {} ({}), fee {} ({})  {}",
                    r.revision,
                    amount(r.total_after.as_ref()),
                    amount(r.total_delta.as_ref()),
                    amount(r.fee_after.as_ref()),
                    amount(r.fee_delta.as_ref()),
                    r.event_id
                );
            }
            Ok(Outcome::Done)
        }
        BookingsCmd::Verify { tenant } => {
            let report = ledger
                .verify_integrity(VerifyIntegrityRequest { tenant_id: tenant })
                .await?
                .into_inner();
            let v = report.first_violation.as_ref();
            if json {
                output::print_json_line(&serde_json::json!({
                    "tenant": report.tenant_id, "intact": report.intact,
                    "records_checked": report.records_checked, "head_hash": report.head_hash,
                    "first_violation": v.map(|v| serde_json::json!({
                        "chain_seq": v.chain_seq, "record_kind": v.record_kind,
                        "record_id": v.record_id, "booking_ref": v.booking_ref,
                        "reason": v.reason, "expected_hash": v.expected_hash,
                        "stored_hash": v.stored_hash,
                    })),
                }));
            } else if let Some(v) = v {
                outln!(
                    "{}: chain BROKEN at record {} ({} {}): {}",
                    report.tenant_id,
                    v.chain_seq,
                    v.record_kind,
                    v.booking_ref,
                    v.reason
                );
                outln!("  expected hash {}", v.expected_hash);
                outln!("  stored hash   {}", v.stored_hash);
            } else {
                outln!(
                    "{}: intact, {} records, head {}",
                    report.tenant_id,
                    report.records_checked,
                    report.head_hash
                );
            }
            Ok(Outcome::attention_unless(report.intact))
        }
    }
}

fn booking_json(b: &Booking) -> serde_json::Value {
    serde_json::json!({
        "id": b.id, "tenant": b.tenant_id, "booking_ref": b.booking_ref, "status": b.status,
        "session_at": json_time(b.session_at.as_ref()),
        "service": b.service_name, "total": amount(b.total.as_ref()),
        "deposit": amount(b.deposit.as_ref()), "cash": amount(b.cash.as_ref()),
        "platform_fee": amount(b.platform_fee.as_ref()), "deposit_rate": b.deposit_rate,
        "platform_fee_rate": b.platform_fee_rate, "revision": b.revision,
        "record_hash": b.record_hash,
        "recorded_at": json_time(b.recorded_at.as_ref()),
    })
}
