-- The notifier's schema: one row per logical email, deciding whether it still has to be sent.

create table deliveries (
    kind        text not null,
    invoice_id  uuid not null,
    message_id  text not null unique,
    recipient   text not null,
    sent_at     timestamptz not null default now(),
    primary key (kind, invoice_id)
);
