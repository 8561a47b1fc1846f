//! `billingctl tenants onboard`: a new tenant taken end to end while every service keeps
//! running. The files are written, each service picks them up on its own, SimplyBook's first
//! callback to the printed URL becomes a booking, and billingctl, waiting, says so.

use std::process::Stdio;
use std::time::Duration;

use billing_testkit::{Details, FakeSimplyBook};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

use super::support::json as output;
use crate::harness::{ADMIN_TOKEN, System, eventually};

const COMPANY: &str = "danaosteo";
const API_KEY: &str = "fake-dana-simplybook-api-key";
const SECRET_KEY: &str = "fake-dana-simplybook-secret-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_onboarded_while_the_services_run_has_its_first_callback_stored()
-> anyhow::Result<()> {
    let system = System::builder()
        .ingest()
        .ledger()
        .invoicing()
        .start()
        .await?;
    let result = onboard(&system).await;
    system.finish(result).await
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<Value> {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await??
        .ok_or_else(|| anyhow::anyhow!("billingctl closed its output"))?;
    Ok(serde_json::from_str(&line)?)
}

async fn onboard(system: &System) -> anyhow::Result<()> {
    // Dana's SimplyBook company, on an API domain of its own (as Kenji's).
    let dana = FakeSimplyBook::start(COMPANY, API_KEY, SECRET_KEY).await?;
    system.simplybook.add_company_host(COMPANY, &dana.host());
    let ingest_secrets = system.ingest_secrets_file();
    let ledger_secrets = system.ledger_secrets_file();
    let public_url = format!("http://{}", system.ingest);
    let mut command = system.billingctl_command(
        ADMIN_TOKEN,
        &[
            "tenants",
            "onboard",
            "dana",
            "--name",
            "Dana Osteopathy",
            "--billing-email",
            "dana.billing@example.test",
            "--currency",
            "AUD",
            "--payment-terms-days",
            "14",
            "--simplybook-company",
            COMPANY,
            "--tenants-file",
            &system.tenants_file.to_string_lossy(),
            "--ingest-secrets-file",
            &ingest_secrets.to_string_lossy(),
            "--ledger-secrets-file",
            &ledger_secrets.to_string_lossy(),
            "--public-url",
            &public_url,
            "--wait-secs",
            "60",
            "--json",
        ],
    )?;
    let mut child = command
        .env("SIMPLYBOOK_API_KEY", API_KEY)
        .env("SIMPLYBOOK_SECRET_KEY", SECRET_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();

    let onboarded = next_line(&mut lines).await?;
    let callback_url = onboarded["callback_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let prefix = format!("{public_url}/api/v1/webhooks/simplybook/dana/callback/");
    let token = callback_url
        .strip_prefix(&prefix)
        .ok_or_else(|| anyhow::anyhow!("callback URL {callback_url:?}"))?;
    assert_eq!(token.len(), 43, "32 random bytes, URL-safe base64");
    assert!(
        onboarded["webhook_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );

    // Each file holds what its service uses, and only that.
    let profile = std::fs::read_to_string(&system.tenants_file)?;
    assert!(profile.contains("\"dana\"") && !profile.contains(token));
    assert!(!profile.contains(API_KEY));
    assert!(std::fs::read_to_string(&ingest_secrets)?.contains(token));
    let ledger_file = std::fs::read_to_string(&ledger_secrets)?;
    assert!(ledger_file.contains(API_KEY) && !ledger_file.contains(token));

    // The billing profile invoicing invoices by.
    let shown = output(
        &system
            .billingctl(&["tenants", "show", "dana", "--json"])
            .await?,
    )?;
    assert_eq!(shown["legal_name"], "Dana Osteopathy");
    assert_eq!(shown["currency"], "AUD");
    assert_eq!(shown["payment_terms_days"], 14);

    // A callback with a wrong token: refused by ingest, and billingctl tells the operator.
    let body = |id: &str| {
        json!({"booking_id": id, "booking_hash": format!("h{id}"), "company": COMPANY,
            "notification_type": "create"})
        .to_string()
    };
    let wrong = "wrong-token-0123456789-0123456789-0123456789";
    eventually(Duration::from_secs(20), || async {
        let status = system
            .post_callback("dana", wrong, &body("9001"))
            .await?
            .status();
        Ok((status == 401).then_some(()))
    })
    .await?;
    let refused = next_line(&mut lines).await?;
    assert_eq!(refused["first_callback"], "rejected", "{refused}");
    assert_eq!(refused["http_status"], 401);
    // The token's refusal, not an unknown tenant's (both are 401): ingest knew Dana by then.
    assert_eq!(refused["reason"], "bad_token", "{refused}");

    // SimplyBook's callback to the printed URL: accepted by ingest once its files name Dana,
    // confirmed with Dana's SimplyBook by the ledger, stored.
    dana.put_booking(
        "9002",
        "h9002",
        Details::booking("2026-12-10 10:00:00", "confirmed", "150.00"),
    );
    eventually(Duration::from_secs(20), || async {
        let response = reqwest::Client::new()
            .post(&callback_url)
            .header("content-type", "application/json")
            .body(body("9002"))
            .send()
            .await?;
        Ok((response.status() == 202).then_some(()))
    })
    .await?;
    let arrived = next_line(&mut lines).await?;
    assert_eq!(arrived["first_callback"], "stored", "{arrived}");
    // The ledger's id of the booking (the audit log's), not SimplyBook's.
    assert!(
        arrived["booking"].as_str().is_some_and(|id| id.len() == 36),
        "{arrived}"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert!(status.success(), "billingctl ended {status}");

    let db = system.db("ledger").await?;
    let (tenant, total, fee): (String, rust_decimal::Decimal, rust_decimal::Decimal) =
        sqlx::query_as(
            "select tenant_id, total_amount, platform_fee from bookings where booking_ref = '9002'",
        )
        .fetch_one(&db)
        .await?;
    assert_eq!(tenant, "dana");
    assert_eq!(total.to_string(), "150.00");
    assert_eq!(fee.to_string(), "30.00");

    // The same id is not onboarded twice: refused, nothing written.
    let before = std::fs::read_to_string(&system.tenants_file)?;
    let again = system
        .billingctl_command(
            ADMIN_TOKEN,
            &[
                "tenants",
                "onboard",
                "dana",
                "--name",
                "Dana Again",
                "--billing-email",
                "d@example.test",
                "--currency",
                "AUD",
                "--simplybook-company",
                "other",
                "--tenants-file",
                &system.tenants_file.to_string_lossy(),
                "--public-url",
                &public_url,
            ],
        )?
        .env("SIMPLYBOOK_API_KEY", API_KEY)
        .env("SIMPLYBOOK_SECRET_KEY", SECRET_KEY)
        .output()
        .await?;
    assert_eq!(again.status.code(), Some(65), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("tenant dana exists already"));
    assert_eq!(std::fs::read_to_string(&system.tenants_file)?, before);
    Ok(())
}
