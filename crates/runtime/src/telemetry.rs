//! Logging: JSON lines by default (`LOG_FORMAT=text` for humans), filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests starting several services) are no-ops.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,async_nats=warn,h2=warn,tower=warn"));
    let text = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "text");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if text {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
    if result.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}
