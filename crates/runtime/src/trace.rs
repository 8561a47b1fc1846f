//! Distributed tracing across the services: W3C trace context (`traceparent`) travels in NATS
//! message headers and gRPC metadata, so one webhook's path through ingest, the ledger and the
//! services after it is one trace. Spans reach a collector over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see [`crate::telemetry::init`]).

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

/// A gRPC client channel that sends the caller's trace context with every request.
pub type TracedChannel = InterceptedService<Channel, Propagate>;

pub fn traced(channel: Channel) -> TracedChannel {
    InterceptedService::new(channel, Propagate)
}

/// Injects the current span's trace context into a request's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Propagate;

impl Interceptor for Propagate {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
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

/// axum middleware: each request runs in a span, joined to the caller's trace when it sent a
/// `traceparent`. gRPC calls are named by their method path; HTTP requests by their route
/// template (`/api/v1/webhooks/simplybook/{tenant}/callback/{token}`), never the raw path, which
/// can hold a secret token. Durations are recorded as `grpc_server_seconds{rpc}` and
/// `http_server_seconds{route, status}`.
pub async fn request_span(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let name = if grpc {
        request.uri().path().to_string()
    } else {
        request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "unmatched".into())
    };
    let span = if grpc {
        tracing::info_span!("grpc", rpc = %name, otel.kind = "server")
    } else {
        tracing::info_span!("http", method = %request.method(), route = %name, otel.kind = "server")
    };
    let cx = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HttpHeaders(request.headers()))
    });
    let _ = span.set_parent(cx);
    let response = next.run(request).instrument(span).await;
    let seconds = started.elapsed().as_secs_f64();
    if grpc {
        metrics::histogram!("grpc_server_seconds", "rpc" => name).record(seconds);
    } else {
        let status = response.status().as_u16().to_string();
        metrics::histogram!("http_server_seconds", "route" => name, "status" => status)
            .record(seconds);
    }
    response
}
