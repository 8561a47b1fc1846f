//! The ingest binary's start-up, as an operator meets it: a placeholder secret stops it with one
//! line and exit code 64, and neither that line nor `--help` shows a secret from the environment.

use std::process::{Command, Output};

/// Obviously fake values, each distinctive enough to be found if it leaked.
const REAL_LOOKING: &str = "whsec_fake0real0looking0secret0for0tests";
const NATS_PASSWORD: &str = "fake-nats-password-in-url";

fn ingest(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
    command
        .args(args)
        .env_clear()
        .env("INGEST_TENANTS_FILE", "/nonexistent/tenants.json")
        // Nothing may be reached: a failure to connect would show as another error.
        .env("INGEST_NATS_URL", "nats://127.0.0.1:1")
        .env("INGEST_LISTEN_ADDR", "127.0.0.1:0");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running ingest")
}

#[test]
fn a_placeholder_stripe_secret_stops_ingest_with_one_line_that_does_not_quote_it() {
    for secrets in [
        "whsec_CHANGE-ME",
        "whsec_fake0real0looking0secret0for0tests,whsec_CHANGE-ME-to-the-real-one-please",
        // Made up rather than copied from Stripe's dashboard.
        "whsec_tooshort",
        "whsec_fake0real0looking0secret0for0tests,whsec_tooshort",
    ] {
        let out = ingest(&[("INGEST_STRIPE_WEBHOOK_SECRETS", secrets)], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{secrets}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains("INGEST_STRIPE_WEBHOOK_SECRETS") && stderr.contains("placeholder")
                || stderr.contains("too short"),
            "{stderr}"
        );
        for secret in secrets.split(',') {
            assert!(!stderr.contains(secret), "{secret} quoted: {stderr}");
        }
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn help_run_with_secrets_in_the_environment_does_not_print_them() {
    let url = format!("nats://ingest:{NATS_PASSWORD}@127.0.0.1:1");
    let out = ingest(
        &[
            ("INGEST_STRIPE_WEBHOOK_SECRETS", REAL_LOOKING),
            ("INGEST_NATS_URL", &url),
        ],
        &["--help"],
    );
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(help.contains("INGEST_STRIPE_WEBHOOK_SECRETS"), "{help}");
    assert!(!help.contains(REAL_LOOKING), "{help}");
    assert!(!help.contains(NATS_PASSWORD), "{help}");
}
