//! The built `lockstep-demo` binary, as a test harness or the demo script runs it: the
//! `listening on` line, flags, restarts and signals.

#[path = "support/http.rs"]
mod support;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use support::send;

/// A running `lockstep-demo` process and the base URL it announced.
struct Process {
    child: Child,
    url: String,
}

/// Starts the binary with `args` and waits for its `listening on ADDR` line.
async fn launch(args: &[&str]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-demo"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("stdout is readable")
        .expect("the binary prints a line before exiting");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let port: u16 = addr
        .strip_prefix("127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("not a loopback address: {addr:?}"));
    assert_ne!(port, 0, "the line must carry the real bound port");
    Process {
        child,
        url: format!("http://{addr}"),
    }
}

impl Process {
    /// Sends SIGTERM and returns once the process has exited; asserts it exited cleanly.
    async fn terminate(mut self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().await.expect("process is reaped");
        assert!(exit.success(), "exited with {exit:?} after SIGTERM");
    }
}

#[tokio::test]
async fn announces_its_real_port_and_serves_health() {
    let process = launch(&["--implementation", "memory"]).await;
    let client = reqwest::Client::new();
    let health = send(&client, &process.url, "GET", "/health", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), r#"{"status":"ok"}"#);
    process.terminate().await;
}

#[tokio::test]
async fn sqlite_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("bank");
    let data = data.to_str().expect("utf-8 temp path");
    let args = ["--implementation", "sqlite", "--data", data];

    let first = launch(&args).await;
    let client = reqwest::Client::new();
    send(
        &client,
        &first.url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    let deposit = send(
        &client,
        &first.url,
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":42}"#),
    )
    .await;
    assert_eq!(deposit.status, 200);
    first.terminate().await;

    let second = launch(&args).await;
    let client = reqwest::Client::new();
    let account = send(&client, &second.url, "GET", "/accounts/1", None).await;
    assert_eq!(account.text(), r#"{"id":1,"owner":"ada","balance":42}"#);
    let next = send(
        &client,
        &second.url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"bob"}"#),
    )
    .await;
    assert_eq!(next.text(), r#"{"id":2,"owner":"bob","balance":0}"#);
    second.terminate().await;
}

#[tokio::test]
async fn diverge_after_flag_makes_deposits_drift() {
    let process = launch(&["--implementation", "memory", "--diverge-after", "1"]).await;
    let client = reqwest::Client::new();
    send(
        &client,
        &process.url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    let deposit = send(
        &client,
        &process.url,
        "POST",
        "/accounts/1/deposit",
        Some(r#"{"amount":5}"#),
    )
    .await;
    assert_eq!(deposit.text(), r#"{"id":1,"owner":"ada","balance":6}"#);
    process.terminate().await;
}

#[tokio::test]
async fn admin_endpoints_copy_a_bank_between_implementations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().expect("utf-8 temp path");
    let memory = launch(&["--implementation", "memory"]).await;
    let sqlite = launch(&["--implementation", "sqlite", "--data", data]).await;
    let client = reqwest::Client::new();
    send(
        &client,
        &memory.url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    send(
        &client,
        &sqlite.url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"bob"}"#),
    )
    .await;

    let reset = send(&client, &sqlite.url, "POST", "/admin/reset", None).await;
    assert_eq!(reset.status, 204);
    let export = send(&client, &memory.url, "GET", "/admin/export", None).await;
    assert_eq!(
        export.text(),
        r#"{"next_id":2,"accounts":[{"id":1,"owner":"ada","balance":0}]}"#
    );
    let import = send(
        &client,
        &sqlite.url,
        "POST",
        "/admin/import",
        Some(&export.text()),
    )
    .await;
    assert_eq!(import.status, 204);
    let copied = send(&client, &sqlite.url, "GET", "/admin/export", None).await;
    assert_eq!(copied, export);
    let stats = send(&client, &sqlite.url, "GET", "/stats", None).await;
    assert_eq!(stats.text(), r#"{"requests":5,"writes":3}"#);
    memory.terminate().await;
    sqlite.terminate().await;
}

#[tokio::test]
async fn sqlite_without_a_data_dir_is_an_invalid_configuration() {
    let output = Command::new(env!("CARGO_BIN_EXE_lockstep-demo"))
        .args(["--listen", "127.0.0.1:0", "--implementation", "sqlite"])
        .output()
        .await
        .expect("binary runs");
    assert_eq!(output.status.code(), Some(64));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("invalid configuration: "), "{stderr}");
}

#[tokio::test]
async fn ids_flag_makes_ids_random_and_a_data_directory_keeps_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().expect("utf-8 temp path");
    let random = [
        "--implementation",
        "sqlite",
        "--data",
        data,
        "--ids",
        "random",
    ];
    let process = launch(&random).await;
    let client = reqwest::Client::new();
    let opened = send(
        &client,
        &process.url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    let id: serde_json::Value = serde_json::from_slice(&opened.body).unwrap();
    let id = id["id"]
        .as_str()
        .expect("a random id is a string")
        .to_owned();
    assert_eq!(id.len(), 16, "{id}");
    process.terminate().await;

    let again = launch(&random).await;
    let shown = send(&client, &again.url, "GET", &format!("/accounts/{id}"), None).await;
    assert_eq!(shown.status, 200, "the same id after a restart");
    again.terminate().await;

    let output = Command::new(env!("CARGO_BIN_EXE_lockstep-demo"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--implementation",
            "sqlite",
            "--data",
            data,
        ])
        .output()
        .await
        .expect("binary runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("invalid configuration: ") && stderr.contains("--ids random"),
        "{stderr}"
    );
}

#[tokio::test]
async fn help_describes_the_ids_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_lockstep-demo"))
        .arg("--help")
        .output()
        .await
        .expect("binary runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--ids <IDS>"), "{help}");
    assert!(
        help.contains("sequential") && help.contains("random"),
        "{help}"
    );
    assert!(help.contains("16 hex digits"), "{help}");
}

#[tokio::test]
async fn noise_names_a_new_account_by_its_random_id() {
    let process = launch(&["--implementation", "memory", "--ids", "random", "--noise"]).await;
    let client = reqwest::Client::new();
    let opened = send(
        &client,
        &process.url,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada"}"#),
    )
    .await;
    let body: serde_json::Value = serde_json::from_slice(&opened.body).unwrap();
    let id = body["id"].as_str().expect("a random id is a string");
    assert_eq!(
        opened.header("location"),
        Some(format!("{}/accounts/{id}", process.url))
    );
    process.terminate().await;
}
