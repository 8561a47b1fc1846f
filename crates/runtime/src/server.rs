//! One listener per service: gRPC (with `grpc.health.v1` and server reflection, both
//! `grpc.reflection.v1` and the older `v1alpha` that grpcio-based tools, older grpcurl and
//! several GUI clients still speak) and plain HTTP (ops endpoints, webhooks) on the same port.
//! axum's server speaks both HTTP/1.1 and prior-knowledge HTTP/2, which is what gRPC clients use.

use axum::Router;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Every proto a service's gRPC port speaks: this workspace's, health and both versions of
/// reflection. Reflection describes them, and only their methods name metrics
/// ([`crate::trace::grpc_span`]).
pub(crate) const DESCRIPTOR_SETS: [&[u8]; 4] = [
    billing_proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// A reflection builder over [`DESCRIPTOR_SETS`]; each version lists both reflection services.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    DESCRIPTOR_SETS.into_iter().fold(
        tonic_reflection::server::Builder::configure().include_reflection_service(false),
        tonic_reflection::server::Builder::register_encoded_file_descriptor_set,
    )
}

/// Adds the standard health service (reporting each of `services` as serving) and server
/// reflection (v1 and v1alpha) over every proto of this workspace to `routes`.
pub async fn grpc_router(routes: Routes, services: &[&str]) -> Result<Router, ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in services {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    Ok(routes
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .into_axum_router())
}

/// A gRPC service's whole app: its `routes` with health and reflection, each call authorised
/// by `policy` and in a span joined to the caller's trace, and the ops endpoints checking
/// `probes`.
pub async fn grpc_app(
    routes: Routes,
    services: &[&str],
    policy: crate::auth::Policy,
    probes: crate::Probes,
) -> Result<Router, ServeError> {
    Ok(grpc_router(routes, services)
        .await?
        .layer(axum::middleware::from_fn_with_state(
            policy,
            crate::auth::authorize,
        ))
        .layer(axum::middleware::from_fn(crate::trace::grpc_span))
        .merge(crate::ops::router(probes)))
}

/// Serves `app` until `shutdown` is cancelled, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    // An unknown method of one of the gRPC services gets its gRPC "unimplemented"; any other
    // unknown path a plain 404 (which gRPC clients read as "unimplemented" too).
    let app = app.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// A gRPC service as `run` ends it: its routes, the service names health reports, who may call
/// what, and what readiness checks.
pub struct GrpcService {
    pub routes: Routes,
    pub names: &'static [&'static str],
    pub policy: crate::auth::Policy,
    pub probes: crate::Probes,
}

/// The end of every gRPC service's `run`: serves `service` (with health, reflection and the
/// token policy) on `listener` until `shutdown`; then, whatever stopped the server, cancels
/// `shutdown` so consumers stop pulling and finish in flight, and waits for each of `tasks`
/// (a task that panicked is logged under its name).
pub async fn serve_until_shutdown(
    what: &'static str,
    listener: TcpListener,
    service: GrpcService,
    shutdown: Shutdown,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
) -> Result<(), ServeError> {
    let app = grpc_app(
        service.routes,
        service.names,
        service.policy,
        service.probes,
    )
    .await?;
    tracing::info!(service = what, addr = ?listener.local_addr().ok(), "listening");
    let served = serve(listener, app, shutdown.clone()).await;
    shutdown.cancel();
    for (task, handle) in tasks {
        if let Err(err) = handle.await {
            tracing::error!(service = what, task, error = %err, "task failed");
        }
    }
    served
}
