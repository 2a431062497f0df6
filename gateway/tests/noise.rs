//! Telling per-instance noise from divergence, with real processes: demo banks started with
//! `--noise` (their own address, the time, a trace id and an `ETag` in every answer) behind the
//! real gateway.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/procs.rs"]
mod procs;
#[path = "support/workload.rs"]
mod workload;

use std::process::Command;
use std::time::Duration;

use harness::eventually;
use procs::{DemoProc, GatewayProc};
use serde_json::Value;
use workload::{accounts_at, admin_call, client, until_done};

async fn status(g: &GatewayProc) -> Value {
    admin_call(g.admin, reqwest::Method::GET, "/status", None)
        .await
        .1
}

fn state(status: &Value, name: &str) -> String {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .map(|b| b["state"].as_str().unwrap().to_owned())
        .unwrap()
}

fn lockstep(g: &GatewayProc, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .args(["--admin", &format!("http://{}", g.admin)])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_copies_stay_in_sync_and_clients_never_see_a_backends_address() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start_with("a", "sqlite", dir.path(), &["--noise"]);
    let b = DemoProc::start_with("b", "memory", dir.path(), &["--noise"]);
    let c = DemoProc::start_with("c", "sqlite", dir.path(), &["--noise"]);
    let g = GatewayProc::start(dir.path(), "batch", &procs::backends_toml(&[&a, &b, &c]));
    let http = client();
    for i in 1..=5 {
        let created = http
            .post(format!("{}/accounts", g.url()))
            .body(format!(r#"{{"owner":"o{i}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        // The primary built it from its own address; the client gets the gateway's.
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(location, format!("http://{}/accounts/{i}", g.gateway));
        until_done(
            &http,
            &g.url(),
            &format!("/accounts/{i}/deposit"),
            &format!("d{i}"),
            r#"{"amount":5}"#,
        )
        .await;
    }
    let s = status(&g).await;
    for name in ["b", "c"] {
        assert_eq!(state(&s, name), "in-sync", "{s}");
    }
    let expected = accounts_at(&http, &a.url()).await;
    assert_eq!(expected.matches("\"owner\"").count(), 5, "{expected}");
    for copy in [&b, &c] {
        assert_eq!(accounts_at(&http, &copy.url()).await, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_noise_finder_learns_what_differs_and_flags_what_looks_real() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start_with("a", "sqlite", dir.path(), &["--noise"]);
    // b drifts for real after three writes: each deposit credits one more.
    let b = DemoProc::start_with(
        "b",
        "memory",
        dir.path(),
        &["--noise", "--diverge-after", "3"],
    );
    let c = DemoProc::start_with("c", "sqlite", dir.path(), &["--noise"]);
    // Asking to compare the per-instance headers makes them differ on every answer.
    let g = GatewayProc::start(
        dir.path(),
        "batch",
        &format!(
            "[noise]\nlearn_answers = 1000\n\n[[routes]]\nmatch = \"POST /accounts/{{id}}/deposit\"\ncompare = {{ headers = [\"etag\", \"x-generated-at\", \"x-served-by\"] }}\n{}",
            procs::backends_toml(&[&a, &b, &c])
        ),
    );
    let (code, table) = lockstep(&g, &["status"]);
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("learning noise: differences are recorded and no backup is ejected"),
        "{table}"
    );

    let http = client();
    until_done(&http, &g.url(), "/accounts", "open", r#"{"owner":"ada"}"#).await;
    for i in 0..10 {
        until_done(
            &http,
            &g.url(),
            "/accounts/1/deposit",
            &format!("d{i}"),
            r#"{"amount":2}"#,
        )
        .await;
    }
    // Learning: nobody was ejected, b's drift included.
    let s = status(&g).await;
    assert_eq!(s["learning_noise"], true, "{s}");
    assert_eq!(
        (state(&s, "b"), state(&s, "c")),
        ("in-sync".into(), "in-sync".into()),
        "{s}"
    );

    let (code, out) = lockstep(&g, &["noise", "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["answers"], 22,
        "an open and 10 deposits, two backups: {report}"
    );
    let route = report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "POST /accounts/{id}/deposit")
        .unwrap_or_else(|| panic!("{report}"));
    let place = |name: &str| {
        route["places"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["place"] == name)
            .unwrap_or_else(|| panic!("no {name}: {route}"))
            .clone()
    };
    let expect = |name: &str, kind: &str, count: u64, suspicious: bool, rule: &str| {
        let p = place(name);
        assert_eq!(p["kind"], kind, "{p}");
        assert_eq!(p["count"], count, "{p}");
        assert_eq!(p["suspicious"], suspicious, "{p}");
        assert_eq!(p["rule"], rule, "{p}");
    };
    expect(
        "header etag",
        "token",
        20,
        false,
        "compare = { noise = [\"token\"] }",
    );
    expect(
        "header x-generated-at",
        "timestamp",
        20,
        false,
        "compare = { noise = [\"timestamp\"] }",
    );
    // Each copy's own address is one value: never a difference.
    assert!(
        !route["places"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["place"] == "header x-served-by"),
        "{route}"
    );
    // b's eight drifted deposits (after its first three writes: the open and two deposits), of
    // twenty answers: a counter is no minted value, so it is flagged.
    let balance = place("body at /balance");
    assert_eq!(balance["kind"], "counter", "{balance}");
    assert_eq!(balance["suspicious"], true, "{balance}");
    assert_eq!(balance["count"], 8, "{balance}");

    let (code, text) = lockstep(&g, &["noise"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("POST /accounts/{id}/deposit"), "{text}");
    assert!(text.contains("body at /balance"), "{text}");
    assert!(text.contains("LOOKS LIKE A REAL DIVERGENCE"), "{text}");

    // Learning over: the next difference ejects, and the detail names the rule that would
    // silence it (the headers this route asked for differ on every answer: an entity tag).
    let (code, out) = lockstep(&g, &["noise", "--stop"]);
    assert_eq!(code, 0, "{out}");
    until_done(
        &http,
        &g.url(),
        "/accounts/1/deposit",
        "after",
        r#"{"amount":2}"#,
    )
    .await;
    for name in ["b", "c"] {
        let entry = eventually(
            &format!("{name} diverged"),
            Duration::from_secs(10),
            || async {
                let s = status(&g).await;
                let entry = s["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["name"] == name)
                    .cloned()
                    .unwrap();
                (entry["state"] == "diverged").then_some(entry)
            },
        )
        .await;
        let detail = entry["detail"].as_str().unwrap();
        assert!(
            detail.contains(
                "header etag: primary \""
            ) && detail.ends_with(
                "; if this is noise, set on the route \"POST /accounts/{id}/deposit\": compare = { noise = [\"token\"] }"
            ),
            "{detail}"
        );
    }
}
