-- Requests ingest refused (bad signature or token, unknown tenant, malformed body) reach the
-- audit log too, identified by the SHA-256 of their body (never the body itself).
alter table audit_log drop constraint audit_log_outcome_check;
alter table audit_log add constraint audit_log_outcome_check
    check (outcome in ('stored', 'duplicate', 'status_changed', 'dead_lettered', 'rejected'));
alter table audit_log add column body_sha256 text;
alter table audit_log add column http_status integer;
