-- Deposits received (issue 21): each credit line of a tenant's deposits export (HNRY, a bank, a
-- payment processor), matched to the booking whose SimplyBook id it names, kept per tenant and
-- month. A line is identified by billing_domain::bank::transfer_key (its date, amount,
-- reference or description, and occurrence in its file), so importing it again finds it; two
-- identical lines in one file are two receipts. The line's text is not kept: a bank's
-- description names the payer, and client details live only sealed (docs/privacy.md).
create table deposit_receipts (
    id           bigserial primary key,
    tenant_id    text not null,
    line_key     text not null,
    -- YYYY-MM: the month of the booking's session, or of the day received when it names none.
    period       text not null check (period ~ '^[0-9]{4}-[0-9]{2}$'),
    received_on  date not null,
    amount       numeric not null check (amount > 0),
    currency     text not null,
    -- The line in the file it was first imported from (the header is line 1).
    line         integer not null,
    booking_ref  text,
    imported_at  timestamptz not null default now(),
    matched_at   timestamptz,
    unique (tenant_id, line_key)
);

create index deposit_receipts_period_idx on deposit_receipts (tenant_id, period);
create index deposit_receipts_booking_idx on deposit_receipts (tenant_id, booking_ref)
    where booking_ref is not null;

-- A receipt is never deleted, and its facts never change; a line that named no booking can
-- name one later (its booking arrived after the first import), once.
create function deposit_receipts_guard() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'deposit receipts are append-only';
    end if;
    if new.tenant_id is distinct from old.tenant_id or new.line_key is distinct from old.line_key
       or new.received_on is distinct from old.received_on or new.amount is distinct from old.amount
       or new.currency is distinct from old.currency or new.line is distinct from old.line
       or new.imported_at is distinct from old.imported_at
       or old.booking_ref is not null then
        raise exception 'a deposit receipt only gains the booking it names, once';
    end if;
    return new;
end;
$$;

create trigger deposit_receipts_guard before update or delete on deposit_receipts
    for each row execute function deposit_receipts_guard();
create trigger deposit_receipts_no_truncate before truncate on deposit_receipts
    for each statement execute function append_only_guard();

-- Each reconciliation's gaps, booking by booking, so the month statement can list them (the run
-- kept only counts before).
create table reconciliation_gaps (
    reconciliation_id  bigint not null references reconciliations (id),
    booking_ref        text not null,
    kind               text not null,
    simplybook         text not null,
    ledger             text not null
);

create index reconciliation_gaps_run_idx on reconciliation_gaps (reconciliation_id);
create trigger reconciliation_gaps_append_only before update or delete on reconciliation_gaps
    for each row execute function append_only_guard();
