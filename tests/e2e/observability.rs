//! What operators watch. Metrics: the series the dashboards and alert rules read exist and move
//! (`deploy/prometheus`), and every metric on every service's `/metrics` has HELP text and
//! passes `promtool check metrics`. Traces: one trace across services: W3C trace context travels from ingest's webhook request through
//! NATS headers into the ledger's handling of that event; from one service's gRPC call into the
//! service it calls; and through an outbox, from the monthly close to the notifier that emails
//! the invoice. Spans are collected in memory by a subscriber of the test's own: the default on
//! every thread of its runtime, where its services run (under `cargo test` other tests run in
//! the same process, on threads of their own).

use std::time::Duration;

use billing_proto::invoicing::GenerateMonthlyInvoicesRequest;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

use crate::harness::{CLAIRE_SECRET, System, eventually, in_own_process};

fn attribute(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
        .unwrap_or_default()
}

thread_local! {
    /// This thread's default subscriber while it is one of a test runtime's threads.
    static SUBSCRIBER: std::cell::RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { std::cell::RefCell::new(None) };
}

/// A multi-threaded runtime, like `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]`,
/// on whose every thread (workers and blocking pool) `dispatch` is the default subscriber.
fn runtime_traced_by(dispatch: &tracing::Dispatch) -> std::io::Result<tokio::runtime::Runtime> {
    let dispatch = dispatch.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .on_thread_start(move || {
            let guard = tracing::dispatcher::set_default(&dispatch);
            SUBSCRIBER.with(|s| *s.borrow_mut() = Some(guard));
        })
        .on_thread_stop(|| drop(SUBSCRIBER.with(|s| s.borrow_mut().take())))
        .build()
}

#[test]
fn traces_follow_webhooks_grpc_calls_and_outbox_events_across_services() -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")));
    let dispatch = tracing::Dispatch::new(subscriber);
    // With one subscriber in the process, tracing-core registers a callsite with the subscriber
    // of whichever thread reaches it first (none, on another test's thread) and keeps that
    // answer for good (tokio-rs/tracing#3611); with two it asks each of them.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    billing_runtime::trace::set_recording(true);
    let runtime = runtime_traced_by(&dispatch)?;
    tracing::dispatcher::with_default(&dispatch, || {
        runtime.block_on(async {
            let system = System::start().await?;
            let result = traced(&system, &provider, &exporter).await;
            system.finish(result).await
        })
    })
}

async fn traced(
    system: &System,
    provider: &SdkTracerProvider,
    exporter: &InMemorySpanExporter,
) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "booking_id": "7101", "booking_hash": "hash-7101", "status": "confirmed",
        "price": "100.00", "currency": "AUD", "datetime": "2026-10-05 10:00:00",
        "service": {"id": "7", "name": "Remedial massage 60 min", "duration": 60},
        "client": {"name": "Test Client", "email": "client@example.test"},
    })
    .to_string();
    let response = system
        .post_signed("claire", "trace-1", &body, CLAIRE_SECRET)
        .await?;
    assert_eq!(response.status(), 202);

    // The webhook request in ingest, and the ledger's decoding and committing of its event.
    let spans = eventually(Duration::from_secs(30), || async {
        provider.force_flush()?;
        let spans = exporter.get_finished_spans()?;
        let committed = spans.iter().any(|s| s.name == "ledger.committed");
        Ok(committed.then_some(spans))
    })
    .await?;
    let webhook = spans
        .iter()
        .find(|s| s.name == "http" && attribute(s, "route").ends_with("/simplybook/{tenant}"))
        .ok_or_else(|| anyhow::anyhow!("no ingest request span in {:?}", names(&spans)))?;
    let trace_id = webhook.span_context.trace_id();
    assert_ne!(trace_id, TraceId::INVALID);
    // Spans name routes, never raw paths (a callback path holds a secret token).
    let raw_path = spans.iter().find(|s| {
        s.attributes
            .iter()
            .any(|kv| kv.value.to_string().contains("/simplybook/claire"))
    });
    assert!(
        raw_path.is_none(),
        "a span carries the raw path: {raw_path:?}"
    );
    for name in ["ledger.decode", "ledger.committed"] {
        let span = spans
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow::anyhow!("no {name} span"))?;
        assert_eq!(
            span.span_context.trace_id(),
            trace_id,
            "{name} joins the webhook's trace"
        );
        assert_eq!(
            span.parent_span_id,
            webhook.span_context.span_id(),
            "{name} is a child of the request that published its event"
        );
    }

    // A monthly close over gRPC: invoicing's call to the ledger carries the trace along.
    system
        .invoicing_client()?
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: "2026-10".into(),
            tenant_id: "claire".into(),
            dry_run: false,
        })
        .await?;
    provider.force_flush()?;
    let spans = exporter.get_finished_spans()?;
    let rpc = |path: &str| {
        spans
            .iter()
            .find(|s| s.name == "grpc" && attribute(s, "rpc").ends_with(path))
            .ok_or_else(|| anyhow::anyhow!("no {path} span in {:?}", names(&spans)))
    };
    let close = rpc("/GenerateMonthlyInvoices")?;
    let summarize = rpc("/SummarizePeriod")?;
    assert_eq!(
        summarize.span_context.trace_id(),
        close.span_context.trace_id(),
        "the ledger's SummarizePeriod runs in the close's trace"
    );
    assert_ne!(summarize.parent_span_id, SpanId::INVALID);

    // The issued invoice's event leaves through invoicing's outbox with the close's trace
    // context: the notifier handles it, and fetches the invoice over gRPC, in that trace.
    let trace_id = close.span_context.trace_id();
    system.mail.wait_for(1, Duration::from_secs(30)).await;
    let spans = eventually(Duration::from_secs(10), || async {
        provider.force_flush()?;
        let spans = exporter.get_finished_spans()?;
        let done = spans.iter().any(|s| s.name == "notifier.invoice_event");
        Ok(done.then_some(spans))
    })
    .await?;
    let notified = spans
        .iter()
        .find(|s| {
            s.name == "notifier.invoice_event" && attribute(s, "subject").ends_with(".issued")
        })
        .ok_or_else(|| anyhow::anyhow!("no notifier span in {:?}", names(&spans)))?;
    assert_eq!(
        notified.span_context.trace_id(),
        trace_id,
        "the notifier joins the close's trace"
    );
    let fetched = spans
        .iter()
        .filter(|s| s.name == "grpc" && attribute(s, "rpc").ends_with("/GetInvoice"))
        .any(|s| s.span_context.trace_id() == trace_id);
    assert!(
        fetched,
        "the notifier's GetInvoice call is in the same trace"
    );
    Ok(())
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

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

/// A local OTLP/gRPC receiver that keeps every span export request it gets.
#[derive(Clone, Default)]
struct Receiver {
    requests: std::sync::Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[test]
fn spans_are_exported_over_otlp_when_an_endpoint_is_configured() -> anyhow::Result<()> {
    // It installs the process's global subscriber, as a service's main does: in a process
    // shared with other tests, their services' logs would all go to stdout from then on.
    if let Some(outcome) =
        in_own_process("observability::spans_are_exported_over_otlp_when_an_endpoint_is_configured")
    {
        return outcome;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?
        .block_on(exported_over_otlp())
}

async fn exported_over_otlp() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let receiver = Receiver::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    // What every service's main does with OTEL_EXPORTER_OTLP_ENDPOINT set.
    let telemetry = billing_runtime::telemetry::init_with("ingest", Some(endpoint));

    let system = System::builder().ingest().ledger().start().await?;
    let response = system
        .post_signed(
            "claire",
            "otlp-1",
            r#"{"booking_id":"9901","booking_hash":"h","status":"confirmed","price":"80.00","datetime":"2026-10-05 10:00:00","service":{"name":"Massage"}}"#,
            CLAIRE_SECRET,
        )
        .await?;
    assert_eq!(response.status(), 202);
    let db = system.db("ledger").await?;
    eventually(Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&db)
            .await?;
        Ok((n == 1).then_some(()))
    })
    .await?;
    let result = system.finish(Ok(())).await;
    // Shutting the exporter down flushes the batch (blocking: off the async workers).
    tokio::task::spawn_blocking(move || drop(telemetry)).await?;
    server.abort();
    result?;

    let requests = receiver
        .requests
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    let spans: Vec<_> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for expected in ["http", "ledger.decode", "ledger.committed"] {
        assert!(
            names.contains(&expected),
            "{expected} not exported: {names:?}"
        );
    }
    let service_names: Vec<String> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .filter_map(|rs| rs.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .filter(|kv| kv.key == "service.name")
        .map(|kv| format!("{:?}", kv.value))
        .collect();
    assert!(
        service_names.iter().all(|v| v.contains("ingest")),
        "{service_names:?}"
    );
    Ok(())
}
