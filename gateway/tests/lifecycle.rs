//! Stopping and replacing the gateway process: SIGTERM lets the requests in flight finish within
//! the grace period, and `lockstep run --upgrade` takes over from a running gateway (SIGQUIT)
//! without a client request failing. Real processes.

#[path = "support/procs.rs"]
mod procs;
#[path = "support/workload.rs"]
mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use procs::{DemoProc, GatewayProc};
use workload::{Writers, accounts_at, assert_balances};

fn backends(demos: &[&DemoProc]) -> String {
    let mut s = String::from("[[verify.probes]]\nrequest = \"GET /accounts\"\n");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_requests_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    // Every write takes 600 ms on the primary.
    let a = DemoProc::start_with("a", "memory", dir.path(), &["--delay", "600ms"]);
    let b = DemoProc::start("b", "memory", dir.path());
    let mut gw = GatewayProc::start_custom(
        dir.path(),
        "grace_period = \"3s\"",
        "fsync = \"batch\"",
        &backends(&[&a, &b]),
    );
    let base = gw.url();
    let c = reqwest::Client::new();
    let write = {
        let (c, base) = (c.clone(), base.clone());
        tokio::spawn(async move {
            c.post(format!("{base}/accounts"))
                .header("content-type", "application/json")
                .body("{\"owner\":\"late\"}")
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    // Signal once the write is in flight (the primary takes 600 ms to answer it).
    let metrics = format!("http://{}/metrics", gw.admin);
    workload_wait(&c, &metrics, |m| {
        m.contains("\nlockstep_logical_in_flight 1\n")
    })
    .await;
    gw.signal("TERM");
    assert_eq!(
        write.await.unwrap().unwrap(),
        201,
        "the request in flight finished"
    );
    // New connections are refused once the listener is closed; the process exits cleanly.
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(c.get(format!("{base}/accounts")).send().await.is_err());
    // Both copies hold the write.
    let cl = workload::client();
    assert_eq!(
        accounts_at(&cl, &a.url()).await,
        accounts_at(&cl, &b.url()).await
    );
    assert!(accounts_at(&cl, &b.url()).await.contains("late"));
}

/// Polls `url` until its body satisfies `done`.
async fn workload_wait(c: &reqwest::Client, url: &str, done: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = c.get(url).send().await {
            if let Ok(text) = r.text().await {
                if done(&text) {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never got there"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_takes_over_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let a = DemoProc::start("a", "memory", dir.path());
    let b = DemoProc::start("b", "sqlite", dir.path());
    let mut old = GatewayProc::start_custom(
        dir.path(),
        "grace_period = \"1s\"",
        "fsync = \"batch\"",
        &backends(&[&a, &b]),
    );
    let writers = Writers::start(&old.url(), 4, "up").await;
    // Readers on fresh and kept-alive connections; a read has no key to retry with.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let resent = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for keepalive in [true, false] {
        let (stop, reads, failed, url) = (stop.clone(), reads.clone(), failed.clone(), old.url());
        let resent = resent.clone();
        readers.push(tokio::spawn(async move {
            let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
            if !keepalive {
                builder = builder.pool_max_idle_per_host(0);
            }
            let c = builder.build().unwrap();
            while !stop.load(Ordering::Relaxed) {
                // A GET is idempotent: like HTTP clients do, one that finds its connection
                // reset before any answer (the old process closing a connection it had just
                // accepted) is sent once more. An HTTP error is never retried.
                let mut sent = c.get(format!("{url}/accounts")).send().await;
                if sent
                    .as_ref()
                    .is_err_and(|e| e.is_request() || e.is_connect())
                {
                    resent.fetch_add(1, Ordering::Relaxed);
                    sent = c.get(format!("{url}/accounts")).send().await;
                }
                match sent {
                    Ok(r) if r.status() == 200 => reads.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("read failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    writers.wait_for(40).await;

    let new_log = dir.path().join("upgraded.log");
    let new = old.start_upgrade(&new_log);
    old.signal("QUIT");
    let code = tokio::task::spawn_blocking(move || old.wait_exit(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "the old gateway stops cleanly");
    // The new process serves: more writes go through it.
    let before = writers.progress.load(Ordering::Relaxed);
    writers.wait_for(before + 40).await;
    let deposits = writers.stop().await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let log = std::fs::read_to_string(&new_log).unwrap();
    assert!(log.contains("taking over"), "{log}");
    let c = workload::client();
    for d in [&a, &b] {
        assert_balances(&accounts_at(&c, &d.url()).await, &deposits, &d.name);
    }
    let retries: usize = deposits.iter().flatten().map(|d| d.retries).sum();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no read failed");
    assert_eq!(retries, 0, "no write failed");
    println!(
        "{{\"upgrade_writes\": {}, \"reads\": {}, \"reads_resent_after_a_reset\": {}, \"failed\": 0}}",
        deposits.iter().map(Vec::len).sum::<usize>(),
        reads.load(Ordering::Relaxed),
        resent.load(Ordering::Relaxed)
    );
    drop(new);
}
