//! PostgreSQL: each service connects with its own schema first on the search path and applies
//! its own migrations (with their own history table) before it serves. Two roles: the schema's
//! owner applies migrations (`--migrate-only`) and grants the service's runtime role
//! (`<schema>_runtime`) only what the service does; the service runs as that role.
//!
//! Services' queries are checked at build time (`sqlx::query!` and its siblings, against the
//! offline data in `.sqlx/` that `scripts/sqlx.sh prepare` writes from one database holding every
//! schema), so they name their tables with the schema (`notifier.emails`): tables of different
//! schemas share names (`outbox`). The search path stays for what is not checked at build time:
//! the outbox relay, shared by services whose tables live in different schemas. Here, what names
//! the caller's schema or role is built at run time too, each with a test that runs it on the
//! real database (named where it is built); the rest is checked.
//! [`text_enum!`](crate::text_enum!) declares a status enum stored as `text`, with its SQL type.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Connects a pool whose connections use `schema` (created by [`migrate`] if missing).
pub async fn connect(url: &str, schema: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options
        .options([("search_path", schema)])
        .application_name(schema);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// Applies `migrator` inside `schema`, creating the schema first — when connected as the role
/// that owns the schema (or when there is none yet). Connected as another role (a service's
/// least-privilege runtime role, which cannot change the schema), nothing is applied: every
/// migration must already be, or start-up fails saying who must apply them.
pub async fn migrate(
    pool: &PgPool,
    mut migrator: Migrator,
    schema: &'static str,
) -> Result<(), sqlx::migrate::MigrateError> {
    match schema_owner(pool, schema).await? {
        Owner::Nobody if !may_create_schemas(pool).await? => {
            return Err(refusal(format!(
                "schema {schema} does not exist and this role may not create it: run the \
                 service with --migrate-only as the role that is to own it"
            )));
        }
        Owner::Us | Owner::Nobody => {
            migrator.create_schema(schema);
            return migrator.run(pool).await;
        }
        Owner::Other => {}
    }
    // The schema is the caller's, so this query is built at run time: the end-to-end test
    // `the_ledgers_runtime_role_cannot_change_or_delete_a_record_or_its_guards`
    // (tests/e2e/integrity/privileges.rs) runs it as the ledger's runtime role.
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select version, checksum from {schema}._sqlx_migrations where success"
    )))
    .fetch_all(pool)
    .await?;
    for m in migrator.iter() {
        match applied.iter().find(|(version, _)| *version == m.version) {
            None => {
                return Err(refusal(format!(
                    "migration {} of schema {schema} is not applied, and this role does not \
                     own the schema: run the service with --migrate-only as the schema's owner",
                    m.version
                )));
            }
            // The same check sqlx makes as the owner: what was applied is what this build has.
            Some((_, checksum)) if *checksum != *m.checksum => {
                return Err(sqlx::migrate::MigrateError::VersionMismatch(m.version));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn may_create_schemas(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"select has_database_privilege(current_database(), 'CREATE') as "may!""#)
        .fetch_one(pool)
        .await
}

fn refusal(message: String) -> sqlx::migrate::MigrateError {
    sqlx::migrate::MigrateError::Source(message.into())
}

enum Owner {
    Us,
    Other,
    /// The schema does not exist yet: whoever may create it will own it.
    Nobody,
}

async fn schema_owner(pool: &PgPool, schema: &str) -> Result<Owner, sqlx::Error> {
    let ours = sqlx::query_scalar!(
        r#"select pg_get_userbyid(nspowner) = current_user as "ours!"
           from pg_catalog.pg_namespace where nspname = $1"#,
        schema
    )
    .fetch_optional(pool)
    .await?;
    Ok(match ours {
        Some(true) => Owner::Us,
        Some(false) => Owner::Other,
        None => Owner::Nobody,
    })
}

/// The least-privilege role a service runs as: `<schema>_runtime` (e.g. `ledger_runtime`),
/// created by whoever administers the database, with LOGIN.
pub fn runtime_role(schema: &str) -> String {
    format!("{schema}_runtime")
}

/// Grants the service's runtime role ([`runtime_role`]) exactly `grants` (SQL statements that
/// name the role as `{role}`), after revoking what it had, when that role exists and the
/// connected role owns the schema. Run after every migration, so new tables get their grants.
pub async fn grant_runtime(
    pool: &PgPool,
    schema: &'static str,
    grants: &str,
) -> Result<(), sqlx::Error> {
    let role = runtime_role(schema);
    let exists = sqlx::query_scalar!(
        r#"select exists (select 1 from pg_catalog.pg_roles where rolname = $1) as "exists!""#,
        role
    )
    .fetch_one(pool)
    .await?;
    if !exists || !matches!(schema_owner(pool, schema).await?, Owner::Us) {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    // Built at run time (the schema and role are the caller's); every end-to-end test's services
    // are migrated by their owner with the runtime roles present, so each runs it, and
    // `the_ledgers_runtime_role_cannot_change_or_delete_a_record_or_its_guards`
    // (tests/e2e/integrity/privileges.rs) checks what it granted.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "revoke all on all tables in schema {schema} from {role};
         revoke all on all sequences in schema {schema} from {role};
         {}",
        grants.replace("{role}", &role)
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(schema, role, "runtime role granted");
    Ok(())
}

/// Whether a database error is a violation of the named unique constraint or index.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(constraint))
}

/// Whether a database error may go away by itself (connection lost, server restarting, deadlock
/// or serialization failure, out of resources), so the work should be retried. Anything else
/// (bad data, a violated constraint) fails the same way every time.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}
