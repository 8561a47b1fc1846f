-- A booking's service can change (SimplyBook "change" callbacks); history keeps which one it was.
alter table booking_status_history add column service_name text;

-- When the recorded state (status, time, service, price) was true at the source: the sender's
-- signed timestamp, or the moment SimplyBook was asked. An event older than that is stale and
-- changes nothing, so late deliveries cannot undo newer states.
alter table bookings add column state_as_of timestamptz;

alter table audit_log drop constraint audit_log_outcome_check;
alter table audit_log add constraint audit_log_outcome_check
    check (outcome in ('stored', 'duplicate', 'status_changed', 'revised', 'stale',
                       'dead_lettered', 'replayed', 'rejected'));
