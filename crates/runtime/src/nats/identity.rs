//! Who a service is to NATS (a user and password file, a creds file or an nkey seed file, secrets
//! only in files), connecting as it, and the JetStream context on that connection. The
//! `nats_identity_settings!` macro declares a service's settings for it; as every
//! `#[macro_export]` macro, it is used from the crate root:
//! `billing_runtime::nats_identity_settings!`.

use std::sync::LazyLock;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;

/// How many times this process's NATS connections were lost, as a value to watch: a publish
/// whose ack is awaited on a connection that was lost will never get it, and can be sent again
/// at once (ingest does) instead of waiting out its timeout.
static CONNECTIONS_LOST: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// A receiver that changes when one of this process's NATS connections is lost from now on.
pub fn connections_lost() -> watch::Receiver<u64> {
    CONNECTIONS_LOST.subscribe()
}

/// Connects to NATS; fails fast when the server does not answer, reconnects forever after.
pub async fn connect(
    url: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    connect_as(url, name, &NatsIdentity::default()).await
}

/// Who a service is to NATS. Each service has its own identity, and the server grants each only
/// the subjects it publishes and consumes (`deploy/nats/nats-server.conf`), so a message on a
/// subject is known to come from the service allowed to publish there. Secrets come from files
/// (Kubernetes Secret volumes), never from the environment or the command line.
#[derive(Debug, Clone, Default)]
pub struct NatsIdentity {
    /// User name, with `password_file`.
    pub user: Option<String>,
    /// File holding the user's password (a trailing newline is ignored).
    pub password_file: Option<std::path::PathBuf>,
    /// A `.creds` file (JWT and nkey seed) for servers with decentralised auth.
    pub creds_file: Option<std::path::PathBuf>,
    /// File holding an nkey seed (`SU…`).
    pub nkey_seed_file: Option<std::path::PathBuf>,
    /// CA certificate(s) to trust for `tls://` URLs, in PEM.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl NatsIdentity {
    /// An identity from a service's settings, checked: a user needs a password file and vice
    /// versa, and at most one way to authenticate.
    pub fn new(
        user: Option<String>,
        password_file: Option<std::path::PathBuf>,
        creds_file: Option<std::path::PathBuf>,
        nkey_seed_file: Option<std::path::PathBuf>,
        tls_ca_file: Option<std::path::PathBuf>,
    ) -> Result<Self, String> {
        let password = match (&user, &password_file) {
            (Some(_), Some(_)) => true,
            (None, None) => false,
            _ => {
                return Err("a NATS user needs a password file, and a password file a user".into());
            }
        };
        let ways = [password, creds_file.is_some(), nkey_seed_file.is_some()]
            .into_iter()
            .filter(|w| *w)
            .count();
        if ways > 1 {
            return Err(
                "give one way to authenticate to NATS: user and password file, creds file, or \
                 nkey seed file"
                    .into(),
            );
        }
        Ok(NatsIdentity {
            user,
            password_file,
            creds_file,
            nkey_seed_file,
            tls_ca_file,
        })
    }
}

fn auth_error(what: &str, path: &std::path::Path, e: std::io::Error) -> async_nats::ConnectError {
    // The path, never the contents.
    async_nats::ConnectError::with_source(
        async_nats::ConnectErrorKind::Authentication,
        std::io::Error::new(
            e.kind(),
            format!("reading the NATS {what} {}: {e}", path.display()),
        ),
    )
}

fn read_secret(what: &str, path: &std::path::Path) -> Result<String, async_nats::ConnectError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| auth_error(what, path, e))
}

/// Connects as `identity` (anonymous when it is empty) to `url`: one server, or several seed
/// servers of a cluster separated by commas (tried in turn, and again on every reconnect); TLS
/// when a URL says `tls://`.
pub async fn connect_as(
    url: &str,
    name: &str,
    identity: &NatsIdentity,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut options = async_nats::ConnectOptions::new();
    if let (Some(user), Some(path)) = (&identity.user, &identity.password_file) {
        options = options.user_and_password(user.clone(), read_secret("password file", path)?);
    }
    if let Some(path) = &identity.nkey_seed_file {
        options = options.nkey(read_secret("nkey seed file", path)?);
    }
    if let Some(path) = &identity.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| auth_error("creds file", path, e))?;
    }
    if let Some(path) = &identity.tls_ca_file {
        options = options.add_root_certificates(path.clone());
    }
    if requires_tls(url) {
        options = options.require_tls(true);
    }
    let seeds = seeds(url);
    let client_name = name.to_string();
    options
        .event_callback(move |event| {
            let client = client_name.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        CONNECTIONS_LOST.send_modify(|lost| *lost += 1);
                        metrics::counter!("nats_connections_lost_total", "client" => client.clone())
                            .increment(1);
                        tracing::warn!(client, "nats connection lost, reconnecting");
                    }
                    async_nats::Event::Connected => {
                        tracing::info!(client, "nats connection (re)established");
                    }
                    other => tracing::warn!(client, event = %other, "nats connection event"),
                }
            }
        })
        .name(name)
        // Each service's replies (pulled messages, acks of its publishes, API answers) come to
        // inboxes of its own: the server lets no other identity subscribe to them.
        .custom_inbox_prefix(format!("_INBOX_{name}"))
        // A live server completes the handshake in milliseconds. When a connection is given up
        // (a server gone silent, nats::Liveness) the client picks the next server at random and
        // may pick the silent one again: each such try costs this long while webhooks wait.
        .connection_timeout(Duration::from_secs(2))
        // A server that went silent (a cut network, a hung machine) is given up after three
        // unanswered pings, 15-20 s, rather than the client's default of minutes: until
        // then nothing published through it is acknowledged.
        .ping_interval(Duration::from_secs(5))
        .max_reconnects(None)
        .connect(seeds)
        .await
}

/// The seed servers of a `<SVC>_NATS_URL`: one, or several separated by commas.
fn seeds(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether a `<SVC>_NATS_URL` asks for TLS (a seed says `tls://`).
pub fn requires_tls(url: &str) -> bool {
    seeds(url).iter().any(|s| s.starts_with("tls://"))
}

/// A JetStream context whose API calls and publish acks give up after `timeout`.
pub fn jetstream(client: async_nats::Client, timeout: Duration) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client)
}

/// Declares a service's NATS identity settings, `<PREFIX>_NATS_USER`,
/// `<PREFIX>_NATS_PASSWORD_FILE`, `<PREFIX>_NATS_CREDS_FILE`, `<PREFIX>_NATS_NKEY_SEED_FILE` and
/// `<PREFIX>_NATS_TLS_CA_FILE`, and the replicas of the streams it creates,
/// `<PREFIX>_NATS_STREAM_REPLICAS`, as a struct to `#[command(flatten)]` into its config. All
/// optional: without them the service connects anonymously (a developer's NATS), R1.
#[macro_export]
macro_rules! nats_identity_settings {
    ($name:ident, $prefix:literal) => {
        /// How this service proves who it is to NATS (see `deploy/nats/nats-server.conf`):
        /// a user with a password file, a creds file or an nkey seed file; secrets only in
        /// files.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct $name {
            /// NATS user of this service (with the password file).
            #[arg(long = "nats-user", env = concat!($prefix, "_NATS_USER"))]
            pub user: Option<String>,
            /// File holding the NATS user's password.
            #[arg(long = "nats-password-file", env = concat!($prefix, "_NATS_PASSWORD_FILE"))]
            pub password_file: Option<std::path::PathBuf>,
            /// NATS `.creds` file (JWT and nkey seed), instead of a user.
            #[arg(long = "nats-creds-file", env = concat!($prefix, "_NATS_CREDS_FILE"))]
            pub creds_file: Option<std::path::PathBuf>,
            /// File holding an nkey seed, instead of a user.
            #[arg(long = "nats-nkey-seed-file", env = concat!($prefix, "_NATS_NKEY_SEED_FILE"))]
            pub nkey_seed_file: Option<std::path::PathBuf>,
            /// CA certificate(s) to trust for a `tls://` NATS URL (PEM).
            #[arg(long = "nats-tls-ca-file", env = concat!($prefix, "_NATS_TLS_CA_FILE"))]
            pub tls_ca_file: Option<std::path::PathBuf>,
            /// Servers each JetStream stream is kept on: 1 on a single server, 3 on a NATS
            /// cluster (an existing stream with fewer is brought up to it at start-up).
            #[arg(
                                                long = "nats-stream-replicas",
                                                env = concat!($prefix, "_NATS_STREAM_REPLICAS"),
                                                default_value_t = 1,
                                                value_parser = clap::value_parser!(u8).range(1..=5)
                                            )]
            pub stream_replicas: u8,
        }

        impl $name {
            /// The identity these settings describe, checked.
            pub fn identity(&self) -> Result<$crate::nats::NatsIdentity, String> {
                $crate::nats::NatsIdentity::new(
                    self.user.clone(),
                    self.password_file.clone(),
                    self.creds_file.clone(),
                    self.nkey_seed_file.clone(),
                    self.tls_ca_file.clone(),
                )
            }

            /// Connects to `url` as this identity (a settings error fails the connection with
            /// its reason).
            pub async fn connect(
                &self,
                url: &str,
                name: &str,
            ) -> Result<async_nats::Client, async_nats::ConnectError> {
                let identity = self.identity().map_err(|reason| {
                    async_nats::ConnectError::with_source(
                        async_nats::ConnectErrorKind::Authentication,
                        std::io::Error::other(reason),
                    )
                })?;
                $crate::nats::connect_as(url, name, &identity).await
            }
        }
    };
}
