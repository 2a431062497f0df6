//! An in-memory journal: the history lives as long as the process. Useful for tests and for
//! deployments that accept losing the history on a gateway restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::{
    Compaction, Entry, EntryState, IdPairs, Journal, JournalError, ResponseRecord, Seq, Topology,
    TransactionOutcome, TransactionRecord,
};

#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<BTreeMap<Seq, Entry>>,
    /// Scoped idempotency key → seq.
    keys: Mutex<HashMap<String, Seq>>,
    /// Transaction id → the record that ended it, kept apart from the entries: compaction never
    /// drops one, only [`Journal::expire_keys`] does.
    transactions: Mutex<HashMap<String, TransactionRecord>>,
    topology: Mutex<Option<Topology>>,
    /// Identifier pairs as recorded, oldest first; like the topology, compaction never drops
    /// them, only [`Journal::forget_ids`] does.
    ids: Mutex<Vec<IdPairs>>,
    last: AtomicU64,
    /// The highest seq compaction dropped (0 when none): the history starts after it.
    compacted_through: AtomicU64,
}

impl MemoryJournal {
    pub fn new() -> Self {
        Self::default()
    }

    fn update<T>(&self, seq: Seq, f: impl FnOnce(&mut Entry) -> T) -> Result<T, JournalError> {
        let mut entries = self.entries.lock();
        let entry = entries
            .get_mut(&seq)
            .ok_or(JournalError::UnknownSeq { seq })?;
        Ok(f(entry))
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn append(&self, entry: Entry) -> Result<(), JournalError> {
        let seq = entry.seq;
        let mut entries = self.entries.lock();
        if entries.contains_key(&seq) || seq <= self.compacted_through.load(Ordering::Acquire) {
            return Err(JournalError::DuplicateSeq { seq });
        }
        if let Some(key) = &entry.idempotency {
            self.keys.lock().insert(key.scoped.clone(), seq);
        }
        entries.insert(seq, entry);
        self.last.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    async fn record_response(
        &self,
        seq: Seq,
        response: ResponseRecord,
    ) -> Result<(), JournalError> {
        self.update(seq, |e| {
            if matches!(e.state, EntryState::Pending) {
                e.state = EntryState::Answered(response);
            }
        })
    }

    async fn record_dispatch(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        self.update(seq, |e| e.dispatched.push(backend.to_owned()))
    }

    async fn record_undelivered(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        self.update(seq, |e| e.undelivered.push(backend.to_owned()))
    }

    async fn record_ack(&self, seq: Seq, backend: &str) -> Result<(), JournalError> {
        self.update(seq, |e| e.acks.push(backend.to_owned()))
    }

    async fn commit(&self, seq: Seq, response: ResponseRecord) -> Result<(), JournalError> {
        self.update(seq, |e| e.state = EntryState::Committed(response))
    }

    async fn abort(&self, seq: Seq, reason: String) -> Result<(), JournalError> {
        self.update(seq, |e| e.state = EntryState::Aborted(reason))
    }

    async fn end_transaction(&self, record: TransactionRecord) -> Result<(), JournalError> {
        let mut entries = self.entries.lock();
        let mut transactions = self.transactions.lock();
        if transactions.contains_key(&record.id) {
            return Err(JournalError::TransactionEnded { id: record.id });
        }
        let named = record
            .seqs
            .iter()
            .chain(record.commits.iter().map(|(s, _)| s));
        if let Some(&seq) = named.into_iter().find(|s| !entries.contains_key(s)) {
            return Err(JournalError::UnknownSeq { seq });
        }
        for (seq, response) in &record.commits {
            if let Some(e) = entries.get_mut(seq) {
                e.state = EntryState::Committed(response.clone());
            }
        }
        if let TransactionOutcome::Aborted(reason) = &record.outcome {
            for seq in &record.seqs {
                let entry = entries.get_mut(seq);
                if let Some(e) = entry.filter(|e| !matches!(e.state, EntryState::Committed(_))) {
                    e.state = EntryState::Aborted(reason.clone());
                }
            }
        }
        transactions.insert(record.id.clone(), record);
        Ok(())
    }

    async fn find_transaction(&self, id: &str) -> Result<Option<TransactionRecord>, JournalError> {
        Ok(self.transactions.lock().get(id).cloned())
    }

    async fn read_from(&self, from: Seq, limit: usize) -> Result<Vec<Entry>, JournalError> {
        let entries = self.entries.lock();
        Ok(entries
            .range(from..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn get(&self, seq: Seq) -> Result<Option<Entry>, JournalError> {
        Ok(self.entries.lock().get(&seq).cloned())
    }

    fn last_seq(&self) -> Seq {
        self.last.load(Ordering::Acquire)
    }

    fn first_seq(&self) -> Seq {
        self.compacted_through.load(Ordering::Acquire) + 1
    }

    async fn compact(&self, through: Seq) -> Result<Compaction, JournalError> {
        let mut entries = self.entries.lock();
        let live: HashSet<Seq> = self.keys.lock().values().copied().collect();
        let mut compaction = Compaction::default();
        while let Some(oldest) = entries.first_entry() {
            let seq = *oldest.key();
            if seq > through || live.contains(&seq) {
                break;
            }
            let entry = oldest.remove();
            compaction.dropped_entries += 1;
            compaction.dropped_bytes += payload_bytes(&entry);
            self.compacted_through.fetch_max(seq, Ordering::AcqRel);
        }
        compaction.first_seq = self.first_seq();
        Ok(compaction)
    }

    async fn find_key(&self, scoped: &str) -> Result<Option<Entry>, JournalError> {
        let Some(seq) = self.keys.lock().get(scoped).copied() else {
            return Ok(None);
        };
        Ok(self.entries.lock().get(&seq).cloned())
    }

    async fn expire_keys(&self, before: SystemTime) -> Result<usize, JournalError> {
        let entries = self.entries.lock();
        let mut keys = self.keys.lock();
        let mut transactions = self.transactions.lock();
        let n = keys.len() + transactions.len();
        keys.retain(|_, seq| entries.get(seq).is_some_and(|e| e.time >= before));
        transactions.retain(|_, t| t.time >= before);
        Ok(n - keys.len() - transactions.len())
    }

    async fn save_topology(&self, topology: &Topology) -> Result<(), JournalError> {
        *self.topology.lock() = Some(topology.clone());
        Ok(())
    }

    async fn load_topology(&self) -> Result<Option<Topology>, JournalError> {
        Ok(self.topology.lock().clone())
    }

    async fn record_ids(
        &self,
        seq: Seq,
        backend: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<(), JournalError> {
        if !pairs.is_empty() {
            self.ids.lock().push(IdPairs {
                backend: backend.to_owned(),
                seq,
                pairs,
            });
        }
        Ok(())
    }

    async fn forget_ids(&self, backend: &str, after: Seq) -> Result<(), JournalError> {
        self.ids
            .lock()
            .retain(|g| g.backend != backend || g.seq <= after);
        Ok(())
    }

    async fn load_ids(&self) -> Result<Vec<IdPairs>, JournalError> {
        Ok(self.ids.lock().clone())
    }
}

/// The bytes an entry's requests and responses hold (what dropping it gives back, roughly).
fn payload_bytes(entry: &Entry) -> u64 {
    let headers =
        |h: &[crate::Header]| -> usize { h.iter().map(|h| h.name.len() + h.value.len()).sum() };
    let response = |r: &ResponseRecord| headers(&r.headers) + r.body.len();
    let r = &entry.request;
    let state = match &entry.state {
        EntryState::Pending => 0,
        EntryState::Answered(resp) | EntryState::Committed(resp) => response(resp),
        EntryState::Aborted(reason) => reason.len(),
    };
    (r.method.len() + r.uri.len() + headers(&r.headers) + r.body.len() + state) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestRecord;
    use std::time::SystemTime;

    fn entry(seq: Seq) -> Entry {
        let request = RequestRecord {
            method: "POST".into(),
            uri: format!("/r/{seq}"),
            headers: vec![],
            body: bytes::Bytes::from_static(b"{}"),
        };
        Entry::new(seq, String::new(), SystemTime::UNIX_EPOCH, request)
    }

    fn response(status: u16) -> ResponseRecord {
        ResponseRecord {
            status,
            headers: vec![],
            body: bytes::Bytes::from_static(b"ok"),
        }
    }

    #[tokio::test]
    async fn entries_move_from_pending_to_committed() {
        let j = MemoryJournal::new();
        j.append(entry(1)).await.unwrap();
        j.append(entry(2)).await.unwrap();
        j.record_response(1, response(201)).await.unwrap();
        j.record_ack(1, "b").await.unwrap();
        j.commit(1, response(201)).await.unwrap();
        j.abort(2, "primary unreachable".into()).await.unwrap();

        let all = j.read_from(1, 10).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].state, EntryState::Committed(response(201)));
        assert_eq!(all[0].acks, vec!["b".to_string()]);
        assert_eq!(
            all[1].state,
            EntryState::Aborted("primary unreachable".into())
        );
        assert_eq!(j.last_seq(), 2);
    }

    #[tokio::test]
    async fn read_from_is_ordered_and_bounded() {
        let j = MemoryJournal::new();
        for seq in [3, 1, 2, 5, 4] {
            j.append(entry(seq)).await.unwrap();
        }
        let seqs: Vec<Seq> = j
            .read_from(2, 3)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![2, 3, 4]);
    }

    fn keyed(seq: Seq, key: &str) -> Entry {
        entry(seq).with_idempotency(Some(crate::IdempotencyKey {
            scoped: key.into(),
            fingerprint: format!("fp-{seq}"),
        }))
    }

    async fn seqs(j: &MemoryJournal, from: Seq) -> Vec<Seq> {
        let entries = j.read_from(from, usize::MAX).await.unwrap();
        entries.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn an_empty_journal_starts_at_one_and_compacts_nothing() {
        let j = MemoryJournal::new();
        assert_eq!(j.first_seq(), 1);
        assert_eq!(
            j.compact(10).await.unwrap(),
            Compaction {
                first_seq: 1,
                dropped_entries: 0,
                dropped_bytes: 0
            }
        );
        assert_eq!(j.first_seq(), 1);
        assert_eq!(j.last_seq(), 0);
        j.append(entry(1)).await.unwrap();
    }

    #[tokio::test]
    async fn compaction_drops_the_oldest_entries_through_the_seq() {
        let j = MemoryJournal::new();
        for seq in 1..=10 {
            j.append(entry(seq)).await.unwrap();
            j.commit(seq, response(200)).await.unwrap();
        }
        let done = j.compact(4).await.unwrap();
        assert_eq!(done.first_seq, 5);
        assert_eq!(done.dropped_entries, 4);
        // Method, URI, body and the committed response's body, per entry.
        assert_eq!(done.dropped_bytes, 4 * (4 + 4 + 2 + 2));
        assert_eq!(j.first_seq(), 5);
        assert_eq!(j.last_seq(), 10);
        assert_eq!(j.get(4).await.unwrap(), None);
        assert_eq!(j.get(5).await.unwrap().map(|e| e.seq), Some(5));
        // From before the start: the history as it is, from `first_seq` on.
        assert_eq!(seqs(&j, 0).await, (5..=10).collect::<Vec<_>>());
        assert_eq!(seqs(&j, 7).await, vec![7, 8, 9, 10]);
        // Records about a dropped entry find nothing; its seq is never taken again.
        assert!(matches!(
            j.record_ack(3, "b").await,
            Err(JournalError::UnknownSeq { seq: 3 })
        ));
        assert!(matches!(
            j.append(entry(3)).await,
            Err(JournalError::DuplicateSeq { seq: 3 })
        ));
        // Compacting again through an older seq changes nothing.
        let again = j.compact(2).await.unwrap();
        assert_eq!((again.first_seq, again.dropped_entries), (5, 0));
    }

    #[tokio::test]
    async fn a_live_key_keeps_its_entry_and_everything_after_it() {
        let j = MemoryJournal::new();
        for seq in 1..=6 {
            let e = if seq == 3 { keyed(3, "k3") } else { entry(seq) };
            j.append(e).await.unwrap();
        }
        // Entry 3's time is the epoch, like every other entry here: a cut-off at the epoch keeps
        // its key.
        j.expire_keys(SystemTime::UNIX_EPOCH).await.unwrap();
        let done = j.compact(5).await.unwrap();
        assert_eq!((done.first_seq, done.dropped_entries), (3, 2));
        assert_eq!(seqs(&j, 0).await, vec![3, 4, 5, 6]);
        assert_eq!(j.find_key("k3").await.unwrap().map(|e| e.seq), Some(3));

        // Once the key expired, the entry may go.
        let later = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
        assert_eq!(j.expire_keys(later).await.unwrap(), 1);
        let done = j.compact(5).await.unwrap();
        assert_eq!((done.first_seq, done.dropped_entries), (6, 3));
        assert_eq!(seqs(&j, 0).await, vec![6]);
        assert_eq!(j.find_key("k3").await.unwrap(), None);
    }

    #[tokio::test]
    async fn compacting_everything_starts_the_history_after_the_last_seq() {
        let j = MemoryJournal::new();
        for seq in 1..=3 {
            j.append(entry(seq)).await.unwrap();
        }
        let done = j.compact(100).await.unwrap();
        assert_eq!((done.first_seq, done.dropped_entries), (4, 3));
        assert_eq!(j.first_seq(), j.last_seq() + 1);
        assert!(seqs(&j, 0).await.is_empty());
        j.append(entry(4)).await.unwrap();
        assert_eq!(seqs(&j, 0).await, vec![4]);
        assert_eq!(j.last_seq(), 4);
    }

    fn ended(
        id: &str,
        outcome: TransactionOutcome,
        seqs: &[Seq],
        commits: &[Seq],
    ) -> TransactionRecord {
        TransactionRecord {
            id: id.into(),
            outcome,
            seqs: seqs.to_vec(),
            commits: commits
                .iter()
                .map(|&s| (s, response(200 + s as u16)))
                .collect(),
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_transaction_commits_or_aborts_its_group_once() {
        let j = MemoryJournal::new();
        for seq in 1..=4 {
            j.append(entry(seq).with_transaction(Some("t".into())))
                .await
                .unwrap();
        }
        j.record_response(1, response(201)).await.unwrap();
        j.commit(2, response(202)).await.unwrap();
        // Nothing is applied when one seq is unknown.
        assert!(matches!(
            j.end_transaction(ended("t", TransactionOutcome::Committed, &[1, 9], &[1]))
                .await,
            Err(JournalError::UnknownSeq { seq: 9 })
        ));
        assert_eq!(j.find_transaction("t").await.unwrap(), None);
        let aborted = ended(
            "t",
            TransactionOutcome::Aborted("conflict".into()),
            &[1, 2, 3],
            &[3],
        );
        j.end_transaction(aborted.clone()).await.unwrap();
        let states: Vec<EntryState> = j
            .read_from(1, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.state)
            .collect();
        assert_eq!(
            states,
            vec![
                EntryState::Aborted("conflict".into()),
                EntryState::Committed(response(202)),
                EntryState::Committed(response(203)),
                EntryState::Pending,
            ]
        );
        assert_eq!(j.find_transaction("t").await.unwrap(), Some(aborted));
        assert!(matches!(
            j.end_transaction(ended("t", TransactionOutcome::Committed, &[4], &[4]))
                .await,
            Err(JournalError::TransactionEnded { id }) if id == "t"
        ));
        assert_eq!(j.get(4).await.unwrap().unwrap().state, EntryState::Pending);

        // Compaction keeps the record; expiry forgets it (and counts it).
        j.compact(4).await.unwrap();
        assert_eq!(j.first_seq(), 5);
        assert!(j.find_transaction("t").await.unwrap().is_some());
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10);
        assert_eq!(j.expire_keys(at).await.unwrap(), 0);
        assert_eq!(
            j.expire_keys(at + std::time::Duration::from_nanos(1))
                .await
                .unwrap(),
            1
        );
        assert_eq!(j.find_transaction("t").await.unwrap(), None);
    }

    fn pairs(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (format!("c-{n}"), format!("l-{n}")))
            .collect()
    }

    fn group(backend: &str, seq: Seq, names: &[&str]) -> IdPairs {
        IdPairs {
            backend: backend.into(),
            seq,
            pairs: pairs(names),
        }
    }

    #[tokio::test]
    async fn id_pairs_are_kept_per_backend_until_forgotten_from_a_seq_on() {
        let j = MemoryJournal::new();
        for seq in 1..=6 {
            j.append(entry(seq)).await.unwrap();
        }
        j.record_ids(2, "b", pairs(&["x", "y"])).await.unwrap();
        j.record_ids(1, "c", pairs(&["z"])).await.unwrap();
        j.record_ids(5, "b", pairs(&["w"])).await.unwrap();
        j.record_ids(3, "b", pairs(&["v"])).await.unwrap();
        j.record_ids(4, "b", vec![]).await.unwrap(); // nothing to record
        j.record_ids(6, "c", pairs(&["u"])).await.unwrap();
        // Grouped as recorded, oldest first (not in seq order).
        assert_eq!(
            j.load_ids().await.unwrap(),
            vec![
                group("b", 2, &["x", "y"]),
                group("c", 1, &["z"]),
                group("b", 5, &["w"]),
                group("b", 3, &["v"]),
                group("c", 6, &["u"]),
            ]
        );

        // Compaction drops the entries, not the pairs learned from them.
        j.compact(6).await.unwrap();
        assert_eq!(j.first_seq(), 7);
        assert_eq!(j.load_ids().await.unwrap().len(), 5);

        // b's copy restarts from its state at seq 2: what it answered after is forgotten, c's
        // pairs stay; relearned pairs come after the older ones.
        j.forget_ids("b", 2).await.unwrap();
        j.record_ids(5, "b", pairs(&["w2"])).await.unwrap();
        assert_eq!(
            j.load_ids().await.unwrap(),
            vec![
                group("b", 2, &["x", "y"]),
                group("c", 1, &["z"]),
                group("c", 6, &["u"]),
                group("b", 5, &["w2"]),
            ]
        );
        // 0 forgets all of a backend's pairs; an unknown backend forgets nothing.
        j.forget_ids("c", 0).await.unwrap();
        j.forget_ids("nobody", 0).await.unwrap();
        assert_eq!(
            j.load_ids().await.unwrap(),
            vec![group("b", 2, &["x", "y"]), group("b", 5, &["w2"])]
        );
    }

    #[tokio::test]
    async fn rejects_duplicate_and_unknown_seqs() {
        let j = MemoryJournal::new();
        j.append(entry(1)).await.unwrap();
        assert!(matches!(
            j.append(entry(1)).await,
            Err(JournalError::DuplicateSeq { seq: 1 })
        ));
        assert!(matches!(
            j.commit(9, response(200)).await,
            Err(JournalError::UnknownSeq { seq: 9 })
        ));
    }
}
