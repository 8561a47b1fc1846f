//! End-to-end tests: the four services in-process on loopback ports, against the real
//! PostgreSQL, NATS JetStream and an SMTP server, each test in its own database and namespace.

mod bank_statements;
mod billingctl;
mod cluster;
mod console;
mod console_browser;
mod descriptors;
mod duplicate_delivery;
mod fetch_on_notify;
mod grpc_discovery;
mod grpc_roles;
mod harness;
mod ingest;
mod integrity;
mod invoicing;
mod ledger_consumer;
mod ledger_dead_letters;
mod month_statement;
mod nats_auth;
mod notifier;
mod observability;
mod privacy;
mod resend;
mod simplybook_contract;
mod smtp_tls;
mod stripe_contract;
mod walking_skeleton;
