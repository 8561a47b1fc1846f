//! Who asked (issue 22 item 2): a write names the person acting in `billing-operator`, the
//! invoice's history and payments record it beside the token's role, a name the services do
//! not accept is refused, and an invoice's number works wherever its id is asked, in the API
//! and in billingctl.

use billing_proto::invoicing::{
    GetInvoiceRequest, Invoice, RecordPaymentRequest,
    invoicing_service_client::InvoicingServiceClient,
};
use billing_proto::notifier::RenderInvoicePdfRequest;
use billing_runtime::trace::TracedChannel;
use tonic::metadata::MetadataValue;

use crate::harness::{BILLING_TOKEN, System};

use super::support::{Publisher, client, issued, ledger_has};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_record_the_operator_and_numbers_work_as_ids() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = operators(&system).await;
    system.finish(result).await
}

fn as_operator<T>(message: T, name: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = name.parse()?;
    request
        .metadata_mut()
        .insert(billing_runtime::operator::METADATA, value);
    Ok(request)
}

fn pay(invoice_id: &str, amount: &str) -> RecordPaymentRequest {
    RecordPaymentRequest {
        invoice_id: invoice_id.into(),
        amount: amount.into(),
        received_on: "2026-09-03".into(),
        reference: "CLAIRE-2026-0001".into(),
        idempotency_key: String::new(),
    }
}

/// (operator, caller_role) of each history step after the first.
fn callers(invoice: &Invoice) -> Vec<(String, String, String)> {
    invoice
        .history
        .iter()
        .map(|h| {
            (
                h.to_status.clone(),
                h.operator.clone(),
                h.caller_role.clone(),
            )
        })
        .collect()
}

async fn operators(system: &System) -> anyhow::Result<()> {
    let pb = Publisher::new(system).await?;
    pb.book(
        "claire",
        "O1",
        "100.00",
        "confirmed",
        "2026-08-10T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "O2",
        "50.00",
        "confirmed",
        "2026-09-10T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 2).await?;
    let mut admin = client(system).await?;
    let august = issued(&mut admin, "claire", "2026-08").await?;
    let september = issued(&mut admin, "claire", "2026-09").await?;
    assert_eq!(august.number, "CLAIRE-2026-0001");

    // The number works as the id, in invoicing and in the notifier.
    let by_number = admin
        .get_invoice(GetInvoiceRequest {
            invoice_id: " CLAIRE-2026-0001 ".into(),
        })
        .await?
        .into_inner();
    assert_eq!(by_number.id, august.id);
    let unknown = admin
        .get_invoice(GetInvoiceRequest {
            invoice_id: "CLAIRE-2026-0099".into(),
        })
        .await
        .expect_err("no such number");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(
        unknown.message().contains("CLAIRE-2026-0099"),
        "{unknown:?}"
    );
    let pdf = system
        .notifier_client()?
        .render_invoice_pdf(RenderInvoicePdfRequest {
            invoice_id: "CLAIRE-2026-0001".into(),
        })
        .await?
        .into_inner();
    assert_eq!(pdf.file_name, "CLAIRE-2026-0001.pdf");

    // A billing token names Dana: the payment and the step it causes record her and the role.
    let mut billing: InvoicingServiceClient<TracedChannel> =
        InvoicingServiceClient::new(system.channel_as(system.invoicing, BILLING_TOKEN)?);
    let refused = billing
        .record_payment(as_operator(pay("CLAIRE-2026-0001", "30.00"), "dana smith")?)
        .await
        .expect_err("a name with a space");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("billing-operator"),
        "{refused:?}"
    );
    let paid = billing
        .record_payment(as_operator(
            pay("CLAIRE-2026-0001", "30.00"),
            "dana@example.org",
        )?)
        .await?
        .into_inner();
    assert!(paid.recorded);
    let paid = paid.invoice.unwrap_or_default();
    assert_eq!(paid.status, "paid");
    assert_eq!(
        callers(&paid),
        [
            // Made and issued by the close, called here with the admin token and no name.
            ("draft".to_string(), String::new(), "admin".to_string()),
            ("issued".to_string(), String::new(), "admin".to_string()),
            (
                "paid".to_string(),
                "dana@example.org".to_string(),
                "billing".to_string()
            ),
        ]
    );
    let payment = &paid.payments[0];
    assert_eq!(
        (payment.operator.as_str(), payment.caller_role.as_str()),
        ("dana@example.org", "billing")
    );

    // billingctl: --as names the operator, and the number works for `invoices void` and `show`.
    let out = system
        .billingctl_as(
            BILLING_TOKEN,
            &[
                "--as",
                "ops.kim",
                "invoices",
                "void",
                &september.number,
                "--reason",
                "wrong billing email",
            ],
        )
        .await?;
    assert!(out.status.success(), "{out:?}");
    let shown = system
        .billingctl(&["invoices", "show", &september.number])
        .await?;
    assert!(shown.status.success(), "{shown:?}");
    let text = String::from_utf8(shown.stdout)?;
    assert!(
        text.lines().any(|l| l.contains("-> void")
            && l.contains("wrong billing email")
            && l.contains("(ops.kim as billing)")),
        "{text}"
    );
    let voided = admin
        .get_invoice(GetInvoiceRequest {
            invoice_id: september.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(voided.status, "void");
    let last = voided.history.last().cloned().unwrap_or_default();
    assert_eq!(
        (last.operator.as_str(), last.caller_role.as_str()),
        ("ops.kim", "billing")
    );
    // billingctl refuses a name the services would, before calling.
    let bad = system
        .billingctl(&["--as", "Dana (ops)", "invoices", "show", &september.number])
        .await?;
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");

    Ok(())
}
