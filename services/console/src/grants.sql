-- What the console's runtime role ({role}) may do, applied by the schema's owner after every
-- migration (billing_runtime::db::grant_runtime): keep sessions and failed sign-ins, and forget
-- them when they end or expire. It holds no financial data.
grant usage on schema console to {role};
grant select, insert, delete on sessions, login_failures to {role};
grant usage, select on all sequences in schema console to {role};
-- Start-up checks, as the runtime role, that every migration of this build is applied.
grant select on _sqlx_migrations to {role};
