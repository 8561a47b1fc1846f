//! The monthly close: periods in each tenant's zone (DST months, the last day at 23:30, a leap
//! February, yen), cent-exact sums, and exactly one invoice under concurrent and repeated closes.

use std::time::Duration;

use billing_proto::invoicing::{GetInvoiceRequest, ListInvoicesRequest, Outcome};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::harness::{System, eventually};

use super::support::{Publisher, client, close, issued, ledger_has, money, refs, total, utc};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn months_follow_each_tenants_zone_across_dst_leap_years_and_yen() -> anyhow::Result<()> {
    let system = System::builder().ledger().invoicing().start().await?;
    let result = periods(&system).await;
    system.finish(result).await
}

async fn periods(system: &System) -> anyhow::Result<()> {
    let pb = Publisher::new(system).await?;
    // Sydney: April 2026 ends daylight saving (5 April), October 2026 starts it (4 October).
    for (id, at) in [
        ("A-before", "2026-03-31T23:30:00+11:00"),
        ("A-first", "2026-04-01T00:00:00+11:00"),
        ("A-dst-end", "2026-04-05T02:30:00+10:00"),
        ("A-last", "2026-04-30T23:30:00+10:00"),
        ("A-after", "2026-05-01T00:00:00+10:00"),
        ("O-first", "2026-10-01T00:00:00+10:00"),
        ("O-last", "2026-10-31T23:30:00+11:00"),
        ("O-after", "2026-11-01T00:00:00+11:00"),
        ("F-leap", "2024-02-29T23:30:00+11:00"),
        ("F-march", "2024-03-01T00:00:00+11:00"),
    ] {
        pb.book("claire", id, "10.01", "confirmed", at).await?;
    }
    // Tokyo, in yen (no minor unit): fees 200.2 → 200, 500.4 → 500, 199.8 → 200.
    for (id, price, at) in [
        ("K1", "1001", "2026-10-01T00:00:00+09:00"),
        ("K2", "2502", "2026-10-15T12:00:00+09:00"),
        ("K3", "999", "2026-10-31T23:30:00+09:00"),
        ("K-sydney-oct", "5000", "2026-09-30T23:30:00+09:00"),
    ] {
        pb.book("kenji", id, price, "confirmed", at).await?;
    }
    ledger_has(system, 14).await?;
    let mut invoicing = client(system).await?;

    let april = issued(&mut invoicing, "claire", "2026-04").await?;
    assert_eq!(refs(&april), ["A-first", "A-dst-end", "A-last"]);
    assert_eq!(
        utc(april.period_start.as_ref()),
        "2026-03-31T13:00:00+00:00"
    );
    assert_eq!(utc(april.period_end.as_ref()), "2026-04-30T14:00:00+00:00");
    // 10.01 × 20 % = 2.002 → 2.00 per line.
    assert_eq!(total(&april), "6.00");

    // A dry run shows the invoice and writes nothing.
    let dry = close(&mut invoicing, "claire", "2026-10", true).await?;
    assert_eq!(dry.outcome(), Outcome::WouldIssue);
    let would = dry.invoice.unwrap_or_default();
    assert_eq!(would.number, "");
    assert_eq!(total(&would), "4.00");
    let listed = invoicing
        .list_invoices(ListInvoicesRequest {
            tenant_id: "claire".into(),
            period: "2026-10".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .invoices;
    assert!(listed.is_empty(), "a dry run stored {listed:?}");

    let october = issued(&mut invoicing, "claire", "2026-10").await?;
    assert_eq!(refs(&october), ["O-first", "O-last"]);
    assert_eq!(
        utc(october.period_start.as_ref()),
        "2026-09-30T14:00:00+00:00"
    );
    assert_eq!(
        utc(october.period_end.as_ref()),
        "2026-10-31T13:00:00+00:00"
    );

    let february = issued(&mut invoicing, "claire", "2024-02").await?;
    assert_eq!(refs(&february), ["F-leap"]);
    // Numbers run per tenant in issue order, without gaps.
    assert_eq!(
        [&april.number, &october.number, &february.number],
        ["CLAIRE-2026-0001", "CLAIRE-2026-0002", "CLAIRE-2024-0003"]
    );

    let kenji = issued(&mut invoicing, "kenji", "2026-10").await?;
    assert_eq!(refs(&kenji), ["K1", "K2", "K3"]);
    assert_eq!(total(&kenji), "900");
    assert_eq!(
        kenji.total.as_ref().map(|m| m.currency_code.as_str()),
        Some("JPY")
    );
    assert_eq!(
        utc(kenji.period_start.as_ref()),
        "2026-09-30T15:00:00+00:00"
    );
    // An empty month issues nothing, and says so.
    let empty = close(&mut invoicing, "kenji", "2026-08", false).await?;
    assert_eq!(empty.outcome(), Outcome::NoBillableBookings);
    let db = system.db("invoicing").await?;
    let recorded: Vec<String> = sqlx::query_scalar(
        "select outcome from close_outcomes where tenant_id = 'kenji' order by id",
    )
    .fetch_all(&db)
    .await?;
    assert_eq!(recorded, ["issued", "nothing_billable"]);
    // The current month has not ended anywhere: refused with a reason.
    let current =
        billing_domain::BillingPeriod::containing(chrono::Utc::now(), chrono_tz::Asia::Tokyo)
            .to_string();
    let early = close(&mut invoicing, "kenji", &current, false).await?;
    assert_eq!(early.outcome(), Outcome::Failed);
    assert!(early.error.contains("has not ended"), "{}", early.error);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_bookings_sum_to_the_cent_and_concurrent_closes_issue_one_invoice()
-> anyhow::Result<()> {
    let system = System::builder().ledger().invoicing().start().await?;
    let result = exactly_once(&system).await;
    system.finish(result).await
}

async fn exactly_once(system: &System) -> anyhow::Result<()> {
    let pb = Publisher::new(system).await?;
    let mut expected = Decimal::ZERO;
    for n in 0..500_i64 {
        // Prices whose 20 % fee lands on every rounding case: .xx0, .xx5 (half up), others.
        let price = Decimal::new(1001 + n * 37, 2);
        expected += (price * Decimal::new(20, 2))
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        let day = 1 + n % 30;
        let at = format!("2026-09-{day:02}T{:02}:15:00+10:00", n % 24);
        pb.book(
            "claire",
            &format!("S{n:03}"),
            &price.to_string(),
            "confirmed",
            &at,
        )
        .await?;
    }
    ledger_has(system, 500).await?;
    let mut a = client(system).await?;
    let mut b = client(system).await?;
    let (first, second) = tokio::join!(
        close(&mut a, "claire", "2026-09", false),
        close(&mut b, "claire", "2026-09", false)
    );
    let (first, second) = (first?, second?);
    let mut outcomes = [first.outcome(), second.outcome()];
    outcomes.sort_by_key(|o| *o as i32);
    assert_eq!(outcomes, [Outcome::Issued, Outcome::AlreadyIssued]);
    let id = first.invoice.as_ref().map(|i| i.id.clone());
    assert_eq!(id, second.invoice.as_ref().map(|i| i.id.clone()));
    // A retried CronJob gets the same invoice back.
    let retried = close(&mut a, "claire", "2026-09", false).await?;
    assert_eq!(retried.outcome(), Outcome::AlreadyIssued);
    assert_eq!(retried.invoice.as_ref().map(|i| i.id.clone()), id);

    let invoice = a
        .get_invoice(GetInvoiceRequest {
            invoice_id: id.unwrap_or_default(),
        })
        .await?
        .into_inner();
    assert_eq!(invoice.lines.len(), 500);
    assert_eq!(total(&invoice), format!("{expected:.2}"));
    let line_sum: Decimal = invoice
        .lines
        .iter()
        .map(|l| Decimal::from_str_exact(&money(l.platform_fee.as_ref())).unwrap_or_default())
        .sum();
    assert_eq!(line_sum, expected);
    assert_eq!(invoice.number, "CLAIRE-2026-0001");
    let db = system.db("invoicing").await?;
    let count: i64 = sqlx::query_scalar("select count(*) from invoices")
        .fetch_one(&db)
        .await?;
    assert_eq!(count, 1);
    // Each run's decision is kept.
    let mut decided: Vec<String> =
        sqlx::query_scalar("select outcome from close_outcomes where period = '2026-09'")
            .fetch_all(&db)
            .await?;
    decided.sort();
    assert_eq!(decided, ["already_issued", "already_issued", "issued"]);
    // One issued event for the notifier, however many closes ran.
    let events = eventually(Duration::from_secs(10), || async {
        let n = system
            .count_in("INVOICING", &system.subjects().invoice("issued"))
            .await?;
        Ok((n >= 1).then_some(n))
    })
    .await?;
    assert_eq!(events, 1);
    Ok(())
}
