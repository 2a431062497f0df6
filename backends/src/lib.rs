//! lockstep's backend pool and replication pipeline: roles and states, ordered per-lane dispatch
//! to the primary and the backups, acknowledgements and response comparison, commit, health.
//!
//! Nothing here names pingora: the HTTP client is the [`Transport`] trait, which the gateway
//! implements. Everything that decides (ordering, comparison, health transitions, watermarks) is
//! a plain type testable without sockets.
#![warn(unreachable_pub, missing_debug_implementations)]

/// A named failpoint. With the `failpoints` feature, `FAILPOINTS=NAME=return` (or
/// `NAME=5%return`) in the gateway's environment aborts the process here, as a crash would;
/// without the feature it is nothing.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| std::process::abort());
    };
}
pub(crate) use failpoint;

mod catchup;
mod checkpoint;
mod clock;
mod compare;
mod events;
mod health;
mod hooks;
mod ids;
mod lane;
mod noise_finder;
mod pool;
mod probes;
mod recovery;
mod refusal;
mod replicator;
#[cfg(test)]
mod testing;
mod transport;
mod watermark;

pub use catchup::{CatchupOptions, JoinError, JoinProgress, JoinReport};
pub use checkpoint::{Checkpoint, CheckpointError, export_state, import_state};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compare::{
    COMPARED_HEADERS, CompareContext, Difference, compare_in, compare_responses,
    response_differences,
};
pub use events::{EventBus, TopologyEvent};
pub use health::{HealthChecker, HealthTracker};
pub use hooks::run_hook;
pub use ids::{
    IdConflict, IdMap, Minted, minted_pairs, translate_json, translate_request, translate_response,
};
pub use noise_finder::{LearnFor, NoisePlace, NoiseReport, NoiseRoute};
pub use pool::{Backend, BackendState, BackendStatus, Pool, PoolStatus};
pub use probes::{ProbeDifference, ProbeReport, compare_views, view_report};
pub use recovery::RecoveryReport;
pub use replicator::{
    Committed, IdentityCheck, MembershipError, REFUSED, Readmission, RejoinHook, ReplicationError,
    Replicator, Submission, SwitchoverError, TranslationRules, TxnError, TxnMode, TxnOutcome,
    TxnReply,
};
pub use transport::{Transport, TransportError};
pub use watermark::Watermark;
