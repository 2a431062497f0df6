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
