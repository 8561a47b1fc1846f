//! One scenario: a fresh database and NATS server, the services started, the workload sent
//! while the fault strikes and heals, then every check, and the services stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{GenerateMonthlyInvoicesRequest, Outcome};
use billing_proto::ledger::VerifyIntegrityRequest;
use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_testkit::MailSink;
use chrono::Utc;
use rust_decimal::Decimal;

use crate::checks::{client_channel, compare, deferred_emails};
use crate::common::{self, OwnNats};
use crate::report::Row;
use crate::sender::{Sent, send_all};
use crate::servers::{Service, free_addr};
use crate::workload::{expected_subtotals, tenant_id, workload};
use crate::{Args, DOWN_FOR, Infra, PERIOD, RECOVERY_LIMIT, STRIKE_AT, Scenario};

pub async fn run_scenario(
    args: &Args,
    infra: &mut Infra,
    scenario: Scenario,
    n: usize,
) -> anyhow::Result<Row> {
    let name = format!("fault_{n}_{:?}", scenario).to_lowercase();
    let database = common::BenchDatabase::create(&infra.pg.url("postgres"), &name).await?;
    let db_url = database.url.clone();
    let dir = infra.dir.join(&name);
    std::fs::create_dir_all(&dir)?;
    // A NATS server of the scenario's own: production's subject names (no namespace), which
    // the permissions of deploy/nats/nats-server.conf name, on a fresh store.
    let mut nats = OwnNats::start(&infra.secured, &dir).await?;
    // Each service's environment as the database's owner, its migrations applied that way, and
    // its environment as it runs (its runtime role, its NATS user, the chain key).
    let mut envs = HashMap::new();
    for service in ["ingest", "ledger", "invoicing", "notifier"] {
        let owner_env =
            common::service_env(service, &db_url, nats.url(), "", &infra.tenants_file, &[]);
        infra.secured.migrate(service, &owner_env, &dir).await?;
        envs.insert(service, infra.secured.service_env(service, owner_env)?);
    }
    let env = |service: &str, extra: &[(&str, String)]| {
        let mut env = envs[service].clone();
        let prefix = service.to_ascii_uppercase();
        env.extend(
            extra
                .iter()
                .map(|(key, value)| (format!("{prefix}_{key}"), value.clone())),
        );
        env
    };
    let ingest_addrs = [free_addr()?, free_addr()?];
    let ledger_addrs = [free_addr()?, free_addr()?];
    let invoicing_addr = free_addr()?;
    let notifier_addr = free_addr()?;
    let mail = MailSink::start().await?;
    let mut ingests: Vec<Service> = ingest_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let e = env(
                "ingest",
                &[
                    ("LISTEN_ADDR", addr.to_string()),
                    ("RATE_LIMIT_PER_SEC", "0".into()),
                    ("PUBLISH_TIMEOUT_MS", "5000".into()),
                ],
            );
            Service::new("ingest", i, e, &dir, *addr)
        })
        .collect();
    let mut ledgers: Vec<Service> = ledger_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let e = env("ledger", &[("LISTEN_ADDR", addr.to_string())]);
            Service::new("ledger", i, e, &dir, *addr)
        })
        .collect();
    let mut invoicing = Service::new(
        "invoicing",
        0,
        env(
            "invoicing",
            &[
                ("LISTEN_ADDR", invoicing_addr.to_string()),
                ("LEDGER_URL", format!("http://{}", ledger_addrs[0])),
                ("LEDGER_TOKEN", common::BENCH_TOKEN.to_string()),
            ],
        ),
        &dir,
        invoicing_addr,
    );
    let mut notifier = Service::new(
        "notifier",
        0,
        env(
            "notifier",
            &[
                ("LISTEN_ADDR", notifier_addr.to_string()),
                ("INVOICING_URL", format!("http://{invoicing_addr}")),
                ("INVOICING_TOKEN", common::BENCH_TOKEN.to_string()),
                ("SMTP_HOST", "127.0.0.1".into()),
                ("SMTP_PORT", mail.addr().port().to_string()),
                ("OPERATOR_EMAIL", "ops@example.test".into()),
            ],
        ),
        &dir,
        notifier_addr,
    );
    // The ledger first: it applies the migrations the others' schemas do not depend on.
    for s in ledgers.iter_mut() {
        s.start().await?;
    }
    for s in ingests.iter_mut() {
        s.start().await?;
    }
    invoicing.start().await?;
    notifier.start().await?;

    let work = Arc::new(workload(
        args,
        args.seed + n as u64,
        Utc::now().timestamp(),
    )?);
    let total = work.deliveries.len();
    let sent = Arc::new(Sent::default());
    let sender = tokio::spawn(send_all(
        work.clone(),
        Arc::new(ingest_addrs.to_vec()),
        args.concurrency,
        sent.clone(),
    ));
    let strike_at = (total as f64 * STRIKE_AT) as usize;
    while sent.done.load(Ordering::Relaxed) < strike_at && !sender.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut notes = Vec::new();
    match scenario {
        Scenario::KillLedger => {
            ledgers[0].kill().await?;
            tokio::time::sleep(DOWN_FOR).await;
            ledgers[0].start().await?;
        }
        Scenario::RestartNats => {
            nats.stop().await?;
            tokio::time::sleep(DOWN_FOR).await;
            nats.resume().await?;
        }
        Scenario::RestartPostgres => {
            infra.pg.stop().await?;
            tokio::time::sleep(DOWN_FOR).await;
            infra.pg.start().await?;
        }
        Scenario::KillIngest => {
            ingests[0].kill().await?;
            tokio::time::sleep(DOWN_FOR).await;
            ingests[0].start().await?;
        }
        Scenario::Baseline | Scenario::StopSmtp => {}
    }
    let healed = Instant::now();
    sender.await??;
    let last_delivery = Instant::now();
    notes.push(format!(
        "struck at {} of {total} deliveries",
        strike_at.min(total)
    ));

    // The ledger catches up: complete and correct, or the scenario failed.
    let ledger_db = common::bench_pool(&db_url, "ledger").await?;
    let deadline = last_delivery + RECOVERY_LIMIT;
    let compared = loop {
        let c = compare(&ledger_db, &work.expected).await?;
        if (c.lost == 0 && c.wrong == 0) || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut recovered_in = healed.elapsed();
    let caught_up_in = last_delivery.elapsed();

    // Every chain verifies.
    let mut ledger = LedgerServiceClient::new(client_channel(ledger_addrs[1])?);
    let mut chains_ok = true;
    for t in 1..=args.tenants {
        let report = ledger
            .verify_integrity(VerifyIntegrityRequest {
                tenant_id: tenant_id(t),
            })
            .await?
            .into_inner();
        // One chain record per booking and per price revision, no more, no fewer.
        let records: i64 = sqlx::query_scalar(
            "select (select count(*) from bookings where tenant_id = $1)
                  + (select count(*) from booking_revisions r join bookings b
                     on b.id = r.booking_id where b.tenant_id = $1)",
        )
        .bind(tenant_id(t))
        .fetch_one(&ledger_db)
        .await?;
        chains_ok &= report.intact && i64::try_from(report.records_checked)? == records;
    }
    // Each event once in the stream: ingest's deduplication (Nats-Msg-Id) held. Asked as the
    // ledger (every service may read a stream's info).
    let js = infra.secured.jetstream(nats.url(), "ledger").await?;
    let stream_messages = js
        .get_stream(billing_runtime::Subjects::new("").stream_name("WEBHOOKS"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .state
        .messages;

    // The close: one invoice each with the expected fees; a second close issues nothing.
    if scenario == Scenario::StopSmtp {
        mail.stop();
    }
    let mut invoicing_client = InvoicingServiceClient::new(client_channel(invoicing_addr)?)
        .max_decoding_message_size(64 * 1024 * 1024);
    let close = GenerateMonthlyInvoicesRequest {
        period: PERIOD.into(),
        ..Default::default()
    };
    let first = invoicing_client
        .generate_monthly_invoices(close.clone())
        .await?
        .into_inner()
        .outcomes;
    let second = invoicing_client
        .generate_monthly_invoices(close)
        .await?
        .into_inner()
        .outcomes;
    let want = expected_subtotals(&work.expected)?;
    let issued: HashMap<String, Decimal> = first
        .iter()
        .filter(|o| o.outcome() == Outcome::Issued)
        .filter_map(|o| {
            let subtotal = o.invoice.as_ref()?.subtotal.as_ref()?.amount.parse().ok()?;
            Some((o.tenant_id.clone(), subtotal))
        })
        .collect();
    let invoices_ok = issued.len() == args.tenants
        && want.iter().all(|(t, sum)| issued.get(t) == Some(sum))
        && second.len() == args.tenants
        && second.iter().all(|o| o.outcome() == Outcome::AlreadyIssued);
    if !invoices_ok {
        notes.push(format!(
            "close: {} issued of {}, second close {:?}",
            issued.len(),
            args.tenants,
            second.iter().map(|o| o.outcome()).collect::<Vec<_>>()
        ));
    }

    // Each invoice email once.
    if scenario == Scenario::StopSmtp {
        // Down until the notifier has met the outage, or the scenario proves nothing.
        let deadline = Instant::now() + Duration::from_secs(60);
        while deferred_emails(notifier_addr).await? == 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the notifier never tried to send while SMTP was down"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(DOWN_FOR).await;
        notes.push(format!(
            "{} email attempts deferred while SMTP was down",
            deferred_emails(notifier_addr).await?
        ));
        mail.restart().await?;
    }
    let mail_healed = Instant::now();
    let addresses: Vec<String> = (1..=args.tenants)
        .map(|t| format!("{}@example.test", tenant_id(t)))
        .collect();
    let count_per_tenant = |mail: &MailSink| {
        addresses
            .iter()
            .map(|a| {
                mail.mails()
                    .iter()
                    .filter(|m| m.rcpt_to.iter().any(|r| r == a))
                    .count()
            })
            .collect::<Vec<_>>()
    };
    let mail_deadline = Instant::now() + Duration::from_secs(120);
    while count_per_tenant(&mail).contains(&0) && Instant::now() < mail_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if scenario == Scenario::StopSmtp {
        recovered_in = mail_healed.elapsed();
    }
    // Time for a wrongly repeated email to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = count_per_tenant(&mail);
    let emails_ok = counts.iter().all(|&c| c == 1);
    if !emails_ok {
        notes.push(format!("emails per tenant: {counts:?}"));
    }

    notes.push(format!(
        "the services' database sessions: {}",
        common::service_sessions(&ledger_db).await?
    ));
    let row = Row {
        scenario,
        sent: sent.accepted.load(Ordering::Relaxed),
        events: work.events.len(),
        nats_duplicates: sent
            .accepted
            .load(Ordering::Relaxed)
            .saturating_sub(stream_messages),
        stream_messages,
        given_up: sent.given_up.load(Ordering::Relaxed),
        retried: sent.retried.load(Ordering::Relaxed),
        compared,
        chains_ok,
        invoices_ok,
        emails_ok,
        recovered_in,
        caught_up_in,
        notes,
    };
    for s in ingests
        .iter_mut()
        .chain(ledgers.iter_mut())
        .chain([&mut invoicing, &mut notifier])
    {
        s.kill().await?;
    }
    nats.stop().await?;
    ledger_db.close().await;
    database.drop_database().await;
    Ok(row)
}
