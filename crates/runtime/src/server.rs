//! One listener per service: gRPC (with `grpc.health.v1` and server reflection) and plain HTTP
//! (ops endpoints, webhooks) on the same port. axum's server speaks both HTTP/1.1 and
//! prior-knowledge HTTP/2, which is what gRPC clients use.

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

/// Adds the standard health service (reporting each of `services` as serving) and server
/// reflection over every proto of this workspace to `routes`.
pub async fn grpc_router(routes: Routes, services: &[&str]) -> Result<Router, ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in services {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(billing_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    Ok(routes
        .add_service(health)
        .add_service(reflection)
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
    // The gRPC router answers unknown paths with gRPC "unimplemented"; plain HTTP gets a 404.
    let app = app.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
