//! ingest's front door: every genuine event accepted exactly as sent, every forged one refused,
//! nothing acknowledged before JetStream stored it.

mod callbacks;
mod resilience;
mod signatures;
mod support;
