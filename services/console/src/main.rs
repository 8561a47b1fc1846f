use std::process::ExitCode;

use billing_runtime::{config, shutdown, telemetry};
use console::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = config::parse_or_exit();
    let _telemetry = telemetry::init("console");
    if config.migrate_only {
        return config::migrate_only(console::migrate(&config.database_url)).await;
    }
    let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
        Ok(l) => l,
        Err(err) => return config::config_error("console", &err),
    };
    match console::run(config, listener, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is_config() => config::config_error("console", &err),
        Err(err) => {
            tracing::error!(error = %err, "console stopped");
            ExitCode::FAILURE
        }
    }
}
