//! The records the journal stores.

use bytes::Bytes;
use std::time::SystemTime;

/// A position in the total order of logical requests. The first request gets 1.
pub type Seq = u64;

/// One header as it travels: the name as the client wrote it, the raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Bytes,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A logical request as the backends receive it (before per-backend context headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query, as received.
    pub uri: String,
    /// End-to-end headers in client order; hop-by-hop headers are already removed.
    pub headers: Vec<Header>,
    pub body: Bytes,
}

/// A backend's full response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRecord {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

impl ResponseRecord {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| &h.value)
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// Journaled; not (yet) committed.
    Pending,
    /// The primary answered; backups may still be acknowledging.
    Answered(ResponseRecord),
    /// The ack policy was met; this response is what the client received.
    Committed(ResponseRecord),
    /// It failed before commit and never will commit.
    Aborted(String),
}

/// The idempotency identity of a request, computed by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// A digest of the credential scope and the client's key: two clients with different
    /// credentials never share a scoped key.
    pub scoped: String,
    /// A digest of method, path and body: the same key reused for a different request is caught.
    pub fingerprint: String,
}

/// One logical request in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: Seq,
    /// The ordering domain; empty for the global lane.
    pub lane: String,
    /// The highest seq that had committed or aborted when this entry was admitted: its client
    /// may have seen those answers, so a replay applies all of them (and the entries before them)
    /// before this one. Always less than `seq`.
    pub after: Seq,
    /// Gateway time at sequencing.
    pub time: SystemTime,
    pub request: RequestRecord,
    pub state: EntryState,
    /// Names of the backends that acknowledged it, in acknowledgement order.
    pub acks: Vec<String>,
    /// Names of the backends it was sent to (before their answer): with `acks`, this tells a
    /// request never sent from one whose outcome is unknown.
    pub dispatched: Vec<String>,
    /// Names of the backends it was dispatched to that certainly never received it (the
    /// connection failed).
    pub undelivered: Vec<String>,
    pub idempotency: Option<IdempotencyKey>,
    /// The scoped id of the transaction it belongs to (see [`TransactionRecord`]); `None` for a
    /// request on its own.
    pub transaction: Option<String>,
}

impl Entry {
    pub fn new(seq: Seq, lane: String, time: SystemTime, request: RequestRecord) -> Self {
        Entry {
            seq,
            lane,
            after: seq.saturating_sub(1),
            time,
            request,
            state: EntryState::Pending,
            acks: Vec::new(),
            dispatched: Vec::new(),
            undelivered: Vec::new(),
            idempotency: None,
            transaction: None,
        }
    }

    /// Whether `backend` may have received it without acknowledging it: its outcome there is
    /// unknown.
    /// Each dispatch ends acknowledged, undelivered (never received, or refused: not processed)
    /// or unknown; a backend sent it again after an undelivered attempt has an unknown outcome
    /// until that attempt is accounted for too.
    pub fn outcome_unknown(&self, backend: &str) -> bool {
        let count = |v: &[String]| v.iter().filter(|n| *n == backend).count();
        count(&self.acks) == 0 && count(&self.dispatched) > count(&self.undelivered)
    }

    /// Whether some backend applied it (acknowledged it) or may have (its outcome there is
    /// unknown). An aborted entry for which this holds must not run again under the same
    /// idempotency key: it could be applied twice.
    pub fn maybe_applied(&self) -> bool {
        !self.acks.is_empty() || self.dispatched.iter().any(|b| self.outcome_unknown(b))
    }

    pub fn with_idempotency(mut self, key: Option<IdempotencyKey>) -> Self {
        self.idempotency = key;
        self
    }

    pub fn with_transaction(mut self, transaction: Option<String>) -> Self {
        self.transaction = transaction;
        self
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionOutcome {
    Committed,
    /// It will never commit, for this reason: its entries not committed are aborted with it.
    Aborted(String),
}

/// The end of a transaction: a group of entries that commits (or aborts) as one unit. Stored as
/// one record by [`Journal::end_transaction`](crate::Journal::end_transaction), so that a crash
/// keeps all of its effects or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    /// The scoped transaction id (the one its entries carry in [`Entry::transaction`]).
    pub id: String,
    pub outcome: TransactionOutcome,
    /// The transaction's entries, in order.
    pub seqs: Vec<Seq>,
    /// Commits applied atomically with this record (the per-transaction mode commits its whole
    /// group at once); empty when the entries committed one by one.
    pub commits: Vec<(Seq, ResponseRecord)>,
    /// Gateway time when it ended; [`Journal::expire_keys`](crate::Journal::expire_keys) forgets
    /// the record once this is before its cut-off.
    pub time: SystemTime,
}

/// Identifiers a backend minted, learned from its answer to `seq`: (canonical, local) pairs.
///
/// The canonical identifier is the one the client saw (the primary's); the local one is what
/// `backend`'s copy minted for the same create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPairs {
    pub backend: String,
    pub seq: Seq,
    pub pairs: Vec<(String, String)>,
}

/// The gateway's view of its backends, persisted so that a restart keeps roles and states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Incremented on every topology change.
    pub epoch: u64,
    pub primary: String,
    pub backends: Vec<BackendRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRecord {
    pub name: String,
    pub url: String,
    pub implementation: String,
    /// `in-sync`, `lagging`, `diverged`, `joining`, `suspect` or `down`.
    pub state: String,
    pub acked_seq: Seq,
}

/// What one [`Journal::compact`](crate::Journal::compact) call dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compaction {
    /// Where the history starts after the call: [`Journal::first_seq`](crate::Journal::first_seq).
    pub first_seq: Seq,
    /// How many entries were dropped.
    pub dropped_entries: u64,
    /// How much storage was given back: for the file journal the size of the deleted segment
    /// files, for the memory journal the bytes of the dropped requests and responses (methods,
    /// URIs, header names and values, bodies).
    pub dropped_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal entry {seq} does not exist")]
    UnknownSeq { seq: Seq },
    #[error("journal entry {seq} was appended twice")]
    DuplicateSeq { seq: Seq },
    #[error("journal I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the journal in {path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("in use by another process (another gateway holds {path}/LOCK)")]
    InUse { path: String },
    #[error("the journal stopped writing after a failure: {detail}")]
    WriterStopped { detail: String },
    #[error("transaction {id} has already ended")]
    TransactionEnded { id: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let request = RequestRecord {
            method: "POST".into(),
            uri: "/accounts/1/deposit".into(),
            headers: vec![],
            body: Bytes::from_static(b"{\"amount\":1}"),
        };
        Entry::new(7, String::new(), SystemTime::UNIX_EPOCH, request)
    }

    #[test]
    fn maybe_applied_tells_a_request_no_backend_can_have_applied() {
        let mut e = entry();
        assert!(!e.maybe_applied(), "never sent anywhere");
        e.dispatched.push("a".into());
        assert!(e.maybe_applied(), "sent, no answer: unknown outcome");
        e.undelivered.push("a".into());
        assert!(!e.maybe_applied(), "the connection failed: never received");
        e.dispatched.push("a".into());
        assert!(
            e.maybe_applied(),
            "sent again after the failed attempt: unknown again"
        );
        e.undelivered.push("a".into());
        assert!(
            !e.maybe_applied(),
            "refused the second time too: never processed"
        );
        // A recovery can abort a request the primary answered: that copy applied it.
        e.dispatched.push("b".into());
        e.acks.push("b".into());
        assert!(e.maybe_applied(), "acknowledged by b");
        e.state = EntryState::Aborted("no in-sync backend can take it".into());
        assert!(e.maybe_applied(), "the abort does not undo b's copy");
    }
}
