//! The sample configuration shipped at the root of the repository loads, and says what its
//! comments say.

use std::path::Path;
use std::time::Duration;

use lockstep_config::{
    AckPolicy, Config, DispatchMode, FsyncMode, IdempotencyRule, InFlightPolicy, LanePart,
    LaneTemplate, MethodSet, OnDivergence, RequestKind, Role, Segment,
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
    assert_eq!(config.admin.listen, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(
        config.admin.token_file.as_deref(),
        Some(Path::new("/etc/lockstep/admin.token"))
    );
    assert_eq!(config.journal.fsync, FsyncMode::Batch);
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
    ] {
        let set = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains(&format!("{key} =")));
        assert!(set, "the sample does not set `{key}`");
    }
}
