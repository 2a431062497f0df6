//! Segment files: naming, the versioned header, and the recovery scan that tells a torn tail
//! (cut away) from damage in the middle (an error).

use std::path::{Path, PathBuf};

use super::codec::{self, FRAME_HEADER, FrameError, Record};

/// The first bytes of every segment file.
pub(super) const MAGIC: &[u8; 8] = b"LSJOURNL";
/// The record format this build writes. Bump it on any incompatible change.
///
/// Version 2 added the `Compacted` and `Transaction` records and the transaction id of an
/// append; otherwise it is version 1. Version 3 added the `Ids` and `ForgetIds` records;
/// otherwise it is version 2.
pub(super) const FORMAT_VERSION: u32 = 3;
/// The oldest format this build still reads.
pub(super) const OLDEST_FORMAT_VERSION: u32 = 1;
/// The first format with the `Compacted` record.
pub(super) const COMPACTED_SINCE: u32 = 2;
/// The first format with the `Transaction` record and the transaction id of an append.
pub(super) const TRANSACTIONS_SINCE: u32 = 2;
/// The first format with the `Ids` and `ForgetIds` records.
pub(super) const IDS_SINCE: u32 = 3;

/// The oldest format that has `record`, and what it is (for the error when an older segment
/// holds it).
pub(super) fn format_of(record: &Record) -> (u32, &'static str) {
    match record {
        Record::Compacted { .. } => (COMPACTED_SINCE, "compaction record"),
        Record::Transaction(_) => (TRANSACTIONS_SINCE, "transaction record"),
        Record::Append(entry) if entry.transaction.is_some() => {
            (TRANSACTIONS_SINCE, "append record with a transaction id")
        }
        Record::Ids { .. } => (IDS_SINCE, "identifier record"),
        Record::ForgetIds { .. } => (IDS_SINCE, "record forgetting identifiers"),
        _ => (OLDEST_FORMAT_VERSION, "record"),
    }
}
/// magic:8  format_version:u32  flags:u32 (none defined: zero)
pub(super) const HEADER_LEN: u64 = 16;

pub(super) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

pub(super) fn file_name(number: u64) -> String {
    format!("segment-{number:020}.log")
}

pub(super) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(file_name(number))
}

/// The segment number in a file name written by [`file_name`].
pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The format version in a segment's header, if the header is there.
pub(super) fn version(buf: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(8..12)?.try_into().ok()?))
}

/// How a segment's bytes ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tail {
    /// Every byte belongs to a complete record.
    Clean,
    /// The header itself is incomplete (the process died while creating the file).
    TornHeader,
    /// The bytes from `valid_len` on are an incomplete or damaged last record.
    Torn { valid_len: u64, reason: String },
}

/// Damage that recovery must not paper over: where and what.
#[derive(Debug)]
pub(super) struct Damage {
    pub(super) offset: u64,
    pub(super) detail: String,
}

/// Walks the records of one segment, calling `apply(offset, frame_len, record)` for each
/// complete one in order. Only the last segment may end in a torn record: earlier segments are
/// fsynced before the next one is created, so a bad record there is damage.
pub(super) fn scan(
    buf: &[u8],
    is_last: bool,
    mut apply: impl FnMut(u64, u32, Record) -> Result<(), String>,
) -> Result<Tail, Damage> {
    if (buf.len() as u64) < HEADER_LEN {
        if is_last && (header().starts_with(buf) || buf.iter().all(|&b| b == 0)) {
            return Ok(Tail::TornHeader);
        }
        return Err(Damage {
            offset: 0,
            detail: format!("segment header is cut short ({} bytes)", buf.len()),
        });
    }
    if &buf[0..8] != MAGIC {
        return Err(Damage {
            offset: 0,
            detail: "not a lockstep journal segment (bad magic)".to_owned(),
        });
    }
    let version = version(buf).expect("the header is complete");
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(Damage {
            offset: 8,
            detail: format!(
                "segment format version {version} is not supported (this build reads \
                 {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
            ),
        });
    }
    let flags = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
    if flags != 0 {
        return Err(Damage {
            offset: 12,
            detail: format!("segment header has unknown flags {flags:#x}"),
        });
    }
    let mut offset = HEADER_LEN as usize;
    while offset < buf.len() {
        match codec::read_frame(&buf[offset..]) {
            Ok((record, len)) => {
                let (since, what) = format_of(&record);
                if version < since {
                    return Err(Damage {
                        offset: offset as u64,
                        detail: format!("{what} in a version {version} segment"),
                    });
                }
                apply(offset as u64, len as u32, record).map_err(|detail| Damage {
                    offset: offset as u64,
                    detail,
                })?;
                offset += len;
            }
            // A record that passed its checksum but cannot be decoded was written that way:
            // never a torn write.
            Err(FrameError::BadBody(d)) => {
                return Err(Damage {
                    offset: offset as u64,
                    detail: format!("record cannot be decoded: {d}"),
                });
            }
            Err(e) => {
                if !is_last || complete_record_after(buf, offset) {
                    return Err(Damage {
                        offset: offset as u64,
                        detail: e.to_string(),
                    });
                }
                return Ok(Tail::Torn {
                    valid_len: offset as u64,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(Tail::Clean)
}

/// Whether a complete, well-formed record starts anywhere after the bad one at `bad`. A crash
/// only tears the end of the file, so good records after a bad one mean damage in the middle
/// (for example a flipped length byte), which must not be silently cut away.
fn complete_record_after(buf: &[u8], bad: usize) -> bool {
    (bad + 1..buf.len().saturating_sub(FRAME_HEADER))
        .any(|o| codec::frame_body(&buf[o..]).is_ok_and(|body| codec::decode(body).is_ok()))
}
