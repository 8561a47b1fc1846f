//! At rest, a client's details are only ever ciphertext; they open for the roles that bill, and
//! only on the booking they were sealed for.

use super::*;
use crate::harness::{BILLING_TOKEN, VIEWER_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_details_are_ciphertext_at_rest_and_open_only_for_billing_roles()
-> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = sealed_at_rest(&system).await;
    system.finish(result).await
}

async fn sealed_at_rest(system: &System) -> anyhow::Result<()> {
    let anon = serde_json::json!({"name": "Anon Only"});
    record(
        system,
        &[
            ("7101", booking("7101", "150.00", last_month(2), jo())),
            ("7102", booking("7102", "90.00", last_month(5), jo())),
            ("7103", booking("7103", "120.00", last_month(6), sam())),
            ("7104", booking("7104", "80.00", last_month(7), anon)),
        ],
        4,
    )
    .await?;

    // As the superuser: no table of the ledger's schema holds a client's details as text or
    // as bytes.
    let owner = system.db("ledger").await?;
    for table in ["bookings", "client_keys", "client_lookups", "audit_log"] {
        let dump: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select coalesce(string_agg(t::text, '|'), '') from {table} t"
        )))
        .fetch_one(&owner)
        .await?;
        for personal in [
            JO_EMAIL,
            JO_NAME,
            "400 111 222",
            "400111222",
            SAM_EMAIL,
            "Anon Only",
        ] {
            assert!(!dump.contains(personal), "{table} holds {personal:?}");
        }
    }
    let sealed: Vec<Vec<u8>> =
        sqlx::query_scalar("select client_sealed from bookings where client_sealed is not null")
            .fetch_all(&owner)
            .await?;
    assert_eq!(
        sealed.len(),
        3,
        "Jo's two bookings and Sam's; a name alone is not kept"
    );
    for blob in &sealed {
        assert!(
            !blob
                .windows(JO_EMAIL.len())
                .any(|w| w == JO_EMAIL.as_bytes())
        );
    }
    let keys: i64 = sqlx::query_scalar("select count(*) from client_keys")
        .fetch_one(&owner)
        .await?;
    assert_eq!(keys, 2, "one data key per client");

    // The roles that bill see the details; a viewer is refused.
    let mut billing = ledger_as(system, system.ledger, BILLING_TOKEN)?;
    let jo_bookings = show(&mut billing, "  JO.Bloggs@Example.TEST ")
        .await?
        .bookings;
    let refs: Vec<&str> = jo_bookings.iter().map(|b| b.booking_ref.as_str()).collect();
    assert_eq!(refs, ["7101", "7102"]);
    let details = jo_bookings[0].details.clone().unwrap_or_default();
    assert_eq!(
        (
            details.name.as_str(),
            details.email.as_str(),
            details.phone.as_str()
        ),
        (JO_NAME, JO_EMAIL, JO_PHONE)
    );
    assert!(jo_bookings[0].erased_at.is_none());
    let mut viewer = ledger_as(system, system.ledger, VIEWER_TOKEN)?;
    let refused = show(&mut viewer, JO_EMAIL).await.expect_err("a viewer");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        show(&mut billing, "nobody@example.test")
            .await?
            .bookings
            .is_empty()
    );

    // Every record chains its client's identity digest, and the chain verifies.
    let verified = verify(&mut billing).await?;
    assert!(verified.intact, "{verified:?}");
    let digests: Vec<String> =
        sqlx::query_scalar("select client_digest from bookings order by booking_ref")
            .fetch_all(&owner)
            .await?;
    assert_eq!(digests[0], digests[1], "Jo's bookings share one identity");
    assert_ne!(digests[0], digests[2]);
    assert_eq!(digests[3], "", "no identity for a name alone");

    // Jo's sealed details copied onto Sam's booking (as someone with the owner's rights and the
    // triggers off could): they do not open there, and are never shown as Sam's.
    let mut tx = owner.begin().await?;
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "update bookings s set client_sealed = j.client_sealed, client_key_id = j.client_key_id
           from bookings j where j.booking_ref = '7101' and s.booking_ref = '7103'",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let err = show(&mut billing, JO_EMAIL)
        .await
        .expect_err("a moved ciphertext");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");

    // No foreign key ties a booking to its client's key (migration 0011): the integrity check
    // does. A key of the tenant is fine to it (the ciphertext itself refuses to open, above);
    // one that is not the tenant's is named.
    assert!(verify(&mut billing).await?.intact);
    let mut tx = owner.begin().await?;
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    sqlx::query("update bookings set client_key_id = gen_random_uuid() where booking_ref = '7102'")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let verified = verify(&mut billing).await?;
    let violation = verified.first_violation.clone().unwrap_or_default();
    assert!(!verified.intact);
    assert_eq!(
        (
            violation.booking_ref.as_str(),
            violation.record_kind.as_str()
        ),
        ("7102", "booking"),
        "{verified:?}"
    );
    assert!(
        violation
            .reason
            .contains("which is not one of the tenant's client keys"),
        "{violation:?}"
    );
    Ok(())
}
