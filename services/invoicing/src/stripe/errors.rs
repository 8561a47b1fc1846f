//! What a push reports when Stripe refuses or cannot be reached, and which failures are worth
//! another attempt with the same idempotency key.

use rust_decimal::Decimal;
use stripe::{ApiErrorsType, StripeError};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(
        "invoice number {number} has {len} characters and Stripe takes at most 26: give tenant \
         {tenant} an invoice_prefix of at most 12 characters, then void this draft so the next \
         close numbers the month anew"
    )]
    NumberTooLong {
        number: String,
        len: usize,
        tenant: String,
    },
    /// Stripe's message for a refused key quotes part of the key, so it is not kept.
    #[error("Stripe refused the API key (HTTP {0}); check INVOICING_STRIPE_API_KEY")]
    Unauthorized(u16),
    #[error("Stripe answered HTTP {status} {kind}{detail}")]
    Refused {
        status: u16,
        kind: String,
        detail: String,
    },
    #[error("stripe: {0}")]
    Transport(String),
    #[error("stripe answered without {0}")]
    Incomplete(&'static str),
    #[error("amount {0} cannot be expressed in the currency's minor unit")]
    Amount(Decimal),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<StripeError> for PushError {
    fn from(err: StripeError) -> Self {
        match err {
            StripeError::Stripe(_, status @ 401) => PushError::Unauthorized(status),
            StripeError::Stripe(e, status) => {
                let mut detail = String::new();
                if let Some(code) = &e.code {
                    detail.push_str(&format!(" ({})", code.as_str()));
                }
                if let Some(param) = &e.param {
                    detail.push_str(&format!(" on {param}"));
                }
                if let Some(message) = &e.message {
                    detail.push_str(&format!(": {message}"));
                }
                PushError::Refused {
                    status,
                    kind: e.type_.as_str().to_string(),
                    detail,
                }
            }
            other => PushError::Transport(other.to_string()),
        }
    }
}

/// Whether Stripe may have done what a failed request asked: the answer was lost, Stripe was
/// busy with the same key, or the key was last used with other parameters.
pub(super) fn maybe_executed(err: &StripeError) -> bool {
    match err {
        StripeError::Stripe(e, 400) => e.type_ == ApiErrorsType::IdempotencyError,
        other => worth_retrying(other),
    }
}

/// Lost answers and the statuses Stripe documents as transient.
pub(super) fn worth_retrying(err: &StripeError) -> bool {
    match err {
        StripeError::ClientError(_) | StripeError::Timeout => true,
        StripeError::Stripe(_, status) => matches!(status, 409 | 424 | 429 | 500..=504),
        StripeError::JSONDeserialize(_) | StripeError::ConfigError(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(kind: ApiErrorsType, message: &str) -> Box<stripe::ApiErrors> {
        Box::new(stripe::ApiErrors {
            advice_code: None,
            charge: None,
            code: None,
            decline_code: None,
            doc_url: None,
            message: Some(message.to_string()),
            network_advice_code: None,
            network_decline_code: None,
            param: None,
            payment_intent: None,
            payment_method: None,
            payment_method_type: None,
            request_log_url: None,
            setup_intent: None,
            source: None,
            type_: kind,
        })
    }

    #[test]
    fn a_refused_api_key_is_reported_without_stripes_message() {
        // Stripe's 401 quotes the key's prefix and last four characters.
        let message = "Invalid API Key provided: sk_test_****************_key";
        let refused =
            StripeError::Stripe(api_error(ApiErrorsType::InvalidRequestError, message), 401);
        let err = PushError::from(refused).to_string();
        assert!(err.contains("API key") && err.contains("401"), "{err}");
        assert!(!err.contains("sk_test") && !err.contains("_key"), "{err}");
    }

    #[test]
    fn lost_answers_are_retried_and_may_have_made_the_object() {
        let status = |s: u16| StripeError::Stripe(api_error(ApiErrorsType::ApiError, "x"), s);
        let mismatch = StripeError::Stripe(
            api_error(
                ApiErrorsType::IdempotencyError,
                "Keys for idempotent requests",
            ),
            400,
        );
        let invalid = StripeError::Stripe(api_error(ApiErrorsType::InvalidRequestError, "x"), 400);
        let cases = [
            (
                StripeError::ClientError("connection closed".into()),
                true,
                true,
            ),
            (StripeError::Timeout, true, true),
            (status(409), true, true),
            (status(429), true, true),
            (status(500), true, true),
            (status(503), true, true),
            (mismatch, false, true),
            (invalid, false, false),
            (status(401), false, false),
            (status(404), false, false),
        ];
        for (err, retry, executed) in cases {
            assert_eq!(
                (worth_retrying(&err), maybe_executed(&err)),
                (retry, executed),
                "{err}"
            );
        }
    }
}
