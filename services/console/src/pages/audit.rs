//! The ledger's audit log: what happened to every event it received and what operators did
//! through the API (a replay, with who asked), newest first, filtered by tenant, source and
//! outcome, paged by entry id on the server.

use axum::extract::{Query, State};
use axum::response::Response;
use billing_proto::ledger::ListAuditEventsRequest;
use maud::html;
use serde::Deserialize;

use super::PAGE_SIZE;
use crate::format::{local, zone};
use crate::web::{Operator, Refusal, Shared, page, refusal};

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    outcome: String,
    /// Entries older than this id.
    #[serde(default)]
    before: u64,
}

fn by(operator: &str, role: &str) -> String {
    match (operator, role) {
        (_, "") => String::new(),
        ("", role) => format!("(unnamed) as {role}"),
        (name, role) => format!("{name} as {role}"),
    }
}

pub async fn list(
    State(state): State<Shared>,
    who: Operator,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Refusal> {
    let events = state
        .backend
        .ledger
        .clone()
        .list_audit_events(ListAuditEventsRequest {
            tenant_id: q.tenant.trim().to_string(),
            source: q.source.trim().to_string(),
            outcome: q.outcome.trim().to_string(),
            from: None,
            to: None,
            before_id: q.before,
            limit: u32::try_from(PAGE_SIZE).unwrap_or(25),
        })
        .await
        .map_err(refusal)?
        .into_inner()
        .events;
    let utc = zone("UTC");
    let older = (events.len() == PAGE_SIZE)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    let older_href = older.map(|id| {
        super::query_href(
            "/audit",
            &[
                ("tenant", q.tenant.as_str()),
                ("source", q.source.as_str()),
                ("outcome", q.outcome.as_str()),
                ("before", &id.to_string()),
            ],
        )
    });
    let body = html! {
        form.filters method="get" action="/audit" {
            div { label for="tenant" { "Tenant" } br; input #tenant name="tenant" value=(q.tenant); }
            div { label for="source" { "Source" } br; input #source name="source" value=(q.source); }
            div { label for="outcome" { "Outcome" } br; input #outcome name="outcome" value=(q.outcome); }
            div { button type="submit" { "Filter" } }
        }
        @if events.is_empty() { p { "No entries." } } @else {
            table {
                thead { tr { th.num { "Id" } th { "When (UTC)" } th { "Source" } th { "Tenant" } th { "Outcome" } th { "Event" } th { "Reason" } th { "By" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td.num { (e.id) }
                            td { (local(e.occurred_at.as_ref(), utc)) }
                            td { (e.source) }
                            td { (e.tenant_id) }
                            td { (e.outcome) }
                            td { (e.event_id) }
                            td { (e.reason) }
                            td { (by(&e.operator, &e.caller_role)) }
                        }
                    }
                }
            }
        }
        nav.pages aria-label="Pages" {
            @if q.before > 0 { a href="/audit" { "Newest" } }
            @if let Some(href) = older_href { a href=(href) { "Older" } }
        }
    };
    Ok(page(&who, "Audit log", body))
}
