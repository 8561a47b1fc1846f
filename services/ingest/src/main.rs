use std::process::ExitCode;

use billing_runtime::{config, shutdown, telemetry};
use ingest::Config;

/// ingest allocates a little per request (headers, JSON fields, the publish); mimalloc's
/// thread-local free lists cost less than glibc's malloc there (measured by `bench/run.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = config::parse_or_exit();
    if let Err(err) = config.validate() {
        return config::config_error("ingest", &err);
    }
    let _telemetry = telemetry::init("ingest");
    let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
        Ok(l) => l,
        Err(err) => return config::config_error("ingest", &err),
    };
    match ingest::run(config, listener, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err @ (ingest::Error::Tenants(_) | ingest::Error::BindOps { .. })) => {
            config::config_error("ingest", &err)
        }
        Err(err) => {
            tracing::error!(error = %err, "ingest stopped");
            ExitCode::FAILURE
        }
    }
}
