//! The pipeline against a recording in-memory transport: order, lanes, ejection, divergence,
//! ack policies. No sockets.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use lockstep_config::{BackendConfig, Role};
use lockstep_journal::{EntryState, MemoryJournal};

use super::*;

/// How a fake backend behaves.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Delay before answering requests whose URI starts with this prefix.
    slow: Option<(String, Duration)>,
    /// Refuse connections.
    refuse: bool,
    /// Never answer.
    hang: bool,
    /// Add one to every counter it returns.
    wrong: bool,
}

/// A fake stateful service per backend: `POST /{key}/...` increments counter `key` and answers
/// with its new value. The same per-key order gives the same answers.
#[derive(Debug, Default)]
struct FakeBackends {
    behaviour: Mutex<HashMap<String, Behaviour>>,
    counters: Mutex<HashMap<String, HashMap<String, u64>>>,
    /// (backend, uri, Lockstep-Sequence) in processing order.
    log: Mutex<Vec<(String, String, u64)>>,
    /// Bumped on every processed request, so tests can wait for progress instead of sleeping.
    progress: watch::Sender<usize>,
}

impl FakeBackends {
    fn set(&self, backend: &str, b: Behaviour) {
        self.behaviour.lock().insert(backend.into(), b);
    }

    fn processed(&self, backend: &str) -> Vec<(String, u64)> {
        self.log
            .lock()
            .iter()
            .filter(|(b, _, _)| b == backend)
            .map(|(_, uri, seq)| (uri.clone(), *seq))
            .collect()
    }

    /// Waits until `done` holds, re-checking after every processed request.
    async fn wait_until(&self, done: impl Fn(&Self) -> bool) {
        let mut rx = self.progress.subscribe();
        while !done(self) {
            rx.changed().await.unwrap();
        }
    }

    fn state(&self, backend: &str) -> HashMap<String, u64> {
        self.counters
            .lock()
            .get(backend)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Transport for FakeBackends {
    async fn send(
        &self,
        backend: &Backend,
        request: &RequestRecord,
        extra: &[Header],
        timeout: Duration,
    ) -> Result<ResponseRecord, TransportError> {
        let b = self
            .behaviour
            .lock()
            .get(&backend.name)
            .cloned()
            .unwrap_or_default();
        if b.refuse {
            return Err(TransportError::Connect("connection refused".into()));
        }
        if b.hang {
            tokio::time::sleep(timeout).await;
            return Err(TransportError::Timeout(timeout));
        }
        if let Some((prefix, delay)) = &b.slow {
            if request.uri.starts_with(prefix.as_str()) {
                tokio::time::sleep(*delay).await;
            }
        }
        let seq = extra
            .iter()
            .find(|h| h.name == "Lockstep-Sequence")
            .and_then(|h| std::str::from_utf8(&h.value).ok()?.parse().ok())
            .unwrap_or(0);
        if request.method == "GET" {
            // A read: the whole state, in key order.
            let state: std::collections::BTreeMap<String, u64> = self
                .counters
                .lock()
                .get(&backend.name)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            return Ok(ResponseRecord {
                status: 200,
                headers: vec![],
                body: Bytes::from(format!("{state:?}")),
            });
        }
        let key = request
            .uri
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let value = {
            let mut counters = self.counters.lock();
            let c = counters
                .entry(backend.name.clone())
                .or_default()
                .entry(key.clone())
                .or_default();
            *c += 1;
            *c + u64::from(b.wrong)
        };
        self.log
            .lock()
            .push((backend.name.clone(), request.uri.clone(), seq));
        self.progress.send_modify(|n| *n += 1);
        Ok(ResponseRecord {
            status: 200,
            headers: vec![Header::new("content-type", "application/json")],
            body: Bytes::from(format!("{{\"{key}\":{value}}}")),
        })
    }
}

fn backend(name: &str, role: Role) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        url: format!("http://127.0.0.1:1/{name}").parse().unwrap(),
        role,
        implementation: "v1".into(),
        reset: None,
    }
}

fn config(ack: AckPolicy, dispatch: DispatchMode) -> ReplicationConfig {
    ReplicationConfig {
        ack,
        dispatch,
        backup_timeout: Duration::from_millis(300),
        primary_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        on_divergence: OnDivergence::Eject,
    }
}

fn setup(cfg: ReplicationConfig) -> (Arc<Replicator>, Arc<FakeBackends>, Arc<MemoryJournal>) {
    let pool = Arc::new(Pool::new(&[
        backend("a", Role::Primary),
        backend("b", Role::Backup),
        backend("c", Role::Backup),
    ]));
    let fakes = Arc::new(FakeBackends::default());
    let journal = Arc::new(MemoryJournal::new());
    let r = Replicator::new(
        pool,
        journal.clone(),
        fakes.clone(),
        cfg,
        Arc::new(crate::SystemClock),
    );
    (r, fakes, journal)
}

fn post(lane: &str, uri: &str) -> Submission {
    Submission {
        lane: lane.into(),
        request: RequestRecord {
            method: "POST".into(),
            uri: uri.into(),
            headers: vec![],
            body: Bytes::new(),
        },
        compare: CompareRule::default(),
        idempotency: None,
        hold: None,
    }
}

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
                .all(|e| matches!(e.state, EntryState::Committed(_)) && e.acks.len() == 2)
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
    let (progress, _) = watch::channel(crate::JoinProgress::default());
    let options = crate::CatchupOptions {
        fence_lag: 4,
        batch: 8,
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
            hang: true,
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
