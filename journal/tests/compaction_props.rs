//! Property test of compaction: arbitrary sequences of appends (with and without idempotency
//! keys and transaction ids), commits, acks, transaction ends, key expiries, topology saves,
//! identifier pairs recorded and forgotten, compactions and reopens, run against a `FileJournal` with small segments, a `MemoryJournal`
//! that compacts the same way and a `MemoryJournal` that never compacts (the whole history, for
//! reference).
//!
//! After every step: every call returned the same in all three; the file journal's history from
//! `first_seq` on is exactly the reference's; nothing below it is readable; every live key and
//! every transaction record not expired is still found, whole; every identifier pair not
//! forgotten is still there, in the order recorded; `first_seq` never goes back and
//! `last_seq` is the reference's; the memory journal, which drops entry by entry, has dropped at
//! least as much as the file journal, which drops whole segments. A reopen changes nothing.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lockstep_journal::{
    BackendRecord, Durability, Entry, FileJournal, FileJournalOptions, Header, IdPairs,
    IdempotencyKey, Journal, MemoryJournal, RequestRecord, ResponseRecord, Seq, Topology,
    TransactionOutcome, TransactionRecord,
};
use proptest::prelude::*;

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// The transaction ids the ops draw from (few, so that ids are ended again).
const TRANSACTIONS: u64 = 4;

fn transaction_id(n: u64) -> String {
    format!("t{n}")
}

fn entry(seq: Seq, keyed: bool, transaction: Option<u64>) -> Entry {
    let request = RequestRecord {
        method: "PUT".into(),
        uri: format!("/items/{seq}"),
        headers: vec![Header::new("x-seq", seq.to_string())],
        body: Bytes::from(format!("item {seq};").repeat(1 + seq as usize % 5)),
    };
    let key = keyed.then(|| IdempotencyKey {
        scoped: key(seq),
        fingerprint: format!("fp-{seq}"),
    });
    Entry::new(seq, String::new(), time(seq), request)
        .with_idempotency(key)
        .with_transaction(transaction.map(transaction_id))
}

fn key(seq: Seq) -> String {
    format!("k{seq}")
}

fn response(seq: Seq) -> ResponseRecord {
    ResponseRecord {
        status: 200,
        headers: vec![],
        body: Bytes::from(format!("stored {seq}")),
    }
}

fn topology(epoch: u64) -> Topology {
    Topology {
        epoch,
        primary: "a".into(),
        backends: vec![BackendRecord {
            name: "a".into(),
            url: "http://127.0.0.1:9001".into(),
            implementation: "v1".into(),
            state: "in-sync".into(),
            acked_seq: epoch,
        }],
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        keyed: bool,
        transaction: Option<u64>,
    },
    /// Ends transaction `id` over the `len` entries ending `n` back from the last one (those
    /// every journal still holds), committing them with the record when `commit`.
    EndTransaction {
        id: u64,
        n: u64,
        len: u64,
        aborted: bool,
        commit: bool,
    },
    /// Commits the entry `n` back from the last one.
    Commit(u64),
    Ack(u64),
    /// Expires the keys of entries more than `n` seqs back from the last one.
    Expire(u64),
    /// Compacts through `n` seqs back from the last one (or `n` past it, when `ahead`).
    Compact {
        n: u64,
        ahead: bool,
    },
    Topology(u64),
    /// Records pairs of backend `backend` learned from the seq `n` back from the last one.
    RecordIds {
        backend: u8,
        n: u64,
    },
    /// Forgets the pairs of backend `backend` after the seq `n` back from the last one.
    ForgetIds {
        backend: u8,
        n: u64,
    },
    Reopen,
}

fn backend(n: u8) -> String {
    format!("backend-{n}")
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (prop::bool::weighted(0.3), prop::option::weighted(0.3, 0..TRANSACTIONS))
            .prop_map(|(keyed, transaction)| Op::Append { keyed, transaction }),
        3 => (0..TRANSACTIONS, 0u64..8, 0u64..4, any::<bool>(), any::<bool>()).prop_map(
            |(id, n, len, aborted, commit)| Op::EndTransaction { id, n, len, aborted, commit }
        ),
        4 => (0u64..8).prop_map(Op::Commit),
        2 => (0u64..8).prop_map(Op::Ack),
        3 => (0u64..16).prop_map(Op::Expire),
        3 => (0u64..12, prop::bool::weighted(0.2)).prop_map(|(n, ahead)| Op::Compact { n, ahead }),
        1 => (1u64..5).prop_map(Op::Topology),
        3 => (0u8..2, 0u64..8).prop_map(|(backend, n)| Op::RecordIds { backend, n }),
        1 => (0u8..2, 0u64..12).prop_map(|(backend, n)| Op::ForgetIds { backend, n }),
        1 => Just(Op::Reopen),
    ]
}

fn options() -> FileJournalOptions {
    FileJournalOptions {
        segment_bytes: 512,
        ..FileJournalOptions::new(Durability::Never)
    }
}

/// Everything a reader can observe of the file journal.
#[derive(Debug, PartialEq)]
struct Observed {
    first_seq: Seq,
    last_seq: Seq,
    entries: Vec<Entry>,
    keys: Vec<Option<Entry>>,
    transactions: Vec<Option<TransactionRecord>>,
    topology: Option<Topology>,
    ids: Vec<IdPairs>,
}

async fn observe(j: &dyn Journal, last: Seq) -> Observed {
    let mut keys = Vec::new();
    for seq in 1..=last {
        keys.push(j.find_key(&key(seq)).await.unwrap());
    }
    Observed {
        first_seq: j.first_seq(),
        last_seq: j.last_seq(),
        entries: j.read_from(0, usize::MAX).await.unwrap(),
        keys,
        transactions: transactions(j).await,
        topology: j.load_topology().await.unwrap(),
        ids: j.load_ids().await.unwrap(),
    }
}

async fn transactions(j: &dyn Journal) -> Vec<Option<TransactionRecord>> {
    let mut found = Vec::new();
    for n in 0..TRANSACTIONS {
        found.push(j.find_transaction(&transaction_id(n)).await.unwrap());
    }
    found
}

async fn check(
    file: &FileJournal,
    memory: &MemoryJournal,
    reference: &MemoryJournal,
    first_before: Seq,
) -> Result<(), TestCaseError> {
    let last = reference.last_seq();
    let first = file.first_seq();
    prop_assert!(first >= first_before, "first_seq went back to {}", first);
    prop_assert!(
        first <= last + 1,
        "first_seq {} past last_seq {}",
        first,
        last
    );
    prop_assert_eq!(file.last_seq(), last);

    let history = reference.read_from(first, usize::MAX).await.unwrap();
    prop_assert_eq!(
        file.read_from(0, usize::MAX).await.unwrap(),
        history.clone()
    );
    if let Some(at) = history.get(history.len() / 2) {
        let tail: Vec<Entry> = history
            .iter()
            .filter(|e| e.seq >= at.seq)
            .cloned()
            .collect();
        prop_assert_eq!(file.read_from(at.seq, usize::MAX).await.unwrap(), tail);
    }
    for seq in 1..first {
        prop_assert_eq!(file.get(seq).await.unwrap(), None, "dropped seq {}", seq);
    }
    for seq in 1..=last {
        // A live key is never dropped with its entry.
        let expected = reference.find_key(&key(seq)).await.unwrap();
        prop_assert_eq!(file.find_key(&key(seq)).await.unwrap(), expected.clone());
        prop_assert_eq!(memory.find_key(&key(seq)).await.unwrap(), expected);
    }
    // A transaction record not expired is never dropped, whatever happened to its entries.
    let expected = transactions(reference).await;
    prop_assert_eq!(&transactions(file).await, &expected);
    prop_assert_eq!(&transactions(memory).await, &expected);
    prop_assert_eq!(
        file.load_topology().await.unwrap(),
        reference.load_topology().await.unwrap()
    );
    // Compaction never drops an identifier pair, nor changes their order.
    let expected = reference.load_ids().await.unwrap();
    prop_assert_eq!(&file.load_ids().await.unwrap(), &expected);
    prop_assert_eq!(&memory.load_ids().await.unwrap(), &expected);

    let memory_first = memory.first_seq();
    prop_assert!(
        memory_first >= first,
        "the memory journal starts at {} but the file journal at {}",
        memory_first,
        first
    );
    prop_assert_eq!(
        memory.read_from(0, usize::MAX).await.unwrap(),
        reference.read_from(memory_first, usize::MAX).await.unwrap()
    );
    Ok(())
}

fn outcome(r: Result<(), lockstep_journal::JournalError>) -> Result<(), String> {
    r.map_err(|e| e.to_string())
}

async fn run(dir: &Path, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut file = FileJournal::open_with(dir, options()).unwrap();
    let memory = MemoryJournal::new();
    let reference = MemoryJournal::new();
    let journals: [&dyn Journal; 2] = [&memory, &reference];
    for (step, op) in ops.into_iter().enumerate() {
        let last = reference.last_seq();
        let first_before = file.first_seq();
        let back = |n: u64| last.saturating_sub(n);
        match op {
            Op::Append { keyed, transaction } => {
                let e = entry(last + 1, keyed, transaction);
                file.append(e.clone()).await.unwrap();
                for j in journals {
                    j.append(e.clone()).await.unwrap();
                }
            }
            Op::EndTransaction {
                id,
                n,
                len,
                aborted,
                commit,
            } => {
                // Only entries every journal still holds (the memory journal drops the most);
                // `len` 0 (or nothing left) ends it over no entry.
                let lowest = memory.first_seq().max(1);
                let end = back(n);
                let seqs: Vec<Seq> = (end.saturating_sub(len) + 1..=end)
                    .filter(|&s| s >= lowest)
                    .collect();
                let record = TransactionRecord {
                    id: transaction_id(id),
                    outcome: if aborted {
                        TransactionOutcome::Aborted(format!("abort at step {step}"))
                    } else {
                        TransactionOutcome::Committed
                    },
                    commits: if commit {
                        seqs.iter().map(|&s| (s, response(s))).collect()
                    } else {
                        Vec::new()
                    },
                    seqs,
                    time: time(end),
                };
                let expected = outcome(reference.end_transaction(record.clone()).await);
                let got = outcome(file.end_transaction(record.clone()).await);
                prop_assert_eq!(&got, &expected, "step {}", step);
                let got = outcome(memory.end_transaction(record).await);
                prop_assert_eq!(&got, &expected, "step {}", step);
            }
            Op::Commit(n) | Op::Ack(n) => {
                // Only entries the file journal still holds: the others are gone from it.
                let seq = back(n);
                if seq >= file.first_seq() && seq > 0 {
                    let commit = matches!(op, Op::Commit(_));
                    let all: [&dyn Journal; 3] = [&file, &memory, &reference];
                    for j in all {
                        if commit {
                            let _ = j.commit(seq, response(seq)).await;
                        } else {
                            let _ = j.record_ack(seq, "b").await;
                        }
                    }
                }
            }
            Op::Expire(n) => {
                let before = time(back(n));
                let expired = file.expire_keys(before).await.unwrap();
                prop_assert_eq!(memory.expire_keys(before).await.unwrap(), expired);
                prop_assert_eq!(reference.expire_keys(before).await.unwrap(), expired);
            }
            Op::Compact { n, ahead } => {
                let through = if ahead { last + n } else { back(n) };
                let count = file.read_from(0, usize::MAX).await.unwrap().len() as u64;
                let done = file.compact(through).await.unwrap();
                prop_assert_eq!(done.first_seq, file.first_seq());
                let now = file.read_from(0, usize::MAX).await.unwrap().len() as u64;
                prop_assert_eq!(done.dropped_entries, count - now, "step {}", step);
                // A segment may hold no entry (only acks, say), but never an entry and no bytes.
                prop_assert!(done.dropped_entries == 0 || done.dropped_bytes > 0);
                let done = memory.compact(through).await.unwrap();
                prop_assert_eq!(done.first_seq, memory.first_seq());
            }
            Op::Topology(epoch) => {
                file.save_topology(&topology(epoch)).await.unwrap();
                for j in journals {
                    j.save_topology(&topology(epoch)).await.unwrap();
                }
            }
            Op::RecordIds { backend: b, n } => {
                let seq = back(n);
                let pairs = vec![(format!("c{step}"), format!("{}-{step}", backend(b)))];
                file.record_ids(seq, &backend(b), pairs.clone())
                    .await
                    .unwrap();
                for j in journals {
                    j.record_ids(seq, &backend(b), pairs.clone()).await.unwrap();
                }
            }
            Op::ForgetIds { backend: b, n } => {
                file.forget_ids(&backend(b), back(n)).await.unwrap();
                for j in journals {
                    j.forget_ids(&backend(b), back(n)).await.unwrap();
                }
            }
            Op::Reopen => {
                let before = observe(&file, last).await;
                drop(file);
                file = FileJournal::open_with(dir, options()).unwrap();
                prop_assert_eq!(observe(&file, last).await, before, "step {}", step);
            }
        }
        check(&file, &memory, &reference, first_before).await?;
    }
    let last = reference.last_seq();
    let before = observe(&file, last).await;
    drop(file);
    let file = FileJournal::open_with(dir, options()).unwrap();
    prop_assert_eq!(observe(&file, last).await, before);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compaction_keeps_the_history_from_first_seq_and_every_live_key(
        ops in prop::collection::vec(op(), 1..80)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(run(dir.path(), ops))?;
    }
}
