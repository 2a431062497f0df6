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
//!
//! A bank may show random ids (the demo's `--ids random`), with a key of its own drawn from the
//! seed: the copies then answer the same requests with different ids, and the gateway must
//! translate. A copy that restarts empty has lost its disk, key included, and draws a new one; a
//! copy put back from a snapshot gets the key the snapshot holds. What the bank records and what
//! the checks compare is in the stores' numbers (creation order), the same on every copy that
//! processed the same requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use lockstep_demo::{AccountId, IdKey, MemoryStore, Snapshot, Store};
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
    /// The path, with a random id in it written as the account's number.
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
    /// With random ids, where its keys come from, and how many it drew.
    keys: Option<(u64, Arc<AtomicU64>)>,
}

/// A copy of a bank's durable part, taken at some moment: what a restart from an old snapshot
/// comes back with.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    snapshot: Snapshot,
    applied: Vec<Applied>,
}

impl Bank {
    /// A bank with sequential ids, or (`random_ids`: the seed of its keys) random ones.
    pub(crate) fn new(name: &'static str, random_ids: Option<u64>) -> Self {
        let keys = random_ids.map(|seed| (seed, Arc::new(AtomicU64::new(0))));
        let store = match &keys {
            Some((seed, drawn)) => MemoryStore::with_random_ids(draw_key(*seed, drawn)),
            None => MemoryStore::new(),
        };
        Bank {
            name,
            store: Arc::new(store),
            applied: Arc::default(),
            boots: Arc::default(),
            keys,
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
    /// gone. With `None`, the bank comes back empty, and with random ids under a new key.
    pub(crate) fn restore(&self, saved: Option<&Saved>) {
        match (saved, &self.keys) {
            (Some(saved), _) => {
                self.store
                    .import(saved.snapshot.clone())
                    .expect("a snapshot of the memory store imports");
                *self.applied.lock() = saved.applied.clone();
            }
            (None, None) => {
                self.store.reset().expect("the memory store resets");
                self.applied.lock().clear();
            }
            (None, Some((seed, drawn))) => {
                let empty = Snapshot {
                    next_id: 1,
                    accounts: Vec::new(),
                    id_key: Some(draw_key(*seed, drawn)),
                };
                self.store.import(empty).expect("an empty snapshot imports");
                self.applied.lock().clear();
            }
        }
    }

    /// The whole state of the bank, its id key included.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.store.export().expect("the memory store exports")
    }

    /// The state with the id space left out: the accounts in the stores' numbers and the next
    /// number, what every copy that processed the same requests holds.
    pub(crate) fn state(&self) -> Snapshot {
        Snapshot {
            id_key: None,
            ..self.snapshot()
        }
    }

    /// How the bank shows account `id` over HTTP now.
    pub(crate) fn public_id(&self, id: AccountId) -> String {
        match self.store.id_key() {
            Some(key) => key.encode(id),
            None => id.to_string(),
        }
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
                (self.applied.clone(), self.store.clone()),
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

/// The next key of a bank whose keys come from `seed`; `drawn` counts those drawn so far.
fn draw_key(seed: u64, drawn: &AtomicU64) -> IdKey {
    let n = drawn.fetch_add(1, Ordering::SeqCst);
    IdKey::from_seed(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// `path` with every segment shaped like a random id written as the number it stands for in
/// the bank's id space (`key`), so that two copies' records of one request are equal.
fn in_numbers(path: &str, key: Option<IdKey>) -> String {
    let Some(key) = key else {
        return path.to_owned();
    };
    path.split('/')
        .map(|segment| match key.decode(segment) {
            Some(id) => id.to_string(),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

type Recorder = (Arc<Mutex<Vec<Applied>>>, Arc<MemoryStore>);

/// Records every state-changing request the bank answered with a 2xx; a reset starts a new
/// life, so it clears the record.
async fn record(State((applied, store)): State<Recorder>, req: Request, next: Next) -> Response {
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
            let path = in_numbers(&path, store.id_key());
            applied.push(Applied { seq, key, path });
        }
    }
    response
}
