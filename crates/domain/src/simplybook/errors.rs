//! SimplyBook's JSON-RPC errors: reading one (its code a string or a number), the codes
//! SimplyBook documents, and what each means to a caller.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::wire::Text;

/// A JSON-RPC error as SimplyBook sends it: `{"code": -32085, "message": "Signature error"}`,
/// the code often a string (`"-32085"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The code as a number, when it is one (string or number on the wire).
    pub code: Option<i64>,
    pub message: String,
}

impl RpcError {
    /// Reads an `error` member; anything unreadable keeps its text as the message.
    pub fn parse(error: &RawValue) -> RpcError {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            code: Option<Text>,
            #[serde(default)]
            message: Option<String>,
        }
        match serde_json::from_str::<Wire>(error.get()) {
            Ok(w) => RpcError {
                code: w.code.and_then(|c| c.into_string().trim().parse().ok()),
                message: w.message.unwrap_or_default(),
            },
            Err(_) => RpcError {
                code: None,
                message: error.get().chars().take(200).collect(),
            },
        }
    }

    /// SimplyBook refuses the Company Administration API's login to companies with its HIPAA
    /// feature: reconciliation is not possible for them.
    pub fn is_admin_login_refused(&self) -> bool {
        self.code == Some(HIPAA_ADMIN_LOGIN_REFUSED)
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "error {code}: {}", self.message),
            None => write!(f, "error: {}", self.message),
        }
    }
}

/// `getUserToken`'s refusal for a company using SimplyBook's HIPAA feature.
pub const HIPAA_ADMIN_LOGIN_REFUSED: i64 = -33005;

/// Error codes SimplyBook documents ("Errors handling" and "Authentication" in its help wiki).
pub mod codes {
    /// "Access denied" (also how an expired token is refused) or "Company does not exists".
    pub const ACCESS_DENIED_OR_NO_COMPANY: i64 = -32600;
    /// "Appointemnt couldn't be found" (sic).
    pub const BOOKING_NOT_FOUND: i64 = -32080;
    pub const SIGNATURE_ERROR: i64 = -32085;
    /// Login API: "Company does not exist".
    pub const COMPANY_NOT_FOUND: i64 = -33001;
    /// JSON-RPC's "Internal error".
    pub const INTERNAL_ERROR: i64 = -32603;
    /// "Plugin is not activated": the company does not use the feature asked about.
    pub const PLUGIN_NOT_ACTIVATED: i64 = -32001;
}

impl RpcError {
    /// "Access denied": how SimplyBook refuses an expired or invalid token (SimplyBook's own app
    /// logs in again on it, and on nothing else).
    pub fn is_access_denied(&self) -> bool {
        self.code == Some(codes::ACCESS_DENIED_OR_NO_COMPANY) && !self.is_unknown_company()
    }

    /// "Internal error": SimplyBook's own failure, worth asking again later.
    pub fn is_internal(&self) -> bool {
        self.code == Some(codes::INTERNAL_ERROR)
    }

    /// SimplyBook says the company does not exist (on this API domain): its domain may have
    /// changed, so ask `getServiceUrl` again.
    pub fn is_unknown_company(&self) -> bool {
        self.code == Some(codes::COMPANY_NOT_FOUND)
            || (self.code == Some(codes::ACCESS_DENIED_OR_NO_COMPANY)
                && self
                    .message
                    .to_ascii_lowercase()
                    .contains("company does not exist"))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::simplybook::testing::{fixture, raw};

    #[test]
    fn error_codes_are_read_as_strings_or_numbers() {
        let cases = [
            (fixture!("errors/signature_error_string_code"), Some(-32085)),
            (fixture!("errors/not_found_numeric_code"), Some(-32080)),
            (fixture!("errors/hipaa_admin_login_refused"), Some(-33005)),
            (r#"{"message":"no code"}"#, None),
        ];
        for (text, code) in cases {
            assert_eq!(RpcError::parse(&raw(text)).code, code, "{text}");
        }
        let signature = RpcError::parse(&raw(fixture!("errors/signature_error_string_code")));
        assert_eq!(signature.to_string(), "error -32085: Signature error");
        assert!(
            RpcError::parse(&raw(fixture!("errors/hipaa_admin_login_refused")))
                .is_admin_login_refused()
        );
        assert!(RpcError::parse(&raw(fixture!("errors/company_not_found"))).is_unknown_company());
        assert!(
            RpcError::parse(&raw(fixture!("errors/company_not_found_api_32600")))
                .is_unknown_company()
        );
        assert!(
            !RpcError::parse(&raw(fixture!("errors/token_expired_or_invalid")))
                .is_unknown_company()
        );
    }
}
