//! Restarting on an existing journal: restore the persisted topology, rebuild each backend's
//! acknowledgement watermark from the history, and finish every request that was journaled but
//! not committed — before admission resumes.
//!
//! The rule for a request a backend may have seen: acknowledged → it has it; never dispatched →
//! it does not (and can be sent it now); dispatched but not acknowledged → its outcome is
//! unknown, so the backend is marked `suspect` and is not trusted until a rejoin verifies it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lockstep_config::{CompareRule, ViewProbe};
use lockstep_journal::{Entry, EntryState, JournalError, RequestRecord, Seq, Topology};
use parking_lot::Mutex;
use serde::Serialize;
use tracing::{info, warn};

use crate::probes::compare_views;
use crate::replicator::{NOT_DELIVERED, TxnMode, context_headers};
use crate::watermark::Watermark;
use crate::{BackendState, Replicator};

/// What settling unknown outcomes can use: the view probes, and how far each backend got.
struct Settle<'a> {
    probes: &'a [ViewProbe],
    touched: &'a HashMap<String, Seq>,
}

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
        "joining" => BackendState::Lagging, // an interrupted rejoin goes on from its acks
        // A join from an empty state journals no per-request marks: it starts over (a reset,
        // or `backend remove` and `add`).
        "joining-fresh" => BackendState::Diverged,
        "suspect" => BackendState::Suspect,
        "down" => BackendState::Down,
        _ => return None,
    })
}

impl Replicator {
    /// Applies a persisted topology: membership (backends added or removed at run time), who is
    /// primary, each one's state, the epoch. Run before serving anything, reads included.
    ///
    /// The configuration gives the initial members; after that the journal's topology decides.
    /// A backend the configuration names but the topology does not was added to the configuration
    /// later: it has none of the history, so it starts `lagging` (a rejoin fills it).
    pub fn restore(&self, topology: &Topology) {
        for record in &topology.backends {
            if record.state == "removed" || self.pool().get(&record.name).is_some() {
                continue;
            }
            match lockstep_config::parse_backend_url(&record.url) {
                Ok(url) => {
                    let backend = Arc::new(crate::Backend::with_identity(
                        &record.name,
                        url,
                        &record.implementation,
                    ));
                    if self.pool().add(backend).is_err() {
                        warn!(backend = %record.name, url = %record.url, "a backend added at run time shares its URL with a configured one; it is left out");
                    }
                }
                Err(reason) => {
                    warn!(backend = %record.name, url = %record.url, %reason, "a backend added at run time has an unusable URL; it is left out");
                }
            }
        }
        if let Some(primary) = self.pool().get(&topology.primary) {
            self.pool().set_primary(primary);
        }
        for record in &topology.backends {
            if record.state == "removed" {
                self.remember_removed(record);
                if self.pool().remove(&record.name).is_some() {
                    warn!(backend = %record.name, "the configuration names a backend that was removed at run time; it stays removed (delete it from the configuration, or add it again with `lockstep backend add`)");
                }
                continue;
            }
            if let (Some(b), Some(state)) =
                (self.pool().get(&record.name), parse_state(&record.state))
            {
                b.set_state(state);
                // Only consulted when the journal was compacted (see `recover`).
                b.reset_acked(Watermark::starting_at(record.acked_seq));
            }
        }
        for b in self.pool().all() {
            if !topology.backends.iter().any(|r| r.name == b.name) {
                b.set_state(BackendState::Lagging);
                warn!(backend = %b.name, "a backend new in the configuration starts lagging; fill it with `lockstep backend rejoin {}`", b.name);
            }
        }
        self.epoch
            .store(topology.epoch, std::sync::atomic::Ordering::Release);
    }

    /// Keeps every other topology change (failover, switchover, the end of a rejoin or a join,
    /// a checkpoint, a view check, a removal) waiting while the guard lives. Each of them fences
    /// admission and unfences it when done: the start-up recovery holds this until it opens
    /// admission itself, so that none of them opens it in the middle of the recovery.
    pub async fn hold_topology(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.topology_change.lock().await
    }

    /// Rebuilds watermarks from the journal and finishes unresolved requests. Admission must be
    /// fenced meanwhile (nothing else may reach the backends), and the caller should hold
    /// [`Replicator::hold_topology`].
    pub async fn recover(
        self: &Arc<Self>,
        compare: &(dyn Fn(&RequestRecord) -> CompareRule + Send + Sync),
        probes: &[ViewProbe],
    ) -> Result<RecoveryReport, JournalError> {
        // Backends this recovery found with an unknown outcome. They keep receiving what they
        // certainly never got, so that a view check at the end can clear them.
        // Name → the requests whose outcome there is unknown.
        let doubted: Mutex<BTreeMap<String, Vec<Seq>>> = Mutex::default();
        let backends = self.pool().all();
        // After a compaction the history starts at `first`: a backend that had everything
        // before it (per the persisted topology) starts its watermark there; one that did not can
        // only come back from a checkpoint. Without a persisted topology every watermark is 0.
        let first = self.journal().first_seq();
        let mut marks: HashMap<String, Watermark> = backends
            .iter()
            .map(|b| {
                // An in-sync backend had processed everything up to the seq the topology
                // recorded (a backend seeded from a checkpoint has no acks for the entries the
                // checkpoint covered).
                let start = if b.state() == BackendState::InSync {
                    Watermark::starting_at(b.acked_seq().min(self.last_seq()))
                } else if first > 1 && b.acked_seq() >= first - 1 {
                    Watermark::starting_at(first - 1)
                } else {
                    Watermark::default()
                };
                (b.name.clone(), start)
            })
            .collect();
        // What the saved topology vouches for: every request up to there was processed, whatever
        // marks the journal holds (a backend seeded from a checkpoint, or filled by a fresh join,
        // has no acks there, and may have old dispatch marks without one). A dispatch mark
        // without an ack up to there is not an unknown outcome.
        let vouched: HashMap<String, Seq> = marks
            .iter()
            .map(|(name, w)| (name.clone(), w.through()))
            .collect();
        let mut unknown: BTreeMap<String, Vec<Seq>> = BTreeMap::new();
        let mut unresolved: Vec<Entry> = Vec::new();
        // Transactions seen in the journal (key → seqs), and the requests of per-transaction
        // ones that never committed.
        let mut open_transactions: BTreeMap<String, Vec<Seq>> = BTreeMap::new();
        let mut tentative_entries: Vec<Entry> = Vec::new();
        // Backend → the highest seq it acknowledged or may have processed.
        let mut touched: HashMap<String, Seq> = HashMap::new();
        let mut next = first;
        loop {
            let batch = self.journal().read_from(next, 1024).await?;
            let Some(last) = batch.last() else { break };
            next = last.seq + 1;
            for e in batch {
                for b in &backends {
                    if e.acks.contains(&b.name) || e.outcome_unknown(&b.name) {
                        touched.insert(b.name.clone(), e.seq);
                    }
                }
                if let Some(key) = &e.transaction {
                    open_transactions
                        .entry(key.clone())
                        .or_default()
                        .push(e.seq);
                }
                if matches!(e.state, EntryState::Pending | EntryState::Answered(_)) {
                    let tentative = e.transaction.as_deref().and_then(TxnMode::of_journaled)
                        == Some(TxnMode::PerTransaction);
                    if tentative {
                        tentative_entries.push(e);
                    } else {
                        unresolved.push(e);
                    }
                    continue;
                }
                let aborted = matches!(e.state, EntryState::Aborted(_));
                for b in &backends {
                    let unknown_here = e.outcome_unknown(&b.name) && e.seq > vouched[&b.name];
                    if e.acks.contains(&b.name) || (aborted && !unknown_here) {
                        marks.get_mut(&b.name).expect("every backend").mark(e.seq);
                    } else if unknown_here {
                        unknown.entry(b.name.clone()).or_default().push(e.seq);
                    }
                }
            }
        }
        // A per-transaction transaction the previous run left open is aborted: only its
        // primary (and, if the crash came during its commit, some backups) applied its requests,
        // and those backends are suspect.
        let mut rolled_back: Vec<String> = Vec::new();
        for e in &tentative_entries {
            for b in &backends {
                if e.acks.contains(&b.name) || e.outcome_unknown(&b.name) {
                    if !rolled_back.contains(&b.name) {
                        rolled_back.push(b.name.clone());
                    }
                } else {
                    marks.get_mut(&b.name).expect("every backend").mark(e.seq);
                }
            }
        }
        let mut ended_here: Vec<String> = Vec::new();
        for (key, seqs) in &open_transactions {
            if self.journal().find_transaction(key).await?.is_some() {
                continue;
            }
            if TxnMode::of_journaled(key) == Some(TxnMode::PerTransaction) {
                let record = lockstep_journal::TransactionRecord {
                    id: key.clone(),
                    outcome: lockstep_journal::TransactionOutcome::Aborted(
                        "the gateway restarted before the transaction committed".into(),
                    ),
                    seqs: seqs.clone(),
                    commits: Vec::new(),
                    time: self.clock().now(),
                };
                self.journal().end_transaction(record).await?;
                warn!(transaction = %key, "an open transaction was aborted by the restart");
            } else {
                ended_here.push(key.clone());
            }
        }
        for b in &backends {
            b.reset_acked(marks.remove(&b.name).unwrap_or_default());
            if rolled_back.contains(&b.name) {
                self.change_state(
                    b,
                    None,
                    BackendState::Suspect,
                    "applied requests of a transaction the restart aborted",
                );
            }
            if let Some(seqs) = unknown.remove(&b.name) {
                if b.state() == BackendState::InSync {
                    self.change_state(
                        b,
                        None,
                        BackendState::Suspect,
                        "a request sent before the restart has an unknown outcome",
                    );
                    doubted.lock().insert(b.name.clone(), seqs);
                }
            }
        }

        let mut report = RecoveryReport {
            last_seq: self.last_seq(),
            ..Default::default()
        };
        let in_doubt = unresolved
            .iter()
            .any(|e| backends.iter().any(|b| e.outcome_unknown(&b.name)));
        if in_doubt && !probes.is_empty() {
            // A backend may still be processing a request the previous run sent it (its
            // connection is gone, not necessarily its work). Let that finish before views are
            // compared, or a view check could say "not applied" just before it is.
            tokio::time::sleep(
                self.config()
                    .backup_timeout
                    .min(std::time::Duration::from_secs(1)),
            )
            .await;
        }
        for e in unresolved {
            let settle = Settle {
                probes,
                touched: &touched,
            };
            match self.resume(&e, compare, &doubted, &settle).await {
                Ok(()) => report.resumed.push(e.seq),
                Err(reason) => {
                    warn!(seq = e.seq, %reason, "a journaled request could not be finished after the restart");
                    self.journal().abort(e.seq, reason).await?;
                    for b in &backends {
                        if !e.outcome_unknown(&b.name) {
                            b.mark_acked(e.seq);
                        }
                    }
                    report.aborted.push(e.seq);
                }
            }
        }
        let primary = self.pool().primary();
        // A doubted backend whose view equals the primary's did apply what it was sent: the
        // view check settles the unknown outcome.
        if !probes.is_empty() {
            let doubted = std::mem::take(&mut *doubted.lock());
            for (name, seqs) in doubted {
                let Some(b) = self.pool().get(&name) else {
                    continue;
                };
                if Arc::ptr_eq(&b, &primary)
                    || !matches!(b.state(), BackendState::Suspect | BackendState::InSync)
                {
                    continue;
                }
                let timeout = self.config().backup_timeout;
                match compare_views(self.transport().as_ref(), &primary, &b, probes, timeout).await
                {
                    Ok(d) if d.is_empty() => {
                        b.reset_acked(Watermark::starting_at(report.last_seq));
                        // Settled: it has them. Recorded, so the next restart knows too.
                        for seq in seqs {
                            let _ = self.journal().record_ack(seq, &b.name).await;
                        }
                        self.change_state(
                            &b,
                            Some(BackendState::Suspect),
                            BackendState::InSync,
                            "its view equals the primary's after the restart",
                        );
                    }
                    Ok(d) => {
                        let detail: Vec<String> = d
                            .iter()
                            .map(|p| format!("{}: {}", p.probe, p.difference))
                            .collect();
                        self.change_state(
                            &b,
                            None,
                            BackendState::Diverged,
                            &format!(
                                "after the restart its view differs from the primary's: {}",
                                detail.join("; ")
                            ),
                        );
                    }
                    Err((who, error)) => {
                        self.change_state(
                            &b,
                            None,
                            BackendState::Suspect,
                            &format!("the view check after the restart failed on {who}: {error}"),
                        );
                    }
                }
            }
        }
        // Per-request transactions left open end now (their requests, resumed above, stay).
        for key in ended_here {
            let seqs = open_transactions.remove(&key).unwrap_or_default();
            let record = lockstep_journal::TransactionRecord {
                id: key.clone(),
                outcome: lockstep_journal::TransactionOutcome::Aborted(
                    "the gateway restarted while the transaction was open; its requests stay applied".into(),
                ),
                seqs,
                commits: Vec::new(),
                time: self.clock().now(),
            };
            self.journal().end_transaction(record).await?;
        }
        // The primary holding an aborted transaction is replaced by a clean in-sync backup.
        let current = self.pool().primary();
        if rolled_back.contains(&current.name) {
            if let Some(successor) = self.choose_successor() {
                self.pool().set_primary(successor.clone());
                self.topology_changed(
                    "primary-changed",
                    Some(&successor.name),
                    &format!(
                        "{} held a transaction the restart aborted; {} promoted",
                        current.name, successor.name
                    ),
                );
            }
        }
        // A backup the topology calls in-sync but that misses committed requests (its ejection
        // was not persisted before the crash) needs a catch-up.
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

    /// The primary may have processed `e` (sent, never acknowledged). With a backup that
    /// processed everything before `e` and never saw `e` as reference, views tell: equal → the
    /// primary did not apply it (send it now); different → send it to the reference, and if the
    /// views then agree the primary had applied it. Returns the response, or None to fail over.
    async fn settle_primary(
        &self,
        e: &Entry,
        primary: &Arc<crate::Backend>,
        rule: &CompareRule,
        extra: &[lockstep_journal::Header],
        doubted: &Mutex<BTreeMap<String, Vec<Seq>>>,
        settle: &Settle<'_>,
    ) -> Option<lockstep_journal::ResponseRecord> {
        if settle.probes.is_empty() {
            return None;
        }
        let reference = self.pool().backups().into_iter().find(|b| {
            b.state() == BackendState::InSync
                && !doubted.lock().contains_key(&b.name)
                && !e.dispatched.contains(&b.name)
                && b.acked_seq() + 1 >= e.seq
                && settle.touched.get(&b.name).is_none_or(|t| *t < e.seq)
        })?;
        let timeout = self.config().backup_timeout;
        let views_equal = |a: Arc<crate::Backend>, b: Arc<crate::Backend>| async move {
            compare_views(self.transport().as_ref(), &a, &b, settle.probes, timeout)
                .await
                .ok()
                .map(|d| d.is_empty())
        };
        if views_equal(primary.clone(), reference.clone()).await? {
            // Not applied there: the primary takes it now, as if for the first time.
            let r = self
                .dispatch(
                    primary,
                    e.seq,
                    &e.request,
                    extra,
                    self.config().primary_timeout,
                )
                .await
                .ok()?;
            let r = self.primary_to_canonical(primary, e.seq, rule, r).await;
            self.record_primary_answer(primary, e.seq, &r).await.ok()?;
            return Some(r);
        }
        let r = self
            .dispatch(
                &reference,
                e.seq,
                &e.request,
                extra,
                self.config().backup_timeout,
            )
            .await
            .ok()?;
        // The reference's answer becomes the client's: in the clients' ids, and what it minted
        // is canonical from now on. (The primary's own values for this request, if it minted
        // any, are not learned: it is suspect below or its next answers show them.)
        let r = self.primary_to_canonical(&reference, e.seq, rule, r).await;
        if views_equal(primary.clone(), reference.clone()).await? {
            // The primary had applied it; the reference's answer is the answer.
            self.record_primary_answer(primary, e.seq, &r).await.ok()?;
            reference.mark_acked(e.seq);
            let _ = self.journal().record_ack(e.seq, &reference.name).await;
            return Some(r);
        }
        // The reference now has it and the primary disagrees: the reference takes over.
        self.record_primary_answer(&reference, e.seq, &r)
            .await
            .ok()?;
        self.change_state(
            primary,
            None,
            BackendState::Suspect,
            &format!(
                "request {} has an unknown outcome and its view differs after the restart",
                e.seq
            ),
        );
        doubted
            .lock()
            .entry(primary.name.clone())
            .or_default()
            .push(e.seq);
        self.pool().set_primary(reference.clone());
        self.topology_changed(
            "primary-changed",
            Some(&reference.name),
            &format!("{} could not be settled after the restart", primary.name),
        );
        Some(r)
    }

    /// A backup may have processed `e`. If the primary is exactly at `e` (it processed nothing
    /// after it), views tell: equal → it applied `e`; different → send `e` and compare again.
    /// Returns whether the backup is settled (acknowledged `e`).
    async fn settle_backup(
        &self,
        e: &Entry,
        backup: &Arc<crate::Backend>,
        response: &lockstep_journal::ResponseRecord,
        rule: &CompareRule,
        extra: &[lockstep_journal::Header],
        settle: &Settle<'_>,
    ) -> bool {
        let primary = self.pool().primary();
        if settle.probes.is_empty()
            || settle
                .touched
                .get(&primary.name)
                .is_some_and(|t| *t > e.seq)
        {
            return false;
        }
        let timeout = self.config().backup_timeout;
        let equal = |a: Arc<crate::Backend>, b: Arc<crate::Backend>| async move {
            compare_views(self.transport().as_ref(), &a, &b, settle.probes, timeout)
                .await
                .ok()
                .map(|d| d.is_empty())
        };
        // A failed probe settles nothing: sending again could apply it twice.
        let Some(already) = equal(primary.clone(), backup.clone()).await else {
            return false;
        };
        if !already {
            let Ok(answer) = self
                .dispatch(
                    backup,
                    e.seq,
                    &e.request,
                    extra,
                    self.config().backup_timeout,
                )
                .await
            else {
                return false;
            };
            if !self.judge(backup, e.seq, rule, response, &answer).await
                || equal(primary.clone(), backup.clone()).await != Some(true)
            {
                return false;
            }
            return true;
        }
        backup.mark_acked(e.seq);
        let _ = self.journal().record_ack(e.seq, &backup.name).await;
        true
    }

    /// Finishes one unresolved request on the current primary (failing over if the primary
    /// cannot take it) and the in-sync backups, and commits it.
    async fn resume(
        self: &Arc<Self>,
        e: &Entry,
        compare: &(dyn Fn(&RequestRecord) -> CompareRule + Send + Sync),
        doubted: &Mutex<BTreeMap<String, Vec<Seq>>>,
        settle: &Settle<'_>,
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
            if e.outcome_unknown(&primary.name) {
                if let Some(outcome) = self
                    .settle_primary(e, &primary, &compare(&e.request), &extra, doubted, settle)
                    .await
                {
                    break outcome;
                }
                self.change_state(
                    &primary,
                    None,
                    BackendState::Suspect,
                    &format!("request {} has an unknown outcome after the restart", e.seq),
                );
                doubted
                    .lock()
                    .entry(primary.name.clone())
                    .or_default()
                    .push(e.seq);
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
                    let r = self
                        .primary_to_canonical(&primary, e.seq, &compare(&e.request), r)
                        .await;
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
        // Settling the primary may have sent the request to a backup already: look again.
        let refreshed = self.journal().get(e.seq).await.ok().flatten();
        let e = refreshed.as_ref().unwrap_or(e);
        let rule = compare(&e.request);
        for b in self.pool().backups() {
            if e.acks.contains(&b.name) {
                b.mark_acked(e.seq);
                continue;
            }
            let is_doubted = doubted.lock().contains_key(&b.name);
            if b.state() != BackendState::InSync && !is_doubted {
                continue;
            }
            if e.outcome_unknown(&b.name) {
                if !is_doubted
                    && self
                        .settle_backup(e, &b, &response, &rule, &extra, settle)
                        .await
                {
                    continue;
                }
                doubted
                    .lock()
                    .entry(b.name.clone())
                    .or_default()
                    .push(e.seq);
                if is_doubted {
                    continue;
                }
                // Not settled now: out of service until the view check at the end clears it.
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
                    doubted.lock().remove(&b.name);
                    self.change_state(
                        &b,
                        None,
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
