//! Where a measurement's JetStream runs (`--nats`): a NATS server of its own with R1 streams,
//! or a fresh 3-node cluster from `scripts/nats-cluster.sh` with R3 streams.

use std::path::Path;

pub use crate::common::LocalCluster as Cluster;
use crate::common::{self, Secured, Security};

/// Where the streams are kept (`--nats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Nats {
    /// One NATS server of the measurement's own, streams with one replica.
    R1,
    /// A fresh 3-node cluster on loopback (`scripts/nats-cluster.sh`), streams with three
    /// replicas (`LEDGER_NATS_STREAM_REPLICAS=3`); security off only.
    R3,
}

impl Nats {
    pub fn label(self) -> &'static str {
        match self {
            Nats::R1 => "NATS R1",
            Nats::R3 => "NATS R3",
        }
    }

    /// The streams' replicas.
    pub fn replicas(self) -> usize {
        match self {
            Nats::R1 => 1,
            Nats::R3 => 3,
        }
    }

    /// What the settings mean, for the reports.
    pub fn explain(base: u16) -> String {
        format!(
            "NATS R1: one nats-server of the measurement's own, streams with one replica. NATS \
             R3: a fresh 3-node cluster on loopback (scripts/nats-cluster.sh, client ports \
             {base}-{}, stores reset before each measurement), streams with three replicas \
             (LEDGER_NATS_STREAM_REPLICAS=3, the publisher's streams alike), the ledger and the \
             publisher given the three URLs as seeds; its NATS CPU is the three servers' sum",
            base + 2
        )
    }
}

/// `--nats r3` runs on the cluster script's servers, which have neither users nor TLS.
pub fn check(nats: &[Nats], security: &[Security]) -> anyhow::Result<()> {
    anyhow::ensure!(
        !nats.contains(&Nats::R3) || security.iter().all(|s| *s == Security::Off),
        "--nats r3 runs on scripts/nats-cluster.sh's 3-node cluster, which has no users and no \
         TLS: measure it with --security off only (e.g. --security off --nats r1,r3)"
    );
    Ok(())
}

/// A measurement's NATS: its own server (killed when dropped), or the cluster (stopped with
/// [`Cluster::stop`]).
pub enum Server {
    Own(Box<common::OwnNats>),
    Cluster(Cluster),
}

impl Server {
    /// Starts the measurement's NATS in `dir` (R1) or resets and starts `cluster` (R3).
    pub async fn start(
        nats: Nats,
        secured: &Secured,
        dir: &Path,
        cluster: &Cluster,
    ) -> anyhow::Result<Self> {
        Ok(match nats {
            Nats::R1 => Server::Own(Box::new(common::OwnNats::start(secured, dir).await?)),
            Nats::R3 => {
                let mut cluster = cluster.clone();
                cluster.start_fresh().await?;
                Server::Cluster(cluster)
            }
        })
    }

    pub fn url(&self) -> &str {
        match self {
            Server::Own(nats) => nats.url(),
            Server::Cluster(cluster) => cluster.urls(),
        }
    }

    /// The nats-server processes.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Server::Own(nats) => nats.pid().into_iter().collect(),
            Server::Cluster(cluster) => cluster.pids(),
        }
    }
}
