//! The `lockstep-load` binary: the JSON report, exit codes, and `verify` against a mock admin
//! listener that answers both shapes of `GET /verify`.

#[path = "support/server.rs"]
mod support;

use std::io::Write as _;
use std::process::Output;

use support::{Reply, Seen, start};
use tokio::process::Command;

async fn lockstep_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep-load"))
        .args(args)
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_has_every_field() {
    let server = start(|_: &Seen, _: &[Seen]| Reply::status(200, "{}")).await;
    let url = server.url();
    let output = lockstep_load(&["run", &url, "-c", "4", "-n", "200", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["requests"], 200);
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["connections"], 4);
    assert!(report["rate"].is_null());
    assert!(report["duration_s"].as_f64().unwrap() > 0.0);
    assert!(report["throughput_rps"].as_f64().unwrap() > 0.0);
    for field in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(
            report["latency_ms"][field].as_f64().unwrap() > 0.0,
            "latency_ms.{field}"
        );
    }
    for kind in [
        "connect",
        "write",
        "read",
        "timeout",
        "malformed",
        "4xx",
        "5xx",
    ] {
        assert_eq!(report["errors"][kind], 0, "errors.{kind}");
    }
    assert_eq!(report["retries"], 0);
    assert_eq!(report["status_counts"]["200"], 200);
    assert_eq!(server.seen().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_the_default_subcommand_and_open_loop_reports_its_rate() {
    let server = start(|_: &Seen, _: &[Seen]| Reply::status(200, "{}")).await;
    let url = server.url();
    let output = lockstep_load(&[&url, "--rate", "500", "-n", "50", "--json", "-t", "2"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["mode"], "open");
    assert_eq!(report["rate"], 500.0);
    assert_eq!(report["threads"], 2);
    assert_eq!(report["requests"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readable_summary_and_mix_file() {
    let server = start(|_: &Seen, _: &[Seen]| Reply::status(201, "{}")).await;
    let mut mix = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        mix,
        r#"
[[request]]
method = "POST"
path = "/accounts"
body = '{{"owner": "u{{counter}}"}}'
"#
    )
    .unwrap();
    let url = server.url();
    let mix_path = mix.path().to_str().unwrap();
    let output = lockstep_load(&["run", &url, "-n", "10", "-c", "1", "--mix", mix_path]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("closed loop, 1 connections"), "{text}");
    assert!(text.contains("requests   10 in"), "{text}");
    assert!(text.contains("statuses   201: 10"), "{text}");
    assert!(text.contains("errors     none"), "{text}");
    let bodies: Vec<String> = server.seen().into_iter().map(|s| s.body).collect();
    assert_eq!(bodies[0], r#"{"owner": "u0"}"#);
    assert_eq!(bodies[9], r#"{"owner": "u9"}"#);
}

#[tokio::test]
async fn invalid_configuration_exits_64_and_says_what_to_fix() {
    let output = lockstep_load(&["run", "http://127.0.0.1:1/", "--path", "/a/{id}"]).await;
    assert_eq!(output.status.code(), Some(64));
    let err = stderr(&output);
    assert!(err.starts_with("invalid configuration: "), "{err}");
    assert!(err.contains("unknown placeholder `{id}`"), "{err}");

    let output = lockstep_load(&["run", "https://127.0.0.1:1/"]).await;
    assert_eq!(output.status.code(), Some(64));
    assert!(stderr(&output).contains("plain HTTP/1.1"));
}

#[tokio::test]
async fn unreachable_target_exits_2() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let output = lockstep_load(&["run", &format!("http://{addr}/"), "-n", "1"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot connect"),
        "{}",
        stderr(&output)
    );
}

const EQUAL: &str = r#"{"equal": true, "primary": "a", "backends": [
    {"name": "b", "implementation": "v1", "equal": true, "differences": []}]}"#;

const DIFFERS: &str = r#"{"equal": false, "primary": "a", "backends": [
    {"name": "b", "implementation": "v1", "equal": true, "differences": []},
    {"name": "c", "implementation": "v2", "equal": false, "differences": [
        {"probe": "GET /accounts", "difference": "body at /0/balance: primary 10, backup 12"}]}]}"#;

/// A mock admin listener: `/verify` answers `body` to requests with the bearer token `secret`
/// and the lockstep error shape with 401 to the others.
async fn admin(body: &'static str) -> support::Server {
    start(move |seen: &Seen, _: &[Seen]| {
        if seen.path != "/verify" || seen.method != "GET" {
            return Reply::status(404, r#"{"error":"not_found","detail":"no such endpoint"}"#);
        }
        if seen.authorization.as_deref() != Some("Bearer secret") {
            return Reply::status(
                401,
                r#"{"error":"unauthorized","detail":"send the admin token as `Authorization: Bearer TOKEN`"}"#,
            );
        }
        Reply::status(200, body)
    })
    .await
}

fn token_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "secret").unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_0_when_every_backend_is_equal() {
    let server = admin(EQUAL).await;
    let token = token_file();
    let url = server.url();
    let output = lockstep_load(&[
        "verify",
        "--admin",
        &url,
        "--token-file",
        token.path().to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("backend b (v1): equal"), "{text}");
    assert!(
        text.contains("every backend shows the primary's view"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_1_and_shows_the_differences() {
    let server = admin(DIFFERS).await;
    let token = token_file();
    let url = server.url();
    let output = lockstep_load(&[
        "verify",
        "--admin",
        &url,
        "--token-file",
        token.path().to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("backend c (v2): DIFFERS"), "{text}");
    assert!(
        text.contains("  GET /accounts: body at /0/balance: primary 10, backup 12"),
        "{text}"
    );
    assert!(text.contains("1 of 2 backends differ"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_2_on_an_error_answer() {
    let server = admin(EQUAL).await;
    let url = server.url();
    let output = lockstep_load(&["verify", "--admin", &url]).await;
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("answered 401: unauthorized"), "{err}");
    assert!(err.contains("Authorization: Bearer TOKEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_2_when_the_call_fails() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let output = lockstep_load(&["verify", "--admin", &format!("http://{addr}")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot reach the admin listener"));

    let output = lockstep_load(&[
        "verify",
        "--admin",
        &format!("http://{addr}"),
        "--token-file",
        "/nonexistent/token",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot use token file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_2_on_an_answer_of_the_wrong_shape() {
    let server = start(|_: &Seen, _: &[Seen]| Reply::status(200, r#"{"status":"ok"}"#)).await;
    let url = server.url();
    let output = lockstep_load(&["verify", "--admin", &url]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not a verify report"));
}
