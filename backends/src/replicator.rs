//! The replication pipeline for one logical request: sequence, journal, primary, backups,
//! comparison, ack policy, commit — and the topology changes that interrupt it (failover,
//! switchover, fences).
//!
//! Each request runs in its own task, so a client that disconnects never leaves a request half
//! replicated. Ordering per (lane, backend) comes from [`crate::lane`]. A lane's next request
//! reaches the primary only when the current one is done on every backup, so a crash leaves at
//! most one request per lane whose outcome is unknown; lanes give the concurrency.
//!
//! When the primary fails under a request and an in-sync backup exists, the request is *parked*
//! instead of failed: the failover procedure (in `failover.rs`) fences admission, drains the
//! requests in flight, promotes a backup and finishes every parked request on it, in seq order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use lockstep_config::{AckPolicy, CompareRule, DispatchMode, OnDivergence, ReplicationConfig};
use lockstep_journal::{
    BackendRecord, Entry, Header, IdempotencyKey, Journal, JournalError, RequestRecord,
    ResponseRecord, Seq, Topology,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::compare::compare_in;
use crate::events::{EventBus, TopologyEvent};
use crate::lane::{Lanes, Ticket};
use crate::pool::{Backend, BackendState, Pool, PoolStatus};
use crate::transport::{Transport, TransportError};
use crate::watermark::Watermark;

mod failover;
mod membership;
mod minting;
mod readmission;
mod transaction;

/// Abort reasons of requests that certainly reached no backend start with this.
pub(crate) const NOT_DELIVERED: &str = "not delivered: ";
/// Abort reasons of requests the primary refused (applied nowhere) start with this.
pub const REFUSED: &str = "refused: ";

pub use failover::SwitchoverError;
pub use membership::MembershipError;
pub use minting::TranslationRules;
pub use readmission::{IdentityCheck, Readmission, RejoinHook};

pub use transaction::{TxnError, TxnMode, TxnOutcome, TxnReply};

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
    /// Held until the request committed or failed (e.g. a claim on its idempotency key), even
    /// if the client went away.
    pub hold: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// The transaction it belongs to (set by [`Replicator::submit_in_transaction`]).
    pub transaction: Option<String>,
}

/// A committed request: the response the client receives.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: Seq,
    pub response: ResponseRecord,
    /// Name of the primary that produced the response.
    pub primary: String,
    /// The primary refused the request (a status of the route's refusals): nothing was applied
    /// anywhere, the seq is recorded as refused, and `response` is the refusal.
    pub refused: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The request never reached the primary and no backup could take over; nothing was applied.
    #[error("the primary {primary} is unreachable and no in-sync backup can take over: {reason}")]
    PrimaryUnreachable { primary: String, reason: String },
    /// The primary may or may not have processed the request, and no backup could take over.
    #[error(
        "the primary {primary} did not answer request {seq} and no in-sync backup can take over: {reason}"
    )]
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

/// What parallel-dispatch backups answered for a request whose primary then failed: the new
/// primary must not process it twice.
type Processed = Arc<Mutex<HashMap<String, ResponseRecord>>>;

#[derive(Debug)]
struct Admission {
    last_seq: Seq,
    lanes: Lanes,
    /// Admission paused: new requests wait.
    fenced: bool,
    /// While fenced, requests of open per-transaction transactions are still admitted (a drain
    /// waits for those transactions to end). Not during a failover, which aborts them.
    admit_open_transactions: bool,
    /// Lanes held by a transaction (lane → transaction id): other requests on them wait.
    held: HashMap<String, String>,
    /// Requests admitted and not yet finished everywhere.
    live: usize,
}

/// A request whose primary failed, waiting for the failover procedure to finish it.
#[derive(Debug)]
struct Parked {
    seq: Seq,
    request: Arc<RequestRecord>,
    compare: CompareRule,
    extra: Arc<Vec<Header>>,
    processed: Processed,
    reason: TransportError,
    reply: oneshot::Sender<Result<Committed, ReplicationError>>,
}

#[derive(Debug)]
pub struct Replicator {
    pool: Arc<Pool>,
    journal: Arc<dyn Journal>,
    transport: Arc<dyn Transport>,
    config: ReplicationConfig,
    clock: Arc<dyn Clock>,
    events: EventBus,
    admission: Mutex<Admission>,
    /// Bumped whenever admission is unfenced or the last live request finishes.
    admission_changed: watch::Sender<u64>,
    /// Seqs that committed or aborted.
    resolved: Mutex<Watermark>,
    parked: Mutex<Vec<Parked>>,
    /// Bumped when the primary is declared lost: requests waiting on it give up at once.
    primary_lost: watch::Sender<u64>,
    /// One topology change at a time (failover, switchover, join).
    pub(crate) topology_change: tokio::sync::Mutex<()>,
    pub(crate) epoch: AtomicU64,
    persist: tokio::sync::Mutex<()>,
    /// Backends removed with `backend remove`, persisted so that a restart does not bring a
    /// backend the configuration still names back.
    removed: Mutex<Vec<BackendRecord>>,
    /// Open transactions by scoped id.
    transactions: Mutex<HashMap<String, transaction::Txn>>,
    /// Transactions a failover is aborting, by scoped id, with the reason: no longer open, not
    /// yet ended in the journal. A commit or abort that comes in between learns the outcome
    /// here instead of finding no trace of the transaction.
    aborting: Mutex<HashMap<String, String>>,
    /// The view probes that prove a copy's state (see [`Replicator::set_probes`]).
    probes: Mutex<Vec<lockstep_config::ViewProbe>>,
    /// Rejoins a copy that came back having missed requests (`[health] auto_rejoin`).
    auto_rejoin: Mutex<Option<readmission::RejoinSlot>>,
    /// How to ask a backend which instance answers (`[health] identity_header`).
    identity_check: Mutex<Option<readmission::IdentityCheck>>,
    /// The noise finder's session, while learning or after (see [`Replicator::learn_noise`]).
    noise: Mutex<Option<crate::noise_finder::Learning>>,
    /// How a request's route translates minted values (see [`Replicator::set_translation`]).
    translation: Mutex<Option<minting::Translation>>,
    /// Itself, for background work started from `&self`.
    me: std::sync::Weak<Replicator>,
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
        Arc::new_cyclic(|me| Replicator {
            me: me.clone(),
            pool,
            journal,
            transport,
            config,
            clock,
            events: EventBus::default(),
            admission: Mutex::new(Admission {
                last_seq,
                lanes: Lanes::default(),
                fenced: false,
                admit_open_transactions: true,
                held: HashMap::new(),
                live: 0,
            }),
            admission_changed: watch::Sender::new(0),
            resolved: Mutex::new(Watermark::starting_at(last_seq)),
            parked: Mutex::new(Vec::new()),
            primary_lost: watch::Sender::new(0),
            topology_change: tokio::sync::Mutex::new(()),
            epoch: AtomicU64::new(0),
            persist: tokio::sync::Mutex::new(()),
            removed: Mutex::new(Vec::new()),
            transactions: Mutex::new(HashMap::new()),
            aborting: Mutex::new(HashMap::new()),
            probes: Mutex::new(Vec::new()),
            auto_rejoin: Mutex::new(None),
            noise: Mutex::new(None),
            translation: Mutex::new(None),
            identity_check: Mutex::new(None),
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

    pub fn config(&self) -> &ReplicationConfig {
        &self.config
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The highest seq handed out.
    pub fn last_seq(&self) -> Seq {
        self.admission.lock().last_seq
    }

    /// Every seq `<=` this has committed or aborted.
    pub fn committed_seq(&self) -> Seq {
        self.resolved.lock().through()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn status(&self) -> PoolStatus {
        self.pool
            .status(self.epoch(), self.last_seq(), self.committed_seq())
    }

    /// Whether some backup could take over from the primary now.
    pub fn has_successor(&self) -> bool {
        self.pool
            .backups()
            .iter()
            .any(|b| b.state() == BackendState::InSync)
    }

    /// Moves `backend` to `to` (only from `from`, when given); announces and persists the
    /// change. Returns whether the state changed.
    pub fn change_state(
        &self,
        backend: &Backend,
        from: Option<BackendState>,
        to: BackendState,
        detail: &str,
    ) -> bool {
        let moved = match from {
            Some(from) => backend.transition(from, to),
            None => backend.set_state(to) != to,
        };
        if moved {
            backend.set_detail(detail);
            if to == BackendState::InSync {
                backend.set_proven_since(self.last_seq());
            }
            let event = match to {
                BackendState::InSync => "backend-in-sync",
                BackendState::Lagging => "backend-ejected",
                BackendState::Diverged => "backend-diverged",
                BackendState::Joining => "backend-joining",
                BackendState::Suspect => "backend-suspect",
                BackendState::Down => "backend-down",
            };
            self.topology_changed(event, Some(&backend.name), detail);
        }
        moved
    }

    /// Bumps the epoch, publishes the event and persists the topology.
    pub(crate) fn topology_changed(
        &self,
        event: &'static str,
        backend: Option<&str>,
        detail: &str,
    ) {
        let implementation = backend
            .and_then(|name| self.pool.get(name))
            .map(|b| b.implementation.clone());
        self.announce(event, backend, implementation, detail);
    }

    /// [`Replicator::topology_changed`] for a backend that may no longer be in the pool.
    pub(crate) fn announce(
        &self,
        event: &'static str,
        backend: Option<&str>,
        implementation: Option<String>,
        detail: &str,
    ) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let primary = self.pool.primary().name.clone();
        info!(event, backend = backend.unwrap_or("-"), implementation = implementation.as_deref().unwrap_or("-"), %primary, epoch, detail, "topology changed");
        self.events.publish(TopologyEvent {
            event,
            backend: backend.map(str::to_owned),
            implementation,
            primary,
            epoch,
            detail: detail.to_owned(),
            time: humantime::format_rfc3339_millis(self.clock.now()).to_string(),
        });
        self.persist_topology();
    }

    /// The topology as persisted.
    pub fn topology(&self) -> Topology {
        let status = self.status();
        Topology {
            epoch: status.epoch,
            primary: status.primary,
            backends: self
                .pool
                .all()
                .iter()
                .map(|b| BackendRecord {
                    name: b.name.clone(),
                    url: b.url.to_string(),
                    implementation: b.implementation.clone(),
                    state: if b.state() == BackendState::Joining
                        && b.fresh_join.load(Ordering::Acquire)
                    {
                        "joining-fresh".to_owned()
                    } else {
                        b.state().as_str().to_owned()
                    },
                    acked_seq: b.acked_seq(),
                })
                .chain(self.removed.lock().iter().cloned())
                .collect(),
        }
    }

    /// Saves the current topology in the background; saves are serialized and each one writes
    /// the state at its own time, so the last one written is the newest.
    fn persist_topology(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.self_arc();
        runtime.spawn(async move {
            let _one_at_a_time = me.persist.lock().await;
            let topology = me.topology();
            if let Err(e) = me.journal.save_topology(&topology).await {
                warn!(error = %e, "could not persist the topology");
            }
        });
    }

    /// Saves the current topology and waits until it is durable.
    pub async fn persist_topology_now(&self) -> Result<(), JournalError> {
        let _one_at_a_time = self.persist.lock().await;
        let topology = self.topology();
        self.journal.save_topology(&topology).await
    }

    fn self_arc(&self) -> Arc<Replicator> {
        self.me.upgrade().expect("a replicator in use is alive")
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
        if let Some(learning) = self.noise.lock().as_mut().filter(|l| l.active()) {
            learning.saw_request(&sub.request);
        }
        let admitted = self
            .admit(&sub.lane, sub.transaction.as_deref(), false)
            .await;
        let Admitted {
            seq,
            after,
            time,
            primary,
            primary_ticket,
            backups,
            release,
        } = admitted;

        // Write-ahead: no backend sees the request before the journal has it.
        let mut entry = Entry::new(seq, sub.lane.clone(), time, sub.request.clone())
            .with_idempotency(sub.idempotency.clone())
            .with_transaction(sub.transaction.clone());
        entry.after = after;
        let appending = std::time::Instant::now();
        let appended = self.journal.append(entry).await;
        metrics::histogram!("lockstep_journal_append_seconds")
            .record(appending.elapsed().as_secs_f64());
        if let Err(e) = appended {
            warn!(seq, error = %e, "journal append failed; request rejected");
            primary.mark_acked(seq);
            for (b, _) in &backups {
                b.mark_acked(seq);
            }
            self.resolve(seq);
            return Err(e.into());
        }

        let extra = Arc::new(context_headers(seq, time));
        let request = Arc::new(sub.request);
        // The lane's next request reaches the primary only when this one is done on every
        // backup too: at any instant a lane has at most one request whose outcome a crash could
        // leave unknown, which is what lets recovery settle it by comparing views.
        let primary_turn = Arc::new(primary_ticket);
        let processed: Processed = Arc::default();
        let (primary_tx, primary_rx) = watch::channel::<PrimaryOutcome>(None);
        let (vote_tx, mut vote_rx) = mpsc::unbounded_channel();
        let participants: Vec<Arc<Backend>> = backups.iter().map(|(b, _)| b.clone()).collect();
        for (backup, ticket) in backups {
            let task = BackupTask {
                replicator: self.clone(),
                backup,
                ticket,
                seq,
                request: request.clone(),
                compare: sub.compare.clone(),
                extra: extra.clone(),
                primary: primary_rx.clone(),
                processed: processed.clone(),
                votes: vote_tx.clone(),
                _primary_turn: primary_turn.clone(),
                _release: release.clone(),
            };
            tokio::spawn(task.run());
        }
        drop(vote_tx);
        // `release` stays with this task until the request committed or failed: a drain (fence,
        // switchover, catch-up) must see it finished, not merely sent everywhere.

        let outcome = self
            .send_to_primary(&primary, &primary_turn, &request, &extra, seq, &sub.compare)
            .await;
        drop(primary_turn);
        let response = match outcome {
            Ok(response) if crate::refusal::is_refusal(&sub.compare.refusals, response.status) => {
                primary_tx.send_replace(Some(Err(TransportError::Refused(response.status))));
                // Let every backup task finish (parallel dispatch: note who applied it).
                while vote_rx.recv().await.is_some() {}
                return self
                    .refuse(&primary, &participants, &processed, seq, response)
                    .await;
            }
            Ok(response) => {
                // Journaled before any backup may see the request: after a crash, a request
                // without the primary's ack was certainly not sent to a backup.
                if let Err(e) = self.record_primary_answer(&primary, seq, &response).await {
                    self.resolve(seq);
                    return Err(e.into());
                }
                crate::failpoint!("after-primary-before-backups");
                primary_tx.send_replace(Some(Ok(response.clone())));
                response
            }
            Err(error) => {
                primary_tx.send_replace(Some(Err(error.clone())));
                if self.has_successor() {
                    let (reply, answer) = oneshot::channel();
                    self.parked.lock().push(Parked {
                        seq,
                        request,
                        compare: sub.compare,
                        extra,
                        processed,
                        reason: error.clone(),
                        reply,
                    });
                    self.declare_primary_lost(&primary, &error.to_string());
                    // Parked requests do not hold up the failover's drain.
                    drop(release);
                    return answer.await.unwrap_or(Err(ReplicationError::TaskFailed));
                }
                // Let every backup task finish, so `processed` is complete.
                while vote_rx.recv().await.is_some() {}
                return Err(self
                    .abort(&primary, &participants, &processed, seq, error)
                    .await);
            }
        };
        let (mut acked, mut out) = (0usize, 0usize);
        while acked < self.required_acks(participants.len() - out) {
            match vote_rx.recv().await {
                Some(Vote::Acked) => acked += 1,
                Some(Vote::Skipped | Vote::Failed | Vote::Diverged) => out += 1,
                None => break,
            }
        }
        crate::failpoint!("before-commit-record");
        let committed = self.journal.commit(seq, response.clone()).await;
        // Resolved either way, so committed_seq never stalls on a journal failure.
        self.resolve(seq);
        committed?;
        Ok(Committed {
            seq,
            response,
            primary: primary.name.clone(),
            refused: false,
        })
    }

    /// The primary refused `seq`: it is not sent to the backups (a parallel-dispatch backup that
    /// already applied it is suspect), and the journal records it as refused: not applied
    /// anywhere, so recovery, catch-up and rejoin skip it and its idempotency key may run again.
    pub(crate) async fn refuse(
        &self,
        primary: &Backend,
        participants: &[Arc<Backend>],
        processed: &Processed,
        seq: Seq,
        response: ResponseRecord,
    ) -> Result<Committed, ReplicationError> {
        metrics::counter!("lockstep_refusals_total", "backend" => primary.name.clone(), "role" => "primary")
            .increment(1);
        let processed = processed.lock().clone();
        for b in participants {
            if processed.contains_key(&b.name) {
                self.change_state(
                    b,
                    Some(BackendState::InSync),
                    BackendState::Suspect,
                    &format!(
                        "processed request {seq}, which the primary refused with {}",
                        response.status
                    ),
                );
            } else {
                b.mark_acked(seq);
            }
        }
        primary.mark_acked(seq);
        let recorded = async {
            self.journal.record_undelivered(seq, &primary.name).await?;
            self.journal
                .abort(
                    seq,
                    format!(
                        "{REFUSED}the primary {} answered {}",
                        primary.name, response.status
                    ),
                )
                .await
        }
        .await;
        self.resolve(seq);
        recorded?;
        info!(seq, primary = %primary.name, status = response.status, "the primary refused the request; not replicated");
        Ok(Committed {
            seq,
            response,
            primary: primary.name.clone(),
            refused: true,
        })
    }

    /// Sends to the primary in lane order; gives up at once if the primary is declared lost
    /// meanwhile (the outcome is then unknown).
    async fn send_to_primary(
        &self,
        primary: &Backend,
        ticket: &Ticket,
        request: &RequestRecord,
        extra: &[Header],
        seq: Seq,
        rule: &CompareRule,
    ) -> Result<ResponseRecord, TransportError> {
        let mut lost = self.primary_lost.subscribe();
        let generation = *lost.borrow_and_update();
        let lost_since = async move {
            let _ = lost.wait_for(|g| *g != generation).await;
        };
        tokio::pin!(lost_since);
        let waited = tokio::select! {
            _ = ticket.wait_turn() => true,
            _ = &mut lost_since => false,
        };
        if !waited {
            return Err(TransportError::Connect(
                "the primary was declared lost before this request reached it".into(),
            ));
        }
        let outcome = tokio::select! {
            r = self.dispatch(primary, seq, request, extra, self.config.primary_timeout) => r,
            _ = &mut lost_since => Err(TransportError::Exchange("the primary was declared lost".into())),
        };
        match outcome {
            Ok(answer) => Ok(self.primary_to_canonical(primary, seq, rule, answer).await),
            Err(e) => Err(e),
        }
    }

    /// Hands out a seq and lane positions; waits while admission is fenced, or while the lane is
    /// held by another transaction. `txn`: the request's transaction, which then holds the lane
    /// until it ends. `primary_only`: a tentative request (per-transaction mode), which takes a
    /// place in the primary's queue only; the backups get theirs when the transaction commits.
    async fn admit(
        self: &Arc<Self>,
        lane: &str,
        txn: Option<&str>,
        primary_only: bool,
    ) -> Admitted {
        loop {
            let mut changed = self.admission_changed.subscribe();
            {
                let mut admission = self.admission.lock();
                let holder = admission.held.get(lane);
                let lane_free = match (holder, txn) {
                    (None, _) => true,
                    (Some(h), Some(t)) => h == t,
                    (Some(_), None) => false,
                };
                // An open per-transaction transaction keeps going through a fence (the drain
                // waits for it); any other request waits.
                let passes_fence = !admission.fenced
                    || (primary_only
                        && admission.admit_open_transactions
                        && txn.is_some_and(|t| admission.held.values().any(|h| h == t)));
                if lane_free && passes_fence {
                    if let Some(t) = txn {
                        admission.held.insert(lane.to_owned(), t.to_owned());
                    }
                    let primary = self.pool.primary();
                    let backups: Vec<Arc<Backend>> = if primary_only {
                        Vec::new()
                    } else {
                        self.pool
                            .backups()
                            .into_iter()
                            .filter(|b| b.state() == BackendState::InSync)
                            .collect()
                    };
                    let names: Vec<&str> = std::iter::once(primary.name.as_str())
                        .chain(backups.iter().map(|b| b.name.as_str()))
                        .collect();
                    let mut tickets = admission.lanes.admit(lane, &names);
                    admission.last_seq += 1;
                    admission.live += 1;
                    let primary_ticket = tickets.remove(0);
                    return Admitted {
                        seq: admission.last_seq,
                        // Everything answered so far: what this request's client may have seen.
                        after: self.resolved.lock().highest(),
                        time: self.clock.now(),
                        primary,
                        primary_ticket,
                        backups: backups.into_iter().zip(tickets).collect(),
                        release: Arc::new(LaneRelease {
                            replicator: self.clone(),
                            lane: lane.to_owned(),
                        }),
                    };
                }
            }
            let _ = changed.changed().await;
        }
    }

    /// Releases every lane `txn` holds; requests waiting on them go on.
    fn release_lanes(&self, txn: &str) {
        self.admission.lock().held.retain(|_, h| h != txn);
        self.admission_changed.send_modify(|v| *v += 1);
    }

    /// Stops admitting logical requests; they wait until [`Replicator::unfence`]. Requests of
    /// open per-transaction transactions still pass, so that a drain can see them end.
    pub fn fence(&self) {
        let mut admission = self.admission.lock();
        admission.fenced = true;
        admission.admit_open_transactions = true;
    }

    /// [`Replicator::fence`] that stops open transactions too (a failover aborts them).
    pub(crate) fn fence_all(&self) {
        let mut admission = self.admission.lock();
        admission.fenced = true;
        admission.admit_open_transactions = false;
    }

    /// Records how long admission was paused, and why (`failover`, `switchover`, `join`,
    /// `checkpoint`, `verify`, `remove`, `recovery`).
    pub fn record_pause(reason: &'static str, pause: std::time::Duration) {
        metrics::histogram!("lockstep_fence_pause_seconds", "reason" => reason)
            .record(pause.as_secs_f64());
    }

    /// Resumes admission.
    pub fn unfence(&self) {
        {
            let mut admission = self.admission.lock();
            admission.fenced = false;
            admission.admit_open_transactions = true;
        }
        self.admission_changed.send_modify(|v| *v += 1);
    }

    /// Waits until no admitted request is still running anywhere (parked ones do not count).
    pub async fn drain(&self) {
        loop {
            let mut changed = self.admission_changed.subscribe();
            if self.admission.lock().live == 0 {
                return;
            }
            let _ = changed.changed().await;
        }
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

    /// The primary failed under `seq` and nobody can take over: the request never commits.
    async fn abort(
        &self,
        primary: &Backend,
        participants: &[Arc<Backend>],
        processed: &Processed,
        seq: Seq,
        error: TransportError,
    ) -> ReplicationError {
        let reason = if error.not_delivered() {
            format!("{NOT_DELIVERED}{error}")
        } else {
            error.to_string()
        };
        let processed = processed.lock().clone();
        for b in participants {
            if processed.contains_key(&b.name) {
                // Parallel dispatch: it applied a request that will never commit.
                let detail = format!(
                    "processed request {seq}, which the primary failed and which never commits"
                );
                self.change_state(
                    b,
                    Some(BackendState::InSync),
                    BackendState::Suspect,
                    &detail,
                );
            } else {
                // It never saw the request: nothing to do for it.
                b.mark_acked(seq);
            }
        }
        if error.not_delivered() {
            primary.mark_acked(seq);
            if self.change_state(
                primary,
                Some(BackendState::InSync),
                BackendState::Down,
                &reason,
            ) {
                self.topology_changed(
                    "failover-failed",
                    Some(&primary.name),
                    "no in-sync backup can take over",
                );
            }
        } else {
            self.change_state(
                primary,
                None,
                BackendState::Suspect,
                &format!("request {seq} has an unknown outcome: {reason}"),
            );
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

    /// Sends `request` to `backend`, journaling first that it was sent (so that after a crash a
    /// request never sent is told from one whose outcome is unknown).
    pub(crate) async fn dispatch(
        &self,
        backend: &Backend,
        seq: Seq,
        request: &RequestRecord,
        extra: &[Header],
        timeout: std::time::Duration,
    ) -> Result<ResponseRecord, TransportError> {
        if let Err(e) = self.journal.record_dispatch(seq, &backend.name).await {
            return Err(TransportError::Connect(format!(
                "the journal refused the dispatch record: {e}"
            )));
        }
        let sent = self.send_translated(backend, request, extra, timeout).await;
        if let Err(error) = &sent {
            if error.not_delivered() {
                // Certainly not received: a later catch-up or recovery may send it again.
                let _ = self.journal.record_undelivered(seq, &backend.name).await;
            }
        }
        sent
    }

    /// The primary answered `seq`: its response and its ack go to the journal.
    pub(crate) async fn record_primary_answer(
        &self,
        primary: &Backend,
        seq: Seq,
        response: &ResponseRecord,
    ) -> Result<(), JournalError> {
        primary.mark_acked(seq);
        self.journal.record_response(seq, response.clone()).await?;
        self.journal.record_ack(seq, &primary.name).await
    }

    fn resolve(&self, seq: Seq) {
        self.resolved.lock().mark(seq);
    }

    /// Starts the noise finder: until `until`, a backup whose answer differs is not ejected;
    /// the differences are recorded (see [`crate::NoiseReport`]). Replaces an earlier session.
    pub fn learn_noise(&self, until: crate::LearnFor) {
        info!(
            ?until,
            "learning noise: differences are recorded, no backup is ejected"
        );
        *self.noise.lock() = Some(crate::noise_finder::Learning::new(until, self.clock.now()));
    }

    /// Ends learning early; what was learned stays readable.
    pub fn stop_learning(&self) {
        if let Some(learning) = self.noise.lock().as_mut() {
            learning.stop();
        }
    }

    /// What the noise finder learned, if it ever ran.
    pub fn noise_report(&self) -> Option<crate::NoiseReport> {
        self.noise.lock().as_ref().map(|l| l.report())
    }

    /// Whether learning is on now.
    pub fn learning_noise(&self) -> bool {
        self.noise.lock().as_ref().is_some_and(|l| l.active())
    }

    /// Compares a backup's answer with the primary's; ejects it (or only logs) on a difference.
    /// Returns whether it counts as an ack.
    pub(crate) async fn judge(
        &self,
        backup: &Backend,
        seq: Seq,
        compare: &CompareRule,
        primary: &ResponseRecord,
        response: &ResponseRecord,
    ) -> bool {
        if crate::refusal::is_refusal(&compare.refusals, response.status)
            && !crate::refusal::is_refusal(&compare.refusals, primary.status)
        {
            // It did not process the request: behind, not different.
            warn!(backend = %backup.name, seq, status = response.status, "backup refused a request the primary applied");
            self.change_state(
                backup,
                Some(BackendState::InSync),
                BackendState::Lagging,
                &format!(
                    "refused request {seq} with {}; it rejoins from where it stopped: lockstep backend rejoin {}",
                    response.status, backup.name
                ),
            );
            return false;
        }
        let translated = self
            .learn_and_translate(backup, seq, compare, primary, response)
            .await;
        let response: &ResponseRecord = match &translated {
            Ok(r) => r,
            Err(minting::LearnError::Journal(e)) => {
                warn!(backend = %backup.name, seq, error = %e, "journal could not record minted values");
                self.change_state(
                    backup,
                    Some(BackendState::InSync),
                    BackendState::Lagging,
                    &format!("request {seq}: the journal could not record its minted values: {e}"),
                );
                return false;
            }
            Err(e) => {
                warn!(backend = %backup.name, seq, error = %e, "backup diverged from the primary");
                if self.eject_diverged(backup, &format!("request {seq}: {e}")) {
                    return false;
                }
                response
            }
        };
        let ctx = self.pool.compare_context();
        {
            let mut noise = self.noise.lock();
            if let Some(learning) = noise.as_mut().filter(|l| l.active()) {
                // Learning: every difference is recorded, none ejects.
                let route = compare.route.as_deref().unwrap_or("(default)");
                learning.saw_answer(route);
                let differences =
                    crate::compare::response_differences(&ctx, compare, primary, response, 20);
                learning.record(&ctx, route, &differences);
                return true;
            }
        }
        if let Some(difference) = compare_in(&ctx, compare, primary, response) {
            let eject = self.config.on_divergence == OnDivergence::Eject;
            // What would silence it, should it be noise rather than a divergence.
            let rule = difference.silencing_rule(&ctx);
            let if_noise = match (rule.as_deref(), compare.route.as_deref()) {
                (Some(r), Some(route)) => {
                    format!("; if this is noise, set on the route \"{route}\": {r}")
                }
                (Some(r), None) => {
                    format!("; if this is noise, give the request a [[routes]] entry with: {r}")
                }
                (None, _) => String::new(),
            };
            warn!(backend = %backup.name, seq, %difference, ejected = eject, if_noise = rule.as_deref().unwrap_or("-"), "backup diverged from the primary");
            if self.eject_diverged(backup, &format!("request {seq}: {difference}{if_noise}")) {
                return false;
            }
        }
        backup.mark_acked(seq);
        if let Err(e) = self.journal.record_ack(seq, &backup.name).await {
            warn!(seq, error = %e, "journal could not record an ack");
        }
        true
    }
}

impl Replicator {
    /// A backup answered differently: `diverged` with `detail`, unless `[replication]
    /// on_divergence` only logs. Returns whether it was ejected.
    fn eject_diverged(&self, backup: &Backend, detail: &str) -> bool {
        if self.config.on_divergence != OnDivergence::Eject {
            return false;
        }
        self.change_state(
            backup,
            Some(BackendState::InSync),
            BackendState::Diverged,
            detail,
        );
        true
    }
}

/// The per-request headers every backend receives, identical on each.
pub(crate) fn context_headers(seq: Seq, time: SystemTime) -> Vec<Header> {
    vec![
        Header::new("Lockstep-Sequence", seq.to_string()),
        Header::new(
            "Lockstep-Time",
            humantime::format_rfc3339_millis(time).to_string(),
        ),
    ]
}

struct Admitted {
    seq: Seq,
    /// See [`Entry::after`].
    after: Seq,
    time: SystemTime,
    primary: Arc<Backend>,
    primary_ticket: Ticket,
    backups: Vec<(Arc<Backend>, Ticket)>,
    release: Arc<LaneRelease>,
}

/// Marks a request finished (lane released, no longer live) when its last task is done.
#[derive(Debug)]
struct LaneRelease {
    replicator: Arc<Replicator>,
    lane: String,
}

impl Drop for LaneRelease {
    fn drop(&mut self) {
        let idle = {
            let mut admission = self.replicator.admission.lock();
            admission.lanes.release(&self.lane);
            admission.live -= 1;
            admission.live == 0
        };
        if idle {
            self.replicator.admission_changed.send_modify(|v| *v += 1);
        }
    }
}

/// One backup's part of one request.
#[derive(Debug)]
struct BackupTask {
    replicator: Arc<Replicator>,
    backup: Arc<Backend>,
    ticket: Ticket,
    seq: Seq,
    request: Arc<RequestRecord>,
    compare: CompareRule,
    extra: Arc<Vec<Header>>,
    primary: watch::Receiver<PrimaryOutcome>,
    processed: Processed,
    votes: mpsc::UnboundedSender<Vote>,
    /// The primary's turn in the lane, held until every backup is done with this request.
    _primary_turn: Arc<Ticket>,
    // Dropped last: the request counts as finished after the ticket let the next one go.
    _release: Arc<LaneRelease>,
}

impl BackupTask {
    async fn run(mut self) {
        let vote = self.exchange().await;
        // The ticket goes (letting this lane's next request reach this backup) before the vote
        // is counted, so a committed request never waits on a later one.
        let BackupTask {
            ticket,
            votes,
            _release,
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
            // The request is parked for the next primary, or aborted; either way not sent here.
            return Vote::Skipped;
        }
        let refusals = self.compare.refusals.clone();
        let refusals = refusals.as_slice();
        let mut sent = if sequential {
            r.send_to_backup(
                &self.backup,
                self.seq,
                &self.request,
                &self.extra,
                refusals,
                true,
            )
            .await
        } else {
            r.dispatch(
                &self.backup,
                self.seq,
                &self.request,
                &self.extra,
                r.config.backup_timeout,
            )
            .await
        };
        let not_taken = match &sent {
            Ok(answer) => crate::refusal::is_refusal(refusals, answer.status),
            Err(e) => e.not_delivered(),
        };
        if !sequential && not_taken {
            // Parallel dispatch: retried only once the primary is known to have applied it.
            match self.primary_outcome().await {
                Ok(p) if !crate::refusal::is_refusal(refusals, p.status) => {
                    if sent.is_ok() {
                        let _ = r
                            .journal
                            .record_undelivered(self.seq, &self.backup.name)
                            .await;
                    }
                    sent = r
                        .send_to_backup(
                            &self.backup,
                            self.seq,
                            &self.request,
                            &self.extra,
                            refusals,
                            true,
                        )
                        .await;
                }
                _ => return Vote::Skipped,
            }
        }
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let how = if error.not_delivered() {
                    format!(
                        "request {}: {error} until backup_timeout; it rejoins from where it stopped: lockstep backend rejoin {}",
                        self.seq, self.backup.name
                    )
                } else {
                    format!("request {}: {error}", self.seq)
                };
                r.change_state(
                    &self.backup,
                    Some(BackendState::InSync),
                    BackendState::Lagging,
                    &how,
                );
                return Vote::Failed;
            }
        };
        let primary = match primary {
            Some(p) => p,
            None => self.primary_outcome().await,
        };
        let Ok(primary) = primary else {
            // Parallel dispatch: this backup processed a request the primary did not answer.
            // The failover procedure (or the abort) decides what it means.
            self.processed
                .lock()
                .insert(self.backup.name.clone(), response);
            return Vote::Skipped;
        };
        if r.judge(&self.backup, self.seq, &self.compare, &primary, &response)
            .await
        {
            Vote::Acked
        } else {
            Vote::Diverged
        }
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
