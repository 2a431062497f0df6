//! Exactly-once retries through the gateway: a key's committed response is replayed, a reused
//! key with another request is refused, keys are scoped by credentials, a retry of an in-flight
//! key waits (or gets 409), and keys expire after their TTL.

#[path = "support/harness.rs"]
mod harness;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use harness::*;
use lockstep::Gateway;
use lockstep_backends::ManualClock;
use lockstep_demo::{Faults, Implementation};

fn keyed(c: &reqwest::Client, url: String, key: &str, body: &str) -> reqwest::RequestBuilder {
    c.post(url)
        .header("Idempotency-Key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_gets_the_committed_response_and_nothing_runs_twice() {
    let banks = [
        Bank::start(Implementation::Memory, Faults::default()).await,
        Bank::start(Implementation::Sqlite, Faults::default()).await,
    ];
    let list = [("a", banks[0].url.clone()), ("b", banks[1].url.clone())];
    let gw = start_gateway(&backends_toml(&list));
    let c = client();
    post_json(
        &c,
        format!("http://{}/accounts", gw.gateway),
        r#"{"owner":"ada"}"#,
    )
    .await;

    let url = format!("http://{}/accounts/1/deposit", gw.gateway);
    let first = keyed(&c, url.clone(), "dep-1", r#"{"amount":70}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let seq = first.headers()["lockstep-sequence"].clone();
    let first_body = first.bytes().await.unwrap();
    for _ in 0..3 {
        let again = keyed(&c, url.clone(), "dep-1", r#"{"amount":70}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.headers()["lockstep-sequence"], seq);
        assert_eq!(again.headers()["content-type"], "application/json");
        assert_eq!(
            again.bytes().await.unwrap(),
            first_body,
            "byte-identical body"
        );
    }
    for bank in &banks {
        let account = get_text(&c, format!("{}/accounts/1", bank.url)).await;
        assert_eq!(
            account, r#"{"id":1,"owner":"ada","balance":70}"#,
            "deposited once on {}",
            bank.url
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_key_with_another_request_is_refused_with_422() {
    let (ms, toml) = start_mocks(2).await;
    let gw = start_gateway(&toml);
    let c = client();
    let url = format!("http://{}/k/1", gw.gateway);
    assert_eq!(
        keyed(&c, url.clone(), "same", "{\"a\":1}")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for (url, body) in [
        (url.clone(), "{\"a\":2}"),
        (format!("http://{}/k/2", gw.gateway), "{\"a\":1}"),
    ] {
        let r = keyed(&c, url, "same", body).send().await.unwrap();
        assert_eq!(r.status(), 422);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "idempotency_key_reused");
        assert!(
            v["detail"].as_str().unwrap().contains("Idempotency-Key"),
            "{v}"
        );
    }
    assert_eq!(
        ms[1].mock.received().len(),
        1,
        "the refused requests reached no backend"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_validated_and_required_where_the_route_says_so() {
    let (ms, toml) = start_mocks(2).await;
    let routes = "[[routes]]\nmatch = \"POST /pay/**\"\nidempotency = \"required\"\n[[routes]]\nmatch = \"POST /free/**\"\nidempotency = \"off\"\n";
    let gw = start_gateway(&format!("{routes}{toml}"));
    let c = client();
    let r = post_json(&c, format!("http://{}/pay/1", gw.gateway), "{}").await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "idempotency_key_required");
    assert!(
        v["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "names the header: {v}"
    );

    let long = "k".repeat(256);
    for bad in [long.as_str(), "has space", "tab\tkey"] {
        let r = keyed(&c, format!("http://{}/pay/1", gw.gateway), bad, "{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_idempotency_key", "{bad:?}");
    }
    assert_eq!(
        keyed(
            &c,
            format!("http://{}/pay/1", gw.gateway),
            &"k".repeat(255),
            "{}"
        )
        .send()
        .await
        .unwrap()
        .status(),
        200
    );
    // `off`: the key is forwarded but not interpreted, so both requests run.
    for _ in 0..2 {
        assert_eq!(
            keyed(&c, format!("http://{}/free/1", gw.gateway), "k", "{}")
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let free: Vec<_> = ms[1]
        .mock
        .received()
        .into_iter()
        .filter(|r| r.uri == "/free/1")
        .collect();
    assert_eq!(free.len(), 2);
    assert_eq!(free[0].header("idempotency-key"), Some("k"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_scoped_by_credentials() {
    let (ms, toml) = start_mocks(2).await;
    let gw = start_gateway(&toml);
    let c = client();
    let url = format!("http://{}/k/1", gw.gateway);
    for who in ["Bearer alice", "Bearer bob", "Bearer alice"] {
        let r = keyed(&c, url.clone(), "shared-key", "{}")
            .header("Authorization", who)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let replayed = r.headers().get("idempotent-replayed").is_some();
        let body = r.text().await.unwrap();
        match who {
            "Bearer bob" => {
                assert!(!replayed, "bob never gets alice's response");
                assert_eq!(body, r#"{"key":"k","n":2}"#);
            }
            _ => assert_eq!(body, r#"{"key":"k","n":1}"#),
        }
    }
    assert_eq!(ms[0].mock.received().len(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_of_an_in_flight_key_waits_and_replays() {
    let (ms, toml) = start_mocks(2).await;
    let gw = start_gateway(&toml);
    let c = client();
    ms[1].mock.hold("/k/");
    let url = format!("http://{}/k/1", gw.gateway);
    let original = tokio::spawn(keyed(&c, url.clone(), "k1", "{}").send());
    ms[1].mock.wait_arrived("/k/1").await;
    let retry = tokio::spawn(keyed(&c, url.clone(), "k1", "{}").send());
    ms[1].mock.release("/k/");
    let (o, r) = (
        original.await.unwrap().unwrap(),
        retry.await.unwrap().unwrap(),
    );
    assert_eq!(o.headers().get("idempotent-replayed"), None);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(o.text().await.unwrap(), r.text().await.unwrap());
    assert_eq!(ms[0].mock.received().len(), 1, "processed once");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_in_flight_reject_a_concurrent_retry_gets_409() {
    let (ms, toml) = start_mocks(2).await;
    let gw = start_gateway(&format!("[idempotency]\nin_flight = \"reject\"\n{toml}"));
    let c = client();
    ms[1].mock.hold("/k/");
    let url = format!("http://{}/k/1", gw.gateway);
    let original = tokio::spawn(keyed(&c, url.clone(), "k1", "{}").send());
    ms[1].mock.wait_arrived("/k/1").await;
    let r = keyed(&c, url.clone(), "k1", "{}").send().await.unwrap();
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "idempotency_key_in_flight");
    ms[1].mock.release("/k/");
    assert_eq!(original.await.unwrap().unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_hangs_up_after_sending_can_retry_safely() {
    let (ms, toml) = start_mocks(2).await;
    let gw = start_gateway(&toml);
    ms[1].mock.hold("/k/");
    // Send the request on a raw socket and hang up before any answer.
    let body = "{\"x\":1}";
    let raw = format!(
        "POST /k/1 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: lost-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(gw.gateway).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    ms[1].mock.wait_arrived("/k/1").await;
    drop(s);
    ms[1].mock.release("/k/");
    let c = client();
    let r = keyed(&c, format!("http://{}/k/1", gw.gateway), "lost-1", body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.text().await.unwrap(), r#"{"key":"k","n":1}"#);
    for m in &ms {
        assert_eq!(
            m.mock.received().len(),
            1,
            "processed once on every backend"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_expire_after_their_ttl() {
    let (ms, toml) = start_mocks(2).await;
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let gw_clock = clock.clone();
    let gw = start_gateway_with(
        &format!("[idempotency]\nttl = \"1h\"\n{toml}"),
        move |config| Gateway::with_clock(config, gw_clock).unwrap(),
    );
    let c = client();
    let url = format!("http://{}/k/1", gw.gateway);
    let send = || keyed(&c, url.clone(), "k", "{}").send();
    assert_eq!(
        send().await.unwrap().text().await.unwrap(),
        r#"{"key":"k","n":1}"#
    );
    clock.advance(Duration::from_secs(3599));
    let r = send().await.unwrap();
    assert_eq!(
        r.headers()["idempotent-replayed"],
        "true",
        "still within the TTL"
    );
    clock.advance(Duration::from_secs(2));
    let r = send().await.unwrap();
    assert!(
        r.headers().get("idempotent-replayed").is_none(),
        "expired: processed again"
    );
    assert_eq!(r.text().await.unwrap(), r#"{"key":"k","n":2}"#);
    let time = ms[0].mock.received()[0]
        .header("lockstep-time")
        .unwrap()
        .to_owned();
    assert_eq!(
        time, "2027-01-15T08:00:00.000Z",
        "Lockstep-Time follows the gateway clock"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_is_not_run_again_when_the_first_attempt_has_an_unknown_outcome() {
    // One backend, so nobody can take over; it holds the request past the primary timeout.
    let (ms, toml) = start_mocks(1).await;
    let gw = start_gateway(&format!(
        "[replication]\nprimary_timeout = \"300ms\"\n{toml}"
    ));
    let c = client();
    ms[0].mock.hold("/k/");
    let url = format!("http://{}/k/1", gw.gateway);
    let first = keyed(&c, url.clone(), "once", "{}").send().await.unwrap();
    assert_eq!(first.status(), 504, "the primary did not answer in time");
    // Whether the primary applied it cannot be known from here: the retry must not risk it.
    let retry = keyed(&c, url, "once", "{}").send().await.unwrap();
    assert_eq!(retry.status(), 409);
    let v: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(v["error"], "idempotency_outcome_unknown");
    assert_eq!(
        ms[0].mock.arrived(),
        vec!["/k/1".to_string()],
        "the retry never reached the backend"
    );
    gw.stop().await;
}
