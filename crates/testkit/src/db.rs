//! A fresh PostgreSQL database per test, dropped at the end (and swept if a test crashed).

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};

/// Databases created by tests start with this, followed by their creation time.
const PREFIX: &str = "billing_test_";
/// Leftovers older than this (from crashed tests) are dropped by the next test run.
const STALE_AFTER_SECS: u64 = 3 * 60 * 60;

/// The server tests use (`TEST_DATABASE_URL`, default the local `postgres` user's `test` db).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".into())
}

pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<Self> {
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin).await?;
        sweep_stale(&mut conn).await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let name = format!(
            "{PREFIX}{now}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
            .await?;
        ensure_runtime_roles(&mut conn).await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Ok(TestDatabase {
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// The database's URL for a service's least-privilege runtime role (`ledger_runtime` for
    /// schema `ledger`), which the owner's migration step has granted what the service does.
    pub fn runtime_url(&self, schema: &str) -> String {
        let role = format!("{schema}_runtime");
        match self.url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{role}:{role}-dev-only@{host}")
            }
            None => self.url.clone(),
        }
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&admin_url()).await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "drop database if exists {} with (force)",
            self.name
        )))
        .await?;
        Ok(())
    }
}

async fn sweep_stale(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "select datname from pg_database where datname like 'billing\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for name in names {
        let created: u64 = name
            .trim_start_matches(PREFIX)
            .split('_')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > STALE_AFTER_SECS {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .await;
        }
    }
}

/// The services' runtime roles exist on the test server (roles are server-wide), each able to
/// log in with an obviously fake password; they own nothing.
async fn ensure_runtime_roles(conn: &mut PgConnection) -> anyhow::Result<()> {
    for schema in ["ledger", "invoicing", "notifier"] {
        let role = format!("{schema}_runtime");
        // Tests start in parallel: a role another test just made is no error.
        conn.execute(sqlx::AssertSqlSafe(format!(
            "do $$ begin
                 create role {role} login password '{role}-dev-only';
             exception when duplicate_object or unique_violation then null;
             end $$"
        )))
        .await?;
    }
    Ok(())
}
