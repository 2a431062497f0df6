//! The in-memory index of the file journal: per entry only small metadata (time, where its
//! records lie, its state, its acks), per transaction record its time and where it lies; request
//! and response bodies stay on disk. Of a group of identifier pairs only where its record lies
//! and what selects it (its backend and seq) are kept: the pairs are read back when loaded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::codec::Record;
use super::segment;
use crate::{EntryState, Seq, Topology, TransactionOutcome};

/// Where one record lies: segment number, byte offset of its frame, frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) segment: u64,
    pub(super) offset: u64,
    pub(super) len: u32,
}

/// Which record holds an entry's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StateAt {
    /// Pending, as appended.
    Pending,
    /// A non-pending state carried by the append record itself (committed or not).
    InAppend { committed: bool },
    /// In a `Response` record.
    Answered(Loc),
    /// In a `Commit` or `Transaction` record.
    Committed(Loc),
    /// In an `Abort` or `Transaction` record.
    Aborted(Loc),
}

impl StateAt {
    /// The state an entry is appended with.
    pub(super) fn of_append(state: &EntryState) -> StateAt {
        match state {
            EntryState::Pending => StateAt::Pending,
            EntryState::Committed(_) => StateAt::InAppend { committed: true },
            EntryState::Answered(_) | EntryState::Aborted(_) => {
                StateAt::InAppend { committed: false }
            }
        }
    }

    fn is_committed(self) -> bool {
        matches!(
            self,
            StateAt::Committed(_) | StateAt::InAppend { committed: true }
        )
    }
}

/// A transaction record the index keeps (until it expires): the record itself, with its
/// responses, is read back from its segment, which compaction keeps meanwhile.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ended {
    pub(super) time: SystemTime,
    pub(super) loc: Loc,
}

/// A group of identifier pairs the index keeps until it is forgotten: the pairs themselves stay
/// in its record, read back by `load_ids` and by a compaction that writes it again.
#[derive(Debug, Clone)]
pub(super) struct IdGroup {
    pub(super) backend: Arc<str>,
    /// The seq whose answer it was learned from.
    pub(super) seq: Seq,
    /// How many pairs its record holds.
    pub(super) count: usize,
    /// Where its record lies (the latest copy of it, after a compaction rewrote it).
    pub(super) loc: Loc,
}

#[derive(Debug, Clone)]
pub(super) struct Meta {
    pub(super) time: SystemTime,
    pub(super) append: Loc,
    pub(super) state: StateAt,
    pub(super) acks: Vec<Arc<str>>,
    pub(super) dispatched: Vec<Arc<str>>,
    pub(super) undelivered: Vec<Arc<str>>,
    /// Covered by an fsync (or the journal does not fsync). Readers see durable entries only,
    /// so that catch-up never replays a request a crash could still take back.
    pub(super) durable: bool,
}

/// A change to the index, applied in file order: during recovery from the records read, at run
/// time by the writer once the record is written (hints) or fsynced (everything else).
#[derive(Debug, Clone)]
pub(super) enum Change {
    Append {
        seq: Seq,
        time: SystemTime,
        key: Option<String>,
        acks: Vec<String>,
        /// [`StateAt::Pending`] or [`StateAt::InAppend`].
        state: StateAt,
        /// Whether it carries a transaction id (a field only format version 2 has).
        transaction: bool,
    },
    Response(Seq),
    Ack(Seq, String),
    Dispatch(Seq, String),
    Undelivered(Seq, String),
    Commit(Seq),
    Abort(Seq),
    ExpireKeys(SystemTime),
    Topology(Topology),
    /// Drops the entries appended in segments below `first_segment`; the history starts at
    /// `first_seq`.
    Compacted {
        first_seq: Seq,
        first_segment: u64,
    },
    /// A transaction ended: `commits` are committed, and when it `aborted`, the entries of
    /// `seqs` not committed are aborted.
    Transaction {
        id: String,
        time: SystemTime,
        aborted: bool,
        seqs: Vec<Seq>,
        commits: Vec<Seq>,
    },
    /// `count` identifier pairs of `backend` learned from `seq`; `order` places them among the
    /// others. The pairs are in the record only.
    Ids {
        order: u64,
        backend: String,
        seq: Seq,
        count: usize,
    },
    /// Forgets the pairs of `backend` learned from seqs after `after`.
    ForgetIds {
        backend: String,
        after: Seq,
    },
}

impl Change {
    /// The index change a recovered record makes.
    pub(super) fn of_record(record: Record) -> Change {
        match record {
            Record::Append(entry) => {
                let entry = *entry;
                Change::Append {
                    seq: entry.seq,
                    time: entry.time,
                    key: entry.idempotency.map(|k| k.scoped),
                    acks: entry.acks,
                    state: StateAt::of_append(&entry.state),
                    transaction: entry.transaction.is_some(),
                }
            }
            Record::Response { seq, .. } => Change::Response(seq),
            Record::Ack { seq, backend } => Change::Ack(seq, backend),
            Record::Dispatch { seq, backend } => Change::Dispatch(seq, backend),
            Record::Undelivered { seq, backend } => Change::Undelivered(seq, backend),
            Record::Commit { seq, .. } => Change::Commit(seq),
            Record::Abort { seq, .. } => Change::Abort(seq),
            Record::ExpireKeys { before } => Change::ExpireKeys(before),
            Record::Topology(t) => Change::Topology(t),
            Record::Compacted {
                first_seq,
                first_segment,
            } => Change::Compacted {
                first_seq,
                first_segment,
            },
            Record::Transaction(t) => Change::Transaction {
                id: t.id,
                time: t.time,
                aborted: matches!(t.outcome, TransactionOutcome::Aborted(_)),
                seqs: t.seqs,
                commits: t.commits.into_iter().map(|(seq, _)| seq).collect(),
            },
            Record::Ids {
                order,
                backend,
                seq,
                pairs,
            } => Change::Ids {
                order,
                backend,
                seq,
                count: pairs.len(),
            },
            Record::ForgetIds { backend, after } => Change::ForgetIds { backend, after },
        }
    }

    /// The entries a transaction record names, which must all be in the index: its seqs, then
    /// those of its commits. Empty for any other change.
    pub(super) fn named_seqs(&self) -> impl Iterator<Item = Seq> + '_ {
        let (seqs, commits): (&[Seq], &[Seq]) = match self {
            Change::Transaction { seqs, commits, .. } => (seqs, commits),
            _ => (&[], &[]),
        };
        seqs.iter().chain(commits).copied()
    }

    /// The oldest segment format that has this change's record.
    pub(super) fn format_since(&self) -> u32 {
        match self {
            Change::Compacted { .. } => segment::COMPACTED_SINCE,
            Change::Transaction { .. }
            | Change::Append {
                transaction: true, ..
            } => segment::TRANSACTIONS_SINCE,
            Change::Ids { .. } | Change::ForgetIds { .. } => segment::IDS_SINCE,
            _ => segment::OLDEST_FORMAT_VERSION,
        }
    }

    /// The entry this change must find in the index (or, for an append, must not find).
    /// Identifier pairs name a seq too, but outlive its entry.
    pub(super) fn seq(&self) -> Option<Seq> {
        match self {
            Change::Append { seq, .. }
            | Change::Response(seq)
            | Change::Ack(seq, _)
            | Change::Dispatch(seq, _)
            | Change::Undelivered(seq, _)
            | Change::Commit(seq)
            | Change::Abort(seq) => Some(*seq),
            Change::ExpireKeys(_)
            | Change::Topology(_)
            | Change::Compacted { .. }
            | Change::Transaction { .. }
            | Change::Ids { .. }
            | Change::ForgetIds { .. } => None,
        }
    }

    /// Hints are written but never waited on for an fsync.
    ///
    /// Identifier pairs are one: the caller records them before the backend's ack, so they lie
    /// before the commit of their seq in the file, and whatever makes the commit durable makes
    /// them durable too: the fsync covering the commit covers everything written to its segment
    /// before it, and an earlier segment was fsynced when it was sealed (in every mode); a torn
    /// tail only ever takes records from the end.
    pub(super) fn is_hint(&self) -> bool {
        matches!(
            self,
            Change::Response(_)
                | Change::Ack(..)
                | Change::Dispatch(..)
                | Change::Undelivered(..)
                | Change::Ids { .. }
        )
    }
}

/// What a compaction will do, worked out by [`Index::plan_compaction`].
#[derive(Debug)]
pub(super) struct Plan {
    /// The segments to delete, oldest first (possibly none).
    pub(super) segments: Vec<u64>,
    /// Where the history starts afterwards.
    pub(super) first_seq: Seq,
    /// The oldest segment kept.
    pub(super) first_segment: u64,
    /// The current topology, when its record lies in a segment to delete (it must be written
    /// again first).
    pub(super) topology: Option<Topology>,
    /// The identifier groups whose record lies in a segment to delete, by order (they must be
    /// read back and written again first).
    pub(super) ids: Vec<(u64, IdGroup)>,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) entries: BTreeMap<Seq, Meta>,
    /// Scoped idempotency key → seq.
    pub(super) keys: HashMap<String, Seq>,
    /// Transaction id → its record, until the record expires.
    pub(super) transactions: HashMap<String, Ended>,
    pub(super) topology: Option<Topology>,
    /// The segment holding the record of `topology`.
    topology_segment: Option<u64>,
    /// Identifier pairs not forgotten, by the order they were recorded in.
    pub(super) ids: BTreeMap<u64, IdGroup>,
    /// The order the next recorded group takes: above every order in the history replayed.
    next_ids_order: u64,
    /// The highest durable seq.
    pub(super) last_seq: Seq,
    /// The highest seq compaction dropped (0 when none): the history starts after it.
    compacted_through: Seq,
    /// The oldest segment still part of the history; those below it were compacted away.
    pub(super) first_segment: u64,
    /// Backend names, stored once however many acks name them.
    names: HashSet<Arc<str>>,
}

impl Index {
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }

    /// The order of a group about to be recorded. Callers take theirs before they queue the
    /// record, so orders and file positions may disagree between concurrent calls; what counts
    /// is that the same order comes back on a reopen and through a compaction.
    pub(super) fn take_ids_order(&mut self) -> u64 {
        let order = self.next_ids_order;
        self.next_ids_order += 1;
        order
    }

    /// Applies `change`, whose record lies at `loc`. Returns the number of keys and transaction
    /// records expired (for [`Change::ExpireKeys`]), or of entries dropped (for
    /// [`Change::Compacted`]). An append is inserted with `durable` as given; the caller marks it
    /// durable later with [`Index::mark_durable`] when an fsync is still due.
    pub(super) fn apply(
        &mut self,
        change: Change,
        loc: Loc,
        durable: bool,
    ) -> Result<usize, String> {
        let missing = |seq: Seq| format!("record for entry {seq}, which was never appended");
        match change {
            Change::Append {
                seq,
                time,
                key,
                acks,
                state,
                transaction: _,
            } => {
                if self.entries.contains_key(&seq) {
                    return Err(format!("entry {seq} is appended twice"));
                }
                if seq <= self.compacted_through {
                    return Err(format!(
                        "entry {seq} is appended after the history was compacted past it"
                    ));
                }
                let acks = acks.iter().map(|a| self.intern(a)).collect();
                if let Some(key) = key {
                    self.keys.insert(key, seq);
                }
                self.entries.insert(
                    seq,
                    Meta {
                        time,
                        append: loc,
                        state,
                        acks,
                        dispatched: Vec::new(),
                        undelivered: Vec::new(),
                        durable: false,
                    },
                );
                if durable {
                    self.mark_durable(seq);
                }
            }
            Change::Response(seq) => {
                let meta = self.entries.get_mut(&seq).ok_or_else(|| missing(seq))?;
                // Only a pending entry takes the primary's response; a commit or abort that
                // came first stays.
                if meta.state == StateAt::Pending {
                    meta.state = StateAt::Answered(loc);
                }
            }
            Change::Ack(seq, backend) => {
                let name = self.intern(&backend);
                let meta = self.entries.get_mut(&seq).ok_or_else(|| missing(seq))?;
                meta.acks.push(name);
            }
            Change::Dispatch(seq, backend) => {
                let name = self.intern(&backend);
                let meta = self.entries.get_mut(&seq).ok_or_else(|| missing(seq))?;
                meta.dispatched.push(name);
            }
            Change::Undelivered(seq, backend) => {
                let name = self.intern(&backend);
                let meta = self.entries.get_mut(&seq).ok_or_else(|| missing(seq))?;
                meta.undelivered.push(name);
            }
            Change::Commit(seq) => {
                let meta = self.entries.get_mut(&seq).ok_or_else(|| missing(seq))?;
                meta.state = StateAt::Committed(loc);
            }
            Change::Abort(seq) => {
                let meta = self.entries.get_mut(&seq).ok_or_else(|| missing(seq))?;
                meta.state = StateAt::Aborted(loc);
            }
            Change::Transaction {
                id,
                time,
                aborted,
                seqs,
                commits,
            } => {
                // Entries it names that are not in the index were dropped by a compaction (the
                // writer checks them, recovery sets them aside): the rest takes its effects.
                for seq in commits {
                    if let Some(meta) = self.entries.get_mut(&seq) {
                        meta.state = StateAt::Committed(loc);
                    }
                }
                if aborted {
                    for seq in seqs {
                        let meta = self.entries.get_mut(&seq);
                        if let Some(meta) = meta.filter(|m| !m.state.is_committed()) {
                            meta.state = StateAt::Aborted(loc);
                        }
                    }
                }
                // A record of the same id kept already is only ever one a compaction dropped
                // (its file, left behind by a crash, was replayed): the later one wins.
                self.transactions.insert(id, Ended { time, loc });
            }
            Change::ExpireKeys(before) => {
                let entries = &self.entries;
                let n = self.keys.len() + self.transactions.len();
                self.keys
                    .retain(|_, seq| entries.get(seq).is_some_and(|m| m.time >= before));
                self.transactions.retain(|_, t| t.time >= before);
                return Ok(n - self.keys.len() - self.transactions.len());
            }
            Change::Topology(t) => {
                self.topology = Some(t);
                self.topology_segment = Some(loc.segment);
            }
            Change::Compacted {
                first_seq,
                first_segment,
            } => return Ok(self.compact(first_seq, first_segment)),
            Change::Ids {
                order,
                backend,
                seq,
                count,
            } => {
                let backend = self.intern(&backend);
                self.next_ids_order = self.next_ids_order.max(order.saturating_add(1));
                // A group of the same order is the same group: the copy a compaction wrote takes
                // the place of the record it copied (replayed from a file left behind).
                let group = IdGroup {
                    backend,
                    seq,
                    count,
                    loc,
                };
                self.ids.insert(order, group);
            }
            Change::ForgetIds { backend, after } => {
                self.ids
                    .retain(|_, g| *g.backend != *backend || g.seq <= after);
            }
        }
        Ok(0)
    }

    /// Where the history starts (see `Journal::first_seq`).
    pub(super) fn first_seq(&self) -> Seq {
        self.compacted_through + 1
    }

    /// Whether `seq` may not be appended: it is stored, or the history was compacted past it.
    pub(super) fn is_taken(&self, seq: Seq) -> bool {
        seq <= self.compacted_through || self.entries.contains_key(&seq)
    }

    /// Forgets the entries appended in segments below `first_segment`, and their keys, and the
    /// transaction records in those segments (only ever expired ones, replayed from files a
    /// crash left behind); returns how many entries went.
    fn compact(&mut self, first_seq: Seq, first_segment: u64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, meta| meta.append.segment >= first_segment);
        let entries = &self.entries;
        self.keys.retain(|_, seq| entries.contains_key(seq));
        self.transactions
            .retain(|_, t| t.loc.segment >= first_segment);
        // The groups the compaction kept were written again, in a kept segment, before its
        // record: what is left below are records replayed from files a crash left behind, of
        // groups forgotten since.
        self.ids.retain(|_, g| g.loc.segment >= first_segment);
        self.compacted_through = self.compacted_through.max(first_seq.saturating_sub(1));
        self.first_segment = self.first_segment.max(first_segment);
        // Every dropped seq is below `first_seq`: after a restart that leaves no entry, the next
        // seq still follows the last one handed out.
        self.last_seq = self.last_seq.max(self.compacted_through);
        before - self.entries.len()
    }

    /// What compacting through `through` may drop while `active` is the segment being written:
    /// the sealed segments from the oldest on whose entries all have `seq <= through`, are
    /// durable and hold no live idempotency key, and which hold no transaction record not yet
    /// expired, up to the first that does not qualify.
    pub(super) fn plan_compaction(&self, through: Seq, active: u64) -> Plan {
        let live: HashSet<Seq> = self.keys.values().copied().collect();
        // Per segment: the highest seq appended in it, and whether it must stay.
        let mut segments: BTreeMap<u64, (Seq, bool)> = BTreeMap::new();
        for (&seq, meta) in &self.entries {
            let s = segments.entry(meta.append.segment).or_insert((0, false));
            s.0 = s.0.max(seq);
            s.1 |= seq > through || !meta.durable || live.contains(&seq);
        }
        for t in self.transactions.values() {
            segments.entry(t.loc.segment).or_insert((0, false)).1 = true;
        }
        let mut drop = Vec::new();
        let mut highest = None;
        for number in self.first_segment..active {
            match segments.get(&number) {
                Some(&(_, true)) => break,
                Some(&(max, false)) => highest = highest.max(Some(max)),
                None => {}
            }
            drop.push(number);
        }
        let first_segment = drop.last().map_or(self.first_segment, |n| n + 1);
        let topology = self
            .topology
            .clone()
            .filter(|_| self.topology_segment.is_some_and(|s| s < first_segment));
        let ids = self
            .ids
            .iter()
            .filter(|(_, g)| g.loc.segment < first_segment)
            .map(|(&order, g)| (order, g.clone()))
            .collect();
        Plan {
            segments: drop,
            first_seq: highest.map_or(self.first_seq(), |h| self.first_seq().max(h + 1)),
            first_segment,
            topology,
            ids,
        }
    }

    pub(super) fn mark_durable(&mut self, seq: Seq) {
        if let Some(meta) = self.entries.get_mut(&seq) {
            meta.durable = true;
            self.last_seq = self.last_seq.max(seq);
        }
    }

    /// The metadata of a durable entry.
    pub(super) fn durable(&self, seq: Seq) -> Option<&Meta> {
        self.entries.get(&seq).filter(|m| m.durable)
    }
}
