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

use crate::checks::{client_channel, compare, deferred_emails, metric_sum};
use crate::cluster::{CUT_FOR, Cluster, consumer_info};
use crate::common::{self, OwnNats};
use crate::netcut;
use crate::report::Row;
use crate::sender::{Sent, send_all};
use crate::servers::{Service, free_addr};
use crate::workload::{expected_subtotals, tenant_id, workload};
use crate::{Args, DOWN_FOR, Infra, PERIOD, RECOVERY_LIMIT, STRIKE_AT, Scenario};

/// The scenario's NATS: a server of its own, or a 3-node cluster (`--cluster`).
enum Nats {
    Own(Box<OwnNats>),
    Cluster(Cluster),
}

impl Nats {
    fn url(&self) -> &str {
        match self {
            Nats::Own(nats) => nats.url(),
            Nats::Cluster(cluster) => cluster.url(),
        }
    }

    fn cluster(&self) -> anyhow::Result<&Cluster> {
        match self {
            Nats::Cluster(cluster) => Ok(cluster),
            Nats::Own(_) => anyhow::bail!("this scenario needs --cluster"),
        }
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Nats::Own(nats) => nats.stop().await,
            Nats::Cluster(cluster) => cluster.stop().await,
        }
    }
}

/// The ledger's debug build, which alone has the test-only fault point
/// (services/ledger/src/consumer/test_fault.rs): `target/debug/ledger` next to this release
/// build's directory.
fn debug_ledger() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|release| release.parent())
        .map(|target| target.join("debug/ledger"))
        .ok_or_else(|| anyhow::anyhow!("no target directory above {}", exe.display()))?;
    anyhow::ensure!(
        bin.exists(),
        "kill-ledger needs the ledger's debug build ({}; `cargo build -p ledger`, which \
         bench/run.sh faults does)",
        bin.display()
    );
    Ok(bin)
}

/// The name of the ledger's test-only fault point's trigger variable.
const CRASH_AFTER_COMMIT: &str = "LEDGER_TEST_FAULT_CRASH_AFTER_COMMIT_FILE";

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
    let mut nats = if args.cluster {
        Nats::Cluster(Cluster::start_fresh(&dir, args.cluster_base).await?)
    } else {
        Nats::Own(Box::new(OwnNats::start(&infra.secured, &dir).await?))
    };
    // Each service's environment as the database's owner, its migrations applied that way, and
    // its environment as it runs (its runtime role, its NATS user, the chain key).
    let mut envs = HashMap::new();
    for service in ["ingest", "ledger", "invoicing", "notifier"] {
        let owner_env =
            common::service_env(service, &db_url, nats.url(), "", &infra.tenants_file, &[]);
        infra.secured.migrate(service, &owner_env, &dir).await?;
        let mut env = infra.secured.service_env(service, owner_env)?;
        if args.cluster {
            // Every stream on the three servers.
            env.push((
                format!("{}_NATS_STREAM_REPLICAS", service.to_ascii_uppercase()),
                "3".into(),
            ));
        }
        envs.insert(service, env);
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
    // The replica that dies between a commit and its acks: the debug build, whose test-only
    // fault point fires once the trigger file exists.
    let trigger = dir.join("ledger-crash-after-commit");
    if scenario == Scenario::KillLedger {
        ledgers[0].use_binary(Some(debug_ledger()?));
        ledgers[0].set_env(CRASH_AFTER_COMMIT, Some(trigger.display().to_string()));
    }
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
    // vanish-postgres: the cut stays until every check is done.
    let mut vanished: Option<netcut::Cut> = None;
    let window_started = Instant::now();
    sent.in_window.store(true, Ordering::Relaxed);
    match scenario {
        Scenario::KillLedger => {
            std::fs::write(&trigger, "")?;
            let status = ledgers[0].wait_exit(Duration::from_secs(60)).await?;
            std::fs::remove_file(&trigger)?;
            let log = std::fs::read_to_string(ledgers[0].log())?;
            let fired = log
                .lines()
                .find(|l| l.contains("LEDGER_TEST_FAULT"))
                .map(str::to_string);
            let (Some(status), Some(fired)) = (status, fired) else {
                anyhow::bail!(
                    "the ledger's test fault point did not fire within 60 s (log: {})",
                    ledgers[0].log().display()
                );
            };
            notes.push(format!(
                "ledger replica 0 (debug build, {CRASH_AFTER_COMMIT} set) exited ({status}): \
                 {}",
                fired.trim_start_matches("LEDGER_TEST_FAULT: ")
            ));
            tokio::time::sleep(DOWN_FOR).await;
            // Back as the release build, without the fault point.
            ledgers[0].use_binary(None);
            ledgers[0].set_env(CRASH_AFTER_COMMIT, None);
            ledgers[0].start().await?;
        }
        Scenario::RestartNats => {
            let Nats::Own(own) = &mut nats else {
                anyhow::bail!("restart-nats needs a single server");
            };
            own.stop().await?;
            tokio::time::sleep(DOWN_FOR).await;
            own.resume().await?;
        }
        Scenario::RestartPostgres => {
            infra.pg.stop().await?;
            tokio::time::sleep(DOWN_FOR).await;
            infra.pg.start().await?;
        }
        Scenario::VanishPostgres | Scenario::PartitionPostgres => {
            let port = infra.pg.port();
            let connections = netcut::clients_of(port).await?;
            vanished = Some(netcut::Cut::start("pg", &connections, &[], &[]).await?);
            let ended = if scenario == Scenario::VanishPostgres {
                // The old primary's sessions die with it: their transactions roll back and their
                // locks go, while what the server says to the clients is dropped by the cut.
                let db = common::bench_pool(&infra.pg.url("postgres"), "public").await?;
                let client_ports: Vec<i32> =
                    connections.iter().map(|(c, _)| i32::from(*c)).collect();
                let ended: i64 = sqlx::query_scalar(
                    "select count(*) filter (where pg_terminate_backend(pid))
                     from pg_stat_activity where client_port = any($1)",
                )
                .bind(&client_ports)
                .fetch_one(&db)
                .await?;
                db.close().await;
                format!("; the server ended their {ended} sessions unheard")
            } else {
                "; the server keeps their sessions until its own keepalive ends them".to_string()
            };
            notes.push(format!(
                "{} connections to PostgreSQL (port {port}) cut: their packets dropped until the \
                 scenario's end, new connections let through{ended}",
                connections.len()
            ));
            // Until the services have let go of every silent connection (their kernels close
            // each once keepalive or TCP_USER_TIMEOUT gives up on it), or two minutes.
            let cut_at = Instant::now();
            let mut open = connections.len();
            while open > 0 && cut_at.elapsed() < Duration::from_secs(120) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = netcut::clients_of(port).await?;
                open = connections.iter().filter(|c| now.contains(c)).count();
            }
            notes.push(if open == 0 {
                format!(
                    "every cut connection closed by its service {:.1} s after the cut",
                    cut_at.elapsed().as_secs_f64()
                )
            } else {
                format!(
                    "{open} of the cut connections still open {:.0} s after the cut",
                    cut_at.elapsed().as_secs_f64()
                )
            });
        }
        Scenario::KillIngest => {
            ingests[0].kill().await?;
            tokio::time::sleep(DOWN_FOR).await;
            ingests[0].start().await?;
        }
        Scenario::KillWebhooksLeader => {
            let cluster = nats.cluster()?;
            notes.push(
                cluster
                    .kill_stream_leader(&infra.secured, DOWN_FOR, &sent)
                    .await?,
            );
        }
        Scenario::FreezeConsumerLeader => {
            let cluster = nats.cluster()?;
            notes.push(
                cluster
                    .freeze_consumer_leader(&infra.secured, &sent)
                    .await?,
            );
        }
        Scenario::CutWebhooksLeader => {
            let cluster = nats.cluster()?;
            notes.push(
                cluster
                    .cut_stream_leader(&infra.secured, CUT_FOR, &sent)
                    .await?,
            );
        }
        Scenario::RollingRestart => {
            let cluster = nats.cluster()?;
            notes.push(
                cluster
                    .rolling_restart(&infra.secured, DOWN_FOR, &sent)
                    .await?,
            );
        }
        Scenario::Baseline | Scenario::StopSmtp => {}
    }
    sent.in_window.store(false, Ordering::Relaxed);
    let window = window_started.elapsed();
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
    loop {
        let c = compare(&ledger_db, &work).await?;
        if (c.lost == 0 && c.wrong == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut recovered_in = healed.elapsed();
    let caught_up_in = last_delivery.elapsed();
    // Drained: nothing left for the ledger's consumer, nothing awaiting its ack (a redelivery
    // still to come could yet apply something twice). Then the verdicts.
    let js = infra.secured.jetstream(nats.url(), "ledger").await?;
    let drained_in = loop {
        if let Ok(info) = consumer_info(&js).await
            && info.num_pending == 0
            && info.num_ack_pending == 0
        {
            break Some(last_delivery.elapsed());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let compared = compare(&ledger_db, &work).await?;
    let mut recognised = 0;
    for addr in ledger_addrs {
        recognised += metric_sum(addr, "ledger_events_total{", "outcome=\"duplicate\"")
            .await
            .unwrap_or(0);
    }
    notes.push(format!(
        "applied-twice check: {} revisions and {} history rows matched to the workload's \
         events; redelivered events the ledgers recognised as already applied: {recognised}",
        compared.matched.0, compared.matched.1
    ));

    // Every chain verifies.
    let mut ledger = LedgerServiceClient::new(client_channel(ledger_addrs[1])?);
    let mut chains_ok = true;
    // The LEDGER stream, where chain heads are anchored, may still be electing a leader after a
    // cluster fault: the check answers UNAVAILABLE ("retry later") until it has one.
    let verify_deadline = Instant::now() + Duration::from_secs(60);
    let mut unavailable = 0;
    for t in 1..=args.tenants {
        let report = loop {
            match ledger
                .verify_integrity(VerifyIntegrityRequest {
                    tenant_id: tenant_id(t),
                })
                .await
            {
                Ok(report) => break report.into_inner(),
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        && Instant::now() < verify_deadline =>
                {
                    unavailable += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(status) => return Err(status.into()),
            }
        };
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
    if unavailable > 0 {
        notes.push(format!(
            "the integrity check answered UNAVAILABLE (chain anchors not readable yet) {unavailable} \
             times before it answered"
        ));
    }
    // Each event once in the stream: ingest's deduplication (Nats-Msg-Id) held. Asked as the
    // ledger (every service may read a stream's info). And the dead letters, of which the
    // workload makes none.
    let messages = |name: &'static str| {
        let js = js.clone();
        async move {
            let mut stream = js
                .get_stream(billing_runtime::Subjects::new("").stream_name(name))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let info = stream.info().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok::<_, anyhow::Error>((info.state.messages, info.config.num_replicas))
        }
    };
    let (stream_messages, replicas) = messages("WEBHOOKS").await?;
    let (dead_letters, _) = messages("DLQ").await?;
    if args.cluster {
        anyhow::ensure!(replicas == 3, "WEBHOOKS has {replicas} replicas, not 3");
    }

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
    if let Some(cut) = vanished.take() {
        notes.push(format!(
            "{} packets of the cut PostgreSQL connections dropped",
            cut.heal().await?
        ));
    }
    let row = Row {
        scenario,
        sent: sent.accepted.load(Ordering::Relaxed),
        events: work.events.len(),
        stream_messages,
        given_up: sent.given_up.load(Ordering::Relaxed),
        compared,
        chains_ok,
        invoices_ok,
        emails_ok,
        recovered_in,
        caught_up_in,
        drained_in,
        dead_letters,
        answers: sent.requests.get(),
        window_answers: sent.window.get(),
        window,
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
