//! `mailsink`: a local SMTP server for the demo. Accepts every message and writes it, with its
//! attachments, into a directory.
//!
//! Usage: `mailsink [ADDR] [DIR]` (defaults `127.0.0.1:2525` and `.demo/mail`).

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:2525".into())
        .parse()?;
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".demo/mail".into()));
    let sink = billing_testkit::MailSink::start_on(addr, Some(dir.clone())).await?;
    tracing::info!(addr = %sink.addr(), dir = %dir.display(), "mailsink listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
