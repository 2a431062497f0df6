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
            Change::ExpireKeys(_) | Change::Topology(_) => None,
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

#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) entries: BTreeMap<Seq, Meta>,
    /// Scoped idempotency key → seq.
    pub(super) keys: HashMap<String, Seq>,
    pub(super) topology: Option<Topology>,
    /// The highest durable seq.
    pub(super) last_seq: Seq,
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
            Change::Topology(t) => self.topology = Some(t),
        }
        Ok(0)
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
