//! The once-per-second progress line on stderr: requests, rate, errors and p99 so far.
//!
//! On a terminal the line is rewritten in place and cleared at the end; elsewhere (with
//! `--progress`) each second gets its own line, for logs.

use std::io::Write as _;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::stats::Totals;

/// Whether and how to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// No progress output.
    Off,
    /// One line rewritten in place.
    Terminal,
    /// One line per second.
    Plain,
}

/// The running progress task.
#[derive(Debug)]
pub(crate) struct ProgressTask {
    task: Option<(JoinHandle<()>, oneshot::Sender<()>)>,
}

impl ProgressTask {
    /// Stops the line and, on a terminal, clears it.
    pub(crate) async fn finish(self) {
        if let Some((task, stop)) = self.task {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

/// Starts reporting every second from now; `totals` reads what has been measured.
pub(crate) fn spawn(
    mode: Progress,
    measure_start: Instant,
    totals: impl Fn() -> Totals + Send + 'static,
) -> ProgressTask {
    if mode == Progress::Off {
        return ProgressTask { task: None };
    }
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let period = Duration::from_secs(1);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last = (Instant::now(), 0u64);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => break,
            }
            let now = Instant::now();
            let line = if now < measure_start {
                format!(
                    "warming up, {:.0}s left",
                    (measure_start - now).as_secs_f64().ceil()
                )
            } else {
                let totals = totals();
                let since = now.duration_since(last.0.max(measure_start)).as_secs_f64();
                let rate = if since > 0.0 {
                    totals.requests.saturating_sub(last.1) as f64 / since
                } else {
                    0.0
                };
                last = (now, totals.requests);
                line(now - measure_start, &totals, rate)
            };
            write(mode, &line);
        }
        if mode == Progress::Terminal {
            write(mode, "");
        }
    });
    ProgressTask {
        task: Some((task, stop)),
    }
}

fn line(elapsed: Duration, totals: &Totals, rate: f64) -> String {
    let p99 = if totals.latency_us.is_empty() {
        "-".to_owned()
    } else {
        format!(
            "{:.2}ms",
            totals.latency_us.value_at_quantile(0.99) as f64 / 1000.0
        )
    };
    format!(
        "{:>4.0}s  {} requests  {:.0} req/s  {} errors  p99 {p99}",
        elapsed.as_secs_f64(),
        totals.requests,
        rate,
        totals.error_count()
    )
}

fn write(mode: Progress, line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = match mode {
        Progress::Terminal => write!(stderr, "\r\x1b[2K{line}"),
        Progress::Plain => writeln!(stderr, "{line}"),
        Progress::Off => Ok(()),
    };
    let _ = stderr.flush();
}
