//! Refusals and re-admission by proof, against the recording in-memory backends.

use lockstep_config::ViewProbe;
use lockstep_journal::EntryState;

use super::*;
use crate::testing::*;

fn refusing(lane: &str, uri: &str) -> Submission {
    let mut sub = post(lane, uri);
    sub.compare.refusals = vec![429, 503];
    sub
}

fn probe() -> ViewProbe {
    ViewProbe {
        method: "GET".into(),
        path: "/".into(),
        compare: CompareRule::default(),
    }
}

#[tokio::test]
async fn a_refusal_of_the_primary_reaches_no_backup_and_is_recorded_as_refused() {
    let (r, fakes, journal) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    fakes.shed("a", 503, 1);
    let refused = r.submit(refusing("", "/k/1")).await.unwrap();
    assert!(refused.refused);
    assert_eq!(refused.response.status, 503);
    assert!(fakes.processed("b").is_empty() && fakes.processed("c").is_empty());
    let entry = journal.get(refused.seq).await.unwrap().unwrap();
    assert!(
        matches!(&entry.state, EntryState::Aborted(reason) if reason.starts_with(REFUSED)),
        "{:?}",
        entry.state
    );
    assert!(!entry.maybe_applied(), "a refused key may run again");

    let next = r.submit(refusing("", "/k/2")).await.unwrap();
    assert!(!next.refused);
    for b in r.pool().all() {
        assert_eq!(
            (b.state(), b.acked_seq()),
            (BackendState::InSync, 2),
            "{}",
            b.name
        );
    }
    assert_eq!(fakes.state("a"), fakes.state("b"));
    assert_eq!(fakes.state("a"), fakes.state("c"));
    assert_eq!(
        fakes.state("a").get("k"),
        Some(&1),
        "applied once, the refused one nowhere"
    );
}

#[tokio::test]
async fn a_refusal_of_a_backup_is_retried_in_lane_order() {
    for dispatch in [DispatchMode::Sequential, DispatchMode::Parallel] {
        let (r, fakes, journal) = setup(config(AckPolicy::All, dispatch));
        fakes.shed("b", 429, 3);
        let first = r.submit(refusing("", "/k/1")).await.unwrap();
        let second = r.submit(refusing("", "/k/2")).await.unwrap();
        assert!(!first.refused && !second.refused);
        let b = r.pool().get("b").unwrap();
        assert_eq!(b.state(), BackendState::InSync, "{dispatch:?}");
        let seqs: Vec<u64> = fakes.processed("b").iter().map(|(_, s)| *s).collect();
        assert_eq!(seqs, vec![1, 2], "{dispatch:?}: each once, in order");
        let entry = journal.get(1).await.unwrap().unwrap();
        assert!(entry.acks.contains(&"b".to_owned()));
        assert!(!entry.outcome_unknown("b"));
    }
}

#[tokio::test]
async fn a_backup_that_keeps_refusing_is_lagging_not_diverged() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    fakes.shed("b", 503, 10_000);
    let done = r.submit(refusing("", "/k/1")).await.unwrap();
    assert!(!done.refused);
    let b = r.pool().get("b").unwrap();
    assert_eq!(b.state(), BackendState::Lagging);
    assert!(
        b.detail().contains("lockstep backend rejoin b"),
        "{}",
        b.detail()
    );
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::InSync);
    assert!(fakes.processed("b").is_empty());
}

#[tokio::test]
async fn a_500_is_still_compared() {
    // A status outside the refusals may have changed state: compared as any answer.
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    fakes.shed("b", 500, 1);
    r.submit(refusing("", "/k/1")).await.unwrap();
    assert_eq!(r.pool().get("b").unwrap().state(), BackendState::Diverged);
}

#[tokio::test]
async fn a_copy_that_comes_back_empty_is_not_readmitted() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.set_probes(vec![probe()]);
    r.submit(post("", "/k/1")).await.unwrap();
    let b = r.pool().get("b").unwrap();
    r.change_state(&b, None, BackendState::Down, "failed its health checks");
    fakes.reset("b");
    assert_eq!(
        r.readmit(&b, BackendState::Down, "reachable again").await,
        Readmission::Diverged
    );
    assert_eq!(b.state(), BackendState::Diverged);
    assert!(b.detail().contains("--reset"), "{}", b.detail());

    // The same with its state intact: proven, in-sync.
    let c = r.pool().get("c").unwrap();
    r.change_state(&c, None, BackendState::Down, "failed its health checks");
    assert_eq!(
        r.readmit(&c, BackendState::Down, "reachable again").await,
        Readmission::InSync
    );
}

#[tokio::test]
async fn without_probes_or_after_missed_writes_a_copy_waits_for_a_rejoin() {
    let (r, _fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.submit(post("", "/k/1")).await.unwrap();
    let b = r.pool().get("b").unwrap();
    r.change_state(&b, None, BackendState::Down, "failed its health checks");
    assert_eq!(
        r.readmit(&b, BackendState::Down, "reachable again").await,
        Readmission::Lagging,
        "no probes: nothing can prove it"
    );
    assert!(b.detail().contains("[[verify.probes]]"), "{}", b.detail());

    r.set_probes(vec![probe()]);
    let rejoined = Arc::new(Mutex::new(Vec::new()));
    let seen = rejoined.clone();
    r.set_auto_rejoin(Arc::new(move |name| seen.lock().push(name)));
    let c = r.pool().get("c").unwrap();
    r.change_state(&c, None, BackendState::Down, "failed its health checks");
    r.submit(post("", "/k/2")).await.unwrap();
    assert_eq!(
        r.readmit(&c, BackendState::Down, "reachable again").await,
        Readmission::Lagging
    );
    assert!(
        c.detail().contains("missing requests from 2"),
        "{}",
        c.detail()
    );
    assert_eq!(
        *rejoined.lock(),
        vec!["c".to_owned()],
        "auto_rejoin was asked"
    );
}

#[tokio::test]
async fn a_primary_that_comes_back_alone_is_not_called_proven() {
    let (r, _fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    let a = r.pool().primary();
    r.change_state(&a, None, BackendState::Down, "failed its health checks");
    assert_eq!(
        r.readmit(&a, BackendState::Down, "reachable again").await,
        Readmission::Unproven
    );
    assert_eq!(a.state(), BackendState::Suspect);
}

#[tokio::test]
async fn promotion_picks_the_copy_proven_longest_when_survivors_disagree() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.set_probes(vec![probe()]);
    r.submit(post("", "/k/1")).await.unwrap();
    // b was (wrongly) admitted later than c and has lost its state.
    let b = r.pool().get("b").unwrap();
    b.set_proven_since(1);
    fakes.reset("b");
    let a = r.pool().primary();
    r.fail_over(&a.name, "test").await;
    assert_eq!(
        r.pool().primary().name,
        "c",
        "the copy in-sync since the start"
    );
    assert_eq!(b.state(), BackendState::Diverged);
    assert!(b.detail().contains("at promotion"), "{}", b.detail());
}

#[tokio::test]
async fn a_restarted_backup_is_suspect_until_proven() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.set_probes(vec![probe()]);
    r.submit(post("", "/k/1")).await.unwrap();
    let b = r.pool().get("b").unwrap();
    assert_eq!(b.observe_identity("boot-1"), None);
    fakes.reset("b");
    let previous = b.observe_identity("boot-2").expect("a new identity");
    r.restarted(&b, &previous, "boot-2").await;
    assert_eq!(b.state(), BackendState::Diverged, "{}", b.detail());
    assert!(b.detail().contains("restarted"), "{}", b.detail());
}

/// A failover that gives up on unanswering candidates soon.
fn impatient() -> ReplicationConfig {
    let mut config = config(AckPolicy::All, DispatchMode::Sequential);
    config.primary_timeout = Duration::from_millis(300);
    config
}

fn identity_check() -> IdentityCheck {
    IdentityCheck {
        path: "/health".into(),
        header: "x-boot-id".into(),
        timeout: Duration::from_secs(1),
    }
}

/// Every backend answers its first instance identity, and the gateway has seen it.
fn booted(r: &Replicator, fakes: &FakeBackends) {
    r.set_identity_check(Some(identity_check()));
    for b in r.pool().all() {
        let boot = format!("{}-1", b.name);
        fakes.boot(&b.name, &boot);
        assert_eq!(b.observe_identity(&boot), None);
    }
}

#[tokio::test]
async fn a_single_candidate_that_does_not_answer_is_not_promoted() {
    let (r, fakes, _) = setup(impatient());
    r.set_probes(vec![probe()]);
    r.submit(post("", "/k/1")).await.unwrap();
    let c = r.pool().get("c").unwrap();
    r.change_state(&c, None, BackendState::Lagging, "test");
    // b, the only in-sync backup, died since it was proven (its state unknown from now on).
    fakes.set(
        "b",
        Behaviour {
            refuse: true,
            ..Behaviour::default()
        },
    );
    r.fail_over("a", "test").await;
    assert_eq!(r.pool().primary().name, "a", "nobody could take over");
}

#[tokio::test]
async fn a_candidate_that_restarted_unseen_is_not_promoted() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.set_probes(vec![probe()]);
    booted(&r, &fakes);
    r.submit(post("", "/k/1")).await.unwrap();
    // c restarted empty faster than its health checks; b is fine.
    fakes.reset("c");
    fakes.boot("c", "c-2");
    r.fail_over("a", "test").await;
    assert_eq!(r.pool().primary().name, "b");
    let c = r.pool().get("c").unwrap();
    assert_eq!(c.state(), BackendState::Suspect, "{}", c.detail());
    assert!(
        c.detail().contains("about to be promoted"),
        "{}",
        c.detail()
    );
    // Then proven against the new primary (by the task the failover started, or here).
    r.readmit(&c, BackendState::Suspect, "test").await;
    assert_eq!(c.state(), BackendState::Diverged, "{}", c.detail());

    // With the only other copy gone too, the restarted copy is still not promoted.
    let (r, fakes, _) = setup(impatient());
    booted(&r, &fakes);
    r.submit(post("", "/k/1")).await.unwrap();
    let c = r.pool().get("c").unwrap();
    r.change_state(&c, None, BackendState::Lagging, "test");
    fakes.reset("b");
    fakes.boot("b", "b-2");
    r.fail_over("a", "test").await;
    assert_eq!(r.pool().primary().name, "a", "nobody could take over");
    assert_eq!(r.pool().get("b").unwrap().state(), BackendState::Suspect);
}

#[tokio::test]
async fn a_restarted_primary_that_nobody_can_replace_is_not_trusted() {
    let (r, fakes, _) = setup(impatient());
    r.set_probes(vec![probe()]);
    booted(&r, &fakes);
    r.submit(post("", "/k/1")).await.unwrap();
    for name in ["b", "c"] {
        fakes.set(
            name,
            Behaviour {
                refuse: true,
                ..Behaviour::default()
            },
        );
    }
    let a = r.pool().primary();
    fakes.boot("a", "a-2");
    let previous = a.observe_identity("a-2").expect("a new identity");
    r.restarted(&a, &previous, "a-2").await;
    assert_eq!(r.pool().primary().name, "a");
    assert_eq!(a.state(), BackendState::Suspect, "{}", a.detail());
}

#[tokio::test]
async fn a_failover_waits_for_a_candidate_that_is_briefly_unreachable() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.set_probes(vec![probe()]);
    r.submit(post("", "/k/1")).await.unwrap();
    let c = r.pool().get("c").unwrap();
    r.change_state(&c, None, BackendState::Lagging, "test");
    // b does not answer its first two probes, then does: well within primary_timeout.
    fakes.unreachable_for("b", 2);
    r.fail_over("a", "test").await;
    assert_eq!(r.pool().primary().name, "b");
}

#[tokio::test]
async fn at_start_backups_that_agree_outvote_a_primary_that_lost_its_state() {
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.submit(post("", "/k/1")).await.unwrap();
    // The primary restarted empty while the gateway was down.
    fakes.reset("a");
    r.verify_at_start(&[probe()]).await;
    assert_eq!(r.pool().primary().name, "b", "the backups agree");
    let a = r.pool().get("a").unwrap();
    assert_eq!(a.state(), BackendState::Diverged);
    assert!(a.detail().contains("--reset"), "{}", a.detail());
    for name in ["b", "c"] {
        assert_eq!(r.pool().get(name).unwrap().state(), BackendState::InSync);
    }

    // A backup that lost its state is the odd one out: the primary stays.
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.submit(post("", "/k/1")).await.unwrap();
    fakes.reset("c");
    r.verify_at_start(&[probe()]).await;
    assert_eq!(r.pool().primary().name, "a");
    assert_eq!(r.pool().get("b").unwrap().state(), BackendState::InSync);
    assert_eq!(r.pool().get("c").unwrap().state(), BackendState::Diverged);

    // Backups that disagree with each other prove nothing against the primary.
    let (r, fakes, _) = setup(config(AckPolicy::All, DispatchMode::Sequential));
    r.submit(post("", "/k/1")).await.unwrap();
    fakes.reset("b");
    fakes.reset("c");
    let c = r.pool().get("c").unwrap();
    let write = post("", "/j/1").request;
    fakes
        .send(&c, &write, &[], Duration::from_secs(1))
        .await
        .unwrap();
    r.verify_at_start(&[probe()]).await;
    assert_eq!(r.pool().primary().name, "a");
    for name in ["b", "c"] {
        assert_eq!(r.pool().get(name).unwrap().state(), BackendState::Diverged);
    }
}
