//! A copy that comes back must be proven, not trusted: real demo-bank processes behind the real
//! gateway binary. A backup is killed and started again empty (or from an old snapshot, or
//! restarted faster than the health checks notice), and the test checks what a user would: the
//! copy is not in-sync, `/status` says why and what to run, and after the primary is killed no
//! committed write is lost.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/procs.rs"]
mod procs;
#[path = "support/workload.rs"]
mod workload;

use std::path::Path;
use std::time::Duration;

use harness::eventually;
use procs::{DemoProc, GatewayProc};
use serde_json::Value;
use workload::{accounts_at, admin_call, client, until_done};

const LIMIT: Duration = Duration::from_secs(30);

/// The gateway's configuration for `demos` (the first is the primary), after `extra`.
fn config(demos: &[&DemoProc], extra: &str) -> String {
    format!(
        "[health]\ninterval = \"100ms\"\ntimeout = \"200ms\"\n{extra}\n\n[replication]\nbackup_timeout = \"2s\"\n{}",
        procs::backends_toml(demos)
    )
}

const PROBES: &str = "\n[[verify.probes]]\nrequest = \"GET /accounts\"\n";

async fn status(g: &GatewayProc) -> Value {
    admin_call(g.admin, reqwest::Method::GET, "/status", None)
        .await
        .1
}

fn backend<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap()
}

/// Waits until `name` is in `state`; returns its status entry.
async fn wait_state(g: &GatewayProc, name: &str, state: &str) -> Value {
    eventually(&format!("{name} {state}"), LIMIT, || async {
        let s = status(g).await;
        let b = backend(&s, name).clone();
        (b["state"] == state).then_some(b)
    })
    .await
}

/// Waits until `name` has left `state`; returns its status entry.
async fn wait_not(g: &GatewayProc, name: &str, state: &str) -> Value {
    eventually(&format!("{name} no longer {state}"), LIMIT, || async {
        let s = status(g).await;
        let b = backend(&s, name).clone();
        (b["state"] != state).then_some(b)
    })
    .await
}

/// One account holding 7, committed on every copy.
async fn seed(g: &GatewayProc) {
    let c = client();
    let base = g.url();
    until_done(&c, &base, "/accounts", "open-1", r#"{"owner":"ada"}"#).await;
    until_done(&c, &base, "/accounts/1/deposit", "dep-1", r#"{"amount":7}"#).await;
}

/// Kills the primary, sends one more deposit of 1 and checks the account holds 8 through the
/// gateway and on every survivor that is in-sync.
async fn primary_dies_and_nothing_is_lost(
    g: &GatewayProc,
    primary: &mut DemoProc,
    survivors: &[&DemoProc],
) {
    primary.kill();
    let c = client();
    until_done(
        &c,
        &g.url(),
        "/accounts/1/deposit",
        "dep-2",
        r#"{"amount":1}"#,
    )
    .await;
    let through: Value = serde_json::from_str(&accounts_at(&c, &g.url()).await).unwrap();
    assert_eq!(
        through[0]["balance"], 8,
        "committed writes survive: {through}"
    );
    let s = status(g).await;
    assert_ne!(s["primary"], primary.name.as_str());
    for d in survivors {
        if backend(&s, &d.name)["state"] == "in-sync" {
            let view: Value = serde_json::from_str(&accounts_at(&c, &d.url()).await).unwrap();
            assert_eq!(view, through, "{} is in-sync and holds the history", d.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restarted_empty_is_diverged_and_never_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = DemoProc::start("a", "memory", dir.path());
    let mut b = DemoProc::start("b", "memory", dir.path());
    let c = DemoProc::start("c", "memory", dir.path());
    let g = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b, &c], PROBES));
    seed(&g).await;

    b.kill();
    wait_state(&g, "b", "down").await;
    // A new, empty instance on b's address.
    b.restart();
    let back = wait_not(&g, "b", "down").await;
    assert_eq!(back["state"], "diverged", "{back}");
    let detail = back["detail"].as_str().unwrap();
    assert!(detail.contains("view differs"), "{detail}");
    assert!(
        detail.contains("lockstep backend rejoin b --reset"),
        "{detail}"
    );

    primary_dies_and_nothing_is_lost(&g, &mut a, &[&b, &c]).await;
    let s = status(&g).await;
    assert_eq!(s["primary"], "c", "the proven copy took over");
    assert_eq!(backend(&s, "c")["state"], "in-sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_probes_a_copy_that_comes_back_waits_for_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let mut b = DemoProc::start("b", "memory", dir.path());
    let c = DemoProc::start("c", "memory", dir.path());
    let g = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b, &c], ""));
    seed(&g).await;
    b.kill();
    wait_state(&g, "b", "down").await;
    b.restart();
    let back = wait_not(&g, "b", "down").await;
    assert_eq!(back["state"], "lagging", "{back}");
    let detail = back["detail"].as_str().unwrap();
    assert!(
        detail.contains("[[verify.probes]]") && detail.contains("lockstep backend rejoin b"),
        "{detail}"
    );
    // `lockstep status` says it too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["status", "--admin", &format!("http://{}", g.admin)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("b is lagging: reachable again"), "{table}");
}

/// Copies every file of `from` into `to` (a snapshot of a stopped sqlite copy).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_from_an_old_snapshot_is_diverged() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = DemoProc::start("a", "memory", dir.path());
    let mut b = DemoProc::start("b", "sqlite", dir.path());
    let c = DemoProc::start("c", "memory", dir.path());
    let g = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b, &c], PROBES));
    let cl = client();
    until_done(&cl, &g.url(), "/accounts", "open-1", r#"{"owner":"ada"}"#).await;
    // b's files as they are now: one account, balance 0.
    b.kill();
    let snapshot = dir.path().join("b-snapshot");
    copy_dir(&b.data, &snapshot);
    b.restart();
    wait_not(&g, "b", "down").await;
    let rejoined = admin_call(g.admin, reqwest::Method::POST, "/backends/b/rejoin", None).await;
    assert!(rejoined.0 == 200 || rejoined.0 == 409, "{rejoined:?}");
    wait_state(&g, "b", "in-sync").await;
    until_done(
        &cl,
        &g.url(),
        "/accounts/1/deposit",
        "dep-1",
        r#"{"amount":7}"#,
    )
    .await;

    // Later, b is restored from the old snapshot: it misses the deposit but thinks it is whole.
    b.kill();
    wait_state(&g, "b", "down").await;
    std::fs::remove_dir_all(&b.data).unwrap();
    copy_dir(&snapshot, &b.data);
    b.restart();
    let back = wait_not(&g, "b", "down").await;
    assert_eq!(back["state"], "diverged", "{back}");
    primary_dies_and_nothing_is_lost(&g, &mut a, &[&b, &c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_faster_than_the_health_checks_is_caught_by_its_boot_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = DemoProc::start("a", "memory", dir.path());
    let mut b = DemoProc::start("b", "memory", dir.path());
    let c = DemoProc::start("c", "memory", dir.path());
    // Health checks that would need a minute of failures to notice anything.
    let extra = "unhealthy_after = 600\nidentity_header = \"X-Boot-Id\"\n";
    let g = GatewayProc::start(
        dir.path(),
        "batch",
        &(config(&[&a, &b, &c], extra) + PROBES),
    );
    seed(&g).await;
    b.restart();
    let back = wait_not(&g, "b", "in-sync").await;
    let back = if back["state"] == "suspect" {
        wait_not(&g, "b", "suspect").await
    } else {
        back
    };
    assert_eq!(back["state"], "diverged", "{back}");
    assert!(
        back["detail"].as_str().unwrap().contains("restarted"),
        "{back}"
    );

    // The primary restarted empty the same way: replaced at once, nothing lost.
    a.restart();
    let s = eventually("a replaced", LIMIT, || async {
        let s = status(&g).await;
        (s["primary"] != "a").then_some(s)
    })
    .await;
    assert_eq!(s["primary"], "c");
    assert_ne!(backend(&s, "a")["state"], "in-sync");
    let cl = client();
    until_done(
        &cl,
        &g.url(),
        "/accounts/1/deposit",
        "dep-2",
        r#"{"amount":1}"#,
    )
    .await;
    let through: Value = serde_json::from_str(&accounts_at(&cl, &g.url()).await).unwrap();
    assert_eq!(through[0]["balance"], 8, "{through}");
}
