//! The dashboard on the admin listener, in a real browser: headless Chromium, driven by
//! playwright-core from `tests/dashboard/dashboard.mjs`, asks for the admin token, shows the
//! backends and follows a switchover live. `scripts/test` installs Chromium, Node.js and the
//! script's packages.

#[path = "support/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harness::*;
use lockstep_demo::{Faults, Implementation};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "dashboard-s3cret";
/// Chromium's first start on a busy machine is slow; the script's own waits are 30 s each.
const READY_LIMIT: Duration = Duration::from_secs(180);
const RESULT_LIMIT: Duration = Duration::from_secs(90);

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard")
}

/// Fails (never skips) when something the browser test needs is missing.
fn check_prerequisites() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the dashboard test needs Debian's chromium package; \
         scripts/test installs it (as root: apt-get install chromium)"
    );
    match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`node --version` failed ({}): the dashboard test needs Node.js; scripts/test installs it",
            o.status
        ),
        Err(e) => panic!(
            "node is not installed or not on PATH ({e}): the dashboard test needs Node.js; \
             scripts/test installs it"
        ),
    }
    let module = script_dir().join("node_modules/playwright-core/package.json");
    assert!(
        module.exists(),
        "playwright-core is not installed in gateway/tests/dashboard: scripts/test installs it \
         (or run `npm ci --no-audit --no-fund` there)"
    );
}

/// The next line of the script's stdout that starts with `tag`, as JSON; other lines are
/// passed through.
async fn tagged_line(
    lines: &mut Lines<BufReader<ChildStdout>>,
    tag: &str,
    limit: Duration,
    stderr: &tokio::sync::watch::Receiver<String>,
) -> Value {
    let prefix = format!("{tag} ");
    let found = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await.expect("the script's stdout") {
            if let Some(json) = line.strip_prefix(&prefix) {
                return Some(json.to_owned());
            }
            eprintln!("dashboard.mjs: {line}");
        }
        None
    })
    .await;
    match found {
        Ok(Some(json)) => serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("the script's {tag} line is not JSON ({e}): {json}")),
        Ok(None) => {
            // Give the stderr reader a moment to drain what the script said before exiting.
            let mut stderr = stderr.clone();
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                stderr.wait_for(|s| s.ends_with('\0')),
            )
            .await;
            panic!(
                "the dashboard script ended before printing {tag}; it said:\n{}",
                stderr.borrow().trim_end_matches('\0')
            )
        }
        Err(_) => panic!(
            "no {tag} line from the dashboard script within {limit:?}; it said:\n{}",
            stderr.borrow().trim_end_matches('\0')
        ),
    }
}

/// Waits until the status shows `seq` as the last seq, committed, and acked by every backend,
/// all in-sync; returns it.
async fn settled_status(c: &reqwest::Client, admin: &str, seq: u64) -> Value {
    eventually(
        &format!("every backend to ack seq {seq}"),
        Duration::from_secs(20),
        || async move {
            let s: Value = c
                .get(format!("{admin}/status"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let settled = s["last_seq"] == seq
                && s["committed_seq"] == seq
                && s["backends"]
                    .as_array()?
                    .iter()
                    .all(|b| b["acked_seq"] == seq && b["state"] == "in-sync");
            settled.then_some(s)
        },
    )
    .await
}

fn row<'a>(seen: &'a Value, name: &str) -> &'a Value {
    seen["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no row for {name} in {seen}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_asks_for_the_token_and_follows_a_switchover() {
    check_prerequisites();

    let banks = [
        Bank::start(Implementation::Memory, Faults::default()).await,
        Bank::start(Implementation::Memory, Faults::default()).await,
        Bank::start(Implementation::Sqlite, Faults::default()).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut config = format!("[admin]\ntoken_file = \"{}\"\n", token_file.display());
    for (i, ((name, implementation), bank)) in [("a", "memory"), ("b", "memory"), ("c", "sqlite")]
        .iter()
        .zip(&banks)
        .enumerate()
    {
        let role = if i == 0 { "primary" } else { "backup" };
        config.push_str(&format!(
            "\n[[backends]]\nname = \"{name}\"\nurl = \"{}\"\nrole = \"{role}\"\nimplementation = \"{implementation}\"\n",
            bank.url
        ));
    }
    let gw = start_gateway(&config);
    let c = client();

    // A few writes through the gateway.
    let mut last_seq = 0;
    for (path, body) in [
        ("/accounts", r#"{"owner":"ada"}"#),
        ("/accounts/1/deposit", r#"{"amount":70}"#),
        ("/accounts/1/withdraw", r#"{"amount":20}"#),
    ] {
        let r = post_json(&c, format!("http://{}{path}", gw.gateway), body).await;
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
        last_seq = r.headers()["lockstep-sequence"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    let admin = format!("http://{}", gw.admin);
    // Every backend has acked every write: the page must show exactly this.
    let status = settled_status(&c, &admin, last_seq).await;
    let expected = json!({
        "primary": "a",
        "last_seq": last_seq,
        "backends": status["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| json!({
                "name": b["name"],
                "role": b["role"],
                "state": b["state"],
                "implementation": b["implementation"],
                "acked_seq": b["acked_seq"],
            }))
            .collect::<Vec<_>>(),
    });

    let mut script = Command::new("node")
        .arg("dashboard.mjs")
        .arg(&admin)
        .arg(expected.to_string())
        .env("LOCKSTEP_ADMIN_TOKEN", TOKEN)
        .current_dir(script_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    // The script's stderr, collected for failure messages; a NUL marks its end.
    let (said, stderr) = tokio::sync::watch::channel(String::new());
    let mut err_pipe = script.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            match err_pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => said.send_modify(|s| s.push_str(&String::from_utf8_lossy(&buf[..n]))),
            }
        }
        said.send_modify(|s| s.push('\0'));
    });

    let ready = tagged_line(&mut lines, "READY", READY_LIMIT, &stderr).await;
    assert_eq!(ready["primary"], "a", "{ready}");
    assert_eq!(ready["health"], "healthy", "{ready}");

    // A switchover and one more write while the page watches.
    let promoted = c
        .post(format!("{admin}/backends/b/promote"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(promoted.status(), 200, "{}", promoted.text().await.unwrap());
    let r = post_json(
        &c,
        format!("http://{}/accounts/1/deposit", gw.gateway),
        r#"{"amount":5}"#,
    )
    .await;
    assert!(r.status().is_success(), "a write after the switchover");
    assert_eq!(r.headers()["lockstep-primary"], "b");
    let new_seq: u64 = r.headers()["lockstep-sequence"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_seq > last_seq);
    settled_status(&c, &admin, new_seq).await;
    let mut stdin = script.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\n", json!({ "primary": "b", "last_seq": new_seq })).as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();

    let seen = tagged_line(&mut lines, "RESULT", RESULT_LIMIT, &stderr).await;
    let exit = tokio::time::timeout(Duration::from_secs(30), script.wait())
        .await
        .expect("the script exits after its result")
        .unwrap();
    assert!(
        exit.success(),
        "the dashboard script failed ({exit}):\n{}",
        stderr.borrow().trim_end_matches('\0')
    );

    eprintln!("when ready, the page showed: {ready}\nat the end: {seen}");

    // Before: the token form, a wrong token refused, the token kept for the tab.
    assert_eq!(seen["token_form_shown"], true, "{seen}");
    assert!(
        seen["wrong_token_message"]
            .as_str()
            .is_some_and(|m| m.contains("refused")),
        "{seen}"
    );
    assert_eq!(seen["token_kept"], true, "{seen}");
    assert_eq!(
        ready["backends"],
        json!([
            {"name": "a", "role": "primary", "state": "in-sync", "implementation": "memory",
             "acked_seq": last_seq.to_string(), "lag": "0", "url": row(&ready, "a")["url"]},
            {"name": "b", "role": "backup", "state": "in-sync", "implementation": "memory",
             "acked_seq": last_seq.to_string(), "lag": "0", "url": row(&ready, "b")["url"]},
            {"name": "c", "role": "backup", "state": "in-sync", "implementation": "sqlite",
             "acked_seq": last_seq.to_string(), "lag": "0", "url": row(&ready, "c")["url"]},
        ]),
        "{ready}"
    );
    for (i, bank) in banks.iter().enumerate() {
        let url = ready["backends"][i]["url"].as_str().unwrap();
        assert!(
            url.trim_end_matches('/') == bank.url.trim_end_matches('/'),
            "{url} vs {}",
            bank.url
        );
    }

    // After: b is the primary, the event is listed, the new last seq is shown acked by every
    // backend, the stream stayed live and the page made no request but to the admin listener.
    assert_eq!(seen["primary"], "b", "{seen}");
    assert_eq!(seen["last_seq"], new_seq.to_string(), "{seen}");
    assert_eq!(seen["committed_seq"], new_seq.to_string(), "{seen}");
    for name in ["a", "b", "c"] {
        let r = row(&seen, name);
        assert_eq!(
            (r["acked_seq"].as_str(), r["lag"].as_str()),
            (Some(new_seq.to_string().as_str()), Some("0")),
            "{seen}"
        );
    }
    assert_eq!(row(&seen, "b")["role"], "primary", "{seen}");
    assert_eq!(row(&seen, "a")["role"], "backup", "{seen}");
    assert_eq!(row(&seen, "c")["role"], "backup", "{seen}");
    assert_eq!(seen["connection"], "live", "{seen}");
    let epoch_before: u64 = ready["epoch"].as_str().unwrap().parse().unwrap();
    let epoch_after: u64 = seen["epoch"].as_str().unwrap().parse().unwrap();
    assert!(epoch_after > epoch_before, "{seen}");
    let changed = seen["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "primary-changed")
        .unwrap_or_else(|| panic!("no primary-changed event listed: {seen}"));
    assert_eq!(changed["backend"], "b", "{seen}");
    assert!(
        !changed["detail"].as_str().unwrap_or("").is_empty(),
        "{seen}"
    );
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    assert_eq!(seen["outside_requests"], json!([]), "{seen}");

    gw.stop().await;
}
