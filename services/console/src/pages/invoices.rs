//! Invoices: the list (filtered by tenant, status and period; sorted and paged here), one
//! invoice with its lines, payments and history (who asked for each step), its PDF inline or
//! as a download, the emails the notifier sent about it, and the three writes: recording a bank
//! payment, voiding with a reason, and resending the invoice's email. Each write is confirmed on
//! a page of its own before it is made, and its outcome shown after.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use billing_proto::invoicing::{
    GetInvoiceRequest, Invoice, ListInvoicesRequest, RecordPaymentRequest,
    ResendInvoiceEmailRequest, VoidInvoiceRequest,
};
use billing_proto::notifier::{Delivery, ListDeliveriesRequest, RenderInvoicePdfRequest};
use billing_runtime::auth::Access;
use maud::{Markup, html};
use serde::Deserialize;

use super::{PAGE_SIZE, page_bounds};
use crate::backend::as_operator;
use crate::format::{amount, local, money, zone};
use crate::web::{Operator, Refusal, Shared, page, refusal};

/// Statuses an invoice can be in, as the filter offers them.
const STATUSES: [&str; 6] = [
    "draft",
    "issued",
    "partially_paid",
    "paid",
    "overdue",
    "void",
];

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    desc: bool,
    #[serde(default)]
    page: usize,
}

/// The columns the list sorts by.
fn sort(invoices: &mut [Invoice], column: &str, desc: bool) {
    match column {
        "tenant" => {
            invoices.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id).then(a.number.cmp(&b.number)))
        }
        "period" => invoices.sort_by(|a, b| a.period.cmp(&b.period).then(a.number.cmp(&b.number))),
        "status" => invoices.sort_by(|a, b| a.status.cmp(&b.status).then(a.number.cmp(&b.number))),
        "due" => invoices.sort_by(|a, b| a.due_date.cmp(&b.due_date).then(a.number.cmp(&b.number))),
        "total" => invoices.sort_by(|a, b| {
            amount(a.total.as_ref())
                .cmp(&amount(b.total.as_ref()))
                .then(a.number.cmp(&b.number))
        }),
        "balance" => invoices.sort_by(|a, b| {
            amount(a.balance.as_ref())
                .cmp(&amount(b.balance.as_ref()))
                .then(a.number.cmp(&b.number))
        }),
        _ => invoices.sort_by(|a, b| a.number.cmp(&b.number)),
    }
    if desc {
        invoices.reverse();
    }
}

fn list_href(q: &ListQuery, sort: &str, desc: bool, page: usize) -> String {
    let (desc, page) = super::order_and_page(desc, page);
    super::query_href(
        "/invoices",
        &[
            ("tenant", q.tenant.as_str()),
            ("status", q.status.as_str()),
            ("period", q.period.as_str()),
            ("sort", sort),
            ("desc", desc),
            ("page", &page),
        ],
    )
}

pub async fn list(
    State(state): State<Shared>,
    who: Operator,
    Query(q): Query<ListQuery>,
) -> Result<Response, Refusal> {
    let mut invoices = state
        .backend
        .invoicing
        .clone()
        .list_invoices(ListInvoicesRequest {
            tenant_id: q.tenant.trim().to_string(),
            status: q.status.trim().to_string(),
            period: q.period.trim().to_string(),
        })
        .await
        .map_err(refusal)?
        .into_inner()
        .invoices;
    sort(&mut invoices, &q.sort, q.desc);
    let (rows, pages) = page_bounds(invoices.len(), q.page);
    let page_no = q.page.clamp(1, pages);
    let column = |key: &str, label: &str, class: &str| {
        let desc = q.sort == key && !q.desc;
        let marker = match (q.sort == key, q.desc) {
            (true, false) => " ▲",
            (true, true) => " ▼",
            _ => "",
        };
        let aria = match (q.sort == key, q.desc) {
            (true, false) => "ascending",
            (true, true) => "descending",
            _ => "none",
        };
        html! {
            th class=(class) aria-sort=(aria) { a href=(list_href(&q, key, desc, 1)) { (label) (marker) } }
        }
    };
    let body = html! {
        form.filters method="get" action="/invoices" {
            div { label for="tenant" { "Tenant" } br; input #tenant name="tenant" value=(q.tenant); }
            div {
                label for="status" { "Status" } br;
                select #status name="status" {
                    option value="" { "any" }
                    @for s in STATUSES {
                        option value=(s) selected[q.status == s] { (s) }
                    }
                }
            }
            div { label for="period" { "Period (YYYY-MM)" } br; input #period name="period" value=(q.period) pattern="[0-9]{4}-[0-9]{2}"; }
            div { button type="submit" { "Filter" } }
        }
        p { (invoices.len()) " invoices" }
        table {
            thead {
                tr {
                    (column("number", "Number", ""))
                    (column("tenant", "Tenant", ""))
                    (column("period", "Period", ""))
                    (column("status", "Status", ""))
                    (column("due", "Due", ""))
                    (column("total", "Total", "num"))
                    (column("balance", "Balance", "num"))
                }
            }
            tbody {
                @for i in &invoices[rows] {
                    tr {
                        td { a href={"/invoices/" (i.id)} { (i.number) } }
                        td { (i.tenant_id) }
                        td { (i.period) }
                        td { (i.status) }
                        td { (i.due_date) }
                        td.num { (money(i.total.as_ref())) }
                        td.num { (money(i.balance.as_ref())) }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pages aria-label="Pages" {
                @for p in 1..=pages {
                    @if p == page_no { strong { (p) } } @else { a href=(list_href(&q, &q.sort, q.desc, p)) { (p) } }
                }
                span { " (" (PAGE_SIZE) " a page)" }
            }
        }
    };
    Ok(page(&who, "Invoices", body))
}

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    #[serde(default)]
    done: String,
}

async fn fetch(state: &Shared, id: &str) -> Result<Invoice, Refusal> {
    Ok(state
        .backend
        .invoicing
        .clone()
        .get_invoice(GetInvoiceRequest {
            invoice_id: id.to_string(),
        })
        .await
        .map_err(refusal)?
        .into_inner())
}

/// The emails the notifier keeps about the invoice, or `None` when it did not answer (the page
/// shows the invoice regardless).
async fn emails(state: &Shared, id: &str) -> Option<Vec<Delivery>> {
    match state
        .backend
        .notifier
        .clone()
        .list_deliveries(ListDeliveriesRequest {
            invoice_id: id.to_string(),
        })
        .await
    {
        Ok(reply) => Some(reply.into_inner().deliveries),
        Err(status) => {
            tracing::warn!(code = ?status.code(), "listing an invoice's emails failed");
            None
        }
    }
}

/// Whether the invoice has been issued and not voided: its email may be sent again, and a bank
/// payment recorded against it.
fn issued(status: &str) -> bool {
    is_open(status) || status == "paid"
}

fn by(operator: &str, role: &str) -> String {
    match (operator, role) {
        (_, "") => "invoicing".to_string(),
        ("", role) => format!("(unnamed) as {role}"),
        (name, role) => format!("{name} as {role}"),
    }
}

fn is_open(status: &str) -> bool {
    matches!(status, "issued" | "partially_paid" | "overdue")
}

pub async fn detail(
    State(state): State<Shared>,
    who: Operator,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, Refusal> {
    let (i, emails) = tokio::join!(fetch(&state, &id), emails(&state, &id));
    let i = i?;
    let tz = zone(&i.time_zone);
    let done = match q.done.as_str() {
        "paid" => Some("The payment was recorded."),
        "already" => Some("This payment had been recorded before; nothing changed."),
        "voided" => Some("The invoice was voided."),
        "resent" => Some(
            "The invoice's email was asked for once more: the notifier sends it within moments \
             (Emails, below, shows it once sent; reload).",
        ),
        _ => None,
    };
    let may_write = who.may(Access::Billing);
    let body = html! {
        @if let Some(done) = done {
            p.notice role="status" { (done) " Status now: " strong { (i.status) } "." }
        }
        dl {
            dt { "Status" } dd { strong { (i.status) } }
            dt { "Tenant" } dd { (i.tenant_name) " (" (i.tenant_id) ") <" (i.billing_email) ">" }
            dt { "Period" } dd { (i.period) " (" (i.time_zone) ")" }
            dt { "Issued" } dd { (i.issue_date) ", due " (i.due_date) }
            @if !i.void_reason.is_empty() { dt { "Void reason" } dd { (i.void_reason) } }
        }
        p {
            a href={"/invoices/" (i.id) "/pdf"} { "Open the PDF" } " · "
            a href={"/invoices/" (i.id) "/pdf?download=true"} { "Download the PDF" }
        }
        h2 { "Lines" }
        table {
            thead { tr { th { "#" } th { "Booking" } th { "Session (" (i.time_zone) ")" } th { "Service" } th.num { "Amount" } th.num { "Fee" } } }
            tbody {
                @for l in &i.lines {
                    tr {
                        td { (l.position) }
                        td { (l.booking_ref) @if !l.description.is_empty() { br; small { (l.description) } } }
                        td { (local(l.session_at.as_ref(), tz)) }
                        td { (l.service_name) }
                        td.num { (money(l.booking_amount.as_ref())) }
                        td.num { (money(l.platform_fee.as_ref())) }
                    }
                }
            }
            tfoot {
                tr { th colspan="5" { "Subtotal" } td.num { (money(i.subtotal.as_ref())) } }
                tr { th colspan="5" { "Tax (" (i.tax_rate) ")" } td.num { (money(i.tax.as_ref())) } }
                tr { th colspan="5" { "Total" } td.num { strong { (money(i.total.as_ref())) } } }
                tr { th colspan="5" { "Paid" } td.num { (money(i.amount_paid.as_ref())) } }
                tr { th colspan="5" { "Balance" } td.num { strong { (money(i.balance.as_ref())) } } }
            }
        }
        h2 { "Payments" }
        @if i.payments.is_empty() { p { "None recorded." } } @else {
            table {
                thead { tr { th { "Received" } th { "Method" } th { "Reference" } th { "Recorded by" } th.num { "Amount" } } }
                tbody {
                    @for p in &i.payments {
                        tr {
                            td { (p.received_on) }
                            td { (p.method) }
                            td { (p.reference) }
                            td { (by(&p.operator, &p.caller_role)) }
                            td.num { (money(p.amount.as_ref())) }
                        }
                    }
                }
            }
        }
        h2 { "History" }
        table {
            thead { tr { th { "When (" (i.time_zone) ")" } th { "Change" } th { "Why" } th { "By" } } }
            tbody {
                @for h in &i.history {
                    tr {
                        td { (local(h.changed_at.as_ref(), tz)) }
                        td { @if h.from_status.is_empty() { (h.to_status) } @else { (h.from_status) " → " (h.to_status) } }
                        td { (h.reason) }
                        td { (by(&h.operator, &h.caller_role)) }
                    }
                }
            }
        }
        h2 { "Emails" }
        @match &emails {
            None => p { "The notifier did not answer: its emails cannot be shown now." }
            Some(list) if list.is_empty() => p { "None sent yet." }
            Some(list) => table {
                thead { tr { th { "Email" } th { "State" } th { "Sent (" (i.time_zone) ")" } th.num { "Attempts" } } }
                tbody {
                    @for e in list {
                        tr {
                            td { (e.kind.replace('_', " ")) }
                            td { (e.state) @if !e.last_error.is_empty() { br; small { (e.last_error) } } }
                            td { (local(e.sent_at.as_ref(), tz)) }
                            td.num { (e.attempts) }
                        }
                    }
                }
            }
        }
        @if may_write && issued(&i.status) {
            form.write method="post" action={"/invoices/" (i.id) "/pay"} {
                h2 { "Record a bank payment" }
                input type="hidden" name="csrf" value=(who.session.csrf);
                label for="amount" { "Amount (" (i.total.as_ref().map(|m| m.currency_code.as_str()).unwrap_or_default()) ")" }
                input #amount name="amount" required inputmode="decimal" value=(i.balance.as_ref().map(|m| m.amount.as_str()).unwrap_or_default());
                label for="received_on" { "Received on" }
                input #received_on type="date" name="received_on" required;
                label for="reference" { "Bank reference" }
                input #reference name="reference" required value=(i.number);
                p { button.primary type="submit" { "Record payment…" } }
            }
        }
        @if may_write && matches!(i.status.as_str(), "draft" | "issued" | "overdue") {
            form.write method="post" action={"/invoices/" (i.id) "/void"} {
                h2 { "Void this invoice" }
                input type="hidden" name="csrf" value=(who.session.csrf);
                label for="reason" { "Reason (kept in its history)" }
                input #reason name="reason" required;
                p { button.danger type="submit" { "Void…" } }
            }
        }
        @if may_write && issued(&i.status) {
            form.write method="post" action={"/invoices/" (i.id) "/resend"} {
                h2 { "Resend the invoice email" }
                input type="hidden" name="csrf" value=(who.session.csrf);
                label for="resend-reason" { "Reason (kept in its history; optional)" }
                input #resend-reason name="reason";
                p { button.primary type="submit" { "Resend email…" } }
            }
        }
    };
    Ok(page(&who, &format!("Invoice {}", i.number), body))
}

#[derive(Deserialize, Default)]
pub struct PdfQuery {
    #[serde(default)]
    download: bool,
}

pub async fn pdf(
    State(state): State<Shared>,
    _who: Operator,
    Path(id): Path<String>,
    Query(q): Query<PdfQuery>,
) -> Result<Response, Refusal> {
    let pdf = state
        .backend
        .notifier
        .clone()
        .render_invoice_pdf(RenderInvoicePdfRequest { invoice_id: id })
        .await
        .map_err(refusal)?
        .into_inner();
    // The file name is the invoice number: letters, digits, '-' and '_' only, as invoicing
    // makes them; anything else is dropped rather than put in a header.
    let name: String = pdf
        .file_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let disposition = if q.download { "attachment" } else { "inline" };
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("{disposition}; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        pdf.pdf,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct PayForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    received_on: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    confirmed: bool,
}

/// A confirmation page: what will happen, and the button that makes it happen.
pub(super) fn confirm(
    who: &Operator,
    action: &str,
    what: Markup,
    fields: &[(&str, &str)],
    button: &str,
    danger: bool,
) -> Response {
    let body = html! {
        (what)
        form.write method="post" action=(action) {
            input type="hidden" name="csrf" value=(who.session.csrf);
            input type="hidden" name="confirmed" value="true";
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            p {
                @if danger { button.danger type="submit" { (button) } } @else { button.primary type="submit" { (button) } }
                " "
                a href=(action.rsplit_once('/').map_or("/", |(back, _)| back)) { "Cancel" }
            }
        }
    };
    page(who, "Confirm", body)
}

pub async fn pay(
    State(state): State<Shared>,
    who: Operator,
    Path(id): Path<String>,
    Form(form): Form<PayForm>,
) -> Result<Response, Refusal> {
    who.check_write(&form.csrf, Access::Billing)?;
    let i = fetch(&state, &id).await?;
    if !form.confirmed {
        let what = html! {
            p { "Record a bank payment of " strong { (form.amount) " " (i.total.as_ref().map(|m| m.currency_code.as_str()).unwrap_or_default()) }
                " received on " strong { (form.received_on) } ", reference " strong { (form.reference) }
                ", against invoice " strong { (i.number) } " (balance " (money(i.balance.as_ref())) ")?" }
        };
        return Ok(confirm(
            &who,
            &format!("/invoices/{}/pay", i.id),
            what,
            &[
                ("amount", &form.amount),
                ("received_on", &form.received_on),
                ("reference", &form.reference),
            ],
            "Record payment",
            false,
        ));
    }
    let recorded = state
        .backend
        .invoicing
        .clone()
        .record_payment(as_operator(
            RecordPaymentRequest {
                invoice_id: i.id.clone(),
                amount: form.amount.trim().to_string(),
                received_on: form.received_on.trim().to_string(),
                reference: form.reference.trim().to_string(),
                idempotency_key: String::new(),
            },
            &who.session,
        ))
        .await
        .map_err(refusal)?
        .into_inner();
    metrics::counter!("console_writes_total", "write" => "record_payment").increment(1);
    let done = if recorded.recorded { "paid" } else { "already" };
    Ok(Redirect::to(&format!("/invoices/{}?done={done}", i.id)).into_response())
}

/// A write that takes a reason: a void, a resent email.
#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirmed: bool,
}

pub async fn void(
    State(state): State<Shared>,
    who: Operator,
    Path(id): Path<String>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, Refusal> {
    who.check_write(&form.csrf, Access::Billing)?;
    let i = fetch(&state, &id).await?;
    if !form.confirmed {
        let what = html! {
            p { "Void invoice " strong { (i.number) } " (" (money(i.total.as_ref())) ") because “" (form.reason) "”? "
                "Its month can then be invoiced again under a new number; this cannot be undone." }
        };
        return Ok(confirm(
            &who,
            &format!("/invoices/{}/void", i.id),
            what,
            &[("reason", &form.reason)],
            "Void the invoice",
            true,
        ));
    }
    state
        .backend
        .invoicing
        .clone()
        .void_invoice(as_operator(
            VoidInvoiceRequest {
                invoice_id: i.id.clone(),
                reason: form.reason.trim().to_string(),
            },
            &who.session,
        ))
        .await
        .map_err(refusal)?;
    metrics::counter!("console_writes_total", "write" => "void_invoice").increment(1);
    Ok(Redirect::to(&format!("/invoices/{}?done=voided", i.id)).into_response())
}

pub async fn resend(
    State(state): State<Shared>,
    who: Operator,
    Path(id): Path<String>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, Refusal> {
    who.check_write(&form.csrf, Access::Billing)?;
    let i = fetch(&state, &id).await?;
    if !issued(&i.status) {
        return Err(Refusal::BadRequest(format!(
            "invoice {} is {}: only an issued invoice's email is sent again",
            i.number, i.status
        )));
    }
    if !form.confirmed {
        let what = html! {
            p { "Email invoice " strong { (i.number) } " (" (i.status) ", balance " (money(i.balance.as_ref())) ") with its current PDF to "
                strong { (i.billing_email) } " once more?"
                @if !form.reason.trim().is_empty() { " Reason: “" (form.reason) "”." } }
        };
        return Ok(confirm(
            &who,
            &format!("/invoices/{}/resend", i.id),
            what,
            &[("reason", &form.reason)],
            "Resend the email",
            false,
        ));
    }
    state
        .backend
        .invoicing
        .clone()
        .resend_invoice_email(as_operator(
            ResendInvoiceEmailRequest {
                invoice_id: i.id.clone(),
                reason: form.reason.trim().to_string(),
            },
            &who.session,
        ))
        .await
        .map_err(refusal)?;
    metrics::counter!("console_writes_total", "write" => "resend_invoice_email").increment(1);
    Ok(Redirect::to(&format!("/invoices/{}?done=resent", i.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(number: &str, total: &str) -> Invoice {
        Invoice {
            number: number.into(),
            total: Some(billing_proto::Money {
                currency_code: "AUD".into(),
                amount: total.into(),
            }),
            ..Invoice::default()
        }
    }

    #[test]
    fn the_list_sorts_by_amount_as_a_number_and_pages_keep_the_filters() {
        let mut list = vec![
            invoice("A-1", "100.00"),
            invoice("A-2", "9.50"),
            invoice("A-3", "20"),
        ];
        sort(&mut list, "total", false);
        let order: Vec<&str> = list.iter().map(|i| i.number.as_str()).collect();
        assert_eq!(order, ["A-2", "A-3", "A-1"]);
        sort(&mut list, "number", true);
        assert_eq!(list[0].number, "A-3");
        let q = ListQuery {
            tenant: "claire".into(),
            status: "paid".into(),
            ..ListQuery::default()
        };
        assert_eq!(
            list_href(&q, "total", true, 2),
            "/invoices?tenant=claire&status=paid&sort=total&desc=true&page=2"
        );
        assert_eq!(by("", ""), "invoicing");
        assert_eq!(by("dana", "billing"), "dana as billing");
    }
}
