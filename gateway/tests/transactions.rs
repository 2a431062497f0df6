//! Transactions with real processes: transfers made of a withdraw and a deposit, in both ack
//! modes, under concurrency and with the primary killed between the two requests and at the
//! commit. What is checked is what a bank would check: the total money on every backend, the
//! survivors agreeing, and no other request between a transaction's two requests.

#[path = "support/procs.rs"]
mod procs;
#[path = "support/workload.rs"]
mod workload;

use std::time::Duration;

use procs::{DemoProc, GatewayProc};
use reqwest::Method;
use serde_json::Value;
use workload::{accounts_at, admin_call, client};

const ACCOUNTS: u64 = 4;
const OPENING: u64 = 1000;

fn config(demos: &[&DemoProc], ack: &str, timeout: &str) -> String {
    let mut s = format!(
        "[health]\ninterval = \"100ms\"\ntimeout = \"200ms\"\nunhealthy_after = 1\n\n[replication]\nbackup_timeout = \"2s\"\nprimary_timeout = \"2s\"\n\n[transactions]\nack = \"{ack}\"\ntimeout = \"{timeout}\"\n\n[[verify.probes]]\nrequest = \"GET /accounts\"\n"
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

/// Opens the accounts, each with `OPENING`.
async fn open(base: &str) {
    let c = client();
    for i in 0..ACCOUNTS {
        let r = c
            .post(format!("{base}/accounts"))
            .header("content-type", "application/json")
            .body(format!("{{\"owner\":\"o{i}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = c
            .post(format!("{base}/accounts/{}/deposit", i + 1))
            .header("content-type", "application/json")
            .body(format!("{{\"amount\":{OPENING}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// One request of a transaction; status, the headers of interest and the body.
async fn step(
    c: &reqwest::Client,
    base: &str,
    txn: &str,
    path: &str,
    amount: u64,
) -> (u16, Option<u64>, bool, Value) {
    let r = c
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("lockstep-transaction", txn)
        .body(format!("{{\"amount\":{amount}}}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let seq = r
        .headers()
        .get("lockstep-sequence")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let tentative = r.headers().contains_key("lockstep-tentative");
    (
        status,
        seq,
        tentative,
        r.json().await.unwrap_or(Value::Null),
    )
}

async fn end(base: &str, id: &str, action: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{base}/_lockstep/transactions/{id}/{action}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn total(view: &str) -> u64 {
    let accounts: Vec<Value> = serde_json::from_str(view).unwrap();
    accounts
        .iter()
        .map(|a| a["balance"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_never_interleave_and_keep_the_money() {
    for ack in ["per-request", "per-transaction"] {
        let dir = tempfile::tempdir().unwrap();
        let a = DemoProc::start("a", "memory", dir.path());
        let b = DemoProc::start("b", "sqlite", dir.path());
        let cc = DemoProc::start("c", "memory", dir.path());
        let gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b, &cc], ack, "30s"));
        let base = gw.url();
        open(&base).await;
        let mut clients = Vec::new();
        for w in 0..4u64 {
            let base = base.clone();
            clients.push(tokio::spawn(async move {
                let c = client();
                let mut pairs = Vec::new();
                for i in 0..10u64 {
                    let id = format!("{ack}-{w}-{i}");
                    let from = 1 + (w + i) % ACCOUNTS;
                    let to = 1 + (w + i + 1) % ACCOUNTS;
                    let amount = 1 + i;
                    let (s1, q1, tentative, _) = step(
                        &c,
                        &base,
                        &id,
                        &format!("/accounts/{from}/withdraw"),
                        amount,
                    )
                    .await;
                    assert_eq!(s1, 200, "{id} withdraw");
                    assert_eq!(tentative, ack == "per-transaction");
                    let (s2, q2, tentative, _) = step(
                        &c,
                        &base,
                        &format!("{id}; commit"),
                        &format!("/accounts/{to}/deposit"),
                        amount,
                    )
                    .await;
                    assert_eq!(s2, 200, "{id} deposit");
                    assert!(!tentative, "the committing request is final");
                    pairs.push((q1.unwrap(), q2.unwrap()));
                }
                pairs
            }));
        }
        for c in clients {
            for (withdraw, deposit) in c.await.unwrap() {
                // Everything is on the global lane: no other request came in between.
                assert_eq!(
                    deposit,
                    withdraw + 1,
                    "{ack}: the transaction was interleaved"
                );
            }
        }
        let c = client();
        let view = accounts_at(&c, &a.url()).await;
        assert_eq!(total(&view), ACCOUNTS * OPENING, "{ack}: {view}");
        for d in [&b, &cc] {
            assert_eq!(accounts_at(&c, &d.url()).await, view, "{ack}: {}", d.name);
        }
        // A retried commit answers the stored outcome.
        let (code, outcome) = end(&base, &format!("{ack}-0-0"), "commit").await;
        assert_eq!(
            (code, outcome["outcome"].as_str()),
            (200, Some("committed")),
            "{outcome}"
        );
    }
}

/// The primary is killed between a transfer's two requests, or just before its commit; the
/// money stays constant on the survivors, which agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_primary_mid_transaction_keeps_the_money() {
    for (ack, at_commit) in [
        ("per-request", false),
        ("per-request", true),
        ("per-transaction", false),
        ("per-transaction", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = DemoProc::start("a", "memory", dir.path());
        let b = DemoProc::start("b", "sqlite", dir.path());
        let cc = DemoProc::start("c", "memory", dir.path());
        let gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b, &cc], ack, "30s"));
        let base = gw.url();
        open(&base).await;
        let c = client();
        let (s, _, _, _) = step(&c, &base, "t", "/accounts/1/withdraw", 100).await;
        assert_eq!(s, 200);
        if at_commit {
            let (s, _, _, _) = step(&c, &base, "t", "/accounts/2/deposit", 100).await;
            assert_eq!(s, 200);
        }
        a.kill();
        let outcome = if at_commit {
            end(&base, "t", "commit").await
        } else {
            let (status, _, _, body) =
                step(&c, &base, "t; commit", "/accounts/2/deposit", 100).await;
            (status, body)
        };
        // Wait for the failover, then compare the survivors.
        let s = workload_eventually(&gw, |s| s["primary"] != "a").await;
        let view = accounts_at(&c, &b.url()).await;
        assert_eq!(
            accounts_at(&c, &cc.url()).await,
            view,
            "{ack} {at_commit}: {s}"
        );
        assert_eq!(
            total(&view),
            ACCOUNTS * OPENING,
            "{ack} {at_commit}: {view}"
        );
        let balances: Vec<Value> = serde_json::from_str(&view).unwrap();
        let moved = balances[1]["balance"] == OPENING + 100;
        match (ack, at_commit) {
            // Each request was replicated as it came; the new primary finishes the transfer.
            ("per-request", _) => {
                assert_eq!(outcome.0, 200, "{ack} {at_commit}: {}", outcome.1);
                assert!(moved, "{view}");
            }
            // The withdraw lived on the dead primary only: the transaction is aborted.
            ("per-transaction", false) => {
                assert_eq!(outcome.0, 409, "{}", outcome.1);
                assert_eq!(outcome.1["error"], "transaction_aborted");
                assert!(!moved, "{view}");
            }
            // At the commit the group may already have reached the backups (committed) or the
            // failover may have come first (aborted): either way the survivors agree with the
            // answer the client got.
            _ => match outcome.0 {
                200 => assert!(moved, "committed but not moved: {view}"),
                409 => assert!(!moved, "aborted but moved: {view}"),
                other => panic!("unexpected {other}: {}", outcome.1),
            },
        }
    }
}

async fn workload_eventually(g: &GatewayProc, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, s) = admin_call(g.admin, Method::GET, "/status", None).await;
        if done(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "never true: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abort_rolls_the_primary_back_and_an_abandoned_transaction_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "sqlite", dir.path());
    let cc = DemoProc::start("c", "memory", dir.path());
    let gw = GatewayProc::start(
        dir.path(),
        "batch",
        &config(&[&a, &b, &cc], "per-transaction", "1s"),
    );
    let base = gw.url();
    open(&base).await;
    let c = client();
    let before = accounts_at(&c, &b.url()).await;

    // Abort: the primary applied the withdraw; it is replaced by an in-sync backup.
    let (s, _, tentative, _) = step(&c, &base, "gone", "/accounts/1/withdraw", 50).await;
    assert_eq!((s, tentative), (200, true));
    assert_ne!(
        accounts_at(&c, &a.url()).await,
        before,
        "a applied it (tentatively)"
    );
    let (code, outcome) = end(&base, "gone", "abort").await;
    assert_eq!(
        (code, outcome["outcome"].as_str()),
        (200, Some("aborted")),
        "{outcome}"
    );
    let (_, s) = admin_call(gw.admin, Method::GET, "/status", None).await;
    assert_ne!(s["primary"], "a", "{s}");
    let old = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "a")
        .unwrap();
    assert_eq!(old["state"], "suspect", "{s}");
    let primary = s["primary"].as_str().unwrap().to_owned();
    let url = if primary == "b" { b.url() } else { cc.url() };
    assert_eq!(
        accounts_at(&c, &url).await,
        before,
        "the new primary never saw it"
    );
    // Reads through the gateway see the rolled-back state.
    let r = c.get(format!("{base}/accounts")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), before);

    // An abandoned transaction: after the 1 s timeout it is aborted, with the same rollback.
    let (s, _, _, _) = step(&c, &base, "left", "/accounts/2/withdraw", 70).await;
    assert_eq!(s, 200);
    let s = workload_eventually(&gw, |s| s["primary"] != primary.as_str()).await;
    let (code, outcome) = end(&base, "left", "commit").await;
    assert_eq!(
        (code, outcome["error"].as_str()),
        (409, Some("transaction_aborted")),
        "{outcome}"
    );
    assert!(
        outcome["detail"].as_str().unwrap().contains("expired"),
        "{outcome}"
    );
    // The one in-sync copy left has the money as before either transaction.
    let last = s["primary"].as_str().unwrap();
    let url = match last {
        "a" => a.url(),
        "b" => b.url(),
        _ => cc.url(),
    };
    assert_eq!(
        total(&accounts_at(&c, &url).await),
        ACCOUNTS * OPENING,
        "{s}"
    );
    // Per-transaction needs an in-sync backup to roll back to: none is left.
    let (s, _, _, body) = step(&c, &base, "more", "/accounts/1/withdraw", 1).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("transaction_needs_backup")),
        "{body}"
    );
    // Ordinary writes go on.
    let r = c
        .post(format!("{base}/accounts/1/deposit"))
        .header("content-type", "application/json")
        .body("{\"amount\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "memory", dir.path());
    let gw = GatewayProc::start(
        dir.path(),
        "batch",
        &config(&[&a, &b], "per-request", "30s"),
    );
    let base = gw.url();
    open(&base).await;
    let c = client();
    let (s, _, _, body) = step(&c, &base, "bad id!", "/accounts/1/deposit", 1).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("bad_transaction")));
    let (code, body) = end(&base, "nope", "commit").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (404, Some("unknown_transaction"))
    );
    let (s, _, tentative, _) = step(&c, &base, "p", "/accounts/1/deposit", 1).await;
    assert_eq!(
        (s, tentative),
        (200, false),
        "per-request answers are final"
    );
    let (code, body) = end(&base, "p", "abort").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("transaction_not_abortable")),
        "{body}"
    );
    let (code, body) = end(&base, "p", "commit").await;
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("committed")),
        "{body}"
    );
    let (s, _, _, body) = step(&c, &base, "p", "/accounts/1/deposit", 1).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (409, Some("transaction_committed")),
        "{body}"
    );
    // Another client (other credentials) cannot see it.
    let r = client()
        .post(format!("{base}/_lockstep/transactions/p/commit"))
        .header("authorization", "Bearer someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(format!("{base}/_lockstep/transactions/p/commit"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A transaction that opens an account and deposits into it by the id the primary gave, on
/// copies that each mint their own ids (`--ids random`, `mint` declared): in both modes every
/// copy ends with the account and its money, and the copies' views are equal once translated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_uses_an_id_its_first_request_minted() {
    for ack in ["per-request", "per-transaction"] {
        let dir = tempfile::tempdir().unwrap();
        let random = ["--ids", "random"];
        let a = DemoProc::start_with("a", "memory", dir.path(), &random);
        let b = DemoProc::start_with("b", "sqlite", dir.path(), &random);
        let cc = DemoProc::start_with("c", "memory", dir.path(), &random);
        let mint = "\n[[routes]]\nmatch = \"POST /accounts\"\nmint = [\"/id\"]\n";
        let gw = GatewayProc::start(
            dir.path(),
            "batch",
            &format!("{}{mint}", config(&[&a, &b, &cc], ack, "30s")),
        );
        let base = gw.url();
        let c = client();
        let r = c
            .post(format!("{base}/accounts"))
            .header("content-type", "application/json")
            .header("lockstep-transaction", "t")
            .body("{\"owner\":\"tx\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{ack}");
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, _, _, body) =
            step(&c, &base, "t", &format!("/accounts/{id}/deposit"), 40).await;
        assert_eq!(status, 200, "{ack}: {body}");
        let (status, outcome) = end(&base, "t", "commit").await;
        assert_eq!(status, 200, "{ack}: {outcome}");
        let s = admin_call(gw.admin, Method::GET, "/status", None).await.1;
        for backup in s["backends"].as_array().unwrap() {
            assert_eq!(backup["state"], "in-sync", "{ack}: {s}");
        }
        let (_, verify) = admin_call(gw.admin, Method::GET, "/verify", None).await;
        assert_eq!(verify["equal"], true, "{ack}: {verify}");
        let mut ids = Vec::new();
        for d in [&a, &b, &cc] {
            let view: Value = serde_json::from_str(&accounts_at(&c, &d.url()).await).unwrap();
            assert_eq!(view[0]["balance"], 40, "{ack}: {} {view}", d.name);
            ids.push(view[0]["id"].clone());
        }
        assert_eq!(ids[0], id.as_str(), "the client got the primary's id");
        assert!(
            ids[1] != ids[0] && ids[2] != ids[0] && ids[1] != ids[2],
            "{ids:?}"
        );
    }
}
