//! Rotating the key-encryption key: replicas that hold the new keyring re-wrap every data key
//! under the new KEK, everything stays readable, and the old KEK can then be retired. Client
//! details an older ledger stored in plaintext are sealed in place when a ledger with a keyring
//! starts.

use billing_proto::ledger::RewrapClientKeysRequest;

use super::*;
use crate::harness::{ADMIN_TOKEN, CLIENT_KEYRING_ROTATED};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_key_encryption_key_keeps_every_client_readable() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = rotate(&system).await;
    system.finish(result).await
}

async fn rotate(system: &System) -> anyhow::Result<()> {
    record(
        system,
        &[
            ("7301", booking("7301", "150.00", last_month(2), jo())),
            ("7302", booking("7302", "120.00", last_month(3), sam())),
            // A name alone is not kept: this row stands in for one an older ledger wrote with
            // the client's details in plaintext (set below).
            (
                "7303",
                booking(
                    "7303",
                    "99.00",
                    last_month(4),
                    serde_json::json!({"name": "Lee"}),
                ),
            ),
        ],
        3,
    )
    .await?;
    let owner = system.db("ledger").await?;
    let mut tx = owner.begin().await?;
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "update bookings set client_name = 'Lee Legacy', client_email = 'lee@example.test'
          where booking_ref = '7303'",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    // The new keyring rolled out: a replica holding it seals the legacy row at start-up, and
    // re-wraps the keys.
    let dir = std::env::temp_dir().join(format!("billing-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rotated = dir.join("client-keyring.json");
    std::fs::write(&rotated, CLIENT_KEYRING_ROTATED)?;
    let keyring = rotated.clone();
    let (addr, stop, task) = system
        .spawn_ledger_with(move |c| c.client_keyring_file = Some(keyring))
        .await?;
    let mut admin = ledger_as(system, addr, ADMIN_TOKEN)?;
    let legacy = eventually(Duration::from_secs(30), || {
        let mut admin = admin.clone();
        async move {
            let shown = show(&mut admin, "lee@example.test").await;
            Ok(shown.ok().filter(|s| !s.bookings.is_empty()))
        }
    })
    .await?;
    let details = legacy.bookings[0].details.clone().unwrap_or_default();
    assert_eq!(details.name, "Lee Legacy");
    let plaintext: i64 = sqlx::query_scalar(
        "select count(*) from bookings where client_name is not null or client_email is not null",
    )
    .fetch_one(&owner)
    .await?;
    assert_eq!(plaintext, 0, "sealed in place");

    let before: Vec<String> = sqlx::query_scalar("select kek_id from client_keys order by id")
        .fetch_all(&owner)
        .await?;
    assert!(before.contains(&"test-kek-1".to_string()), "{before:?}");
    let rewrapped = admin
        .rewrap_client_keys(RewrapClientKeysRequest { limit: 1 })
        .await?
        .into_inner();
    assert_eq!(
        (rewrapped.rewrapped, rewrapped.current_kek.as_str()),
        (1, "test-kek-2")
    );
    let rest = admin
        .rewrap_client_keys(RewrapClientKeysRequest { limit: 0 })
        .await?
        .into_inner();
    assert_eq!(rest.remaining, 0);
    let after: Vec<String> = sqlx::query_scalar("select distinct kek_id from client_keys")
        .fetch_all(&owner)
        .await?;
    assert_eq!(after, ["test-kek-2"]);
    stop.cancel();
    task.await??;

    // The old KEK retired: a replica holding only the new one reads every client.
    let retired = dir.join("retired.json");
    let mut keyring: serde_json::Value = serde_json::from_str(CLIENT_KEYRING_ROTATED)?;
    keyring["keys"]
        .as_object_mut()
        .map(|keys| keys.remove("test-kek-1"));
    std::fs::write(&retired, keyring.to_string())?;
    let (addr, stop, task) = system
        .spawn_ledger_with(move |c| c.client_keyring_file = Some(retired))
        .await?;
    let mut admin = ledger_as(system, addr, ADMIN_TOKEN)?;
    for (email, name) in [
        (JO_EMAIL, JO_NAME),
        (SAM_EMAIL, "Sam Citizen"),
        ("lee@example.test", "Lee Legacy"),
    ] {
        let shown = eventually(Duration::from_secs(30), || {
            let mut admin = admin.clone();
            async move { Ok(show(&mut admin, email).await.ok()) }
        })
        .await?;
        let details = shown.bookings[0].details.clone().unwrap_or_default();
        assert_eq!(details.name, name, "{email}");
    }
    let verified = verify(&mut admin).await?;
    assert!(verified.intact, "{verified:?}");
    stop.cancel();
    task.await??;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
