//! The file journal's single writer thread and its group commit.
//!
//! Callers encode their record, send it here and wait for the reply. The thread takes whatever
//! is queued, checks it against the index and writes it with one `pwrite`. Under `Always` it then
//! issues one `fdatasync` for the whole batch before replying (group commit). Under `Batch` it
//! replies once the batch is written and fsyncs in the background, at the latest one interval
//! after the first unsynced write: a power loss can take back at most that interval, a killed
//! process nothing. Topology records, and records forgetting identifier pairs, are always fsynced
//! before their reply.
//!
//! Compaction runs on this thread too, between batches: see [`Writer::compact`].

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use super::index::{Change, Index, Loc};
use super::{Durability, codec, segment};
use crate::{Compaction, JournalError, Seq};

/// State shared by the journal handle (readers) and the writer thread.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) index: Mutex<Index>,
    /// Segment number → file, for reading records back.
    pub(super) segments: RwLock<BTreeMap<u64, Arc<File>>>,
    pub(super) syncs: AtomicU64,
    /// Set once a write or fsync failed: the file's state is then unknown, so nothing more is
    /// written (retrying an fsync after a failure can report success for lost data).
    pub(super) failure: Mutex<Option<String>>,
}

/// The result a caller receives: for [`Change::ExpireKeys`], how many keys were forgotten.
pub(super) type Reply = oneshot::Sender<Result<usize, JournalError>>;

pub(super) enum Request {
    /// A record to write.
    Write(Write),
    /// Drop the history through `through` (see `Journal::compact`).
    Compact {
        through: Seq,
        reply: oneshot::Sender<Result<Compaction, JournalError>>,
    },
    /// Fsync what was written so far (see `Journal::sync`).
    Sync {
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
}

pub(super) struct Write {
    pub(super) frame: Vec<u8>,
    pub(super) change: Change,
    pub(super) reply: Reply,
}

/// A change written to the file whose caller waits for the next fsync.
struct Waiting {
    change: Change,
    loc: Loc,
    reply: Reply,
}

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: Receiver<Request>,
    pub(super) durability: Durability,
    pub(super) batch_interval: Duration,
    pub(super) segment_bytes: u64,
    /// The segment being appended to, its number, its length and its format version.
    pub(super) file: Arc<File>,
    pub(super) segment: u64,
    pub(super) len: u64,
    pub(super) version: u32,
    /// A request taken off the queue while gathering a batch of writes, that must wait until
    /// that batch is done.
    pub(super) held: Option<Request>,
}

impl Writer {
    /// Runs until every journal handle is gone.
    pub(super) fn run(mut self) {
        // Under `Batch`: when the oldest write not yet fsynced happened, and the thread that
        // fsyncs, so that writing (and answering) goes on while an fsync runs.
        let mut unsynced_since: Option<Instant> = None;
        let syncer =
            (self.durability == Durability::Batch).then(|| spawn_syncer(self.shared.clone()));
        loop {
            let first = match self.held.take() {
                Some(r) => r,
                None => match unsynced_since {
                    Some(since) => {
                        let deadline = since + self.batch_interval;
                        match self
                            .rx
                            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        {
                            Ok(r) => r,
                            Err(RecvTimeoutError::Timeout) => {
                                self.background_sync(syncer.as_ref());
                                unsynced_since = None;
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => {
                                // Closing: a last fsync, here, before the thread ends.
                                self.background_sync(None);
                                return;
                            }
                        }
                    }
                    None => match self.rx.recv() {
                        Ok(r) => r,
                        Err(_) => return,
                    },
                },
            };
            let first = match first {
                Request::Write(w) => w,
                Request::Compact { through, reply } => {
                    let _ = reply.send(self.compact(through));
                    continue;
                }
                Request::Sync { reply } => {
                    let _ = reply.send(self.sync().map_err(JournalError::from));
                    unsynced_since = None;
                    continue;
                }
            };
            let before = (self.segment, self.len);
            let mut waiting = Vec::new();
            self.write_queued(first, &mut waiting);
            crate::failpoint!("journal-before-fsync");
            if !waiting.is_empty() {
                let synced = self.sync();
                self.publish(waiting, synced);
                unsynced_since = None;
            } else if self.durability == Durability::Batch && (self.segment, self.len) != before {
                let since = *unsynced_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.batch_interval {
                    self.background_sync(syncer.as_ref());
                    unsynced_since = None;
                }
            }
        }
    }

    /// An fsync nobody waits for (`Batch`); a failure stops the journal like any other.
    fn background_sync(&self, syncer: Option<&std::sync::mpsc::Sender<Arc<File>>>) {
        if let Some(syncer) = syncer {
            if syncer.send(self.file.clone()).is_ok() {
                return;
            }
        }
        if let Err(e) = self.sync() {
            *self.shared.failure.lock() = Some(format!("fsync failed: {e}"));
        }
    }

    /// Writes `first` and everything queued behind it. Hints (and, under `Never`, everything)
    /// are applied and answered at once; the rest is added to `waiting`.
    fn write_queued(&mut self, first: Write, waiting: &mut Vec<Waiting>) {
        let mut batch = vec![first];
        while let Ok(next) = self.rx.try_recv() {
            match next {
                Request::Write(w) => batch.push(w),
                other => {
                    self.held = Some(other);
                    break;
                }
            }
        }
        let failure = self.shared.failure.lock().clone();
        if let Some(detail) = failure {
            for r in batch {
                let _ = r.reply.send(Err(JournalError::WriterStopped {
                    detail: detail.clone(),
                }));
            }
            return;
        }

        // Check every request against the index and the appends (and transaction ends) before it
        // in this batch.
        let mut accepted = Vec::with_capacity(batch.len());
        {
            let index = self.shared.index.lock();
            let mut appended = HashSet::new();
            let mut ended = HashSet::new();
            let known = |seq: &Seq, appended: &HashSet<Seq>| {
                index.entries.contains_key(seq) || appended.contains(seq)
            };
            for r in batch {
                let verdict = match (&r.change, r.change.seq()) {
                    (Change::Transaction { id, .. }, _) => {
                        if index.transactions.contains_key(id) || ended.contains(id) {
                            Err(JournalError::TransactionEnded { id: id.clone() })
                        } else if let Some(seq) =
                            r.change.named_seqs().find(|s| !known(s, &appended))
                        {
                            Err(JournalError::UnknownSeq { seq })
                        } else {
                            ended.insert(id.clone());
                            Ok(())
                        }
                    }
                    (Change::Append { .. }, Some(seq)) => {
                        if index.is_taken(seq) || !appended.insert(seq) {
                            Err(JournalError::DuplicateSeq { seq })
                        } else {
                            Ok(())
                        }
                    }
                    (_, Some(seq)) => {
                        if known(&seq, &appended) {
                            Ok(())
                        } else {
                            Err(JournalError::UnknownSeq { seq })
                        }
                    }
                    (_, None) => Ok(()),
                };
                match verdict {
                    Ok(()) => accepted.push(r),
                    Err(e) => {
                        let _ = r.reply.send(Err(e));
                    }
                }
            }
        }
        if accepted.is_empty() {
            return;
        }

        // A record only ever goes to a segment whose header announces a format that has it (see
        // `compact`).
        let since = accepted.iter().map(|r| r.change.format_since()).max();
        let size: u64 = accepted.iter().map(|r| r.frame.len() as u64).sum();
        let old_format = since.is_some_and(|since| since > self.version);
        if old_format || (self.len > segment::HEADER_LEN && self.len + size > self.segment_bytes) {
            if let Err(e) = self.rotate() {
                self.fail(
                    format!("starting a new segment failed: {e}"),
                    accepted,
                    waiting,
                );
                return;
            }
        }
        let mut buf = Vec::with_capacity(size as usize);
        let mut locs = Vec::with_capacity(accepted.len());
        for r in &accepted {
            locs.push(Loc {
                segment: self.segment,
                offset: self.len + buf.len() as u64,
                len: r.frame.len() as u32,
            });
            buf.extend_from_slice(&r.frame);
        }
        if let Err(e) = self.file.write_all_at(&buf, self.len) {
            self.fail(
                format!("writing to the journal failed: {e}"),
                accepted,
                waiting,
            );
            return;
        }
        self.len += size;

        let mut index = self.shared.index.lock();
        for (r, loc) in accepted.into_iter().zip(locs) {
            let needs_sync = match r.change {
                Change::Topology(_) | Change::ForgetIds { .. } => true,
                // Under `Always` a dispatch mark is on stable storage before the request leaves:
                // after a power loss, a request a backend may have applied is never taken for
                // one it never saw.
                Change::Dispatch(..) => self.durability == Durability::Always,
                ref c if c.is_hint() => false,
                _ => self.durability == Durability::Always,
            };
            if needs_sync {
                // The entry goes in now (hidden from readers) so that records about it in later
                // batches find it; its state changes wait for the fsync.
                if let Change::Append { .. } = r.change {
                    let _ = index.apply(r.change.clone(), loc, false);
                }
                // Forgetting applies in file order, before the hints written after it in this
                // batch: it must not forget pairs recorded after it (as a replay would not).
                if let Change::ForgetIds { .. } = r.change {
                    let _ = index.apply(r.change.clone(), loc, true);
                }
                waiting.push(Waiting {
                    change: r.change,
                    loc,
                    reply: r.reply,
                });
            } else {
                let result = index
                    .apply(r.change, loc, true)
                    .map_err(|detail| self.corrupt(detail));
                let _ = r.reply.send(result);
            }
        }
    }

    /// Applies the changes of `waiting` once their fsync returned, and answers their callers.
    fn publish(&self, waiting: Vec<Waiting>, synced: io::Result<()>) {
        if let Err(e) = synced {
            let detail = format!("fsync failed: {e}");
            *self.shared.failure.lock() = Some(detail.clone());
            for w in waiting {
                let _ = w.reply.send(Err(JournalError::WriterStopped {
                    detail: detail.clone(),
                }));
            }
            return;
        }
        let mut index = self.shared.index.lock();
        for w in waiting {
            let result = match w.change {
                Change::Append { seq, .. } => {
                    index.mark_durable(seq);
                    Ok(0)
                }
                // Applied when written.
                Change::ForgetIds { .. } => Ok(0),
                change => index
                    .apply(change, w.loc, true)
                    .map_err(|detail| self.corrupt(detail)),
            };
            let _ = w.reply.send(result);
        }
    }

    fn sync(&self) -> io::Result<()> {
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.file.sync_data()
    }

    /// Seals the current segment (fsynced whatever the durability mode, so that only the last
    /// segment can ever end torn) and starts the next one.
    fn rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        let number = self.segment + 1;
        let file = create_segment(&self.shared.dir, number)?;
        let file = Arc::new(file);
        self.shared.segments.write().insert(number, file.clone());
        self.file = file;
        self.segment = number;
        self.len = segment::HEADER_LEN;
        self.version = segment::FORMAT_VERSION;
        Ok(())
    }

    /// Drops the history through `through`: the sealed segments from the oldest on that hold
    /// only entries with `seq <= through` and no live idempotency key (see
    /// [`Index::plan_compaction`]).
    ///
    /// The order makes a crash at any point harmless. First the current topology and the
    /// identifier groups (those whose record lies in a segment about to go, read back from it)
    /// and a `Compacted` record are written to the active segment and fsynced: until then
    /// nothing changed (a copy of a group replays as the group itself, in its place), and a torn
    /// write is cut away on open. Then the index forgets the dropped entries (and points the
    /// groups at their copies), and the files are deleted oldest first, the directory fsynced
    /// after each. Files a crash left behind are replayed on open, dropped
    /// again by the `Compacted` record, and deleted.
    fn compact(&mut self, through: Seq) -> Result<Compaction, JournalError> {
        if let Some(detail) = self.shared.failure.lock().clone() {
            return Err(JournalError::WriterStopped { detail });
        }
        let plan = self
            .shared
            .index
            .lock()
            .plan_compaction(through, self.segment);
        if plan.segments.is_empty() {
            return Ok(Compaction {
                first_seq: plan.first_seq,
                ..Compaction::default()
            });
        }
        let mut dropped_bytes = 0;
        {
            let segments = self.shared.segments.read();
            for number in &plan.segments {
                if let Some(file) = segments.get(number) {
                    dropped_bytes += file.metadata()?.len();
                }
            }
        }

        let mut records = Vec::new();
        if let Some(topology) = plan.topology {
            records.push((
                codec::encode_topology(&topology),
                Change::Topology(topology),
            ));
        }
        // Each group keeps its order, so that it is listed where it was recorded, not after the
        // groups recorded since. Its pairs are read back from the segment about to go (nothing
        // was written yet: a failed read leaves the journal as it was).
        for (order, group) in plan.ids {
            let file = self.shared.segments.read().get(&group.loc.segment).cloned();
            let file = file.ok_or_else(|| super::not_open(&self.shared.dir, group.loc))?;
            let pairs = super::read_id_pairs(&self.shared.dir, &file, order, &group)?;
            records.push((
                codec::encode_ids(order, &group.backend, group.seq, &pairs),
                Change::Ids {
                    order,
                    backend: group.backend.to_string(),
                    seq: group.seq,
                    count: group.count,
                },
            ));
        }
        records.push((
            codec::encode_compacted(plan.first_seq, plan.first_segment),
            Change::Compacted {
                first_seq: plan.first_seq,
                first_segment: plan.first_segment,
            },
        ));
        let size: u64 = records.iter().map(|(f, _)| f.len() as u64).sum();
        // These records only ever go to a segment whose header announces a format that has them:
        // a build that does not know one refuses the segment by its version.
        let since = records.iter().map(|(_, c)| c.format_since()).max();
        let old_format = since.is_some_and(|since| since > self.version);
        if old_format || (self.len > segment::HEADER_LEN && self.len + size > self.segment_bytes) {
            if let Err(e) = self.rotate() {
                return Err(self.stop(format!("starting a new segment failed: {e}")));
            }
        }
        let mut buf = Vec::with_capacity(size as usize);
        let mut locs = Vec::with_capacity(records.len());
        for (frame, _) in &records {
            locs.push(Loc {
                segment: self.segment,
                offset: self.len + buf.len() as u64,
                len: frame.len() as u32,
            });
            buf.extend_from_slice(frame);
        }
        if let Err(e) = self.file.write_all_at(&buf, self.len) {
            return Err(self.stop(format!("writing to the journal failed: {e}")));
        }
        self.len += size;
        if let Err(e) = self.sync() {
            return Err(self.stop(format!("fsync failed: {e}")));
        }

        let mut dropped_entries = 0;
        {
            let mut index = self.shared.index.lock();
            for ((_, change), loc) in records.into_iter().zip(locs) {
                dropped_entries += index
                    .apply(change, loc, true)
                    .map_err(|detail| self.corrupt(detail))?;
            }
        }
        // Readers still holding one of these files finish their read; new readers no longer
        // find the entries.
        {
            let mut segments = self.shared.segments.write();
            for number in &plan.segments {
                segments.remove(number);
            }
        }
        for number in &plan.segments {
            std::fs::remove_file(segment::path(&self.shared.dir, *number))?;
            sync_dir(&self.shared.dir)?;
        }
        Ok(Compaction {
            first_seq: plan.first_seq,
            dropped_entries: dropped_entries as u64,
            dropped_bytes,
        })
    }

    /// Stops the journal after a failed write or fsync; the error for the caller.
    fn stop(&self, detail: String) -> JournalError {
        *self.shared.failure.lock() = Some(detail.clone());
        JournalError::WriterStopped { detail }
    }

    fn fail(&self, detail: String, batch: Vec<Write>, waiting: &mut Vec<Waiting>) {
        *self.shared.failure.lock() = Some(detail.clone());
        let error = || JournalError::WriterStopped {
            detail: detail.clone(),
        };
        for r in batch {
            let _ = r.reply.send(Err(error()));
        }
        for w in waiting.drain(..) {
            let _ = w.reply.send(Err(error()));
        }
    }

    fn corrupt(&self, detail: String) -> JournalError {
        JournalError::Corrupt {
            path: self.shared.dir.display().to_string(),
            detail,
        }
    }
}

/// The `Batch` fsync thread: fsyncs the segment it is handed, coalescing requests that queued
/// up meanwhile; a failure stops the journal like any other.
fn spawn_syncer(shared: Arc<Shared>) -> std::sync::mpsc::Sender<Arc<File>> {
    let (tx, rx) = std::sync::mpsc::channel::<Arc<File>>();
    let spawned = std::thread::Builder::new()
        .name("lockstep-journal-sync".into())
        .spawn(move || {
            while let Ok(mut file) = rx.recv() {
                while let Ok(newer) = rx.try_recv() {
                    file = newer;
                }
                shared.syncs.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = file.sync_data() {
                    *shared.failure.lock() = Some(format!("fsync failed: {e}"));
                }
            }
        });
    if spawned.is_err() {
        // No thread: the sender's receiver is gone, so `background_sync` fsyncs inline.
        return std::sync::mpsc::channel().0;
    }
    tx
}

/// Creates segment `number` with its header, fsyncs it and the directory.
pub(super) fn create_segment(dir: &std::path::Path, number: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(segment::path(dir, number))?;
    file.write_all_at(&segment::header(), 0)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

pub(super) fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
