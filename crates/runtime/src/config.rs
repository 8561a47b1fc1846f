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

/// A configured value refused before anything starts. It names the setting and never holds the
/// value (a mistyped secret is still a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} {why}")]
pub struct ConfigError {
    name: String,
    why: &'static str,
}

impl ConfigError {
    pub fn new(name: impl Into<String>, why: &'static str) -> Self {
        ConfigError {
            name: name.into(),
            why,
        }
    }
}

const PLACEHOLDER: &str = "is a placeholder (CHANGE-ME or similar): set the real value";

/// Whether `value` is what a template ships instead of a secret: it contains `CHANGE-ME`
/// (any case, with or without `-`, `_` or a space: `changeme`, `Change_Me`, `sk_test_CHANGE-ME`)
/// or `REPLACE-ME`, is an unexpanded `${VAR}` or a `<your key>` style blank, or is nothing but
/// a word like `secret`, `password`, `placeholder`, `todo`, `fixme`, `dummy`, `example` or `xxxx`.
pub fn is_placeholder(value: &str) -> bool {
    let folded = folded(value);
    let trimmed = value.trim();
    is_placeholder_marker(value)
        || trimmed.contains("${")
        || (trimmed.starts_with('<') && trimmed.ends_with('>'))
        || matches!(
            folded.as_str(),
            "secret" | "password" | "placeholder" | "todo" | "fixme" | "dummy" | "example"
        )
        || (folded.len() >= 3 && folded.chars().all(|c| c == 'x'))
}

/// Refuses a secret that is a placeholder ([`is_placeholder`]), naming the setting `name`
/// (e.g. `INVOICING_STRIPE_API_KEY`) but never the value.
pub fn reject_placeholder(name: &str, value: &Secret<String>) -> Result<(), ConfigError> {
    if is_placeholder(value.expose()) {
        return Err(ConfigError::new(name, PLACEHOLDER));
    }
    Ok(())
}

/// Refuses a URL whose password is a placeholder, e.g. `postgres://billing:CHANGE-ME@db/billing`
/// (in the user-info or as a `password=` query parameter). A URL without a password (peer or
/// trust authentication, a password from `PGPASSWORD`) passes.
pub fn reject_placeholder_url(name: &str, url: &str) -> Result<(), ConfigError> {
    let refused = || Err(ConfigError::new(name, PLACEHOLDER_PASSWORD));
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if let Some((user_info, _host)) = authority.rsplit_once('@')
        && let Some((_user, password)) = user_info.split_once(':')
        && is_placeholder(&percent_decoded(password))
    {
        return refused();
    }
    let query = after_scheme
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default();
    for pair in query.split('&') {
        if let Some((key, value)) = pair.split_once('=')
            && key.eq_ignore_ascii_case("password")
            && is_placeholder(&percent_decoded(value))
        {
            return refused();
        }
    }
    // Anywhere else (a mistyped URL that does not split as above) CHANGE-ME is still refused.
    if is_placeholder_marker(url) {
        return refused();
    }
    Ok(())
}

const PLACEHOLDER_PASSWORD: &str =
    "holds a placeholder password (CHANGE-ME or similar): set the real one";

/// `CHANGE-ME` or `REPLACE-ME` anywhere (the word list of [`is_placeholder`] applies to whole
/// values only: `password` may well be a URL's user name).
fn is_placeholder_marker(value: &str) -> bool {
    let folded = folded(value);
    folded.contains("changeme") || folded.contains("replaceme")
}

/// Lower case, without the separators a placeholder is written with.
fn folded(value: &str) -> String {
    value
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' ' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `%XX` escapes decoded (URLs escape `-` rarely, but `%2D` must not hide a `CHANGE-ME`).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name a refusal gives a setting: its environment variable, else its flag.
fn setting_name(arg: Option<&clap::Arg>) -> String {
    arg.and_then(|a| {
        a.get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .or_else(|| a.get_long().map(|l| format!("--{l}")))
    })
    .unwrap_or_else(|| "a setting".into())
}

/// A clap error that names the setting and says why, without the value (clap's own
/// `invalid value '…'` would print it).
fn refusal(cmd: &clap::Command, err: &ConfigError) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{err}\n")).with_cmd(cmd)
}

fn utf8<'a>(
    cmd: &clap::Command,
    name: &str,
    value: &'a std::ffi::OsStr,
) -> Result<&'a str, clap::Error> {
    value
        .to_str()
        .ok_or_else(|| refusal(cmd, &ConfigError::new(name, "is not valid UTF-8")))
}

/// clap value parser for a secret that must be real: not empty, not a placeholder
/// ([`reject_placeholder`]). The value is wrapped at once and never appears in an error, so a
/// bad one is one line naming the setting and exit 64 (through [`parse_or_exit`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretParser;

impl clap::builder::TypedValueParser for SecretParser {
    type Value = Secret<String>;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let name = setting_name(arg);
        let text = utf8(cmd, &name, value)?;
        if text.is_empty() {
            return Err(refusal(cmd, &ConfigError::new(name, "must not be empty")));
        }
        let secret = Secret::new(text.to_string());
        reject_placeholder(&name, &secret).map_err(|e| refusal(cmd, &e))?;
        Ok(secret)
    }
}

/// clap value parser for a URL that may carry a password (database URLs): refused, without
/// echoing it, when that password is a placeholder ([`reject_placeholder_url`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlParser;

impl clap::builder::TypedValueParser for UrlParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let name = setting_name(arg);
        let text = utf8(cmd, &name, value)?;
        reject_placeholder_url(&name, text).map_err(|e| refusal(cmd, &e))?;
        Ok(text.to_string())
    }
}

/// Whether an environment variable's name says it may hold a secret: URLs (user-info
/// passwords), tokens, passwords, keys and secrets. Settings that name a file (`…_FILE`) hold a
/// path, not the secret.
fn may_hold_secret(env: &str) -> bool {
    let env = env.to_ascii_uppercase();
    !env.ends_with("_FILE")
        && ["URL", "TOKEN", "PASSWORD", "SECRET", "KEY", "CREDS", "SEED"]
            .iter()
            .any(|word| env.contains(word))
}

/// The environment variables of `cmd` (and its subcommands) that may hold a secret but whose
/// values `--help` would print (`[env: NAME=value]`): each needs `hide_env_values = true`.
/// Each service's tests assert this is empty.
pub fn env_values_shown_in_help(cmd: &clap::Command) -> Vec<String> {
    let mut shown: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_env_values_set())
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| may_hold_secret(e))
        .collect();
    for sub in cmd.get_subcommands() {
        shown.extend(env_values_shown_in_help(sub));
    }
    shown.sort();
    shown.dedup();
    shown
}

/// For each service's tests: starting from the arguments `required` (flag, value pairs), each
/// `(flag, placeholder)` of `placeholders` set in their place must make `C` refuse to parse with
/// a message that says "placeholder" and never quotes the value; `C` must also parse with
/// `required` alone (plus `valid`). Returns what went wrong, empty when nothing did.
pub fn placeholder_refusals<C: clap::Parser>(
    program: &str,
    required: &[(&str, &str)],
    placeholders: &[(&str, &str)],
    valid: (&str, &str),
) -> Vec<String> {
    let args = |set: (&str, &str)| {
        let mut args = vec![program.to_string()];
        for (flag, value) in required.iter().filter(|(f, _)| *f != set.0) {
            args.extend([flag.to_string(), value.to_string()]);
        }
        args.extend([set.0.to_string(), set.1.to_string()]);
        args
    };
    let mut problems = Vec::new();
    for &(flag, value) in placeholders {
        match C::try_parse_from(args((flag, value))) {
            Ok(_) => problems.push(format!("{flag}: a placeholder was accepted")),
            Err(err) => {
                let text = err.to_string();
                if err.kind() != clap::error::ErrorKind::ValueValidation
                    || !text.contains("placeholder")
                    || text.contains(value)
                {
                    problems.push(format!("{flag}: {text}"));
                }
            }
        }
    }
    if let Err(err) = C::try_parse_from(args(valid)) {
        problems.push(format!("valid arguments refused: {err}"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use clap::builder::TypedValueParser;

    use super::*;

    #[test]
    fn placeholders_are_recognised_and_real_values_are_not() {
        for placeholder in [
            "CHANGE-ME",
            "change-me",
            "ChangeMe",
            "CHANGE_ME",
            "change me",
            "sk_test_CHANGE-ME",
            "whsec_CHANGE-ME",
            "please-replace-me",
            "${STRIPE_KEY}",
            "<your stripe key>",
            "secret",
            "Password",
            "TODO",
            "xxxx",
            "XXX-XXX",
        ] {
            assert!(is_placeholder(placeholder), "{placeholder:?}");
        }
        for real in [
            "sk_test_fake_not_a_real_key",
            "sk_test_0000fake0000not0real0000key",
            "correct horse battery staple",
            "s3cr3t-2026-rotated",
            "passwords-are-long-now",
            "x",
            "change-of-plan",
        ] {
            assert!(!is_placeholder(real), "{real:?}");
        }
    }

    #[test]
    fn a_refusal_names_the_setting_and_never_the_value() {
        let key = Secret::new("sk_test_CHANGE-ME".to_string());
        let err = reject_placeholder("INVOICING_STRIPE_API_KEY", &key).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.starts_with("INVOICING_STRIPE_API_KEY is a placeholder"),
            "{text}"
        );
        assert!(!text.contains("sk_test"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        let real = Secret::new("sk_test_0000fake0000not0real0000key".to_string());
        assert_eq!(
            reject_placeholder("INVOICING_STRIPE_API_KEY", &real),
            Ok(())
        );
    }

    #[test]
    fn database_urls_with_placeholder_passwords_are_refused() {
        for url in [
            "postgres://billing:CHANGE-ME@postgres.postgres.svc.cluster.local:5432/billing",
            "postgresql://billing:change%2Dme@db/billing?sslmode=verify-full",
            "postgres://billing:secret@db/billing",
            "postgres://billing@db/billing?password=CHANGE_ME",
            "postgres://db/billing?sslmode=require&Password=xxxx",
            "billing:CHANGE-ME@db",
        ] {
            let err = reject_placeholder_url("LEDGER_DATABASE_URL", url).expect_err(url);
            let text = err.to_string();
            assert!(text.starts_with("LEDGER_DATABASE_URL holds a placeholder password"));
            assert!(!text.contains("billing") && !text.contains("db"), "{text}");
        }
        for url in [
            "postgres://postgres:postgres@127.0.0.1:5432/test",
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://password:9fK2-long-real-one@db/billing",
            "postgres:///billing?host=/run/postgresql",
            "postgres://billing:s3cr3t-2026@db/billing?sslmode=verify-full",
        ] {
            assert_eq!(
                reject_placeholder_url("LEDGER_DATABASE_URL", url),
                Ok(()),
                "{url}"
            );
        }
    }

    fn command() -> clap::Command {
        clap::Command::new("svc")
            .arg(
                clap::Arg::new("key")
                    .long("key")
                    .env("SVC_API_KEY")
                    .value_parser(SecretParser),
            )
            .arg(
                clap::Arg::new("db")
                    .long("database-url")
                    .value_parser(UrlParser),
            )
    }

    #[test]
    fn the_value_parsers_refuse_placeholders_without_echoing_them() {
        let err = command()
            .try_get_matches_from(["svc", "--key", "sk_test_CHANGE-ME"])
            .expect_err("refused");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let text = err.to_string();
        assert!(text.contains("SVC_API_KEY is a placeholder"), "{text}");
        assert!(!text.contains("sk_test"), "{text}");

        let err = command()
            .try_get_matches_from(["svc", "--database-url", "postgres://u:CHANGE-ME@h/d"])
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("--database-url holds a placeholder password"),
            "{text}"
        );
        assert!(!text.contains("@h/d"), "{text}");

        let empty = SecretParser.parse_ref(&command(), None, std::ffi::OsStr::new(""));
        assert!(empty.is_err());
        let matches = command()
            .try_get_matches_from([
                "svc",
                "--key",
                "sk_test_fake_not_a_real_key",
                "--database-url",
                "postgres://postgres:postgres@127.0.0.1/test",
            ])
            .expect("accepted");
        let key: &Secret<String> = matches.get_one("key").expect("key");
        assert_eq!(key.expose(), "sk_test_fake_not_a_real_key");
    }

    #[test]
    fn secret_bearing_env_values_must_be_hidden_from_help() {
        let cmd = command()
            .arg(clap::Arg::new("url").long("url").env("SVC_DATABASE_URL"))
            .arg(
                clap::Arg::new("token")
                    .long("token")
                    .env("SVC_TOKEN")
                    .hide_env_values(true),
            )
            .arg(clap::Arg::new("file").long("file").env("SVC_PASSWORD_FILE"))
            .arg(clap::Arg::new("port").long("port").env("SVC_PORT"));
        assert_eq!(
            env_values_shown_in_help(&cmd),
            ["SVC_API_KEY", "SVC_DATABASE_URL"]
        );
    }
}
