//! Typed, validated configuration values: what the rest of lockstep reads.
//!
//! Every value here has passed validation; code that holds a [`Config`] never re-checks it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[gateway]`: the data listener.
    pub gateway: GatewayConfig,
    /// `[admin]`: the admin listener.
    pub admin: AdminConfig,
    /// `[journal]`: where and how durably logical requests are recorded.
    pub journal: JournalConfig,
    /// `[replication]`: how logical requests reach the backups.
    pub replication: ReplicationConfig,
    /// `[idempotency]`: how retried requests are recognised.
    pub idempotency: IdempotencyConfig,
    /// `[health]`: active health checks of every backend.
    pub health: HealthConfig,
    /// In config order; exactly one has `role == Role::Primary`.
    pub backends: Vec<BackendConfig>,
    /// In config order; the first rule that matches a request wins.
    pub routes: Vec<RouteRule>,
    /// `[verify]`: logical-view probes.
    pub verify: VerifyConfig,
    /// `[catchup]`: how a joining or rejoining backup replays the journal.
    pub catchup: CatchupConfig,
    /// `[events]`: where topology events are pushed.
    pub events: EventsConfig,
    /// `[log]`: the gateway's own log output.
    pub log: LogConfig,
    /// `[checkpoint]`: how a backend's state is exported and imported instead of replayed.
    pub checkpoint: CheckpointConfig,
    /// `[transactions]`: groups of requests committed as one unit.
    pub transactions: TransactionsConfig,
    /// `[noise]`: the noise finder at start.
    pub noise: NoiseConfig,
}

/// `[noise]`: whether the gateway starts learning noise (see `lockstep noise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoiseConfig {
    /// `learn_answers = N` or `learn_for = "10m"`; neither: not at start.
    pub learn: Option<NoiseLearning>,
}

/// How long the noise finder learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseLearning {
    /// For this many compared backup answers.
    Answers(u64),
    /// For this long.
    Duration(Duration),
}

/// `[transactions]`: requests carrying `Lockstep-Transaction: ID` form one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionsConfig {
    /// `[transactions] ack`, default `per-request`; a route's `transaction_ack` overrides it.
    pub ack: TransactionAck,
    /// `[transactions] timeout`, default 30s: a transaction idle this long is ended.
    pub timeout: Duration,
}

/// How a transaction's requests reach the backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionAck {
    /// Each request is replicated and acknowledged as it arrives; the commit is one record.
    PerRequest,
    /// Requests reach the primary only (tentative); the group is replicated at commit.
    PerTransaction,
}

/// `[gateway]`: the data listener clients talk to.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// `[gateway] listen`, default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `[gateway] threads`, default 2, at least 1.
    pub threads: usize,
    /// `[gateway] max_body` in bytes (written `"16MiB"`, `"64KiB"`, `"1000"`), default 16 MiB.
    pub max_body: u64,
    /// `[gateway] lockstep_prefix`, default `/_lockstep`: gateway-owned paths on the data listener.
    pub lockstep_prefix: String,
    /// `[gateway] max_in_flight`, default 1024, at least 1: logical requests admitted at once;
    /// beyond it the gateway answers 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// `[gateway] max_header_size` in bytes, default 64 KiB: the largest request head accepted.
    pub max_header_size: u64,
    /// `[gateway] grace_period`, default 5s, may be zero: how long SIGTERM lets in-flight requests
    /// finish before the gateway stops.
    pub grace_period: Duration,
    /// `[gateway] request_timeout`, default 60s: how long a client may take to send a request
    /// body.
    pub request_timeout: Duration,
    /// `[gateway] public_url`, optional: the origin clients use (`https://api.example.com`). A
    /// backend's own address in a `Location` (and the like) is rewritten to it; without it, to
    /// the request's `Host` over `http`.
    pub public_url: Option<url::Url>,
}

/// `[admin]`: the listener for status, metrics, events and topology changes.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// `[admin] listen`, default `127.0.0.1:8081`. Not loopback only with a `token_file` or a
    /// `token_env`.
    pub listen: SocketAddr,
    /// `[admin] token_file`, optional: a file holding the bearer token admin requests must
    /// carry. One of `token_file` and `token_env` is required when `listen` is not a loopback
    /// address; never both.
    pub token_file: Option<PathBuf>,
    /// `[admin] token_env`, optional: the name of an environment variable holding the bearer
    /// token, as an alternative to `token_file`. Only the name is checked here; the variable is
    /// read at startup.
    pub token_env: Option<String>,
}

/// `[journal] fsync`: when the journal is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// Before a logical request is forwarded: every accepted request survives a power loss.
    Always,
    /// In groups, by a background flusher: a crash may lose the last few milliseconds (default).
    Batch,
    /// Never explicitly: the operating system decides.
    Never,
}

/// `[journal]`: the gateway's record of logical requests.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalConfig {
    /// `[journal] dir`, default `./lockstep-data`.
    pub dir: PathBuf,
    /// `[journal] fsync`, default `batch`.
    pub fsync: FsyncMode,
    /// `[journal] segment_size` in bytes, default 64 MiB, at least 4 KiB: a segment file is
    /// closed and a new one started past this size; compaction deletes whole segments.
    pub segment_size: u64,
}

/// `[replication] ack`: who must have processed a logical request before the client gets the
/// primary's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckPolicy {
    /// Every in-sync backup must acknowledge (default).
    All,
    /// A majority of the members (primary included) must have processed the request.
    Majority,
    /// Commit once the primary answered; backups follow asynchronously, still in order.
    None,
}

/// `[replication] dispatch`: when backups receive a logical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchMode {
    /// Backups receive a request after the primary answered it (default).
    Sequential,
    /// Every backend receives a request at once; each still sees lane order.
    Parallel,
}

/// `[replication] on_divergence`: what happens when a backup's response differs from the
/// primary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDivergence {
    /// Mark the backup `diverged` and take it out of the in-sync set (default).
    Eject,
    /// Log the difference and keep the backup in-sync.
    Log,
}

/// `[replication]`: how logical requests reach the backups.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationConfig {
    /// `[replication] ack`, default `all`.
    pub ack: AckPolicy,
    /// `[replication] dispatch`, default `sequential`.
    pub dispatch: DispatchMode,
    /// `[replication] backup_timeout`, default 5s: a backup slower than this is ejected (`lagging`).
    pub backup_timeout: Duration,
    /// `[replication] primary_timeout`, default 30s: how long the primary may take to answer.
    pub primary_timeout: Duration,
    /// `[replication] connect_timeout`, default 1s, for every backend.
    pub connect_timeout: Duration,
    /// `[replication] on_divergence`, default `eject`.
    pub on_divergence: OnDivergence,
    /// `[replication] refusals`, default `[408, 429, 503]`: statuses that say a request was not
    /// processed. The primary's refusal is not replicated; a backup's is retried. Each is 4xx
    /// or 5xx; a route's `refusals` overrides the list.
    pub refusals: Vec<u16>,
}

/// `[idempotency] in_flight`: what a retry gets while the original is still being processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightPolicy {
    /// A retry of an in-flight key waits for the original and replays its response (default).
    Wait,
    /// A retry of an in-flight key gets 409.
    Reject,
}

/// `[idempotency]`: how retried logical requests are recognised and answered once.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyConfig {
    /// `[idempotency] header`, default `Idempotency-Key`; a valid HTTP header name.
    pub header: String,
    /// `[idempotency] scope_headers`, lowercased, default `["authorization", "cookie"]`.
    pub scope_headers: Vec<String>,
    /// `[idempotency] ttl`, default 24h.
    pub ttl: Duration,
    /// `[idempotency] in_flight`, default `wait`.
    pub in_flight: InFlightPolicy,
}

/// `[health]`: active health checks, sent to every backend.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// `[health] path`, default `/health`; starts with `/`.
    pub path: String,
    /// `[health] interval`, default 250ms: time between two checks of one backend.
    pub interval: Duration,
    /// `[health] timeout`, default 200ms: a check slower than this failed.
    pub timeout: Duration,
    /// `[health] unhealthy_after`, default 2, at least 1: consecutive failed checks before a
    /// backend is marked unhealthy.
    pub unhealthy_after: u32,
    /// `[health] healthy_after`, default 2, at least 1: consecutive passed checks before an
    /// unhealthy backend is marked healthy again.
    pub healthy_after: u32,
    /// `[health] identity_header`, optional, lowercased: a header of the health check's answer
    /// that names the backend's instance (a boot id). A backend whose identity changes has
    /// restarted: it is `suspect` at once, and must be proven before it is in-sync again.
    pub identity_header: Option<String>,
    /// `[health] auto_rejoin`, default false: a backend that comes back and cannot be
    /// re-admitted by a view check alone (it missed requests) is rejoined automatically, from
    /// where it stopped, with the view check at the end. Requires `[[verify.probes]]`.
    pub auto_rejoin: bool,
}

/// `[[backends]] role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Answers clients; exactly one backend has this role.
    Primary,
    /// Receives every logical request after (or with) the primary; its responses are compared.
    Backup,
}

/// One `[[backends]]` entry: a copy of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Unique; letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// `http://host:port` with an optional path prefix; only `http` is accepted.
    pub url: url::Url,
    /// `primary` or `backup`.
    pub role: Role,
    /// Free label, default `"default"`.
    pub implementation: String,
    /// `reset`, optional: what empties this backend before a full replay of the journal.
    pub reset: Option<ResetHook>,
}

/// An action the gateway runs against a backend: `{ command = "..." }` or
/// `{ request = "POST /admin/reset" }`. Used by `[[backends]] reset` and by `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// `command`: a non-empty shell command line, run by `sh -c` as written.
    Command(String),
    /// `request`: an HTTP request sent to the backend, with an empty body.
    Request {
        /// An upper-cased method token (`POST`, `DELETE`, ...).
        method: String,
        /// Path and optional query, starting with `/`, appended to the backend's URL.
        path: String,
    },
}

/// `[[backends]] reset`: the hook that empties a backend before a full replay.
pub type ResetHook = Hook;

/// `[[routes]] kind`: whether a request changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Changes the service's state: sequenced, journaled, replicated.
    Logical,
    /// Served by the primary alone.
    Read,
}

/// `[[routes]] idempotency`: whether logical requests on a route must carry a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyRule {
    /// A logical request without a key is rejected with 400.
    Required,
    /// A key is honoured when present (default).
    Optional,
    /// The key header is forwarded but not interpreted.
    Off,
}

/// Which methods a route matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodSet {
    /// `*`
    Any,
    /// `GET|HEAD`: upper-cased method tokens, compared exactly.
    Only(Vec<String>),
}

/// One segment of a route's path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches this exact segment.
    Literal(String),
    /// `{name}`: matches any one non-empty segment and binds it.
    Param(String),
    /// `**`, only last: matches zero or more remaining segments.
    Tail,
}

/// A path pattern such as `/accounts/{id}/**`. `*` alone (as in `PROPFIND *`) is `Segment::Tail`
/// alone: every path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The pattern as written.
    pub source: String,
    /// The segments after the leading `/`; empty for the root `/`.
    pub segments: Vec<Segment>,
}

/// One piece of a lane template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LanePart {
    /// Text copied as is.
    Literal(String),
    /// `{name}`: a path parameter bound by the route's pattern.
    Param(String),
}

/// How a route picks its lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneTemplate {
    /// `"acct-{id}"`: literal text and path parameters.
    Template(Vec<LanePart>),
    /// `"header:X-Tenant"`: the value of a request header (lowercased name). A missing header
    /// means the global lane.
    Header(String),
}

/// A kind of value that differs between copies that agree (`compare.noise`): two values at the
/// same place that are both of one such kind compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoiseKind {
    /// RFC 3339 and HTTP dates, and epoch seconds or milliseconds within a day of the request.
    Timestamp,
    /// RFC 9562 UUIDs (`8-4-4-4-12` hex digits).
    Uuid,
    /// Random-looking tokens: 16 or more letters, digits, `-` and `_` mixing letters and digits.
    Token,
    /// A backend's own address (`http://host:port`, `host:port`), any backend's.
    OwnAddress,
}

impl NoiseKind {
    pub const ALL: [NoiseKind; 4] = [
        NoiseKind::Timestamp,
        NoiseKind::Uuid,
        NoiseKind::Token,
        NoiseKind::OwnAddress,
    ];

    /// The name written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NoiseKind::Timestamp => "timestamp",
            NoiseKind::Uuid => "uuid",
            NoiseKind::Token => "token",
            NoiseKind::OwnAddress => "own-address",
        }
    }

    pub fn parse(name: &str) -> Option<NoiseKind> {
        NoiseKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// How a backup's response is compared with the primary's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompareRule {
    /// Only the status codes are compared.
    pub status_only: bool,
    /// Lowercased header names compared on top of the default ones (those that carry meaning
    /// for a client: `content-type`, `location`, `allow`, ...), such as `etag`.
    pub headers: Vec<String>,
    /// Lowercased header names left out of the comparison, also default ones.
    pub ignore_headers: Vec<String>,
    /// RFC 6901 JSON pointers removed from JSON bodies before comparing.
    pub ignore_json: Vec<String>,
    /// Kinds of values that are noise wherever they appear (JSON values and compared headers).
    pub noise: Vec<NoiseKind>,
    /// The `match` of the route this rule belongs to, for messages and the noise finder; `None`
    /// for the default rule and probes.
    pub route: Option<String>,
    /// Statuses that mean "not processed" (a refusal: `429`, `503`, ...): the primary's is not
    /// replicated, a backup's is retried rather than compared. Empty: every answer is compared.
    pub refusals: Vec<u16>,
    /// Where the route's answers carry values the service minted (`mint = [...]` on the route):
    /// each copy's value there is learned as its local form of the client's (canonical) value.
    pub mint: Vec<MintPlace>,
    /// How canonical values are translated in requests to a copy and back in its answers.
    pub translate: TranslateRule,
}

/// One `mint` entry: a place in a response where the service puts a value it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintPlace {
    /// A JSON pointer into the body, as reference tokens (unescaped); a token `*` matches every
    /// member of an object or element of an array at its level.
    Json(Vec<String>),
    /// A response header, lowercased (`header:ETag`).
    Header(String),
}

impl MintPlace {
    /// The place as written in the configuration (`/items/*/id`, `header:etag`).
    pub fn as_config(&self) -> String {
        match self {
            MintPlace::Json(tokens) => tokens
                .iter()
                .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
                .collect(),
            MintPlace::Header(name) => format!("header:{name}"),
        }
    }
}

/// Where a copy's requests carry canonical values to translate (`translate = { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateRule {
    /// Lowercased request header names whose values are translated, token by token: by default
    /// [`TRANSLATED_HEADERS`], plus those the route names.
    pub headers: Vec<String>,
    /// JSON numbers in bodies are translated too (services whose minted ids are numbers); off by
    /// default, since amounts and counts are numbers as well.
    pub numbers: bool,
}

/// The request headers translated on every route: the validators a client sends back and
/// WebDAV's `Destination`.
pub const TRANSLATED_HEADERS: &[&str] = &["if-match", "if-none-match", "if-range", "destination"];

impl Default for TranslateRule {
    fn default() -> Self {
        TranslateRule {
            headers: TRANSLATED_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
            numbers: false,
        }
    }
}

/// One `[[routes]]` entry: what the config says about the requests it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRule {
    /// The `match` string as written, for messages.
    pub source: String,
    /// The methods part of `match`.
    pub methods: MethodSet,
    /// The path part of `match`.
    pub pattern: PathPattern,
    /// None: the method default decides.
    pub kind: Option<RequestKind>,
    /// None: the global lane.
    pub lane: Option<LaneTemplate>,
    /// None: `IdempotencyRule::Optional`.
    pub idempotency: Option<IdempotencyRule>,
    /// None: the default comparison (status, body, headers minus the built-in ignores).
    pub compare: Option<CompareRule>,
    /// None: `[transactions] ack`.
    pub transaction_ack: Option<TransactionAck>,
    /// None: `[replication] refusals`. Also copied into `compare` (see [`CompareRule::refusals`]).
    pub refusals: Option<Vec<u16>>,
}

/// A view probe: a read request whose normalized responses must be equal on two backends.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewProbe {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and optional query, starting with `/`.
    pub path: String,
    /// How the two responses are compared.
    pub compare: CompareRule,
}

/// `[verify]`: checks that backups hold the same logical state as the primary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifyConfig {
    /// `[[verify.probes]]`, in config order.
    pub probes: Vec<ViewProbe>,
}

/// `[catchup]`: how a backup that joins, or rejoins, is brought in sync by replaying the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchupConfig {
    /// `[catchup] fence_lag`, default 64, at least 1: when the replay is this many entries from
    /// the journal's tail, admission pauses briefly so the replay can finish.
    pub fence_lag: u64,
    /// `[catchup] concurrency`, default 4, 1 to 256: lanes replayed at once.
    pub concurrency: usize,
    /// `[catchup] batch`, default 256, 1 to 10000: journal entries read at a time.
    pub batch: usize,
}

/// `[events]`: where topology events (ejections, promotions, catch-up progress) are pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// `[events] webhook`, optional: an `http` URL that receives every topology event as a JSON
    /// `POST`.
    pub webhook: Option<url::Url>,
    /// `[events] webhook_timeout`, default 2s: how long one delivery may take.
    pub webhook_timeout: Duration,
    /// `[events] webhook_retries`, default 5, 0 to 100: further attempts after a failed delivery.
    pub webhook_retries: u32,
}

/// `[log] format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: the gateway's own log output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `[log] format`, default `text`.
    pub format: LogFormat,
    /// `[log] level`, default `info`: a `tracing` env-filter directive (`"info"`,
    /// `"warn,lockstep_gateway=debug"`), checked here only to be non-empty.
    pub level: String,
}

/// `[checkpoint]`: how a backend's state is exported from an in-sync backend and imported into a
/// joining one, so that only the journal after the checkpoint is replayed. Both or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// `[checkpoint] export`: writes a checkpoint of a backend.
    pub export: Option<Hook>,
    /// `[checkpoint] import`: loads a checkpoint into a backend.
    pub import: Option<Hook>,
    /// `[checkpoint] every`, default 0 (only on demand): take a checkpoint after this many
    /// journal entries.
    pub every: u64,
    /// `[checkpoint] keep`, default 2, 1 to 100: checkpoints kept; older ones are deleted.
    pub keep: usize,
    /// `[checkpoint] timeout`, default 60s: how long one export or import may take.
    pub timeout: Duration,
    /// `[checkpoint] compact`, default true: after a checkpoint, drop the journal's history
    /// before the oldest kept checkpoint (segments whose idempotency keys have all expired).
    pub compact: bool,
}
