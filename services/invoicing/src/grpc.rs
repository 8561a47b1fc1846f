//! `billing.invoicing.v1.InvoicingService`: the monthly close trigger (CronJob, billingctl) and
//! invoice reads (notifier, billingctl).

use std::sync::Arc;

use billing_domain::{BillingPeriod, Currency, TenantConfig, Tenants};
use billing_proto::convert::{money, timestamp};
use billing_proto::invoicing::invoicing_service_server::InvoicingService;
use billing_proto::invoicing::{
    GenerateMonthlyInvoicesRequest, GenerateMonthlyInvoicesResponse, GetInvoiceRequest, Invoice,
    InvoiceLine, ListInvoicesRequest, ListInvoicesResponse, Outcome, TenantOutcome,
};
use tonic::{Request, Response, Status};

use crate::close::{CloseError, Closed, MonthlyClose};
use crate::store::{InvoiceRow, LineRow, Store};

pub struct InvoicingGrpc {
    close: MonthlyClose,
    store: Store,
    tenants: Arc<Tenants>,
}

impl InvoicingGrpc {
    pub fn new(close: MonthlyClose, store: Store, tenants: Arc<Tenants>) -> Self {
        InvoicingGrpc {
            close,
            store,
            tenants,
        }
    }

    async fn close_one(
        &self,
        tenant: &TenantConfig,
        period: Option<BillingPeriod>,
    ) -> TenantOutcome {
        let now = chrono::Utc::now();
        let period = period.unwrap_or_else(|| BillingPeriod::previous_to(now, tenant.time_zone));
        let mut outcome = TenantOutcome {
            tenant_id: tenant.id.to_string(),
            period: period.to_string(),
            ..Default::default()
        };
        let result = self.close.close(tenant, period, now).await;
        let label = match &result {
            Ok(Closed::Issued(_)) => "issued",
            Ok(Closed::AlreadyIssued(_)) => "already_issued",
            Ok(Closed::NothingBillable) => "nothing_billable",
            Err(_) => "failed",
        };
        metrics::counter!("invoicing_close_outcomes_total", "outcome" => label).increment(1);
        match result {
            Ok(Closed::Issued(row)) => {
                outcome.set_outcome(Outcome::Issued);
                outcome.invoice = Some(to_proto(&row, &[]));
            }
            Ok(Closed::AlreadyIssued(row)) => {
                outcome.set_outcome(Outcome::AlreadyIssued);
                outcome.invoice = Some(to_proto(&row, &[]));
            }
            Ok(Closed::NothingBillable) => outcome.set_outcome(Outcome::NoBillableBookings),
            Err(err) => {
                if let CloseError::Db(_) = err {
                    tracing::error!(tenant = %tenant.id, error = %err, "monthly close failed");
                    outcome.error = "internal error".into();
                } else {
                    tracing::warn!(tenant = %tenant.id, error = %err, "monthly close failed");
                    outcome.error = err.to_string();
                }
                outcome.set_outcome(Outcome::Failed);
            }
        }
        outcome
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
        let tenants: Vec<&TenantConfig> = match req.tenant_id.as_str() {
            "" => self.tenants.iter().collect(),
            id => vec![
                self.tenants
                    .get(id)
                    .ok_or_else(|| Status::not_found(format!("unknown tenant {id:?}")))?,
            ],
        };
        let mut outcomes = Vec::with_capacity(tenants.len());
        // One tenant at a time: a month-end run is small, and a failure of one tenant must not
        // stop the others.
        for tenant in tenants {
            outcomes.push(self.close_one(tenant, period).await);
        }
        Ok(Response::new(GenerateMonthlyInvoicesResponse { outcomes }))
    }

    async fn get_invoice(
        &self,
        request: Request<GetInvoiceRequest>,
    ) -> Result<Response<Invoice>, Status> {
        let id = request
            .into_inner()
            .invoice_id
            .parse()
            .map_err(|_| Status::invalid_argument("invoice_id must be a UUID"))?;
        match self.store.get(id).await.map_err(internal)? {
            Some((invoice, lines)) => Ok(Response::new(to_proto(&invoice, &lines))),
            None => Err(Status::not_found("no such invoice")),
        }
    }

    async fn list_invoices(
        &self,
        request: Request<ListInvoicesRequest>,
    ) -> Result<Response<ListInvoicesResponse>, Status> {
        let req = request.into_inner();
        let tenant = (!req.tenant_id.is_empty()).then_some(req.tenant_id.as_str());
        let rows = self.store.list(tenant).await.map_err(internal)?;
        Ok(Response::new(ListInvoicesResponse {
            invoices: rows.iter().map(|r| to_proto(r, &[])).collect(),
        }))
    }
}

fn to_proto(row: &InvoiceRow, lines: &[LineRow]) -> Invoice {
    let code = row.currency.trim();
    // Stored amounts are already at the currency's exponent; format keeps them that way.
    let currency = code.parse::<Currency>().ok();
    let fmt = |amount: rust_decimal::Decimal| match currency {
        Some(c) => money(code, c.format(amount)),
        None => money(code, amount.to_string()),
    };
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
        status: row.status.clone(),
        issue_date: row.issue_date.to_string(),
        due_date: row.due_date.to_string(),
        booking_count: u32::try_from(row.booking_count).unwrap_or(0),
        total_booking_value: Some(fmt(row.total_booking_value)),
        total: Some(fmt(row.total)),
        issued_at: Some(timestamp(row.issued_at)),
        lines: lines
            .iter()
            .map(|l| InvoiceLine {
                position: u32::try_from(l.position).unwrap_or(0),
                booking_ref: l.booking_ref.clone(),
                session_at: Some(timestamp(l.session_at)),
                service_name: l.service_name.clone(),
                booking_amount: Some(fmt(l.booking_amount)),
                platform_fee: Some(fmt(l.platform_fee)),
            })
            .collect(),
    }
}

fn internal(err: sqlx::Error) -> Status {
    tracing::error!(error = %err, "invoicing query failed");
    Status::internal("internal error")
}
