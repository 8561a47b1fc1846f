-- Invoicing's schema: one invoice per tenant and month with its lines, gapless numbering per
-- tenant, and the outbox that relays invoice events to JetStream after commit.

create table invoice_counters (
    tenant_id  text primary key,
    last_seq   integer not null
);

create table invoices (
    id                   uuid primary key,
    tenant_id            text not null,
    -- 'YYYY-MM' in the tenant's time zone.
    period               text not null check (period ~ '^[0-9]{4}-[0-9]{2}$'),
    seq                  integer not null,
    number               text not null unique,
    -- Snapshots of the tenant's details at issue time: an issued invoice never changes.
    tenant_name          text not null,
    billing_email        text not null,
    time_zone            text not null,
    currency             char(3) not null,
    period_start         timestamptz not null,
    period_end           timestamptz not null,
    status               text not null default 'issued'
                         check (status in ('draft', 'issued', 'paid', 'overdue', 'void')),
    issue_date           date not null,
    due_date             date not null,
    booking_count        integer not null check (booking_count >= 0),
    total_booking_value  numeric not null,
    total                numeric not null,
    issued_at            timestamptz not null default now(),
    constraint invoices_tenant_seq_key unique (tenant_id, seq),
    constraint invoices_period_bounds check (period_start < period_end),
    constraint invoices_due_after_issue check (due_date >= issue_date)
);

-- Exactly one live invoice per tenant and period, whoever calls and however often. A voided
-- invoice frees its period for a re-issue under a new number.
create unique index invoices_one_per_period on invoices (tenant_id, period) where status <> 'void';

create table invoice_lines (
    invoice_id      uuid not null references invoices (id),
    position        integer not null,
    booking_id      uuid not null,
    booking_ref     text not null,
    session_at      timestamptz not null,
    service_name    text not null,
    booking_amount  numeric not null,
    platform_fee    numeric not null,
    primary key (invoice_id, position)
);

create table outbox (
    id            bigserial primary key,
    subject       text not null,
    -- Used as Nats-Msg-Id, so a relay retry is deduplicated by JetStream.
    message_id    text not null unique,
    payload       bytea not null,
    created_at    timestamptz not null default now(),
    published_at  timestamptz
);

create index outbox_unpublished_idx on outbox (id) where published_at is null;
