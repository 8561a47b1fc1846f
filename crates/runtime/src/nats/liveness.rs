//! A connection to a server that went silent (a node cut off the network, a frozen process) is
//! given up as soon as a caller has reason to doubt it, rather than after the client's pings
//! (three unanswered, 15-20 s; [`super::connect_as`]). Until then nothing published through it
//! is acknowledged: every webhook ingest takes meanwhile waits out its retry budget and is
//! answered 503.
//!
//! A doubt (a publish whose ack did not come in time) makes the checker send one request the
//! server itself answers: one to `_INBOX_<name>.liveness`, a subject no one subscribes to, which
//! a live server answers at once with "no responders". No answer within the timeout and the
//! connection is dropped ([`async_nats::Client::force_reconnect`]); the client then connects to
//! whichever server of the seed list answers, and a publish awaiting its ack on the dropped
//! connection is sent again at once (see [`super::connections_lost`]). A slow stream (a leader
//! election) answers the probe and costs nothing. The identity must be allowed to publish the
//! probe's subject (`deploy/nats/nats-server.conf`); a server that refuses it never answers, and
//! every doubt then costs a reconnection.
//!
//! Not over TLS: there the connection is left to the pings. async-nats ends a connection it is
//! asked to drop by first writing TLS's `close_notify` (tokio-rustls' `poll_shutdown`), and on a
//! connection to a silent server whose socket buffer is full that write waits until the kernel
//! gives the connection up (minutes), far longer than the pings take.

use std::sync::Arc;
use std::time::Duration;

use async_nats::RequestErrorKind;
use async_nats::connection::State;
use tokio::sync::Notify;

/// The checker of one client's connection; see the module.
#[derive(Clone)]
pub struct Liveness {
    doubt: Arc<Notify>,
}

/// What one probe found, the `result` label of `nats_liveness_probes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The server answered: the connection works.
    Answered,
    /// No answer in time: the connection is dropped for a new one, unless it is gone already
    /// or runs over TLS (see the module).
    Unanswered,
}

impl Probe {
    fn as_str(self) -> &'static str {
        match self {
            Probe::Answered => "answered",
            Probe::Unanswered => "unanswered",
        }
    }
}

impl Liveness {
    /// Starts the checker of `client`, which connected as `name` (its inbox prefix is
    /// `_INBOX_<name>`), over TLS if `tls`; a probe is given up after `timeout`.
    pub fn start(client: async_nats::Client, name: &str, tls: bool, timeout: Duration) -> Self {
        let doubt = Arc::new(Notify::new());
        let subject = format!("_INBOX_{name}.liveness");
        for result in [Probe::Answered, Probe::Unanswered] {
            metrics::counter!("nats_liveness_probes_total", "result" => result.as_str())
                .increment(0);
        }
        let waiting = doubt.clone();
        tokio::spawn(async move {
            loop {
                // Doubts raised while a probe runs are answered by one more probe, not many.
                waiting.notified().await;
                // A client already reconnecting is dealing with it: a probe now would only wait
                // for the next connection, and dropping that one would start it all again.
                if client.connection_state() != State::Connected {
                    continue;
                }
                let probed = connection(&client);
                let result = probe(&client, &subject, timeout).await;
                metrics::counter!("nats_liveness_probes_total", "result" => result.as_str())
                    .increment(1);
                if result == Probe::Answered {
                    continue;
                }
                let timeout_ms = timeout.as_millis() as u64;
                if client.connection_state() != State::Connected || connection(&client) != probed {
                    tracing::info!(
                        timeout_ms,
                        "nats server did not answer a probe; the connection probed is gone already"
                    );
                } else if tls || client.server_info().tls_required {
                    tracing::warn!(
                        timeout_ms,
                        "nats server did not answer a probe; over TLS the connection is left to the pings"
                    );
                } else {
                    tracing::warn!(
                        timeout_ms,
                        "nats server did not answer a probe, dropping the connection for a new one"
                    );
                    if let Err(err) = client.force_reconnect().await {
                        tracing::error!(error = %err, "nats reconnect could not be asked for");
                    }
                }
            }
        });
        Liveness { doubt }
    }

    /// Says a reply that should have come did not: the checker probes the connection (one probe
    /// at a time, however many doubt it).
    pub fn doubt(&self) {
        self.doubt.notify_one();
    }
}

/// Which connection the client has now: the server's id and the id it gave the connection.
fn connection(client: &async_nats::Client) -> (String, u64) {
    let info = client.server_info();
    (info.server_id, info.client_id)
}

/// Sends the probe and waits for the server's answer.
async fn probe(client: &async_nats::Client, subject: &str, timeout: Duration) -> Probe {
    // The outer timeout also covers a request that cannot even be queued (a stuck connection's
    // full write buffer).
    let request = client.send_request(
        subject.to_string(),
        async_nats::Request::new().timeout(Some(timeout)),
    );
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(_)) => Probe::Answered,
        Ok(Err(err)) if err.kind() == RequestErrorKind::NoResponders => Probe::Answered,
        Ok(Err(err)) if err.kind() == RequestErrorKind::TimedOut => Probe::Unanswered,
        Ok(Err(err)) => {
            // Not sent at all (the client is closing, the subject invalid): no evidence
            // against the server.
            tracing::warn!(error = %err, "nats probe not sent");
            Probe::Answered
        }
        Err(_) => Probe::Unanswered,
    }
}
