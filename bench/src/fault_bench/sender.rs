//! The sender: every delivery of the workload, round-robin over the ingest replicas, each
//! retried on the other replica until ingest accepts it (as SimplyBook retries a webhook).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::workload::{Workload, tenant_id};

/// What the sender did.
#[derive(Default)]
pub struct Sent {
    /// Deliveries ingest accepted (2xx), retries of one delivery counted once.
    pub accepted: AtomicU64,
    /// Requests refused or failed and sent again (to the other replica).
    pub retried: AtomicU64,
    /// Deliveries that could not be made within the time limit.
    pub given_up: AtomicU64,
    /// Deliveries finished, for the fault's trigger.
    pub done: AtomicUsize,
}

/// Sends every delivery, round-robin over `ingests`, each until ingest accepts it (as SimplyBook
/// retries a webhook).
pub async fn send_all(
    work: Arc<Workload>,
    ingests: Arc<Vec<SocketAddr>>,
    concurrency: usize,
    sent: Arc<Sent>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (work, ingests, sent, next, client) = (
            work.clone(),
            ingests.clone(),
            sent.clone(),
            next.clone(),
            client.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&event) = work.deliveries.get(i) else {
                    return;
                };
                let e = &work.events[event];
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut attempt = 0usize;
                loop {
                    let addr = ingests[(i + attempt) % ingests.len()];
                    let response = client
                        .post(format!(
                            "http://{addr}/api/v1/webhooks/simplybook/{}",
                            tenant_id(e.tenant)
                        ))
                        .header("content-type", "application/json")
                        .header("webhook-id", &e.webhook_id)
                        .header("webhook-timestamp", e.timestamp.to_string())
                        .header("webhook-signature", &e.signature)
                        .body(e.body.clone())
                        .send()
                        .await;
                    if response.is_ok_and(|r| r.status().is_success()) {
                        sent.accepted.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    if Instant::now() > deadline {
                        sent.given_up.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    sent.retried.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                    let pause = 20 * u64::try_from(attempt.min(10)).unwrap_or(10);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                sent.done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    Ok(())
}
