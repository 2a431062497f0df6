//! Re-admission by proof: a backend that was unreachable, or that restarted, may have come back
//! empty, from an old snapshot, or as another machine on the same address. Reachability says
//! nothing about its state, so it returns to in-sync only when its view has been checked against
//! the primary's under a short fence, as at the end of a join.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_config::ViewProbe;

use super::*;
use crate::probes::compare_views;

/// Starts a rejoin of the named backend (the gateway's `backend rejoin`, from where it
/// stopped). Set by the gateway with [`Replicator::set_auto_rejoin`] when `[health] auto_rejoin`
/// is on.
pub type RejoinHook = Arc<dyn Fn(String) + Send + Sync>;

/// A [`RejoinHook`] in the replicator (closures have no `Debug`).
#[derive(Clone)]
pub(crate) struct RejoinSlot(RejoinHook);

impl std::fmt::Debug for RejoinSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RejoinHook")
    }
}

/// How to ask a backend which instance answers: the health check's request and the header of its
/// answer that names the instance (`[health] path`, `timeout` and `identity_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCheck {
    pub path: String,
    /// Lowercased.
    pub header: String,
    pub timeout: Duration,
}

/// What a backend that came back was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readmission {
    /// Its view equals the primary's and it missed nothing: in-sync again.
    InSync,
    /// It missed requests while away, or nothing could prove its state: out until rejoined.
    Lagging,
    /// Its view differs from the primary's.
    Diverged,
    /// It is the primary, and no in-sync copy can vouch for it.
    Unproven,
    /// Nothing to do: it was not waiting for a proof (another change came first).
    Unchanged,
}

#[cfg(test)]
mod tests;

impl Replicator {
    /// The view probes that prove a copy (`[[verify.probes]]`).
    pub fn set_probes(&self, probes: Vec<ViewProbe>) {
        *self.probes.lock() = probes;
    }

    pub(crate) fn probes(&self) -> Vec<ViewProbe> {
        self.probes.lock().clone()
    }

    /// Lets a failover ask each candidate which instance it is before promoting it (set by the
    /// health checker when `[health] identity_header` is configured).
    pub fn set_identity_check(&self, check: Option<IdentityCheck>) {
        *self.identity_check.lock() = check;
    }

    pub(crate) fn identity_check(&self) -> Option<IdentityCheck> {
        self.identity_check.lock().clone()
    }

    /// Lets copies that come back having missed requests be rejoined automatically.
    pub fn set_auto_rejoin(&self, hook: RejoinHook) {
        *self.auto_rejoin.lock() = Some(RejoinSlot(hook));
    }

    /// A backend that was `from` (`down`, or `suspect` after a restart) answers again. It is
    /// in-sync again only if it missed no request and its view equals the primary's, checked
    /// with admission fenced and drained so both answer at the same point of the history.
    /// Otherwise it is `diverged` (its view differs), or `lagging` with the command to run (it
    /// missed requests, or no probe can prove it) — and rejoined at once when a rejoin hook is
    /// set. The primary itself cannot be proven without an in-sync copy: it is left `suspect`.
    pub async fn readmit(
        self: &Arc<Self>,
        backend: &Arc<Backend>,
        from: BackendState,
        why: &str,
    ) -> Readmission {
        let _one_change = self.topology_change.lock().await;
        if backend.state() != from || !self.is_member(backend) {
            return Readmission::Unchanged;
        }
        let name = backend.name.clone();
        let primary = self.pool.primary();
        if Arc::ptr_eq(&primary, backend) {
            let detail = format!(
                "{why}, but no in-sync backup can prove its state (it may have restarted empty): \
                 it keeps serving as the only copy; check its data, and rejoin a backup from the \
                 journal (lockstep backend rejoin NAME --reset) to have a proven copy again"
            );
            self.change_state(backend, Some(from), BackendState::Suspect, &detail);
            return Readmission::Unproven;
        }
        let probes = self.probes();
        let started = Instant::now();
        self.fence();
        self.drain().await;
        let missed = backend.acked_seq() < self.last_seq();
        let (to, detail) = if missed {
            let from_seq = backend.acked_seq() + 1;
            (
                BackendState::Lagging,
                format!(
                    "{why} after missing requests from {from_seq}; it rejoins from there with a \
                     view check: lockstep backend rejoin {name}"
                ),
            )
        } else if probes.is_empty() {
            (
                BackendState::Lagging,
                format!(
                    "{why}; with no [[verify.probes]] its state cannot be proven (it may have \
                     restarted empty): check it, then lockstep backend rejoin {name} (or rejoin \
                     {name} --reset to rebuild it from the journal)"
                ),
            )
        } else {
            match compare_views(
                self.transport.as_ref(),
                &primary,
                backend,
                &probes,
                self.config.backup_timeout,
            )
            .await
            {
                Ok(differences) if differences.is_empty() => (
                    BackendState::InSync,
                    format!("{why}; its view equals the primary's"),
                ),
                Ok(differences) => {
                    let list: Vec<String> = differences
                        .iter()
                        .map(|d| format!("{}: {}", d.probe, d.difference))
                        .collect();
                    (
                        BackendState::Diverged,
                        format!(
                            "{why}, but its view differs from the primary's ({}): rebuild it with \
                             lockstep backend rejoin {name} --reset",
                            list.join("; ")
                        ),
                    )
                }
                Err((who, error)) => (
                    BackendState::Lagging,
                    format!(
                        "{why}, but the view check failed ({who}: {error}): lockstep backend \
                         rejoin {name}"
                    ),
                ),
            }
        };
        let moved = self.change_state(backend, Some(from), to, &detail);
        self.unfence();
        Replicator::record_pause("readmission", started.elapsed());
        if moved && to == BackendState::Lagging && !probes.is_empty() {
            let hook = self.auto_rejoin.lock().clone();
            if let Some(RejoinSlot(hook)) = hook {
                info!(backend = %name, "rejoining automatically ([health] auto_rejoin)");
                hook(name);
            }
        }
        match (moved, to) {
            (false, _) => Readmission::Unchanged,
            (true, BackendState::InSync) => Readmission::InSync,
            (true, BackendState::Diverged) => Readmission::Diverged,
            (true, _) => Readmission::Lagging,
        }
    }

    /// At start, after the recovery, with view probes: every in-sync backup must show the
    /// primary's view, and one that does not is marked `diverged` before it receives a request.
    /// Unless the primary is the odd one out: it may have lost its state while the gateway was
    /// down (no instance identity was seen before the start to tell). When no backup's view
    /// equals the primary's and at least two backups answer with views equal to each other, they
    /// outvote it: the best of them (highest acknowledged seq, then config order) becomes the
    /// primary and the old primary is `diverged`. A backup that does not answer is left to the
    /// health checks.
    pub async fn verify_at_start(&self, probes: &[ViewProbe]) {
        if probes.is_empty() {
            return;
        }
        let primary = self.pool.primary();
        let timeout = self.config.backup_timeout;
        let transport = self.transport.as_ref();
        let mut agreeing = 0;
        let mut differing: Vec<(Arc<Backend>, String)> = Vec::new();
        for backup in self.pool.backups() {
            if backup.state() != BackendState::InSync {
                continue;
            }
            match compare_views(transport, &primary, &backup, probes, timeout).await {
                Ok(differences) if differences.is_empty() => agreeing += 1,
                Ok(differences) => {
                    let list: Vec<String> = differences
                        .iter()
                        .map(|d| format!("{}: {}", d.probe, d.difference))
                        .collect();
                    differing.push((backup, list.join("; ")));
                }
                Err(_) => {}
            }
        }
        if agreeing == 0 && differing.len() >= 2 {
            let mut outvoting = true;
            for (backup, _) in &differing[1..] {
                let equal =
                    compare_views(transport, &differing[0].0, backup, probes, timeout).await;
                outvoting &= equal.is_ok_and(|d| d.is_empty());
            }
            if outvoting {
                let mut voters: Vec<Arc<Backend>> =
                    differing.iter().map(|(b, _)| b.clone()).collect();
                voters.sort_by_key(|b| std::cmp::Reverse(b.acked_seq()));
                let successor = voters[0].clone();
                let names: Vec<&str> = voters.iter().map(|b| b.name.as_str()).collect();
                let detail = format!(
                    "at start its view differed from every in-sync backup's ({}), which agree: it \
                     lost its state while the gateway was down; rebuild it with lockstep backend \
                     rejoin {} --reset",
                    names.join(", "),
                    primary.name
                );
                warn!(primary = %primary.name, successor = %successor.name, "the primary's view differs from every backup's at start");
                self.change_state(&primary, None, BackendState::Diverged, &detail);
                self.pool.set_primary(successor.clone());
                self.topology_changed(
                    "primary-changed",
                    Some(&successor.name),
                    &format!(
                        "{}'s view differed from every in-sync backup's at start; {} promoted",
                        primary.name, successor.name
                    ),
                );
                return;
            }
        }
        for (backup, differences) in differing {
            self.change_state(
                &backup,
                Some(BackendState::InSync),
                BackendState::Diverged,
                &format!("its view differs from the primary's at start: {differences}"),
            );
        }
    }

    /// A backend's health check named another instance than before: it restarted, whatever
    /// its reachability said meanwhile. The primary is replaced when a backup can take over; a
    /// backup, or a primary that no candidate could replace, is `suspect` and must be proven
    /// again ([`Replicator::readmit`]).
    pub async fn restarted(self: &Arc<Self>, backend: &Arc<Backend>, previous: &str, now: &str) {
        let why = format!("restarted (its instance identity changed from {previous} to {now})");
        warn!(backend = %backend.name, previous, now, "backend restarted");
        if Arc::ptr_eq(&self.pool.primary(), backend) && self.has_successor() {
            // As for any lost primary, requests waiting on it give up at once. The failover runs
            // here rather than in the background: when no candidate passes its checks the
            // restarted primary stays, and must not stay trusted.
            self.primary_lost.send_modify(|g| *g += 1);
            self.fail_over(&backend.name, &why).await;
            if !Arc::ptr_eq(&self.pool.primary(), backend) {
                return;
            }
        }
        let state = backend.state();
        if matches!(state, BackendState::InSync | BackendState::Down) {
            // Not trusted from now on; the proof below decides.
            if self.change_state(backend, Some(state), BackendState::Suspect, &why) {
                self.readmit(backend, BackendState::Suspect, &why).await;
            }
        }
    }
}
