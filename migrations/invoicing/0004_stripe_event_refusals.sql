-- Why a Stripe event was not applied. Outcomes: applied, stale, ignored (a type invoicing does
-- not act on), unmatched (names no invoice of ours and is no Stripe invoice we made) and
-- refused: it names one of our invoices but is not bound to it (the tenant is not in Stripe
-- mode, the Stripe invoice id is not the one stored, the currency or an amount disagrees).
-- A refused event changes nothing and raises `alerts.stripe_event_refused`.
alter table stripe_events add column reason text not null default '';
create index stripe_events_refused_idx on stripe_events (received_at) where outcome = 'refused';
