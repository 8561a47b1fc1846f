-- Who asked for a change made through the gRPC API: the role of the caller's token and the
-- person it named in `billing-operator` (the console's signed-in operator, billingctl's --as).
-- Both null for what invoicing does on its own (the monthly close's CronJob names no one only
-- when its token does not; Stripe events and sweeps run by a timer have no caller).
alter table invoice_status_history
    add column operator     text check (operator ~ '^[A-Za-z0-9._@-]{1,64}$'),
    add column caller_role  text check (caller_role in ('viewer', 'billing', 'admin'));
alter table payments
    add column operator     text check (operator ~ '^[A-Za-z0-9._@-]{1,64}$'),
    add column caller_role  text check (caller_role in ('viewer', 'billing', 'admin'));
