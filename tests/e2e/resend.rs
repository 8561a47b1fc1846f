//! Resending an invoice's email (issue 22, item 3), against a real SMTP server on loopback:
//! invoicing's ResendInvoiceEmail records who asked in the invoice's history and the notifier
//! sends exactly one more email for it (with the current PDF); the same event delivered again
//! sends nothing; a second resend is a second email; billingctl's `invoices resend` works by
//! number; a call through the console records the operator's console role (and a console
//! viewer is refused whatever the console's token may do); and a void invoice is refused.

use std::time::Duration;

use async_nats::HeaderMap;
use billing_proto::invoicing::{
    GetInvoiceRequest, Invoice, ResendInvoiceEmailRequest, VoidInvoiceRequest,
};
use billing_proto::notifier::ListDeliveriesRequest;
use billing_testkit::ReceivedMail;
use mail_parser::{MessageParser, MimeHeaders};
use tonic::metadata::MetadataValue;

use crate::harness::{BILLING_TOKEN, CLAIRE_EMAIL, System};
use crate::invoicing::{Publisher, client, issued, ledger_has};

/// Time for a wrongly repeated email to arrive before counting.
const SETTLE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_is_one_more_email_and_its_redelivered_event_none() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = resend(&system).await;
    system.finish(result).await
}

/// Waits for exactly `n` emails: `n` arrive, and no more within [`SETTLE`].
async fn exactly(system: &System, n: usize) -> anyhow::Result<Vec<ReceivedMail>> {
    system.mail.wait_for(n, Duration::from_secs(30)).await;
    tokio::time::sleep(SETTLE).await;
    let mails = system.mail.mails();
    anyhow::ensure!(
        mails.len() == n,
        "expected {n} emails, got {}: {:?}",
        mails.len(),
        mails.iter().map(subject).collect::<Vec<_>>()
    );
    Ok(mails)
}

fn subject(mail: &ReceivedMail) -> String {
    MessageParser::default()
        .parse(&mail.data)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

fn message_id(mail: &ReceivedMail) -> String {
    MessageParser::default()
        .parse(&mail.data)
        .and_then(|m| m.message_id().map(str::to_string))
        .unwrap_or_default()
}

fn has_pdf(mail: &ReceivedMail) -> bool {
    MessageParser::default().parse(&mail.data).is_some_and(|m| {
        m.attachments()
            .any(|a| a.is_content_type("application", "pdf"))
    })
}

fn as_operator<T>(message: T, name: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = name.parse()?;
    request
        .metadata_mut()
        .insert(billing_runtime::operator::METADATA, value);
    Ok(request)
}

/// Publishes the stored `invoicing.invoice.email_resent` event again under a new message id,
/// as a redelivery or a relay that published twice would.
async fn redeliver_resent(system: &System) -> anyhow::Result<()> {
    let js = system.jetstream().await?;
    let subject = system.subjects().invoice("email_resent");
    let stream = js
        .get_stream(system.subjects().stream_name("INVOICING"))
        .await?;
    let original = stream.get_last_raw_message_by_subject(&subject).await?;
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "resent-redelivery-1");
    js.publish_with_headers(subject, headers, original.payload)
        .await?
        .await?;
    Ok(())
}

async fn resend(system: &System) -> anyhow::Result<()> {
    let publisher = Publisher::new(system).await?;
    publisher
        .book(
            "claire",
            "7101",
            "120.00",
            "confirmed",
            "2026-10-02T10:00:00+10:00",
        )
        .await?;
    ledger_has(system, 1).await?;
    let mut invoicing = client(system).await?;
    let invoice: Invoice = issued(&mut invoicing, "claire", "2026-10").await?;
    let first = exactly(system, 1).await?;
    let issued_id = message_id(&first[0]);

    // One resend, by number: recorded with who asked and why, then one more email to Claire.
    let resent = invoicing
        .resend_invoice_email(as_operator(
            ResendInvoiceEmailRequest {
                invoice_id: invoice.number.clone(),
                reason: "the tenant cannot find it".into(),
            },
            "dana",
        )?)
        .await?
        .into_inner();
    let note = resent.history.last().cloned().unwrap_or_default();
    assert_eq!(
        (
            note.from_status.as_str(),
            note.to_status.as_str(),
            note.reason.as_str(),
            note.operator.as_str(),
            note.caller_role.as_str()
        ),
        (
            "issued",
            "issued",
            "invoice email resent: the tenant cannot find it",
            "dana",
            "admin"
        )
    );
    assert_eq!(resent.status, "issued", "a resend changes no status");
    let mails = exactly(system, 2).await?;
    let copy = &mails[1];
    assert_eq!(copy.rcpt_to, vec![CLAIRE_EMAIL.to_string()]);
    assert_eq!(
        subject(copy),
        format!(
            "Invoice {} – platform fees October 2026 (copy)",
            invoice.number
        )
    );
    assert!(has_pdf(copy), "the copy carries the PDF");
    assert_ne!(
        message_id(copy),
        issued_id,
        "a new message, not the first again"
    );

    // The same event delivered again sends nothing.
    redeliver_resent(system).await?;
    exactly(system, 2).await?;

    // A second resend is a second email, here through billingctl with its --as.
    let out = system
        .billingctl_as(
            BILLING_TOKEN,
            &["--as", "ops.kim", "invoices", "resend", &invoice.number],
        )
        .await?;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains(&invoice.number), "{text}");
    let mails = exactly(system, 3).await?;
    assert_ne!(message_id(&mails[2]), message_id(copy));
    let after = invoicing
        .get_invoice(GetInvoiceRequest {
            invoice_id: invoice.id.clone(),
        })
        .await?
        .into_inner();
    let note = after.history.last().cloned().unwrap_or_default();
    assert_eq!(
        (
            note.reason.as_str(),
            note.operator.as_str(),
            note.caller_role.as_str()
        ),
        ("invoice email resent", "ops.kim", "billing")
    );
    // The notifier lists both resends beside the first email, each sent.
    let deliveries = system
        .notifier_client()?
        .list_deliveries(ListDeliveriesRequest {
            invoice_id: invoice.number.clone(),
        })
        .await?
        .into_inner()
        .deliveries;
    let kinds: Vec<(&str, &str)> = deliveries
        .iter()
        .map(|d| (d.kind.as_str(), d.state.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("invoice_issued", "sent"),
            ("invoice_resent", "sent"),
            ("invoice_resent", "sent")
        ]
    );

    // Through the console (admin token) for an operator the console made a viewer: refused,
    // whatever the token may do; made billing: allowed, and recorded as the console's role.
    let mut viewer = as_operator(
        ResendInvoiceEmailRequest {
            invoice_id: invoice.number.clone(),
            reason: String::new(),
        },
        "vic",
    )?;
    viewer.metadata_mut().insert(
        billing_runtime::operator::ROLE_METADATA,
        MetadataValue::from_static("viewer"),
    );
    let refused = invoicing
        .resend_invoice_email(viewer)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a console viewer resent an email"))?;
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let mut billing = as_operator(
        ResendInvoiceEmailRequest {
            invoice_id: invoice.number.clone(),
            reason: String::new(),
        },
        "dana",
    )?;
    billing.metadata_mut().insert(
        billing_runtime::operator::ROLE_METADATA,
        MetadataValue::from_static("billing"),
    );
    let by_console = invoicing.resend_invoice_email(billing).await?.into_inner();
    let note = by_console.history.last().cloned().unwrap_or_default();
    assert_eq!(
        (note.operator.as_str(), note.caller_role.as_str()),
        ("dana", "billing (console)")
    );
    exactly(system, 4).await?;

    // A void invoice is not sent again: refused with its status, and nothing is emailed.
    invoicing
        .void_invoice(VoidInvoiceRequest {
            invoice_id: invoice.id.clone(),
            reason: "issued in error".into(),
        })
        .await?;
    let refused = invoicing
        .resend_invoice_email(ResendInvoiceEmailRequest {
            invoice_id: invoice.id.clone(),
            reason: String::new(),
        })
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a void invoice's email was resent"))?;
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("void"), "{}", refused.message());
    exactly(system, 4).await?;
    Ok(())
}
