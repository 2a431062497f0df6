//! A load run: connections, pacing (closed or open loop), retries, and the report at the end.
//!
//! Every connection is one task that owns its socket, its buffers and its random generators,
//! and asks the shared pacing for its next turn. In closed loop a turn is "now"; in open loop it
//! is the next unclaimed slot of a fixed schedule, so a request that finds every connection busy
//! is sent late and its latency counts from its intended time (no coordinated omission).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::http1::{Connection, Failure};
use crate::mix::{Mix, RequestSpec};
use crate::progress::{self, Progress};
use crate::report::{Mode, Report, RunFacts};
use crate::stats::{ErrorKind, Outcome, Stats};
use crate::target::{Target, TargetError};
use crate::template::Values;
use crate::wire::WireRequest;

/// When the measurement ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (warmup not included).
    After(Duration),
    /// After this many logical requests (warmup not included).
    Requests(u64),
}

/// Everything a run needs; `RunSpec::new` fills in the defaults.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The URL as given, for the report.
    pub url: String,
    /// Where to send.
    pub target: Target,
    /// What to send.
    pub mix: Mix,
    /// Connections: the concurrency bound in both modes.
    pub connections: usize,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// When to stop.
    pub stop: Stop,
    /// Load sent before the measurement starts, not recorded.
    pub warmup: Duration,
    /// Limit for one attempt: connect, send and the whole response.
    pub timeout: Duration,
    /// Attempts after the first for a request that failed or got a 5xx.
    pub retries: u32,
    /// Wait before each retry.
    pub retry_backoff: Duration,
    /// Add this header with a fresh UUID to each logical request (retries reuse it).
    pub idempotency_header: Option<String>,
    /// Seed of the mix choices and `{random:A..B}`.
    pub seed: u64,
    /// First value of `{counter}`.
    pub counter_start: u64,
    /// Runtime threads (`run_blocking` only).
    pub threads: usize,
    /// The once-per-second line on stderr.
    pub progress: Progress,
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The URL is unusable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// An option out of range.
    #[error("{0}")]
    Invalid(String),
    /// The first connection failed: nothing would be measured.
    #[error(
        "cannot connect to {addr}: {detail}; check that the service listens there and that the \
         URL's host and port are right"
    )]
    Unreachable {
        /// The address tried.
        addr: SocketAddr,
        /// What the connect said.
        detail: String,
    },
    /// The async runtime could not be built.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl RunSpec {
    /// A closed-loop run of `GET URL` with 16 connections for 10 seconds.
    pub fn new(url: &str) -> Result<RunSpec, TargetError> {
        let target = Target::parse(url)?;
        let get =
            RequestSpec::from_flags(None, None, None, &[]).expect("a plain GET is a valid request");
        Ok(RunSpec {
            url: url.to_owned(),
            target,
            mix: Mix::single(get),
            connections: 16,
            rate: None,
            stop: Stop::After(Duration::from_secs(10)),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(5),
            retries: 0,
            retry_backoff: Duration::ZERO,
            idempotency_header: None,
            seed: fastrand::u64(..),
            counter_start: 0,
            threads: 1,
            progress: Progress::Off,
        })
    }

    fn check(&self) -> Result<(), RunError> {
        let invalid = |text: &str| Err(RunError::Invalid(text.to_owned()));
        if self.connections == 0 {
            return invalid("--connections must be at least 1");
        }
        if self.threads == 0 {
            return invalid("--threads must be at least 1");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return invalid("--rate must be a positive number of requests per second");
        }
        match self.stop {
            Stop::After(d) if d.is_zero() => invalid("--duration must be longer than 0s"),
            Stop::Requests(0) => invalid("--requests must be at least 1"),
            _ if self.timeout.is_zero() => invalid("--timeout must be longer than 0s"),
            _ => Ok(()),
        }
    }
}

/// How turns are handed out.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    Closed,
    Open {
        /// Seconds between intended send times.
        interval: f64,
        /// The first slot at or after the end of the warmup.
        first_measured: u64,
        /// One past the last slot to send.
        limit: u64,
    },
}

/// State shared by the connections of a run.
#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    wire: Vec<WireRequest>,
    mix: Mix,
    stats: Stats,
    counter: Arc<AtomicU64>,
    pacing: Pacing,
    stop_at: Stop,
    seed: u64,
    keys: bool,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    started: Instant,
    measure_start: Instant,
    /// Next open-loop slot to claim.
    next_slot: AtomicU64,
    /// Measured closed-loop requests claimed, for `Stop::Requests`.
    claimed: AtomicU64,
    /// The first open-loop slot found overdue when the measurement ended.
    first_unsent: AtomicU64,
    interrupted: AtomicBool,
    stop_signal: watch::Receiver<bool>,
}

/// A connection's next move.
enum Turn {
    /// Send a request; its latency counts from `start`; `measured` is false during warmup.
    Go {
        start: Instant,
        measured: bool,
    },
    Stop,
}

impl Shared {
    fn measure_end(&self) -> Option<Instant> {
        match self.stop_at {
            Stop::After(d) => Some(self.measure_start + d),
            Stop::Requests(_) => None,
        }
    }

    async fn next_turn(&self, stop_signal: &mut watch::Receiver<bool>) -> Turn {
        if self.interrupted.load(Ordering::Relaxed) {
            return Turn::Stop;
        }
        let now = Instant::now();
        match self.pacing {
            Pacing::Closed => {
                if now < self.measure_start {
                    return Turn::Go {
                        start: now,
                        measured: false,
                    };
                }
                let over = match self.stop_at {
                    Stop::After(d) => now >= self.measure_start + d,
                    Stop::Requests(n) => self.claimed.fetch_add(1, Ordering::Relaxed) >= n,
                };
                if over {
                    Turn::Stop
                } else {
                    Turn::Go {
                        start: now,
                        measured: true,
                    }
                }
            }
            Pacing::Open {
                interval,
                first_measured,
                limit,
            } => {
                let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
                if slot >= limit {
                    return Turn::Stop;
                }
                if self.measure_end().is_some_and(|end| now >= end) {
                    // Due within the measurement but no connection was free to send it.
                    self.first_unsent.fetch_min(slot, Ordering::Relaxed);
                    return Turn::Stop;
                }
                let intended = self.started + Duration::from_secs_f64(slot as f64 * interval);
                let measured = slot >= first_measured;
                if intended <= now {
                    // Late: every connection was busy. The wait is part of the latency.
                    return Turn::Go {
                        start: intended,
                        measured,
                    };
                }
                tokio::select! {
                    () = tokio::time::sleep_until(intended.into()) => {}
                    _ = stop_signal.changed() => return Turn::Stop,
                }
                // The connection was idle at the intended time: the clock starts when the
                // request leaves, so the timer's granularity is not counted as latency.
                Turn::Go {
                    start: Instant::now(),
                    measured,
                }
            }
        }
    }
}

/// Runs `spec` on the current runtime until it ends.
pub async fn run(spec: RunSpec) -> Result<Report, RunError> {
    run_until(spec, std::future::pending()).await
}

/// Runs `spec` on a runtime of `spec.threads` threads; Ctrl-C ends the measurement early and
/// still reports.
pub fn run_blocking(spec: RunSpec) -> Result<Report, RunError> {
    let runtime = if spec.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(spec.threads)
            .enable_all()
            .build()
    }
    .map_err(RunError::Runtime)?;
    runtime.block_on(run_until(spec, async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }))
}

/// Runs `spec` until it ends or `interrupt` completes; either way the report covers what was
/// measured.
pub async fn run_until(
    spec: RunSpec,
    interrupt: impl Future<Output = ()>,
) -> Result<Report, RunError> {
    spec.check()?;
    let addr = spec.target.resolve().await?;
    preflight(addr, spec.timeout).await?;

    let wire = spec
        .mix
        .requests()
        .iter()
        .map(|r| WireRequest::build(r, &spec.target, spec.idempotency_header.as_deref()))
        .collect();
    let pacing = match spec.rate {
        None => Pacing::Closed,
        Some(rate) => {
            let first_measured = (spec.warmup.as_secs_f64() * rate).ceil() as u64;
            let measured = match spec.stop {
                Stop::Requests(n) => n,
                Stop::After(d) => ((d.as_secs_f64() * rate).round() as u64).max(1),
            };
            Pacing::Open {
                interval: 1.0 / rate,
                first_measured,
                limit: first_measured + measured,
            }
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let shared = Arc::new(Shared {
        addr,
        wire,
        mix: spec.mix.clone(),
        stats: Stats::new(spec.threads),
        counter: Arc::new(AtomicU64::new(spec.counter_start)),
        pacing,
        stop_at: spec.stop,
        seed: spec.seed,
        keys: spec.idempotency_header.is_some(),
        timeout: spec.timeout,
        retries: spec.retries,
        retry_backoff: spec.retry_backoff,
        started,
        measure_start: started + spec.warmup,
        next_slot: AtomicU64::new(0),
        claimed: AtomicU64::new(0),
        first_unsent: AtomicU64::new(u64::MAX),
        interrupted: AtomicBool::new(false),
        stop_signal: stop_rx,
    });

    let mut connections = JoinSet::new();
    for index in 0..spec.connections {
        connections.spawn(drive(Arc::clone(&shared), index));
    }
    let progress = {
        let shared = Arc::clone(&shared);
        let measure_start = shared.measure_start;
        progress::spawn(spec.progress, measure_start, move || shared.stats.totals())
    };

    let mut interrupt = std::pin::pin!(interrupt);
    let mut interrupted = false;
    loop {
        tokio::select! {
            joined = connections.join_next() => match joined {
                None => break,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
            },
            () = &mut interrupt, if !interrupted => {
                interrupted = true;
                shared.interrupted.store(true, Ordering::Relaxed);
                let _ = stop_tx.send(true);
            }
        }
    }
    let ended = Instant::now();
    progress.finish().await;

    let totals = shared.stats.totals();
    let unsent = match (pacing, shared.first_unsent.load(Ordering::Relaxed)) {
        (Pacing::Open { limit, .. }, first) if first != u64::MAX => limit - first,
        _ => 0,
    };
    let facts = RunFacts {
        url: spec.url,
        mode: if spec.rate.is_some() {
            Mode::Open
        } else {
            Mode::Closed
        },
        connections: spec.connections,
        rate: spec.rate,
        threads: spec.threads,
        seed: spec.seed,
        warmup_s: spec.warmup.as_secs_f64(),
        unsent,
    };
    let duration = ended.saturating_duration_since(shared.measure_start);
    Ok(Report::new(facts, &totals, duration.as_secs_f64()))
}

/// Opens one connection first, so that a wrong address is one clear error, not a report full of
/// connect failures.
async fn preflight(addr: SocketAddr, timeout: Duration) -> Result<(), RunError> {
    let unreachable = |detail: String| RunError::Unreachable { addr, detail };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
    }
}

/// One connection's loop: take a turn, send a logical request (with retries), record it.
async fn drive(shared: Arc<Shared>, index: usize) {
    let mut connection = Connection::new(shared.addr);
    let mut values = Values::new(index, shared.seed, Arc::clone(&shared.counter));
    let mut stop_signal = shared.stop_signal.clone();
    let shard = shared.stats.shard_of(index);
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let deadline = tokio::time::sleep(shared.timeout);
    let mut deadline = std::pin::pin!(deadline);

    loop {
        let (start, measured) = match shared.next_turn(&mut stop_signal).await {
            Turn::Go { start, measured } => (start, measured),
            Turn::Stop => return,
        };
        let which = shared.mix.choose(values.rng());
        let request = &shared.wire[which];
        let key = shared.keys.then(|| values.fresh_uuid());
        let bytes = request.render(
            &mut values,
            key.as_ref().map(|k| &k[..]),
            &mut out,
            &mut scratch,
        );

        let mut attempt = 0;
        let outcome = loop {
            let due = tokio::time::Instant::now() + shared.timeout;
            let result = {
                let exchange = connection.exchange(bytes, request.is_head());
                let mut exchange = std::pin::pin!(exchange);
                loop {
                    tokio::select! {
                        biased;
                        result = &mut exchange => break result.map_err(Some),
                        () = deadline.as_mut() => {
                            // The timer is re-armed lazily, when it fires, rather than for
                            // every request: fast exchanges never touch the timer wheel.
                            if tokio::time::Instant::now() >= due {
                                break Err(None);
                            }
                            deadline.as_mut().reset(due);
                        }
                    }
                }
            };
            let outcome = match result {
                Ok(status) => Outcome::Status(status),
                Err(Some(failure)) => Outcome::Failed(failure_kind(failure)),
                Err(None) => {
                    connection.close();
                    Outcome::Failed(ErrorKind::Timeout)
                }
            };
            let cause = match outcome {
                Outcome::Status(status) if status >= 500 => ErrorKind::Status5xx,
                Outcome::Failed(kind) => kind,
                Outcome::Status(_) => break outcome,
            };
            if attempt >= shared.retries || shared.interrupted.load(Ordering::Relaxed) {
                break outcome;
            }
            attempt += 1;
            if measured {
                shared.stats.record_retry(shard, cause);
            }
            if !shared.retry_backoff.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(shared.retry_backoff) => {}
                    _ = stop_signal.changed() => break outcome,
                }
            }
        };
        if measured {
            shared.stats.record(shard, start.elapsed(), outcome);
        }
    }
}

fn failure_kind(failure: Failure) -> ErrorKind {
    match failure {
        Failure::Connect => ErrorKind::Connect,
        Failure::Write => ErrorKind::Write,
        Failure::Read => ErrorKind::Read,
        Failure::Malformed => ErrorKind::Malformed,
    }
}
