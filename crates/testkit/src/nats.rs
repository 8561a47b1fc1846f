//! A private NATS server with JetStream for tests that need to stop and restart the broker
//! (the shared one on 4222 must keep running for every other test).

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct PrivateNats {
    port: u16,
    store: PathBuf,
    /// A server configuration file and the environment it reads (passwords), if any.
    config: Option<(PathBuf, Vec<(String, String)>)>,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts `nats-server -js` on a free loopback port with its own file store.
    pub async fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store =
            std::env::temp_dir().join(format!("billing-nats-{}", crate::unique_namespace()));
        std::fs::create_dir_all(&store)?;
        let mut nats = PrivateNats {
            port,
            store,
            config: None,
            child: None,
        };
        nats.resume().await?;
        Ok(nats)
    }

    /// Starts `nats-server -c config` (its users and permissions) on a free loopback port with
    /// its own file store; `env` is the environment the configuration reads (`$VAR`).
    pub async fn start_with_config(
        config: &std::path::Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut nats = PrivateNats::start_later()?;
        nats.config = Some((
            config.to_path_buf(),
            env.iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        ));
        nats.resume().await?;
        Ok(nats)
    }

    fn start_later() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store =
            std::env::temp_dir().join(format!("billing-nats-{}", crate::unique_namespace()));
        std::fs::create_dir_all(&store)?;
        Ok(PrivateNats {
            port,
            store,
            config: None,
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server abruptly (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Stops the server (SIGSTOP): its connections stay open and nothing on them is answered,
    /// as with a hung machine, until it is killed ([`PrivateNats::kill`] works on it frozen).
    pub async fn freeze(&self) -> anyhow::Result<()> {
        self.signal("-STOP").await
    }

    async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| anyhow::anyhow!("nats-server is not running"))?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill {signal} {pid}");
        Ok(())
    }

    /// Lets a frozen server go on (SIGCONT): it reads what its connections sent meanwhile, and
    /// finds closed the ones their clients gave up.
    pub async fn thaw(&self) -> anyhow::Result<()> {
        self.signal("-CONT").await
    }

    /// Starts the server again on the same port with the same store.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let mut command = Command::new(binary);
        if let Some((config, env)) = &self.config {
            // The file's users and permissions; the port, address and store from here.
            command.arg("-c").arg(config).envs(env.iter().cloned());
        }
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start nats-server ({e}); install nats-server"))?;
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("nats-server did not start on port {}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
