//! The sender: every delivery of the workload, round-robin over the ingest replicas, each
//! retried on the other replica until ingest accepts it (as SimplyBook retries a webhook).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Every request, and how each was answered.
    pub requests: Answers,
    /// Set while the fault lasts (from striking until the part is back and current): the
    /// requests made meanwhile are counted again here.
    pub in_window: AtomicBool,
    pub window: Answers,
}

/// How requests were answered.
#[derive(Default)]
pub struct Answers {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub unavailable: AtomicU64,
    /// Another status than 2xx or 503.
    pub other: AtomicU64,
    /// No answer: refused connection, reset, or the sender's 10 s timeout.
    pub failed: AtomicU64,
}

impl Answers {
    fn count(&self, answer: &Result<reqwest::Response, reqwest::Error>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let counter = match answer {
            Ok(r) if r.status().is_success() => &self.ok,
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => &self.unavailable,
            Ok(_) => &self.other,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> AnswerCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AnswerCounts {
            sent: get(&self.sent),
            ok: get(&self.ok),
            unavailable: get(&self.unavailable),
            other: get(&self.other),
            failed: get(&self.failed),
        }
    }
}

/// A snapshot of [`Answers`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerCounts {
    pub sent: u64,
    pub ok: u64,
    pub unavailable: u64,
    pub other: u64,
    pub failed: u64,
}

impl AnswerCounts {
    /// The share of requests answered 2xx, in percent (100 when none was made).
    pub fn ok_percent(&self) -> f64 {
        if self.sent == 0 {
            100.0
        } else {
            self.ok as f64 * 100.0 / self.sent as f64
        }
    }
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
                    let made_in_window = sent.in_window.load(Ordering::Relaxed);
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
                    // In the window if it was made or answered while the fault lasted.
                    sent.requests.count(&response);
                    if made_in_window || sent.in_window.load(Ordering::Relaxed) {
                        sent.window.count(&response);
                    }
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
