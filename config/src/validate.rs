//! Raw → typed: every check a configuration must pass before the rest of lockstep sees it.
//!
//! Validation stops at the first error, in file order, so the message points at one line the
//! user can fix. Nothing here touches the file system or the network: paths are checked for
//! shape, not existence, and host names in URLs are not resolved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use http::HeaderName;

use crate::error::ConfigError;
use crate::raw::{
    RawAck, RawAdmin, RawBackend, RawCatchup, RawCheckpoint, RawCompare, RawConfig, RawDispatch,
    RawEvents, RawFsync, RawGateway, RawHealth, RawHook, RawIdempotency, RawIdempotencyRule,
    RawInFlight, RawJournal, RawKind, RawLog, RawLogFormat, RawOnDivergence, RawProbe,
    RawReplication, RawRole, RawRoute, RawTransactionAck, RawTransactions, RawVerify,
};
use crate::route::{check_method, parse_lane, parse_match};
use crate::types::{
    AckPolicy, AdminConfig, BackendConfig, CatchupConfig, CheckpointConfig, CompareRule, Config,
    DispatchMode, EventsConfig, FsyncMode, GatewayConfig, HealthConfig, Hook, IdempotencyConfig,
    IdempotencyRule, InFlightPolicy, JournalConfig, LogConfig, LogFormat, MintPlace, NoiseKind,
    OnDivergence, ReplicationConfig, RequestKind, Role, RouteRule, TransactionAck,
    TransactionsConfig, TranslateRule, VerifyConfig, ViewProbe,
};
use crate::units::{parse_duration, parse_nonzero_duration, parse_size};

#[cfg(test)]
mod tests;

/// Checks a whole raw configuration and builds the typed one.
pub(crate) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let replication = replication(&raw.replication)?;
    let health = health(&raw.health)?;
    let verify = verify(&raw.verify)?;
    if health.auto_rejoin && verify.probes.is_empty() {
        // A rejoin is proven by its view check; without probes nothing would be checked.
        return Err(ConfigError::AutoRejoinWithoutProbes);
    }
    Ok(Config {
        gateway: gateway(&raw.gateway)?,
        admin: admin(&raw.admin)?,
        journal: journal(&raw.journal)?,
        idempotency: idempotency(&raw.idempotency)?,
        backends: backends(&raw.backends)?,
        routes: raw
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| route(&format!("routes[{i}]"), r, &replication.refusals))
            .collect::<Result<_, _>>()?,
        replication,
        health,
        verify,
        catchup: catchup(&raw.catchup)?,
        events: events(&raw.events)?,
        log: log(&raw.log)?,
        checkpoint: checkpoint(&raw.checkpoint)?,
        transactions: transactions(&raw.transactions)?,
        noise: noise(&raw.noise)?,
    })
}

pub(crate) fn gateway(raw: &RawGateway) -> Result<GatewayConfig, ConfigError> {
    let max_body = parse_size("gateway.max_body", &raw.max_body)?;
    if max_body == 0 {
        return Err(ConfigError::ZeroSize {
            key: "gateway.max_body".to_owned(),
        });
    }
    let listen = listen("gateway.listen", &raw.listen)?;
    let threads = at_least_one("gateway.threads", raw.threads, "threads")?;
    let lockstep_prefix = lockstep_prefix("gateway.lockstep_prefix", &raw.lockstep_prefix)?;
    let max_in_flight = in_range(
        "gateway.max_in_flight",
        raw.max_in_flight,
        1,
        u64::try_from(usize::MAX).unwrap_or(u64::MAX),
        "logical requests admitted at once",
    )?;
    let max_header_size = parse_size("gateway.max_header_size", &raw.max_header_size)?;
    if max_header_size == 0 {
        return Err(ConfigError::ZeroSize {
            key: "gateway.max_header_size".to_owned(),
        });
    }
    Ok(GatewayConfig {
        listen,
        threads,
        max_body,
        lockstep_prefix,
        max_in_flight: usize::try_from(max_in_flight).expect("bounded by usize::MAX above"),
        max_header_size,
        // Zero is meaningful here: stop at once, dropping whatever is in flight.
        grace_period: parse_duration("gateway.grace_period", &raw.grace_period)?,
        request_timeout: parse_nonzero_duration("gateway.request_timeout", &raw.request_timeout)?,
        public_url: match &raw.public_url {
            Some(value) => Some(public_url("gateway.public_url", value)?),
            None => None,
        },
    })
}

/// `[gateway] public_url`: an `http` or `https` origin, without path, query or credentials.
fn public_url(key: &str, value: &str) -> Result<url::Url, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidPublicUrl {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let url = url::Url::parse(value).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme is {:?}; write http:// or https://",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(invalid("it has no host".to_owned()));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "it must be an origin only (no path, query or fragment)".to_owned(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it carries credentials".to_owned()));
    }
    Ok(url)
}

pub(crate) fn admin(raw: &RawAdmin) -> Result<AdminConfig, ConfigError> {
    let listen = listen("admin.listen", &raw.listen)?;
    let token_file = match &raw.token_file {
        Some(path) => Some(file_path("admin.token_file", path)?),
        None => None,
    };
    let token_env = match &raw.token_env {
        Some(name) => Some(env_var_name("admin.token_env", name)?),
        None => None,
    };
    if let (Some(env), Some(file)) = (&raw.token_env, &raw.token_file) {
        return Err(ConfigError::ConflictingAdminTokens {
            env: env.clone(),
            file: file.clone(),
        });
    }
    // The admin API can eject and promote backends: off loopback, it must not be open.
    if token_file.is_none() && token_env.is_none() && !listen.ip().is_loopback() {
        return Err(ConfigError::AdminTokenRequired { listen });
    }
    Ok(AdminConfig {
        listen,
        token_file,
        token_env,
    })
}

pub(crate) fn journal(raw: &RawJournal) -> Result<JournalConfig, ConfigError> {
    let segment_size = parse_size("journal.segment_size", &raw.segment_size)?;
    if segment_size < 4096 {
        return Err(ConfigError::InvalidNumber {
            key: "journal.segment_size".to_owned(),
            value: segment_size.to_string(),
            reason: "a segment must hold at least 4KiB; write something like \"64MiB\"".to_owned(),
        });
    }
    Ok(JournalConfig {
        segment_size,
        dir: file_path("journal.dir", &raw.dir)?,
        fsync: match raw.fsync {
            RawFsync::Always => FsyncMode::Always,
            RawFsync::Batch => FsyncMode::Batch,
            RawFsync::Never => FsyncMode::Never,
        },
    })
}

pub(crate) fn replication(raw: &RawReplication) -> Result<ReplicationConfig, ConfigError> {
    Ok(ReplicationConfig {
        ack: match raw.ack {
            RawAck::All => AckPolicy::All,
            RawAck::Majority => AckPolicy::Majority,
            RawAck::None => AckPolicy::None,
        },
        dispatch: match raw.dispatch {
            RawDispatch::Sequential => DispatchMode::Sequential,
            RawDispatch::Parallel => DispatchMode::Parallel,
        },
        backup_timeout: parse_nonzero_duration("replication.backup_timeout", &raw.backup_timeout)?,
        primary_timeout: parse_nonzero_duration(
            "replication.primary_timeout",
            &raw.primary_timeout,
        )?,
        connect_timeout: parse_nonzero_duration(
            "replication.connect_timeout",
            &raw.connect_timeout,
        )?,
        on_divergence: match raw.on_divergence {
            RawOnDivergence::Eject => OnDivergence::Eject,
            RawOnDivergence::Log => OnDivergence::Log,
        },
        refusals: refusals("replication.refusals", &raw.refusals)?,
    })
}

/// A list of refusal statuses: each a 4xx or 5xx code, none twice.
fn refusals(key: &str, values: &[u64]) -> Result<Vec<u16>, ConfigError> {
    let mut out: Vec<u16> = Vec::with_capacity(values.len());
    for (i, &value) in values.iter().enumerate() {
        let invalid = |reason: &str| ConfigError::InvalidNumber {
            key: format!("{key}[{i}]"),
            value: value.to_string(),
            reason: reason.to_owned(),
        };
        let status = u16::try_from(value)
            .ok()
            .filter(|s| (400..600).contains(s))
            .ok_or_else(|| {
                invalid(
                    "is not a refusal status; a refusal is a 4xx or 5xx code that means the \
                     request was not processed, like 429 or 503",
                )
            })?;
        if out.contains(&status) {
            return Err(invalid("is listed twice; list each status once"));
        }
        out.push(status);
    }
    Ok(out)
}

pub(crate) fn idempotency(raw: &RawIdempotency) -> Result<IdempotencyConfig, ConfigError> {
    // Keep the header as written: it is echoed in messages, and matching ignores case anyway.
    header_name("idempotency.header", &raw.header)?;
    Ok(IdempotencyConfig {
        header: raw.header.clone(),
        scope_headers: header_names("idempotency.scope_headers", &raw.scope_headers)?,
        ttl: parse_nonzero_duration("idempotency.ttl", &raw.ttl)?,
        in_flight: match raw.in_flight {
            RawInFlight::Wait => InFlightPolicy::Wait,
            RawInFlight::Reject => InFlightPolicy::Reject,
        },
    })
}

pub(crate) fn health(raw: &RawHealth) -> Result<HealthConfig, ConfigError> {
    Ok(HealthConfig {
        path: url_path("health.path", &raw.path)?,
        interval: parse_nonzero_duration("health.interval", &raw.interval)?,
        timeout: parse_nonzero_duration("health.timeout", &raw.timeout)?,
        unhealthy_after: threshold("health.unhealthy_after", raw.unhealthy_after)?,
        healthy_after: threshold("health.healthy_after", raw.healthy_after)?,
        identity_header: match &raw.identity_header {
            Some(name) => Some(
                header_name("health.identity_header", name)?
                    .as_str()
                    .to_owned(),
            ),
            None => None,
        },
        auto_rejoin: raw.auto_rejoin,
    })
}

fn backends(raw: &[RawBackend]) -> Result<Vec<BackendConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::NoBackends);
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut urls: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, backend) in raw.iter().enumerate() {
        let key = |field: &str| format!("backends[{i}].{field}");
        if !is_backend_name(&backend.name) {
            return Err(ConfigError::InvalidBackendName {
                key: key("name"),
                value: backend.name.clone(),
            });
        }
        if let Some(&first) = names.get(backend.name.as_str()) {
            return Err(ConfigError::DuplicateBackendName {
                key: key("name"),
                name: backend.name.clone(),
                first,
            });
        }
        names.insert(&backend.name, i);
        let url = backend_url(&key("url"), &backend.url)?;
        if let Some(&first) = urls.get(url.as_str()) {
            return Err(ConfigError::DuplicateBackendUrl {
                key: key("url"),
                url: backend.url.clone(),
                first,
            });
        }
        urls.insert(url.as_str().to_owned(), i);
        out.push(BackendConfig {
            name: backend.name.clone(),
            url,
            role: match backend.role {
                RawRole::Primary => Role::Primary,
                RawRole::Backup => Role::Backup,
            },
            implementation: backend.implementation.clone(),
            reset: match &backend.reset {
                Some(reset) => Some(hook(&key("reset"), reset)?),
                None => None,
            },
        });
    }
    let names_with = |role: Role| -> Vec<String> {
        out.iter()
            .filter(|b| b.role == role)
            .map(|b| b.name.clone())
            .collect()
    };
    let primaries = names_with(Role::Primary);
    match primaries.len() {
        0 => Err(ConfigError::NoPrimary {
            backups: names_with(Role::Backup),
        }),
        1 => Ok(out),
        _ => Err(ConfigError::MultiplePrimaries { names: primaries }),
    }
}

fn is_backend_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn backend_url(key: &str, value: &str) -> Result<url::Url, ConfigError> {
    parse_backend_url(value).map_err(|reason| ConfigError::InvalidUrl {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    })
}

/// Checks a backend URL (`http://host:port` with an optional path prefix); `Err` says why it is
/// refused. The rule for `[[backends]] url` and for backends added at run time.
pub fn parse_backend_url(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| e.to_string())?;
    if url.scheme() != "http" {
        return Err(format!(
            "the scheme is {:?}, and only \"http\" is supported",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err("it has no host".to_owned());
    }
    if url.port_or_known_default().is_none() {
        return Err("it has no port".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it carries credentials, which are not supported".to_owned());
    }
    if url.query().is_some() {
        return Err("it has a query string, which a backend URL cannot carry".to_owned());
    }
    if url.fragment().is_some() {
        return Err("it has a fragment ('#...'), which a backend URL cannot carry".to_owned());
    }
    Ok(url)
}

fn route(key: &str, raw: &RawRoute, default_refusals: &[u16]) -> Result<RouteRule, ConfigError> {
    let (methods, pattern) = parse_match(&format!("{key}.match"), &raw.matches)?;
    let lane = match &raw.lane {
        Some(lane) => Some(parse_lane(&format!("{key}.lane"), lane, &pattern)?),
        None => None,
    };
    let own_refusals = match &raw.refusals {
        Some(list) => Some(refusals(&format!("{key}.refusals"), list)?),
        None => None,
    };
    let mint = match &raw.mint {
        Some(places) => mint_places(&format!("{key}.mint"), places)?,
        None => Vec::new(),
    };
    let translate = match &raw.translate {
        Some(t) => {
            let mut rule = TranslateRule::default();
            for name in header_names(&format!("{key}.translate.headers"), &t.headers)? {
                if !rule.headers.contains(&name) {
                    rule.headers.push(name);
                }
            }
            rule.numbers = t.numbers;
            rule
        }
        None => TranslateRule::default(),
    };
    let own_rule = own_refusals.is_some() || raw.mint.is_some() || raw.translate.is_some();
    let compare = match (&raw.compare, own_rule) {
        (Some(compare), _) => Some(compare_rule(&format!("{key}.compare"), compare)?),
        (None, true) => Some(CompareRule::default()),
        (None, false) => None,
    }
    .map(|rule| CompareRule {
        refusals: own_refusals
            .clone()
            .unwrap_or_else(|| default_refusals.to_vec()),
        route: Some(raw.matches.clone()),
        mint,
        translate,
        ..rule
    });
    Ok(RouteRule {
        source: raw.matches.clone(),
        methods,
        pattern,
        kind: raw.kind.map(|kind| match kind {
            RawKind::Logical => RequestKind::Logical,
            RawKind::Read => RequestKind::Read,
        }),
        lane,
        idempotency: raw.idempotency.map(|rule| match rule {
            RawIdempotencyRule::Required => IdempotencyRule::Required,
            RawIdempotencyRule::Optional => IdempotencyRule::Optional,
            RawIdempotencyRule::Off => IdempotencyRule::Off,
        }),
        compare,
        transaction_ack: raw.transaction_ack.map(transaction_ack),
        refusals: own_refusals,
    })
}

fn transaction_ack(raw: RawTransactionAck) -> TransactionAck {
    match raw {
        RawTransactionAck::PerRequest => TransactionAck::PerRequest,
        RawTransactionAck::PerTransaction => TransactionAck::PerTransaction,
    }
}

pub(crate) fn transactions(raw: &RawTransactions) -> Result<TransactionsConfig, ConfigError> {
    let timeout = parse_nonzero_duration("transactions.timeout", &raw.timeout)?;
    Ok(TransactionsConfig {
        ack: transaction_ack(raw.ack),
        timeout,
    })
}

fn compare_rule(key: &str, raw: &RawCompare) -> Result<CompareRule, ConfigError> {
    Ok(CompareRule {
        status_only: raw.status_only,
        headers: header_names(&format!("{key}.headers"), &raw.headers)?,
        ignore_headers: header_names(&format!("{key}.ignore_headers"), &raw.ignore_headers)?,
        ignore_json: json_pointers(&format!("{key}.ignore_json"), &raw.ignore_json)?,
        noise: noise_kinds(&format!("{key}.noise"), &raw.noise)?,
        refusals: Vec::new(),
        route: None,
        mint: Vec::new(),
        translate: TranslateRule::default(),
    })
}

fn noise(raw: &crate::raw::RawNoise) -> Result<crate::types::NoiseConfig, ConfigError> {
    let learn = match (raw.learn_answers, &raw.learn_for) {
        (Some(_), Some(_)) => return Err(ConfigError::ConflictingNoiseLearning),
        (Some(0), None) => {
            return Err(ConfigError::InvalidNumber {
                key: "noise.learn_answers".to_owned(),
                value: "0".to_owned(),
                reason: "must be at least 1 (leave it out to not learn at start)".to_owned(),
            });
        }
        (Some(n), None) => Some(crate::types::NoiseLearning::Answers(n)),
        (None, Some(d)) => Some(crate::types::NoiseLearning::Duration(
            parse_nonzero_duration("noise.learn_for", d)?,
        )),
        (None, None) => None,
    };
    Ok(crate::types::NoiseConfig { learn })
}

fn noise_kinds(key: &str, values: &[String]) -> Result<Vec<NoiseKind>, ConfigError> {
    let mut kinds = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let kind = NoiseKind::parse(value).ok_or_else(|| ConfigError::UnknownNoiseKind {
            key: format!("{key}[{i}]"),
            value: value.clone(),
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

fn verify(raw: &RawVerify) -> Result<VerifyConfig, ConfigError> {
    let probes = raw
        .probes
        .iter()
        .enumerate()
        .map(|(i, probe)| view_probe(&format!("verify.probes[{i}]"), probe))
        .collect::<Result<_, _>>()?;
    Ok(VerifyConfig { probes })
}

fn view_probe(key: &str, raw: &RawProbe) -> Result<ViewProbe, ConfigError> {
    let (method, path) =
        request_line(&raw.request, "a probe").map_err(|reason| ConfigError::InvalidProbe {
            key: format!("{key}.request"),
            value: raw.request.clone(),
            reason,
        })?;
    let compare = CompareRule {
        status_only: raw.status_only,
        headers: header_names(&format!("{key}.headers"), &raw.headers)?,
        ignore_headers: header_names(&format!("{key}.ignore_headers"), &raw.ignore_headers)?,
        ignore_json: json_pointers(&format!("{key}.ignore_json"), &raw.ignore_json)?,
        noise: noise_kinds(&format!("{key}.noise"), &raw.noise)?,
        refusals: Vec::new(),
        route: None,
        mint: Vec::new(),
        translate: TranslateRule::default(),
    };
    Ok(ViewProbe {
        method,
        path,
        compare,
    })
}

/// Parses `"METHOD /path?query"`, the one request a probe or a hook sends, into an upper-cased
/// method and the path. `who` names the sender in the reason (`"a probe"`).
fn request_line(value: &str, who: &str) -> Result<(String, String), String> {
    let mut words = value.split_whitespace();
    let (Some(method), Some(path), None) = (words.next(), words.next(), words.next()) else {
        return Err("it must be one method, a space and a path".to_owned());
    };
    if method == "*" || method.contains('|') {
        return Err(format!(
            "{who} sends one request, so it names exactly one method"
        ));
    }
    check_method(method)?;
    if !path.starts_with('/') {
        return Err(format!("the path {path:?} must start with '/'"));
    }
    if path.contains('#') || path.chars().any(char::is_control) {
        return Err(format!(
            "the path {path:?} contains a fragment or a control character"
        ));
    }
    Ok((method.to_ascii_uppercase(), path.to_owned()))
}

/// A hook table: exactly one of `command` (non-empty) and `request` (`"METHOD /path"`).
fn hook(key: &str, raw: &RawHook) -> Result<Hook, ConfigError> {
    match (&raw.command, &raw.request) {
        (None, None) => Err(ConfigError::HookWithoutAction {
            key: key.to_owned(),
        }),
        (Some(_), Some(_)) => Err(ConfigError::HookWithTwoActions {
            key: key.to_owned(),
        }),
        (Some(command), None) => {
            if command.trim().is_empty() {
                return Err(ConfigError::EmptyValue {
                    key: format!("{key}.command"),
                    example: "\"curl -fsS -X POST http://127.0.0.1:9002/admin/reset\"".to_owned(),
                });
            }
            Ok(Hook::Command(command.clone()))
        }
        (None, Some(request)) => {
            let (method, path) = request_line(request, "a hook").map_err(|reason| {
                ConfigError::InvalidHookRequest {
                    key: format!("{key}.request"),
                    value: request.clone(),
                    reason,
                }
            })?;
            Ok(Hook::Request { method, path })
        }
    }
}

pub(crate) fn catchup(raw: &RawCatchup) -> Result<CatchupConfig, ConfigError> {
    let fence_lag = in_range(
        "catchup.fence_lag",
        raw.fence_lag,
        1,
        u64::MAX,
        "journal entries",
    )?;
    let concurrency = in_range(
        "catchup.concurrency",
        raw.concurrency,
        1,
        256,
        "lanes replayed at once",
    )?;
    let batch = in_range(
        "catchup.batch",
        raw.batch,
        1,
        10_000,
        "journal entries read at a time",
    )?;
    Ok(CatchupConfig {
        fence_lag,
        concurrency: usize::try_from(concurrency).expect("at most 256"),
        batch: usize::try_from(batch).expect("at most 10000"),
    })
}

pub(crate) fn events(raw: &RawEvents) -> Result<EventsConfig, ConfigError> {
    let webhook = match &raw.webhook {
        Some(url) => Some(webhook_url("events.webhook", url)?),
        None => None,
    };
    let retries = in_range(
        "events.webhook_retries",
        raw.webhook_retries,
        0,
        100,
        "retries of one event",
    )?;
    Ok(EventsConfig {
        webhook,
        webhook_timeout: parse_nonzero_duration("events.webhook_timeout", &raw.webhook_timeout)?,
        webhook_retries: u32::try_from(retries).expect("at most 100"),
    })
}

pub(crate) fn log(raw: &RawLog) -> Result<LogConfig, ConfigError> {
    // The directive grammar belongs to `tracing-subscriber`, which this crate does not depend
    // on; the binary reports a directive it cannot parse when it installs the subscriber.
    if raw.level.trim().is_empty() {
        return Err(ConfigError::EmptyValue {
            key: "log.level".to_owned(),
            example: "\"info\" or \"warn,lockstep_gateway=debug\"".to_owned(),
        });
    }
    Ok(LogConfig {
        format: match raw.format {
            RawLogFormat::Text => LogFormat::Text,
            RawLogFormat::Json => LogFormat::Json,
        },
        level: raw.level.trim().to_owned(),
    })
}

pub(crate) fn checkpoint(raw: &RawCheckpoint) -> Result<CheckpointConfig, ConfigError> {
    let export = match &raw.export {
        Some(export) => Some(hook("checkpoint.export", export)?),
        None => None,
    };
    let import = match &raw.import {
        Some(import) => Some(hook("checkpoint.import", import)?),
        None => None,
    };
    let missing = |key: &str, present: &str| ConfigError::MissingCheckpointHook {
        key: key.to_owned(),
        present: present.to_owned(),
    };
    match (&export, &import) {
        (Some(_), None) => return Err(missing("checkpoint.import", "checkpoint.export")),
        (None, Some(_)) => return Err(missing("checkpoint.export", "checkpoint.import")),
        _ => {}
    }
    let keep = in_range("checkpoint.keep", raw.keep, 1, 100, "checkpoints kept")?;
    Ok(CheckpointConfig {
        export,
        import,
        every: raw.every,
        keep: usize::try_from(keep).expect("at most 100"),
        timeout: parse_duration("checkpoint.timeout", &raw.timeout)?,
        compact: raw.compact,
    })
}

/// Where topology events are POSTed: `http` only (the gateway's client speaks no TLS), a host,
/// no fragment. A query string is kept, since webhook receivers often authenticate with one.
fn webhook_url(key: &str, value: &str) -> Result<url::Url, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidWebhookUrl {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(value).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() != "http" {
        return Err(invalid(&format!(
            "the scheme is {:?}, and only \"http\" is supported",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(invalid("it has no host"));
    }
    if url.fragment().is_some() {
        return Err(invalid(
            "it has a fragment ('#...'), which is never sent to the server",
        ));
    }
    Ok(url)
}

/// A portable environment variable name: letters, digits and `_`, not starting with a digit.
fn env_var_name(key: &str, value: &str) -> Result<String, ConfigError> {
    let valid = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ConfigError::InvalidEnvVarName {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(value.to_owned())
}

fn listen(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError::InvalidListen {
            key: key.to_owned(),
            value: value.to_owned(),
        })
}

fn at_least_one(key: &str, value: u64, what: &str) -> Result<usize, ConfigError> {
    match usize::try_from(value) {
        Ok(0) => Err(ConfigError::InvalidNumber {
            key: key.to_owned(),
            value: value.to_string(),
            reason: format!("is too small; at least 1 {what} is needed"),
        }),
        Ok(n) if n <= 4096 => Ok(n),
        _ => Err(ConfigError::InvalidNumber {
            key: key.to_owned(),
            value: value.to_string(),
            reason: format!("is too large; write at most 4096 {what}"),
        }),
    }
}

/// A count in `min..=max`; `what` says what is counted, for the message.
fn in_range(key: &str, value: u64, min: u64, max: u64, what: &str) -> Result<u64, ConfigError> {
    if value < min {
        return Err(ConfigError::InvalidNumber {
            key: key.to_owned(),
            value: value.to_string(),
            reason: format!("is too small; write at least {min} ({what})"),
        });
    }
    if value > max {
        return Err(ConfigError::InvalidNumber {
            key: key.to_owned(),
            value: value.to_string(),
            reason: format!("is too large; write at most {max} ({what})"),
        });
    }
    Ok(value)
}

fn threshold(key: &str, value: u64) -> Result<u32, ConfigError> {
    match u32::try_from(value) {
        Ok(0) => Err(ConfigError::InvalidNumber {
            key: key.to_owned(),
            value: value.to_string(),
            reason: "is too small; a state changes after at least 1 consecutive check".to_owned(),
        }),
        Ok(n) => Ok(n),
        Err(_) => Err(ConfigError::InvalidNumber {
            key: key.to_owned(),
            value: value.to_string(),
            reason: format!("is too large; write at most {}", u32::MAX),
        }),
    }
}

/// A file-system path: any non-empty string.
fn file_path(key: &str, value: &str) -> Result<PathBuf, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::InvalidPath {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: "it is empty; write a file-system path".to_owned(),
        });
    }
    Ok(PathBuf::from(value))
}

/// An HTTP path the gateway requests itself: starts with `/`, no fragment, no whitespace.
fn url_path(key: &str, value: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidPath {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if !value.starts_with('/') {
        return Err(invalid("it must start with '/', like \"/health\""));
    }
    if value.contains('#') || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "it contains whitespace, a control character or a fragment ('#'); write a plain \
             path like \"/health\"",
        ));
    }
    Ok(value.to_owned())
}

fn lockstep_prefix(key: &str, value: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidPrefix {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if !value.starts_with('/') {
        return Err(invalid("it must start with '/'"));
    }
    // The prefix is reserved for the gateway: `/` alone would hide the whole service.
    if value == "/" {
        return Err(invalid("'/' alone would hide every path of the service"));
    }
    if value.ends_with('/') {
        return Err(invalid("it must not end with '/'"));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| matches!(c, '?' | '#' | '{' | '}' | '*') || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(&format!(
            "it contains {c:?}; use plain path segments"
        )));
    }
    Ok(value.to_owned())
}

fn header_name(key: &str, value: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(value.as_bytes()).map_err(|_| ConfigError::InvalidHeaderName {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// Validates a list of header names and returns them lowercased.
fn header_names(key: &str, values: &[String]) -> Result<Vec<String>, ConfigError> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            header_name(&format!("{key}[{i}]"), value).map(|name| name.as_str().to_owned())
        })
        .collect()
}

/// `mint` entries: JSON pointers (a token `*` for every member) or `header:NAME`.
fn mint_places(key: &str, values: &[String]) -> Result<Vec<MintPlace>, ConfigError> {
    let mut places = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let place = if let Some(name) = value.strip_prefix("header:") {
            MintPlace::Header(header_name(&key, name)?.as_str().to_owned())
        } else if is_json_pointer(value) && !value.is_empty() {
            MintPlace::Json(
                value[1..]
                    .split('/')
                    .map(|t| t.replace("~1", "/").replace("~0", "~"))
                    .collect(),
            )
        } else {
            return Err(ConfigError::InvalidMintPlace {
                key,
                value: value.clone(),
            });
        };
        if !places.contains(&place) {
            places.push(place);
        }
    }
    Ok(places)
}

fn json_pointers(key: &str, values: &[String]) -> Result<Vec<String>, ConfigError> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            if is_json_pointer(value) {
                Ok(value.clone())
            } else {
                Err(ConfigError::InvalidJsonPointer {
                    key: format!("{key}[{i}]"),
                    value: value.clone(),
                })
            }
        })
        .collect()
}

/// RFC 6901: empty, or `/`-prefixed reference tokens where `~` is only followed by `0` or `1`.
fn is_json_pointer(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    if !value.starts_with('/') {
        return false;
    }
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}
