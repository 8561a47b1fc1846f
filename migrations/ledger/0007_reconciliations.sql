-- Each reconciliation with SimplyBook, per tenant and month: what was compared and how many
-- gaps were found. The latest run per tenant and month feeds the ledger_reconciliation_* gauges
-- (the same numbers from every replica) and is the record that a month was checked.
create table reconciliations (
    id                   bigserial primary key,
    tenant_id            text not null,
    period               text not null,
    ran_at               timestamptz not null default now(),
    simplybook_bookings  integer not null,
    ledger_bookings      integer not null,
    matched              integer not null,
    gaps                 integer not null,
    missing_in_ledger    integer not null,
    repaired             integer not null,
    -- Set when SimplyBook could not be asked (the counts are then 0).
    error                text
);

create index reconciliations_latest_idx on reconciliations (tenant_id, period, ran_at desc);
