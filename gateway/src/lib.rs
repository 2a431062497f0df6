//! lockstep: a replication gateway. An HTTP reverse proxy on pingora that keeps N copies of an
//! unmodified service logically equivalent by sending every state-changing request to each copy
//! in the same order and committing only when the backups agree with the primary.
//!
//! This crate is the only one that knows pingora: the proxy, the admin listener, the pooled
//! transport the pipeline uses, and the CLI's building blocks.
#![warn(unreachable_pub, missing_debug_implementations)]

mod admin;
mod checkpoints;
pub mod client;
pub mod demo;
mod events;
mod headers;
mod idempotency;
mod join;
mod metrics;
mod origin;
mod proxy;
mod respond;
pub mod rollout;
mod server;
mod shared;
mod transactions;
mod transport;

pub use idempotency::{KeyError, MAX_KEY_LEN};
pub use respond::{ErrorResponse, GatewayError};
pub use server::{Environment, Gateway, ListenerApp, Running};
pub use transport::{BackendConnector, PeerTimeouts, PingoraTransport};
