-- A booking's service can change (SimplyBook "change" callbacks); history keeps which one it was.
alter table booking_status_history add column service_name text;
