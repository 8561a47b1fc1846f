//! The month statement (`GetMonthStatement`): for a tenant's month, the counts and sums that must
//! agree — SimplyBook (its last reconciliation, as the ledger stored it) = the ledger's bookings
//! by status = the billable bookings on the invoice = deposits expected = deposits received; fees
//! billable = invoice total = payments received — and each difference, by booking.
//!
//! Invoicing composes it because it owns the invoice and already asks the ledger for bookings;
//! the ledger owns bookings, deposits and reconciliations and answers for its month in one call
//! (`GetMonthDeposits`). [`compose`] is pure; [`Statements::month`] loads its input, records the
//! differences (so one gone since is shown fixed, and an explanation stays) and answers.

mod compose;

use billing_domain::BillingPeriod;
use billing_proto::convert::timestamp;
use billing_proto::invoicing::{
    ExplainStatementDifferenceRequest, GetMonthStatementRequest, MonthStatement,
    StatementDifference,
};
use billing_proto::ledger::GetMonthDepositsRequest;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_runtime::error::to_status;
use billing_runtime::trace::TracedChannel;
use chrono::Utc;
use tonic::{Response, Status};

use self::compose::compose;
use crate::profile::Profile;
use crate::store::{DifferenceRow, Store};

/// The recorded differences as the statement lists them.
fn differences(rows: &[DifferenceRow]) -> Vec<StatementDifference> {
    rows.iter()
        .map(|r| StatementDifference {
            subject: r.subject.clone(),
            kind: r.kind.clone(),
            detail: r.detail.clone(),
            status: r.status().into(),
            explanation: r.explanation.clone().unwrap_or_default(),
            first_seen: Some(timestamp(r.first_seen)),
            fixed_at: r.fixed_at.map(timestamp),
        })
        .collect()
}

/// Why a statement could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("asking the ledger: {0}")]
    Ledger(tonic::Status),
}

/// Composes statements: the ledger asked, the invoice read, the differences recorded.
pub struct Statements<'a> {
    pub store: &'a Store,
    pub ledger: LedgerServiceClient<TracedChannel>,
}

impl Statements<'_> {
    /// The statement of `profile`'s tenant for `period`, its differences recorded.
    pub async fn month(
        &self,
        profile: &Profile,
        period: BillingPeriod,
    ) -> Result<MonthStatement, StatementError> {
        let tenant_id = profile.tenant_id.as_str();
        let month = self
            .ledger
            .clone()
            .get_month_deposits(GetMonthDepositsRequest {
                tenant_id: tenant_id.to_string(),
                period: period.to_string(),
            })
            .await
            .map_err(StatementError::Ledger)?
            .into_inner();
        let mut conn = self.store.pool().acquire().await?;
        let invoice = self
            .store
            .find_live(&mut conn, tenant_id, &period.to_string())
            .await?;
        drop(conn);
        let (lines, payments) = match &invoice {
            Some(i) => (
                self.store.lines(i.id).await?,
                self.store.payments(i.id).await?.len(),
            ),
            None => (Vec::new(), 0),
        };
        let composed = compose(
            &month,
            invoice.as_ref().map(|i| (i, lines.as_slice())),
            payments,
            profile.currency,
        );
        let rows = self
            .store
            .record_statement(
                tenant_id,
                &period.to_string(),
                &composed.found,
                composed.missing_deposits,
            )
            .await?;
        crate::gauges::refresh_statements(self.store.pool()).await?;
        let differences = differences(&rows);
        Ok(MonthStatement {
            tenant_id: tenant_id.to_string(),
            period: period.to_string(),
            tenant_name: profile.legal_name.clone(),
            currency: profile.currency.code().to_string(),
            composed_at: Some(timestamp(Utc::now())),
            booking_legs: composed.booking_legs,
            fee_legs: composed.fee_legs,
            bookings: composed.bookings,
            open_differences: u32::try_from(
                differences.iter().filter(|d| d.status == "open").count(),
            )
            .unwrap_or(u32::MAX),
            differences,
            invoice_number: invoice
                .as_ref()
                .map(|i| i.number.clone())
                .unwrap_or_default(),
            invoice_status: invoice.map(|i| i.status.to_string()).unwrap_or_default(),
        })
    }
}

impl Statements<'_> {
    /// `GetMonthStatement` for `profile`'s tenant.
    pub async fn get(
        &self,
        profile: &Profile,
        req: &GetMonthStatementRequest,
    ) -> Result<Response<MonthStatement>, Status> {
        let now = Utc::now();
        let period = match req.period.as_str() {
            "" | "previous" => BillingPeriod::previous_to(now, profile.time_zone),
            "current" => BillingPeriod::containing(now, profile.time_zone),
            p => p
                .parse::<BillingPeriod>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        };
        let statement = self.month(profile, period).await.map_err(|err| match err {
            StatementError::Ledger(status) => {
                tracing::warn!(tenant = %profile.tenant_id, error = %status,
                    "month statement: the ledger failed");
                Status::unavailable("the ledger could not be asked; try again")
            }
            StatementError::Db(err) => to_status(err),
        })?;
        Ok(Response::new(statement))
    }

    /// `ExplainStatementDifference`: the explanation recorded with who gave it.
    pub async fn explain(
        &self,
        req: &ExplainStatementDifferenceRequest,
    ) -> Result<Response<StatementDifference>, Status> {
        let explanation = req.explanation.trim();
        if explanation.is_empty() || explanation.chars().count() > 500 {
            return Err(Status::invalid_argument(
                "explanation is required, at most 500 characters",
            ));
        }
        let by = billing_runtime::operator::current();
        let by = by
            .as_ref()
            .and_then(|a| a.operator_name().map(str::to_string));
        let row = self
            .store
            .explain_difference(
                &req.tenant_id,
                &req.period,
                &req.subject,
                &req.kind,
                explanation,
                by.as_deref(),
            )
            .await
            .map_err(to_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no difference {:?} of kind {:?} on {}'s {} statement",
                    req.subject, req.kind, req.tenant_id, req.period
                ))
            })?;
        Ok(Response::new(
            differences(std::slice::from_ref(&row))
                .pop()
                .unwrap_or_default(),
        ))
    }
}
