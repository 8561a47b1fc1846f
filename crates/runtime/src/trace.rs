//! Distributed tracing across the services: W3C trace context (`traceparent`) travels in NATS
//! message headers and gRPC metadata, so one webhook's path through ingest, the ledger and the
//! services after it is one trace. Spans reach a collector over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see [`crate::telemetry::init`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, PoisonError, RwLock};

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
    // Not recording, no span joins a trace (see `span`), so there is no context to pass on.
    if !RECORDING.load(Ordering::Relaxed) {
        return;
    }
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
        .map_or("unmatched", |p| interned(p.as_str()));
    let span = span(
        || tracing::info_span!("http", method = %request.method(), route = %route, otel.kind = "server"),
    );
    let started = std::time::Instant::now();
    let response = joined(span, request, next).await;
    let status = interned(response.status().as_str());
    metrics::histogram!("http_server_seconds", "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Runs the request in `span`, made a child of the trace the caller sent (if any).
async fn joined(span: tracing::Span, request: Request, next: Next) -> Response {
    if RECORDING.load(Ordering::Relaxed) {
        let cx = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HttpHeaders(request.headers()))
        });
        let _ = span.set_parent(cx);
    }
    next.run(request).instrument(span).await
}

/// `text` as a `&'static str`, copied once the first time it is seen and kept for good, so a
/// request's metric labels cost no allocation. Only for values of a small fixed set: route
/// templates (never raw paths) and status codes.
fn interned(text: &str) -> &'static str {
    static SEEN: LazyLock<RwLock<HashSet<&'static str>>> = LazyLock::new(RwLock::default);
    let known = |seen: &HashSet<&'static str>| seen.get(text).copied();
    if let Some(value) = known(&SEEN.read().unwrap_or_else(PoisonError::into_inner)) {
        return value;
    }
    let mut seen = SEEN.write().unwrap_or_else(PoisonError::into_inner);
    known(&seen).unwrap_or_else(|| {
        let value: &'static str = Box::leak(text.into());
        seen.insert(value);
        value
    })
}

/// The path itself when it is a method of a proto the server speaks (ours, health and both
/// versions of reflection, [`crate::server::DESCRIPTOR_SETS`]), `unknown` otherwise.
fn grpc_method(path: &str) -> &'static str {
    static KNOWN: LazyLock<HashSet<String>> =
        LazyLock::new(|| method_paths(&crate::server::DESCRIPTOR_SETS));
    KNOWN.get(path).map_or("unknown", String::as_str)
}

/// Every `/package.Service/Method` that encoded `FileDescriptorSet`s describe. Only the few
/// fields on the way to method names are read (set.file = 1, file.package = 2,
/// file.service = 6, service.name = 1, service.method = 2, method.name = 1), which keeps prost's
/// descriptor types out of this crate; a malformed set yields fewer names, never a panic.
fn method_paths(sets: &[&[u8]]) -> HashSet<String> {
    let text = |message: &[u8], field| {
        nested(message)
            .find(|(number, _)| *number == field)
            .and_then(|(_, bytes)| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut paths = HashSet::new();
    for file in sets.iter().flat_map(|set| nested(set)).filter(|f| f.0 == 1) {
        let package = text(file.1, 2);
        for service in nested(file.1).filter(|s| s.0 == 6) {
            let service_name = text(service.1, 1);
            let qualified = if package.is_empty() {
                service_name
            } else {
                format!("{package}.{service_name}")
            };
            for method in nested(service.1).filter(|m| m.0 == 2) {
                paths.insert(format!("/{qualified}/{}", text(method.1, 1)));
            }
        }
    }
    paths
}

/// The length-delimited fields of a protobuf message as (field number, bytes), skipping the
/// other wire types and stopping at the first malformed byte.
fn nested(mut message: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    std::iter::from_fn(move || {
        loop {
            let key = varint(&mut message)?;
            let skip = match key & 7 {
                0 => {
                    varint(&mut message)?;
                    0
                }
                1 => 8,
                5 => 4,
                2 => {
                    let len = usize::try_from(varint(&mut message)?).ok()?;
                    let (field, rest) = message.split_at_checked(len)?;
                    message = rest;
                    return Some((key >> 3, field));
                }
                _ => return None,
            };
            message = message.get(skip..)?;
        }
    })
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{grpc_method, method_paths};

    #[test]
    fn only_real_method_paths_become_labels() {
        for method in [
            "/billing.ledger.v1.LedgerService/GetBookings",
            "/billing.invoicing.v1.InvoicingService/GenerateMonthlyInvoices",
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(grpc_method(method), method);
        }
        for junk in [
            "/api/v1/webhooks/simplybook/claire/callback/secret-token",
            "/billing.x/y/z",
            "/billing.x.Service/Method?token=1",
            "/other.Service/Method",
            // Shaped like our paths, but invented: each would be a new label.
            "/grpc.invented1.Service/Method",
            "/billing.ledger.v1.LedgerService/Invented",
            "/grpc.reflection.v1alpha.ServerReflection/Other",
            "/billing.ledger.v1.LedgerService/",
            "",
        ] {
            assert_eq!(grpc_method(junk), "unknown", "{junk}");
        }
    }

    #[test]
    fn malformed_descriptor_sets_give_fewer_names_and_never_panic() {
        let real = billing_proto::FILE_DESCRIPTOR_SET;
        let all = method_paths(&[real]);
        assert!(all.len() > 10, "{all:?}");
        for cut in [0, 1, 2, 3, real.len() / 2, real.len() - 1] {
            let some = method_paths(&[&real[..cut]]);
            assert!(some.is_subset(&all), "cut at {cut}");
        }
        for junk in [&[0xff_u8; 12][..], &[0x0a, 0x7f], &[0x0b], &[0x09, 1, 2]] {
            assert!(method_paths(&[junk]).is_empty(), "{junk:?}");
        }
    }
}
