//! What the service benchmarks share: a database of their own, release service binaries run as
//! child processes, and waiting for a count to be reached.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

#[path = "security.rs"]
mod security;
// Each benchmark binary compiles this module and uses part of it.
#[allow(unused_imports)]
pub use security::*;

/// Where PostgreSQL and NATS are.
#[derive(clap::Args)]
pub struct Backends {
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// A database URL on the server the benchmark may create a database in.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/test"
    )]
    pub database_url: String,
}

/// Obviously fake admin token the benchmarks' services accept and call each other with.
pub const BENCH_TOKEN: &str = "fake-bench-grpc-token-not-secret-0000";

/// The environment of service `name` (`ledger`, `invoicing`) for a run: database, NATS,
/// namespace and tenants file, then `extra` (`("LISTEN_ADDR", …)` becomes `LEDGER_LISTEN_ADDR`).
pub fn service_env(
    name: &str,
    db_url: &str,
    nats_url: &str,
    namespace: &str,
    tenants_file: &Path,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let prefix = name.to_ascii_uppercase();
    [
        ("DATABASE_URL", db_url.to_string()),
        ("NATS_URL", nats_url.to_string()),
        ("NATS_NAMESPACE", namespace.to_string()),
        ("TENANTS_FILE", tenants_file.display().to_string()),
        ("GRPC_TOKENS", format!("admin:{BENCH_TOKEN}")),
    ]
    .iter()
    .chain(extra)
    .map(|(key, value)| (format!("{prefix}_{key}"), value.clone()))
    .collect()
}

/// A database created for one benchmark run and dropped by `drop_database`.
pub struct BenchDatabase {
    admin: sqlx::PgPool,
    name: String,
    pub url: String,
}

impl BenchDatabase {
    /// Creates `name` on the server of `server_url` (any database URL on that server).
    pub async fn create(server_url: &str, name: &str) -> anyhow::Result<Self> {
        let admin = sqlx::PgPool::connect(server_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&admin)
            .await?;
        let url = match server_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => anyhow::bail!("database URL without a database name"),
        };
        Ok(BenchDatabase {
            admin,
            name: name.to_string(),
            url,
        })
    }

    pub async fn drop_database(self) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists {} with (force)",
            self.name
        )))
        .execute(&self.admin)
        .await;
    }
}

/// Starts the release binary `name` (next to this executable) with `env`, logging to
/// `dir/<name>.log`; it is killed when the handle is dropped.
pub fn spawn_service(name: &str, env: &[(String, String)], dir: &Path) -> anyhow::Result<Child> {
    let bin = std::env::current_exe()?.with_file_name(name);
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let mut command = Command::new(&bin);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} (build it with --release)", bin.display()))
}

/// Waits until `count_sql` (a `select count(*) …`) returns at least `n`.
pub async fn wait_for_count(
    db: &sqlx::PgPool,
    count_sql: &'static str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let count: i64 = sqlx::query_scalar(count_sql)
            .fetch_one(db)
            .await
            .unwrap_or(0);
        if usize::try_from(count)? >= n {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {count} of {n} after {timeout:?}: {count_sql}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The load average (1, 5 and 15 minutes) from `/proc/loadavg`: other work on the machine
/// disturbs a benchmark, so each report says what the load was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// A pool on `url` for the benchmark's own queries in `schema`, named `bench` so that
/// [`service_sessions`] tells it from the services.
pub async fn bench_pool(url: &str, schema: &str) -> anyhow::Result<sqlx::PgPool> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(
            options
                .options([("search_path", schema)])
                .application_name("bench"),
        )
        .await?)
}

/// The services' sessions on `db`'s database, by role, and how many are over TLS: what the
/// reports show as proof of how a run was secured (`ledger_runtime 10 (10 TLS)`).
pub async fn service_sessions(db: &sqlx::PgPool) -> anyhow::Result<String> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "select a.usename::text, count(*), count(*) filter (where s.ssl)
         from pg_stat_activity a join pg_stat_ssl s using (pid)
         where a.datname = current_database()
           and a.application_name in ('ledger', 'invoicing', 'notifier')
         group by 1 order by 1",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .map(|(role, n, tls)| format!("{role} {n} ({tls} TLS)"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Runs `scripts/nats-cluster.sh command` for the cluster kept in `dir` on client ports from
/// `base` (ledger-bench's `--nats r3`, fault-bench's `--cluster`), returning what it printed.
pub async fn nats_cluster_script(dir: &Path, base: u16, command: &str) -> anyhow::Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-cluster.sh");
    let mut script_command = Command::new(&script);
    // The benchmarks' choice of server (BENCH_NATS_SERVER) for the cluster's nodes too.
    if let Ok(server) = std::env::var("BENCH_NATS_SERVER") {
        script_command.env("NATS_SERVER_BIN", server);
    }
    let out = script_command
        .arg(command)
        .env("NATS_CLUSTER_DIR", dir)
        .env("NATS_CLUSTER_BASE", base.to_string())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "nats-cluster.sh {command} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A run's 3-node cluster: `scripts/nats-cluster.sh` with its directory inside the run's and its
/// client ports from `base` (ledger-bench's `--nats r3`, ingest-bench's `--r3`).
#[derive(Clone)]
pub struct LocalCluster {
    dir: PathBuf,
    base: u16,
    urls: String,
}

impl LocalCluster {
    pub fn new(run_dir: &Path, base: u16) -> Self {
        LocalCluster {
            dir: run_dir.join("nats-cluster"),
            base,
            urls: String::new(),
        }
    }

    /// Removes the stores of an earlier start and starts the three nodes.
    pub async fn start_fresh(&mut self) -> anyhow::Result<()> {
        self.script("reset").await?;
        self.urls = self.script("start").await?.trim().to_string();
        anyhow::ensure!(
            !self.urls.is_empty(),
            "nats-cluster.sh start printed no URLs"
        );
        Ok(())
    }

    /// The client URLs, comma separated (empty until started).
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// Stops the nodes, if any run; their stores are kept until the next reset, and removed
    /// with the run's directory.
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.script("stop").await.map(drop)
    }

    async fn script(&self, command: &str) -> anyhow::Result<String> {
        nats_cluster_script(&self.dir, self.base, command).await
    }

    /// The nodes' pids, from the script's pid files.
    pub fn pids(&self) -> Vec<u32> {
        (1..=3)
            .filter_map(|n| std::fs::read_to_string(self.dir.join(format!("n{n}/pid"))).ok())
            .filter_map(|pid| pid.trim().parse().ok())
            .collect()
    }
}

/// Its nodes are stopped when the last handle to a started cluster goes: they run as daemons,
/// not as this process's children, and must not outlive a benchmark that failed.
impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.urls.is_empty() {
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-cluster.sh");
        let _ = std::process::Command::new(script)
            .arg("stop")
            .env("NATS_CLUSTER_DIR", &self.dir)
            .env("NATS_CLUSTER_BASE", self.base.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
