//! A month's work with clients named by every path, then a search of everything the system
//! writes for an operator — every service's log lines (at debug), every /metrics page, the
//! emails, a viewer's exports and answers — for the clients' emails, phones and names: none.

use std::io::Write;
use std::sync::{Arc, Mutex};

use billing_proto::invoicing::GenerateMonthlyInvoicesRequest;
use billing_proto::ledger::EraseClientRequest;
use billing_testkit::Details;

use super::*;
use crate::harness::{
    ADMIN_TOKEN, BILLING_TOKEN, CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, VIEWER_TOKEN, in_own_process,
};

/// What the fake SimplyBook's details name (tests/fixtures/simplybook/details/), changed to
/// values found nowhere else.
const SB_EMAIL: &str = "kim.simplybook@example.test";
const SB_PHONE: &str = "+61 455 987 654";
const SB_NAME: &str = "Kim Fetchedby-Callback";

/// Every log line, as the services write them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_client_detail_reaches_logs_metrics_emails_or_a_viewers_exports() -> anyhow::Result<()> {
    // It installs the process's global subscriber to read every service's logs.
    if let Some(outcome) = in_own_process(
        "privacy::nowhere_else::no_client_detail_reaches_logs_metrics_emails_or_a_viewers_exports",
    ) {
        return outcome;
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?
        .block_on(async {
            let system = System::builder().everything().alone().start().await?;
            let result = month(&system, &captured).await;
            system.finish(result).await
        })
}

async fn month(system: &System, captured: &Captured) -> anyhow::Result<()> {
    // Signed bookings naming Jo and Sam; a SimplyBook callback whose details name Kim; a booking
    // dead-lettered with Jo's details in its body.
    record(
        system,
        &[
            ("7501", booking("7501", "150.00", last_month(2), jo())),
            ("7502", booking("7502", "90.00", last_month(4), sam())),
        ],
        2,
    )
    .await?;
    let at = last_month(6).format("%Y-%m-%d 10:00:00").to_string();
    system.simplybook.put_booking(
        "7503",
        "h7503",
        Details::booking(&at, "confirmed", "120.00")
            .with("client_email", SB_EMAIL)
            .with("client_phone", SB_PHONE)
            .with("client_name", SB_NAME),
    );
    let callback = serde_json::json!({"booking_id": "7503", "booking_hash": "h7503",
        "company": CLAIRE_COMPANY, "notification_type": "create"});
    let response = system
        .post_callback("claire", CLAIRE_CALLBACK_TOKEN, &callback.to_string())
        .await?;
    anyhow::ensure!(response.status().is_success(), "{}", response.status());
    let mut poison: serde_json::Value =
        serde_json::from_str(&booking("7504", "80.00", last_month(7), jo()))?;
    poison["datetime"] = serde_json::json!("next Tuesday at ten");
    let response = system
        .post_signed(
            "claire",
            "msg_nowhere_poison",
            &poison.to_string(),
            CLAIRE_SECRET,
        )
        .await?;
    anyhow::ensure!(response.status() == 202);
    let owner = system.db("ledger").await?;
    eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&owner)
            .await?;
        Ok((n == 3).then_some(()))
    })
    .await?;

    // The billing role sees Kim (kept under SimplyBook's client id); the month is closed and
    // invoiced by email; Jo is erased.
    let mut billing = ledger_as(system, system.ledger, BILLING_TOKEN)?;
    let kim = show(&mut billing, SB_EMAIL).await?;
    let details = kim.bookings[0].details.clone().unwrap_or_default();
    assert_eq!(
        (
            details.phone.as_str(),
            details.simplybook_client_id.as_str()
        ),
        (SB_PHONE, "515")
    );
    let period = last_month(0).format("%Y-%m").to_string();
    let closed = system
        .invoicing_client()?
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: period.clone(),
            tenant_id: "claire".into(),
            dry_run: false,
        })
        .await?
        .into_inner();
    anyhow::ensure!(closed.outcomes.len() == 1, "{closed:?}");
    system.mail.wait_for(1, Duration::from_secs(30)).await;
    let mut admin = ledger_as(system, system.ledger, ADMIN_TOKEN)?;
    admin
        .erase_client(EraseClientRequest {
            tenant_id: "claire".into(),
            client: by_email(JO_EMAIL),
            reason: "ticket PRIV-18".into(),
        })
        .await?;

    // What a viewer can take away.
    let mut viewer_outputs = Vec::new();
    for args in [
        vec![
            "export", "bookings", "--tenant", "claire", "--period", &period,
        ],
        vec![
            "export", "bookings", "--tenant", "claire", "--period", &period, "--format", "json",
        ],
        vec![
            "export", "invoices", "--tenant", "claire", "--period", &period,
        ],
        vec!["--json", "bookings", "show", "7503", "--tenant", "claire"],
        vec!["dlq", "list"],
    ] {
        let out = system.billingctl_as(VIEWER_TOKEN, &args).await?;
        anyhow::ensure!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        viewer_outputs.push((format!("billingctl {}", args.join(" ")), out.stdout));
    }
    let export = String::from_utf8_lossy(&viewer_outputs[0].1).to_string();
    assert!(
        export.contains("7503"),
        "the export has the month: {export}"
    );

    let mut places: Vec<(String, Vec<u8>)> = viewer_outputs;
    for mail in system.mail.mails() {
        places.push(("an email".into(), mail.data));
    }
    for (service, addr) in [
        ("ingest", system.ingest),
        ("ledger", system.ledger),
        ("invoicing", system.invoicing),
        ("notifier", system.notifier),
    ] {
        let page = reqwest::get(format!("http://{addr}/metrics"))
            .await?
            .text()
            .await?;
        places.push((format!("{service} /metrics"), page.into_bytes()));
    }
    let logs = captured.0.lock().map(|l| l.clone()).unwrap_or_default();
    anyhow::ensure!(
        String::from_utf8_lossy(&logs).contains("client erased"),
        "the logs were captured"
    );
    places.push(("the services' logs".into(), logs));

    let personal = [
        JO_EMAIL,
        JO_NAME,
        JO_PHONE,
        "400111222",
        SAM_EMAIL,
        "Sam Citizen",
        SB_EMAIL,
        SB_PHONE,
        "455987654",
        SB_NAME,
    ];
    let mut found = Vec::new();
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for p in personal {
            if text.contains(p) {
                found.push(format!("{p:?} in {place}"));
            }
        }
    }
    assert!(found.is_empty(), "personal data found: {found:#?}");
    Ok(())
}
