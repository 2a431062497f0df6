//! The two implementations must answer byte-identically (status, headers but `date`, body)
//! for the same sequence of requests: that is what lets lockstep replicate either.

#[path = "support/http.rs"]
mod support;

use lockstep_demo::Implementation;
use support::{Reply, send, start};

/// (method, path, body, expected status). The expected status makes sure the two
/// implementations agree on the right answer, not merely on the same wrong one.
const SEQUENCE: &[(&str, &str, Option<&str>, u16)] = &[
    ("GET", "/health", None, 200),
    ("GET", "/accounts", None, 200),
    ("POST", "/accounts", Some(r#"{"owner":"ada"}"#), 201),
    ("POST", "/accounts", Some(r#"{"owner":"grace"}"#), 201),
    (
        "POST",
        "/accounts",
        Some(r#"{"owner":"Zoë \"z\" 🦀"}"#),
        201,
    ),
    (
        "POST",
        "/accounts",
        Some(r#"{"owner":"eve","balance":100}"#),
        400,
    ),
    ("POST", "/accounts", Some(r#"{"owner":""}"#), 400),
    ("POST", "/accounts", Some(r#"{"name":"x"}"#), 400),
    ("POST", "/accounts", Some("not json"), 400),
    ("POST", "/accounts", None, 400),
    (
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":100}"#),
        200,
    ),
    ("POST", "/accounts/2/deposit", Some(r#"{"amount":5}"#), 200),
    ("POST", "/accounts/1/deposit", Some(r#"{"amount":0}"#), 400),
    ("POST", "/accounts/1/deposit", Some(r#"{"amount":-5}"#), 400),
    (
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":1.5}"#),
        400,
    ),
    (
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":"5"}"#),
        400,
    ),
    (
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":1000000000001}"#),
        400,
    ),
    (
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":5,"memo":"x"}"#),
        400,
    ),
    ("POST", "/accounts/1/deposit", Some(r#"{}"#), 400),
    ("POST", "/accounts/9/deposit", Some(r#"{"amount":5}"#), 404),
    (
        "POST",
        "/accounts/abc/deposit",
        Some(r#"{"amount":5}"#),
        404,
    ),
    (
        "POST",
        "/accounts/1/withdraw",
        Some(r#"{"amount":30}"#),
        200,
    ),
    (
        "POST",
        "/accounts/1/withdraw",
        Some(r#"{"amount":71}"#),
        409,
    ),
    ("POST", "/accounts/9/withdraw", Some(r#"{"amount":1}"#), 404),
    (
        "POST",
        "/transfers",
        Some(r#"{"from":1,"to":2,"amount":20}"#),
        200,
    ),
    (
        "POST",
        "/transfers",
        Some(r#"{"from":2,"to":1,"amount":1000}"#),
        409,
    ),
    (
        "POST",
        "/transfers",
        Some(r#"{"from":1,"to":1,"amount":1}"#),
        400,
    ),
    (
        "POST",
        "/transfers",
        Some(r#"{"from":1,"to":9,"amount":1}"#),
        404,
    ),
    (
        "POST",
        "/transfers",
        Some(r#"{"from":9,"to":1,"amount":1}"#),
        404,
    ),
    ("POST", "/transfers", Some(r#"{"from":1,"to":2}"#), 400),
    ("GET", "/accounts/1", None, 200),
    ("GET", "/accounts/7", None, 404),
    ("GET", "/accounts/-1", None, 404),
    ("GET", "/accounts", None, 200),
    ("DELETE", "/accounts/2", None, 409),
    ("DELETE", "/accounts/3", None, 204),
    ("DELETE", "/accounts/3", None, 404),
    // Ids are not reused after a close.
    ("POST", "/accounts", Some(r#"{"owner":"linus"}"#), 201),
    ("GET", "/accounts", None, 200),
    ("PUT", "/accounts", None, 405),
    ("PATCH", "/accounts/1", None, 405),
    ("GET", "/transfers", None, 405),
    ("GET", "/nowhere", None, 404),
    ("GET", "/stats", None, 200),
];

async fn run_sequence(
    implementation: Implementation,
    data: Option<&std::path::Path>,
) -> Vec<Reply> {
    let demo = start(implementation, data).await;
    let client = reqwest::Client::new();
    let mut replies = Vec::new();
    for (method, path, body, status) in SEQUENCE {
        let reply = send(&client, &demo.url(), method, path, *body).await;
        assert_eq!(
            reply.status,
            *status,
            "{implementation:?}: {method} {path} {body:?} answered {}",
            reply.text()
        );
        replies.push(reply);
    }
    demo.stop().await.expect("demo stops");
    replies
}

#[tokio::test]
async fn memory_and_sqlite_answer_byte_identically() {
    let dir = tempfile::tempdir().unwrap();
    let memory = run_sequence(Implementation::Memory, None).await;
    let sqlite = run_sequence(Implementation::Sqlite, Some(dir.path())).await;
    for ((step, m), s) in SEQUENCE.iter().zip(&memory).zip(&sqlite) {
        // The health check names the process that answered (its boot id): that one header
        // differs between any two instances by design.
        let without_boot_id = |r: &Reply| {
            let mut r = r.clone();
            r.headers.retain(|(name, _)| name != "x-boot-id");
            r
        };
        assert_eq!(
            without_boot_id(m),
            without_boot_id(s),
            "replies differ for {} {}",
            step.0,
            step.1
        );
    }
    let boot_id = |r: &Reply| {
        r.headers
            .iter()
            .find(|(name, _)| name == "x-boot-id")
            .map(|(_, v)| v.clone())
    };
    assert!(
        boot_id(&memory[0]).is_some(),
        "the health check names its instance"
    );
    assert_ne!(
        boot_id(&memory[0]),
        boot_id(&sqlite[0]),
        "two instances, two boot ids"
    );
}

#[tokio::test]
async fn the_sequence_ends_in_the_expected_state() {
    let replies = run_sequence(Implementation::Memory, None).await;
    let final_list = &replies[SEQUENCE.len() - 6];
    assert_eq!(
        final_list.text(),
        r#"[{"id":1,"owner":"ada","balance":50},{"id":2,"owner":"grace","balance":25},{"id":4,"owner":"linus","balance":0}]"#
    );
}
