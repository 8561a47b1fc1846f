-- Clients' personal data, encrypted so it can be erased (issue 19; billing_domain::privacy).
--
-- Each client of a tenant has a data key; a booking's client details are stored only sealed
-- (AES-256-GCM) under that key, and the key only wrapped by a key-encryption key this database
-- never holds. Erasing a client destroys the wrapped key: the sealed details stay but no one can
-- open them, and nothing financial or chained changes.

create table client_keys (
    id               uuid primary key,
    tenant_id        text not null,
    -- Keyed digest (HMAC, never the plaintext) of who the key belongs to: SimplyBook's client
    -- id, else the email, else the phone.
    identity_digest  text not null,
    -- The data key wrapped by the key-encryption key `kek_id`; both gone once erased.
    kek_id           text,
    wrapped_key      bytea,
    created_at       timestamptz not null default now(),
    erased_at        timestamptz,
    -- Who asked for the erasure (the caller's name and role) and why.
    erased_by        text,
    erase_reason     text,
    constraint client_keys_live_or_erased check (
        (erased_at is null and kek_id is not null and wrapped_key is not null
            and erased_by is null and erase_reason is null)
        or (erased_at is not null and kek_id is null and wrapped_key is null
            and erased_by is not null and erase_reason is not null))
);

-- One live key per client; a client erased and booking again later gets a new one.
create unique index client_keys_live_identity_idx on client_keys (tenant_id, identity_digest)
    where erased_at is null;

-- Every identity a key's bookings named (email, SimplyBook client id, phone: keyed digests), so
-- an erasure by email also finds the key of a client first seen by SimplyBook id.
create table client_lookups (
    tenant_id  text not null,
    digest     text not null,
    key_id     uuid not null references client_keys (id),
    primary key (tenant_id, digest, key_id)
);

alter table bookings
    add column client_key_id  uuid references client_keys (id),
    add column client_sealed  bytea,
    -- Chained: a record with a client digest ('' when it named no client) hashes it with its
    -- financial fields (encoding v2, billing_domain::hash); records written before this
    -- migration have none and keep encoding v1.
    add column client_digest  text,
    add constraint bookings_client_sealed_check check (
        (client_sealed is null) = (client_key_id is null)
        and (client_sealed is null
             or (client_name is null and client_email is null and client_phone is null)));

create index bookings_client_key_idx on bookings (client_key_id) where client_key_id is not null;
-- Bookings still holding details in plaintext (written before this migration), sealed in place
-- when a ledger with a keyring starts: the index keeps that check from reading the whole table
-- once none are left.
create index bookings_client_plaintext_idx on bookings (id)
    where client_sealed is null
      and (client_name is not null or client_email is not null or client_phone is not null);

-- What may change in a booking's client columns: the chained digest never; plaintext only to
-- nothing (when it is sealed in place); sealed details only from nothing, never replaced.
create function bookings_client_guard() returns trigger language plpgsql as $$
begin
    if new.client_digest is distinct from old.client_digest then
        raise exception 'the chained client digest of booking % is immutable', old.id;
    end if;
    if (old.client_sealed is not null and new.client_sealed is distinct from old.client_sealed)
       or (old.client_key_id is not null and new.client_key_id is distinct from old.client_key_id) then
        raise exception 'the sealed client details of booking % cannot be replaced', old.id;
    end if;
    if (new.client_name is not null and new.client_name is distinct from old.client_name)
       or (new.client_email is not null and new.client_email is distinct from old.client_email)
       or (new.client_phone is not null and new.client_phone is distinct from old.client_phone) then
        raise exception 'client details of booking % can only be removed, not written', old.id;
    end if;
    return new;
end;
$$;

create trigger bookings_client_immutable
    before update on bookings
    for each row execute function bookings_client_guard();

-- A key is erased once and for good; until then only re-wrapping changes it.
create function client_keys_guard() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'client key % cannot be deleted (erase it instead)', old.id;
    end if;
    if (new.id, new.tenant_id, new.identity_digest, new.created_at)
       is distinct from (old.id, old.tenant_id, old.identity_digest, old.created_at) then
        raise exception 'client key % keeps its identity', old.id;
    end if;
    if old.erased_at is not null then
        raise exception 'client key % is erased', old.id;
    end if;
    return new;
end;
$$;

create trigger client_keys_guarded
    before update or delete on client_keys
    for each row execute function client_keys_guard();
create trigger client_keys_no_truncate before truncate on client_keys
    for each statement execute function append_only_guard();
create trigger client_lookups_append_only before update or delete on client_lookups
    for each row execute function append_only_guard();
