//! A price change is a new revision on the hash chain, never an edit, and VerifyIntegrity names
//! the first record someone with a database shell changed or deleted behind the triggers' back.

use std::time::Duration;

use billing_proto::ledger::{GetBookingRequest, ListBookingsRequest};
use rust_decimal::Decimal;

use crate::harness::{CLAIRE_SECRET, System, eventually};

use super::support::{body, d, verify};

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
