//! How a run ends when something is not there: an unknown invoice's emails (the not-found
//! status, as its `show`), and a reader that stops reading (`| head`: quietly, status 0).

use std::process::Stdio;

use crate::harness::{ADMIN_TOKEN, System};

/// An invoice id no service knows.
const UNKNOWN_INVOICE: &str = "0195f000-0000-7000-8000-00000000dead";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_invoice_s_emails_exit_with_the_not_found_status_as_its_show_does()
-> anyhow::Result<()> {
    let system = System::builder().invoicing().notifier().start().await?;
    let result = unknown_invoice(&system).await;
    system.finish(result).await
}

async fn unknown_invoice(system: &System) -> anyhow::Result<()> {
    let shown = system
        .billingctl(&["invoices", "show", UNKNOWN_INVOICE])
        .await?;
    assert_eq!(shown.status.code(), Some(1), "NotFound: {shown:?}");
    for args in [
        &["invoices", "emails", UNKNOWN_INVOICE][..],
        &["invoices", "emails", UNKNOWN_INVOICE, "--json"],
    ] {
        let emails = system.billingctl(args).await?;
        assert_eq!(emails.status.code(), shown.status.code(), "{emails:?}");
        assert!(emails.stdout.is_empty(), "no (empty) list: {emails:?}");
        let stderr = String::from_utf8_lossy(&emails.stderr);
        assert!(
            stderr.contains(UNKNOWN_INVOICE) && stderr.contains("(NotFound)"),
            "{stderr}"
        );
    }
    Ok(())
}

/// billingctl with its stdout a pipe nobody reads any more (`billingctl … | head -1`, the rest
/// of the output), and its stderr captured.
async fn with_stdout_closed(
    system: &System,
    args: &[&str],
) -> anyhow::Result<std::process::Output> {
    let mut child = system
        .billingctl_command(ADMIN_TOKEN, args)?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The pipe's only reader closes it before billingctl has written a byte (it calls a service
    // first), so its first write fails with EPIPE, however short the output.
    drop(child.stdout.take());
    Ok(child.wait_with_output().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_that_stops_reading_ends_billingctl_quietly_with_status_0() -> anyhow::Result<()> {
    let system = System::builder().invoicing().start().await?;
    let result = closed_stdout(&system).await;
    system.finish(result).await
}

async fn closed_stdout(system: &System) -> anyhow::Result<()> {
    for args in [
        // Printed line by line: a table, JSON.
        &["tenants", "list"][..],
        &["tenants", "list", "--json"],
        // Streamed through a buffered writer: an export.
        &[
            "export", "invoices", "--tenant", "claire", "--period", "2026-10", "--format", "json",
        ],
    ] {
        let out = with_stdout_closed(system, args).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Not 101 with "failed printing to stdout" (a panic), nor 1 with "Broken pipe".
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: nothing on stderr");
    }
    Ok(())
}
