//! The TOML shape users write, as serde structs: nothing here is checked beyond its TOML type.
//!
//! Unknown keys are rejected everywhere (`deny_unknown_fields`), so a misspelled key is an error
//! rather than a silently ignored line. Every default is a named function, so the default a user
//! gets and the default the reference documents are the same value. Durations, sizes, addresses,
//! URLs and patterns stay strings here; `validate` turns them into typed values and names the key
//! when one is wrong.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) gateway: RawGateway,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default)]
    pub(crate) journal: RawJournal,
    #[serde(default)]
    pub(crate) replication: RawReplication,
    #[serde(default)]
    pub(crate) idempotency: RawIdempotency,
    #[serde(default)]
    pub(crate) health: RawHealth,
    /// Required: at least the primary. Missing entirely is reported as `NoBackends`, not as a
    /// serde error, so the message can say what to write.
    #[serde(default)]
    pub(crate) backends: Vec<RawBackend>,
    #[serde(default)]
    pub(crate) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(crate) verify: RawVerify,
    #[serde(default)]
    pub(crate) catchup: RawCatchup,
    #[serde(default)]
    pub(crate) events: RawEvents,
    #[serde(default)]
    pub(crate) log: RawLog,
    #[serde(default)]
    pub(crate) checkpoint: RawCheckpoint,
    #[serde(default)]
    pub(crate) transactions: RawTransactions,
    #[serde(default)]
    pub(crate) noise: RawNoise,
}

/// `[noise]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNoise {
    #[serde(default)]
    pub(crate) learn_answers: Option<u64>,
    #[serde(default)]
    pub(crate) learn_for: Option<String>,
}

/// `[transactions]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransactions {
    #[serde(default = "default_transaction_ack")]
    pub(crate) ack: RawTransactionAck,
    #[serde(default = "default_transaction_timeout")]
    pub(crate) timeout: String,
}

impl Default for RawTransactions {
    fn default() -> Self {
        RawTransactions {
            ack: default_transaction_ack(),
            timeout: default_transaction_timeout(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawTransactionAck {
    PerRequest,
    PerTransaction,
}

pub(crate) fn default_transaction_ack() -> RawTransactionAck {
    RawTransactionAck::PerRequest
}

pub(crate) fn default_transaction_timeout() -> String {
    "30s".to_owned()
}

/// `[gateway]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    #[serde(default = "default_gateway_listen")]
    pub(crate) listen: String,
    #[serde(default = "default_threads")]
    pub(crate) threads: u64,
    #[serde(default = "default_max_body")]
    pub(crate) max_body: RawSize,
    #[serde(default = "default_lockstep_prefix")]
    pub(crate) lockstep_prefix: String,
    #[serde(default = "default_max_in_flight")]
    pub(crate) max_in_flight: u64,
    #[serde(default = "default_max_header_size")]
    pub(crate) max_header_size: RawSize,
    #[serde(default = "default_grace_period")]
    pub(crate) grace_period: String,
    #[serde(default = "default_request_timeout")]
    pub(crate) request_timeout: String,
    #[serde(default)]
    pub(crate) public_url: Option<String>,
}

impl Default for RawGateway {
    fn default() -> Self {
        RawGateway {
            listen: default_gateway_listen(),
            threads: default_threads(),
            max_body: default_max_body(),
            lockstep_prefix: default_lockstep_prefix(),
            max_in_flight: default_max_in_flight(),
            max_header_size: default_max_header_size(),
            grace_period: default_grace_period(),
            request_timeout: default_request_timeout(),
            public_url: None,
        }
    }
}

pub(crate) fn default_gateway_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

pub(crate) fn default_threads() -> u64 {
    2
}

pub(crate) fn default_segment_size() -> RawSize {
    RawSize::Text("64MiB".to_owned())
}

pub(crate) fn default_max_body() -> RawSize {
    RawSize::Text("16MiB".to_owned())
}

pub(crate) fn default_lockstep_prefix() -> String {
    "/_lockstep".to_owned()
}

pub(crate) fn default_max_in_flight() -> u64 {
    1024
}

pub(crate) fn default_max_header_size() -> RawSize {
    RawSize::Text("64KiB".to_owned())
}

pub(crate) fn default_grace_period() -> String {
    "5s".to_owned()
}

pub(crate) fn default_request_timeout() -> String {
    "60s".to_owned()
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    pub(crate) listen: String,
    #[serde(default)]
    pub(crate) token_file: Option<String>,
    #[serde(default)]
    pub(crate) token_env: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: default_admin_listen(),
            token_file: None,
            token_env: None,
        }
    }
}

pub(crate) fn default_admin_listen() -> String {
    "127.0.0.1:8081".to_owned()
}

/// `[journal]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJournal {
    #[serde(default = "default_journal_dir")]
    pub(crate) dir: String,
    #[serde(default = "default_fsync")]
    pub(crate) fsync: RawFsync,
    #[serde(default = "default_segment_size")]
    pub(crate) segment_size: RawSize,
}

impl Default for RawJournal {
    fn default() -> Self {
        RawJournal {
            dir: default_journal_dir(),
            fsync: default_fsync(),
            segment_size: default_segment_size(),
        }
    }
}

pub(crate) fn default_journal_dir() -> String {
    "./lockstep-data".to_owned()
}

pub(crate) fn default_fsync() -> RawFsync {
    RawFsync::Batch
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawFsync {
    Always,
    Batch,
    Never,
}

/// `[replication]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplication {
    #[serde(default = "default_ack")]
    pub(crate) ack: RawAck,
    #[serde(default = "default_dispatch")]
    pub(crate) dispatch: RawDispatch,
    #[serde(default = "default_backup_timeout")]
    pub(crate) backup_timeout: String,
    #[serde(default = "default_primary_timeout")]
    pub(crate) primary_timeout: String,
    #[serde(default = "default_connect_timeout")]
    pub(crate) connect_timeout: String,
    #[serde(default = "default_on_divergence")]
    pub(crate) on_divergence: RawOnDivergence,
    #[serde(default = "default_refusals")]
    pub(crate) refusals: Vec<u64>,
}

impl Default for RawReplication {
    fn default() -> Self {
        RawReplication {
            ack: default_ack(),
            dispatch: default_dispatch(),
            backup_timeout: default_backup_timeout(),
            primary_timeout: default_primary_timeout(),
            connect_timeout: default_connect_timeout(),
            on_divergence: default_on_divergence(),
            refusals: default_refusals(),
        }
    }
}

/// `408 Request Timeout`, `429 Too Many Requests`, `503 Service Unavailable`: answers that say
/// the request was not processed.
pub(crate) fn default_refusals() -> Vec<u64> {
    vec![408, 429, 503]
}

pub(crate) fn default_ack() -> RawAck {
    RawAck::All
}

pub(crate) fn default_dispatch() -> RawDispatch {
    RawDispatch::Sequential
}

pub(crate) fn default_backup_timeout() -> String {
    "5s".to_owned()
}

pub(crate) fn default_primary_timeout() -> String {
    "30s".to_owned()
}

pub(crate) fn default_connect_timeout() -> String {
    "1s".to_owned()
}

pub(crate) fn default_on_divergence() -> RawOnDivergence {
    RawOnDivergence::Eject
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawAck {
    All,
    Majority,
    None,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawDispatch {
    Sequential,
    Parallel,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawOnDivergence {
    Eject,
    Log,
}

/// `[idempotency]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdempotency {
    #[serde(default = "default_idempotency_header")]
    pub(crate) header: String,
    #[serde(default = "default_scope_headers")]
    pub(crate) scope_headers: Vec<String>,
    #[serde(default = "default_ttl")]
    pub(crate) ttl: String,
    #[serde(default = "default_in_flight")]
    pub(crate) in_flight: RawInFlight,
}

impl Default for RawIdempotency {
    fn default() -> Self {
        RawIdempotency {
            header: default_idempotency_header(),
            scope_headers: default_scope_headers(),
            ttl: default_ttl(),
            in_flight: default_in_flight(),
        }
    }
}

pub(crate) fn default_idempotency_header() -> String {
    "Idempotency-Key".to_owned()
}

pub(crate) fn default_scope_headers() -> Vec<String> {
    vec!["authorization".to_owned(), "cookie".to_owned()]
}

pub(crate) fn default_ttl() -> String {
    "24h".to_owned()
}

pub(crate) fn default_in_flight() -> RawInFlight {
    RawInFlight::Wait
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawInFlight {
    Wait,
    Reject,
}

/// `[health]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    #[serde(default = "default_health_path")]
    pub(crate) path: String,
    #[serde(default = "default_health_interval")]
    pub(crate) interval: String,
    #[serde(default = "default_health_timeout")]
    pub(crate) timeout: String,
    #[serde(default = "default_threshold")]
    pub(crate) unhealthy_after: u64,
    #[serde(default = "default_threshold")]
    pub(crate) healthy_after: u64,
    #[serde(default)]
    pub(crate) identity_header: Option<String>,
    #[serde(default)]
    pub(crate) auto_rejoin: bool,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            path: default_health_path(),
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            unhealthy_after: default_threshold(),
            healthy_after: default_threshold(),
            identity_header: None,
            auto_rejoin: false,
        }
    }
}

pub(crate) fn default_health_path() -> String {
    "/health".to_owned()
}

pub(crate) fn default_health_interval() -> String {
    "250ms".to_owned()
}

pub(crate) fn default_health_timeout() -> String {
    "200ms".to_owned()
}

pub(crate) fn default_threshold() -> u64 {
    2
}

/// One `[[backends]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) role: RawRole,
    #[serde(default = "default_implementation")]
    pub(crate) implementation: String,
    #[serde(default)]
    pub(crate) reset: Option<RawHook>,
}

pub(crate) fn default_implementation() -> String {
    "default".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawRole {
    Primary,
    Backup,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    /// `"METHODS PATTERN"`; `match` is a Rust keyword, hence the rename.
    #[serde(rename = "match")]
    pub(crate) matches: String,
    #[serde(default)]
    pub(crate) kind: Option<RawKind>,
    #[serde(default)]
    pub(crate) lane: Option<String>,
    #[serde(default)]
    pub(crate) idempotency: Option<RawIdempotencyRule>,
    #[serde(default)]
    pub(crate) compare: Option<RawCompare>,
    #[serde(default)]
    pub(crate) transaction_ack: Option<RawTransactionAck>,
    #[serde(default)]
    pub(crate) refusals: Option<Vec<u64>>,
    #[serde(default)]
    pub(crate) mint: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) translate: Option<RawTranslate>,
}

/// `translate = { ... }` on a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTranslate {
    #[serde(default)]
    pub(crate) headers: Vec<String>,
    #[serde(default)]
    pub(crate) numbers: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawKind {
    Logical,
    Read,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawIdempotencyRule {
    Required,
    Optional,
    Off,
}

/// `compare = { ... }` on a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompare {
    #[serde(default)]
    pub(crate) status_only: bool,
    #[serde(default)]
    pub(crate) headers: Vec<String>,
    #[serde(default)]
    pub(crate) ignore_headers: Vec<String>,
    #[serde(default)]
    pub(crate) ignore_json: Vec<String>,
    #[serde(default)]
    pub(crate) noise: Vec<String>,
}

/// `[verify]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    #[serde(default)]
    pub(crate) probes: Vec<RawProbe>,
}

/// One `[[verify.probes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub(crate) request: String,
    #[serde(default)]
    pub(crate) status_only: bool,
    #[serde(default)]
    pub(crate) headers: Vec<String>,
    #[serde(default)]
    pub(crate) ignore_headers: Vec<String>,
    #[serde(default)]
    pub(crate) ignore_json: Vec<String>,
    #[serde(default)]
    pub(crate) noise: Vec<String>,
}

/// A hook as written: `{ command = "..." }` or `{ request = "METHOD /path" }`. Both fields are
/// optional here so that "exactly one" is reported by validation with the hook's key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHook {
    #[serde(default)]
    pub(crate) command: Option<String>,
    #[serde(default)]
    pub(crate) request: Option<String>,
}

/// `[catchup]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCatchup {
    #[serde(default = "default_fence_lag")]
    pub(crate) fence_lag: u64,
    #[serde(default = "default_catchup_concurrency")]
    pub(crate) concurrency: u64,
    #[serde(default = "default_catchup_batch")]
    pub(crate) batch: u64,
}

impl Default for RawCatchup {
    fn default() -> Self {
        RawCatchup {
            fence_lag: default_fence_lag(),
            concurrency: default_catchup_concurrency(),
            batch: default_catchup_batch(),
        }
    }
}

pub(crate) fn default_fence_lag() -> u64 {
    64
}

pub(crate) fn default_catchup_concurrency() -> u64 {
    4
}

pub(crate) fn default_catchup_batch() -> u64 {
    256
}

/// `[events]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEvents {
    #[serde(default)]
    pub(crate) webhook: Option<String>,
    #[serde(default = "default_webhook_timeout")]
    pub(crate) webhook_timeout: String,
    #[serde(default = "default_webhook_retries")]
    pub(crate) webhook_retries: u64,
}

impl Default for RawEvents {
    fn default() -> Self {
        RawEvents {
            webhook: None,
            webhook_timeout: default_webhook_timeout(),
            webhook_retries: default_webhook_retries(),
        }
    }
}

pub(crate) fn default_webhook_timeout() -> String {
    "2s".to_owned()
}

pub(crate) fn default_webhook_retries() -> u64 {
    5
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    #[serde(default = "default_log_format")]
    pub(crate) format: RawLogFormat,
    #[serde(default = "default_log_level")]
    pub(crate) level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

pub(crate) fn default_log_format() -> RawLogFormat {
    RawLogFormat::Text
}

pub(crate) fn default_log_level() -> String {
    "info".to_owned()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawLogFormat {
    Text,
    Json,
}

/// `[checkpoint]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheckpoint {
    #[serde(default)]
    pub(crate) export: Option<RawHook>,
    #[serde(default)]
    pub(crate) import: Option<RawHook>,
    #[serde(default)]
    pub(crate) every: u64,
    #[serde(default = "default_checkpoint_keep")]
    pub(crate) keep: u64,
    #[serde(default = "default_checkpoint_timeout")]
    pub(crate) timeout: String,
    #[serde(default = "default_true")]
    pub(crate) compact: bool,
}

impl Default for RawCheckpoint {
    fn default() -> Self {
        RawCheckpoint {
            export: None,
            import: None,
            every: 0,
            keep: default_checkpoint_keep(),
            timeout: default_checkpoint_timeout(),
            compact: true,
        }
    }
}

pub(crate) fn default_checkpoint_keep() -> u64 {
    2
}

pub(crate) fn default_checkpoint_timeout() -> String {
    "60s".to_owned()
}

/// A size as written: a bare integer of bytes, or a string such as `"16MiB"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a size: a number of bytes or a string like "16MiB""#)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                // TOML integers are i64; anything larger is not a size anyone means.
                Ok(RawSize::Bytes(i64::try_from(v).unwrap_or(i64::MAX)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

impl fmt::Display for RawSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawSize::Bytes(n) => write!(f, "{n}"),
            RawSize::Text(s) => write!(f, "{s:?}"),
        }
    }
}

pub(crate) fn default_true() -> bool {
    true
}
