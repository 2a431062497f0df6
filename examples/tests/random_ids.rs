//! `--ids random`: every account id the HTTP interface shows or takes is a string of 16 hex
//! digits, different on every instance, while everything else answers as with sequential ids;
//! the id space survives a sqlite restart and travels with `/admin/export` and `/admin/import`.

#[path = "support/http.rs"]
mod support;

use lockstep_demo::{Implementation, RunningDemo};
use serde_json::Value;
use support::{Reply, send, start, start_random};

fn json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|_| panic!("not JSON: {}", reply.text()))
}

fn is_random_id(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

async fn open(client: &reqwest::Client, demo: &RunningDemo, owner: &str) -> String {
    let body = format!(r#"{{"owner":"{owner}"}}"#);
    let reply = send(client, &demo.url(), "POST", "/accounts", Some(&body)).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let id = json(&reply)["id"].clone();
    assert!(is_random_id(&id), "{}", reply.text());
    id.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn accounts_are_named_by_random_strings_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    for (implementation, data) in [
        (Implementation::Memory, None),
        (Implementation::Sqlite, Some(dir.path())),
    ] {
        let demo = start_random(implementation, data).await;
        let client = reqwest::Client::new();
        let url = demo.url();
        let ada = open(&client, &demo, "ada").await;
        let bob = open(&client, &demo, "bob").await;
        assert_ne!(ada, bob);

        let deposit = send(
            &client,
            &url,
            "POST",
            &format!("/accounts/{ada}/deposit"),
            Some(r#"{"amount":100}"#),
        )
        .await;
        assert_eq!(
            deposit.text(),
            format!(r#"{{"id":"{ada}","owner":"ada","balance":100}}"#)
        );
        let body = format!(r#"{{"from":"{ada}","to":"{bob}","amount":30}}"#);
        let transfer = send(&client, &url, "POST", "/transfers", Some(&body)).await;
        assert_eq!(
            transfer.text(),
            format!(
                r#"{{"from":{{"id":"{ada}","owner":"ada","balance":70}},"to":{{"id":"{bob}","owner":"bob","balance":30}}}}"#
            ),
            "{implementation:?}"
        );
        let withdraw = send(
            &client,
            &url,
            "POST",
            &format!("/accounts/{bob}/withdraw"),
            Some(r#"{"amount":30}"#),
        )
        .await;
        assert_eq!(withdraw.status, 200);
        let shown = send(&client, &url, "GET", &format!("/accounts/{bob}"), None).await;
        assert_eq!(
            shown.text(),
            format!(r#"{{"id":"{bob}","owner":"bob","balance":0}}"#)
        );
        let list = send(&client, &url, "GET", "/accounts", None).await;
        assert_eq!(
            list.text(),
            format!(
                r#"[{{"id":"{ada}","owner":"ada","balance":70}},{{"id":"{bob}","owner":"bob","balance":0}}]"#
            )
        );
        let closed = send(&client, &url, "DELETE", &format!("/accounts/{bob}"), None).await;
        assert_eq!(closed.status, 204);
        demo.stop().await.unwrap();
    }
}

#[tokio::test]
async fn two_instances_given_the_same_requests_show_different_ids() {
    let client = reqwest::Client::new();
    let (a, b) = (
        start_random(Implementation::Memory, None).await,
        start_random(Implementation::Memory, None).await,
    );
    for owner in ["ada", "bob", "eve"] {
        assert_ne!(
            open(&client, &a, owner).await,
            open(&client, &b, owner).await
        );
    }
    // One instance's id names nothing on the other.
    let id = open(&client, &a, "fay").await;
    let elsewhere = send(&client, &b.url(), "GET", &format!("/accounts/{id}"), None).await;
    assert_eq!(elsewhere.status, 404);
}

#[tokio::test]
async fn ids_that_name_no_account_are_refused_like_unknown_numbers() {
    let demo = start_random(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let url = demo.url();
    let ada = open(&client, &demo, "ada").await;
    let unknown = if ada == "0123456789abcdef" {
        "fedcba9876543210"
    } else {
        "0123456789abcdef"
    };
    for segment in ["1", unknown, &ada.to_uppercase(), "not-an-id"] {
        let reply = send(&client, &url, "GET", &format!("/accounts/{segment}"), None).await;
        assert_eq!(reply.status, 404, "{segment}");
        assert_eq!(
            reply.text(),
            format!(
                r#"{{"error":"not_found","detail":"the account does not exist","account":"{segment}"}}"#
            )
        );
    }
    // Errors about an account name it in a field of its own, never inside the detail.
    let overdraw = send(
        &client,
        &url,
        "POST",
        &format!("/accounts/{ada}/withdraw"),
        Some(r#"{"amount":5}"#),
    )
    .await;
    assert_eq!(
        overdraw.text(),
        format!(
            r#"{{"error":"insufficient_funds","detail":"the account has balance 0, which does not cover 5","account":"{ada}"}}"#
        )
    );
    // Transfers: numbers are the wrong type; strings that name nothing are 404s, `from` first.
    let numbers = send(
        &client,
        &url,
        "POST",
        "/transfers",
        Some(r#"{"from":1,"to":2,"amount":5}"#),
    )
    .await;
    assert_eq!(numbers.status, 400, "{}", numbers.text());
    for (from, to, named) in [
        (unknown, "junk", unknown),
        ("junk", ada.as_str(), "junk"),
        (ada.as_str(), "junk", "junk"),
        (ada.as_str(), unknown, unknown),
    ] {
        let body = format!(r#"{{"from":"{from}","to":"{to}","amount":5}}"#);
        let reply = send(&client, &url, "POST", "/transfers", Some(&body)).await;
        assert_eq!(reply.status, 404, "{body}");
        assert_eq!(json(&reply)["account"], named, "{body}: {}", reply.text());
    }
    let body = format!(r#"{{"from":"{ada}","to":"{ada}","amount":5}}"#);
    let same = send(&client, &url, "POST", "/transfers", Some(&body)).await;
    assert_eq!(
        same.text(),
        format!(
            r#"{{"error":"bad_request","detail":"from and to must be different accounts","account":"{ada}"}}"#
        )
    );
    // Refusals change nothing.
    let stats = send(&client, &url, "GET", "/stats", None).await;
    assert!(stats.text().ends_with(r#""writes":1}"#), "{}", stats.text());
}

#[tokio::test]
async fn a_copy_loaded_from_an_export_shows_the_sources_ids() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let source = start_random(Implementation::Memory, None).await;
    let ada = open(&client, &source, "ada").await;
    open(&client, &source, "bob").await;
    send(
        &client,
        &source.url(),
        "POST",
        &format!("/accounts/{ada}/deposit"),
        Some(r#"{"amount":7}"#),
    )
    .await;
    let export = send(&client, &source.url(), "GET", "/admin/export", None).await;
    let snapshot = json(&export);
    assert_eq!(snapshot["next_id"], 3);
    assert_eq!(
        snapshot["accounts"][0]["id"], 1,
        "a snapshot holds the stores' numbers"
    );
    assert!(
        snapshot["id_key"].as_str().is_some_and(|k| k.len() == 32),
        "{}",
        export.text()
    );

    let copy = start_random(Implementation::Sqlite, Some(dir.path())).await;
    open(&client, &copy, "someone else").await;
    let import = send(
        &client,
        &copy.url(),
        "POST",
        "/admin/import",
        Some(&export.text()),
    )
    .await;
    assert_eq!(import.status, 204, "{}", import.text());
    let steps: &[(&str, String, Option<&str>)] = &[
        ("GET", "/accounts".to_owned(), None),
        ("GET", format!("/accounts/{ada}"), None),
        ("POST", "/accounts".to_owned(), Some(r#"{"owner":"eve"}"#)),
        ("GET", "/admin/export".to_owned(), None),
    ];
    for (method, path, body) in steps {
        let expected = send(&client, &source.url(), method, path, *body).await;
        let actual = send(&client, &copy.url(), method, path, *body).await;
        assert_eq!(expected, actual, "{method} {path}");
    }
    // The copy keeps the adopted ids across a restart.
    copy.stop().await.unwrap();
    let copy = start_random(Implementation::Sqlite, Some(dir.path())).await;
    let after = send(&client, &copy.url(), "GET", "/accounts", None).await;
    let before = send(&client, &source.url(), "GET", "/accounts", None).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_sqlite_bank_shows_the_same_ids_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = start_random(Implementation::Sqlite, Some(dir.path())).await;
    let ada = open(&client, &first, "ada").await;
    first.stop().await.unwrap();
    let second = start_random(Implementation::Sqlite, Some(dir.path())).await;
    let shown = send(
        &client,
        &second.url(),
        "GET",
        &format!("/accounts/{ada}"),
        None,
    )
    .await;
    assert_eq!(
        shown.text(),
        format!(r#"{{"id":"{ada}","owner":"ada","balance":0}}"#)
    );
    // A reset keeps the id space: the first account opened after it shows the first id again.
    send(&client, &second.url(), "POST", "/admin/reset", None).await;
    assert_eq!(open(&client, &second, "bob").await, ada);
}

#[tokio::test]
async fn an_export_of_the_other_kind_of_ids_is_refused() {
    let client = reqwest::Client::new();
    let random = start_random(Implementation::Memory, None).await;
    let sequential = start(Implementation::Memory, None).await;
    open(&client, &random, "ada").await;
    let from_random = send(&client, &random.url(), "GET", "/admin/export", None).await;
    let from_sequential = send(&client, &sequential.url(), "GET", "/admin/export", None).await;
    assert_eq!(from_sequential.text(), r#"{"next_id":1,"accounts":[]}"#);
    for (into, snapshot) in [(&sequential, &from_random), (&random, &from_sequential)] {
        let reply = send(
            &client,
            &into.url(),
            "POST",
            "/admin/import",
            Some(&snapshot.text()),
        )
        .await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(reply.text().contains("id_key"), "{}", reply.text());
    }
}
