-- What invoicing's runtime role ({role}) may do, applied by the schema's owner after every
-- migration (billing_runtime::db::grant_runtime). It issues and tracks invoices; it never deletes
-- an invoice, a line, a payment or a history row, and as it owns nothing it cannot alter a table
-- or disable a trigger.
grant usage on schema invoicing to {role};
grant select on all tables in schema invoicing to {role};
grant usage, select on all sequences in schema invoicing to {role};
grant insert on invoice_counters, invoices, invoice_lines, invoice_status_history, payments,
    booking_marks, close_outcomes, stripe_events, tenant_profiles, outbox to {role};
-- Only the columns the service's own UPDATEs touch: an invoice's status, payment and Stripe
-- progress move on, but its number, tenant, period, amounts and lines never change (a void and
-- a new invoice replace it); the numbering counter advances; a Stripe event's outcome is
-- recorded; a tenant's profile is edited; a booking's mark moves with each close.
grant update (status, issued_at, paid_at, voided_at, void_reason, amount_paid,
    stripe_invoice_id, stripe_items_created, stripe_number, stripe_hosted_url,
    payment_instructions) on invoices to {role};
grant update (last_seq) on invoice_counters to {role};
grant update (invoice_id, outcome, reason) on stripe_events to {role};
grant update (legal_name, billing_email, address, tax_id, time_zone, currency,
    payment_terms_days, tax_rate, invoicing_mode, stripe_customer_id, invoice_prefix,
    updated_at) on tenant_profiles to {role};
grant update (session_at, mark_seq, marked_at) on booking_marks to {role};
grant delete on booking_marks to {role};
-- The outbox relay marks rows published.
grant update (published_at) on outbox to {role};
-- The month statement's differences are recorded, found fixed, and explained; each month's
-- latest composition is kept.
grant insert on statement_differences, month_statements to {role};
grant update (detail, last_seen, fixed_at, explanation, explained_at, explained_by)
    on statement_differences to {role};
grant update (composed_at, open_differences, missing_deposits) on month_statements to {role};
