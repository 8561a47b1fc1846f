//! Checks of ingest's configuration that clap cannot make without echoing the value: a refused
//! secret is named by its variable and position, never quoted.

/// Stripe's signing secrets are `whsec_` and (today) 32 characters or more; fewer than this is a
/// made-up value, not one copied from the dashboard.
const MIN_STRIPE_SECRET_CHARS: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "INGEST_STRIPE_WEBHOOK_SECRETS: secret {position} of {count} {problem}; set the endpoint's \
         signing secret from the Stripe dashboard (whsec_…)"
    )]
    StripeSecret {
        position: usize,
        count: usize,
        problem: &'static str,
    },
}

/// What is wrong with a Stripe webhook secret, if anything.
fn stripe_secret_problem(secret: &str) -> Option<&'static str> {
    let Some(rest) = secret.strip_prefix("whsec_") else {
        return Some("does not start with whsec_");
    };
    let upper = secret.to_ascii_uppercase();
    if ["CHANGE-ME", "CHANGE_ME", "CHANGEME"]
        .iter()
        .any(|p| upper.contains(p))
    {
        return Some("is a placeholder");
    }
    if rest.chars().count() < MIN_STRIPE_SECRET_CHARS {
        return Some("is too short to be a real one (under 24 characters after whsec_)");
    }
    None
}

/// Refuses placeholder or made-up Stripe webhook secrets: ingest would otherwise accept events
/// anyone can sign with the value shipped in an example.
pub fn stripe_secrets<'a>(
    secrets: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let count = secrets.len();
    for (i, secret) in secrets.enumerate() {
        if let Some(problem) = stripe_secret_problem(secret) {
            return Err(ConfigError::StripeSecret {
                position: i + 1,
                count,
                problem,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_never_prints_a_secret_from_the_environment() {
        use clap::CommandFactory;
        assert_eq!(
            billing_runtime::config::env_values_shown_in_help(&crate::Config::command()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn placeholder_and_made_up_stripe_secrets_are_refused_without_quoting_them() {
        let real = "whsec_0123456789abcdefghijklmnopqrstuv";
        assert_eq!(stripe_secrets([real].into_iter()), Ok(()));
        assert_eq!(stripe_secrets([].into_iter()), Ok(()));
        for (secret, problem) in [
            ("whsec_CHANGE-ME", "placeholder"),
            ("whsec_change-me-0123456789abcdefghijklmnop", "placeholder"),
            ("whsec_0123456789abcdefghijklmnopCHANGE_ME", "placeholder"),
            ("whsec_0123456789abcdefghijklm", "too short"),
            ("whsec_", "too short"),
            ("sk_test_fake_not_a_webhook_secret_0123456", "whsec_"),
        ] {
            let err = stripe_secrets([real, secret].into_iter())
                .expect_err(secret)
                .to_string();
            assert!(err.contains(problem), "{secret}: {err}");
            assert!(err.contains("secret 2 of 2"), "{err}");
            // (`whsec_` alone is no secret to leak, and the message names the prefix.)
            if secret != "whsec_" {
                assert!(!err.contains(secret), "quotes the secret: {err}");
                assert!(!err.contains(&secret[6..]), "quotes the secret: {err}");
            }
        }
    }
}
