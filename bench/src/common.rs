//! What the service benchmarks share: a database of their own, release service binaries run as
//! child processes, and waiting for a count to be reached.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

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
