-- One row per logical email, named by (kind, reference, version): what it is about (the
-- invoice, the payment for a receipt, the alert) and, for reminders, the position of the
-- `overdue` change in the invoice's history. A sender locks the row while it hands the message
-- to SMTP and marks it `sent` in the same transaction, so redelivered events and concurrent
-- replicas never send it twice.

create table emails (
    kind        text not null check (kind in
                    ('invoice_issued', 'payment_reminder', 'payment_received', 'operator_alert')),
    -- The invoice id (issued, reminder), the payment id (receipt) or the alert id.
    reference   text not null,
    version     integer not null check (version >= 0),
    invoice_id  uuid,
    -- pending: not handed to SMTP yet (or the last attempt failed); sent: accepted by the
    -- server; rejected: refused for good (550–556, or an invalid address), dead-lettered.
    state       text not null check (state in ('pending', 'sent', 'rejected')),
    -- Derived from the key: a resend after a crash carries the same Message-ID.
    message_id  text not null unique,
    recipient   text not null,
    subject     text not null,
    attempts    integer not null default 0,
    last_error  text,
    created_at  timestamptz not null default now(),
    sent_at     timestamptz,
    primary key (kind, reference, version)
);

create index emails_invoice on emails (invoice_id);

-- Emails sent before versions existed were "invoice issued" emails, one per invoice.
insert into emails (kind, reference, version, invoice_id, state, message_id, recipient, subject,
                    attempts, created_at, sent_at)
select 'invoice_issued', invoice_id::text, 0, invoice_id, 'sent', message_id, recipient,
       'invoice issued', 1, sent_at, sent_at
from deliveries;

drop table deliveries;
