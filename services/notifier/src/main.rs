use std::process::ExitCode;

use billing_runtime::{config, shutdown, telemetry};
use notifier::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = config::parse_or_exit();
    let _telemetry = telemetry::init("notifier");
    if config.migrate_only {
        return config::migrate_only(notifier::migrate(&config.database_url)).await;
    }
    let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
        Ok(l) => l,
        Err(err) => return config::config_error("notifier", &err),
    };
    match notifier::run(config, listener, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err @ notifier::Error::Fonts(_)) => config::config_error("notifier", &err),
        Err(err) => {
            tracing::error!(error = %err, "notifier stopped");
            ExitCode::FAILURE
        }
    }
}
