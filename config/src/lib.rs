//! lockstep's configuration: the TOML shape users write, parsed strictly, validated, and turned
//! into the typed values of [`Config`].
//!
//! The pipeline is raw serde structs (unknown keys rejected) → validation → typed values. Every
//! error names the key, the bad value and the fix; TOML syntax errors carry line and column.
#![warn(unreachable_pub, missing_debug_implementations)]

mod error;
mod load;
mod raw;
mod route;
mod syntax;
mod types;
mod units;
mod validate;

pub use error::ConfigError;
pub use types::{
    AckPolicy, AdminConfig, BackendConfig, CatchupConfig, CheckpointConfig, CompareRule, Config,
    DispatchMode, EventsConfig, FsyncMode, GatewayConfig, HealthConfig, Hook, IdempotencyConfig,
    IdempotencyRule, InFlightPolicy, JournalConfig, LanePart, LaneTemplate, LogConfig, LogFormat,
    MethodSet, MintPlace, NoiseConfig, NoiseKind, NoiseLearning, OnDivergence, PathPattern,
    ReplicationConfig, RequestKind, ResetHook, Role, RouteRule, Segment, TRANSLATED_HEADERS,
    TransactionAck, TransactionsConfig, TranslateRule, VerifyConfig, ViewProbe,
};
pub use validate::parse_backend_url;
