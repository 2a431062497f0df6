//! Where checkpoints live: `checkpoints/` next to the journal's segments, one data file and one
//! small JSON description per checkpoint, named by seq. Both are written to a temporary name,
//! fsynced and renamed, so that a crash leaves whole checkpoints or none.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use lockstep_backends::Checkpoint;
use lockstep_journal::Seq;
use serde::{Deserialize, Serialize};

/// What `GET /checkpoints` lists for each checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CheckpointInfo {
    pub seq: Seq,
    pub source: String,
    pub implementation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub bytes: u64,
    /// Seconds since the Unix epoch.
    pub taken_at: u64,
    /// How many minted-identifier pairs of the source copy it carries.
    #[serde(default)]
    pub ids: u64,
}

#[derive(Debug)]
pub(crate) struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    pub(crate) fn open(journal_dir: &Path) -> std::io::Result<Self> {
        let dir = journal_dir.join("checkpoints");
        fs::create_dir_all(&dir)?;
        // Leftovers of a write a crash interrupted.
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(path);
            }
        }
        Ok(CheckpointStore { dir })
    }

    fn data_path(&self, seq: Seq) -> PathBuf {
        self.dir.join(format!("{seq:020}.checkpoint"))
    }

    /// The source copy's minted-identifier pairs, as JSON `[[seq, [[canonical, local], ...]], ...]`.
    fn ids_path(&self, seq: Seq) -> PathBuf {
        self.dir.join(format!("{seq:020}.ids.json"))
    }

    fn info_path(&self, seq: Seq) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Every complete checkpoint, oldest first.
    pub(crate) fn list(&self) -> std::io::Result<Vec<CheckpointInfo>> {
        let mut all = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json")
                || path.to_string_lossy().ends_with(".ids.json")
            {
                continue;
            }
            let Ok(text) = fs::read(&path) else { continue };
            let Ok(info) = serde_json::from_slice::<CheckpointInfo>(&text) else {
                continue;
            };
            if self.data_path(info.seq).exists() {
                all.push(info);
            }
        }
        all.sort_by_key(|c| c.seq);
        Ok(all)
    }

    pub(crate) fn latest(&self) -> std::io::Result<Option<CheckpointInfo>> {
        Ok(self.list()?.pop())
    }

    pub(crate) fn load(&self, info: &CheckpointInfo) -> std::io::Result<Checkpoint> {
        let data = fs::read(self.data_path(info.seq))?;
        let ids = match fs::read(self.ids_path(info.seq)) {
            Ok(text) => serde_json::from_slice(&text)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            // Taken from a copy that had learned none (or by a version without them).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Checkpoint {
            ids,
            seq: info.seq,
            source: info.source.clone(),
            implementation: info.implementation.clone(),
            content_type: info.content_type.clone(),
            data: Bytes::from(data),
            taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(info.taken_at),
        })
    }

    /// Stores `checkpoint` durably, then deletes all but the newest `keep`. Returns what it
    /// stored.
    pub(crate) fn save(
        &self,
        checkpoint: &Checkpoint,
        keep: usize,
    ) -> std::io::Result<CheckpointInfo> {
        let info = CheckpointInfo {
            seq: checkpoint.seq,
            source: checkpoint.source.clone(),
            implementation: checkpoint.implementation.clone(),
            content_type: checkpoint.content_type.clone(),
            bytes: checkpoint.data.len() as u64,
            taken_at: checkpoint
                .taken_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ids: checkpoint.ids.iter().map(|(_, g)| g.len() as u64).sum(),
        };
        // Data first: a description is only listed when its data is complete.
        write_atomically(&self.data_path(info.seq), &checkpoint.data)?;
        if !checkpoint.ids.is_empty() {
            let ids = serde_json::to_vec(&checkpoint.ids).expect("pairs serialize");
            write_atomically(&self.ids_path(info.seq), &ids)?;
        }
        let text = serde_json::to_vec_pretty(&info).expect("descriptions serialize");
        write_atomically(&self.info_path(info.seq), &text)?;
        let all = self.list()?;
        for old in all.iter().take(all.len().saturating_sub(keep)) {
            let _ = fs::remove_file(self.info_path(old.seq));
            let _ = fs::remove_file(self.data_path(old.seq));
            let _ = fs::remove_file(self.ids_path(old.seq));
        }
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(info)
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    fs::File::open(path.parent().expect("inside the directory"))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(seq: Seq) -> Checkpoint {
        Checkpoint {
            seq,
            source: "b".into(),
            implementation: "v1".into(),
            content_type: Some("application/json".into()),
            data: Bytes::from(format!("state at {seq}")),
            taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ids: vec![(seq, vec![("canonical".into(), format!("local-{seq}"))])],
        }
    }

    #[test]
    fn saves_lists_loads_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(store.latest().unwrap(), None);
        for seq in [10, 20, 30] {
            store.save(&checkpoint(seq), 2).unwrap();
        }
        let seqs: Vec<Seq> = store.list().unwrap().iter().map(|c| c.seq).collect();
        assert_eq!(seqs, vec![20, 30]);
        let latest = store.latest().unwrap().unwrap();
        let loaded = store.load(&latest).unwrap();
        assert_eq!(loaded.data, Bytes::from("state at 30"));
        assert_eq!(loaded.content_type.as_deref(), Some("application/json"));
        assert_eq!(loaded.taken_at, checkpoint(30).taken_at);
        assert_eq!(loaded.ids, checkpoint(30).ids, "the source's minted ids");
        assert_eq!(latest.ids, 1);
        assert!(
            !dir.path()
                .join("checkpoints/00000000000000000010.ids.json")
                .exists(),
            "a dropped checkpoint's ids go with it"
        );
        // Reopened: the same, and leftovers of an interrupted write are gone.
        fs::write(
            dir.path().join("checkpoints/00000000000000000040.tmp"),
            b"x",
        )
        .unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(store.list().unwrap().len(), 2);
        assert!(
            !dir.path()
                .join("checkpoints/00000000000000000040.tmp")
                .exists()
        );
    }

    #[test]
    fn a_description_without_its_data_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store.save(&checkpoint(5), 3).unwrap();
        fs::remove_file(store.data_path(5)).unwrap();
        assert_eq!(store.list().unwrap(), vec![]);
    }
}
