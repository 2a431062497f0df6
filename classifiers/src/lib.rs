//! lockstep's request classification: which route rule a request matches, and what that decides —
//! logical or read, the lane it is ordered in, its idempotency requirement and how backups'
//! responses are compared with the primary's.
//!
//! Everything here is a pure function of the configured [`RouteRule`]s and the request line and
//! headers. This crate must do no I/O, keep no state between requests and never block: it runs on
//! every request, before anything else happens to it.
//!
//! [`RouteRule`]: lockstep_config::RouteRule
#![warn(unreachable_pub, missing_debug_implementations)]

mod classify;
mod lane;
mod method;
mod pattern;
#[cfg(test)]
mod test_support;

pub use classify::{Classification, Classifier, RouteMatch};
pub use lane::LaneKey;
pub use method::default_kind;
