//! Adding and removing backends while traffic flows, with real processes: the demo bank in both
//! implementations behind the `lockstep` binary. What is checked is what an operator would
//! check: the balances on every backend, the views the gateway compares, the topology after a
//! restart.

#[path = "support/procs.rs"]
mod procs;
#[path = "support/workload.rs"]
mod workload;

use procs::{DemoProc, GatewayProc};
use reqwest::Method;
use serde_json::{Value, json};
use workload::{Writers, accounts_at, admin_call, assert_balances, client, until_done};

const WRITERS: usize = 4;

/// Config for `demos` (the first is the primary): per-account lanes, a view probe.
fn config(demos: &[&DemoProc], extra: &str) -> String {
    let mut s = format!(
        "[health]\ninterval = \"100ms\"\ntimeout = \"200ms\"\n\n[replication]\nbackup_timeout = \"2s\"\n\n[catchup]\nfence_lag = 16\nbatch = 64\n\n[[routes]]\nmatch = \"POST /accounts/{{id}}/**\"\nlane = \"{{id}}\"\n\n[[verify.probes]]\nrequest = \"GET /accounts\"\n{extra}\n"
    );
    for (i, d) in demos.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "backup" };
        s.push_str(&format!(
            "\n[[backends]]\nname = \"{}\"\nurl = \"{}\"\nrole = \"{role}\"\nimplementation = \"{}\"\n",
            d.name,
            d.url(),
            d.implementation
        ));
    }
    s
}

async fn add(g: &GatewayProc, d: &DemoProc, checkpoint: Option<bool>) -> (u16, Value) {
    let mut body = json!({ "name": d.name, "url": d.url(), "implementation": d.implementation });
    if let Some(c) = checkpoint {
        body["checkpoint"] = c.into();
    }
    admin_call(g.admin, Method::POST, "/backends", Some(body)).await
}

async fn status(g: &GatewayProc) -> Value {
    admin_call(g.admin, Method::GET, "/status", None).await.1
}

fn backend<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
}

fn names(status: &Value) -> Vec<String> {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backends_added_under_load_catch_up_verify_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "sqlite", dir.path());
    let mut gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b], ""));
    let writers = Writers::start(&gw.url(), WRITERS, "add").await;
    writers.wait_for(100).await;

    // Two new, empty instances, one of each implementation, join while the writers go on.
    let cc = DemoProc::start("c", "sqlite", dir.path());
    let d = DemoProc::start("d", "memory", dir.path());
    for new in [&cc, &d] {
        let before = writers.progress.load(std::sync::atomic::Ordering::Relaxed);
        let (code, report) = add(&gw, new, None).await;
        assert_eq!(code, 200, "add {}: {report}", new.name);
        assert!(report["replayed"].as_u64().unwrap() >= 100, "{report}");
        assert_eq!(report["from"], 1, "an empty backend replays from the start");
        assert!(report["pause_ms"].is_u64(), "{report}");
        // Traffic flowed during the join.
        writers.wait_for(before + 20).await;
    }
    let deposits = writers.stop().await;

    let c = client();
    let s = status(&gw).await;
    for (name, implementation) in [
        ("a", "memory"),
        ("b", "sqlite"),
        ("c", "sqlite"),
        ("d", "memory"),
    ] {
        let entry = backend(&s, name).unwrap();
        assert_eq!(
            (entry["state"].as_str(), entry["implementation"].as_str()),
            (Some("in-sync"), Some(implementation)),
            "{s}"
        );
    }
    let joins = s["joins"].as_array().unwrap();
    for name in ["c", "d"] {
        let j = joins.iter().find(|j| j["backend"] == name).expect("kept");
        assert_eq!(j["phase"], "in-sync", "{j}");
        assert!(j["pause_ms"].is_u64(), "the pause is kept in status: {j}");
    }
    for demo in [&a, &b, &cc, &d] {
        assert_balances(&accounts_at(&c, &demo.url()).await, &deposits, &demo.name);
    }
    let (code, verify) = admin_call(gw.admin, Method::GET, "/verify", None).await;
    assert_eq!((code, &verify["equal"]), (200, &json!(true)), "{verify}");
    assert_eq!(verify["backends"].as_array().unwrap().len(), 3);

    // b leaves; the next write reaches c and d but not b.
    let (code, removed) = admin_call(gw.admin, Method::DELETE, "/backends/b", None).await;
    assert_eq!(code, 200, "{removed}");
    let b_before = accounts_at(&c, &b.url()).await;
    until_done(
        &c,
        &gw.url(),
        "/accounts/1/deposit",
        "after-remove",
        "{\"amount\":5}",
    )
    .await;
    assert_eq!(accounts_at(&c, &b.url()).await, b_before);
    let a_now = accounts_at(&c, &a.url()).await;
    assert_ne!(a_now, b_before);
    assert_eq!(accounts_at(&c, &cc.url()).await, a_now);
    assert_eq!(accounts_at(&c, &d.url()).await, a_now);
    let (code, e) = admin_call(gw.admin, Method::DELETE, "/backends/a", None).await;
    assert_eq!((code, e["error"].as_str()), (409, Some("conflict")), "{e}");

    // The membership is in the journal: after kill -9 and a restart with the same config
    // file (which still names b and not c or d), the gateway has a, c, d.
    gw.kill();
    gw.restart();
    let s = status(&gw).await;
    assert_eq!(names(&s), ["a", "c", "d"], "{s}");
    until_done(
        &c,
        &gw.url(),
        "/accounts/2/deposit",
        "after-restart",
        "{\"amount\":7}",
    )
    .await;
    let s = status(&gw).await;
    for name in ["c", "d"] {
        assert_eq!(backend(&s, name).unwrap()["state"], "in-sync", "{s}");
    }
    let a_now = accounts_at(&c, &a.url()).await;
    assert_eq!(accounts_at(&c, &cc.url()).await, a_now);
    assert_eq!(accounts_at(&c, &d.url()).await, a_now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_divergence_during_a_join_aborts_it_and_the_rest_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "sqlite", dir.path());
    let b = DemoProc::start("b", "memory", dir.path());
    let gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b], ""));
    let writers = Writers::start(&gw.url(), WRITERS, "div").await;
    writers.wait_for(40).await;
    // After 10 writes this one credits one unit too many on every deposit.
    let bad = DemoProc::start_with("e", "memory", dir.path(), &["--diverge-after", "10"]);
    let (code, report) = add(&gw, &bad, None).await;
    assert_eq!(
        (code, report["error"].as_str()),
        (409, Some("diverged")),
        "{report}"
    );
    let detail = report["detail"].as_str().unwrap();
    assert!(
        detail.contains("answered request") && detail.contains("balance"),
        "{detail}"
    );
    let deposits = writers.stop().await;

    let s = status(&gw).await;
    assert_eq!(backend(&s, "e").unwrap()["state"], "diverged", "{s}");
    assert_eq!(backend(&s, "a").unwrap()["state"], "in-sync", "{s}");
    assert_eq!(backend(&s, "b").unwrap()["state"], "in-sync", "{s}");
    let c = client();
    for demo in [&a, &b] {
        assert_balances(&accounts_at(&c, &demo.url()).await, &deposits, &demo.name);
    }
    // The verify report names what differs on e, and nothing on b.
    let (_, verify) = admin_call(gw.admin, Method::GET, "/verify?backend=b,e", None).await;
    assert_eq!(verify["equal"], false, "{verify}");
    let per: Vec<(&str, bool)> = verify["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["equal"].as_bool().unwrap()))
        .collect();
    assert_eq!(per, [("b", true), ("e", false)]);
    let differences = verify["backends"][1]["differences"].to_string();
    assert!(differences.contains("/balance"), "{differences}");

    // The operator removes it; the deployment is as before.
    let (code, _) = admin_call(gw.admin, Method::DELETE, "/backends/e", None).await;
    assert_eq!(code, 200);
    let (_, verify) = admin_call(gw.admin, Method::GET, "/verify", None).await;
    assert_eq!(verify["equal"], true, "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_additions_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "memory", dir.path());
    let gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b], ""));
    let cases = [
        (
            json!({"name": "b", "url": "http://127.0.0.1:1"}),
            409,
            "conflict",
        ),
        (json!({"name": "x", "url": b.url()}), 409, "conflict"),
        (
            json!({"name": "x", "url": "ftp://host"}),
            400,
            "bad_request",
        ),
        (
            json!({"name": "x y", "url": "http://127.0.0.1:1"}),
            400,
            "bad_request",
        ),
        (json!({"name": "x"}), 400, "bad_request"),
        (
            json!({"name": "x", "url": "http://127.0.0.1:1", "checkpoint": true}),
            409,
            "not_configured",
        ),
    ];
    for (body, code, error) in cases {
        let (got, answer) =
            admin_call(gw.admin, Method::POST, "/backends", Some(body.clone())).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (code, Some(error)),
            "{body}: {answer}"
        );
        assert!(!answer["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(names(&status(&gw).await), ["a", "b"]);
    let (code, answer) = admin_call(gw.admin, Method::DELETE, "/backends/zz", None).await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (404, Some("unknown_backend"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_seed_new_backends_and_bound_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "sqlite", dir.path());
    let checkpoint = "[checkpoint]\nexport = { request = \"GET /admin/export\" }\nimport = { request = \"POST /admin/import\" }\nkeep = 2\n";
    let mut gw = GatewayProc::start_with(
        dir.path(),
        "fsync = \"batch\"\nsegment_size = \"4KiB\"",
        &config(&[&a, &b], checkpoint),
    );
    let c = client();
    let base = gw.url();
    // Unkeyed requests: no idempotency key keeps their segments alive.
    for owner in ["w0", "w1"] {
        let r = c
            .post(format!("{base}/accounts"))
            .header("content-type", "application/json")
            .body(format!("{{\"owner\":\"{owner}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let deposit = |account: u32| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let r = c
                .post(format!("{base}/accounts/{account}/deposit"))
                .header("content-type", "application/json")
                .body("{\"amount\":3}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    for i in 0..150 {
        deposit(1 + i % 2).await;
    }
    let (code, taken) = admin_call(gw.admin, Method::POST, "/checkpoints", None).await;
    assert_eq!(code, 200, "{taken}");
    let at = taken["seq"].as_u64().unwrap();
    assert!(at >= 152, "{taken}");
    assert_eq!(taken["source"], "b", "exported from the backup: {taken}");
    let first = taken["first_seq"].as_u64().unwrap();
    assert!(
        first > 1 && first <= at + 1,
        "the journal was compacted: {taken}"
    );
    for i in 0..30 {
        deposit(1 + i % 2).await;
    }

    // Without the checkpoint a new backend cannot be filled any more: the history is gone.
    let cc = DemoProc::start("c", "sqlite", dir.path());
    let (code, refused) = add(&gw, &cc, Some(false)).await;
    assert_eq!(
        (code, refused["error"].as_str()),
        (409, Some("cannot_join")),
        "{refused}"
    );
    assert!(
        refused["detail"].as_str().unwrap().contains("checkpoint"),
        "{refused}"
    );
    assert_eq!(names(&status(&gw).await), ["a", "b"]);

    // With it, c starts at the checkpoint and replays only what followed.
    let (code, report) = add(&gw, &cc, None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["from"].as_u64(), Some(at + 1), "{report}");
    assert_eq!(report["replayed"].as_u64(), Some(30), "{report}");
    let view = accounts_at(&c, &a.url()).await;
    assert_eq!(accounts_at(&c, &b.url()).await, view);
    assert_eq!(accounts_at(&c, &cc.url()).await, view);
    let (_, listed) = admin_call(gw.admin, Method::GET, "/checkpoints", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // The compacted journal reopens: the same history start, every backend in-sync.
    gw.kill();
    gw.restart();
    let s = status(&gw).await;
    for name in ["a", "b", "c"] {
        assert_eq!(backend(&s, name).unwrap()["state"], "in-sync", "{s}");
    }
    deposit(1).await;
    let view = accounts_at(&c, &a.url()).await;
    assert_eq!(accounts_at(&c, &cc.url()).await, view);
    let balances: Vec<Value> = serde_json::from_str(&view).unwrap();
    assert_eq!(balances[0]["balance"], 3 * (75 + 15 + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_from_memory_to_sqlite_under_traffic_fails_no_request() {
    rollout_under_traffic("sqlite", &[], "").await;
}

/// The old copies number their accounts 1, 2, 3 (JSON numbers); the new ones mint random ids
/// (strings), different on each copy. With `mint` declared, the clients keep using the numbers
/// they were given, through the rollout and after it, when no copy knows them any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_from_sequential_to_random_ids_under_traffic_fails_no_request() {
    let mint = "\n[[routes]]\nmatch = \"POST /accounts\"\nmint = [\"/id\"]\n";
    rollout_under_traffic("sqlite", &["--ids", "random"], mint).await;
}

/// Writers and readers through the gateway while `lockstep rollout` moves three memory copies
/// to four new `implementation` copies started with `flags`: no request fails, every new copy
/// ends in-sync with each writer's deposits exactly once.
async fn rollout_under_traffic(implementation: &'static str, flags: &[&str], extra: &str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let old: Vec<DemoProc> = ["a", "b", "c"]
        .iter()
        .map(|n| DemoProc::start(n, "memory", dir.path()))
        .collect();
    let new: Vec<DemoProc> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|n| DemoProc::start_with(n, implementation, dir.path(), flags))
        .collect();
    let gw = GatewayProc::start(
        dir.path(),
        "batch",
        &config(&old.iter().collect::<Vec<_>>(), extra),
    );
    let writers = Writers::start(&gw.url(), WRITERS, "roll").await;
    // Readers through the gateway all along: a read has no key to retry with, so none may fail.
    let stop_reads = Arc::new(AtomicBool::new(false));
    let (reads, failed_reads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (stop, reads, failed) = (stop_reads.clone(), reads.clone(), failed_reads.clone());
        let (c, url) = (client(), gw.url());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // The list, and one account by the id its client was given.
                for path in ["/accounts", "/accounts/1"] {
                    match c.get(format!("{url}{path}")).send().await {
                        Ok(r) if r.status() == 200 => {
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            let first = if path == "/accounts" { &body[0] } else { &body };
                            if first["id"] == json!(1) {
                                reads.fetch_add(1, Ordering::Relaxed)
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        })
    };
    writers.wait_for(50).await;

    let plan = lockstep::rollout::Plan {
        implementation: implementation.into(),
        checkpoint: None,
        backends: new
            .iter()
            .map(|d| lockstep::rollout::NewBackend {
                name: d.name.clone(),
                url: d.url(),
            })
            .collect(),
    };
    let admin = lockstep::client::AdminClient::new(&format!("http://{}", gw.admin), None).unwrap();
    let before = writers.progress.load(Ordering::Relaxed);
    lockstep::rollout::run(&admin, &plan, false).await.unwrap();
    writers.wait_for(before + 40).await;
    let deposits = writers.stop().await;
    stop_reads.store(true, Ordering::Relaxed);
    reader.await.unwrap();

    let s = status(&gw).await;
    assert_eq!(s["primary"], "n1", "{s}");
    assert_eq!(names(&s), ["n1", "n2", "n3", "n4"], "{s}");
    for b in s["backends"].as_array().unwrap() {
        assert_eq!(
            (&b["state"], &b["implementation"]),
            (&json!("in-sync"), &json!(implementation))
        );
    }
    let (_, verify) = admin_call(gw.admin, Method::GET, "/verify", None).await;
    assert_eq!(verify["equal"], true, "{verify}");
    let c = client();
    for d in &new {
        assert_balances(&accounts_at(&c, &d.url()).await, &deposits, &d.name);
    }
    if !flags.is_empty() {
        // The new copies really hold ids of their own: what the test shows rests on them.
        let first_id = |view: String| -> Value {
            serde_json::from_str::<Value>(&view).unwrap()[0]["id"].clone()
        };
        let mut ids = Vec::new();
        for d in &new {
            ids.push(first_id(accounts_at(&c, &d.url()).await));
        }
        assert!(ids.iter().all(Value::is_string), "{ids:?}");
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[..i].contains(id), "two copies minted {id}: {ids:?}");
        }
    }
    let writes: usize = deposits.iter().map(Vec::len).sum();
    let retries: usize = deposits.iter().flatten().map(|d| d.retries).sum();
    assert_eq!(failed_reads.load(Ordering::Relaxed), 0);
    println!(
        "{{\"rollout_writes\": {writes}, \"write_retries\": {retries}, \"reads\": {}, \"failed_reads\": 0}}",
        reads.load(Ordering::Relaxed)
    );
}

/// A copy loaded from a checkpoint of a copy that mints random ids holds that copy's ids: the
/// gateway gives it the source's pairs, and it stays in-sync on the writes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_seeded_from_a_checkpoint_keeps_its_sources_ids() {
    let dir = tempfile::tempdir().unwrap();
    let random = ["--ids", "random"];
    let [a, b, c] = ["a", "b", "c"].map(|n| DemoProc::start_with(n, "sqlite", dir.path(), &random));
    let extra = "[checkpoint]\nexport = { request = \"GET /admin/export\" }\nimport = { request = \"POST /admin/import\" }\n\n[[routes]]\nmatch = \"POST /accounts\"\nmint = [\"/id\"]\n";
    let gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b, &c], extra));
    let http = client();
    let base = gw.url();
    let mut ids = Vec::new();
    for w in 0..4 {
        let done = until_done(
            &http,
            &base,
            "/accounts",
            &format!("open-{w}"),
            &format!("{{\"owner\":\"w{w}\"}}"),
        )
        .await;
        ids.push(
            serde_json::from_str::<Value>(&done.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let deposit = |round: usize| {
        let (http, base, ids) = (http.clone(), base.clone(), ids.clone());
        async move {
            for (w, id) in ids.iter().enumerate() {
                until_done(
                    &http,
                    &base,
                    &format!("/accounts/{id}/deposit"),
                    &format!("d-{round}-{w}"),
                    "{\"amount\":5}",
                )
                .await;
            }
        }
    };
    deposit(0).await;
    let (code, taken) = admin_call(gw.admin, Method::POST, "/checkpoints", None).await;
    assert_eq!(code, 200, "{taken}");
    let source = taken["source"].as_str().unwrap().to_owned();
    assert_ne!(source, "a", "taken from a backup: {taken}");
    deposit(1).await;

    let d = DemoProc::start_with("d", "sqlite", dir.path(), &random);
    let (code, report) = add(&gw, &d, Some(true)).await;
    assert_eq!(code, 200, "{report}");
    deposit(2).await;
    let s = status(&gw).await;
    for name in ["b", "c", "d"] {
        assert_eq!(backend(&s, name).unwrap()["state"], "in-sync", "{s}");
    }
    let (_, verify) = admin_call(gw.admin, Method::GET, "/verify", None).await;
    assert_eq!(verify["equal"], true, "{verify}");
    // d shows the ids of the copy its checkpoint came from, not the client's (a's).
    let source_view = accounts_at(
        &http,
        &[&b, &c].iter().find(|p| p.name == source).unwrap().url(),
    )
    .await;
    let d_view = accounts_at(&http, &d.url()).await;
    assert_eq!(d_view, source_view);
    let a_view: Value = serde_json::from_str(&accounts_at(&http, &a.url()).await).unwrap();
    let d_list: Value = serde_json::from_str(&d_view).unwrap();
    assert_eq!(d_list[0]["balance"], 15);
    assert_ne!(
        d_list[0]["id"], a_view[0]["id"],
        "each copy's ids differ from the clients'"
    );
}

/// Runs the `lockstep` binary; its exit code, stdout and stderr.
fn lockstep_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_verifies_plans_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "memory", dir.path());
    let gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b], ""));
    let c = client();
    workload::open_accounts(&c, &gw.url(), 3).await;
    let admin = format!("http://{}", gw.admin);
    let d = DemoProc::start("d", "sqlite", dir.path());
    let cli = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lockstep_cli(&args)
        })
    };
    let args = |list: &[&str]| -> Vec<String> {
        list.iter()
            .map(|s| (*s).to_owned())
            .chain(["--admin".to_owned(), admin.clone()])
            .collect()
    };

    let (code, out, err) = cli(args(&[
        "backend",
        "add",
        "d",
        &d.url(),
        "--implementation",
        "sqlite",
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("d is in-sync: replayed 3 requests (seq 1 to 3)"),
        "{out}"
    );
    assert!(out.contains("admission paused"), "{out}");

    let (code, out, _) = cli(args(&["backend", "list"])).await.unwrap();
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with("d ")).expect("d listed");
    assert!(
        line.contains("backup") && line.contains("in-sync") && line.contains("sqlite"),
        "{out}"
    );

    let (code, out, _) = cli(args(&["verify"])).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("b (memory, in-sync) equals a (memory)"),
        "{out}"
    );
    assert!(out.contains("d (sqlite, in-sync) equals a"), "{out}");
    assert!(out.contains("views are equal"), "{out}");

    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "implementation = \"sqlite\"\n[[backends]]\nname = \"n1\"\nurl = \"http://127.0.0.1:9101\"\n[[backends]]\nname = \"n2\"\nurl = \"http://127.0.0.1:9102\"\n",
    )
    .unwrap();
    let (code, out, err) = cli(args(&["rollout", plan.to_str().unwrap(), "--dry-run"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rollout to sqlite in 5 steps:"), "{out}");
    // d already runs sqlite: it is the successor, no additional backup is needed first.
    assert!(
        out.contains("1. add n1 at http://127.0.0.1:9101 (replaces an old backup)"),
        "{out}"
    );
    assert!(out.contains("3. switch the primary over to d"), "{out}");
    assert_eq!(
        names(&status(&gw).await),
        ["a", "b", "d"],
        "a dry run changes nothing"
    );

    let (code, _, err) = cli(args(&["checkpoint"])).await.unwrap();
    assert_eq!(code, 1);
    assert!(
        err.contains("not_configured") && err.contains("[checkpoint]"),
        "{err}"
    );

    let (code, out, err) = cli(args(&["backend", "remove", "d"])).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("d removed"), "{out}");
    let (code, _, err) = cli(args(&["backend", "remove", "a"])).await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("is the primary"), "{err}");
}

/// Figures for docs/benchmarks.md: the catch-up replay rate against the backend's own direct
/// write throughput, and the fence pause of joins while 500 writes/s flow. Run by
/// `scripts/join-bench` (release build); ignored in the normal test run for its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run with scripts/join-bench"]
async fn join_bench() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    let entries: usize = std::env::var("ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let joins: usize = std::env::var("JOINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    const CLIENTS: usize = 16;
    let dir = tempfile::tempdir().unwrap();

    // Deposits from CLIENTS clients at once, each on its own account, until `total` are done.
    async fn write(base: &str, total: usize, prefix: &str) -> f64 {
        let c = reqwest::Client::new();
        for w in 0..CLIENTS {
            let r = c
                .post(format!("{base}/accounts"))
                .header("content-type", "application/json")
                .body(format!("{{\"owner\":\"{prefix}{w}\"}}"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        let left = Arc::new(AtomicUsize::new(total));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..CLIENTS {
            let (c, base, left) = (c.clone(), base.to_owned(), left.clone());
            tasks.push(tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let r = c
                        .post(format!("{base}/accounts/{}/deposit", w + 1))
                        .header("content-type", "application/json")
                        .body("{\"amount\":1}")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        total as f64 / started.elapsed().as_secs_f64()
    }

    // 1. The backend's own write throughput, straight to an empty instance.
    let direct = DemoProc::start("direct", "memory", dir.path());
    let direct_rate = write(&direct.url(), entries, "d").await;
    drop(direct);

    // 2. A journal of `entries` writes through the gateway, then an empty instance joins.
    let a = DemoProc::start("a", "memory", dir.path());
    let gw = GatewayProc::start(
        dir.path(),
        "batch",
        &config(
            &[&a],
            "\n[catchup]\nconcurrency = 16\nbatch = 1024\n\n[checkpoint]\nexport = { request = \"GET /admin/export\" }\nimport = { request = \"POST /admin/import\" }\ncompact = false\n",
        )
        .replace("[catchup]\nfence_lag = 16\nbatch = 64\n", ""),
    );
    write(&gw.url(), entries, "g").await;
    let joiner = DemoProc::start("j", "memory", dir.path());
    let (code, report) = add(&gw, &joiner, Some(false)).await;
    assert_eq!(code, 200, "{report}");
    let replayed = report["replayed"].as_u64().unwrap() as f64;
    let replay_rate = replayed / (report["elapsed_ms"].as_u64().unwrap() as f64 / 1000.0);

    // 3. Joins while 500 writes/s flow (open loop: one deposit every 2 ms, whatever the answers).
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failed, base) = (stop.clone(), failed.clone(), gw.url());
        tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (c, base, failed) = (c.clone(), base.clone(), failed.clone());
                n += 1;
                tokio::spawn(async move {
                    let sent = c
                        .post(format!("{base}/accounts/{}/deposit", 1 + n % CLIENTS))
                        .header("content-type", "application/json")
                        .body("{\"amount\":1}")
                        .send()
                        .await;
                    if !sent.is_ok_and(|r| r.status() == 200) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            n
        })
    };
    let mut pauses = Vec::new();
    let mut checkpoint_pauses = Vec::new();
    for i in 0..joins {
        let d = DemoProc::start(&format!("p{i}"), "memory", dir.path());
        // Each join starts from a fresh checkpoint, so that it replays seconds of traffic, not
        // the whole journal; the pause measured is the join's fence.
        let (code, taken) = admin_call(gw.admin, Method::POST, "/checkpoints", None).await;
        assert_eq!(code, 200, "{taken}");
        checkpoint_pauses.push(taken["pause_ms"].as_u64().unwrap());
        let (code, report) = add(&gw, &d, Some(true)).await;
        assert_eq!(code, 200, "{report}");
        pauses.push(report["pause_ms"].as_u64().unwrap());
        let (code, _) =
            admin_call(gw.admin, Method::DELETE, &format!("/backends/p{i}"), None).await;
        assert_eq!(code, 200);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    pauses.sort_unstable();
    checkpoint_pauses.sort_unstable();
    let pct =
        |p: f64| pauses[((pauses.len() as f64 * p).ceil() as usize).clamp(1, pauses.len()) - 1];
    println!(
        "{{\"entries\": {entries}, \"direct_writes_per_s\": {direct_rate:.0}, \"replay_per_s\": {replay_rate:.0}, \"replay_vs_direct\": {:.2}, \"joins\": {joins}, \"pause_ms_p50\": {}, \"pause_ms_p99\": {}, \"pause_ms_max\": {}, \"checkpoint_pause_ms_p50\": {}, \"writes_during_joins\": {sent}, \"failed_writes\": {}}}",
        replay_rate / direct_rate,
        pct(0.5),
        pct(0.99),
        pauses.last().unwrap(),
        checkpoint_pauses[checkpoint_pauses.len() / 2],
        failed.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_interrupted_by_a_gateway_crash_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "memory", dir.path());
    let mut gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b], ""));
    let c = client();
    workload::open_accounts(&c, &gw.url(), 2).await;
    for i in 0..60 {
        until_done(
            &c,
            &gw.url(),
            "/accounts/1/deposit",
            &format!("i{i}"),
            "{\"amount\":1}",
        )
        .await;
    }
    // A slow newcomer: its replay takes a while.
    let slow = DemoProc::start_with("s", "memory", dir.path(), &["--delay", "30ms"]);
    let join = {
        let body = json!({ "name": "s", "url": slow.url(), "implementation": "memory" });
        let admin = gw.admin;
        tokio::spawn(async move {
            let c = reqwest::Client::new();
            let _ = c
                .post(format!("http://{admin}/backends"))
                .json(&body)
                .send()
                .await;
        })
    };
    let admin = gw.admin;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, s) = admin_call(admin, Method::GET, "/status", None).await;
        let replaying = s["joins"].as_array().unwrap().iter().any(|j| {
            j["backend"] == "s" && j["phase"] == "replaying" && j["replayed"].as_u64() > Some(0)
        });
        if replaying {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the join never got going: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    gw.kill();
    join.abort();
    gw.restart();
    let s = status(&gw).await;
    assert_eq!(backend(&s, "s").unwrap()["state"], "diverged", "{s}");
    // It has no reset hook and there is no checkpoint: remove it and add it again, empty.
    let (code, e) = admin_call(
        gw.admin,
        Method::POST,
        "/backends/s/rejoin?reset=true",
        None,
    )
    .await;
    assert_eq!(code, 409, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("remove it and add it again"),
        "{e}"
    );
    let (code, _) = admin_call(gw.admin, Method::DELETE, "/backends/s", None).await;
    assert_eq!(code, 200);
    let fresh = DemoProc::start("s2", "memory", dir.path());
    let (code, report) = add(&gw, &fresh, None).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        accounts_at(&c, &fresh.url()).await,
        accounts_at(&c, &a.url()).await
    );
}
