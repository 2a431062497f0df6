//! The record encoding of the file journal: one frame per record, little-endian, no padding.
//!
//! ```text
//! frame  = body_len:u32  crc32(body):u32  body
//! body   = kind:u8  fields…
//! str    = len:u32  utf-8 bytes          bytes = len:u32  raw bytes
//! time   = secs:i64  nanos:u32            (relative to the Unix epoch)
//! ```
//!
//! This module only turns records into bytes and back; it knows nothing about files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::{
    BackendRecord, Entry, EntryState, Header, IdempotencyKey, RequestRecord, ResponseRecord, Seq,
    Topology, TransactionOutcome, TransactionRecord,
};

/// Bytes before a record's body: its length and its CRC32.
pub(super) const FRAME_HEADER: usize = 8;
/// The largest body a frame may announce; anything larger is damage, not data.
pub(super) const MAX_BODY: usize = 1 << 30;

const KIND_APPEND: u8 = 1;
const KIND_RESPONSE: u8 = 2;
const KIND_ACK: u8 = 3;
const KIND_COMMIT: u8 = 4;
const KIND_ABORT: u8 = 5;
const KIND_EXPIRE_KEYS: u8 = 6;
const KIND_TOPOLOGY: u8 = 7;
const KIND_DISPATCH: u8 = 8;
const KIND_UNDELIVERED: u8 = 9;
/// Only in segments of format version 2 and later (see `segment`).
const KIND_COMPACTED: u8 = 10;
/// Only in segments of format version 2 and later (see `segment`).
const KIND_TRANSACTION: u8 = 11;
/// Only in segments of format version 3 and later (see `segment`).
const KIND_IDS: u8 = 12;
/// Only in segments of format version 3 and later (see `segment`).
const KIND_FORGET_IDS: u8 = 13;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    Append(Box<Entry>),
    Response {
        seq: Seq,
        response: ResponseRecord,
    },
    Ack {
        seq: Seq,
        backend: String,
    },
    /// The entry is about to be sent to `backend`.
    Dispatch {
        seq: Seq,
        backend: String,
    },
    /// Sending the entry to `backend` failed before it could be received.
    Undelivered {
        seq: Seq,
        backend: String,
    },
    /// The commit mark and the response the client received, in one record: a crash can never
    /// keep one without the other.
    Commit {
        seq: Seq,
        response: ResponseRecord,
    },
    Abort {
        seq: Seq,
        reason: String,
    },
    /// Idempotency keys of entries sequenced before `before` are forgotten from here on.
    ExpireKeys {
        before: SystemTime,
    },
    Topology(Topology),
    /// The history before `first_seq` was dropped: segment files numbered below `first_segment`
    /// are deleted (or about to be), and records about the entries they held are void.
    Compacted {
        first_seq: Seq,
        first_segment: u64,
    },
    /// A transaction ended: its commits, and its outcome on its other entries, in one record.
    Transaction(TransactionRecord),
    /// Identifiers `backend` minted, learned from its answer to `seq`: (canonical, local)
    /// pairs. `order` places the group among the others as they were recorded; a compaction
    /// that rewrites the group keeps it.
    Ids {
        order: u64,
        backend: String,
        seq: Seq,
        pairs: Vec<(String, String)>,
    },
    /// The pairs of `backend` learned from answers to seqs after `after`, and recorded before
    /// this record, are forgotten.
    ForgetIds {
        backend: String,
        after: Seq,
    },
}

/// Why a frame or body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FrameError {
    /// Fewer bytes remain than the frame needs.
    Short,
    /// The announced length is zero or absurd.
    BadLength(u32),
    /// The body does not match its CRC32.
    BadChecksum,
    /// The body passed its CRC but cannot be decoded (unknown kind, bad field).
    BadBody(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Short => f.write_str("record is cut short"),
            FrameError::BadLength(n) => write!(f, "record announces an impossible length {n}"),
            FrameError::BadChecksum => f.write_str("record checksum does not match"),
            FrameError::BadBody(d) => write!(f, "record cannot be decoded: {d}"),
        }
    }
}

/// Reads the frame at the start of `buf`: its decoded record and its total length.
pub(super) fn read_frame(buf: &[u8]) -> Result<(Record, usize), FrameError> {
    let body = frame_body(buf)?;
    let record = decode(body).map_err(FrameError::BadBody)?;
    Ok((record, FRAME_HEADER + body.len()))
}

/// The checked body of the frame at the start of `buf`, without decoding it.
pub(super) fn frame_body(buf: &[u8]) -> Result<&[u8], FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Short);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len == 0 || len as usize > MAX_BODY {
        return Err(FrameError::BadLength(len));
    }
    let end = FRAME_HEADER + len as usize;
    if buf.len() < end {
        return Err(FrameError::Short);
    }
    let body = &buf[FRAME_HEADER..end];
    if crc32fast::hash(body) != crc {
        return Err(FrameError::BadChecksum);
    }
    Ok(body)
}

/// A frame under construction: the header is patched in by [`Encoder::finish`].
struct Encoder(Vec<u8>);

impl Encoder {
    fn new(kind: u8, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(FRAME_HEADER + 1 + capacity);
        buf.extend_from_slice(&[0; FRAME_HEADER]);
        buf.push(kind);
        Encoder(buf)
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("a journal field is under 4 GiB");
        self.u32(len);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn time(&mut self, t: SystemTime) {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                // Before the epoch: floor to whole seconds, keep nanos non-negative. The distance
                // can be 2^63 s exactly (the oldest `SystemTime`, i64::MIN s), which does not fit
                // an i64 before it is negated: negate in i128, the result always fits.
                let d = e.duration();
                let (s, n) = (i128::from(d.as_secs()), d.subsec_nanos());
                let (secs, nanos) = if n == 0 {
                    (-s, 0)
                } else {
                    (-s - 1, 1_000_000_000 - n)
                };
                (secs as i64, nanos)
            }
        };
        self.u64(secs as u64);
        self.u32(nanos);
    }
    fn headers(&mut self, headers: &[Header]) {
        self.u32(headers.len() as u32);
        for h in headers {
            self.str(&h.name);
            self.bytes(&h.value);
        }
    }
    fn response(&mut self, r: &ResponseRecord) {
        self.u16(r.status);
        self.headers(&r.headers);
        self.bytes(&r.body);
    }
    fn finish(mut self) -> Vec<u8> {
        let body_len = self.0.len() - FRAME_HEADER;
        assert!(
            body_len <= MAX_BODY,
            "journal record of {body_len} bytes is too large"
        );
        let crc = crc32fast::hash(&self.0[FRAME_HEADER..]);
        self.0[0..4].copy_from_slice(&(body_len as u32).to_le_bytes());
        self.0[4..8].copy_from_slice(&crc.to_le_bytes());
        self.0
    }
}

fn headers_size(headers: &[Header]) -> usize {
    headers
        .iter()
        .map(|h| 8 + h.name.len() + h.value.len())
        .sum()
}

pub(super) fn encode_append(entry: &Entry) -> Vec<u8> {
    let r = &entry.request;
    let size = 64
        + entry.lane.len()
        + r.method.len()
        + r.uri.len()
        + headers_size(&r.headers)
        + r.body.len();
    let mut e = Encoder::new(KIND_APPEND, size);
    e.u64(entry.seq);
    e.time(entry.time);
    e.str(&entry.lane);
    e.str(&r.method);
    e.str(&r.uri);
    e.headers(&r.headers);
    e.bytes(&r.body);
    match &entry.state {
        EntryState::Pending => e.0.push(0),
        EntryState::Answered(resp) => {
            e.0.push(1);
            e.response(resp);
        }
        EntryState::Committed(resp) => {
            e.0.push(2);
            e.response(resp);
        }
        EntryState::Aborted(reason) => {
            e.0.push(3);
            e.str(reason);
        }
    }
    e.u32(entry.acks.len() as u32);
    for a in &entry.acks {
        e.str(a);
    }
    match &entry.idempotency {
        None => e.0.push(0),
        Some(key) => {
            e.0.push(1);
            e.str(&key.scoped);
            e.str(&key.fingerprint);
        }
    }
    // Trailing fields, so that records written before they existed still decode (see
    // `decode`): `after` always, the transaction id only when there is one.
    e.u64(entry.after);
    if let Some(id) = &entry.transaction {
        e.str(id);
    }
    e.finish()
}

pub(super) fn encode_transaction(t: &TransactionRecord) -> Vec<u8> {
    let responses: usize = t
        .commits
        .iter()
        .map(|(_, r)| 16 + headers_size(&r.headers) + r.body.len())
        .sum();
    let mut e = Encoder::new(
        KIND_TRANSACTION,
        32 + t.id.len() + 8 * t.seqs.len() + responses,
    );
    e.str(&t.id);
    e.time(t.time);
    match &t.outcome {
        TransactionOutcome::Committed => e.0.push(0),
        TransactionOutcome::Aborted(reason) => {
            e.0.push(1);
            e.str(reason);
        }
    }
    e.u32(t.seqs.len() as u32);
    for &seq in &t.seqs {
        e.u64(seq);
    }
    e.u32(t.commits.len() as u32);
    for (seq, response) in &t.commits {
        e.u64(*seq);
        e.response(response);
    }
    e.finish()
}

fn encode_seq_response(kind: u8, seq: Seq, response: &ResponseRecord) -> Vec<u8> {
    let mut e = Encoder::new(
        kind,
        16 + headers_size(&response.headers) + response.body.len(),
    );
    e.u64(seq);
    e.response(response);
    e.finish()
}

pub(super) fn encode_response(seq: Seq, response: &ResponseRecord) -> Vec<u8> {
    encode_seq_response(KIND_RESPONSE, seq, response)
}

pub(super) fn encode_commit(seq: Seq, response: &ResponseRecord) -> Vec<u8> {
    encode_seq_response(KIND_COMMIT, seq, response)
}

fn encode_seq_str(kind: u8, seq: Seq, s: &str) -> Vec<u8> {
    let mut e = Encoder::new(kind, 12 + s.len());
    e.u64(seq);
    e.str(s);
    e.finish()
}

pub(super) fn encode_ack(seq: Seq, backend: &str) -> Vec<u8> {
    encode_seq_str(KIND_ACK, seq, backend)
}

pub(super) fn encode_dispatch(seq: Seq, backend: &str) -> Vec<u8> {
    encode_seq_str(KIND_DISPATCH, seq, backend)
}

pub(super) fn encode_undelivered(seq: Seq, backend: &str) -> Vec<u8> {
    encode_seq_str(KIND_UNDELIVERED, seq, backend)
}

pub(super) fn encode_abort(seq: Seq, reason: &str) -> Vec<u8> {
    encode_seq_str(KIND_ABORT, seq, reason)
}

pub(super) fn encode_ids(
    order: u64,
    backend: &str,
    seq: Seq,
    pairs: &[(String, String)],
) -> Vec<u8> {
    let size: usize = pairs.iter().map(|(c, l)| 8 + c.len() + l.len()).sum();
    let mut e = Encoder::new(KIND_IDS, 24 + backend.len() + size);
    e.u64(order);
    e.u64(seq);
    e.str(backend);
    e.u32(pairs.len() as u32);
    for (canonical, local) in pairs {
        e.str(canonical);
        e.str(local);
    }
    e.finish()
}

pub(super) fn encode_forget_ids(backend: &str, after: Seq) -> Vec<u8> {
    let mut e = Encoder::new(KIND_FORGET_IDS, 12 + backend.len());
    e.u64(after);
    e.str(backend);
    e.finish()
}

pub(super) fn encode_expire_keys(before: SystemTime) -> Vec<u8> {
    let mut e = Encoder::new(KIND_EXPIRE_KEYS, 12);
    e.time(before);
    e.finish()
}

/// The frame of any record, through the same per-kind encoders the journal writes with. An
/// `Append` frame does not carry `Entry::dispatched` (dispatches are their own records).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn encode(record: &Record) -> Vec<u8> {
    match record {
        Record::Append(entry) => encode_append(entry),
        Record::Response { seq, response } => encode_response(*seq, response),
        Record::Ack { seq, backend } => encode_ack(*seq, backend),
        Record::Dispatch { seq, backend } => encode_dispatch(*seq, backend),
        Record::Undelivered { seq, backend } => encode_undelivered(*seq, backend),
        Record::Commit { seq, response } => encode_commit(*seq, response),
        Record::Abort { seq, reason } => encode_abort(*seq, reason),
        Record::ExpireKeys { before } => encode_expire_keys(*before),
        Record::Topology(t) => encode_topology(t),
        Record::Compacted {
            first_seq,
            first_segment,
        } => encode_compacted(*first_seq, *first_segment),
        Record::Transaction(t) => encode_transaction(t),
        Record::Ids {
            order,
            backend,
            seq,
            pairs,
        } => encode_ids(*order, backend, *seq, pairs),
        Record::ForgetIds { backend, after } => encode_forget_ids(backend, *after),
    }
}

/// The frame of `record` as a build from before the append's trailing fields wrote it, when that
/// form decodes to `record` too (an append with `after` at its most careful value and no
/// transaction); `None` otherwise. Together with [`encode`], the only frames a record is read
/// from.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn legacy_frame(record: &Record) -> Option<Vec<u8>> {
    let Record::Append(entry) = record else {
        return None;
    };
    if entry.after != entry.seq.saturating_sub(1) || entry.transaction.is_some() {
        return None;
    }
    let frame = encode_append(entry);
    let body = &frame[FRAME_HEADER..frame.len() - 8];
    let mut legacy = Vec::with_capacity(FRAME_HEADER + body.len());
    legacy.extend_from_slice(&(body.len() as u32).to_le_bytes());
    legacy.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    legacy.extend_from_slice(body);
    Some(legacy)
}

pub(super) fn encode_compacted(first_seq: Seq, first_segment: u64) -> Vec<u8> {
    let mut e = Encoder::new(KIND_COMPACTED, 16);
    e.u64(first_seq);
    e.u64(first_segment);
    e.finish()
}

pub(super) fn encode_topology(t: &Topology) -> Vec<u8> {
    let mut e = Encoder::new(KIND_TOPOLOGY, 64 + 64 * t.backends.len());
    e.u64(t.epoch);
    e.str(&t.primary);
    e.u32(t.backends.len() as u32);
    for b in &t.backends {
        e.str(&b.name);
        e.str(&b.url);
        e.str(&b.implementation);
        e.str(&b.state);
        e.u64(b.acked_seq);
    }
    e.finish()
}

/// Reads fields off a body; every read checks the bounds.
struct Decoder<'a>(&'a [u8]);

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("field of {n} bytes runs past the record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, String> {
        let raw = self.bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| "a text field is not UTF-8".to_owned())
    }
    fn time(&mut self) -> Result<SystemTime, String> {
        let secs = self.u64()? as i64;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(format!("time has {nanos} nanoseconds"));
        }
        let t = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs.unsigned_abs()))
                .and_then(|t| t.checked_add(Duration::from_nanos(nanos.into())))
        };
        t.ok_or_else(|| format!("time {secs}s is out of range"))
    }
    /// A count of items, each at least `min_item` bytes: bounds allocations on damaged input.
    fn count(&mut self, min_item: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.0.len() {
            return Err(format!("count {n} exceeds the record"));
        }
        Ok(n)
    }
    fn headers(&mut self) -> Result<Vec<Header>, String> {
        let n = self.count(8)?;
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.string()?;
            let value = Bytes::copy_from_slice(self.bytes()?);
            headers.push(Header { name, value });
        }
        Ok(headers)
    }
    fn response(&mut self) -> Result<ResponseRecord, String> {
        Ok(ResponseRecord {
            status: self.u16()?,
            headers: self.headers()?,
            body: Bytes::copy_from_slice(self.bytes()?),
        })
    }
}

/// Decodes a record body (kind byte first).
pub(super) fn decode(body: &[u8]) -> Result<Record, String> {
    let mut d = Decoder(body);
    let record = match d.u8()? {
        KIND_APPEND => {
            let seq = d.u64()?;
            let time = d.time()?;
            let lane = d.string()?;
            let request = RequestRecord {
                method: d.string()?,
                uri: d.string()?,
                headers: d.headers()?,
                body: Bytes::copy_from_slice(d.bytes()?),
            };
            let state = match d.u8()? {
                0 => EntryState::Pending,
                1 => EntryState::Answered(d.response()?),
                2 => EntryState::Committed(d.response()?),
                3 => EntryState::Aborted(d.string()?),
                other => return Err(format!("unknown entry state {other}")),
            };
            let n = d.count(4)?;
            let mut acks = Vec::with_capacity(n);
            for _ in 0..n {
                acks.push(d.string()?);
            }
            let idempotency = match d.u8()? {
                0 => None,
                1 => Some(IdempotencyKey {
                    scoped: d.string()?,
                    fingerprint: d.string()?,
                }),
                other => return Err(format!("unknown idempotency marker {other}")),
            };
            // Absent in records written before it existed: the most careful value.
            let after = if d.0.is_empty() {
                seq.saturating_sub(1)
            } else {
                d.u64()?
            };
            if after >= seq && seq > 0 {
                return Err(format!("entry {seq} is ordered after {after}"));
            }
            // Absent when the entry belongs to no transaction (and in records written before it
            // existed).
            let transaction = if d.0.is_empty() {
                None
            } else {
                Some(d.string()?)
            };
            Record::Append(Box::new(Entry {
                seq,
                lane,
                after,
                time,
                request,
                state,
                acks,
                dispatched: Vec::new(),
                undelivered: Vec::new(),
                idempotency,
                transaction,
            }))
        }
        KIND_RESPONSE => Record::Response {
            seq: d.u64()?,
            response: d.response()?,
        },
        KIND_ACK => Record::Ack {
            seq: d.u64()?,
            backend: d.string()?,
        },
        KIND_DISPATCH => Record::Dispatch {
            seq: d.u64()?,
            backend: d.string()?,
        },
        KIND_UNDELIVERED => Record::Undelivered {
            seq: d.u64()?,
            backend: d.string()?,
        },
        KIND_COMMIT => Record::Commit {
            seq: d.u64()?,
            response: d.response()?,
        },
        KIND_ABORT => Record::Abort {
            seq: d.u64()?,
            reason: d.string()?,
        },
        KIND_EXPIRE_KEYS => Record::ExpireKeys { before: d.time()? },
        KIND_TOPOLOGY => {
            let epoch = d.u64()?;
            let primary = d.string()?;
            let n = d.count(24)?;
            let mut backends = Vec::with_capacity(n);
            for _ in 0..n {
                backends.push(BackendRecord {
                    name: d.string()?,
                    url: d.string()?,
                    implementation: d.string()?,
                    state: d.string()?,
                    acked_seq: d.u64()?,
                });
            }
            Record::Topology(Topology {
                epoch,
                primary,
                backends,
            })
        }
        KIND_COMPACTED => {
            let first_seq = d.u64()?;
            if first_seq == 0 {
                return Err("compaction record starts the history at seq 0".to_owned());
            }
            Record::Compacted {
                first_seq,
                first_segment: d.u64()?,
            }
        }
        KIND_TRANSACTION => {
            let id = d.string()?;
            let time = d.time()?;
            let outcome = match d.u8()? {
                0 => TransactionOutcome::Committed,
                1 => TransactionOutcome::Aborted(d.string()?),
                other => return Err(format!("unknown transaction outcome {other}")),
            };
            let n = d.count(8)?;
            let mut seqs = Vec::with_capacity(n);
            for _ in 0..n {
                seqs.push(d.u64()?);
            }
            // seq, status, header count, body length.
            let n = d.count(18)?;
            let mut commits = Vec::with_capacity(n);
            for _ in 0..n {
                commits.push((d.u64()?, d.response()?));
            }
            Record::Transaction(TransactionRecord {
                id,
                outcome,
                seqs,
                commits,
                time,
            })
        }
        KIND_IDS => {
            let order = d.u64()?;
            let seq = d.u64()?;
            let backend = d.string()?;
            // Two string lengths per pair.
            let n = d.count(8)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((d.string()?, d.string()?));
            }
            Record::Ids {
                order,
                backend,
                seq,
                pairs,
            }
        }
        KIND_FORGET_IDS => {
            let after = d.u64()?;
            Record::ForgetIds {
                backend: d.string()?,
                after,
            }
        }
        other => return Err(format!("unknown record kind {other}")),
    };
    if !d.0.is_empty() {
        return Err(format!("{} unexpected bytes after the record", d.0.len()));
    }
    Ok(record)
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
