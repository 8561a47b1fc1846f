//! Logging and traces. Logs are JSON lines by default (`LOG_FORMAT=text` for humans), filtered
//! by `RUST_LOG`. Spans are exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! (e.g. `http://otel-collector:4317`); without it no spans are made (they cost CPU on every
//! request), so a trace only continues through services that export too.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flushes and stops the trace exporter when dropped: keep it alive for the life of `main`.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {err}");
        }
    }
}

/// Installs the global subscriber once; later calls (tests starting several services) change
/// nothing. Call from within the Tokio runtime (the OTLP exporter needs it).
pub fn init(service: &'static str) -> Telemetry {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok();
    init_with(service, endpoint.filter(|e| !e.is_empty()))
}

/// [`init`] with the OTLP endpoint given rather than read from the environment.
pub fn init_with(service: &'static str, otlp_endpoint: Option<String>) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exporting = otlp_endpoint.and_then(|endpoint| match otlp_provider(service, &endpoint) {
        Ok(provider) => Some(provider),
        Err(err) => {
            eprintln!("{service}: OTLP exporter for {endpoint} not started: {err}");
            None
        }
    });
    let traces = exporting.is_some();
    crate::trace::set_recording(traces);
    // Spans cost CPU on every request (a quarter of ingest's throughput, `bench/run.sh`), so
    // without an exporter none are made: configure the exporter on every service or on none.
    let provider = exporting;
    // RUST_LOG filters the logs only; spans at info and above always reach the trace layer.
    let logs = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn,h2=warn,tower=warn"));
    let text = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "text");
    let fmt = if text {
        tracing_subscriber::fmt::layer().with_filter(logs).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(logs)
            .boxed()
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_filter(LevelFilter::INFO)
    });
    let result = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    if result.is_ok() {
        tracing::info!(service, traces, "telemetry initialised");
    }
    Telemetry { provider }
}

fn otlp_provider(
    service: &'static str,
    endpoint: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    // Headers and timeout come from the standard OTEL_EXPORTER_OTLP_* variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .with_batch_exporter(exporter)
        .build())
}
