//! What an operator scrapes and reads: `/metrics` in the Prometheus text format and the request
//! id that ties a client's request to the gateway's logs and the backends. Real processes: each
//! gateway is its own process, so its metrics are its own.

#[path = "support/procs.rs"]
mod procs;
#[path = "support/workload.rs"]
mod workload;

use procs::{DemoProc, GatewayProc};
use reqwest::Method;
use workload::{admin_call, client, sample, until_done};

fn config(demos: &[&DemoProc]) -> String {
    let mut s = String::from(
        "[health]\ninterval = \"100ms\"\ntimeout = \"200ms\"\nunhealthy_after = 1\n\n[replication]\nbackup_timeout = \"1s\"\n\n[[verify.probes]]\nrequest = \"GET /accounts\"\n",
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

async fn scrape(g: &GatewayProc) -> String {
    let r = client()
        .get(format!("http://{}/metrics", g.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_commits_replays_pauses_and_ejections() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "sqlite", dir.path());
    let mut cc = DemoProc::start("c", "memory", dir.path());
    let gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b, &cc]));
    let c = client();
    let base = gw.url();
    workload::open_accounts(&c, &base, 1).await;
    for i in 0..10 {
        until_done(
            &c,
            &base,
            "/accounts/1/deposit",
            &format!("m{i}"),
            "{\"amount\":2}",
        )
        .await;
    }
    // A retry of a committed key, and two reads.
    let again = until_done(&c, &base, "/accounts/1/deposit", "m0", "{\"amount\":2}").await;
    assert!(again.replayed);
    for _ in 0..2 {
        assert_eq!(
            c.get(format!("{base}/accounts"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let m = scrape(&gw).await;
    // 1 open + 10 deposits + the replay answered from the journal.
    assert_eq!(
        sample(
            &m,
            "lockstep_requests_total{class=\"logical\",outcome=\"committed\"}"
        ),
        Some(12.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "lockstep_requests_total{class=\"read\",outcome=\"proxied\"}"
        ),
        Some(2.0)
    );
    assert_eq!(sample(&m, "lockstep_idempotent_replays_total"), Some(1.0));
    assert_eq!(sample(&m, "lockstep_commit_seconds_count"), Some(11.0));
    assert_eq!(
        sample(&m, "lockstep_journal_append_seconds_count"),
        Some(11.0)
    );
    assert_eq!(
        sample(&m, "lockstep_commit_seconds_bucket{le=\"+Inf\"}"),
        Some(11.0)
    );
    assert_eq!(sample(&m, "lockstep_last_seq"), Some(11.0));
    assert_eq!(
        sample(
            &m,
            "lockstep_backend_acked_seq{backend=\"b\",implementation=\"sqlite\",role=\"backup\"}"
        ),
        Some(11.0)
    );
    assert_eq!(
        sample(
            &m,
            "lockstep_backend_lag{backend=\"b\",implementation=\"sqlite\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "lockstep_backend_state{backend=\"c\",state=\"in-sync\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "lockstep_backend_primary{backend=\"a\"}"),
        Some(1.0)
    );
    assert!(sample(&m, "lockstep_journal_bytes").unwrap() > 0.0);

    // A switchover pauses admission once; a dead backup is ejected.
    let (code, _) = admin_call(gw.admin, Method::POST, "/backends/b/promote", None).await;
    assert_eq!(code, 200);
    cc.kill();
    until_done(
        &c,
        &base,
        "/accounts/1/deposit",
        "after-kill",
        "{\"amount\":2}",
    )
    .await;
    let m = workload_eventually(&gw, |m| {
        sample(m, "lockstep_ejections_total{backend=\"c\"}").is_some()
    })
    .await;
    assert_eq!(
        sample(
            &m,
            "lockstep_fence_pause_seconds_count{reason=\"switchover\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "lockstep_backend_primary{backend=\"b\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "lockstep_backend_state{backend=\"c\",state=\"in-sync\"}"
        ),
        Some(0.0)
    );
    assert!(
        sample(
            &m,
            "lockstep_topology_events_total{event=\"primary-changed\"}"
        )
        .unwrap()
            >= 1.0
    );
}

/// Scrapes until `done` holds (the event counter is fed by a task of its own).
async fn workload_eventually(g: &GatewayProc, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = scrape(g).await;
        if done(&m) {
            return m;
        }
        assert!(std::time::Instant::now() < deadline, "never true: {m}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_kept_or_made_up_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "memory", dir.path());
    let gw = GatewayProc::start(dir.path(), "batch", &config(&[&a, &b]));
    let c = client();
    let base = gw.url();
    // The client's id is kept and answered, for writes and reads.
    let r = c
        .post(format!("{base}/accounts"))
        .header("x-request-id", "client-chosen-1")
        .header("content-type", "application/json")
        .body("{\"owner\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], "client-chosen-1");
    let r = c
        .get(format!("{base}/accounts"))
        .header("x-request-id", "client-chosen-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-2");
    // Without one (or with an unusable one), the gateway makes one up.
    let r = c.get(format!("{base}/accounts")).send().await.unwrap();
    let made_up = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made_up.len(), 16, "{made_up}");
    let r = c
        .post(format!("{base}/accounts/1/deposit"))
        .header("x-request-id", "bad id with spaces")
        .header("content-type", "application/json")
        .body("{\"amount\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    let r = c.get(format!("{base}/nope")).send().await.unwrap();
    assert!(r.headers().contains_key("x-request-id"));
}
