//! The keyed hash chain: a rewritten and re-chained history is caught by the anchored head, and
//! only an explicit rekey keys an intact unkeyed chain.

use std::time::Duration;

use rust_decimal::Decimal;

use crate::harness::{CLAIRE_SECRET, System, eventually};

use super::support::{body, d, verify};

fn chain_key() -> anyhow::Result<billing_domain::hash::ChainKey> {
    Ok(billing_domain::hash::ChainKey::new(
        crate::harness::CHAIN_KEY.as_bytes().to_vec(),
    )?)
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
        Option<String>,
    );
    let records: Vec<Stored> = sqlx::query_as(
        "select chain_seq, booking_ref, total_amount, deposit_amount, cash_amount,
                platform_fee, deposit_rate, platform_fee_rate, client_digest
         from bookings order by chain_seq",
    )
    .fetch_all(db)
    .await?;
    let mut prev = billing_domain::hash::GENESIS_HASH.to_string();
    let mut sql = String::from("alter table bookings disable trigger bookings_immutable;");
    for (
        seq,
        booking_ref,
        mut total,
        mut deposit,
        mut cash,
        mut fee,
        deposit_rate,
        fee_rate,
        client_digest,
    ) in records
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
            client_digest: client_digest.as_deref(),
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
