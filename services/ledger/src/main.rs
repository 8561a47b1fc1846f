use std::process::ExitCode;

use billing_runtime::{config, shutdown, telemetry};
use ledger::Config;

/// A batch allocates thousands of short-lived buffers (decoded events, sealed details, the
/// statements' arrays); under glibc's malloc a drain spent a tenth of the ledger's CPU
/// coalescing and splitting free chunks (perf, `bench/run.sh ledger`), mimalloc's
/// thread-local free lists far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = config::parse_or_exit();
    let _telemetry = telemetry::init("ledger");
    if config.migrate_only {
        return config::migrate_only(ledger::migrate(&config.database_url)).await;
    }
    if config.rekey_chains {
        let rekey = ledger::rekey(&config.database_url, config.chain_key_file.as_deref());
        return config::migrate_only(async { rekey.await.map(|_| ()) }).await;
    }
    let listener = match tokio::net::TcpListener::bind(config.listen_addr).await {
        Ok(l) => l,
        Err(err) => return config::config_error("ledger", &err),
    };
    match ledger::run(config, listener, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(ledger::Error::Tenants(err)) => config::config_error("ledger", &err),
        Err(err) => {
            tracing::error!(error = %err, "ledger stopped");
            ExitCode::FAILURE
        }
    }
}
