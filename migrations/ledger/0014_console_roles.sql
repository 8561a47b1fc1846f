-- A write made through the console records the role the console gave its operator, marked as
-- the console's (`admin (console)`), instead of the role of the token the console holds
-- (billing_runtime::operator, `billing-operator-role`).
alter table audit_log drop constraint audit_log_caller_role_check;
alter table audit_log add constraint audit_log_caller_role_check
    check (caller_role in ('viewer', 'billing', 'admin',
                           'viewer (console)', 'billing (console)', 'admin (console)'));
