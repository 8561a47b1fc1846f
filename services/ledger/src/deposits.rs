//! Deposits received (`ImportDeposits`, `GetMonthDeposits`, `GetBookingDeposits`): a tenant's
//! deposits export matched to its bookings, stored per tenant and month, and each booking's
//! deposit as received against what it asks for.
//!
//! A line is matched only by the SimplyBook booking id it names
//! ([`billing_domain::deposits::names_booking`]). A line naming none is stored unmatched and
//! offered candidates: bookings whose deposit is its amount with a session near its date, the
//! ones of the client whose email the line carries first (found by the email's keyed digest,
//! never by opening anyone's details). A candidate is never applied: a person decides. A line's
//! identity is [`billing_domain::bank::transfer_key`], so importing a file again stores nothing
//! twice, while two identical lines in one file are two receipts. Nothing a line says (its
//! reference or description, which name the payer) is logged or stored.

use std::collections::{HashMap, HashSet};

use billing_domain::bank::transfer_key;
use billing_domain::deposits::{
    CANDIDATE_DAYS_AFTER, CANDIDATE_DAYS_BEFORE, DepositOutcome, could_be_deposit, names_booking,
    reference_tokens,
};
use billing_domain::privacy::ClientIdentity;
use billing_domain::{BillingPeriod, Currency, TenantConfig};
use billing_proto::convert::{money, timestamp};
use billing_proto::ledger::{
    BookingDeposit, DepositCandidate, DepositLine, DepositLineMatch, GetMonthDepositsResponse,
    MonthReconciliation, ReconciliationGap, UnmatchedDeposit,
};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::clients::manage::{Selector, key_ids};
use crate::store::{DepositBooking, NewReceipt, Receipt, Store};

const MATCHED: &str = "matched";
const ALREADY_IMPORTED: &str = "already_imported";
const WOULD_MATCH: &str = "would_match";
const UNMATCHED: &str = "unmatched";
const REFUSED: &str = "refused";

/// Imports a tenant's deposit lines in order. Only a database failure fails the call.
pub async fn import(
    store: &Store,
    tenant: &TenantConfig,
    lines: &[DepositLine],
    dry_run: bool,
) -> Result<Vec<DepositLineMatch>, sqlx::Error> {
    let mut results = Vec::with_capacity(lines.len());
    for line in lines {
        results.push(import_line(store, tenant, line, dry_run).await?);
    }
    let count = |o: &str| results.iter().filter(|r| r.outcome == o).count();
    tracing::info!(
        tenant = %tenant.id,
        lines = lines.len(),
        matched = count(MATCHED),
        already_imported = count(ALREADY_IMPORTED),
        unmatched = count(UNMATCHED),
        refused = count(REFUSED),
        dry_run,
        "deposits imported"
    );
    Ok(results)
}

fn refused(line: u32, detail: impl Into<String>) -> DepositLineMatch {
    DepositLineMatch {
        line,
        outcome: REFUSED.into(),
        detail: detail.into(),
        ..Default::default()
    }
}

async fn import_line(
    store: &Store,
    tenant: &TenantConfig,
    l: &DepositLine,
    dry_run: bool,
) -> Result<DepositLineMatch, sqlx::Error> {
    let currency = tenant.currency;
    let Ok(received_on) = NaiveDate::parse_from_str(l.received_on.trim(), "%Y-%m-%d") else {
        return Ok(refused(
            l.line,
            format!("date {:?} is not YYYY-MM-DD", l.received_on),
        ));
    };
    let line_currency = l.currency.trim();
    if !line_currency.is_empty() && !line_currency.eq_ignore_ascii_case(currency.code()) {
        return Ok(refused(
            l.line,
            format!("received in {line_currency}, the tenant's deposits are in {currency}"),
        ));
    }
    let amount = match currency.parse_amount(l.amount.trim()) {
        Ok(amount) => amount,
        Err(err) => return Ok(refused(l.line, format!("amount {:?}: {err}", l.amount))),
    };
    let key = transfer_key(
        received_on,
        amount,
        &l.reference,
        &l.description,
        l.occurrence.max(1),
    );
    let mut result = DepositLineMatch {
        line: l.line,
        amount: Some(money(currency.code(), currency.format(amount))),
        ..Default::default()
    };
    let stored = store.receipt_by_key(tenant.id.as_str(), &key).await?;
    if let Some(Receipt {
        booking_ref: Some(booking_ref),
        ..
    }) = &stored
    {
        result.outcome = ALREADY_IMPORTED.into();
        result.booking_ref = booking_ref.clone();
        result.detail = "imported before".into();
        return Ok(result);
    }
    let text = format!("{} {}", l.reference, l.description);
    let named = named(store, tenant.id.as_str(), l).await?;
    let booking = match named.as_slice() {
        [one] => Some(one),
        [] => None,
        several => {
            let refs: Vec<&str> = several.iter().map(|b| b.booking_ref.as_str()).collect();
            result.detail = format!("names several bookings: {}", refs.join(", "));
            None
        }
    };
    let period = match booking {
        Some(b) => BillingPeriod::containing(b.session_at, tenant.time_zone),
        None => BillingPeriod::new(received_on.year(), received_on.month())
            .unwrap_or_else(|| BillingPeriod::containing(Utc::now(), tenant.time_zone)),
    };
    result.period = period.to_string();
    match booking {
        Some(b) => {
            result.booking_ref = b.booking_ref.clone();
            result.outcome = if dry_run { WOULD_MATCH } else { MATCHED }.into();
            result.detail = format!("booking {} ({})", b.booking_ref, b.status);
        }
        None => {
            result.outcome = UNMATCHED.into();
            if result.detail.is_empty() {
                result.detail = "names no booking of this tenant".into();
            }
            if stored.is_some() {
                result.detail = format!("{} (imported before)", result.detail);
            }
            result.candidates = candidates(store, tenant, &text, received_on, amount).await?;
        }
    }
    if !dry_run {
        store
            .store_receipt(&NewReceipt {
                tenant_id: tenant.id.as_str(),
                line_key: &key,
                period: &result.period,
                received_on,
                amount,
                currency: currency.code(),
                line: i32::try_from(l.line).unwrap_or(i32::MAX),
                booking_ref: booking.map(|b| b.booking_ref.as_str()),
            })
            .await?;
    }
    Ok(result)
}

/// The tenant's bookings the line's reference or description names.
async fn named(
    store: &Store,
    tenant_id: &str,
    l: &DepositLine,
) -> Result<Vec<DepositBooking>, sqlx::Error> {
    let mut tokens = reference_tokens(&l.reference);
    tokens.extend(reference_tokens(&l.description));
    let found = store.deposit_bookings_by_ref(tenant_id, &tokens).await?;
    Ok(found
        .into_iter()
        .filter(|b| {
            names_booking(&l.reference, &b.booking_ref)
                || names_booking(&l.description, &b.booking_ref)
        })
        .collect())
}

/// Bookings a line naming none could be the deposit of: same amount, a session near the day it
/// was received; those of the client whose email the line carries first.
async fn candidates(
    store: &Store,
    tenant: &TenantConfig,
    text: &str,
    received_on: NaiveDate,
    amount: Decimal,
) -> Result<Vec<DepositCandidate>, sqlx::Error> {
    let tz = tenant.time_zone;
    let day = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or_default()
    };
    // A day either side of the window, for time zones; the local dates decide.
    let from = day(received_on - Duration::days(CANDIDATE_DAYS_AFTER + 1));
    let to = day(received_on + Duration::days(CANDIDATE_DAYS_BEFORE + 2));
    let found = store
        .deposit_candidates(tenant.id.as_str(), amount, from, to)
        .await?;
    let clients = client_keys_named(store, tenant.id.as_str(), text).await?;
    let currency = tenant.currency;
    let mut candidates: Vec<DepositCandidate> = found
        .into_iter()
        .filter(|b| {
            could_be_deposit(
                received_on,
                amount,
                b.session_at.with_timezone(&tz).date_naive(),
                b.deposit_amount,
            )
        })
        .map(|b| DepositCandidate {
            same_client: b.client_key_id.is_some_and(|k| clients.contains(&k)),
            session_at: Some(timestamp(b.session_at)),
            deposit: Some(money(currency.code(), currency.format(b.deposit_amount))),
            booking_ref: b.booking_ref,
        })
        .collect();
    candidates.sort_by_key(|c| !c.same_client);
    Ok(candidates)
}

/// The client keys of the clients whose emails `text` carries (by their keyed digests; nothing
/// is decrypted). Empty without a keyring.
async fn client_keys_named(
    store: &Store,
    tenant_id: &str,
    text: &str,
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let Some(vault) = store.vault() else {
        return Ok(HashSet::new());
    };
    let mut keys = HashSet::new();
    let emails = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '(' | ')'))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| ClientIdentity::email(w).is_some());
    for email in emails {
        let selector = Selector::Email(email.to_string());
        keys.extend(key_ids(store.pool(), vault, tenant_id, &selector).await?);
    }
    Ok(keys)
}

/// Each booking's deposit: expected, received (from `receipts`), when, from which lines.
pub fn booking_deposits(
    bookings: &[DepositBooking],
    receipts: &[Receipt],
    currency: Currency,
) -> Vec<BookingDeposit> {
    let now = Utc::now();
    let mut by_ref: HashMap<&str, Vec<&Receipt>> = HashMap::new();
    for r in receipts {
        if let Some(booking_ref) = &r.booking_ref {
            by_ref.entry(booking_ref).or_default().push(r);
        }
    }
    let m = |amount: Decimal| Some(money(currency.code(), currency.format(amount)));
    bookings
        .iter()
        .map(|b| {
            let mine = by_ref
                .get(b.booking_ref.as_str())
                .cloned()
                .unwrap_or_default();
            let received: Decimal = mine.iter().map(|r| r.amount).sum();
            let outcome =
                DepositOutcome::of(&b.status, b.session_at, b.deposit_amount, received, now);
            BookingDeposit {
                booking_ref: b.booking_ref.clone(),
                status: b.status.clone(),
                session_at: Some(timestamp(b.session_at)),
                total: m(b.total_amount),
                platform_fee: m(b.platform_fee),
                expected: m(b.deposit_amount),
                received: m(received),
                last_received_on: mine
                    .iter()
                    .map(|r| r.received_on)
                    .max()
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                lines: mine.iter().map(|r| describe_line(r)).collect(),
                outcome: outcome.as_str().into(),
            }
        })
        .collect()
}

/// Which statement line a receipt came from, as a person finds it again.
fn describe_line(r: &Receipt) -> String {
    format!(
        "line {} of the import of {} (received {}, {})",
        r.line,
        r.imported_at.date_naive(),
        r.received_on,
        r.amount.normalize()
    )
}

/// The tenant's month: bookings with their deposits, unmatched lines, the latest reconciliation.
pub async fn month(
    store: &Store,
    tenant: &TenantConfig,
    period: BillingPeriod,
) -> Result<GetMonthDepositsResponse, sqlx::Error> {
    let tenant_id = tenant.id.as_str();
    let currency = tenant.currency;
    let (from, to) = period.bounds(tenant.time_zone);
    let bookings = store.deposit_bookings_between(tenant_id, from, to).await?;
    let refs: Vec<String> = bookings.iter().map(|b| b.booking_ref.clone()).collect();
    let receipts = store.receipts_of(tenant_id, &refs).await?;
    let unmatched = store
        .unmatched_receipts(tenant_id, &period.to_string())
        .await?
        .into_iter()
        .map(|r| UnmatchedDeposit {
            line: u32::try_from(r.line).unwrap_or_default(),
            received_on: r.received_on.to_string(),
            amount: Some(money(currency.code(), currency.format(r.amount))),
            imported_at: Some(timestamp(r.imported_at)),
        })
        .collect();
    let count = |n: i32| u32::try_from(n).unwrap_or_default();
    let reconciliation = store
        .latest_reconciliation(tenant_id, &period.to_string())
        .await?
        .map(|r| MonthReconciliation {
            ran_at: Some(timestamp(r.ran_at)),
            simplybook_bookings: count(r.simplybook_bookings),
            ledger_bookings: count(r.ledger_bookings),
            matched: count(r.matched),
            error: r.error.unwrap_or_default(),
            gaps: r
                .gaps
                .into_iter()
                .map(
                    |(booking_ref, kind, simplybook, ledger)| ReconciliationGap {
                        booking_ref,
                        kind,
                        simplybook,
                        ledger,
                        repair: String::new(),
                    },
                )
                .collect(),
        });
    Ok(GetMonthDepositsResponse {
        tenant_id: tenant_id.to_string(),
        period: period.to_string(),
        bookings: booking_deposits(&bookings, &receipts, currency),
        unmatched,
        reconciliation,
        currency: currency.code().to_string(),
    })
}

/// The deposit state of the given bookings.
pub async fn of_bookings(
    store: &Store,
    tenant: &TenantConfig,
    refs: &[String],
) -> Result<Vec<BookingDeposit>, sqlx::Error> {
    let tenant_id = tenant.id.as_str();
    let bookings = store.deposit_bookings_by_ref(tenant_id, refs).await?;
    let receipts = store.receipts_of(tenant_id, refs).await?;
    Ok(booking_deposits(&bookings, &receipts, tenant.currency))
}

/// The deposits RPCs of `LedgerService`, requests checked; `crate::grpc` delegates here.
pub mod grpc {
    use billing_domain::{BillingPeriod, TenantConfig};
    use billing_proto::ledger::{
        GetBookingDepositsResponse, GetMonthDepositsResponse, ImportDepositsRequest,
        ImportDepositsResponse,
    };
    use billing_runtime::error::to_status;
    use chrono::Utc;
    use tonic::{Response, Status};

    use crate::store::Store;

    /// Most lines, or bookings, per call.
    const MAX_PER_CALL: usize = 10_000;

    pub async fn import(
        store: &Store,
        tenant: &TenantConfig,
        req: ImportDepositsRequest,
    ) -> Result<Response<ImportDepositsResponse>, Status> {
        if req.lines.len() > MAX_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_PER_CALL} lines per call"
            )));
        }
        let matches = super::import(store, tenant, &req.lines, req.dry_run)
            .await
            .map_err(to_status)?;
        Ok(Response::new(ImportDepositsResponse { matches }))
    }

    pub async fn month(
        store: &Store,
        tenant: &TenantConfig,
        period: &str,
    ) -> Result<Response<GetMonthDepositsResponse>, Status> {
        let now = Utc::now();
        let period = match period {
            "" | "previous" => BillingPeriod::previous_to(now, tenant.time_zone),
            "current" => BillingPeriod::containing(now, tenant.time_zone),
            p => p
                .parse::<BillingPeriod>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        };
        let month = super::month(store, tenant, period)
            .await
            .map_err(to_status)?;
        Ok(Response::new(month))
    }

    pub async fn of_bookings(
        store: &Store,
        tenant: &TenantConfig,
        refs: &[String],
    ) -> Result<Response<GetBookingDepositsResponse>, Status> {
        if refs.len() > MAX_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_PER_CALL} bookings per call"
            )));
        }
        let bookings = super::of_bookings(store, tenant, refs)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetBookingDepositsResponse { bookings }))
    }
}
