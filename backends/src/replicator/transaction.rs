//! Transactions: a group of logical requests replicated and committed as one unit, with nothing
//! else interleaved on its lanes.
//!
//! A transaction holds every lane it touches from its first request to its end: other logical
//! requests on those lanes wait at admission. Its own requests run one at a time, in arrival
//! order. Two modes:
//!
//! - **per-request**: each request is replicated and acknowledged as it arrives, like any other;
//!   the commit is one journal record. Nothing can be taken back: an abort after a request was
//!   replicated is refused.
//! - **per-transaction**: requests reach the primary only and are answered as tentative; at
//!   commit the whole group goes to each in-sync backup in order, and every request commits in
//!   one journal record. An abort (or the transaction's timeout) leaves the primary with state no
//!   backup has; an unmodified service cannot undo it, so the gateway rolls the primary back the
//!   only way it can: it promotes an in-sync backup and marks the old primary `suspect`. Other
//!   open per-transaction transactions lose their primary with it and are aborted too.

use std::time::{Duration, Instant};

use lockstep_journal::{TransactionOutcome, TransactionRecord};

use super::*;

/// How a transaction's requests reach the backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnMode {
    PerRequest,
    PerTransaction,
}

impl TxnMode {
    /// The prefix of the transaction id journaled with each entry, so that recovery knows the
    /// mode.
    fn tag(self) -> &'static str {
        match self {
            TxnMode::PerRequest => "rq",
            TxnMode::PerTransaction => "tx",
        }
    }

    /// The mode of a journaled transaction id.
    pub fn of_journaled(id: &str) -> Option<TxnMode> {
        match id.split_once(':')?.0 {
            "rq" => Some(TxnMode::PerRequest),
            "tx" => Some(TxnMode::PerTransaction),
            _ => None,
        }
    }
}

/// How a transaction ended (or the answer to a request in one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TxnOutcome {
    /// The client's transaction id.
    pub id: String,
    /// `committed` or `aborted`.
    pub outcome: &'static str,
    /// The journal seqs of its requests, in order.
    pub seqs: Vec<Seq>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to one request of a transaction.
#[derive(Debug, Clone)]
pub struct TxnReply {
    pub committed: Committed,
    /// The request reached the primary only: nothing is final before the commit.
    pub tentative: bool,
    /// Set when this request ended the transaction (`; commit`).
    pub outcome: Option<TxnOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("there is no open transaction {0}")]
    Unknown(String),
    #[error("transaction {id} was aborted: {reason}")]
    Aborted { id: String, reason: String },
    #[error("transaction {id} already committed; start a new one with another id")]
    Committed { id: String },
    #[error(
        "transaction {id} runs per-{mode} and this route asks for the other mode; a transaction keeps the mode of its first request"
    )]
    ModeMismatch { id: String, mode: &'static str },
    #[error(
        "a per-transaction transaction needs an in-sync backup to roll the primary back to, and none is in-sync now; retry later or use per-request mode"
    )]
    NoBackup,
    #[error(
        "transaction {id} cannot be aborted: its requests {seqs:?} are already committed on every copy (per-request mode); undo them with compensating requests"
    )]
    NotAbortable { id: String, seqs: Vec<Seq> },
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("the journal failed: {0}")]
    Journal(#[from] JournalError),
}

/// An open transaction.
#[derive(Debug)]
pub(crate) struct Txn {
    /// The client's id (for answers); the map key is the scoped, tagged id.
    client_id: String,
    mode: TxnMode,
    seqs: Vec<Seq>,
    /// per-transaction: what the primary answered, to commit and compare at the end.
    staged: Vec<Staged>,
    /// per-transaction: the primary the requests went to.
    primary: String,
    last_activity: Instant,
    committing: bool,
    /// One request (or commit) of the transaction at a time, in arrival order.
    serial: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct Staged {
    seq: Seq,
    lane: String,
    request: Arc<RequestRecord>,
    compare: CompareRule,
    extra: Arc<Vec<Header>>,
    response: ResponseRecord,
    /// Keeps the request counted as live (a drain waits for the transaction) and its lane open.
    _release: Arc<LaneRelease>,
}

impl Replicator {
    /// The scoped id a transaction is known by: its mode tag, the caller's scope, its id.
    pub fn transaction_key(mode: TxnMode, scope: &str, id: &str) -> String {
        format!("{}:{scope}:{id}", mode.tag())
    }

    /// Submits `sub` as part of transaction `key` (from [`Replicator::transaction_key`]),
    /// starting it if needed; with `commit`, the transaction ends with this request.
    pub async fn submit_in_transaction(
        self: &Arc<Self>,
        mut sub: Submission,
        client_id: &str,
        key: &str,
        mode: TxnMode,
        commit: bool,
    ) -> Result<TxnReply, TxnError> {
        let serial = self.open_transaction(client_id, key, mode).await?;
        let _in_order = serial.lock_owned().await;
        self.check_open(key)?;
        sub.transaction = Some(key.to_owned());
        let reply = match mode {
            TxnMode::PerRequest => {
                let committed = self.submit(sub).await?;
                if let Some(t) = self.transactions.lock().get_mut(key) {
                    t.seqs.push(committed.seq);
                    t.last_activity = Instant::now();
                }
                TxnReply {
                    committed,
                    tentative: false,
                    outcome: None,
                }
            }
            TxnMode::PerTransaction => {
                let committed = self.submit_tentative(sub, key).await?;
                TxnReply {
                    committed,
                    tentative: true,
                    outcome: None,
                }
            }
        };
        if !commit {
            return Ok(reply);
        }
        let outcome = self.finish_commit(key).await?;
        Ok(TxnReply {
            tentative: false,
            outcome: Some(outcome),
            ..reply
        })
    }

    /// Commits transaction `key`. A commit of a transaction that already ended answers its
    /// recorded outcome.
    pub async fn commit_transaction(self: &Arc<Self>, key: &str) -> Result<TxnOutcome, TxnError> {
        let serial = self.transactions.lock().get(key).map(|t| t.serial.clone());
        let Some(serial) = serial else {
            return self.ended_outcome(key).await;
        };
        let _in_order = serial.lock_owned().await;
        if !self.transactions.lock().contains_key(key) {
            return self.ended_outcome(key).await;
        }
        self.finish_commit(key).await
    }

    /// Aborts transaction `key`: refused once a per-request transaction has replicated a request;
    /// a per-transaction one rolls the primary back.
    pub async fn abort_transaction(
        self: &Arc<Self>,
        key: &str,
        reason: &str,
    ) -> Result<TxnOutcome, TxnError> {
        let serial = self.transactions.lock().get(key).map(|t| t.serial.clone());
        let Some(serial) = serial else {
            return match self.ended_outcome(key).await {
                Ok(TxnOutcome { id, .. }) => Err(TxnError::Committed { id }),
                Err(TxnError::Aborted { id, reason }) => Ok(TxnOutcome {
                    id,
                    outcome: "aborted",
                    seqs: Vec::new(),
                    reason: Some(reason),
                }),
                Err(e) => Err(e),
            };
        };
        let _in_order = serial.lock_owned().await;
        let open = self
            .transactions
            .lock()
            .get(key)
            .map(|t| (t.mode, t.seqs.clone(), t.client_id.clone()));
        let Some((mode, seqs, client_id)) = open else {
            return self.ended_outcome(key).await;
        };
        if mode == TxnMode::PerRequest && !seqs.is_empty() {
            return Err(TxnError::NotAbortable {
                id: client_id,
                seqs,
            });
        }
        self.abort_open(key, reason).await
    }

    /// Ends every open transaction idle for longer than `timeout`: a per-request one is closed
    /// (its requests stay applied), a per-transaction one is aborted and its primary rolled
    /// back. Returns how many ended.
    pub async fn expire_transactions(self: &Arc<Self>, timeout: Duration) -> usize {
        let idle: Vec<String> = self
            .transactions
            .lock()
            .iter()
            .filter(|(_, t)| !t.committing && t.last_activity.elapsed() > timeout)
            .map(|(k, _)| k.clone())
            .collect();
        let mut ended = 0;
        for key in idle {
            let reason = format!("expired after {timeout:?} without a request");
            match self.abort_open(&key, &reason).await {
                Ok(_) => ended += 1,
                Err(e) => {
                    warn!(transaction = %key, error = %e, "could not end an expired transaction")
                }
            }
        }
        ended
    }

    /// The mode of the open transaction `id` of `scope`, if one is open.
    pub fn open_mode(&self, scope: &str, id: &str) -> Option<TxnMode> {
        let txns = self.transactions.lock();
        [TxnMode::PerRequest, TxnMode::PerTransaction]
            .into_iter()
            .find(|m| txns.contains_key(&Self::transaction_key(*m, scope, id)))
    }

    /// The key of transaction `id` of `scope`, open or ended (within its retention).
    pub async fn find_transaction_key(
        &self,
        scope: &str,
        id: &str,
    ) -> Result<Option<String>, TxnError> {
        if let Some(mode) = self.open_mode(scope, id) {
            return Ok(Some(Self::transaction_key(mode, scope, id)));
        }
        for mode in [TxnMode::PerRequest, TxnMode::PerTransaction] {
            let key = Self::transaction_key(mode, scope, id);
            if self.journal.find_transaction(&key).await?.is_some() {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// Open transactions (for status).
    pub fn open_transactions(&self) -> usize {
        self.transactions.lock().len()
    }

    /// Finds or starts the transaction; returns its serializer.
    async fn open_transaction(
        &self,
        client_id: &str,
        key: &str,
        mode: TxnMode,
    ) -> Result<Arc<tokio::sync::Mutex<()>>, TxnError> {
        if let Some(t) = self.transactions.lock().get(key) {
            return Ok(t.serial.clone());
        }
        // Not open: it may have ended already.
        if let Some(record) = self.journal.find_transaction(key).await? {
            return Err(match record.outcome {
                TransactionOutcome::Committed => TxnError::Committed {
                    id: client_id.to_owned(),
                },
                TransactionOutcome::Aborted(reason) => TxnError::Aborted {
                    id: client_id.to_owned(),
                    reason,
                },
            });
        }
        let other_mode = match mode {
            TxnMode::PerRequest => TxnMode::PerTransaction,
            TxnMode::PerTransaction => TxnMode::PerRequest,
        };
        let other_key = format!("{}{}", other_mode.tag(), &key[mode.tag().len()..]);
        if self.transactions.lock().contains_key(&other_key) {
            return Err(TxnError::ModeMismatch {
                id: client_id.to_owned(),
                mode: match other_mode {
                    TxnMode::PerRequest => "request",
                    TxnMode::PerTransaction => "transaction",
                },
            });
        }
        if mode == TxnMode::PerTransaction && !self.has_successor() {
            return Err(TxnError::NoBackup);
        }
        let mut txns = self.transactions.lock();
        let t = txns.entry(key.to_owned()).or_insert_with(|| Txn {
            client_id: client_id.to_owned(),
            mode,
            seqs: Vec::new(),
            staged: Vec::new(),
            primary: self.pool.primary().name.clone(),
            last_activity: Instant::now(),
            committing: false,
            serial: Arc::default(),
        });
        Ok(t.serial.clone())
    }

    /// After waiting for its turn: the transaction may have been aborted meanwhile.
    fn check_open(&self, key: &str) -> Result<(), TxnError> {
        let txns = self.transactions.lock();
        match txns.get(key) {
            Some(t)
                if t.mode == TxnMode::PerTransaction && t.primary != self.pool.primary().name =>
            {
                Err(TxnError::Aborted {
                    id: t.client_id.clone(),
                    reason: "the primary changed".into(),
                })
            }
            Some(_) => Ok(()),
            None => Err(TxnError::Aborted {
                id: key.rsplit(':').next().unwrap_or(key).to_owned(),
                reason: "it ended while this request waited".into(),
            }),
        }
    }

    async fn ended_outcome(&self, key: &str) -> Result<TxnOutcome, TxnError> {
        let id = key.splitn(3, ':').nth(2).unwrap_or(key).to_owned();
        // Being aborted by a failover right now: the journal record is on its way.
        if let Some(reason) = self.aborting.lock().get(key).cloned() {
            return Err(TxnError::Aborted { id, reason });
        }
        match self.journal.find_transaction(key).await? {
            Some(TransactionRecord {
                outcome: TransactionOutcome::Committed,
                seqs,
                ..
            }) => Ok(TxnOutcome {
                id,
                outcome: "committed",
                seqs,
                reason: None,
            }),
            Some(TransactionRecord {
                outcome: TransactionOutcome::Aborted(reason),
                ..
            }) => Err(TxnError::Aborted { id, reason }),
            None => Err(TxnError::Unknown(id)),
        }
    }

    /// per-transaction: sequences and journals the request, sends it to the primary only.
    async fn submit_tentative(
        self: &Arc<Self>,
        mut sub: Submission,
        key: &str,
    ) -> Result<Committed, TxnError> {
        let _hold = sub.hold.take();
        let Admitted {
            seq,
            after,
            time,
            primary,
            primary_ticket,
            backups: _,
            release,
        } = self.admit(&sub.lane, Some(key), true).await;
        let mut entry = Entry::new(seq, sub.lane.clone(), time, sub.request.clone())
            .with_idempotency(sub.idempotency.clone())
            .with_transaction(Some(key.to_owned()));
        entry.after = after;
        if let Err(e) = self.journal.append(entry).await {
            primary.mark_acked(seq);
            self.resolve(seq);
            return Err(e.into());
        }
        if let Some(t) = self.transactions.lock().get_mut(key) {
            t.seqs.push(seq);
            t.last_activity = Instant::now();
        }
        let extra = Arc::new(context_headers(seq, time));
        let request = Arc::new(sub.request);
        let outcome = self
            .send_to_primary(
                &primary,
                &primary_ticket,
                &request,
                &extra,
                seq,
                &sub.compare,
            )
            .await;
        drop(primary_ticket);
        let response = match outcome {
            Ok(r) => r,
            Err(error) => {
                // The primary may hold part of the transaction; it cannot go on anywhere else.
                drop(release);
                let reason = format!("the primary failed under request {seq}: {error}");
                if self.has_successor() {
                    self.declare_primary_lost(&primary, &error.to_string());
                }
                let _ = self.abort_open(key, &reason).await;
                return Err(TxnError::Aborted {
                    id: key.splitn(3, ':').nth(2).unwrap_or(key).to_owned(),
                    reason,
                });
            }
        };
        if crate::refusal::is_refusal(&sub.compare.refusals, response.status) {
            // Not applied: not part of the transaction, which goes on.
            if let Some(t) = self.transactions.lock().get_mut(key) {
                t.seqs.retain(|s| *s != seq);
            }
            drop(release);
            return Ok(self
                .refuse(
                    &primary,
                    &self.pool.backups(),
                    &Processed::default(),
                    seq,
                    response,
                )
                .await?);
        }
        if let Err(e) = self.record_primary_answer(&primary, seq, &response).await {
            drop(release);
            let _ = self.abort_open(key, &e.to_string()).await;
            return Err(e.into());
        }
        if let Some(t) = self.transactions.lock().get_mut(key) {
            t.staged.push(Staged {
                seq,
                lane: sub.lane,
                request,
                compare: sub.compare,
                extra,
                response: response.clone(),
                _release: release,
            });
        }
        Ok(Committed {
            seq,
            response,
            primary: primary.name.clone(),
            refused: false,
        })
    }

    /// Commits an open transaction (its serializer held by the caller).
    async fn finish_commit(self: &Arc<Self>, key: &str) -> Result<TxnOutcome, TxnError> {
        let (mode, client_id, seqs, staged) = {
            let mut txns = self.transactions.lock();
            let Some(t) = txns.get_mut(key) else {
                drop(txns);
                return Err(TxnError::Unknown(key.to_owned()));
            };
            t.committing = true;
            (
                t.mode,
                t.client_id.clone(),
                t.seqs.clone(),
                std::mem::take(&mut t.staged),
            )
        };
        let commits = match mode {
            TxnMode::PerRequest => Vec::new(),
            TxnMode::PerTransaction => self.replicate_group(&staged).await,
        };
        let record = TransactionRecord {
            id: key.to_owned(),
            outcome: TransactionOutcome::Committed,
            seqs: seqs.clone(),
            commits,
            time: self.clock.now(),
        };
        let ended = self.journal.end_transaction(record).await;
        for s in &staged {
            self.resolve(s.seq);
        }
        self.transactions.lock().remove(key);
        self.release_lanes(key);
        // The staged requests' lane releases go last: a drain sees the transaction done.
        drop(staged);
        ended?;
        info!(transaction = %client_id, requests = seqs.len(), "transaction committed");
        Ok(TxnOutcome {
            id: client_id,
            outcome: "committed",
            seqs,
            reason: None,
        })
    }

    /// Sends the staged requests to every in-sync backup, in order, and compares each answer
    /// with the primary's. Returns the commits to journal.
    async fn replicate_group(self: &Arc<Self>, staged: &[Staged]) -> Vec<(Seq, ResponseRecord)> {
        let backups: Vec<Arc<Backend>> = self
            .pool
            .backups()
            .into_iter()
            .filter(|b| b.state() == BackendState::InSync)
            .collect();
        // Places in each backup's lane queues, in the group's order, taken at once: the lanes
        // are held, so nothing else queues in between.
        let tickets: Vec<Vec<Ticket>> = {
            let mut admission = self.admission.lock();
            staged
                .iter()
                .map(|s| {
                    let names: Vec<&str> = backups.iter().map(|b| b.name.as_str()).collect();
                    admission.lanes.extend(&s.lane, &names)
                })
                .collect()
        };
        // Per backup, its tickets in the group's order.
        let mut per_backup: Vec<Vec<Ticket>> = (0..backups.len()).map(|_| Vec::new()).collect();
        for row in tickets {
            for (i, t) in row.into_iter().enumerate() {
                per_backup[i].push(t);
            }
        }
        let mut work = Vec::new();
        for (backup, tickets) in backups.iter().zip(per_backup) {
            let this = self.clone();
            let backup = backup.clone();
            work.push(async move {
                let mut tickets = tickets.into_iter();
                for s in staged {
                    let ticket = tickets.next().expect("one ticket per request");
                    ticket.wait_turn().await;
                    if backup.state() != BackendState::InSync {
                        return;
                    }
                    let answer = this
                        .dispatch(
                            &backup,
                            s.seq,
                            &s.request,
                            &s.extra,
                            this.config.backup_timeout,
                        )
                        .await;
                    match answer {
                        Ok(answer) => {
                            if !this
                                .judge(&backup, s.seq, &s.compare, &s.response, &answer)
                                .await
                            {
                                return;
                            }
                        }
                        Err(error) => {
                            this.change_state(
                                &backup,
                                Some(BackendState::InSync),
                                BackendState::Lagging,
                                &format!("request {} of a transaction: {error}", s.seq),
                            );
                            return;
                        }
                    }
                    drop(ticket);
                }
            });
        }
        futures::future::join_all(work).await;
        staged.iter().map(|s| (s.seq, s.response.clone())).collect()
    }

    /// Aborts an open transaction: journals the outcome, releases its lanes; a per-transaction
    /// one that reached the primary rolls the primary back.
    async fn abort_open(self: &Arc<Self>, key: &str, reason: &str) -> Result<TxnOutcome, TxnError> {
        let removed = self.transactions.lock().remove(key);
        let Some(t) = removed else {
            return self.ended_outcome(key).await;
        };
        let ended = self.end_aborted(key, &t, reason).await;
        let touched_primary = t.mode == TxnMode::PerTransaction && !t.seqs.is_empty();
        let (primary, id, seqs) = (t.primary.clone(), t.client_id.clone(), t.seqs.clone());
        // Its staged requests count as live until dropped: the rollback's drain waits for them.
        drop(t);
        if touched_primary {
            self.roll_back_primary(&primary, reason).await;
        }
        ended?;
        info!(transaction = %key, %reason, "transaction aborted");
        Ok(TxnOutcome {
            id,
            outcome: "aborted",
            seqs,
            reason: Some(reason.to_owned()),
        })
    }

    /// Journals the abort of `t` (already out of the open set), counts its requests as done for
    /// the backups that never saw them, and releases its lanes.
    async fn end_aborted(&self, key: &str, t: &Txn, reason: &str) -> Result<(), JournalError> {
        let record = TransactionRecord {
            id: key.to_owned(),
            outcome: TransactionOutcome::Aborted(reason.to_owned()),
            seqs: t.seqs.clone(),
            commits: Vec::new(),
            time: self.clock.now(),
        };
        let ended = self.journal.end_transaction(record).await;
        for b in self.pool.backups() {
            for seq in &t.seqs {
                b.mark_acked(*seq);
            }
        }
        if t.mode == TxnMode::PerTransaction {
            for seq in &t.seqs {
                self.resolve(*seq);
            }
        }
        self.release_lanes(key);
        ended
    }

    /// Open per-transaction transactions that are not committing.
    fn uncommitted_per_transaction(&self) -> Vec<String> {
        self.transactions
            .lock()
            .iter()
            .filter(|(_, t)| t.mode == TxnMode::PerTransaction && !t.committing)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The primary `applied` holds requests of an aborted transaction that no backup has: an
    /// in-sync backup takes over and `applied` becomes `suspect` (it needs a reset). Every other
    /// open per-transaction transaction on it is aborted too.
    async fn roll_back_primary(self: &Arc<Self>, applied: &str, reason: &str) {
        for k in self.uncommitted_per_transaction() {
            let _ = Box::pin(
                self.abort_open(&k, "the primary was rolled back for another transaction"),
            )
            .await;
        }
        let _one_change = self.topology_change.lock().await;
        let current = self.pool.primary();
        if current.name != applied {
            // A failover already replaced it.
            return;
        }
        let started = Instant::now();
        self.fence_all();
        self.drain().await;
        match self.choose_successor() {
            Some(successor) => {
                self.change_state(
                    &current,
                    None,
                    BackendState::Suspect,
                    &format!("holds the requests of an aborted transaction ({reason})"),
                );
                self.pool.set_primary(successor.clone());
                self.topology_changed(
                    "primary-changed",
                    Some(&successor.name),
                    &format!(
                        "{} rolled back by promoting {}: it held an aborted transaction",
                        current.name, successor.name
                    ),
                );
            }
            None => {
                self.change_state(
                    &current,
                    None,
                    BackendState::Suspect,
                    &format!(
                        "holds the requests of an aborted transaction ({reason}) and no in-sync backup can replace it"
                    ),
                );
            }
        }
        self.unfence();
        Replicator::record_pause("rollback", started.elapsed());
    }

    /// A failover is about to replace the primary: open per-transaction transactions lose their
    /// tentative requests with it and are aborted (a committing one finishes first: the drain
    /// waits for it).
    pub(crate) async fn abort_for_failover(self: &Arc<Self>, reason: &str) {
        for key in self.uncommitted_per_transaction() {
            self.aborting.lock().insert(key.clone(), reason.to_owned());
            let removed = self.transactions.lock().remove(&key);
            let Some(t) = removed else {
                self.aborting.lock().remove(&key);
                continue;
            };
            let ended = self.end_aborted(&key, &t, reason).await;
            self.aborting.lock().remove(&key);
            if let Err(e) = ended {
                warn!(transaction = %key, error = %e, "could not journal a transaction's abort");
            }
            warn!(transaction = %key, %reason, "transaction aborted by a failover");
        }
    }
}
