//! What can be wrong with a configuration, one variant per fact.
//!
//! Every message names the key with its full path (`routes[2].lane`, `backends[1].url`; array
//! indices count from 0, in file order), shows the value that was written and says how to fix it.
//! [`ConfigError::key`] gives the path alone, for tools that want to point at the line.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file is not valid TOML, or its TOML does not fit the schema: an unknown key, a value
    /// of the wrong type, an unknown enum value, a missing required key.
    #[error(
        "line {line}, column {column}{}: {message}",
        .key.as_deref().map(|k| format!(" ({k})")).unwrap_or_default()
    )]
    Syntax {
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        /// The key the error is about, when it could be located (`gateway.threads`).
        key: Option<String>,
        /// What the TOML parser or the schema said, e.g. ``unknown field `listn`, expected one
        /// of `listen`, `threads`, ...``.
        message: String,
    },

    /// `[health] auto_rejoin = true` without a view probe to prove the rejoined copies.
    #[error(
        "health.auto_rejoin = true needs at least one [[verify.probes]]: a copy that comes back is \
         rejoined automatically only when its view can be checked against the primary's; add a \
         probe such as [[verify.probes]] request = \"GET /accounts\", or set auto_rejoin = false"
    )]
    AutoRejoinWithoutProbes,

    /// No `[[backends]]` at all.
    #[error(
        "no backends are configured; add at least the primary: \
         [[backends]] name = \"a\" url = \"http://127.0.0.1:9001\" role = \"primary\""
    )]
    NoBackends,

    /// Backends are configured but none has `role = "primary"`.
    #[error(
        "no backend has role = \"primary\" (found only backups: {}); \
         set role = \"primary\" on exactly one backend",
        .backups.join(", ")
    )]
    NoPrimary { backups: Vec<String> },

    /// More than one backend has `role = "primary"`.
    #[error(
        "backends {} all have role = \"primary\"; exactly one backend may be the primary, \
         set role = \"backup\" on the others",
        .names.join(", ")
    )]
    MultiplePrimaries { names: Vec<String> },

    /// Two backends share a name.
    #[error(
        "{key} = {name:?} is already the name of backends[{first}]; give every backend a \
         distinct name"
    )]
    DuplicateBackendName {
        key: String,
        name: String,
        /// Index of the backend that used the name first.
        first: usize,
    },

    /// Two backends point at the same service, which would apply every write to it twice.
    #[error(
        "{key} = {url:?} is also the url of backends[{first}]; each backend must be a separate \
         copy of the service, or it would receive every write twice"
    )]
    DuplicateBackendUrl {
        key: String,
        url: String,
        /// Index of the backend that used the URL first.
        first: usize,
    },

    /// A backend name with characters other than letters, digits, `-`, `_`, `.`, or empty.
    #[error(
        "{key} = {value:?} is not a valid backend name; use only letters, digits, '-', '_' \
         and '.', like \"a\" or \"billing-v2\""
    )]
    InvalidBackendName { key: String, value: String },

    /// A backend URL that does not parse or is not `http://host[:port][/prefix]`.
    #[error(
        "{key} = {value:?} is not a usable backend URL: {reason}; write it like \
         \"http://127.0.0.1:9001\""
    )]
    InvalidUrl {
        key: String,
        value: String,
        reason: String,
    },

    /// A `[gateway] public_url` that is not an origin.
    #[error(
        "{key} = {value:?} is not a usable public URL: {reason}; write the origin clients use, \
         like \"https://api.example.com\" or \"http://127.0.0.1:8080\""
    )]
    InvalidPublicUrl {
        key: String,
        value: String,
        reason: String,
    },

    /// A duration that does not parse.
    #[error(
        "{key} = {value:?} is not a duration; write a number and a unit, like \"250ms\", \"5s\" \
         or \"24h\""
    )]
    InvalidDuration { key: String, value: String },

    /// A zero duration where zero means nothing useful (a timeout, an interval, a TTL).
    #[error("{key} must be longer than zero; write a duration like \"250ms\", \"5s\" or \"24h\"")]
    ZeroDuration { key: String },

    /// A size that does not parse.
    #[error(
        "{key} = {value} is not a size; write a number of bytes, or a number and a unit, like \
         \"64KiB\", \"16MiB\" or \"1MB\""
    )]
    InvalidSize {
        key: String,
        /// As written, quoted if it was a string.
        value: String,
    },

    /// A zero size where zero would refuse everything.
    #[error("{key} must be larger than zero; write a size like \"64KiB\" or \"16MiB\"")]
    ZeroSize { key: String },

    /// A listen address that is not `IP:PORT`.
    #[error(
        "{key} = {value:?} is not a socket address; write an IP address and a port, like \
         \"127.0.0.1:8080\" or \"[::1]:8080\" (host names are not resolved)"
    )]
    InvalidListen { key: String, value: String },

    /// The admin listener is reachable from other hosts but no token protects it.
    #[error(
        "admin.listen = \"{listen}\" is not a loopback address, so admin.token_file (or \
         admin.token_env) is required; set admin.token_file to a file holding the token, or \
         admin.token_env to the name of an environment variable holding it, or listen on \
         127.0.0.1"
    )]
    AdminTokenRequired { listen: SocketAddr },

    /// Both `noise.learn_answers` and `noise.learn_for` are set.
    #[error(
        "noise.learn_answers and noise.learn_for are both set; keep one: a number of compared \
         answers, or a duration"
    )]
    ConflictingNoiseLearning,

    /// Both `admin.token_file` and `admin.token_env` are set, so which token counts is unclear.
    #[error(
        "admin.token_env = {env:?} and admin.token_file = {file:?} are both set; the admin token \
         comes from one place, so remove one of them"
    )]
    ConflictingAdminTokens { env: String, file: String },

    /// Not a usable environment variable name.
    #[error(
        "{key} = {value:?} is not an environment variable name; use letters, digits and '_', \
         not starting with a digit, like \"LOCKSTEP_ADMIN_TOKEN\""
    )]
    InvalidEnvVarName { key: String, value: String },

    /// A hook table with neither `command` nor `request`.
    #[error(
        "{key} sets neither command nor request; write {key} = {{ command = \"...\" }} to run a \
         shell command, or {key} = {{ request = \"POST /admin/reset\" }} to send a request to \
         the backend"
    )]
    HookWithoutAction { key: String },

    /// A hook table with both `command` and `request`.
    #[error(
        "{key} sets both command and request; a hook does one thing, so keep exactly one of them"
    )]
    HookWithTwoActions { key: String },

    /// A hook's `request` that is not `"METHOD /path"`.
    #[error(
        "{key} = {value:?} is not a valid hook request: {reason}; write it like \
         \"POST /admin/reset\""
    )]
    InvalidHookRequest {
        key: String,
        value: String,
        reason: String,
    },

    /// One `[checkpoint]` hook is set without the other: a checkpoint that can be exported but
    /// not imported (or the reverse) is useless.
    #[error(
        "{present} is set but {key} is not; set both to copy checkpoints between backends, or \
         neither to catch up by replaying the whole journal"
    )]
    MissingCheckpointHook {
        /// The hook that is missing (`checkpoint.import`).
        key: String,
        /// The hook that is set (`checkpoint.export`).
        present: String,
    },

    /// A webhook URL that does not parse or is not `http://host[:port]/path`.
    #[error(
        "{key} = {value:?} is not a usable webhook URL: {reason}; write it like \
         \"http://127.0.0.1:9100/lockstep-events\""
    )]
    InvalidWebhookUrl {
        key: String,
        value: String,
        reason: String,
    },

    /// An empty string where a value is needed (a hook's command, the log level).
    #[error("{key} is empty; write a value like {example}")]
    EmptyValue {
        key: String,
        /// What a valid value looks like, quoted.
        example: String,
    },

    /// A number out of its range (`threads = 0`, `healthy_after = 0`).
    #[error("{key} = {value} {reason}")]
    InvalidNumber {
        key: String,
        value: String,
        reason: String,
    },

    /// A route's `match` string that does not parse.
    #[error("{key} = {value:?} is not a valid route: {reason}")]
    InvalidRoute {
        key: String,
        value: String,
        reason: String,
    },

    /// A lane template refers to a parameter the route's pattern does not bind.
    #[error(
        "{key} uses {{{param}}}, which the route's pattern does not bind; {}",
        available_params(.available)
    )]
    UnknownLaneParam {
        key: String,
        param: String,
        /// The parameters the pattern binds, in pattern order.
        available: Vec<String>,
    },

    /// A lane that does not parse.
    #[error("{key} = {value:?} is not a valid lane: {reason}")]
    InvalidLane {
        key: String,
        value: String,
        reason: String,
    },

    /// Not a valid HTTP header name.
    #[error(
        "{key} = {value:?} is not a valid HTTP header name; use letters, digits and '-', like \
         \"Idempotency-Key\""
    )]
    InvalidHeaderName { key: String, value: String },

    /// A `noise` entry that names no known kind.
    #[error(
        "{key} = {value:?} is not a kind of noise; use one of \"timestamp\", \"uuid\", \"token\", \"own-address\" (or list the place itself in ignore_json / ignore_headers)"
    )]
    UnknownNoiseKind { key: String, value: String },

    /// Not an RFC 6901 JSON pointer.
    #[error(
        "{key} = {value:?} is not a JSON pointer; write \"\" for the whole document or a path \
         starting with '/', like \"/updated_at\" or \"/items/0/id\" (escape '~' as ~0 and \
         '/' as ~1)"
    )]
    InvalidJsonPointer { key: String, value: String },

    /// A `mint` entry that is neither a JSON pointer nor `header:NAME`.
    #[error(
        "{key} = {value:?} is not a place in an answer; write a JSON pointer into the body (\"/id\", \"/items/*/id\", `*` for every member) or a response header (\"header:ETag\")"
    )]
    InvalidMintPlace { key: String, value: String },

    /// A probe's `request` that is not `"METHOD /path"`.
    #[error(
        "{key} = {value:?} is not a valid probe request: {reason}; write it like \"GET /accounts\""
    )]
    InvalidProbe {
        key: String,
        value: String,
        reason: String,
    },

    /// A path (URL path or file path) that cannot be used.
    #[error("{key} = {value:?} is not a valid path: {reason}")]
    InvalidPath {
        key: String,
        value: String,
        reason: String,
    },

    /// A `lockstep_prefix` that cannot be used.
    #[error("{key} = {value:?} is not a valid prefix: {reason}; write it like \"/_lockstep\"")]
    InvalidPrefix {
        key: String,
        value: String,
        reason: String,
    },
}

fn available_params(available: &[String]) -> String {
    if available.is_empty() {
        "the pattern binds no parameters; add a {name} segment to the pattern, or use a literal \
         lane or \"header:NAME\""
            .to_owned()
    } else {
        let list: Vec<String> = available.iter().map(|p| format!("{{{p}}}")).collect();
        format!("available: {}", list.join(", "))
    }
}

impl ConfigError {
    /// The full path of the key this error is about (`routes[2].lane`), when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { key, .. } => key.as_deref(),
            ConfigError::AutoRejoinWithoutProbes => Some("health.auto_rejoin"),
            ConfigError::NoBackends
            | ConfigError::NoPrimary { .. }
            | ConfigError::MultiplePrimaries { .. } => Some("backends"),
            ConfigError::AdminTokenRequired { .. } => Some("admin.token_file"),
            ConfigError::ConflictingAdminTokens { .. } => Some("admin.token_env"),
            ConfigError::ConflictingNoiseLearning => Some("noise.learn_for"),
            ConfigError::DuplicateBackendName { key, .. }
            | ConfigError::DuplicateBackendUrl { key, .. }
            | ConfigError::InvalidBackendName { key, .. }
            | ConfigError::InvalidUrl { key, .. }
            | ConfigError::InvalidPublicUrl { key, .. }
            | ConfigError::InvalidDuration { key, .. }
            | ConfigError::ZeroDuration { key }
            | ConfigError::InvalidSize { key, .. }
            | ConfigError::ZeroSize { key }
            | ConfigError::InvalidListen { key, .. }
            | ConfigError::InvalidNumber { key, .. }
            | ConfigError::InvalidRoute { key, .. }
            | ConfigError::UnknownLaneParam { key, .. }
            | ConfigError::InvalidLane { key, .. }
            | ConfigError::InvalidHeaderName { key, .. }
            | ConfigError::UnknownNoiseKind { key, .. }
            | ConfigError::InvalidJsonPointer { key, .. }
            | ConfigError::InvalidMintPlace { key, .. }
            | ConfigError::InvalidProbe { key, .. }
            | ConfigError::InvalidPath { key, .. }
            | ConfigError::InvalidPrefix { key, .. }
            | ConfigError::InvalidEnvVarName { key, .. }
            | ConfigError::HookWithoutAction { key }
            | ConfigError::HookWithTwoActions { key }
            | ConfigError::InvalidHookRequest { key, .. }
            | ConfigError::MissingCheckpointHook { key, .. }
            | ConfigError::InvalidWebhookUrl { key, .. }
            | ConfigError::EmptyValue { key, .. } => Some(key),
        }
    }
}
