//! Traces: one trace across services. W3C trace context travels from ingest's webhook request
//! through NATS headers into the ledger's handling of that event; from one service's gRPC call
//! into the service it calls; and through an outbox, from the monthly close to the notifier that
//! emails the invoice. Spans are collected in memory by a subscriber of the test's own: the
//! default on every thread of its runtime, where its services run (under `cargo test` other tests
//! run in the same process, on threads of their own). With an OTLP endpoint configured, spans are
//! exported to it.

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
    if let Some(outcome) = in_own_process(
        "observability::traces::spans_are_exported_over_otlp_when_an_endpoint_is_configured",
    ) {
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
