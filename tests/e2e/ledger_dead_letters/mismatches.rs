//! Events that disagree with what the ledger knows: a tenant it does not know (yet), another currency
//! than the tenant bills in, a tenant header that disagrees with the subject, a price nobody
//! knows, and a booking recorded in another currency.

use std::net::SocketAddr;
use std::time::Duration;

use billing_runtime::Subjects;
use billing_testkit::Details;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::harness::{CLAIRE_SECRET, OPERATOR_EMAIL, System, eventually};

use super::support::{
    WAIT, audited, booking, dead_letters_counted, expect_dead_letter, next_booking_is_recorded,
    notify, post_signed, publish_raw, recorded, same_event,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_for_a_tenant_the_ledger_does_not_know_yet_is_stored_once_its_files_name_it()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = tenant_not_known_yet(&system).await;
    system.finish(result).await
}

/// A tenant onboarded a moment ago: ingest's files name it (it accepted the event), the
/// ledger's do not yet (a Kubernetes Secret reaches each pod on its own schedule). The ledger
/// keeps the event, retrying, and stores it once its files name the tenant: no restart, no
/// dead letter, no replay.
async fn tenant_not_known_yet(system: &System) -> anyhow::Result<()> {
    publish_for_newco(system).await?;
    let db = system.db("ledger").await?;
    // Long enough for several deliveries (the first retries come after a second or two).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(recorded(&db, "8101").await?, 0);
    let outcomes: i64 = sqlx::query_scalar(
        "select count(*) from audit_log where event_id = 'simplybook:newco:nc-1'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(
        outcomes, 0,
        "neither stored nor dead-lettered while the tenant is unknown"
    );
    assert_eq!(
        dead_letters_counted(system.ledger, "unknown_tenant").await?,
        0.0
    );

    // The tenant reaches the ledger's files: the waiting event is stored, once.
    add_newco(system)?;
    eventually(Duration::from_secs(60), || async {
        Ok((recorded(&db, "8101").await? == 1).then_some(()))
    })
    .await?;
    let (_, outcome, _) = audited(&db, "simplybook:newco:nc-1").await?;
    assert_eq!(outcome, "stored");
    assert_eq!(
        dead_letters_counted(system.ledger, "unknown_tenant").await?,
        0.0
    );
    next_booking_is_recorded(system, "nc-next", "8102").await
}

/// An event for tenant `newco` as ingest publishes it once its files name the tenant.
async fn publish_for_newco(system: &System) -> anyhow::Result<()> {
    let js = system.jetstream().await?;
    publish_raw(
        &js,
        system.subjects().simplybook("newco"),
        "newco",
        "simplybook:newco:nc-1",
        booking("8101", "100.00").to_string().into_bytes(),
    )
    .await?;
    Ok(())
}

/// Adds tenant `newco` (billed in AUD, as Claire) to the tenants file every service reads.
fn add_newco(system: &System) -> anyhow::Result<()> {
    let mut file: Value = serde_json::from_slice(&std::fs::read(&system.tenants_file)?)?;
    let mut newco = file["tenants"][0].clone();
    newco["id"] = json!("newco");
    newco["name"] = json!("New Co");
    newco["invoice_prefix"] = json!("NEWCO");
    if let Some(entry) = newco.as_object_mut() {
        entry.remove("simplybook_company");
    }
    if let Some(tenants) = file["tenants"].as_array_mut() {
        tenants.push(newco);
    }
    std::fs::write(&system.tenants_file, file.to_string())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_for_a_tenant_still_unknown_after_the_grace_is_dead_lettered_unknown_tenant()
-> anyhow::Result<()> {
    // A ledger that waits for no tenant's files.
    let system = System::builder()
        .ingest()
        .ledger()
        .ledger_flag("--unknown-tenant-grace-secs", "0")
        .start()
        .await?;
    let result = unknown_tenant(&system).await;
    system.finish(result).await
}

async fn unknown_tenant(system: &System) -> anyhow::Result<()> {
    publish_for_newco(system).await?;
    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "simplybook:newco:nc-1",
        "unknown_tenant",
        same_event,
    )
    .await?;
    assert_eq!(letter.tenant_id, "newco");
    assert_eq!(
        letter.original_subject,
        system.subjects().simplybook("newco")
    );
    assert!(
        letter.reason.contains("\"newco\" is not configured"),
        "{letter:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8101").await?, 0);
    next_booking_is_recorded(system, "nc-next", "8102").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_booking_in_another_currency_than_the_tenant_bills_in_is_dead_lettered()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = currency_mismatch(&system).await;
    system.finish(result).await
}

async fn currency_mismatch(system: &System) -> anyhow::Result<()> {
    // Claire bills in AUD; her forwarder sends a booking priced in NZD.
    let mut body = booking("8201", "100.00");
    body["currency"] = json!("NZD");
    post_signed(system, "claire", "cm-1", &body, CLAIRE_SECRET).await?;

    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "simplybook:claire:cm-1",
        "currency_mismatch",
        same_event,
    )
    .await?;
    assert_eq!(letter.tenant_id, "claire");
    assert!(
        letter
            .reason
            .contains("booking in NZD, tenant bills in AUD"),
        "{letter:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8201").await?, 0);

    next_booking_is_recorded(system, "cm-next", "8202").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_whose_tenant_header_disagrees_with_its_subject_is_dead_lettered()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = tenant_mismatch(&system).await;
    system.finish(result).await
}

async fn tenant_mismatch(system: &System) -> anyhow::Result<()> {
    // On Claire's subject, a header naming Kenji: forged (ingest always sets both alike).
    let js = system.jetstream().await?;
    publish_raw(
        &js,
        system.subjects().simplybook("claire"),
        "kenji",
        "simplybook:kenji:tm-1",
        booking("8601", "100.00").to_string().into_bytes(),
    )
    .await?;
    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "simplybook:kenji:tm-1",
        "tenant_mismatch",
        same_event,
    )
    .await?;
    assert_eq!(
        letter.original_subject,
        system.subjects().simplybook("claire")
    );
    assert!(
        letter.reason.contains(&format!(
            "published on {}",
            system.subjects().simplybook("claire")
        )),
        "{letter:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8601").await?, 0);

    next_booking_is_recorded(system, "tm-next", "8602").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_whose_price_nobody_knows_is_dead_lettered_and_the_operator_alerted()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = price_unknown(&system).await;
    system.finish(result).await
}

async fn price_unknown(system: &System) -> anyhow::Result<()> {
    // No payments feature and a service that is not in the company's list: no value, never 0.
    system.simplybook.put_booking(
        "8701",
        "h8701",
        Details::fixture("confirmed_plain").with("event_id", "99"),
    );
    notify(system, "8701", "h8701").await?;
    let letter = expect_dead_letter(
        system,
        system.ledger,
        "ledger",
        "%:8701:create:h8701",
        "price_unknown",
        same_event,
    )
    .await?;
    assert!(
        letter.reason.contains("its service 99 is not"),
        "{letter:?}"
    );
    let db = system.db("ledger").await?;
    assert_eq!(recorded(&db, "8701").await?, 0);
    let alert = system.mail.wait_for(1, WAIT).await;
    assert!(
        alert
            .iter()
            .any(|m| m.rcpt_to == [OPERATOR_EMAIL.to_string()]),
        "the operator is alerted"
    );

    next_booking_is_recorded(system, "pu-next", "8702").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_for_a_booking_recorded_in_another_currency_is_dead_lettered_currency_change()
-> anyhow::Result<()> {
    let system = System::start().await?;
    let result = currency_change(&system).await;
    system.finish(result).await
}

/// A second ledger on the same database, as after a roll-out that changed Claire's currency to
/// NZD. It consumes its own NATS namespace, so that it alone sees the events published there
/// (two ledgers on one stream would share them at random).
struct RolledOut {
    addr: SocketAddr,
    subjects: Subjects,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ledger::Error>>,
    tenants_file: std::path::PathBuf,
}

impl RolledOut {
    async fn start(system: &System) -> anyhow::Result<Self> {
        let config = system.ledger_config();
        let mut tenants: Value = serde_json::from_slice(&std::fs::read(&config.tenants_file)?)?;
        tenants["tenants"][0]["currency"] = json!("NZD");
        let namespace = billing_testkit::unique_namespace();
        let tenants_file =
            std::env::temp_dir().join(format!("billing-e2e-{namespace}-tenants-nzd.json"));
        std::fs::write(&tenants_file, tenants.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let config = ledger::Config {
            listen_addr: addr,
            nats_namespace: namespace.clone(),
            tenants_file: tenants_file.clone(),
            ..config
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(ledger::run(config, listener, stop.clone()));
        let ready = format!("http://{addr}/readyz");
        eventually(WAIT, || async {
            anyhow::ensure!(
                !task.is_finished(),
                "the second ledger stopped during start-up"
            );
            Ok(reqwest::get(&ready)
                .await
                .is_ok_and(|r| r.status().is_success())
                .then_some(()))
        })
        .await?;
        Ok(RolledOut {
            addr,
            subjects: Subjects::new(&namespace),
            stop,
            task,
            tenants_file,
        })
    }

    async fn stop(self, system: &System) -> anyhow::Result<()> {
        self.stop.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        if let Ok(js) = system.jetstream().await {
            self.subjects.delete_streams(&js).await;
        }
        let _ = std::fs::remove_file(&self.tenants_file);
        match stopped {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(err))) => Err(anyhow::anyhow!("the second ledger failed: {err}")),
            Ok(Err(err)) => Err(anyhow::anyhow!("the second ledger panicked: {err}")),
            Err(_) => Err(anyhow::anyhow!(
                "the second ledger did not stop within 15 s"
            )),
        }
    }
}

async fn currency_change(system: &System) -> anyhow::Result<()> {
    // Recorded in AUD by the system's ledger.
    post_signed(
        system,
        "claire",
        "cc-1",
        &booking("8801", "100.00"),
        CLAIRE_SECRET,
    )
    .await?;
    let db = system.db("ledger").await?;
    let (_, outcome, _) = audited(&db, "simplybook:claire:cc-1").await?;
    assert_eq!(outcome, "stored");

    let nzd = RolledOut::start(system).await?;
    let result = rolled_out(system, &nzd).await;
    let stopped = nzd.stop(system).await;
    result?;
    stopped
}

async fn rolled_out(system: &System, nzd: &RolledOut) -> anyhow::Result<()> {
    let db = system.db("ledger").await?;
    let js = system.jetstream().await?;
    // The same booking, now cancelled: the ledger that bills Claire in NZD cannot apply it to
    // a booking recorded in AUD.
    let mut cancelled = booking("8801", "100.00");
    cancelled["status"] = json!("cancelled");
    publish_raw(
        &js,
        nzd.subjects.simplybook("claire"),
        "claire",
        "simplybook:claire:cc-2",
        cancelled.to_string().into_bytes(),
    )
    .await?;
    let letter = expect_dead_letter(
        system,
        nzd.addr,
        "ledger",
        "simplybook:claire:cc-2",
        "currency_change",
        same_event,
    )
    .await?;
    assert!(
        letter
            .reason
            .contains("booking 8801 was recorded in AUD, event says NZD"),
        "{letter:?}"
    );
    // The booking is as it was: confirmed, in AUD, not revised.
    let (status, currency, total, revisions): (String, String, Decimal, i64) = sqlx::query_as(
        "select status, trim(currency), total_amount,
                (select count(*) from booking_revisions r where r.booking_id = b.id)
         from bookings b where booking_ref = '8801'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!(
        (status.as_str(), currency.as_str(), total, revisions),
        ("confirmed", "AUD", Decimal::new(10000, 2), 0)
    );

    // The next event on that ledger's stream, a new booking, is recorded (in NZD).
    publish_raw(
        &js,
        nzd.subjects.simplybook("claire"),
        "claire",
        "simplybook:claire:cc-3",
        booking("8802", "100.00").to_string().into_bytes(),
    )
    .await?;
    let (_, outcome, reason) = audited(&db, "simplybook:claire:cc-3").await?;
    assert_eq!(outcome, "stored", "{reason}");
    let currency: String =
        sqlx::query_scalar("select trim(currency) from bookings where booking_ref = '8802'")
            .fetch_one(&db)
            .await?;
    assert_eq!(currency, "NZD");
    Ok(())
}
