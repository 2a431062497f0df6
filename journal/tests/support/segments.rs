//! The file journal's segment files as the crash tests see them: their paths and numbers, and a
//! journal directory as a crash in the middle of a compaction leaves it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("segment-{number:020}.log"))
}

/// The numbers of the segment files in `dir`, in order.
pub fn segment_numbers(dir: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("segment-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

pub fn copy_dir(from: &Path, to: &Path) {
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
    }
}

/// A copy of `done` (a journal after a compaction) as a crash during that compaction could have
/// left it: the segments `left` not yet deleted (taken from `before`, the journal before the
/// compaction), and with `cut = Some((active, len))` the active segment ending at `len`.
pub fn crashed_compaction(
    done: &Path,
    before: &Path,
    left: &[u64],
    cut: Option<(u64, u64)>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(done, dir.path());
    for &number in left {
        std::fs::copy(
            segment_path(before, number),
            segment_path(dir.path(), number),
        )
        .unwrap();
    }
    if let Some((active, len)) = cut {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), active))
            .unwrap();
        f.set_len(len).unwrap();
    }
    dir
}
