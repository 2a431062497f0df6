//! Metrics on the admin listener's `/metrics`, in the Prometheus text format.
//!
//! Counters and histograms go through the `metrics` facade (here and in the pipeline) into a
//! Prometheus recorder installed once per process. Gauges that describe the topology — each
//! backend's acknowledged seq, lag and state, the epoch, the journal's extent — are written at
//! scrape time from the gateway's own state, so that a removed backend leaves no stale series.

use std::fmt::Write;
use std::sync::OnceLock;

use lockstep_backends::{BackendState, TopologyEvent};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::shared::Shared;

/// Histogram buckets for every `*_seconds` metric: 100 µs to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once); `None` when the embedding program installed its
/// own, in which case only the scrape-time gauges are rendered here.
pub(crate) fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| {
                describe();
                handle
            })
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "lockstep_requests_total",
        "Requests handled, by class (logical, read) and outcome (committed, replayed, proxied, rejected, failed)."
    );
    describe_histogram!(
        "lockstep_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer, by class."
    );
    describe_histogram!(
        "lockstep_commit_seconds",
        Unit::Seconds,
        "Time from a logical request's submission to its commit (primary and required backup acks)."
    );
    describe_counter!(
        "lockstep_idempotent_replays_total",
        "Retries answered from the journal with the committed response."
    );
    describe_counter!(
        "lockstep_ejections_total",
        "Backups taken out of the in-sync set (lagging, diverged, suspect, down), by backend."
    );
    describe_counter!(
        "lockstep_divergences_total",
        "Backends whose answer or view differed from the primary's, by backend."
    );
    describe_counter!("lockstep_failovers_total", "Automatic failovers started.");
    describe_counter!(
        "lockstep_topology_events_total",
        "Topology events, by event name."
    );
    describe_histogram!(
        "lockstep_fence_pause_seconds",
        Unit::Seconds,
        "How long admission of logical requests was paused, by reason."
    );
    describe_histogram!(
        "lockstep_journal_append_seconds",
        Unit::Seconds,
        "Time to append a logical request to the journal (durable per the fsync mode)."
    );
}

/// Counts topology events until the bus closes or `shutdown` turns true.
pub(crate) async fn count_events(
    mut events: tokio::sync::broadcast::Receiver<TopologyEvent>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.changed() => return,
        };
        let event = match event {
            Ok(e) => e,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        metrics::counter!("lockstep_topology_events_total", "event" => event.event).increment(1);
        let backend = event.backend.clone().unwrap_or_default();
        match event.event {
            "backend-ejected" | "backend-suspect" | "backend-down" => {
                metrics::counter!("lockstep_ejections_total", "backend" => backend).increment(1);
            }
            "backend-diverged" => {
                metrics::counter!("lockstep_ejections_total", "backend" => backend.clone())
                    .increment(1);
                metrics::counter!("lockstep_divergences_total", "backend" => backend).increment(1);
            }
            "failover-started" => metrics::counter!("lockstep_failovers_total").increment(1),
            _ => {}
        }
    }
}

/// The whole exposition: the recorder's counters and histograms, then the topology gauges.
pub(crate) fn render(shared: &Shared) -> String {
    let mut out = install().map(PrometheusHandle::render).unwrap_or_default();
    let r = &shared.replicator;
    let status = r.status();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    gauge(&mut out, "lockstep_epoch", "The topology epoch.");
    let _ = writeln!(out, "lockstep_epoch {}", status.epoch);
    gauge(&mut out, "lockstep_last_seq", "The highest seq handed out.");
    let _ = writeln!(out, "lockstep_last_seq {}", status.last_seq);
    gauge(
        &mut out,
        "lockstep_committed_seq",
        "Every seq up to this one has committed or aborted.",
    );
    let _ = writeln!(out, "lockstep_committed_seq {}", status.committed_seq);
    gauge(
        &mut out,
        "lockstep_logical_in_flight",
        "Logical requests being handled now.",
    );
    let _ = writeln!(
        out,
        "lockstep_logical_in_flight {}",
        shared
            .logical_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    gauge(
        &mut out,
        "lockstep_backend_acked_seq",
        "Every seq up to this one was processed by the backend.",
    );
    for b in &status.backends {
        let _ = writeln!(
            out,
            "lockstep_backend_acked_seq{{backend=\"{}\",implementation=\"{}\",role=\"{}\"}} {}",
            escape(&b.name),
            escape(&b.implementation),
            b.role,
            b.acked_seq
        );
    }
    gauge(
        &mut out,
        "lockstep_backend_lag",
        "Seqs handed out that the backend has not processed.",
    );
    for b in &status.backends {
        let _ = writeln!(
            out,
            "lockstep_backend_lag{{backend=\"{}\",implementation=\"{}\"}} {}",
            escape(&b.name),
            escape(&b.implementation),
            status.last_seq.saturating_sub(b.acked_seq)
        );
    }
    gauge(
        &mut out,
        "lockstep_backend_state",
        "1 for the backend's current state, 0 for the others.",
    );
    const STATES: [BackendState; 6] = [
        BackendState::InSync,
        BackendState::Lagging,
        BackendState::Diverged,
        BackendState::Joining,
        BackendState::Suspect,
        BackendState::Down,
    ];
    for b in &status.backends {
        for s in STATES {
            let _ = writeln!(
                out,
                "lockstep_backend_state{{backend=\"{}\",state=\"{s}\"}} {}",
                escape(&b.name),
                u8::from(b.state == s)
            );
        }
    }
    gauge(
        &mut out,
        "lockstep_backend_primary",
        "1 for the primary, 0 for the backups.",
    );
    for b in &status.backends {
        let _ = writeln!(
            out,
            "lockstep_backend_primary{{backend=\"{}\"}} {}",
            escape(&b.name),
            u8::from(b.role == "primary")
        );
    }
    gauge(
        &mut out,
        "lockstep_journal_first_seq",
        "The first seq the journal still holds (after compaction).",
    );
    let _ = writeln!(
        out,
        "lockstep_journal_first_seq {}",
        r.journal().first_seq()
    );
    gauge(
        &mut out,
        "lockstep_journal_bytes",
        "Size of the journal's segment files.",
    );
    let _ = writeln!(
        out,
        "lockstep_journal_bytes {}",
        journal_bytes(&shared.config.journal.dir)
    );
    out
}

fn journal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
