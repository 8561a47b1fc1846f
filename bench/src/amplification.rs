//! The signature amplification attack of issue 17 against a genuine request, on the same ingest
//! in the same run: a header full of `v1` candidates used to make ingest hash the whole body
//! once per candidate (a 400 KB header with a 256 KiB body: 14 s of CPU for one 401). Each case
//! sends the same ~250 KiB body, one request per connection, one at a time; the figures are the
//! server's CPU per request and the median and p99 time to its answer, in µs.

use std::net::SocketAddr;
use std::time::Duration;

use billing_domain::standard_webhooks::{MAX_SIGNATURES, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::cpu;
use crate::payloads::{SIMPLYBOOK_SECRET, TENANT};

/// Another key's signature: well-formed, never matching.
const WRONG_SECRET: &str = "whsec_YmVuY2gtb25seS1hdHRhY2tlci1rZXk=";

/// The cases, genuine first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Genuine,
    NineCandidates,
    EmptyCandidate,
    EightWrong,
    HugeHeader,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::Genuine,
        Case::NineCandidates,
        Case::EmptyCandidate,
        Case::EightWrong,
        Case::HugeHeader,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::Genuine => "genuine: one valid v1",
            Case::NineCandidates => "attack: 9 v1 candidates (the valid one among them)",
            Case::EmptyCandidate => "attack: an empty v1 candidate",
            Case::EightWrong => "attack: 8 wrong v1 candidates (the most ingest compares)",
            Case::HugeHeader => "attack: 400 KB of v1 candidates (the original request)",
        }
    }
}

/// One case's figures.
pub struct Row {
    pub name: &'static str,
    /// Answers by status line (0: the connection closed without one).
    pub statuses: std::collections::BTreeMap<u16, u64>,
    pub server_cpu_us: f64,
    pub median_us: f64,
    pub p99_us: f64,
}

/// The whole comparison.
pub struct Comparison {
    pub rows: Vec<Row>,
    /// Genuine requests ingest stored (202), for the stream check.
    pub accepted: u64,
}

impl Comparison {
    /// The costliest attack's server CPU per request over the genuine request's.
    pub fn worst_ratio(&self) -> f64 {
        let genuine = self.rows[0].server_cpu_us.max(f64::EPSILON);
        self.rows[1..]
            .iter()
            .map(|r| r.server_cpu_us / genuine)
            .fold(0.0, f64::max)
    }
}

/// Runs every case `requests` times against ingest at `addr` (whose process is `processes`).
pub async fn run(
    addr: SocketAddr,
    processes: &cpu::Processes,
    run: &str,
    requests: usize,
) -> anyhow::Result<Comparison> {
    let key = SigningKey::parse(SIMPLYBOOK_SECRET)?;
    let wrong = SigningKey::parse(WRONG_SECRET)?;
    let mut rows = Vec::new();
    let mut accepted = 0;
    for case in Case::ALL {
        let mut latencies = Vec::with_capacity(requests);
        let mut statuses = std::collections::BTreeMap::new();
        let before = processes.usage();
        for n in 0..requests {
            let request = request(case, &key, &wrong, &format!("{run}-amp-{case:?}-{n}"));
            let (status, took) = send(addr, &request).await?;
            *statuses.entry(status).or_default() += 1;
            latencies.push(took.as_secs_f64() * 1e6);
        }
        let cpu = processes.usage().since(&before);
        latencies.sort_by(f64::total_cmp);
        let at = |p: f64| latencies[((p * latencies.len() as f64).ceil() as usize).max(1) - 1];
        if case == Case::Genuine {
            accepted += statuses.get(&202).copied().unwrap_or(0);
        }
        rows.push(Row {
            name: case.name(),
            statuses,
            server_cpu_us: cpu.server.as_secs_f64() * 1e6 / requests as f64,
            median_us: at(0.5),
            p99_us: at(0.99),
        });
    }
    Ok(Comparison { rows, accepted })
}

/// The raw HTTP/1.1 request of `case` (a fresh webhook id each, so none is a duplicate).
fn request(case: Case, key: &SigningKey, wrong: &SigningKey, id: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "booking_id": id,
        "price": "120.00",
        "datetime": "2026-10-14 10:00:00",
        "service": {"name": "Remedial massage, 60 minutes"},
        "notes": "x".repeat(250 * 1024),
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let good = key.sign(id, now, body.as_bytes());
    let bad = wrong.sign(id, now, body.as_bytes());
    let signature = match case {
        Case::Genuine => good,
        Case::NineCandidates => {
            let mut all = vec![bad; MAX_SIGNATURES];
            all.push(good);
            all.join(" ")
        }
        Case::EmptyCandidate => format!("{good} v1,"),
        Case::EightWrong => vec![bad; MAX_SIGNATURES].join(" "),
        // The request of the security review: about 400 KB of candidates.
        Case::HugeHeader => vec![bad; 400 * 1024 / 48].join(" "),
    };
    let mut request = format!(
        "POST /api/v1/webhooks/simplybook/{TENANT} HTTP/1.1\r\nhost: ingest\r\n\
         connection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         webhook-id: {id}\r\nwebhook-timestamp: {now}\r\nwebhook-signature: {signature}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// Sends `request` on a connection of its own; the answer's status (0 when the server closed
/// without one) and the time from the first byte sent to the end of the answer.
async fn send(addr: SocketAddr, request: &[u8]) -> anyhow::Result<(u16, Duration)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let started = Instant::now();
    // A server that refuses the headers closes before the rest arrives; that is its answer.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, took))
}
