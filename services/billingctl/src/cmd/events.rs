//! `billingctl events`: the ledger's audit log, every webhook received and what became of it.

use billing_proto::ledger::{AuditEvent, ListAuditEventsRequest};

use crate::clients::Conn;
use crate::exit::{InputError, Outcome};
use crate::output::{self, Table, json_time, last, left, outln, right, utc_minute};

#[derive(clap::Subcommand)]
pub enum EventsCmd {
    /// Audit log entries, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// simplybook or stripe.
        #[arg(long)]
        source: Option<String>,
        /// What was decided: stored, duplicate, status_changed, revised, stale, dead_lettered,
        /// rejected.
        #[arg(long, visible_alias = "type")]
        outcome: Option<String>,
        /// Only entries at or after this time (RFC 3339, or YYYY-MM-DD as UTC midnight).
        #[arg(long)]
        since: Option<String>,
        /// Continue with entries older than this id.
        #[arg(long)]
        before: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

const LIST: Table<7> = Table::new([
    right("ID", 8),
    left("AT (UTC)", 17),
    left("SOURCE", 10),
    left("TENANT", 12),
    left("OUTCOME", 14),
    left("EVENT", 48),
    last("REASON"),
]);

pub async fn run(conn: &Conn, json: bool, cmd: EventsCmd) -> anyhow::Result<Outcome> {
    let EventsCmd::List {
        tenant,
        source,
        outcome,
        since,
        before,
        limit,
    } = cmd;
    let from = since.as_deref().map(parse_since).transpose()?;
    let events = conn
        .ledger()?
        .list_audit_events(ListAuditEventsRequest {
            tenant_id: tenant.unwrap_or_default(),
            source: source.unwrap_or_default(),
            outcome: outcome.unwrap_or_default(),
            from: from.map(billing_proto::convert::timestamp),
            to: None,
            before_id: before.unwrap_or(0),
            limit,
        })
        .await?
        .into_inner()
        .events;
    output::print_list(json, &events, event_json, |events| {
        LIST.header();
        for e in events {
            let mut reason = e.reason.clone();
            if e.http_status != 0 {
                reason = format!("HTTP {} {reason}", e.http_status);
            }
            LIST.row([
                &e.id,
                &utc_minute(e.occurred_at.as_ref()),
                &e.source,
                &e.tenant_id,
                &e.outcome,
                &e.event_id,
                &reason,
            ]);
        }
        if events.len() == limit as usize
            && let Some(oldest) = events.last()
        {
            outln!("(more: --before {})", oldest.id);
        }
    })?;
    Ok(Outcome::Done)
}

fn event_json(e: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "id": e.id, "source": e.source, "event_id": e.event_id,
        "tenant": e.tenant_id, "outcome": e.outcome,
        "booking_id": e.booking_id, "reason": e.reason,
        "http_status": e.http_status, "body_sha256": e.body_sha256,
        "occurred_at": json_time(e.occurred_at.as_ref()),
    })
}

/// `--since`: RFC 3339, or a date taken as UTC midnight.
fn parse_since(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            InputError(format!(
                "--since {text:?}: use YYYY-MM-DD or an RFC 3339 time"
            ))
            .into()
        })
}
