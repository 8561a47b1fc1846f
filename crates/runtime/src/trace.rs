//! Distributed tracing across the services: W3C trace context (`traceparent`) travels in NATS
//! message headers and gRPC metadata, so one webhook's path through ingest, the ledger and the
//! services after it is one trace. Spans reach a collector over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see [`crate::telemetry::init`]).

use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::HeaderMap;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, Injector};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static RECORDING: AtomicBool = AtomicBool::new(false);

/// Turns span making on: [`crate::telemetry::init`] does when it exports traces, and a process
/// that installs its own OpenTelemetry layer (a test) calls it. Off, [`span`] makes none, and
/// requests and events cost no tracing work (ingest measured ~20 µs of CPU per request).
pub fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

/// `make()`'s span when traces are recorded, a disabled one otherwise.
pub fn span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if RECORDING.load(Ordering::Relaxed) {
        make()
    } else {
        tracing::Span::none()
    }
}

/// The W3C header (and NATS header) that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The current span's `traceparent`, to store next to an outbox row so the event it becomes
/// continues this trace. `None` when no trace is being recorded.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut fields = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut fields));
    fields.remove(TRACEPARENT)
}

/// Writes the current span's trace context into NATS message headers.
pub fn inject_nats(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut NatsHeaders(headers));
    });
}

/// Makes `span` a child of the trace a NATS message carries (if it carries one).
pub fn follow_nats(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let Some(headers) = headers else { return };
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&NatsHeadersRef(headers)));
    // Fails only when no OpenTelemetry layer is installed: then there is nothing to join.
    let _ = span.set_parent(cx);
}

struct NatsHeaders<'a>(&'a mut HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsHeadersRef<'a>(&'a HeaderMap);

impl Extractor for NatsHeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// A gRPC client channel that sends the caller's credentials and trace context with every
/// request.
pub type TracedChannel = InterceptedService<Channel, Propagate>;

/// `channel` with `token` (see [`crate::auth`]) and the current trace on every request.
pub fn traced(
    channel: Channel,
    token: &billing_domain::Secret<String>,
) -> Result<TracedChannel, crate::auth::TokensError> {
    let bearer = crate::auth::bearer(token)?;
    Ok(InterceptedService::new(channel, Propagate { bearer }))
}

/// Adds the bearer token and the current span's trace context to a request's metadata.
#[derive(Clone)]
pub struct Propagate {
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl std::fmt::Debug for Propagate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Propagate")
    }
}

impl Interceptor for Propagate {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut Metadata(request.metadata_mut()));
        });
        Ok(request)
    }
}

struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HttpHeaders<'a>(&'a axum::http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// axum middleware for a gRPC server: each call runs in a span named by its method
/// (`/billing.ledger.v1.LedgerService/GetBookings`), joined to the caller's trace, and its
/// duration is recorded as `grpc_server_seconds{rpc}`. Paths that are not a method of one of our
/// services (or health and reflection) are named `unknown`, so a caller cannot invent labels.
pub async fn grpc_span(request: Request, next: Next) -> Response {
    let rpc = grpc_method(request.uri().path());
    let span = span(|| tracing::info_span!("grpc", rpc = %rpc, otel.kind = "server"));
    let started = std::time::Instant::now();
    let response = joined(span, request, next).await;
    metrics::histogram!("grpc_server_seconds", "rpc" => rpc)
        .record(started.elapsed().as_secs_f64());
    response
}

/// axum middleware for HTTP routes: each request runs in a span named by its route template
/// (`/api/v1/webhooks/simplybook/{tenant}/callback/{token}`), never the raw path, which can hold
/// a secret token; its duration is recorded as `http_server_seconds{route, status}`.
pub async fn http_span(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = span(
        || tracing::info_span!("http", method = %request.method(), route = %route, otel.kind = "server"),
    );
    let started = std::time::Instant::now();
    let response = joined(span, request, next).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_server_seconds", "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Runs the request in `span`, made a child of the trace the caller sent (if any).
async fn joined(span: tracing::Span, request: Request, next: Next) -> Response {
    let cx = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HttpHeaders(request.headers()))
    });
    let _ = span.set_parent(cx);
    next.run(request).instrument(span).await
}

/// `/package.Service/Method` for our own services and the standard health and reflection ones.
fn grpc_method(path: &str) -> String {
    let known = path.starts_with("/billing.") || path.starts_with("/grpc.");
    let shape = path.split('/').count() == 3
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_'));
    if known && shape && path.len() <= 120 {
        path.to_string()
    } else {
        "unknown".into()
    }
}

#[cfg(test)]
mod tests {
    use super::grpc_method;

    #[test]
    fn only_real_method_paths_become_labels() {
        let method = "/billing.ledger.v1.LedgerService/GetBookings";
        assert_eq!(grpc_method(method), method);
        assert_eq!(
            grpc_method("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        for junk in [
            "/api/v1/webhooks/simplybook/claire/callback/secret-token",
            "/billing.x/y/z",
            "/billing.x.Service/Method?token=1",
            "/other.Service/Method",
        ] {
            assert_eq!(grpc_method(junk), "unknown", "{junk}");
        }
    }
}
