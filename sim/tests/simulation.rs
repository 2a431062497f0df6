//! Runs the deterministic simulation over many seeds (`SEEDS=N`, default 200) or one
//! (`SEED=S`; `TRACE=1` prints its trace even when it passes), checks every run, checks that a
//! few seeds replay identically, and prints a summary.

use std::collections::BTreeMap;
use std::time::Instant;

use lockstep_sim::{FaultKind, run, use_simulated_timeouts};

/// Seeds whose liveness violations are excused while a known defect of the gateway is open,
/// each with its reason; any other violation on them still fails. None at present (seed 163
/// was one until a replay after a reset learned to include the aborted requests the primary
/// may have applied).
const KNOWN_LIVENESS_FAILURES: &[u64] = &[];

fn is_liveness(violation: &str) -> bool {
    violation.starts_with("liveness") || violation.starts_with("the run did not complete")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

#[test]
fn simulation() {
    use_simulated_timeouts();
    let seeds: Vec<u64> = match env_u64("SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("SEEDS").unwrap_or(200)).collect(),
    };
    let started = Instant::now();
    let mut faults: BTreeMap<FaultKind, usize> = BTreeMap::new();
    let (mut operations, mut simulated) = (0, std::time::Duration::ZERO);
    let mut lost_journal_records: BTreeMap<&str, usize> = BTreeMap::new();
    // Seeds whose gateway crashes took back unsynced journal records: the ones to replay (with
    // `TRACE=1`) to see what the recovery made of a lost append or dispatch mark.
    let mut lossy = Vec::new();
    let mut failed = Vec::new();
    let mut known = 0;
    for &seed in &seeds {
        let outcome = run(seed);
        for (kind, n) in &outcome.faults {
            *faults.entry(*kind).or_default() += n;
        }
        operations += outcome.operations;
        for (kind, n) in &outcome.lost_journal_records {
            *lost_journal_records.entry(kind).or_default() += n;
        }
        if !outcome.lost_journal_records.is_empty() {
            lossy.push(seed);
        }
        simulated += outcome.simulated;
        let excused = KNOWN_LIVENESS_FAILURES.contains(&seed);
        if excused
            && !outcome.violations.is_empty()
            && outcome.violations.iter().all(|v| is_liveness(v))
        {
            eprintln!(
                "seed {seed}: known liveness failure: {:?}",
                outcome.violations
            );
            known += 1;
            if seeds.len() == 1 {
                for line in &outcome.trace {
                    eprintln!("    {line}");
                }
            }
        } else if !outcome.violations.is_empty() {
            eprintln!(
                "seed {seed} FAILED; rerun it with RUSTFLAGS=\"--cfg tokio_unstable\" SEED={seed} cargo test -p lockstep-sim --test simulation -- --nocapture"
            );
            for v in &outcome.violations {
                eprintln!("  {v}");
            }
            if seeds.len() == 1 || std::env::var_os("TRACE").is_some() {
                for line in &outcome.trace {
                    eprintln!("    {line}");
                }
            }
            failed.push(seed);
        } else if seeds.len() == 1 && std::env::var_os("TRACE").is_some() {
            for line in &outcome.trace {
                eprintln!("    {line}");
            }
        }
    }
    // Determinism: the same seed twice gives the same trace (one in fifty seeds, at least one).
    // Only with tokio's randomness (`select!` branch order) seeded by the simulation, which takes
    // `--cfg tokio_unstable`.
    let replayed: Vec<u64> = if cfg!(tokio_unstable) {
        seeds.iter().copied().step_by(50).collect()
    } else {
        println!(
            "simulation: built without RUSTFLAGS=\"--cfg tokio_unstable\": determinism not checked, seeds do not replay exactly"
        );
        Vec::new()
    };
    let mut nondeterministic = Vec::new();
    for &seed in &replayed {
        let (first, second) = (run(seed), run(seed));
        if first.trace_hash != second.trace_hash {
            let at = first
                .trace
                .iter()
                .zip(&second.trace)
                .position(|(a, b)| a != b)
                .unwrap_or(first.trace.len().min(second.trace.len()));
            eprintln!(
                "seed {seed} is not deterministic; the traces part at event {at}: {:?} / {:?}",
                first.trace.get(at),
                second.trace.get(at)
            );
            nondeterministic.push(seed);
        }
    }
    let violations = failed.len() + nondeterministic.len();
    println!(
        "simulation: {} seeds in {:.1?} ({:.0?} simulated), faults {:?}, {} operations checked, {} unsynced journal records lost in gateway crashes {:?}, {} seeds replayed for determinism, {} violations, {} known liveness failures",
        seeds.len(),
        started.elapsed(),
        simulated,
        faults,
        operations,
        lost_journal_records.values().sum::<usize>(),
        lost_journal_records,
        replayed.len(),
        violations,
        known
    );
    println!("simulation: seeds whose gateway crashes lost unsynced journal records: {lossy:?}");
    assert!(
        nondeterministic.is_empty(),
        "seeds {nondeterministic:?} gave different traces on two runs"
    );
    assert!(failed.is_empty(), "seeds {failed:?} failed (see above)");
}
