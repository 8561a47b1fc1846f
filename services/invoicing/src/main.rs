use std::process::ExitCode;

use billing_runtime::{config, shutdown, telemetry};
use invoicing::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = config::parse_or_exit();
    let _telemetry = telemetry::init("invoicing");
    if config.migrate_only {
        return config::migrate_only(invoicing::migrate(&config.database_url)).await;
    }
    let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
        Ok(l) => l,
        Err(err) => return config::config_error("invoicing", &err),
    };
    match invoicing::run(config, listener, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(invoicing::Error::Tenants(err)) => config::config_error("invoicing", &err),
        Err(err) => {
            tracing::error!(error = %err, "invoicing stopped");
            ExitCode::FAILURE
        }
    }
}
