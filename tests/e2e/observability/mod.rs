//! What operators watch: the metrics the dashboards and alert rules read ([`metrics`]), and traces
//! that follow one request across services ([`traces`]).

mod metrics;
mod traces;
