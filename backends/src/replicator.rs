//! The replication pipeline for one logical request: sequence, journal, primary, backups,
//! comparison, ack policy, commit.
//!
//! Each request runs in its own task, so a client that disconnects never leaves a request half
//! replicated. Ordering per (lane, backend) comes from [`crate::lane`]; the primary is released
//! for the lane's next request as soon as it answered, so the primary and the backups work as a
//! pipeline.

use std::sync::Arc;

use lockstep_config::{AckPolicy, CompareRule, DispatchMode, OnDivergence, ReplicationConfig};
use lockstep_journal::{
    Entry, Header, IdempotencyKey, Journal, JournalError, RequestRecord, ResponseRecord, Seq,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::compare::compare_responses;
use crate::lane::{Lanes, Ticket};
use crate::pool::{Backend, BackendState, Pool, PoolStatus};
use crate::transport::{Transport, TransportError};
use crate::watermark::Watermark;

/// A logical request, classified, ready to be sequenced.
#[derive(Debug)]
pub struct Submission {
    /// Ordering domain; empty for the global lane.
    pub lane: String,
    pub request: RequestRecord,
    /// How backups' responses are compared with the primary's.
    pub compare: CompareRule,
    /// The request's idempotency identity, stored with its entry.
    pub idempotency: Option<IdempotencyKey>,
    /// Held until the request is done everywhere it commits (e.g. a claim on its idempotency
    /// key), even if the client went away.
    pub hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// A committed request: the response the client receives.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: Seq,
    pub response: ResponseRecord,
    /// Name of the primary that produced the response.
    pub primary: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The request never reached the primary; nothing was applied anywhere.
    #[error("the primary {primary} is unreachable: {reason}")]
    PrimaryUnreachable { primary: String, reason: String },
    /// The primary may or may not have processed the request; it did not commit.
    #[error("the primary {primary} did not answer request {seq}: {reason}")]
    PrimaryFailed {
        primary: String,
        seq: Seq,
        reason: String,
        timed_out: bool,
    },
    #[error("the journal failed: {0}")]
    Journal(#[from] JournalError),
    #[error("the replication task ended unexpectedly")]
    TaskFailed,
}

/// How one backup's part of a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    Acked,
    /// Not sent: the backup left the in-sync set, or the primary failed first.
    Skipped,
    Failed,
    Diverged,
}

type PrimaryOutcome = Option<Result<ResponseRecord, TransportError>>;

#[derive(Debug)]
struct Admission {
    last_seq: Seq,
    lanes: Lanes,
}

#[derive(Debug)]
pub struct Replicator {
    pool: Arc<Pool>,
    journal: Arc<dyn Journal>,
    transport: Arc<dyn Transport>,
    config: ReplicationConfig,
    clock: Arc<dyn Clock>,
    admission: Mutex<Admission>,
    /// Seqs that committed or aborted.
    resolved: Mutex<Watermark>,
}

impl Replicator {
    pub fn new(
        pool: Arc<Pool>,
        journal: Arc<dyn Journal>,
        transport: Arc<dyn Transport>,
        config: ReplicationConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let last_seq = journal.last_seq();
        Arc::new(Replicator {
            pool,
            journal,
            transport,
            config,
            clock,
            admission: Mutex::new(Admission {
                last_seq,
                lanes: Lanes::default(),
            }),
            resolved: Mutex::new(Watermark::starting_at(last_seq)),
        })
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The highest seq handed out.
    pub fn last_seq(&self) -> Seq {
        self.admission.lock().last_seq
    }

    /// Every seq `<=` this has committed or aborted.
    pub fn committed_seq(&self) -> Seq {
        self.resolved.lock().through()
    }

    pub fn status(&self) -> PoolStatus {
        self.pool.status(self.last_seq(), self.committed_seq())
    }

    /// Returns a backend that was `down` to service. Under the admission lock, so that no request
    /// is sequenced meanwhile: it becomes `in-sync` only if it has processed every request handed
    /// out so far, and `lagging` otherwise (it needs a catch-up).
    pub fn readmit(&self, backend: &Backend) -> BackendState {
        let admission = self.admission.lock();
        let next = if backend.acked_seq() >= admission.last_seq {
            BackendState::InSync
        } else {
            BackendState::Lagging
        };
        if backend.transition(BackendState::Down, next) {
            info!(backend = %backend.name, state = %next, acked_seq = backend.acked_seq(), "backend is reachable again");
        }
        backend.state()
    }

    /// Sequences, journals, replicates and commits one logical request.
    pub async fn submit(
        self: &Arc<Self>,
        submission: Submission,
    ) -> Result<Committed, ReplicationError> {
        let this = self.clone();
        tokio::spawn(async move { this.replicate(submission).await })
            .await
            .unwrap_or(Err(ReplicationError::TaskFailed))
    }

    async fn replicate(
        self: Arc<Self>,
        mut sub: Submission,
    ) -> Result<Committed, ReplicationError> {
        // Released when this function returns: once the request committed or failed.
        let _hold = sub.hold.take();
        let primary = self.pool.primary();
        // Participation is decided here, once: the primary and the backups in-sync right now.
        let (seq, time, mut tickets, backups) = {
            let mut admission = self.admission.lock();
            let backups: Vec<Arc<Backend>> = self
                .pool
                .backups()
                .into_iter()
                .filter(|b| b.state() == BackendState::InSync)
                .collect();
            let names: Vec<&str> = std::iter::once(primary.name.as_str())
                .chain(backups.iter().map(|b| b.name.as_str()))
                .collect();
            let tickets = admission.lanes.admit(&sub.lane, &names);
            admission.last_seq += 1;
            (admission.last_seq, self.clock.now(), tickets, backups)
        };
        let lane_release = Arc::new(LaneRelease {
            replicator: self.clone(),
            lane: sub.lane.clone(),
        });
        let primary_ticket = tickets.remove(0);

        // Write-ahead: no backend sees the request before the journal has it.
        let entry = Entry::new(seq, sub.lane.clone(), time, sub.request.clone())
            .with_idempotency(sub.idempotency.clone());
        if let Err(e) = self.journal.append(entry).await {
            warn!(seq, error = %e, "journal append failed; request rejected");
            for b in std::iter::once(&primary).chain(&backups) {
                b.mark_acked(seq);
            }
            self.resolve(seq);
            return Err(e.into());
        }

        let extra = Arc::new(vec![
            Header::new("Lockstep-Sequence", seq.to_string()),
            Header::new(
                "Lockstep-Time",
                humantime::format_rfc3339_millis(time).to_string(),
            ),
        ]);
        let sub = Arc::new(sub);
        let (primary_tx, primary_rx) = watch::channel::<PrimaryOutcome>(None);
        let (vote_tx, mut vote_rx) = mpsc::unbounded_channel();
        let participants = backups.len();
        for (backup, ticket) in backups.into_iter().zip(tickets) {
            let task = BackupTask {
                replicator: self.clone(),
                backup,
                ticket,
                seq,
                sub: sub.clone(),
                extra: extra.clone(),
                primary: primary_rx.clone(),
                votes: vote_tx.clone(),
                _lane: lane_release.clone(),
            };
            tokio::spawn(task.run());
        }
        drop(vote_tx);
        drop(lane_release);

        primary_ticket.wait_turn().await;
        let outcome = self
            .transport
            .send(&primary, &sub.request, &extra, self.config.primary_timeout)
            .await;
        drop(primary_ticket);

        let response = match outcome {
            Ok(response) => {
                primary.mark_acked(seq);
                primary_tx.send_replace(Some(Ok(response.clone())));
                response
            }
            Err(error) => {
                primary_tx.send_replace(Some(Err(error.clone())));
                return Err(self.primary_failed(&primary, seq, error).await);
            }
        };
        self.journal.record_response(seq, response.clone()).await?;

        let (mut acked, mut out) = (0usize, 0usize);
        while acked < self.required_acks(participants - out) {
            match vote_rx.recv().await {
                Some(Vote::Acked) => acked += 1,
                Some(Vote::Skipped | Vote::Failed | Vote::Diverged) => out += 1,
                None => break,
            }
        }
        self.journal.commit(seq, response.clone()).await?;
        self.resolve(seq);
        Ok(Committed {
            seq,
            response,
            primary: primary.name.clone(),
        })
    }

    /// How many backup acks commit a request, out of `alive` backups still taking part.
    fn required_acks(&self, alive: usize) -> usize {
        match self.config.ack {
            AckPolicy::All => alive,
            // A majority of the members (the primary and the live backups); the primary is one.
            AckPolicy::Majority => alive.div_ceil(2),
            AckPolicy::None => 0,
        }
    }

    async fn primary_failed(
        &self,
        primary: &Backend,
        seq: Seq,
        error: TransportError,
    ) -> ReplicationError {
        let reason = error.to_string();
        if error.not_delivered() {
            primary.mark_acked(seq);
            if primary.transition(BackendState::InSync, BackendState::Down) {
                warn!(backend = %primary.name, seq, %reason, "primary unreachable");
            }
        } else if primary.state() != BackendState::Suspect {
            primary.set_state(BackendState::Suspect);
            warn!(backend = %primary.name, seq, %reason, "primary did not answer; its outcome is unknown, marked suspect");
        }
        if let Err(e) = self.journal.abort(seq, reason.clone()).await {
            warn!(seq, error = %e, "journal could not record the abort");
        }
        self.resolve(seq);
        if error.not_delivered() {
            ReplicationError::PrimaryUnreachable {
                primary: primary.name.clone(),
                reason,
            }
        } else {
            ReplicationError::PrimaryFailed {
                primary: primary.name.clone(),
                seq,
                reason,
                timed_out: matches!(error, TransportError::Timeout(_)),
            }
        }
    }

    fn resolve(&self, seq: Seq) {
        self.resolved.lock().mark(seq);
    }
}

/// Releases the lane when the last task of a request is done with it.
#[derive(Debug)]
struct LaneRelease {
    replicator: Arc<Replicator>,
    lane: String,
}

impl Drop for LaneRelease {
    fn drop(&mut self) {
        self.replicator.admission.lock().lanes.release(&self.lane);
    }
}

/// One backup's part of one request.
#[derive(Debug)]
struct BackupTask {
    replicator: Arc<Replicator>,
    backup: Arc<Backend>,
    ticket: Ticket,
    seq: Seq,
    sub: Arc<Submission>,
    extra: Arc<Vec<Header>>,
    primary: watch::Receiver<PrimaryOutcome>,
    votes: mpsc::UnboundedSender<Vote>,
    // Dropped last: the lane is released after the ticket let the next request go.
    _lane: Arc<LaneRelease>,
}

impl BackupTask {
    async fn run(mut self) {
        let vote = self.exchange().await;
        // The ticket goes (letting this lane's next request reach this backup) before the vote
        // is counted, so a committed request never waits on a later one.
        let BackupTask {
            ticket,
            votes,
            _lane,
            ..
        } = self;
        drop(ticket);
        let _ = votes.send(vote);
    }

    async fn exchange(&mut self) -> Vote {
        let r = self.replicator.clone();
        let sequential = r.config.dispatch == DispatchMode::Sequential;
        self.ticket.wait_turn().await;
        let primary = if sequential {
            Some(self.primary_outcome().await)
        } else {
            None
        };
        if self.backup.state() != BackendState::InSync {
            return Vote::Skipped;
        }
        if let Some(Err(_)) = &primary {
            // The request is aborted; this backup correctly never saw it.
            self.backup.mark_acked(self.seq);
            return Vote::Skipped;
        }
        let sent = r
            .transport
            .send(
                &self.backup,
                &self.sub.request,
                &self.extra,
                r.config.backup_timeout,
            )
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                if self
                    .backup
                    .transition(BackendState::InSync, BackendState::Lagging)
                {
                    warn!(backend = %self.backup.name, seq = self.seq, %error, "backup failed; ejected as lagging");
                }
                return Vote::Failed;
            }
        };
        let primary = match primary {
            Some(p) => p,
            None => self.primary_outcome().await,
        };
        let primary = match primary {
            Ok(p) => p,
            Err(_) => {
                // Parallel dispatch: this backup processed a request the primary did not.
                if self
                    .backup
                    .transition(BackendState::InSync, BackendState::Suspect)
                {
                    warn!(backend = %self.backup.name, seq = self.seq, "backup processed a request the primary failed; marked suspect");
                }
                return Vote::Failed;
            }
        };
        if let Some(difference) = compare_responses(&self.sub.compare, &primary, &response) {
            let eject = r.config.on_divergence == OnDivergence::Eject;
            warn!(backend = %self.backup.name, seq = self.seq, %difference, ejected = eject, "backup diverged from the primary");
            if eject {
                self.backup
                    .transition(BackendState::InSync, BackendState::Diverged);
                return Vote::Diverged;
            }
        }
        self.backup.mark_acked(self.seq);
        if let Err(e) = r.journal.record_ack(self.seq, &self.backup.name).await {
            warn!(seq = self.seq, error = %e, "journal could not record an ack");
        }
        Vote::Acked
    }

    async fn primary_outcome(&mut self) -> Result<ResponseRecord, TransportError> {
        match self.primary.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().expect("waited for Some"),
            Err(_) => Err(TransportError::Exchange("the request task ended".into())),
        }
    }
}

#[cfg(test)]
mod tests;
