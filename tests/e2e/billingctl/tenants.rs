//! Tenants' billing profiles: listed, shown, created, changed field by field, a bad value
//! refused.

use super::support::json;
use crate::harness::System;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_are_listed_shown_created_and_changed_field_by_field() -> anyhow::Result<()> {
    let system = System::builder().invoicing().start().await?;
    let result = tenants(&system).await;
    system.finish(result).await
}

async fn tenants(system: &System) -> anyhow::Result<()> {
    let listed = json(&system.billingctl(&["tenants", "list", "--json"]).await?)?;
    let ids: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["tenant"].as_str())
        .collect();
    assert_eq!(ids, ["claire", "kenji"]);

    // An unknown tenant is named in the error, with a failing exit status.
    let unknown = system.billingctl(&["tenants", "show", "nobody"]).await?;
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown tenant \"nobody\""), "{stderr}");

    // Changing two fields keeps the others.
    let changed = json(
        &system
            .billingctl(&[
                "tenants",
                "set",
                "claire",
                "--tax-rate",
                "0.10",
                "--address",
                "2 Harbour Road;Manly NSW 2095",
                "--json",
            ])
            .await?,
    )?;
    // One profile is one object, as `invoices show` prints one invoice.
    let claire = &changed;
    assert_eq!(claire["tenant"], "claire");
    assert_eq!(claire["tax_rate"], "0.1");
    assert_eq!(claire["address"], "2 Harbour Road\nManly NSW 2095");
    assert_eq!(claire["legal_name"], "Claire Hamilton Therapies");
    assert_eq!(claire["time_zone"], "Australia/Sydney");
    let shown = json(
        &system
            .billingctl(&["tenants", "show", "claire", "--json"])
            .await?,
    )?;
    assert_eq!(shown["tax_rate"], "0.1");

    // A new tenant, then a bad value refused with the reason.
    let created = json(
        &system
            .billingctl(&[
                "tenants",
                "set",
                "newco",
                "--legal-name",
                "New Co Pty Ltd",
                "--billing-email",
                "accounts@newco.example.test",
                "--currency",
                "AUD",
                "--json",
            ])
            .await?,
    )?;
    assert_eq!(created["tenant"], "newco");
    assert_eq!(created["invoice_prefix"], "NEWCO");
    let bad = system
        .billingctl(&["tenants", "set", "newco", "--tax-rate", "ten percent"])
        .await?;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("tax_rate"), "{stderr}");
    let table = system.billingctl(&["tenants", "list"]).await?;
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("New Co Pty Ltd"), "{text}");
    Ok(())
}
