//! End to end: a gateway in front of real HTTP backends (the demo bank in both implementations,
//! or a recording mock), checked by what a user would check — the state on every backend and
//! the bytes clients received.

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use lockstep_demo::{Faults, Implementation};
use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ACCOUNTS: usize = 6;

/// Three banks (sqlite primary, memory and sqlite backups) behind a gateway.
async fn three_banks(faults_b: Faults, extra: &str) -> (Vec<Bank>, lockstep::Running) {
    let banks = vec![
        Bank::start(Implementation::Sqlite, Faults::default()).await,
        Bank::start(Implementation::Memory, faults_b).await,
        Bank::start(Implementation::Sqlite, Faults::default()).await,
    ];
    let names = ["a", "b", "c"];
    let list: Vec<(&str, String)> = names
        .iter()
        .zip(&banks)
        .map(|(n, b)| (*n, b.url.clone()))
        .collect();
    let gw = start_gateway(&format!("{extra}\n{}", backends_toml(&list)));
    (banks, gw)
}

async fn create_accounts(c: &reqwest::Client, gw: &lockstep::Running, n: usize) {
    for i in 0..n {
        let r = post_json(
            c,
            format!("http://{}/accounts", gw.gateway),
            &format!("{{\"owner\":\"owner-{i}\"}}"),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
}

/// A random bank operation on one of the accounts, through the gateway at `gw`; returns the
/// HTTP status.
async fn random_operation(c: &reqwest::Client, gw: SocketAddr, rng: &mut StdRng) -> u16 {
    let id = rng.random_range(1..=ACCOUNTS);
    let amount = rng.random_range(1..50);
    let (path, body) = match rng.random_range(0..3) {
        0 => (
            format!("/accounts/{id}/deposit"),
            format!("{{\"amount\":{amount}}}"),
        ),
        1 => (
            format!("/accounts/{id}/withdraw"),
            format!("{{\"amount\":{amount}}}"),
        ),
        _ => {
            let to = rng.random_range(1..=ACCOUNTS);
            (
                "/transfers".to_string(),
                format!("{{\"from\":{id},\"to\":{to},\"amount\":{amount}}}"),
            )
        }
    };
    post_json(c, format!("http://{gw}{path}"), &body)
        .await
        .status()
        .as_u16()
}

/// `writers` concurrent clients doing `each` random operations; returns every status.
fn spawn_writers(
    c: &reqwest::Client,
    gw: SocketAddr,
    seed: u64,
    writers: u64,
    each: usize,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..writers)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ w);
                let mut statuses = Vec::with_capacity(each);
                for _ in 0..each {
                    statuses.push(random_operation(&c, gw, &mut rng).await);
                }
                statuses
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_leave_every_backend_in_the_same_state() {
    let (banks, gw) = three_banks(Faults::default(), "").await;
    let c = client();
    create_accounts(&c, &gw, ACCOUNTS).await;

    let seed: u64 = rand::random();
    println!("seed {seed}");
    let writers = spawn_writers(&c, gw.gateway, seed, 12, 20);
    let mut writes = ACCOUNTS;
    for w in writers {
        for s in w.await.unwrap() {
            assert!(
                matches!(s, 200 | 400 | 409),
                "seed {seed}: unexpected status {s}"
            );
            writes += 1;
        }
    }

    let through_gateway = get_text(&c, format!("http://{}/accounts", gw.gateway)).await;
    for (bank, name) in banks.iter().zip(["a", "b", "c"]) {
        let direct = get_text(&c, format!("{}/accounts", bank.url)).await;
        assert_eq!(
            direct, through_gateway,
            "seed {seed}: backend {name} differs from what the gateway serves"
        );
    }
    let accounts: Vec<serde_json::Value> = serde_json::from_str(&through_gateway).unwrap();
    assert_eq!(accounts.len(), ACCOUNTS);

    let st = status(&c, &gw).await;
    assert_eq!(st["last_seq"], writes as u64, "{st}");
    assert_eq!(st["committed_seq"], writes as u64, "{st}");
    for b in st["backends"].as_array().unwrap() {
        assert_eq!(b["state"], "in-sync", "{st}");
        assert_eq!(b["acked_seq"], writes as u64, "{st}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_backup_is_ejected_and_writes_continue() {
    let (mut banks, gw) =
        three_banks(Faults::default(), "[replication]\nbackup_timeout = \"2s\"").await;
    let c = client();
    create_accounts(&c, &gw, ACCOUNTS).await;
    let writers = spawn_writers(&c, gw.gateway, 7, 4, 25);
    // Stop backup c once the writers are well under way.
    eventually("20 writes committed", Duration::from_secs(20), || {
        let (c, gw) = (c.clone(), &gw);
        async move { (status(&c, gw).await["committed_seq"].as_u64() >= Some(20)).then_some(()) }
    })
    .await;
    banks[2].stop().await;
    for w in writers {
        for s in w.await.unwrap() {
            assert!(
                matches!(s, 200 | 400 | 409),
                "writes keep flowing after a backup stopped: got {s}"
            );
        }
    }
    let st = status(&c, &gw).await;
    let c_state = backend_state(&st, "c");
    assert!(
        c_state == "lagging" || c_state == "down",
        "c should be out of the in-sync set: {st}"
    );
    assert_eq!(backend_state(&st, "b"), "in-sync", "{st}");
    assert_eq!(st["backends"][1]["acked_seq"], st["last_seq"], "{st}");
    let c_acked = st["backends"][2]["acked_seq"].as_u64().unwrap();
    assert!(
        c_acked >= 20 && c_acked < st["last_seq"].as_u64().unwrap(),
        "c acknowledged only what it saw: {st}"
    );

    let a = get_text(&c, format!("{}/accounts", banks[0].url)).await;
    let b = get_text(&c, format!("{}/accounts", banks[1].url)).await;
    assert_eq!(a, b, "the in-sync backup matches the primary");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_backup_is_marked_diverged_and_clients_get_the_primarys_answer() {
    let faulty = Faults {
        diverge_after: Some(3),
        ..Faults::default()
    };
    let (banks, gw) = three_banks(faulty, "").await;
    let c = client();
    create_accounts(&c, &gw, 1).await;
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let r = post_json(
            &c,
            format!("http://{}/accounts/1/deposit", gw.gateway),
            r#"{"amount":10}"#,
        )
        .await;
        assert_eq!(r.status(), 200);
        bodies.push(r.text().await.unwrap());
    }
    assert_eq!(
        bodies.last().unwrap(),
        r#"{"id":1,"owner":"owner-0","balance":50}"#
    );
    let st = status(&c, &gw).await;
    assert_eq!(backend_state(&st, "b"), "diverged", "{st}");
    assert_eq!(backend_state(&st, "c"), "in-sync", "{st}");
    let a = get_text(&c, format!("{}/accounts/1", banks[0].url)).await;
    let cc = get_text(&c, format!("{}/accounts/1", banks[2].url)).await;
    assert_eq!(a, cc);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lanes_progress_concurrently_and_one_lane_never_reorders() {
    let (mocks, backends) = start_mocks(3).await;
    let routes = "[[routes]]\nmatch = \"POST /{lane}/**\"\nlane = \"{lane}\"\n";
    let gw = start_gateway(&format!("{routes}{}", backends));
    let c = client();

    // Backup b holds every request of lane "slow": the lane is stuck there.
    mocks[1].mock.hold("/slow/");
    let slow = {
        let (c, addr) = (c.clone(), gw.gateway);
        tokio::spawn(async move {
            post_json(&c, format!("http://{addr}/slow/1"), "{}")
                .await
                .status()
        })
    };
    mocks[0]
        .mock
        .wait_until("the primary processed /slow/1", |r| {
            r.iter().any(|x| x.uri == "/slow/1")
        })
        .await;
    for i in 0..5 {
        let r = post_json(&c, format!("http://{}/fast/{i}", gw.gateway), "{}").await;
        assert_eq!(r.status(), 200, "lane fast commits while lane slow waits");
    }
    assert!(
        !slow.is_finished(),
        "lane slow must still be waiting for backup b"
    );
    mocks[1].mock.release("/slow/");
    assert_eq!(slow.await.unwrap(), 200);

    // Many concurrent requests on one lane: every backend sees them in one order, the seq order.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (c, addr) = (c.clone(), gw.gateway);
        tasks.push(tokio::spawn(async move {
            post_json(&c, format!("http://{addr}/one/{i}"), "{}")
                .await
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let order = |m: &MockServer| -> Vec<(String, u64)> {
        m.mock
            .received()
            .into_iter()
            .filter(|r| r.uri.starts_with("/one/"))
            .map(|r| (r.uri.clone(), r.seq()))
            .collect()
    };
    let a = order(&mocks[0]);
    assert_eq!(a.len(), 30);
    assert!(
        a.windows(2).all(|w| w[0].1 < w[1].1),
        "the primary saw lane order = seq order: {a:?}"
    );
    assert_eq!(order(&mocks[1]), a);
    assert_eq!(order(&mocks[2]), a);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_backend_receives_the_same_request_with_context_headers() {
    let (mocks, backends) = start_mocks(2).await;
    let gw = start_gateway(&backends);
    let c = client();
    let body = "x".repeat(200_000);
    let r = c
        .put(format!("http://{}/doc/1?v=2", gw.gateway))
        .header("X-Custom", "kept")
        .header("Connection", "keep-alive, X-Drop")
        .header("X-Drop", "dropped")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["lockstep-sequence"], "1");
    assert_eq!(r.headers()["lockstep-primary"], "a");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(r.text().await.unwrap(), r#"{"key":"doc","n":1}"#);

    let got: Vec<Received> = mocks
        .iter()
        .map(|m| m.mock.received().pop().unwrap())
        .collect();
    for g in &got {
        assert_eq!(g.method, "PUT");
        assert_eq!(g.uri, "/doc/1?v=2");
        assert_eq!(g.body.len(), body.len());
        assert_eq!(g.header("x-custom"), Some("kept"));
        assert_eq!(
            g.header("x-drop"),
            None,
            "headers nominated by Connection are hop-by-hop"
        );
        assert_eq!(g.header("lockstep-sequence"), Some("1"));
        assert!(
            g.header("lockstep-time")
                .is_some_and(|t| t.ends_with('Z') && t.contains('T'))
        );
        assert_eq!(g.header("x-forwarded-for"), Some("127.0.0.1"));
        assert!(
            g.header("forwarded")
                .is_some_and(|f| f.starts_with("for=127.0.0.1"))
        );
        // The request id the gateway made up, the one the client got back.
        assert_eq!(
            g.header("x-request-id"),
            Some(request_id.as_str()),
            "the request id reaches every backend"
        );
    }
    assert_eq!(
        got[0].headers, got[1].headers,
        "primary and backup receive identical headers"
    );
    assert_eq!(got[0].body, got[1].body);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classification_decides_who_sees_a_request() {
    let (mocks, backends) = start_mocks(2).await;
    let routes = r#"
[[routes]]
match = "POST /search"
kind = "read"

[[routes]]
match = "GET /x/increment"
kind = "logical"

[[routes]]
match = "GET|POST /x/**"
kind = "read"
"#;
    let gw = start_gateway(&format!("{routes}{}", backends));
    let c = client();
    let send = |m: &str, p: &str| {
        let req = c.request(
            reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
            format!("http://{}{p}", gw.gateway),
        );
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("POST", "/search").await, 200);
    assert_eq!(send("GET", "/x/increment").await, 200);
    assert_eq!(
        send("POST", "/x/other").await,
        200,
        "first match wins: /x/increment is not this"
    );
    assert_eq!(send("PROPFIND", "/dav/file").await, 200);
    assert_eq!(send("GET", "/plain").await, 200);

    let seen = |i: usize| -> Vec<String> {
        mocks[i]
            .mock
            .received()
            .iter()
            .map(|r| format!("{} {}", r.method, r.uri))
            .collect()
    };
    assert_eq!(
        seen(0),
        vec![
            "POST /search",
            "GET /x/increment",
            "POST /x/other",
            "PROPFIND /dav/file",
            "GET /plain"
        ]
    );
    assert_eq!(
        seen(1),
        vec!["GET /x/increment", "PROPFIND /dav/file"],
        "only logical requests reach the backup"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_bodies_get_413_and_reach_no_backend() {
    let (mocks, backends) = start_mocks(2).await;
    let gw = start_gateway(&format!("[gateway]\nmax_body = \"1KiB\"\n{}", backends));
    let c = client();
    let r = c
        .post(format!("http://{}/k/1", gw.gateway))
        .body("y".repeat(2048))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "body_too_large");
    let ok = c
        .post(format!("http://{}/k/1", gw.gateway))
        .body("y".repeat(1024))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "a body at the limit is accepted");
    assert_eq!(mocks[0].mock.received().len(), 1);
    assert_eq!(mocks[1].mock.received().len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_heads_get_431_and_reach_no_backend() {
    let (mocks, backends) = start_mocks(2).await;
    let gw = start_gateway(&format!(
        "[gateway]\nmax_header_size = \"8KiB\"\n{}",
        backends
    ));
    let c = client();
    for (method, path) in [
        (reqwest::Method::POST, "/k/1"),
        (reqwest::Method::GET, "/k"),
    ] {
        let r = c
            .request(method.clone(), format!("http://{}{path}", gw.gateway))
            .header("x-big", "z".repeat(9000))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 431, "{method}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "header_too_large");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("gateway.max_header_size")
        );
    }
    let ok = c
        .post(format!("http://{}/k/1", gw.gateway))
        .header("x-big", "z".repeat(7000))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "a head under the limit is accepted");
    assert_eq!(mocks[0].mock.received().len(), 1);
    assert_eq!(mocks[1].mock.received().len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_primary_without_successor_gets_503_with_retry_after() {
    // A port with nothing behind it, and a backup out of the in-sync set (it answered wrongly
    // earlier), so nobody can take over.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let backup = MockServer::start().await;
    let list = [("a", format!("http://{dead}")), ("b", backup.url.clone())];
    let gw = start_gateway(&format!(
        "[health]\ninterval = \"50ms\"\n{}",
        backends_toml(&list)
    ));
    let backup_state = gw.app().replicator().pool().get("b").unwrap();
    backup_state.set_state(lockstep_backends::BackendState::Diverged);
    let c = client();

    for (method, path) in [("POST", "/k/1"), ("GET", "/k/1")] {
        let r = c
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("http://{}{path}", gw.gateway),
            )
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{method}");
        assert_eq!(r.headers()["retry-after"], "1", "{method}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"].is_string() && v["detail"].as_str().unwrap().contains("unreachable"),
            "{method}: {v}"
        );
    }
    assert!(
        backup.mock.received().is_empty(),
        "nothing reached the backup"
    );
    let st = eventually("the primary shown down", Duration::from_secs(10), || {
        let (c, gw) = (c.clone(), &gw);
        async move {
            let st = status(&c, gw).await;
            (backend_state(&st, "a") == "down").then_some(st)
        }
    })
    .await;
    assert_eq!(st["primary"], "a", "no failover without an in-sync backup");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_unreachable_at_start_is_shown_down_and_writes_flow() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let primary = MockServer::start().await;
    let list = [("a", primary.url.clone()), ("b", format!("http://{dead}"))];
    let gw = start_gateway(&format!(
        "[health]\ninterval = \"50ms\"\n{}",
        backends_toml(&list)
    ));
    let c = client();
    eventually("backup b shown down", Duration::from_secs(10), || {
        let (c, gw) = (c.clone(), &gw);
        async move { (backend_state(&status(&c, gw).await, "b") == "down").then_some(()) }
    })
    .await;
    let r = post_json(&c, format!("http://{}/k/1", gw.gateway), "{}").await;
    assert_eq!(r.status(), 200);
    gw.stop().await;
}
