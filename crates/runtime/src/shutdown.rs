//! Graceful shutdown: one token cancelled on SIGTERM or SIGINT, passed down explicitly.

use tokio_util::sync::CancellationToken;

pub type Shutdown = CancellationToken;

/// A token that is cancelled when the process receives SIGTERM or Ctrl-C.
pub fn on_signal() -> Shutdown {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot listen for sigterm");
                        let _ = ctrl_c.await;
                        trigger.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        trigger.cancel();
    });
    token
}
