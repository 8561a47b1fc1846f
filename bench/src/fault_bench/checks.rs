//! What a scenario checks against the services: the ledger's bookings against the workload's,
//! the notifier's deferred emails, and the gRPC channel the chain and close checks call over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use billing_runtime::trace::{TracedChannel, traced};
use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;

use crate::common;
use crate::workload::Workload;

/// How the ledger compares with the expected bookings.
#[derive(Debug, Default)]
pub struct Compared {
    pub stored: usize,
    pub lost: usize,
    pub wrong: usize,
    pub extra: usize,
    /// Events applied more than once, by the workload's account (see [`applied_twice`]).
    pub applied_twice: usize,
    /// Of which: revision or history rows beyond what a booking's events can make.
    pub beyond_bounds: usize,
    /// Of which: rows naming an event that is not one of their booking's.
    pub foreign: usize,
    /// Revision and history rows matched to the workload's events (so the check is not vacuous).
    pub matched: (usize, usize),
    /// Redelivered events the ledger recognised (audit outcome `duplicate`).
    pub ledger_duplicates: i64,
}

pub async fn compare(ledger_db: &sqlx::PgPool, work: &Workload) -> anyhow::Result<Compared> {
    let expected = &work.expected;
    let rows: Vec<(String, String, String, chrono::DateTime<Utc>, Decimal)> = sqlx::query_as(
        "select b.tenant_id, b.booking_ref, b.status, b.session_at,
                coalesce((select r.total_after from booking_revisions r where r.booking_id = b.id
                          order by r.revision_no desc limit 1), b.total_amount)
         from bookings b",
    )
    .fetch_all(ledger_db)
    .await?;
    let mut c = Compared {
        stored: rows.len(),
        ..Default::default()
    };
    let sydney = chrono_tz::Australia::Sydney;
    let mut seen = 0;
    for (tenant, booking, status, session_at, total) in &rows {
        let Some(want) = expected.get(&(tenant.clone(), booking.clone())) else {
            c.extra += 1;
            continue;
        };
        seen += 1;
        let naive = chrono::NaiveDateTime::parse_from_str(&want.local, "%Y-%m-%d %H:%M:%S")?;
        let want_at = sydney
            .from_local_datetime(&naive)
            .earliest()
            .context("a session time in Sydney")?;
        if status != want.status || *total != want.price || *session_at != want_at {
            c.wrong += 1;
        }
    }
    c.lost = expected.len() - seen;
    // Money: the original total plus every revision's delta is the current total.
    let unbalanced: i64 = sqlx::query_scalar(
        "select count(*) from bookings b
         where b.total_amount + coalesce((select sum(r.total_delta) from booking_revisions r
                                          where r.booking_id = b.id), 0)
            <> coalesce((select r.total_after from booking_revisions r where r.booking_id = b.id
                         order by r.revision_no desc limit 1), b.total_amount)",
    )
    .fetch_one(ledger_db)
    .await?;
    c.wrong += usize::try_from(unbalanced)?;
    applied_twice(ledger_db, work, &mut c).await?;
    c.ledger_duplicates =
        sqlx::query_scalar("select count(*) from audit_log where outcome = 'duplicate'")
            .fetch_one(ledger_db)
            .await?;
    Ok(c)
}

/// Events applied more than once, judged by the workload rather than by the ledger's own
/// de-duplication: every price revision and status-history row the ledger holds, matched to the
/// workload's events of its booking by event id (`simplybook:<tenant>:<webhook id>`). An event
/// with two revisions or two history rows was applied twice; a row naming another booking's
/// event, or more rows than the booking's events can make (`Expect`), counts as well.
async fn applied_twice(
    ledger_db: &sqlx::PgPool,
    work: &Workload,
    c: &mut Compared,
) -> anyhow::Result<()> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "select b.tenant_id, b.booking_ref, 'revision', r.source_event_id
         from booking_revisions r join bookings b on b.id = r.booking_id
         union all
         select b.tenant_id, b.booking_ref, 'history', h.event_id
         from booking_status_history h join bookings b on b.id = h.booking_id",
    )
    .fetch_all(ledger_db)
    .await?;
    let mut per_event: HashMap<(String, String, String), usize> = HashMap::new();
    let mut per_booking: HashMap<(String, String, String), usize> = HashMap::new();
    for (tenant, booking, kind, event_id) in rows {
        let key = (tenant, booking);
        let webhook_id = event_id.rsplit(':').next().unwrap_or_default().to_string();
        let Some(expect) = work.bookings.get(&key) else {
            // A booking the workload never made is counted as extra already.
            continue;
        };
        if !expect.webhook_ids.contains(&webhook_id) {
            c.foreign += 1;
            continue;
        }
        *per_event
            .entry((kind.clone(), key.0.clone(), webhook_id))
            .or_default() += 1;
        if kind == "revision" {
            c.matched.0 += 1;
        } else {
            c.matched.1 += 1;
        }
        *per_booking.entry((kind, key.0, key.1)).or_default() += 1;
    }
    let twice: usize = per_event.values().map(|n| n.saturating_sub(1)).sum();
    for ((kind, tenant, booking), n) in per_booking {
        let expect = &work.bookings[&(tenant, booking)];
        let most = if kind == "revision" {
            expect.max_revisions
        } else {
            expect.max_history
        };
        c.beyond_bounds += n.saturating_sub(most);
    }
    c.applied_twice = twice + c.beyond_bounds + c.foreign;
    Ok(())
}

/// A counter summed over a service's /metrics lines that start with `prefix` and contain
/// `label` (e.g. `ledger_events_total{`, `outcome="duplicate"`).
pub async fn metric_sum(addr: SocketAddr, prefix: &str, label: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum())
}

/// Email attempts the notifier deferred (SMTP unreachable), from its /metrics.
pub async fn deferred_emails(notifier: SocketAddr) -> anyhow::Result<u64> {
    metric_sum(notifier, "notifier_emails_total{", "result=\"deferred\"").await
}

pub fn client_channel(addr: SocketAddr) -> anyhow::Result<TracedChannel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .timeout(Duration::from_secs(120))
        .connect_lazy();
    Ok(traced(
        channel,
        &billing_domain::Secret::new(common::BENCH_TOKEN.to_string()),
    )?)
}
