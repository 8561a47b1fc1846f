//! `billingctl clients`: a client's bookings with the personal details the ledger keeps sealed,
//! their erasure (crypto-shredding: the client's data keys destroyed), and the re-wrap of data
//! keys under the keyring's current key-encryption key. docs/privacy.md says how it is kept.

use billing_proto::ledger::{
    ClientBooking, ClientSelector, EraseClientRequest, RewrapClientKeysRequest,
    RewrapClientKeysResponse, ShowClientRequest, client_selector,
};

use crate::clients::Conn;
use crate::exit::Outcome;
use crate::output::{self, Table, json_time, last, left, outln, utc_minute};
use crate::progress::Progress;

#[derive(clap::Subcommand)]
pub enum ClientsCmd {
    /// A client's bookings with their personal details (billing or admin role); an erased
    /// client's bookings say when they were erased.
    Show {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        client: Client,
    },
    /// Erase a client: destroy their data keys, so their details are unreadable everywhere
    /// while bookings, invoices and hash chains stay as they were (admin role). Recorded with
    /// --as and the reason; erasing again changes nothing and says so (exit status 0).
    Erase {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        client: Client,
        /// Why (the request's reference, e.g. a ticket); kept with the erasure.
        #[arg(long)]
        reason: String,
    },
    /// Re-wrap clients' data keys under the keyring's current key-encryption key, so a retired
    /// one can be removed (admin role).
    Rewrap {
        /// Keys to re-wrap in one call (the ledger's default: 1000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: Option<u32>,
        /// Repeat until no key remains under another key-encryption key.
        #[arg(long)]
        all: bool,
    },
}

/// How a client is named: by an email any of their bookings carried, or SimplyBook's client id.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Client {
    #[arg(long)]
    email: Option<String>,
    /// SimplyBook's client id.
    #[arg(long)]
    client_id: Option<String>,
}

impl Client {
    fn selector(self) -> Option<ClientSelector> {
        let by = match (self.email, self.client_id) {
            (Some(email), _) => client_selector::By::Email(email),
            (None, Some(id)) => client_selector::By::SimplybookClientId(id),
            // clap requires one; the ledger refuses a request without.
            (None, None) => return None,
        };
        Some(ClientSelector { by: Some(by) })
    }
}

const SHOW: Table<6> = Table::new([
    left("BOOKING", 12),
    left("SESSION (UTC)", 17),
    left("STATUS", 10),
    left("NAME", 24),
    left("EMAIL", 32),
    last("PHONE"),
]);

/// A booking of an erased client: the first columns of [`SHOW`], then when it was erased.
const ERASED: Table<4> = Table::new([
    left("BOOKING", 12),
    left("SESSION (UTC)", 17),
    left("STATUS", 10),
    last("NAME"),
]);

/// How many calls in a row `rewrap --all` lets re-wrap nothing while keys remain (another
/// re-wrap holds them) before it gives up.
const STALLED_CALLS: u32 = 5;

pub async fn run(conn: &Conn, json: bool, cmd: ClientsCmd) -> anyhow::Result<Outcome> {
    let mut ledger = conn.ledger()?;
    match cmd {
        ClientsCmd::Show { tenant, client } => {
            let bookings = ledger
                .show_client(ShowClientRequest {
                    tenant_id: tenant.clone(),
                    client: client.selector(),
                })
                .await?
                .into_inner()
                .bookings;
            if !json && bookings.is_empty() {
                outln!("{tenant}: the ledger keeps no booking of this client");
                return Ok(Outcome::Done);
            }
            output::print_list(
                json,
                &bookings,
                |b| client_booking_json(&tenant, b),
                |bookings| {
                    SHOW.header();
                    for b in bookings {
                        let session = utc_minute(b.session_at.as_ref());
                        match &b.details {
                            Some(d) => SHOW.row([
                                &b.booking_ref,
                                &session,
                                &b.status,
                                &d.name,
                                &d.email,
                                &d.phone,
                            ]),
                            None => ERASED.row([&b.booking_ref, &session, &b.status, &erased(b)]),
                        }
                    }
                },
            )?;
            Ok(Outcome::Done)
        }
        ClientsCmd::Erase {
            tenant,
            client,
            reason,
        } => {
            let erasure = ledger
                .erase_client(EraseClientRequest {
                    tenant_id: tenant.clone(),
                    client: client.selector(),
                    reason,
                })
                .await?
                .into_inner();
            let (erased, before) = (erasure.keys_erased, erasure.keys_already_erased);
            let outcome = match (erased, before) {
                (0, 0) => "nothing_to_erase",
                (0, _) => "already_erased",
                _ => "erased",
            };
            if json {
                output::print_json_line(&serde_json::json!({
                    "tenant": tenant, "outcome": outcome, "keys_erased": erased,
                    "keys_already_erased": before, "bookings": erasure.bookings,
                }));
            } else if erased > 0 {
                outln!(
                    "{tenant}: client erased: {} destroyed{}; their details on {} are unreadable",
                    keys(erased),
                    if before > 0 {
                        format!(" ({} erased before)", keys(before))
                    } else {
                        String::new()
                    },
                    bookings(erasure.bookings)
                );
            } else if before > 0 {
                outln!(
                    "{tenant}: client already erased, nothing changed ({} erased before; {})",
                    keys(before),
                    bookings(erasure.bookings)
                );
            } else {
                outln!("{tenant}: nothing to erase: the ledger keeps no data key for this client");
            }
            Ok(Outcome::Done)
        }
        ClientsCmd::Rewrap { limit, all } => {
            // 0: the ledger's default.
            let request = || RewrapClientKeysRequest {
                limit: limit.unwrap_or_default(),
            };
            let mut reply = ledger.rewrap_client_keys(request()).await?.into_inner();
            let mut rewrapped = u64::from(reply.rewrapped);
            // A line a call on stdout; with --json, one object at the end and a progress line
            // on a terminal.
            let mut progress = json.then(|| {
                Progress::new(
                    "keys re-wrapped",
                    Some(rewrapped.saturating_add(reply.remaining)),
                )
            });
            if !json {
                print_rewrap(&reply);
            }
            let mut stalled = 0;
            while all && reply.remaining > 0 {
                stalled = if reply.rewrapped == 0 { stalled + 1 } else { 0 };
                if stalled >= STALLED_CALLS {
                    anyhow::bail!(
                        "{} remain under another key-encryption key, but {STALLED_CALLS} calls in \
                         a row re-wrapped none (is another re-wrap running?); run it again later",
                        keys(reply.remaining)
                    );
                }
                if stalled > 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                if let Some(progress) = &mut progress {
                    progress.set(rewrapped);
                }
                reply = ledger.rewrap_client_keys(request()).await?.into_inner();
                rewrapped += u64::from(reply.rewrapped);
                if !json {
                    print_rewrap(&reply);
                }
            }
            if let Some(progress) = progress {
                progress.done();
            }
            if json {
                output::print_json_line(&serde_json::json!({
                    "rewrapped": rewrapped, "remaining": reply.remaining,
                    "current_kek": reply.current_kek,
                }));
            } else if all {
                outln!(
                    "done: {} re-wrapped in all, every live key is under {}",
                    keys(rewrapped),
                    reply.current_kek
                );
            } else if reply.remaining > 0 {
                outln!("run it again (or with --all) until none remain");
            }
            Ok(Outcome::Done)
        }
    }
}

/// A booking of a client, with the details as recorded, or `null` and when they were erased.
fn client_booking_json(tenant: &str, b: &ClientBooking) -> serde_json::Value {
    serde_json::json!({
        "tenant": tenant, "booking_ref": b.booking_ref, "status": b.status,
        "session_at": json_time(b.session_at.as_ref()),
        "details": b.details.as_ref().map(|d| serde_json::json!({
            "name": d.name, "email": d.email, "phone": d.phone,
            "simplybook_client_id": d.simplybook_client_id,
        })),
        "erased_at": json_time(b.erased_at.as_ref()),
    })
}

/// `erased 2026-12-01 09:30 UTC`, what the table shows in place of an erased client's details.
fn erased(b: &ClientBooking) -> String {
    match b.erased_at.as_ref() {
        Some(at) => format!("erased {} UTC", utc_minute(Some(at))),
        None => "erased".to_string(),
    }
}

fn print_rewrap(reply: &RewrapClientKeysResponse) {
    outln!(
        "re-wrapped {} under {}; {} remaining",
        keys(u64::from(reply.rewrapped)),
        reply.current_kek,
        reply.remaining
    );
}

/// `1 data key`, `2 data keys`.
fn keys(n: impl Into<u64>) -> String {
    let n = n.into();
    format!("{n} data key{}", if n == 1 { "" } else { "s" })
}

/// `1 booking`, `2 bookings`.
fn bookings(n: u32) -> String {
    format!("{n} booking{}", if n == 1 { "" } else { "s" })
}
