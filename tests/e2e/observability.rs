//! What operators watch. Metrics: the series the dashboards and alert rules read exist and move
//! (`deploy/prometheus`). Traces: one trace across services: W3C trace context travels from ingest's webhook request through
//! NATS headers into the ledger's handling of that event; from one service's gRPC call into the
//! service it calls; and through an outbox, from the monthly close to the notifier that emails
//! the invoice. Spans are collected in memory (nextest runs each test in its own
//! process, so this test owns the global subscriber).

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

use crate::harness::{CLAIRE_SECRET, System, eventually};

fn attribute(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_follow_webhooks_grpc_calls_and_outbox_events_across_services() -> anyhow::Result<()>
{
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")));
    billing_runtime::trace::set_recording(true);
    tracing::subscriber::set_global_default(subscriber).map_err(|e| {
        anyhow::anyhow!("{e}: this test needs its own process (run it with cargo nextest)")
    })?;

    let system = System::start().await?;
    let result = traced(&system, &provider, &exporter).await;
    system.finish(result).await
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

/// One service's `/metrics` page.
async fn metrics(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_alerting_metrics_are_exported() -> anyhow::Result<()> {
    let system = System::start().await?;
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
    let page = metrics(system.ingest).await?;
    assert!(page.contains(&format!("{failed} 3")), "{page}");
    // Series the alerts read exist before anything happens to them.
    assert!(page.contains(&format!("{accepted} 0")), "{page}");
    assert!(
        page.contains(r#"ingest_webhooks_failed_total{source="stripe"} 0"#),
        "{page}"
    );
    let genuine = system
        .post_signed("claire", "genuine-1", body, CLAIRE_SECRET)
        .await?;
    assert_eq!(genuine.status(), 202);
    let page = metrics(system.ingest).await?;
    assert!(page.contains(&format!("{accepted} 1")), "{page}");
    assert!(page.contains(&format!("{failed} 3")), "{page}");
    assert!(page.contains("http_server_seconds_count{route=\"/api/v1/webhooks/simplybook/{tenant}\",status=\"202\"}"), "{page}");

    // Consumer lag, per durable; invoice gauges; gRPC latencies.
    let ledger = eventually(Duration::from_secs(20), || async {
        let page = metrics(system.ledger).await?;
        Ok(page.contains("consumer=\"ledger\"").then_some(page))
    })
    .await?;
    assert!(
        ledger.contains("nats_consumer_pending_messages{stream="),
        "{ledger}"
    );
    system
        .invoicing_client()?
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: "2026-10".into(),
            tenant_id: "claire".into(),
            dry_run: true,
        })
        .await?;
    let invoicing = eventually(Duration::from_secs(20), || async {
        let page = metrics(system.invoicing).await?;
        Ok(page
            .contains("invoicing_unpaid_past_due_48h_invoices 0")
            .then_some(page))
    })
    .await?;
    assert!(
        invoicing.contains("invoicing_open_invoices{status=\"overdue\"} 0"),
        "{invoicing}"
    );
    assert!(
        invoicing.contains("grpc_server_seconds_count{rpc=\"/billing.invoicing.v1.InvoicingService/GenerateMonthlyInvoices\"} 1"),
        "{invoicing}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spans_are_exported_over_otlp_when_an_endpoint_is_configured() -> anyhow::Result<()> {
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

    let system = System::start().await?;
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
