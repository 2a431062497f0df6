//! A backend host: the demo bank's real router over its in-memory store, served on a simulated
//! socket, with a recorder of the state-changing requests it applied, in order.
//!
//! The store and the recording live outside the host, so they survive `sim.crash`: the bank
//! models a service with durable state (the demo's sqlite implementation), whose process can die
//! and restart. A request is applied and recorded in one poll of the host's runtime, so a crash
//! never separates the two. The driver can also take that state away while the host is down —
//! empty it, or put back a copy saved earlier — to model a copy that restarts empty or from an
//! old snapshot.
//!
//! Like the demo, each start of the host names itself in the health check's answer
//! (`X-Boot-Id`), for the gateway's `[health] identity_header`; here the name is the bank's and
//! a count of its starts, so that it is the same in every run of a seed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use lockstep_demo::{MemoryStore, Snapshot, Store};
use parking_lot::Mutex;
use turmoil::net::TcpListener;

/// The port every bank listens on.
pub(crate) const BANK_PORT: u16 = 9000;

/// One state-changing request a bank applied (answered with a 2xx).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Applied {
    /// `Lockstep-Sequence`, as the gateway sent it.
    pub(crate) seq: u64,
    /// `Idempotency-Key`, as the client sent it.
    pub(crate) key: Option<String>,
    pub(crate) path: String,
}

/// A bank's durable part: its state and what it applied since its last reset.
#[derive(Debug, Clone)]
pub(crate) struct Bank {
    pub(crate) name: &'static str,
    store: Arc<MemoryStore>,
    applied: Arc<Mutex<Vec<Applied>>>,
    /// How many times the host started: the boot id of the running one.
    boots: Arc<AtomicU64>,
}

/// A copy of a bank's durable part, taken at some moment: what a restart from an old snapshot
/// comes back with.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    snapshot: Snapshot,
    applied: Vec<Applied>,
}

impl Bank {
    pub(crate) fn new(name: &'static str) -> Self {
        Bank {
            name,
            store: Arc::new(MemoryStore::new()),
            applied: Arc::default(),
            boots: Arc::default(),
        }
    }

    /// A copy of the state and of the record that goes with it.
    pub(crate) fn save(&self) -> Saved {
        Saved {
            snapshot: self.snapshot(),
            applied: self.applied(),
        }
    }

    /// Puts back a state saved earlier (the host must be down): everything applied since is
    /// gone. With `None`, the bank comes back empty.
    pub(crate) fn restore(&self, saved: Option<&Saved>) {
        match saved {
            Some(saved) => {
                self.store
                    .import(saved.snapshot.clone())
                    .expect("a snapshot of the memory store imports");
                *self.applied.lock() = saved.applied.clone();
            }
            None => {
                self.store.reset().expect("the memory store resets");
                self.applied.lock().clear();
            }
        }
    }

    /// The whole state of the bank.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.store.export().expect("the memory store exports")
    }

    /// The requests applied since the last `POST /admin/reset`, in order.
    pub(crate) fn applied(&self) -> Vec<Applied> {
        self.applied.lock().clone()
    }

    /// Serves the bank until the host crashes.
    pub(crate) async fn serve(self) -> turmoil::Result {
        let store: Arc<dyn Store> = self.store.clone();
        let boot = self.boots.fetch_add(1, Ordering::SeqCst) + 1;
        let boot_id = http::HeaderValue::from_str(&format!("{}-{boot}", self.name))
            .expect("a bank name and digits");
        let router = lockstep_demo::app(store)
            .layer(axum::middleware::from_fn_with_state(
                self.applied.clone(),
                record,
            ))
            .layer(axum::middleware::from_fn_with_state(boot_id, name_boot));
        let listener = TcpListener::bind(("0.0.0.0", BANK_PORT)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                // A connection cut by a fault ends here; the gateway sees it fail.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// Replaces the demo's boot id (made of the real clock and process id) with this start's.
async fn name_boot(State(boot_id): State<http::HeaderValue>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    if response.headers().contains_key("x-boot-id") {
        response.headers_mut().insert("x-boot-id", boot_id);
    }
    response
}

/// Records every state-changing request the bank answered with a 2xx; a reset starts a new
/// life, so it clears the record.
async fn record(
    State(applied): State<Arc<Mutex<Vec<Applied>>>>,
    req: Request,
    next: Next,
) -> Response {
    let changes_state = req.method() != http::Method::GET;
    // Taken in a block: the closure borrowing the request must not live across the await.
    let (seq, key, path) = {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let seq: u64 = header("lockstep-sequence")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (seq, header("idempotency-key"), req.uri().path().to_owned())
    };
    let response = next.run(req).await;
    if changes_state && response.status().is_success() {
        let mut applied = applied.lock();
        if path == "/admin/reset" {
            applied.clear();
        } else {
            applied.push(Applied { seq, key, path });
        }
    }
    response
}
