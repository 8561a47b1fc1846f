-- An invoice's email sent once more at an operator's request (invoicing's ResendInvoiceEmail,
-- event `invoicing.invoice.email_resent`): named (invoice_resent, invoice id, position of the
-- resend's note in the invoice's history), so each resend is one email and a redelivered event
-- none.

alter table emails drop constraint emails_kind_check;
alter table emails add constraint emails_kind_check check (kind in
    ('invoice_issued', 'payment_reminder', 'payment_received', 'operator_alert', 'invoice_resent'));
