//! The administrative endpoints behind lockstep's reset and checkpoint hooks: `/admin/reset`
//! empties a bank, `/admin/export` and `/admin/import` copy its whole state to another
//! instance of either implementation, which must then answer exactly like the original.

#[path = "support/http.rs"]
mod support;

use std::path::Path;

use lockstep_demo::{Implementation, RunningDemo};
use support::{Reply, send, start};

type Step = (&'static str, &'static str, Option<&'static str>);

/// Leaves a bank whose next id (5) is not one more than its largest id (3): account 4 was
/// opened and closed, and account 2 too, so a copy must carry `next_id` and not guess it.
const SETUP: &[Step] = &[
    ("POST", "/accounts", Some(r#"{"owner":"ada"}"#)),
    ("POST", "/accounts", Some(r#"{"owner":"bob"}"#)),
    ("POST", "/accounts", Some(r#"{"owner":"Zoë \"z\" 🦀"}"#)),
    ("POST", "/accounts", Some(r#"{"owner":"dan"}"#)),
    ("POST", "/accounts/1/deposit", Some(r#"{"amount":100}"#)),
    (
        "POST",
        "/transfers",
        Some(r#"{"from":1,"to":3,"amount":40}"#),
    ),
    ("DELETE", "/accounts/2", None),
    ("DELETE", "/accounts/4", None),
];

/// What both the original and the copy are asked after the copy, answers compared byte for
/// byte. `/stats` is left out: its counters are per process, not part of the state.
const AFTERWARDS: &[Step] = &[
    ("GET", "/accounts", None),
    ("POST", "/accounts", Some(r#"{"owner":"eve"}"#)),
    ("GET", "/accounts/2", None),
    ("GET", "/accounts/4", None),
    ("GET", "/accounts/5", None),
    ("POST", "/accounts/3/withdraw", Some(r#"{"amount":41}"#)),
    ("POST", "/accounts/3/withdraw", Some(r#"{"amount":40}"#)),
    (
        "POST",
        "/transfers",
        Some(r#"{"from":1,"to":5,"amount":60}"#),
    ),
    ("DELETE", "/accounts/3", None),
    ("DELETE", "/accounts/5", None),
    ("POST", "/accounts", Some(r#"{"owner":"fay"}"#)),
    ("GET", "/accounts", None),
    ("GET", "/admin/export", None),
    ("POST", "/admin/reset", None),
    ("POST", "/accounts", Some(r#"{"owner":"gus"}"#)),
    ("GET", "/admin/export", None),
];

async fn run(client: &reqwest::Client, demo: &RunningDemo, steps: &[Step]) -> Vec<Reply> {
    let mut replies = Vec::new();
    for (method, path, body) in steps {
        replies.push(send(client, &demo.url(), method, path, *body).await);
    }
    replies
}

async fn writes(client: &reqwest::Client, demo: &RunningDemo) -> String {
    let stats = send(client, &demo.url(), "GET", "/stats", None).await;
    let text = stats.text();
    let (_, writes) = text.split_once(r#""writes":"#).expect("stats has writes");
    writes.trim_end_matches('}').to_owned()
}

fn both(dir: &Path) -> [(Implementation, Option<&Path>); 2] {
    [
        (Implementation::Memory, None),
        (Implementation::Sqlite, Some(dir)),
    ]
}

#[tokio::test]
async fn reset_empties_the_bank_and_restarts_ids_at_1() {
    let dir = tempfile::tempdir().unwrap();
    for (implementation, data) in both(dir.path()) {
        let demo = start(implementation, data).await;
        let client = reqwest::Client::new();
        let url = demo.url();
        run(&client, &demo, SETUP).await;

        let reset = send(&client, &url, "POST", "/admin/reset", None).await;
        assert_eq!(reset.status, 204, "{implementation:?}: {}", reset.text());
        assert!(reset.body.is_empty());

        let list = send(&client, &url, "GET", "/accounts", None).await;
        assert_eq!(list.text(), "[]", "{implementation:?}");
        let export = send(&client, &url, "GET", "/admin/export", None).await;
        assert_eq!(export.text(), r#"{"next_id":1,"accounts":[]}"#);
        let opened = send(
            &client,
            &url,
            "POST",
            "/accounts",
            Some(r#"{"owner":"ada"}"#),
        )
        .await;
        assert_eq!(
            opened.text(),
            r#"{"id":1,"owner":"ada","balance":0}"#,
            "{implementation:?}"
        );
        // Setup's eight writes, the reset, the opening.
        assert_eq!(writes(&client, &demo).await, "10", "{implementation:?}");
        demo.stop().await.expect("demo stops");
    }
}

#[tokio::test]
async fn sqlite_reset_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let demo = start(Implementation::Sqlite, Some(dir.path())).await;
    run(&client, &demo, SETUP).await;
    send(&client, &demo.url(), "POST", "/admin/reset", None).await;
    demo.stop().await.expect("demo stops");

    let demo = start(Implementation::Sqlite, Some(dir.path())).await;
    let opened = send(
        &client,
        &demo.url(),
        "POST",
        "/accounts",
        Some(r#"{"owner":"bob"}"#),
    )
    .await;
    assert_eq!(opened.text(), r#"{"id":1,"owner":"bob","balance":0}"#);
}

#[tokio::test]
async fn a_copy_into_the_other_implementation_answers_byte_identically() {
    for (from, to) in [
        (Implementation::Memory, Implementation::Sqlite),
        (Implementation::Sqlite, Implementation::Memory),
    ] {
        let (from_dir, to_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let data = |implementation, dir: &tempfile::TempDir| {
            (implementation == Implementation::Sqlite).then(|| dir.path().to_owned())
        };
        let original = start(from, data(from, &from_dir).as_deref()).await;
        let copy = start(to, data(to, &to_dir).as_deref()).await;
        let client = reqwest::Client::new();
        run(&client, &original, SETUP).await;
        // The copy has a state of its own, which the import must replace entirely.
        run(&client, &copy, &SETUP[..2]).await;

        let export = send(&client, &original.url(), "GET", "/admin/export", None).await;
        assert_eq!(export.status, 200);
        assert_eq!(
            export.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            export.text(),
            r#"{"next_id":5,"accounts":[{"id":1,"owner":"ada","balance":60},{"id":3,"owner":"Zoë \"z\" 🦀","balance":40}]}"#,
            "{from:?}"
        );
        let import = send(
            &client,
            &copy.url(),
            "POST",
            "/admin/import",
            Some(&export.text()),
        )
        .await;
        assert_eq!(import.status, 204, "{to:?}: {}", import.text());
        assert!(import.body.is_empty());
        // Two openings and the import.
        assert_eq!(writes(&client, &copy).await, "3", "{to:?}");

        let expected = run(&client, &original, AFTERWARDS).await;
        let actual = run(&client, &copy, AFTERWARDS).await;
        for ((step, e), a) in AFTERWARDS.iter().zip(&expected).zip(&actual) {
            assert_eq!(e, a, "{from:?} -> {to:?}: replies differ for {step:?}");
        }
        assert_eq!(
            expected[1].text(),
            r#"{"id":5,"owner":"eve","balance":0}"#,
            "{from:?}"
        );
    }
}

#[tokio::test]
async fn a_copy_keeps_running_out_of_ids_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut replies = Vec::new();
    for (implementation, data) in both(dir.path()) {
        let demo = start(implementation, data).await;
        let client = reqwest::Client::new();
        let steps: &[Step] = &[
            (
                "POST",
                "/admin/import",
                Some(r#"{"next_id":9223372036854775806,"accounts":[]}"#),
            ),
            ("POST", "/accounts", Some(r#"{"owner":"ada"}"#)),
            ("POST", "/accounts", Some(r#"{"owner":"bob"}"#)),
            ("GET", "/admin/export", None),
        ];
        replies.push(run(&client, &demo, steps).await);
    }
    let (memory, sqlite) = (&replies[0], &replies[1]);
    assert_eq!(memory, sqlite);
    assert_eq!(
        memory[1].text(),
        r#"{"id":9223372036854775806,"owner":"ada","balance":0}"#
    );
    // The largest i64 would leave no next_id to export, so it is never handed out.
    assert_eq!(memory[2].status, 500);
    assert_eq!(
        memory[3].text(),
        r#"{"next_id":9223372036854775807,"accounts":[{"id":9223372036854775806,"owner":"ada","balance":0}]}"#
    );
}

#[tokio::test]
async fn a_bad_snapshot_is_refused_and_changes_nothing() {
    let refused = [
        "not json",
        "",
        r#"{"accounts":[]}"#,
        r#"{"next_id":1}"#,
        r#"{"next_id":1,"accounts":[],"extra":0}"#,
        r#"{"next_id":0,"accounts":[]}"#,
        r#"{"next_id":3,"accounts":[{"id":1,"owner":"a","balance":0},{"id":1,"owner":"b","balance":0}]}"#,
        r#"{"next_id":3,"accounts":[{"id":3,"owner":"a","balance":0}]}"#,
        r#"{"next_id":3,"accounts":[{"id":0,"owner":"a","balance":0}]}"#,
        r#"{"next_id":3,"accounts":[{"id":1,"owner":"a","balance":-1}]}"#,
        r#"{"next_id":3,"accounts":[{"id":1,"owner":" ","balance":0}]}"#,
        r#"{"next_id":3,"accounts":[{"id":1,"owner":"a"}]}"#,
        r#"{"next_id":3,"accounts":[{"id":1,"owner":"a","balance":0,"memo":"x"}]}"#,
        r#"{"next_id":3,"accounts":[{"id":1,"owner":"a","balance":1.5}]}"#,
    ];
    let dir = tempfile::tempdir().unwrap();
    for (implementation, data) in both(dir.path()) {
        let demo = start(implementation, data).await;
        let client = reqwest::Client::new();
        let url = demo.url();
        run(&client, &demo, SETUP).await;
        let before = send(&client, &url, "GET", "/admin/export", None).await;
        for body in refused {
            let reply = send(&client, &url, "POST", "/admin/import", Some(body)).await;
            assert_eq!(reply.status, 400, "{implementation:?}: {body}");
            assert!(
                reply
                    .text()
                    .starts_with(r#"{"error":"bad_request","detail":"#),
                "{implementation:?}: {body} answered {}",
                reply.text()
            );
        }
        let after = send(&client, &url, "GET", "/admin/export", None).await;
        assert_eq!(before, after, "{implementation:?}");
        assert_eq!(writes(&client, &demo).await, "8", "{implementation:?}");
    }
}

#[tokio::test]
async fn a_snapshot_is_refused_with_a_precise_detail() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let reply = send(
        &client,
        &demo.url(),
        "POST",
        "/admin/import",
        Some(r#"{"next_id":2,"accounts":[{"id":1,"owner":"a","balance":0},{"id":1,"owner":"b","balance":0}]}"#),
    )
    .await;
    assert_eq!(
        reply.text(),
        r#"{"error":"bad_request","detail":"invalid snapshot: account id 1 appears more than once"}"#
    );
}

#[tokio::test]
async fn admin_paths_follow_the_method_and_route_rules() {
    let demo = start(Implementation::Memory, None).await;
    let client = reqwest::Client::new();
    let url = demo.url();
    for (method, path, allow) in [
        ("GET", "/admin/reset", "POST"),
        ("POST", "/admin/export", "GET,HEAD"),
        ("PUT", "/admin/import", "POST"),
    ] {
        let reply = send(&client, &url, method, path, None).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow").as_deref(), Some(allow), "{path}");
        assert!(reply.text().starts_with(r#"{"error":"method_not_allowed""#));
    }
    for path in ["/admin", "/admin/nowhere"] {
        let reply = send(&client, &url, "GET", path, None).await;
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.text().starts_with(r#"{"error":"not_found""#));
    }
    // Refused requests are not writes.
    assert_eq!(writes(&client, &demo).await, "0");
}
