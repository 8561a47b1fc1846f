//! Typed configuration from flags and environment (clap), failing fast with exit code 64.

use std::process::ExitCode;

use billing_domain::Secret;

/// `EX_USAGE` from sysexits.h: the service was configured wrongly.
pub const EXIT_CONFIG: u8 = 64;

/// Parses a service's config; on a bad value prints one clear line and exits with 64.
/// `--help` and `--version` print and exit normally.
pub fn parse_or_exit<C: clap::Parser>() -> C {
    match C::try_parse() {
        Ok(config) => config,
        Err(err) => match err.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                let _ = err.print();
                std::process::exit(0)
            }
            _ => {
                let _ = err.print();
                std::process::exit(i32::from(EXIT_CONFIG))
            }
        },
    }
}

/// Reports a configuration error found after parsing (e.g. an unreadable tenants file).
pub fn config_error(service: &str, err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{service}: invalid configuration: {err}");
    ExitCode::from(EXIT_CONFIG)
}

/// clap value parser for secrets: the value is wrapped at once so it never prints.
pub fn parse_secret(s: &str) -> Result<Secret<String>, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(Secret::new(s.to_string()))
}

/// What `--migrate-only` does in each service's `main`: applies the migrations, logs the
/// outcome, and gives the exit status.
pub async fn migrate_only<E: std::fmt::Display>(
    migrate: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    match migrate.await {
        Ok(()) => {
            tracing::info!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "migrating failed");
            ExitCode::FAILURE
        }
    }
}
