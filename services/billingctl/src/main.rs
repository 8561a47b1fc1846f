//! billingctl: the operator's tool. Talks gRPC to the ledger, invoicing and notifier services.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

mod export;
mod progress;
mod reconcile;
mod simplybook;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use billing_domain::Secret;
use billing_proto::convert::datetime;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{
    GenerateMonthlyInvoicesRequest, GetInvoiceRequest, GetTenantProfileRequest, Invoice,
    ListInvoicesRequest, ListTenantProfilesRequest, Outcome, PutTenantProfileRequest,
    RecordPaymentRequest, SweepOverdueRequest, TenantProfile, VoidInvoiceRequest,
};
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::ledger::{
    DeadLetter, GetBookingRequest, ListAuditEventsRequest, ListBookingsRequest,
    ListDeadLettersRequest, ReconcileSimplyBookRequest, ReplayDeadLetterRequest,
    VerifyIntegrityRequest,
};
use billing_proto::notifier::notifier_service_client::NotifierServiceClient;
use billing_proto::notifier::{ListDeliveriesRequest, RenderInvoicePdfRequest};
use billing_runtime::trace::{TracedChannel, traced};
use clap::{Parser, Subcommand};
use tonic::transport::Endpoint;

#[derive(Parser)]
#[command(
    name = "billingctl",
    version,
    about = "Operate the billing tracker over gRPC",
    after_help = "Exit status: 0 done, 1 failed, 3 something needs a person (reconciliation gaps, \
                  unmatched transfers, a broken hash chain), 64 bad argument, 65 bad input file, \
                  69 a service is unreachable or too slow, 77 no token or a too narrow role."
)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where the services are and the token to call them with.
#[derive(clap::Args)]
pub(crate) struct Conn {
    /// The ledger's gRPC address.
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_LEDGER_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8081"
    )]
    ledger_url: String,
    /// The invoicing service's gRPC address.
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_INVOICING_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8082"
    )]
    invoicing_url: String,
    /// The notifier's gRPC address (invoice PDFs and emails).
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_NOTIFIER_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8083"
    )]
    notifier_url: String,
    /// The bearer token billingctl calls the services with; its role (viewer, billing, admin)
    /// decides what it may do. Prefer the environment variable: a flag shows in `ps`.
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_TOKEN",
        hide_env_values = true,
        value_parser = billing_runtime::config::SecretParser
    )]
    token: Option<Secret<String>>,
    /// How long one call may take (a reconciliation of many tenants takes minutes).
    #[arg(
        long,
        global = true,
        env = "BILLINGCTL_TIMEOUT_SECS",
        default_value_t = 120
    )]
    timeout_secs: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Booking records in the ledger.
    #[command(subcommand)]
    Bookings(BookingsCmd),
    /// Monthly invoices.
    #[command(subcommand)]
    Invoices(InvoicesCmd),
    /// Events a service gave up on (the shared dead-letter stream).
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Tenants' billing profiles (kept by invoicing).
    #[command(subcommand)]
    Tenants(TenantsCmd),
    /// The audit log: webhooks received and what became of them.
    #[command(subcommand)]
    Events(EventsCmd),
    /// A tenant's bookings or invoices for a month, as CSV or JSON.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// Compare SimplyBook with the ledger, or a bank statement with the invoices.
    #[command(subcommand)]
    Reconcile(ReconcileCmd),
    /// A tenant's SimplyBook account: the go-live check.
    #[command(subcommand)]
    Simplybook(simplybook::SimplybookCmd),
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Audit log entries, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// simplybook or stripe.
        #[arg(long)]
        source: Option<String>,
        /// What was decided: stored, duplicate, status_changed, revised, stale, dead_lettered,
        /// rejected.
        #[arg(long, visible_alias = "type")]
        outcome: Option<String>,
        /// Only entries at or after this time (RFC 3339, or YYYY-MM-DD as UTC midnight).
        #[arg(long)]
        since: Option<String>,
        /// Continue with entries older than this id.
        #[arg(long)]
        before: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum ExportWhat {
    /// Bookings with sessions in the month (tenant's time zone), one row each.
    Bookings(ExportArgs),
    /// The month's invoices, one row per invoice line.
    Invoices(ExportArgs),
}

#[derive(clap::Args)]
struct ExportArgs {
    #[arg(long)]
    tenant: String,
    /// YYYY-MM
    #[arg(long)]
    period: String,
    #[arg(long, value_enum, default_value = "csv")]
    format: export::Format,
    /// Write here instead of standard output.
    #[arg(long, short)]
    out: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum ReconcileCmd {
    /// SimplyBook's bookings of a month against the ledger's. Exits 3 when they differ.
    Simplybook {
        /// Default: every tenant with SimplyBook admin credentials.
        #[arg(long)]
        tenant: Option<String>,
        /// YYYY-MM, `current` or `previous` (each tenant's month in its time zone).
        #[arg(long, default_value = "previous")]
        period: String,
        /// Put each missing or differing booking on the webhook stream, where the ledger
        /// confirms it with SimplyBook's admin API and records it as a repair.
        #[arg(long)]
        repair: bool,
        /// Raise an operator alert when gaps are found (the nightly CronJob does).
        #[arg(long)]
        alert: bool,
    },
    /// Match a bank statement (CSV with a header row) to open invoices and record the
    /// payments. Exits 3 when some transfers did not match.
    Bank {
        /// The statement; `-` for standard input.
        file: std::path::PathBuf,
        #[command(flatten)]
        columns: reconcile::Columns,
        /// Show what would be recorded without recording anything.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TenantsCmd {
    /// Every tenant with a billing profile.
    List,
    /// One tenant's billing profile.
    Show { tenant: String },
    /// Creates a tenant's profile or changes the given fields of an existing one.
    Set {
        tenant: String,
        #[command(flatten)]
        fields: Box<ProfileFields>,
    },
}

/// The fields `tenants set` can change; those not given keep their value.
#[derive(clap::Args)]
struct ProfileFields {
    /// Legal name printed on invoices.
    #[arg(long)]
    legal_name: Option<String>,
    #[arg(long)]
    billing_email: Option<String>,
    /// Postal address; `;` separates lines.
    #[arg(long)]
    address: Option<String>,
    /// e.g. "ABN 00 000 000 000".
    #[arg(long)]
    tax_id: Option<String>,
    /// IANA zone of the tenant's billing months, e.g. Australia/Sydney.
    #[arg(long)]
    time_zone: Option<String>,
    /// ISO 4217; must match the ledger's currency for the tenant.
    #[arg(long)]
    currency: Option<String>,
    /// Days from issue to due date.
    #[arg(long)]
    payment_terms_days: Option<u32>,
    /// Decimal fraction, e.g. 0.10.
    #[arg(long)]
    tax_rate: Option<String>,
    /// manual (bank transfer) or stripe.
    #[arg(long)]
    mode: Option<String>,
    #[arg(long)]
    stripe_customer_id: Option<String>,
    /// Invoice numbers are <prefix>-<year>-<seq>.
    #[arg(long)]
    invoice_prefix: Option<String>,
}

impl ProfileFields {
    fn apply(self, p: &mut TenantProfile) {
        let set = |field: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        set(&mut p.legal_name, self.legal_name);
        set(&mut p.billing_email, self.billing_email);
        set(&mut p.address, self.address.map(|a| a.replace(';', "\n")));
        set(&mut p.tax_id, self.tax_id);
        set(&mut p.time_zone, self.time_zone);
        set(&mut p.currency, self.currency);
        set(&mut p.tax_rate, self.tax_rate);
        set(&mut p.invoicing_mode, self.mode);
        set(&mut p.stripe_customer_id, self.stripe_customer_id);
        set(&mut p.invoice_prefix, self.invoice_prefix);
        if let Some(days) = self.payment_terms_days {
            p.payment_terms_days = days;
        }
    }
}

#[derive(Subcommand)]
enum DlqCmd {
    /// List dead letters with their reasons, oldest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only this consumer's: ledger, ledger-rejections, invoicing-bookings,
        /// invoicing-stripe, notifier-invoices or notifier-alerts.
        #[arg(long)]
        consumer: Option<String>,
        /// Continue after this sequence.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Publish a dead letter's event again once its cause is fixed.
    Replay { sequence: u64 },
}

#[derive(Subcommand)]
enum BookingsCmd {
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

/// The largest PDF billingctl accepts (a month of 100,000 bookings is well below).
const MAX_PDF_BYTES: usize = 256 * 1024 * 1024;

/// Exit status of `bookings verify` when the chain does not verify.
const EXIT_TAMPERED: u8 = 3;

#[derive(Subcommand)]
enum InvoicesCmd {
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
        invoice_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Mark issued invoices past their due date as overdue (the daily CronJob).
    SweepOverdue {
        /// YYYY-MM-DD; default: today in each invoice's time zone.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Show one invoice with its lines.
    Show { invoice_id: String },
    /// Save an invoice's PDF as it stands now (status, payments, balance).
    Pdf {
        invoice_id: String,
        /// Where to write it; default: `<invoice number>.pdf` in the current directory.
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
    },
    /// The emails sent for an invoice (issued, reminders, receipts) and their delivery state.
    Emails { invoice_id: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    // A bad argument exits 64 (EX_USAGE) with clap's message; --help and --version exit 0.
    let cli: Cli = billing_runtime::config::parse_or_exit();
    let urls = format!(
        "ledger {}, invoicing {}, notifier {}",
        cli.conn.ledger_url, cli.conn.invoicing_url, cli.conn.notifier_url
    );
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            let (code, hint) = classify(&err);
            eprintln!("billingctl: {}", describe(&err));
            if let Some(hint) = hint {
                eprintln!("hint: {}", hint.replace("{urls}", &urls));
            }
            ExitCode::from(code)
        }
    }
}

/// Exit statuses besides 0 and 1 (from sysexits.h): a bad argument or input file, a service
/// that cannot be reached, a token that is missing or may not do this.
const EXIT_USAGE: u8 = billing_runtime::config::EXIT_CONFIG;
const EXIT_DATA: u8 = 65;
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_NOPERM: u8 = 77;

/// An error found in the user's input (exit status 65, or 64 for arguments).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InputError(pub(crate) String);

/// The error chain in words, a gRPC status shown by its message (not its debug dump).
fn describe(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            parts.push(format!("{} ({:?})", status.message(), status.code()));
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ")
}

/// The exit status for `err` and a hint at the fix.
fn classify(err: &anyhow::Error) -> (u8, Option<&'static str>) {
    if err
        .chain()
        .any(|c| c.downcast_ref::<InputError>().is_some())
    {
        return (EXIT_DATA, None);
    }
    let Some(status) = err.chain().find_map(|c| c.downcast_ref::<tonic::Status>()) else {
        return (1, None);
    };
    match status.code() {
        tonic::Code::DeadlineExceeded => (
            EXIT_UNAVAILABLE,
            Some("the call took longer than --timeout-secs (BILLINGCTL_TIMEOUT_SECS) allows"),
        ),
        tonic::Code::Unavailable => (
            EXIT_UNAVAILABLE,
            Some(
                "is the service running at the address used? ({urls}; set with --ledger-url, --invoicing-url, --notifier-url or BILLINGCTL_*_URL)",
            ),
        ),
        tonic::Code::Unauthenticated => (
            EXIT_NOPERM,
            Some("set BILLINGCTL_TOKEN (or --token) to a token the services accept"),
        ),
        tonic::Code::PermissionDenied => (
            EXIT_NOPERM,
            Some("this needs a token with a wider role (viewer < billing < admin)"),
        ),
        tonic::Code::InvalidArgument => (EXIT_USAGE, None),
        _ => (1, None),
    }
}

impl Conn {
    /// A channel to `url` that sends the token with every call.
    fn channel(&self, url: &str) -> anyhow::Result<TracedChannel> {
        let token = self.token.as_ref().context(
            "no token: set BILLINGCTL_TOKEN (or --token) to a token of role viewer, billing or admin",
        )?;
        let channel = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("invalid service address {url:?}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(self.timeout_secs))
            .connect_lazy();
        Ok(traced(channel, token)?)
    }

    pub(crate) fn ledger(&self) -> anyhow::Result<LedgerServiceClient<TracedChannel>> {
        Ok(LedgerServiceClient::new(self.channel(&self.ledger_url)?))
    }

    pub(crate) fn invoicing(&self) -> anyhow::Result<InvoicingServiceClient<TracedChannel>> {
        Ok(InvoicingServiceClient::new(
            self.channel(&self.invoicing_url)?,
        ))
    }

    fn notifier(&self) -> anyhow::Result<NotifierServiceClient<TracedChannel>> {
        Ok(NotifierServiceClient::new(
            self.channel(&self.notifier_url)?,
        ))
    }
}

/// Pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Bookings(BookingsCmd::Show {
            booking_ref,
            tenant,
        }) => {
            let reply = cli
                .conn
                .ledger()?
                .get_booking(GetBookingRequest {
                    tenant_id: tenant,
                    booking_ref,
                })
                .await?
                .into_inner();
            let b = reply.booking.unwrap_or_default();
            if cli.json {
                print_json(&serde_json::json!({
                    "booking": booking_json(&b),
                    "history": reply.history.iter().map(|h| serde_json::json!({
                        "status": h.status, "service": h.service_name, "event_id": h.event_id,
                        "session_at": datetime(h.session_at.as_ref()).map(|t| t.to_rfc3339()),
                        "changed_at": datetime(h.changed_at.as_ref()).map(|t| t.to_rfc3339()),
                    })).collect::<Vec<_>>(),
                    "revisions": reply.revisions.iter().map(|r| serde_json::json!({
                        "revision": r.revision, "total_delta": amount(r.total_delta.as_ref()),
                        "fee_delta": amount(r.fee_delta.as_ref()),
                        "total_after": amount(r.total_after.as_ref()),
                        "fee_after": amount(r.fee_after.as_ref()), "event_id": r.event_id,
                        "record_hash": r.record_hash,
                        "recorded_at": datetime(r.recorded_at.as_ref()).map(|t| t.to_rfc3339()),
                    })).collect::<Vec<_>>(),
                }))?;
            } else {
                println!(
                    "Booking {} of {}  ({})",
                    b.booking_ref, b.tenant_id, b.status
                );
                println!(
                    "Session   {} UTC, {}",
                    utc_minute(b.session_at.as_ref()),
                    b.service_name
                );
                println!(
                    "Amounts   total {}, deposit {}, cash {}, platform fee {} (revision {})",
                    amount(b.total.as_ref()),
                    amount(b.deposit.as_ref()),
                    amount(b.cash.as_ref()),
                    amount(b.platform_fee.as_ref()),
                    b.revision
                );
                println!(
                    "Rates     deposit {}, fee {}",
                    b.deposit_rate, b.platform_fee_rate
                );
                println!(
                    "Recorded  {} UTC, hash {}",
                    utc_minute(b.recorded_at.as_ref()),
                    b.record_hash
                );
                println!("History");
                for h in &reply.history {
                    println!(
                        "  {}  {:<10} session {}  {}",
                        utc_minute(h.changed_at.as_ref()),
                        h.status,
                        utc_minute(h.session_at.as_ref()),
                        h.event_id
                    );
                }
                for r in &reply.revisions {
                    println!(
                        "  revision {}: total {} ({}), fee {} ({})  {}",
                        r.revision,
                        amount(r.total_after.as_ref()),
                        amount(r.total_delta.as_ref()),
                        amount(r.fee_after.as_ref()),
                        amount(r.fee_delta.as_ref()),
                        r.event_id
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Events(EventsCmd::List {
            tenant,
            source,
            outcome,
            since,
            before,
            limit,
        }) => {
            let from = since.as_deref().map(parse_since).transpose()?;
            let events = cli
                .conn
                .ledger()?
                .list_audit_events(ListAuditEventsRequest {
                    tenant_id: tenant.unwrap_or_default(),
                    source: source.unwrap_or_default(),
                    outcome: outcome.unwrap_or_default(),
                    from: from.map(billing_proto::convert::timestamp),
                    to: None,
                    before_id: before.unwrap_or(0),
                    limit,
                })
                .await?
                .into_inner()
                .events;
            if cli.json {
                let rows: Vec<_> = events
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "id": e.id, "source": e.source, "event_id": e.event_id,
                            "tenant": e.tenant_id, "outcome": e.outcome,
                            "booking_id": e.booking_id, "reason": e.reason,
                            "http_status": e.http_status, "body_sha256": e.body_sha256,
                            "occurred_at": datetime(e.occurred_at.as_ref()).map(|t| t.to_rfc3339()),
                        })
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                println!(
                    "{:>8} {:<17} {:<10} {:<12} {:<14} {:<48} REASON",
                    "ID", "AT (UTC)", "SOURCE", "TENANT", "OUTCOME", "EVENT"
                );
                for e in &events {
                    let mut reason = e.reason.clone();
                    if e.http_status != 0 {
                        reason = format!("HTTP {} {reason}", e.http_status);
                    }
                    println!(
                        "{:>8} {:<17} {:<10} {:<12} {:<14} {:<48} {}",
                        e.id,
                        utc_minute(e.occurred_at.as_ref()),
                        e.source,
                        e.tenant_id,
                        e.outcome,
                        e.event_id,
                        reason
                    );
                }
                if events.len() == limit as usize
                    && let Some(last) = events.last()
                {
                    println!("(more: --before {})", last.id);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { what } => {
            let (is_bookings, args) = match what {
                ExportWhat::Bookings(args) => (true, args),
                ExportWhat::Invoices(args) => (false, args),
            };
            // A file is written under a temporary name and renamed when complete, so a failed
            // export never leaves a partial month that looks whole.
            let partial = args.out.as_ref().map(|path| {
                let mut name = path.as_os_str().to_owned();
                name.push(".partial");
                std::path::PathBuf::from(name)
            });
            let out: Box<dyn std::io::Write> = match &partial {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let written = if is_bookings {
                export::bookings(&cli.conn, &args.tenant, &args.period, args.format, out).await
            } else {
                export::invoices(&cli.conn, &args.tenant, &args.period, args.format, out).await
            };
            let written = match (written, &partial) {
                (Ok(n), _) => n,
                (Err(err), Some(path)) => {
                    let _ = std::fs::remove_file(path);
                    return Err(err);
                }
                (Err(err), None) => return Err(err),
            };
            if let (Some(partial), Some(path)) = (&partial, &args.out) {
                std::fs::rename(partial, path).with_context(|| {
                    format!("renaming {} to {}", partial.display(), path.display())
                })?;
                eprintln!("wrote {written} record(s) to {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Simplybook(cmd) => {
            let ok = simplybook::run(&cli.conn, cli.json, cmd).await?;
            Ok(exit_attention(ok))
        }
        Command::Reconcile(ReconcileCmd::Simplybook {
            tenant,
            period,
            repair,
            alert,
        }) => {
            let clean = reconcile::simplybook(
                &cli.conn,
                cli.json,
                ReconcileSimplyBookRequest {
                    tenant_id: tenant.unwrap_or_default(),
                    period,
                    repair,
                    alert,
                },
            )
            .await?;
            Ok(exit_attention(clean))
        }
        Command::Reconcile(ReconcileCmd::Bank {
            file,
            columns,
            dry_run,
        }) => {
            let (transfers, debits) = reconcile::read_statement(&file, &columns)?;
            let matched = reconcile::bank(&cli.conn, cli.json, transfers, debits, dry_run).await?;
            Ok(exit_attention(matched))
        }
        Command::Bookings(BookingsCmd::List { tenant, limit }) => {
            let mut ledger = cli.conn.ledger()?;
            let bookings = ledger
                .list_bookings(ListBookingsRequest {
                    tenant_id: tenant,
                    limit,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .bookings;
            if cli.json {
                let rows: Vec<_> = bookings.iter().map(booking_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<12} {:<10} {:<22} {:>14} {:>14} {:>14} {:>14}",
                    "BOOKING", "STATUS", "SESSION (UTC)", "TOTAL", "DEPOSIT", "CASH", "FEE"
                );
                for b in &bookings {
                    println!(
                        "{:<12} {:<10} {:<22} {:>14} {:>14} {:>14} {:>14}",
                        b.booking_ref,
                        b.status,
                        utc_minute(b.session_at.as_ref()),
                        amount(b.total.as_ref()),
                        amount(b.deposit.as_ref()),
                        amount(b.cash.as_ref()),
                        amount(b.platform_fee.as_ref()),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bookings(BookingsCmd::Verify { tenant }) => {
            let mut ledger = cli.conn.ledger()?;
            let report = ledger
                .verify_integrity(VerifyIntegrityRequest { tenant_id: tenant })
                .await?
                .into_inner();
            let v = report.first_violation.as_ref();
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "tenant": report.tenant_id, "intact": report.intact,
                        "records_checked": report.records_checked, "head_hash": report.head_hash,
                        "first_violation": v.map(|v| serde_json::json!({
                            "chain_seq": v.chain_seq, "record_kind": v.record_kind,
                            "record_id": v.record_id, "booking_ref": v.booking_ref,
                            "reason": v.reason, "expected_hash": v.expected_hash,
                            "stored_hash": v.stored_hash,
                        })),
                    })
                );
            } else if let Some(v) = v {
                println!(
                    "{}: chain BROKEN at record {} ({} {}): {}",
                    report.tenant_id, v.chain_seq, v.record_kind, v.booking_ref, v.reason
                );
                println!("  expected hash {}", v.expected_hash);
                println!("  stored hash   {}", v.stored_hash);
            } else {
                println!(
                    "{}: intact, {} records, head {}",
                    report.tenant_id, report.records_checked, report.head_hash
                );
            }
            Ok(if report.intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_TAMPERED)
            })
        }
        Command::Tenants(cmd) => {
            let mut invoicing = cli.conn.invoicing()?;
            let profiles = match cmd {
                TenantsCmd::List => {
                    invoicing
                        .list_tenant_profiles(ListTenantProfilesRequest {})
                        .await?
                        .into_inner()
                        .profiles
                }
                TenantsCmd::Show { tenant } => vec![profile(&mut invoicing, &tenant).await?],
                TenantsCmd::Set { tenant, fields } => {
                    let mut current = match profile(&mut invoicing, &tenant).await {
                        Ok(p) => p,
                        Err(err) if is_not_found(&err) => TenantProfile {
                            tenant_id: tenant.clone(),
                            ..Default::default()
                        },
                        Err(err) => return Err(err),
                    };
                    fields.apply(&mut current);
                    vec![
                        invoicing
                            .put_tenant_profile(PutTenantProfileRequest {
                                profile: Some(current),
                            })
                            .await?
                            .into_inner(),
                    ]
                }
            };
            if cli.json {
                let rows: Vec<_> = profiles.iter().map(profile_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<12} {:<32} {:<20} {:<4} {:>5} {:>6} {:<7} BILLING EMAIL",
                    "TENANT", "LEGAL NAME", "TIME ZONE", "CUR", "TERMS", "TAX", "MODE"
                );
                for p in &profiles {
                    println!(
                        "{:<12} {:<32} {:<20} {:<4} {:>5} {:>6} {:<7} {}",
                        p.tenant_id,
                        p.legal_name,
                        p.time_zone,
                        p.currency,
                        p.payment_terms_days,
                        p.tax_rate,
                        p.invoicing_mode,
                        p.billing_email
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(cmd) => {
            let mut ledger = cli.conn.ledger()?;
            match cmd {
                DlqCmd::List {
                    tenant,
                    consumer,
                    after,
                    limit,
                } => {
                    let letters = ledger
                        .list_dead_letters(ListDeadLettersRequest {
                            tenant_id: tenant.unwrap_or_default(),
                            after_sequence: after,
                            limit,
                            consumer: consumer.unwrap_or_default(),
                        })
                        .await?
                        .into_inner()
                        .dead_letters;
                    if cli.json {
                        let rows: Vec<_> = letters.iter().map(dead_letter_json).collect();
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else {
                        println!(
                            "{:>8} {:<17} {:<18} {:<12} {:<44} REASON",
                            "SEQ", "AT (UTC)", "CONSUMER", "TENANT", "EVENT"
                        );
                        for d in &letters {
                            println!(
                                "{:>8} {:<17} {:<18} {:<12} {:<44} {}",
                                d.sequence,
                                utc_minute(d.dead_lettered_at.as_ref()),
                                d.consumer,
                                d.tenant_id,
                                d.event_id,
                                d.reason
                            );
                        }
                    }
                }
                DlqCmd::Replay { sequence } => {
                    let reply = ledger
                        .replay_dead_letter(ReplayDeadLetterRequest { sequence })
                        .await?
                        .into_inner();
                    let letter = reply.dead_letter.unwrap_or_default();
                    if cli.json {
                        println!(
                            "{}",
                            serde_json::json!({"replayed": reply.replayed,
                                "dead_letter": dead_letter_json(&letter)})
                        );
                    } else if reply.replayed {
                        println!(
                            "replayed {} to {}",
                            letter.event_id, letter.original_subject
                        );
                    } else {
                        println!("{} was already replayed moments ago", letter.event_id);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Invoices(cmd) => {
            let mut invoicing = cli.conn.invoicing()?;
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
                    let failed = outcomes.iter().any(|o| o.outcome() == Outcome::Failed);
                    for o in &outcomes {
                        let what = match o.outcome() {
                            Outcome::Issued => "issued",
                            Outcome::AlreadyIssued => "already issued",
                            Outcome::NoBillableBookings => "nothing billable",
                            Outcome::Failed => "FAILED",
                            Outcome::WouldIssue => "would issue",
                            Outcome::Unspecified => "unknown",
                        };
                        if cli.json {
                            println!(
                                "{}",
                                serde_json::json!({"tenant": o.tenant_id, "period": o.period, "outcome": what,
                                    "invoice": o.invoice.as_ref().map(invoice_json), "error": o.error})
                            );
                        } else {
                            print!("{:<12} {}  {what}", o.tenant_id, o.period);
                            if let Some(inv) = &o.invoice {
                                print!(
                                    "  {}  total {}  ({} bookings)  id {}",
                                    inv.number,
                                    amount(inv.total.as_ref()),
                                    inv.booking_count,
                                    inv.id
                                );
                            }
                            if !o.error.is_empty() {
                                print!("  {}", o.error);
                            }
                            println!();
                        }
                    }
                    Ok(if failed {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    })
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
                    if cli.json {
                        let rows: Vec<_> = invoices.iter().map(invoice_json).collect();
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else {
                        println!(
                            "{:<18} {:<12} {:<8} {:<14} {:>16} {:<10} ID",
                            "NUMBER", "TENANT", "PERIOD", "STATUS", "TOTAL", "DUE"
                        );
                        for i in &invoices {
                            println!(
                                "{:<18} {:<12} {:<8} {:<14} {:>16} {:<10} {}",
                                i.number,
                                i.tenant_id,
                                i.period,
                                i.status,
                                amount(i.total.as_ref()),
                                i.due_date,
                                i.id
                            );
                        }
                    }
                    Ok(ExitCode::SUCCESS)
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
                    if cli.json {
                        println!(
                            "{}",
                            serde_json::json!({"recorded": reply.recorded, "overpaid": reply.overpaid,
                                "invoice": invoice_json(&inv)})
                        );
                    } else {
                        let what = if reply.recorded {
                            "payment recorded"
                        } else {
                            "already recorded, nothing changed"
                        };
                        println!(
                            "{}: {what}; status {}, paid {}, balance {}{}",
                            inv.number,
                            inv.status,
                            amount(inv.amount_paid.as_ref()),
                            amount(inv.balance.as_ref()),
                            if reply.overpaid { "  OVERPAID" } else { "" }
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                InvoicesCmd::Void { invoice_id, reason } => {
                    let inv = invoicing
                        .void_invoice(VoidInvoiceRequest { invoice_id, reason })
                        .await?
                        .into_inner();
                    if cli.json {
                        println!("{}", invoice_json(&inv));
                    } else {
                        println!("{} voided; its period can be invoiced again", inv.number);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                InvoicesCmd::SweepOverdue { as_of } => {
                    let marked = invoicing
                        .sweep_overdue(SweepOverdueRequest {
                            as_of: as_of.unwrap_or_default(),
                        })
                        .await?
                        .into_inner()
                        .marked;
                    if cli.json {
                        let rows: Vec<_> = marked.iter().map(invoice_json).collect();
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else {
                        println!("{} invoice(s) marked overdue", marked.len());
                        for i in &marked {
                            println!("{:<18} {:<12} due {}", i.number, i.tenant_id, i.due_date);
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                InvoicesCmd::Pdf { invoice_id, out } => {
                    let pdf = cli
                        .conn
                        .notifier()?
                        .max_decoding_message_size(MAX_PDF_BYTES)
                        .render_invoice_pdf(RenderInvoicePdfRequest { invoice_id })
                        .await?
                        .into_inner();
                    let path = out.unwrap_or_else(|| pdf.file_name.clone().into());
                    std::fs::write(&path, &pdf.pdf)
                        .with_context(|| format!("writing {}", path.display()))?;
                    if cli.json {
                        println!(
                            "{}",
                            serde_json::json!({"file": path, "pages": pdf.page_count,
                                "bytes": pdf.pdf.len()})
                        );
                    } else {
                        println!(
                            "wrote {} ({} pages, {} bytes)",
                            path.display(),
                            pdf.page_count,
                            pdf.pdf.len()
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                InvoicesCmd::Emails { invoice_id } => {
                    let deliveries = cli
                        .conn
                        .notifier()?
                        .list_deliveries(ListDeliveriesRequest { invoice_id })
                        .await?
                        .into_inner()
                        .deliveries;
                    if cli.json {
                        let rows: Vec<_> = deliveries
                            .iter()
                            .map(|d| {
                                serde_json::json!({"kind": d.kind, "version": d.version,
                                    "state": d.state, "message_id": d.message_id,
                                    "attempts": d.attempts, "last_error": d.last_error,
                                    "sent_at": utc_minute(d.sent_at.as_ref())})
                            })
                            .collect();
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else {
                        println!(
                            "{:<18} {:>3} {:<9} {:>8} {:<17} LAST ERROR",
                            "KIND", "V", "STATE", "ATTEMPTS", "SENT (UTC)"
                        );
                        for d in &deliveries {
                            println!(
                                "{:<18} {:>3} {:<9} {:>8} {:<17} {}",
                                d.kind,
                                d.version,
                                d.state,
                                d.attempts,
                                utc_minute(d.sent_at.as_ref()),
                                d.last_error
                            );
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                InvoicesCmd::Show { invoice_id } => {
                    let inv = invoicing
                        .get_invoice(GetInvoiceRequest { invoice_id })
                        .await?
                        .into_inner();
                    if cli.json {
                        println!("{}", serde_json::to_string_pretty(&invoice_json(&inv))?);
                    } else {
                        print_invoice(&inv);
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
    }
}

fn exit_attention(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(reconcile::EXIT_ATTENTION)
    }
}

/// `--since`: RFC 3339, or a date taken as UTC midnight.
fn parse_since(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            InputError(format!(
                "--since {text:?}: use YYYY-MM-DD or an RFC 3339 time"
            ))
            .into()
        })
}

fn booking_json(b: &billing_proto::ledger::Booking) -> serde_json::Value {
    serde_json::json!({
        "id": b.id, "tenant": b.tenant_id, "booking_ref": b.booking_ref, "status": b.status,
        "session_at": datetime(b.session_at.as_ref()).map(|t| t.to_rfc3339()),
        "service": b.service_name, "total": amount(b.total.as_ref()),
        "deposit": amount(b.deposit.as_ref()), "cash": amount(b.cash.as_ref()),
        "platform_fee": amount(b.platform_fee.as_ref()), "deposit_rate": b.deposit_rate,
        "platform_fee_rate": b.platform_fee_rate, "revision": b.revision,
        "record_hash": b.record_hash,
        "recorded_at": datetime(b.recorded_at.as_ref()).map(|t| t.to_rfc3339()),
    })
}

/// `2026-10-14 23:30` (UTC), or empty when the timestamp is missing.
fn utc_minute(t: Option<&prost_types::Timestamp>) -> String {
    datetime(t)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

pub(crate) fn amount(m: Option<&billing_proto::Money>) -> String {
    m.map(|m| format!("{} {}", m.currency_code, m.amount))
        .unwrap_or_default()
}

fn dead_letter_json(d: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "sequence": d.sequence, "consumer": d.consumer, "original_subject": d.original_subject,
        "event_id": d.event_id, "tenant": d.tenant_id, "reason": d.reason,
        "dead_lettered_at": datetime(d.dead_lettered_at.as_ref()).map(|t| t.to_rfc3339()),
    })
}

/// One tenant's profile; an unknown tenant is an error that says so.
pub(crate) async fn profile(
    invoicing: &mut InvoicingServiceClient<TracedChannel>,
    tenant: &str,
) -> anyhow::Result<TenantProfile> {
    match invoicing
        .get_tenant_profile(GetTenantProfileRequest {
            tenant_id: tenant.to_string(),
        })
        .await
    {
        Ok(response) => Ok(response.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => {
            Err(anyhow::Error::new(status).context(format!("unknown tenant {tenant:?}")))
        }
        Err(status) => Err(status.into()),
    }
}

fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<tonic::Status>()
        .is_some_and(|s| s.code() == tonic::Code::NotFound)
}

fn profile_json(p: &TenantProfile) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": p.tenant_id, "legal_name": p.legal_name, "billing_email": p.billing_email,
        "address": p.address, "tax_id": p.tax_id, "time_zone": p.time_zone,
        "currency": p.currency, "payment_terms_days": p.payment_terms_days,
        "tax_rate": p.tax_rate, "invoicing_mode": p.invoicing_mode,
        "stripe_customer_id": p.stripe_customer_id, "invoice_prefix": p.invoice_prefix,
    })
}

pub(crate) fn invoice_json(i: &Invoice) -> serde_json::Value {
    serde_json::json!({
        "id": i.id, "number": i.number, "tenant": i.tenant_id, "period": i.period,
        "status": i.status, "issue_date": i.issue_date, "due_date": i.due_date,
        "booking_count": i.booking_count, "total_booking_value": amount(i.total_booking_value.as_ref()),
        "subtotal": amount(i.subtotal.as_ref()), "tax": amount(i.tax.as_ref()),
        "total": amount(i.total.as_ref()), "amount_paid": amount(i.amount_paid.as_ref()),
        "balance": amount(i.balance.as_ref()), "stripe_invoice_id": i.stripe_invoice_id,
        "payment_instructions": i.payment_instructions,
        "lines": i.lines.iter().map(|l| serde_json::json!({
            "position": l.position, "booking_ref": l.booking_ref,
            "session_at": datetime(l.session_at.as_ref()).map(|t| t.to_rfc3339()),
            "service": l.service_name, "booking_amount": amount(l.booking_amount.as_ref()),
            "platform_fee": amount(l.platform_fee.as_ref()), "kind": l.kind,
            "description": l.description,
        })).collect::<Vec<_>>(),
        "history": i.history.iter().map(|h| serde_json::json!({
            "from": h.from_status, "to": h.to_status, "reason": h.reason,
            "at": datetime(h.changed_at.as_ref()).map(|t| t.to_rfc3339()),
        })).collect::<Vec<_>>(),
        "payments": i.payments.iter().map(|p| serde_json::json!({
            "method": p.method, "amount": amount(p.amount.as_ref()), "received_on": p.received_on,
            "reference": p.reference,
        })).collect::<Vec<_>>(),
    })
}

fn print_invoice(i: &Invoice) {
    println!("Invoice {}  ({})", i.number, i.status);
    println!("Tenant  {} <{}>", i.tenant_name, i.billing_email);
    println!("Period  {} ({})", i.period, i.time_zone);
    println!("Issued  {}   due {}", i.issue_date, i.due_date);
    println!();
    println!(
        "{:>3} {:<12} {:<17} {:<28} {:>14} {:>14}",
        "#", "BOOKING", "SESSION (UTC)", "SERVICE", "AMOUNT", "FEE"
    );
    for l in &i.lines {
        println!(
            "{:>3} {:<12} {:<17} {:<28} {:>14} {:>14}",
            l.position,
            l.booking_ref,
            utc_minute(l.session_at.as_ref()),
            l.service_name,
            amount(l.booking_amount.as_ref()),
            amount(l.platform_fee.as_ref()),
        );
        if !l.description.is_empty() {
            println!("    adjustment: {}", l.description);
        }
    }
    println!();
    println!(
        "Bookings {}   booking value {}",
        i.booking_count,
        amount(i.total_booking_value.as_ref()),
    );
    println!(
        "Subtotal {}   tax {} ({})   TOTAL {}   paid {}   BALANCE {}",
        amount(i.subtotal.as_ref()),
        amount(i.tax.as_ref()),
        i.tax_rate,
        amount(i.total.as_ref()),
        amount(i.amount_paid.as_ref()),
        amount(i.balance.as_ref())
    );
    println!("{}", i.payment_instructions);
    for h in &i.history {
        println!(
            "  {}  {} -> {}  {}",
            utc_minute(h.changed_at.as_ref()),
            h.from_status,
            h.to_status,
            h.reason
        );
    }
}
