//! close-bench: how long the monthly close takes for one tenant with 100,000 bookings and for
//! 1,000 tenants with 100 bookings each.
//!
//! Creates a database of its own and a NATS namespace, publishes the month's bookings (October
//! 2026, Sydney) straight to JetStream, runs release `ledger` and `invoicing` on them, waits
//! until both have consumed everything (bookings recorded, invoicing's change marks written),
//! then times `GenerateMonthlyInvoices` over gRPC, as the CronJob calls it, and checks every
//! invoice's total against the fees computed here.
//!
//! Run it with `bench/run.sh close`.

// The benchmarks' shared helpers; this one runs its services without auth (anonymous NATS,
// the database's owner).
#[allow(dead_code)]
mod common;
mod summary;

use std::io::Write;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use billing_proto::invoicing::invoicing_service_client::InvoicingServiceClient;
use billing_proto::invoicing::{GenerateMonthlyInvoicesRequest, Outcome};
use billing_runtime::Subjects;
use billing_runtime::nats::{
    AUTH_STANDARD_WEBHOOKS, HDR_AUTH, HDR_EVENT_ID, HDR_SOURCE, HDR_TENANT,
};
use chrono::Utc;
use clap::Parser;
use rust_decimal::{Decimal, RoundingStrategy};

const PERIOD: &str = "2026-10";

#[derive(Parser)]
#[command(name = "close-bench", about = "monthly close time at scale")]
struct Args {
    /// Bookings of the one large tenant.
    #[arg(long, default_value_t = 100_000)]
    large: usize,
    /// Number of small tenants.
    #[arg(long, default_value_t = 1_000)]
    tenants: usize,
    /// Bookings of each small tenant.
    #[arg(long, default_value_t = 100)]
    per_tenant: usize,
    #[command(flatten)]
    backends: common::Backends,
}

/// Booking `n`: a price in [50.00, 249.99] and a session spread over October in Sydney.
fn booking(n: usize) -> (String, Decimal) {
    let price = Decimal::new(
        i64::try_from(5_000 + (n * 7_919) % 20_000).unwrap_or(5_000),
        2,
    );
    let day = 1 + n % 31;
    // Daytime hours: 02:30 on 4 October does not exist in Sydney (daylight saving starts).
    let hour = 8 + n % 12;
    let body = format!(
        r#"{{"booking_id":"{n}","booking_hash":"{n:032x}","price":"{price}","datetime":"2026-10-{day:02} {hour:02}:30:00","status":"confirmed","service":{{"id":"7","name":"Remedial massage"}}}}"#
    );
    (body, price)
}

fn fee(price: Decimal) -> Decimal {
    (price * Decimal::new(20, 2)).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Utc::now();
    let namespace = format!("cbench{}", started.timestamp());
    let dir = std::env::temp_dir().join(format!("close-bench-{namespace}"));
    std::fs::create_dir_all(&dir)?;
    let database = common::BenchDatabase::create(
        &args.backends.database_url,
        &format!("close_bench_{}", started.timestamp()),
    )
    .await?;
    let js = async_nats::jetstream::new(async_nats::connect(&args.backends.nats_url).await?);
    let subjects = Subjects::new(&namespace);
    subjects.ensure_streams(&js).await?;

    let result = run(&args, &js, &subjects, &database.url, &dir).await;

    subjects.delete_streams(&js).await;
    database.drop_database().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    args: &Args,
    js: &async_nats::jetstream::Context,
    subjects: &Subjects,
    db_url: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let small: Vec<String> = (0..args.tenants).map(|t| format!("s{t:04}")).collect();
    let mut tenants = vec![serde_json::json!({"id": "large", "name": "Large Tenant",
        "billing_email": "large@example.test", "currency": "AUD"})];
    tenants.extend(small.iter().map(|id| {
        serde_json::json!({"id": id, "name": format!("Tenant {id}"),
            "billing_email": format!("{id}@example.test"), "currency": "AUD"})
    }));
    let tenants_file = dir.join("tenants.json");
    std::fs::write(
        &tenants_file,
        serde_json::json!({ "tenants": tenants }).to_string(),
    )?;

    // The month's bookings, and the fees each invoice must add up to.
    let mut expected_large = Decimal::ZERO;
    let mut expected_small = Decimal::ZERO;
    let mut events: Vec<(&str, usize)> = (0..args.large).map(|n| ("large", n)).collect();
    for (t, id) in small.iter().enumerate() {
        events.extend(
            (0..args.per_tenant).map(|i| (id.as_str(), args.large + t * args.per_tenant + i)),
        );
    }
    let publish_started = Instant::now();
    let mut acks = Vec::with_capacity(512);
    for (tenant, n) in &events {
        let (body, price) = booking(*n);
        if *tenant == "large" {
            expected_large += fee(price);
        } else {
            expected_small += fee(price);
        }
        let event_id = format!("simplybook:{tenant}:bench-{n}");
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event_id.as_str());
        headers.insert(HDR_EVENT_ID, event_id.as_str());
        headers.insert(HDR_TENANT, *tenant);
        headers.insert(HDR_SOURCE, "simplybook");
        headers.insert(HDR_AUTH, AUTH_STANDARD_WEBHOOKS);
        acks.push(
            js.publish_with_headers(subjects.simplybook(tenant), headers, body.into())
                .await?,
        );
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    let published_in = publish_started.elapsed();

    let ledger_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let invoicing_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let env = |service: &str, extra: &[(&str, String)]| {
        common::service_env(
            service,
            db_url,
            &args.backends.nats_url,
            subjects.namespace(),
            &tenants_file,
            extra,
        )
    };
    let ledger_env = env("ledger", &[("LISTEN_ADDR", ledger_addr.to_string())]);
    let invoicing_env = env(
        "invoicing",
        &[
            ("LISTEN_ADDR", invoicing_addr.to_string()),
            ("LEDGER_URL", format!("http://{ledger_addr}")),
            ("LEDGER_TOKEN", common::BENCH_TOKEN.to_string()),
        ],
    );
    let _ledger = common::spawn_service("ledger", &ledger_env, dir)?;
    let _invoicing = common::spawn_service("invoicing", &invoicing_env, dir)?;

    let total = events.len();
    let ledger_db = billing_runtime::db::connect(db_url, "ledger", 2).await?;
    let consume_started = Instant::now();
    common::wait_for_count(
        &ledger_db,
        "select count(*) from bookings",
        total,
        Duration::from_secs(900),
    )
    .await?;
    let recorded_in = consume_started.elapsed();
    let invoicing_db = billing_runtime::db::connect(db_url, "invoicing", 2).await?;
    common::wait_for_count(
        &invoicing_db,
        "select count(*) from booking_marks",
        total,
        Duration::from_secs(600),
    )
    .await?;

    let mut client = connect(invoicing_addr).await?;
    let large_started = Instant::now();
    let outcomes = client
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: PERIOD.into(),
            tenant_id: "large".into(),
            dry_run: false,
        })
        .await?
        .into_inner()
        .outcomes;
    let large_time = large_started.elapsed();
    let large = outcomes
        .first()
        .and_then(|o| o.invoice.clone())
        .unwrap_or_default();
    anyhow::ensure!(
        outcomes.first().map(|o| o.outcome()) == Some(Outcome::Issued),
        "large tenant: {:?}",
        outcomes.first().map(|o| (o.outcome(), &o.error))
    );
    let large_total = amount(large.total.as_ref());

    let all_started = Instant::now();
    let outcomes = client
        .generate_monthly_invoices(GenerateMonthlyInvoicesRequest {
            period: PERIOD.into(),
            tenant_id: String::new(),
            dry_run: false,
        })
        .await?
        .into_inner()
        .outcomes;
    let all_time = all_started.elapsed();
    let issued: Vec<_> = outcomes
        .iter()
        .filter(|o| o.outcome() == Outcome::Issued)
        .collect();
    let failed = outcomes
        .iter()
        .filter(|o| o.outcome() == Outcome::Failed)
        .count();
    let small_total: Decimal = issued
        .iter()
        .filter_map(|o| o.invoice.as_ref())
        .map(|i| amount(i.total.as_ref()))
        .sum();

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# monthly close benchmark, {}",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(
        out,
        "{} cores shared with PostgreSQL, NATS, ledger and invoicing (release builds). {} bookings \
         published in {:.1} s, recorded by the ledger in {:.1} s.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        total,
        published_in.as_secs_f64(),
        recorded_in.as_secs_f64(),
    )?;
    writeln!(out, "| close | invoices | lines | time | goal |")?;
    writeln!(out, "|---|---:|---:|---:|---|")?;
    writeln!(
        out,
        "| 1 tenant x {} bookings | 1 | {} | {:.2} s | < 10 s {} |",
        args.large,
        large.booking_count,
        large_time.as_secs_f64(),
        verdict(large_time < Duration::from_secs(10))
    )?;
    writeln!(
        out,
        "| {} tenants x {} bookings | {} | {} | {:.2} s | < 30 s {} |",
        args.tenants,
        args.per_tenant,
        issued.len(),
        issued
            .iter()
            .filter_map(|o| o.invoice.as_ref())
            .map(|i| u64::from(i.booking_count))
            .sum::<u64>(),
        all_time.as_secs_f64(),
        verdict(all_time < Duration::from_secs(30))
    )?;
    writeln!(
        out,
        "\nlarge invoice total {large_total} (expected {expected_large}) {}; small invoices sum \
         {small_total} (expected {expected_small}) {}; failed closes: {failed}",
        verdict(large_total == expected_large),
        verdict(small_total == expected_small),
    )?;
    // Each booking becomes one invoice line, so inserting the lines is a floor of a close: at
    // docs/performance.md's unnest insert rates, 25k rows/s on one connection (one tenant) and
    // 47k rows/s on four (invoicing closes four tenants at a time). An estimate from a probe,
    // not a bound measured here, and a close can beat it.
    let one_connection = |lines: f64| lines / 25_000.0;
    let four_connections = |lines: f64| lines / 47_000.0;
    let small_lines = (args.tenants * args.per_tenant) as f64;
    summary::record(&summary::Figure {
        bench: "close",
        figure: &format!("close of 1 tenant x {} bookings", args.large),
        value: large_time.as_secs_f64(),
        unit: "s",
        ceiling: one_connection(args.large as f64),
        ceiling_source: "estimate: its lines at docs/performance.md's unnest insert rate, 25k rows/s on 1 connection",
        higher_is_better: false,
    })?;
    summary::record(&summary::Figure {
        bench: "close",
        figure: &format!(
            "close of {} tenants x {} bookings",
            args.tenants, args.per_tenant
        ),
        value: all_time.as_secs_f64(),
        unit: "s",
        ceiling: four_connections(small_lines),
        ceiling_source: "estimate: its lines at docs/performance.md's unnest insert rate, 47k rows/s on 4 connections (4 tenants at a time)",
        higher_is_better: false,
    })?;
    anyhow::ensure!(
        large_total == expected_large,
        "large tenant's total is wrong"
    );
    anyhow::ensure!(
        issued.len() == args.tenants && small_total == expected_small && failed == 0,
        "small tenants' invoices are incomplete or wrong"
    );
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn amount(m: Option<&billing_proto::Money>) -> Decimal {
    m.and_then(|m| Decimal::from_str_exact(&m.amount).ok())
        .unwrap_or_default()
}

async fn connect(
    addr: std::net::SocketAddr,
) -> anyhow::Result<InvoicingServiceClient<billing_runtime::trace::TracedChannel>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = billing_domain::Secret::new(common::BENCH_TOKEN.to_string());
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
        match endpoint.connect().await {
            Ok(channel) => {
                return Ok(InvoicingServiceClient::new(billing_runtime::trace::traced(
                    channel, &token,
                )?));
            }
            Err(err) if Instant::now() > deadline => return Err(err.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
