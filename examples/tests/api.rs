//! The wire contract of the demo, checked exactly: bodies, codes and headers that clients and
//! lockstep's own tests rely on.

#[path = "support/http.rs"]
mod support;

use std::time::{Duration, Instant};

use lockstep_demo::{Faults, Implementation};
use support::{send, start, start_with};

#[tokio::test]
async fn opens_accounts_with_sequential_ids_and_zero_balance() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let first = send(
        &client,
        &demo.url(),
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    assert_eq!(first.status, 201);
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(first.text(), r#"{"id":1,"owner":"ada","balance":0}"#);
    let second = send(
        &client,
        &demo.url(),
        "POST",
        "/accounts",
        Some(r#"{"owner":"bob"}"#),
    )
    .await;
    assert_eq!(second.text(), r#"{"id":2,"owner":"bob","balance":0}"#);
}

#[tokio::test]
async fn refuses_an_opening_balance() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let reply = send(
        &client,
        &demo.url(),
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada","balance":1000}"#),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .text()
            .starts_with(r#"{"error":"bad_request","detail":"#)
    );
    let list = send(&client, &demo.url(), "GET", "/accounts", None).await;
    assert_eq!(list.text(), "[]");
}

#[tokio::test]
async fn reports_unknown_accounts_as_not_found() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let reply = send(&client, &demo.url(), "GET", "/accounts/7", None).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.text(),
        r#"{"error":"not_found","detail":"account 7 does not exist"}"#
    );
}

#[tokio::test]
async fn refuses_to_overdraw() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let url = demo.url();
    send(
        &client,
        &url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    let deposit = send(
        &client,
        &url,
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":10}"#),
    )
    .await;
    assert_eq!(deposit.text(), r#"{"id":1,"owner":"ada","balance":10}"#);
    let withdraw = send(
        &client,
        &url,
        "POST",
        "/accounts/1/withdraw",
        Some(r#"{"amount":11}"#),
    )
    .await;
    assert_eq!(withdraw.status, 409);
    assert!(
        withdraw
            .text()
            .starts_with(r#"{"error":"insufficient_funds","detail":"#)
    );
    let account = send(&client, &url, "GET", "/accounts/1", None).await;
    assert_eq!(account.text(), r#"{"id":1,"owner":"ada","balance":10}"#);
}

#[tokio::test]
async fn transfers_return_both_accounts() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let url = demo.url();
    send(
        &client,
        &url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    send(
        &client,
        &url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"bob"}"#),
    )
    .await;
    send(
        &client,
        &url,
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":10}"#),
    )
    .await;
    let reply = send(
        &client,
        &url,
        "POST",
        "/transfers",
        Some(r#"{"from":1,"to":2,"amount":4}"#),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        r#"{"from":{"id":1,"owner":"ada","balance":6},"to":{"id":2,"owner":"bob","balance":4}}"#
    );
}

#[tokio::test]
async fn closes_only_empty_accounts() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let url = demo.url();
    send(
        &client,
        &url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    send(
        &client,
        &url,
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":1}"#),
    )
    .await;
    assert_eq!(
        send(&client, &url, "DELETE", "/accounts/1", None)
            .await
            .status,
        409
    );
    send(
        &client,
        &url,
        "POST",
        "/accounts/1/withdraw",
        Some(r#"{"amount":1}"#),
    )
    .await;
    let closed = send(&client, &url, "DELETE", "/accounts/1", None).await;
    assert_eq!(closed.status, 204);
    assert!(closed.body.is_empty());
    assert_eq!(
        send(&client, &url, "GET", "/accounts/1", None).await.status,
        404
    );
}

#[tokio::test]
async fn answers_health_unknown_paths_and_wrong_methods_in_json() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let url = demo.url();
    assert_eq!(
        send(&client, &url, "GET", "/health", None).await.text(),
        r#"{"status":"ok"}"#
    );
    let unknown = send(&client, &url, "GET", "/nowhere", None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(unknown.text().starts_with(r#"{"error":"not_found""#));
    let wrong = send(&client, &url, "PUT", "/accounts", None).await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow").as_deref(), Some("GET,HEAD,POST"));
    assert!(wrong.text().starts_with(r#"{"error":"method_not_allowed""#));
}

#[tokio::test]
async fn stats_count_requests_and_successful_writes_only() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let url = demo.url();
    send(
        &client,
        &url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    send(
        &client,
        &url,
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":5}"#),
    )
    .await;
    // Refused: not counted as writes.
    send(
        &client,
        &url,
        "POST",
        "/accounts/1/withdraw",
        Some(r#"{"amount":50}"#),
    )
    .await;
    send(&client, &url, "POST", "/accounts/1/deposit", Some("nope")).await;
    send(&client, &url, "GET", "/accounts", None).await;
    let stats = send(&client, &url, "GET", "/stats", None).await;
    assert_eq!(stats.text(), r#"{"requests":6,"writes":2}"#);
}

#[tokio::test]
async fn applies_concurrent_deposits_atomically_in_both_implementations() {
    let dir = tempfile::tempdir().unwrap();
    for (implementation, data) in [
        (Implementation::Memory, None),
        (Implementation::Sqlite, Some(dir.path())),
    ] {
        let demo = start(implementation, data).await;
        let client = reqwest::Client::new();
        let url = demo.url();
        send(
            &client,
            &url,
            "POST",
            "/accounts",
            Some(r#"{"owner":"ada"}"#),
        )
        .await;
        let deposits = (0..40).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                send(
                    &client,
                    &url,
                    "POST",
                    "/accounts/1/deposit",
                    Some(r#"{"amount":1}"#),
                )
                .await
                .status
            })
        });
        for deposit in deposits.collect::<Vec<_>>() {
            assert_eq!(deposit.await.unwrap(), 200);
        }
        let account = send(&client, &url, "GET", "/accounts/1", None).await;
        assert_eq!(
            account.text(),
            r#"{"id":1,"owner":"ada","balance":40}"#,
            "{implementation:?}"
        );
    }
}

#[tokio::test]
async fn delays_writes_but_not_reads() {
    let delay = Duration::from_millis(200);
    let faults = Faults {
        delay,
        ..Faults::default()
    };
    let demo = start_with(Implementation::Memory, None, faults).await;
    let client = reqwest::Client::new();
    let url = demo.url();

    let started = Instant::now();
    send(
        &client,
        &url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    assert!(
        started.elapsed() >= delay,
        "write took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    send(&client, &url, "GET", "/accounts/1", None).await;
    assert!(
        started.elapsed() < delay,
        "read took {:?}",
        started.elapsed()
    );
}
