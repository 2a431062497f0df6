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
    /// The backend starts empty (it was reset): nothing it was sent before counts.
    pub fresh: bool,
}

impl Default for CatchupOptions {
    fn default() -> Self {
        CatchupOptions {
            fence_lag: 64,
            batch: 256,
            fresh: false,
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
    },
    #[error(
        "{backend}'s view differs from the primary's: {}",
        describe(differences)
    )]
    ViewsDiffer {
        backend: String,
        differences: Vec<ProbeDifference>,
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
        self.change_state(
            &backend,
            None,
            BackendState::Joining,
            &format!("catching up from request {from}"),
        );
        backend.reset_acked(Watermark::starting_at(from - 1));
        let mut run = Run {
            replicator: self.clone(),
            backend,
            compare,
            progress,
            replayed: 0,
            next: from,
            assumed: Vec::new(),
            fresh: options.fresh,
        };
        progress.send_replace(run.snapshot("replaying"));

        let result = run.replay_until_close(options).await;
        let result = match result {
            Ok(()) => run.finish_fenced(probes, options).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(pause) => {
                progress.send_replace(run.snapshot("in-sync"));
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
            Err(e) => {
                let state = match e {
                    JoinError::Diverged { .. } | JoinError::ViewsDiffer { .. } => {
                        BackendState::Diverged
                    }
                    _ => BackendState::Lagging,
                };
                self.change_state(&run.backend, None, state, &e.to_string());
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
    /// Entries with an unknown outcome on this backend, counted as applied.
    assumed: Vec<Seq>,
    fresh: bool,
}

impl Run<'_> {
    fn snapshot(&self, phase: &'static str) -> JoinProgress {
        JoinProgress {
            backend: self.backend.name.clone(),
            phase,
            replayed: self.replayed,
            next_seq: self.next,
            last_seq: self.replicator.last_seq(),
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
            for entry in entries {
                if !self.replay(&entry).await? {
                    return Ok(());
                }
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
            for entry in self.read(options.batch).await? {
                if !self.replay(&entry).await? {
                    return Err(JoinError::Journal(format!(
                        "request {} is unresolved while fenced",
                        entry.seq
                    )));
                }
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
            })
        }
    }

    async fn read(&self, batch: usize) -> Result<Vec<Entry>, JoinError> {
        self.replicator
            .journal()
            .read_from(self.next, batch)
            .await
            .map_err(|e| JoinError::Journal(e.to_string()))
    }

    /// Replays one entry; `Ok(false)` when it is still in flight (stop here).
    async fn replay(&mut self, entry: &Entry) -> Result<bool, JoinError> {
        let r = self.replicator.clone();
        match &entry.state {
            EntryState::Pending | EntryState::Answered(_) => return Ok(false),
            EntryState::Aborted(_) => {}
            // It may already have processed this one (sent before, never acknowledged): sending it
            // again could apply it twice. Count it as applied; the view check at the fence
            // decides whether that was right.
            EntryState::Committed(_)
                if !self.fresh && entry.outcome_unknown(&self.backend.name) =>
            {
                self.assumed.push(entry.seq);
            }
            EntryState::Committed(committed) => {
                let extra = super::replicator::context_headers(entry.seq, entry.time);
                let answer = r
                    .dispatch(
                        &self.backend,
                        entry.seq,
                        &entry.request,
                        &extra,
                        r.config().backup_timeout,
                    )
                    .await
                    .map_err(|e| JoinError::Transport {
                        backend: self.backend.name.clone(),
                        seq: entry.seq,
                        error: e.to_string(),
                    })?;
                let rule = (self.compare)(&entry.request);
                if let Some(d) = crate::compare_responses(&rule, committed, &answer) {
                    return Err(JoinError::Diverged {
                        backend: self.backend.name.clone(),
                        seq: entry.seq,
                        difference: d.to_string(),
                    });
                }
            }
        }
        self.backend.mark_acked(entry.seq);
        if matches!(entry.state, EntryState::Committed(_)) {
            // Lets a restarted gateway know this backend has it.
            let _ = r.journal().record_ack(entry.seq, &self.backend.name).await;
        }
        self.replayed += 1;
        self.next = entry.seq + 1;
        if self.replayed % 64 == 0 {
            self.progress.send_replace(self.snapshot("replaying"));
        }
        Ok(true)
    }
}
