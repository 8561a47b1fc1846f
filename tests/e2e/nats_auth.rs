//! NATS as a trust boundary: the whole system on a NATS server configured with
//! `deploy/nats/nats-server.conf` (one user per service, each allowed only its own subjects),
//! each service logging in as itself. Bookings flow as before; an anonymous client, or a service
//! publishing outside its subjects, is refused by the server; and the ledger refuses an event
//! whose tenant header disagrees with the subject it was published on.

use std::path::PathBuf;
use std::time::Duration;

use billing_runtime::nats::{self, HDR_AUTH, HDR_EVENT_ID, HDR_SOURCE, HDR_TENANT, NatsIdentity};
use billing_testkit::PrivateNats;

use crate::harness::{CLAIRE_SECRET, System, eventually};

const SERVICES: [&str; 4] = ["ingest", "ledger", "invoicing", "notifier"];

/// Obviously fake passwords, one per service, in files as a Secret volume would hold them.
pub(crate) fn logins(dir: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    std::fs::create_dir_all(dir)?;
    let mut env = Vec::new();
    for service in SERVICES {
        let password = format!("fake-{service}-nats-password-not-secret");
        std::fs::write(dir.join(service), format!("{password}\n"))?;
        env.push((
            format!("{}_NATS_PASSWORD", service.to_uppercase()),
            password,
        ));
    }
    Ok(env)
}

/// The production NATS configuration: its users and their permissions.
pub(crate) fn config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf")
}

fn identity(dir: &std::path::Path, service: &str) -> NatsIdentity {
    NatsIdentity {
        user: Some(service.to_string()),
        password_file: Some(dir.join(service)),
        ..Default::default()
    }
}

fn booking(id: &str) -> String {
    serde_json::json!({
        "booking_id": id, "booking_hash": format!("hash-{id}"), "status": "confirmed",
        "price": "150.00", "currency": "AUD", "datetime": "2026-10-14 10:00:00",
        "service": {"id": "7", "name": "Remedial massage 60 min", "duration": 60},
    })
    .to_string()
}

/// Publishes `body` on `subject` as `identity` and waits for JetStream's acknowledgement.
async fn publish(
    url: &str,
    identity: &NatsIdentity,
    subject: &str,
    tenant: &str,
    body: String,
) -> anyhow::Result<()> {
    // As the service itself: its inboxes are the only ones it may use.
    let name = identity.user.clone().unwrap_or_default();
    let client = nats::connect_as(url, &name, identity).await?;
    let js = nats::jetstream(client, Duration::from_secs(2));
    let mut headers = async_nats::HeaderMap::new();
    let id = format!("forged-{}", billing_testkit::unique_namespace());
    headers.insert("Nats-Msg-Id", id.as_str());
    headers.insert(HDR_EVENT_ID, id.as_str());
    headers.insert(HDR_SOURCE, "simplybook");
    headers.insert(HDR_AUTH, "standard-webhooks");
    headers.insert(HDR_TENANT, tenant);
    js.publish_with_headers(subject.to_string(), headers, body.into())
        .await?
        .await?;
    Ok(())
}

/// Messages stored in `stream` under `subject`, asked as the ledger (stream info is allowed to
/// every service).
pub(crate) async fn count(
    server: &PrivateNats,
    dir: &std::path::Path,
    stream: &str,
    subject: &str,
) -> anyhow::Result<u64> {
    let client = nats::connect_as(&server.url(), "ledger", &identity(dir, "ledger")).await?;
    let js = nats::jetstream(client, Duration::from_secs(5));
    let info = js.get_stream(stream).await?;
    let mut subjects = info.info_with_subjects(subject).await?;
    let mut total = 0;
    while let Some((_, n)) = futures::TryStreamExt::try_next(&mut subjects).await? {
        total += n as u64;
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_service_is_its_own_nats_user_and_the_server_refuses_the_rest() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "nats-logins-{}",
        billing_testkit::unique_namespace()
    ));
    let env = logins(&dir)?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = PrivateNats::start_with_config(&config(), &env).await?;
    // Production subjects: the permissions name them without a namespace.
    let system = System::builder()
        .everything()
        .nats(server.url())
        .logins(&dir)
        .namespace(String::new())
        .start()
        .await?;
    let result = refusals(&system, &server, &dir).await;
    let finished = system.finish(result).await;
    std::fs::remove_dir_all(&dir).ok();
    finished
}

async fn refusals(
    system: &System,
    server: &PrivateNats,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let db = system.db("ledger").await?;
    // The system works with every service logged in as itself.
    let response = system
        .post_signed("claire", "msg_auth_1", &booking("1001"), CLAIRE_SECRET)
        .await?;
    assert_eq!(response.status(), 202);
    eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings where booking_ref = '1001'")
            .fetch_one(&db)
            .await?;
        Ok((n == 1).then_some(()))
    })
    .await?;

    // Nobody without a login.
    let anonymous = nats::connect_as(&server.url(), "test", &NatsIdentity::default()).await;
    assert!(anonymous.is_err(), "an anonymous client is refused");
    let wrong = NatsIdentity {
        password_file: Some(dir.join("ledger")),
        ..identity(dir, "ingest")
    };
    assert!(
        nats::connect_as(&server.url(), "test", &wrong)
            .await
            .is_err(),
        "a wrong password is refused"
    );

    // A service only where its permissions say: the notifier cannot forge a booking, ingest
    // cannot forge an invoice payment.
    let before = count(server, dir, "WEBHOOKS", "webhooks.simplybook.claire").await?;
    let forged = publish(
        &server.url(),
        &identity(dir, "notifier"),
        "webhooks.simplybook.claire",
        "claire",
        booking("6666"),
    )
    .await;
    assert!(forged.is_err(), "the notifier may not publish webhooks");
    assert_eq!(
        count(server, dir, "WEBHOOKS", "webhooks.simplybook.claire").await?,
        before,
        "nothing stored"
    );
    let paid = publish(
        &server.url(),
        &identity(dir, "ingest"),
        "invoicing.invoice.paid",
        "claire",
        "{}".into(),
    )
    .await;
    assert!(paid.is_err(), "ingest may not publish invoice events");
    assert_eq!(
        count(server, dir, "INVOICING", "invoicing.invoice.paid").await?,
        0
    );

    // Nor may one service read another's deliveries: its inboxes are its own.
    let ingest = nats::connect_as(&server.url(), "ingest", &identity(dir, "ingest")).await?;
    let snoop = ingest.subscribe("_INBOX_ledger.>").await;
    let refused = match snoop {
        Err(_) => true,
        Ok(mut sub) => {
            ingest.flush().await.ok();
            // The server refuses the subscription asynchronously: nothing ever arrives.
            tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut sub))
                .await
                .map_or(true, |m| m.is_none())
        }
    };
    assert!(refused, "ingest may not subscribe to the ledger's inboxes");

    // Even on its own subjects, an event whose tenant header disagrees with the subject is
    // refused by the ledger (dead-lettered with the reason), never recorded.
    publish(
        &server.url(),
        &identity(dir, "ingest"),
        "webhooks.simplybook.claire",
        "kenji",
        booking("7777"),
    )
    .await?;
    let reason: String = eventually(Duration::from_secs(30), || async {
        let reason: Option<String> = sqlx::query_scalar(
            "select reason from audit_log where outcome = 'dead_lettered' and reason like 'tenant_mismatch%'",
        )
        .fetch_optional(&db)
        .await?;
        Ok(reason)
    })
    .await?;
    assert!(
        reason.contains("published on webhooks.simplybook.claire"),
        "{reason}"
    );
    let recorded: i64 =
        sqlx::query_scalar("select count(*) from bookings where booking_ref in ('6666', '7777')")
            .fetch_one(&db)
            .await?;
    assert_eq!(recorded, 0);

    // The ledger anchors its chain head on its own stream and reads it back to verify.
    let anchored = eventually(Duration::from_secs(30), || async {
        let report = system
            .ledger_client()?
            .verify_integrity(billing_proto::ledger::VerifyIntegrityRequest {
                tenant_id: "claire".into(),
            })
            .await?
            .into_inner();
        Ok((report.intact && report.anchored_seq == 1).then_some(report))
    })
    .await?;
    assert_eq!(anchored.records_checked, 1);
    Ok(())
}
