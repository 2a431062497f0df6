//! Restarting over a journal left by a crash at various points.

use std::time::SystemTime;

use lockstep_config::{AckPolicy, DispatchMode};
use lockstep_journal::{Entry, EntryState, Journal, RequestRecord, ResponseRecord};

use crate::testing::*;
use crate::{BackendState, Replicator, Transport};

fn request(uri: &str) -> RequestRecord {
    RequestRecord {
        method: "POST".into(),
        uri: uri.into(),
        headers: vec![],
        body: bytes::Bytes::new(),
    }
}

async fn recover(r: &std::sync::Arc<Replicator>) -> crate::RecoveryReport {
    r.recover(&|_| lockstep_config::CompareRule::default(), &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn committed_history_rebuilds_watermarks_and_pending_requests_are_finished() {
    let cfg = config(AckPolicy::All, DispatchMode::Sequential);
    let (r, fakes, journal) = setup(cfg.clone());
    for i in 0..3 {
        r.submit(post("", &format!("/k/{i}"))).await.unwrap();
    }
    // The crash left seq 4 journaled, sent nowhere.
    journal
        .append(Entry::new(
            4,
            String::new(),
            SystemTime::now(),
            request("/k/3"),
        ))
        .await
        .unwrap();

    let r2 = restart(cfg, &fakes, &journal);
    let report = recover(&r2).await;
    assert_eq!(report.resumed, vec![4]);
    assert!(report.suspects.is_empty(), "{report:?}");
    for name in ["a", "b", "c"] {
        let b = r2.pool().get(name).unwrap();
        assert_eq!(
            (b.state(), b.acked_seq()),
            (BackendState::InSync, 4),
            "{name}"
        );
        assert_eq!(
            fakes.processed(name).len(),
            4,
            "{name} processed seq 4 exactly once"
        );
    }
    assert!(matches!(
        journal.get(4).await.unwrap().unwrap().state,
        EntryState::Committed(_)
    ));
    // Seqs continue.
    assert_eq!(r2.submit(post("", "/k/5")).await.unwrap().seq, 5);
}

#[tokio::test]
async fn a_request_answered_by_the_primary_is_not_sent_to_it_again() {
    let cfg = config(AckPolicy::All, DispatchMode::Sequential);
    let (r, fakes, journal) = setup(cfg.clone());
    r.submit(post("", "/k/0")).await.unwrap();
    // Seq 2 reached the primary (answered, acknowledged) and was dispatched to b, which never
    // acknowledged: b's outcome is unknown; c never saw it.
    let e = Entry::new(2, String::new(), SystemTime::now(), request("/k/1"));
    journal.append(e).await.unwrap();
    journal.record_dispatch(2, "a").await.unwrap();
    let primary_answer = ResponseRecord {
        status: 200,
        headers: vec![],
        body: bytes::Bytes::from_static(br#"{"k":2}"#),
    };
    journal
        .record_response(2, primary_answer.clone())
        .await
        .unwrap();
    journal.record_ack(2, "a").await.unwrap();
    journal.record_dispatch(2, "b").await.unwrap();
    // What the backends really did before the crash: a applied it.
    let a = r.pool().get("a").unwrap();
    fakes
        .send(&a, &request("/k/1"), &[], std::time::Duration::from_secs(1))
        .await
        .unwrap();

    let r2 = restart(cfg, &fakes, &journal);
    let report = recover(&r2).await;
    assert_eq!(report.resumed, vec![2]);
    assert_eq!(report.suspects, vec!["b".to_string()]);
    assert_eq!(fakes.processed("a").len(), 2, "not re-sent to the primary");
    assert_eq!(
        fakes.processed("c").len(),
        2,
        "sent to the backup that never saw it"
    );
    assert_eq!(fakes.state("a"), fakes.state("c"));
    match journal.get(2).await.unwrap().unwrap().state {
        EntryState::Committed(resp) => assert_eq!(resp, primary_answer),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_primary_with_an_unknown_outcome_is_replaced() {
    let cfg = config(AckPolicy::All, DispatchMode::Sequential);
    let (r, fakes, journal) = setup(cfg.clone());
    r.submit(post("", "/k/0")).await.unwrap();
    // Seq 2 was dispatched to the primary; the crash came before its answer was journaled.
    journal
        .append(Entry::new(
            2,
            String::new(),
            SystemTime::now(),
            request("/k/1"),
        ))
        .await
        .unwrap();
    journal.record_dispatch(2, "a").await.unwrap();

    let r2 = restart(cfg, &fakes, &journal);
    let report = recover(&r2).await;
    assert_eq!(report.primary, "b");
    assert_eq!(report.suspects, vec!["a".to_string()]);
    assert_eq!(r2.pool().get("a").unwrap().state(), BackendState::Suspect);
    assert_eq!(
        fakes.processed("a").len(),
        1,
        "never sent twice to a backend with an unknown outcome"
    );
    assert_eq!(fakes.state("b"), fakes.state("c"));
    assert_eq!(fakes.processed("b").len(), 2);
}

#[tokio::test]
async fn the_persisted_topology_is_restored() {
    let cfg = config(AckPolicy::All, DispatchMode::Sequential);
    let (r, fakes, journal) = setup(cfg.clone());
    r.submit(post("", "/k/0")).await.unwrap();
    r.promote("c").await.unwrap();
    r.pool().get("b").unwrap().set_state(BackendState::Diverged);
    journal.save_topology(&r.topology()).await.unwrap();

    let r2 = restart(cfg, &fakes, &journal);
    r2.restore(&journal.load_topology().await.unwrap().unwrap());
    recover(&r2).await;
    assert_eq!(r2.pool().primary().name, "c");
    assert_eq!(r2.pool().get("b").unwrap().state(), BackendState::Diverged);
    assert_eq!(r2.epoch(), r.epoch());
}

#[tokio::test]
async fn a_dispatch_mark_the_saved_topology_vouches_for_is_not_an_unknown_outcome() {
    let cfg = config(AckPolicy::All, DispatchMode::Sequential);
    let (r, fakes, journal) = setup(cfg.clone());
    r.submit(post("", "/k/0")).await.unwrap();
    // Seq 2 committed long ago; b was sent it and never acknowledged it (it was ejected), then
    // came back from a checkpoint that holds it: no ack in the journal, only the old dispatch mark.
    let e = Entry::new(2, String::new(), SystemTime::now(), request("/k/1"));
    journal.append(e).await.unwrap();
    for name in ["a", "b", "c"] {
        journal.record_dispatch(2, name).await.unwrap();
        let backend = r.pool().get(name).unwrap();
        fakes
            .send(
                &backend,
                &request("/k/1"),
                &[],
                std::time::Duration::from_secs(1),
            )
            .await
            .unwrap();
        backend.mark_acked(2);
    }
    journal.record_ack(2, "a").await.unwrap();
    journal.record_ack(2, "c").await.unwrap();
    let answer = ResponseRecord {
        status: 200,
        headers: vec![],
        body: bytes::Bytes::new(),
    };
    journal.commit(2, answer).await.unwrap();
    // The saved topology: every backend in-sync through seq 2.
    journal.save_topology(&r.topology()).await.unwrap();

    let r2 = restart(cfg, &fakes, &journal);
    r2.restore(&journal.load_topology().await.unwrap().unwrap());
    let report = recover(&r2).await;
    assert!(report.suspects.is_empty(), "{report:?}");
    let b = r2.pool().get("b").unwrap();
    assert_eq!((b.state(), b.acked_seq()), (BackendState::InSync, 2));
    assert_eq!(fakes.processed("b").len(), 2, "not sent again");
}
