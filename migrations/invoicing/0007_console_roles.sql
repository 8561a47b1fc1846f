-- A write made through the console records the role the console gave its operator, marked as
-- the console's (`billing (console)`), instead of the role of the token the console holds
-- (billing_runtime::operator, `billing-operator-role`).
alter table invoice_status_history drop constraint invoice_status_history_caller_role_check;
alter table invoice_status_history add constraint invoice_status_history_caller_role_check
    check (caller_role in ('viewer', 'billing', 'admin',
                           'viewer (console)', 'billing (console)', 'admin (console)'));
alter table payments drop constraint payments_caller_role_check;
alter table payments add constraint payments_caller_role_check
    check (caller_role in ('viewer', 'billing', 'admin',
                           'viewer (console)', 'billing (console)', 'admin (console)'));
