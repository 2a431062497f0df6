//! Test support shared by the crate's tests: a fake stateful service per backend behind an
//! in-memory transport, and builders for pools and requests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use lockstep_config::{
    AckPolicy, BackendConfig, CompareRule, DispatchMode, OnDivergence, ReplicationConfig, Role,
};
use lockstep_journal::{Header, MemoryJournal, RequestRecord, ResponseRecord};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{Backend, Pool, Replicator, Submission, Transport, TransportError};

/// How a fake backend behaves.
#[derive(Debug, Clone, Default)]
pub(crate) struct Behaviour {
    /// Delay before answering requests whose URI starts with this prefix.
    pub(crate) slow: Option<(String, Duration)>,
    /// Refuse connections.
    pub(crate) refuse: bool,
    /// Never answer.
    pub(crate) hang: bool,
    /// Add one to every counter it returns.
    pub(crate) wrong: bool,
}

/// A fake stateful service per backend: `POST /{key}/...` increments counter `key` and answers
/// with its new value. The same per-key order gives the same answers.
#[derive(Debug, Default)]
pub(crate) struct FakeBackends {
    behaviour: Mutex<HashMap<String, Behaviour>>,
    counters: Mutex<HashMap<String, HashMap<String, u64>>>,
    /// (backend, uri, Lockstep-Sequence) in processing order.
    log: Mutex<Vec<(String, String, u64)>>,
    /// Bumped on every processed request, so tests can wait for progress instead of sleeping.
    progress: watch::Sender<usize>,
    /// Per backend: (requests being handled now, the most ever handled at once).
    concurrency: Mutex<HashMap<String, (usize, usize)>>,
    /// Per backend: (status, how many more writes to refuse with it, unprocessed).
    shedding: Mutex<HashMap<String, (u16, u32)>>,
    /// Per backend: the instance its `GET /health` names in `x-boot-id`.
    boots: Mutex<HashMap<String, String>>,
    /// Per backend: how many more requests to refuse the connection of.
    unreachable_for: Mutex<HashMap<String, u32>>,
}

impl FakeBackends {
    pub(crate) fn set(&self, backend: &str, b: Behaviour) {
        self.behaviour.lock().insert(backend.into(), b);
    }

    pub(crate) fn processed(&self, backend: &str) -> Vec<(String, u64)> {
        self.log
            .lock()
            .iter()
            .filter(|(b, _, _)| b == backend)
            .map(|(_, uri, seq)| (uri.clone(), *seq))
            .collect()
    }

    /// Waits until `done` holds, re-checking after every processed request.
    pub(crate) async fn wait_until(&self, done: impl Fn(&Self) -> bool) {
        let mut rx = self.progress.subscribe();
        while !done(self) {
            rx.changed().await.unwrap();
        }
    }

    /// The most requests `backend` ever handled at once.
    pub(crate) fn max_concurrent(&self, backend: &str) -> usize {
        self.concurrency.lock().get(backend).map_or(0, |c| c.1)
    }

    /// Makes `backend` refuse its next `times` writes with `status` (and `Retry-After: 0`),
    /// without processing them, as a service shedding load does.
    pub(crate) fn shed(&self, backend: &str, status: u16, times: u32) {
        self.shedding.lock().insert(backend.into(), (status, times));
    }

    /// Makes `backend` refuse the connection of its next `requests` requests (of any kind).
    pub(crate) fn unreachable_for(&self, backend: &str, requests: u32) {
        self.unreachable_for.lock().insert(backend.into(), requests);
    }

    /// Makes `backend`'s `GET /health` name the instance `boot` (`x-boot-id`).
    pub(crate) fn boot(&self, backend: &str, boot: &str) {
        self.boots.lock().insert(backend.into(), boot.into());
    }

    /// Empties `backend`'s state, as its reset hook would.
    pub(crate) fn reset(&self, backend: &str) {
        self.counters.lock().remove(backend);
    }

    pub(crate) fn state(&self, backend: &str) -> HashMap<String, u64> {
        self.counters
            .lock()
            .get(backend)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl Transport for FakeBackends {
    async fn send(
        &self,
        backend: &Backend,
        request: &RequestRecord,
        extra: &[Header],
        timeout: Duration,
    ) -> Result<ResponseRecord, TransportError> {
        let b = self
            .behaviour
            .lock()
            .get(&backend.name)
            .cloned()
            .unwrap_or_default();
        let briefly_unreachable = match self.unreachable_for.lock().get_mut(&backend.name) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        };
        if b.refuse || briefly_unreachable {
            return Err(TransportError::Connect("connection refused".into()));
        }
        if b.hang {
            tokio::time::sleep(timeout).await;
            return Err(TransportError::Timeout(timeout));
        }
        if let Some((prefix, delay)) = &b.slow {
            if request.uri.starts_with(prefix.as_str()) {
                {
                    let mut c = self.concurrency.lock();
                    let c = c.entry(backend.name.clone()).or_default();
                    c.0 += 1;
                    c.1 = c.1.max(c.0);
                }
                tokio::time::sleep(*delay).await;
                self.concurrency
                    .lock()
                    .get_mut(&backend.name)
                    .expect("counted above")
                    .0 -= 1;
            }
        }
        let seq = extra
            .iter()
            .find(|h| h.name == "Lockstep-Sequence")
            .and_then(|h| std::str::from_utf8(&h.value).ok()?.parse().ok())
            .unwrap_or(0);
        if request.method == "GET" && request.uri == "/health" {
            let boot = self.boots.lock().get(&backend.name).cloned();
            return Ok(ResponseRecord {
                status: 200,
                headers: boot
                    .map(|b| Header::new("x-boot-id", b))
                    .into_iter()
                    .collect(),
                body: Bytes::new(),
            });
        }
        if request.method == "GET" {
            // A read: the whole state, in key order.
            let state: std::collections::BTreeMap<String, u64> = self
                .counters
                .lock()
                .get(&backend.name)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            return Ok(ResponseRecord {
                status: 200,
                headers: vec![],
                body: Bytes::from(format!("{state:?}")),
            });
        }
        let shed = {
            let mut shedding = self.shedding.lock();
            match shedding.get_mut(&backend.name) {
                Some((status, left)) if *left > 0 => {
                    *left -= 1;
                    Some(*status)
                }
                _ => None,
            }
        };
        if let Some(status) = shed {
            return Ok(ResponseRecord {
                status,
                headers: vec![Header::new("retry-after", "0")],
                body: Bytes::from_static(b"{\"error\":\"overloaded, try again\"}"),
            });
        }
        let key = request
            .uri
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let value = {
            let mut counters = self.counters.lock();
            let c = counters
                .entry(backend.name.clone())
                .or_default()
                .entry(key.clone())
                .or_default();
            *c += 1;
            *c + u64::from(b.wrong)
        };
        self.log
            .lock()
            .push((backend.name.clone(), request.uri.clone(), seq));
        self.progress.send_modify(|n| *n += 1);
        Ok(ResponseRecord {
            status: 200,
            headers: vec![Header::new("content-type", "application/json")],
            body: Bytes::from(format!("{{\"{key}\":{value}}}")),
        })
    }
}

pub(crate) fn backend(name: &str, role: Role) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        url: format!("http://127.0.0.1:1/{name}").parse().unwrap(),
        role,
        implementation: "v1".into(),
        reset: None,
    }
}

pub(crate) fn config(ack: AckPolicy, dispatch: DispatchMode) -> ReplicationConfig {
    ReplicationConfig {
        ack,
        dispatch,
        backup_timeout: Duration::from_millis(300),
        primary_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        on_divergence: OnDivergence::Eject,
        refusals: vec![408, 429, 503],
    }
}

pub(crate) fn setup(
    cfg: ReplicationConfig,
) -> (Arc<Replicator>, Arc<FakeBackends>, Arc<MemoryJournal>) {
    let fakes = Arc::new(FakeBackends::default());
    let journal = Arc::new(MemoryJournal::new());
    (restart(cfg, &fakes, &journal), fakes, journal)
}

/// A new replicator (a "restarted gateway") over existing backends and an existing journal.
pub(crate) fn restart(
    cfg: ReplicationConfig,
    fakes: &Arc<FakeBackends>,
    journal: &Arc<MemoryJournal>,
) -> Arc<Replicator> {
    let pool = Arc::new(Pool::new(&[
        backend("a", Role::Primary),
        backend("b", Role::Backup),
        backend("c", Role::Backup),
    ]));
    let (fakes, journal) = (fakes.clone(), journal.clone());
    Replicator::new(
        pool,
        journal.clone(),
        fakes.clone(),
        cfg,
        Arc::new(crate::SystemClock),
    )
}

pub(crate) fn post(lane: &str, uri: &str) -> Submission {
    Submission {
        lane: lane.into(),
        request: RequestRecord {
            method: "POST".into(),
            uri: uri.into(),
            headers: vec![],
            body: Bytes::new(),
        },
        compare: CompareRule::default(),
        idempotency: None,
        hold: None,
        transaction: None,
    }
}
