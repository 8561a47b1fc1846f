//! Incoming webhooks: decoding a raw message (a signed payload, or the details SimplyBook confirms
//! for a callback) into a booking the ledger can record, or a reason it cannot. Not to be confused
//! with `billing_proto::events`, the events the services publish.

use billing_domain::booking::{ClientInfo, PayloadError};
use billing_domain::simplybook::Resolved;
use billing_domain::{
    BookingAmounts, BookingPayload, BookingStatus, Currency, Rate, TenantConfig, Tenants,
};
use chrono::{DateTime, Utc};

use crate::outcome::Reject;

/// A booking ready to be recorded, amounts already split by the tenant's rates.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub event_id: String,
    pub tenant_id: String,
    pub booking_ref: String,
    pub booking_hash: Option<String>,
    pub status: BookingStatus,
    pub session_at: DateTime<Utc>,
    pub currency: Currency,
    pub amounts: BookingAmounts,
    pub deposit_rate: Rate,
    pub fee_rate: Rate,
    pub service_id: Option<String>,
    pub service_name: String,
    pub service_duration_minutes: Option<i32>,
    pub provider_name: Option<String>,
    pub client: Option<ClientInfo>,
    /// The label SimplyBook's Status feature shows, in the company's words.
    pub status_label: Option<String>,
    /// Said in the audit log beside the outcome (a repair, a label nobody has mapped).
    pub note: Option<String>,
    /// The value is a service's list price: it values the booking when first recorded only.
    pub priced_from_service: bool,
    /// When this state was true at the source (see [`billing_runtime::nats::HDR_SENT_AT`]).
    pub as_of: DateTime<Utc>,
    /// The `traceparent` the event arrived with; the booking event it causes carries it on.
    pub traceparent: Option<String>,
}

/// The configured tenant `tenant_id`.
pub fn tenant<'a>(tenants: &'a Tenants, tenant_id: &str) -> Result<&'a TenantConfig, Reject> {
    tenants.get(tenant_id).ok_or_else(|| {
        Reject::new(
            "unknown_tenant",
            format!("tenant {tenant_id:?} is not configured"),
        )
    })
}

/// A booking SimplyBook's details describe, with the Status feature's label; `note` goes to the
/// audit log.
pub fn resolved(
    tenant: &TenantConfig,
    event_id: &str,
    as_of: DateTime<Utc>,
    resolved: Resolved,
    note: Option<String>,
) -> Result<NewBooking, Reject> {
    let mut booking = booking(tenant, event_id, as_of, resolved.payload)?;
    booking.status_label = resolved.status_label;
    booking.priced_from_service = resolved.priced_from_service;
    let unmapped = resolved.unmapped_label.map(|label| {
        metrics::counter!("ledger_simplybook_unmapped_labels_total", "tenant" => tenant.id.to_string())
            .increment(1);
        format!(
            "SimplyBook status label {label:?} is not in the tenant's simplybook_status_labels; \
             recorded as {} from SimplyBook's confirmation",
            booking.status.as_str()
        )
    });
    booking.note = match (note, unmapped) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    Ok(booking)
}

/// Why a payload (sent inline or fetched from SimplyBook) is not a booking.
pub fn payload_reject(e: PayloadError) -> Reject {
    match e {
        PayloadError::Price(_) => Reject::new("invalid_amount", e.to_string()),
        _ => Reject::new("malformed_payload", e.to_string()),
    }
}

/// A signed rich payload: the booking's details are in the body.
pub fn decode(
    tenants: &Tenants,
    tenant_id: &str,
    event_id: &str,
    as_of: DateTime<Utc>,
    body: &[u8],
) -> Result<NewBooking, Reject> {
    let tenant = tenant(tenants, tenant_id)?;
    let payload = BookingPayload::parse(body).map_err(payload_reject)?;
    booking(tenant, event_id, as_of, payload)
}

/// A booking from its payload, amounts split by the tenant's current rates.
pub fn booking(
    tenant: &TenantConfig,
    event_id: &str,
    as_of: DateTime<Utc>,
    payload: BookingPayload,
) -> Result<NewBooking, Reject> {
    if let Some(code) = &payload.currency
        && !code.eq_ignore_ascii_case(tenant.currency.code())
    {
        return Err(Reject::new(
            "currency_mismatch",
            format!("booking in {code}, tenant bills in {}", tenant.currency),
        ));
    }
    let amounts = BookingAmounts::split(
        payload.price,
        tenant.currency,
        tenant.deposit_rate,
        tenant.platform_fee_rate,
    )
    .map_err(|e| Reject::new("invalid_amount", e.to_string()))?;
    let session_at = payload
        .session_at(tenant.time_zone)
        .map_err(|e| Reject::new("invalid_session_time", e.to_string()))?;
    Ok(NewBooking {
        event_id: event_id.to_string(),
        tenant_id: tenant.id.to_string(),
        booking_ref: payload.booking_id,
        booking_hash: payload.booking_hash,
        status: payload.status,
        session_at,
        currency: tenant.currency,
        amounts,
        deposit_rate: tenant.deposit_rate,
        fee_rate: tenant.platform_fee_rate,
        service_id: payload.service.id,
        service_name: payload.service.name,
        service_duration_minutes: payload.service.duration.and_then(|d| i32::try_from(d).ok()),
        provider_name: payload.provider.and_then(|p| p.name),
        client: payload.client,
        status_label: None,
        note: None,
        priced_from_service: false,
        as_of,
        traceparent: None,
    })
}
