//! What the ingest tests share: a booking, its signed headers, and a request sent by hand.

use billing_domain::standard_webhooks::SigningKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::CLAIRE_SECRET;

pub(super) const BOOKING: &str = r#"{"booking_id":"5001","price":"120.00","datetime":"2026-10-14 10:00:00","service":{"name":"Massage"}}"#;

pub(super) type Headers = Vec<(&'static str, String)>;

pub(super) fn signed_headers(secret: &str, id: &str, ts: i64, body: &[u8]) -> Headers {
    let signature = SigningKey::parse(secret)
        .map(|k| k.sign(id, ts, body))
        .unwrap_or_default();
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature),
    ]
}

/// Sends a signed booking's request line, headers and the first half of its body.
pub(super) async fn start_slow_request(
    addr: std::net::SocketAddr,
    webhook_id: &str,
) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let body = BOOKING.replace("5001", "7001").into_bytes();
    let headers = signed_headers(
        CLAIRE_SECRET,
        webhook_id,
        chrono::Utc::now().timestamp(),
        &body,
    );
    let mut head = format!(
        "POST /api/v1/webhooks/simplybook/claire HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(head.as_bytes()).await?;
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).await?;
    Ok((stream, rest.to_vec()))
}

pub(super) async fn read_status(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_string())
}
