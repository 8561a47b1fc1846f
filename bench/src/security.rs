//! How a benchmark run's services are secured (`--security`) and whether the ledger keeps
//! clients' details encrypted (`--encryption`): NATS passwords, a CA and certificates for TLS,
//! the database runtime roles, a client keyring, and a NATS server of the run's own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// How a run's services are secured (`--security`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Security {
    /// As a developer runs them: anonymous NATS, the database's owner, plain connections, an
    /// unkeyed hash chain.
    Off,
    /// Production's identities: each service logs in to NATS as its own user under
    /// `deploy/nats/nats-server.conf`, runs as its own database role (`<schema>_runtime`,
    /// granted by the owner's `--migrate-only` step), and the ledger's chain is keyed
    /// (`LEDGER_CHAIN_KEY_FILE`).
    Auth,
    /// `auth`, with NATS and PostgreSQL over TLS.
    Tls,
}

impl Security {
    pub fn label(self) -> &'static str {
        match self {
            Security::Off => "security off",
            Security::Auth => "auth",
            Security::Tls => "auth + TLS",
        }
    }

    /// What the level means, for the reports.
    pub fn explain() -> &'static str {
        "security off: anonymous NATS, the services as the database's owner over plain \
         connections (sslmode=disable), unkeyed hash chain. auth: as in production, each service \
         logs in to NATS as its own user with deploy/nats/nats-server.conf's permissions, runs as \
         its own database role (<schema>_runtime, granted by the owner's --migrate-only step) \
         and the ledger's chain is keyed (HMAC, LEDGER_CHAIN_KEY_FILE); PostgreSQL still trusts \
         127.0.0.1, so no password check is timed (a pool logs in once per connection). \
         auth + TLS: auth, and NATS over TLS (tls://, a CA made for the run, verified) and \
         PostgreSQL over TLS (verified; see each report for the server's certificate)"
    }
}

/// Whether the ledger keeps clients' personal details, encrypted (`--encryption`; issue 19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encryption {
    /// No `LEDGER_CLIENT_KEYRING_FILE`: the ledger keeps no client details at all.
    Off,
    /// A keyring made for the run: each new booking's client details sealed with AES-256-GCM
    /// under its client's data key, made and wrapped on the client's first booking.
    On,
}

impl Encryption {
    pub fn label(self) -> &'static str {
        match self {
            Encryption::Off => "client encryption off",
            Encryption::On => "client encryption on",
        }
    }

    /// What the settings mean, for the reports.
    pub fn explain() -> &'static str {
        "client encryption off: the ledger runs without LEDGER_CLIENT_KEYRING_FILE and keeps no \
         client details (it still parses them). client encryption on: a keyring made for the run \
         (random identity key and key-encryption key, docs/privacy.md); each new booking's \
         client details (name, email, phone) sealed with AES-256-GCM under its client's data \
         key, in the batch's transaction: a client's first booking makes the key and stores it \
         wrapped (ledger.client_keys), later ones read and unwrap it; each identity the details \
         name is recorded as a keyed digest (ledger.client_lookups)"
    }
}

/// Writes a client keyring (docs/privacy.md) with random keys, made for this run only, to
/// `path`: the identity key and one key-encryption key, 32 bytes each from the system's
/// random source, base64.
pub fn write_client_keyring(path: &Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut random = [0u8; 64];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("reading /dev/urandom for the run's client keyring")?;
    let keyring = serde_json::json!({
        "identity_key": base64(&random[..32]),
        "current": "bench-kek-1",
        "keys": { "bench-kek-1": base64(&random[32..]) },
    });
    std::fs::write(path, keyring.to_string())?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}

/// Standard base64 with padding (RFC 4648), for the keyring's keys.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The services that log in to NATS, and the ones with a database schema of their own.
const NATS_USERS: [&str; 4] = ["ingest", "ledger", "invoicing", "notifier"];
const SCHEMAS: [&str; 3] = ["ledger", "invoicing", "notifier"];

/// Obviously fake key of the benchmarks' keyed hash chain.
const CHAIN_KEY: &str = "fake-ledger-chain-key-for-benchmarks-not-secret-0123";

/// What a run's services need at a [`Security`] level, made in a directory of its own:
/// each service's NATS password file (the server reads the same passwords from its
/// environment), the chain key, and for TLS a CA and a certificate for 127.0.0.1 (openssl).
#[derive(Clone)]
pub struct Secured {
    pub level: Security,
    dir: PathBuf,
    /// The CA that signed the run's server certificate (TLS).
    ca: Option<PathBuf>,
    /// How the services check PostgreSQL's certificate (TLS): sslmode and root certificate.
    postgres_root: Option<(&'static str, PathBuf)>,
    /// A configuration setting JetStream's `sync_interval` (`BENCH_NATS_SYNC_INTERVAL`).
    sync_config: Option<PathBuf>,
}

impl Secured {
    pub fn prepare(level: Security, dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join(format!("security-{level:?}").to_lowercase());
        std::fs::create_dir_all(&dir)?;
        if level != Security::Off {
            for user in NATS_USERS {
                let password = format!("fake-{user}-nats-password-bench-only");
                std::fs::write(dir.join(format!("{user}.nats-password")), password)?;
            }
            std::fs::write(dir.join("chain.key"), CHAIN_KEY)?;
        }
        let ca = match level {
            Security::Tls => Some(make_certificates(&dir)?),
            _ => None,
        };
        let sync_config = match OwnNats::sync_interval() {
            Some(interval) => {
                anyhow::ensure!(
                    level == Security::Off,
                    "BENCH_NATS_SYNC_INTERVAL is for --security off only: the other levels run \
                     the production configuration unchanged"
                );
                let config = dir.join("nats-sync.conf");
                std::fs::write(
                    &config,
                    format!("jetstream {{\n  sync_interval: {interval}\n}}\n"),
                )?;
                Some(config)
            }
            None => None,
        };
        Ok(Secured {
            level,
            postgres_root: ca.clone().map(|ca| ("verify-full", ca)),
            dir,
            ca,
            sync_config,
        })
    }

    fn password_file(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.nats-password"))
    }

    /// PostgreSQL's `-o` options for a server of the benchmark's own: TLS with the run's
    /// certificate (none below TLS).
    pub fn postgres_server_options(&self) -> String {
        match self.ca {
            Some(_) => format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                self.dir.join("server.pem").display(),
                self.dir.join("server.key").display()
            ),
            None => String::new(),
        }
    }

    /// The services trust `certificate` (the server's own self-signed one) for PostgreSQL
    /// instead of the run's CA, without matching the host name (`sslmode=verify-ca`): for a
    /// server whose certificate names another host than 127.0.0.1.
    pub fn trust_postgres_certificate(&mut self, certificate: PathBuf) {
        if self.level == Security::Tls {
            self.postgres_root = Some(("verify-ca", certificate));
        }
    }

    /// How the services' PostgreSQL connections are made, for the reports.
    pub fn postgres_tls(&self) -> String {
        match &self.postgres_root {
            Some((mode, root)) if Some(root) == self.ca.as_ref() => {
                format!("sslmode={mode} against the run's CA")
            }
            Some((mode, root)) => format!("sslmode={mode}, root {}", root.display()),
            None => "sslmode=disable".into(),
        }
    }

    /// nats-server's arguments and environment for this level: with auth, the production
    /// configuration (its users read their passwords from the environment); with TLS, the
    /// run's certificate.
    pub fn nats_server(&self) -> (Vec<std::ffi::OsString>, Vec<(String, String)>) {
        let mut args = Vec::new();
        let mut env = Vec::new();
        if self.level != Security::Off {
            let config =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf");
            args.extend(["-c".into(), config.into_os_string()]);
            for user in NATS_USERS {
                let password =
                    std::fs::read_to_string(self.password_file(user)).unwrap_or_default();
                env.push((format!("{}_NATS_PASSWORD", user.to_uppercase()), password));
            }
        }
        if let Some(config) = &self.sync_config {
            args.extend(["-c".into(), config.clone().into_os_string()]);
        }
        if self.ca.is_some() {
            args.extend([
                "--tls".into(),
                "--tlscert".into(),
                self.dir.join("server.pem").into_os_string(),
                "--tlskey".into(),
                self.dir.join("server.key").into_os_string(),
            ]);
        }
        (args, env)
    }

    pub fn nats_url(&self, port: u16) -> String {
        match self.ca {
            Some(_) => format!("tls://127.0.0.1:{port}"),
            None => format!("nats://127.0.0.1:{port}"),
        }
    }

    /// The NATS identity of `user` (anonymous when off), for the benchmark's own clients.
    pub fn identity(&self, user: &str) -> billing_runtime::nats::NatsIdentity {
        billing_runtime::nats::NatsIdentity {
            user: (self.level != Security::Off).then(|| user.to_string()),
            password_file: (self.level != Security::Off).then(|| self.password_file(user)),
            tls_ca_file: self.ca.clone(),
            ..Default::default()
        }
    }

    /// A JetStream context on `url` as NATS user `user`.
    pub async fn jetstream(
        &self,
        url: &str,
        user: &str,
    ) -> anyhow::Result<async_nats::jetstream::Context> {
        let client = billing_runtime::nats::connect_as(url, user, &self.identity(user)).await?;
        Ok(billing_runtime::nats::jetstream(
            client,
            Duration::from_secs(10),
        ))
    }

    /// The database URL `schema`'s service runs with: the owner's `owner_url` when off, its
    /// runtime role otherwise; plain or TLS as the level says.
    pub fn database_url(&self, owner_url: &str, schema: &str) -> anyhow::Result<String> {
        let url = if self.level == Security::Off {
            owner_url.to_string()
        } else {
            let (scheme, rest) = owner_url
                .split_once("://")
                .context("a database URL with a scheme")?;
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let role = billing_runtime::db::runtime_role(schema);
            format!("{scheme}://{role}:{role}-dev-only@{host}")
        };
        let tls = match &self.postgres_root {
            Some((mode, root)) => format!("sslmode={mode}&sslrootcert={}", root.display()),
            None => "sslmode=disable".into(),
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        Ok(format!("{url}{separator}{tls}"))
    }

    /// Applies `service`'s migrations as the database's owner (`--migrate-only` with `env`,
    /// its environment as the owner), which also grants its runtime role; nothing when off
    /// (the service, as owner, migrates itself) or for a service without a schema.
    pub async fn migrate(
        &self,
        service: &str,
        env: &[(String, String)],
        dir: &Path,
    ) -> anyhow::Result<()> {
        if self.level == Security::Off || !SCHEMAS.contains(&service) {
            return Ok(());
        }
        let bin = std::env::current_exe()?.with_file_name(service);
        let log_path = dir.join(format!("{service}-migrate.log"));
        let log = std::fs::File::create(&log_path)?;
        let status = Command::new(&bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(format!("{}_MIGRATE_ONLY", service.to_uppercase()), "true")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .status()
            .await
            .with_context(|| format!("starting {}", bin.display()))?;
        anyhow::ensure!(
            status.success(),
            "{service} --migrate-only exited with {status} (log: {})",
            log_path.display()
        );
        Ok(())
    }

    /// `env` (a service's environment as the database's owner) for running the service at
    /// this level: its runtime role's database URL, its NATS identity, the chain key.
    pub fn service_env(
        &self,
        service: &str,
        mut env: Vec<(String, String)>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let prefix = service.to_ascii_uppercase();
        let url_key = format!("{prefix}_DATABASE_URL");
        for (key, value) in env.iter_mut() {
            if *key == url_key && SCHEMAS.contains(&service) {
                *value = self.database_url(value, service)?;
            }
        }
        let path =
            |key: &str, value: &Path| (format!("{prefix}_{key}"), value.display().to_string());
        if self.level != Security::Off {
            env.push((format!("{prefix}_NATS_USER"), service.to_string()));
            env.push(path("NATS_PASSWORD_FILE", &self.password_file(service)));
            if service == "ledger" {
                env.push(path("CHAIN_KEY_FILE", &self.dir.join("chain.key")));
            }
        }
        if let Some(ca) = &self.ca {
            env.push(path("NATS_TLS_CA_FILE", ca));
        }
        Ok(env)
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it (ECDSA P-256, two days), in `dir`:
/// `ca.pem`, `server.pem`, `server.key`. Returns the CA's path.
fn make_certificates(dir: &Path) -> anyhow::Result<PathBuf> {
    // Each command line is split at spaces.
    let openssl = |args: &str| -> anyhow::Result<()> {
        let out = std::process::Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .context("openssl (apt-get install openssl) makes the TLS certificates")?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 -days 2 -subj /CN=billing-bench-CA {ec} -keyout ca.key -out ca.pem"
    ))?;
    openssl(&format!(
        "req -subj /CN=127.0.0.1 {ec} -keyout server.key -out server.csr"
    ))?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )?;
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -extfile server.ext -out server.pem",
    )?;
    // PostgreSQL refuses a key others may read.
    for key in ["ca.key", "server.key"] {
        std::fs::set_permissions(
            dir.join(key),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
    }
    Ok(dir.join("ca.pem"))
}

/// The services' runtime roles (`<schema>_runtime`, server-wide) exist on the server of
/// `server_url`, each able to log in with its obviously fake development password, as
/// `scripts/demo.sh` and the tests make them; they own nothing.
pub async fn ensure_runtime_roles(server_url: &str) -> anyhow::Result<()> {
    let admin = sqlx::PgPool::connect(server_url).await?;
    for schema in SCHEMAS {
        let role = billing_runtime::db::runtime_role(schema);
        // Another run, or the tests, may have made it: that is no error.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "do $$ begin
                 create role {role} login password '{role}-dev-only';
             exception when duplicate_object or unique_violation then null;
             end $$"
        )))
        .execute(&admin)
        .await?;
    }
    admin.close().await;
    Ok(())
}

/// A NATS server with JetStream of the benchmark's own, secured as `Secured` says, its store
/// and log in a directory; it may be stopped and started again on the same port and store.
pub struct OwnNats {
    port: u16,
    dir: PathBuf,
    args: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
    url: String,
    child: Option<Child>,
}

impl OwnNats {
    pub async fn start(secured: &Secured, dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let (args, env) = secured.nats_server();
        let mut nats = OwnNats {
            port,
            dir: dir.to_path_buf(),
            args,
            env,
            url: secured.nats_url(port),
            child: None,
        };
        nats.resume().await?;
        Ok(nats)
    }

    /// The version of the server [`OwnNats`] runs (its `--version` line), for the reports, with
    /// the `sync_interval` it was given.
    pub fn server_version() -> String {
        let bin = std::env::var("BENCH_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let version = std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map_or_else(
                || format!("{bin}: version unknown"),
                |v| v.trim().to_string(),
            );
        match Self::sync_interval() {
            Some(interval) => format!("{version}, jetstream sync_interval: {interval}"),
            None => version,
        }
    }

    /// `BENCH_NATS_SYNC_INTERVAL` (`always`, or a duration such as `10s`; NATS 2.10+): how often
    /// the benchmark's own servers fsync their streams. Unset, the server's default.
    pub fn sync_interval() -> Option<String> {
        std::env::var("BENCH_NATS_SYNC_INTERVAL")
            .ok()
            .filter(|v| !v.trim().is_empty())
    }

    /// Starts it (again): same port, same store. The server is `BENCH_NATS_SERVER` when set
    /// (e.g. `scripts/nats-current.sh --bin`, a current release), else the `nats-server` on the
    /// PATH (Debian's 2.9.10 here).
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let bin = std::env::var("BENCH_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("nats"))
            .arg("-l")
            .arg(self.dir.join("nats.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not start (log: {})",
                self.dir.join("nats.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops it as an operator restarting it would (SIGTERM), and waits.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await?;
            }
            tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
        }
        Ok(())
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_rfc_4648() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff, 0xbf], "+/+/"),
        ] {
            assert_eq!(super::base64(bytes), text);
        }
    }
}
