//! End-to-end tests: the four services in-process on loopback ports, against the real
//! PostgreSQL, NATS JetStream and an SMTP server, each test in its own database and namespace.

mod billingctl;
mod fetch_on_notify;
mod grpc_discovery;
mod harness;
mod ingest;
mod integrity;
mod invoicing;
mod ledger_consumer;
mod nats_auth;
mod notifier;
mod observability;
mod simplybook_contract;
mod smtp_tls;
mod stripe_contract;
mod walking_skeleton;
