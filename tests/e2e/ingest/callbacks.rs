//! SimplyBook's native callbacks: refused without the token and the company, and refusals
//! audited.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::{CLAIRE_CALLBACK_TOKEN, CLAIRE_COMPANY, System, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simplybook_callbacks_need_the_token_and_the_company_and_refusals_are_audited()
-> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = callbacks(&system).await;
    system.finish(result).await
}

async fn callbacks(system: &System) -> anyhow::Result<()> {
    system.simplybook.put_booking(
        "2262",
        "514ccafaa45aa779ff50e4642c37ba5d",
        billing_testkit::Details::booking("2026-10-14 10:00:00", "confirmed", "120.00"),
    );
    let create = format!(
        r#"{{"booking_id":"2262","booking_hash":"514ccafaa45aa779ff50e4642c37ba5d","company":"{CLAIRE_COMPANY}","notification_type":"create"}}"#
    );
    let change = create.replace("create", "change");
    let cases: Vec<(&str, &str, &str, String, u16)> = vec![
        (
            "genuine create",
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            create.clone(),
            202,
        ),
        (
            "create again",
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            create.clone(),
            200,
        ),
        (
            "a change",
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            change.clone(),
            202,
        ),
        // Every change callback looks the same; each is fetched, none is dropped as a duplicate.
        (
            "another change",
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            change.clone(),
            202,
        ),
        (
            "wrong token",
            "claire",
            "fake-callback-token-0123456789-abcdefghiX",
            create.clone(),
            401,
        ),
        (
            "unknown tenant",
            "nobody",
            CLAIRE_CALLBACK_TOKEN,
            create.clone(),
            401,
        ),
        (
            "another company",
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            create.replace(CLAIRE_COMPANY, "someone-else"),
            401,
        ),
        (
            "missing field",
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            r#"{"booking_id":"2262"}"#.to_string(),
            400,
        ),
        (
            "unknown notification type",
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            create.replace("\"create\"", "\"delete\""),
            400,
        ),
        (
            "numeric id",
            "claire",
            CLAIRE_CALLBACK_TOKEN,
            create.replace("\"2262\"", "2262"),
            400,
        ),
    ];
    let mut refused = Vec::new();
    for (name, tenant, token, body, expected) in &cases {
        let response = system.post_callback(tenant, token, body).await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        assert_eq!(status, *expected, "{name}: {text}");
        match expected {
            401 => assert_eq!(text, r#"{"error":"unauthorized"}"#, "{name}"),
            400 => assert!(text.contains("not a SimplyBook callback"), "{name}: {text}"),
            _ => {}
        }
        if *expected >= 400 {
            refused.push((hex::encode(Sha256::digest(body.as_bytes())), *expected));
        }
    }
    assert_eq!(
        system
            .stream_count(&system.subjects().simplybook("claire"))
            .await?,
        3
    );

    // Every refusal reaches the ledger's audit log with its reason and body hash.
    let db = system.db("ledger").await?;
    let rows: Vec<(Option<String>, String, String, i32)> =
        eventually(Duration::from_secs(20), || async {
            let rows: Vec<(Option<String>, String, String, i32)> = sqlx::query_as(
                "select tenant_id, reason, body_sha256, http_status from audit_log
                 where outcome = 'rejected' and source = 'simplybook' order by occurred_at, id",
            )
            .fetch_all(&db)
            .await?;
            Ok((rows.len() == refused.len()).then_some(rows))
        })
        .await?;
    let mut reasons: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "bad_token",
            "company_mismatch",
            "malformed",
            "malformed",
            "malformed",
            "unknown_tenant"
        ]
    );
    let mut audited: Vec<(String, u16)> = rows
        .iter()
        .map(|r| (r.2.clone(), u16::try_from(r.3).unwrap_or_default()))
        .collect();
    audited.sort();
    refused.sort();
    assert_eq!(audited, refused, "body hashes and statuses as answered");
    assert!(rows.iter().any(|r| r.0.as_deref() == Some("nobody")));
    let leaked: i64 =
        sqlx::query_scalar("select count(*) from audit_log a where strpos(a::text, $1) > 0")
            .bind(CLAIRE_CALLBACK_TOKEN)
            .fetch_one(&db)
            .await?;
    assert_eq!(leaked, 0, "the token never reaches the audit log");

    // The ledger confirmed the booking with SimplyBook: one booking; the changes changed nothing.
    let outcomes: Vec<String> = eventually(Duration::from_secs(20), || async {
        let rows: Vec<String> = sqlx::query_scalar(
            "select outcome from audit_log where source = 'simplybook' and outcome <> 'rejected'
             order by id",
        )
        .fetch_all(&db)
        .await?;
        Ok((rows.len() == 3).then_some(rows))
    })
    .await?;
    assert_eq!(outcomes, ["stored", "duplicate", "duplicate"]);
    Ok(())
}
