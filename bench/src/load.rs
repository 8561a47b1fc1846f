//! A small HTTP/1.1 load generator: keep-alive connections that each send one request at a time,
//! either as fast as the server answers (closed loop, for throughput) or on a fixed schedule
//! (open loop, for latency at a given rate). Open-loop latency is measured from when a request
//! was due, not when it was sent, so a server that falls behind cannot hide its queue.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::payloads::Payloads;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub connections: usize,
    pub duration: Duration,
    /// Total requests per second across all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
}

/// What one run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub elapsed: Duration,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response (connection errors).
    pub errors: u64,
    latencies_us: Vec<u32>,
    /// The second of the run each latency in `latencies_us` belongs to (when its request was
    /// due), until [`run`] turns both into `timeline`.
    seconds: Vec<u32>,
    /// When the run started, and its latency second by second.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub timeline: Vec<Second>,
}

/// One second of a run: the requests due in it and their latencies.
#[derive(Debug, Clone, Copy)]
pub struct Second {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Outcome {
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Answers that were not 202 or 200, plus connection errors.
    pub fn failures(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !matches!(s, 200 | 202))
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.errors
    }

    /// 202 answers per second.
    pub fn accepted_per_sec(&self) -> f64 {
        self.count(202) as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The `p`-th percentile latency (0 < p ≤ 100) in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[index]) / 1000.0
    }

    fn merge(&mut self, other: Outcome) {
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        self.seconds.extend(other.seconds);
    }

    /// Groups the latencies by the second their request was due in.
    fn make_timeline(&mut self) {
        let Some(last) = self.seconds.iter().max() else {
            return;
        };
        let mut by_second = vec![Vec::new(); *last as usize + 1];
        for (&second, &latency) in self.seconds.iter().zip(&self.latencies_us) {
            by_second[second as usize].push(latency);
        }
        self.seconds = Vec::new();
        self.timeline = by_second
            .into_iter()
            .map(|mut latencies| {
                latencies.sort_unstable();
                let at = |p: f64| {
                    let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
                    latencies
                        .get(rank.clamp(1, latencies.len().max(1)) - 1)
                        .map_or(f64::NAN, |&us| f64::from(us) / 1000.0)
                };
                Second {
                    count: latencies.len(),
                    p50_ms: at(50.0),
                    p99_ms: at(99.0),
                    max_ms: at(100.0),
                }
            })
            .collect();
    }

    /// The timeline as tab-separated lines: the second's wall-clock start (UTC, as `vmstat -t`
    /// prints it), the second of the run, requests due in it, p50, p99 and max latency in ms.
    pub fn timeline_tsv(&self) -> String {
        let mut out = String::from("utc\tsecond\tcount\tp50_ms\tp99_ms\tmax_ms\n");
        let start = self.started_at.unwrap_or_default();
        for (i, s) in self.timeline.iter().enumerate() {
            let at = start + chrono::Duration::seconds(i as i64);
            out += &format!(
                "{}\t{i}\t{}\t{:.2}\t{:.2}\t{:.2}\n",
                at.format("%H:%M:%S"),
                s.count,
                s.p50_ms,
                s.p99_ms,
                s.max_ms
            );
        }
        out
    }
}

/// The `p`-th percentile latency (0 < p ≤ 100) in milliseconds of several runs' requests
/// together.
pub fn pooled_percentile_ms<'a>(outcomes: impl Iterator<Item = &'a Outcome>, p: f64) -> f64 {
    let mut all = Outcome::default();
    for outcome in outcomes {
        all.latencies_us.extend(&outcome.latencies_us);
    }
    all.latencies_us.sort_unstable();
    all.percentile_ms(p)
}

/// Runs `plan` against `addr`; request numbers come from `counter`, so every request of every
/// run is unique.
pub async fn run(
    addr: SocketAddr,
    payloads: Arc<Payloads>,
    counter: Arc<AtomicU64>,
    plan: Plan,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let started_at = chrono::Utc::now();
    let end = start + plan.duration;
    let mut tasks = Vec::with_capacity(plan.connections);
    for index in 0..plan.connections {
        let payloads = payloads.clone();
        let counter = counter.clone();
        // Open loop: each connection sends every `connections / rate` seconds, staggered.
        let schedule = plan.rate.map(|rate| {
            let every = Duration::from_secs_f64(plan.connections as f64 / rate);
            let first = start + every.mul_f64(index as f64 / plan.connections as f64);
            (first, every)
        });
        tasks.push(tokio::spawn(async move {
            connection(addr, &payloads, &counter, schedule, start, end).await
        }));
    }
    let mut outcome = Outcome::default();
    for task in tasks {
        outcome.merge(task.await??);
    }
    outcome.elapsed = start.elapsed();
    outcome.started_at = Some(started_at);
    outcome.make_timeline();
    outcome.latencies_us.sort_unstable();
    Ok(outcome)
}

async fn connection(
    addr: SocketAddr,
    payloads: &Payloads,
    counter: &AtomicU64,
    schedule: Option<(Instant, Duration)>,
    start: Instant,
    end: Instant,
) -> anyhow::Result<Outcome> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let host = addr.to_string();
    let mut outcome = Outcome::default();
    let mut next = schedule.map(|(first, _)| first);
    loop {
        let due = match (next.as_mut(), schedule) {
            (Some(next), Some((_, every))) => {
                if *next >= end {
                    break;
                }
                tokio::time::sleep_until(*next).await;
                let due = *next;
                *next += every;
                due
            }
            _ => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let r = payloads.request(n, chrono::Utc::now().timestamp());
        let mut request = Request::post(r.path)
            .header("host", &host)
            .header("content-type", "application/json");
        for (name, value) in &r.headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(r.body))?;
        if sender.ready().await.is_err() {
            outcome.errors += 1;
            break;
        }
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the whole answer so the connection can carry the next request.
                let read = response.into_body().collect().await;
                let micros = due.elapsed().as_micros();
                outcome
                    .latencies_us
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                let second = due.saturating_duration_since(start).as_secs();
                outcome
                    .seconds
                    .push(u32::try_from(second).unwrap_or(u32::MAX));
                if read.is_err() {
                    outcome.errors += 1;
                    break;
                }
                *outcome.statuses.entry(status).or_default() += 1;
            }
            Err(_) => {
                outcome.errors += 1;
                break;
            }
        }
    }
    Ok(outcome)
}
