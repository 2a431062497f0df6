//! An in-memory journal: the history lives as long as the process. Useful for tests and for
//! deployments that accept losing the history on a gateway restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::{Entry, EntryState, Journal, JournalError, ResponseRecord, Seq, Topology};

#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<BTreeMap<Seq, Entry>>,
    /// Scoped idempotency key → seq.
    keys: Mutex<HashMap<String, Seq>>,
    topology: Mutex<Option<Topology>>,
    last: AtomicU64,
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
        if entries.contains_key(&seq) {
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

    async fn find_key(&self, scoped: &str) -> Result<Option<Entry>, JournalError> {
        let Some(seq) = self.keys.lock().get(scoped).copied() else {
            return Ok(None);
        };
        Ok(self.entries.lock().get(&seq).cloned())
    }

    async fn expire_keys(&self, before: SystemTime) -> Result<usize, JournalError> {
        let entries = self.entries.lock();
        let mut keys = self.keys.lock();
        let n = keys.len();
        keys.retain(|_, seq| entries.get(seq).is_some_and(|e| e.time >= before));
        Ok(n - keys.len())
    }

    async fn save_topology(&self, topology: &Topology) -> Result<(), JournalError> {
        *self.topology.lock() = Some(topology.clone());
        Ok(())
    }

    async fn load_topology(&self) -> Result<Option<Topology>, JournalError> {
        Ok(self.topology.lock().clone())
    }
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
