//! `billingctl invoices`: the monthly close, invoices and their lifecycle (payments, voids,
//! overdue), and from the notifier their PDFs and emails.

use anyhow::Context as _;
use billing_proto::invoicing::{
    GenerateMonthlyInvoicesRequest, GetInvoiceRequest, Invoice, ListInvoicesRequest,
    Outcome as CloseOutcome, RecordPaymentRequest, ResendInvoiceEmailRequest, SweepOverdueRequest,
    TenantOutcome, VoidInvoiceRequest,
};
use billing_proto::notifier::{Delivery, ListDeliveriesRequest, RenderInvoicePdfRequest};

use crate::clients::Conn;
use crate::exit::Outcome;
use crate::output::{
    self, Table, amount, invoice_json, json_time, last, left, out, outln, right, utc_minute,
};

#[derive(clap::Subcommand)]
pub enum InvoicesCmd {
    /// Run the monthly close (safe to repeat: an issued invoice is returned, not duplicated).
    /// Exits 1 when any tenant's close failed (a CronJob then shows the run as failed).
    Generate {
        /// YYYY-MM; default: the previous month in each tenant's time zone.
        #[arg(long)]
        period: Option<String>,
        /// Default: every tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Show what would be issued without issuing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List invoices.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// draft, issued, partially_paid, paid, overdue or void.
        #[arg(long)]
        status: Option<String>,
        /// YYYY-MM
        #[arg(long)]
        period: Option<String>,
    },
    /// Record a bank transfer received for an invoice (repeating it records it once).
    Pay {
        /// The invoice's id or its number (e.g. CLAIRE-2026-0001).
        invoice_id: String,
        /// In the invoice's currency, e.g. 75.10.
        #[arg(long)]
        amount: String,
        /// YYYY-MM-DD the money arrived.
        #[arg(long)]
        date: String,
        /// The bank reference.
        #[arg(long)]
        reference: String,
        /// Identifies the transfer; default: derived from invoice, amount, date and reference.
        #[arg(long)]
        key: Option<String>,
    },
    /// Void an unpaid invoice; its month can then be invoiced again under a new number.
    Void {
        /// The invoice's id or its number (e.g. CLAIRE-2026-0001).
        invoice_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Email an issued invoice (its current PDF) to the tenant once more. Each call sends one
    /// more email; draft and void invoices are refused.
    Resend {
        /// The invoice's id or its number (e.g. CLAIRE-2026-0001).
        invoice_id: String,
        /// Why; kept in the invoice's history.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Mark issued invoices past their due date as overdue (the daily CronJob).
    SweepOverdue {
        /// YYYY-MM-DD; default: today in each invoice's time zone.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Show one invoice with its lines.
    Show {
        /// The invoice's id or its number (e.g. CLAIRE-2026-0001).
        invoice_id: String,
    },
    /// Save an invoice's PDF as it stands now (status, payments, balance).
    Pdf {
        /// The invoice's id or its number (e.g. CLAIRE-2026-0001).
        invoice_id: String,
        /// Where to write it; default: `<invoice number>.pdf` in the current directory.
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
    },
    /// The emails sent for an invoice (issued, reminders, receipts) and their delivery state.
    Emails {
        /// The invoice's id or its number (e.g. CLAIRE-2026-0001).
        invoice_id: String,
    },
}

/// The largest PDF billingctl accepts (a month of 100,000 bookings is well below).
const MAX_PDF_BYTES: usize = 256 * 1024 * 1024;

const LIST: Table<7> = Table::new([
    left("NUMBER", 18),
    left("TENANT", 12),
    left("PERIOD", 8),
    left("STATUS", 14),
    right("TOTAL", 16),
    left("DUE", 10),
    last("ID"),
]);

const EMAILS: Table<6> = Table::new([
    left("KIND", 18),
    right("V", 3),
    left("STATE", 9),
    right("ATTEMPTS", 8),
    left("SENT (UTC)", 17),
    last("LAST ERROR"),
]);

const LINES: Table<6> = Table::new([
    right("#", 3),
    left("BOOKING", 12),
    left("SESSION (UTC)", 17),
    left("SERVICE", 28),
    right("AMOUNT", 14),
    right("FEE", 14),
]);

pub async fn run(conn: &Conn, json: bool, cmd: InvoicesCmd) -> anyhow::Result<Outcome> {
    // Made before the command is looked at, as it always was: an invalid invoicing address
    // fails `pdf` and `emails` too, although they call only the notifier.
    let mut invoicing = conn.invoicing()?;
    match cmd {
        InvoicesCmd::Generate {
            period,
            tenant,
            dry_run,
        } => {
            let outcomes = invoicing
                .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
                    period: period.unwrap_or_default(),
                    tenant_id: tenant.unwrap_or_default(),
                    dry_run,
                })
                .await?
                .into_inner()
                .outcomes;
            let failed = outcomes.iter().any(|o| o.outcome() == CloseOutcome::Failed);
            output::print_list(json, &outcomes, close_json, |outcomes| {
                for o in outcomes {
                    let what = match o.outcome() {
                        CloseOutcome::Issued => "issued",
                        CloseOutcome::AlreadyIssued => "already issued",
                        CloseOutcome::NoBillableBookings => "nothing billable",
                        CloseOutcome::Failed => "FAILED",
                        CloseOutcome::WouldIssue => "would issue",
                        CloseOutcome::Unspecified => "unknown",
                    };
                    out!("{:<12} {}  {what}", o.tenant_id, o.period);
                    if let Some(inv) = &o.invoice {
                        out!(
                            "  {}  total {}  ({} bookings)  id {}",
                            inv.number,
                            amount(inv.total.as_ref()),
                            inv.booking_count,
                            inv.id
                        );
                    }
                    if !o.error.is_empty() {
                        out!("  {}", o.error);
                    }
                    outln!();
                }
            })?;
            Ok(Outcome::failed_if(failed))
        }
        InvoicesCmd::List {
            tenant,
            status,
            period,
        } => {
            let invoices = invoicing
                .list_invoices(ListInvoicesRequest {
                    tenant_id: tenant.unwrap_or_default(),
                    status: status.unwrap_or_default(),
                    period: period.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .invoices;
            output::print_list(json, &invoices, invoice_json, |invoices| {
                LIST.header();
                for i in invoices {
                    LIST.row([
                        &i.number,
                        &i.tenant_id,
                        &i.period,
                        &i.status,
                        &amount(i.total.as_ref()),
                        &i.due_date,
                        &i.id,
                    ]);
                }
            })?;
            Ok(Outcome::Done)
        }
        InvoicesCmd::Pay {
            invoice_id,
            amount: paid,
            date,
            reference,
            key,
        } => {
            let reply = invoicing
                .record_payment(RecordPaymentRequest {
                    invoice_id,
                    amount: paid,
                    received_on: date,
                    reference,
                    idempotency_key: key.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let inv = reply.invoice.unwrap_or_default();
            if json {
                output::print_json_line(&serde_json::json!({"recorded": reply.recorded,
                    "overpaid": reply.overpaid, "invoice": invoice_json(&inv)}));
            } else {
                let what = if reply.recorded {
                    "payment recorded"
                } else {
                    "already recorded, nothing changed"
                };
                outln!(
                    "{}: {what}; status {}, paid {}, balance {}{}",
                    inv.number,
                    inv.status,
                    amount(inv.amount_paid.as_ref()),
                    amount(inv.balance.as_ref()),
                    if reply.overpaid { "  OVERPAID" } else { "" }
                );
            }
            Ok(Outcome::Done)
        }
        InvoicesCmd::Void { invoice_id, reason } => {
            let inv = invoicing
                .void_invoice(VoidInvoiceRequest { invoice_id, reason })
                .await?
                .into_inner();
            if json {
                output::print_json_line(&invoice_json(&inv));
            } else {
                outln!("{} voided; its period can be invoiced again", inv.number);
            }
            Ok(Outcome::Done)
        }
        InvoicesCmd::Resend { invoice_id, reason } => {
            let inv = invoicing
                .resend_invoice_email(ResendInvoiceEmailRequest { invoice_id, reason })
                .await?
                .into_inner();
            if json {
                output::print_json_line(&invoice_json(&inv));
            } else {
                outln!(
                    "{}: its email will be sent once more (`billingctl invoices emails {}` \
                     shows it)",
                    inv.number,
                    inv.number
                );
            }
            Ok(Outcome::Done)
        }
        InvoicesCmd::SweepOverdue { as_of } => {
            let marked = invoicing
                .sweep_overdue(SweepOverdueRequest {
                    as_of: as_of.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .marked;
            output::print_list(json, &marked, invoice_json, |marked| {
                outln!("{} invoice(s) marked overdue", marked.len());
                for i in marked {
                    outln!("{:<18} {:<12} due {}", i.number, i.tenant_id, i.due_date);
                }
            })?;
            Ok(Outcome::Done)
        }
        InvoicesCmd::Show { invoice_id } => {
            let inv = invoicing
                .get_invoice(GetInvoiceRequest { invoice_id })
                .await?
                .into_inner();
            if json {
                output::print_json(&invoice_json(&inv))?;
            } else {
                print_invoice(&inv);
            }
            Ok(Outcome::Done)
        }
        InvoicesCmd::Pdf { invoice_id, out } => {
            let pdf = conn
                .notifier()?
                .max_decoding_message_size(MAX_PDF_BYTES)
                .render_invoice_pdf(RenderInvoicePdfRequest { invoice_id })
                .await?
                .into_inner();
            let path = out.unwrap_or_else(|| pdf.file_name.clone().into());
            std::fs::write(&path, &pdf.pdf)
                .with_context(|| format!("writing {}", path.display()))?;
            if json {
                output::print_json_line(&serde_json::json!({"file": path,
                    "pages": pdf.page_count, "bytes": pdf.pdf.len()}));
            } else {
                outln!(
                    "wrote {} ({} pages, {} bytes)",
                    path.display(),
                    pdf.page_count,
                    pdf.pdf.len()
                );
            }
            Ok(Outcome::Done)
        }
        InvoicesCmd::Emails { invoice_id } => {
            let deliveries = conn
                .notifier()?
                .list_deliveries(ListDeliveriesRequest { invoice_id })
                .await?
                .into_inner()
                .deliveries;
            output::print_list(json, &deliveries, delivery_json, |deliveries| {
                EMAILS.header();
                for d in deliveries {
                    EMAILS.row([
                        &d.kind,
                        &d.version,
                        &d.state,
                        &d.attempts,
                        &utc_minute(d.sent_at.as_ref()),
                        &d.last_error,
                    ]);
                }
            })?;
            Ok(Outcome::Done)
        }
    }
}

/// One tenant's close: the outcome in the words invoicing records it with (`already_issued`),
/// the invoice issued or found, or why it failed.
fn close_json(o: &TenantOutcome) -> serde_json::Value {
    let outcome = match o.outcome() {
        CloseOutcome::Issued => "issued",
        CloseOutcome::AlreadyIssued => "already_issued",
        CloseOutcome::NoBillableBookings => "nothing_billable",
        CloseOutcome::Failed => "failed",
        CloseOutcome::WouldIssue => "would_issue",
        CloseOutcome::Unspecified => "unspecified",
    };
    serde_json::json!({"tenant": o.tenant_id, "period": o.period, "outcome": outcome,
        "invoice": o.invoice.as_ref().map(invoice_json), "error": o.error})
}

/// An email of an invoice.
fn delivery_json(d: &Delivery) -> serde_json::Value {
    serde_json::json!({"kind": d.kind, "version": d.version,
        "state": d.state, "message_id": d.message_id,
        "attempts": d.attempts, "last_error": d.last_error,
        "sent_at": json_time(d.sent_at.as_ref())})
}

fn print_invoice(i: &Invoice) {
    outln!("Invoice {}  ({})", i.number, i.status);
    outln!("Tenant  {} <{}>", i.tenant_name, i.billing_email);
    outln!("Period  {} ({})", i.period, i.time_zone);
    outln!("Issued  {}   due {}", i.issue_date, i.due_date);
    outln!();
    LINES.header();
    for l in &i.lines {
        LINES.row([
            &l.position,
            &l.booking_ref,
            &utc_minute(l.session_at.as_ref()),
            &l.service_name,
            &amount(l.booking_amount.as_ref()),
            &amount(l.platform_fee.as_ref()),
        ]);
        if !l.description.is_empty() {
            outln!("    adjustment: {}", l.description);
        }
    }
    outln!();
    outln!(
        "Bookings {}   booking value {}",
        i.booking_count,
        amount(i.total_booking_value.as_ref()),
    );
    outln!(
        "Subtotal {}   tax {} ({})   TOTAL {}   paid {}   BALANCE {}",
        amount(i.subtotal.as_ref()),
        amount(i.tax.as_ref()),
        i.tax_rate,
        amount(i.total.as_ref()),
        amount(i.amount_paid.as_ref()),
        amount(i.balance.as_ref())
    );
    outln!("{}", i.payment_instructions);
    for h in &i.history {
        // Who asked for it through the API: `(dana as billing)`, or nothing for invoicing's own.
        let by = match (h.operator.as_str(), h.caller_role.as_str()) {
            (_, "") => String::new(),
            ("", role) => format!("  ((unnamed) as {role})"),
            (name, role) => format!("  ({name} as {role})"),
        };
        outln!(
            "  {}  {} -> {}  {}{by}",
            utc_minute(h.changed_at.as_ref()),
            h.from_status,
            h.to_status,
            h.reason
        );
    }
}
