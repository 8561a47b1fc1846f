-- What invoicing's runtime role ({role}) may do, applied by the schema's owner after every
-- migration (billing_runtime::db::grant_runtime). It issues and tracks invoices; it never deletes
-- an invoice, a line, a payment or a history row, and as it owns nothing it cannot alter a table
-- or disable a trigger.
grant usage on schema invoicing to {role};
grant select on all tables in schema invoicing to {role};
grant usage, select on all sequences in schema invoicing to {role};
grant insert on invoice_counters, invoices, invoice_lines, invoice_status_history, payments,
    booking_marks, close_outcomes, stripe_events, tenant_profiles, outbox to {role};
-- An invoice's status, payments and Stripe progress move on; the numbering counter advances;
-- a Stripe event's outcome is recorded; a tenant's profile is edited; a booking's mark (what
-- was billed for it, and whether it changed since) moves with each close.
grant update on invoices, invoice_counters, stripe_events, tenant_profiles, booking_marks
    to {role};
grant delete on booking_marks to {role};
-- The outbox relay marks rows published.
grant update (published_at) on outbox to {role};
