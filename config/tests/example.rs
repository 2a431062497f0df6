//! The sample configuration shipped at the root of the repository loads, and says what its
//! comments say.

use std::path::Path;
use std::time::Duration;

use lockstep_config::{
    AckPolicy, Config, DispatchMode, FsyncMode, Hook, IdempotencyRule, InFlightPolicy, LanePart,
    LaneTemplate, LogFormat, MethodSet, OnDivergence, RequestKind, ResetHook, Role, Segment,
};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lockstep.example.toml");

fn example() -> Config {
    Config::load(Path::new(EXAMPLE)).unwrap_or_else(|e| panic!("the sample config: {e}"))
}

#[test]
fn example_loads_with_expected_sections() {
    let config = example();
    assert_eq!(config.gateway.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.gateway.threads, 2);
    assert_eq!(config.gateway.max_body, 16 << 20);
    assert_eq!(config.gateway.lockstep_prefix, "/_lockstep");
    assert_eq!(config.gateway.max_in_flight, 1024);
    assert_eq!(config.gateway.max_header_size, 64 << 10);
    assert_eq!(config.gateway.grace_period, Duration::from_secs(5));
    assert_eq!(config.gateway.request_timeout, Duration::from_secs(60));
    assert_eq!(config.admin.listen, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(
        config.admin.token_file.as_deref(),
        Some(Path::new("/etc/lockstep/admin.token"))
    );
    // token_env excludes token_file, so the sample shows it commented out.
    assert_eq!(config.admin.token_env, None);
    assert_eq!(config.journal.fsync, FsyncMode::Batch);
    assert_eq!(config.journal.segment_size, 64 << 20);
    assert_eq!(config.replication.ack, AckPolicy::All);
    assert_eq!(config.replication.dispatch, DispatchMode::Sequential);
    assert_eq!(config.replication.backup_timeout, Duration::from_secs(5));
    assert_eq!(config.replication.on_divergence, OnDivergence::Eject);
    assert_eq!(config.idempotency.in_flight, InFlightPolicy::Wait);
    assert_eq!(config.health.interval, Duration::from_millis(250));
}

#[test]
fn example_has_a_primary_and_two_backups() {
    let config = example();
    assert_eq!(config.primary().name, "a");
    let backups: Vec<(&str, &str)> = config
        .backups()
        .map(|b| (b.name.as_str(), b.implementation.as_str()))
        .collect();
    assert_eq!(backups, [("b", "v1"), ("c", "v2")]);
    assert_eq!(config.backends[0].role, Role::Primary);
    assert_eq!(config.backends[2].url.port(), Some(9003));
}

#[test]
fn example_resets() {
    let config = example();
    assert_eq!(
        config.backends[1].reset,
        Some(Hook::Request {
            method: "POST".into(),
            path: "/admin/reset".into()
        })
    );
    assert!(matches!(
        config.backends[2].reset,
        Some(ResetHook::Command(ref command)) if command.starts_with("psql ")
    ));
    assert!(matches!(config.backends[0].reset, Some(Hook::Command(_))));
}

#[test]
fn example_catchup_events_log_checkpoint() {
    let config = example();
    assert_eq!(config.catchup.fence_lag, 64);
    assert_eq!(config.catchup.concurrency, 4);
    assert_eq!(config.catchup.batch, 256);

    assert_eq!(
        config.events.webhook.as_ref().map(|u| u.as_str()),
        Some("http://127.0.0.1:9100/lockstep-events")
    );
    assert_eq!(config.events.webhook_timeout, Duration::from_secs(2));
    assert_eq!(config.events.webhook_retries, 5);

    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");

    assert_eq!(
        config.checkpoint.export,
        Some(Hook::Request {
            method: "GET".into(),
            path: "/admin/export".into()
        })
    );
    assert_eq!(
        config.checkpoint.import,
        Some(Hook::Command(
            "/usr/local/bin/lockstep-import-checkpoint".into()
        ))
    );
    assert_eq!(config.checkpoint.every, 100_000);
    assert_eq!(config.checkpoint.keep, 2);
    assert_eq!(config.checkpoint.timeout, Duration::from_secs(60));
    assert!(config.checkpoint.compact);
}

#[test]
fn example_routes() {
    let config = example();
    let sources: Vec<&str> = config.routes.iter().map(|r| r.source.as_str()).collect();
    assert_eq!(
        sources,
        [
            "POST /search",
            "GET /counter/increment",
            "POST|PUT|DELETE /accounts/{id}/**",
            "PROPFIND *",
        ]
    );
    assert_eq!(config.routes[0].kind, Some(RequestKind::Read));
    assert_eq!(config.routes[1].kind, Some(RequestKind::Logical));

    let accounts = &config.routes[2];
    assert_eq!(
        accounts.methods,
        MethodSet::Only(vec!["POST".into(), "PUT".into(), "DELETE".into()])
    );
    assert_eq!(
        accounts.pattern.segments,
        [
            Segment::Literal("accounts".into()),
            Segment::Param("id".into()),
            Segment::Tail
        ]
    );
    assert_eq!(
        accounts.lane,
        Some(LaneTemplate::Template(vec![LanePart::Param("id".into())]))
    );
    assert_eq!(accounts.idempotency, Some(IdempotencyRule::Required));
    let compare = accounts.compare.as_ref().unwrap();
    assert!(!compare.status_only);
    assert_eq!(compare.ignore_headers, ["date", "etag"]);
    assert_eq!(compare.ignore_json, ["/updated_at"]);

    let propfind = &config.routes[3];
    assert_eq!(propfind.methods, MethodSet::Only(vec!["PROPFIND".into()]));
    assert_eq!(propfind.pattern.segments, [Segment::Tail]);
    assert_eq!(propfind.kind, Some(RequestKind::Read));
}

#[test]
fn example_probe() {
    let config = example();
    assert_eq!(config.verify.probes.len(), 1);
    let probe = &config.verify.probes[0];
    assert_eq!(
        (probe.method.as_str(), probe.path.as_str()),
        ("GET", "/accounts")
    );
    assert_eq!(probe.compare.ignore_json, ["/generated_at"]);
}

#[test]
fn example_sets_every_key() {
    // Every key the schema knows appears in the sample, so the sample documents all of them.
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    for key in [
        "listen",
        "threads",
        "max_body",
        "lockstep_prefix",
        "token_file",
        "dir",
        "fsync",
        "ack",
        "dispatch",
        "backup_timeout",
        "primary_timeout",
        "connect_timeout",
        "on_divergence",
        "header",
        "scope_headers",
        "ttl",
        "in_flight",
        "path",
        "interval",
        "timeout",
        "unhealthy_after",
        "healthy_after",
        "name",
        "url",
        "role",
        "implementation",
        "match",
        "kind",
        "lane",
        "idempotency",
        "compare",
        "status_only",
        "ignore_headers",
        "ignore_json",
        "request",
        "max_in_flight",
        "max_header_size",
        "grace_period",
        "request_timeout",
        "reset",
        "command",
        "fence_lag",
        "concurrency",
        "batch",
        "webhook",
        "webhook_timeout",
        "webhook_retries",
        "format",
        "level",
        "export",
        "import",
    ] {
        let set = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains(&format!("{key} =")));
        assert!(set, "the sample does not set `{key}`");
    }
    // token_env excludes token_file, which the sample sets, so it is shown commented out.
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("# token_env =")),
        "the sample does not show `token_env`"
    );
}

#[test]
fn example_transactions() {
    use lockstep_config::TransactionAck;
    let config = example();
    assert_eq!(config.transactions.ack, TransactionAck::PerRequest);
    assert_eq!(config.transactions.timeout, Duration::from_secs(30));
    let accounts = config
        .routes
        .iter()
        .find(|r| r.source.starts_with("POST|PUT|DELETE /accounts"))
        .unwrap();
    assert_eq!(
        accounts.transaction_ack,
        Some(TransactionAck::PerTransaction)
    );
}
