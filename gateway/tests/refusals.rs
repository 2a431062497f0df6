//! A refusal is not a divergence: real demo-bank processes that shed load (`--shed`: about one
//! write in ten answered `503` or `429` with `Retry-After`, not processed), the primary and a
//! backup among them, under keyed concurrent writers that retry with the same key. What a user
//! checks: no backup ejected, every acknowledged deposit applied exactly once on every copy, the
//! refused ones nowhere, and the refusals counted per backend.

#[path = "support/procs.rs"]
mod procs;
#[path = "support/workload.rs"]
mod workload;

use procs::{DemoProc, GatewayProc};
use serde_json::Value;
use workload::{Writers, accounts_at, admin_call, assert_balances, client, sample};

/// Writers and deposits in all (at least 1,000).
const WRITERS: usize = 4;
const DEPOSITS: usize = 1_200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_writes_are_retried_by_clients_and_backups_and_eject_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start_with("a", "memory", dir.path(), &["--shed", "10"]);
    let b = DemoProc::start_with("b", "memory", dir.path(), &["--shed", "10"]);
    let c = DemoProc::start("c", "sqlite", dir.path());
    let mut body = String::from(
        "[replication]\nbackup_timeout = \"5s\"\n\n[[routes]]\nmatch = \"POST /accounts/{id}/**\"\nlane = \"{id}\"\n\n[[verify.probes]]\nrequest = \"GET /accounts\"\n",
    );
    body.push_str(&procs::backends_toml(&[&a, &b, &c]));
    let g = GatewayProc::start(dir.path(), "batch", &body);

    let writers = Writers::start(&g.url(), WRITERS, "shed").await;
    writers.wait_for(DEPOSITS).await;
    let deposits = writers.stop().await;
    let total: usize = deposits.iter().map(Vec::len).sum();
    let retried: usize = deposits.iter().flatten().filter(|d| d.retries > 0).count();
    assert!(total >= DEPOSITS);
    assert!(
        retried > 0,
        "the primary refused some deposits and their clients retried"
    );

    let (_, status) = admin_call(g.admin, reqwest::Method::GET, "/status", None).await;
    for backend in status["backends"].as_array().unwrap() {
        assert_eq!(backend["state"], "in-sync", "nobody ejected: {status}");
    }
    let cl = client();
    let view = accounts_at(&cl, &a.url()).await;
    assert_balances(&view, &deposits, "a");
    for d in [&b, &c] {
        assert_eq!(
            accounts_at(&cl, &d.url()).await,
            view,
            "{} equals the primary",
            d.name
        );
    }

    let metrics = cl
        .get(format!("http://{}/metrics", g.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = |backend: &str, role: &str| {
        sample(
            &metrics,
            &format!("lockstep_refusals_total{{backend=\"{backend}\",role=\"{role}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let (by_primary, by_backup) = (refused("a", "primary"), refused("b", "backup"));
    assert!(by_primary > 0.0 && by_backup > 0.0, "{metrics}");
    assert_eq!(refused("c", "backup"), 0.0);
    // Every refusal of the primary reached the client as itself: one failed attempt each.
    let attempts_refused: usize = deposits.iter().flatten().map(|d| d.retries).sum();
    assert!(
        attempts_refused as f64 >= by_primary,
        "{attempts_refused} client retries for {by_primary} refusals"
    );
    let stats: Value = cl
        .get(format!("{}/stats", a.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!(
        "{total} deposits, {retried} retried by their clients; refusals: primary {by_primary}, backup b {by_backup}; primary stats {stats}"
    );
}
