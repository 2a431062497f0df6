//! Catch-up: bringing a backend that missed requests (lagging, suspect, down, or new and empty)
//! back to in-sync by replaying the journal into it while traffic flows, then fencing briefly to
//! replay the tail and compare views with the primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_config::{CompareRule, ViewProbe};
use lockstep_journal::{Entry, EntryState, RequestRecord, Seq};
use serde::Serialize;
use tokio::sync::watch;
use tracing::info;

use crate::probes::{ProbeDifference, compare_views};
use crate::watermark::Watermark;
use crate::{Backend, BackendState, Replicator};

/// How a catch-up runs.
#[derive(Debug, Clone)]
pub struct CatchupOptions {
    /// Fence when the replay is this close to the tail.
    pub fence_lag: u64,
    /// Entries read from the journal at a time.
    pub batch: usize,
    /// Lanes replayed at once (entries of one lane always go one after the other).
    pub concurrency: usize,
    /// The backend starts empty (it was reset): nothing it was sent before counts.
    pub fresh: bool,
    /// Aborted requests to replay all the same, as part of the primary's state: the doubtful
    /// ones a first attempt reported (see [`JoinError::doubtful`]). Empty: aborted requests are
    /// skipped.
    pub include_aborted: Vec<Seq>,
}

impl Default for CatchupOptions {
    fn default() -> Self {
        CatchupOptions {
            fence_lag: 64,
            batch: 256,
            concurrency: 4,
            fresh: false,
            include_aborted: Vec::new(),
        }
    }
}

/// Where a catch-up stands, for progress bars and status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JoinProgress {
    pub backend: String,
    /// `replaying`, `fenced`, `verifying`, `in-sync`, `failed`.
    pub phase: &'static str,
    /// Entries replayed so far.
    pub replayed: u64,
    /// The next seq to replay.
    pub next_seq: Seq,
    /// The journal's tail when last looked at.
    pub last_seq: Seq,
    /// The first seq this catch-up replays (after a checkpoint: the checkpoint's seq + 1).
    pub from_seq: Seq,
    /// Milliseconds since the catch-up started.
    pub elapsed_ms: u64,
    /// How long admission was paused, once the fence is over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u64>,
}

/// A finished catch-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinReport {
    pub backend: String,
    /// First and last seq replayed (`from > to` when nothing was missing).
    pub from: Seq,
    pub to: Seq,
    pub replayed: u64,
    /// Requests it may have processed before (sent, never acknowledged), not sent again; the
    /// view check confirmed they were applied.
    pub assumed_applied: Vec<Seq>,
    /// How long admission was paused for the tail and the view check.
    pub pause_ms: u64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("there is no backend named {0}")]
    UnknownBackend(String),
    #[error("{0} is the primary; promote another backend first")]
    IsPrimary(String),
    #[error("{0} is already in-sync")]
    AlreadyInSync(String),
    #[error(
        "{backend} answered request {seq} differently from the committed response: {difference}"
    )]
    Diverged {
        backend: String,
        seq: Seq,
        difference: String,
        /// See [`JoinError::doubtful`].
        doubtful: Vec<Seq>,
    },
    #[error(
        "{backend}'s view differs from the primary's: {}",
        describe(differences)
    )]
    ViewsDiffer {
        backend: String,
        differences: Vec<ProbeDifference>,
        /// See [`JoinError::doubtful`].
        doubtful: Vec<Seq>,
    },
    #[error("{backend} failed during the replay at request {seq}: {error}")]
    Transport {
        backend: String,
        seq: Seq,
        error: String,
    },
    #[error("the journal failed: {0}")]
    Journal(String),
    #[error("{0}")]
    Reset(String),
    #[error("{0} was removed during its catch-up")]
    Removed(String),
    #[error(
        "the journal's history starts at request {first} (older requests were compacted after a checkpoint); {backend} needs request {needed}: add or rejoin it from a checkpoint"
    )]
    HistoryCompacted {
        backend: String,
        needed: Seq,
        first: Seq,
    },
    #[error("{0}")]
    Checkpoint(String),
}

impl JoinError {
    /// For a fresh replay that ended diverged: the aborted requests it skipped that the primary
    /// may have applied (it acknowledged them, or their outcome there is unknown: a gateway crash
    /// or a cut network left them unsettled while no backup could take over). The primary's
    /// later answers then include their effect, so no replay without them can match; a second
    /// attempt on a reset backend with them included ([`CatchupOptions::include_aborted`]) can.
    pub fn doubtful(&self) -> &[Seq] {
        match self {
            JoinError::Diverged { doubtful, .. } | JoinError::ViewsDiffer { doubtful, .. } => {
                doubtful
            }
            _ => &[],
        }
    }
}

fn describe(d: &[ProbeDifference]) -> String {
    d.iter()
        .map(|p| format!("{}: {}", p.probe, p.difference))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Replicator {
    /// Replays the journal from `from` into `name` and admits it as in-sync if its answers match
    /// the committed ones and its view matches the primary's. `compare` gives each request's
    /// comparison rule (the gateway's classifier). Traffic keeps flowing except during the short
    /// fence at the end.
    pub async fn catch_up(
        self: &Arc<Self>,
        name: &str,
        from: Seq,
        probes: &[ViewProbe],
        compare: &(dyn Fn(&RequestRecord) -> CompareRule + Send + Sync),
        options: &CatchupOptions,
        progress: &watch::Sender<JoinProgress>,
    ) -> Result<JoinReport, JoinError> {
        let backend = self
            .pool()
            .get(name)
            .ok_or_else(|| JoinError::UnknownBackend(name.to_owned()))?;
        if self.pool().primary().name == name {
            return Err(JoinError::IsPrimary(name.to_owned()));
        }
        if backend.state() == BackendState::InSync {
            return Err(JoinError::AlreadyInSync(name.to_owned()));
        }
        let started = Instant::now();
        let from = from.max(1);
        let detail = format!("catching up from request {from}");
        if !self.change_state(&backend, None, BackendState::Joining, &detail) {
            // A backend just added is `joining` already: its catch-up is announced all the same.
            backend.set_detail(&detail);
            self.topology_changed("backend-joining", Some(&backend.name), &detail);
        }
        backend.reset_acked(Watermark::starting_at(from - 1));
        // What it minted after `from - 1` is minted again by the replay, maybe differently.
        self.forget_ids_after(&backend, from - 1)
            .await
            .map_err(|e| JoinError::Journal(e.to_string()))?;
        let mut run = Run {
            replicator: self.clone(),
            backend,
            compare,
            progress,
            replayed: 0,
            next: from,
            from,
            started,
            assumed: Vec::new(),
            fresh: options.fresh,
            include_aborted: &options.include_aborted,
            doubtful: parking_lot::Mutex::new(Vec::new()),
        };
        progress.send_replace(run.snapshot("replaying"));

        run.backend
            .fresh_join
            .store(options.fresh, std::sync::atomic::Ordering::Release);
        let result = run.replay_until_close(options).await;
        let result = match result {
            Ok(()) => run.finish_fenced(probes, options).await,
            Err(e) => Err(e),
        };
        run.backend
            .fresh_join
            .store(false, std::sync::atomic::Ordering::Release);
        match result {
            Ok(pause) => {
                progress.send_replace(JoinProgress {
                    pause_ms: Some(pause.as_millis() as u64),
                    ..run.snapshot("in-sync")
                });
                let report = JoinReport {
                    backend: name.to_owned(),
                    from,
                    to: run.next - 1,
                    replayed: run.replayed,
                    assumed_applied: run.assumed.clone(),
                    pause_ms: pause.as_millis() as u64,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                };
                info!(
                    backend = name,
                    replayed = report.replayed,
                    pause_ms = report.pause_ms,
                    "catch-up finished"
                );
                Ok(report)
            }
            Err(mut e) => {
                if let JoinError::Diverged { doubtful, .. }
                | JoinError::ViewsDiffer { doubtful, .. } = &mut e
                {
                    let mut found = std::mem::take(&mut *run.doubtful.lock());
                    found.sort_unstable();
                    *doubtful = found;
                }
                let state = match e {
                    JoinError::Diverged { .. } | JoinError::ViewsDiffer { .. } => {
                        BackendState::Diverged
                    }
                    _ => BackendState::Lagging,
                };
                if self.is_member(&run.backend) {
                    self.change_state(&run.backend, None, state, &e.to_string());
                }
                progress.send_replace(run.snapshot("failed"));
                Err(e)
            }
        }
    }
}

struct Run<'a> {
    replicator: Arc<Replicator>,
    backend: Arc<Backend>,
    compare: &'a (dyn Fn(&RequestRecord) -> CompareRule + Send + Sync),
    progress: &'a watch::Sender<JoinProgress>,
    replayed: u64,
    next: Seq,
    from: Seq,
    started: Instant,
    /// Entries with an unknown outcome on this backend, counted as applied.
    assumed: Vec<Seq>,
    fresh: bool,
    /// Aborted entries replayed as part of the primary's state (see
    /// [`CatchupOptions::include_aborted`]).
    include_aborted: &'a [Seq],
    /// Aborted entries skipped that the primary may have applied (see [`JoinError::doubtful`]).
    doubtful: parking_lot::Mutex<Vec<Seq>>,
}

impl Run<'_> {
    fn snapshot(&self, phase: &'static str) -> JoinProgress {
        JoinProgress {
            backend: self.backend.name.clone(),
            phase,
            replayed: self.replayed,
            next_seq: self.next,
            last_seq: self.replicator.last_seq(),
            from_seq: self.from,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            pause_ms: None,
        }
    }

    /// Replays while traffic flows, until the tail is within `fence_lag` or an entry still in
    /// flight is reached.
    async fn replay_until_close(&mut self, options: &CatchupOptions) -> Result<(), JoinError> {
        loop {
            let tail = self.replicator.last_seq();
            if tail < self.next || tail - self.next < options.fence_lag {
                return Ok(());
            }
            let entries = self.read(options.batch).await?;
            if !self.replay_batch(entries, options.concurrency).await? {
                return Ok(());
            }
        }
    }

    /// Fences, replays the rest, compares views, admits. Returns the pause.
    async fn finish_fenced(
        &mut self,
        probes: &[ViewProbe],
        options: &CatchupOptions,
    ) -> Result<Duration, JoinError> {
        let r = self.replicator.clone();
        let _one_change = r.topology_change.lock().await;
        if !r.is_member(&self.backend) {
            return Err(JoinError::Removed(self.backend.name.clone()));
        }
        let fenced_at = Instant::now();
        r.fence();
        r.drain().await;
        let result = self.finish_tail(probes, options).await;
        if result.is_ok() {
            self.backend
                .reset_acked(Watermark::starting_at(r.last_seq()));
            r.change_state(
                &self.backend,
                None,
                BackendState::InSync,
                &format!("caught up through request {}", self.next - 1),
            );
        }
        r.unfence();
        Replicator::record_pause("join", fenced_at.elapsed());
        result.map(|()| fenced_at.elapsed())
    }

    async fn finish_tail(
        &mut self,
        probes: &[ViewProbe],
        options: &CatchupOptions,
    ) -> Result<(), JoinError> {
        self.progress.send_replace(self.snapshot("fenced"));
        let r = self.replicator.clone();
        while self.next <= r.last_seq() {
            let entries = self.read(options.batch).await?;
            if !self.replay_batch(entries, options.concurrency).await? {
                return Err(JoinError::Journal(format!(
                    "request {} is unresolved while fenced",
                    self.next
                )));
            }
        }
        self.progress.send_replace(self.snapshot("verifying"));
        let primary = r.pool().primary();
        let differences = compare_views(
            r.transport().as_ref(),
            &primary,
            &self.backend,
            probes,
            r.config().backup_timeout,
        )
        .await
        .map_err(|(who, e)| JoinError::Transport {
            backend: who,
            seq: self.next,
            error: e.to_string(),
        })?;
        if differences.is_empty() {
            Ok(())
        } else {
            Err(JoinError::ViewsDiffer {
                backend: self.backend.name.clone(),
                differences,
                doubtful: Vec::new(),
            })
        }
    }

    async fn read(&self, batch: usize) -> Result<Vec<Entry>, JoinError> {
        if !self.replicator.is_member(&self.backend) {
            return Err(JoinError::Removed(self.backend.name.clone()));
        }
        let journal = self.replicator.journal();
        let first = journal.first_seq();
        if self.next < first {
            return Err(JoinError::HistoryCompacted {
                backend: self.backend.name.clone(),
                needed: self.next,
                first,
            });
        }
        journal
            .read_from(self.next, batch)
            .await
            .map_err(|e| JoinError::Journal(e.to_string()))
    }

    /// Replays a batch of consecutive entries, up to `concurrency` at once. An entry starts
    /// only after the one before it in its lane and after every entry that had resolved before
    /// it was admitted (`Entry::after`: what its client could have seen), so the replay never
    /// reorders what live traffic ordered. Stops before the first entry still in flight;
    /// `Ok(false)` when it met one (the caller stops or fences).
    async fn replay_batch(
        &mut self,
        mut entries: Vec<Entry>,
        concurrency: usize,
    ) -> Result<bool, JoinError> {
        use futures::StreamExt;
        use futures::stream::FuturesUnordered;
        use std::collections::HashSet;

        let in_flight = entries
            .iter()
            .position(|e| matches!(e.state, EntryState::Pending | EntryState::Answered(_)));
        if let Some(at) = in_flight {
            entries.truncate(at);
        }
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(in_flight.is_none());
        };
        let mut applied = Watermark::starting_at(self.next - 1);
        let mut waiting: std::collections::VecDeque<&Entry> = entries.iter().collect();
        let mut busy: HashSet<&str> = HashSet::new();
        let mut running = FuturesUnordered::new();
        let this = &*self;
        let mut assumed = Vec::new();
        let mut done = 0u64;
        loop {
            // Start what is ready, lowest seqs first. An entry whose lane has an earlier entry
            // not yet started (or running) waits behind it.
            let mut blocked: HashSet<&str> = HashSet::new();
            let mut i = 0;
            while i < waiting.len() && running.len() < concurrency.max(1) {
                let e = waiting[i];
                let lane = e.lane.as_str();
                if busy.contains(lane) || blocked.contains(lane) || e.after > applied.through() {
                    blocked.insert(lane);
                    i += 1;
                    continue;
                }
                waiting.remove(i);
                busy.insert(lane);
                running.push(async move { (e, this.replay(e).await) });
            }
            let Some((e, result)) = running.next().await else {
                break;
            };
            crate::failpoint!("mid-catch-up");
            if result? {
                assumed.push(e.seq);
            }
            applied.mark(e.seq);
            busy.remove(e.lane.as_str());
            done += 1;
            if done % 16 == 0 {
                this.progress.send_replace(JoinProgress {
                    replayed: this.replayed + done,
                    next_seq: applied.through() + 1,
                    ..this.snapshot("replaying")
                });
            }
        }
        debug_assert!(
            waiting.is_empty(),
            "the lowest waiting entry is always ready"
        );
        drop(running);
        assumed.sort_unstable();
        self.assumed.extend(assumed);
        self.replayed += entries.len() as u64;
        self.next = last + 1;
        self.progress.send_replace(self.snapshot("replaying"));
        Ok(in_flight.is_none())
    }

    /// Replays one finished entry and acknowledges it; `Ok(true)` when it was not sent because
    /// the backend may already have processed it (counted as applied).
    async fn replay(&self, entry: &Entry) -> Result<bool, JoinError> {
        let r = &self.replicator;
        let mut assumed = false;
        let failed = |e: crate::TransportError| JoinError::Transport {
            backend: self.backend.name.clone(),
            seq: entry.seq,
            error: e.to_string(),
        };
        match &entry.state {
            EntryState::Pending | EntryState::Answered(_) => {
                unreachable!("batches are cut before entries in flight")
            }
            // Never committed, but the primary applied it: replayed as part of its state (no
            // committed answer to compare with).
            EntryState::Aborted(_) if self.include_aborted.contains(&entry.seq) => {
                let extra = super::replicator::context_headers(entry.seq, entry.time);
                r.send_translated(
                    &self.backend,
                    &entry.request,
                    &extra,
                    r.config().backup_timeout,
                )
                .await
                .map_err(failed)?;
            }
            EntryState::Aborted(_) => {
                let primary = r.pool().primary();
                if self.fresh
                    && (entry.acks.contains(&primary.name) || entry.outcome_unknown(&primary.name))
                {
                    self.doubtful.lock().push(entry.seq);
                }
            }
            // It may already have processed this one (sent before, never acknowledged): sending it
            // again could apply it twice. Count it as applied; the view check at the fence
            // decides whether that was right.
            EntryState::Committed(_)
                if !self.fresh && entry.outcome_unknown(&self.backend.name) =>
            {
                assumed = true;
            }
            EntryState::Committed(committed) => {
                let extra = super::replicator::context_headers(entry.seq, entry.time);
                let rule = (self.compare)(&entry.request);
                // A backend filled from an empty state needs no dispatch marks: if the gateway
                // stops before the join ends, the backend starts over (see `fresh_join`). A
                // refusal is retried, as on the live path.
                let answer = r
                    .send_to_backup(
                        &self.backend,
                        entry.seq,
                        &entry.request,
                        &extra,
                        &rule.refusals,
                        !self.fresh,
                    )
                    .await
                    .map_err(failed)?;
                // It learns its own ids as it replays: the committed answer holds the canonical
                // ones.
                let answer = r
                    .learn_and_translate(&self.backend, entry.seq, &rule, committed, &answer)
                    .await
                    .map_err(|e| JoinError::Diverged {
                        backend: self.backend.name.clone(),
                        seq: entry.seq,
                        difference: e.to_string(),
                        doubtful: Vec::new(),
                    })?;
                let ctx = self.replicator.pool().compare_context();
                if let Some(d) = crate::compare_in(&ctx, &rule, committed, &answer) {
                    return Err(JoinError::Diverged {
                        backend: self.backend.name.clone(),
                        seq: entry.seq,
                        difference: d.to_string(),
                        doubtful: Vec::new(),
                    });
                }
            }
        }
        self.backend.mark_acked(entry.seq);
        if !self.fresh && matches!(entry.state, EntryState::Committed(_)) {
            // Lets a restarted gateway know this backend has it. (A fresh join's progress is
            // saved with the topology once it is in-sync.)
            let _ = r.journal().record_ack(entry.seq, &self.backend.name).await;
        }
        Ok(assumed)
    }
}
