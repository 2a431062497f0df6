//! A deterministic simulation of the real lockstep gateway: its pingora proxy, admin listener,
//! replication pipeline, recovery and health checks run unmodified in a turmoil host, in front
//! of three demo banks, with simulated clients, a seeded network, simulated time and seeded
//! faults (crashes and restarts, partitions, held messages). The gateway's journal lives on a
//! simulated disk that loses its unsynced writes when the gateway crashes. After each run the history is
//! checked: no acknowledged write lost, the same requests in the same order on every in-sync
//! copy, at most one application per idempotency key, linearizable reads and writes, and a
//! write that commits after the faults are healed.
//!
//! Everything that varies between runs comes from the seed, so a failing seed replays exactly.
#![warn(unreachable_pub, missing_debug_implementations)]

mod bank;
mod disk;
mod http_client;
pub mod linearizability;
mod net;
mod rng;
mod run;
mod workload;

pub use disk::{PowerLoss, SimDisk};
pub use run::{FaultKind, Outcome, run};

/// Makes pingora's timeouts follow simulated time. pingora runs timeouts on its own real-time
/// timer thread unless they are above a threshold; with the threshold at zero, every timeout of
/// one second or more goes to tokio's timer, which the simulation drives. Call once per process,
/// before any run.
pub fn use_simulated_timeouts() {
    pingora_timeout::fast_timeout::set_fast_timeout_to_tokio_threshold(Some(
        std::time::Duration::ZERO,
    ));
}
