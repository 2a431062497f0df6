//! A keyed client workload for tests with real processes: writers that deposit into their own
//! account through the gateway, retrying each deposit with the same Idempotency-Key until it
//! succeeds, so that the expected balances are known exactly.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The final answer to one keyed write.
#[derive(Clone, Debug)]
pub struct Done {
    pub at: Instant,
    pub primary: String,
    pub replayed: bool,
    /// Attempts that failed before the one that succeeded.
    pub retries: usize,
    pub body: String,
}

/// Sends `body` to `path` with `key` until a 2xx comes back, retrying the same key on a
/// connection error or a 409/429/502/503/504 (anything else fails the test).
pub async fn until_done(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
    body: &str,
) -> Done {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut retries = 0;
    loop {
        let sent = c
            .post(format!("{base}{path}"))
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        if let Ok(r) = sent {
            if r.status().is_success() {
                let replayed = r.headers().contains_key("idempotent-replayed");
                let primary = r
                    .headers()
                    .get("lockstep-primary")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                return Done {
                    at: Instant::now(),
                    primary,
                    replayed,
                    retries,
                    body: r.text().await.unwrap_or_default(),
                };
            }
            assert!(
                matches!(r.status().as_u16(), 409 | 429 | 502 | 503 | 504),
                "{key}: unexpected {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        retries += 1;
        assert!(Instant::now() < deadline, "{key} never succeeded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Opens accounts 1..=n (owner `w0`...), keyed so that retries are safe.
pub async fn open_accounts(c: &reqwest::Client, base: &str, n: usize) {
    for w in 0..n {
        let body = format!("{{\"owner\":\"w{w}\"}}");
        until_done(c, base, "/accounts", &format!("open-{w}"), &body).await;
    }
}

/// Writers depositing 1 into their own account (writer w → account w+1) until stopped.
pub struct Writers {
    stop: Arc<AtomicBool>,
    /// Successful deposits so far, all writers together.
    pub progress: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Done>>>,
}

impl Writers {
    /// Opens the accounts, then starts `n` writers; keys start with `prefix`.
    pub async fn start(base: &str, n: usize, prefix: &str) -> Writers {
        let c = client();
        open_accounts(&c, base, n).await;
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for w in 0..n {
            let (c, base, stop, progress) =
                (c.clone(), base.to_owned(), stop.clone(), progress.clone());
            let prefix = prefix.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = done.len();
                    done.push(
                        until_done(
                            &c,
                            &base,
                            &format!("/accounts/{}/deposit", w + 1),
                            &format!("{prefix}-{w}-{i}"),
                            "{\"amount\":1}",
                        )
                        .await,
                    );
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                done
            }));
        }
        Writers {
            stop,
            progress,
            tasks,
        }
    }

    /// Waits until at least `n` deposits succeeded in all.
    pub async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.progress.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the load made no progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the writers; returns each writer's deposits.
    pub async fn stop(self) -> Vec<Vec<Done>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.push(t.await.unwrap());
        }
        all
    }
}

/// Account w+1 holds exactly writer w's deposits, on the backend whose `GET /accounts` answer
/// is `view`: nothing lost, nothing applied twice.
pub fn assert_balances(view: &str, deposits: &[Vec<Done>], who: &str) {
    let accounts: Vec<Value> = serde_json::from_str(view).unwrap();
    assert_eq!(accounts.len(), deposits.len(), "{who}: {view}");
    for (w, done) in deposits.iter().enumerate() {
        assert_eq!(
            accounts[w]["balance"],
            done.len() as u64,
            "{who}: writer {w}'s deposits exactly once: {view}"
        );
    }
}

/// `GET /accounts` straight from a backend.
pub async fn accounts_at(c: &reqwest::Client, url: &str) -> String {
    c.get(format!("{url}/accounts"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// One admin request; the status code and the JSON answer. Catch-ups replay while traffic
/// flows, so the timeout is long.
pub async fn admin_call(
    admin: std::net::SocketAddr,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let mut r = c.request(method, format!("http://{admin}{path}"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The value of the sample `series` (name and labels as written, in order) in a Prometheus text
/// scrape, if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}
