-- What the notifier's runtime role ({role}) may do, applied by the schema's owner after every
-- migration (billing_runtime::db::grant_runtime): it keeps one row per email it owes and updates
-- it as attempts succeed or fail; it deletes nothing and alters nothing.
grant usage on schema notifier to {role};
grant select on all tables in schema notifier to {role};
grant usage, select on all sequences in schema notifier to {role};
grant insert, update on emails to {role};
