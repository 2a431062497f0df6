//! The in-memory index of the file journal: per entry only small metadata (time, where its
//! records lie, its state, its acks); request and response bodies stay on disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::codec::Record;
use crate::{EntryState, Seq, Topology};

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
    /// A non-pending state carried by the append record itself.
    InAppend,
    Answered(Loc),
    Committed(Loc),
    Aborted(Loc),
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
        pending: bool,
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
                    pending: matches!(entry.state, EntryState::Pending),
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
        }
    }

    /// The entry this change must find in the index (or, for an append, must not find).
    pub(super) fn seq(&self) -> Option<Seq> {
        match self {
            Change::Append { seq, .. }
            | Change::Response(seq)
            | Change::Ack(seq, _)
            | Change::Dispatch(seq, _)
            | Change::Undelivered(seq, _)
            | Change::Commit(seq)
            | Change::Abort(seq) => Some(*seq),
            Change::ExpireKeys(_) | Change::Topology(_) | Change::Compacted { .. } => None,
        }
    }

    /// Hints are written but never waited on for an fsync.
    pub(super) fn is_hint(&self) -> bool {
        matches!(
            self,
            Change::Response(_) | Change::Ack(..) | Change::Dispatch(..) | Change::Undelivered(..)
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
}

#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) entries: BTreeMap<Seq, Meta>,
    /// Scoped idempotency key → seq.
    pub(super) keys: HashMap<String, Seq>,
    pub(super) topology: Option<Topology>,
    /// The segment holding the record of `topology`.
    topology_segment: Option<u64>,
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

    /// Applies `change`, whose record lies at `loc`. Returns the number of keys expired (for
    /// [`Change::ExpireKeys`]). An append is inserted with `durable` as given; the caller marks it
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
                pending,
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
                        state: if pending {
                            StateAt::Pending
                        } else {
                            StateAt::InAppend
                        },
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
            Change::ExpireKeys(before) => {
                let entries = &self.entries;
                let n = self.keys.len();
                self.keys
                    .retain(|_, seq| entries.get(seq).is_some_and(|m| m.time >= before));
                return Ok(n - self.keys.len());
            }
            Change::Topology(t) => {
                self.topology = Some(t);
                self.topology_segment = Some(loc.segment);
            }
            Change::Compacted {
                first_seq,
                first_segment,
            } => return Ok(self.compact(first_seq, first_segment)),
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

    /// Forgets the entries appended in segments below `first_segment`, and their keys; returns
    /// how many entries went.
    fn compact(&mut self, first_seq: Seq, first_segment: u64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, meta| meta.append.segment >= first_segment);
        let entries = &self.entries;
        self.keys.retain(|_, seq| entries.contains_key(seq));
        self.compacted_through = self.compacted_through.max(first_seq.saturating_sub(1));
        self.first_segment = self.first_segment.max(first_segment);
        // Every dropped seq is below `first_seq`: after a restart that leaves no entry, the next
        // seq still follows the last one handed out.
        self.last_seq = self.last_seq.max(self.compacted_through);
        before - self.entries.len()
    }

    /// What compacting through `through` may drop while `active` is the segment being written:
    /// the sealed segments from the oldest on whose entries all have `seq <= through`, are
    /// durable and hold no live idempotency key, up to the first that does not qualify.
    pub(super) fn plan_compaction(&self, through: Seq, active: u64) -> Plan {
        let live: HashSet<Seq> = self.keys.values().copied().collect();
        // Per segment: the highest seq appended in it, and whether it must stay.
        let mut segments: BTreeMap<u64, (Seq, bool)> = BTreeMap::new();
        for (&seq, meta) in &self.entries {
            let s = segments.entry(meta.append.segment).or_insert((0, false));
            s.0 = s.0.max(seq);
            s.1 |= seq > through || !meta.durable || live.contains(&seq);
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
        Plan {
            segments: drop,
            first_seq: highest.map_or(self.first_seq(), |h| self.first_seq().max(h + 1)),
            first_segment,
            topology,
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
