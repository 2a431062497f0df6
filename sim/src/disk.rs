//! A simulated disk for the gateway's journal: writes land in a page cache at once and reach
//! stable storage only with an fsync, and a power loss takes back everything not yet synced.
//!
//! [`SimDisk`] implements [`Journal`] the way the file journal does under `fsync = "always"`
//! (see `journal/src/file/writer.rs`), over two [`MemoryJournal`]s:
//!
//! - every accepted mutating call is applied at once to the *written* journal (the page cache),
//!   which also decides whether the call is accepted (a duplicate seq, an unknown seq, ...: a
//!   refused call writes nothing), and appended to the log of written operations;
//! - a call that the file journal answers only after an fsync (`append`, `record_dispatch`,
//!   `commit`, `abort`, `end_transaction`, `compact`, `expire_keys`, `save_topology`,
//!   `forget_ids`) then waits
//!   for one: the disk runs one fsync at a time, each taking a seeded latency of simulated time;
//!   a call joins the fsync that has not started yet, or schedules the next one after the one
//!   running (group commit). When its fsync ends, the synced watermark moves past its operation
//!   (an fsync covers everything written before it: a prefix of the log), and only then does the
//!   call return;
//! - hints (`record_response`, `record_ack`, `record_undelivered`, `record_ids`) return at once,
//!   unsynced, as in the file journal; a later fsync covers them;
//! - [`SimDisk::power_loss`] drops every operation after the watermark and rebuilds both journals
//!   by replaying the synced prefix into fresh [`MemoryJournal`]s. A call still waiting for its
//!   fsync never returns (its host is gone);
//! - [`SimDisk::arm_power_cut`] makes the fsync of one of the next few writes hang, so that the
//!   simulation can crash the gateway while a write is in flight (the only case in which a disk
//!   synced before every answer loses anything).
//!
//! **What readers see.** Like the file journal (whose readers stop at the first entry whose
//! append is not durable, because a catch-up must never send a request a crash could take back),
//! reads (`get`, `read_from`, `find_key`, `find_transaction`, `load_topology`, `load_ids`,
//! `first_seq`) are answered from the *durable* journal: the synced prefix, plus the hints at once
//! (the file journal applies hints to its index when they are written). So while a caller sleeps
//! for its fsync, nobody reads its record yet. One exception, also the file journal's: a
//! `forget_ids` is applied when written, though its caller waits for the fsync, so that it never
//! forgets pairs recorded after it (hints written while it waits). `last_seq` comes from the written journal, as the file
//! journal's index counts an append when it is written: a seq is never handed out twice by one
//! process, and after a power loss it falls back to the synced history.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use lockstep_journal::{
    Compaction, Entry, IdPairs, Journal, JournalError, MemoryJournal, ResponseRecord, Seq,
    Topology, TransactionRecord,
};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::rng::SplitMix64;

/// The shortest and longest fsync, in microseconds, of a disk that is not busy.
const FSYNC_MICROS: (u64, u64) = (200, 3_000);
/// One fsync in `SLOW_FSYNC_ONE_IN` takes this long instead (in microseconds): a disk busy with
/// other writes, a flash controller collecting garbage. Simulated time moves in ticks of 10 ms
/// and messages arrive at the start of a tick, so fast fsyncs alone nearly always end within
/// the tick that started them, before a crash between ticks could catch them; slow ones span
/// ticks, as a real fsync spans the moment of a power cut.
const SLOW_FSYNC_MICROS: (u64, u64) = (3_000, 40_000);
const SLOW_FSYNC_ONE_IN: u64 = 8;
/// How long the fsync of an armed power cut takes: longer than any run.
const HUNG_FSYNC: Duration = Duration::from_secs(24 * 3600);
/// An armed power cut lets through up to this many writes that wait for an fsync (a seeded
/// number) before the one it catches, so that what it catches varies (an append, a dispatch
/// mark, a commit, ...).
const CUT_SKIPS: u64 = 4;

/// Mixed into the run's seed for the fsync latencies, so that they come from a stream of their
/// own: the fault schedule and the workload draw exactly what they drew before the disk existed.
const FSYNC_STREAM: u64 = 0xD15C_F5EC_0000_0001;

/// One mutating journal call and its arguments, as written to the disk.
#[derive(Debug, Clone)]
enum Op {
    Append(Box<Entry>),
    Response(Seq, ResponseRecord),
    Dispatch(Seq, String),
    Undelivered(Seq, String),
    Ack(Seq, String),
    Commit(Seq, ResponseRecord),
    Abort(Seq, String),
    EndTransaction(TransactionRecord),
    Compact(Seq),
    ExpireKeys(SystemTime),
    SaveTopology(Topology),
    /// Identifier pairs of a backend (the second field) learned from seq.
    Ids(Seq, String, Vec<(String, String)>),
    /// Forgets a backend's pairs learned after seq.
    ForgetIds(String, Seq),
}

impl Op {
    /// Whether the file journal under `fsync = "always"` answers this call without an fsync.
    /// (`record_dispatch` is a hint in the trait's words, but under `always` the file journal
    /// syncs it before the request leaves, so that a power loss never hides a dispatch.)
    fn is_hint(&self) -> bool {
        matches!(
            self,
            Op::Response(..) | Op::Ack(..) | Op::Undelivered(..) | Op::Ids(..)
        )
    }

    /// Whether readers see the call's effect once it is written, before its fsync: hints, and
    /// `forget_ids`, which the file journal applies in file order with the hints around it.
    fn visible_when_written(&self) -> bool {
        self.is_hint() || matches!(self, Op::ForgetIds(..))
    }

    /// The call's kind, for counting lost operations.
    fn kind(&self) -> &'static str {
        match self {
            Op::Append(_) => "append",
            Op::Response(..) => "response",
            Op::Dispatch(..) => "dispatch",
            Op::Undelivered(..) => "undelivered",
            Op::Ack(..) => "ack",
            Op::Commit(..) => "commit",
            Op::Abort(..) => "abort",
            Op::EndTransaction(_) => "end_transaction",
            Op::Compact(_) => "compact",
            Op::ExpireKeys(_) => "expire_keys",
            Op::SaveTopology(_) => "topology",
            Op::Ids(..) => "ids",
            Op::ForgetIds(..) => "forget_ids",
        }
    }

    /// A short description for the run's trace.
    fn describe(&self) -> String {
        match self {
            Op::Append(e) => format!("append {}", e.seq),
            Op::Response(seq, r) => format!("response {seq} ({})", r.status),
            Op::Dispatch(seq, b) => format!("dispatch {seq} to {b}"),
            Op::Undelivered(seq, b) => format!("undelivered {seq} to {b}"),
            Op::Ack(seq, b) => format!("ack {seq} from {b}"),
            Op::Commit(seq, _) => format!("commit {seq}"),
            Op::Abort(seq, _) => format!("abort {seq}"),
            Op::EndTransaction(t) => format!("end transaction {}", t.id),
            Op::Compact(through) => format!("compact through {through}"),
            Op::ExpireKeys(_) => "expire keys".to_owned(),
            Op::SaveTopology(t) => format!("topology epoch {}", t.epoch),
            Op::Ids(seq, b, pairs) => format!("{} ids of {seq} from {b}", pairs.len()),
            Op::ForgetIds(b, after) => format!("forget ids of {b} after {after}"),
        }
    }

    /// Applies the call to `journal`.
    async fn apply(&self, journal: &MemoryJournal) -> Result<Applied, JournalError> {
        let done = |()| Applied::Done;
        match self {
            Op::Append(entry) => journal.append((**entry).clone()).await.map(done),
            Op::Response(seq, r) => journal.record_response(*seq, r.clone()).await.map(done),
            Op::Dispatch(seq, b) => journal.record_dispatch(*seq, b).await.map(done),
            Op::Undelivered(seq, b) => journal.record_undelivered(*seq, b).await.map(done),
            Op::Ack(seq, b) => journal.record_ack(*seq, b).await.map(done),
            Op::Commit(seq, r) => journal.commit(*seq, r.clone()).await.map(done),
            Op::Abort(seq, reason) => journal.abort(*seq, reason.clone()).await.map(done),
            Op::EndTransaction(t) => journal.end_transaction(t.clone()).await.map(done),
            Op::Compact(through) => journal.compact(*through).await.map(Applied::Compacted),
            Op::ExpireKeys(before) => journal.expire_keys(*before).await.map(Applied::Expired),
            Op::SaveTopology(t) => journal.save_topology(t).await.map(done),
            Op::Ids(seq, b, pairs) => journal.record_ids(*seq, b, pairs.clone()).await.map(done),
            Op::ForgetIds(b, after) => journal.forget_ids(b, *after).await.map(done),
        }
    }

    /// [`Op::apply`] now: a [`MemoryJournal`] never waits.
    fn apply_now(&self, journal: &MemoryJournal) -> Result<Applied, JournalError> {
        ready(self.apply(journal))
    }
}

/// What a call returns besides success.
#[derive(Debug)]
enum Applied {
    Done,
    Compacted(Compaction),
    Expired(usize),
}

/// An operation in the log, and whether it was applied to the durable journal before the
/// watermark reached it (a hint or a `forget_ids`, visible at once).
#[derive(Debug)]
struct Written {
    op: Op,
    early: bool,
}

/// The fsync scheduled last: it runs (or will run) from `start` to `end`.
#[derive(Debug, Clone, Copy)]
struct Fsync {
    start: Instant,
    end: Instant,
}

#[derive(Debug)]
struct State {
    /// Every operation written since the disk was created, in order; after a power loss only
    /// the synced ones are left.
    written: Vec<Written>,
    /// How many operations of `written` are on stable storage (a prefix).
    synced: usize,
    /// All of `written` applied: the page cache. Decides whether a call is accepted.
    page: MemoryJournal,
    /// `written[..synced]` applied in order, plus the hints written after it: what readers see.
    durable: MemoryJournal,
    /// Counts power losses: a caller that wakes after one never returns.
    generation: u64,
    fsync: Option<Fsync>,
    /// Set by [`SimDisk::arm_power_cut`]: how many more writes that wait for an fsync go through
    /// before one whose fsync never ends.
    cut_after: Option<u64>,
    latency: SplitMix64,
    /// Operations power losses took back over the disk's life, by kind.
    lost: BTreeMap<&'static str, usize>,
}

impl State {
    /// When the fsync that covers a write made now ends: the fsync scheduled last if it has not
    /// started yet (it will take this write along), else a new one after it.
    fn schedule_fsync(&mut self, now: Instant) -> Instant {
        match self.cut_after {
            Some(0) => {
                // The power cut armed: this fsync (and every one queued behind it) hangs until
                // the power loss.
                self.cut_after = None;
                let end = now + HUNG_FSYNC;
                self.fsync = Some(Fsync { start: now, end });
                return end;
            }
            Some(n) => self.cut_after = Some(n - 1),
            None => {}
        }
        match self.fsync {
            Some(f) if f.start >= now => f.end,
            last => {
                let start = last.map_or(now, |f| f.end.max(now));
                let (low, high) = if self.latency.below(SLOW_FSYNC_ONE_IN) == 0 {
                    SLOW_FSYNC_MICROS
                } else {
                    FSYNC_MICROS
                };
                let micros = low + self.latency.below(high - low + 1);
                let end = start + Duration::from_micros(micros);
                self.fsync = Some(Fsync { start, end });
                end
            }
        }
    }

    /// Moves the synced watermark to at least `to`, applying what it passes to the durable
    /// journal in log order.
    fn sync_through(&mut self, to: usize) {
        while self.synced < to {
            let written = &self.written[self.synced];
            if !written.early {
                // The page cache accepted this operation in the state the durable journal is in
                // now (the same prefix; hints applied early do not change what is accepted).
                if let Err(e) = written.op.apply_now(&self.durable) {
                    panic!(
                        "the simulated disk's synced history refused {:?}: {e}",
                        written.op
                    );
                }
            }
            self.synced += 1;
        }
    }
}

/// A [`Journal`] on a simulated disk with a page cache: see the module documentation.
#[derive(Debug)]
pub struct SimDisk {
    state: Mutex<State>,
}

/// What one [`SimDisk::power_loss`] took back: the unsynced operations, described, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerLoss {
    pub lost: Vec<String>,
}

impl SimDisk {
    /// An empty disk whose fsync latencies are drawn from `seed` (the run's seed: the stream is
    /// derived from it and separate from the run's other choices).
    pub fn new(seed: u64) -> Self {
        SimDisk {
            state: Mutex::new(State {
                written: Vec::new(),
                synced: 0,
                page: MemoryJournal::new(),
                durable: MemoryJournal::new(),
                generation: 0,
                fsync: None,
                cut_after: None,
                latency: SplitMix64::new(seed ^ FSYNC_STREAM),
                lost: BTreeMap::new(),
            }),
        }
    }

    /// The power goes out: every operation not yet synced is lost, the journal restarts from
    /// the synced history, and the calls still waiting for an fsync never return. Call it when
    /// the host using the disk crashes (its tasks are gone by then).
    pub fn power_loss(&self) -> PowerLoss {
        let mut s = self.state.lock();
        let synced = s.synced;
        let lost: Vec<String> = s.written[synced..]
            .iter()
            .map(|w| w.op.describe())
            .collect();
        for kind in s.written[synced..]
            .iter()
            .map(|w| w.op.kind())
            .collect::<Vec<_>>()
        {
            *s.lost.entry(kind).or_default() += 1;
        }
        s.written.truncate(synced);
        let (page, durable) = (MemoryJournal::new(), MemoryJournal::new());
        for written in &mut s.written {
            written.early = false;
            for journal in [&page, &durable] {
                if let Err(e) = written.op.apply_now(journal) {
                    panic!("replaying the simulated disk refused {:?}: {e}", written.op);
                }
            }
        }
        s.page = page;
        s.durable = durable;
        s.generation += 1;
        s.fsync = None;
        s.cut_after = None;
        PowerLoss { lost }
    }

    /// Arms a power cut for the gateway crash the simulation is about to inject: one of the next
    /// few writes that wait for an fsync (how many it lets through first is drawn from the
    /// disk's seeded stream) gets an fsync that never ends, and so does every write after it.
    /// The simulation crashes the host and calls [`SimDisk::power_loss`] as soon as it sees a
    /// write unsynced ([`SimDisk::watermarks`]); until then (at most one tick of simulated time)
    /// the gateway runs on but no write of its journal completes, as if the power went at that
    /// write. Arming an armed disk changes nothing; a power loss disarms it.
    pub fn arm_power_cut(&self) {
        let mut s = self.state.lock();
        if s.cut_after.is_none() {
            s.cut_after = Some(s.latency.below(CUT_SKIPS + 1));
        }
    }

    /// The operations power losses took back so far, by kind (`append`, `dispatch`, ...).
    pub fn lost(&self) -> BTreeMap<&'static str, usize> {
        self.state.lock().lost.clone()
    }

    /// How many operations are written, and how many of them are synced (a power loss now would
    /// take back the difference).
    pub fn watermarks(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.written.len(), s.synced)
    }

    /// Writes `op` (when the page cache accepts it) and, unless it is a hint, waits for the
    /// fsync that covers it.
    async fn write(&self, op: Op) -> Result<Applied, JournalError> {
        let (applied, waiting) = {
            let mut s = self.state.lock();
            let applied = op.apply_now(&s.page)?;
            let index = s.written.len();
            // Visible at once when its entry is; else when the watermark reaches it.
            let early = op.visible_when_written() && op.apply_now(&s.durable).is_ok();
            if op.is_hint() {
                s.written.push(Written { op, early });
                return Ok(applied);
            }
            s.written.push(Written { op, early });
            let end = s.schedule_fsync(Instant::now());
            (applied, (s.generation, index, end))
        };
        let (generation, index, end) = waiting;
        tokio::time::sleep_until(end).await;
        {
            let mut s = self.state.lock();
            if s.generation == generation {
                s.sync_through(index + 1);
                return Ok(applied);
            }
        }
        // The power went out while this write waited for its fsync: no answer, ever.
        std::future::pending().await
    }

    async fn write_done(&self, op: Op) -> Result<(), JournalError> {
        self.write(op).await.map(drop)
    }
}

#[async_trait]
impl Journal for SimDisk {
    async fn append(&self, entry: Entry) -> Result<(), JournalError> {
        self.write_done(Op::Append(Box::new(entry))).await
    }

    async fn record_response(
        &self,
        seq: Seq,
        response: ResponseRecord,
    ) -> Result<(), JournalError> {
        self.write_done(Op::Response(seq, response)).await
    }

    async fn record_dispatch(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        self.write_done(Op::Dispatch(seq, backend.to_owned())).await
    }

    async fn record_undelivered(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        self.write_done(Op::Undelivered(seq, backend.to_owned()))
            .await
    }

    async fn record_ack(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        self.write_done(Op::Ack(seq, backend.to_owned())).await
    }

    async fn commit(&self, seq: Seq, response: ResponseRecord) -> Result<(), JournalError> {
        self.write_done(Op::Commit(seq, response)).await
    }

    async fn abort(&self, seq: Seq, reason: String) -> Result<(), JournalError> {
        self.write_done(Op::Abort(seq, reason)).await
    }

    async fn end_transaction(&self, record: TransactionRecord) -> Result<(), JournalError> {
        self.write_done(Op::EndTransaction(record)).await
    }

    async fn read_from(&self, from: Seq, limit: usize) -> Result<Vec<Entry>, JournalError> {
        let s = self.state.lock();
        ready(s.durable.read_from(from, limit))
    }

    async fn get(&self, seq: Seq) -> Result<Option<Entry>, JournalError> {
        let s = self.state.lock();
        ready(s.durable.get(seq))
    }

    fn last_seq(&self) -> Seq {
        self.state.lock().page.last_seq()
    }

    fn first_seq(&self) -> Seq {
        self.state.lock().durable.first_seq()
    }

    async fn compact(&self, through: Seq) -> Result<Compaction, JournalError> {
        match self.write(Op::Compact(through)).await? {
            Applied::Compacted(compaction) => Ok(compaction),
            other => unreachable!("compact applied as {other:?}"),
        }
    }

    async fn find_key(&self, scoped: &str) -> Result<Option<Entry>, JournalError> {
        let s = self.state.lock();
        ready(s.durable.find_key(scoped))
    }

    async fn expire_keys(&self, before: SystemTime) -> Result<usize, JournalError> {
        match self.write(Op::ExpireKeys(before)).await? {
            Applied::Expired(n) => Ok(n),
            other => unreachable!("expire_keys applied as {other:?}"),
        }
    }

    async fn find_transaction(&self, id: &str) -> Result<Option<TransactionRecord>, JournalError> {
        let s = self.state.lock();
        ready(s.durable.find_transaction(id))
    }

    async fn save_topology(&self, topology: &Topology) -> Result<(), JournalError> {
        self.write_done(Op::SaveTopology(topology.clone())).await
    }

    async fn load_topology(&self) -> Result<Option<Topology>, JournalError> {
        let s = self.state.lock();
        ready(s.durable.load_topology())
    }

    async fn record_ids(
        &self,
        seq: Seq,
        backend: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<(), JournalError> {
        // Nothing is written for no pairs, as in the other journals.
        if pairs.is_empty() {
            return Ok(());
        }
        self.write_done(Op::Ids(seq, backend.to_owned(), pairs))
            .await
    }

    async fn forget_ids(&self, backend: &str, after: Seq) -> Result<(), JournalError> {
        self.write_done(Op::ForgetIds(backend.to_owned(), after))
            .await
    }

    async fn load_ids(&self) -> Result<Vec<IdPairs>, JournalError> {
        let s = self.state.lock();
        ready(s.durable.load_ids())
    }
}

/// The output of a future that is ready at its first poll (a [`MemoryJournal`] call).
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("a MemoryJournal call never waits"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_journal::{
        BackendRecord, EntryState, IdempotencyKey, RequestRecord, TransactionOutcome,
    };
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    fn entry(seq: Seq, key: Option<&str>) -> Entry {
        let request = RequestRecord {
            method: "POST".into(),
            uri: format!("/accounts/{seq}/deposit"),
            headers: vec![],
            body: bytes::Bytes::from_static(b"{}"),
        };
        let time = UNIX_EPOCH + Duration::from_secs(seq);
        Entry::new(seq, String::new(), time, request).with_idempotency(key.map(|k| {
            IdempotencyKey {
                scoped: k.to_owned(),
                fingerprint: format!("fp-{k}"),
            }
        }))
    }

    fn response(status: u16) -> ResponseRecord {
        ResponseRecord {
            status,
            headers: vec![],
            body: bytes::Bytes::from_static(b"ok"),
        }
    }

    fn topology(epoch: u64) -> Topology {
        Topology {
            epoch,
            primary: "a".into(),
            backends: vec![BackendRecord {
                name: "a".into(),
                url: "http://a".into(),
                implementation: "memory".into(),
                state: "in-sync".into(),
                acked_seq: 2,
            }],
        }
    }

    /// Starts `append(seq)` in a task and lets it run until it waits for its fsync.
    async fn append_unsynced(disk: &Arc<SimDisk>, seq: Seq) -> tokio::task::JoinHandle<()> {
        let d = disk.clone();
        let task = tokio::spawn(async move {
            d.append(entry(seq, Some(&format!("k{seq}"))))
                .await
                .unwrap();
        });
        tokio::task::yield_now().await;
        let (written, synced) = disk.watermarks();
        assert!(written > synced, "the append waits for its fsync");
        task
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsynced_append_is_lost_and_never_answered() {
        let disk = Arc::new(SimDisk::new(7));
        let task = append_unsynced(&disk, 1).await;
        // The page cache counts it, readers do not see it yet.
        assert_eq!(disk.last_seq(), 1);
        assert_eq!(disk.get(1).await.unwrap(), None);
        assert_eq!(disk.find_key("k1").await.unwrap(), None);

        let loss = disk.power_loss();
        assert_eq!(loss.lost, vec!["append 1".to_owned()]);
        assert_eq!(disk.lost(), BTreeMap::from([("append", 1)]));
        assert_eq!(disk.last_seq(), 0);
        assert_eq!(disk.get(1).await.unwrap(), None);
        assert_eq!(disk.watermarks(), (0, 0));
        // Long after its fsync would have ended, the caller still has no answer.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!task.is_finished());
        // The seq can be used again: nothing of it reached the disk.
        disk.append(entry(1, Some("other"))).await.unwrap();
        assert_eq!(
            disk.find_key("other").await.unwrap().map(|e| e.seq),
            Some(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_synced_append_survives_and_its_call_waited_for_the_fsync() {
        let disk = Arc::new(SimDisk::new(7));
        let before = Instant::now();
        disk.append(entry(1, Some("k1"))).await.unwrap();
        let waited = before.elapsed();
        assert!(
            (Duration::from_micros(FSYNC_MICROS.0)..=Duration::from_micros(SLOW_FSYNC_MICROS.1))
                .contains(&waited),
            "waited {waited:?}"
        );
        assert_eq!(disk.watermarks(), (1, 1));
        let _pending = append_unsynced(&disk, 2).await;

        let loss = disk.power_loss();
        assert_eq!(loss.lost, vec!["append 2".to_owned()]);
        assert_eq!(disk.last_seq(), 1);
        assert_eq!(disk.get(1).await.unwrap().map(|e| e.seq), Some(1));
        assert_eq!(disk.find_key("k1").await.unwrap().map(|e| e.seq), Some(1));
        assert_eq!(disk.find_key("k2").await.unwrap(), None);
        assert_eq!(
            disk.append(entry(1, None)).await.unwrap_err().to_string(),
            JournalError::DuplicateSeq { seq: 1 }.to_string()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hints_are_answered_at_once_and_kept_only_once_a_later_fsync_covers_them() {
        let disk = SimDisk::new(3);
        disk.append(entry(1, None)).await.unwrap();
        let before = Instant::now();
        disk.record_response(1, response(200)).await.unwrap();
        disk.record_ack(1, "b").await.unwrap();
        assert_eq!(before.elapsed(), Duration::ZERO, "hints do not wait");
        let seen = disk.get(1).await.unwrap().unwrap();
        assert_eq!(seen.acks, vec!["b".to_owned()]);
        assert_eq!(seen.state, EntryState::Answered(response(200)));

        // Nothing synced them: a power loss takes them back.
        let loss = disk.power_loss();
        assert_eq!(loss.lost, vec!["response 1 (200)", "ack 1 from b"]);
        let after = disk.get(1).await.unwrap().unwrap();
        assert!(after.acks.is_empty());
        assert_eq!(after.state, EntryState::Pending);

        // A hint followed by a synced record: the fsync covers both (a prefix).
        disk.record_ack(1, "c").await.unwrap();
        disk.commit(1, response(200)).await.unwrap();
        assert!(disk.power_loss().lost.is_empty());
        let kept = disk.get(1).await.unwrap().unwrap();
        assert_eq!(kept.acks, vec!["c".to_owned()]);
        assert_eq!(kept.state, EntryState::Committed(response(200)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dispatch_mark_waits_for_its_fsync_and_is_lost_without_it() {
        let disk = Arc::new(SimDisk::new(11));
        disk.append(entry(1, None)).await.unwrap();
        let d = disk.clone();
        let task = tokio::spawn(async move { d.record_dispatch(1, "b").await.unwrap() });
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        assert!(disk.get(1).await.unwrap().unwrap().dispatched.is_empty());
        assert_eq!(disk.power_loss().lost, vec!["dispatch 1 to b"]);
        assert!(disk.get(1).await.unwrap().unwrap().dispatched.is_empty());
    }

    fn ids(name: &str) -> Vec<(String, String)> {
        vec![(format!("c-{name}"), format!("l-{name}"))]
    }

    #[tokio::test(start_paused = true)]
    async fn id_pairs_are_kept_by_the_commit_after_them_and_forgetting_waits_for_its_fsync() {
        let disk = Arc::new(SimDisk::new(17));
        disk.append(entry(1, None)).await.unwrap();
        disk.append(entry(2, None)).await.unwrap();
        let before = Instant::now();
        disk.record_ids(1, "b", ids("1")).await.unwrap();
        assert_eq!(before.elapsed(), Duration::ZERO, "a hint does not wait");
        assert_eq!(disk.load_ids().await.unwrap().len(), 1);
        // Nothing synced them: a power loss takes them back.
        assert_eq!(disk.power_loss().lost, vec!["1 ids of 1 from b"]);
        assert!(disk.load_ids().await.unwrap().is_empty());

        // Recorded before the commit: its fsync keeps them.
        disk.record_ids(1, "b", ids("1")).await.unwrap();
        disk.record_ids(2, "b", ids("2")).await.unwrap();
        disk.record_ids(2, "c", ids("2")).await.unwrap();
        disk.commit(1, response(200)).await.unwrap();
        assert!(disk.power_loss().lost.is_empty());
        let kept = disk.load_ids().await.unwrap();
        assert_eq!(
            kept.iter()
                .map(|g| (g.backend.as_str(), g.seq))
                .collect::<Vec<_>>(),
            vec![("b", 1), ("b", 2), ("c", 2)]
        );

        // Forgetting is seen at once and answered after its fsync; pairs recorded meanwhile
        // stay, also once it is synced.
        let d = disk.clone();
        let forget = tokio::spawn(async move { d.forget_ids("b", 1).await.unwrap() });
        tokio::task::yield_now().await;
        assert!(!forget.is_finished());
        let forgotten = vec![kept[0].clone(), kept[2].clone()];
        assert_eq!(disk.load_ids().await.unwrap(), forgotten);
        disk.record_ids(2, "b", ids("2 again")).await.unwrap();
        forget.await.unwrap();
        let relearned = disk.load_ids().await.unwrap();
        assert_eq!(relearned.len(), 3);
        assert_eq!(relearned[..2], forgotten[..]);
        // The relearned pairs were not synced; the forgetting was.
        assert_eq!(disk.power_loss().lost, vec!["1 ids of 2 from b"]);
        assert_eq!(disk.load_ids().await.unwrap(), forgotten);

        // A forgetting the power loss takes back gives the pairs back.
        let d = disk.clone();
        let _forget = tokio::spawn(async move { d.forget_ids("c", 0).await });
        tokio::task::yield_now().await;
        assert_eq!(disk.load_ids().await.unwrap(), vec![kept[0].clone()]);
        assert_eq!(disk.power_loss().lost, vec!["forget ids of c after 0"]);
        assert_eq!(disk.load_ids().await.unwrap(), forgotten);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_writes_share_fsyncs_and_are_answered_in_order() {
        let disk = Arc::new(SimDisk::new(5));
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for seq in 1..=6 {
            let (d, done) = (disk.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                d.append(entry(seq, None)).await.unwrap();
                done.lock().push((seq, Instant::now()));
            }));
            if seq == 1 {
                // The first fsync is running (it takes at least 200 µs) when the others come.
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        let done = done.lock().clone();
        // The first append starts an fsync; the five written while it runs share the next one.
        assert_eq!(
            done.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6]
        );
        let times: Vec<Instant> = done.iter().map(|(_, at)| *at).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[0] < times[1]);
        assert!(times[1..].iter().all(|t| *t == times[1]));
        assert_eq!(disk.watermarks(), (6, 6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_call_writes_nothing() {
        let disk = SimDisk::new(1);
        disk.append(entry(1, None)).await.unwrap();
        assert!(disk.append(entry(1, None)).await.is_err());
        assert!(disk.record_ack(9, "b").await.is_err());
        assert!(disk.commit(9, response(200)).await.is_err());
        assert_eq!(disk.watermarks(), (1, 1));
    }

    /// Every read the gateway makes, for comparing a journal before and after a rebuild.
    async fn reads(disk: &SimDisk) -> String {
        format!(
            "{:?}",
            (
                disk.read_from(1, 100).await.unwrap(),
                disk.get(2).await.unwrap(),
                disk.find_key("k3").await.unwrap(),
                disk.find_key("k1").await.unwrap(),
                disk.find_transaction("t").await.unwrap(),
                disk.load_topology().await.unwrap(),
                disk.load_ids().await.unwrap(),
                disk.last_seq(),
                disk.first_seq(),
            )
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_rebuilt_journal_answers_reads_as_before_for_the_synced_history() {
        let disk = Arc::new(SimDisk::new(42));
        disk.save_topology(&topology(1)).await.unwrap();
        for seq in 1..=4 {
            disk.append(entry(seq, Some(&format!("k{seq}"))))
                .await
                .unwrap();
            disk.record_response(seq, response(200)).await.unwrap();
            disk.record_dispatch(seq, "b").await.unwrap();
            disk.record_ids(seq, "b", ids(&seq.to_string()))
                .await
                .unwrap();
            disk.record_ack(seq, "b").await.unwrap();
        }
        disk.commit(1, response(200)).await.unwrap();
        disk.commit(2, response(201)).await.unwrap();
        disk.abort(3, "primary unreachable".into()).await.unwrap();
        disk.end_transaction(TransactionRecord {
            id: "t".into(),
            outcome: TransactionOutcome::Committed,
            seqs: vec![4],
            commits: vec![(4, response(200))],
            time: UNIX_EPOCH + Duration::from_secs(4),
        })
        .await
        .unwrap();
        // Forget the keys of entries 1 and 2, then drop them from the history.
        let expired = disk
            .expire_keys(UNIX_EPOCH + Duration::from_secs(3))
            .await
            .unwrap();
        assert_eq!(expired, 2);
        let compaction = disk.compact(2).await.unwrap();
        assert_eq!(compaction.first_seq, 3);
        disk.save_topology(&topology(2)).await.unwrap();
        let synced = reads(&disk).await;

        // Unsynced writes on top change what the page cache holds, not what readers see...
        let _pending = append_unsynced(&disk, 5).await;
        let d = disk.clone();
        let _topology = tokio::spawn(async move { d.save_topology(&topology(3)).await });
        tokio::task::yield_now().await;
        assert_eq!(disk.last_seq(), 5);
        assert_eq!(disk.load_topology().await.unwrap(), Some(topology(2)));

        // ...and a power loss takes them back: the rebuilt journal answers as before.
        let loss = disk.power_loss();
        assert_eq!(loss.lost, vec!["append 5", "topology epoch 3"]);
        assert_eq!(reads(&disk).await, synced);
        assert_eq!(disk.last_seq(), 4);
        assert_eq!(disk.first_seq(), 3);
        assert_eq!(disk.get(1).await.unwrap(), None);
        assert_eq!(disk.find_key("k1").await.unwrap(), None);
        assert_eq!(disk.find_key("k4").await.unwrap().map(|e| e.seq), Some(4));
        assert_eq!(disk.load_topology().await.unwrap(), Some(topology(2)));
        assert!(disk.find_transaction("t").await.unwrap().is_some());
        // Compaction dropped entries 1 and 2, not the pairs learned from them.
        assert_eq!(disk.load_ids().await.unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_armed_power_cut_catches_one_of_the_next_writes() {
        let disk = Arc::new(SimDisk::new(13));
        disk.arm_power_cut();
        let d = disk.clone();
        let writer = tokio::spawn(async move {
            for seq in 1..=10 {
                d.append(entry(seq, None)).await.unwrap();
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!writer.is_finished(), "the caught write is never answered");
        let (written, synced) = disk.watermarks();
        assert_eq!(written, synced + 1);
        assert!(synced <= CUT_SKIPS as usize);
        let loss = disk.power_loss();
        assert_eq!(loss.lost, vec![format!("append {}", synced + 1)]);
        assert_eq!(disk.last_seq(), synced as Seq);
        // Disarmed by the power loss: writes complete again.
        disk.append(entry(synced as Seq + 1, None)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn fsync_latencies_replay_per_seed() {
        async fn latencies(seed: u64) -> Vec<Duration> {
            let disk = SimDisk::new(seed);
            let mut out = Vec::new();
            for seq in 1..=5 {
                let before = Instant::now();
                disk.append(entry(seq, None)).await.unwrap();
                out.push(before.elapsed());
            }
            out
        }
        assert_eq!(latencies(9).await, latencies(9).await);
        assert_ne!(latencies(9).await, latencies(10).await);
    }
}
