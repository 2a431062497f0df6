use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn response() -> ResponseRecord {
    ResponseRecord {
        status: 201,
        headers: vec![Header::new("content-type", "application/json")],
        body: Bytes::from_static(b"{\"id\":7}"),
    }
}

fn entry(state: EntryState) -> Entry {
    Entry {
        seq: 42,
        lane: "acct-7".into(),
        after: 40,
        time: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        request: RequestRecord {
            method: "POST".into(),
            uri: "/accounts/7?x=1".into(),
            headers: vec![
                Header::new("authorization", "Bearer t"),
                Header::new("x-bin", Bytes::from_static(&[0, 255, 10])),
            ],
            body: Bytes::from(vec![7u8; 1000]),
        },
        state,
        acks: vec!["b".into(), "c".into()],
        dispatched: vec![],
        undelivered: vec![],
        idempotency: Some(IdempotencyKey {
            scoped: "scope:key".into(),
            fingerprint: "fp".into(),
        }),
        transaction: None,
    }
}

fn transaction(
    outcome: TransactionOutcome,
    commits: Vec<(Seq, ResponseRecord)>,
) -> TransactionRecord {
    TransactionRecord {
        id: "scope:tx-1".into(),
        outcome,
        seqs: vec![40, 41, 42],
        commits,
        time: UNIX_EPOCH + Duration::new(1_700_000_001, 5),
    }
}

fn round_trip(frame: Vec<u8>) -> Record {
    let (record, len) = read_frame(&frame).expect("frame reads back");
    assert_eq!(len, frame.len());
    record
}

#[test]
fn every_record_kind_round_trips() {
    for state in [
        EntryState::Pending,
        EntryState::Answered(response()),
        EntryState::Committed(response()),
        EntryState::Aborted("primary unreachable".into()),
    ] {
        let e = entry(state);
        assert_eq!(
            round_trip(encode_append(&e)),
            Record::Append(Box::new(e.clone()))
        );
        for id in ["scope:tx-1", ""] {
            let e = e.clone().with_transaction(Some(id.into()));
            assert_eq!(round_trip(encode_append(&e)), Record::Append(Box::new(e)));
        }
    }
    for t in [
        transaction(TransactionOutcome::Committed, vec![]),
        transaction(
            TransactionOutcome::Committed,
            vec![(40, response()), (42, response())],
        ),
        transaction(
            TransactionOutcome::Aborted("backend b diverged".into()),
            vec![],
        ),
        transaction(
            TransactionOutcome::Aborted(String::new()),
            vec![(41, response())],
        ),
        TransactionRecord {
            seqs: vec![],
            ..transaction(TransactionOutcome::Committed, vec![])
        },
    ] {
        assert_eq!(round_trip(encode_transaction(&t)), Record::Transaction(t));
    }
    assert_eq!(
        round_trip(encode_response(3, &response())),
        Record::Response {
            seq: 3,
            response: response()
        }
    );
    assert_eq!(
        round_trip(encode_commit(3, &response())),
        Record::Commit {
            seq: 3,
            response: response()
        }
    );
    assert_eq!(
        round_trip(encode_ack(3, "backup-b")),
        Record::Ack {
            seq: 3,
            backend: "backup-b".into()
        }
    );
    assert_eq!(
        round_trip(encode_abort(3, "timeout")),
        Record::Abort {
            seq: 3,
            reason: "timeout".into()
        }
    );
    let topology = Topology {
        epoch: 9,
        primary: "a".into(),
        backends: vec![BackendRecord {
            name: "a".into(),
            url: "http://127.0.0.1:9001".into(),
            implementation: "v1".into(),
            state: "in-sync".into(),
            acked_seq: 41,
        }],
    };
    assert_eq!(
        round_trip(encode_topology(&topology)),
        Record::Topology(topology)
    );
    assert_eq!(
        round_trip(encode_compacted(41, 7)),
        Record::Compacted {
            first_seq: 41,
            first_segment: 7
        }
    );
    for pairs in [ids(), vec![], vec![(String::new(), "ürün-7".into())]] {
        assert_eq!(
            round_trip(encode_ids(9, "backup-b", 42, &pairs)),
            Record::Ids {
                order: 9,
                backend: "backup-b".into(),
                seq: 42,
                pairs
            }
        );
    }
    for after in [0, 41, u64::MAX] {
        assert_eq!(
            round_trip(encode_forget_ids("backup-b", after)),
            Record::ForgetIds {
                backend: "backup-b".into(),
                after
            }
        );
    }
}

fn ids() -> Vec<(String, String)> {
    vec![
        ("acct-7".into(), "9f3c".into()),
        ("tx-12".into(), "local-12".into()),
    ]
}

#[test]
fn a_damaged_identifier_record_does_not_decode() {
    let frame = encode_ids(3, "b", 42, &ids());
    let body = frame_body(&frame).unwrap();
    // Kind, order, seq, then the backend (4 + 1 bytes): the pair count.
    let count = 1 + 8 + 8 + 4 + 1;
    assert_eq!(&body[count..count + 4], &2u32.to_le_bytes());
    let mut bad = body.to_vec();
    bad[count..count + 4].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(decode(&bad), Err(d) if d.contains("exceeds the record")));
    // One pair fewer than announced: the record ends inside the last pair.
    let mut bad = body.to_vec();
    bad[count..count + 4].copy_from_slice(&3u32.to_le_bytes());
    assert!(decode(&bad).is_err());
    // A local id that is not UTF-8.
    let mut bad = body.to_vec();
    *bad.last_mut().unwrap() = 0xff;
    assert!(matches!(decode(&bad), Err(d) if d.contains("not UTF-8")));
    // Cut inside the last pair, and trailing bytes.
    assert!(decode(&body[..body.len() - 1]).is_err());
    let mut bad = body.to_vec();
    bad.push(0);
    assert!(matches!(decode(&bad), Err(d) if d.contains("unexpected bytes")));

    let frame = encode_forget_ids("b", 7);
    let body = frame_body(&frame).unwrap();
    assert!(decode(&body[..body.len() - 1]).is_err());
    let mut bad = body.to_vec();
    bad.push(0);
    assert!(decode(&bad).is_err());
    // A damaged frame is told apart like any other.
    let frame = encode_ids(3, "b", 42, &ids());
    assert_eq!(
        read_frame(&frame[..frame.len() - 1]),
        Err(FrameError::Short)
    );
    let mut flipped = frame.clone();
    flipped[FRAME_HEADER + 12] ^= 1;
    assert_eq!(read_frame(&flipped), Err(FrameError::BadChecksum));
}

#[test]
fn a_compaction_record_never_starts_the_history_at_zero() {
    let mut body = vec![KIND_COMPACTED];
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&3u64.to_le_bytes());
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    frame.extend_from_slice(&body);
    assert!(matches!(read_frame(&frame), Err(FrameError::BadBody(d)) if d.contains("seq 0")));
}

#[test]
fn times_before_and_after_the_epoch_round_trip() {
    for t in [
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::new(5, 1),
        UNIX_EPOCH - Duration::new(5, 0),
        UNIX_EPOCH - Duration::new(5, 250_000_000),
    ] {
        assert_eq!(
            round_trip(encode_expire_keys(t)),
            Record::ExpireKeys { before: t }
        );
    }
}

/// Regression: the oldest time `SystemTime` holds is i64::MIN seconds before the epoch; encoding
/// it negated i64::MIN (an overflow panic in debug builds).
#[test]
fn the_oldest_representable_time_round_trips() {
    let oldest = UNIX_EPOCH - Duration::from_secs(1 << 63);
    for t in [oldest, oldest + Duration::from_nanos(1)] {
        let frame = encode_expire_keys(t);
        assert_eq!(
            &frame[FRAME_HEADER + 1..FRAME_HEADER + 9],
            &i64::MIN.to_le_bytes()
        );
        assert_eq!(round_trip(frame), Record::ExpireKeys { before: t });
    }
}

#[test]
fn damaged_frames_are_told_apart() {
    let frame = encode_ack(1, "b");
    assert_eq!(
        read_frame(&frame[..frame.len() - 1]),
        Err(FrameError::Short)
    );
    assert_eq!(read_frame(&frame[..3]), Err(FrameError::Short));
    let mut flipped = frame.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(read_frame(&flipped), Err(FrameError::BadChecksum));
    assert_eq!(read_frame(&[0; 16]), Err(FrameError::BadLength(0)));

    // A body with a valid checksum but an unknown kind is a decoding error, not a torn write.
    let body = [99u8, 1, 2];
    let mut unknown = (body.len() as u32).to_le_bytes().to_vec();
    unknown.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    unknown.extend_from_slice(&body);
    assert!(matches!(read_frame(&unknown), Err(FrameError::BadBody(_))));
}

#[test]
fn appends_written_before_the_after_field_decode_with_the_most_careful_value() {
    let e = entry(EntryState::Pending);
    let frame = encode_append(&e);
    // The body without its last field, as an older build wrote it.
    let body = frame_body(&frame).unwrap();
    let old = decode(&body[..body.len() - 8]).unwrap();
    assert_eq!(
        old,
        Record::Append(Box::new(Entry {
            after: e.seq - 1,
            ..e.clone()
        }))
    );
    // An entry ordered after itself is damage, not an order.
    let mut bad = body.to_vec();
    let n = bad.len();
    bad[n - 8..].copy_from_slice(&e.seq.to_le_bytes());
    assert!(decode(&bad).is_err());
}

#[test]
fn appends_written_before_the_transaction_field_decode_without_one() {
    let e = entry(EntryState::Committed(response()));
    let with = e.clone().with_transaction(Some("scope:tx-1".into()));
    let frame = encode_append(&with);
    let body = frame_body(&frame).unwrap();
    // The body without the transaction id (`len:u32` and its bytes), as an older build wrote it.
    let cut = body.len() - 4 - "scope:tx-1".len();
    assert_eq!(
        decode(&body[..cut]).unwrap(),
        Record::Append(Box::new(e.clone()))
    );
    // Which is exactly how an entry without a transaction is written.
    assert_eq!(frame_body(&encode_append(&e)).unwrap(), &body[..cut]);
    // And a build from before `after` wrote neither: the one other form a record is read from.
    let careful = Entry {
        after: e.seq - 1,
        ..e.clone()
    };
    let legacy = legacy_frame(&Record::Append(Box::new(careful.clone()))).unwrap();
    assert_eq!(
        round_trip(legacy.clone()),
        Record::Append(Box::new(careful.clone()))
    );
    assert_eq!(legacy.len(), encode_append(&careful).len() - 8);
    assert_eq!(legacy_frame(&Record::Append(Box::new(e))), None);
    assert_eq!(legacy_frame(&Record::Append(Box::new(with))), None);
    // A transaction id that is not UTF-8, or runs past the record, is damage.
    let mut bad = body.to_vec();
    let n = bad.len();
    bad[n - 1] = 0xff;
    assert!(decode(&bad).is_err());
    let mut bad = body.to_vec();
    bad.pop();
    assert!(decode(&bad).is_err());
}

#[test]
fn a_damaged_transaction_record_does_not_decode() {
    let t = transaction(TransactionOutcome::Committed, vec![(40, response())]);
    let frame = encode_transaction(&t);
    let body = frame_body(&frame).unwrap();
    // id (4 + 10 bytes) and time (12 bytes) after the kind: the outcome byte.
    let outcome = 1 + 4 + 10 + 12;
    assert_eq!(body[outcome], 0);
    let mut bad = body.to_vec();
    bad[outcome] = 2;
    assert!(matches!(decode(&bad), Err(d) if d.contains("unknown transaction outcome 2")));
    // A seq count larger than the record.
    let mut bad = body.to_vec();
    bad[outcome + 1..outcome + 5].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(decode(&bad), Err(d) if d.contains("exceeds the record")));
    // Trailing bytes.
    let mut bad = body.to_vec();
    bad.push(0);
    assert!(decode(&bad).is_err());
}
