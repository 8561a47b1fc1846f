//! Logging and traces. Logs are JSON lines on stdout by default (`LOG_FORMAT=text` for humans,
//! coloured only on a terminal and without `NO_COLOR`), filtered by `RUST_LOG`. Spans are
//! exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (e.g.
//! `http://otel-collector:4317`); without it no spans are made (they cost CPU on every request),
//! so a trace only continues through services that export too.

use std::ffi::OsStr;
use std::io::IsTerminal as _;

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
        let colour = colour(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .with_ansi(colour)
            .with_filter(logs)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .with_ansi(false)
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

/// Whether text logs are coloured: only when they go to a terminal (written to a file or a pipe,
/// escape codes would only garble them), and never with `NO_COLOR` set to anything but the
/// empty string (<https://no-color.org>).
fn colour(to_terminal: bool, no_color: Option<&OsStr>) -> bool {
    to_terminal && no_color.is_none_or(OsStr::is_empty)
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

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colour;

    #[test]
    fn text_logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        // NO_COLOR set to anything, even "0", turns colour off; set but empty, it does not.
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(true, Some(OsStr::new("0"))));
        assert!(colour(true, Some(OsStr::new(""))));
        // A file or a pipe never gets escape codes.
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
        assert!(!colour(false, Some(OsStr::new("1"))));
    }
}
