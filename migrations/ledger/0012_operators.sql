-- Who asked for what the ledger records on a gRPC call (a dead letter replayed, a booking
-- repaired by a reconciliation): the role of the caller's token and the person it named in
-- `billing-operator` (the console's signed-in operator, billingctl's --as). Both null for what
-- the ledger records on its own (events from JetStream).
alter table audit_log
    add column operator     text check (operator ~ '^[A-Za-z0-9._@-]{1,64}$'),
    add column caller_role  text check (caller_role in ('viewer', 'billing', 'admin'));
