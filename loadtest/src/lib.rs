//! `lockstep-load`: an HTTP/1.1 load generator for lockstep and the services behind it.
//!
//! A run opens a fixed number of keep-alive connections and sends a mix of templated requests,
//! either in closed loop (each connection sends when its previous request is answered) or in open
//! loop at a fixed rate, with latencies counted from each request's intended send time so that
//! stalls are not hidden. It reports HDR-histogram percentiles, throughput, errors by kind,
//! statuses and retries. `verify` asks the gateway's admin listener whether the backends agree.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lockstep_loadtest::RunError> {
//! let mut spec = lockstep_loadtest::RunSpec::new("http://127.0.0.1:8080/health")?;
//! spec.connections = 8;
//! spec.stop = lockstep_loadtest::Stop::Requests(1000);
//! let report = lockstep_loadtest::run(spec).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

#![warn(unreachable_pub, missing_debug_implementations, missing_docs)]

mod http1;
mod mix;
mod progress;
mod report;
mod run;
mod stats;
mod target;
mod template;
mod verify;
mod wire;

pub use mix::{Mix, MixError, Problem, RequestSpec, parse_header_line};
pub use progress::Progress;
pub use report::{Latency, Mode, Report};
pub use run::{RunError, RunSpec, Stop, run, run_blocking, run_until};
pub use stats::ErrorKind;
pub use target::{Target, TargetError};
pub use template::{Template, TemplateError, Values};
pub use verify::{BackendView, Difference, VerifyAnswer, VerifyError, read_token, verify};
