//! `billing.ledger.v1.LedgerService`: bookings and period summaries for invoicing and
//! billingctl, the integrity check, the dead letters, the audit log and reconciliation with
//! SimplyBook.

use billing_runtime::error::to_status;

use billing_domain::{BillingPeriod, BookingStatus, Currency};
use billing_proto::convert::{datetime, money, timestamp};
use billing_proto::ledger::ledger_service_server::LedgerService;
use billing_proto::ledger::{
    AuditEvent, Booking, CheckSimplyBookRequest, CheckSimplyBookResponse, EraseClientRequest,
    EraseClientResponse, GetBookingDepositsRequest, GetBookingDepositsResponse, GetBookingRequest,
    GetBookingResponse, GetBookingsRequest, GetBookingsResponse, GetMonthDepositsRequest,
    GetMonthDepositsResponse, ImportDepositsRequest, ImportDepositsResponse, IntegrityViolation,
    ListAuditEventsRequest, ListAuditEventsResponse, ListBookingsRequest, ListBookingsResponse,
    ListDeadLettersRequest, ListDeadLettersResponse, PriceRevision, ReconcileSimplyBookRequest,
    ReconcileSimplyBookResponse, ReplayDeadLetterRequest, ReplayDeadLetterResponse,
    RewrapClientKeysRequest, RewrapClientKeysResponse, ShowClientRequest, ShowClientResponse,
    StatusChange, SummarizePeriodRequest, SummarizePeriodResponse, TenantReconciliation,
    VerifyIntegrityRequest, VerifyIntegrityResponse,
};
use billing_runtime::auth::Access;
use billing_runtime::tenants::LiveTenants;
use chrono::Utc;
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::anchors::Anchors;
use crate::clients;
use crate::deposits;
use crate::dlq::DeadLetters;
use crate::integrity;
use crate::reconcile::{ReconcileError, Reconciler};
use crate::store::{AuditFilter, BookingRow, Store};

/// Who may call what (see [`billing_runtime::auth`]); methods not listed need `admin`
/// (ReplayDeadLetter).
pub const ACCESS: &[(&str, Access)] = &[
    (
        "/billing.ledger.v1.LedgerService/ListBookings",
        Access::Read,
    ),
    ("/billing.ledger.v1.LedgerService/GetBooking", Access::Read),
    (
        "/billing.ledger.v1.LedgerService/SummarizePeriod",
        Access::Read,
    ),
    ("/billing.ledger.v1.LedgerService/GetBookings", Access::Read),
    (
        "/billing.ledger.v1.LedgerService/VerifyIntegrity",
        Access::Read,
    ),
    (
        "/billing.ledger.v1.LedgerService/ListDeadLetters",
        Access::Read,
    ),
    (
        "/billing.ledger.v1.LedgerService/ListAuditEvents",
        Access::Read,
    ),
    (
        "/billing.ledger.v1.LedgerService/ReconcileSimplyBook",
        Access::Billing,
    ),
    // Clients' personal details: the roles that bill.
    (
        "/billing.ledger.v1.LedgerService/ShowClient",
        Access::Billing,
    ),
    // Deposits received: imported by the roles that bill, read by any.
    (
        "/billing.ledger.v1.LedgerService/ImportDeposits",
        Access::Billing,
    ),
    (
        "/billing.ledger.v1.LedgerService/GetMonthDeposits",
        Access::Read,
    ),
    (
        "/billing.ledger.v1.LedgerService/GetBookingDeposits",
        Access::Read,
    ),
    // EraseClient and RewrapClientKeys are left out: admin.
    // CheckSimplyBook is left out, so it needs admin: it spends the tenant's SimplyBook quota
    // and can return raw answers.
];

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

pub struct LedgerGrpc {
    store: Store,
    tenants: LiveTenants,
    dead_letters: DeadLetters,
    reconciler: Reconciler,
    anchors: Anchors,
}

impl LedgerGrpc {
    pub fn new(
        store: Store,
        tenants: LiveTenants,
        dead_letters: DeadLetters,
        reconciler: Reconciler,
        anchors: Anchors,
    ) -> Self {
        LedgerGrpc {
            store,
            tenants,
            dead_letters,
            reconciler,
            anchors,
        }
    }

    fn tenant(&self, tenant_id: &str) -> Result<billing_domain::TenantConfig, Status> {
        self.tenants
            .current()
            .get(tenant_id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("unknown tenant {tenant_id:?}")))
    }

    fn tenant_currency(&self, tenant_id: &str) -> Result<Currency, Status> {
        self.tenants
            .current()
            .get(tenant_id)
            .map(|t| t.currency)
            .ok_or_else(|| Status::not_found(format!("unknown tenant {tenant_id:?}")))
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerGrpc {
    async fn list_bookings(
        &self,
        request: Request<ListBookingsRequest>,
    ) -> Result<Response<ListBookingsResponse>, Status> {
        let req = request.into_inner();
        self.tenant_currency(&req.tenant_id)?;
        let limit = match req.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let status = match req.status.as_str() {
            "" => None,
            s => Some(
                BookingStatus::parse(s)
                    .ok_or_else(|| Status::invalid_argument(format!("unknown status {s:?}")))?
                    .as_str(),
            ),
        };
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(parse_page_token(token)?),
        };
        let rows = self
            .store
            .list(
                &req.tenant_id,
                datetime(req.from.as_ref()),
                datetime(req.to.as_ref()),
                status,
                after,
                i64::from(limit),
            )
            .await
            .map_err(to_status)?;
        let next_page_token = match rows.last() {
            Some(last) if rows.len() == limit as usize => page_token(last),
            _ => String::new(),
        };
        let bookings = rows.iter().map(to_proto).collect::<Result<_, _>>()?;
        Ok(Response::new(ListBookingsResponse {
            bookings,
            next_page_token,
        }))
    }

    async fn get_booking(
        &self,
        request: Request<GetBookingRequest>,
    ) -> Result<Response<GetBookingResponse>, Status> {
        let req = request.into_inner();
        let currency = self.tenant_currency(&req.tenant_id)?;
        let row = self
            .store
            .booking(&req.tenant_id, &req.booking_ref)
            .await
            .map_err(to_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no booking {:?} for tenant {:?}",
                    req.booking_ref, req.tenant_id
                ))
            })?;
        let history = self.store.history(row.id).await.map_err(to_status)?;
        let revisions = self.store.revisions(row.id).await.map_err(to_status)?;
        let m = |amount: Decimal| Some(money(currency.code(), currency.format(amount)));
        Ok(Response::new(GetBookingResponse {
            booking: Some(to_proto(&row)?),
            history: history
                .into_iter()
                .map(|h| StatusChange {
                    status: h.status,
                    session_at: Some(timestamp(h.session_at)),
                    service_name: h.service_name.unwrap_or_default(),
                    event_id: h.event_id,
                    changed_at: Some(timestamp(h.changed_at)),
                })
                .collect(),
            revisions: revisions
                .into_iter()
                .map(|r| PriceRevision {
                    revision: u32::try_from(r.revision_no).unwrap_or_default(),
                    total_delta: m(r.total_delta),
                    fee_delta: m(r.fee_delta),
                    total_after: m(r.total_after),
                    fee_after: m(r.fee_after),
                    record_hash: r.record_hash,
                    event_id: r.source_event_id,
                    recorded_at: Some(timestamp(r.recorded_at)),
                })
                .collect(),
        }))
    }

    async fn get_bookings(
        &self,
        request: Request<GetBookingsRequest>,
    ) -> Result<Response<GetBookingsResponse>, Status> {
        let req = request.into_inner();
        self.tenant_currency(&req.tenant_id)?;
        if req.booking_ids.len() > MAX_LIMIT as usize {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_LIMIT} booking ids per call"
            )));
        }
        let ids = req
            .booking_ids
            .iter()
            .map(|id| id.parse())
            .collect::<Result<Vec<uuid::Uuid>, _>>()
            .map_err(|_| Status::invalid_argument("booking ids must be UUIDs"))?;
        let rows = self
            .store
            .by_ids(&req.tenant_id, &ids)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetBookingsResponse {
            bookings: rows.iter().map(to_proto).collect::<Result<_, _>>()?,
        }))
    }

    async fn summarize_period(
        &self,
        request: Request<SummarizePeriodRequest>,
    ) -> Result<Response<SummarizePeriodResponse>, Status> {
        let req = request.into_inner();
        let currency = self.tenant_currency(&req.tenant_id)?;
        let (Some(start), Some(end)) = (datetime(req.start.as_ref()), datetime(req.end.as_ref()))
        else {
            return Err(Status::invalid_argument("start and end are required"));
        };
        if start >= end {
            return Err(Status::invalid_argument("start must be before end"));
        }
        let rows = self
            .store
            .billable(&req.tenant_id, start, end)
            .await
            .map_err(to_status)?;
        let mut total = Decimal::ZERO;
        let mut fees = Decimal::ZERO;
        for row in &rows {
            if row.currency() != Some(currency) {
                return Err(Status::failed_precondition(format!(
                    "booking {} is in {}, tenant bills in {currency}",
                    row.booking_ref, row.currency
                )));
            }
            total += row.total_amount;
            fees += row.platform_fee;
        }
        Ok(Response::new(SummarizePeriodResponse {
            tenant_id: req.tenant_id,
            start: Some(timestamp(start)),
            end: Some(timestamp(end)),
            booking_count: u32::try_from(rows.len()).unwrap_or(u32::MAX),
            total_booking_value: Some(money(currency.code(), currency.format(total))),
            platform_fee_total: Some(money(currency.code(), currency.format(fees))),
            billable: rows.iter().map(to_proto).collect::<Result<_, _>>()?,
        }))
    }

    async fn verify_integrity(
        &self,
        request: Request<VerifyIntegrityRequest>,
    ) -> Result<Response<VerifyIntegrityResponse>, Status> {
        let tenant_id = request.into_inner().tenant_id;
        self.tenant_currency(&tenant_id)?;
        let (records, head) = self.store.chain(&tenant_id).await.map_err(|err| {
            if !matches!(err, sqlx::Error::ColumnDecode { .. }) {
                return to_status(err);
            }
            // Every amount the ledger writes fits its decimals; one that does not was written
            // by someone else, past the tables' checks.
            metrics::counter!("ledger_integrity_checks_total", "outcome" => "violated")
                .increment(1);
            tracing::error!(tenant_id, error = %err, "hash chain holds an unreadable value");
            Status::data_loss(
                "the chain holds a value the ledger never writes (an amount outside its range): \
                 it was changed outside the ledger",
            )
        })?;
        // Without the stream the anchor cannot be read: the check would be weaker than asked.
        let anchor = self.anchors.latest(&tenant_id).await.map_err(|err| {
            tracing::warn!(tenant_id, error = %err, "reading the chain anchor failed");
            Status::unavailable("the chain anchors cannot be read now, retry later")
        })?;
        let mut report = integrity::verify_anchored(
            &tenant_id,
            &records,
            head,
            anchor.as_ref(),
            self.store.chain_key(),
        );
        if report.violation.is_none() {
            let foreign = self
                .store
                .foreign_client_key(&tenant_id)
                .await
                .map_err(to_status)?;
            report.violation =
                foreign.map(
                    |(chain_seq, id, booking_ref, key_id)| integrity::Violation {
                        chain_seq,
                        kind: "booking",
                        record_id: Some(id),
                        booking_ref,
                        reason: format!(
                            "its client details are sealed under key {key_id}, which is not one of \
                         the tenant's client keys"
                        ),
                        expected_hash: String::new(),
                        stored_hash: String::new(),
                    },
                );
        }
        let outcome = if report.violation.is_some() {
            "violated"
        } else {
            "intact"
        };
        metrics::counter!("ledger_integrity_checks_total", "outcome" => outcome).increment(1);
        if let Some(v) = &report.violation {
            tracing::error!(tenant_id, chain_seq = v.chain_seq, reason = %v.reason, "hash chain violated");
        }
        Ok(Response::new(VerifyIntegrityResponse {
            anchored_seq: anchor
                .map(|a| u64::try_from(a.chain_seq).unwrap_or_default())
                .unwrap_or_default(),
            tenant_id,
            intact: report.violation.is_none(),
            records_checked: report.records_checked,
            head_hash: report.head_hash,
            first_violation: report.violation.map(|v| IntegrityViolation {
                chain_seq: u64::try_from(v.chain_seq).unwrap_or_default(),
                record_kind: v.kind.to_string(),
                record_id: v.record_id.map(|id| id.to_string()).unwrap_or_default(),
                booking_ref: v.booking_ref,
                reason: v.reason,
                expected_hash: v.expected_hash,
                stored_hash: v.stored_hash,
            }),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let req = request.into_inner();
        if !req.tenant_id.is_empty() {
            self.tenant_currency(&req.tenant_id)?;
        }
        let limit = match req.limit {
            0 => 100,
            n => n.min(MAX_LIMIT),
        };
        let dead_letters = self
            .dead_letters
            .list(
                &req.tenant_id,
                &req.consumer,
                req.after_sequence,
                usize::try_from(limit).unwrap_or(100),
            )
            .await?;
        Ok(Response::new(ListDeadLettersResponse { dead_letters }))
    }

    async fn replay_dead_letter(
        &self,
        request: Request<ReplayDeadLetterRequest>,
    ) -> Result<Response<ReplayDeadLetterResponse>, Status> {
        let sequence = request.into_inner().sequence;
        let (letter, replayed) = self.dead_letters.replay(sequence).await?;
        if replayed {
            self.store
                .record_replay(&letter.event_id, &letter.tenant_id, sequence)
                .await
                .map_err(to_status)?;
        }
        Ok(Response::new(ReplayDeadLetterResponse {
            dead_letter: Some(letter),
            replayed,
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let req = request.into_inner();
        let some = |s: String| (!s.is_empty()).then_some(s);
        let filter = AuditFilter {
            tenant_id: some(req.tenant_id),
            source: some(req.source),
            outcome: some(req.outcome),
            from: datetime(req.from.as_ref()),
            to: datetime(req.to.as_ref()),
            before_id: match req.before_id {
                0 => None,
                id => Some(
                    i64::try_from(id)
                        .map_err(|_| Status::invalid_argument("before_id is out of range"))?,
                ),
            },
            limit: i64::from(match req.limit {
                0 => 100,
                n => n.min(1000),
            }),
        };
        let rows = self.store.audit(&filter).await.map_err(to_status)?;
        let events = rows
            .into_iter()
            .map(|r| AuditEvent {
                id: u64::try_from(r.id).unwrap_or_default(),
                occurred_at: Some(timestamp(r.occurred_at)),
                source: r.source,
                event_id: r.event_id,
                tenant_id: r.tenant_id.unwrap_or_default(),
                outcome: r.outcome.to_string(),
                booking_id: r.booking_id.map(|id| id.to_string()).unwrap_or_default(),
                reason: r.reason.unwrap_or_default(),
                http_status: r
                    .http_status
                    .and_then(|s| u32::try_from(s).ok())
                    .unwrap_or(0),
                body_sha256: r.body_sha256.unwrap_or_default(),
                operator: r.operator.unwrap_or_default(),
                caller_role: r.caller_role.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(ListAuditEventsResponse { events }))
    }

    async fn reconcile_simply_book(
        &self,
        request: Request<ReconcileSimplyBookRequest>,
    ) -> Result<Response<ReconcileSimplyBookResponse>, Status> {
        let req = request.into_inner();
        // `current` and `previous` are each tenant's own, in its time zone.
        let fixed = match req.period.as_str() {
            "" | "previous" | "current" => None,
            p => Some(
                p.parse::<BillingPeriod>()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            ),
        };
        let current = req.period == "current";
        let tenants = self.reconciler.tenants(&req.tenant_id).map_err(to_status)?;
        let mut reports = Vec::with_capacity(tenants.len());
        for tenant in &tenants {
            let now = Utc::now();
            let period = match (fixed, current) {
                (Some(p), _) => p,
                (None, true) => BillingPeriod::containing(now, tenant.time_zone),
                (None, false) => BillingPeriod::previous_to(now, tenant.time_zone),
            };
            // One tenant's failure is its report's, not every tenant's.
            let report = match self
                .reconciler
                .run(tenant, period, req.repair, req.alert)
                .await
            {
                Ok(report) => report,
                Err(ReconcileError::Db(err)) => {
                    tracing::error!(error = %err, tenant = %tenant.id, "reconciliation not stored");
                    TenantReconciliation {
                        tenant_id: tenant.id.to_string(),
                        period: period.to_string(),
                        error: "the ledger's database failed; run it again".into(),
                        ..Default::default()
                    }
                }
                Err(err) => return Err(to_status(err)),
            };
            reports.push(report);
        }
        Ok(Response::new(ReconcileSimplyBookResponse {
            tenants: reports,
        }))
    }

    async fn check_simply_book(
        &self,
        request: Request<CheckSimplyBookRequest>,
    ) -> Result<Response<CheckSimplyBookResponse>, Status> {
        let req = request.into_inner();
        let tenant = self
            .reconciler
            .tenants(&req.tenant_id)
            .map_err(to_status)?
            .into_iter()
            .next()
            .filter(|_| !req.tenant_id.is_empty())
            .ok_or_else(|| Status::invalid_argument("tenant_id is required"))?;
        if tenant.simplybook_company.is_none() {
            return Err(Status::failed_precondition(format!(
                "tenant {} has no simplybook_company",
                tenant.id
            )));
        }
        let checks =
            crate::golive::check(self.reconciler.simplybook(), &tenant, req.raw_answers).await;
        Ok(Response::new(CheckSimplyBookResponse { checks }))
    }

    async fn show_client(
        &self,
        request: Request<ShowClientRequest>,
    ) -> Result<Response<ShowClientResponse>, Status> {
        clients::grpc::show(&self.store, request).await
    }

    async fn erase_client(
        &self,
        request: Request<EraseClientRequest>,
    ) -> Result<Response<EraseClientResponse>, Status> {
        clients::grpc::erase(&self.store, request).await
    }

    async fn rewrap_client_keys(
        &self,
        request: Request<RewrapClientKeysRequest>,
    ) -> Result<Response<RewrapClientKeysResponse>, Status> {
        clients::grpc::rewrap(&self.store, request).await
    }

    async fn import_deposits(
        &self,
        request: Request<ImportDepositsRequest>,
    ) -> Result<Response<ImportDepositsResponse>, Status> {
        let req = request.into_inner();
        let tenant = self.tenant(&req.tenant_id)?;
        deposits::grpc::import(&self.store, &tenant, req).await
    }

    async fn get_month_deposits(
        &self,
        request: Request<GetMonthDepositsRequest>,
    ) -> Result<Response<GetMonthDepositsResponse>, Status> {
        let req = request.into_inner();
        let tenant = self.tenant(&req.tenant_id)?;
        deposits::grpc::month(&self.store, &tenant, &req.period).await
    }

    async fn get_booking_deposits(
        &self,
        request: Request<GetBookingDepositsRequest>,
    ) -> Result<Response<GetBookingDepositsResponse>, Status> {
        let req = request.into_inner();
        let tenant = self.tenant(&req.tenant_id)?;
        deposits::grpc::of_bookings(&self.store, &tenant, &req.booking_refs).await
    }
}

/// Keyset paging over `(session_at, booking_ref)`: the last row's position, as text.
fn page_token(last: &BookingRow) -> String {
    format!(
        "{}|{}",
        last.session_at.timestamp_micros(),
        last.booking_ref
    )
}

fn parse_page_token(token: &str) -> Result<(chrono::DateTime<chrono::Utc>, String), Status> {
    token
        .split_once('|')
        .and_then(|(micros, booking_ref)| {
            let at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
            Some((at, booking_ref.to_string()))
        })
        .ok_or_else(|| Status::invalid_argument("page_token is not one this service issued"))
}

fn to_proto(row: &BookingRow) -> Result<Booking, Status> {
    let currency = row.currency().ok_or_else(|| {
        tracing::error!(booking_id = %row.id, "stored booking has an unknown currency");
        Status::internal("internal error")
    })?;
    let m = |amount: Decimal| Some(money(currency.code(), currency.format(amount)));
    Ok(Booking {
        id: row.id.to_string(),
        tenant_id: row.tenant_id.clone(),
        booking_ref: row.booking_ref.clone(),
        status: row.status.clone(),
        session_at: Some(timestamp(row.session_at)),
        service_name: row.service_name.clone(),
        total: m(row.total_amount),
        deposit: m(row.deposit_amount),
        cash: m(row.cash_amount),
        platform_fee: m(row.platform_fee),
        deposit_rate: row.deposit_rate.normalize().to_string(),
        platform_fee_rate: row.platform_fee_rate.normalize().to_string(),
        record_hash: row.record_hash.clone(),
        recorded_at: Some(timestamp(row.recorded_at)),
        revision: u32::try_from(row.revision_no).unwrap_or_default(),
    })
}
