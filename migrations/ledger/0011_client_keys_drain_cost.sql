-- What sealing clients' details costs the drain (issue 19, item 7), cut where PostgreSQL spent it
-- (auto_explain over a benchmark drain; docs/privacy.md): an erasure epoch so ledgers can cache
-- keys, no foreign keys to client keys, no index of bookings by key, and a key's own identity
-- found in client_keys instead of written again as a lookup.
--
-- The erasure epoch: ledgers cache the client keys their batches used, so a batch of returning
-- clients reads and unwraps none. Each batch that seals reads this row
-- `for share`; an erasure moves it on first thing in its transaction, so it waits for the
-- batches under way and every later batch sees that keys may have gone (services/ledger/src/
-- clients/seal.rs).
create table client_key_epoch (
    singleton  boolean primary key default true check (singleton),
    epoch      bigint not null default 0
);
insert into client_key_epoch default values;

create function client_key_epoch_forward() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'the client key epoch cannot be deleted';
    end if;
    if new.epoch <= old.epoch or new.singleton is distinct from old.singleton then
        raise exception 'the client key epoch only moves forward';
    end if;
    return new;
end;
$$;

create trigger client_key_epoch_forward_only
    before update or delete on client_key_epoch
    for each row execute function client_key_epoch_forward();
create trigger client_key_epoch_no_truncate before truncate on client_key_epoch
    for each statement execute function append_only_guard();

-- The foreign keys from bookings and lookups to client keys cost a probe and a row lock on the
-- key for every booking sealed (a sixth of the drain's time in PostgreSQL, measured with
-- auto_explain: docs/privacy.md). They guard against nothing the ledger can do: the keys a batch
-- names were read or made in its own transaction, and a key is never deleted (its guard and
-- truncate triggers, and no grant). VerifyIntegrity checks instead that every sealed booking
-- names a key of its own tenant.
alter table bookings drop constraint bookings_client_key_id_fkey;
alter table client_lookups drop constraint client_lookups_key_id_fkey;

-- Only showing or erasing a client reads bookings by key, always within one tenant, rarely: they
-- scan the tenant's bookings instead of every booking keeping an index entry up to date.
drop index bookings_client_key_idx;

-- A key is found by its identity whether live or erased (an erasure by the identity itself, or
-- asked again), so the identity need not be written again as a lookup: one index over every
-- key, still allowing one live key per identity (erased keys differ in erased_at; NULLS NOT
-- DISTINCT, PostgreSQL 15, makes two live ones collide).
create unique index client_keys_identity_idx on client_keys (tenant_id, identity_digest, erased_at)
    nulls not distinct;
drop index client_keys_live_identity_idx;
