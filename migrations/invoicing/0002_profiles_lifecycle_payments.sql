-- Tenant billing profiles, the invoice lifecycle with its history, payments, adjustments for
-- changes that reach the ledger after a booking was invoiced, Stripe sync state and Stripe
-- events, and a record of every close outcome.

create table tenant_profiles (
    tenant_id           text primary key check (tenant_id ~ '^[a-z0-9_-]{1,50}$'),
    legal_name          text not null check (legal_name <> ''),
    billing_email       text not null check (billing_email ~ '^[^@\s]+@[^@\s]+$'),
    address             text not null default '',
    -- e.g. an ABN; printed on the invoice.
    tax_id              text not null default '',
    time_zone           text not null,
    currency            char(3) not null,
    payment_terms_days  integer not null default 7 check (payment_terms_days between 0 and 365),
    -- 0.10 = 10 % tax on the fees.
    tax_rate            numeric not null default 0 check (tax_rate >= 0 and tax_rate < 1),
    invoicing_mode      text not null default 'manual' check (invoicing_mode in ('manual', 'stripe')),
    stripe_customer_id  text,
    invoice_prefix      text not null check (invoice_prefix ~ '^[A-Z0-9_-]{1,50}$'),
    updated_at          timestamptz not null default now()
);

alter table invoices drop constraint invoices_status_check;
alter table invoices add constraint invoices_status_check
    check (status in ('draft', 'issued', 'partially_paid', 'paid', 'overdue', 'void'));
alter table invoices alter column status set default 'draft';
-- A draft (Stripe mode, before Stripe accepted it) has not been issued yet.
alter table invoices alter column issued_at drop not null;
alter table invoices alter column issued_at drop default;

alter table invoices
    add column created_at            timestamptz not null default now(),
    add column address               text not null default '',
    add column tax_id                text not null default '',
    add column invoicing_mode        text not null default 'manual'
                                     check (invoicing_mode in ('manual', 'stripe')),
    -- Bank details and reference (manual) or the Stripe link, as printed on the invoice.
    add column payment_instructions  text not null default '',
    -- subtotal = Σ line fees (adjustments included); tax = round(subtotal × tax_rate);
    -- total = subtotal + tax.
    add column subtotal              numeric,
    add column tax_rate              numeric not null default 0,
    add column tax                   numeric not null default 0,
    add column amount_paid           numeric not null default 0,
    add column paid_at               timestamptz,
    add column voided_at             timestamptz,
    add column void_reason           text,
    add column stripe_invoice_id     text unique,
    -- Stripe items created so far: a retry creates only the rest.
    add column stripe_items_created  integer not null default 0,
    add column stripe_number         text,
    add column stripe_hosted_url     text;
update invoices set subtotal = total;
alter table invoices alter column subtotal set not null;
alter table invoices add constraint invoices_total_adds_up check (total = subtotal + tax);
alter table invoices add constraint invoices_void_has_reason
    check ((status = 'void') = (voided_at is not null and void_reason is not null));

-- Booking lines bill a booking for the first time; adjustment lines bill the difference when a
-- booking already on a live invoice changed (cancelled, re-priced, or recorded late).
alter table invoice_lines
    add column kind         text not null default 'booking' check (kind in ('booking', 'adjustment')),
    add column description  text not null default '';
create index invoice_lines_booking_idx on invoice_lines (booking_id);

create table invoice_status_history (
    invoice_id   uuid not null references invoices (id),
    seq          integer not null,
    from_status  text,
    to_status    text not null,
    reason       text not null,
    changed_at   timestamptz not null default now(),
    primary key (invoice_id, seq)
);
insert into invoice_status_history (invoice_id, seq, from_status, to_status, reason, changed_at)
select id, 1, null, status, 'issued by the monthly close', coalesce(issued_at, now()) from invoices;

create table payments (
    id               uuid primary key,
    invoice_id       uuid not null references invoices (id),
    method           text not null check (method in ('bank_transfer', 'stripe')),
    amount           numeric not null check (amount > 0),
    received_on      date not null,
    reference        text not null,
    -- The caller's key (bank transfers) or the Stripe event id: a retried record is one payment.
    idempotency_key  text not null unique,
    recorded_at      timestamptz not null default now()
);
create index payments_invoice_idx on payments (invoice_id);

-- Bookings the ledger announced as recorded, changed or revised. The close of a later period
-- bills the difference between what such a booking is worth now and what live invoices
-- already billed for it, then clears the mark.
create sequence booking_mark_seq;
create table booking_marks (
    tenant_id    text not null,
    booking_id   uuid not null,
    session_at   timestamptz not null,
    -- A new value on every mark: a close clears only the marks it read.
    mark_seq     bigint not null default nextval('booking_mark_seq'),
    marked_at    timestamptz not null default now(),
    primary key (tenant_id, booking_id)
);

-- Every close decision, dry runs excluded: issued, already_issued, nothing_billable, failed.
create table close_outcomes (
    id          bigserial primary key,
    tenant_id   text not null,
    period      text not null,
    outcome     text not null check (outcome in ('issued', 'already_issued', 'nothing_billable', 'failed')),
    invoice_id  uuid references invoices (id),
    detail      text not null default '',
    decided_at  timestamptz not null default now()
);
create index close_outcomes_period_idx on close_outcomes (tenant_id, period);

-- Stripe events, once each; what each did to the matching invoice.
create table stripe_events (
    event_id     text primary key,
    event_type   text not null,
    created      timestamptz not null,
    invoice_id   uuid references invoices (id),
    outcome      text not null,
    received_at  timestamptz not null default now()
);
