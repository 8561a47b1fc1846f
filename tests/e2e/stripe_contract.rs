//! Stripe's real limits, end to end against the fake Stripe (which enforces them as Stripe
//! does; see docs/contracts/stripe.md): invoice numbers of at most 26 characters through a
//! 12-character prefix, a `due_date` in the future that is our due date, one Stripe invoice
//! when answers are lost or keys expire, and a refused API key reported without the key.

use std::time::Duration;

use billing_proto::invoicing::{
    GenerateMonthlyInvoicesRequest, GetInvoiceRequest, Invoice, Outcome, PutTenantProfileRequest,
    TenantOutcome, TenantProfile, VoidInvoiceRequest,
};
use billing_testkit::stripe::Loss;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::harness::{STRIPE_API_KEY, System};
use crate::invoicing::{Publisher, client, ledger_has};

const SYDNEY: Tz = chrono_tz::Australia::Sydney;

type Client = billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient<
    billing_runtime::trace::TracedChannel,
>;

async fn close(invoicing: &mut Client, period: &str) -> anyhow::Result<TenantOutcome> {
    let mut outcomes = invoicing
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: period.into(),
            tenant_id: "claire".into(),
            dry_run: false,
        })
        .await?
        .into_inner()
        .outcomes;
    anyhow::ensure!(outcomes.len() == 1, "{outcomes:?}");
    Ok(outcomes.remove(0))
}

async fn get(invoicing: &mut Client, id: &str) -> anyhow::Result<Invoice> {
    Ok(invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: id.into(),
        })
        .await?
        .into_inner())
}

/// Claire's profile in Stripe mode, with `prefix` (empty: the default).
fn profile(prefix: &str) -> PutTenantProfileRequest {
    PutTenantProfileRequest {
        profile: Some(TenantProfile {
            tenant_id: "claire".into(),
            legal_name: "Claire Hamilton Therapies Pty Ltd".into(),
            billing_email: "accounts@claire.example.test".into(),
            currency: "AUD".into(),
            payment_terms_days: 14,
            invoicing_mode: "stripe".into(),
            invoice_prefix: prefix.into(),
            ..Default::default()
        }),
    }
}

/// The last second of `day` in Sydney, as Stripe should be told.
fn end_of_day_in_sydney(day: NaiveDate) -> anyhow::Result<DateTime<Utc>> {
    let next = day
        .checked_add_days(Days::new(1))
        .ok_or_else(|| anyhow::anyhow!("no day after {day}"))?;
    let midnight = SYDNEY
        .from_local_datetime(&next.and_time(NaiveTime::MIN))
        .earliest()
        .ok_or_else(|| anyhow::anyhow!("no midnight after {day}"))?;
    Ok(midnight.with_timezone(&Utc) - chrono::TimeDelta::seconds(1))
}

/// The `due_date` invoicing sent when it created the Stripe invoice for our invoice `id`.
fn sent_due_date(system: &System, id: &str) -> anyhow::Result<i64> {
    let calls = system.stripe.calls();
    let create = calls
        .iter()
        .find(|c| {
            c.method == "POST"
                && c.path == "/v1/invoices"
                && c.form.get("metadata[invoice_id]").map(String::as_str) == Some(id)
        })
        .ok_or_else(|| anyhow::anyhow!("no invoice created for {id}"))?;
    anyhow::ensure!(
        !create.form.contains_key("days_until_due"),
        "days_until_due sent: {create:?}"
    );
    create
        .form
        .get("due_date")
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no due_date sent: {create:?}"))
}

/// How many POSTs made a Stripe invoice for our invoice `id` (replays do not count).
fn invoices_made_for(system: &System, id: &str) -> usize {
    let key = format!("invoice-{id}-create");
    system
        .stripe
        .calls()
        .iter()
        .filter(|c| c.executed && c.idempotency_key.as_deref() == Some(key.as_str()))
        .count()
}

fn stripe_invoices_for(system: &System, id: &str) -> usize {
    system
        .stripe
        .invoices()
        .iter()
        .filter(|i| i["metadata"]["invoice_id"].as_str() == Some(id))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_twelve_character_prefix_numbers_stripe_invoices_and_longer_ones_are_refused()
-> anyhow::Result<()> {
    let system = System::builder().ledger().invoicing().start().await?;
    let result = prefixes(&system).await;
    system.finish(result).await
}

async fn prefixes(system: &System) -> anyhow::Result<()> {
    let mut invoicing = client(system).await?;
    // Thirteen characters are refused on write, with the limit in the message.
    let refused = invoicing
        .put_tenant_profile(profile("CLAIREHAMILTO"))
        .await
        .expect_err("a 13-character prefix");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("invoice_prefix") && refused.message().contains("1-12"),
        "{}",
        refused.message()
    );
    invoicing.put_tenant_profile(profile("")).await?;
    let pb = Publisher::new(system).await?;
    pb.book(
        "claire",
        "L1",
        "150.00",
        "confirmed",
        "2026-07-10T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 1).await?;

    // A profile written before the limit (the database allows 50 characters) makes a number
    // Stripe would refuse: the push refuses it before calling Stripe, and says what to do.
    let db = system.db("invoicing").await?;
    sqlx::query("update tenant_profiles set invoice_prefix = 'CLAIREHAMILTONTHER'")
        .execute(&db)
        .await?;
    let too_long = close(&mut invoicing, "2026-07").await?;
    assert_eq!(too_long.outcome(), Outcome::Failed, "{too_long:?}");
    let draft = too_long.invoice.clone().unwrap_or_default();
    assert_eq!(draft.number, "CLAIREHAMILTONTHER-2026-0001");
    for expected in [
        "28 characters",
        "at most 26",
        "invoice_prefix of at most 12",
        "void this draft",
    ] {
        assert!(too_long.error.contains(expected), "{}", too_long.error);
    }
    assert!(system.stripe.calls().is_empty(), "Stripe was not called");

    // Fixed as the message says: a 12-character prefix, the draft voided, the month closed
    // again under the next number, which Stripe takes.
    invoicing
        .put_tenant_profile(profile("CLAIREHAMILT"))
        .await?;
    invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: draft.id.clone(),
            reason: "number too long for Stripe".into(),
        })
        .await?;
    let done = close(&mut invoicing, "2026-07").await?;
    assert_eq!(done.outcome(), Outcome::Issued, "{done:?}");
    let invoice = get(&mut invoicing, &done.invoice.unwrap_or_default().id).await?;
    assert_eq!(invoice.number, "CLAIREHAMILT-2026-0002");
    assert_eq!(invoice.status, "issued");
    let stripe = system.stripe.invoices();
    assert_eq!(stripe.len(), 1, "{stripe:?}");
    assert_eq!(stripe[0]["number"], "CLAIREHAMILT-2026-0002");
    assert_eq!(stripe[0]["status"], "open");

    // Stripe's due date is ours: its last second in the tenant's zone, in the future.
    let due: NaiveDate = invoice.due_date.parse()?;
    let sent = sent_due_date(system, &invoice.id)?;
    assert_eq!(sent, end_of_day_in_sydney(due)?.timestamp());
    assert!(sent > Utc::now().timestamp());
    assert_eq!(stripe[0]["due_date"], sent);
    let sent_by_stripe = invoice.history.last().map(|h| h.reason.clone());
    assert_eq!(
        sent_by_stripe,
        Some(format!("sent by Stripe as {}", invoice.stripe_invoice_id))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_whose_answer_is_lost_makes_one_stripe_invoice() -> anyhow::Result<()> {
    let system = System::builder().ledger().invoicing().start().await?;
    let result = lost_answers(&system).await;
    system.finish(result).await
}

async fn lost_answers(system: &System) -> anyhow::Result<()> {
    let mut invoicing = client(system).await?;
    invoicing.put_tenant_profile(profile("")).await?;
    let pb = Publisher::new(system).await?;
    for (id, at) in [
        ("M4", "2026-04-12T10:00:00+10:00"),
        ("M5", "2026-05-12T10:00:00+10:00"),
        ("M6", "2026-06-12T10:00:00+10:00"),
        ("M7", "2026-07-12T10:00:00+10:00"),
    ] {
        pb.book("claire", id, "100.00", "confirmed", at).await?;
    }
    ledger_has(system, 4).await?;

    // April: Stripe is slow, and its answer comes after invoicing's timeout (2 s here); the
    // retry gets Stripe's saved answer.
    system.stripe.lose_answers(
        "POST",
        "/v1/invoices",
        1,
        Loss::Late(Duration::from_millis(2500)),
    );
    let april = close(&mut invoicing, "2026-04").await?;
    assert_eq!(april.outcome(), Outcome::Issued, "{april:?}");
    let april = april.invoice.unwrap_or_default().id;
    assert_eq!(stripe_invoices_for(system, &april), 1);
    assert_eq!(invoices_made_for(system, &april), 1);

    // May: Stripe makes the invoice, the connection drops before its answer; the retry with the
    // same key gets Stripe's saved answer.
    system
        .stripe
        .lose_answers("POST", "/v1/invoices", 1, Loss::Dropped);
    let may = close(&mut invoicing, "2026-05").await?;
    assert_eq!(may.outcome(), Outcome::Issued, "{may:?}");
    let may = may.invoice.unwrap_or_default().id;
    assert_eq!(stripe_invoices_for(system, &may), 1);
    assert_eq!(invoices_made_for(system, &may), 1);
    let asked = system
        .stripe
        .calls()
        .iter()
        .filter(|c| c.idempotency_key.as_deref() == Some(&format!("invoice-{may}-create")))
        .count();
    assert_eq!(asked, 2, "asked again with the same key");

    // June: a 500 comes back every time although Stripe made the invoice; the push finds it
    // among the customer's invoices by our invoice id.
    system
        .stripe
        .lose_answers("POST", "/v1/invoices", 3, Loss::ServerError);
    let june = close(&mut invoicing, "2026-06").await?;
    assert_eq!(june.outcome(), Outcome::Issued, "{june:?}");
    let june = june.invoice.unwrap_or_default().id;
    assert_eq!(stripe_invoices_for(system, &june), 1);
    assert_eq!(invoices_made_for(system, &june), 1);

    // July: every answer to the create is lost and Stripe goes down before the push can look
    // (the customer is known: a look-up, the create and its two retries, then the outage).
    // The invoice stays a draft; the keys expire before the next run, which finds the Stripe
    // invoice instead of making a second one.
    system
        .stripe
        .lose_answers("POST", "/v1/invoices", 3, Loss::Dropped);
    system.stripe.set_unavailable_after(4);
    let failed = close(&mut invoicing, "2026-07").await?;
    assert_eq!(failed.outcome(), Outcome::Failed, "{failed:?}");
    let july = failed.invoice.unwrap_or_default().id;
    assert_eq!(stripe_invoices_for(system, &july), 1, "Stripe made it");
    system.stripe.set_unavailable(false);
    system.stripe.expire_idempotency_keys();
    let done = close(&mut invoicing, "2026-07").await?;
    assert_eq!(done.outcome(), Outcome::Issued, "{done:?}");
    assert_eq!(done.invoice.unwrap_or_default().id, july);
    assert_eq!(stripe_invoices_for(system, &july), 1);
    assert_eq!(invoices_made_for(system, &july), 1);
    let invoice = get(&mut invoicing, &july).await?;
    assert_eq!(invoice.status, "issued");
    assert_eq!(system.stripe.invoices().len(), 4);
    assert_eq!(system.stripe.customers().len(), 1);
    // Each invoice got its item once and went out once.
    for id in [&april, &may, &june, &july] {
        let items = system
            .stripe
            .items()
            .iter()
            .filter(|i| i["metadata"]["invoice_id"].as_str() == Some(id.as_str()))
            .count();
        assert_eq!(items, 1, "{id}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_push_gives_stripe_a_future_due_date_and_keeps_ours() -> anyhow::Result<()> {
    let system = System::builder().ledger().invoicing().start().await?;
    let result = late_push(&system).await;
    system.finish(result).await
}

async fn late_push(system: &System) -> anyhow::Result<()> {
    let mut invoicing = client(system).await?;
    invoicing.put_tenant_profile(profile("")).await?;
    let pb = Publisher::new(system).await?;
    pb.book(
        "claire",
        "D1",
        "100.00",
        "confirmed",
        "2026-07-12T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 1).await?;
    system.stripe.set_unavailable(true);
    let failed = close(&mut invoicing, "2026-07").await?;
    assert_eq!(failed.outcome(), Outcome::Failed, "{failed:?}");
    let id = failed.invoice.unwrap_or_default().id;

    // The draft waited past its due date (issued 20 days ago on 14 days' terms).
    let today = Utc::now().with_timezone(&SYDNEY).date_naive();
    let issued = today - Days::new(20);
    let due = today - Days::new(6);
    let db = system.db("invoicing").await?;
    sqlx::query("update invoices set issue_date = $2, due_date = $3 where id = $1::uuid")
        .bind(&id)
        .bind(issued)
        .bind(due)
        .execute(&db)
        .await?;
    system.stripe.set_unavailable(false);
    let done = close(&mut invoicing, "2026-07").await?;
    assert_eq!(done.outcome(), Outcome::Issued, "{done:?}");

    // Stripe refuses a past due date: it gets the end of a day in Sydney at least an hour
    // ahead; our invoice keeps its due date, and its history says why Stripe's differs.
    let sent = sent_due_date(system, &id)?;
    let now = Utc::now().timestamp();
    assert!(sent >= now + 3600 - 60 && sent <= now + 25 * 3600, "{sent}");
    let local = DateTime::from_timestamp(sent, 0)
        .map(|t| t.with_timezone(&SYDNEY))
        .ok_or_else(|| anyhow::anyhow!("timestamp {sent}"))?;
    assert_eq!(
        local.time(),
        NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default()
    );
    let invoice = get(&mut invoicing, &id).await?;
    assert_eq!(invoice.due_date, due.to_string());
    let reason = invoice
        .history
        .last()
        .map(|h| h.reason.clone())
        .unwrap_or_default();
    let expected = format!(
        "Stripe's due date is {}: ours, {due}, had passed when it was pushed",
        local.date_naive()
    );
    assert!(reason.contains(&expected), "{reason}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_api_key_is_reported_clearly_and_never_quoted() -> anyhow::Result<()> {
    let system = System::builder().ledger().invoicing().start().await?;
    let result = refused_key(&system).await;
    system.finish(result).await
}

async fn refused_key(system: &System) -> anyhow::Result<()> {
    let mut invoicing = client(system).await?;
    invoicing.put_tenant_profile(profile("")).await?;
    let pb = Publisher::new(system).await?;
    pb.book(
        "claire",
        "K1",
        "100.00",
        "confirmed",
        "2026-07-12T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 1).await?;
    let tail = &STRIPE_API_KEY[STRIPE_API_KEY.len() - 4..];
    let db = system.db("invoicing").await?;

    // The key was rolled at Stripe, then (put back) it expires: both are refused with 401.
    for break_it in [
        (|s: &System| s.stripe.set_api_key("sk_test_rolled_fake_key_0000")) as fn(&System),
        |s: &System| {
            s.stripe.set_api_key(STRIPE_API_KEY);
            s.stripe.expire_api_key();
        },
    ] {
        break_it(system);
        let failed = close(&mut invoicing, "2026-07").await?;
        assert_eq!(failed.outcome(), Outcome::Failed, "{failed:?}");
        assert!(
            failed
                .error
                .contains("Stripe refused the API key (HTTP 401); check INVOICING_STRIPE_API_KEY"),
            "{}",
            failed.error
        );
        let details: Vec<String> =
            sqlx::query_scalar("select detail from close_outcomes where outcome = 'failed'")
                .fetch_all(&db)
                .await?;
        for text in details.iter().chain([&failed.error]) {
            assert!(
                !text.contains(STRIPE_API_KEY) && !text.contains("sk_test") && !text.contains(tail),
                "the key leaked: {text}"
            );
        }
    }
    system.stripe.set_api_key(STRIPE_API_KEY);
    let done = close(&mut invoicing, "2026-07").await?;
    assert_eq!(done.outcome(), Outcome::Issued, "{done:?}");
    assert_eq!(system.stripe.invoices().len(), 1);
    Ok(())
}
