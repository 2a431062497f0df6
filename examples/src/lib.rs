//! The lockstep demo service: a small bank over HTTP, with its state in memory or in SQLite.
//!
//! It is the stateful service that lockstep replicates in the demo, the tests and the
//! benchmarks. Both implementations answer byte-identically (apart from `date`) for the same
//! sequence of requests, because everything but the state itself is shared code; the
//! `Faults` knobs make one instance slow or make it drift on purpose. With random ids
//! (`open_store_with(.., Ids::Random)`) every instance shows its accounts under ids of its own,
//! as services that mint identifiers do.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let store = lockstep_demo::open_store(lockstep_demo::Implementation::Memory, None).unwrap();
//! let running = lockstep_demo::spawn(lockstep_demo::app(store)).await?;
//! println!("bank at {}", running.url());
//! running.stop().await
//! # }
//! ```

#![warn(unreachable_pub, missing_debug_implementations)]

mod account;
mod error;
mod faults;
mod ids;
mod noise;
mod request;
mod response;
mod routes;
mod server;
mod store;

pub use account::{Account, AccountId, Snapshot, Transfer};
pub use faults::Faults;
pub use ids::{IdKey, Ids, InvalidIdKey};
pub use noise::with_noise;
pub use request::{MAX_AMOUNT, MAX_OWNER_CHARS, TransferOrder};
pub use routes::{app, app_with};
pub use server::{RunningDemo, serve, spawn};
pub use store::{
    Implementation, MemoryStore, OpenError, SqliteStore, Store, StoreError, open_store,
    open_store_with,
};
