//! The clients' RPCs of `LedgerService` (ShowClient, EraseClient, RewrapClientKeys): requests
//! checked, the caller named, answers built; `crate::grpc` delegates here.

use billing_domain::privacy::keys::KeyError;
use billing_proto::convert::timestamp;
use billing_proto::ledger::{
    ClientBooking, ClientDetails, ClientSelector, EraseClientRequest, EraseClientResponse,
    RewrapClientKeysRequest, RewrapClientKeysResponse, ShowClientRequest, ShowClientResponse,
    client_selector,
};
use billing_runtime::error::{ErrorCode, ServiceError, status, to_status};
use tonic::{Request, Response, Status};

use super::manage::{self, Selector};
use super::{ClientDataError, Vault};
use crate::store::Store;

const MAX_REASON_LEN: usize = 500;
const DEFAULT_REWRAP: u32 = 1000;

impl ServiceError for ClientDataError {
    fn error_code(&self) -> ErrorCode {
        match self {
            ClientDataError::Db(e) => e.error_code(),
            // A ciphertext or wrapped key that does not open is stored data not as written.
            ClientDataError::Key(KeyError::Refused) => ErrorCode::DataLoss,
            ClientDataError::Key(KeyError::UnknownKek(_) | KeyError::Invalid(_)) => {
                ErrorCode::FailedPrecondition
            }
            ClientDataError::Key(KeyError::Random) => ErrorCode::Internal,
            ClientDataError::Raced(_) => ErrorCode::Unavailable,
        }
    }
}

fn vault(store: &Store) -> Result<&Vault, Status> {
    store.vault().ok_or_else(|| {
        Status::failed_precondition(
            "this ledger keeps no client details (no LEDGER_CLIENT_KEYRING_FILE)",
        )
    })
}

fn selector(tenant_id: &str, client: Option<ClientSelector>) -> Result<Selector, Status> {
    if tenant_id.is_empty() {
        return Err(Status::invalid_argument("tenant_id is required"));
    }
    let selector = match client.and_then(|c| c.by) {
        Some(client_selector::By::Email(e)) => Selector::Email(e),
        Some(client_selector::By::SimplybookClientId(id)) => Selector::SimplyBookClient(id),
        None => {
            return Err(Status::invalid_argument(
                "client is required: an email or a SimplyBook client id",
            ));
        }
    };
    if selector.identity().is_none() {
        return Err(Status::invalid_argument(
            "the client must be an email address or a non-empty SimplyBook client id",
        ));
    }
    Ok(selector)
}

/// Who is acting, as an erasure records it: `dana as admin` (the `billing-operator` the caller
/// named, checked by `billing_runtime::auth`, and its token's role), or `(unnamed) as admin`.
fn actor() -> Result<String, Status> {
    billing_runtime::operator::current()
        .map(|acting| acting.to_string())
        .ok_or_else(|| {
            // Every call passes billing_runtime::auth::authorize, which sets it.
            tracing::error!("an erasure outside an authorised call");
            Status::internal("internal error")
        })
}

pub async fn show(
    store: &Store,
    request: Request<ShowClientRequest>,
) -> Result<Response<ShowClientResponse>, Status> {
    let req = request.into_inner();
    let selector = selector(&req.tenant_id, req.client)?;
    let vault = vault(store)?;
    let bookings = manage::show(store.pool(), vault, &req.tenant_id, &selector)
        .await
        .map_err(|e| status(&e))?;
    Ok(Response::new(ShowClientResponse {
        bookings: bookings
            .into_iter()
            .map(|b| ClientBooking {
                booking_ref: b.booking_ref,
                session_at: Some(timestamp(b.session_at)),
                status: b.status,
                details: b.details.map(|d| ClientDetails {
                    name: d.name.unwrap_or_default(),
                    email: d.email.unwrap_or_default(),
                    phone: d.phone.unwrap_or_default(),
                    simplybook_client_id: d.client_id.unwrap_or_default(),
                }),
                erased_at: b.erased_at.map(timestamp),
            })
            .collect(),
    }))
}

pub async fn erase(
    store: &Store,
    request: Request<EraseClientRequest>,
) -> Result<Response<EraseClientResponse>, Status> {
    let by = actor()?;
    let req = request.into_inner();
    let selector = selector(&req.tenant_id, req.client)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_LEN {
        return Err(Status::invalid_argument(format!(
            "reason is required (1-{MAX_REASON_LEN} characters): why the client is erased"
        )));
    }
    let vault = vault(store)?;
    let erasure = manage::erase(store.pool(), vault, &req.tenant_id, &selector, &by, reason)
        .await
        .map_err(to_status)?;
    // Who and how many, never whom: the selector is personal data.
    tracing::info!(
        tenant = %req.tenant_id,
        by = %by,
        keys_erased = erasure.keys_erased,
        keys_already_erased = erasure.keys_already_erased,
        bookings = erasure.bookings,
        "client erased"
    );
    metrics::counter!("ledger_clients_erased_total").increment(u64::from(erasure.keys_erased));
    Ok(Response::new(EraseClientResponse {
        keys_erased: erasure.keys_erased,
        keys_already_erased: erasure.keys_already_erased,
        bookings: erasure.bookings,
    }))
}

pub async fn rewrap(
    store: &Store,
    request: Request<RewrapClientKeysRequest>,
) -> Result<Response<RewrapClientKeysResponse>, Status> {
    let req = request.into_inner();
    let limit = match req.limit {
        0 => DEFAULT_REWRAP,
        n => n.min(10 * DEFAULT_REWRAP),
    };
    let vault = vault(store)?;
    let (rewrapped, remaining) = manage::rewrap(store.pool(), vault, i64::from(limit))
        .await
        .map_err(|e| status(&e))?;
    tracing::info!(
        rewrapped,
        remaining,
        kek = vault.provider().current_kek(),
        "client keys re-wrapped"
    );
    Ok(Response::new(RewrapClientKeysResponse {
        rewrapped,
        remaining,
        current_kek: vault.provider().current_kek().to_string(),
    }))
}
