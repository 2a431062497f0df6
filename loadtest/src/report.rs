//! The end-of-run report: one JSON object for machines (`--json`), a short summary for people.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::stats::{ErrorKind, Totals};

/// How requests were paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each connection sends its next request when the previous one is answered.
    Closed,
    /// Requests are sent at fixed intended times (`--rate`).
    Open,
}

/// Latency percentiles of the requests that got a response, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The URL given.
    pub url: String,
    /// Closed or open loop.
    pub mode: Mode,
    /// Connections (the concurrency bound in both modes).
    pub connections: usize,
    /// Target rate in requests per second (open loop), `null` in closed loop.
    pub rate: Option<f64>,
    /// Runtime threads.
    pub threads: usize,
    /// Logical requests that ended during the measurement (with a response or an error).
    pub requests: u64,
    /// Length of the measurement, seconds (warmup excluded).
    pub duration_s: f64,
    /// `requests / duration_s`.
    pub throughput_rps: f64,
    /// Latency of the requests that got a response; `null` when none did.
    pub latency_ms: Option<Latency>,
    /// Logical requests that ended in an error, by kind (every kind present, zeros included).
    pub errors: BTreeMap<String, u64>,
    /// Retries sent (attempts after the first).
    pub retries: u64,
    /// What the retried attempts failed with, by kind.
    pub retry_causes: BTreeMap<String, u64>,
    /// Final status of each logical request that got a response, by code.
    pub status_counts: BTreeMap<String, u64>,
    /// Seed of the mix choices and `{random:A..B}`.
    pub seed: u64,
    /// Warmup before the measurement, seconds.
    pub warmup_s: f64,
    /// Open loop with `--duration`: requests due during the measurement that no connection was
    /// free to send before it ended. Non-zero means the target rate was not kept up with.
    pub unsent: u64,
}

/// What a report is made of besides the totals.
#[derive(Debug, Clone)]
pub(crate) struct RunFacts {
    pub(crate) url: String,
    pub(crate) mode: Mode,
    pub(crate) connections: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) threads: usize,
    pub(crate) seed: u64,
    pub(crate) warmup_s: f64,
    pub(crate) unsent: u64,
}

impl Report {
    pub(crate) fn new(facts: RunFacts, totals: &Totals, duration_s: f64) -> Report {
        let ms = |us: u64| us as f64 / 1000.0;
        let hist = &totals.latency_us;
        let latency_ms = (!hist.is_empty()).then(|| Latency {
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            mean: hist.mean() / 1000.0,
        });
        let by_kind = |counts: &[u64]| {
            ErrorKind::ALL
                .iter()
                .map(|kind| (kind.as_str().to_owned(), counts[*kind as usize]))
                .collect()
        };
        Report {
            url: facts.url,
            mode: facts.mode,
            connections: facts.connections,
            rate: facts.rate,
            threads: facts.threads,
            requests: totals.requests,
            duration_s,
            throughput_rps: if duration_s > 0.0 {
                totals.requests as f64 / duration_s
            } else {
                0.0
            },
            latency_ms,
            errors: by_kind(&totals.errors),
            retries: totals.retries,
            retry_causes: by_kind(&totals.retry_causes),
            status_counts: totals
                .statuses()
                .map(|(status, n)| (status.to_string(), n))
                .collect(),
            seed: facts.seed,
            warmup_s: facts.warmup_s,
            unsent: facts.unsent,
        }
    }

    /// Logical requests that ended in an error.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Writes `kind n, kind n` for the non-zero counts, or `none`.
fn nonzero(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pacing = match (self.mode, self.rate) {
            (Mode::Open, Some(rate)) => format!("open loop at {rate} req/s"),
            _ => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "{pacing}, {} connections, {} thread{}, against {}",
            self.connections,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.url
        )?;
        writeln!(
            f,
            "  requests   {} in {:.2}s, {:.1} req/s",
            self.requests, self.duration_s, self.throughput_rps
        )?;
        match &self.latency_ms {
            Some(l) => writeln!(
                f,
                "  latency    p50 {:.3}ms  p90 {:.3}ms  p99 {:.3}ms  p99.9 {:.3}ms  max {:.3}ms  \
                 mean {:.3}ms",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            )?,
            None => writeln!(f, "  latency    no response received")?,
        }
        let statuses: Vec<String> = self
            .status_counts
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        if !statuses.is_empty() {
            writeln!(f, "  statuses   {}", statuses.join(", "))?;
        }
        writeln!(f, "  errors     {}", nonzero(&self.errors))?;
        if self.unsent > 0 {
            writeln!(
                f,
                "  unsent     {} requests were due but no connection was free before the end; \
                 the rate was not kept up with",
                self.unsent
            )?;
        }
        if self.retries > 0 {
            writeln!(
                f,
                "  retries    {} (after {})",
                self.retries,
                nonzero(&self.retry_causes)
            )?;
        }
        Ok(())
    }
}
