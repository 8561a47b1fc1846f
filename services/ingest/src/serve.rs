//! ingest's HTTP server: the one listener the internet reaches, so it defends itself before a
//! request reaches a handler. A client has `header_read_timeout` to send its request line and
//! headers (hyper closes the connection otherwise; the same clock closes a keep-alive connection
//! left idle), headers above `max_header_bytes` get 431 before any body is read, and at most
//! `max_connections` connections are served at once: the rest wait in the kernel's accept
//! queue until one closes.
//!
//! HTTP/1.1 only: webhook senders and load balancers speak it, and it is the protocol whose
//! header timeout hyper enforces. (The other services keep `billing_runtime::server`, which also
//! speaks HTTP/2 for gRPC.)

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use billing_runtime::{Probes, Shutdown};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// What one listener allows each client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` is cancelled: then stops accepting, lets every
/// request in flight finish, closes idle connections and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let app = app.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") });
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Each connection holds a receiver; `closed()` resolves once the last one is dropped.
    let (all_closed, open) = watch::channel(());
    let mut saturated = false;
    loop {
        let full = permits.available_permits() == 0;
        if full {
            metrics::counter!("ingest_connection_limit_reached_total").increment(1);
            if !saturated {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached; new connections wait"
                );
            }
        }
        saturated = full;
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
        };
        let (app, shutdown, open) = (app.clone(), shutdown.clone(), open.clone());
        tokio::spawn(async move {
            metrics::gauge!("ingest_connections_open").increment(1.0);
            connection(stream, app, limits, shutdown).await;
            metrics::gauge!("ingest_connections_open").decrement(1.0);
            drop((permit, open));
        });
    }
    // No new connections from here on; wait for the ones in flight.
    drop(listener);
    drop(open);
    all_closed.closed().await;
    Ok(())
}

/// Serves one connection; on shutdown, finishes the request in flight and closes.
async fn connection(stream: TcpStream, app: Router, limits: Limits, shutdown: Shutdown) {
    let _ = stream.set_nodelay(true);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        // A connection closed for taking too long over its headers or sending too many is
        // counted; a client going away is not news.
        let reason = if err.is_timeout() {
            "header_timeout"
        } else if err.is_parse_too_large() {
            "header_too_large"
        } else {
            tracing::debug!(error = %err, "connection ended with an error");
            return;
        };
        metrics::counter!("ingest_connections_refused_total", "reason" => reason).increment(1);
        // Not a warning: a flood of them would be a flood of log lines.
        tracing::debug!(reason, "connection closed");
    }
}

/// Accepting fails for reasons of one connection (it was reset before we took it: go on) or of
/// the process (out of file descriptors: wait a little rather than spin).
async fn accept_error(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `/healthz` and `/readyz` as `billing_runtime::ops` serves them, without `/metrics`: for the
/// public port when metrics have a listener of their own.
pub fn probes(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(probes)
}

async fn ready(State(probes): State<Probes>) -> (StatusCode, String) {
    match probes.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(dep) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {dep} unavailable\n"),
        ),
    }
}
