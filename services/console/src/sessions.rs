//! Server-side sessions in PostgreSQL (so any replica serves any request): the cookie holds 32
//! random bytes, the table their SHA-256, the operator, the role and the session's CSRF token.
//! Failed sign-ins are kept for the throttle window, per account name.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use billing_runtime::auth::Role;
use billing_runtime::operator::Operator;
use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::accounts::SignedIn;

/// Failed sign-ins of one account name within [`THROTTLE_WINDOW`] that lock it for the rest
/// of the window.
pub const MAX_FAILURES: i64 = 5;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A signed-in operator's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: Operator,
    pub role: Role,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system's CSPRNG failing leaves the bytes zero: refuse rather than hand out a
    // guessable token.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!("the system random generator failed");
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[derive(Clone)]
pub struct Sessions {
    pool: PgPool,
    lifetime: Duration,
}

impl Sessions {
    pub fn new(pool: PgPool, lifetime: Duration) -> Self {
        Sessions { pool, lifetime }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a session; returns the cookie's token.
    pub async fn start(&self, who: &SignedIn) -> Result<(String, Session), sqlx::Error> {
        let token = random_token();
        let csrf = random_token();
        if token.is_empty() || csrf.is_empty() {
            return Err(sqlx::Error::Protocol("no randomness for a session".into()));
        }
        let expires_at = sqlx::query_scalar!(
            "insert into console.sessions (token_sha256, operator, role, csrf_token, expires_at)
             values ($1, $2, $3, $4, now() + make_interval(secs => $5))
             returning expires_at",
            digest(&token),
            who.operator.as_str(),
            who.role.as_str(),
            csrf,
            self.lifetime.as_secs_f64()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((
            token,
            Session {
                operator: who.operator.clone(),
                role: who.role,
                csrf,
                expires_at,
            },
        ))
    }

    /// The live session `token` opens, if any.
    pub async fn find(&self, token: &str) -> Result<Option<Session>, sqlx::Error> {
        let row = sqlx::query!(
            "select operator, role, csrf_token, expires_at from console.sessions
             where token_sha256 = $1 and expires_at > now()",
            digest(token)
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| {
            Some(Session {
                operator: Operator::parse(&r.operator).ok()?,
                role: r.role.parse().ok()?,
                csrf: r.csrf_token,
                expires_at: r.expires_at,
            })
        }))
    }

    /// Ends the session `token` opens (signing out), and sweeps expired ones.
    pub async fn end(&self, token: &str) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "delete from console.sessions where token_sha256 = $1 or expires_at < now()",
            digest(token)
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `account` has failed [`MAX_FAILURES`] times within the window.
    pub async fn throttled(&self, account: &str) -> Result<bool, sqlx::Error> {
        let failures = sqlx::query_scalar!(
            r#"select count(*) as "count!" from console.login_failures
               where account = $1 and failed_at > now() - make_interval(secs => $2)"#,
            account_key(account),
            THROTTLE_WINDOW.as_secs_f64()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(failures >= MAX_FAILURES)
    }

    /// Records a failed sign-in of `account`, and forgets failures older than the window.
    pub async fn failed(&self, account: &str) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "insert into console.login_failures (account) values ($1)",
            account_key(account)
        )
        .execute(&self.pool)
        .await?;
        sqlx::query!(
            "delete from console.login_failures where failed_at < now() - make_interval(secs => $1)",
            THROTTLE_WINDOW.as_secs_f64()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// How a typed account name is counted: trimmed, lower-cased, at most 64 characters.
fn account_key(account: &str) -> String {
    account.trim().to_lowercase().chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_url_safe() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(account_key("  Dana@Example.ORG "), "dana@example.org");
        assert_eq!(account_key(&"x".repeat(100)).len(), 64);
    }
}
