//! What the billingctl tests share: its JSON output read, and a formatted amount parsed.

use rust_decimal::Decimal;
use serde_json::Value;

pub(super) fn json(out: &std::process::Output) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(out.status.success(), "billingctl failed: {out:?}");
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The amount of a formatted money value, `AUD 54.02` → 54.02.
pub(super) fn money(v: &Value) -> anyhow::Result<Decimal> {
    let text = v.as_str().unwrap_or_default();
    let amount = text.rsplit(' ').next().unwrap_or_default();
    Ok(amount.parse()?)
}

/// billingctl's JSON output, whatever its exit status.
pub(super) fn output_json(out: &std::process::Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
