//! `billing.invoicing.v1.InvoicingService`: the monthly close and overdue sweep (CronJobs,
//! billingctl), payments and voids, invoice reads (notifier, billingctl) and tenant profiles.

use billing_domain::BillingPeriod;
use billing_proto::convert::timestamp;
use billing_proto::invoicing::invoicing_service_server::InvoicingService;
use billing_proto::invoicing::{
    ExplainStatementDifferenceRequest, GenerateMonthlyInvoicesRequest,
    GenerateMonthlyInvoicesResponse, GetInvoiceRequest, GetMonthStatementRequest,
    GetTenantProfileRequest, Invoice, InvoiceLine, ListInvoicesRequest, ListInvoicesResponse,
    ListTenantProfilesRequest, ListTenantProfilesResponse, MatchBankTransfersRequest,
    MatchBankTransfersResponse, MonthStatement, Outcome, Payment, PutTenantProfileRequest,
    RecordPaymentRequest, RecordPaymentResponse, ResendInvoiceEmailRequest, StatementDifference,
    StatusChange, SweepOverdueRequest, SweepOverdueResponse, TenantOutcome, TenantProfile,
    VoidInvoiceRequest,
};
use billing_runtime::auth::Access;
use billing_runtime::error::to_status;
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::bank::BankMatcher;
use crate::close::{CloseError, Closed, MonthlyClose};
use crate::lifecycle::{Lifecycle, PaymentLimit, Transfer};
use crate::profile::{Profile, Profiles};
use crate::statement::Statements;
use crate::store::{
    CloseOutcome, HistoryRow, InvoiceRow, InvoiceStatus, LineRow, NewInvoice, PaymentRow, Store,
};

/// Who may call what (see [`billing_runtime::auth`]); methods not listed need `admin`
/// (PutTenantProfile).
pub const ACCESS: &[(&str, Access)] = &[
    (
        "/billing.invoicing.v1.InvoicingService/GetInvoice",
        Access::Read,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/ListInvoices",
        Access::Read,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/GetTenantProfile",
        Access::Read,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/ListTenantProfiles",
        Access::Read,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/GenerateMonthlyInvoices",
        Access::Billing,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/RecordPayment",
        Access::Billing,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/VoidInvoice",
        Access::Billing,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/ResendInvoiceEmail",
        Access::Billing,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/SweepOverdue",
        Access::Billing,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/MatchBankTransfers",
        Access::Billing,
    ),
    // The month statement: read by any role (composing it records its differences, which is
    // the statement's own bookkeeping); explaining a difference is billing's.
    (
        "/billing.invoicing.v1.InvoicingService/GetMonthStatement",
        Access::Read,
    ),
    (
        "/billing.invoicing.v1.InvoicingService/ExplainStatementDifference",
        Access::Billing,
    ),
];

/// Bank statement lines matched per MatchBankTransfers call.
const MAX_TRANSFERS: usize = 10_000;

/// Tenants closed at the same time by one GenerateMonthlyInvoices call.
const CLOSE_CONCURRENCY: usize = 4;

pub struct InvoicingGrpc {
    close: MonthlyClose,
    lifecycle: Lifecycle,
    store: Store,
    profiles: Profiles,
}

impl InvoicingGrpc {
    pub fn new(
        close: MonthlyClose,
        lifecycle: Lifecycle,
        store: Store,
        profiles: Profiles,
    ) -> Self {
        InvoicingGrpc {
            close,
            lifecycle,
            store,
            profiles,
        }
    }

    /// Composes and records the statement of a tenant's month after its close, beside it: the
    /// close answers without waiting, and a failure is logged, never the close's (the nightly
    /// refresh and `billingctl report month` compose it again).
    fn refresh_statement(&self, profile: &Profile, period: &str) {
        let Ok(period) = period.parse::<BillingPeriod>() else {
            return;
        };
        let (store, ledger, profile) = (self.store.clone(), self.close.ledger(), profile.clone());
        tokio::spawn(async move {
            let statements = Statements {
                store: &store,
                ledger,
            };
            if let Err(err) = statements.month(&profile, period).await {
                tracing::warn!(tenant = %profile.tenant_id, %period, error = %err,
                    "month statement not refreshed after the close");
            }
        });
    }

    fn statements(&self) -> Statements<'_> {
        Statements {
            store: &self.store,
            ledger: self.close.ledger(),
        }
    }

    async fn profile(&self, tenant_id: &str) -> Result<Profile, Status> {
        self.profiles
            .get(tenant_id)
            .await
            .map_err(to_status)?
            .ok_or_else(|| {
                Status::not_found(format!("no billing profile for tenant {tenant_id:?}"))
            })
    }

    async fn close_one(
        &self,
        profile: &Profile,
        period: Option<BillingPeriod>,
        dry_run: bool,
    ) -> TenantOutcome {
        let now = Utc::now();
        let period = period.unwrap_or_else(|| BillingPeriod::previous_to(now, profile.time_zone));
        let mut outcome = TenantOutcome {
            tenant_id: profile.tenant_id.clone(),
            period: period.to_string(),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let result = self.close.close(profile, period, now, dry_run).await;
        let label = match &result {
            Ok(Closed::Issued(_)) => CloseOutcome::Issued.as_str(),
            Ok(Closed::AlreadyIssued(_)) => CloseOutcome::AlreadyIssued.as_str(),
            Ok(Closed::NothingBillable) => CloseOutcome::NothingBillable.as_str(),
            Ok(Closed::WouldIssue(_)) => "would_issue",
            Err(_) => CloseOutcome::Failed.as_str(),
        };
        if !dry_run {
            metrics::counter!("invoicing_close_outcomes_total", "outcome" => label).increment(1);
            metrics::histogram!("invoicing_close_seconds").record(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(Closed::Issued(row)) => {
                outcome.set_outcome(Outcome::Issued);
                outcome.invoice = Some(to_proto(&row));
            }
            Ok(Closed::AlreadyIssued(row)) => {
                outcome.set_outcome(Outcome::AlreadyIssued);
                outcome.invoice = Some(to_proto(&row));
                if !dry_run {
                    self.record(&outcome, CloseOutcome::AlreadyIssued, &row.number)
                        .await;
                }
            }
            Ok(Closed::NothingBillable) => outcome.set_outcome(Outcome::NoBillableBookings),
            Ok(Closed::WouldIssue(draft)) => {
                outcome.set_outcome(Outcome::WouldIssue);
                outcome.invoice = Some(draft_to_proto(&draft));
            }
            Err(err) => {
                if let CloseError::Stripe { invoice, .. } = &err {
                    outcome.invoice = Some(to_proto(invoice));
                }
                if let CloseError::Db(_) = err {
                    tracing::error!(tenant = %profile.tenant_id, error = %err, "monthly close failed");
                    outcome.error = "internal error".into();
                } else {
                    tracing::warn!(tenant = %profile.tenant_id, error = %err, "monthly close failed");
                    outcome.error = err.to_string();
                }
                if !dry_run {
                    let invoice_id = outcome.invoice.as_ref().and_then(|i| i.id.parse().ok());
                    if let Err(err) = self
                        .close
                        .record_failure(
                            &outcome.tenant_id,
                            &outcome.period,
                            invoice_id,
                            &err,
                            &outcome.error,
                            now,
                        )
                        .await
                    {
                        tracing::error!(error = %err, "recording a failed close failed");
                    }
                }
                outcome.set_outcome(Outcome::Failed);
            }
        }
        outcome
    }

    /// Keeps an outcome the close itself did not write (it writes issued and nothing_billable
    /// in its own transaction, failures through `record_failure`).
    async fn record(&self, outcome: &TenantOutcome, closed: CloseOutcome, detail: &str) {
        let recorded = async {
            let mut conn = self.store.pool().acquire().await?;
            let invoice_id = outcome.invoice.as_ref().and_then(|i| i.id.parse().ok());
            self.store
                .record_outcome(
                    &mut conn,
                    &outcome.tenant_id,
                    &outcome.period,
                    closed,
                    invoice_id,
                    detail,
                )
                .await
        };
        if let Err(err) = recorded.await {
            tracing::error!(error = %err, "recording a close outcome failed");
        }
    }

    async fn full_invoice(&self, row: &InvoiceRow) -> Result<Invoice, Status> {
        let lines = self.store.lines(row.id).await.map_err(to_status)?;
        let history = self.store.history(row.id).await.map_err(to_status)?;
        let payments = self.store.payments(row.id).await.map_err(to_status)?;
        let mut invoice = to_proto(row);
        let money = |amount| row.money(amount);
        invoice.lines = lines.iter().map(|l| line_to_proto(&money, l)).collect();
        invoice.history = history.iter().map(history_to_proto).collect();
        invoice.payments = payments.iter().map(|p| payment_to_proto(row, p)).collect();
        Ok(invoice)
    }
}

#[tonic::async_trait]
impl InvoicingService for InvoicingGrpc {
    async fn generate_monthly_invoices(
        &self,
        request: Request<GenerateMonthlyInvoicesRequest>,
    ) -> Result<Response<GenerateMonthlyInvoicesResponse>, Status> {
        let req = request.into_inner();
        let period = match req.period.as_str() {
            "" => None,
            p => Some(
                p.parse::<BillingPeriod>()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            ),
        };
        let profiles = match req.tenant_id.as_str() {
            "" => self.profiles.list().await.map_err(to_status)?,
            id => vec![
                self.profiles
                    .get(id)
                    .await
                    .map_err(to_status)?
                    .ok_or_else(|| {
                        Status::not_found(format!("no billing profile for tenant {id:?}"))
                    })?,
            ],
        };
        // A few tenants at a time; one tenant's failure does not stop the others.
        let dry_run = req.dry_run;
        let outcomes = futures::stream::iter(profiles)
            .map(|profile| async move {
                let outcome = self.close_one(&profile, period, dry_run).await;
                // The month's statement follows its close (issue 21: kept up to date).
                if !dry_run && outcome.error.is_empty() {
                    self.refresh_statement(&profile, &outcome.period);
                }
                outcome
            })
            .buffered(CLOSE_CONCURRENCY)
            .collect()
            .await;
        Ok(Response::new(GenerateMonthlyInvoicesResponse { outcomes }))
    }

    async fn get_invoice(
        &self,
        request: Request<GetInvoiceRequest>,
    ) -> Result<Response<Invoice>, Status> {
        let id = resolve_invoice(&self.store, &request.into_inner().invoice_id).await?;
        let row = self
            .store
            .invoice(id)
            .await
            .map_err(to_status)?
            .ok_or_else(|| Status::not_found("no such invoice"))?;
        Ok(Response::new(self.full_invoice(&row).await?))
    }

    async fn list_invoices(
        &self,
        request: Request<ListInvoicesRequest>,
    ) -> Result<Response<ListInvoicesResponse>, Status> {
        let req = request.into_inner();
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let status = some(&req.status)
            .map(|s| s.parse::<InvoiceStatus>())
            .transpose()
            .map_err(Status::invalid_argument)?;
        let rows = self
            .store
            .list(
                some(&req.tenant_id).as_deref(),
                status,
                some(&req.period).as_deref(),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(ListInvoicesResponse {
            invoices: rows.iter().map(to_proto).collect(),
        }))
    }

    async fn match_bank_transfers(
        &self,
        request: Request<MatchBankTransfersRequest>,
    ) -> Result<Response<MatchBankTransfersResponse>, Status> {
        let req = request.into_inner();
        if req.transfers.len() > MAX_TRANSFERS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_TRANSFERS} transfers per call"
            )));
        }
        let matcher = BankMatcher {
            store: &self.store,
            lifecycle: &self.lifecycle,
        };
        let matches = matcher
            .run(&req.transfers, req.dry_run)
            .await
            .map_err(to_status)?;
        for m in &matches {
            metrics::counter!("invoicing_bank_transfers_total", "outcome" => m.outcome.clone())
                .increment(1);
        }
        Ok(Response::new(MatchBankTransfersResponse { matches }))
    }

    async fn get_month_statement(
        &self,
        request: Request<GetMonthStatementRequest>,
    ) -> Result<Response<MonthStatement>, Status> {
        let req = request.into_inner();
        let profile = self.profile(&req.tenant_id).await?;
        self.statements().get(&profile, &req).await
    }

    async fn explain_statement_difference(
        &self,
        request: Request<ExplainStatementDifferenceRequest>,
    ) -> Result<Response<StatementDifference>, Status> {
        self.statements().explain(&request.into_inner()).await
    }

    async fn record_payment(
        &self,
        request: Request<RecordPaymentRequest>,
    ) -> Result<Response<RecordPaymentResponse>, Status> {
        let req = request.into_inner();
        let id = resolve_invoice(&self.store, &req.invoice_id).await?;
        let received_on = parse_date("received_on", &req.received_on)?;
        let recorded = self
            .lifecycle
            .record_payment(
                id,
                Transfer {
                    amount: &req.amount,
                    received_on,
                    reference: &req.reference,
                    idempotency_key: &req.idempotency_key,
                    limit: PaymentLimit::None,
                },
                Utc::now(),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(RecordPaymentResponse {
            invoice: Some(self.full_invoice(&recorded.invoice).await?),
            recorded: recorded.recorded,
            overpaid: recorded.overpaid,
        }))
    }

    async fn void_invoice(
        &self,
        request: Request<VoidInvoiceRequest>,
    ) -> Result<Response<Invoice>, Status> {
        let req = request.into_inner();
        let id = resolve_invoice(&self.store, &req.invoice_id).await?;
        let voided = self
            .lifecycle
            .void(id, &req.reason, Utc::now())
            .await
            .map_err(to_status)?;
        Ok(Response::new(self.full_invoice(&voided).await?))
    }

    async fn resend_invoice_email(
        &self,
        request: Request<ResendInvoiceEmailRequest>,
    ) -> Result<Response<Invoice>, Status> {
        let req = request.into_inner();
        let id = resolve_invoice(&self.store, &req.invoice_id).await?;
        let invoice = self
            .lifecycle
            .resend_email(id, &req.reason, Utc::now())
            .await
            .map_err(to_status)?;
        Ok(Response::new(self.full_invoice(&invoice).await?))
    }

    async fn sweep_overdue(
        &self,
        request: Request<SweepOverdueRequest>,
    ) -> Result<Response<SweepOverdueResponse>, Status> {
        let req = request.into_inner();
        let as_of = match req.as_of.as_str() {
            "" => None,
            date => Some(parse_date("as_of", date)?),
        };
        let marked = self
            .lifecycle
            .sweep_overdue(as_of, Utc::now())
            .await
            .map_err(to_status)?;
        Ok(Response::new(SweepOverdueResponse {
            marked: marked.iter().map(to_proto).collect(),
        }))
    }

    async fn put_tenant_profile(
        &self,
        request: Request<PutTenantProfileRequest>,
    ) -> Result<Response<TenantProfile>, Status> {
        let input = request
            .into_inner()
            .profile
            .ok_or_else(|| Status::invalid_argument("profile is required"))?;
        let profile = Profile::from_proto(input).map_err(Status::invalid_argument)?;
        let saved = self.profiles.put(&profile).await.map_err(to_status)?;
        tracing::info!(tenant = %saved.tenant_id, mode = saved.mode.as_str(), "billing profile saved");
        Ok(Response::new(saved.to_proto()))
    }

    async fn get_tenant_profile(
        &self,
        request: Request<GetTenantProfileRequest>,
    ) -> Result<Response<TenantProfile>, Status> {
        let id = request.into_inner().tenant_id;
        let profile = self
            .profiles
            .get(&id)
            .await
            .map_err(to_status)?
            .ok_or_else(|| Status::not_found(format!("no billing profile for tenant {id:?}")))?;
        Ok(Response::new(profile.to_proto()))
    }

    async fn list_tenant_profiles(
        &self,
        _request: Request<ListTenantProfilesRequest>,
    ) -> Result<Response<ListTenantProfilesResponse>, Status> {
        let profiles = self.profiles.list().await.map_err(to_status)?;
        Ok(Response::new(ListTenantProfilesResponse {
            profiles: profiles.iter().map(Profile::to_proto).collect(),
        }))
    }
}

/// An `invoice_id` as callers give it: the invoice's id, or its number (`CLAIRE-2026-0001`).
async fn resolve_invoice(store: &Store, text: &str) -> Result<Uuid, Status> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Status::invalid_argument(
            "invoice_id is required: an invoice's id or its number (e.g. CLAIRE-2026-0001)",
        ));
    }
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    store
        .invoice_id_by_number(text)
        .await
        .map_err(to_status)?
        .ok_or_else(|| Status::not_found(format!("no invoice has the id or number {text:?}")))
}

fn parse_date(field: &str, text: &str) -> Result<NaiveDate, Status> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Status::invalid_argument(format!("{field} must be YYYY-MM-DD, not {text:?}")))
}

pub fn to_proto(row: &InvoiceRow) -> Invoice {
    Invoice {
        id: row.id.to_string(),
        number: row.number.clone(),
        tenant_id: row.tenant_id.clone(),
        tenant_name: row.tenant_name.clone(),
        billing_email: row.billing_email.clone(),
        period: row.period.clone(),
        period_start: Some(timestamp(row.period_start)),
        period_end: Some(timestamp(row.period_end)),
        time_zone: row.time_zone.clone(),
        status: row.status.to_string(),
        issue_date: row.issue_date.to_string(),
        due_date: row.due_date.to_string(),
        booking_count: u32::try_from(row.booking_count).unwrap_or(0),
        total_booking_value: Some(row.money(row.total_booking_value)),
        total: Some(row.money(row.total)),
        issued_at: row.issued_at.map(timestamp),
        subtotal: Some(row.money(row.subtotal)),
        tax_rate: row.tax_rate.normalize().to_string(),
        tax: Some(row.money(row.tax)),
        amount_paid: Some(row.money(row.amount_paid)),
        balance: Some(row.money(row.total - row.amount_paid)),
        address: row.address.clone(),
        tax_id: row.tax_id.clone(),
        invoicing_mode: row.invoicing_mode.as_str().to_string(),
        payment_instructions: row.payment_instructions.clone(),
        stripe_invoice_id: row.stripe_invoice_id.clone().unwrap_or_default(),
        stripe_number: row.stripe_number.clone().unwrap_or_default(),
        stripe_hosted_url: row.stripe_hosted_url.clone().unwrap_or_default(),
        void_reason: row.void_reason.clone().unwrap_or_default(),
        lines: Vec::new(),
        history: Vec::new(),
        payments: Vec::new(),
    }
}

/// A dry run's would-be invoice: no number, no status yet.
fn draft_to_proto(draft: &NewInvoice) -> Invoice {
    let code = draft.currency.code();
    let m = |amount: Decimal| billing_proto::convert::money(code, draft.currency.format(amount));
    Invoice {
        id: draft.id.to_string(),
        tenant_id: draft.tenant_id.clone(),
        tenant_name: draft.tenant_name.clone(),
        billing_email: draft.billing_email.clone(),
        period: draft.period.clone(),
        period_start: Some(timestamp(draft.period_start)),
        period_end: Some(timestamp(draft.period_end)),
        time_zone: draft.time_zone.clone(),
        issue_date: draft.issue_date.to_string(),
        due_date: draft.due_date.to_string(),
        booking_count: u32::try_from(draft.booking_count()).unwrap_or(0),
        total_booking_value: Some(m(draft.total_booking_value)),
        subtotal: Some(m(draft.subtotal)),
        tax_rate: draft.tax_rate.normalize().to_string(),
        tax: Some(m(draft.tax)),
        total: Some(m(draft.total)),
        amount_paid: Some(m(Decimal::ZERO)),
        balance: Some(m(draft.total)),
        address: draft.address.clone(),
        tax_id: draft.tax_id.clone(),
        invoicing_mode: draft.invoicing_mode.as_str().to_string(),
        lines: draft.lines.iter().map(|l| line_to_proto(&m, l)).collect(),
        ..Default::default()
    }
}

/// `money` formats an amount in the invoice's currency.
fn line_to_proto(money: &impl Fn(Decimal) -> billing_proto::Money, l: &LineRow) -> InvoiceLine {
    InvoiceLine {
        position: u32::try_from(l.position).unwrap_or(0),
        booking_ref: l.booking_ref.clone(),
        session_at: Some(timestamp(l.session_at)),
        service_name: l.service_name.clone(),
        booking_amount: Some(money(l.booking_amount)),
        platform_fee: Some(money(l.platform_fee)),
        kind: l.kind.clone(),
        description: l.description.clone(),
        booking_id: l.booking_id.to_string(),
    }
}

fn history_to_proto(h: &HistoryRow) -> StatusChange {
    StatusChange {
        from_status: h.from_status.map(|s| s.to_string()).unwrap_or_default(),
        to_status: h.to_status.to_string(),
        reason: h.reason.clone(),
        changed_at: Some(timestamp(h.changed_at)),
        operator: h.operator.clone().unwrap_or_default(),
        caller_role: h.caller_role.clone().unwrap_or_default(),
    }
}

fn payment_to_proto(invoice: &InvoiceRow, p: &PaymentRow) -> Payment {
    Payment {
        id: p.id.to_string(),
        method: p.method.as_str().to_string(),
        amount: Some(invoice.money(p.amount)),
        received_on: p.received_on.to_string(),
        reference: p.reference.clone(),
        recorded_at: Some(timestamp(p.recorded_at)),
        operator: p.operator.clone().unwrap_or_default(),
        caller_role: p.caller_role.clone().unwrap_or_default(),
    }
}
