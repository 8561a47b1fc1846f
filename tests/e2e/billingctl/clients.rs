//! Clients' personal details through billingctl (issue 19): shown to billing and not to a
//! viewer, erased once with who asked (`--as`) and erased again harmlessly, and the data keys
//! re-wrapped under the current key-encryption key.

use super::support::json;
use crate::harness::{ADMIN_TOKEN, BILLING_TOKEN, System, VIEWER_TOKEN};
use crate::privacy::{JO_EMAIL, JO_NAME, JO_PHONE, booking, jo, last_month, record, sam};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn billingctl_shows_a_client_erases_them_once_and_rewraps_the_keys() -> anyhow::Result<()> {
    let system = System::builder().ingest().ledger().start().await?;
    let result = clients(&system).await;
    system.finish(result).await
}

async fn clients(system: &System) -> anyhow::Result<()> {
    record(
        system,
        &[
            ("7301", booking("7301", "150.00", last_month(2), jo())),
            ("7302", booking("7302", "90.00", last_month(9), jo())),
            ("7303", booking("7303", "120.00", last_month(6), sam())),
        ],
        3,
    )
    .await?;
    let jo_args = |command: &'static str| {
        [
            "clients", command, "--tenant", "claire", "--email", JO_EMAIL,
        ]
    };

    // Billing sees the details, in the table and in JSON; a viewer is refused (77).
    let shown = system
        .billingctl_as(BILLING_TOKEN, &jo_args("show"))
        .await?;
    assert!(shown.status.success(), "{shown:?}");
    let table = String::from_utf8_lossy(&shown.stdout);
    for expected in ["7301", "7302", JO_NAME, JO_EMAIL, JO_PHONE] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    assert!(!table.contains("7303"), "Sam's booking:\n{table}");
    let listed = json(
        &system
            .billingctl_as(BILLING_TOKEN, &[&jo_args("show")[..], &["--json"]].concat())
            .await?,
    )?;
    let refs: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["booking_ref"].as_str())
        .collect();
    assert_eq!(refs, ["7301", "7302"]);
    assert_eq!(listed[0]["tenant"], "claire");
    assert_eq!(listed[0]["details"]["name"], JO_NAME);
    assert_eq!(listed[0]["details"]["phone"], JO_PHONE);
    assert!(listed[0]["erased_at"].is_null(), "{listed}");
    let viewer = system.billingctl_as(VIEWER_TOKEN, &jo_args("show")).await?;
    assert_eq!(viewer.status.code(), Some(77), "{viewer:?}");
    assert!(viewer.stdout.is_empty(), "{viewer:?}");

    // A name the ledger would refuse is refused before any call, as a bad argument.
    let nameless = system
        .billingctl(&[&["--as", "  "][..], &jo_args("show")].concat())
        .await?;
    assert_eq!(nameless.status.code(), Some(64), "{nameless:?}");

    // Erased by Dana, recorded with the token's role.
    let erase = [
        &["--as", "Dana"][..],
        &jo_args("erase"),
        &["--reason", "ticket PRIV-21"],
    ]
    .concat();
    let erased = system.billingctl(&erase).await?;
    assert!(erased.status.success(), "{erased:?}");
    let said = String::from_utf8_lossy(&erased.stdout);
    assert!(
        said.contains("client erased: 1 data key destroyed") && said.contains("2 bookings"),
        "{said}"
    );
    let ledger = system.db("ledger").await?;
    let by: Vec<String> =
        sqlx::query_scalar("select erased_by from client_keys where erased_at is not null")
            .fetch_all(&ledger)
            .await?;
    assert_eq!(by, ["Dana as admin"]);

    // Again: nothing changes, it says so, and the run succeeds.
    let again = system.billingctl(&erase).await?;
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(said.contains("already erased"), "{said}");
    let again = json(
        &system
            .billingctl(&[&erase[..], &["--json"]].concat())
            .await?,
    )?;
    assert_eq!(again["outcome"], "already_erased");
    assert_eq!(
        (&again["keys_erased"], &again["keys_already_erased"]),
        (&0.into(), &1.into())
    );

    // Shown afterwards: when, not who.
    let shown = system
        .billingctl_as(BILLING_TOKEN, &jo_args("show"))
        .await?;
    assert!(shown.status.success(), "{shown:?}");
    let table = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(table.matches("erased ").count(), 2, "{table}");
    for gone in [JO_NAME, JO_EMAIL, JO_PHONE] {
        assert!(!table.contains(gone), "{gone:?} in\n{table}");
    }

    // Every live key is already under the current key-encryption key.
    let rewrapped = json(
        &system
            .billingctl_as(ADMIN_TOKEN, &["clients", "rewrap", "--all", "--json"])
            .await?,
    )?;
    assert_eq!(rewrapped["remaining"], 0, "{rewrapped}");
    assert_eq!(rewrapped["rewrapped"], 0, "{rewrapped}");
    let said = system.billingctl(&["clients", "rewrap", "--all"]).await?;
    assert!(said.status.success(), "{said:?}");
    assert!(
        String::from_utf8_lossy(&said.stdout).contains("0 remaining"),
        "{said:?}"
    );
    Ok(())
}
