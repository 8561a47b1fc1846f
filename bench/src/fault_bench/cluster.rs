//! The suite on a 3-node NATS cluster (`--cluster`): `scripts/nats-cluster.sh` with its directory
//! inside the run's and ports of its own, reset for each scenario; and the cluster's faults —
//! the WEBHOOKS stream's leader killed, the ledger consumer's leader frozen, every node restarted
//! in turn — each with the evidence that it struck where it says.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use tokio::process::Command;

use crate::common::{self, Secured};
use crate::sender::Sent;

/// How long a node leading the ledger's consumer stays frozen (SIGSTOP … SIGCONT).
pub const FREEZE_FOR: Duration = Duration::from_secs(20);
/// How long the WEBHOOKS leader stays cut off the network.
pub const CUT_FOR: Duration = Duration::from_secs(20);
/// The longest a node may take to be current again after it is back.
const CURRENT_WITHIN: Duration = Duration::from_secs(120);
const NODES: [u16; 3] = [1, 2, 3];
/// How long a JetStream API request may wait: a stream or consumer without a leader does not
/// answer, so this is also the resolution of the times its new leader is found in.
const ANSWER_WITHIN: Duration = Duration::from_millis(500);
const STREAM: &str = "WEBHOOKS";
/// The ledger's durable consumer of SimplyBook webhooks.
pub const LEDGER_CONSUMER: &str = "ledger";

/// The scenario's cluster: three nats-servers on loopback, client ports `base`..`base+2`,
/// monitoring on `base+4000`.., stores under `dir`.
pub struct Cluster {
    dir: PathBuf,
    base: u16,
    urls: String,
}

impl Cluster {
    /// Resets the cluster's stores under `dir` and starts its three nodes. Refuses ports
    /// something else listens on: the script would find that server's meta leader and report
    /// the cluster started while its own nodes failed to bind.
    pub async fn start_fresh(dir: &Path, base: u16) -> anyhow::Result<Self> {
        let mut cluster = Cluster {
            dir: dir.join("nats-cluster"),
            base,
            urls: String::new(),
        };
        for node in NODES {
            for port in [base, base + 2000, base + 4000].map(|p| p + node - 1) {
                anyhow::ensure!(
                    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                    "port {port} is taken (a cluster left by an earlier run? \
                     NATS_CLUSTER_DIR=<its dir> scripts/nats-cluster.sh stop); \
                     or choose other ports with --cluster-base"
                );
            }
        }
        cluster.script("reset").await?;
        cluster.urls = cluster.script("start").await?.trim().to_string();
        anyhow::ensure!(
            !cluster.urls.is_empty(),
            "nats-cluster.sh start printed no URLs"
        );
        cluster.ensure_running()?;
        Ok(cluster)
    }

    /// Every node of this cluster's own runs.
    fn ensure_running(&self) -> anyhow::Result<()> {
        for node in NODES {
            let pid = self.pid(node)?;
            anyhow::ensure!(
                Path::new(&format!("/proc/{pid}")).exists(),
                "node n{node} is not running (log: {})",
                self.dir.join(format!("n{node}/nats.log")).display()
            );
        }
        Ok(())
    }

    /// The three client URLs, comma separated.
    pub fn url(&self) -> &str {
        &self.urls
    }

    /// The client URLs of every node but `node`.
    fn urls_but(&self, node: u16) -> String {
        NODES
            .iter()
            .filter(|&&n| n != node)
            .map(|n| format!("nats://127.0.0.1:{}", self.base + n - 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub async fn stop(&self) -> anyhow::Result<()> {
        self.script("stop").await.map(drop)
    }

    /// Starts the nodes not running and waits for a meta leader.
    async fn start_missing(&self) -> anyhow::Result<()> {
        self.script("start").await?;
        self.ensure_running()
    }

    async fn script(&self, command: &str) -> anyhow::Result<String> {
        common::nats_cluster_script(&self.dir, self.base, command).await
    }

    fn pid(&self, node: u16) -> anyhow::Result<u32> {
        let file = self.dir.join(format!("n{node}/pid"));
        std::fs::read_to_string(&file)
            .with_context(|| format!("{}", file.display()))?
            .trim()
            .parse()
            .context("a pid")
    }

    async fn signal(&self, node: u16, signal: &str) -> anyhow::Result<u32> {
        let pid = self.pid(node)?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} (node n{node})");
        Ok(pid)
    }

    /// Whether node `node` says it is healthy: the bare `/healthz`, which on a JetStream server
    /// also checks that it is current with the meta leader and has recovered and caught up its
    /// streams and consumers (`?js-enabled-only=true` would only say JetStream is on).
    async fn healthy(&self, node: u16) -> bool {
        let url = format!("http://127.0.0.1:{}/healthz", self.base + 4000 + node - 1);
        let client = reqwest::Client::new();
        match client.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) if r.status().is_success() => r
                .text()
                .await
                .is_ok_and(|t| t.contains("\"ok\"") && !t.contains("error")),
            _ => false,
        }
    }

    /// A JetStream context on every node but `node` (one that is down or frozen would hold up
    /// the benchmark's own requests).
    async fn js_without(&self, secured: &Secured, node: u16) -> anyhow::Result<jetstream::Context> {
        secured.jetstream(&self.urls_but(node), "ledger").await
    }

    /// Waits until `node` is back and current: its `/healthz` answers ok and every WEBHOOKS
    /// replica, as the stream's leader reports them, is current. Returns how long it took.
    async fn wait_current(&self, secured: &Secured, node: u16) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let js = secured.jetstream(&self.urls, "ledger").await?;
        let current = poll(CURRENT_WITHIN, || async {
            if !self.healthy(node).await {
                return None;
            }
            let (leader, replicas) = stream_cluster(&js).await.ok()?;
            (leader.is_some() && replicas.len() == 2 && replicas.iter().all(|(_, c)| *c))
                .then_some(())
        })
        .await;
        anyhow::ensure!(
            current.is_some(),
            "node n{node} not current {} s after it came back",
            CURRENT_WITHIN.as_secs()
        );
        Ok(started.elapsed())
    }

    /// The node leading WEBHOOKS, and a JetStream context on the other two (to watch for the
    /// next leader while that one is struck).
    async fn webhooks_leader(
        &self,
        secured: &Secured,
    ) -> anyhow::Result<(u16, jetstream::Context)> {
        let js = secured.jetstream(&self.urls, "ledger").await?;
        let leader = stream_cluster(&js)
            .await?
            .0
            .context("WEBHOOKS has no leader")?;
        let node = node_of(&leader)?;
        Ok((node, self.js_without(secured, node).await?))
    }

    /// `kill -9` of the WEBHOOKS stream's leader; it is started again after `down_for`. Returns
    /// the evidence.
    pub async fn kill_stream_leader(
        &self,
        secured: &Secured,
        down_for: Duration,
        sent: &Sent,
    ) -> anyhow::Result<String> {
        let (node, js) = self.webhooks_leader(secured).await?;
        sent.in_window
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let pid = self.signal(node, "KILL").await?;
        let killed = Instant::now();
        let new_leader = poll(down_for.max(Duration::from_secs(30)), || async {
            let leader = stream_cluster(&js).await.ok()?.0?;
            (leader.as_str() != leader_name(node)).then_some(leader)
        })
        .await;
        let elected = killed.elapsed();
        tokio::time::sleep(down_for.saturating_sub(killed.elapsed())).await;
        self.start_missing().await?;
        let back = killed.elapsed();
        let current = self.wait_current(secured, node).await?;
        sent.in_window
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(format!(
            "killed node n{node} (pid {pid}, kill -9), which led WEBHOOKS; {}; n{node} started \
             again after {:.1} s, current {:.1} s later",
            match new_leader {
                Some(l) => format!("new leader {l} after {:.1} s", elected.as_secs_f64()),
                None => format!("no new leader within {:.1} s", elected.as_secs_f64()),
            },
            back.as_secs_f64(),
            current.as_secs_f64()
        ))
    }

    /// SIGSTOP of the node leading the ledger's durable consumer, SIGCONT after `FREEZE_FOR`.
    pub async fn freeze_consumer_leader(
        &self,
        secured: &Secured,
        sent: &Sent,
    ) -> anyhow::Result<String> {
        let js = secured.jetstream(&self.urls, "ledger").await?;
        let leader = consumer_info(&js)
            .await?
            .cluster
            .and_then(|c| c.leader)
            .context("the ledger's consumer has no leader")?;
        let stream_leader = stream_cluster(&js).await?.0;
        let node = node_of(&leader)?;
        let js = self.js_without(secured, node).await?;
        sent.in_window
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let pid = self.signal(node, "STOP").await?;
        let frozen = Instant::now();
        let new_leader = poll(FREEZE_FOR, || async {
            let leader = consumer_info(&js).await.ok()?.cluster?.leader?;
            (leader.as_str() != leader_name(node)).then_some(leader)
        })
        .await;
        let elected = frozen.elapsed();
        tokio::time::sleep(FREEZE_FOR.saturating_sub(frozen.elapsed())).await;
        self.signal(node, "CONT").await?;
        let current = self.wait_current(secured, node).await?;
        sent.in_window
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(format!(
            "froze node n{node} (pid {pid}, SIGSTOP) for {} s, which led the ledger's consumer{}; \
             {}; n{node} current {:.1} s after SIGCONT",
            FREEZE_FOR.as_secs(),
            if stream_leader.as_deref() == Some(leader.as_str()) {
                " and WEBHOOKS"
            } else {
                " (not WEBHOOKS)"
            },
            match new_leader {
                Some(l) => format!(
                    "new consumer leader {l} after {:.1} s",
                    elected.as_secs_f64()
                ),
                None => "no new consumer leader while it was frozen".to_string(),
            },
            current.as_secs_f64()
        ))
    }

    /// The WEBHOOKS stream's leader cut off for `cut_for`: every packet of every connection it
    /// holds (routes to the other nodes, clients) dropped, no new connection to it, and no new
    /// route between any nodes while the cut lasts (its own reconnection attempts would come
    /// from ports the cut cannot know in advance). The node keeps running, sure it still leads,
    /// as a node behind a failed switch would.
    pub async fn cut_stream_leader(
        &self,
        secured: &Secured,
        cut_for: Duration,
        sent: &Sent,
    ) -> anyhow::Result<String> {
        let (node, js) = self.webhooks_leader(secured).await?;
        let pid = self.pid(node)?;
        let client_port = self.base + node - 1;
        let route_port = self.base + 2000 + node - 1;
        let connections = crate::netcut::connections_of_process(pid).await?;
        let routes: Vec<u16> = NODES.iter().map(|n| self.base + 2000 + n - 1).collect();
        sent.in_window
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let cut = crate::netcut::Cut::start(
            &format!("n{node}"),
            &connections,
            &[client_port, route_port],
            &routes,
        )
        .await?;
        let cut_at = Instant::now();
        let new_leader = poll(cut_for, || async {
            let leader = stream_cluster(&js).await.ok()?.0?;
            (leader.as_str() != leader_name(node)).then_some(leader)
        })
        .await;
        let elected = cut_at.elapsed();
        tokio::time::sleep(cut_for.saturating_sub(cut_at.elapsed())).await;
        let dropped = cut.heal().await?;
        let current = self.wait_current(secured, node).await?;
        sent.in_window
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(format!(
            "cut node n{node} (pid {pid}) off for {} s, which led WEBHOOKS: its {} \
             connections and its client and route ports, {dropped} packets dropped; {}; n{node} \
             current {:.1} s after the cut healed",
            cut_for.as_secs(),
            connections.len(),
            match new_leader {
                Some(l) => format!("new leader {l} after {:.1} s", elected.as_secs_f64()),
                None => "no new leader while it was cut off".to_string(),
            },
            current.as_secs_f64()
        ))
    }

    /// Each node in turn stopped (SIGTERM, as a rolling upgrade would), started again after
    /// `down_for`, and waited for until it is current before the next.
    pub async fn rolling_restart(
        &self,
        secured: &Secured,
        down_for: Duration,
        sent: &Sent,
    ) -> anyhow::Result<String> {
        let mut evidence = Vec::new();
        sent.in_window
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for node in NODES {
            let js = secured.jetstream(&self.urls, "ledger").await?;
            let led = stream_cluster(&js).await?.0.as_deref() == Some(leader_name(node).as_str());
            drop(js);
            let pid = self.signal(node, "TERM").await?;
            let stopped = Instant::now();
            let gone = poll(Duration::from_secs(30), || async {
                (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            })
            .await;
            if gone.is_none() {
                self.signal(node, "KILL").await?;
            }
            let exited = stopped.elapsed();
            tokio::time::sleep(down_for).await;
            self.start_missing().await?;
            let current = self.wait_current(secured, node).await?;
            evidence.push(format!(
                "n{node}{} exited {:.1} s after SIGTERM{}, current {:.1} s after its start",
                if led { " (WEBHOOKS leader)" } else { "" },
                exited.as_secs_f64(),
                if gone.is_none() {
                    " (then kill -9)"
                } else {
                    ""
                },
                current.as_secs_f64()
            ));
        }
        sent.in_window
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(format!("rolling restart: {}", evidence.join("; ")))
    }
}

/// Its nodes are stopped whatever happened: a scenario that fails must not leave them running
/// (the script starts its nodes as daemons, not as this process's children).
impl Drop for Cluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-cluster.sh");
        let _ = std::process::Command::new(script)
            .arg("stop")
            .env("NATS_CLUSTER_DIR", &self.dir)
            .env("NATS_CLUSTER_BASE", self.base.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `billing-n2` → 2.
fn node_of(server: &str) -> anyhow::Result<u16> {
    server
        .strip_prefix("billing-n")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{server} is not a node of the local cluster"))
}

fn leader_name(node: u16) -> String {
    format!("billing-n{node}")
}

/// The WEBHOOKS stream's leader and its other replicas (name, current).
async fn stream_cluster(
    js: &jetstream::Context,
) -> anyhow::Result<(Option<String>, Vec<(String, bool)>)> {
    let info = tokio::time::timeout(ANSWER_WITHIN, async {
        let mut stream = js
            .get_stream(STREAM)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok::<_, anyhow::Error>(
            stream
                .info()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .clone(),
        )
    })
    .await
    .context("stream info timed out")??;
    let cluster = info.cluster.context("WEBHOOKS is not clustered")?;
    Ok((
        cluster.leader,
        cluster
            .replicas
            .into_iter()
            .map(|r| (r.name, r.current))
            .collect(),
    ))
}

/// The ledger's durable consumer as JetStream reports it.
pub async fn consumer_info(js: &jetstream::Context) -> anyhow::Result<jetstream::consumer::Info> {
    tokio::time::timeout(ANSWER_WITHIN, async {
        let stream = js
            .get_stream(STREAM)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>(LEDGER_CONSUMER)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(consumer
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .clone())
    })
    .await
    .context("consumer info timed out")?
}

/// Calls `check` every 100 ms until it gives something or `timeout` passes.
async fn poll<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
