//! CPU time per process from `/proc` (Linux), to show where a run's cycles went: the load
//! generator, the server under test and NATS share the same cores.

use std::time::Duration;

/// The processes a run is charged to.
#[derive(Debug, Clone)]
pub struct Processes {
    pub generator: u32,
    pub server: u32,
    /// Every `nats-server` on the machine (normally one).
    pub nats: Vec<u32>,
}

/// CPU time used so far by each group.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub generator: Duration,
    pub server: Duration,
    pub nats: Duration,
}

impl Usage {
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            generator: self.generator.saturating_sub(earlier.generator),
            server: self.server.saturating_sub(earlier.server),
            nats: self.nats.saturating_sub(earlier.nats),
        }
    }
}

impl Processes {
    pub fn new(server: u32) -> Self {
        Processes {
            generator: std::process::id(),
            server,
            nats: nats_pids(),
        }
    }

    /// Charges NATS time to `pids` only (a server of the run's own) rather than to every
    /// `nats-server` on the machine.
    pub fn with_nats(mut self, pids: Vec<u32>) -> Self {
        self.nats = pids;
        self
    }

    pub fn usage(&self) -> Usage {
        Usage {
            generator: cpu_time(&[self.generator]),
            server: cpu_time(&[self.server]),
            nats: cpu_time(&self.nats),
        }
    }
}

/// CPU time (user + system) `pids` have used so far, together.
pub fn cpu_time(pids: &[u32]) -> Duration {
    static TICKS_PER_SEC: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks_per_sec = TICKS_PER_SEC.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    });
    Duration::from_secs_f64(pids.iter().map(|p| ticks(*p)).sum::<u64>() as f64 / ticks_per_sec)
}

/// User + system clock ticks of every thread of `pid` (0 when it is gone).
fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // state, ppid, ... with utime and stime the 12th and 13th of them.
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn nats_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "nats-server")
        })
        .collect()
}
