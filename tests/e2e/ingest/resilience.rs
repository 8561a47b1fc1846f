//! ingest under strain: the broker down, a sender over its rate limit, a stop with requests in
//! flight, slow or abusive clients; nothing acknowledged before JetStream stored it.

use std::time::Duration;

use billing_testkit::PrivateNats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{CLAIRE_SECRET, REQUEST_TIMEOUT_MS, System, eventually};

use super::support::{BOOKING, read_status, start_slow_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_down_answers_503_and_nothing_is_lost_once_it_returns() -> anyhow::Result<()> {
    let mut nats = PrivateNats::start().await?;
    let system = System::builder()
        .ingest()
        .ledger()
        .nats(nats.url())
        .start()
        .await?;
    let result = broker_down(&system, &mut nats).await;
    system.finish(result).await
}

async fn broker_down(system: &System, nats: &mut PrivateNats) -> anyhow::Result<()> {
    let before = system
        .post_signed("claire", "down-1", BOOKING, CLAIRE_SECRET)
        .await?;
    assert_eq!(before.status(), 202);

    nats.kill().await?;
    let ready = reqwest::get(format!("http://{}/readyz", system.ingest)).await?;
    assert_eq!(
        ready.status(),
        503,
        "readiness must fail while JetStream is down"
    );
    let second = BOOKING.replace("5001", "5002");
    let during = system
        .post_signed("claire", "down-2", &second, CLAIRE_SECRET)
        .await?;
    assert_eq!(during.status(), 503);
    assert_eq!(
        during.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );

    nats.resume().await?;
    // The sender retries, as SimplyBook and Stripe do after a 503, until it gets a 2xx. (The
    // publish that timed out may still reach JetStream once the client reconnects; the retry is
    // then answered 200 "duplicate", which is just as safe.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut statuses = Vec::new();
    loop {
        let retry = system
            .post_signed("claire", "down-2", &second, CLAIRE_SECRET)
            .await?;
        statuses.push(retry.status().as_u16());
        if retry.status().is_success() {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never accepted after the broker returned: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ready = reqwest::get(format!("http://{}/readyz", system.ingest)).await?;
    assert_eq!(ready.status(), 200, "ready again once JetStream is back");
    // Both events are stored (the first survived the broker's crash on disk), once each, and the
    // ledger records both.
    assert_eq!(
        system
            .stream_count(&system.subjects().simplybook("claire"))
            .await?,
        2
    );
    let db = system.db("ledger").await?;
    crate::harness::eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from bookings")
            .fetch_one(&db)
            .await?;
        Ok((n == 2).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_awaiting_its_ack_when_the_broker_dies_is_sent_again_on_the_next_connection()
-> anyhow::Result<()> {
    let mut nats = PrivateNats::start().await?;
    let system = System::builder().ingest().nats(nats.url()).start().await?;
    let result = lost_in_flight(&system, &mut nats).await;
    system.finish(result).await
}

/// The request's publish is written to a server that hangs and then dies without answering:
/// its ack can never come. ingest must publish again once its client has reconnected (to the
/// server started again on the same port) instead of waiting out its 2 s publish timeout, which
/// here, with a 3 s request timeout, would leave no time to retry: a 503.
async fn lost_in_flight(system: &System, nats: &mut PrivateNats) -> anyhow::Result<()> {
    let warm = system
        .post_signed("claire", "inflight-1", BOOKING, CLAIRE_SECRET)
        .await?;
    assert_eq!(warm.status(), 202);
    nats.freeze().await?;
    let second = BOOKING.replace("5001", "5003");
    let (answer, restarted) = tokio::join!(
        system.post_signed("claire", "inflight-2", &second, CLAIRE_SECRET),
        async {
            // The request is in ingest's hands, its publish written to the hung server.
            tokio::time::sleep(Duration::from_millis(300)).await;
            nats.kill().await?;
            nats.resume().await
        }
    );
    restarted?;
    let answer = answer?;
    assert_eq!(
        answer.status(),
        202,
        "{}",
        answer.text().await.unwrap_or_default()
    );
    // Stored once: the hung server never read the first publish, the second one is it.
    assert_eq!(
        system
            .stream_count(&system.subjects().simplybook("claire"))
            .await?,
        2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_gone_silent_is_given_up_at_the_first_missing_ack_not_after_the_pings()
-> anyhow::Result<()> {
    // As in production: ingest logs in as its own user, whose permissions
    // (deploy/nats/nats-server.conf) must allow the probe's subject.
    let dir = std::env::temp_dir().join(format!(
        "nats-silent-{}",
        billing_testkit::unique_namespace()
    ));
    let env = crate::nats_auth::logins(&dir)?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let nats = PrivateNats::start_with_config(&crate::nats_auth::config(), &env).await?;
    // Alone: it reads the process's metrics.
    let system = System::builder()
        .ingest()
        .alone()
        .nats(nats.url())
        .logins(&dir)
        .namespace(String::new())
        .start()
        .await?;
    let result = silent_server(&system, &nats, &dir).await;
    let finished = system.finish(result).await;
    std::fs::remove_dir_all(&dir).ok();
    finished
}

/// The server stops answering with ingest's connection open (SIGSTOP: a hung machine, or a node
/// cut off the network). The publish's ack does not come, so ingest probes the connection, gets
/// no answer either, and drops it for a new one 2 s + 1 s after the publish; the client's pings
/// alone would take 15-20 s, with every webhook meanwhile answered 503.
async fn silent_server(
    system: &System,
    nats: &PrivateNats,
    logins: &std::path::Path,
) -> anyhow::Result<()> {
    const UNANSWERED: &str = r#"nats_liveness_probes_total{result="unanswered"}"#;
    const LOST: &str = r#"nats_connections_lost_total{client="ingest"}"#;
    let warm = system
        .post_signed("claire", "silent-1", BOOKING, CLAIRE_SECRET)
        .await?;
    assert_eq!(warm.status(), 202);
    let metrics = system.metrics(system.ingest).await?;
    assert_eq!(metrics.since_start(UNANSWERED), Some(0.0), "{metrics}");

    nats.freeze().await?;
    let frozen_at = std::time::Instant::now();
    let second = BOOKING.replace("5001", "5004");
    let answer = system
        .post_signed("claire", "silent-2", &second, CLAIRE_SECRET)
        .await?;
    assert_eq!(answer.status(), 503, "no ack can come from a frozen server");
    eventually(Duration::from_secs(8), || async {
        let metrics = system.metrics(system.ingest).await?;
        let dropped = metrics.since_start(UNANSWERED) == Some(1.0)
            && metrics.since_start(LOST).is_some_and(|n| n >= 1.0);
        Ok(dropped.then_some(()))
    })
    .await?;
    let given_up_after = frozen_at.elapsed();
    assert!(
        given_up_after < Duration::from_secs(12),
        "given up after {given_up_after:?}: the pings' pace, not the probe's"
    );

    // The server goes on; the sender delivers the refused webhook again, as SimplyBook would.
    nats.thaw().await?;
    let status = eventually(Duration::from_secs(30), || async {
        let again = system
            .post_signed("claire", "silent-2", &second, CLAIRE_SECRET)
            .await?;
        let status = again.status().as_u16();
        Ok((status != 503).then_some(status))
    })
    .await?;
    // 200 "duplicate" when the thawed server read the first publish from its socket after all.
    assert!(status == 202 || status == 200, "{status}");
    let stored =
        crate::nats_auth::count(nats, logins, "WEBHOOKS", "webhooks.simplybook.claire").await?;
    assert_eq!(stored, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sender_over_its_rate_limit_gets_429_and_nothing_extra_is_stored() -> anyhow::Result<()> {
    let system = System::builder().ingest().start().await?;
    let result = rate_limit(&system).await;
    system.finish(result).await
}

async fn rate_limit(system: &System) -> anyhow::Result<()> {
    let burst = crate::harness::RATE_LIMIT_BURST as usize;
    // All at once: sent one after another, a loaded machine can answer them slower than the
    // bucket refills, and then none is over the limit.
    let answers = futures::future::join_all((0..burst + 20).map(|n| async move {
        let body = BOOKING.replace("5001", &format!("8{n:03}"));
        system
            .post_signed("claire", &format!("burst-{n}"), &body, CLAIRE_SECRET)
            .await
    }))
    .await;
    let mut statuses = Vec::new();
    for response in answers {
        let response = response?;
        if response.status() == 429 {
            assert_eq!(
                response.headers().get("retry-after").map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
        }
        statuses.push(response.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 429),
        "{statuses:?}"
    );
    // The burst is always let through, and what is over it is refused.
    assert!(
        statuses.iter().filter(|s| **s == 202).count() >= burst,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    // Forged requests do not spend Claire's budget: they are refused as forged, not limited.
    let forged = system
        .post_signed(
            "claire",
            "burst-forged",
            BOOKING,
            "whsec_bm90LXRoZS1yZWFsLXNlY3JldA==",
        )
        .await?;
    assert_eq!(forged.status(), 401);
    let accepted = statuses.iter().filter(|s| **s == 202).count() as u64;
    assert_eq!(
        system
            .stream_count(&system.subjects().simplybook("claire"))
            .await?,
        accepted
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_ingest_finishes_requests_in_flight_and_slow_requests_time_out()
-> anyhow::Result<()> {
    let system = System::builder().ingest().start().await?;
    let result = drain(&system).await;
    system.finish(result).await
}

async fn drain(system: &System) -> anyhow::Result<()> {
    // A request that never finishes its body is answered 408 after the request timeout.
    let started = tokio::time::Instant::now();
    let (mut stalled, _) = start_slow_request(system.ingest, "slow-1").await?;
    assert_eq!(
        read_status(&mut stalled).await?,
        "HTTP/1.1 408 Request Timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(REQUEST_TIMEOUT_MS));

    // A replica asked to stop while a request is half-uploaded answers it before exiting.
    let (addr, stop, task) = system.spawn_ingest().await?;
    let (mut in_flight, rest) = start_slow_request(addr, "drain-1").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a stopping replica accepts no new connections"
    );
    assert!(!task.is_finished(), "still draining the request in flight");
    in_flight.write_all(&rest).await?;
    assert_eq!(read_status(&mut in_flight).await?, "HTTP/1.1 202 Accepted");
    tokio::time::timeout(Duration::from_secs(5), task).await???;
    assert_eq!(
        system
            .stream_count(&system.subjects().simplybook("claire"))
            .await?,
        1,
        "the drained request is stored; the timed-out one is not"
    );
    Ok(())
}

/// One request on a connection of its own, closed after the answer: its status line and body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: ingest\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_headers_are_cut_off_connections_beyond_the_cap_wait_and_metrics_stay_internal()
-> anyhow::Result<()> {
    // Alone: it counts cut-off connections on the process's metrics.
    let system = System::builder().ingest().alone().start().await?;
    let result = abuse(&system).await;
    system.finish(result).await
}

async fn abuse(system: &System) -> anyhow::Result<()> {
    // A replica of its own, with a short header timeout, a cap of two connections and metrics
    // on an internal listener.
    const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (addr, ops_addr) = (public.local_addr()?, ops.local_addr()?);
    let config = ingest::Config {
        listen_addr: addr,
        rate_limit_per_sec: 100,
        rate_limit_burst: 100,
        request_timeout_ms: 30_000,
        header_read_timeout_ms: HEADER_TIMEOUT.as_millis().try_into()?,
        max_connections: 2,
        ..system.ingest_config()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(ingest::run_with_ops(
        config,
        public,
        Some(ops),
        stop.clone(),
    ));
    eventually(Duration::from_secs(20), || async {
        Ok(raw_get(ops_addr, "/readyz")
            .await
            .is_ok_and(|(status, _)| status == "HTTP/1.1 200 OK")
            .then_some(()))
    })
    .await?;

    // /metrics answers on the internal listener only; the probes answer on both.
    let (status, page) = raw_get(ops_addr, "/metrics").await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(page.contains("ingest_webhooks_accepted_total"), "{page}");
    assert_eq!(raw_get(addr, "/metrics").await?.0, "HTTP/1.1 404 Not Found");
    assert_eq!(raw_get(addr, "/readyz").await?.0, "HTTP/1.1 200 OK");
    assert_eq!(raw_get(addr, "/healthz").await?.0, "HTTP/1.1 200 OK");

    // A client trickling its headers a byte at a time is disconnected once the timeout is up.
    let mut slow = TcpStream::connect(addr).await?;
    let started = tokio::time::Instant::now();
    let (mut reader, mut writer) = slow.split();
    let trickle = async {
        for byte in
            b"POST /api/v1/webhooks/simplybook/claire HTTP/1.1\r\nhost: ingest\r\nwebhook-id: slow-"
                .iter()
                .cycle()
        {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(HEADER_TIMEOUT * 5, async {
        tokio::select! {
            read = reader.read_to_end(&mut answer) => read.map(|_| ()),
            () = trickle => Ok(()),
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a slow client was still connected after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= HEADER_TIMEOUT.mul_f32(0.9),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
    drop(slow);

    // Two requests in flight (their bodies half sent) take both connections; a third
    // connection is not served until one of them closes.
    let mut first = start_slow_request(addr, "cap-1").await?.0;
    let _second = start_slow_request(addr, "cap-2").await?.0;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).await?;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: ingest\r\nconnection: close\r\n\r\n")
        .await?;
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), third.read(&mut byte))
            .await
            .is_err(),
        "a connection beyond the cap was served"
    );
    first.shutdown().await?;
    drop(first);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), read_status(&mut third)).await??,
        "HTTP/1.1 200 OK",
        "served once a connection closed"
    );

    let metrics = system.metrics(ops_addr).await?;
    let timeouts = r#"ingest_connections_refused_total{reason="header_timeout"}"#;
    assert_eq!(metrics.since_start(timeouts), Some(1.0), "{metrics}");
    let limit = "ingest_connection_limit_reached_total";
    assert!(
        metrics.since_start(limit).is_some_and(|n| n >= 1.0),
        "{limit} in {metrics}"
    );
    stop.cancel();
    drop(_second);
    tokio::time::timeout(Duration::from_secs(10), task).await???;
    Ok(())
}
