use std::process::ExitCode;

use billing_runtime::{config, shutdown, telemetry};
use console::Config;

#[tokio::main]
async fn main() -> ExitCode {
    // `console hash-password`: the argon2id hash of the password on stdin, for the accounts
    // file (docs/console.md); the password is never an argument, which `ps` would show.
    if std::env::args().nth(1).as_deref() == Some("hash-password") {
        return hash_password();
    }
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

fn hash_password() -> ExitCode {
    use std::io::{BufRead as _, Write as _};
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return config::config_error("console", &"hash-password: could not read stdin");
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return config::config_error("console", &"hash-password: give the password on stdin");
    }
    let hash = console::accounts::hash_password(password);
    match writeln!(std::io::stdout(), "{hash}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
