//! What the benchmark starts, and stops or kills: a PostgreSQL server of its own and each
//! service replica.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::ready;

/// A PostgreSQL server of the benchmark's own, in `dir`, which it may stop and start.
pub struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    options: String,
}

impl OwnPostgres {
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        // PostgreSQL refuses to run as root: run its tools as the postgres user then.
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    }

    /// `options`: more server settings (`-c …`), e.g. TLS.
    pub async fn init(dir: &Path, port: u16, options: String) -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL's server binaries (Debian: apt-get install postgresql)")?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .context("no initdb under /usr/lib/postgresql")?;
        let pg = OwnPostgres {
            bin,
            data: dir.join("pg"),
            log: dir.join("postgres.log"),
            port,
            options,
        };
        std::fs::create_dir_all(&pg.data)?;
        if running_as_root() {
            run(Command::new("chown").args(["-R", "postgres"]).arg(dir)).await?;
        }
        run(pg.command("initdb").arg("-D").arg(&pg.data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]))
        .await
        .context("initdb")?;
        pg.start().await?;
        Ok(pg)
    }

    pub async fn start(&self) -> anyhow::Result<()> {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            // The server's own dead-peer detection, as deploy/k8s/postgres.yaml sets it: a
            // session whose client went silent is ended (and its locks released) within ~30 s.
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=200 \
                 -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 \
                 -c tcp_keepalives_count=4 -c tcp_user_timeout=30000{}",
                self.port, self.options
            ))
            .args(["-w", "start"]))
        .await
        .context("pg_ctl start")
    }

    pub async fn stop(&self) -> anyhow::Result<()> {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]))
        .await
        .context("pg_ctl stop")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

fn running_as_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
}

async fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().await?;
    anyhow::ensure!(status.success(), "{command:?} exited with {status}");
    Ok(())
}

/// One service replica, started again with the same settings after it is killed.
pub struct Service {
    name: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
    /// Another binary than the release one next to this executable (the ledger's debug build,
    /// for its test-only fault point).
    bin: Option<PathBuf>,
}

impl Service {
    pub fn new(
        name: &'static str,
        replica: usize,
        env: Vec<(String, String)>,
        dir: &Path,
        addr: SocketAddr,
    ) -> Self {
        Service {
            name,
            env,
            log: dir.join(format!("{name}-{replica}.log")),
            addr,
            child: None,
            bin: None,
        }
    }

    /// Runs `bin` instead of the release binary from the next start on (`None`: the release
    /// binary again).
    pub fn use_binary(&mut self, bin: Option<PathBuf>) {
        self.bin = bin;
    }

    /// Sets (or with `None` removes) `key` in its environment from the next start on.
    pub fn set_env(&mut self, key: &str, value: Option<String>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value));
        }
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits up to `timeout` for it to exit of itself; its exit status if it did.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => {
                let status = status?;
                self.child = None;
                Ok(Some(status))
            }
            Err(_) => Ok(None),
        }
    }

    pub async fn start(&mut self) -> anyhow::Result<()> {
        let bin = match &self.bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()?.with_file_name(self.name),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&bin);
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        );
        ready::wait_ready(self.addr, Duration::from_secs(60))
            .await
            .with_context(|| format!("{} (log: {})", self.name, self.log.display()))?;
        // The address was free when it was picked, not necessarily when the service bound it:
        // another process on the machine may have taken it and be the one answering.
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            anyhow::bail!(
                "{} exited ({status}) while something else answers on {}: another process took \
                 its port; run again (log: {})",
                self.name,
                self.addr,
                self.log.display()
            );
        }
        Ok(())
    }

    /// `kill -9`.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }
}

pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
