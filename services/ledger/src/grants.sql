-- What the ledger's runtime role ({role}) may do, applied by the schema's owner after every
-- migration (billing_runtime::db::grant_runtime). It records and reads; it never deletes a
-- record, never changes a financial column (only the booking's current state), and as it owns
-- nothing it cannot alter a table or disable the append-only triggers.
grant usage on schema ledger to {role};
grant select on all tables in schema ledger to {role};
grant usage, select on all sequences in schema ledger to {role};
grant insert on bookings, booking_revisions, booking_status_history, audit_log,
    processed_events, chain_heads, outbox, reconciliations, client_keys, client_lookups to {role};
-- A booking's current state changes; its financial fields never do (the trigger also refuses).
grant update (status, session_at, service_id, service_name, state_as_of, status_label, updated_at)
    on bookings to {role};
-- The head of each tenant's chain moves as records are appended.
grant update (tenant_id, last_seq, last_hash) on chain_heads to {role};
-- A rejected event's idempotency key is released so its dead letter can be replayed.
grant delete on processed_events to {role};
-- The outbox relay marks rows published.
grant update (published_at) on outbox to {role};
-- Clients' data keys are re-wrapped when a key-encryption key rotates, and destroyed when a
-- client is erased (a trigger refuses any other change, and deletes).
grant update (kek_id, wrapped_key, erased_at, erased_by, erase_reason) on client_keys to {role};
-- Client details an older ledger stored in plaintext are sealed in place once (a trigger lets
-- plaintext only be removed, and sealed details only be set where there were none).
grant update (client_key_id, client_sealed, client_name, client_email, client_phone)
    on bookings to {role};
-- An erasure moves the erasure epoch on; batches read it `for share` (which needs an update
-- grant). A trigger lets it only move forward.
grant update (epoch) on client_key_epoch to {role};
-- Deposits received are recorded, and a line that named no booking may be matched later, once
-- (a trigger refuses any other change); each reconciliation's gaps are recorded.
grant insert on deposit_receipts, reconciliation_gaps to {role};
grant update (booking_ref, period, matched_at) on deposit_receipts to {role};
