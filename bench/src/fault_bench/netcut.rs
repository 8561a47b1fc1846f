//! Network faults on loopback with nftables: every packet of chosen TCP connections dropped, as
//! if the host at their other end had vanished (no FIN, no RST, no answer at all), until the cut
//! is healed. Needs the `nft` command (Debian's `nftables`) and CAP_NET_ADMIN; `bench/run.sh
//! faults` installs nftables when it is missing.
//!
//! Connections are named by their two ports: the servers here all share 127.0.0.1, so ports are
//! what tell one connection from another. A cut lists the connections that exist when it
//! strikes (from `ss`, each by its pair of ports: one ephemeral port may serve connections to
//! several servers), the listening ports it isolates, and optionally the listening ports to
//! which no new connection may be opened while it lasts.

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A cut in force: its own nftables table, deleted on [`Cut::heal`] or when dropped.
pub struct Cut {
    table: String,
    healed: bool,
}

impl Cut {
    /// Drops every packet of `connections` (each a pair of ports, either way round), every
    /// packet from or to `listening`, and the opening packet (SYN) of any new connection to
    /// `no_new_to`.
    pub async fn start(
        name: &str,
        connections: &[(u16, u16)],
        listening: &[u16],
        no_new_to: &[u16],
    ) -> anyhow::Result<Cut> {
        anyhow::ensure!(
            !connections.is_empty() || !listening.is_empty(),
            "a cut needs something to cut"
        );
        let table = format!("billing_fault_{name}");
        let set = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        // On loopback every packet passes the input hook once, whichever way it goes.
        let mut rules = format!(
            "table inet {table} {{\n  chain input {{\n    type filter hook input priority -10; \
             policy accept;\n"
        );
        if !connections.is_empty() {
            let pairs = connections
                .iter()
                .flat_map(|(a, b)| [format!("{a} . {b}"), format!("{b} . {a}")])
                .collect::<Vec<_>>()
                .join(", ");
            rules.push_str(&format!(
                "    tcp sport . tcp dport {{ {pairs} }} counter drop\n"
            ));
        }
        if !listening.is_empty() {
            rules.push_str(&format!(
                "    tcp sport {{ {p} }} counter drop\n    tcp dport {{ {p} }} counter drop\n",
                p = set(listening)
            ));
        }
        if !no_new_to.is_empty() {
            rules.push_str(&format!(
                "    tcp dport {{ {} }} tcp flags & (syn | ack) == syn counter drop\n",
                set(no_new_to)
            ));
        }
        rules.push_str("  }\n}\n");
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context(
                "nft (Debian: apt-get install nftables; CAP_NET_ADMIN needed): network cuts \
                 need nftables",
            )?;
        nft.stdin
            .take()
            .context("nft's stdin")?
            .write_all(rules.as_bytes())
            .await?;
        let status = nft.wait().await?;
        anyhow::ensure!(status.success(), "nft refused the cut:\n{rules}");
        Ok(Cut {
            table,
            healed: false,
        })
    }

    /// The packets dropped so far, from the rules' counters.
    pub async fn dropped(&self) -> anyhow::Result<u64> {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &self.table])
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "nft list table {}", self.table);
        Ok(packets(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Lets the packets through again; returns how many were dropped.
    pub async fn heal(mut self) -> anyhow::Result<u64> {
        let dropped = self.dropped().await?;
        let status = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "nft delete table {}", self.table);
        self.healed = true;
        Ok(dropped)
    }
}

/// A cut is never left behind, whatever happened to the scenario.
impl Drop for Cut {
    fn drop(&mut self) {
        if !self.healed {
            let _ = std::process::Command::new("nft")
                .args(["delete", "table", "inet", &self.table])
                .status();
        }
    }
}

/// The sum of the `counter packets N bytes M` in `nft list` output.
fn packets(listing: &str) -> u64 {
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "packets")
        .filter_map(|w| w[1].parse::<u64>().ok())
        .sum()
}

/// The established TCP connections process `pid` holds: (its port, the peer's port).
pub async fn connections_of_process(pid: u32) -> anyhow::Result<Vec<(u16, u16)>> {
    let marker = format!("pid={pid},");
    Ok(ss_established()
        .await?
        .into_iter()
        .filter(|(_, _, process)| process.contains(&marker))
        .map(|(local, peer, _)| (local, peer))
        .collect())
}

/// The established TCP connections to `port` of processes other than this one: (the client's
/// port, `port`).
pub async fn clients_of(port: u16) -> anyhow::Result<Vec<(u16, u16)>> {
    let ours = format!("pid={},", std::process::id());
    Ok(ss_established()
        .await?
        .into_iter()
        .filter(|(_, peer, process)| *peer == port && !process.contains(&ours))
        .map(|(local, peer, _)| (local, peer))
        .collect())
}

/// Every established TCP connection on 127.0.0.1: (local port, peer port, process column).
async fn ss_established() -> anyhow::Result<Vec<(u16, u16, String)>> {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .await
        .context("ss (Debian: iproute2)")?;
    anyhow::ensure!(out.status.success(), "ss -tnpH failed");
    let port = |addr: &str| addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // Recv-Q Send-Q Local:Port Peer:Port [users:((…))]
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(2)?;
            let peer = fields.get(3)?;
            local.starts_with("127.0.0.1:").then_some(())?;
            Some((
                port(local)?,
                port(peer)?,
                fields.get(4).unwrap_or(&"").to_string(),
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_from_an_nft_listing() {
        let listing = "table inet t {\n chain input {\n  tcp sport { 1, 2 } counter packets 7 \
                       bytes 420 drop\n  tcp dport { 1, 2 } counter packets 5 bytes 300 drop\n \
                       }\n}\n";
        assert_eq!(packets(listing), 12);
        assert_eq!(packets("table inet t {}"), 0);
    }
}
