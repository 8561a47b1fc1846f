-- Booking events (`ledger.booking.*`) written in the same transaction as the change they describe
-- and relayed to JetStream after commit, so none is lost or invented.
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
