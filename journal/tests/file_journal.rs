//! The file journal against its contract: round trips through close and reopen, recovery from
//! torn tails and damage, the lock, group commit, segments, compaction (and crashes during it),
//! and agreement with `MemoryJournal`.

#[path = "support/segments.rs"]
mod segments;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lockstep_journal::{
    BackendRecord, Compaction, Durability, Entry, EntryState, FileJournal, FileJournalOptions,
    Header, IdPairs, IdempotencyKey, Journal, JournalError, MemoryJournal, RequestRecord,
    ResponseRecord, Seq, Topology, TransactionOutcome, TransactionRecord,
};
use segments::{copy_dir, crashed_compaction, segment_numbers, segment_path};

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn entry(seq: Seq) -> Entry {
    let request = RequestRecord {
        method: "POST".into(),
        uri: format!("/accounts/{}/deposit?n={seq}", seq % 3),
        headers: vec![
            Header::new("content-type", "application/json"),
            Header::new("x-request", format!("r{seq}")),
        ],
        body: Bytes::from(format!("{{\"amount\":{seq}}}").repeat(1 + (seq as usize % 4))),
    };
    Entry::new(seq, format!("lane-{}", seq % 3), time(seq), request)
}

fn keyed(seq: Seq, key: &str) -> Entry {
    entry(seq).with_idempotency(Some(IdempotencyKey {
        scoped: key.into(),
        fingerprint: format!("fp-{seq}"),
    }))
}

fn response(seq: Seq) -> ResponseRecord {
    ResponseRecord {
        status: 200 + (seq % 3) as u16,
        headers: vec![Header::new("etag", format!("\"{seq}\""))],
        body: Bytes::from(format!("{{\"balance\":{}}}", seq * 10)),
    }
}

fn topology(epoch: u64) -> Topology {
    Topology {
        epoch,
        primary: "a".into(),
        backends: vec![
            BackendRecord {
                name: "a".into(),
                url: "http://127.0.0.1:9001".into(),
                implementation: "v1".into(),
                state: "in-sync".into(),
                acked_seq: 3,
            },
            BackendRecord {
                name: "b".into(),
                url: "http://127.0.0.1:9002".into(),
                implementation: "v2".into(),
                state: if epoch > 1 { "lagging" } else { "in-sync" }.into(),
                acked_seq: 2,
            },
        ],
    }
}

fn open(dir: &Path, durability: Durability) -> FileJournal {
    FileJournal::open(dir, durability).expect("journal opens")
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

async fn everything(j: &dyn Journal) -> Vec<Entry> {
    j.read_from(0, usize::MAX).await.unwrap()
}

#[tokio::test]
async fn every_record_kind_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let j = open(dir.path(), Durability::Always);
        for seq in 1..=4 {
            j.append(keyed(seq, &format!("k{seq}"))).await.unwrap();
        }
        j.record_response(1, response(1)).await.unwrap();
        j.record_ack(1, "b").await.unwrap();
        j.record_ack(1, "c").await.unwrap();
        j.commit(1, response(1)).await.unwrap();
        j.record_dispatch(2, "a").await.unwrap();
        j.record_response(2, response(2)).await.unwrap();
        j.record_dispatch(2, "b").await.unwrap();
        j.record_ack(2, "b").await.unwrap();
        j.record_dispatch(2, "c").await.unwrap();
        j.abort(3, "primary unreachable".into()).await.unwrap();
        j.save_topology(&topology(1)).await.unwrap();
        j.save_topology(&topology(2)).await.unwrap();

        let all = everything(&j).await;
        assert_eq!(all[0].state, EntryState::Committed(response(1)));
        assert_eq!(all[0].acks, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(all[1].state, EntryState::Answered(response(2)));
        assert_eq!(
            all[1].dispatched,
            vec!["a".to_string(), "b".into(), "c".into()]
        );
        assert_eq!(all[1].acks, vec!["b".to_string()]);
        assert_eq!(
            all[2].state,
            EntryState::Aborted("primary unreachable".into())
        );
        assert_eq!(all[3].state, EntryState::Pending);
        assert_eq!(all[3].request, entry(4).request);
        all
    };

    let j = open(dir.path(), Durability::Always);
    assert_eq!(everything(&j).await, before);
    assert_eq!(j.last_seq(), 4);
    assert_eq!(j.get(2).await.unwrap().as_ref(), Some(&before[1]));
    assert_eq!(j.get(5).await.unwrap(), None);
    assert_eq!(j.find_key("k1").await.unwrap().as_ref(), Some(&before[0]));
    assert_eq!(j.find_key("nope").await.unwrap(), None);
    assert_eq!(j.load_topology().await.unwrap(), Some(topology(2)));

    // Still usable: the next seq appends and reopens.
    j.append(entry(5)).await.unwrap();
    drop(j);
    let j = open(dir.path(), Durability::Never);
    assert_eq!(j.last_seq(), 5);
    assert_eq!(j.get(5).await.unwrap(), Some(entry(5)));
}

#[tokio::test]
async fn key_index_and_expiry_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = open(dir.path(), Durability::Batch);
        j.append(keyed(1, "old")).await.unwrap();
        j.append(keyed(2, "older-but-later")).await.unwrap();
        j.append(keyed(30, "new")).await.unwrap();
        assert_eq!(j.expire_keys(time(10)).await.unwrap(), 2);
        assert_eq!(j.find_key("old").await.unwrap(), None);
        // An entry sequenced before the cut but appended after the expiry keeps its key.
        j.append(keyed(3, "late")).await.unwrap();
    }
    let j = open(dir.path(), Durability::Batch);
    assert_eq!(j.find_key("old").await.unwrap(), None);
    assert_eq!(j.find_key("older-but-later").await.unwrap(), None);
    assert_eq!(j.find_key("new").await.unwrap().map(|e| e.seq), Some(30));
    assert_eq!(j.find_key("late").await.unwrap().map(|e| e.seq), Some(3));
    // The entries themselves stay: they are the history.
    assert_eq!(j.get(1).await.unwrap(), Some(keyed(1, "old")));
    assert_eq!(j.expire_keys(time(100)).await.unwrap(), 2);
    drop(j);
    let j = open(dir.path(), Durability::Batch);
    assert_eq!(j.find_key("new").await.unwrap(), None);
    assert_eq!(j.find_key("late").await.unwrap(), None);
}

/// Writes `n` entries and returns the segment's bytes and where the last record starts.
async fn journal_bytes(dir: &Path, n: Seq) -> (Vec<u8>, usize) {
    let j = open(dir, Durability::Never);
    for seq in 1..n {
        j.append(entry(seq)).await.unwrap();
    }
    let last_start = std::fs::metadata(&segment_files(dir)[0]).unwrap().len() as usize;
    j.append(entry(n)).await.unwrap();
    drop(j);
    let bytes = std::fs::read(&segment_files(dir)[0]).unwrap();
    (bytes, last_start)
}

#[tokio::test]
async fn torn_tail_at_every_offset_keeps_exactly_the_complete_records() {
    let src = tempfile::tempdir().unwrap();
    let (bytes, last_start) = journal_bytes(src.path(), 6).await;
    assert!(
        bytes.len() - last_start > 20,
        "the last record has several bytes"
    );
    let name = segment_files(src.path())[0].file_name().unwrap().to_owned();
    let expected: Vec<Entry> = (1..=5).map(entry).collect();

    for cut in last_start..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(&name), &bytes[..cut]).unwrap();
        let j = FileJournal::open(dir.path(), Durability::Never)
            .unwrap_or_else(|e| panic!("cut at {cut}: open failed: {e}"));
        assert_eq!(everything(&j).await, expected, "cut at {cut}");
        assert_eq!(j.last_seq(), 5, "cut at {cut}");
        let len = std::fs::metadata(dir.path().join(&name)).unwrap().len() as usize;
        assert_eq!(
            len, last_start,
            "cut at {cut}: the torn record is truncated away"
        );
        j.append(entry(6)).await.unwrap();
        drop(j);
        let j = open(dir.path(), Durability::Never);
        assert_eq!(everything(&j).await.len(), 6, "cut at {cut}");
    }
}

#[tokio::test]
async fn zeroed_tail_after_power_loss_is_cut_away() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, _) = journal_bytes(dir.path(), 3).await;
    let path = segment_files(dir.path())[0].clone();
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    let j = open(dir.path(), Durability::Never);
    assert_eq!(everything(&j).await, (1..=3).map(entry).collect::<Vec<_>>());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        bytes.len() - 4096
    );
}

#[tokio::test]
async fn flipped_byte_in_the_middle_is_corrupt() {
    let src = tempfile::tempdir().unwrap();
    let (bytes, last_start) = journal_bytes(src.path(), 6).await;
    let name = segment_files(src.path())[0].file_name().unwrap().to_owned();
    let name = name.to_str().unwrap().to_owned();

    // Every byte of the header and of a record in the middle (the one before the last).
    let second_last_start = {
        let dir = tempfile::tempdir().unwrap();
        journal_bytes(dir.path(), 5).await.1
    };
    let offsets = (0..16).chain(second_last_start..last_start);
    for at in offsets {
        let dir = tempfile::tempdir().unwrap();
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        std::fs::write(dir.path().join(&name), &damaged).unwrap();
        match FileJournal::open(dir.path(), Durability::Never) {
            Err(JournalError::Corrupt { path, detail }) => {
                assert!(path.ends_with(&name), "flip at {at}: path {path}");
                assert!(detail.contains("offset"), "flip at {at}: {detail}");
            }
            Err(e) => panic!("flip at {at}: unexpected error {e}"),
            Ok(_) => panic!("flip at {at}: damage accepted"),
        }
    }
}

#[tokio::test]
async fn unsupported_format_version_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, _) = journal_bytes(dir.path(), 2).await;
    for version in [0, 4] {
        bytes[8] = version;
        std::fs::write(&segment_files(dir.path())[0], &bytes).unwrap();
        let err = FileJournal::open(dir.path(), Durability::Never).unwrap_err();
        assert!(
            matches!(&err, JournalError::Corrupt { detail, .. }
                if detail.contains(&format!("version {version} is not supported"))),
            "{err}"
        );
    }
}

#[test]
fn a_second_open_fails_while_the_first_is_alive() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), Durability::Always);
    let err = FileJournal::open(dir.path(), Durability::Always).unwrap_err();
    assert!(matches!(err, JournalError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("in use by another process"));
    drop(first);
    open(dir.path(), Durability::Always);
}

#[test]
fn the_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/journal");
    open(&nested, Durability::Always);
    assert_eq!(segment_files(&nested).len(), 1);
    assert!(nested.join("LOCK").exists());
}

async fn concurrent_appends(j: Arc<FileJournal>, tasks: u64, per_task: u64) {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let j = j.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let seq = 1 + t * per_task + i;
                j.append(entry(seq)).await.unwrap();
                j.commit(seq, response(seq)).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs_between_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(open(dir.path(), Durability::Always));
    let (tasks, per_task) = (32, 20);
    concurrent_appends(j.clone(), tasks, per_task).await;
    let calls = tasks * per_task * 2;
    let syncs = j.sync_count();
    println!("{calls} durable calls, {syncs} fsyncs");
    assert!(syncs > 0);
    assert!(
        syncs * 4 < calls,
        "{syncs} fsyncs for {calls} durable calls"
    );
    let all = everything(j.as_ref()).await;
    assert_eq!(all.len() as u64, tasks * per_task);
    assert!(
        all.iter()
            .all(|e| e.state == EntryState::Committed(response(e.seq)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_fsyncs_in_the_background_and_coalesces() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileJournalOptions {
        batch_interval: Duration::from_millis(5),
        ..FileJournalOptions::new(Durability::Batch)
    };
    let j = Arc::new(FileJournal::open_with(dir.path(), options).unwrap());
    let started = std::time::Instant::now();
    concurrent_appends(j.clone(), 16, 10).await;
    // Calls answer once their record is written; the fsync follows within the interval, on the
    // syncer thread. Wait for it (bounded), then check that the fsyncs were spaced and coalesced.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while j.sync_count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no fsync within 10 s of the writes"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let syncs = j.sync_count();
    println!("320 durable calls, {syncs} fsyncs in {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(5) * (syncs as u32 - 1),
        "{syncs} fsyncs in {elapsed:?}"
    );
    assert!(syncs * 4 < 320, "{syncs} fsyncs");
}

#[tokio::test]
async fn never_mode_does_not_fsync_records() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path(), Durability::Never);
    for seq in 1..=10 {
        j.append(entry(seq)).await.unwrap();
        j.commit(seq, response(seq)).await.unwrap();
    }
    assert_eq!(j.sync_count(), 0);
    // The topology is always fsynced.
    j.save_topology(&topology(1)).await.unwrap();
    assert_eq!(j.sync_count(), 1);
    drop(j);
    let j = open(dir.path(), Durability::Never);
    assert_eq!(everything(&j).await.len(), 10);
}

#[tokio::test]
async fn segments_rotate_and_read_back_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileJournalOptions {
        segment_bytes: 2048,
        ..FileJournalOptions::new(Durability::Always)
    };
    let before = {
        let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
        for seq in 1..=60 {
            j.append(keyed(seq, &format!("k{seq}"))).await.unwrap();
            if seq > 1 {
                // The commit of an entry lands in a later segment than its append.
                j.commit(seq - 1, response(seq - 1)).await.unwrap();
                j.record_ack(seq - 1, "b").await.unwrap();
            }
        }
        everything(&j).await
    };
    assert!(segment_files(dir.path()).len() > 5);
    let j = FileJournal::open_with(dir.path(), options).unwrap();
    assert_eq!(everything(&j).await, before);
    assert_eq!(j.read_from(20, 5).await.unwrap(), before[19..24].to_vec());
    assert_eq!(j.find_key("k7").await.unwrap().as_ref(), Some(&before[6]));
    assert_eq!(before[6].state, EntryState::Committed(response(7)));

    // A missing segment in the middle is damage, not a tail.
    drop(j);
    std::fs::remove_file(&segment_files(dir.path())[2]).unwrap();
    let err = FileJournal::open(dir.path(), Durability::Always).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { detail, .. } if detail.contains("segment 2 is missing")),
        "{err}"
    );
}

#[tokio::test]
async fn torn_record_in_a_sealed_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileJournalOptions {
        segment_bytes: 1024,
        ..FileJournalOptions::new(Durability::Never)
    };
    {
        let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
        for seq in 1..=20 {
            j.append(entry(seq)).await.unwrap();
        }
    }
    let first = segment_files(dir.path())[0].clone();
    let len = std::fs::metadata(&first).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap();
    f.set_len(len - 3).unwrap();
    let err = FileJournal::open_with(dir.path(), options).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
}

fn in_transaction(seq: Seq, id: &str) -> Entry {
    entry(seq).with_transaction(Some(id.into()))
}

/// A committed transaction of `seqs`, `commits` committed with it, ended at `time(secs)`.
fn ended(id: &str, seqs: &[Seq], commits: &[Seq], secs: u64) -> TransactionRecord {
    TransactionRecord {
        id: id.into(),
        outcome: TransactionOutcome::Committed,
        seqs: seqs.to_vec(),
        commits: commits.iter().map(|&s| (s, response(s))).collect(),
        time: time(secs),
    }
}

/// An aborted transaction of `seqs`, ended at `time(secs)`.
fn aborted(id: &str, seqs: &[Seq], secs: u64) -> TransactionRecord {
    TransactionRecord {
        outcome: TransactionOutcome::Aborted(format!("{id} conflicted")),
        ..ended(id, seqs, &[], secs)
    }
}

/// What one call returned, in a form both journals can be compared on.
type Outcome = Result<String, String>;

fn outcome<T: std::fmt::Debug>(r: Result<T, JournalError>) -> Outcome {
    r.map(|v| format!("{v:?}")).map_err(|e| e.to_string())
}

async fn script(j: &dyn Journal) -> Vec<Outcome> {
    let mut out = Vec::new();
    for seq in [1, 2, 3, 5, 4] {
        out.push(outcome(j.append(keyed(seq, &format!("k{seq}"))).await));
    }
    out.push(outcome(j.append(entry(3)).await)); // duplicate
    out.push(outcome(j.commit(9, response(9)).await)); // unknown
    out.push(outcome(j.record_ack(9, "b").await)); // unknown
    out.push(outcome(j.record_response(1, response(1)).await));
    out.push(outcome(j.record_ack(1, "b").await));
    out.push(outcome(j.commit(1, response(1)).await));
    out.push(outcome(j.record_response(1, response(7)).await)); // after commit: ignored
    out.push(outcome(j.abort(2, "timeout".into()).await));
    out.push(outcome(j.record_response(2, response(2)).await)); // after abort: ignored
    out.push(outcome(j.record_response(3, response(3)).await));
    out.push(outcome(j.record_ack(3, "c").await));
    out.push(outcome(j.record_ack(3, "b").await));
    let mut committed_on_append = entry(6);
    committed_on_append.state = EntryState::Committed(response(6));
    committed_on_append.acks = vec!["b".into()];
    out.push(outcome(j.append(committed_on_append).await));
    out.push(outcome(j.record_response(6, response(1)).await));
    out.push(outcome(j.record_ack(6, "c").await));
    out.push(outcome(j.save_topology(&topology(1)).await));
    out.push(outcome(j.save_topology(&topology(2)).await));
    // Transactions: one commits its group at once, one aborts what did not commit, one names
    // an unknown seq, one ends twice, one expires.
    for seq in 7..=11 {
        let tx = if seq <= 9 { "t1" } else { "t2" };
        out.push(outcome(j.append(in_transaction(seq, tx)).await));
    }
    out.push(outcome(j.record_response(8, response(8)).await));
    out.push(outcome(
        j.end_transaction(ended("t1", &[7, 8, 9], &[7, 8, 9], 5))
            .await,
    ));
    out.push(outcome(j.end_transaction(aborted("t1", &[7], 5)).await)); // ended already
    out.push(outcome(j.record_response(9, response(1)).await)); // after commit: ignored
    out.push(outcome(j.commit(10, response(10)).await));
    out.push(outcome(j.record_response(11, response(11)).await));
    out.push(outcome(
        j.end_transaction(aborted("t2", &[10, 11, 12], 5)).await,
    )); // unknown
    out.push(outcome(j.end_transaction(ended("t3", &[], &[99], 5)).await)); // unknown
    out.push(outcome(
        j.end_transaction(aborted("t2", &[10, 11], 5)).await,
    ));
    out.push(outcome(j.end_transaction(ended("t0", &[6], &[], 1)).await));
    out.push(outcome(j.expire_keys(time(3)).await));
    out.push(outcome(j.expire_keys(time(3)).await));
    // Identifier pairs: of two backends, one learned from a seq never appended, none at all,
    // some forgotten and relearned.
    for (seq, backend) in [(1, "b"), (1, "c"), (3, "b"), (42, "c"), (6, "b"), (2, "b")] {
        let pairs = vec![(format!("c{seq}"), format!("{backend}{seq}"))];
        out.push(outcome(j.record_ids(seq, backend, pairs).await));
    }
    out.push(outcome(j.record_ids(4, "b", vec![]).await));
    out.push(outcome(j.forget_ids("b", 2).await));
    out.push(outcome(j.forget_ids("d", 0).await));
    out.push(outcome(
        j.record_ids(3, "b", vec![("c3".into(), "b3'".into())])
            .await,
    ));
    out.extend(observe(j).await);
    out
}

async fn observe(j: &dyn Journal) -> Vec<Outcome> {
    let mut out = vec![
        Ok(format!("last_seq {}", j.last_seq())),
        Ok(format!("first_seq {}", j.first_seq())),
    ];
    for (from, limit) in [(0, 100), (2, 2), (4, 10), (7, 10), (1, 0)] {
        out.push(outcome(j.read_from(from, limit).await));
    }
    for seq in 0..=12 {
        out.push(outcome(j.get(seq).await));
    }
    for key in ["k1", "k2", "k3", "k4", "k5", "k6"] {
        out.push(outcome(j.find_key(key).await));
    }
    for id in ["t0", "t1", "t2", "t3"] {
        out.push(outcome(j.find_transaction(id).await));
    }
    out.push(outcome(j.load_topology().await));
    out.push(outcome(j.load_ids().await));
    out
}

#[tokio::test]
async fn memory_and_file_journals_behave_the_same() {
    let memory = MemoryJournal::new();
    let dir = tempfile::tempdir().unwrap();
    let file = open(dir.path(), Durability::Batch);
    let expected = script(&memory).await;
    let got = script(&file).await;
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "step {i}");
    }
    drop(file);
    let file = open(dir.path(), Durability::Batch);
    assert_eq!(observe(&file).await, observe(&memory).await);
}

// --- Compaction ---------------------------------------------------------------------------------

fn small_segments(durability: Durability) -> FileJournalOptions {
    FileJournalOptions {
        segment_bytes: 1024,
        ..FileJournalOptions::new(durability)
    }
}

/// The numbers of the segment files in `dir`, in order.
/// The segment holding the append record of `seq` (found by its `x-request` header, which only
/// the append record carries).
fn segment_of(dir: &Path, seq: Seq) -> u64 {
    let value = format!("r{seq}");
    let mut needle = b"x-request".to_vec();
    needle.extend_from_slice(&(value.len() as u32).to_le_bytes());
    needle.extend_from_slice(value.as_bytes());
    let found: Vec<u64> = segment_numbers(dir)
        .into_iter()
        .filter(|&n| {
            let bytes = std::fs::read(segment_path(dir, n)).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the append of {seq} is in segments {found:?}"
    );
    found[0]
}

/// Everything a reader can observe, to compare a journal before and after a reopen.
#[derive(Debug, PartialEq)]
struct State {
    first_seq: Seq,
    last_seq: Seq,
    entries: Vec<Entry>,
    keys: Vec<(String, Option<Seq>)>,
    topology: Option<Topology>,
    ids: Vec<IdPairs>,
}

async fn state(j: &dyn Journal, keys: &[&str]) -> State {
    let mut found = Vec::new();
    for key in keys {
        let seq = j.find_key(key).await.unwrap().map(|e| e.seq);
        found.push((key.to_string(), seq));
    }
    State {
        first_seq: j.first_seq(),
        last_seq: j.last_seq(),
        entries: everything(j).await,
        keys: found,
        topology: j.load_topology().await.unwrap(),
        ids: j.load_ids().await.unwrap(),
    }
}

/// Appends `1..=n` in several segments (of 1 KiB), each committed and acknowledged (the commit
/// of one entry lands after the append of the next, often in a later segment); `keyed` entries
/// carry the key `k{seq}`. The topology is saved first, in segment 0.
async fn fill(j: &FileJournal, n: Seq, keyed_seqs: &[Seq]) {
    j.save_topology(&topology(1)).await.unwrap();
    for seq in 1..=n {
        let e = if keyed_seqs.contains(&seq) {
            keyed(seq, &format!("k{seq}"))
        } else {
            entry(seq)
        };
        j.append(e).await.unwrap();
        if seq > 1 {
            j.commit(seq - 1, response(seq - 1)).await.unwrap();
            j.record_ack(seq - 1, "b").await.unwrap();
        }
    }
    j.commit(n, response(n)).await.unwrap();
}

/// The segments `compact(through)` may delete, worked out from the files: from the oldest on,
/// those that are not the last and hold only appends of seqs `<= through` none of which is in
/// `live`, up to the first that does not qualify. With the highest seq among them.
fn expected_drop(dir: &Path, appended: &[Seq], through: Seq, live: &[Seq]) -> (Vec<u64>, Seq) {
    let numbers = segment_numbers(dir);
    let active = *numbers.last().unwrap();
    let mut doomed = Vec::new();
    let mut highest = 0;
    for &n in &numbers {
        let seqs: Vec<Seq> = appended
            .iter()
            .copied()
            .filter(|&s| segment_of(dir, s) == n)
            .collect();
        if n == active || seqs.iter().any(|s| *s > through || live.contains(s)) {
            break;
        }
        highest = seqs.iter().copied().max().unwrap_or(highest).max(highest);
        doomed.push(n);
    }
    (doomed, highest)
}

fn size_of(dir: &Path, segments: &[u64]) -> u64 {
    segments
        .iter()
        .map(|&n| std::fs::metadata(segment_path(dir, n)).unwrap().len())
        .sum()
}

#[tokio::test]
async fn compaction_deletes_old_segments_up_to_the_first_one_that_must_stay() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Always);
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    // Key k3 expires below; k25 stays live and keeps its segment, and every later one.
    fill(&j, 40, &[3, 25]).await;
    assert_eq!(j.expire_keys(time(10)).await.unwrap(), 1);
    assert_eq!(j.first_seq(), 1);
    let all: Vec<Seq> = (1..=40).collect();
    let before = everything(&j).await;
    let first_segments = segment_numbers(dir.path());
    assert!(first_segments.len() > 8, "{first_segments:?}");

    let (doomed, highest) = expected_drop(dir.path(), &all, 30, &[25]);
    assert!(doomed.len() >= 2, "{doomed:?}");
    assert_eq!(segment_of(dir.path(), 25), doomed.last().unwrap() + 1);
    let bytes = size_of(dir.path(), &doomed);
    let done = j.compact(30).await.unwrap();
    assert_eq!(
        done,
        Compaction {
            first_seq: highest + 1,
            dropped_entries: highest,
            dropped_bytes: bytes,
        }
    );
    assert_eq!(j.first_seq(), highest + 1);
    assert_eq!(j.last_seq(), 40);
    assert_eq!(segment_numbers(dir.path())[0], doomed.last().unwrap() + 1);

    // Dropped seqs are gone; from `first_seq` on, every entry is as it was, including those
    // through 30 that share a segment with k25 or come after it.
    for seq in 1..=highest {
        assert_eq!(j.get(seq).await.unwrap(), None, "seq {seq}");
    }
    let kept = before[highest as usize..].to_vec();
    assert_eq!(kept[0].seq, highest + 1);
    assert_eq!(everything(&j).await, kept);
    assert_eq!(
        j.read_from(highest + 1, 3).await.unwrap(),
        kept[..3].to_vec()
    );
    assert_eq!(j.read_from(1, 2).await.unwrap(), kept[..2].to_vec());
    assert_eq!(j.get(30).await.unwrap().as_ref(), Some(&before[29]));
    assert_eq!(j.find_key("k25").await.unwrap().as_ref(), Some(&before[24]));
    assert_eq!(j.find_key("k3").await.unwrap(), None);
    assert!(matches!(
        j.commit(1, response(1)).await,
        Err(JournalError::UnknownSeq { seq: 1 })
    ));
    assert!(matches!(
        j.append(entry(1)).await,
        Err(JournalError::DuplicateSeq { seq: 1 })
    ));

    // The topology's record was in segment 0: it was written again before the files went.
    let keys = ["k3", "k25"];
    let compacted = state(&j, &keys).await;
    assert_eq!(compacted.topology, Some(topology(1)));
    drop(j);
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(state(&j, &keys).await, compacted);

    // Nothing more may go while k25 is live; once it expired, everything up to the segment
    // holding seq 31 may.
    let again = j.compact(30).await.unwrap();
    assert_eq!((again.first_seq, again.dropped_entries), (highest + 1, 0));
    assert_eq!(j.expire_keys(time(100)).await.unwrap(), 1);
    let (doomed, highest2) = expected_drop(dir.path(), &all[highest as usize..], 30, &[]);
    assert!(!doomed.is_empty());
    let done = j.compact(30).await.unwrap();
    assert_eq!(done.first_seq, highest2 + 1);
    assert_eq!(done.dropped_entries, highest2 - highest);
    assert_eq!(everything(&j).await, before[highest2 as usize..].to_vec());
    assert_eq!(j.find_key("k25").await.unwrap(), None);
    let compacted = state(&j, &keys).await;
    drop(j);
    let j = FileJournal::open_with(dir.path(), options).unwrap();
    assert_eq!(state(&j, &keys).await, compacted);
    assert_eq!(j.load_topology().await.unwrap(), Some(topology(1)));
}

#[tokio::test]
async fn seqs_continue_after_every_entry_was_compacted_away() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Batch);
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    let keys: Vec<String> = (1..=12).map(|s| format!("k{s}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    fill(&j, 12, &(1..=12).collect::<Vec<_>>()).await;
    j.save_topology(&topology(2)).await.unwrap();
    // Acks for entry 12 until a segment holds no append at all, only records about entries
    // that are about to be dropped.
    let last_append = segment_of(dir.path(), 12);
    while *segment_numbers(dir.path()).last().unwrap() == last_append {
        j.record_ack(12, "c").await.unwrap();
    }
    j.record_ack(11, "c").await.unwrap();
    assert_eq!(j.expire_keys(time(100)).await.unwrap(), 12);

    let done = j.compact(12).await.unwrap();
    assert_eq!((done.first_seq, done.dropped_entries), (13, 12));
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(j.first_seq(), 13);
    assert_eq!(j.last_seq(), 12);
    assert!(everything(&j).await.is_empty());
    assert_eq!(j.get(12).await.unwrap(), None);
    let compacted = state(&j, &keys).await;
    assert_eq!(compacted.topology, Some(topology(2)));
    drop(j);

    // The remaining segment holds acks about dropped entries: not damage.
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(state(&j, &keys).await, compacted);
    assert!(matches!(
        j.append(entry(12)).await,
        Err(JournalError::DuplicateSeq { seq: 12 })
    ));
    j.append(entry(13)).await.unwrap();
    drop(j);
    let j = FileJournal::open_with(dir.path(), options).unwrap();
    assert_eq!((j.first_seq(), j.last_seq()), (13, 13));
    assert_eq!(everything(&j).await, vec![entry(13)]);
}

#[tokio::test]
async fn compaction_of_only_the_active_segment_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path(), Durability::Always);
    for seq in 1..=5 {
        j.append(entry(seq)).await.unwrap();
    }
    assert_eq!(
        j.compact(5).await.unwrap(),
        Compaction {
            first_seq: 1,
            dropped_entries: 0,
            dropped_bytes: 0,
        }
    );
    assert_eq!(everything(&j).await.len(), 5);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

/// A crash anywhere in a compaction: before its record is complete the journal reopens as it
/// was; once the record is durable it reopens compacted, whichever of the files to delete are
/// still there (the oldest go first, but any pattern is accepted), and deletes them.
#[tokio::test]
async fn a_crash_during_compaction_reopens_to_a_consistent_journal() {
    let template = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Always);
    {
        let j = FileJournal::open_with(template.path(), options.clone()).unwrap();
        fill(&j, 40, &[7, 20]).await;
        j.expire_keys(time(10)).await.unwrap();
    }
    let keys = ["k7", "k20"];
    let open_state = |dir: PathBuf| {
        let options = options.clone();
        async move {
            let j = FileJournal::open_with(&dir, options).unwrap();
            state(&j, &keys).await
        }
    };
    let before = open_state(template.path().to_path_buf()).await;
    assert_eq!(before.entries.len(), 40);
    let all_segments = segment_numbers(template.path());

    // The compaction as it completes.
    let done = tempfile::tempdir().unwrap();
    copy_dir(template.path(), done.path());
    let (result, after) = {
        let j = FileJournal::open_with(done.path(), options.clone()).unwrap();
        let result = j.compact(15).await.unwrap();
        (result, state(&j, &keys).await)
    };
    assert!(result.dropped_entries > 0);
    assert_eq!(after.first_seq, result.first_seq);
    assert_eq!(after.keys, before.keys);
    let deleted: Vec<u64> = all_segments
        .iter()
        .copied()
        .filter(|n| !segment_numbers(done.path()).contains(n))
        .collect();
    assert!(deleted.len() >= 3, "{deleted:?}");
    let active = *segment_numbers(done.path()).last().unwrap();
    let active_before = std::fs::metadata(segment_path(template.path(), active))
        .map(|m| m.len())
        .unwrap_or(16);
    let active_after = std::fs::metadata(segment_path(done.path(), active))
        .unwrap()
        .len();
    assert!(active_after > active_before);

    // The compaction record is durable, some or all of the files are still there.
    let n = deleted.len();
    let leftovers: Vec<(&str, Vec<u64>)> = vec![
        ("none deleted yet", deleted.clone()),
        ("the oldest deleted", deleted[n / 2..].to_vec()),
        ("only the newest deleted", deleted[..n - 1].to_vec()),
        ("only the oldest left", deleted[..1].to_vec()),
    ];
    for (case, left) in leftovers {
        let dir = crashed_compaction(done.path(), template.path(), &left, None);
        assert_eq!(open_state(dir.path().to_path_buf()).await, after, "{case}");
        assert_eq!(
            segment_numbers(dir.path()),
            segment_numbers(done.path()),
            "{case}: the files left behind are deleted on open"
        );
        assert_eq!(open_state(dir.path().to_path_buf()).await, after, "{case}");
    }

    // The crash came before the compaction record was complete: no file was deleted yet, and
    // the active segment ends anywhere in the records the compaction wrote.
    for cut in [
        active_before,
        active_before + 1,
        active_after - 9,
        active_after - 1,
    ] {
        let dir = crashed_compaction(done.path(), template.path(), &deleted, Some((active, cut)));
        assert_eq!(
            open_state(dir.path().to_path_buf()).await,
            before,
            "cut at {cut}"
        );
        assert_eq!(segment_numbers(dir.path()), all_segments, "cut at {cut}");
        // And compacting again gives the same result.
        let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
        assert_eq!(j.compact(15).await.unwrap(), result, "cut at {cut}");
        assert_eq!(state(&j, &keys).await, after, "cut at {cut}");
    }

    // A retained segment that goes missing is still damage.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(done.path(), dir.path());
    let retained = segment_numbers(dir.path());
    std::fs::remove_file(segment_path(dir.path(), retained[0])).unwrap();
    let err = FileJournal::open_with(dir.path(), options).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { detail, .. }
            if detail.contains(&format!("segment {} is missing", retained[0]))),
        "{err}"
    );
}

/// Sets the format version in the header of segment `number`.
fn set_version(dir: &Path, number: u64, version: u32) {
    let path = segment_path(dir, number);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
}

fn version_of(dir: &Path, number: u64) -> u32 {
    let bytes = std::fs::read(segment_path(dir, number)).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

#[tokio::test]
async fn version_1_segments_are_read_and_compaction_starts_a_version_3_segment() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Batch);
    let before = {
        let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
        fill(&j, 20, &[]).await;
        state(&j, &[]).await
    };
    let numbers = segment_numbers(dir.path());
    assert!(numbers.len() > 3);
    // Version 1 is version 3 without the compaction, transaction and identifier records: the
    // same bytes, read the same.
    for &n in &numbers {
        assert_eq!(version_of(dir.path(), n), 3);
        set_version(dir.path(), n, 1);
    }
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(state(&j, &[]).await, before);

    // The active segment is version 1: it is sealed, and the record goes to a new one.
    let done = j.compact(10).await.unwrap();
    assert!(done.dropped_entries > 0);
    let after = state(&j, &[]).await;
    drop(j);
    let now = segment_numbers(dir.path());
    let newest = *now.last().unwrap();
    assert_eq!(newest, numbers.last().unwrap() + 1);
    assert_eq!(version_of(dir.path(), newest), 3);
    assert!(
        now[..now.len() - 1]
            .iter()
            .all(|&n| version_of(dir.path(), n) == 1)
    );
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(state(&j, &[]).await, after);
    drop(j);

    // A compaction record in a version 1 segment is damage.
    set_version(dir.path(), newest, 1);
    let err = FileJournal::open_with(dir.path(), options).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { detail, .. }
            if detail.contains("compaction record in a version 1 segment")),
        "{err}"
    );
}

/// Readers racing a compaction never fail: an entry dropped under them is left out, and what
/// they get is always a run of consecutive entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_a_compaction_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let j =
        Arc::new(FileJournal::open_with(dir.path(), small_segments(Durability::Never)).unwrap());
    for seq in 1..=200 {
        j.append(entry(seq)).await.unwrap();
        j.commit(seq, response(seq)).await.unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (j, stop) = (j.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let entries = j.read_from(0, usize::MAX).await.unwrap();
                let seqs: Vec<Seq> = entries.iter().map(|e| e.seq).collect();
                if let Some(&first) = seqs.first() {
                    assert_eq!(seqs, (first..=200).collect::<Vec<_>>());
                }
                for e in &entries {
                    assert_eq!(e.state, EntryState::Committed(response(e.seq)));
                }
                assert!(j.get(150).await.unwrap().is_some());
                reads += 1;
            }
            reads
        }));
    }
    for through in (10..=140).step_by(10) {
        j.compact(through).await.unwrap();
        tokio::task::yield_now().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    assert!(j.first_seq() > 100);
}

// --- Transactions -------------------------------------------------------------------------------

async fn states(j: &dyn Journal, seqs: std::ops::RangeInclusive<Seq>) -> Vec<EntryState> {
    let mut out = Vec::new();
    for seq in seqs {
        out.push(j.get(seq).await.unwrap().expect("entry is stored").state);
    }
    out
}

/// A crash anywhere in the write of a transaction record keeps all of its effects or none: the
/// active segment is cut at every byte offset inside the record's frame and reopened.
#[tokio::test]
async fn a_transaction_commits_its_group_atomically_across_a_crash() {
    let src = tempfile::tempdir().unwrap();
    let group: Vec<Seq> = vec![1, 2, 4, 5];
    let record = ended("tx", &group, &group, 7);
    let (start, before) = {
        let j = open(src.path(), Durability::Always);
        for seq in 1..=5 {
            let e = if seq == 3 {
                entry(3)
            } else {
                in_transaction(seq, "tx")
            };
            j.append(e).await.unwrap();
        }
        j.record_response(2, response(2)).await.unwrap();
        j.record_ack(2, "b").await.unwrap();
        let before = states(&j, 1..=5).await;
        let start = std::fs::metadata(&segment_files(src.path())[0])
            .unwrap()
            .len();
        j.end_transaction(record.clone()).await.unwrap();
        (start, before)
    };
    let bytes = std::fs::read(&segment_files(src.path())[0]).unwrap();
    let end = bytes.len() as u64;
    assert!(end - start > 100, "the record has many bytes");
    let name = segment_files(src.path())[0].file_name().unwrap().to_owned();
    let committed: Vec<EntryState> = (1..=5)
        .map(|seq| {
            if seq == 3 {
                EntryState::Pending
            } else {
                EntryState::Committed(response(seq))
            }
        })
        .collect();

    for cut in start..=end {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(&name), &bytes[..cut as usize]).unwrap();
        let j = open(dir.path(), Durability::Always);
        let now = states(&j, 1..=5).await;
        if cut == end {
            assert_eq!(now, committed, "complete record");
            assert_eq!(
                j.find_transaction("tx").await.unwrap(),
                Some(record.clone())
            );
            continue;
        }
        assert_eq!(
            now, before,
            "cut at {cut}: nothing of the group is committed"
        );
        assert_eq!(
            j.find_transaction("tx").await.unwrap(),
            None,
            "cut at {cut}"
        );
        assert_eq!(j.get(2).await.unwrap().unwrap().acks, vec!["b".to_string()]);
        // The torn record is gone: the transaction ends again, whole.
        j.end_transaction(record.clone()).await.unwrap();
        assert_eq!(states(&j, 1..=5).await, committed, "cut at {cut}");
        if cut == start || cut == end - 1 {
            drop(j);
            let j = open(dir.path(), Durability::Always);
            assert_eq!(states(&j, 1..=5).await, committed, "cut at {cut}, reopened");
            assert_eq!(
                j.find_transaction("tx").await.unwrap(),
                Some(record.clone())
            );
        }
    }
}

/// An aborted transaction aborts its entries that did not commit (pending, answered, aborted
/// before) and leaves the committed ones, also those its own record commits; both journals, and
/// the file journal again after a reopen.
#[tokio::test]
async fn an_aborted_transaction_aborts_what_did_not_commit() {
    async fn run(j: &dyn Journal) -> TransactionRecord {
        for seq in 1..=6 {
            j.append(in_transaction(seq, "tx")).await.unwrap();
        }
        j.record_response(2, response(2)).await.unwrap();
        j.commit(3, response(3)).await.unwrap();
        j.abort(4, "timeout".into()).await.unwrap();
        let record = TransactionRecord {
            id: "tx".into(),
            outcome: TransactionOutcome::Aborted("backend b diverged".into()),
            seqs: vec![1, 2, 3, 4, 5],
            commits: vec![(5, response(50))],
            time: time(9),
        };
        j.end_transaction(record.clone()).await.unwrap();
        // A late response changes nothing any more.
        j.record_response(1, response(1)).await.unwrap();
        record
    }
    let expected = {
        let reason = || EntryState::Aborted("backend b diverged".into());
        vec![
            reason(),
            reason(),
            EntryState::Committed(response(3)),
            reason(),
            EntryState::Committed(response(50)),
            EntryState::Pending,
        ]
    };
    let memory = MemoryJournal::new();
    let record = run(&memory).await;
    assert_eq!(states(&memory, 1..=6).await, expected);
    assert_eq!(
        memory.find_transaction("tx").await.unwrap(),
        Some(record.clone())
    );

    for durability in [Durability::Always, Durability::Never] {
        let dir = tempfile::tempdir().unwrap();
        let j = open(dir.path(), durability);
        assert_eq!(run(&j).await, record);
        assert_eq!(states(&j, 1..=6).await, expected);
        assert_eq!(everything(&j).await, everything(&memory).await);
        drop(j);
        let j = open(dir.path(), durability);
        assert_eq!(states(&j, 1..=6).await, expected);
        assert_eq!(
            j.find_transaction("tx").await.unwrap(),
            Some(record.clone())
        );
        assert_eq!(everything(&j).await, everything(&memory).await);
    }
}

/// A transaction ends once: a second end of its id is `TransactionEnded` and changes nothing; an
/// end naming an unknown seq applies nothing and leaves the id free. Under `Always`, an end waits
/// for its fsync, and of concurrent ends of one id exactly one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_ends_once() {
    async fn run(j: &dyn Journal) {
        for seq in 1..=3 {
            j.append(in_transaction(seq, "tx")).await.unwrap();
        }
        let err = j
            .end_transaction(ended("tx", &[1, 2, 3, 4], &[1], 5))
            .await
            .unwrap_err();
        assert!(matches!(err, JournalError::UnknownSeq { seq: 4 }), "{err}");
        let err = j
            .end_transaction(ended("tx", &[1], &[1, 7], 5))
            .await
            .unwrap_err();
        assert!(matches!(err, JournalError::UnknownSeq { seq: 7 }), "{err}");
        assert_eq!(states(j, 1..=3).await, vec![EntryState::Pending; 3]);
        assert_eq!(j.find_transaction("tx").await.unwrap(), None);

        j.end_transaction(ended("tx", &[1, 2], &[1, 2], 5))
            .await
            .unwrap();
        let err = j.end_transaction(aborted("tx", &[3], 6)).await.unwrap_err();
        assert!(
            matches!(&err, JournalError::TransactionEnded { id } if id == "tx"),
            "{err}"
        );
        assert_eq!(err.to_string(), "transaction tx has already ended");
        assert_eq!(
            states(j, 1..=3).await,
            vec![
                EntryState::Committed(response(1)),
                EntryState::Committed(response(2)),
                EntryState::Pending
            ]
        );
        assert_eq!(
            j.find_transaction("tx").await.unwrap(),
            Some(ended("tx", &[1, 2], &[1, 2], 5))
        );
    }
    run(&MemoryJournal::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(open(dir.path(), Durability::Always));
    run(j.as_ref()).await;

    // Sequential ends under `Always` each wait for an fsync.
    j.append(entry(4)).await.unwrap();
    let syncs = j.sync_count();
    j.end_transaction(ended("t4", &[4], &[4], 5)).await.unwrap();
    assert_eq!(j.sync_count(), syncs + 1);

    // Racing ends of one id, most of them in one batch: one wins.
    for seq in 5..=20 {
        j.append(entry(seq)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for seq in 5..=20 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            j.end_transaction(ended("race", &[seq], &[seq], 5)).await
        }));
    }
    let mut winners = Vec::new();
    for (seq, task) in (5..=20).zip(tasks) {
        match task.await.unwrap() {
            Ok(()) => winners.push(seq),
            Err(JournalError::TransactionEnded { id }) => assert_eq!(id, "race"),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let winner = winners[0];
    let record = ended("race", &[winner], &[winner], 5);
    assert_eq!(
        j.find_transaction("race").await.unwrap(),
        Some(record.clone())
    );
    for seq in 5..=20 {
        let state = j.get(seq).await.unwrap().unwrap().state;
        let expected = if seq == winner {
            EntryState::Committed(response(seq))
        } else {
            EntryState::Pending
        };
        assert_eq!(state, expected, "seq {seq}");
    }
    let j = Arc::into_inner(j).unwrap();
    drop(j);
    let j = open(dir.path(), Durability::Always);
    assert_eq!(j.find_transaction("race").await.unwrap(), Some(record));
}

/// `expire_keys` forgets the transaction records ended before its cut-off (and counts them with
/// the keys); they stay forgotten after a reopen, and the entries keep their states. An expired
/// id may end again.
#[tokio::test]
async fn transaction_records_expire_and_stay_expired() {
    async fn run(j: &dyn Journal) {
        j.append(keyed(1, "k1")).await.unwrap();
        for seq in 2..=4 {
            j.append(in_transaction(seq, "tx")).await.unwrap();
        }
        j.end_transaction(ended("old", &[2], &[2], 5))
            .await
            .unwrap();
        j.end_transaction(aborted("new", &[3], 20)).await.unwrap();
        // Entry 1's time is time(1), the old record's time(5): both go; the new one stays.
        assert_eq!(j.expire_keys(time(10)).await.unwrap(), 2);
        assert_eq!(j.expire_keys(time(10)).await.unwrap(), 0);
        assert_eq!(j.find_transaction("old").await.unwrap(), None);
        assert_eq!(
            j.find_transaction("new").await.unwrap(),
            Some(aborted("new", &[3], 20))
        );
        assert_eq!(
            states(j, 2..=3).await,
            vec![
                EntryState::Committed(response(2)),
                EntryState::Aborted("new conflicted".into())
            ]
        );
        // A record ended at the cut-off itself is kept.
        assert_eq!(j.expire_keys(time(20)).await.unwrap(), 0);
    }
    run(&MemoryJournal::new()).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let j = open(dir.path(), Durability::Batch);
        run(&j).await;
    }
    let j = open(dir.path(), Durability::Batch);
    assert_eq!(j.find_transaction("old").await.unwrap(), None);
    assert_eq!(
        j.find_transaction("new").await.unwrap(),
        Some(aborted("new", &[3], 20))
    );
    assert_eq!(
        states(&j, 2..=3).await,
        vec![
            EntryState::Committed(response(2)),
            EntryState::Aborted("new conflicted".into())
        ]
    );
    // The forgotten id may end again; that record is kept across a reopen.
    j.end_transaction(ended("old", &[4], &[4], 30))
        .await
        .unwrap();
    assert_eq!(j.expire_keys(time(21)).await.unwrap(), 1);
    drop(j);
    let j = open(dir.path(), Durability::Batch);
    assert_eq!(j.find_transaction("new").await.unwrap(), None);
    assert_eq!(
        j.find_transaction("old").await.unwrap(),
        Some(ended("old", &[4], &[4], 30))
    );
}

/// The segment holding the record of transaction `id` (found by its kind, 11, followed by its
/// id: in an append the id follows a seq, whose high byte is 0 here).
fn segment_of_transaction(dir: &Path, id: &str) -> u64 {
    let mut needle = vec![11];
    needle.extend_from_slice(&(id.len() as u32).to_le_bytes());
    needle.extend_from_slice(id.as_bytes());
    let found: Vec<u64> = segment_numbers(dir)
        .into_iter()
        .filter(|&n| {
            let bytes = std::fs::read(segment_path(dir, n)).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the record of {id} is in segments {found:?}"
    );
    found[0]
}

/// A transaction record not yet expired keeps its segment (and every later one) from
/// compaction, also after its entries were dropped; the record is still found whole, also after
/// a reopen. Once it expired, the segment goes.
#[tokio::test]
async fn compaction_keeps_a_segment_holding_a_live_transaction_record() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Always);
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    j.save_topology(&topology(1)).await.unwrap();
    // Entries 2 and 3 belong to the transaction; it ends several segments later.
    for seq in 1..=12 {
        let e = if seq == 2 || seq == 3 {
            in_transaction(seq, "the-tx")
        } else {
            entry(seq)
        };
        j.append(e).await.unwrap();
        if seq != 2 && seq != 3 {
            j.commit(seq, response(seq)).await.unwrap();
        }
    }
    let record = TransactionRecord {
        id: "the-tx".into(),
        outcome: TransactionOutcome::Committed,
        seqs: vec![2, 3],
        commits: vec![(2, response(2)), (3, response(3))],
        time: time(12),
    };
    j.end_transaction(record.clone()).await.unwrap();
    for seq in 13..=30 {
        j.append(entry(seq)).await.unwrap();
        j.commit(seq, response(seq)).await.unwrap();
    }
    let held = segment_of_transaction(dir.path(), "the-tx");
    assert!(
        segment_of(dir.path(), 3) < held,
        "the entries lie before the record"
    );
    assert!(*segment_numbers(dir.path()).last().unwrap() > held + 1);
    let all: Vec<Seq> = (1..=30).collect();
    let before = everything(&j).await;

    // Everything up to the record's segment goes (its entries with it); it and the later ones
    // stay.
    let done = j.compact(30).await.unwrap();
    assert_eq!(segment_numbers(dir.path())[0], held);
    assert!(done.dropped_entries >= 3, "{done:?}");
    assert_eq!(j.get(3).await.unwrap(), None);
    assert_eq!(
        everything(&j).await,
        before[done.first_seq as usize - 1..].to_vec()
    );
    assert_eq!(
        j.find_transaction("the-tx").await.unwrap(),
        Some(record.clone())
    );
    let compacted = state(&j, &[]).await;
    drop(j);

    // Its entries are gone from the history but the record is replayed: not damage.
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(state(&j, &[]).await, compacted);
    assert_eq!(
        j.find_transaction("the-tx").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(j.compact(30).await.unwrap().dropped_entries, 0);

    // Expired, it no longer holds its segment.
    assert_eq!(j.expire_keys(time(13)).await.unwrap(), 1);
    assert_eq!(j.find_transaction("the-tx").await.unwrap(), None);
    let (doomed, _) = expected_drop(
        dir.path(),
        &all[compacted.first_seq as usize - 1..],
        30,
        &[],
    );
    assert_eq!(doomed.first(), Some(&held));
    let done = j.compact(30).await.unwrap();
    assert!(done.dropped_entries > 0);
    assert!(segment_numbers(dir.path())[0] > held);
    drop(j);
    let j = FileJournal::open_with(dir.path(), options).unwrap();
    assert_eq!(j.find_transaction("the-tx").await.unwrap(), None);
    assert_eq!(j.load_topology().await.unwrap(), Some(topology(1)));
}

/// A crash during a compaction can leave deleted segments behind holding expired transaction
/// records, without the records that expired them: reopening forgets those records again, and a
/// later record of the same id wins.
#[tokio::test]
async fn records_in_segments_a_compaction_left_behind_stay_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Never);
    let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
    j.append(entry(1)).await.unwrap();
    j.append(entry(2)).await.unwrap();
    j.end_transaction(ended("gone", &[1], &[1], 1))
        .await
        .unwrap();
    j.end_transaction(ended("again", &[2], &[2], 1))
        .await
        .unwrap();
    assert_eq!(segment_numbers(dir.path()), vec![0]);
    let first = std::fs::read(segment_path(dir.path(), 0)).unwrap();
    for seq in 3..=6 {
        j.append(entry(seq)).await.unwrap();
    }
    assert_eq!(j.expire_keys(time(2)).await.unwrap(), 2);
    for seq in 7..=14 {
        j.append(entry(seq)).await.unwrap();
    }
    // The id ends again after its record expired: a new record.
    j.end_transaction(aborted("again", &[14], 40))
        .await
        .unwrap();
    for seq in 15..=24 {
        j.append(entry(seq)).await.unwrap();
    }
    let done = j.compact(12).await.unwrap();
    // The segment holding the expiry (written before entry 7) went too.
    let kept_from = segment_numbers(dir.path())[0];
    assert!(segment_of(dir.path(), 13) >= kept_from);
    assert!(done.first_seq > 7, "{done:?}");
    let kept = state(&j, &[]).await;
    drop(j);

    // Segment 0 is back, as if the crash came before it was deleted.
    std::fs::write(segment_path(dir.path(), 0), &first).unwrap();
    let j = FileJournal::open_with(dir.path(), options).unwrap();
    assert!(!segment_path(dir.path(), 0).exists());
    assert_eq!(state(&j, &[]).await, kept);
    assert_eq!(j.find_transaction("gone").await.unwrap(), None);
    assert_eq!(
        j.find_transaction("again").await.unwrap(),
        Some(aborted("again", &[14], 40))
    );
    assert_eq!(j.expire_keys(time(39)).await.unwrap(), 0);
}

/// Transaction records, and appends carrying a transaction id, only ever go to version-2 (or
/// later) segments: a version-1 active segment is sealed first, and such a record in a version-1
/// segment is damage.
#[tokio::test]
async fn transaction_records_go_to_a_version_2_or_later_segment() {
    for with_id in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = small_segments(Durability::Batch);
        {
            let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
            fill(&j, 6, &[]).await;
        }
        let numbers = segment_numbers(dir.path());
        for &n in &numbers {
            set_version(dir.path(), n, 1);
        }
        let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
        let what = if with_id {
            j.append(in_transaction(7, "tx")).await.unwrap();
            "append record with a transaction id"
        } else {
            j.end_transaction(aborted("tx", &[6], 7)).await.unwrap();
            "transaction record"
        };
        let newest = *segment_numbers(dir.path()).last().unwrap();
        assert_eq!(newest, numbers.last().unwrap() + 1);
        assert_eq!(version_of(dir.path(), newest), 3);
        let after = state(&j, &[]).await;
        drop(j);
        let j = FileJournal::open_with(dir.path(), options.clone()).unwrap();
        assert_eq!(state(&j, &[]).await, after);
        drop(j);

        set_version(dir.path(), newest, 1);
        let err = FileJournal::open_with(dir.path(), options).unwrap_err();
        assert!(
            matches!(&err, JournalError::Corrupt { detail, .. }
                if detail.contains(&format!("{what} in a version 1 segment"))),
            "{err}"
        );
    }
}

/// Every entry of a transaction read at once takes its state from the one record.
#[tokio::test]
async fn a_large_transaction_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(dir.path(), Durability::Never);
    for seq in 1..=200 {
        j.append(in_transaction(seq, "big")).await.unwrap();
    }
    let seqs: Vec<Seq> = (1..=200).collect();
    j.end_transaction(ended("big", &seqs, &seqs, 3))
        .await
        .unwrap();
    let all = everything(&j).await;
    assert_eq!(all.len(), 200);
    for e in &all {
        assert_eq!(e.state, EntryState::Committed(response(e.seq)));
        assert_eq!(e.transaction.as_deref(), Some("big"));
    }
    assert_eq!(j.read_from(150, 3).await.unwrap(), all[149..152].to_vec());
}
