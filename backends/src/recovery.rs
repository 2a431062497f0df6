//! Restarting on an existing journal: restore the persisted topology, rebuild each backend's
//! acknowledgement watermark from the history, and finish every request that was journaled but
//! not committed — before admission resumes.
//!
//! The rule for a request a backend may have seen: acknowledged → it has it; never dispatched →
//! it does not (and can be sent it now); dispatched but not acknowledged → its outcome is
//! unknown, so the backend is marked `suspect` and is not trusted until a rejoin verifies it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use lockstep_config::CompareRule;
use lockstep_journal::{Entry, EntryState, JournalError, RequestRecord, Seq, Topology};
use serde::Serialize;
use tracing::{info, warn};

use crate::replicator::{NOT_DELIVERED, context_headers};
use crate::watermark::Watermark;
use crate::{BackendState, Replicator};

/// What a restart found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    pub last_seq: Seq,
    /// Requests journaled but not committed at the crash, finished now.
    pub resumed: Vec<Seq>,
    /// Requests that could not be finished (no primary could take them).
    pub aborted: Vec<Seq>,
    /// Backends whose last request has an unknown outcome.
    pub suspects: Vec<String>,
    pub primary: String,
}

fn parse_state(s: &str) -> Option<BackendState> {
    Some(match s {
        "in-sync" => BackendState::InSync,
        "lagging" => BackendState::Lagging,
        "diverged" => BackendState::Diverged,
        "joining" => BackendState::Lagging, // an interrupted join starts over
        "suspect" => BackendState::Suspect,
        "down" => BackendState::Down,
        _ => return None,
    })
}

impl Replicator {
    /// Applies a persisted topology to the backends it names: who is primary, each one's state,
    /// the epoch. Run before serving anything, reads included.
    pub fn restore(&self, topology: &Topology) {
        for record in &topology.backends {
            if let (Some(b), Some(state)) =
                (self.pool().get(&record.name), parse_state(&record.state))
            {
                b.set_state(state);
            }
        }
        if let Some(primary) = self.pool().get(&topology.primary) {
            self.pool().set_primary(primary);
        }
        self.epoch
            .store(topology.epoch, std::sync::atomic::Ordering::Release);
    }

    /// Rebuilds watermarks from the journal and finishes unresolved requests. Admission must be
    /// fenced meanwhile (nothing else may reach the backends).
    pub async fn recover(
        self: &Arc<Self>,
        compare: &(dyn Fn(&RequestRecord) -> CompareRule + Send + Sync),
    ) -> Result<RecoveryReport, JournalError> {
        let backends = self.pool().all();
        let mut marks: HashMap<String, Watermark> = backends
            .iter()
            .map(|b| (b.name.clone(), Watermark::default()))
            .collect();
        let mut unknown: BTreeSet<String> = BTreeSet::new();
        let mut unresolved: Vec<Entry> = Vec::new();
        let mut next = 1;
        loop {
            let batch = self.journal().read_from(next, 1024).await?;
            let Some(last) = batch.last() else { break };
            next = last.seq + 1;
            for e in batch {
                if matches!(e.state, EntryState::Pending | EntryState::Answered(_)) {
                    unresolved.push(e);
                    continue;
                }
                let never_received =
                    matches!(&e.state, EntryState::Aborted(r) if r.starts_with(NOT_DELIVERED));
                for b in &backends {
                    let acked = e.acks.contains(&b.name);
                    let sent = e.dispatched.contains(&b.name);
                    let aborted = matches!(e.state, EntryState::Aborted(_));
                    if acked || (aborted && (!sent || never_received)) {
                        marks.get_mut(&b.name).expect("every backend").mark(e.seq);
                    } else if sent {
                        unknown.insert(b.name.clone());
                    }
                }
            }
        }
        for b in &backends {
            b.reset_acked(marks.remove(&b.name).unwrap_or_default());
            if unknown.contains(&b.name) && b.state() == BackendState::InSync {
                self.change_state(
                    b,
                    None,
                    BackendState::Suspect,
                    "a request sent before the restart has an unknown outcome",
                );
            }
        }

        let mut report = RecoveryReport {
            last_seq: self.last_seq(),
            ..Default::default()
        };
        for e in unresolved {
            match self.resume(&e, compare).await {
                Ok(()) => report.resumed.push(e.seq),
                Err(reason) => {
                    warn!(seq = e.seq, %reason, "a journaled request could not be finished after the restart");
                    self.journal().abort(e.seq, reason).await?;
                    for b in &backends {
                        if !e.dispatched.contains(&b.name) {
                            b.mark_acked(e.seq);
                        }
                    }
                    report.aborted.push(e.seq);
                }
            }
        }
        // A backup the topology calls in-sync but that misses committed requests (its ejection
        // was not persisted before the crash) needs a catch-up.
        let primary = self.pool().primary();
        for b in self.pool().backups() {
            if b.state() == BackendState::InSync && b.acked_seq() < report.last_seq {
                self.change_state(
                    &b,
                    None,
                    BackendState::Lagging,
                    "misses requests after the restart",
                );
            }
        }
        report.suspects = backends
            .iter()
            .filter(|b| b.state() == BackendState::Suspect)
            .map(|b| b.name.clone())
            .collect();
        report.primary = primary.name.clone();
        info!(last_seq = report.last_seq, resumed = report.resumed.len(), aborted = report.aborted.len(), primary = %report.primary, "journal recovered");
        Ok(report)
    }

    /// Finishes one unresolved request on the current primary (failing over if the primary
    /// cannot take it) and the in-sync backups, and commits it.
    async fn resume(
        self: &Arc<Self>,
        e: &Entry,
        compare: &(dyn Fn(&RequestRecord) -> CompareRule + Send + Sync),
    ) -> Result<(), String> {
        let extra = context_headers(e.seq, e.time);
        let response = loop {
            let primary = self.pool().primary();
            if primary.state() != BackendState::InSync {
                let Some(successor) = self.choose_successor() else {
                    return Err(format!(
                        "{NOT_DELIVERED}no in-sync backend can take request {} after the restart",
                        e.seq
                    ));
                };
                self.pool().set_primary(successor.clone());
                self.topology_changed(
                    "primary-changed",
                    Some(&successor.name),
                    &format!(
                        "{} cannot finish request {} after the restart",
                        primary.name, e.seq
                    ),
                );
                continue;
            }
            if e.acks.contains(&primary.name) {
                if let EntryState::Answered(r) = &e.state {
                    primary.mark_acked(e.seq);
                    break r.clone();
                }
            }
            if e.dispatched.contains(&primary.name) {
                self.change_state(
                    &primary,
                    None,
                    BackendState::Suspect,
                    &format!("request {} has an unknown outcome after the restart", e.seq),
                );
                continue;
            }
            match self
                .dispatch(
                    &primary,
                    e.seq,
                    &e.request,
                    &extra,
                    self.config().primary_timeout,
                )
                .await
            {
                Ok(r) => {
                    self.record_primary_answer(&primary, e.seq, &r)
                        .await
                        .map_err(|j| j.to_string())?;
                    break r;
                }
                Err(err) if err.not_delivered() => {
                    self.change_state(&primary, None, BackendState::Down, &err.to_string());
                }
                Err(err) => {
                    self.change_state(&primary, None, BackendState::Suspect, &err.to_string());
                }
            }
        };
        let rule = compare(&e.request);
        for b in self.pool().backups() {
            if b.state() != BackendState::InSync || e.acks.contains(&b.name) {
                if e.acks.contains(&b.name) {
                    b.mark_acked(e.seq);
                }
                continue;
            }
            if e.dispatched.contains(&b.name) {
                self.change_state(
                    &b,
                    None,
                    BackendState::Suspect,
                    &format!("request {} has an unknown outcome after the restart", e.seq),
                );
                continue;
            }
            match self
                .dispatch(&b, e.seq, &e.request, &extra, self.config().backup_timeout)
                .await
            {
                Ok(answer) => {
                    self.judge(&b, e.seq, &rule, &response, &answer).await;
                }
                Err(err) => {
                    self.change_state(
                        &b,
                        Some(BackendState::InSync),
                        BackendState::Lagging,
                        &format!("request {}: {err}", e.seq),
                    );
                }
            }
        }
        self.journal()
            .commit(e.seq, response)
            .await
            .map_err(|j| j.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
