//! Test harness: gateways on ephemeral ports in front of in-process backends (the demo bank or
//! a recording mock), a plain HTTP client, and waits on observable conditions instead of sleeps.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Request;
use axum::response::IntoResponse;
use lockstep::{Gateway, Running};
use lockstep_config::Config;
use lockstep_demo::{Faults, Implementation, RunningDemo};
use parking_lot::Mutex;
use tokio::sync::watch;

/// Starts a gateway with `config_toml` on fresh loopback ports.
pub fn start_gateway(config_toml: &str) -> Running {
    start_gateway_with(config_toml, |config| Gateway::new(config).unwrap())
}

/// Starts a gateway built by `build` from the parsed `config_toml`.
pub fn start_gateway_with(config_toml: &str, build: impl FnOnce(Config) -> Gateway) -> Running {
    let mut config_toml = config_toml.to_owned();
    if !config_toml.contains("[journal]") {
        // Every gateway gets its own journal; the directory outlives the test process' view of
        // it only as long as the machine's temp cleaning allows.
        let dir = tempfile::Builder::new()
            .prefix("lockstep-test-journal-")
            .tempdir()
            .unwrap()
            .keep();
        config_toml = format!("[journal]\ndir = \"{}\"\n{config_toml}", dir.display());
    }
    let config_toml = config_toml.as_str();
    let config = Config::from_toml_str(config_toml)
        .unwrap_or_else(|e| panic!("test config: {e}\n{config_toml}"));
    let gw = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    build(config).spawn(gw, admin).unwrap()
}

/// `[[backends]]` tables for the given (name, url) pairs; the first is the primary.
pub fn backends_toml(backends: &[(&str, String)]) -> String {
    let mut s = String::new();
    for (i, (name, url)) in backends.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "backup" };
        s.push_str(&format!(
            "\n[[backends]]\nname = \"{name}\"\nurl = \"{url}\"\nrole = \"{role}\"\n"
        ));
    }
    s
}

/// A demo bank instance; sqlite ones keep their files in a temp dir that lives as long as it.
pub struct Bank {
    pub running: Option<RunningDemo>,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Bank {
    pub async fn start(implementation: Implementation, faults: Faults) -> Bank {
        let dir = match implementation {
            Implementation::Sqlite => Some(tempfile::tempdir().unwrap()),
            Implementation::Memory => None,
        };
        let store =
            lockstep_demo::open_store(implementation, dir.as_ref().map(|d| d.path())).unwrap();
        let running = lockstep_demo::spawn(lockstep_demo::app_with(store, faults))
            .await
            .unwrap();
        let url = running.url();
        Bank {
            running: Some(running),
            url,
            _dir: dir,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn post_json(c: &reqwest::Client, url: String, body: &str) -> reqwest::Response {
    c.post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

pub async fn get_text(c: &reqwest::Client, url: String) -> String {
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.text().await.unwrap()
}

pub async fn status(c: &reqwest::Client, gw: &Running) -> serde_json::Value {
    let body = get_text(c, format!("http://{}/status", gw.admin)).await;
    serde_json::from_str(&body).unwrap()
}

/// The state of backend `name` in a status document.
pub fn backend_state(status: &serde_json::Value, name: &str) -> String {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {status}"))["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls `check` until it returns Some, or fails after `limit` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request as a mock backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn seq(&self) -> u64 {
        self.header("lockstep-sequence")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A recording backend: `METHOD /{key}/...` answers `{"key":"...","n":N}` where N counts the
/// requests with that first path segment (so the same per-key order gives the same answers).
/// Paths under a held prefix wait until the prefix is released. Health checks are not recorded.
#[derive(Clone, Default)]
pub struct Mock {
    inner: Arc<MockInner>,
}

#[derive(Default)]
struct MockInner {
    log: Mutex<Vec<Received>>,
    counters: Mutex<HashMap<String, u64>>,
    held: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// URIs of requests that arrived, before any hold.
    arrived: Mutex<Vec<String>>,
    progress: watch::Sender<usize>,
}

/// `n` mock backends named a, b, c... and their `[[backends]]` tables (the first is primary).
pub async fn start_mocks(n: usize) -> (Vec<MockServer>, String) {
    let mut mocks = Vec::new();
    for _ in 0..n {
        mocks.push(MockServer::start().await);
    }
    let names = ["a", "b", "c", "d", "e"];
    let list: Vec<(&str, String)> = names
        .iter()
        .zip(&mocks)
        .map(|(n, m)| (*n, m.url.clone()))
        .collect();
    let toml = backends_toml(&list);
    (mocks, toml)
}

pub struct MockServer {
    pub mock: Mock,
    pub url: String,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockServer {
    pub async fn start() -> MockServer {
        let mock = Mock::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let m = mock.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let m = m.clone();
            async move { m.handle(req).await }
        });
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        MockServer {
            mock,
            url: format!("http://{addr}"),
            addr,
            stop: Some(stop),
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Mock {
    async fn handle(&self, req: Request) -> axum::response::Response {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let uri = parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        if parts.uri.path() == "/health" {
            return (axum::http::StatusCode::OK, "ok").into_response();
        }
        self.inner.arrived.lock().push(uri.clone());
        self.inner.progress.send_modify(|p| *p += 1);
        let gate = {
            let held = self.inner.held.lock();
            held.iter()
                .find(|(p, _)| uri.starts_with(p.as_str()))
                .map(|(_, released)| released.subscribe())
        };
        if let Some(mut released) = gate {
            let _ = released.wait_for(|r| *r).await;
        }
        let key = uri
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or("")
            .to_owned();
        let n = {
            let mut c = self.inner.counters.lock();
            let n = c.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        self.inner.log.lock().push(Received {
            method: parts.method.to_string(),
            uri,
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
        });
        self.inner.progress.send_modify(|p| *p += 1);
        let reply = format!("{{\"key\":\"{key}\",\"n\":{n}}}");
        ([("content-type", "application/json")], reply).into_response()
    }

    /// Requests under `prefix` wait until [`Mock::release`].
    pub fn hold(&self, prefix: &str) {
        self.inner
            .held
            .lock()
            .insert(prefix.to_owned(), watch::Sender::new(false));
    }

    pub fn release(&self, prefix: &str) {
        if let Some(released) = self.inner.held.lock().get(prefix) {
            released.send_replace(true);
        }
    }

    /// URIs of every request that reached the mock, held or not.
    pub fn arrived(&self) -> Vec<String> {
        self.inner.arrived.lock().clone()
    }

    /// Waits until a request for `uri` arrived (it may be held).
    pub async fn wait_arrived(&self, uri: &str) {
        let mut rx = self.inner.progress.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.arrived().iter().any(|u| u == uri) {
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {uri} to arrive"))
                .unwrap();
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.log.lock().clone()
    }

    /// Waits until `done` holds over what was received.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        let mut rx = self.inner.progress.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done(&self.received()) {
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
                .unwrap();
        }
    }
}
