//! The ledger's runtime role cannot change or delete a record or the guards that protect them.

use std::time::Duration;

use rust_decimal::Decimal;

use crate::harness::{CLAIRE_SECRET, System, eventually};

use super::support::{body, d, verify};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ledgers_runtime_role_cannot_change_or_delete_a_record_or_its_guards()
-> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = least_privilege(&system).await;
    system.finish(result).await
}

async fn least_privilege(system: &System) -> anyhow::Result<()> {
    // The ledger runs as ledger_runtime (the harness, like production, migrates as the owner).
    let response = system
        .post_signed("claire", "msg_lp_1", &body("9101", "150.00"), CLAIRE_SECRET)
        .await?;
    assert_eq!(response.status(), 202);
    let owner = system.db("ledger").await?;
    eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&owner)
            .await?;
        Ok((n == 1).then_some(()))
    })
    .await?;
    let runtime_url = system
        .db
        .as_ref()
        .map(|db| db.runtime_url(ledger::SCHEMA))
        .ok_or_else(|| anyhow::anyhow!("no database"))?;
    let runtime = billing_runtime::db::connect(&runtime_url, ledger::SCHEMA, 1).await?;
    let user: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&runtime)
        .await?;
    assert_eq!(user, "ledger_runtime");
    // What the ledger does, it may: read, and move a booking's current state.
    let n: i64 = sqlx::query_scalar("select count(*) from bookings")
        .fetch_one(&runtime)
        .await?;
    assert_eq!(n, 1);
    // Started as the runtime role, a service applies nothing: it checks that every migration
    // of this build is applied, exactly as built (same checksum), and otherwise says who must
    // apply them.
    billing_runtime::db::migrate(
        &runtime,
        sqlx::migrate!("../migrations/ledger"),
        ledger::SCHEMA,
    )
    .await?;
    let mut edited = sqlx::migrate!("../migrations/ledger");
    let mut migrations = edited.migrations.to_vec();
    migrations[0].checksum = std::borrow::Cow::Owned(vec![0; 48]);
    edited.migrations = std::borrow::Cow::Owned(migrations);
    let err = billing_runtime::db::migrate(&runtime, edited, ledger::SCHEMA)
        .await
        .expect_err("an edited migration");
    assert!(
        matches!(err, sqlx::migrate::MigrateError::VersionMismatch(1)),
        "{err}"
    );
    let elsewhere = billing_runtime::db::connect(&runtime_url, "no_such_schema", 1).await?;
    let err = billing_runtime::db::migrate(
        &elsewhere,
        sqlx::migrate!("../migrations/ledger"),
        "no_such_schema",
    )
    .await
    .expect_err("a schema the runtime role may not create");
    assert!(
        err.to_string()
            .contains("does not exist and this role may not create it"),
        "{err}"
    );
    // The tables' currency-scale check knows exactly the currencies the code knows.
    for currency in billing_domain::Currency::all() {
        let exponent: Option<i32> = sqlx::query_scalar("select currency_exponent($1)")
            .bind(currency.code())
            .fetch_one(&runtime)
            .await?;
        assert_eq!(
            exponent,
            i32::try_from(currency.exponent()).ok(),
            "{currency}"
        );
    }
    let unknown: Option<i32> = sqlx::query_scalar("select currency_exponent('XXX')")
        .fetch_one(&runtime)
        .await?;
    assert_eq!(unknown, None);
    // What only a migration may, it may not: every attempt is refused by PostgreSQL itself
    // (42501 insufficient privilege), before any trigger runs.
    for attack in [
        "update bookings set total_amount = 1",
        "update bookings set record_hash = 'x'",
        "delete from bookings",
        "delete from audit_log",
        "update audit_log set outcome = 'stored'",
        "truncate bookings",
        "alter table bookings disable trigger bookings_immutable",
        "drop trigger bookings_immutable on bookings",
        "update booking_revisions set total_after = 1",
        "create table shadow (id int)",
    ] {
        let err = sqlx::query(sqlx::AssertSqlSafe(attack))
            .execute(&runtime)
            .await
            .expect_err(attack);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{attack}: {err}");
    }
    let total: Decimal = sqlx::query_scalar("select total_amount from bookings")
        .fetch_one(&owner)
        .await?;
    assert_eq!(total, d("150.00"));
    // It may write the outbox (the ledger's events go through it), but the relay publishes
    // only the ledger's own subjects: a forged invoice event never leaves.
    let forged = system.subjects().invoice("paid");
    sqlx::query("insert into outbox (subject, message_id, payload) values ($1, 'forged-1', '')")
        .bind(&forged)
        .execute(&runtime)
        .await?;
    eventually(Duration::from_secs(30), || async {
        let done: Option<bool> = sqlx::query_scalar(
            "select published_at is not null from outbox where message_id = 'forged-1'",
        )
        .fetch_optional(&owner)
        .await?;
        Ok((done == Some(true)).then_some(()))
    })
    .await?;
    assert_eq!(
        system.count_in("INVOICING", &forged).await?,
        0,
        "never published"
    );
    // And the chain still verifies.
    assert!(verify(system).await?.intact);
    Ok(())
}
