//! Erasing a client destroys their key: their details are unreadable, and nothing financial
//! changes — bookings, the chain, the month's invoice.

use billing_proto::invoicing::{GenerateMonthlyInvoicesRequest, GetInvoiceRequest};
use billing_proto::ledger::{EraseClientRequest, GetBookingRequest};
use tonic::metadata::MetadataValue;

use super::*;
use crate::harness::{ADMIN_TOKEN, BILLING_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_client_is_unreadable_and_the_books_are_unchanged() -> anyhow::Result<()> {
    let system = System::builder()
        .ingest()
        .ledger()
        .invoicing()
        .start()
        .await?;
    let result = erase_a_client(&system).await;
    system.finish(result).await
}

fn erase_request(
    reason: &str,
    actor: Option<&str>,
) -> anyhow::Result<tonic::Request<EraseClientRequest>> {
    let mut request = tonic::Request::new(EraseClientRequest {
        tenant_id: "claire".into(),
        client: by_email(JO_EMAIL),
        reason: reason.into(),
    });
    if let Some(actor) = actor {
        let value: MetadataValue<_> = format!("{actor}.privacy-officer").parse()?;
        request
            .metadata_mut()
            .insert(billing_runtime::operator::METADATA, value);
    }
    Ok(request)
}

async fn erase_a_client(system: &System) -> anyhow::Result<()> {
    record(
        system,
        &[
            ("7201", booking("7201", "150.00", last_month(2), jo())),
            ("7202", booking("7202", "10.01", last_month(9), jo())),
            ("7203", booking("7203", "120.00", last_month(6), sam())),
        ],
        3,
    )
    .await?;
    let mut invoicing = system.invoicing_client()?;
    let period = last_month(0).format("%Y-%m").to_string();
    let close = GenerateMonthlyInvoicesRequest {
        period: period.clone(),
        tenant_id: "claire".into(),
        dry_run: false,
    };
    let issued = invoicing
        .generate_monthly_invoices(close.clone())
        .await?
        .into_inner();
    let invoice_id = issued.outcomes[0].invoice.clone().unwrap_or_default().id;
    let invoice = |id: String| {
        let mut invoicing = invoicing.clone();
        async move {
            anyhow::Ok(
                invoicing
                    .get_invoice(GetInvoiceRequest { invoice_id: id })
                    .await?
                    .into_inner(),
            )
        }
    };
    let invoice_before = invoice(invoice_id.clone()).await?;
    assert_eq!(invoice_before.booking_count, 3);
    let mut admin = ledger_as(system, system.ledger, ADMIN_TOKEN)?;
    let get = |admin: &mut LedgerServiceClient<TracedChannel>, r: &str| {
        let mut admin = admin.clone();
        let r = r.to_string();
        async move {
            anyhow::Ok(
                admin
                    .get_booking(GetBookingRequest {
                        tenant_id: "claire".into(),
                        booking_ref: r,
                    })
                    .await?
                    .into_inner(),
            )
        }
    };
    let booking_before = get(&mut admin, "7201").await?;

    // Only an admin may erase, and only saying why.
    let mut billing = ledger_as(system, system.ledger, BILLING_TOKEN)?;
    let refused = billing
        .erase_client(erase_request("ticket PRIV-17", None)?)
        .await
        .expect_err("billing may not erase");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = admin
        .erase_client(erase_request(" ", None)?)
        .await
        .expect_err("no reason");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let erased = admin
        .erase_client(erase_request("ticket PRIV-17", Some("Dana"))?)
        .await?
        .into_inner();
    assert_eq!(
        (
            erased.keys_erased,
            erased.keys_already_erased,
            erased.bookings
        ),
        (1, 0, 2)
    );
    // Unreadable, and said so; Sam is untouched.
    let shown = show(&mut billing, JO_EMAIL).await?.bookings;
    assert_eq!(shown.len(), 2);
    assert!(
        shown
            .iter()
            .all(|b| b.details.is_none() && b.erased_at.is_some())
    );
    let sam_shown = show(&mut billing, SAM_EMAIL).await?.bookings;
    assert!(sam_shown[0].details.is_some());
    // Who and why are kept with the destroyed key; the key is gone.
    let owner = system.db("ledger").await?;
    let (by, why, gone): (String, String, bool) = sqlx::query_as(
        "select erased_by, erase_reason, wrapped_key is null from client_keys
          where erased_at is not null",
    )
    .fetch_one(&owner)
    .await?;
    assert_eq!(
        (by.as_str(), why.as_str(), gone),
        ("Dana.privacy-officer as admin", "ticket PRIV-17", true)
    );
    // Idempotent.
    let again = admin
        .erase_client(erase_request("ticket PRIV-17", Some("Dana"))?)
        .await?
        .into_inner();
    assert_eq!((again.keys_erased, again.keys_already_erased), (0, 1));

    // The books: the booking, the chain and the invoice are as they were.
    let booking_after = get(&mut admin, "7201").await?;
    assert_eq!(booking_after, booking_before);
    let verified = verify(&mut admin).await?;
    assert!(verified.intact, "{verified:?}");
    assert_eq!(verified.records_checked, 3);
    assert_eq!(invoice(invoice_id).await?, invoice_before);
    let again = invoicing
        .generate_monthly_invoices(close)
        .await?
        .into_inner();
    assert_eq!(
        again.outcomes[0].invoice.clone().unwrap_or_default(),
        issued.outcomes[0].invoice.clone().unwrap_or_default()
    );

    // Jo books again later: that is new data, under a new key, readable; the erased stays so.
    record(
        system,
        &[("7204", booking("7204", "60.00", last_month(20), jo()))],
        4,
    )
    .await?;
    let shown = show(&mut billing, JO_EMAIL).await?.bookings;
    let readable: Vec<&str> = shown
        .iter()
        .filter(|b| b.details.is_some())
        .map(|b| b.booking_ref.as_str())
        .collect();
    assert_eq!(readable, ["7204"]);
    Ok(())
}
