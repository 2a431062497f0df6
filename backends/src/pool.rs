//! The backends behind the gateway: who is primary, what state each one is in, how far each one
//! has acknowledged the history.

use std::fmt;
use std::sync::Arc;

use lockstep_config::{BackendConfig, Role};
use lockstep_journal::Seq;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::watermark::Watermark;

/// Where a backend stands with respect to the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendState {
    /// Has processed every committed request; takes part in replication.
    InSync,
    /// Missed requests (an error or a timeout); out of the in-sync set until it catches up.
    Lagging,
    /// Answered differently from the primary; out of service until resynced.
    Diverged,
    /// Being filled from the journal.
    Joining,
    /// Its last request has an unknown outcome; not trusted until verified or resynced.
    Suspect,
    /// Does not answer health checks.
    Down,
}

impl BackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::InSync => "in-sync",
            BackendState::Lagging => "lagging",
            BackendState::Diverged => "diverged",
            BackendState::Joining => "joining",
            BackendState::Suspect => "suspect",
            BackendState::Down => "down",
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend: its identity, its state and its acknowledgement watermark.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub url: url::Url,
    pub implementation: String,
    state: Mutex<BackendState>,
    acked: Mutex<Watermark>,
    /// Being filled from an empty state (or a checkpoint) by a catch-up that journals no
    /// per-request marks: a restart cannot resume it, the backend starts over.
    pub(crate) fresh_join: std::sync::atomic::AtomicBool,
    /// Why it is in its state: the detail of its last state change (shown in `/status`).
    detail: Mutex<String>,
    /// What is being retried on it now (a refused request), for `/status`.
    retrying: Mutex<Option<String>>,
    /// The instance identity its health check answered last (`[health] identity_header`).
    identity: Mutex<Option<String>>,
    /// The last seq handed out when it last became in-sync by proof (0: in-sync from the start).
    /// At a promotion where candidates disagree, the one proven longest ago wins a tie.
    proven_since: Mutex<Seq>,
    /// Its local forms of the values the service minted (see [`crate::IdMap`]).
    pub ids: crate::IdMap,
}

impl Backend {
    pub fn new(config: &BackendConfig) -> Self {
        Backend::with_identity(&config.name, config.url.clone(), &config.implementation)
    }

    /// A backend known by name, URL and implementation label, `in-sync` until told otherwise.
    pub fn with_identity(name: &str, url: url::Url, implementation: &str) -> Self {
        Backend {
            name: name.to_owned(),
            url,
            implementation: implementation.to_owned(),
            state: Mutex::new(BackendState::InSync),
            acked: Mutex::new(Watermark::default()),
            fresh_join: std::sync::atomic::AtomicBool::new(false),
            detail: Mutex::new(String::new()),
            retrying: Mutex::new(None),
            identity: Mutex::new(None),
            proven_since: Mutex::new(0),
            ids: crate::IdMap::default(),
        }
    }

    /// Why it is in its state (the detail of its last state change); empty when never changed.
    pub fn detail(&self) -> String {
        self.detail.lock().clone()
    }

    pub(crate) fn set_detail(&self, detail: &str) {
        *self.detail.lock() = detail.to_owned();
    }

    /// What is being retried on it now, if anything.
    pub fn retrying(&self) -> Option<String> {
        self.retrying.lock().clone()
    }

    pub(crate) fn set_retrying(&self, what: Option<String>) {
        *self.retrying.lock() = what;
    }

    /// Records the instance identity a health check answered; returns the previous one when it
    /// differs (the backend restarted).
    pub(crate) fn observe_identity(&self, identity: &str) -> Option<String> {
        let mut known = self.identity.lock();
        match known.replace(identity.to_owned()) {
            Some(previous) if previous != identity => Some(previous),
            _ => None,
        }
    }

    /// See [`Backend::proven_since`](Self).
    pub fn proven_since(&self) -> Seq {
        *self.proven_since.lock()
    }

    pub(crate) fn set_proven_since(&self, seq: Seq) {
        *self.proven_since.lock() = seq;
    }

    pub fn state(&self) -> BackendState {
        *self.state.lock()
    }

    /// Sets the state; returns the previous one.
    pub fn set_state(&self, state: BackendState) -> BackendState {
        std::mem::replace(&mut *self.state.lock(), state)
    }

    /// Moves from `from` to `to` only if the backend is in `from`; returns whether it moved.
    pub fn transition(&self, from: BackendState, to: BackendState) -> bool {
        let mut s = self.state.lock();
        if *s == from {
            *s = to;
            true
        } else {
            false
        }
    }

    /// Every seq `<=` this has been processed by this backend (or needed no processing).
    pub fn acked_seq(&self) -> Seq {
        self.acked.lock().through()
    }

    pub(crate) fn mark_acked(&self, seq: Seq) -> Seq {
        self.acked.lock().mark(seq)
    }

    /// Replaces the watermark (recovery, catch-up).
    pub(crate) fn reset_acked(&self, watermark: Watermark) {
        *self.acked.lock() = watermark;
    }
}

/// The set of backends and which one is primary.
#[derive(Debug)]
pub struct Pool {
    backends: RwLock<Vec<Arc<Backend>>>,
    primary: RwLock<Arc<Backend>>,
}

impl Pool {
    /// Builds the pool from validated config (exactly one primary).
    pub fn new(configs: &[BackendConfig]) -> Self {
        let backends: Vec<Arc<Backend>> =
            configs.iter().map(|c| Arc::new(Backend::new(c))).collect();
        let primary = configs
            .iter()
            .position(|c| c.role == Role::Primary)
            .map(|i| backends[i].clone())
            .expect("validated config has exactly one primary");
        Pool {
            backends: RwLock::new(backends),
            primary: RwLock::new(primary),
        }
    }

    pub fn primary(&self) -> Arc<Backend> {
        self.primary.read().clone()
    }

    /// Makes `backend` the primary; returns the previous one.
    pub fn set_primary(&self, backend: Arc<Backend>) -> Arc<Backend> {
        std::mem::replace(&mut *self.primary.write(), backend)
    }

    /// Every backend, in config order.
    /// What comparisons need to know of the backends: their own addresses, which count as one
    /// value in answers.
    pub fn compare_context(&self) -> crate::CompareContext {
        let all = self.all();
        crate::CompareContext::for_backends(all.iter().map(|b| &b.url))
    }

    pub fn all(&self) -> Vec<Arc<Backend>> {
        self.backends.read().clone()
    }

    /// Every backend but the primary, in config order.
    pub fn backups(&self) -> Vec<Arc<Backend>> {
        let primary = self.primary();
        self.backends
            .read()
            .iter()
            .filter(|b| !Arc::ptr_eq(b, &primary))
            .cloned()
            .collect()
    }

    /// Adds `backend` after the others. Fails (returning it) when its name or URL is taken.
    pub fn add(&self, backend: Arc<Backend>) -> Result<(), Arc<Backend>> {
        let mut backends = self.backends.write();
        if backends
            .iter()
            .any(|b| b.name == backend.name || b.url == backend.url)
        {
            return Err(backend);
        }
        backends.push(backend);
        Ok(())
    }

    /// Removes the backup named `name` and returns it; `None` when there is none or it is the
    /// primary (the primary is never removed: promote another backend first).
    pub fn remove(&self, name: &str) -> Option<Arc<Backend>> {
        let primary = self.primary.read();
        let mut backends = self.backends.write();
        let at = backends
            .iter()
            .position(|b| b.name == name && !Arc::ptr_eq(b, &primary))?;
        Some(backends.remove(at))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Backend>> {
        self.backends
            .read()
            .iter()
            .find(|b| b.name == name)
            .cloned()
    }

    pub fn status(&self, epoch: u64, last_seq: Seq, committed_seq: Seq) -> PoolStatus {
        let primary = self.primary();
        let backends = self
            .all()
            .iter()
            .map(|b| BackendStatus {
                name: b.name.clone(),
                url: b.url.to_string(),
                role: if Arc::ptr_eq(b, &primary) {
                    "primary"
                } else {
                    "backup"
                },
                state: b.state(),
                implementation: b.implementation.clone(),
                acked_seq: b.acked_seq(),
                detail: b.detail(),
                retrying: b.retrying(),
            })
            .collect();
        PoolStatus {
            primary: primary.name.clone(),
            epoch,
            last_seq,
            committed_seq,
            backends,
        }
    }
}

/// What `GET /status` on the admin listener returns.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub primary: String,
    /// Incremented on every topology change.
    pub epoch: u64,
    pub last_seq: Seq,
    pub committed_seq: Seq,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStatus {
    pub name: String,
    pub url: String,
    pub role: &'static str,
    pub state: BackendState,
    pub implementation: String,
    pub acked_seq: Seq,
    /// Why it is in its state, with the command to run when it needs an operator.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// A refused request being retried on it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrying: Option<String>,
}
