//! billingctl: the operator's tool. Talks gRPC to the ledger, invoicing and notifier services.
//!
//! # Layout
//!
//! - `main.rs`: the command line, and the dispatch of a command to its noun's module.
//! - [`clients`]: the services' addresses, the token and who is acting (`--as`) (global flags), a
//!   gRPC client for each, and the calls several commands make.
//! - [`output`]: JSON (pretty, or compact on one line; the one rule of its shapes is in its
//!   docs), fixed-width tables, money and time formats, and every write to stdout.
//! - [`exit`]: a command's [`Outcome`], and the one table from outcomes and errors (gRPC codes,
//!   bad input) to exit statuses, with the error and a hint on stderr; the end of a run whose
//!   stdout failed (its reader gone: `| head`).
//! - [`progress`]: a progress line on stderr for long runs, when stderr is a terminal.
//! - [`cmd`]: one module a noun, with its subcommands and its `run`:
//!   - [`cmd::bookings`]: booking records, one booking's history, the hash-chain check;
//!   - [`cmd::clients`]: a client's personal details, their erasure, the re-wrap of their keys;
//!   - [`cmd::invoices`]: the monthly close, invoices' lifecycle, their PDFs and emails;
//!   - [`cmd::dlq`]: dead letters and their replay;
//!   - [`cmd::tenants`]: tenants' billing profiles;
//!   - [`cmd::events`]: the audit log of webhooks;
//!   - [`cmd::export`]: a tenant's month of bookings or invoices as CSV or JSON;
//!   - [`cmd::reconcile`]: SimplyBook against the ledger, a bank statement against invoices;
//!   - [`cmd::simplybook`]: the go-live check of a tenant's SimplyBook account.
//!
//! Dependencies point one way: `main` → `cmd::*` → `clients`, `output`, `exit`, `progress`. The
//! command modules never use each other, and of the four below them only `output` uses another
//! (`exit`, to end the run when stdout fails).
#![forbid(unsafe_code)]

mod clients;
mod cmd;
mod exit;
mod output;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::clients::Conn;
use crate::cmd::{bookings, dlq, events, export, invoices, reconcile, report, simplybook, tenants};
use crate::exit::Outcome;

#[derive(Parser)]
#[command(
    name = "billingctl",
    version,
    about = "Operate the billing tracker over gRPC",
    after_help = exit::SUMMARY
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

#[derive(Subcommand)]
enum Command {
    /// Booking records in the ledger.
    #[command(subcommand)]
    Bookings(bookings::BookingsCmd),
    /// Clients' personal details kept by the ledger: show, erase, re-wrap their keys.
    #[command(subcommand)]
    Clients(cmd::clients::ClientsCmd),
    /// Monthly invoices.
    #[command(subcommand)]
    Invoices(invoices::InvoicesCmd),
    /// Events a service gave up on (the shared dead-letter stream).
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// Tenants' billing profiles (kept by invoicing).
    #[command(subcommand)]
    Tenants(tenants::TenantsCmd),
    /// The audit log: webhooks received and what became of them.
    #[command(subcommand)]
    Events(events::EventsCmd),
    /// A tenant's bookings or invoices for a month, as CSV or JSON.
    Export {
        #[command(subcommand)]
        what: export::ExportWhat,
    },
    /// Compare SimplyBook with the ledger, or a bank statement with the invoices.
    #[command(subcommand)]
    Reconcile(reconcile::ReconcileCmd),
    /// A tenant's month statement (SimplyBook = ledger = invoice = deposits = payments), and
    /// explaining its differences.
    #[command(subcommand)]
    Report(report::ReportCmd),
    /// A tenant's SimplyBook account: the go-live check.
    #[command(subcommand)]
    Simplybook(simplybook::SimplybookCmd),
}

#[tokio::main]
async fn main() -> ExitCode {
    // A bad argument exits 64 (EX_USAGE) with clap's message; --help and --version exit 0.
    let Cli {
        conn,
        json,
        command,
    } = billing_runtime::config::parse_or_exit();
    let result = run(&conn, json, command).await;
    exit::finish(result, &conn.urls())
}

/// Each command's module makes the clients it needs from `conn` (they connect on first use).
async fn run(conn: &Conn, json: bool, command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Bookings(cmd) => bookings::run(conn, json, cmd).await,
        // `cmd::clients`: `clients` alone is the services' clients.
        Command::Clients(cmd) => crate::cmd::clients::run(conn, json, cmd).await,
        Command::Invoices(cmd) => invoices::run(conn, json, cmd).await,
        Command::Dlq(cmd) => dlq::run(conn, json, cmd).await,
        Command::Tenants(cmd) => tenants::run(conn, json, cmd).await,
        Command::Events(cmd) => events::run(conn, json, cmd).await,
        // CSV or JSON by --format; --json does not apply.
        Command::Export { what } => export::run(conn, what).await,
        Command::Reconcile(cmd) => reconcile::run(conn, json, cmd).await,
        Command::Report(cmd) => report::run(conn, json, cmd).await,
        Command::Simplybook(cmd) => simplybook::run(conn, json, cmd).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_never_shows_the_token_or_an_address_from_the_environment() {
        assert_eq!(
            billing_runtime::config::env_values_shown_in_help(&Cli::command()),
            Vec::<String>::new()
        );
    }
}
