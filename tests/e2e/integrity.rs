//! The ledger as a tamper-evident record: a price change is a new revision on the hash chain,
//! never an edit, and VerifyIntegrity names the first record someone with a database shell
//! changed or deleted behind the triggers' back.

use std::time::Duration;

use billing_proto::ledger::{
    GetBookingRequest, ListBookingsRequest, VerifyIntegrityRequest, VerifyIntegrityResponse,
};
use rust_decimal::Decimal;

use crate::harness::{CLAIRE_SECRET, System, eventually};

fn body(id: &str, price: &str) -> String {
    serde_json::json!({
        "booking_id": id,
        "price": price,
        "datetime": "2026-10-14 10:00:00",
        "service": {"name": "Massage"}
    })
    .to_string()
}

fn chain_key() -> anyhow::Result<billing_domain::hash::ChainKey> {
    Ok(billing_domain::hash::ChainKey::new(
        crate::harness::CHAIN_KEY.as_bytes().to_vec(),
    )?)
}

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or_default()
}

async fn verify(system: &System) -> anyhow::Result<VerifyIntegrityResponse> {
    let mut ledger = system.ledger_client()?;
    Ok(ledger
        .verify_integrity(VerifyIntegrityRequest {
            tenant_id: "claire".into(),
        })
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn price_changes_are_revisions_and_tampering_is_named() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = scenario(&system).await;
    system.finish(result).await
}

async fn scenario(system: &System) -> anyhow::Result<()> {
    for (webhook_id, id, price) in [
        ("i-1", "8001", "150.00"),
        ("i-2", "8002", "10.01"),
        ("i-3", "8003", "333.33"),
        // The first booking's price drops to 120.00, then rises to 120.05.
        ("i-4", "8001", "120.00"),
        ("i-5", "8001", "120.05"),
    ] {
        let response = system
            .post_signed("claire", webhook_id, &body(id, price), CLAIRE_SECRET)
            .await?;
        anyhow::ensure!(
            response.status() == 202,
            "{webhook_id}: {}",
            response.status()
        );
    }
    let db = system.db("ledger").await?;
    let outcomes: Vec<String> = eventually(Duration::from_secs(20), || async {
        let rows: Vec<String> = sqlx::query_scalar(
            "select outcome from audit_log where source = 'simplybook' order by id",
        )
        .fetch_all(&db)
        .await?;
        Ok((rows.len() == 5).then_some(rows))
    })
    .await?;
    assert_eq!(
        outcomes,
        ["stored", "stored", "stored", "revised", "revised"]
    );

    // The original record is untouched; each revision carries its delta, split by the booking's
    // own rates, with deposit + cash = total exactly.
    let original: (Decimal, Decimal) = sqlx::query_as(
        "select total_amount, platform_fee from bookings where booking_ref = '8001'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(original, (d("150.00"), d("30.00")));
    let revisions: Vec<(i32, i64, Decimal, Decimal, Decimal, Decimal, Decimal)> = sqlx::query_as(
        "select revision_no, chain_seq, total_delta, deposit_delta, cash_delta, fee_delta,
                total_after
         from booking_revisions order by revision_no",
    )
    .fetch_all(&db)
    .await?;
    assert_eq!(
        revisions,
        [
            (
                1,
                4,
                d("-30.00"),
                d("-6.00"),
                d("-24.00"),
                d("-6.00"),
                d("120.00")
            ),
            (
                2,
                5,
                d("0.05"),
                d("0.01"),
                d("0.04"),
                d("0.01"),
                d("120.05")
            ),
        ]
    );
    let mut ledger = system.ledger_client()?;
    let listed = ledger
        .list_bookings(ListBookingsRequest {
            tenant_id: "claire".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .bookings;
    let first = listed
        .iter()
        .find(|b| b.booking_ref == "8001")
        .expect("8001");
    assert_eq!(first.revision, 2);
    assert_eq!(
        first.total.as_ref().map(|m| m.amount.as_str()),
        Some("120.05")
    );
    assert_eq!(
        first.platform_fee.as_ref().map(|m| m.amount.as_str()),
        Some("24.01")
    );

    // One booking with its history and revisions.
    let got = ledger
        .get_booking(GetBookingRequest {
            tenant_id: "claire".into(),
            booking_ref: "8001".into(),
        })
        .await?
        .into_inner();
    let deltas: Vec<(u32, String, String)> = got
        .revisions
        .iter()
        .map(|r| {
            let amount = |m: &Option<billing_proto::Money>| {
                m.as_ref().map(|m| m.amount.clone()).unwrap_or_default()
            };
            (r.revision, amount(&r.total_delta), amount(&r.fee_delta))
        })
        .collect();
    assert_eq!(
        deltas,
        [
            (1, "-30.00".to_string(), "-6.00".to_string()),
            (2, "0.05".to_string(), "0.01".to_string())
        ]
    );
    assert_eq!(got.history.len(), 1, "the price changes moved nothing else");
    let missing = ledger
        .get_booking(GetBookingRequest {
            tenant_id: "claire".into(),
            booking_ref: "nope".into(),
        })
        .await
        .expect_err("unknown booking");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Pages of two, in session order, nothing repeated or skipped; a status filter.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = ledger
            .list_bookings(ListBookingsRequest {
                tenant_id: "claire".into(),
                limit: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        seen.extend(page.bookings.iter().map(|b| b.booking_ref.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    seen.sort();
    assert_eq!(seen, ["8001", "8002", "8003"]);
    let cancelled = ledger
        .list_bookings(ListBookingsRequest {
            tenant_id: "claire".into(),
            status: "cancelled".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(cancelled.bookings.is_empty());
    let bad = ledger
        .list_bookings(ListBookingsRequest {
            tenant_id: "claire".into(),
            status: "lost".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown status");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let intact = verify(system).await?;
    assert!(intact.intact, "{intact:?}");
    assert_eq!(intact.records_checked, 5);

    // A superuser changes a fee behind the trigger's back: named, with both hashes.
    sqlx::raw_sql(
        "alter table bookings disable trigger bookings_immutable;
         update bookings set platform_fee = 0.01 where booking_ref = '8002';
         alter table bookings enable trigger bookings_immutable;",
    )
    .execute(&db)
    .await?;
    let report = verify(system).await?;
    assert!(!report.intact);
    let v = report.first_violation.expect("violation");
    assert_eq!(
        (v.chain_seq, v.booking_ref.as_str(), v.record_kind.as_str()),
        (2, "8002", "booking")
    );
    assert!(v.reason.contains("do not match"), "{}", v.reason);
    assert_ne!(v.expected_hash, v.stored_hash);
    // The operator sees the same from billingctl, with a distinct exit status.
    let out = system
        .billingctl(&["bookings", "verify", "--tenant", "claire"])
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("chain BROKEN at record 2 (booking 8002)"),
        "{stdout}"
    );

    // Putting the fee back restores the chain; deleting a revision breaks it again.
    sqlx::raw_sql(
        "alter table bookings disable trigger bookings_immutable;
         update bookings set platform_fee = 2.00 where booking_ref = '8002';
         alter table bookings enable trigger bookings_immutable;",
    )
    .execute(&db)
    .await?;
    assert!(verify(system).await?.intact);
    let out = system
        .billingctl(&["bookings", "verify", "--tenant", "claire"])
        .await?;
    assert!(out.status.success(), "{out:?}");
    // A revision's deposit and cash after it are not in its hash, but must follow from what is:
    // moving a unit from cash to deposit (the split still adds up) is named.
    let shift = |by: &str| {
        format!(
            "alter table booking_revisions disable trigger booking_revisions_append_only;
             update booking_revisions set deposit_after = deposit_after + {by},
                 cash_after = cash_after - {by} where revision_no = 1;
             alter table booking_revisions enable trigger booking_revisions_append_only;"
        )
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(shift("1")))
        .execute(&db)
        .await?;
    let v = verify(system).await?.first_violation.expect("violation");
    assert_eq!((v.chain_seq, v.record_kind.as_str()), (4, "revision"));
    assert!(
        v.reason.contains("deposit after the revision is"),
        "{}",
        v.reason
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(shift("-1")))
        .execute(&db)
        .await?;
    assert!(verify(system).await?.intact);
    // An amount finer than the currency's minor unit is refused by the table itself, even for
    // the owner with the triggers off.
    let err = sqlx::raw_sql(
        "alter table bookings disable trigger bookings_immutable;
         update bookings set total_amount = total_amount + 0.004,
             cash_amount = cash_amount + 0.004 where booking_ref = '8002';
         alter table bookings enable trigger bookings_immutable;",
    )
    .execute(&db)
    .await
    .expect_err("sub-cent amount");
    assert!(
        err.to_string()
            .contains("bookings_amounts_at_currency_scale"),
        "{err}"
    );
    sqlx::raw_sql(
        "alter table booking_revisions disable trigger booking_revisions_append_only;
         delete from booking_revisions where revision_no = 1;
         alter table booking_revisions enable trigger booking_revisions_append_only;",
    )
    .execute(&db)
    .await?;
    let v = verify(system).await?.first_violation.expect("violation");
    assert_eq!((v.chain_seq, v.reason.as_str()), (4, "record 4 is missing"));
    Ok(())
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewritten_and_rechained_history_is_caught_by_the_anchored_head() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = rechained(&system).await;
    system.finish(result).await
}

async fn rechained(system: &System) -> anyhow::Result<()> {
    for (webhook_id, id, price) in [
        ("a-1", "8101", "150.00"),
        ("a-2", "8102", "80.00"),
        ("a-3", "8103", "60.00"),
    ] {
        let response = system
            .post_signed("claire", webhook_id, &body(id, price), CLAIRE_SECRET)
            .await?;
        anyhow::ensure!(response.status() == 202, "{webhook_id}");
    }
    // The ledger anchors the head outside the database (every second in tests).
    eventually(Duration::from_secs(30), || async {
        let report = verify(system).await?;
        Ok((report.intact && report.anchored_seq == 3).then_some(()))
    })
    .await?;

    // Someone with the owner's power — and, worst case, the chain key — lowers booking 8102 to
    // 8.00 behind the triggers' back and re-chains every record after it, so each hash matches
    // its fields and links again.
    let key = chain_key()?;
    let db = system.db("ledger").await?;
    let lowered = ("8102", [d("8.00"), d("1.60"), d("6.40"), d("1.60")]);
    rechain(&db, Some(&key), Some(lowered)).await?;

    // Every link holds, so only the anchor can tell: the anchored record's hash changed.
    let report = verify(system).await?;
    assert!(!report.intact, "{report:?}");
    let v = report.first_violation.expect("violation");
    assert_eq!(v.chain_seq, 3);
    assert!(
        v.reason.contains("no longer has the hash anchored"),
        "{}",
        v.reason
    );

    // New bookings move the head, but a rewritten chain is never anchored again: the rewrite
    // stays visible however long the ledger keeps running.
    let response = system
        .post_signed("claire", "a-4", &body("8104", "40.00"), CLAIRE_SECRET)
        .await?;
    anyhow::ensure!(response.status() == 202);
    eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&db)
            .await?;
        Ok((n == 4).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = verify(system).await?;
    assert!(!later.intact, "{later:?}");
    assert_eq!(later.anchored_seq, 3, "the head was not re-anchored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chains_are_keyed_and_only_an_explicit_rekey_keys_an_intact_chain() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = rekeyed(&system).await;
    system.finish(result).await
}

/// Rewrites Claire's bookings behind the triggers' back, as someone with the owner's power
/// would: `change` gives one booking new amounts (total, deposit, cash, fee), and every record is
/// re-chained so each hash matches its fields and links again — keyed with `key`, or unkeyed as
/// a ledger wrote them before a chain key was set.
async fn rechain(
    db: &sqlx::PgPool,
    key: Option<&billing_domain::hash::ChainKey>,
    change: Option<(&str, [Decimal; 4])>,
) -> anyhow::Result<()> {
    type Stored = (
        i64,
        String,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
    );
    let records: Vec<Stored> = sqlx::query_as(
        "select chain_seq, booking_ref, total_amount, deposit_amount, cash_amount,
                platform_fee, deposit_rate, platform_fee_rate
         from bookings order by chain_seq",
    )
    .fetch_all(db)
    .await?;
    let mut prev = billing_domain::hash::GENESIS_HASH.to_string();
    let mut sql = String::from("alter table bookings disable trigger bookings_immutable;");
    for (seq, booking_ref, mut total, mut deposit, mut cash, mut fee, deposit_rate, fee_rate) in
        records
    {
        if let Some((_, [t, dp, c, f])) = change.filter(|(r, _)| *r == booking_ref) {
            (total, deposit, cash, fee) = (t, dp, c, f);
        }
        let hash = billing_domain::hash::FinancialFields {
            tenant_id: "claire",
            booking_ref: &booking_ref,
            currency: billing_domain::Currency::AUD,
            total,
            deposit,
            cash,
            platform_fee: fee,
            deposit_rate,
            fee_rate,
        }
        .chained_hash_with(&prev, key);
        sql.push_str(&format!(
            "update bookings set total_amount = {total}, deposit_amount = {deposit},
                cash_amount = {cash}, platform_fee = {fee}, prev_hash = '{prev}',
                record_hash = '{hash}' where chain_seq = {seq};"
        ));
        prev = hash;
    }
    sql.push_str(&format!(
        "update chain_heads set last_hash = '{prev}' where tenant_id = 'claire';
         alter table bookings enable trigger bookings_immutable;"
    ));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(db).await?;
    Ok(())
}

async fn rekeyed(system: &System) -> anyhow::Result<()> {
    for (webhook_id, id, price) in [("k-1", "8201", "150.00"), ("k-2", "8202", "80.00")] {
        let response = system
            .post_signed("claire", webhook_id, &body(id, price), CLAIRE_SECRET)
            .await?;
        anyhow::ensure!(response.status() == 202, "{webhook_id}");
    }
    let db = system.db("ledger").await?;
    eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&db)
            .await?;
        Ok((n == 2).then_some(()))
    })
    .await?;
    // The harness's ledger keys its chain: records hashed without the key do not verify.
    assert!(verify(system).await?.intact);
    // Once the keyed head is anchored (else the ledger's anchoring, every second here, could
    // anchor the unkeyed rewrite below as the first anchor, and the re-keyed chain would then
    // contradict it).
    eventually(Duration::from_secs(30), || async {
        Ok((verify(system).await?.anchored_seq == 2).then_some(()))
    })
    .await?;
    rechain(&db, None, None).await?;
    let report = verify(system).await?;
    assert!(!report.intact, "an unkeyed record must not pass as keyed");
    assert_eq!(report.first_violation.map(|v| v.chain_seq), Some(1));

    // A keyed ledger refuses to start appending to a chain that is not keyed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = ledger::Config {
        listen_addr: listener.local_addr()?,
        ..system.ledger_config()
    };
    let refused = ledger::run(config, listener, tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("an unkeyed chain");
    assert!(refused.to_string().contains("not keyed yet"), "{refused}");

    // A migration never re-keys: a chain rewritten without the key stays broken.
    let url = system
        .db
        .as_ref()
        .map(|d| d.url.clone())
        .unwrap_or_default();
    ledger::migrate(&url).await?;
    assert!(
        !verify(system).await?.intact,
        "not laundered by a migration"
    );
    // The operator's explicit one-off, as when the key is first set: the intact chain is
    // re-keyed (to the same hashes its anchor names).
    let key_file = std::env::temp_dir().join(format!("chain-{}.key", system.namespace));
    std::fs::write(&key_file, crate::harness::CHAIN_KEY)?;
    let rekeyed = ledger::rekey(&url, Some(&key_file)).await?;
    assert_eq!(rekeyed, ["claire"]);
    assert!(verify(system).await?.intact, "re-keyed");

    // An unkeyed chain that does not verify is refused, not laundered into a keyed one.
    rechain(&db, None, None).await?;
    sqlx::raw_sql(
        "alter table bookings disable trigger bookings_immutable;
         update bookings set platform_fee = 0.01 where booking_ref = '8202';
         alter table bookings enable trigger bookings_immutable;",
    )
    .execute(&db)
    .await?;
    let refused = ledger::rekey(&url, Some(&key_file))
        .await
        .expect_err("a tampered chain is not re-keyed");
    assert!(
        refused.to_string().contains("is not intact (record 2"),
        "{refused}"
    );
    std::fs::remove_file(&key_file).ok();
    Ok(())
}
