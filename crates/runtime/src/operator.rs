//! Who is acting behind a gRPC call: the person (the console's signed-in operator,
//! billingctl's `--as`) a caller names in the `billing-operator` metadata, beside the role of
//! the token that made the call. The services record both in the audit and history rows a call
//! writes (invoicing's status history and payments, the ledger's audit log and erasures).
//!
//! Trust: the token is authenticated; the name is not. It is the token holder's statement of
//! who asked for the call, recorded as such ("dana, vouched for by a billing token"). Every role
//! may send it, but only writes record it, and writes need a billing or admin token, so only
//! callers trusted to change the books can put a name into a record. A caller that must tell
//! people apart authenticates them itself (the console signs its operators in) before naming
//! them; where people share a token, their names are only as good as their word.
//!
//! The console signs its operators in with roles of its own and calls with one token (whose
//! role caps what any of them can do); it also sends [`ROLE_METADATA`], the role the console
//! gave the operator. The call is then allowed only what both roles allow, and records that role
//! marked as the console's (`dana as billing (console)`), not the token's: the token's role says
//! only which token the console holds. billingctl sends no such role; its calls record the
//! token's (`dana as billing`).
//!
//! [`crate::auth::authorize`] checks the name and runs the rest of the call inside
//! [`scope`]; code that writes a record reads it with [`current`]. Work outside a call (a
//! consumer, the outbox relay, a timer) has no caller, and [`current`] is `None` there.

use std::fmt;

use crate::auth::Role;

/// The gRPC metadata key a caller names the person acting with.
pub const METADATA: &str = "billing-operator";
/// The gRPC metadata key a caller that signs people in (the console) names the role it gave the
/// person with: `viewer`, `billing` or `admin`; taken as at most its token's role.
pub const ROLE_METADATA: &str = "billing-operator-role";
/// The longest name accepted.
pub const MAX_LEN: usize = 64;

/// A person's name as the services accept it: 1-64 characters of `A-Z a-z 0-9 . _ @ -`
/// (a login name or an email address; nothing that could be mistaken for markup or a
/// separator in a log line).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Operator(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{METADATA} must be 1-{MAX_LEN} characters of A-Z, a-z, 0-9, '.', '_', '@' and '-'")]
pub struct InvalidOperator;

impl Operator {
    pub fn parse(name: &str) -> Result<Self, InvalidOperator> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-');
        if name.is_empty() || name.len() > MAX_LEN || !name.bytes().all(allowed) {
            return Err(InvalidOperator);
        }
        Ok(Operator(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The metadata value carrying this name (always valid: the name is visible ASCII).
    pub fn metadata_value(&self) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        tonic::metadata::MetadataValue::try_from(self.0.as_str()).unwrap_or_else(|_| {
            unreachable!("an operator name is visible ASCII (checked by parse)")
        })
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Operator({:?})", self.0)
    }
}

/// Who is behind the call being served: the token's role, the person it names (if any), and
/// the role the console gave that person (if the console made the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acting {
    pub role: Role,
    pub operator: Option<Operator>,
    /// [`ROLE_METADATA`]: the person's role in the console's own sign-in, capped at `role`.
    pub console_role: Option<Role>,
}

impl Acting {
    /// The name as recorded: `None` when the caller named nobody.
    pub fn operator_name(&self) -> Option<&str> {
        self.operator.as_ref().map(Operator::as_str)
    }

    /// The role as recorded: the console's role of the person when the console gave one
    /// (`billing (console)`), otherwise the token's (`billing`).
    pub fn role_name(&self) -> &'static str {
        match self.console_role {
            Some(Role::Viewer) => "viewer (console)",
            Some(Role::Billing) => "billing (console)",
            Some(Role::Admin) => "admin (console)",
            None => self.role.as_str(),
        }
    }
}

impl fmt::Display for Acting {
    /// `dana as billing`, `dana as billing (console)`, or `(unnamed) as billing`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.operator {
            Some(name) => write!(f, "{name} as {}", self.role_name()),
            None => write!(f, "(unnamed) as {}", self.role_name()),
        }
    }
}

/// Why a [`ROLE_METADATA`] value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConsoleRole {
    #[error("{ROLE_METADATA} must be viewer, billing or admin")]
    Unknown,
    #[error("{ROLE_METADATA} needs {METADATA}: it is the named person's role")]
    Unnamed,
}

/// The [`ROLE_METADATA`] value of a call made with a token of role `token` naming `operator`,
/// checked, and capped at `token` (an admin of a console holding a billing token acts, and is
/// recorded, as billing): `Ok(None)` when absent.
pub fn console_role_from_header(
    value: Option<&[u8]>,
    token: Role,
    operator: Option<&Operator>,
) -> Result<Option<Role>, InvalidConsoleRole> {
    let Some(bytes) = value else {
        return Ok(None);
    };
    let role: Role = std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(InvalidConsoleRole::Unknown)?;
    if operator.is_none() {
        return Err(InvalidConsoleRole::Unnamed);
    }
    Ok(Some(role.min(token)))
}

/// The `billing-operator` value of a call, checked: `Ok(None)` when absent.
pub fn from_header(value: Option<&[u8]>) -> Result<Option<Operator>, InvalidOperator> {
    match value {
        None => Ok(None),
        Some(bytes) => std::str::from_utf8(bytes)
            .map_err(|_| InvalidOperator)
            .and_then(Operator::parse)
            .map(Some),
    }
}

tokio::task_local! {
    static ACTING: Acting;
}

/// Runs `f` as a call made by `acting`.
pub async fn scope<F: Future>(acting: Acting, f: F) -> F::Output {
    ACTING.scope(acting, f).await
}

/// Who is behind the call being served; `None` outside a call.
pub fn current() -> Option<Acting> {
    ACTING.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_login_names_or_email_addresses() {
        for ok in [
            "dana",
            "Dana.Smith",
            "ops_bot-2",
            "dana@example.org",
            &"x".repeat(64),
        ] {
            assert_eq!(
                Operator::parse(ok).map(|o| o.to_string()),
                Ok(ok.to_string())
            );
        }
        for refused in [
            "",
            " dana",
            "dana smith",
            "Zoë",
            "dana\n",
            "<script>",
            "a,b",
            "dana;admin",
            &"x".repeat(65),
        ] {
            assert_eq!(
                Operator::parse(refused),
                Err(InvalidOperator),
                "{refused:?}"
            );
        }
        assert_eq!(from_header(None), Ok(None));
        assert_eq!(from_header(Some(b"\xff\xfe")), Err(InvalidOperator));
        assert_eq!(
            from_header(Some(b"dana")).map(|o| o.map(|o| o.to_string())),
            Ok(Some("dana".into()))
        );
    }

    #[test]
    fn an_acting_caller_reads_as_name_and_role() {
        let named = Acting {
            role: Role::Billing,
            operator: Operator::parse("dana").ok(),
            console_role: None,
        };
        assert_eq!(named.to_string(), "dana as billing");
        assert_eq!(named.operator_name(), Some("dana"));
        let unnamed = Acting {
            role: Role::Admin,
            operator: None,
            console_role: None,
        };
        assert_eq!(unnamed.to_string(), "(unnamed) as admin");
        assert_eq!(unnamed.role_name(), "admin");
        // Through the console's admin token, for an operator the console made billing.
        let console = Acting {
            role: Role::Admin,
            operator: Operator::parse("dana").ok(),
            console_role: Some(Role::Billing),
        };
        assert_eq!(console.to_string(), "dana as billing (console)");
        assert_eq!(console.role_name(), "billing (console)");
    }

    #[test]
    fn a_console_role_is_a_role_of_a_named_person_capped_at_the_token() {
        let dana = Operator::parse("dana").ok();
        let check = |v: Option<&[u8]>, token, who: Option<&Operator>| {
            console_role_from_header(v, token, who)
        };
        assert_eq!(check(None, Role::Admin, dana.as_ref()), Ok(None));
        assert_eq!(
            check(Some(b"billing"), Role::Admin, dana.as_ref()),
            Ok(Some(Role::Billing))
        );
        assert_eq!(
            check(Some(b"admin"), Role::Admin, dana.as_ref()),
            Ok(Some(Role::Admin))
        );
        assert_eq!(
            check(Some(b"admin"), Role::Billing, dana.as_ref()),
            Ok(Some(Role::Billing)),
            "never more than the token"
        );
        assert_eq!(
            check(Some(b"billing"), Role::Admin, None),
            Err(InvalidConsoleRole::Unnamed)
        );
        for bad in [&b"root"[..], b"Billing", b"billing (console)", b"\xff"] {
            assert_eq!(
                check(Some(bad), Role::Admin, dana.as_ref()),
                Err(InvalidConsoleRole::Unknown)
            );
        }
    }

    #[tokio::test]
    async fn the_caller_is_known_inside_its_scope_only() {
        assert_eq!(current(), None);
        let acting = Acting {
            role: Role::Billing,
            operator: Operator::parse("dana").ok(),
            console_role: None,
        };
        let inside = scope(acting.clone(), async {
            tokio::task::yield_now().await;
            current()
        })
        .await;
        assert_eq!(inside, Some(acting));
        assert_eq!(current(), None);
    }
}
