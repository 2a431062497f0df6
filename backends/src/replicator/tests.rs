//! The pipeline against a recording in-memory transport: order, lanes, ejection, divergence,
//! ack policies. No sockets.

use std::time::Duration;

use lockstep_journal::EntryState;

use super::*;

use crate::testing::*;

#[tokio::test]
async fn every_backend_processes_the_same_requests_in_seq_order() {
    for dispatch in [DispatchMode::Sequential, DispatchMode::Parallel] {
        let (r, fakes, journal) = setup(config(AckPolicy::All, dispatch));
        let mut handles = Vec::new();
        for i in 0..40 {
            let r = r.clone();
            handles.push(tokio::spawn(async move {
                r.submit(post("", &format!("/k/{i}"))).await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        let a = fakes.processed("a");
        assert_eq!(a.len(), 40);
        let seqs: Vec<u64> = a.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            seqs,
            (1..=40).collect::<Vec<_>>(),
            "{dispatch:?}: the primary saw seq order"
        );
        assert_eq!(fakes.processed("b"), a, "{dispatch:?}");
        assert_eq!(fakes.processed("c"), a, "{dispatch:?}");
        assert_eq!(r.committed_seq(), 40);
        for b in r.pool().all() {
            assert_eq!(
                (b.state(), b.acked_seq()),
                (BackendState::InSync, 40),
                "{}",
                b.name
            );
        }
        let entries = journal.read_from(1, 100).await.unwrap();
        assert!(
            entries
                .iter()
                .all(|e| matches!(e.state, EntryState::Committed(_))
                    && e.acks.len() == 3
                    && e.dispatched.len() == 3),
            "every entry committed, sent to and acknowledged by all three"
        );
    }
}

#[tokio::test]
async fn a_slow_lane_does_not_hold_up_another_lane() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    fakes.set(
        "b",
        Behaviour {
            slow: Some(("/slow".into(), Duration::from_millis(250))),
            ..Default::default()
        },
    );
    let slow = {
        let r = r.clone();
        tokio::spawn(async move { r.submit(post("slow", "/slow/1")).await })
    };
    // Wait until the slow request reached the slow backup: it is now stuck there.
    fakes
        .wait_until(|f| f.processed("a").iter().any(|(u, _)| u == "/slow/1"))
        .await;
    for i in 0..5 {
        r.submit(post("fast", &format!("/fast/{i}"))).await.unwrap();
    }
    assert!(
        !slow.is_finished(),
        "the fast lane finished five requests while the slow one waited"
    );
    slow.await.unwrap().unwrap();
    assert_eq!(fakes.state("b")["fast"], 5);
}

#[tokio::test]
async fn a_failing_backup_is_ejected_and_writes_continue() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.submit(post("", "/k/1")).await.unwrap();
    fakes.set(
        "c",
        Behaviour {
            hang: true,
            ..Default::default()
        },
    );
    let c = r.submit(post("", "/k/2")).await.unwrap();
    assert_eq!(c.seq, 2);
    let c_backend = r.pool().get("c").unwrap();
    assert_eq!(c_backend.state(), BackendState::Lagging);
    assert_eq!(c_backend.acked_seq(), 1);
    for i in 3..6 {
        r.submit(post("", &format!("/k/{i}"))).await.unwrap();
    }
    assert_eq!(r.pool().get("b").unwrap().acked_seq(), 5);
    assert_eq!(
        c_backend.acked_seq(),
        1,
        "an ejected backup receives nothing more"
    );
    assert_eq!(fakes.processed("c").len(), 1);
}

#[tokio::test]
async fn a_wrong_backup_is_marked_diverged() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    fakes.set(
        "b",
        Behaviour {
            wrong: true,
            ..Default::default()
        },
    );
    let committed = r.submit(post("", "/k/1")).await.unwrap();
    assert_eq!(
        &committed.response.body[..],
        br#"{"k":1}"#,
        "the client gets the primary's answer"
    );
    assert_eq!(r.pool().get("b").unwrap().state(), BackendState::Diverged);
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::InSync);
}

#[tokio::test]
async fn log_only_divergence_keeps_the_backup() {
    let mut cfg = config(AckPolicy::All, DispatchMode::Sequential);
    cfg.on_divergence = OnDivergence::Log;
    let (r, fakes, _) = setup(cfg);
    fakes.set(
        "b",
        Behaviour {
            wrong: true,
            ..Default::default()
        },
    );
    r.submit(post("", "/k/1")).await.unwrap();
    assert_eq!(r.pool().get("b").unwrap().state(), BackendState::InSync);
}

#[tokio::test]
async fn an_unreachable_primary_without_successor_aborts_without_touching_backups() {
    let (r, fakes, journal) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    for name in ["b", "c"] {
        r.pool().get(name).unwrap().set_state(BackendState::Lagging);
    }
    fakes.set(
        "a",
        Behaviour {
            refuse: true,
            ..Default::default()
        },
    );
    let err = r.submit(post("", "/k/1")).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::PrimaryUnreachable { .. }),
        "{err}"
    );
    assert!(fakes.processed("b").is_empty());
    assert_eq!(r.pool().primary().name, "a", "nobody could take over");
    assert_eq!(r.pool().get("a").unwrap().state(), BackendState::Down);
    assert!(matches!(
        journal.read_from(1, 1).await.unwrap()[0].state,
        EntryState::Aborted(_)
    ));
    assert_eq!(r.committed_seq(), 1);
}

#[tokio::test]
async fn a_refusing_primary_fails_over_and_the_request_commits_on_the_successor() {
    let (r, fakes, journal) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    let mut events = r.events().subscribe();
    r.submit(post("", "/k/1")).await.unwrap();
    fakes.set(
        "a",
        Behaviour {
            refuse: true,
            ..Default::default()
        },
    );
    let committed = r.submit(post("", "/k/2")).await.unwrap();
    assert_eq!((committed.seq, committed.primary.as_str()), (2, "b"));
    assert_eq!(&committed.response.body[..], br#"{"k":2}"#);
    assert_eq!(r.pool().primary().name, "b");
    assert_eq!(
        r.pool().get("a").unwrap().state(),
        BackendState::Suspect,
        "a failed primary never rejoins by itself"
    );
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::InSync);
    assert_eq!(fakes.processed("b"), fakes.processed("c"));
    assert!(matches!(
        journal.get(2).await.unwrap().unwrap().state,
        EntryState::Committed(_)
    ));
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e.event);
    }
    assert!(kinds.contains(&"primary-changed"), "{kinds:?}");
    assert!(r.epoch() > 0);
    // Later requests go to the new primary.
    assert_eq!(r.submit(post("", "/k/3")).await.unwrap().primary, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_mid_stream_loses_nothing() {
    for dispatch in [DispatchMode::Sequential, DispatchMode::Parallel] {
        let (r, fakes, _) = setup(config(AckPolicy::All, dispatch));
        let mut handles = Vec::new();
        for i in 0..60 {
            let r = r.clone();
            let lane = if i % 2 == 0 { "even" } else { "odd" };
            handles.push(tokio::spawn(async move {
                r.submit(post(lane, &format!("/{lane}/{i}"))).await
            }));
        }
        fakes.wait_until(|f| f.processed("a").len() >= 10).await;
        fakes.set(
            "a",
            Behaviour {
                refuse: true,
                ..Default::default()
            },
        );
        for h in handles {
            h.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{dispatch:?}: a request failed: {e}"));
        }
        let b = fakes.processed("b");
        let c = fakes.processed("c");
        assert_eq!(
            b.len(),
            60,
            "{dispatch:?}: every request applied exactly once on the new primary"
        );
        assert_eq!(fakes.state("b"), fakes.state("c"), "{dispatch:?}");
        for lane in ["/even/", "/odd/"] {
            let order = |v: &[(String, u64)]| {
                v.iter()
                    .filter(|(u, _)| u.starts_with(lane))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                order(&b),
                order(&c),
                "{dispatch:?}: same lane order on both survivors"
            );
        }
        assert_eq!(r.committed_seq(), 60);
        assert_eq!(r.pool().primary().name, "b", "{dispatch:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controlled_switchover_moves_the_primary_under_load() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    // A slow backup keeps requests queued while the switchover happens.
    fakes.set(
        "b",
        Behaviour {
            slow: Some(("/".into(), Duration::from_millis(10))),
            ..Default::default()
        },
    );
    // Four clients, each sending its next request when the previous one was answered.
    let mut handles = Vec::new();
    for w in 0..4 {
        let r = r.clone();
        handles.push(tokio::spawn(async move {
            let mut primaries = Vec::new();
            for i in 0..10 {
                primaries.push(
                    r.submit(post("", &format!("/k/{w}-{i}")))
                        .await
                        .unwrap()
                        .primary,
                );
            }
            primaries
        }));
    }
    fakes.wait_until(|f| f.processed("b").len() >= 5).await;
    let pause = r.promote("c").await.unwrap();
    assert!(pause < Duration::from_secs(5));
    let mut primaries = Vec::new();
    for h in handles {
        primaries.extend(h.await.unwrap());
    }
    assert!(
        primaries.contains(&"a".to_string()) && primaries.contains(&"c".to_string()),
        "{primaries:?}"
    );
    assert_eq!(r.pool().primary().name, "c");
    assert_eq!(
        r.pool().get("a").unwrap().state(),
        BackendState::InSync,
        "the old primary stays as a backup"
    );
    for name in ["a", "b", "c"] {
        assert_eq!(
            fakes.processed(name).len(),
            40,
            "{name} processed every request once"
        );
    }
    assert_eq!(fakes.state("a"), fakes.state("b"));
    assert_eq!(fakes.state("c"), fakes.state("b"));
    assert!(matches!(
        r.promote("c").await,
        Err(SwitchoverError::AlreadyPrimary(_))
    ));
    r.pool().get("b").unwrap().set_state(BackendState::Lagging);
    assert!(matches!(
        r.promote("b").await,
        Err(SwitchoverError::NotInSync { .. })
    ));
    assert!(matches!(
        r.promote("zz").await,
        Err(SwitchoverError::UnknownBackend(_))
    ));
}

#[tokio::test]
async fn ack_none_answers_before_a_slow_backup() {
    let (r, fakes, _) = setup(config(AckPolicy::None, DispatchMode::Sequential));
    fakes.set(
        "b",
        Behaviour {
            slow: Some(("/".into(), Duration::from_millis(200))),
            ..Default::default()
        },
    );
    r.submit(post("", "/k/1")).await.unwrap();
    assert!(
        fakes.processed("b").is_empty(),
        "the client was answered before the slow backup processed it"
    );
    // It still arrives, in order.
    fakes.wait_until(|f| !f.processed("b").is_empty()).await;
    assert_eq!(fakes.processed("b"), vec![("/k/1".to_string(), 1)]);
}

#[tokio::test]
async fn ack_majority_needs_one_of_two_backups() {
    let (r, fakes, _) = setup(config(AckPolicy::Majority, DispatchMode::Sequential));
    fakes.set(
        "b",
        Behaviour {
            slow: Some(("/".into(), Duration::from_millis(200))),
            ..Default::default()
        },
    );
    r.submit(post("", "/k/1")).await.unwrap();
    assert_eq!(fakes.processed("c").len(), 1);
    assert!(
        fakes.processed("b").is_empty(),
        "committed on c's ack without waiting for b"
    );
}

#[test]
fn required_acks_follow_the_policy() {
    let (all, _, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    let (maj, _, _) = setup(config(AckPolicy::Majority, DispatchMode::Sequential));
    let (none, _, _) = setup(config(AckPolicy::None, DispatchMode::Sequential));
    assert_eq!([0, 1, 2, 3].map(|n| all.required_acks(n)), [0, 1, 2, 3]);
    assert_eq!(
        [0, 1, 2, 3, 4].map(|n| maj.required_acks(n)),
        [0, 1, 1, 2, 2]
    );
    assert_eq!([0, 3].map(|n| none.required_acks(n)), [0, 0]);
}

fn probes() -> Vec<lockstep_config::ViewProbe> {
    vec![lockstep_config::ViewProbe {
        method: "GET".into(),
        path: "/state".into(),
        compare: CompareRule::default(),
    }]
}

async fn catch_up(r: &Arc<Replicator>, name: &str) -> Result<crate::JoinReport, crate::JoinError> {
    let from = r.pool().get(name).unwrap().acked_seq() + 1;
    replay_into(r, name, from, false, Vec::new()).await
}

/// A catch-up of `name` from `from` with small batches and a short fence lag.
async fn replay_into(
    r: &Arc<Replicator>,
    name: &str,
    from: lockstep_journal::Seq,
    fresh: bool,
    include_aborted: Vec<lockstep_journal::Seq>,
) -> Result<crate::JoinReport, crate::JoinError> {
    let (progress, _) = watch::channel(crate::JoinProgress::default());
    let options = crate::CatchupOptions {
        fence_lag: 4,
        batch: 8,
        concurrency: 4,
        fresh,
        include_aborted,
    };
    r.catch_up(
        name,
        from,
        &probes(),
        &|_| CompareRule::default(),
        &options,
        &progress,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_backup_catches_up_while_traffic_flows() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.submit(post("", "/k/1")).await.unwrap();
    fakes.set(
        "c",
        Behaviour {
            refuse: true,
            ..Default::default()
        },
    );
    for i in 2..30 {
        r.submit(post("", &format!("/k/{i}"))).await.unwrap();
    }
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::Lagging);
    fakes.set("c", Behaviour::default());
    let writer = {
        let r = r.clone();
        tokio::spawn(async move {
            for i in 30..80 {
                r.submit(post("other", &format!("/other/{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let report = catch_up(&r, "c").await.unwrap();
    assert!(report.replayed >= 28, "{report:?}");
    writer.await.unwrap();
    let c = r.pool().get("c").unwrap();
    assert_eq!(c.state(), BackendState::InSync);
    assert_eq!(
        fakes.state("c"),
        fakes.state("b"),
        "c has exactly the history of b"
    );
    assert_eq!(c.acked_seq(), r.last_seq());
    // It takes part in what follows.
    r.submit(post("", "/k/after")).await.unwrap();
    assert_eq!(fakes.state("c"), fakes.state("b"));
}

/// A catch-up of a reset backend from request 1.
async fn fresh_catch_up(
    r: &Arc<Replicator>,
    name: &str,
    include_aborted: Vec<lockstep_journal::Seq>,
) -> Result<crate::JoinReport, crate::JoinError> {
    replay_into(r, name, 1, true, include_aborted).await
}

#[tokio::test]
async fn an_aborted_request_the_primary_applied_is_replayed_on_the_second_attempt() {
    let cfg = config(AckPolicy::All, DispatchMode::Sequential);
    let (r, fakes, journal) = setup(cfg.clone());
    r.submit(post("", "/k/1")).await.unwrap();
    // Request 2 reached the primary, which applied it, but its outcome was never learned (the
    // gateway lost the answer and no backup could take over): aborted, outcome unknown on a.
    let request = post("", "/k/2").request;
    let entry = lockstep_journal::Entry::new(
        2,
        String::new(),
        std::time::SystemTime::now(),
        request.clone(),
    );
    journal.append(entry).await.unwrap();
    journal.record_dispatch(2, "a").await.unwrap();
    let a = r.pool().get("a").unwrap();
    fakes
        .send(&a, &request, &[], Duration::from_secs(1))
        .await
        .unwrap();
    journal
        .abort(2, "no in-sync backend can take it".into())
        .await
        .unwrap();
    // The gateway goes on with a alone; its next answer includes request 2's effect.
    let r = restart(cfg, &fakes, &journal);
    for b in ["b", "c"] {
        r.pool().get(b).unwrap().set_state(BackendState::Lagging);
    }
    let third = r.submit(post("", "/k/3")).await.unwrap();
    assert_eq!(third.response.body, r#"{"k":3}"#, "a counted request 2");

    // A reset c replayed without request 2 answers request 3 differently.
    fakes.reset("c");
    let err = fresh_catch_up(&r, "c", Vec::new()).await.unwrap_err();
    assert!(
        matches!(err, crate::JoinError::Diverged { seq: 3, .. }),
        "{err}"
    );
    assert_eq!(err.doubtful(), &[2], "request 2 may be in a's state");
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::Diverged);

    // Reset again and replayed with it: c has exactly a's state.
    fakes.reset("c");
    fresh_catch_up(&r, "c", err.doubtful().to_vec())
        .await
        .unwrap();
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::InSync);
    assert_eq!(fakes.state("c"), fakes.state("a"));
    assert_eq!(fakes.state("c")["k"], 3);

    // Without a reset nothing is doubtful: such a catch-up never starts from an empty state.
    r.pool().get("b").unwrap().set_state(BackendState::Lagging);
    let err = catch_up(&r, "b").await.map(|_| ()).unwrap_err();
    assert!(err.doubtful().is_empty(), "{err}");
}

#[tokio::test]
async fn a_catch_up_that_answers_differently_is_diverged() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.pool().get("c").unwrap().set_state(BackendState::Lagging);
    for i in 0..5 {
        r.submit(post("", &format!("/k/{i}"))).await.unwrap();
    }
    fakes.set(
        "c",
        Behaviour {
            wrong: true,
            ..Default::default()
        },
    );
    let err = catch_up(&r, "c").await.unwrap_err();
    assert!(
        matches!(err, crate::JoinError::Diverged { seq: 1, .. }),
        "{err}"
    );
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::Diverged);
}

#[tokio::test]
async fn a_catch_up_whose_view_differs_is_refused() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.pool().get("c").unwrap().set_state(BackendState::Lagging);
    for i in 0..3 {
        r.submit(post("", &format!("/k/{i}"))).await.unwrap();
    }
    // c already holds state the history does not explain.
    fakes
        .send(
            &r.pool().get("c").unwrap(),
            &post("", "/extra/1").request,
            &[],
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    let err = catch_up(&r, "c").await.unwrap_err();
    assert!(
        matches!(&err, crate::JoinError::ViewsDiffer { differences, .. } if differences.len() == 1),
        "{err}"
    );
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::Diverged);
    assert!(matches!(
        catch_up(&r, "a").await,
        Err(crate::JoinError::IsPrimary(_))
    ));
    assert!(matches!(
        catch_up(&r, "b").await,
        Err(crate::JoinError::AlreadyInSync(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_backend_replays_lanes_concurrently_each_in_its_own_order() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    // Four clients at once, one per lane: their requests were concurrent, so a replay may
    // overlap them too.
    fakes.set(
        "a",
        Behaviour {
            slow: Some(("/".into(), Duration::from_millis(5))),
            ..Default::default()
        },
    );
    let mut clients = Vec::new();
    for lane in 0..4 {
        let r = r.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..10 {
                r.submit(post(&format!("lane{lane}"), &format!("/k{lane}/{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let d = r
        .add_backend("d", "http://127.0.0.1:1/d", "v2")
        .await
        .unwrap();
    assert_eq!(d.state(), BackendState::Joining);
    // Every request takes a while on d, so that lanes replayed at once overlap.
    fakes.set(
        "d",
        Behaviour {
            slow: Some(("/".into(), Duration::from_millis(20))),
            ..Default::default()
        },
    );
    let (progress, watching) = watch::channel(crate::JoinProgress::default());
    let options = crate::CatchupOptions {
        fence_lag: 1,
        batch: 40,
        concurrency: 4,
        fresh: true,
        include_aborted: Vec::new(),
    };
    let report = r
        .catch_up(
            "d",
            1,
            &probes(),
            &|_| CompareRule::default(),
            &options,
            &progress,
        )
        .await
        .unwrap();
    assert_eq!(report.replayed, 40);
    assert_eq!(d.state(), BackendState::InSync);
    assert_eq!(fakes.state("d"), fakes.state("a"));
    // Within each lane, d processed the requests in seq order, as the primary did.
    for lane in 0..4 {
        let prefix = format!("/k{lane}/");
        let order = |name: &str| -> Vec<u64> {
            fakes
                .processed(name)
                .into_iter()
                .filter(|(uri, _)| uri.starts_with(&prefix))
                .map(|(_, seq)| seq)
                .collect()
        };
        assert_eq!(order("d"), order("a"), "lane {lane}");
    }
    // Lanes were replayed at once, never more than `concurrency` of them.
    assert!(
        (2..=4).contains(&fakes.max_concurrent("d")),
        "{}",
        fakes.max_concurrent("d")
    );
    let last = watching.borrow().clone();
    assert_eq!((last.phase, last.replayed), ("in-sync", 40));
    assert!(last.pause_ms.is_some());
}

#[tokio::test]
async fn added_and_removed_backends_are_announced_and_persisted() {
    let (r, _fakes, journal) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    let mut events = r.events().subscribe();
    r.add_backend("d", "http://127.0.0.1:1/d", "v2")
        .await
        .unwrap();
    let e = events.recv().await.unwrap();
    assert_eq!(
        (e.event, e.backend.as_deref(), e.implementation.as_deref()),
        ("backend-added", Some("d"), Some("v2"))
    );
    assert!(matches!(
        r.add_backend("d", "http://127.0.0.1:2/", "v2").await,
        Err(MembershipError::NameTaken(_))
    ));
    assert!(matches!(
        r.add_backend("e", "http://127.0.0.1:1/d", "v2").await,
        Err(MembershipError::UrlTaken { .. })
    ));
    assert!(matches!(
        r.add_backend("e", "https://example.com", "v2").await,
        Err(MembershipError::BadUrl { .. })
    ));
    assert!(matches!(
        r.add_backend("bad name", "http://127.0.0.1:3", "v2").await,
        Err(MembershipError::BadName(_))
    ));
    assert!(matches!(
        r.remove_backend("a").await,
        Err(MembershipError::IsPrimary(_))
    ));
    let removed = r.remove_backend("b").await.unwrap();
    assert_eq!(removed.name, "b");
    let e = events.recv().await.unwrap();
    assert_eq!(
        (e.event, e.backend.as_deref()),
        ("backend-removed", Some("b"))
    );
    let names: Vec<String> = r.pool().all().iter().map(|b| b.name.clone()).collect();
    assert_eq!(names, ["a", "c", "d"]);

    // A restart with the same configuration (a, b, c) restores the membership of the journal.
    let topology = journal.load_topology().await.unwrap().unwrap();
    let restarted = restart(
        config(AckPolicy::All, DispatchMode::Sequential),
        &_fakes,
        &journal,
    );
    restarted.restore(&topology);
    let names: Vec<(String, String)> = restarted
        .pool()
        .all()
        .iter()
        .map(|b| (b.name.clone(), b.implementation.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("a".into(), "v1".into()),
            ("c".into(), "v1".into()),
            ("d".into(), "v2".into())
        ]
    );
    // b stays removed through the next save too.
    assert!(
        restarted
            .topology()
            .backends
            .iter()
            .any(|rec| rec.name == "b" && rec.state == "removed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_backend_during_its_catch_up_stops_the_catch_up() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    for i in 0..20 {
        r.submit(post("", &format!("/k/{i}"))).await.unwrap();
    }
    r.add_backend("d", "http://127.0.0.1:1/d", "v1")
        .await
        .unwrap();
    fakes.set(
        "d",
        Behaviour {
            slow: Some(("/".into(), Duration::from_millis(10))),
            ..Default::default()
        },
    );
    let join = {
        let r = r.clone();
        tokio::spawn(async move {
            let (progress, _) = watch::channel(crate::JoinProgress::default());
            let options = crate::CatchupOptions {
                fence_lag: 1,
                batch: 2,
                concurrency: 1,
                fresh: true,
                include_aborted: Vec::new(),
            };
            r.catch_up(
                "d",
                1,
                &probes(),
                &|_| CompareRule::default(),
                &options,
                &progress,
            )
            .await
        })
    };
    fakes.wait_until(|f| !f.processed("d").is_empty()).await;
    r.remove_backend("d").await.unwrap();
    let err = join.await.unwrap().unwrap_err();
    assert_eq!(err, crate::JoinError::Removed("d".into()));
    assert!(r.pool().get("d").is_none());
    // The rest goes on.
    r.submit(post("", "/k/after")).await.unwrap();
    assert_eq!(fakes.state("b"), fakes.state("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_keeps_the_order_clients_saw_across_lanes() {
    let (r, fakes, journal) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    // One client, alternating lanes: each request was sent after the previous one's answer, so
    // the replay must not overlap any of them, whatever their lanes.
    for i in 0..12 {
        r.submit(post(&format!("lane{}", i % 3), &format!("/k{}/{i}", i % 3)))
            .await
            .unwrap();
    }
    let entries = journal.read_from(1, 100).await.unwrap();
    assert!(entries.iter().all(|e| e.after == e.seq - 1), "{entries:?}");
    r.add_backend("d", "http://127.0.0.1:1/d", "v1")
        .await
        .unwrap();
    fakes.set(
        "d",
        Behaviour {
            slow: Some(("/".into(), Duration::from_millis(2))),
            ..Default::default()
        },
    );
    let (progress, _) = watch::channel(crate::JoinProgress::default());
    let options = crate::CatchupOptions {
        fence_lag: 1,
        batch: 100,
        concurrency: 8,
        fresh: true,
        include_aborted: Vec::new(),
    };
    r.catch_up(
        "d",
        1,
        &probes(),
        &|_| CompareRule::default(),
        &options,
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(fakes.max_concurrent("d"), 1);
    let seqs: Vec<u64> = fakes.processed("d").iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
}

mod transactions {
    use super::*;
    use crate::{TxnError, TxnMode};

    fn key(mode: TxnMode, id: &str) -> String {
        Replicator::transaction_key(mode, "scope", id)
    }

    async fn txn(
        r: &Arc<Replicator>,
        mode: TxnMode,
        id: &str,
        lane: &str,
        uri: &str,
        commit: bool,
    ) -> Result<crate::TxnReply, TxnError> {
        r.submit_in_transaction(post(lane, uri), id, &key(mode, id), mode, commit)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_holds_its_lane_until_it_ends() {
        for mode in [TxnMode::PerRequest, TxnMode::PerTransaction] {
            let (r, fakes, journal) = setup(config(AckPolicy::All, DispatchMode::Sequential));
            txn(&r, mode, "t1", "acct", "/acct/withdraw", false)
                .await
                .unwrap();
            // Another request on the lane waits; one on another lane does not.
            let waiting = {
                let r = r.clone();
                tokio::spawn(async move { r.submit(post("acct", "/acct/other")).await })
            };
            r.submit(post("elsewhere", "/else/1")).await.unwrap();
            assert!(!waiting.is_finished(), "{mode:?}: the held lane waits");
            let last = txn(&r, mode, "t1", "acct", "/acct/deposit", true)
                .await
                .unwrap();
            let outcome = last.outcome.unwrap();
            assert_eq!(outcome.outcome, "committed");
            assert_eq!(outcome.seqs.len(), 2);
            let other = waiting.await.unwrap().unwrap();
            assert!(other.seq > outcome.seqs[1]);
            // Every copy saw the lane's requests in the same order, nothing interleaved.
            let lane = |b: &str| -> Vec<String> {
                fakes
                    .processed(b)
                    .into_iter()
                    .map(|(u, _)| u)
                    .filter(|u| u.starts_with("/acct/"))
                    .collect()
            };
            assert_eq!(
                lane("a"),
                ["/acct/withdraw", "/acct/deposit", "/acct/other"],
                "{mode:?}"
            );
            assert_eq!(lane("b"), lane("a"), "{mode:?}");
            assert_eq!(lane("c"), lane("a"), "{mode:?}");
            let record = journal
                .find_transaction(&key(mode, "t1"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(record.seqs, outcome.seqs);
            for seq in outcome.seqs {
                assert!(matches!(
                    journal.get(seq).await.unwrap().unwrap().state,
                    EntryState::Committed(_)
                ));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn per_transaction_requests_are_tentative_until_the_commit() {
        let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
        let first = txn(&r, TxnMode::PerTransaction, "t", "x", "/x/1", false)
            .await
            .unwrap();
        assert!(first.tentative);
        assert_eq!(fakes.processed("a").len(), 1);
        assert!(
            fakes.processed("b").is_empty(),
            "the backups wait for the commit"
        );
        txn(&r, TxnMode::PerTransaction, "t", "x", "/x/2", false)
            .await
            .unwrap();
        let outcome = r
            .commit_transaction(&key(TxnMode::PerTransaction, "t"))
            .await
            .unwrap();
        assert_eq!(outcome.outcome, "committed");
        assert_eq!(fakes.state("b"), fakes.state("a"));
        assert_eq!(fakes.state("c"), fakes.state("a"));
        assert_eq!(r.committed_seq(), 2);
        // A retried commit answers the same outcome.
        let again = r
            .commit_transaction(&key(TxnMode::PerTransaction, "t"))
            .await
            .unwrap();
        assert_eq!(again, outcome);
        // The transaction is over: a further request with its id is refused.
        assert!(matches!(
            txn(&r, TxnMode::PerTransaction, "t", "x", "/x/3", false).await,
            Err(TxnError::Committed { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aborting_a_per_transaction_transaction_rolls_the_primary_back() {
        let (r, fakes, journal) = setup(config(AckPolicy::All, DispatchMode::Sequential));
        r.submit(post("x", "/x/0")).await.unwrap();
        txn(&r, TxnMode::PerTransaction, "t", "x", "/x/1", false)
            .await
            .unwrap();
        let outcome = r
            .abort_transaction(&key(TxnMode::PerTransaction, "t"), "the client gave up")
            .await
            .unwrap();
        assert_eq!(outcome.outcome, "aborted");
        // The old primary holds /x/1, nobody else does: a backup took over, a is suspect.
        assert_ne!(r.pool().primary().name, "a");
        assert_eq!(r.pool().get("a").unwrap().state(), BackendState::Suspect);
        assert_eq!(fakes.state("b"), fakes.state("c"));
        assert_eq!(fakes.state("b").get("x"), Some(&1));
        assert!(matches!(
            journal.get(2).await.unwrap().unwrap().state,
            EntryState::Aborted(_)
        ));
        // The lane is free and the backups are in-sync: traffic goes on.
        r.submit(post("x", "/x/after")).await.unwrap();
        assert_eq!(fakes.state("b"), fakes.state("c"));
        assert_eq!(r.committed_seq(), r.last_seq());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_per_request_transaction_cannot_be_aborted_once_replicated() {
        let (r, _fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
        txn(&r, TxnMode::PerRequest, "t", "x", "/x/1", false)
            .await
            .unwrap();
        let err = r
            .abort_transaction(&key(TxnMode::PerRequest, "t"), "no")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TxnError::NotAbortable { seqs, .. } if seqs.len() == 1),
            "{err}"
        );
        // It can still commit.
        let outcome = r
            .commit_transaction(&key(TxnMode::PerRequest, "t"))
            .await
            .unwrap();
        assert_eq!(outcome.outcome, "committed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_transactions_end_after_the_timeout() {
        let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
        txn(&r, TxnMode::PerRequest, "rq", "x", "/x/1", false)
            .await
            .unwrap();
        txn(&r, TxnMode::PerTransaction, "tx", "y", "/y/1", false)
            .await
            .unwrap();
        assert_eq!(r.expire_transactions(Duration::from_secs(60)).await, 0);
        assert_eq!(r.expire_transactions(Duration::ZERO).await, 2);
        assert_eq!(r.open_transactions(), 0);
        // per-request: its request stays applied everywhere; per-transaction: rolled back.
        assert_eq!(fakes.state("b").get("x"), Some(&1));
        assert_eq!(fakes.state("b").get("y"), None);
        assert_eq!(r.pool().get("a").unwrap().state(), BackendState::Suspect);
        for (mode, id) in [(TxnMode::PerRequest, "rq"), (TxnMode::PerTransaction, "tx")] {
            assert!(matches!(
                r.commit_transaction(&key(mode, id)).await,
                Err(TxnError::Aborted { reason, .. }) if reason.contains("expired")
            ));
        }
        // Both lanes are free.
        r.submit(post("x", "/x/2")).await.unwrap();
        r.submit(post("y", "/y/2")).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failover_aborts_open_per_transaction_transactions() {
        let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
        txn(&r, TxnMode::PerTransaction, "t", "x", "/x/1", false)
            .await
            .unwrap();
        fakes.set(
            "a",
            Behaviour {
                refuse: true,
                ..Default::default()
            },
        );
        let err = txn(&r, TxnMode::PerTransaction, "t", "x", "/x/2", true)
            .await
            .unwrap_err();
        assert!(matches!(err, TxnError::Aborted { .. }), "{err}");
        // The failover happened; the survivors agree and never saw the transaction.
        let mut events = r.events().subscribe();
        while r.pool().primary().name == "a" {
            let _ = events.recv().await;
        }
        r.submit(post("x", "/x/after")).await.unwrap();
        assert_eq!(fakes.state("b"), fakes.state("c"));
        assert_eq!(fakes.state("b").get("x"), Some(&1));
    }

    #[tokio::test]
    async fn per_transaction_mode_needs_an_in_sync_backup() {
        let (r, _fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
        for b in ["b", "c"] {
            r.pool().get(b).unwrap().set_state(BackendState::Lagging);
        }
        assert!(matches!(
            txn(&r, TxnMode::PerTransaction, "t", "x", "/x/1", false).await,
            Err(TxnError::NoBackup)
        ));
    }
}
