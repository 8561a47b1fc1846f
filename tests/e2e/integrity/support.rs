//! What the integrity tests share: a signed booking's body, amounts, and VerifyIntegrity.

use billing_proto::ledger::{VerifyIntegrityRequest, VerifyIntegrityResponse};
use rust_decimal::Decimal;

use crate::harness::System;

pub(super) fn body(id: &str, price: &str) -> String {
    serde_json::json!({
        "booking_id": id,
        "price": price,
        "datetime": "2026-10-14 10:00:00",
        "service": {"name": "Massage"}
    })
    .to_string()
}

pub(super) fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or_default()
}

pub(super) async fn verify(system: &System) -> anyhow::Result<VerifyIntegrityResponse> {
    let mut ledger = system.ledger_client()?;
    Ok(ledger
        .verify_integrity(VerifyIntegrityRequest {
            tenant_id: "claire".into(),
        })
        .await?
        .into_inner())
}
