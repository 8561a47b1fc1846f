//! Operator accounts: a file (or a mounted Secret) of `name role argon2id-hash` lines, read at
//! start-up. A password is checked against its argon2id hash on the blocking pool; an unknown
//! name is checked against a hash of nothing anyone knows, so the time taken does not tell
//! which names exist. At most [`CONCURRENT_CHECKS`] checks run at once (each holds 19 MiB for
//! tens of milliseconds); a sign-in arriving when none is free is answered busy at once, never
//! queued.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};
use billing_runtime::auth::Role;
use billing_runtime::operator::Operator;
use tokio::sync::Semaphore;

/// Password checks that may run at once, across all sign-ins of this replica.
pub const CONCURRENT_CHECKS: usize = 2;

/// Every password check slot is taken: try again in a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("CONSOLE_ACCOUNTS_FILE {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Never the line itself: it holds a password hash.
    #[error("CONSOLE_ACCOUNTS_FILE line {line}: {why}")]
    Line { line: usize, why: &'static str },
    #[error("CONSOLE_ACCOUNTS_FILE holds no account")]
    Empty,
}

#[derive(Debug, Clone)]
struct Account {
    role: Role,
    hash: String,
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub operator: Operator,
    pub role: Role,
}

pub struct Accounts {
    by_name: HashMap<String, Account>,
    /// Checked for an unknown name, so it costs what a known one does.
    decoy: String,
    /// One permit per password check running.
    checking: Arc<Semaphore>,
    /// Password checks started (argon2 runs), known and unknown names alike.
    checks: AtomicU64,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("count", &self.by_name.len())
            .finish()
    }
}

impl Accounts {
    pub fn read(path: &Path) -> Result<Self, AccountsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// One account a line: `name role hash` separated by whitespace; `#` starts a comment line.
    /// Names are [`Operator`] names (compared case-insensitively), roles viewer, billing or
    /// admin, hashes argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub fn parse(text: &str) -> Result<Self, AccountsError> {
        let mut by_name = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.trim();
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = raw.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(AccountsError::Line {
                    line,
                    why: "expected: name role argon2id-hash",
                });
            };
            let name = Operator::parse(name).map_err(|_| AccountsError::Line {
                line,
                why: "a name is 1-64 characters of A-Z, a-z, 0-9, '.', '_', '@', '-'",
            })?;
            let role: Role = role.parse().map_err(|_| AccountsError::Line {
                line,
                why: "the role is viewer, billing or admin",
            })?;
            let parsed = PasswordHash::new(hash).map_err(|_| AccountsError::Line {
                line,
                why: "the hash is not a PHC string",
            })?;
            if parsed.algorithm != Algorithm::Argon2id.ident() {
                return Err(AccountsError::Line {
                    line,
                    why: "the hash must be argon2id",
                });
            }
            let key = name.as_str().to_ascii_lowercase();
            if by_name
                .insert(
                    key,
                    Account {
                        role,
                        hash: hash.to_string(),
                    },
                )
                .is_some()
            {
                return Err(AccountsError::Line {
                    line,
                    why: "this name is listed twice",
                });
            }
        }
        if by_name.is_empty() {
            return Err(AccountsError::Empty);
        }
        Ok(Accounts {
            by_name,
            decoy: decoy_hash(),
            checking: Arc::new(Semaphore::new(CONCURRENT_CHECKS)),
            checks: AtomicU64::new(0),
        })
    }

    /// The role `operator`'s account has now; `None` once it is gone from the file.
    pub fn role_of(&self, operator: &Operator) -> Option<Role> {
        self.by_name
            .get(&operator.as_str().to_ascii_lowercase())
            .map(|a| a.role)
    }

    /// The account `name` signs into with `password`, or `None`; [`Busy`] without checking
    /// anything when [`CONCURRENT_CHECKS`] checks are already running. Runs argon2 on the
    /// blocking pool (tens of milliseconds of CPU); the check keeps its slot until argon2 is
    /// done, even if the sign-in that asked has gone.
    pub async fn verify(
        self: &Arc<Self>,
        name: &str,
        password: &str,
    ) -> Result<Option<SignedIn>, Busy> {
        let slot = self
            .checking
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let accounts = self.clone();
        let name = name.trim().to_string();
        let password = password.to_string();
        Ok(tokio::task::spawn_blocking(move || {
            let signed_in = accounts.verify_blocking(&name, &password);
            drop(slot);
            signed_in
        })
        .await
        .ok()
        .flatten())
    }

    /// Password checks started so far (each one argon2 run).
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Takes every check slot (a test holding them sees sign-ins answered busy).
    #[cfg(test)]
    pub(crate) fn occupy_every_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.checking
            .clone()
            .try_acquire_many_owned(CONCURRENT_CHECKS as u32)
            .ok()
    }

    fn verify_blocking(&self, name: &str, password: &str) -> Option<SignedIn> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let operator = Operator::parse(name).ok();
        let account = operator
            .as_ref()
            .and_then(|o| self.by_name.get(&o.as_str().to_ascii_lowercase()));
        let hash = account.map_or(self.decoy.as_str(), |a| a.hash.as_str());
        let matches = PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        match (matches, operator, account) {
            (true, Some(operator), Some(account)) => Some(SignedIn {
                operator,
                role: account.role,
            }),
            _ => None,
        }
    }
}

/// An argon2id hash of a random password nobody holds.
fn decoy_hash() -> String {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let salt = SaltString::encode_b64(&bytes).unwrap_or_else(|_| {
        unreachable!("16 bytes are a valid salt length (argon2 takes 4 to 64)")
    });
    Argon2::default()
        .hash_password(&bytes, &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// An argon2id hash of `password` with a random salt and argon2's default cost (19 MiB, two
/// passes), as the accounts file holds it. For tests and `console hash-password`.
pub fn hash_password(password: &str) -> String {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let salt = SaltString::encode_b64(&bytes).unwrap_or_else(|_| {
        unreachable!("16 bytes are a valid salt length (argon2 takes 4 to 64)")
    });
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_signs_in_to_its_account_only() {
        let file = format!(
            "# operators\n\ndana billing {}\nKim@example.org admin {}\n",
            hash_password("correct horse"),
            hash_password("battery staple")
        );
        let accounts = Arc::new(Accounts::parse(&file).expect("valid"));
        let dana = accounts
            .verify("dana", "correct horse")
            .await
            .expect("a free check slot");
        assert_eq!(
            dana.map(|s| (s.operator.to_string(), s.role)),
            Some(("dana".to_string(), Role::Billing))
        );
        // Names are case-insensitive; the name is the one typed.
        assert!(
            accounts
                .verify("kim@example.org", "battery staple")
                .await
                .expect("a free check slot")
                .is_some()
        );
        assert!(
            accounts
                .verify("dana", "battery staple")
                .await
                .expect("a free check slot")
                .is_none()
        );
        assert!(
            accounts
                .verify("nobody", "correct horse")
                .await
                .expect("a free check slot")
                .is_none()
        );
        assert!(
            accounts
                .verify("dana smith", "correct horse")
                .await
                .expect("a free check slot")
                .is_none()
        );
        assert!(!format!("{accounts:?}").contains("argon2"));
        let kim = Operator::parse("KIM@example.org").expect("a name");
        assert_eq!(accounts.role_of(&kim), Some(Role::Admin));
        let gone = Operator::parse("nobody").expect("a name");
        assert_eq!(accounts.role_of(&gone), None);
    }

    #[tokio::test]
    async fn a_hash_made_by_debians_argon2_tool_is_accepted() {
        // `printf '%s' 'the password' | argon2 VUcraXhNbTRCSjE3NUhuSQ -id -t 2 -m 16 -p 1 -e`
        // (Debian 12's argon2 0~20171227), as docs/console.md says to make one.
        let made = "$argon2id$v=19$m=65536,t=2,p=1$VlVjcmFYaE5iVFJDU2pFM05VaHVTUQ$\
                    a/p1sLrQcWgJeeEmv/xOezFwdq/rVmpr+H2A+8haeDs";
        let accounts = Arc::new(Accounts::parse(&format!("dana admin {made}")).expect("valid"));
        assert!(
            accounts
                .verify("dana", "the password")
                .await
                .expect("a free check slot")
                .is_some()
        );
        assert!(
            accounts
                .verify("dana", "the password ")
                .await
                .expect("a free check slot")
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_compose_example_accounts_file_signs_its_admin_in() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/console/accounts.example");
        let accounts = Arc::new(Accounts::read(&path).expect("a valid example"));
        let admin = accounts
            .verify("admin", "example-only-console-password")
            .await
            .expect("a free check slot");
        assert_eq!(admin.map(|a| a.role), Some(Role::Admin));
    }

    #[tokio::test]
    async fn a_sign_in_finding_every_check_slot_taken_is_busy_without_checking() {
        let accounts = Arc::new(
            Accounts::parse(&format!("dana admin {}", hash_password("pw"))).expect("valid"),
        );
        let held = accounts.occupy_every_slot().expect("the slots are free");
        assert_eq!(accounts.verify("dana", "pw").await, Err(Busy));
        assert_eq!(accounts.verify("nobody", "pw").await, Err(Busy));
        assert_eq!(accounts.checks(), 0, "no argon2 ran");
        drop(held);
        assert!(
            accounts
                .verify("dana", "pw")
                .await
                .is_ok_and(|s| s.is_some())
        );
        assert!(accounts.verify("nobody", "pw").await == Ok(None));
        assert_eq!(accounts.checks(), 2, "an unknown name costs a check too");
    }

    #[test]
    fn a_bad_line_is_named_without_its_text() {
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        for (file, says) in [
            ("dana billing".to_string(), "line 1: expected"),
            (
                format!("# x\ndana root {}", hash_password("p")),
                "line 2: the role",
            ),
            ("dana admin plaintext-password".to_string(), "PHC"),
            (format!("dana admin {argon2i}"), "argon2id"),
            (
                format!("dana admin {h}\nDANA viewer {h}", h = hash_password("p")),
                "twice",
            ),
            ("# nobody\n".to_string(), "no account"),
        ] {
            let err = Accounts::parse(&file).expect_err(&file).to_string();
            assert!(err.contains(says), "{file}: {err}");
            assert!(!err.contains("plaintext-password"), "{err}");
        }
    }
}
