-- The services' least-privilege runtime roles, created once by the database's administrator
-- (docker-compose runs this on a new data volume). They own nothing: each service's migration
-- step, run as the schema's owner, grants its role only what the service does
-- (services/<service>/src/grants.sql). Example-only password: set a real one in production.
create role ledger_runtime login password 'example-only-ledger-runtime';
create role invoicing_runtime login password 'example-only-invoicing-runtime';
create role notifier_runtime login password 'example-only-notifier-runtime';
create role console_runtime login password 'example-only-console-runtime';
