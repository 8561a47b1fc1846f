//! What a scenario checks against the services: the ledger's bookings against the workload's,
//! the notifier's deferred emails, and the gRPC channel the chain and close checks call over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use billing_runtime::trace::{TracedChannel, traced};
use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;

use crate::common;
use crate::workload::State;

/// How the ledger compares with the expected bookings.
#[derive(Debug, Default)]
pub struct Compared {
    pub stored: usize,
    pub lost: usize,
    pub wrong: usize,
    pub extra: usize,
    /// Events applied more than once: audit outcomes, price revisions or status-history rows
    /// of one event id, or a booking whose revisions do not add up to its current amount.
    pub applied_twice: i64,
    /// Redelivered events the ledger recognised (audit outcome `duplicate`).
    pub ledger_duplicates: i64,
}

pub async fn compare(
    ledger_db: &sqlx::PgPool,
    expected: &BTreeMap<(String, String), State>,
) -> anyhow::Result<Compared> {
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
    for twice in [
        "select count(*) from (select event_id from audit_log
             where outcome not in ('duplicate', 'rejected', 'dead_lettered')
             group by event_id having count(*) > 1) twice",
        "select count(*) from (select source_event_id from booking_revisions
             group by source_event_id having count(*) > 1) twice",
        "select count(*) from (select event_id from booking_status_history
             group by event_id having count(*) > 1) twice",
        // Money: the original total plus every revision's delta is the current total.
        "select count(*) from bookings b
         where b.total_amount + coalesce((select sum(r.total_delta) from booking_revisions r
                                          where r.booking_id = b.id), 0)
            <> coalesce((select r.total_after from booking_revisions r where r.booking_id = b.id
                         order by r.revision_no desc limit 1), b.total_amount)",
    ] {
        let n: i64 = sqlx::query_scalar(twice).fetch_one(ledger_db).await?;
        c.applied_twice += n;
    }
    c.ledger_duplicates =
        sqlx::query_scalar("select count(*) from audit_log where outcome = 'duplicate'")
            .fetch_one(ledger_db)
            .await?;
    Ok(c)
}

/// Email attempts the notifier deferred (SMTP unreachable), from its /metrics.
pub async fn deferred_emails(notifier: SocketAddr) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{notifier}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("notifier_emails_total{") && l.contains("result=\"deferred\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum())
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
