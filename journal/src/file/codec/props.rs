//! Property tests of the record encoding: arbitrary records of every kind, and damage of every
//! kind done to their frames.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

// --- Strategies ---------------------------------------------------------------------------------

/// Empty, ASCII, and arbitrary Unicode (any scalar value, multi-byte ones included).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        2 => "[a-zA-Z0-9 ._:/?=-]{1,12}",
        3 => vec(any::<char>(), 0..8).prop_map(String::from_iter),
    ]
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => Just(Bytes::new()),
        4 => vec(any::<u8>(), 0..48).prop_map(Bytes::from),
    ]
}

fn headers() -> impl Strategy<Value = Vec<Header>> {
    vec(
        (text(), bytes()).prop_map(|(name, value)| Header { name, value }),
        0..4,
    )
}

/// `secs` since the epoch (negative before it) plus `nanos`, as the codec stores a time.
fn time_at(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

/// Times before and after the epoch, near it and at the ends of what `SystemTime` can hold.
fn time() -> impl Strategy<Value = SystemTime> {
    let secs = prop_oneof![
        4 => -4_000_000_000i64..4_000_000_000,
        2 => any::<i64>(),
        1 => prop::sample::select(vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX]),
    ];
    let nanos = prop_oneof![
        3 => 0u32..1_000_000_000,
        1 => prop::sample::select(vec![0u32, 1, 999_999_999]),
    ];
    (secs, nanos).prop_map(|(s, n)| time_at(s, n))
}

fn response() -> impl Strategy<Value = ResponseRecord> {
    (any::<u16>(), headers(), bytes()).prop_map(|(status, headers, body)| ResponseRecord {
        status,
        headers,
        body,
    })
}

fn state() -> impl Strategy<Value = EntryState> {
    prop_oneof![
        Just(EntryState::Pending),
        response().prop_map(EntryState::Answered),
        response().prop_map(EntryState::Committed),
        text().prop_map(EntryState::Aborted),
    ]
}

fn idempotency() -> impl Strategy<Value = Option<IdempotencyKey>> {
    prop::option::of(
        (text(), text()).prop_map(|(scoped, fingerprint)| IdempotencyKey {
            scoped,
            fingerprint,
        }),
    )
}

fn entry() -> impl Strategy<Value = Entry> {
    let request = (text(), text(), headers(), bytes()).prop_map(|(method, uri, headers, body)| {
        RequestRecord {
            method,
            uri,
            headers,
            body,
        }
    });
    (
        any::<u64>(),
        text(),
        time(),
        request,
        state(),
        vec(text(), 0..4),
        idempotency(),
        prop::option::of(text()),
    )
        .prop_map(
            |(seq, lane, time, request, state, acks, idempotency, transaction)| Entry {
                seq,
                lane,
                after: seq / 2,
                time,
                request,
                state,
                acks,
                // Not part of the append record: dispatches are records of their own.
                dispatched: Vec::new(),
                undelivered: Vec::new(),
                idempotency,
                transaction,
            },
        )
}

fn transaction() -> impl Strategy<Value = TransactionRecord> {
    let outcome = prop_oneof![
        Just(TransactionOutcome::Committed),
        text().prop_map(TransactionOutcome::Aborted),
    ];
    (
        text(),
        outcome,
        vec(any::<u64>(), 0..6),
        vec((any::<u64>(), response()), 0..4),
        time(),
    )
        .prop_map(|(id, outcome, seqs, commits, time)| TransactionRecord {
            id,
            outcome,
            seqs,
            commits,
            time,
        })
}

fn topology() -> impl Strategy<Value = Topology> {
    let backend = (text(), text(), text(), text(), any::<u64>()).prop_map(
        |(name, url, implementation, state, acked_seq)| BackendRecord {
            name,
            url,
            implementation,
            state,
            acked_seq,
        },
    );
    (any::<u64>(), text(), vec(backend, 0..5)).prop_map(|(epoch, primary, backends)| Topology {
        epoch,
        primary,
        backends,
    })
}

/// A record of any kind.
fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        3 => entry().prop_map(|e| Record::Append(Box::new(e))),
        1 => (any::<u64>(), response()).prop_map(|(seq, response)| Record::Response { seq, response }),
        1 => (any::<u64>(), text()).prop_map(|(seq, backend)| Record::Ack { seq, backend }),
        1 => (any::<u64>(), text()).prop_map(|(seq, backend)| Record::Dispatch { seq, backend }),
        1 => (any::<u64>(), text()).prop_map(|(seq, backend)| Record::Undelivered { seq, backend }),
        1 => (any::<u64>(), response()).prop_map(|(seq, response)| Record::Commit { seq, response }),
        1 => (any::<u64>(), text()).prop_map(|(seq, reason)| Record::Abort { seq, reason }),
        1 => time().prop_map(|before| Record::ExpireKeys { before }),
        2 => topology().prop_map(Record::Topology),
        1 => (1..=u64::MAX, any::<u64>()).prop_map(|(first_seq, first_segment)| Record::Compacted {
            first_seq,
            first_segment,
        }),
        2 => transaction().prop_map(Record::Transaction),
        2 => (any::<u64>(), text(), any::<u64>(), vec((text(), text()), 0..5)).prop_map(
            |(order, backend, seq, pairs)| Record::Ids { order, backend, seq, pairs }
        ),
        1 => (text(), any::<u64>()).prop_map(|(backend, after)| Record::ForgetIds { backend, after }),
    ]
}

/// A frame around `body` with a correct length and checksum, whatever the body holds.
fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

// --- Properties ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every record reads back exactly, with the frame's full length, whatever follows it.
    #[test]
    fn every_record_round_trips(record in record(), tail in vec(any::<u8>(), 0..16)) {
        let frame = encode(&record);
        prop_assert_eq!(read_frame(&frame), Ok((record.clone(), frame.len())));
        let mut longer = frame.clone();
        longer.extend_from_slice(&tail);
        prop_assert_eq!(read_frame(&longer), Ok((record, frame.len())));
    }

    /// Any prefix of a frame (a write cut short) is `Short`, never a record.
    #[test]
    fn every_prefix_of_a_frame_is_short(record in record()) {
        let frame = encode(&record);
        for cut in 0..frame.len() {
            prop_assert_eq!(
                read_frame(&frame[..cut]),
                Err(FrameError::Short),
                "cut at {} of {}", cut, frame.len()
            );
        }
    }

    /// Frames written back to back read back in order, each with its own length, and the end of
    /// the log is `Short`.
    #[test]
    fn concatenated_frames_read_back_in_order(records in vec(record(), 0..8)) {
        let frames: Vec<Vec<u8>> = records.iter().map(encode).collect();
        let log = frames.concat();
        let mut at = 0;
        for (i, (record, frame)) in records.iter().zip(&frames).enumerate() {
            let (got, len) = read_frame(&log[at..])
                .map_err(|e| TestCaseError::fail(format!("record {i} at offset {at}: {e}")))?;
            prop_assert_eq!(&got, record, "record {} at offset {}", i, at);
            prop_assert_eq!(len, frame.len(), "record {} at offset {}", i, at);
            at += len;
        }
        prop_assert_eq!(at, log.len());
        prop_assert_eq!(read_frame(&log[at..]), Err(FrameError::Short));
    }

    /// Every single-bit flip anywhere in a frame is an error. In the checksum or the body it is
    /// always `BadChecksum` (CRC-32 catches every single-bit error); in the length it is
    /// `BadLength` (zero or over the limit), `Short` (longer than the bytes at hand) or, for a
    /// shorter length, an error on the shorter body.
    #[test]
    fn a_flipped_bit_is_never_a_record(record in record()) {
        let frame = encode(&record);
        let len = (frame.len() - FRAME_HEADER) as u32;
        let mut damaged = frame.clone();
        for bit in 0..frame.len() * 8 {
            let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
            damaged[byte] ^= mask;
            let got = read_frame(&damaged);
            damaged[byte] ^= mask;
            if byte < 4 {
                let flipped = len ^ (1 << bit);
                if flipped == 0 || flipped as usize > MAX_BODY {
                    prop_assert_eq!(got, Err(FrameError::BadLength(flipped)), "bit {}", bit);
                } else if flipped > len {
                    prop_assert_eq!(got, Err(FrameError::Short), "bit {}", bit);
                } else {
                    prop_assert!(got.is_err(), "bit {}: {:?}", bit, got);
                }
            } else {
                prop_assert_eq!(got, Err(FrameError::BadChecksum), "bit {}", bit);
            }
        }
    }

    /// A damaged body that still carries a valid checksum (a bug, not a torn write) either fails
    /// to decode with `BadBody` or decodes to a record whose encoding is exactly those bytes (or
    /// the form older builds wrote it in, see `legacy_frame`): the decoder never reads a body two
    /// ways, and never panics on one.
    #[test]
    fn damaged_bodies_decode_canonically_or_not_at_all(
        record in record(),
        edits in vec((any::<Index>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut body = encode(&record).split_off(FRAME_HEADER);
        for (at, value) in edits {
            let i = at.index(body.len());
            body[i] = value;
        }
        if let Some(cut) = cut {
            body.truncate(cut.index(body.len()).max(1));
        }
        let frame = frame_of(&body);
        match read_frame(&frame) {
            Ok((decoded, len)) => {
                prop_assert_eq!(len, frame.len());
                canonical(&decoded, &frame)?;
            }
            Err(e) => prop_assert!(matches!(e, FrameError::BadBody(_)), "{:?}", e),
        }
    }

    /// An append cut right before its trailing fields (as older builds wrote it) reads back with
    /// their most careful values, and that is its one other form.
    #[test]
    fn appends_without_their_trailing_fields_read_back(e in entry()) {
        let frame = encode_append(&e);
        let trailing = 8 + e.transaction.as_ref().map_or(0, |id| 4 + id.len());
        let body = &frame[FRAME_HEADER..frame.len() - trailing];
        let old = Entry {
            after: e.seq.saturating_sub(1),
            transaction: None,
            ..e
        };
        let legacy = frame_of(body);
        prop_assert_eq!(read_frame(&legacy), Ok((Record::Append(Box::new(old.clone())), legacy.len())));
        prop_assert_eq!(legacy_frame(&Record::Append(Box::new(old))), Some(legacy));
    }
}

/// `frame`, from which `record` was read, is the encoding of `record` or its legacy form.
fn canonical(record: &Record, frame: &[u8]) -> Result<(), TestCaseError> {
    if legacy_frame(record).is_some_and(|legacy| legacy == frame) {
        return Ok(());
    }
    prop_assert_eq!(encode(record), frame);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Times anywhere in `SystemTime`'s range, before or after the epoch, round-trip exactly.
    #[test]
    fn times_round_trip(before in time()) {
        let frame = encode_expire_keys(before);
        prop_assert_eq!(read_frame(&frame), Ok((Record::ExpireKeys { before }, frame.len())));
    }

    /// Arbitrary bytes never panic the reader; whatever it accepts is a canonical frame.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok((record, len)) = read_frame(&bytes) {
            canonical(&record, &bytes[..len])?;
        }
    }

    /// An arbitrary body under a valid checksum, starting with any kind byte (known or not),
    /// never panics the decoder; whatever it accepts is a canonical frame.
    #[test]
    fn arbitrary_bodies_never_panic(kind in 0u8..=14, rest in vec(any::<u8>(), 0..128)) {
        let mut body = vec![kind];
        body.extend_from_slice(&rest);
        let frame = frame_of(&body);
        match read_frame(&frame) {
            Ok((record, len)) => {
                prop_assert_eq!(len, frame.len());
                canonical(&record, &frame)?;
            }
            Err(e) => prop_assert!(matches!(e, FrameError::BadBody(_)), "{:?}", e),
        }
    }
}
