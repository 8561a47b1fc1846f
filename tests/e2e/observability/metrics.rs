//! Metrics: the series the dashboards and alert rules read exist and move
//! (`deploy/prometheus`), and every metric on every service's `/metrics` has HELP text and
//! passes `promtool check metrics`.

use std::time::Duration;

use billing_proto::invoicing::GenerateMonthlyInvoicesRequest;

use crate::harness::{CLAIRE_SECRET, System, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_alerting_metrics_are_exported() -> anyhow::Result<()> {
    let system = System::builder().everything().alone().start().await?;
    let result = alerting_metrics(&system).await;
    system.finish(result).await
}

async fn alerting_metrics(system: &System) -> anyhow::Result<()> {
    // Three forged webhooks, then a genuine one: the counts the webhook alert reads.
    let body = r#"{"booking_id":"8101","booking_hash":"h","status":"confirmed","price":"50.00","datetime":"2026-10-05 10:00:00","service":{"name":"Massage"}}"#;
    for n in 0..3 {
        let forged = system
            .post_signed(
                "claire",
                &format!("forged-{n}"),
                body,
                "whsec_ZmFrZS13cm9uZy1zZWNyZXQ=",
            )
            .await?;
        assert_eq!(forged.status(), 401);
    }
    let failed = r#"ingest_webhooks_failed_total{source="simplybook"}"#;
    let accepted = r#"ingest_webhooks_accepted_total{source="simplybook"}"#;
    let page = system.metrics(system.ingest).await?;
    assert_eq!(page.since_start(failed), Some(3.0), "{page}");
    // Series the alerts read exist before anything happens to them.
    assert_eq!(page.since_start(accepted), Some(0.0), "{page}");
    assert_eq!(
        page.since_start(r#"ingest_webhooks_failed_total{source="stripe"}"#),
        Some(0.0),
        "{page}"
    );
    let genuine = system
        .post_signed("claire", "genuine-1", body, CLAIRE_SECRET)
        .await?;
    assert_eq!(genuine.status(), 202);
    let page = system.metrics(system.ingest).await?;
    assert_eq!(page.since_start(accepted), Some(1.0), "{page}");
    assert_eq!(page.since_start(failed), Some(3.0), "{page}");
    assert_eq!(
        page.since_start(
            r#"http_server_seconds_count{route="/api/v1/webhooks/simplybook/{tenant}",status="202"}"#
        ),
        Some(1.0),
        "{page}"
    );

    // Consumer lag, per durable (of this system's stream); invoice gauges; gRPC latencies.
    let lag = format!(
        r#"nats_consumer_pending_messages{{stream="{}",consumer="ledger"}}"#,
        system.subjects().stream_name("WEBHOOKS")
    );
    eventually(Duration::from_secs(20), || async {
        let page = system.metrics(system.ledger).await?;
        Ok(page.value(&lag).map(|_| ()))
    })
    .await?;
    system
        .invoicing_client()?
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: "2026-10".into(),
            tenant_id: "claire".into(),
            dry_run: true,
        })
        .await?;
    let invoicing = eventually(Duration::from_secs(20), || async {
        let page = system.metrics(system.invoicing).await?;
        Ok((page.value("invoicing_unpaid_past_due_48h_invoices") == Some(0.0)).then_some(page))
    })
    .await?;
    assert_eq!(
        invoicing.value(r#"invoicing_open_invoices{status="overdue"}"#),
        Some(0.0),
        "{invoicing}"
    );
    assert_eq!(
        invoicing.since_start(
            r#"grpc_server_seconds_count{rpc="/billing.invoicing.v1.InvoicingService/GenerateMonthlyInvoices"}"#
        ),
        Some(1.0),
        "{invoicing}"
    );
    Ok(())
}

/// `promtool` (`PROMTOOL`, else the one on `PATH`), which `scripts/check_deploy.sh` installs
/// from Debian's prometheus package and CI runs before the tests. Missing, the test fails
/// rather than pass without having checked anything.
fn promtool() -> anyhow::Result<std::path::PathBuf> {
    let promtool = std::env::var_os("PROMTOOL").map_or_else(|| "promtool".into(), Into::into);
    match std::process::Command::new(&promtool)
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => Ok(promtool),
        found => anyhow::bail!(
            "promtool is needed to check the services' /metrics and could not be run ({:?}: {}): \
             run scripts/check_deploy.sh (it installs Debian's prometheus package), or \
             apt-get install prometheus, or set PROMTOOL to one",
            promtool,
            found.map_or_else(|e| e.to_string(), |o| o.status.to_string())
        ),
    }
}

/// `promtool check metrics` on one page: its findings, or `None` when it has none.
async fn promtool_findings(
    promtool: std::path::PathBuf,
    page: String,
) -> anyhow::Result<Option<String>> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("promtool's stdin"))?
            .write_all(page.as_bytes())?;
        let out = child.wait_with_output()?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((!out.status.success() || !said.trim().is_empty())
            .then(|| format!("promtool check metrics: {}\n{}", out.status, said.trim())))
    })
    .await?
}

/// Every metric family on a page: its name, its type and its HELP text, if any.
fn families(page: &str) -> Vec<(String, String, Option<String>)> {
    let mut families: Vec<(String, String, Option<String>)> = Vec::new();
    let mut help = std::collections::HashMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_string(), text.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            families.push((name.to_string(), kind.to_string(), None));
        }
    }
    for family in &mut families {
        family.2 = help.get(&family.0).filter(|h| !h.is_empty()).cloned();
    }
    families
}

/// Every metric the workspace's code emits by name (what each crate's `metric_docs::check`
/// unit test compares with its descriptions).
fn emitted_in_workspace() -> anyhow::Result<std::collections::BTreeSet<String>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no workspace above tests/"))?;
    let mut names = std::collections::BTreeSet::new();
    for dir in ["crates", "services"] {
        for krate in std::fs::read_dir(root.join(dir))? {
            let src = krate?.path().join("src");
            if src.is_dir() {
                let emitted = billing_runtime::metric_docs::emitted(&src)
                    .map_err(|problems| anyhow::anyhow!("{problems}"))?;
                names.extend(emitted.into_iter().map(|e| e.name));
            }
        }
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_has_help_text_and_passes_promtool() -> anyhow::Result<()> {
    let promtool = promtool()?;
    let system = System::builder().everything().alone().start().await?;
    let result = described_metrics(&system, &promtool).await;
    system.finish(result).await
}

async fn described_metrics(system: &System, promtool: &std::path::Path) -> anyhow::Result<()> {
    // Traffic through every service: a forged webhook and a genuine one, the ledger recording
    // it, a gRPC call with a wrong token, a monthly close that issues an invoice, and the
    // notifier rendering and emailing it.
    let body = r#"{"booking_id":"8201","booking_hash":"h","status":"confirmed","price":"120.00","datetime":"2026-10-06 10:00:00","service":{"name":"Massage"}}"#;
    let forged = system
        .post_signed(
            "claire",
            "lint-forged",
            body,
            "whsec_ZmFrZS13cm9uZy1zZWNyZXQ=",
        )
        .await?;
    assert_eq!(forged.status(), 401);
    let genuine = system
        .post_signed("claire", "lint-genuine", body, CLAIRE_SECRET)
        .await?;
    assert_eq!(genuine.status(), 202);
    eventually(Duration::from_secs(20), || async {
        let page = system.metrics(system.ledger).await?;
        Ok(
            (page.since_start(r#"ledger_events_total{outcome="stored"}"#) == Some(1.0))
                .then_some(()),
        )
    })
    .await?;
    let wrong_token = billing_runtime::trace::traced(
        tonic::transport::Endpoint::from_shared(format!("http://{}", system.invoicing))?
            .connect_lazy(),
        &billing_domain::Secret::new("fake-wrong-grpc-token-not-secret-0000".to_string()),
    )?;
    let refused = billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient::new(
        wrong_token,
    )
    .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
        period: "2026-10".into(),
        tenant_id: "claire".into(),
        dry_run: true,
    })
    .await;
    assert_eq!(
        refused.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::Unauthenticated)
    );
    system
        .invoicing_client()?
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: "2026-10".into(),
            tenant_id: "claire".into(),
            dry_run: false,
        })
        .await?;
    assert_eq!(
        system.mail.wait_for(1, Duration::from_secs(30)).await.len(),
        1
    );

    let emitted = emitted_in_workspace()?;
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (service, addr) in [
        ("ingest", system.ingest),
        ("ledger", system.ledger),
        ("invoicing", system.invoicing),
        ("notifier", system.notifier),
    ] {
        // The notifier counts its email once the send returns; the page may lag the inbox.
        let page = if service == "notifier" {
            eventually(Duration::from_secs(10), || async {
                let page = system.metrics(addr).await?;
                Ok(page
                    .since_start("notifier_pdf_render_seconds_count")
                    .is_some_and(|n| n > 0.0)
                    .then_some(page))
            })
            .await?
        } else {
            system.metrics(addr).await?
        };
        let page = page.text().to_string();
        for (name, kind, help) in families(&page) {
            if help.is_none() {
                problems.push(format!("{service}: {kind} {name} has no HELP text"));
            }
            if !emitted.contains(&name) {
                problems.push(format!(
                    "{service}: {name} is on /metrics but no code under crates/ or services/ \
                     emits it by a literal name, so no unit test checks its description"
                ));
            }
            seen.insert(name);
        }
        if let Some(findings) = promtool_findings(promtool.to_path_buf(), page.clone()).await? {
            problems.push(format!("{service}: {findings}\n--- its /metrics:\n{page}"));
        }
    }
    // The traffic reached every service and every kind of metric, so promtool saw them all.
    for expected in [
        "ingest_webhooks_rejected_total",
        "http_server_seconds",
        "ledger_events_total",
        "ledger_received_to_committed_seconds",
        "nats_consumer_pending_messages",
        "grpc_auth_refusals_total",
        "grpc_server_seconds",
        "invoicing_close_seconds",
        "invoicing_invoices_issued_total",
        "outbox_published_total",
        "notifier_emails_total",
        "notifier_pdf_render_seconds",
    ] {
        if !seen.contains(expected) {
            problems.push(format!("{expected} is on no service's /metrics"));
        }
    }
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}
