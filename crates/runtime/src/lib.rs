//! What every service starts with: configuration helpers, logging, traces, metrics, health endpoints,
//! database and JetStream setup, the outbox relay, graceful shutdown, and a combined gRPC + HTTP
//! server.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod limiter;
pub mod metric_docs;
pub mod nats;
pub mod operator;
pub mod ops;
pub mod outbox;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tenants;
pub mod text_enum;
pub mod trace;

pub use nats::Subjects;
pub use ops::Probes;
pub use shutdown::Shutdown;
