//! Clients' personal data (issue 19): sealed at rest, shown only to the roles that bill, erased
//! by destroying the client's key while the books stay intact, and readable through a rotation
//! of the key-encryption key.

mod erasure;
mod nowhere_else;
mod retention;
mod rotation;
mod sealing;

use std::net::SocketAddr;
use std::time::Duration;

use billing_proto::ledger::ledger_service_client::LedgerServiceClient;
use billing_proto::ledger::{
    ClientSelector, ShowClientRequest, ShowClientResponse, VerifyIntegrityRequest,
    VerifyIntegrityResponse, client_selector,
};
use billing_runtime::trace::TracedChannel;
use chrono::{Days, NaiveDate};

use crate::harness::{CLAIRE_SECRET, System, eventually};

/// Jo: the same client on several bookings; Sam: another; Anon names only a name.
pub(super) const JO_EMAIL: &str = "jo.bloggs@example.test";
pub(super) const JO_NAME: &str = "Jo Bloggs";
pub(super) const JO_PHONE: &str = "+61 400 111 222";
pub(super) const SAM_EMAIL: &str = "sam.citizen@example.test";

/// A signed booking of `price` on `day` for the client `client` (JSON).
pub(super) fn booking(id: &str, price: &str, day: NaiveDate, client: serde_json::Value) -> String {
    let at = day
        .and_hms_opt(10, 0, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    serde_json::json!({
        "booking_id": id,
        "price": price,
        "currency": "AUD",
        "datetime": at,
        "service": {"name": "Remedial massage 60 min"},
        "client": client,
    })
    .to_string()
}

pub(super) fn jo() -> serde_json::Value {
    serde_json::json!({"name": JO_NAME, "email": JO_EMAIL, "phone": JO_PHONE})
}

pub(super) fn sam() -> serde_json::Value {
    serde_json::json!({"name": "Sam Citizen", "email": SAM_EMAIL})
}

/// Posts `bookings` (id, body) as Claire's signed webhooks and waits until the ledger holds
/// `total` bookings.
pub(super) async fn record(
    system: &System,
    bookings: &[(&str, String)],
    total: i64,
) -> anyhow::Result<()> {
    for (id, body) in bookings {
        let response = system
            .post_signed("claire", &format!("msg_privacy_{id}"), body, CLAIRE_SECRET)
            .await?;
        anyhow::ensure!(
            response.status() == 202,
            "booking {id}: {}",
            response.status()
        );
    }
    let owner = system.db("ledger").await?;
    eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&owner)
            .await?;
        Ok((n == total).then_some(()))
    })
    .await
}

/// A day of last month in Sydney, Claire's zone.
pub(super) fn last_month(day: u64) -> NaiveDate {
    let period = billing_domain::BillingPeriod::previous_to(
        chrono::Utc::now(),
        chrono_tz::Australia::Sydney,
    );
    period.first_day() + Days::new(day)
}

/// The ledger at `addr` as the holder of `token`.
pub(super) fn ledger_as(
    system: &System,
    addr: SocketAddr,
    token: &str,
) -> anyhow::Result<LedgerServiceClient<TracedChannel>> {
    Ok(LedgerServiceClient::new(system.channel_as(addr, token)?))
}

/// Claire's hash chain as that ledger verifies it.
pub(super) async fn verify(
    ledger: &mut LedgerServiceClient<TracedChannel>,
) -> anyhow::Result<VerifyIntegrityResponse> {
    Ok(ledger
        .verify_integrity(VerifyIntegrityRequest {
            tenant_id: "claire".into(),
        })
        .await?
        .into_inner())
}

pub(super) fn by_email(email: &str) -> Option<ClientSelector> {
    Some(ClientSelector {
        by: Some(client_selector::By::Email(email.to_string())),
    })
}

pub(super) async fn show(
    ledger: &mut LedgerServiceClient<TracedChannel>,
    email: &str,
) -> Result<ShowClientResponse, tonic::Status> {
    ledger
        .show_client(ShowClientRequest {
            tenant_id: "claire".into(),
            client: by_email(email),
        })
        .await
        .map(tonic::Response::into_inner)
}
