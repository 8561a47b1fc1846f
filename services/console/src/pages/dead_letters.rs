//! Dead letters: the events a consumer gave up on (the ledger lists every service's), one
//! letter's details, and its replay (admin, as the gRPC API allows), confirmed first.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use billing_proto::ledger::{DeadLetter, ListDeadLettersRequest, ReplayDeadLetterRequest};
use billing_runtime::auth::Access;
use maud::html;
use serde::Deserialize;

use super::PAGE_SIZE;
use crate::backend::as_operator;
use crate::format::{local, zone};
use crate::web::{Operator, Refusal, Shared, page, refusal};

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    tenant: String,
    /// Continue after this stream sequence.
    #[serde(default)]
    after: u64,
    #[serde(default)]
    done: String,
}

async fn letters(
    state: &Shared,
    tenant: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<DeadLetter>, Refusal> {
    Ok(state
        .backend
        .ledger
        .clone()
        .list_dead_letters(ListDeadLettersRequest {
            tenant_id: tenant.trim().to_string(),
            after_sequence: after,
            limit: u32::try_from(limit).unwrap_or(100),
            consumer: String::new(),
        })
        .await
        .map_err(refusal)?
        .into_inner()
        .dead_letters)
}

pub async fn list(
    State(state): State<Shared>,
    who: Operator,
    Query(q): Query<ListQuery>,
) -> Result<Response, Refusal> {
    let found = letters(&state, &q.tenant, q.after, PAGE_SIZE).await?;
    // Times in UTC here: a dead letter may name no tenant (a refused request).
    let utc = zone("UTC");
    let next = (found.len() == PAGE_SIZE)
        .then(|| found.last().map(|l| l.sequence))
        .flatten();
    let tenant: String = form_urlencoded::byte_serialize(q.tenant.as_bytes()).collect();
    let body = html! {
        @if q.done == "replayed" {
            p.notice role="status" { "The dead letter was published again; its consumer processes it anew." }
        }
        @if q.done == "already" {
            p.notice role="status" { "That dead letter had just been replayed; nothing was published twice." }
        }
        form.filters method="get" action="/dead-letters" {
            div { label for="tenant" { "Tenant" } br; input #tenant name="tenant" value=(q.tenant); }
            div { button type="submit" { "Filter" } }
        }
        @if found.is_empty() { p { "No dead letters." } } @else {
            table {
                thead { tr { th.num { "Sequence" } th { "Consumer" } th { "Tenant" } th { "Event" } th { "Reason" } th { "When (UTC)" } } }
                tbody {
                    @for l in &found {
                        tr {
                            td.num { a href={"/dead-letters/" (l.sequence)} { (l.sequence) } }
                            td { (l.consumer) }
                            td { (l.tenant_id) }
                            td { (l.event_id) }
                            td { (l.reason) }
                            td { (local(l.dead_lettered_at.as_ref(), utc)) }
                        }
                    }
                }
            }
        }
        nav.pages aria-label="Pages" {
            @if q.after > 0 { a href={"/dead-letters?tenant=" (tenant)} { "First" } }
            @if let Some(next) = next { a href={"/dead-letters?tenant=" (tenant) "&after=" (next)} { "Next" } }
        }
    };
    Ok(page(&who, "Dead letters", body))
}

async fn one(state: &Shared, sequence: u64) -> Result<DeadLetter, Refusal> {
    letters(state, "", sequence.saturating_sub(1), 1)
        .await?
        .into_iter()
        .find(|l| l.sequence == sequence)
        .ok_or_else(|| Refusal::NotFound(format!("no dead letter {sequence}")))
}

pub async fn detail(
    State(state): State<Shared>,
    who: Operator,
    Path(sequence): Path<u64>,
) -> Result<Response, Refusal> {
    let l = one(&state, sequence).await?;
    let body = html! {
        dl {
            dt { "Consumer" } dd { (l.consumer) }
            dt { "Tenant" } dd { (l.tenant_id) }
            dt { "Subject" } dd { (l.original_subject) }
            dt { "Event" } dd { (l.event_id) }
            dt { "When (UTC)" } dd { (local(l.dead_lettered_at.as_ref(), zone("UTC"))) }
            dt { "Reason" } dd { pre { (l.reason) } }
        }
        @if who.may(Access::Admin) {
            form.write method="post" action={"/dead-letters/" (l.sequence) "/replay"} {
                input type="hidden" name="csrf" value=(who.session.csrf);
                p { "Replay publishes the event again on its subject; fix its cause first." }
                button.primary type="submit" { "Replay…" }
            }
        }
        p { a href="/dead-letters" { "All dead letters" } }
    };
    Ok(page(&who, &format!("Dead letter {}", l.sequence), body))
}

#[derive(Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirmed: bool,
}

pub async fn replay(
    State(state): State<Shared>,
    who: Operator,
    Path(sequence): Path<u64>,
    Form(form): Form<ReplayForm>,
) -> Result<Response, Refusal> {
    who.check_write(&form.csrf, Access::Admin)?;
    if !form.confirmed {
        let l = one(&state, sequence).await?;
        let body = html! {
            p { "Replay dead letter " strong { (l.sequence) } " (" (l.event_id) ", " (l.consumer) ")? "
                "It is published again on " (l.original_subject) "." }
            form.write method="post" action={"/dead-letters/" (l.sequence) "/replay"} {
                input type="hidden" name="csrf" value=(who.session.csrf);
                input type="hidden" name="confirmed" value="true";
                p { button.primary type="submit" { "Replay" } " " a href={"/dead-letters/" (l.sequence)} { "Cancel" } }
            }
        };
        return Ok(page(&who, "Confirm", body));
    }
    let replayed = state
        .backend
        .ledger
        .clone()
        .replay_dead_letter(as_operator(
            ReplayDeadLetterRequest { sequence },
            &who.session,
        ))
        .await
        .map_err(refusal)?
        .into_inner()
        .replayed;
    metrics::counter!("console_writes_total", "write" => "replay_dead_letter").increment(1);
    let done = if replayed { "replayed" } else { "already" };
    Ok(Redirect::to(&format!("/dead-letters?done={done}")).into_response())
}
