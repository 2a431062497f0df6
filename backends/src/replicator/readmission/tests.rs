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
