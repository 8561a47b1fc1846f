-- A price change after a booking was recorded never edits the booking: it is a revision that
-- carries the change (delta) and the amounts after it, appended to the tenant's hash chain like a
-- booking (chain_seq is shared by both tables; the chain head lock keeps it linear).
create table booking_revisions (
    id               uuid primary key,
    booking_id       uuid not null references bookings (id),
    tenant_id        text not null,
    revision_no      integer not null check (revision_no >= 1),
    chain_seq        bigint not null,
    currency         char(3) not null,
    total_delta      numeric not null,
    deposit_delta    numeric not null,
    cash_delta       numeric not null,
    fee_delta        numeric not null,
    total_after      numeric not null check (total_after > 0),
    deposit_after    numeric not null check (deposit_after >= 0),
    cash_after       numeric not null check (cash_after >= 0),
    fee_after        numeric not null check (fee_after >= 0),
    prev_hash        text not null,
    record_hash      text not null,
    source_event_id  text not null,
    recorded_at      timestamptz not null default now(),
    constraint booking_revisions_no_key unique (booking_id, revision_no),
    constraint booking_revisions_chain_key unique (tenant_id, chain_seq),
    constraint booking_revisions_split_exact check (deposit_delta + cash_delta = total_delta),
    constraint booking_revisions_after_exact check (deposit_after + cash_after = total_after)
);

create trigger booking_revisions_append_only before update or delete on booking_revisions
    for each row execute function append_only_guard();
create trigger booking_revisions_no_truncate before truncate on booking_revisions
    for each statement execute function append_only_guard();

alter table audit_log drop constraint audit_log_outcome_check;
alter table audit_log add constraint audit_log_outcome_check
    check (outcome in ('stored', 'duplicate', 'status_changed', 'revised', 'dead_lettered',
                       'rejected'));
