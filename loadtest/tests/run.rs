//! Runs against in-process servers: counts, pacing, retries with idempotency keys, templates on
//! the wire, response framing, failures by kind.

#[path = "support/server.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lockstep_loadtest::{Mix, Mode, RequestSpec, RunError, RunSpec, Stop, run};
use support::{Reply, start, start_raw};

fn ok(_: &support::Seen, _: &[support::Seen]) -> Reply {
    Reply::status(200, r#"{"ok":true}"#)
}

fn spec(url: &str, connections: usize, stop: Stop) -> RunSpec {
    let mut spec = RunSpec::new(url).unwrap();
    spec.connections = connections;
    spec.stop = stop;
    spec.seed = 1;
    spec
}

#[tokio::test]
async fn closed_loop_sends_exactly_the_requested_count() {
    let server = start(ok).await;
    let report = run(spec(&server.url(), 8, Stop::Requests(500)))
        .await
        .unwrap();
    assert_eq!(server.seen().len(), 500);
    assert_eq!(report.requests, 500);
    assert_eq!(report.mode, Mode::Closed);
    assert_eq!(
        report.status_counts,
        BTreeMap::from([("200".to_owned(), 500)])
    );
    assert_eq!(report.error_count(), 0);
    let latency = report.latency_ms.expect("responses were received");
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.p99 && latency.p99 <= latency.max);
}

#[tokio::test]
async fn closed_loop_for_a_duration_stops_on_time() {
    let server = start(ok).await;
    let report = run(spec(
        &server.url(),
        4,
        Stop::After(Duration::from_millis(300)),
    ))
    .await
    .unwrap();
    assert!(report.requests > 0);
    assert_eq!(server.seen().len() as u64, report.requests);
    assert!(
        (0.3..2.0).contains(&report.duration_s),
        "ran {}s",
        report.duration_s
    );
}

#[tokio::test]
async fn open_loop_sends_about_rate_times_duration() {
    let server = start(ok).await;
    let mut spec = spec(&server.url(), 4, Stop::After(Duration::from_secs(1)));
    spec.rate = Some(200.0);
    let report = run(spec).await.unwrap();
    let sent = server.seen().len();
    // 200 requests are due; a slow machine may leave a few unsent at the end.
    assert!((150..=200).contains(&sent), "sent {sent}");
    assert_eq!(report.requests as usize, sent);
    assert_eq!(report.mode, Mode::Open);
    assert_eq!(report.rate, Some(200.0));
    // Paced over the second, not sent in a burst.
    assert!(
        (0.8..3.0).contains(&report.duration_s),
        "ran {}s",
        report.duration_s
    );
}

#[tokio::test]
async fn open_loop_counts_queueing_in_the_latency() {
    // One connection, a server that takes 20 ms, 200 requests/s asked: each request waits
    // behind the previous ones, and the wait must show in the latency.
    let server = start(|_: &support::Seen, _: &[support::Seen]| Reply {
        delay: Duration::from_millis(20),
        ..Reply::status(200, "{}")
    })
    .await;
    let mut spec = spec(&server.url(), 1, Stop::Requests(20));
    spec.rate = Some(200.0);
    let report = run(spec).await.unwrap();
    assert_eq!(report.requests, 20);
    let latency = report.latency_ms.unwrap();
    // The last request was due at 95 ms and answered after about 400 ms.
    assert!(latency.max > 200.0, "max {} ms", latency.max);
    assert!(latency.p50 > 60.0, "p50 {} ms", latency.p50);
}

#[tokio::test]
async fn warmup_is_sent_but_not_counted() {
    let server = start(ok).await;
    let mut spec = spec(&server.url(), 2, Stop::Requests(50));
    spec.warmup = Duration::from_millis(200);
    let report = run(spec).await.unwrap();
    assert_eq!(report.requests, 50);
    assert!(server.seen().len() > 50, "no warmup traffic");
}

#[tokio::test]
async fn retries_reuse_the_idempotency_key() {
    // Fails the first attempt of every key with 503, answers the second.
    let server = start(|this: &support::Seen, before: &[support::Seen]| {
        let repeated = before
            .iter()
            .any(|s| s.idempotency_key == this.idempotency_key);
        if repeated {
            Reply::status(200, "{}")
        } else {
            Reply::status(503, r#"{"error":"busy","detail":"try again"}"#)
        }
    })
    .await;
    let mut spec = spec(&server.url(), 4, Stop::Requests(50));
    spec.mix = Mix::single(
        RequestSpec::from_flags(None, Some("/pay".into()), Some("{}".into()), &[]).unwrap(),
    );
    spec.idempotency_header = Some("Idempotency-Key".into());
    spec.retries = 2;
    let report = run(spec).await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 100);
    let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
    for s in &seen {
        let key = s.idempotency_key.clone().expect("every request has a key");
        *attempts.entry(key).or_default() += 1;
    }
    assert_eq!(attempts.len(), 50, "one key per logical request");
    assert!(attempts.values().all(|n| *n == 2), "{attempts:?}");
    assert_eq!(report.requests, 50);
    assert_eq!(report.retries, 50);
    assert_eq!(report.retry_causes["5xx"], 50);
    assert_eq!(
        report.status_counts,
        BTreeMap::from([("200".to_owned(), 50)])
    );
    assert_eq!(report.error_count(), 0);
}

#[tokio::test]
async fn retries_give_up_after_n_and_report_the_last_status() {
    let server = start(|_: &support::Seen, _: &[support::Seen]| Reply::status(503, "{}")).await;
    let mut spec = spec(&server.url(), 1, Stop::Requests(3));
    spec.retries = 2;
    let report = run(spec).await.unwrap();
    assert_eq!(server.seen().len(), 9);
    assert_eq!(report.retries, 6);
    assert_eq!(report.errors["5xx"], 3);
    assert_eq!(
        report.status_counts,
        BTreeMap::from([("503".to_owned(), 3)])
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = start(|_: &support::Seen, _: &[support::Seen]| Reply::status(404, "{}")).await;
    let mut spec = spec(&server.url(), 1, Stop::Requests(5));
    spec.retries = 3;
    let report = run(spec).await.unwrap();
    assert_eq!(server.seen().len(), 5);
    assert_eq!(report.retries, 0);
    assert_eq!(report.errors["4xx"], 5);
}

#[tokio::test]
async fn timeouts_are_counted_and_retried() {
    let server = start(|_: &support::Seen, _: &[support::Seen]| Reply {
        delay: Duration::from_secs(30),
        ..Reply::status(200, "{}")
    })
    .await;
    let mut spec = spec(&server.url(), 1, Stop::Requests(2));
    spec.timeout = Duration::from_millis(100);
    spec.retries = 1;
    let report = run(spec).await.unwrap();
    assert_eq!(report.errors["timeout"], 2);
    assert_eq!(report.retry_causes["timeout"], 2);
    assert_eq!(server.seen().len(), 4);
    assert!(report.latency_ms.is_none());
}

#[tokio::test]
async fn templates_are_expanded_on_the_wire() {
    let server = start(ok).await;
    let mut spec = spec(&server.url(), 1, Stop::Requests(20));
    spec.counter_start = 1;
    spec.mix = Mix::single(
        RequestSpec::from_flags(
            None,
            Some("/accounts/{counter}/deposit".into()),
            Some(r#"{"amount": {random:1..100}}"#.into()),
            &["X-Connection: c{connection}".into()],
        )
        .unwrap(),
    );
    run(spec).await.unwrap();
    let seen = server.seen();
    let paths: Vec<String> = seen.iter().map(|s| s.path.clone()).collect();
    let expected: Vec<String> = (1..=20).map(|n| format!("/accounts/{n}/deposit")).collect();
    assert_eq!(paths, expected);
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.content_type.as_deref(), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        let amount = body["amount"].as_i64().unwrap();
        assert!((1..=100).contains(&amount), "{amount}");
    }
}

#[tokio::test]
async fn chunked_responses_keep_the_connection() {
    let (addr, count) = start_raw(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    )
    .await;
    let report = run(spec(&format!("http://{addr}/"), 2, Stop::Requests(100)))
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 100);
    assert_eq!(
        report.status_counts,
        BTreeMap::from([("200".to_owned(), 100)])
    );
    assert_eq!(report.error_count(), 0);
}

#[tokio::test]
async fn close_delimited_responses_reconnect() {
    let (addr, count) = start_raw(b"HTTP/1.0 200 OK\r\n\r\nbody until close", true).await;
    let report = run(spec(&format!("http://{addr}/"), 2, Stop::Requests(50)))
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 50);
    assert_eq!(
        report.status_counts,
        BTreeMap::from([("200".to_owned(), 50)])
    );
    assert_eq!(report.error_count(), 0);
}

#[tokio::test]
async fn garbage_is_malformed_and_early_close_is_a_read_error() {
    let (addr, _) = start_raw(b"NOT HTTP\r\n\r\n", false).await;
    let report = run(spec(&format!("http://{addr}/"), 1, Stop::Requests(3)))
        .await
        .unwrap();
    assert_eq!(report.errors["malformed"], 3);

    let (addr, _) = start_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true).await;
    let report = run(spec(&format!("http://{addr}/"), 1, Stop::Requests(3)))
        .await
        .unwrap();
    assert_eq!(report.errors["read"], 3);
}

#[tokio::test]
async fn unreachable_target_is_one_clear_error() {
    // Bind, learn a free port, close it: nothing listens there now.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let err = run(spec(&format!("http://{addr}/"), 1, Stop::Requests(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("check that the service listens"));
}

#[tokio::test]
async fn rejects_zero_connections() {
    let mut spec = RunSpec::new("http://127.0.0.1:1/").unwrap();
    spec.connections = 0;
    assert!(matches!(run(spec).await, Err(RunError::Invalid(_))));
}
