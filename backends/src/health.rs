//! Health: a pure per-backend state machine fed by active checks, and the loop that runs them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use lockstep_config::HealthConfig;
use lockstep_journal::{Header, RequestRecord};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::pool::BackendState;
use crate::replicator::Replicator;

/// Consecutive-result thresholds. A tracker starts with no opinion: the first result decides.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    healthy: Option<bool>,
    streak: u32,
    healthy_after: u32,
    unhealthy_after: u32,
}

impl HealthTracker {
    pub fn new(healthy_after: u32, unhealthy_after: u32) -> Self {
        HealthTracker {
            healthy: None,
            streak: 0,
            healthy_after,
            unhealthy_after,
        }
    }

    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Feeds one check result; returns `Some(new)` when the verdict flipped.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        match self.healthy {
            None => {
                self.healthy = Some(ok);
                self.streak = 0;
                Some(ok)
            }
            Some(current) if current == ok => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let needed = if ok {
                    self.healthy_after
                } else {
                    self.unhealthy_after
                };
                if self.streak >= needed {
                    self.healthy = Some(ok);
                    self.streak = 0;
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }
}

/// Runs active health checks against every backend and moves states accordingly: an in-sync
/// backend (or the primary) that stops answering goes `down`; a `down` one that answers again
/// must prove its state before it is in-sync (see [`Replicator::readmit`]); one whose instance
/// identity changed restarted (see [`Replicator::restarted`]).
#[derive(Debug)]
pub struct HealthChecker {
    replicator: Arc<Replicator>,
    transport: Arc<dyn crate::Transport>,
    config: HealthConfig,
}

impl HealthChecker {
    /// `transport` should be this checker's own (its connections live on the checker's runtime).
    /// With `[health] identity_header`, the replicator learns the same check, to ask a promotion
    /// candidate which instance it is (see [`Replicator::set_identity_check`]).
    pub fn new(
        replicator: Arc<Replicator>,
        transport: Arc<dyn crate::Transport>,
        config: HealthConfig,
    ) -> Self {
        if let Some(header) = &config.identity_header {
            replicator.set_identity_check(Some(crate::IdentityCheck {
                path: config.path.clone(),
                header: header.clone(),
                timeout: config.timeout,
            }));
        }
        HealthChecker {
            replicator,
            transport,
            config,
        }
    }

    /// Checks until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut trackers: HashMap<String, HealthTracker> = HashMap::new();
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            self.check_all(&mut trackers).await;
        }
    }

    /// One round of checks, all backends at once.
    pub async fn check_all(&self, trackers: &mut HashMap<String, HealthTracker>) {
        let backends = self.replicator.pool().all();
        let checks = backends.iter().map(|b| self.check(b));
        let results = futures::future::join_all(checks).await;
        for (backend, (ok, identity)) in backends.iter().zip(results) {
            if let Some(identity) = identity {
                if let Some(previous) = backend.observe_identity(&identity) {
                    let (r, b) = (self.replicator.clone(), backend.clone());
                    tokio::spawn(async move { r.restarted(&b, &previous, &identity).await });
                }
            }
            let tracker = trackers.entry(backend.name.clone()).or_insert_with(|| {
                HealthTracker::new(self.config.healthy_after, self.config.unhealthy_after)
            });
            match tracker.observe(ok) {
                Some(false) => {
                    let is_primary = self.replicator.pool().primary().name == backend.name;
                    if is_primary && self.replicator.has_successor() {
                        warn!(backend = %backend.name, "the primary failed its health checks; failing over");
                        self.replicator
                            .declare_primary_lost(backend, "failed its health checks");
                    } else {
                        self.replicator.change_state(
                            backend,
                            Some(BackendState::InSync),
                            BackendState::Down,
                            "failed its health checks",
                        );
                    }
                }
                Some(true) => {
                    if backend.state() == BackendState::Down {
                        let (r, b) = (self.replicator.clone(), backend.clone());
                        tokio::spawn(async move {
                            r.readmit(&b, BackendState::Down, "reachable again").await
                        });
                    } else {
                        info!(backend = %backend.name, state = %backend.state(), "backend is healthy");
                    }
                }
                None => {}
            }
        }
    }

    /// Whether the check passed, and the instance identity it answered (when configured).
    async fn check(&self, backend: &crate::Backend) -> (bool, Option<String>) {
        let request = RequestRecord {
            method: "GET".into(),
            uri: self.config.path.clone(),
            headers: vec![Header::new("User-Agent", "lockstep-health")],
            body: Bytes::new(),
        };
        match self
            .transport
            .send(backend, &request, &[], self.config.timeout)
            .await
        {
            Ok(r) => {
                let identity = self
                    .config
                    .identity_header
                    .as_deref()
                    .and_then(|name| r.header(name))
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                ((200..300).contains(&r.status), identity)
            }
            Err(_) => (false, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides() {
        let mut t = HealthTracker::new(2, 2);
        assert_eq!(t.observe(false), Some(false));
        let mut t = HealthTracker::new(2, 2);
        assert_eq!(t.observe(true), Some(true));
    }

    #[test]
    fn flips_only_after_the_threshold_of_consecutive_results() {
        let mut t = HealthTracker::new(2, 3);
        t.observe(true);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(true), None);
        assert_eq!(
            t.observe(false),
            None,
            "a contrary result resets the streak"
        );
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.healthy(), Some(true));
    }
}
