//! Who may call the internal gRPC APIs: every call carries `authorization: Bearer <token>`, each
//! configured token has a role, and each method names the access it needs. Health checks and
//! server reflection stay open (probes and `grpcurl describe` need no secret).
//!
//! Tokens come from configuration as `role:token` entries separated by commas or whitespace
//! (`<SERVICE>_GRPC_TOKENS`). The setting is parsed after the command line, so an invalid one is
//! reported without echoing it (it holds every token). Only their SHA-256 digests are kept, and a
//! presented token is compared with every digest in constant time, so timing reveals neither a
//! token nor which one matched.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use billing_domain::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads: bookings, invoices, profiles, the audit log, dead letters.
    Viewer,
    /// Reads, plus the month's work: closing, payments, voids, bank statements, reconciliation.
    Billing,
    /// Everything, including tenant profiles and replaying dead letters.
    Admin,
}

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Billing,
    Admin,
}

impl Role {
    pub fn may(self, access: Access) -> bool {
        let needed = match access {
            Access::Read => Role::Viewer,
            Access::Billing => Role::Billing,
            Access::Admin => Role::Admin,
        };
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Billing => "billing",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TokensError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "billing" => Ok(Role::Billing),
            "admin" => Ok(Role::Admin),
            // The text is not repeated: a mistyped entry may hold a token.
            _ => Err(TokensError(
                "unknown role (use admin, billing or viewer)".into(),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid gRPC tokens: {0}")]
pub struct TokensError(String);

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 24;

/// A token as it may travel in a header: visible ASCII, no separators of the config format.
fn check_token(token: &str) -> Result<(), TokensError> {
    if token.len() < MIN_TOKEN_LEN || token.len() > 512 {
        return Err(TokensError(format!(
            "a token must be {MIN_TOKEN_LEN} to 512 characters long"
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        return Err(TokensError(
            "a token may hold only visible ASCII characters other than ','".into(),
        ));
    }
    Ok(())
}

/// The configured tokens, kept as digests.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(Role, [u8; 32])>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles: Vec<_> = self.entries.iter().map(|(role, _)| role.as_str()).collect();
        f.debug_struct("Tokens").field("roles", &roles).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses `role:token` entries separated by commas or whitespace. At least one is needed:
    /// a service nobody may call is a misconfiguration, not a secure default.
    pub fn parse(spec: &str) -> Result<Self, TokensError> {
        let mut entries: Vec<(Role, [u8; 32])> = Vec::new();
        for entry in spec
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let Some((role, token)) = entry.split_once(':') else {
                return Err(TokensError(
                    "each entry is role:token (e.g. admin:<token>)".into(),
                ));
            };
            let role: Role = role.parse()?;
            check_token(token)?;
            let digest = digest(token);
            if entries.iter().any(|(_, d)| *d == digest) {
                return Err(TokensError("a token is listed twice".into()));
            }
            entries.push((role, digest));
        }
        if entries.is_empty() {
            return Err(TokensError("no tokens configured".into()));
        }
        Ok(Tokens { entries })
    }

    /// A service's tokens from its setting `variable` (required to serve).
    pub fn from_setting(
        setting: Option<&Secret<String>>,
        variable: &str,
    ) -> Result<Arc<Self>, TokensError> {
        let setting =
            setting.ok_or_else(|| TokensError(format!("{variable} is required to serve")))?;
        Tokens::parse(setting.expose())
            .map(Arc::new)
            .map_err(|e| TokensError(format!("{variable}: {}", e.0)))
    }

    /// The role of `presented`, checking every configured token.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let presented = digest(presented);
        let mut role = None;
        for (r, d) in &self.entries {
            if bool::from(d.ct_eq(&presented)) {
                role = Some(*r);
            }
        }
        role
    }
}

/// The methods of one gRPC API and the access each needs. A method missing from the table
/// needs [`Access::Admin`], so a new RPC is closed until someone decides who may call it.
#[derive(Clone)]
pub struct Policy {
    tokens: Arc<Tokens>,
    methods: &'static [(&'static str, Access)],
}

/// Paths that answer without a token.
const OPEN_PREFIXES: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

impl Policy {
    pub fn new(tokens: Arc<Tokens>, methods: &'static [(&'static str, Access)]) -> Self {
        Policy { tokens, methods }
    }

    fn access(&self, path: &str) -> Access {
        self.methods
            .iter()
            .find(|(method, _)| *method == path)
            .map_or(Access::Admin, |(_, access)| *access)
    }

    /// Ok with the caller's role, or the status to answer with.
    fn check(&self, path: &str, authorization: Option<&str>) -> Result<Role, tonic::Status> {
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                tonic::Status::unauthenticated(
                    "missing credentials: send authorization: Bearer <token>",
                )
            })?;
        let role = self
            .tokens
            .role_of(token)
            .ok_or_else(|| tonic::Status::unauthenticated("unknown token"))?;
        let access = self.access(path);
        if role.may(access) {
            Ok(role)
        } else {
            Err(tonic::Status::permission_denied(format!(
                "role {role} may not call {path}"
            )))
        }
    }
}

/// axum middleware in front of a gRPC router: refuses calls without a token allowed to make them.
/// The caller's [`Role`] is left in the request's extensions, and the call runs as
/// [`crate::operator::current`] (its role, the `billing-operator` it names and the
/// `billing-operator-role` the console gave that person, checked; a call with the latter may do
/// only what both roles allow).
pub async fn authorize(State(policy): State<Policy>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match policy.check(path, authorization) {
        Ok(role) => {
            // Who the caller says is acting; recorded by the writes this call makes.
            let named = request
                .headers()
                .get(crate::operator::METADATA)
                .map(|v| v.as_bytes());
            let operator = match crate::operator::from_header(named) {
                Ok(operator) => operator,
                Err(invalid) => {
                    return tonic::Status::invalid_argument(invalid.to_string())
                        .into_http::<axum::body::Body>()
                        .into_response();
                }
            };
            // The role the console gave that person: within the token's, and the call may do
            // only what it allows too.
            let stated = request
                .headers()
                .get(crate::operator::ROLE_METADATA)
                .map(|v| v.as_bytes());
            let console_role =
                match crate::operator::console_role_from_header(stated, role, operator.as_ref()) {
                    Ok(console_role) => console_role,
                    Err(invalid) => {
                        return tonic::Status::invalid_argument(invalid.to_string())
                            .into_http::<axum::body::Body>()
                            .into_response();
                    }
                };
            if let Some(console_role) = console_role {
                let access = policy.access(path);
                if !console_role.may(access) {
                    metrics::counter!("grpc_auth_refusals_total", "reason" => "permission_denied")
                        .increment(1);
                    return tonic::Status::permission_denied(format!(
                        "the operator's role {console_role} may not call {path}"
                    ))
                    .into_http::<axum::body::Body>()
                    .into_response();
                }
            }
            request.extensions_mut().insert(role);
            let acting = crate::operator::Acting {
                role,
                operator,
                console_role,
            };
            crate::operator::scope(acting, next.run(request)).await
        }
        Err(status) => {
            let reason = match status.code() {
                tonic::Code::PermissionDenied => "permission_denied",
                _ => "unauthenticated",
            };
            metrics::counter!("grpc_auth_refusals_total", "reason" => reason).increment(1);
            status.into_http::<axum::body::Body>().into_response()
        }
    }
}

/// The `authorization` metadata value for `token`, for clients.
pub fn bearer(
    token: &Secret<String>,
) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, TokensError> {
    check_token(token.expose())?;
    format!("Bearer {}", token.expose())
        .parse()
        .map_err(|_| TokensError("the token is not a valid header value".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "fake-admin-token-0123456789abcdef";
    const VIEWER: &str = "fake-viewer-token-0123456789abcdef";

    const METHODS: &[(&str, Access)] = &[
        ("/pkg.Svc/Read", Access::Read),
        ("/pkg.Svc/Pay", Access::Billing),
    ];

    fn policy() -> Policy {
        let tokens = Tokens::parse(&format!(
            "admin:{ADMIN}, viewer:{VIEWER}\nbilling:fake-billing-token-0123456789abcdef"
        ))
        .expect("valid tokens");
        Policy::new(Arc::new(tokens), METHODS)
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.may(Access::Admin));
        assert!(Role::Billing.may(Access::Read) && Role::Billing.may(Access::Billing));
        assert!(!Role::Billing.may(Access::Admin));
        assert!(Role::Viewer.may(Access::Read) && !Role::Viewer.may(Access::Billing));
    }

    #[test]
    fn each_token_gets_its_role_and_unknown_ones_none() {
        let p = policy();
        assert_eq!(p.tokens.role_of(ADMIN), Some(Role::Admin));
        assert_eq!(p.tokens.role_of(VIEWER), Some(Role::Viewer));
        assert_eq!(p.tokens.role_of(&ADMIN[..ADMIN.len() - 1]), None);
        assert_eq!(p.tokens.role_of(""), None);
    }

    #[test]
    fn calls_are_checked_against_the_method_table() {
        let p = policy();
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(
            p.check("/pkg.Svc/Read", Some(&bearer(VIEWER))).ok(),
            Some(Role::Viewer)
        );
        let denied = p
            .check("/pkg.Svc/Pay", Some(&bearer(VIEWER)))
            .expect_err("denied");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("viewer"), "{}", denied.message());
        // Not in the table: admin only.
        assert_eq!(
            p.check("/pkg.Svc/New", Some(&bearer(ADMIN))).ok(),
            Some(Role::Admin)
        );
        let billing = format!("bearer {}", "fake-billing-token-0123456789abcdef");
        assert_eq!(
            p.check("/pkg.Svc/New", Some(&billing))
                .expect_err("denied")
                .code(),
            tonic::Code::PermissionDenied
        );
        for missing in [
            None,
            Some("Basic abc"),
            Some(ADMIN),
            Some("Bearer wrong-token-0123456789abcdef"),
        ] {
            assert_eq!(
                p.check("/pkg.Svc/Read", missing)
                    .expect_err("refused")
                    .code(),
                tonic::Code::Unauthenticated
            );
        }
    }

    #[test]
    fn bad_token_settings_are_refused_with_the_reason() {
        for (spec, says) in [
            ("", "no tokens"),
            ("admin", "role:token"),
            ("root:fake-admin-token-0123456789abcdef", "unknown role"),
            ("admin:short", "24 to 512"),
            (
                "admin:fake-admin-token-0123456789abcdef viewer:fake-admin-token-0123456789abcdef",
                "twice",
            ),
        ] {
            let err = Tokens::parse(spec).expect_err(spec).to_string();
            assert!(err.contains(says), "{spec}: {err}");
        }
        let tokens = Tokens::parse(&format!("admin:{ADMIN}")).expect("valid");
        assert!(!format!("{tokens:?}").contains(ADMIN));
        // A service's setting: missing, or wrong without echoing what was given.
        let missing = Tokens::from_setting(None, "LEDGER_GRPC_TOKENS").expect_err("missing");
        assert!(
            missing
                .to_string()
                .contains("LEDGER_GRPC_TOKENS is required")
        );
        let secret = Secret::new(format!("admin:{ADMIN} admin:{ADMIN}"));
        let twice = Tokens::from_setting(Some(&secret), "LEDGER_GRPC_TOKENS").expect_err("twice");
        assert!(twice.to_string().contains("LEDGER_GRPC_TOKENS"), "{twice}");
        assert!(!twice.to_string().contains(ADMIN), "{twice}");
    }
}
