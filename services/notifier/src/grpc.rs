//! `billing.notifier.v1.NotifierService`: invoice PDFs on demand, what was emailed about an
//! invoice, and the operator alerts emailed.

use std::sync::Arc;

use billing_proto::convert::timestamp;
use billing_proto::notifier::notifier_service_server::NotifierService;
use billing_proto::notifier::{
    AlertEmail, Delivery, ListAlertEmailsRequest, ListAlertEmailsResponse, ListDeliveriesRequest,
    ListDeliveriesResponse, RenderInvoicePdfRequest, RenderInvoicePdfResponse,
    RenderStatementPdfRequest, RenderStatementPdfResponse,
};
use billing_runtime::auth::Access;
use billing_runtime::error::to_status;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::consumer::Notifier;

/// Who may call what (see [`billing_runtime::auth`]): reading PDFs and deliveries.
pub const ACCESS: &[(&str, Access)] = &[
    (
        "/billing.notifier.v1.NotifierService/RenderInvoicePdf",
        Access::Read,
    ),
    (
        "/billing.notifier.v1.NotifierService/ListDeliveries",
        Access::Read,
    ),
    (
        "/billing.notifier.v1.NotifierService/RenderStatementPdf",
        Access::Read,
    ),
    (
        "/billing.notifier.v1.NotifierService/ListAlertEmails",
        Access::Read,
    ),
];

/// Alerts listed when the caller asks for no number, and the most it may ask for.
const ALERTS_DEFAULT: u32 = 20;
const ALERTS_MAX: u32 = 200;

pub struct NotifierGrpc {
    notifier: Arc<Notifier>,
}

impl NotifierGrpc {
    pub fn new(notifier: Arc<Notifier>) -> Self {
        NotifierGrpc { notifier }
    }
}

/// An `invoice_id` as callers give it: the invoice's id or its number (`CLAIRE-2026-0001`),
/// which invoicing resolves.
fn invoice_ref(text: &str) -> Result<&str, Status> {
    match text.trim() {
        "" => Err(Status::invalid_argument(
            "invoice_id is required: an invoice's id or its number (e.g. CLAIRE-2026-0001)",
        )),
        text => Ok(text),
    }
}

#[tonic::async_trait]
impl NotifierService for NotifierGrpc {
    async fn render_invoice_pdf(
        &self,
        request: Request<RenderInvoicePdfRequest>,
    ) -> Result<Response<RenderInvoicePdfResponse>, Status> {
        let reference = invoice_ref(&request.get_ref().invoice_id)?;
        let invoice = self.notifier.invoice(reference).await.map_err(to_status)?;
        let file_name = format!("{}.pdf", invoice.number);
        let rendered = self.notifier.render(invoice).await.map_err(to_status)?;
        Ok(Response::new(RenderInvoicePdfResponse {
            pdf: rendered.bytes,
            file_name,
            page_count: u32::try_from(rendered.pages).unwrap_or(u32::MAX),
        }))
    }

    async fn render_statement_pdf(
        &self,
        request: Request<RenderStatementPdfRequest>,
    ) -> Result<Response<RenderStatementPdfResponse>, Status> {
        let statement = request
            .into_inner()
            .statement
            .ok_or_else(|| Status::invalid_argument("statement is required"))?;
        let file_name = format!("{}-{}-statement.pdf", statement.tenant_id, statement.period);
        let fonts = self.notifier.fonts.clone();
        let rendered =
            tokio::task::spawn_blocking(move || crate::pdf::render_statement(&fonts, &statement))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "rendering a statement panicked");
                    Status::internal("internal error")
                })?
                .map_err(|e| {
                    tracing::error!(error = %e, "rendering a statement failed");
                    Status::internal("internal error")
                })?;
        Ok(Response::new(RenderStatementPdfResponse {
            pdf: rendered.bytes,
            file_name,
            page_count: u32::try_from(rendered.pages).unwrap_or(u32::MAX),
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<ListDeliveriesRequest>,
    ) -> Result<Response<ListDeliveriesResponse>, Status> {
        let reference = invoice_ref(&request.get_ref().invoice_id)?;
        let id: Uuid = match reference.parse() {
            Ok(id) => id,
            // A number: invoicing knows its id (and answers NOT_FOUND for an unknown one).
            Err(_) => {
                let invoice = self.notifier.invoice(reference).await.map_err(to_status)?;
                invoice.id.parse().map_err(|_| {
                    tracing::error!("invoicing answered an invoice id that is not a UUID");
                    Status::internal("internal error")
                })?
            }
        };
        let rows = self
            .notifier
            .deliveries
            .for_invoice(id)
            .await
            .map_err(to_status)?;
        if rows.is_empty() {
            // No email yet, or no such invoice: only invoicing knows which. An unknown invoice is
            // NOT_FOUND, as RenderInvoicePdf answers, not an empty list that reads as "nothing
            // sent yet" (billingctl then exits 0 for a mistyped id).
            self.notifier
                .invoice(&id.to_string())
                .await
                .map_err(to_status)?;
        }
        let deliveries = rows
            .into_iter()
            .map(|d| Delivery {
                kind: d.kind.as_str().to_string(),
                reference: d.reference,
                version: d.version.unsigned_abs(),
                state: d.state.as_str().to_string(),
                message_id: d.message_id,
                attempts: d.attempts.unsigned_abs(),
                last_error: d.last_error.unwrap_or_default(),
                sent_at: d.sent_at.map(timestamp),
            })
            .collect();
        Ok(Response::new(ListDeliveriesResponse { deliveries }))
    }

    async fn list_alert_emails(
        &self,
        request: Request<ListAlertEmailsRequest>,
    ) -> Result<Response<ListAlertEmailsResponse>, Status> {
        let limit = match request.get_ref().limit {
            0 => ALERTS_DEFAULT,
            n => n.min(ALERTS_MAX),
        };
        let alerts = self
            .notifier
            .deliveries
            .recent_alerts(i64::from(limit))
            .await
            .map_err(to_status)?
            .into_iter()
            .map(|a| AlertEmail {
                alert_id: a.alert_id,
                subject: a.subject,
                state: a.state.as_str().to_string(),
                received_at: Some(timestamp(a.created_at)),
                sent_at: a.sent_at.map(timestamp),
                last_error: a.last_error.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(ListAlertEmailsResponse { alerts }))
    }
}
