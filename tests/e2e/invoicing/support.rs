//! What the invoicing tests share: bookings published as ingest would, closes, and reading
//! invoices back.

use std::time::Duration;

use async_nats::HeaderMap;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{
    GenerateMonthlyInvoicesRequest, GetInvoiceRequest, Invoice, Outcome, TenantOutcome,
};
use billing_proto::notifier::RenderInvoicePdfRequest;
use billing_runtime::nats::{HDR_EVENT_ID, HDR_TENANT};

use crate::harness::{System, eventually, pdf_text};

pub(super) type Client = InvoicingServiceClient<billing_runtime::trace::TracedChannel>;

pub(crate) async fn client(system: &System) -> anyhow::Result<Client> {
    system.invoicing_client()
}

/// Publishes verified SimplyBook booking events, as ingest does after checking them.
pub(crate) struct Publisher {
    js: async_nats::jetstream::Context,
    subjects: billing_runtime::Subjects,
}

impl Publisher {
    pub(crate) async fn new(system: &System) -> anyhow::Result<Self> {
        Ok(Publisher {
            js: system.jetstream().await?,
            subjects: system.subjects(),
        })
    }

    /// `at` is local time with its offset, e.g. `2026-04-30T23:30:00+10:00`.
    pub(crate) async fn book(
        &self,
        tenant: &str,
        id: &str,
        price: &str,
        status: &str,
        at: &str,
    ) -> anyhow::Result<()> {
        self.book_service(tenant, id, price, status, at, "Remedial massage 60 min")
            .await
    }

    /// [`Publisher::book`] with the service's name.
    pub(crate) async fn book_service(
        &self,
        tenant: &str,
        id: &str,
        price: &str,
        status: &str,
        at: &str,
        service: &str,
    ) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "booking_id": id, "booking_hash": format!("hash-{id}"), "status": status,
            "price": price, "datetime": at,
            "service": {"name": service},
        });
        let event_id = format!("simplybook:{tenant}:{id}:{status}:{price}");
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event_id.as_str());
        headers.insert(HDR_EVENT_ID, event_id.as_str());
        headers.insert(HDR_TENANT, tenant);
        self.js
            .publish_with_headers(
                self.subjects.simplybook(tenant),
                headers,
                body.to_string().into(),
            )
            .await?
            .await?;
        Ok(())
    }
}

/// Waits until the ledger holds `n` bookings.
pub(crate) async fn ledger_has(system: &System, n: i64) -> anyhow::Result<()> {
    let db = system.db("ledger").await?;
    eventually(Duration::from_secs(30), || async {
        let count: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&db)
            .await?;
        Ok((count >= n).then_some(()))
    })
    .await
}

pub(super) async fn close(
    invoicing: &mut Client,
    tenant: &str,
    period: &str,
    dry_run: bool,
) -> anyhow::Result<TenantOutcome> {
    let mut outcomes = invoicing
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: period.into(),
            tenant_id: tenant.into(),
            dry_run,
        })
        .await?
        .into_inner()
        .outcomes;
    anyhow::ensure!(outcomes.len() == 1, "{outcomes:?}");
    Ok(outcomes.remove(0))
}

pub(crate) async fn issued(
    invoicing: &mut Client,
    tenant: &str,
    period: &str,
) -> anyhow::Result<Invoice> {
    let outcome = close(invoicing, tenant, period, false).await?;
    anyhow::ensure!(
        outcome.outcome() == Outcome::Issued,
        "{tenant} {period}: {outcome:?}"
    );
    let id = outcome.invoice.map(|i| i.id).unwrap_or_default();
    Ok(invoicing
        .get_invoice(GetInvoiceRequest { invoice_id: id })
        .await?
        .into_inner())
}

/// The text of an invoice's PDF, rendered by the notifier on demand.
pub(super) async fn pdf_text_of(system: &System, invoice_id: &str) -> anyhow::Result<String> {
    let pdf = system
        .notifier_client()?
        .render_invoice_pdf(RenderInvoicePdfRequest {
            invoice_id: invoice_id.to_string(),
        })
        .await?
        .into_inner();
    pdf_text(&pdf.pdf)
}

pub(super) fn total(i: &Invoice) -> String {
    i.total
        .as_ref()
        .map(|m| m.amount.clone())
        .unwrap_or_default()
}

pub(super) fn refs(i: &Invoice) -> Vec<&str> {
    i.lines.iter().map(|l| l.booking_ref.as_str()).collect()
}

pub(super) fn money(m: Option<&billing_proto::Money>) -> String {
    m.map(|m| m.amount.clone()).unwrap_or_default()
}

pub(super) fn utc(t: Option<&billing_proto::convert::Timestamp>) -> String {
    billing_proto::convert::datetime(t)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}
