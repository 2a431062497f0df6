//! The durable journal: records appended to segment files in one directory, with group commit.
//!
//! Layout of `$DIR`: `LOCK` (held with `flock` while a journal is open) and
//! `segment-NNNNNNNNNNNNNNNNNNNN.log` files numbered upwards from 0 (compaction deletes the
//! oldest ones). Each segment starts with a versioned header and holds length-prefixed,
//! CRC32-checked records (see `codec`). The whole history is replayed into a small in-memory
//! index on open; bodies are read back from disk on demand.
//!
//! This module owns opening, recovery and reads; `writer` owns the write path.

mod codec;
mod index;
mod segment;
mod writer;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::{
    Compaction, Entry, EntryState, IdPairs, Journal, JournalError, ResponseRecord, Seq, Topology,
    TransactionOutcome, TransactionRecord,
};
use codec::Record;
use index::{Change, IdGroup, Index, Loc, StateAt};
use segment::Tail;
use writer::{Request, Shared, Write, Writer};

/// When a write counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `append`, `commit`, `abort`, `end_transaction` and `expire_keys` return after an fsync
    /// covering their record.
    /// Concurrent calls share one fsync (group commit). Survives power loss.
    Always,
    /// Calls return once their record is written to the operating system; the writer fsyncs in
    /// the background at the latest one batch interval (2 ms by default) after the first write
    /// not yet synced. Survives the gateway process being killed; a power loss or kernel crash
    /// can take back at most the last interval. The topology, compactions and forgotten
    /// identifier pairs are still fsynced before replying.
    #[default]
    Batch,
    /// Records are written to the operating system and never fsynced (except the topology,
    /// compactions and forgotten identifier pairs).
    /// Survives the gateway process being killed, not a power loss or kernel crash.
    Never,
}

/// Tuning for [`FileJournal::open_with`]; [`FileJournalOptions::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileJournalOptions {
    pub durability: Durability,
    /// Under [`Durability::Batch`], the longest a written record waits for its fsync.
    pub batch_interval: Duration,
    /// A segment that reached this size is sealed and a new one started. Records never span
    /// segments, so one record may take a segment past it.
    pub segment_bytes: u64,
}

impl FileJournalOptions {
    pub fn new(durability: Durability) -> Self {
        FileJournalOptions {
            durability,
            batch_interval: Duration::from_millis(2),
            segment_bytes: 64 << 20,
        }
    }
}

/// The durable [`Journal`]: see the module documentation and `docs/journal.md`.
#[derive(Debug)]
pub struct FileJournal {
    shared: Arc<Shared>,
    /// `None` only while dropping, to stop the writer.
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    /// Held (with its `flock`) for as long as the journal is open.
    _lock: File,
}

impl FileJournal {
    /// Opens (or creates) the journal in `dir` and recovers its history. Blocking: call it at
    /// startup or from `spawn_blocking`.
    ///
    /// A torn last record (a crash in the middle of a write) is cut away with a warning; any
    /// other damage is [`JournalError::Corrupt`]. Another open journal on `dir`, in this process
    /// or another, is [`JournalError::InUse`].
    pub fn open(dir: &Path, durability: Durability) -> Result<FileJournal, JournalError> {
        Self::open_with(dir, FileJournalOptions::new(durability))
    }

    /// [`FileJournal::open`] with explicit options.
    pub fn open_with(dir: &Path, options: FileJournalOptions) -> Result<FileJournal, JournalError> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;

        let mut numbers = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let name = item?.file_name();
            if let Some(n) = name.to_str().and_then(segment::parse_file_name) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();

        let mut index = Index::default();
        let mut orphans = Vec::new();
        let mut segments = BTreeMap::new();
        let mut last: Option<(u64, File, u64, u32)> = None;
        for (i, &number) in numbers.iter().enumerate() {
            let is_last = i + 1 == numbers.len();
            let path = segment::path(dir, number);
            let file = OpenOptions::new().read(true).write(is_last).open(&path)?;
            let (len, version) =
                recover_segment(&path, &file, number, is_last, &mut index, &mut orphans)?;
            if is_last {
                last = Some((number, file.try_clone()?, len, version));
            }
            segments.insert(number, Arc::new(file));
        }

        // Segments below the first retained one were compacted away (a crash can leave some of
        // them behind, in any pattern); from it on, none may be missing.
        let first_segment = index.first_segment;
        let retained = numbers.iter().copied().filter(|&n| n >= first_segment);
        if let Some((expected, _)) = (first_segment..).zip(retained).find(|(e, n)| e != n) {
            return Err(JournalError::Corrupt {
                path: dir.display().to_string(),
                detail: format!("segment {expected} is missing"),
            });
        }
        // A record about an entry whose append is not in the history is damage, unless a
        // compaction dropped that entry.
        if let Some(orphan) = orphans.iter().find(|o| o.seq >= index.first_seq()) {
            return Err(JournalError::Corrupt {
                path: orphan.path.display().to_string(),
                detail: format!(
                    "at offset {}: record for entry {}, which was never appended",
                    orphan.offset, orphan.seq
                ),
            });
        }
        for &number in numbers.iter().filter(|&&n| n < first_segment) {
            let path = segment::path(dir, number);
            info!(
                path = %path.display(),
                "deleting a journal segment an interrupted compaction left behind"
            );
            segments.remove(&number);
            std::fs::remove_file(&path)?;
        }

        let (segment, file, len, version) = match last {
            Some((number, file, len, version)) => (number, Arc::new(file), len, version),
            None => {
                let file = Arc::new(writer::create_segment(dir, 0)?);
                segments.insert(0, file.clone());
                (0, file, segment::HEADER_LEN, segment::FORMAT_VERSION)
            }
        };
        writer::sync_dir(dir)?;

        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
            segments: RwLock::new(segments),
            syncs: AtomicU64::new(0),
            failure: Mutex::new(None),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            rx,
            durability: options.durability,
            batch_interval: options.batch_interval,
            segment_bytes: options.segment_bytes,
            file,
            segment,
            len,
            version,
            held: None,
        };
        let writer = std::thread::Builder::new()
            .name("lockstep-journal".into())
            .spawn(move || writer.run())?;
        Ok(FileJournal {
            shared,
            tx: Some(tx),
            writer: Some(writer),
            _lock: lock,
        })
    }

    /// The directory this journal lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// How many fsyncs the journal issued since it was opened (for metrics and tests).
    pub fn sync_count(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    async fn submit(&self, frame: Vec<u8>, change: Change) -> Result<usize, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Write(Write {
            frame,
            change,
            reply,
        }))?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn send(&self, request: Request) -> Result<(), JournalError> {
        let tx = self.tx.as_ref().ok_or_else(writer_gone)?;
        tx.send(request).map_err(|_| writer_gone())
    }

    /// The record at `loc`; `None` when a compaction deleted its segment meanwhile.
    fn read(&self, loc: Loc) -> Result<Option<Record>, JournalError> {
        let (file, compacted) = {
            let segments = self.shared.segments.read();
            let oldest = segments.keys().next().copied();
            (
                segments.get(&loc.segment).cloned(),
                oldest.is_some_and(|oldest| loc.segment < oldest),
            )
        };
        match file {
            Some(file) => read_record(&self.shared.dir, &file, loc).map(Some),
            None if compacted => Ok(None),
            None => Err(not_open(&self.shared.dir, loc)),
        }
    }

    /// Reads an entry back from disk and puts its current state and acks on it; `None` when a
    /// compaction dropped it since `meta` was taken from the index.
    ///
    /// `ended` keeps the last transaction record read for a state, for the next entries of a
    /// read: the entries of one transaction all take their state from its record, read once.
    fn load(
        &self,
        meta: &index::Meta,
        ended: &mut Option<(Loc, TransactionRecord)>,
    ) -> Result<Option<Entry>, JournalError> {
        let Some(record) = self.read(meta.append)? else {
            return Ok(None);
        };
        let Record::Append(entry) = record else {
            return Err(self.unexpected(meta.append));
        };
        let mut entry = *entry;
        let state_loc = match meta.state {
            StateAt::Pending | StateAt::InAppend { .. } => None,
            StateAt::Answered(loc) | StateAt::Committed(loc) | StateAt::Aborted(loc) => Some(loc),
        };
        if let Some(loc) = state_loc {
            // A state record lies in its append's segment or a later one, and compaction deletes
            // segments oldest first: if its segment went since the append was read, so did the
            // append's.
            if !ended.as_ref().is_some_and(|(at, _)| *at == loc) {
                let Some(record) = self.read(loc)? else {
                    return Ok(None);
                };
                match (meta.state, record) {
                    // Its state is taken from it below.
                    (_, Record::Transaction(t)) => *ended = Some((loc, t)),
                    (StateAt::Answered(_), Record::Response { response, .. }) => {
                        entry.state = EntryState::Answered(response);
                    }
                    (StateAt::Committed(_), Record::Commit { response, .. }) => {
                        entry.state = EntryState::Committed(response);
                    }
                    (StateAt::Aborted(_), Record::Abort { reason, .. }) => {
                        entry.state = EntryState::Aborted(reason);
                    }
                    _ => return Err(self.unexpected(loc)),
                }
            }
            if let Some((_, t)) = ended.as_ref().filter(|(at, _)| *at == loc) {
                entry.state = transaction_state(meta.state, entry.seq, t)
                    .ok_or_else(|| self.unexpected(loc))?;
            }
        }
        entry.acks = meta.acks.iter().map(|a| a.to_string()).collect();
        entry.dispatched = meta.dispatched.iter().map(|a| a.to_string()).collect();
        entry.undelivered = meta.undelivered.iter().map(|a| a.to_string()).collect();
        Ok(Some(entry))
    }

    fn unexpected(&self, loc: Loc) -> JournalError {
        JournalError::Corrupt {
            path: segment::path(&self.shared.dir, loc.segment)
                .display()
                .to_string(),
            detail: format!("at offset {}: not the record the index expects", loc.offset),
        }
    }
}

/// The state `record` gives entry `seq` when the index says it holds the entry's `state`.
fn transaction_state(state: StateAt, seq: Seq, record: &TransactionRecord) -> Option<EntryState> {
    match (state, &record.outcome) {
        // The last commit of the seq wins, as when they are applied in order.
        (StateAt::Committed(_), _) => record
            .commits
            .iter()
            .rev()
            .find(|(s, _)| *s == seq)
            .map(|(_, response)| EntryState::Committed(response.clone())),
        (StateAt::Aborted(_), TransactionOutcome::Aborted(reason)) => {
            Some(EntryState::Aborted(reason.clone()))
        }
        _ => None,
    }
}

/// The record at `loc` in `file`, the segment `loc` names: read with one `pread` and checked
/// against its CRC.
fn read_record(dir: &Path, file: &File, loc: Loc) -> Result<Record, JournalError> {
    let mut buf = vec![0; loc.len as usize];
    file.read_exact_at(&mut buf, loc.offset)?;
    let body = codec::frame_body(&buf).map_err(|e| corrupt_at(dir, loc, e.to_string()))?;
    codec::decode(body).map_err(|detail| corrupt_at(dir, loc, detail))
}

/// The pairs of the group of `order`, read back from its record in `file`.
fn read_id_pairs(
    dir: &Path,
    file: &File,
    order: u64,
    group: &IdGroup,
) -> Result<Vec<(String, String)>, JournalError> {
    match read_record(dir, file, group.loc)? {
        Record::Ids {
            order: o,
            backend,
            seq,
            pairs,
        } if o == order
            && seq == group.seq
            && *backend == *group.backend
            && pairs.len() == group.count =>
        {
            Ok(pairs)
        }
        _ => Err(corrupt_at(
            dir,
            group.loc,
            "not the record the index expects".into(),
        )),
    }
}

fn corrupt_at(dir: &Path, loc: Loc, detail: String) -> JournalError {
    JournalError::Corrupt {
        path: segment::path(dir, loc.segment).display().to_string(),
        detail: format!("at offset {}: {detail}", loc.offset),
    }
}

/// A record the index places in a segment that is not open (nor compacted away).
fn not_open(dir: &Path, loc: Loc) -> JournalError {
    corrupt_at(dir, loc, "segment is not open".into())
}

fn writer_gone() -> JournalError {
    JournalError::WriterStopped {
        detail: "the writer thread is gone".to_owned(),
    }
}

/// A record about an entry not in the index when it was replayed; valid only if a compaction
/// dropped that entry.
#[derive(Debug)]
struct Orphan {
    seq: Seq,
    path: PathBuf,
    offset: u64,
}

impl Drop for FileJournal {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit; the lock file is
        // released only after that.
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Takes the journal's lock file, or fails with [`JournalError::InUse`].
fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(JournalError::InUse {
            path: dir.display().to_string(),
        }),
        Err(e) => Err(io::Error::from(e).into()),
    }
}

/// Replays one segment into `index`; returns its valid length (after cutting a torn tail) and
/// its format version. Records about entries not in `index` are set aside in `orphans`: whether
/// they are damage is known once every segment was replayed.
fn recover_segment(
    path: &PathBuf,
    file: &File,
    number: u64,
    is_last: bool,
    index: &mut Index,
    orphans: &mut Vec<Orphan>,
) -> Result<(u64, u32), JournalError> {
    let buf = std::fs::read(path)?;
    let tail = segment::scan(&buf, is_last, |offset, len, record| {
        let loc = Loc {
            segment: number,
            offset,
            len,
        };
        let change = Change::of_record(record);
        // A transaction record is applied to the entries it names that are in the index; the
        // others are set aside like any record about a missing entry.
        for seq in change.named_seqs() {
            if !index.entries.contains_key(&seq) {
                orphans.push(Orphan {
                    seq,
                    path: path.clone(),
                    offset,
                });
            }
        }
        match change {
            Change::Append { .. } | Change::Transaction { .. } => {}
            Change::Compacted { first_segment, .. } if first_segment > number => {
                return Err(format!(
                    "compaction record drops segment {number}, which holds it"
                ));
            }
            _ => {
                if let Some(seq) = change.seq().filter(|s| !index.entries.contains_key(s)) {
                    orphans.push(Orphan {
                        seq,
                        path: path.clone(),
                        offset,
                    });
                    return Ok(());
                }
            }
        }
        index.apply(change, loc, true).map(drop)
    })
    .map_err(|damage| JournalError::Corrupt {
        path: path.display().to_string(),
        detail: format!("at offset {}: {}", damage.offset, damage.detail),
    })?;
    let version = segment::version(&buf).unwrap_or(segment::FORMAT_VERSION);
    match tail {
        Tail::Clean => Ok((buf.len() as u64, version)),
        Tail::TornHeader => {
            warn!(path = %path.display(), "journal segment header is torn; rewriting it");
            file.set_len(0)?;
            file.write_all_at(&segment::header(), 0)?;
            file.sync_all()?;
            Ok((segment::HEADER_LEN, segment::FORMAT_VERSION))
        }
        Tail::Torn { valid_len, reason } => {
            warn!(
                path = %path.display(),
                offset = valid_len,
                cut = buf.len() as u64 - valid_len,
                reason = %reason,
                "journal ends in a torn record (a crash during a write); cutting it away"
            );
            file.set_len(valid_len)?;
            file.sync_all()?;
            Ok((valid_len, version))
        }
    }
}

#[async_trait]
impl Journal for FileJournal {
    async fn append(&self, entry: Entry) -> Result<(), JournalError> {
        let frame = codec::encode_append(&entry);
        let change = Change::Append {
            seq: entry.seq,
            time: entry.time,
            key: entry.idempotency.map(|k| k.scoped),
            acks: entry.acks,
            state: StateAt::of_append(&entry.state),
            transaction: entry.transaction.is_some(),
        };
        self.submit(frame, change).await.map(drop)
    }

    async fn record_response(
        &self,
        seq: Seq,
        response: ResponseRecord,
    ) -> Result<(), JournalError> {
        let frame = codec::encode_response(seq, &response);
        self.submit(frame, Change::Response(seq)).await.map(drop)
    }

    async fn record_dispatch(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        let frame = codec::encode_dispatch(seq, backend);
        self.submit(frame, Change::Dispatch(seq, backend.to_owned()))
            .await
            .map(drop)
    }

    async fn record_undelivered(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        let frame = codec::encode_undelivered(seq, backend);
        self.submit(frame, Change::Undelivered(seq, backend.to_owned()))
            .await
            .map(drop)
    }

    async fn record_ack(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        let frame = codec::encode_ack(seq, backend);
        self.submit(frame, Change::Ack(seq, backend.to_owned()))
            .await
            .map(drop)
    }

    async fn commit(&self, seq: Seq, response: ResponseRecord) -> Result<(), JournalError> {
        let frame = codec::encode_commit(seq, &response);
        self.submit(frame, Change::Commit(seq)).await.map(drop)
    }

    async fn abort(&self, seq: Seq, reason: String) -> Result<(), JournalError> {
        let frame = codec::encode_abort(seq, &reason);
        self.submit(frame, Change::Abort(seq)).await.map(drop)
    }

    async fn end_transaction(&self, record: TransactionRecord) -> Result<(), JournalError> {
        let frame = codec::encode_transaction(&record);
        let change = Change::Transaction {
            id: record.id,
            time: record.time,
            aborted: matches!(record.outcome, TransactionOutcome::Aborted(_)),
            seqs: record.seqs,
            commits: record.commits.into_iter().map(|(seq, _)| seq).collect(),
        };
        self.submit(frame, change).await.map(drop)
    }

    async fn find_transaction(&self, id: &str) -> Result<Option<TransactionRecord>, JournalError> {
        let Some(ended) = self.shared.index.lock().transactions.get(id).copied() else {
            return Ok(None);
        };
        // A kept record's segment is never compacted away; `None` when the record expired and
        // its segment went since the index was asked.
        match self.read(ended.loc)? {
            Some(Record::Transaction(t)) if t.id == id => Ok(Some(t)),
            Some(_) => Err(self.unexpected(ended.loc)),
            None => Ok(None),
        }
    }

    async fn read_from(&self, from: Seq, limit: usize) -> Result<Vec<Entry>, JournalError> {
        // Stop at the first entry whose append is not yet durable: a reader (catch-up) must
        // never see a request that a crash could still take back.
        // The history starts at `first_seq`: an entry below it that shares a retained segment
        // with later ones is not part of it.
        let metas: Vec<index::Meta> = {
            let index = self.shared.index.lock();
            index
                .entries
                .range(from.max(index.first_seq())..)
                .take(limit)
                .take_while(|(_, m)| m.durable)
                .map(|(_, m)| m.clone())
                .collect()
        };
        let mut entries = Vec::with_capacity(metas.len());
        let mut ended = None;
        for meta in &metas {
            entries.extend(self.load(meta, &mut ended)?);
        }
        // A compaction meanwhile may have dropped some of them after others were read: keep
        // what is still part of the history, so that the result has no holes (nothing from
        // `first_seq` on is ever dropped).
        let first = self.first_seq();
        entries.retain(|e| e.seq >= first);
        Ok(entries)
    }

    async fn get(&self, seq: Seq) -> Result<Option<Entry>, JournalError> {
        let meta = self.shared.index.lock().durable(seq).cloned();
        Ok(meta
            .map(|m| self.load(&m, &mut None))
            .transpose()?
            .flatten())
    }

    fn last_seq(&self) -> Seq {
        self.shared.index.lock().last_seq
    }

    fn first_seq(&self) -> Seq {
        self.shared.index.lock().first_seq()
    }

    async fn compact(&self, through: Seq) -> Result<Compaction, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Compact { through, reply })?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn sync(&self) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Sync { reply })?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn find_key(&self, scoped: &str) -> Result<Option<Entry>, JournalError> {
        let meta = {
            let index = self.shared.index.lock();
            index
                .keys
                .get(scoped)
                .and_then(|seq| index.durable(*seq))
                .cloned()
        };
        Ok(meta
            .map(|m| self.load(&m, &mut None))
            .transpose()?
            .flatten())
    }

    async fn expire_keys(&self, before: SystemTime) -> Result<usize, JournalError> {
        let frame = codec::encode_expire_keys(before);
        self.submit(frame, Change::ExpireKeys(before)).await
    }

    async fn save_topology(&self, topology: &Topology) -> Result<(), JournalError> {
        let frame = codec::encode_topology(topology);
        self.submit(frame, Change::Topology(topology.clone()))
            .await
            .map(drop)
    }

    async fn load_topology(&self) -> Result<Option<Topology>, JournalError> {
        Ok(self.shared.index.lock().topology.clone())
    }

    async fn record_ids(
        &self,
        seq: Seq,
        backend: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<(), JournalError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let order = self.shared.index.lock().take_ids_order();
        let frame = codec::encode_ids(order, backend, seq, &pairs);
        let change = Change::Ids {
            order,
            backend: backend.to_owned(),
            seq,
            count: pairs.len(),
        };
        self.submit(frame, change).await.map(drop)
    }

    async fn forget_ids(&self, backend: &str, after: Seq) -> Result<(), JournalError> {
        let frame = codec::encode_forget_ids(backend, after);
        let change = Change::ForgetIds {
            backend: backend.to_owned(),
            after,
        };
        self.submit(frame, change).await.map(drop)
    }

    async fn load_ids(&self) -> Result<Vec<IdPairs>, JournalError> {
        // The groups and the files holding their records are taken together, so that the reads
        // below see the groups as they were then: a compaction meanwhile writes some of them
        // again and deletes their old segment, whose open file still reads.
        let groups: Vec<(u64, IdGroup, Option<Arc<File>>)> = {
            let index = self.shared.index.lock();
            let segments = self.shared.segments.read();
            index
                .ids
                .iter()
                .map(|(&order, g)| (order, g.clone(), segments.get(&g.loc.segment).cloned()))
                .collect()
        };
        let dir = &self.shared.dir;
        groups
            .into_iter()
            .map(|(order, g, file)| {
                let file = file.ok_or_else(|| not_open(dir, g.loc))?;
                Ok(IdPairs {
                    pairs: read_id_pairs(dir, &file, order, &g)?,
                    backend: g.backend.to_string(),
                    seq: g.seq,
                })
            })
            .collect()
    }
}

/// The record decoder, for the fuzz target (re-exported as `lockstep_journal::fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing {
    use super::codec;

    /// Reads the frame at the start of `bytes`: the decoded record (its `Debug` text) and the
    /// frame's length, or `None` if it is short, damaged or does not decode.
    pub fn decode_frame(bytes: &[u8]) -> Option<(String, usize)> {
        codec::read_frame(bytes)
            .ok()
            .map(|(record, len)| (format!("{record:?}"), len))
    }

    /// If a record decodes from the start of `bytes`, re-encodes it and checks that the encoding
    /// is exactly the frame it was read from (or that frame is the one form older builds wrote
    /// the record in) and that it reads back as the same record. `Ok` when nothing decodes or the
    /// round trip holds; `Err` describes the mismatch.
    pub fn roundtrip(bytes: &[u8]) -> Result<(), String> {
        let Ok((record, len)) = codec::read_frame(bytes) else {
            return Ok(());
        };
        let frame = codec::encode(&record);
        let legacy = codec::legacy_frame(&record).is_some_and(|l| l == bytes[..len]);
        if frame != bytes[..len] && !legacy {
            return Err(format!(
                "{record:?} was read from {:?} but encodes as {frame:?}",
                &bytes[..len]
            ));
        }
        match codec::read_frame(&frame) {
            Ok((again, again_len)) if again == record && again_len == frame.len() => Ok(()),
            other => Err(format!("{record:?} re-encoded reads back as {other:?}")),
        }
    }

    /// `body` in a frame with its correct length and CRC32, so that a fuzzer reaches the body
    /// decoder instead of stopping at the checksum. `None` for an empty or oversized body.
    pub fn frame(body: &[u8]) -> Option<Vec<u8>> {
        if body.is_empty() || body.len() > codec::MAX_BODY {
            return None;
        }
        let mut frame = Vec::with_capacity(codec::FRAME_HEADER + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        frame.extend_from_slice(body);
        Some(frame)
    }
}

#[cfg(test)]
mod tests;
