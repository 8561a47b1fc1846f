//! Waiting for a service a benchmark started to be ready.

use std::time::Duration;

/// Waits until the service at `addr` answers `/readyz` with 200.
pub async fn wait_ready(addr: std::net::SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let ready = format!("http://{addr}/readyz");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(r) = reqwest::get(&ready).await
            && r.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{addr} not ready after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
