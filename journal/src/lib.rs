//! lockstep's request-history journal: every logical request with its sequence number, the
//! primary's response, which backends acknowledged it, and whether it committed.
//!
//! The [`Journal`] trait is the seam: the replication pipeline only talks to it. This crate knows
//! nothing about HTTP servers or pingora; records are plain bytes and strings.
#![warn(unreachable_pub, missing_debug_implementations)]

/// A named failpoint. With the `failpoints` feature, `FAILPOINTS=NAME=return` (or
/// `NAME=5%return`) in the gateway's environment aborts the process here, as a crash would;
/// without the feature it is nothing.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| std::process::abort());
    };
}
pub(crate) use failpoint;

mod file;
mod memory;
mod record;

pub use file::{Durability, FileJournal, FileJournalOptions};
pub use memory::MemoryJournal;
pub use record::{
    BackendRecord, Compaction, Entry, EntryState, Header, IdPairs, IdempotencyKey, JournalError,
    RequestRecord, ResponseRecord, Seq, Topology, TransactionOutcome, TransactionRecord,
};

/// Hooks for the fuzz target in `journal/fuzz` (feature `fuzzing`, off by default); not part of
/// the crate's API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::file::fuzzing::{decode_frame, frame, roundtrip};
}

use async_trait::async_trait;

/// The request history. Implementations must be safe to call from many tasks at once.
///
/// Ordering contract: `append(seq)` returns only once the entry is stored (durably, for a durable
/// journal); the pipeline never lets a backend see a request before its `append` returned.
#[async_trait]
pub trait Journal: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new entry. Its seq is new and greater than every seq appended before it by the
    /// same sequencer.
    async fn append(&self, entry: Entry) -> Result<(), JournalError>;
    /// Records the primary's response for `seq` (before the backups have acknowledged it).
    async fn record_response(&self, seq: Seq, response: ResponseRecord)
    -> Result<(), JournalError>;
    /// Records that `seq` is about to be sent to `backend` (a hint, like acks: not waited on for
    /// an fsync).
    async fn record_dispatch(&self, seq: Seq, backend: &str) -> Result<(), JournalError>;
    /// Records that the dispatch of `seq` to `backend` failed before the backend could receive
    /// it (a hint).
    async fn record_undelivered(&self, seq: Seq, backend: &str) -> Result<(), JournalError>;
    /// Records that `backend` processed `seq` and its response matched the primary's.
    async fn record_ack(&self, seq: Seq, backend: &str) -> Result<(), JournalError>;
    /// Marks `seq` committed with the response the client receives.
    async fn commit(&self, seq: Seq, response: ResponseRecord) -> Result<(), JournalError>;
    /// Marks `seq` as never committed (it failed before commit), with the reason.
    async fn abort(&self, seq: Seq, reason: String) -> Result<(), JournalError>;
    /// Ends a transaction with one record, durable like [`Journal::commit`], whose effects a
    /// crash keeps all or none of: every `(seq, response)` in `record.commits` becomes
    /// [`EntryState::Committed`]; with [`TransactionOutcome::Aborted`], every seq in
    /// `record.seqs` not committed (before or by this record) becomes [`EntryState::Aborted`]
    /// with its reason; and the record is kept under its id for
    /// [`Journal::find_transaction`] until [`Journal::expire_keys`] forgets it.
    ///
    /// Fails, applying nothing, with [`JournalError::TransactionEnded`] when a record with the
    /// same id is kept already, and with [`JournalError::UnknownSeq`] (the first such seq, in
    /// `seqs` then `commits`) when an entry it names does not exist.
    async fn end_transaction(&self, record: TransactionRecord) -> Result<(), JournalError>;
    /// Entries with `seq >= from`, in seq order, at most `limit` of them. The history starts at
    /// [`Journal::first_seq`]: with an earlier `from` the entries returned start there, so a
    /// caller that needs everything from `from` on checks `first_seq()` first.
    async fn read_from(&self, from: Seq, limit: usize) -> Result<Vec<Entry>, JournalError>;
    /// One entry; `None` for a seq never appended or dropped by [`Journal::compact`].
    async fn get(&self, seq: Seq) -> Result<Option<Entry>, JournalError>;
    /// The highest seq appended so far (0 when empty). Compaction never lowers it, also across a
    /// restart: a seq is never handed out twice.
    fn last_seq(&self) -> Seq;
    /// Where the history starts: every entry appended with a seq from here on is still stored;
    /// every seq below it was dropped by [`Journal::compact`] (or never appended), and appending
    /// one fails with [`JournalError::DuplicateSeq`]. 1 until a compaction drops an entry, then
    /// the seq after the highest one dropped: with the gap-free seqs the sequencer hands out, the
    /// first retained entry, or `last_seq() + 1` when none remains. It never decreases, also
    /// across a restart.
    fn first_seq(&self) -> Seq;
    /// Drops history with `seq <= through` that nothing needs any more (a checkpoint holds the
    /// state it produced): entries whose idempotency key is no longer live (expired by
    /// [`Journal::expire_keys`], replaced, or never set). An entry whose key is live stays, so that
    /// a retry with that key still receives its response. Dropping goes from the oldest history
    /// on and stops at the first entry that must stay, so the retained history has no holes; how
    /// much goes at once depends on the implementation (whole segment files for the durable
    /// journal, which also keeps every segment from the oldest one holding a transaction record
    /// not yet expired). The topology, the transaction records not yet expired and the
    /// identifier pairs (see [`Journal::record_ids`]) are kept, also when their entries are
    /// dropped. Durable before it returns.
    async fn compact(&self, through: Seq) -> Result<Compaction, JournalError>;
    /// The entry that carries the scoped idempotency key `scoped` (see [`IdempotencyKey`]),
    /// whatever its state, unless the key was expired.
    async fn find_key(&self, scoped: &str) -> Result<Option<Entry>, JournalError>;
    /// Forgets the idempotency keys of entries sequenced before `before`, and the transaction
    /// records whose time is before it; returns how many of both. The entries themselves stay
    /// (they are the history) until [`Journal::compact`] drops them.
    async fn expire_keys(&self, before: std::time::SystemTime) -> Result<usize, JournalError>;
    /// The record that ended the transaction `id` (see [`Journal::end_transaction`]), unless it
    /// was expired.
    async fn find_transaction(&self, id: &str) -> Result<Option<TransactionRecord>, JournalError>;
    /// Records the identifier pairs learned for `backend` from its answer to `seq`. The caller
    /// writes them before that backend's ack of `seq`, so they are durable when the commit is.
    ///
    /// A hint, like an ack: not waited on for an fsync (the commit's fsync covers it). The entry
    /// need not be stored any more; an empty `pairs` records nothing.
    async fn record_ids(
        &self,
        seq: Seq,
        backend: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<(), JournalError>;
    /// Forgets the pairs recorded for `backend` from answers to seqs after `after` (0: all of
    /// them).
    ///
    /// Only pairs recorded before the call are forgotten. Durable before it returns, in every
    /// durability mode (like the topology): a copy restarted from an earlier state must never
    /// get its old pairs back after a crash.
    async fn forget_ids(&self, backend: &str, after: Seq) -> Result<(), JournalError>;
    /// Every pair recorded and not forgotten, grouped as recorded, oldest first — whatever was
    /// compacted since.
    async fn load_ids(&self) -> Result<Vec<IdPairs>, JournalError>;
    /// Persists the topology (roles, epoch, backend states); replaces the previous one.
    async fn save_topology(&self, topology: &Topology) -> Result<(), JournalError>;
    /// The last saved topology, if any.
    async fn load_topology(&self) -> Result<Option<Topology>, JournalError>;
    /// Returns once everything written before the call is on stable storage (an fsync, whatever
    /// the durability mode). A gateway calls it before it exits.
    async fn sync(&self) -> Result<(), JournalError> {
        Ok(())
    }
}
