//! What a run measured: latencies in an HDR histogram, outcomes by kind, status counts, retries.
//!
//! Connections record into a few shards (one per runtime thread) behind plain mutexes, so a
//! recording is an uncontended lock and a histogram increment; the progress line and the final
//! report merge the shards.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Significant figures kept by the latency histogram: 0.1 % relative error.
const SIGNIFICANT_FIGURES: u8 = 3;
/// Largest latency tracked, in microseconds (one hour); longer ones count as one hour. Fixed
/// bounds keep the hot path free of resizing.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Status codes are three digits.
const STATUS_SLOTS: usize = 1000;

/// Kinds of failed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// Writing the request failed.
    Write,
    /// The connection failed or closed while reading the response (head or body).
    Read,
    /// No complete response within `--timeout`.
    Timeout,
    /// The response was not valid HTTP/1.x.
    Malformed,
    /// A 4xx status.
    Status4xx,
    /// A 5xx status.
    Status5xx,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Write,
        ErrorKind::Read,
        ErrorKind::Timeout,
        ErrorKind::Malformed,
        ErrorKind::Status4xx,
        ErrorKind::Status5xx,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Write => "write",
            ErrorKind::Read => "read",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Status4xx => "4xx",
            ErrorKind::Status5xx => "5xx",
        }
    }

    /// The error kind of a status, if it is one.
    pub fn of_status(status: u16) -> Option<ErrorKind> {
        match status {
            400..=499 => Some(ErrorKind::Status4xx),
            500..=599 => Some(ErrorKind::Status5xx),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one logical request ended, after any retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response with this status.
    Status(u16),
    /// No response.
    Failed(ErrorKind),
}

/// Totals over some part of a run.
#[derive(Debug, Clone)]
pub(crate) struct Totals {
    /// Latency of every logical request that got a response, in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// Logical requests that ended (with a response or an error).
    pub(crate) requests: u64,
    /// Logical requests that ended in an error, by kind.
    pub(crate) errors: [u64; ErrorKind::ALL.len()],
    /// Retries sent.
    pub(crate) retries: u64,
    /// What the retried attempts failed with, by kind.
    pub(crate) retry_causes: [u64; ErrorKind::ALL.len()],
    /// Final statuses, indexed by code.
    statuses: Box<[u64; STATUS_SLOTS]>,
}

impl Default for Totals {
    fn default() -> Totals {
        Totals {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_FIGURES)
                .expect("valid histogram bounds"),
            requests: 0,
            errors: [0; ErrorKind::ALL.len()],
            retries: 0,
            retry_causes: [0; ErrorKind::ALL.len()],
            statuses: Box::new([0; STATUS_SLOTS]),
        }
    }
}

impl Totals {
    fn record(&mut self, latency: Duration, outcome: Outcome) {
        self.requests += 1;
        match outcome {
            Outcome::Status(status) => {
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                self.latency_us.saturating_record(us);
                if let Some(slot) = self.statuses.get_mut(usize::from(status)) {
                    *slot += 1;
                }
                if let Some(kind) = ErrorKind::of_status(status) {
                    self.errors[kind.index()] += 1;
                }
            }
            Outcome::Failed(kind) => self.errors[kind.index()] += 1,
        }
    }

    fn merge(&mut self, other: &Totals) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms of the same bounds always merge");
        self.requests += other.requests;
        self.retries += other.retries;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (a, b) in self.retry_causes.iter_mut().zip(other.retry_causes) {
            *a += b;
        }
        for (a, b) in self.statuses.iter_mut().zip(other.statuses.iter()) {
            *a += b;
        }
    }

    /// Logical requests that ended in an error of any kind.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Final statuses seen, with their counts.
    pub(crate) fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.statuses
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(status, n)| (status as u16, *n))
    }
}

/// The shared recorder of a run.
#[derive(Debug)]
pub(crate) struct Stats {
    shards: Vec<Mutex<Totals>>,
}

impl Stats {
    pub(crate) fn new(shards: usize) -> Stats {
        Stats {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Totals::default()))
                .collect(),
        }
    }

    /// The shard a connection records into.
    pub(crate) fn shard_of(&self, connection: usize) -> usize {
        connection % self.shards.len()
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Totals> {
        self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the end of a logical request.
    pub(crate) fn record(&self, shard: usize, latency: Duration, outcome: Outcome) {
        self.lock(shard).record(latency, outcome);
    }

    /// Records a retry and what the attempt before it failed with.
    pub(crate) fn record_retry(&self, shard: usize, cause: ErrorKind) {
        let mut totals = self.lock(shard);
        totals.retries += 1;
        totals.retry_causes[cause.index()] += 1;
    }

    /// Everything recorded so far, merged.
    pub(crate) fn totals(&self) -> Totals {
        let mut merged = Totals::default();
        for shard in 0..self.shards.len() {
            merged.merge(&self.lock(shard));
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_shards() {
        let stats = Stats::new(2);
        stats.record(0, Duration::from_millis(1), Outcome::Status(200));
        stats.record(1, Duration::from_millis(3), Outcome::Status(503));
        stats.record(
            1,
            Duration::from_secs(5),
            Outcome::Failed(ErrorKind::Timeout),
        );
        stats.record_retry(0, ErrorKind::Status5xx);
        let totals = stats.totals();
        assert_eq!(totals.requests, 3);
        assert_eq!(totals.latency_us.len(), 2);
        assert_eq!(
            totals.latency_us.max(),
            totals.latency_us.highest_equivalent(3000)
        );
        assert_eq!(totals.error_count(), 2);
        assert_eq!(totals.errors[ErrorKind::Timeout.index()], 1);
        assert_eq!(totals.errors[ErrorKind::Status5xx.index()], 1);
        assert_eq!(totals.retries, 1);
        assert_eq!(
            totals.statuses().collect::<Vec<_>>(),
            vec![(200, 1), (503, 1)]
        );
    }
}
