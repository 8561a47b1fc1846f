//! What each email says: an invoice issued (its PDF attached), a payment reminder, a payment
//! received, and an operator alert.

use billing_proto::convert;
use billing_proto::events::{AlertV1, PaymentRecordedV1};
use billing_proto::invoicing::Invoice;
use lettre::message::Mailbox;

use super::email::{Body, Email};
use super::error::MailError;
use crate::text::{long_date, money};

/// The tenant's billing mailbox, with their legal name.
fn tenant_mailbox(invoice: &Invoice) -> Result<Mailbox, MailError> {
    let to: Mailbox = invoice
        .billing_email
        .parse()
        .map_err(|_| MailError::Address(invoice.billing_email.clone()))?;
    Ok(Mailbox::new(Some(invoice.tenant_name.clone()), to.email))
}

/// How to pay, as sentences and an optional link.
fn how_to_pay(invoice: &Invoice, body: &mut Body) {
    if !invoice.stripe_hosted_url.is_empty() {
        body.link = Some(("Pay online".into(), invoice.stripe_hosted_url.clone()));
    } else if !invoice.payment_instructions.is_empty() {
        body.paragraphs.push(format!(
            "To pay by bank transfer: {} Please quote {} as the reference.",
            invoice.payment_instructions.trim(),
            invoice.number
        ));
    }
}

/// "Invoice issued": the invoice PDF attached.
pub fn invoice_issued(invoice: &Invoice, pdf: Vec<u8>) -> Result<Email, MailError> {
    let mut body = Body {
        greeting: format!("Hello {},", invoice.tenant_name),
        paragraphs: vec![format!(
            "Your invoice {} for platform fees in {} is attached.",
            invoice.number,
            month(invoice)
        )],
        facts: vec![
            ("Invoice".into(), invoice.number.clone()),
            ("Bookings".into(), invoice.booking_count.to_string()),
            ("Total due".into(), money(invoice.total.as_ref())),
            ("Due date".into(), long_date(&invoice.due_date)),
        ],
        closing: vec!["Thank you.".into()],
        ..Body::default()
    };
    how_to_pay(invoice, &mut body);
    Ok(Email {
        to: tenant_mailbox(invoice)?,
        subject: format!(
            "Invoice {} – platform fees {}",
            invoice.number,
            month(invoice)
        ),
        body,
        attachment: Some((format!("{}.pdf", invoice.number), pdf)),
    })
}

/// The invoice's email again, at the tenant's or an operator's request: the invoice as it
/// stands now (its current PDF, what is still due, how to pay unless it is paid).
pub fn invoice_resent(invoice: &Invoice, pdf: Vec<u8>) -> Result<Email, MailError> {
    let mut body = Body {
        greeting: format!("Hello {},", invoice.tenant_name),
        paragraphs: vec![format!(
            "As requested, here is a copy of your invoice {} for platform fees in {}, as it \
             stands today.",
            invoice.number,
            month(invoice)
        )],
        facts: vec![
            ("Invoice".into(), invoice.number.clone()),
            ("Status".into(), invoice.status.replace('_', " ")),
            ("Total".into(), money(invoice.total.as_ref())),
            ("Balance due".into(), money(invoice.balance.as_ref())),
            ("Due date".into(), long_date(&invoice.due_date)),
        ],
        closing: vec!["Thank you.".into()],
        ..Body::default()
    };
    if invoice.status != "paid" {
        how_to_pay(invoice, &mut body);
    }
    Ok(Email {
        to: tenant_mailbox(invoice)?,
        subject: format!(
            "Invoice {} – platform fees {} (copy)",
            invoice.number,
            month(invoice)
        ),
        body,
        attachment: Some((format!("{}.pdf", invoice.number), pdf)),
    })
}

/// "Payment reminder" for an overdue invoice, with its current PDF.
pub fn payment_reminder(invoice: &Invoice, pdf: Vec<u8>) -> Result<Email, MailError> {
    let mut body = Body {
        greeting: format!("Hello {},", invoice.tenant_name),
        paragraphs: vec![format!(
            "Our records show that invoice {} was due on {} and has not been paid in full. \
             If you have already paid, thank you, and please ignore this reminder.",
            invoice.number,
            long_date(&invoice.due_date)
        )],
        facts: vec![
            ("Invoice".into(), invoice.number.clone()),
            ("Total".into(), money(invoice.total.as_ref())),
            ("Paid so far".into(), money(invoice.amount_paid.as_ref())),
            ("Balance due".into(), money(invoice.balance.as_ref())),
        ],
        closing: vec!["Thank you.".into()],
        ..Body::default()
    };
    how_to_pay(invoice, &mut body);
    Ok(Email {
        to: tenant_mailbox(invoice)?,
        subject: format!("Payment reminder: invoice {} is overdue", invoice.number),
        body,
        attachment: Some((format!("{}.pdf", invoice.number), pdf)),
    })
}

/// "Payment received": a receipt for one payment, with the invoice as that payment left it.
pub fn payment_received(
    invoice: &Invoice,
    payment: &PaymentRecordedV1,
) -> Result<Email, MailError> {
    let paid_in_full = payment.status == "paid";
    let total = convert::amount(payment.total.as_ref()).unwrap_or_default();
    let paid = convert::amount(payment.amount_paid.as_ref()).unwrap_or_default();
    let balance = convert::money(
        &payment
            .total
            .as_ref()
            .map(|m| m.currency_code.clone())
            .unwrap_or_default(),
        (total - paid).to_string(),
    );
    let method = match payment.method.as_str() {
        "bank_transfer" => "bank transfer",
        "stripe" => "card (Stripe)",
        other => other,
    };
    let mut body = Body {
        greeting: format!("Hello {},", invoice.tenant_name),
        paragraphs: vec![format!(
            "Thank you: we received {} by {method} on {} for invoice {}.",
            money(payment.amount.as_ref()),
            long_date(&payment.received_on),
            payment.invoice_number
        )],
        facts: vec![
            ("Invoice".into(), payment.invoice_number.clone()),
            ("Payment reference".into(), payment.reference.clone()),
            ("Invoice total".into(), money(payment.total.as_ref())),
            ("Paid so far".into(), money(payment.amount_paid.as_ref())),
        ],
        closing: vec!["Thank you.".into()],
        ..Body::default()
    };
    if paid_in_full {
        body.paragraphs
            .push("The invoice is now paid in full.".to_string());
    }
    if total > paid {
        body.facts
            .push(("Balance due".into(), money(Some(&balance))));
        how_to_pay(invoice, &mut body);
    } else if paid > total {
        let credit = convert::money(&balance.currency_code, (paid - total).to_string());
        body.paragraphs.push(format!(
            "You have paid {} more than the invoice total; we will contact you about the credit.",
            money(Some(&credit))
        ));
    }
    Ok(Email {
        to: tenant_mailbox(invoice)?,
        subject: if paid_in_full {
            format!(
                "Payment received – invoice {} is paid",
                payment.invoice_number
            )
        } else {
            format!("Payment received for invoice {}", payment.invoice_number)
        },
        body,
        attachment: None,
    })
}

/// An operator alert, to the operator's mailbox.
pub fn operator_alert(operator: &Mailbox, alert: &AlertV1) -> Email {
    let mut facts = vec![
        ("Kind".to_string(), alert.kind.clone()),
        ("Severity".to_string(), alert.severity.clone()),
        ("Raised by".to_string(), alert.source.clone()),
        ("Alert id".to_string(), alert.alert_id.clone()),
    ];
    if !alert.tenant_id.is_empty() {
        facts.push(("Tenant".to_string(), alert.tenant_id.clone()));
    }
    if let Some(at) = convert::datetime(alert.raised_at.as_ref()) {
        facts.push(("Raised at".to_string(), at.to_rfc3339()));
    }
    Email {
        to: operator.clone(),
        subject: format!("[{}] {}", alert.severity.to_uppercase(), alert.summary),
        body: Body {
            greeting: "Operator alert.".into(),
            paragraphs: vec![alert.summary.clone(), alert.details.clone()],
            facts,
            link: None,
            closing: vec!["Sent by the billing tracker's notifier.".into()],
        },
        attachment: None,
    }
}

/// "October 2026" from the invoice's "2026-10".
fn month(invoice: &Invoice) -> String {
    chrono::NaiveDate::parse_from_str(&format!("{}-01", invoice.period), "%Y-%m-%d")
        .map(|d| d.format("%B %Y").to_string())
        .unwrap_or_else(|_| invoice.period.clone())
}
#[cfg(test)]
mod tests {
    use super::*;

    fn invoice() -> Invoice {
        let mut invoice = billing_testkit::invoices::sample_invoice(3, rust_decimal::Decimal::ZERO);
        invoice.tenant_name = "Smith & <Jones>".into();
        invoice
    }

    fn from() -> Mailbox {
        "Billing <billing@example.test>".parse().expect("mailbox")
    }

    #[test]
    fn an_invoice_email_has_both_parts_the_pdf_and_the_given_message_id() {
        let email = invoice_issued(&invoice(), b"%PDF-1.7 fake".to_vec()).expect("email");
        assert_eq!(email.to.email.to_string(), "accounts@claire.example");
        let raw = email
            .build(&from(), "<invoice_issued.x.2@example.test>")
            .expect("message")
            .formatted();
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("parses");
        assert_eq!(parsed.message_id(), Some("invoice_issued.x.2@example.test"));
        let plain = parsed.body_text(0).expect("plain part");
        let html = parsed.body_html(0).expect("html part");
        assert!(plain.contains("Hello Smith & <Jones>,"), "{plain}");
        assert!(
            html.contains("Smith &amp; &lt;Jones&gt;"),
            "escaped: {html}"
        );
        assert!(!html.contains("<Jones>"), "{html}");
        assert!(plain.contains("Please quote CLAIRE-2026-0010"), "{plain}");
        assert_eq!(parsed.attachment_count(), 1);
    }

    #[test]
    fn a_bad_billing_address_is_refused_before_sending() {
        let mut bad = invoice();
        bad.billing_email = "not an address".into();
        assert!(matches!(
            invoice_issued(&bad, Vec::new()),
            Err(MailError::Address(_))
        ));
    }

    #[test]
    fn a_stripe_invoice_links_to_its_hosted_page_instead_of_bank_details() {
        let mut stripe = invoice();
        stripe.stripe_hosted_url = "https://invoice.stripe.test/in_1".into();
        let email = payment_reminder(&stripe, Vec::new()).expect("email");
        let plain = email.body.plain();
        assert!(
            plain.contains("Pay online: https://invoice.stripe.test/in_1"),
            "{plain}"
        );
        assert!(!plain.contains("bank transfer"), "{plain}");
    }
}
