//! The file journal against its contract: round trips through close and reopen, recovery from
//! torn tails and damage, the lock, group commit, segments, and agreement with `MemoryJournal`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lockstep_journal::{
    BackendRecord, Durability, Entry, EntryState, FileJournal, FileJournalOptions, Header,
    IdempotencyKey, Journal, JournalError, MemoryJournal, RequestRecord, ResponseRecord, Seq,
    Topology,
};

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
    bytes[8] = 2;
    std::fs::write(&segment_files(dir.path())[0], &bytes).unwrap();
    let err = FileJournal::open(dir.path(), Durability::Never).unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { detail, .. } if detail.contains("version 2")),
        "{err}"
    );
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
    out.push(outcome(j.expire_keys(time(3)).await));
    out.push(outcome(j.expire_keys(time(3)).await));
    out.extend(observe(j).await);
    out
}

async fn observe(j: &dyn Journal) -> Vec<Outcome> {
    let mut out = vec![Ok(format!("last_seq {}", j.last_seq()))];
    for (from, limit) in [(0, 100), (2, 2), (4, 10), (7, 10), (1, 0)] {
        out.push(outcome(j.read_from(from, limit).await));
    }
    for seq in 0..=7 {
        out.push(outcome(j.get(seq).await));
    }
    for key in ["k1", "k2", "k3", "k4", "k5", "k6"] {
        out.push(outcome(j.find_key(key).await));
    }
    out.push(outcome(j.load_topology().await));
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
