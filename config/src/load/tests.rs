use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{
    AckPolicy, AdminConfig, CatchupConfig, CheckpointConfig, Config, ConfigError, DispatchMode,
    EventsConfig, FsyncMode, GatewayConfig, HealthConfig, IdempotencyConfig, InFlightPolicy,
    JournalConfig, LogConfig, LogFormat, OnDivergence, ReplicationConfig, Role,
};

const MINIMAL: &str =
    "[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:9001\"\nrole = \"primary\"\n";

#[test]
fn applies_defaults_to_minimal_config() {
    let config = Config::from_toml_str(MINIMAL).unwrap();

    assert_eq!(config.gateway.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.gateway.threads, 2);
    assert_eq!(config.gateway.max_body, 16 * 1024 * 1024);
    assert_eq!(config.gateway.lockstep_prefix, "/_lockstep");
    assert_eq!(config.gateway.max_in_flight, 1024);
    assert_eq!(config.gateway.max_header_size, 64 * 1024);
    assert_eq!(config.gateway.grace_period, Duration::from_secs(5));
    assert_eq!(config.gateway.request_timeout, Duration::from_secs(60));

    assert_eq!(config.admin.listen, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(config.admin.token_file, None);
    assert_eq!(config.admin.token_env, None);

    assert_eq!(config.journal.dir, PathBuf::from("./lockstep-data"));
    assert_eq!(config.journal.fsync, FsyncMode::Batch);

    assert_eq!(config.replication.ack, AckPolicy::All);
    assert_eq!(config.replication.dispatch, DispatchMode::Sequential);
    assert_eq!(config.replication.backup_timeout, Duration::from_secs(5));
    assert_eq!(config.replication.primary_timeout, Duration::from_secs(30));
    assert_eq!(config.replication.connect_timeout, Duration::from_secs(1));
    assert_eq!(config.replication.on_divergence, OnDivergence::Eject);

    assert_eq!(config.idempotency.header, "Idempotency-Key");
    assert_eq!(
        config.idempotency.scope_headers,
        ["authorization", "cookie"]
    );
    assert_eq!(config.idempotency.ttl, Duration::from_secs(24 * 3600));
    assert_eq!(config.idempotency.in_flight, InFlightPolicy::Wait);

    assert_eq!(config.health.path, "/health");
    assert_eq!(config.health.interval, Duration::from_millis(250));
    assert_eq!(config.health.timeout, Duration::from_millis(200));
    assert_eq!(config.health.unhealthy_after, 2);
    assert_eq!(config.health.healthy_after, 2);

    assert_eq!(config.backends.len(), 1);
    let a = &config.backends[0];
    assert_eq!(a.name, "a");
    assert_eq!(a.url.as_str(), "http://127.0.0.1:9001/");
    assert_eq!(a.role, Role::Primary);
    assert_eq!(a.implementation, "default");
    assert_eq!(a.reset, None);

    assert!(config.routes.is_empty());
    assert!(config.verify.probes.is_empty());

    assert_eq!(config.catchup.fence_lag, 64);
    assert_eq!(config.catchup.concurrency, 4);
    assert_eq!(config.catchup.batch, 256);

    assert_eq!(config.events.webhook, None);
    assert_eq!(config.events.webhook_timeout, Duration::from_secs(2));
    assert_eq!(config.events.webhook_retries, 5);

    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");

    assert_eq!(config.checkpoint.export, None);
    assert_eq!(config.checkpoint.import, None);
}

#[test]
fn section_defaults_match_minimal_config() {
    let config = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(config.gateway, GatewayConfig::default());
    assert_eq!(config.admin, AdminConfig::default());
    assert_eq!(config.journal, JournalConfig::default());
    assert_eq!(config.replication, ReplicationConfig::default());
    assert_eq!(config.idempotency, IdempotencyConfig::default());
    assert_eq!(config.health, HealthConfig::default());
    assert_eq!(config.catchup, CatchupConfig::default());
    assert_eq!(config.events, EventsConfig::default());
    assert_eq!(config.log, LogConfig::default());
    assert_eq!(config.checkpoint, CheckpointConfig::default());
    assert_eq!(LogFormat::default(), LogFormat::Text);
}

#[test]
fn empty_sections_take_defaults() {
    let input = format!(
        "[gateway]\n[admin]\n[journal]\n[replication]\n[idempotency]\n[health]\n[verify]\n\
         [catchup]\n[events]\n[log]\n[checkpoint]\n{MINIMAL}"
    );
    assert_eq!(
        Config::from_toml_str(&input).unwrap(),
        Config::from_toml_str(MINIMAL).unwrap()
    );
}

#[test]
fn finds_primary_and_backups() {
    let input = format!(
        "[[backends]]\nname = \"b\"\nurl = \"http://127.0.0.1:9002\"\nrole = \"backup\"\n{MINIMAL}"
    );
    let config = Config::from_toml_str(&input).unwrap();
    assert_eq!(config.primary().name, "a");
    let backups: Vec<&str> = config.backups().map(|b| b.name.as_str()).collect();
    assert_eq!(backups, ["b"]);
    assert_eq!(config.backend("b").map(|b| b.role), Some(Role::Backup));
    assert!(config.backend("z").is_none());
}

#[test]
fn rejects_missing_file() {
    let path = Path::new("this-file-does-not-exist.toml");
    let err = Config::load(path).unwrap_err();
    assert!(matches!(err, ConfigError::Io { path: ref p, .. } if p == path));
    assert_eq!(err.key(), None);
    assert!(err.to_string().contains("this-file-does-not-exist.toml"));
}
