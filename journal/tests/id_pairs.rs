//! The identifier pairs of the file journal (`record_ids`, `forget_ids`, `load_ids`) against
//! their contract: they survive a restart in every durability mode and a torn tail is cut away;
//! forgetting drops exactly the later seqs of one backend, also across a restart and when it
//! races the recording of new pairs; compaction (and a crash at any point of it) keeps every
//! pair, in the order recorded; they only ever go to segments of format version 3.

#[path = "support/segments.rs"]
mod segments;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lockstep_journal::{
    Durability, Entry, FileJournal, FileJournalOptions, IdPairs, Journal, JournalError,
    MemoryJournal, RequestRecord, ResponseRecord, Seq,
};
use segments::{copy_dir, crashed_compaction, segment_numbers, segment_path};

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn entry(seq: Seq) -> Entry {
    let request = RequestRecord {
        method: "POST".into(),
        uri: format!("/accounts?n={seq}"),
        headers: vec![],
        body: Bytes::from(format!("{{\"owner\":\"o{seq}\"}}")),
    };
    Entry::new(seq, String::new(), time(seq), request)
}

fn response(seq: Seq) -> ResponseRecord {
    ResponseRecord {
        status: 201,
        headers: vec![],
        body: Bytes::from(format!("{{\"id\":\"acct-{seq}\"}}")),
    }
}

/// What `backend` minted for the create at `seq`: the canonical ids are the same for every
/// backend, the local ones are its own.
fn pairs(backend: &str, seq: Seq) -> Vec<(String, String)> {
    vec![
        (format!("acct-{seq}"), format!("{backend}-acct-{seq}")),
        (format!("card-{seq}"), format!("{backend}-card-{seq}")),
    ]
}

fn group(backend: &str, seq: Seq) -> IdPairs {
    IdPairs {
        backend: backend.into(),
        seq,
        pairs: pairs(backend, seq),
    }
}

fn open(dir: &Path, options: &FileJournalOptions) -> FileJournal {
    FileJournal::open_with(dir, options.clone()).expect("journal opens")
}

fn small_segments(durability: Durability) -> FileJournalOptions {
    FileJournalOptions {
        segment_bytes: 1024,
        ..FileJournalOptions::new(durability)
    }
}

/// The segments holding a record of the local id `local` (only the records of its pairs carry
/// it), found by its encoding: its length, then its bytes.
fn segments_holding(dir: &Path, local: &str) -> Vec<u64> {
    let mut needle = (local.len() as u32).to_le_bytes().to_vec();
    needle.extend_from_slice(local.as_bytes());
    segment_numbers(dir)
        .into_iter()
        .filter(|&n| {
            let bytes = std::fs::read(segment_path(dir, n)).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

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

/// Appends `seqs` as the gateway does with two backups: each one's pairs are recorded before its
/// ack, then the entry commits. Backup `b` answers every create, `c` every third one. Returns the
/// groups recorded, in order.
async fn serve(j: &dyn Journal, seqs: std::ops::RangeInclusive<Seq>) -> Vec<IdPairs> {
    let mut recorded = Vec::new();
    for seq in seqs {
        j.append(entry(seq)).await.unwrap();
        for backend in ["b", "c"] {
            if backend == "c" && seq % 3 != 0 {
                continue;
            }
            j.record_ids(seq, backend, pairs(backend, seq))
                .await
                .unwrap();
            j.record_ack(seq, backend).await.unwrap();
            recorded.push(group(backend, seq));
        }
        j.commit(seq, response(seq)).await.unwrap();
    }
    recorded
}

#[tokio::test]
async fn pairs_survive_a_restart_in_every_durability_mode() {
    for durability in [Durability::Always, Durability::Batch, Durability::Never] {
        let dir = tempfile::tempdir().unwrap();
        let options = FileJournalOptions::new(durability);
        let memory = MemoryJournal::new();
        let recorded = {
            let j = open(dir.path(), &options);
            let recorded = serve(&j, 1..=20).await;
            assert_eq!(serve(&memory, 1..=20).await, recorded);
            // No pairs: nothing is recorded.
            j.record_ids(21, "b", vec![]).await.unwrap();
            assert_eq!(j.load_ids().await.unwrap(), recorded, "{durability:?}");
            recorded
        };
        assert_eq!(recorded.len(), 20 + 6);
        let j = open(dir.path(), &options);
        assert_eq!(j.load_ids().await.unwrap(), recorded, "{durability:?}");
        assert_eq!(memory.load_ids().await.unwrap(), recorded);
        // Still recording after the restart, after what was there.
        j.record_ids(3, "c", pairs("c", 3)).await.unwrap();
        drop(j);
        let j = open(dir.path(), &options);
        let mut expected = recorded;
        expected.push(group("c", 3));
        assert_eq!(j.load_ids().await.unwrap(), expected, "{durability:?}");
    }
}

#[tokio::test]
async fn forgetting_keeps_the_pairs_up_to_the_seq_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileJournalOptions::new(Durability::Batch);
    let j = open(dir.path(), &options);
    let recorded = serve(&j, 1..=9).await;

    // b's copy restarts from its state at seq 4: what it answered after that is forgotten.
    j.forget_ids("b", 4).await.unwrap();
    let kept: Vec<IdPairs> = recorded
        .iter()
        .filter(|g| g.backend != "b" || g.seq <= 4)
        .cloned()
        .collect();
    assert_eq!(j.load_ids().await.unwrap(), kept);
    drop(j);
    let j = open(dir.path(), &options);
    assert_eq!(j.load_ids().await.unwrap(), kept);

    // It relearns them from the replayed requests: listed after the older groups. Forgetting
    // again from a later seq, or for a backend without pairs, keeps everything else.
    let mut relearned = kept.clone();
    for seq in 5..=9 {
        j.record_ids(seq, "b", pairs("b", seq)).await.unwrap();
        relearned.push(group("b", seq));
    }
    j.forget_ids("b", 9).await.unwrap();
    j.forget_ids("nobody", 0).await.unwrap();
    assert_eq!(j.load_ids().await.unwrap(), relearned);
    // 0 forgets every pair of the backend.
    j.forget_ids("c", 0).await.unwrap();
    let only_b: Vec<IdPairs> = relearned
        .iter()
        .filter(|g| g.backend == "b")
        .cloned()
        .collect();
    assert_eq!(j.load_ids().await.unwrap(), only_b);
    drop(j);
    let j = open(dir.path(), &options);
    assert_eq!(j.load_ids().await.unwrap(), only_b);
    j.forget_ids("b", 0).await.unwrap();
    drop(j);
    let j = open(dir.path(), &options);
    assert_eq!(j.load_ids().await.unwrap(), vec![]);
}

#[tokio::test]
async fn pairs_of_several_backends_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileJournalOptions::new(Durability::Always);
    let j = open(dir.path(), &options);
    j.append(entry(1)).await.unwrap();
    // The same create, the same canonical ids, a local id of each backend's own.
    for backend in ["b", "c", "d"] {
        j.record_ids(1, backend, pairs(backend, 1)).await.unwrap();
    }
    j.forget_ids("c", 0).await.unwrap();
    let expected = vec![group("b", 1), group("d", 1)];
    assert_eq!(j.load_ids().await.unwrap(), expected);
    for g in &expected {
        assert_eq!(g.pairs[0].0, "acct-1");
        assert_eq!(g.pairs[0].1, format!("{}-acct-1", g.backend));
    }
    drop(j);
    let j = open(dir.path(), &options);
    assert_eq!(j.load_ids().await.unwrap(), expected);
}

/// Forgetting waits for an fsync (in every mode) while pairs recorded meanwhile do not: a
/// forgetting forgets exactly the pairs written before it, also those written right after it in
/// one batch, live as on a replay.
#[tokio::test]
async fn a_forgetting_spares_the_pairs_recorded_right_after_it() {
    for durability in [Durability::Always, Durability::Never] {
        let dir = tempfile::tempdir().unwrap();
        let options = FileJournalOptions::new(durability);
        let j = open(dir.path(), &options);
        for round in 0..20 {
            // All three are queued at once, in this order; the large write keeps the writer
            // busy meanwhile, so that the other two share a batch.
            let large = vec![("blob".to_owned(), "x".repeat(64 << 10))];
            let seq = 100 + round;
            let (large, forget, new) = tokio::join!(
                biased;
                j.record_ids(round, "a", large),
                j.forget_ids("b", 0),
                j.record_ids(seq, "b", pairs("b", seq)),
            );
            large.unwrap();
            forget.unwrap();
            new.unwrap();
            let ids = j.load_ids().await.unwrap();
            let of_b: Vec<&IdPairs> = ids.iter().filter(|g| g.backend == "b").collect();
            assert_eq!(
                of_b,
                vec![&group("b", seq)],
                "{durability:?}, round {round}"
            );
        }
        let live = j.load_ids().await.unwrap();
        assert_eq!(live.len(), 21);
        drop(j);
        let j = open(dir.path(), &options);
        assert_eq!(j.load_ids().await.unwrap(), live, "{durability:?}");
    }
}

#[tokio::test]
async fn compaction_keeps_every_pair_in_the_order_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Always);
    let j = open(dir.path(), &options);
    let mut expected = serve(&j, 1..=40).await;
    assert_eq!(segments_holding(dir.path(), "b-acct-1"), vec![0]);
    let holding_40 = segments_holding(dir.path(), "b-acct-40");
    assert!(holding_40[0] > 4, "{holding_40:?}");

    // Part of the history goes: the pairs in the deleted segments are written again to the
    // active one, after the pairs recorded since, but are still listed first.
    let done = j.compact(20).await.unwrap();
    assert!(done.first_seq > 10, "{done:?}");
    assert!(!segment_path(dir.path(), 0).exists());
    assert_eq!(j.get(1).await.unwrap(), None);
    let active = *segment_numbers(dir.path()).last().unwrap();
    assert_eq!(segments_holding(dir.path(), "b-acct-1"), vec![active]);
    assert_eq!(segments_holding(dir.path(), "b-acct-40"), holding_40);
    assert_eq!(j.load_ids().await.unwrap(), expected);
    drop(j);
    let j = open(dir.path(), &options);
    assert_eq!(j.load_ids().await.unwrap(), expected);

    // More history, then a compaction past every seq: the copies are copied again, and
    // forgetting still reaches them.
    expected.extend(serve(&j, 41..=60).await);
    let done = j.compact(1000).await.unwrap();
    assert!(done.first_seq > 41, "{done:?}");
    assert!(!segment_path(dir.path(), active).exists());
    assert!(!segment_path(dir.path(), holding_40[0]).exists());
    let active = *segment_numbers(dir.path()).last().unwrap();
    assert_eq!(segments_holding(dir.path(), "b-acct-1"), vec![active]);
    assert_eq!(segments_holding(dir.path(), "b-acct-40"), vec![active]);
    assert_eq!(j.load_ids().await.unwrap(), expected);
    j.forget_ids("c", 30).await.unwrap();
    expected.retain(|g| g.backend != "c" || g.seq <= 30);
    assert_eq!(j.load_ids().await.unwrap(), expected);
    drop(j);
    let j = open(dir.path(), &options);
    assert_eq!(j.load_ids().await.unwrap(), expected);
    expected.extend(serve(&j, 61..=80).await);
    let first = j.compact(1000).await.unwrap().first_seq;
    assert!(first > 61);
    drop(j);
    let j = open(dir.path(), &options);
    assert_eq!(j.load_ids().await.unwrap(), expected);
    assert_eq!(j.first_seq(), first);
}

/// The pairs are read back from their records when loaded: a load racing compactions (which
/// write groups again and delete their old segments) still lists every group recorded before it,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_while_compacting_lists_every_pair_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Never);
    let j = std::sync::Arc::new(open(dir.path(), &options));
    let mut expected = serve(&*j, 1..=20).await;
    let recorded_before = expected.len();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let (j, stop) = (j.clone(), stop.clone());
        tokio::spawn(async move {
            let mut loads = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                loads.push(j.load_ids().await.unwrap());
                tokio::task::yield_now().await;
            }
            loads
        })
    };
    for round in 0..10 {
        let from = 21 + round * 10;
        expected.extend(serve(&*j, from..=from + 9).await);
        j.compact(from + 5).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let loads = loader.await.unwrap();
    for load in &loads {
        assert!(
            load.len() >= recorded_before,
            "a load sees the pairs of seqs 1..=20"
        );
        assert_eq!(load[..], expected[..load.len()]);
    }
    assert_eq!(j.load_ids().await.unwrap(), expected);
    drop(loads);
    let j = std::sync::Arc::into_inner(j).unwrap();
    drop(j);
    let j = open(dir.path(), &options);
    assert_eq!(j.load_ids().await.unwrap(), expected);
}

/// A record damaged after it was replayed is found when its pairs are read back: loading them
/// fails, and so does a compaction that would write them again, which then changes nothing.
#[tokio::test]
async fn a_damaged_identifier_record_is_found_when_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Always);
    let j = open(dir.path(), &options);
    let expected = serve(&j, 1..=20).await;
    assert_eq!(segments_holding(dir.path(), "b-acct-1"), vec![0]);
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"b-acct-1";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at] = b'x';
    std::fs::write(&path, &bytes).unwrap();

    let err = j.load_ids().await.unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    let segments = segment_numbers(dir.path());
    let err = j.compact(20).await.unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    assert_eq!(segment_numbers(dir.path()), segments);
    assert_eq!(j.first_seq(), 1);

    // Repaired, it loads again, and the journal still writes and compacts.
    bytes[at] = b'b';
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(j.load_ids().await.unwrap(), expected);
    assert!(j.compact(20).await.unwrap().first_seq > 1);
    assert_eq!(j.load_ids().await.unwrap(), expected);
}

/// The segment holding the record forgetting the pairs of `backend` after `after` (its kind, 13,
/// then its fields).
fn segment_of_forgetting(dir: &Path, backend: &str, after: Seq) -> u64 {
    let mut needle = vec![13];
    needle.extend_from_slice(&after.to_le_bytes());
    needle.extend_from_slice(&(backend.len() as u32).to_le_bytes());
    needle.extend_from_slice(backend.as_bytes());
    let found: Vec<u64> = segment_numbers(dir)
        .into_iter()
        .filter(|&n| {
            let bytes = std::fs::read(segment_path(dir, n)).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect();
    assert_eq!(found.len(), 1, "the record is in segments {found:?}");
    found[0]
}

/// The frames in `bytes` from `from` on: where each starts, and where the last one ends.
fn frame_starts(bytes: &[u8], from: usize) -> Vec<usize> {
    let mut starts = vec![from];
    let mut at = from;
    while at + 8 <= bytes.len() {
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        starts.push(at);
    }
    starts
}

/// A crash anywhere in a compaction loses no pair and brings no forgotten one back: before its
/// `Compacted` record is complete (some copies of the pairs written, or none), the journal
/// reopens with every pair once, in its place; after it, whichever deleted files are still there.
#[tokio::test]
async fn a_crash_during_compaction_keeps_every_pair() {
    let template = tempfile::tempdir().unwrap();
    let options = small_segments(Durability::Always);
    let expected = {
        let j = open(template.path(), &options);
        serve(&j, 1..=10).await;
        // Some pairs are forgotten and relearned (the copy minted other ids this time): the
        // forgotten ones, and the record forgetting them, lie in the segments the compaction
        // deletes.
        j.forget_ids("b", 3).await.unwrap();
        for seq in 4..=6 {
            j.record_ids(seq, "b", pairs("b-again", seq)).await.unwrap();
        }
        serve(&j, 11..=40).await;
        j.load_ids().await.unwrap()
    };
    assert_eq!(expected.len(), 3 + 3 + 30 + 13);
    let all_segments = segment_numbers(template.path());
    let forgetting = segment_of_forgetting(template.path(), "b", 3);

    let done = tempfile::tempdir().unwrap();
    copy_dir(template.path(), done.path());
    let result = {
        let j = open(done.path(), &options);
        let result = j.compact(30).await.unwrap();
        assert_eq!(j.load_ids().await.unwrap(), expected);
        result
    };
    let deleted: Vec<u64> = all_segments
        .iter()
        .copied()
        .filter(|n| !segment_numbers(done.path()).contains(n))
        .collect();
    assert!(deleted.len() >= 3, "{deleted:?}");
    // The copies may not fit in the segment being written: then it is sealed and they go to a
    // new one.
    let active = *segment_numbers(done.path()).last().unwrap();
    let active_before = std::fs::metadata(segment_path(template.path(), active))
        .map(|m| m.len())
        .unwrap_or(16) as usize;
    let mut written_segments = all_segments.clone();
    if !written_segments.contains(&active) {
        written_segments.push(active);
    }
    let active_bytes = std::fs::read(segment_path(done.path(), active)).unwrap();
    let starts = frame_starts(&active_bytes, active_before);
    assert!(starts.len() > 4, "the copies, then the compaction record");
    assert_eq!(*starts.last().unwrap(), active_bytes.len());

    let reopened = |dir: &Path| {
        let j = open(dir, &options);
        async move {
            let ids = j.load_ids().await.unwrap();
            (j, ids)
        }
    };

    // The compaction record is durable; some or all of the deleted files are still there.
    assert!(deleted.contains(&forgetting) && forgetting > deleted[0]);
    let n = deleted.len();
    let but_forgetting = deleted.iter().copied().filter(|&d| d != forgetting);
    for (case, left) in [
        ("none deleted yet", deleted.clone()),
        ("the oldest deleted", deleted[n / 2..].to_vec()),
        ("only the oldest left", deleted[..1].to_vec()),
        ("all but the forgetting left", but_forgetting.collect()),
    ] {
        let dir = crashed_compaction(done.path(), template.path(), &left, None);
        let (j, ids) = reopened(dir.path()).await;
        assert_eq!(ids, expected, "{case}");
        drop(j);
        assert_eq!(segment_numbers(dir.path()), segment_numbers(done.path()));
        assert_eq!(reopened(dir.path()).await.1, expected, "{case}");
    }

    // The crash came before the compaction record was complete: at a frame boundary (some
    // copies complete), in a frame header or in a body.
    let cuts = starts[..starts.len() - 1]
        .iter()
        .flat_map(|&s| [s, s + 3, s + 11]);
    for cut in cuts {
        let dir = crashed_compaction(
            done.path(),
            template.path(),
            &deleted,
            Some((active, cut as u64)),
        );
        let (j, ids) = reopened(dir.path()).await;
        assert_eq!(ids, expected, "cut at {cut}");
        assert_eq!(
            segment_numbers(dir.path()),
            written_segments,
            "cut at {cut}"
        );
        // Compacting again gives the same result, and a restart after it too.
        assert_eq!(j.compact(30).await.unwrap(), result, "cut at {cut}");
        assert_eq!(j.load_ids().await.unwrap(), expected, "cut at {cut}");
        drop(j);
        assert_eq!(reopened(dir.path()).await.1, expected, "cut at {cut}");
    }
}

#[tokio::test]
async fn a_torn_identifier_record_at_the_tail_is_cut_away() {
    let src = tempfile::tempdir().unwrap();
    let options = FileJournalOptions::new(Durability::Never);
    let (bytes, last_start) = {
        let j = open(src.path(), &options);
        serve(&j, 1..=2).await;
        let last_start = std::fs::metadata(segment_path(src.path(), 0))
            .unwrap()
            .len() as usize;
        j.record_ids(3, "b", pairs("b", 3)).await.unwrap();
        drop(j);
        (
            std::fs::read(segment_path(src.path(), 0)).unwrap(),
            last_start,
        )
    };
    assert!(
        bytes.len() - last_start > 40,
        "the record has several bytes"
    );
    let kept = vec![group("b", 1), group("b", 2)];

    for cut in last_start..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 0), &bytes[..cut]).unwrap();
        let j = FileJournal::open_with(dir.path(), options.clone())
            .unwrap_or_else(|e| panic!("cut at {cut}: open failed: {e}"));
        assert_eq!(j.load_ids().await.unwrap(), kept, "cut at {cut}");
        let len = std::fs::metadata(segment_path(dir.path(), 0))
            .unwrap()
            .len() as usize;
        assert_eq!(
            len, last_start,
            "cut at {cut}: the torn record is truncated away"
        );
        j.record_ids(3, "b", pairs("b", 3)).await.unwrap();
        drop(j);
        let j = open(dir.path(), &options);
        let mut all = kept.clone();
        all.push(group("b", 3));
        assert_eq!(j.load_ids().await.unwrap(), all, "cut at {cut}");
    }

    // Damage in the middle of one is no torn tail.
    let dir = tempfile::tempdir().unwrap();
    let mut damaged = bytes.clone();
    damaged[last_start - 5] ^= 0x40;
    std::fs::write(segment_path(dir.path(), 0), &damaged).unwrap();
    let err = FileJournal::open_with(dir.path(), options).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
}

/// Records about identifier pairs only ever go to version-3 segments: a version-2 active segment
/// (written by an older build, which a newer one reads as it is) is sealed first, and such a
/// record in a version-2 segment is damage, so that an older build refuses the segment by its
/// header instead of meeting a record it does not know.
#[tokio::test]
async fn identifier_records_go_to_a_version_3_segment() {
    for forget in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = small_segments(Durability::Batch);
        {
            let j = open(dir.path(), &options);
            for seq in 1..=6 {
                j.append(entry(seq)).await.unwrap();
                j.commit(seq, response(seq)).await.unwrap();
            }
        }
        let numbers = segment_numbers(dir.path());
        for &n in &numbers {
            assert_eq!(version_of(dir.path(), n), 3);
            set_version(dir.path(), n, 2);
        }
        let j = open(dir.path(), &options);
        assert_eq!(j.read_from(0, 100).await.unwrap().len(), 6);
        let what = if forget {
            j.forget_ids("b", 0).await.unwrap();
            "record forgetting identifiers"
        } else {
            j.record_ids(6, "b", pairs("b", 6)).await.unwrap();
            "identifier record"
        };
        let newest = *segment_numbers(dir.path()).last().unwrap();
        assert_eq!(newest, numbers.last().unwrap() + 1);
        assert_eq!(version_of(dir.path(), newest), 3);
        let ids = j.load_ids().await.unwrap();
        drop(j);
        let j = open(dir.path(), &options);
        assert_eq!(j.load_ids().await.unwrap(), ids);
        assert_eq!(j.read_from(0, 100).await.unwrap().len(), 6);
        drop(j);

        set_version(dir.path(), newest, 2);
        let err = FileJournal::open_with(dir.path(), options).unwrap_err();
        assert!(
            matches!(&err, JournalError::Corrupt { detail, .. }
                if detail.contains(&format!("{what} in a version 2 segment"))),
            "{err}"
        );
    }
}
