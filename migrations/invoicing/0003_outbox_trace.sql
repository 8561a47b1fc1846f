-- The W3C `traceparent` of the work that wrote an event, so the relay publishes it with the
-- event and its consumers continue the same trace.
alter table outbox add column traceparent text;
