//! The monthly close and what follows it: periods in each tenant's zone (DST months, the last
//! day at 23:30, a leap February, yen), cent-exact sums, exactly one invoice under concurrent
//! and repeated closes, gapless numbers across a void, adjustments for changes after an
//! invoice, payments, the overdue sweep, and Stripe mode against a fake Stripe.
//!
//! Bookings are published straight to JetStream as ingest would after verifying them (ingest's
//! checks and its per-tenant rate limit are tested in `ingest.rs`).

use std::time::Duration;

use async_nats::HeaderMap;
use billing_domain::stripe_signature;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{
    GenerateMonthlyInvoicesRequest, GetInvoiceRequest, Invoice, ListInvoicesRequest, Outcome,
    PutTenantProfileRequest, RecordPaymentRequest, SweepOverdueRequest, TenantOutcome,
    TenantProfile, VoidInvoiceRequest,
};
use billing_proto::notifier::RenderInvoicePdfRequest;
use billing_runtime::nats::{HDR_EVENT_ID, HDR_TENANT};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::harness::{OPERATOR_EMAIL, STRIPE_SECRET, System, eventually, pdf_text};

type Client = InvoicingServiceClient<billing_runtime::trace::TracedChannel>;

pub(crate) async fn client(system: &System) -> anyhow::Result<Client> {
    system.invoicing_client()
}

/// Publishes verified SimplyBook booking events, as ingest does after checking them.
pub(crate) struct Publisher {
    js: async_nats::jetstream::Context,
    subjects: billing_runtime::Subjects,
}

impl Publisher {
    pub(crate) async fn new(system: &System) -> anyhow::Result<Self> {
        Ok(Publisher {
            js: system.jetstream().await?,
            subjects: system.subjects(),
        })
    }

    /// `at` is local time with its offset, e.g. `2026-04-30T23:30:00+10:00`.
    pub(crate) async fn book(
        &self,
        tenant: &str,
        id: &str,
        price: &str,
        status: &str,
        at: &str,
    ) -> anyhow::Result<()> {
        self.book_service(tenant, id, price, status, at, "Remedial massage 60 min")
            .await
    }

    /// [`Publisher::book`] with the service's name.
    pub(crate) async fn book_service(
        &self,
        tenant: &str,
        id: &str,
        price: &str,
        status: &str,
        at: &str,
        service: &str,
    ) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "booking_id": id, "booking_hash": format!("hash-{id}"), "status": status,
            "price": price, "datetime": at,
            "service": {"name": service},
        });
        let event_id = format!("simplybook:{tenant}:{id}:{status}:{price}");
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event_id.as_str());
        headers.insert(HDR_EVENT_ID, event_id.as_str());
        headers.insert(HDR_TENANT, tenant);
        self.js
            .publish_with_headers(
                self.subjects.simplybook(tenant),
                headers,
                body.to_string().into(),
            )
            .await?
            .await?;
        Ok(())
    }
}

/// Waits until the ledger holds `n` bookings.
pub(crate) async fn ledger_has(system: &System, n: i64) -> anyhow::Result<()> {
    let db = system.db("ledger").await?;
    eventually(Duration::from_secs(30), || async {
        let count: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&db)
            .await?;
        Ok((count >= n).then_some(()))
    })
    .await
}

async fn close(
    invoicing: &mut Client,
    tenant: &str,
    period: &str,
    dry_run: bool,
) -> anyhow::Result<TenantOutcome> {
    let mut outcomes = invoicing
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: period.into(),
            tenant_id: tenant.into(),
            dry_run,
        })
        .await?
        .into_inner()
        .outcomes;
    anyhow::ensure!(outcomes.len() == 1, "{outcomes:?}");
    Ok(outcomes.remove(0))
}

pub(crate) async fn issued(
    invoicing: &mut Client,
    tenant: &str,
    period: &str,
) -> anyhow::Result<Invoice> {
    let outcome = close(invoicing, tenant, period, false).await?;
    anyhow::ensure!(
        outcome.outcome() == Outcome::Issued,
        "{tenant} {period}: {outcome:?}"
    );
    let id = outcome.invoice.map(|i| i.id).unwrap_or_default();
    Ok(invoicing
        .get_invoice(GetInvoiceRequest { invoice_id: id })
        .await?
        .into_inner())
}

/// The text of an invoice's PDF, rendered by the notifier on demand.
async fn pdf_text_of(system: &System, invoice_id: &str) -> anyhow::Result<String> {
    let pdf = system
        .notifier_client()?
        .render_invoice_pdf(RenderInvoicePdfRequest {
            invoice_id: invoice_id.to_string(),
        })
        .await?
        .into_inner();
    pdf_text(&pdf.pdf)
}

fn total(i: &Invoice) -> String {
    i.total
        .as_ref()
        .map(|m| m.amount.clone())
        .unwrap_or_default()
}

fn refs(i: &Invoice) -> Vec<&str> {
    i.lines.iter().map(|l| l.booking_ref.as_str()).collect()
}

fn money(m: Option<&billing_proto::Money>) -> String {
    m.map(|m| m.amount.clone()).unwrap_or_default()
}

fn utc(t: Option<&billing_proto::convert::Timestamp>) -> String {
    billing_proto::convert::datetime(t)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn voids_payments_overdue_and_changes_after_invoicing() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = lifecycle(&system).await;
    system.finish(result).await
}

async fn lifecycle(system: &System) -> anyhow::Result<()> {
    let pb = Publisher::new(system).await?;
    pb.book(
        "claire",
        "L1",
        "100.00",
        "confirmed",
        "2026-08-10T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "L2",
        "50.00",
        "confirmed",
        "2026-08-11T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 2).await?;
    let mut invoicing = client(system).await?;
    let first = issued(&mut invoicing, "claire", "2026-08").await?;
    assert_eq!(
        (first.number.as_str(), total(&first).as_str()),
        ("CLAIRE-2026-0001", "30.00")
    );
    assert!(
        first.payment_instructions.contains("BSB 000-000"),
        "{}",
        first.payment_instructions
    );
    assert!(first.payment_instructions.contains("CLAIRE-2026-0001"));

    // Void, then the month is issued again under the next number; the void keeps its number.
    let voided = invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: first.id.clone(),
            reason: "wrong billing email".into(),
        })
        .await?
        .into_inner();
    assert_eq!(voided.status, "void");
    assert_eq!(voided.void_reason, "wrong billing email");
    let august = issued(&mut invoicing, "claire", "2026-08").await?;
    assert_eq!(
        (august.number.as_str(), total(&august).as_str()),
        ("CLAIRE-2026-0002", "30.00")
    );

    // After August was invoiced: L2 is cancelled, L1 re-priced, and L3 (an August session)
    // reaches the ledger late. September also has its own booking.
    pb.book(
        "claire",
        "L2",
        "50.00",
        "cancelled",
        "2026-08-11T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "L1",
        "120.00",
        "confirmed",
        "2026-08-10T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "L3",
        "10.00",
        "confirmed",
        "2026-08-30T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "S1",
        "200.00",
        "confirmed",
        "2026-09-05T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 4).await?;
    // The ledger's change events reach invoicing asynchronously; a dry run shows when.
    let would = eventually(Duration::from_secs(20), || {
        let mut invoicing = invoicing.clone();
        async move {
            let dry = close(&mut invoicing, "claire", "2026-09", true).await?;
            let invoice = dry.invoice.unwrap_or_default();
            Ok((invoice.lines.len() == 4).then_some(invoice))
        }
    })
    .await?;
    assert_eq!(total(&would), "36.00");
    let september = issued(&mut invoicing, "claire", "2026-09").await?;
    assert_eq!(september.number, "CLAIRE-2026-0003");
    let lines: Vec<(&str, &str, String, &str)> = september
        .lines
        .iter()
        .map(|l| {
            (
                l.booking_ref.as_str(),
                l.kind.as_str(),
                money(l.platform_fee.as_ref()),
                l.description.as_str(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("S1", "booking", "40.00".to_string(), ""),
            (
                "L1",
                "adjustment",
                "4.00".to_string(),
                "booking now 120.00; 100.00 billed up to invoice CLAIRE-2026-0002"
            ),
            (
                "L2",
                "adjustment",
                "-10.00".to_string(),
                "cancelled; 50.00 billed up to invoice CLAIRE-2026-0002"
            ),
            (
                "L3",
                "adjustment",
                "2.00".to_string(),
                "session in 2026-08, recorded after 2026-08 was closed"
            ),
        ]
    );
    // 40.00 + 4.00 − 10.00 + 2.00; the August invoice itself is unchanged.
    assert_eq!(total(&september), "36.00");
    // Its PDF prints each adjustment with what changed.
    let text = pdf_text_of(system, &september.id).await?;
    for line in september.lines.iter().filter(|l| l.kind == "adjustment") {
        assert!(
            text.contains(&line.description),
            "{:?}: {text}",
            line.description
        );
    }
    assert!(
        text.contains("1 billable booking (confirmed or completed) and 3 adjustments"),
        "{text}"
    );
    let august_again = invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: august.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(total(&august_again), "30.00");
    assert_eq!(august_again.lines.len(), 2);
    // Voiding August now, after September adjusted two of its bookings: August's new invoice
    // bills each booking's worth minus what September already billed for it.
    invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: august.id.clone(),
            reason: "tenant asked for a corrected address".into(),
        })
        .await?;
    let august = issued(&mut invoicing, "claire", "2026-08").await?;
    assert_eq!(august.number, "CLAIRE-2026-0004");
    let lines: Vec<(&str, String, String)> = august
        .lines
        .iter()
        .map(|l| {
            (
                l.booking_ref.as_str(),
                money(l.platform_fee.as_ref()),
                l.description.clone(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                "L1",
                "20.00".to_string(),
                "booking now 120.00; 20.00 billed up to invoice CLAIRE-2026-0003".to_string()
            ),
            (
                "L2",
                "10.00".to_string(),
                "cancelled; -50.00 billed up to invoice CLAIRE-2026-0003".to_string()
            ),
        ]
    );
    // L1 24.00 + L3 2.00 in all, across August and September.
    assert_eq!(total(&august), "30.00");
    // Nothing is billed twice: closing October finds no adjustment left.
    let october = close(&mut invoicing, "claire", "2026-10", false).await?;
    assert_eq!(
        october.outcome(),
        Outcome::NoBillableBookings,
        "{october:?}"
    );

    // A partial payment, the same transfer recorded twice, then an overpayment.
    let pay = |amount: &str, key: &str| RecordPaymentRequest {
        invoice_id: august.id.clone(),
        amount: amount.into(),
        received_on: "2026-09-03".into(),
        reference: "CLAIRE-2026-0004".into(),
        idempotency_key: key.into(),
    };
    let partial = invoicing
        .record_payment(pay("10.00", "t-1"))
        .await?
        .into_inner();
    assert!(partial.recorded && !partial.overpaid);
    let partial = partial.invoice.unwrap_or_default();
    assert_eq!(partial.status, "partially_paid");
    assert_eq!(money(partial.balance.as_ref()), "20.00");
    let again = invoicing
        .record_payment(pay("10.00", "t-1"))
        .await?
        .into_inner();
    assert!(!again.recorded);
    // The same key for a different transfer is refused, not silently dropped.
    let reused = invoicing.record_payment(pay("12.00", "t-1")).await;
    assert_eq!(
        reused.err().map(|s| s.code()),
        Some(tonic::Code::InvalidArgument)
    );
    let over = invoicing
        .record_payment(pay("25.00", "t-2"))
        .await?
        .into_inner();
    assert!(over.recorded && over.overpaid);
    let over = over.invoice.unwrap_or_default();
    assert_eq!(over.status, "paid");
    assert_eq!(money(over.amount_paid.as_ref()), "35.00");
    assert_eq!(money(over.balance.as_ref()), "-5.00");
    assert_eq!(over.payments.len(), 2);
    let bad = invoicing.record_payment(pay("-1.00", "t-3")).await;
    assert_eq!(
        bad.err().map(|s| s.code()),
        Some(tonic::Code::InvalidArgument)
    );
    // A paid invoice cannot be voided.
    let refused = invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: august.id.clone(),
            reason: "oops".into(),
        })
        .await;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(tonic::Code::FailedPrecondition)
    );

    // The daily sweep, as the CronJob runs it: September's invoice is overdue after its due date.
    let after_due = chrono::NaiveDate::parse_from_str(&september.due_date, "%Y-%m-%d")?
        .succ_opt()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let output = system
        .billingctl(&["invoices", "sweep-overdue", "--as-of", &after_due])
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 invoice(s) marked overdue"), "{stdout}");
    assert!(stdout.contains("CLAIRE-2026-0003"), "{stdout}");
    let swept = invoicing
        .sweep_overdue(SweepOverdueRequest {
            as_of: after_due.clone(),
        })
        .await?
        .into_inner();
    assert!(swept.marked.is_empty(), "a second sweep marks nothing new");
    let paid = invoicing
        .record_payment(RecordPaymentRequest {
            invoice_id: september.id.clone(),
            amount: "36.00".into(),
            received_on: after_due,
            reference: "CLAIRE-2026-0003 late".into(),
            idempotency_key: String::new(),
        })
        .await?
        .into_inner()
        .invoice
        .unwrap_or_default();
    assert_eq!(paid.status, "paid");
    let path: Vec<(&str, &str)> = paid
        .history
        .iter()
        .map(|h| (h.from_status.as_str(), h.to_status.as_str()))
        .collect();
    assert_eq!(
        path,
        [
            ("", "draft"),
            ("draft", "issued"),
            ("issued", "overdue"),
            ("overdue", "paid")
        ]
    );
    // Every transition was announced on invoicing.invoice.<status>.
    for (status, n) in [
        ("issued", 4),
        ("void", 2),
        ("partially_paid", 1),
        ("paid", 2),
        ("overdue", 1),
    ] {
        let subject = system.subjects().invoice(status);
        let count = eventually(Duration::from_secs(10), || async {
            let count = system.count_in("INVOICING", &subject).await?;
            Ok((count >= n).then_some(count))
        })
        .await?;
        assert_eq!(count, n, "{subject}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stripe_mode_makes_one_stripe_invoice_through_an_outage_applies_its_events_once_and_refuses_others()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = stripe_mode(&system).await;
    system.finish(result).await
}

async fn stripe_mode(system: &System) -> anyhow::Result<()> {
    let pb = Publisher::new(system).await?;
    let mut invoicing = client(system).await?;
    let profile = invoicing
        .put_tenant_profile(PutTenantProfileRequest {
            profile: Some(TenantProfile {
                tenant_id: "claire".into(),
                legal_name: "Claire Hamilton Therapies Pty Ltd".into(),
                billing_email: "accounts@claire.example.test".into(),
                address: "1 Test Street\nSydney NSW 2000".into(),
                tax_id: "ABN 00 000 000 000".into(),
                currency: "AUD".into(),
                payment_terms_days: 14,
                tax_rate: "0.10".into(),
                invoicing_mode: "stripe".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(profile.time_zone, "Australia/Sydney");
    assert_eq!(profile.invoice_prefix, "CLAIRE");
    pb.book(
        "claire",
        "P1",
        "150.00",
        "confirmed",
        "2026-07-10T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "P2",
        "10.01",
        "confirmed",
        "2026-07-31T23:30:00+10:00",
    )
    .await?;
    // Kenji is invoiced by bank transfer: Stripe events can never touch his invoices.
    pb.book(
        "kenji",
        "K1",
        "12000",
        "confirmed",
        "2026-07-10T10:00:00+09:00",
    )
    .await?;
    ledger_has(system, 3).await?;

    // Stripe answers the customer, the invoice and its first item (each after a look-up for
    // one an earlier attempt made), then goes down: the invoice stays a draft.
    system.stripe.set_unavailable_after(6);
    let failed = close(&mut invoicing, "claire", "2026-07", false).await?;
    assert_eq!(failed.outcome(), Outcome::Failed, "{failed:?}");
    assert!(failed.error.contains("draft"), "{}", failed.error);
    let draft = failed.invoice.unwrap_or_default();
    assert_eq!(
        (draft.number.as_str(), draft.status.as_str()),
        ("CLAIRE-2026-0001", "draft")
    );
    // Still down: a retry fails the same way and makes nothing new.
    let failed_again = close(&mut invoicing, "claire", "2026-07", false).await?;
    assert_eq!(failed_again.outcome(), Outcome::Failed);
    // The operator is alerted once, however often the run is retried that day.
    let alert = system.subjects().alert("invoice_generation_failed");
    let alert_mail = eventually(Duration::from_secs(30), || async {
        let mails = system.mail.mails();
        Ok(mails
            .into_iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == OPERATOR_EMAIL)))
    })
    .await?;
    let subject = mail_parser::MessageParser::default()
        .parse(&alert_mail.data)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default();
    assert_eq!(
        subject,
        "[CRITICAL] The 2026-07 invoice for tenant claire could not be generated"
    );
    assert_eq!(system.count_in("ALERTS", &alert).await?, 1);

    system.stripe.set_unavailable(false);
    let done = close(&mut invoicing, "claire", "2026-07", false).await?;
    assert_eq!(done.outcome(), Outcome::Issued, "{done:?}");
    let invoice = invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: draft.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(invoice.status, "issued");
    // Fees 30.00 + 2.00, GST 10 % 3.20.
    assert_eq!(money(invoice.subtotal.as_ref()), "32.00");
    assert_eq!(money(invoice.tax.as_ref()), "3.20");
    assert_eq!(total(&invoice), "35.20");
    assert!(
        invoice.stripe_hosted_url.starts_with("https://"),
        "{invoice:?}"
    );
    assert!(
        invoice
            .payment_instructions
            .contains(&invoice.stripe_hosted_url)
    );
    // 10 % tax makes it a tax invoice, paid through Stripe's page.
    let text = pdf_text_of(system, &invoice.id).await?;
    for expected in [
        "TAX INVOICE".to_string(),
        "Tax (10%)".to_string(),
        "AUD 35.20".to_string(),
        format!("Pay online: {}", invoice.stripe_hosted_url),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing: {text}");
    }
    let again = close(&mut invoicing, "claire", "2026-07", false).await?;
    assert_eq!(again.outcome(), Outcome::AlreadyIssued);

    let stripe_invoices = system.stripe.invoices();
    assert_eq!(stripe_invoices.len(), 1, "{stripe_invoices:?}");
    let si = &stripe_invoices[0];
    assert_eq!(si["id"].as_str(), Some(invoice.stripe_invoice_id.as_str()));
    assert_eq!(si["total"], 3520);
    assert_eq!(si["status"], "open");
    assert_eq!(si["collection_method"], "send_invoice");
    assert_eq!(si["number"], "CLAIRE-2026-0001");
    assert!(system.stripe.sent(&invoice.stripe_invoice_id));
    assert_eq!(
        si["metadata"]["invoice_id"].as_str(),
        Some(invoice.id.as_str())
    );
    assert_eq!(system.stripe.customers().len(), 1);
    let calls = system.stripe.calls();
    let posts: Vec<_> = calls.iter().filter(|c| c.method == "POST").collect();
    assert!(
        posts.iter().all(|c| c.idempotency_key.is_some()),
        "{posts:?}"
    );
    let created: Vec<_> = posts
        .iter()
        .filter(|c| c.path == "/v1/invoices" && c.executed)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "one Stripe invoice however often the close ran"
    );
    // Each step's progress was saved: the retries resumed at the second item, and never asked
    // Stripe for the customer, the invoice or the first item again.
    let asked = |suffix: &str| {
        posts
            .iter()
            .filter(|c| {
                c.idempotency_key
                    .as_deref()
                    .is_some_and(|k| k.ends_with(suffix))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!((asked("-create").len(), asked("-item-0").len()), (1, 1));
    let second = asked("-item-1");
    assert_eq!(
        second.iter().filter(|c| c.executed).count(),
        1,
        "{second:?}"
    );
    assert!(
        second.len() > 1,
        "tried during the outage, then done: {second:?}"
    );
    assert!(asked("-item-2").is_empty(), "fees and tax only: two items");
    assert_eq!(system.stripe.items().len(), 2);

    let kenji = issued(&mut invoicing, "kenji", "2026-07").await?;
    let now = chrono::Utc::now().timestamp();
    forged_stripe_events_change_nothing(system, &mut invoicing, &invoice, &kenji, now).await?;

    // Stripe's events, through ingest: paid (twice, once past JetStream's dedup), a late
    // payment_failed and finalized, and a type invoicing does not act on.
    let stripe_event = |id: &str, kind: &str, created: i64| {
        serde_json::json!({
            "id": id, "object": "event", "type": kind, "created": created,
            "data": {"object": {"id": invoice.stripe_invoice_id, "object": "invoice",
                "currency": "aud", "total": 3520,
                "amount_paid": if kind == "invoice.paid" { 3520 } else { 0 },
                "metadata": {"invoice_id": invoice.id}}}
        })
        .to_string()
    };
    let events = [
        stripe_event("evt_paid", "invoice.paid", now),
        stripe_event("evt_failed", "invoice.payment_failed", now - 60),
        stripe_event("evt_finalized", "invoice.finalized", now - 120),
        stripe_event("evt_other", "customer.updated", now),
    ];
    for body in &events {
        let signature = stripe_signature::sign(STRIPE_SECRET, now, body.as_bytes());
        let response = system.post_stripe(body, &signature).await?;
        assert_eq!(response.status(), 202);
    }
    // The paid event again, as Stripe retries it days later (past JetStream's dedup window).
    let js = system.jetstream().await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        "stripe-retry-after-window",
    );
    js.publish_with_headers(
        system.subjects().stripe(),
        headers,
        events[0].clone().into(),
    )
    .await?
    .await?;

    let db = system.db("invoicing").await?;
    let outcomes: Vec<(String, String)> = eventually(Duration::from_secs(20), || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select event_id, outcome from stripe_events where outcome <> 'refused'
             order by event_id",
        )
        .fetch_all(&db)
        .await?;
        Ok((rows.len() == 4).then_some(rows))
    })
    .await?;
    let outcomes: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|(e, o)| (e.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("evt_failed", "stale"),
            ("evt_finalized", "stale"),
            ("evt_other", "ignored"),
            ("evt_paid", "applied"),
        ]
    );
    let paid = invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: invoice.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(paid.status, "paid");
    assert_eq!(paid.payments.len(), 1, "{:?}", paid.payments);
    assert_eq!(paid.payments[0].method, "stripe");
    assert_eq!(money(paid.amount_paid.as_ref()), "35.20");
    Ok(())
}

/// Signed Stripe events that are not bound to Claire's Stripe invoice: each is refused with its
/// reason, changes nothing, and raises one alert per invoice named (or one for none).
async fn forged_stripe_events_change_nothing(
    system: &System,
    invoicing: &mut Client,
    claire: &Invoice,
    kenji: &Invoice,
    now: i64,
) -> anyhow::Result<()> {
    let event = |id: &str, kind: &str, object: serde_json::Value| {
        let mut invoice = serde_json::json!({
            "id": claire.stripe_invoice_id, "object": "invoice", "currency": "aud",
            "total": 3520, "amount_paid": 3520, "metadata": {"invoice_id": claire.id}});
        for (key, value) in object.as_object().into_iter().flatten() {
            invoice[key] = value.clone();
        }
        serde_json::json!({"id": id, "object": "event", "type": kind, "created": now,
            "data": {"object": invoice}})
        .to_string()
    };
    let forged = [
        (
            event(
                "evt_forged_other_stripe_invoice",
                "invoice.paid",
                serde_json::json!({"id": "in_forged_elsewhere"}),
            ),
            "the event is about Stripe invoice \"in_forged_elsewhere\"",
        ),
        (
            event(
                "evt_forged_void",
                "invoice.voided",
                serde_json::json!({"id": "in_forged_elsewhere", "amount_paid": 0}),
            ),
            "the event is about Stripe invoice \"in_forged_elsewhere\"",
        ),
        (
            event(
                "evt_forged_other_tenant",
                "invoice.paid",
                serde_json::json!({"metadata": {"invoice_id": kenji.id}}),
            ),
            "tenant kenji is in manual mode",
        ),
        (
            event(
                "evt_forged_unknown_invoice",
                "invoice.paid",
                serde_json::json!({"metadata": {"invoice_id": "0194f3c1-8b2e-7c4a-9d1e-3f5a6b7c8d9e"}}),
            ),
            "names no invoice of ours",
        ),
        (
            event(
                "evt_forged_overpaid",
                "invoice.paid",
                serde_json::json!({"amount_paid": 999_999}),
            ),
            "amount paid AUD 9999.99 is more than invoice",
        ),
        (
            event(
                "evt_forged_currency",
                "invoice.paid",
                serde_json::json!({"currency": "jpy"}),
            ),
            "the event's currency \"jpy\" is not the invoice's AUD",
        ),
    ];
    for (body, _) in &forged {
        let signature = stripe_signature::sign(STRIPE_SECRET, now, body.as_bytes());
        assert_eq!(system.post_stripe(body, &signature).await?.status(), 202);
    }
    let db = system.db("invoicing").await?;
    let refused: Vec<(String, String)> = eventually(Duration::from_secs(20), || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select event_id, reason from stripe_events
                 where outcome = 'refused' order by event_id",
        )
        .fetch_all(&db)
        .await?;
        Ok((rows.len() == forged.len()).then_some(rows))
    })
    .await?;
    for (body, expected) in &forged {
        let id = serde_json::from_str::<serde_json::Value>(body)?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (_, reason) = refused
            .iter()
            .find(|(event, _)| *event == id)
            .ok_or_else(|| anyhow::anyhow!("{id} not refused: {refused:?}"))?;
        assert!(reason.contains(expected), "{id}: {reason:?}");
    }
    // Nothing changed: both invoices are as issued, with no payment.
    for issued in [claire, kenji] {
        let now = invoicing
            .get_invoice(GetInvoiceRequest {
                invoice_id: issued.id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(now.status, "issued", "{}", issued.number);
        assert!(now.payments.is_empty(), "{:?}", now.payments);
        assert_eq!(
            money(now.amount_paid.as_ref()),
            money(issued.amount_paid.as_ref())
        );
        assert_eq!(now.history.len(), issued.history.len(), "{:?}", now.history);
    }
    // One alert for Claire's invoice, one for Kenji's, one for the invoice that does not exist.
    let alert = system.subjects().alert("stripe_event_refused");
    eventually(Duration::from_secs(20), || async {
        Ok((system.count_in("ALERTS", &alert).await? == 3).then_some(()))
    })
    .await?;
    Ok(())
}
