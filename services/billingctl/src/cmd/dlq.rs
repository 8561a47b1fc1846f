//! `billingctl dlq`: events a service gave up on (the shared dead-letter stream), and their
//! replay once the cause is fixed.

use billing_proto::ledger::{DeadLetter, ListDeadLettersRequest, ReplayDeadLetterRequest};

use crate::clients::Conn;
use crate::exit::Outcome;
use crate::output::{self, Table, json_time, last, left, outln, right, utc_minute};

#[derive(clap::Subcommand)]
pub enum DlqCmd {
    /// List dead letters with their reasons, oldest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only this consumer's: ledger, ledger-rejections, invoicing-bookings,
        /// invoicing-stripe, notifier-invoices or notifier-alerts.
        #[arg(long)]
        consumer: Option<String>,
        /// Continue after this sequence.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Publish a dead letter's event again once its cause is fixed.
    Replay { sequence: u64 },
}

const LIST: Table<6> = Table::new([
    right("SEQ", 8),
    left("AT (UTC)", 17),
    left("CONSUMER", 18),
    left("TENANT", 12),
    left("EVENT", 44),
    last("REASON"),
]);

pub async fn run(conn: &Conn, json: bool, cmd: DlqCmd) -> anyhow::Result<Outcome> {
    let mut ledger = conn.ledger()?;
    match cmd {
        DlqCmd::List {
            tenant,
            consumer,
            after,
            limit,
        } => {
            let letters = ledger
                .list_dead_letters(ListDeadLettersRequest {
                    tenant_id: tenant.unwrap_or_default(),
                    after_sequence: after,
                    limit,
                    consumer: consumer.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .dead_letters;
            output::print_list(json, &letters, dead_letter_json, |letters| {
                LIST.header();
                for d in letters {
                    LIST.row([
                        &d.sequence,
                        &utc_minute(d.dead_lettered_at.as_ref()),
                        &d.consumer,
                        &d.tenant_id,
                        &d.event_id,
                        &d.reason,
                    ]);
                }
            })?;
        }
        DlqCmd::Replay { sequence } => {
            let reply = ledger
                .replay_dead_letter(ReplayDeadLetterRequest { sequence })
                .await?
                .into_inner();
            let letter = reply.dead_letter.unwrap_or_default();
            if json {
                output::print_json_line(&serde_json::json!({"replayed": reply.replayed,
                    "dead_letter": dead_letter_json(&letter)}));
            } else if reply.replayed {
                outln!(
                    "replayed {} to {}",
                    letter.event_id,
                    letter.original_subject
                );
            } else {
                outln!("{} was already replayed moments ago", letter.event_id);
            }
        }
    }
    Ok(Outcome::Done)
}

fn dead_letter_json(d: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "sequence": d.sequence, "consumer": d.consumer, "original_subject": d.original_subject,
        "event_id": d.event_id, "tenant": d.tenant_id, "reason": d.reason,
        "dead_lettered_at": json_time(d.dead_lettered_at.as_ref()),
    })
}
