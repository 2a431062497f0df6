//! Append throughput and latency of the journal's storage, for choosing it by measurement.
//!
//! ```text
//! cargo bench -p lockstep-journal --bench append --features bench-redb -- [--seconds 3]
//!     [--stores log,redb] [--modes always,batch] [--appenders 1,16,64] [--dir $DIR]
//! ```
//!
//! Each run: N tasks (tokio, 2 worker threads) append entries with 1 KiB request bodies as fast
//! as they can for the given time; prints appends/s, p50 and p99 latency, appends per fsync.
//! `log` is `FileJournal`; `redb` (with `--features bench-redb`) is the same group commit — one
//! writer thread, one write transaction with `Durability::Immediate` per batch — on redb.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use lockstep_journal::{
    Durability, Entry, FileJournal, FileJournalOptions, Header, Journal, RequestRecord, Seq,
};

fn entry(seq: Seq) -> Entry {
    let request = RequestRecord {
        method: "POST".into(),
        uri: format!("/accounts/{}/deposit", seq % 100),
        headers: vec![
            Header::new("content-type", "application/json"),
            Header::new("authorization", "Bearer 0123456789abcdef"),
        ],
        body: Bytes::from(vec![b'x'; 1024]),
    };
    Entry::new(
        seq,
        String::new(),
        UNIX_EPOCH + Duration::from_secs(seq),
        request,
    )
}

/// A store under test: appends one entry, durably per the mode.
trait Store: Send + Sync + 'static {
    fn append(&self, entry: Entry) -> impl Future<Output = ()> + Send;
    fn syncs(&self) -> u64;
}

impl Store for FileJournal {
    async fn append(&self, entry: Entry) {
        Journal::append(self, entry).await.unwrap();
    }
    fn syncs(&self) -> u64 {
        self.sync_count()
    }
}

#[cfg(feature = "bench-redb")]
mod redb_store {
    //! The contender: group commit on redb, one table seq → encoded entry.

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use lockstep_journal::Entry;
    use redb::{Database, TableDefinition};
    use tokio::sync::oneshot;

    const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");

    /// seq, encoded entry, where to answer once committed.
    type Req = (u64, Vec<u8>, oneshot::Sender<()>);

    pub(super) struct RedbStore {
        tx: Mutex<Sender<Req>>,
        syncs: Arc<AtomicU64>,
    }

    impl RedbStore {
        pub(super) fn open(path: &std::path::Path, batch_interval: Option<Duration>) -> Self {
            let db = Database::create(path).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let syncs = Arc::new(AtomicU64::new(0));
            let counter = syncs.clone();
            std::thread::spawn(move || run(db, rx, batch_interval, counter));
            RedbStore {
                tx: Mutex::new(tx),
                syncs,
            }
        }
    }

    fn run(db: Database, rx: Receiver<Req>, interval: Option<Duration>, syncs: Arc<AtomicU64>) {
        let mut last: Option<Instant> = None;
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            if let (Some(interval), Some(last)) = (interval, last) {
                let deadline = last + interval;
                while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                    match rx.recv_timeout(wait) {
                        Ok(r) => batch.push(r),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
            last = Some(Instant::now());
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(ENTRIES).unwrap();
                for (seq, bytes, _) in &batch {
                    table.insert(*seq, bytes.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
            syncs.fetch_add(1, Ordering::Relaxed);
            for (_, _, reply) in batch {
                let _ = reply.send(());
            }
        }
    }

    /// About what the journal stores for an append: the request line, headers and body.
    fn encode(entry: &Entry) -> Vec<u8> {
        let r = &entry.request;
        let mut out = Vec::with_capacity(r.body.len() + 128);
        out.extend_from_slice(&entry.seq.to_le_bytes());
        out.extend_from_slice(r.method.as_bytes());
        out.extend_from_slice(r.uri.as_bytes());
        for h in &r.headers {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(&h.value);
        }
        out.extend_from_slice(&r.body);
        out
    }

    impl super::Store for RedbStore {
        async fn append(&self, entry: Entry) {
            let (reply, rx) = oneshot::channel();
            let bytes = encode(&entry);
            self.tx
                .lock()
                .unwrap()
                .send((entry.seq, bytes, reply))
                .unwrap();
            rx.await.unwrap();
        }
        fn syncs(&self) -> u64 {
            self.syncs.load(Ordering::Relaxed)
        }
    }
}

struct Args {
    seconds: f64,
    stores: Vec<String>,
    modes: Vec<String>,
    appenders: Vec<usize>,
    dir: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 3.0,
        stores: vec!["log".into(), "redb".into()],
        modes: vec!["always".into(), "batch".into()],
        appenders: vec![1, 16, 64],
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let list = |v: Option<String>| -> Vec<String> {
            v.expect("a value").split(',').map(str::to_owned).collect()
        };
        match flag.as_str() {
            "--seconds" => args.seconds = it.next().expect("a value").parse().unwrap(),
            "--stores" => args.stores = list(it.next()),
            "--modes" => args.modes = list(it.next()),
            "--appenders" => {
                args.appenders = list(it.next()).iter().map(|n| n.parse().unwrap()).collect()
            }
            "--dir" => args.dir = Some(PathBuf::from(it.next().expect("a value"))),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

struct Outcome {
    appends: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
    syncs: u64,
}

async fn drive<S: Store>(store: Arc<S>, appenders: usize, seconds: f64) -> Outcome {
    let next = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let (store, next, stop) = (store.clone(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                store.append(entry(seq)).await;
                h.record(t.elapsed().as_micros().max(1) as u64).unwrap();
            }
            h
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for t in tasks {
        latency_us.add(t.await.unwrap()).unwrap();
    }
    Outcome {
        appends: latency_us.len(),
        elapsed: started.elapsed(),
        latency_us,
        syncs: store.syncs(),
    }
}

async fn run_one(store: &str, mode: &str, appenders: usize, seconds: f64, dir: &Path) -> Outcome {
    let durability = match mode {
        "always" => Durability::Always,
        "batch" => Durability::Batch,
        "never" => Durability::Never,
        other => panic!("unknown mode {other}"),
    };
    match store {
        "log" => {
            let j = FileJournal::open_with(dir, FileJournalOptions::new(durability)).unwrap();
            drive(Arc::new(j), appenders, seconds).await
        }
        #[cfg(feature = "bench-redb")]
        "redb" => {
            let interval = (durability == Durability::Batch)
                .then(|| FileJournalOptions::new(durability).batch_interval);
            let s = redb_store::RedbStore::open(&dir.join("journal.redb"), interval);
            drive(Arc::new(s), appenders, seconds).await
        }
        other => panic!("unknown store {other} (redb needs --features bench-redb)"),
    }
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("store mode   appenders  appends/s   p50_us   p99_us  appends/fsync");
    for store in &args.stores {
        if store == "redb" && !cfg!(feature = "bench-redb") {
            eprintln!("skipping redb: build with --features bench-redb");
            continue;
        }
        for mode in &args.modes {
            for &n in &args.appenders {
                let tmp = match &args.dir {
                    Some(d) => tempfile::tempdir_in(d).unwrap(),
                    None => tempfile::tempdir().unwrap(),
                };
                let o = runtime.block_on(run_one(store, mode, n, args.seconds, tmp.path()));
                println!(
                    "{store:<5} {mode:<6} {n:>9} {:>10.0} {:>8} {:>8} {:>14.1}",
                    o.appends as f64 / o.elapsed.as_secs_f64(),
                    o.latency_us.value_at_quantile(0.5),
                    o.latency_us.value_at_quantile(0.99),
                    o.appends as f64 / o.syncs.max(1) as f64,
                );
            }
        }
    }
}
