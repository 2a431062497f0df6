use crate::{Config, ConfigError, Hook, LogFormat, NoiseKind, ResetHook};

const PRIMARY: &str =
    "[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:9001\"\nrole = \"primary\"\n";

/// A configuration with one primary backend plus `extra`.
fn load(extra: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(&format!("{PRIMARY}{extra}"))
}

fn err(extra: &str) -> ConfigError {
    load(extra).expect_err("the configuration should be refused")
}

fn backend(name: &str, url: &str, role: &str) -> String {
    format!("[[backends]]\nname = \"{name}\"\nurl = \"{url}\"\nrole = \"{role}\"\n")
}

// --- backends ----------------------------------------------------------------------------------

#[test]
fn rejects_no_backends() {
    let err = Config::from_toml_str("[gateway]\nthreads = 2\n").unwrap_err();
    assert!(matches!(err, ConfigError::NoBackends));
    assert_eq!(err.key(), Some("backends"));
}

#[test]
fn rejects_no_primary() {
    let input = backend("b", "http://127.0.0.1:9002", "backup")
        + &backend("c", "http://127.0.0.1:9003", "backup");
    let err = Config::from_toml_str(&input).unwrap_err();
    assert!(matches!(err, ConfigError::NoPrimary { ref backups } if backups == &["b", "c"]));
}

#[test]
fn rejects_two_primaries() {
    let err = err(&(backend("b", "http://127.0.0.1:9002", "backup")
        + &backend("c", "http://127.0.0.1:9003", "primary")));
    assert!(matches!(err, ConfigError::MultiplePrimaries { ref names } if names == &["a", "c"]));
    assert!(
        err.to_string()
            .contains("backends a, c all have role = \"primary\"")
    );
}

#[test]
fn rejects_duplicate_backend_name() {
    let err = err(&backend("a", "http://127.0.0.1:9002", "backup"));
    assert!(matches!(
        err,
        ConfigError::DuplicateBackendName { ref key, ref name, first: 0 }
            if key == "backends[1].name" && name == "a"
    ));
}

#[test]
fn rejects_duplicate_backend_url() {
    let err = err(&backend("b", "http://127.0.0.1:9001/", "backup"));
    assert!(matches!(
        err,
        ConfigError::DuplicateBackendUrl { ref key, first: 0, .. } if key == "backends[1].url"
    ));
}

#[test]
fn rejects_invalid_backend_name() {
    for bad in ["", "a b", "a/b", "é"] {
        let err = err(&backend(bad, "http://127.0.0.1:9002", "backup"));
        assert!(
            matches!(err, ConfigError::InvalidBackendName { ref key, ref value }
                if key == "backends[1].name" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_invalid_url() {
    for bad in [
        "127.0.0.1:9002",
        "https://127.0.0.1:9002",
        "http://",
        "http://127.0.0.1:9002/?x=1",
        "http://127.0.0.1:9002/#top",
        "http://user:pw@127.0.0.1:9002",
        "not a url",
        "file:///tmp/x",
    ] {
        let err = err(&backend("b", bad, "backup"));
        assert!(
            matches!(err, ConfigError::InvalidUrl { ref key, ref value, .. }
                if key == "backends[1].url" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn accepts_url_with_host_name_default_port_and_prefix() {
    let config = load(&backend("b", "http://service.internal/api/v1", "backup")).unwrap();
    let url = &config.backends[1].url;
    assert_eq!(url.host_str(), Some("service.internal"));
    assert_eq!(url.port_or_known_default(), Some(80));
    assert_eq!(url.path(), "/api/v1");
}

#[test]
fn invalid_url_message_names_key_and_fix() {
    let err = err(&backend("b", "https://127.0.0.1:9002", "backup"));
    assert_eq!(
        err.to_string(),
        "backends[1].url = \"https://127.0.0.1:9002\" is not a usable backend URL: the scheme is \
         \"https\", and only \"http\" is supported; write it like \"http://127.0.0.1:9001\""
    );
}

// --- [gateway] and [admin] -----------------------------------------------------------------------

#[test]
fn rejects_invalid_listen() {
    for (section, bad) in [
        ("gateway", "localhost:8080"),
        ("gateway", "127.0.0.1"),
        ("admin", ":8081"),
    ] {
        let err = err(&format!("[{section}]\nlisten = \"{bad}\"\n"));
        let expected = format!("{section}.listen");
        assert!(
            matches!(err, ConfigError::InvalidListen { ref key, ref value }
                if key == &expected && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_zero_threads() {
    let err = err("[gateway]\nthreads = 0\n");
    assert!(matches!(
        err,
        ConfigError::InvalidNumber { ref key, ref value, .. } if key == "gateway.threads" && value == "0"
    ));
}

#[test]
fn rejects_too_many_threads() {
    let err = err("[gateway]\nthreads = 100000\n");
    assert!(matches!(err, ConfigError::InvalidNumber { ref key, .. } if key == "gateway.threads"));
}

#[test]
fn rejects_zero_max_body() {
    for zero in ["0", "\"0MiB\""] {
        let err = err(&format!("[gateway]\nmax_body = {zero}\n"));
        assert!(
            matches!(err, ConfigError::ZeroSize { ref key } if key == "gateway.max_body"),
            "{zero}: {err:?}"
        );
    }
}

#[test]
fn rejects_invalid_max_body() {
    let err = err("[gateway]\nmax_body = \"16 parsecs\"\n");
    assert!(matches!(
        err,
        ConfigError::InvalidSize { ref key, ref value } if key == "gateway.max_body" && value == "\"16 parsecs\""
    ));
}

#[test]
fn accepts_max_body_as_integer() {
    assert_eq!(
        load("[gateway]\nmax_body = 1000\n")
            .unwrap()
            .gateway
            .max_body,
        1000
    );
}

#[test]
fn rejects_zero_max_in_flight() {
    let err = err("[gateway]\nmax_in_flight = 0\n");
    assert!(matches!(
        err,
        ConfigError::InvalidNumber { ref key, ref value, .. }
            if key == "gateway.max_in_flight" && value == "0"
    ));
}

#[test]
fn rejects_zero_max_header_size() {
    let err = err("[gateway]\nmax_header_size = \"0KiB\"\n");
    assert!(matches!(err, ConfigError::ZeroSize { ref key } if key == "gateway.max_header_size"));
}

#[test]
fn rejects_invalid_max_header_size() {
    let err = err("[gateway]\nmax_header_size = \"64 kilobytes\"\n");
    assert!(matches!(
        err,
        ConfigError::InvalidSize { ref key, .. } if key == "gateway.max_header_size"
    ));
}

#[test]
fn rejects_zero_request_timeout() {
    let err = err("[gateway]\nrequest_timeout = \"0s\"\n");
    assert!(
        matches!(err, ConfigError::ZeroDuration { ref key } if key == "gateway.request_timeout")
    );
}

#[test]
fn rejects_invalid_grace_period() {
    let err = err("[gateway]\ngrace_period = \"soon\"\n");
    assert!(matches!(
        err,
        ConfigError::InvalidDuration { ref key, ref value }
            if key == "gateway.grace_period" && value == "soon"
    ));
}

#[test]
fn accepts_zero_grace_period() {
    let config = load("[gateway]\ngrace_period = \"0s\"\n").unwrap();
    assert_eq!(config.gateway.grace_period, std::time::Duration::ZERO);
}

#[test]
fn rejects_invalid_prefix() {
    for bad in ["_lockstep", "/", "/_lockstep/", "/_lock step", "/{x}"] {
        let err = err(&format!("[gateway]\nlockstep_prefix = \"{bad}\"\n"));
        assert!(
            matches!(err, ConfigError::InvalidPrefix { ref key, ref value, .. }
                if key == "gateway.lockstep_prefix" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_public_admin_without_token() {
    let err = err("[admin]\nlisten = \"0.0.0.0:8081\"\n");
    assert!(matches!(err, ConfigError::AdminTokenRequired { listen } if listen.port() == 8081));
    assert_eq!(err.key(), Some("admin.token_file"));
}

#[test]
fn accepts_public_admin_with_token() {
    let config =
        load("[admin]\nlisten = \"0.0.0.0:8081\"\ntoken_file = \"/etc/lockstep/admin.token\"\n")
            .unwrap();
    assert_eq!(
        config.admin.token_file.as_deref(),
        Some(std::path::Path::new("/etc/lockstep/admin.token"))
    );
}

#[test]
fn accepts_public_admin_with_token_env() {
    let config =
        load("[admin]\nlisten = \"0.0.0.0:8081\"\ntoken_env = \"LOCKSTEP_ADMIN_TOKEN\"\n").unwrap();
    assert_eq!(
        config.admin.token_env.as_deref(),
        Some("LOCKSTEP_ADMIN_TOKEN")
    );
    assert_eq!(config.admin.token_file, None);
}

#[test]
fn rejects_token_file_and_token_env_together() {
    let err = err("[admin]\ntoken_file = \"/etc/lockstep/admin.token\"\ntoken_env = \"TOKEN\"\n");
    assert!(matches!(
        err,
        ConfigError::ConflictingAdminTokens { ref env, ref file }
            if env == "TOKEN" && file == "/etc/lockstep/admin.token"
    ));
    assert_eq!(err.key(), Some("admin.token_env"));
}

#[test]
fn rejects_invalid_token_env() {
    for bad in ["", "1TOKEN", "ADMIN TOKEN", "A=B", "TOKÉN"] {
        let err = err(&format!("[admin]\ntoken_env = \"{bad}\"\n"));
        assert!(
            matches!(err, ConfigError::InvalidEnvVarName { ref key, ref value }
                if key == "admin.token_env" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_empty_token_file() {
    let err = err("[admin]\ntoken_file = \"\"\n");
    assert!(matches!(err, ConfigError::InvalidPath { ref key, .. } if key == "admin.token_file"));
}

// --- [journal], [replication], [idempotency], [health] -----------------------------------------

#[test]
fn rejects_empty_journal_dir() {
    let err = err("[journal]\ndir = \" \"\n");
    assert!(matches!(err, ConfigError::InvalidPath { ref key, .. } if key == "journal.dir"));
}

#[test]
fn rejects_zero_timeout() {
    for key in ["backup_timeout", "primary_timeout", "connect_timeout"] {
        let err = err(&format!("[replication]\n{key} = \"0ms\"\n"));
        let expected = format!("replication.{key}");
        assert!(
            matches!(err, ConfigError::ZeroDuration { key: ref k } if k == &expected),
            "{key}: {err:?}"
        );
    }
}

#[test]
fn rejects_invalid_duration() {
    let err = err("[replication]\nbackup_timeout = \"5 parsecs\"\n");
    assert!(matches!(
        err,
        ConfigError::InvalidDuration { ref key, ref value }
            if key == "replication.backup_timeout" && value == "5 parsecs"
    ));
    assert_eq!(err.key(), Some("replication.backup_timeout"));
}

#[test]
fn rejects_zero_ttl() {
    let err = err("[idempotency]\nttl = \"0s\"\n");
    assert!(matches!(err, ConfigError::ZeroDuration { ref key } if key == "idempotency.ttl"));
}

#[test]
fn rejects_invalid_idempotency_header() {
    let err = err("[idempotency]\nheader = \"Idempotency Key\"\n");
    assert!(matches!(
        err,
        ConfigError::InvalidHeaderName { ref key, ref value }
            if key == "idempotency.header" && value == "Idempotency Key"
    ));
}

#[test]
fn rejects_invalid_scope_header() {
    let err = err("[idempotency]\nscope_headers = [\"authorization\", \"x:y\"]\n");
    assert!(matches!(
        err,
        ConfigError::InvalidHeaderName { ref key, .. } if key == "idempotency.scope_headers[1]"
    ));
}

#[test]
fn lowercases_scope_headers_and_keeps_header_as_written() {
    let config =
        load("[idempotency]\nheader = \"X-Request-Key\"\nscope_headers = [\"Authorization\", \"X-Tenant\"]\n")
            .unwrap();
    assert_eq!(config.idempotency.header, "X-Request-Key");
    assert_eq!(
        config.idempotency.scope_headers,
        ["authorization", "x-tenant"]
    );
}

#[test]
fn rejects_zero_health_interval() {
    let err = err("[health]\ninterval = \"0s\"\n");
    assert!(matches!(err, ConfigError::ZeroDuration { ref key } if key == "health.interval"));
}

#[test]
fn rejects_zero_threshold() {
    for key in ["unhealthy_after", "healthy_after"] {
        let err = err(&format!("[health]\n{key} = 0\n"));
        let expected = format!("health.{key}");
        assert!(
            matches!(err, ConfigError::InvalidNumber { key: ref k, .. } if k == &expected),
            "{key}: {err:?}"
        );
    }
}

#[test]
fn rejects_health_path_without_slash() {
    let err = err("[health]\npath = \"health\"\n");
    assert!(matches!(
        err,
        ConfigError::InvalidPath { ref key, ref value, .. } if key == "health.path" && value == "health"
    ));
}

// --- [[backends]] reset and [checkpoint] ------------------------------------------------------

fn backup_with_reset(reset: &str) -> String {
    backend("b", "http://127.0.0.1:9002", "backup") + &format!("reset = {reset}\n")
}

#[test]
fn parses_reset_command() {
    let config = load(&backup_with_reset(
        r#"{ command = "make -C /srv/b reset" }"#,
    ))
    .unwrap();
    assert_eq!(config.backends[0].reset, None);
    assert_eq!(
        config.backends[1].reset,
        Some(ResetHook::Command("make -C /srv/b reset".to_owned()))
    );
}

#[test]
fn parses_reset_request() {
    let config = load(&backup_with_reset(
        r#"{ request = "post /admin/reset?all=1" }"#,
    ))
    .unwrap();
    assert_eq!(
        config.backends[1].reset,
        Some(Hook::Request {
            method: "POST".to_owned(),
            path: "/admin/reset?all=1".to_owned()
        })
    );
}

#[test]
fn rejects_reset_without_action() {
    let err = err(&backup_with_reset("{}"));
    assert!(
        matches!(err, ConfigError::HookWithoutAction { ref key } if key == "backends[1].reset")
    );
}

#[test]
fn rejects_reset_with_two_actions() {
    let err = err(&backup_with_reset(
        r#"{ command = "true", request = "POST /admin/reset" }"#,
    ));
    assert!(
        matches!(err, ConfigError::HookWithTwoActions { ref key } if key == "backends[1].reset")
    );
}

#[test]
fn rejects_empty_reset_command() {
    for bad in ["", "  "] {
        let err = err(&backup_with_reset(&format!("{{ command = \"{bad}\" }}")));
        assert!(
            matches!(err, ConfigError::EmptyValue { ref key, .. } if key == "backends[1].reset.command"),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_invalid_reset_request() {
    for bad in [
        "",
        "/admin/reset",
        "POST admin/reset",
        "POST|DELETE /admin/reset",
        "* /admin/reset",
        "PO(ST /admin/reset",
        "POST /admin/reset now",
        "POST /admin#reset",
    ] {
        let err = err(&backup_with_reset(&format!("{{ request = \"{bad}\" }}")));
        assert!(
            matches!(err, ConfigError::InvalidHookRequest { ref key, ref value, .. }
                if key == "backends[1].reset.request" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_unknown_hook_key() {
    let err = err(&backup_with_reset(r#"{ cmd = "true" }"#));
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
}

#[test]
fn parses_checkpoint_hooks() {
    let config = load(
        "[checkpoint]\nexport = { request = \"POST /admin/export\" }\n\
         import = { command = \"restore.sh\" }\n",
    )
    .unwrap();
    assert_eq!(
        config.checkpoint.export,
        Some(Hook::Request {
            method: "POST".to_owned(),
            path: "/admin/export".to_owned()
        })
    );
    assert_eq!(
        config.checkpoint.import,
        Some(Hook::Command("restore.sh".to_owned()))
    );
}

#[test]
fn rejects_checkpoint_export_without_import() {
    let err = err("[checkpoint]\nexport = { command = \"dump.sh\" }\n");
    assert!(matches!(
        err,
        ConfigError::MissingCheckpointHook { ref key, ref present }
            if key == "checkpoint.import" && present == "checkpoint.export"
    ));
}

#[test]
fn rejects_checkpoint_import_without_export() {
    let err = err("[checkpoint]\nimport = { command = \"restore.sh\" }\n");
    assert!(matches!(
        err,
        ConfigError::MissingCheckpointHook { ref key, ref present }
            if key == "checkpoint.export" && present == "checkpoint.import"
    ));
}

#[test]
fn rejects_invalid_checkpoint_hook() {
    let bad_request =
        err("[checkpoint]\nexport = { request = \"POST export\" }\nimport = { command = \"x\" }\n");
    assert!(matches!(
        bad_request,
        ConfigError::InvalidHookRequest { ref key, .. } if key == "checkpoint.export.request"
    ));
    let no_action = err("[checkpoint]\nexport = { command = \"x\" }\nimport = {}\n");
    assert!(matches!(
        no_action,
        ConfigError::HookWithoutAction { ref key } if key == "checkpoint.import"
    ));
}

// --- [catchup], [events], [log] ------------------------------------------------------------------

#[test]
fn rejects_catchup_numbers_out_of_range() {
    for (key, bad) in [
        ("fence_lag", "0"),
        ("concurrency", "0"),
        ("concurrency", "257"),
        ("batch", "0"),
        ("batch", "10001"),
    ] {
        let err = err(&format!("[catchup]\n{key} = {bad}\n"));
        let expected = format!("catchup.{key}");
        assert!(
            matches!(err, ConfigError::InvalidNumber { key: ref k, ref value, .. }
                if k == &expected && value == bad),
            "{key} = {bad}: {err:?}"
        );
    }
}

#[test]
fn accepts_catchup_bounds() {
    let config = load("[catchup]\nfence_lag = 1\nconcurrency = 256\nbatch = 10000\n").unwrap();
    assert_eq!(config.catchup.fence_lag, 1);
    assert_eq!(config.catchup.concurrency, 256);
    assert_eq!(config.catchup.batch, 10_000);
}

#[test]
fn rejects_invalid_webhook() {
    for bad in [
        "https://hooks.example.com/lockstep",
        "hooks.example.com/lockstep",
        "http://127.0.0.1:9100/events#x",
        "mailto:ops@example.com",
    ] {
        let err = err(&format!("[events]\nwebhook = \"{bad}\"\n"));
        assert!(
            matches!(err, ConfigError::InvalidWebhookUrl { ref key, ref value, .. }
                if key == "events.webhook" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn accepts_webhook_with_query() {
    let config = load("[events]\nwebhook = \"http://hooks.internal/lockstep?token=x\"\n").unwrap();
    let url = config.events.webhook.unwrap();
    assert_eq!(url.host_str(), Some("hooks.internal"));
    assert_eq!(url.query(), Some("token=x"));
}

#[test]
fn rejects_zero_webhook_timeout() {
    let err = err("[events]\nwebhook_timeout = \"0ms\"\n");
    assert!(
        matches!(err, ConfigError::ZeroDuration { ref key } if key == "events.webhook_timeout")
    );
}

#[test]
fn rejects_too_many_webhook_retries() {
    let err = err("[events]\nwebhook_retries = 101\n");
    assert!(matches!(
        err,
        ConfigError::InvalidNumber { ref key, ref value, .. }
            if key == "events.webhook_retries" && value == "101"
    ));
    assert_eq!(
        load("[events]\nwebhook_retries = 0\n")
            .unwrap()
            .events
            .webhook_retries,
        0
    );
}

#[test]
fn rejects_empty_log_level() {
    let err = err("[log]\nlevel = \" \"\n");
    assert!(matches!(err, ConfigError::EmptyValue { ref key, .. } if key == "log.level"));
}

#[test]
fn rejects_unknown_log_format() {
    let err = err("[log]\nformat = \"yaml\"\n");
    assert!(
        matches!(err, ConfigError::Syntax { ref key, .. } if key.as_deref() == Some("log.format")),
        "{err:?}"
    );
}

#[test]
fn parses_log() {
    let config =
        load("[log]\nformat = \"json\"\nlevel = \"warn,lockstep_gateway=debug\"\n").unwrap();
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "warn,lockstep_gateway=debug");
}

// --- [[routes]] -------------------------------------------------------------------------------

#[test]
fn rejects_invalid_route() {
    let err = err("[[routes]]\nmatch = \"GET /\"\n[[routes]]\nmatch = \"GET accounts\"\n");
    assert!(matches!(
        err,
        ConfigError::InvalidRoute { ref key, ref value, .. } if key == "routes[1].match" && value == "GET accounts"
    ));
}

#[test]
fn rejects_tail_not_last() {
    let err = err("[[routes]]\nmatch = \"GET /a/**/b\"\n");
    assert!(matches!(err, ConfigError::InvalidRoute { ref key, .. } if key == "routes[0].match"));
}

#[test]
fn rejects_lane_param_not_in_pattern() {
    let err = err(
        "[[routes]]\nmatch = \"GET /\"\n[[routes]]\nmatch = \"GET /\"\n\
         [[routes]]\nmatch = \"POST /accounts/{id}/**\"\nlane = \"{acct}\"\n",
    );
    assert!(matches!(
        err,
        ConfigError::UnknownLaneParam { ref key, ref param, ref available }
            if key == "routes[2].lane" && param == "acct" && available == &["id"]
    ));
}

#[test]
fn rejects_unbalanced_lane() {
    let err = err("[[routes]]\nmatch = \"POST /accounts/{id}\"\nlane = \"{id\"\n");
    assert!(matches!(err, ConfigError::InvalidLane { ref key, .. } if key == "routes[0].lane"));
}

#[test]
fn rejects_invalid_compare_header() {
    let err = err("[[routes]]\nmatch = \"POST /a\"\ncompare = { ignore_headers = [\"da te\"] }\n");
    assert!(matches!(
        err,
        ConfigError::InvalidHeaderName { ref key, .. } if key == "routes[0].compare.ignore_headers[0]"
    ));
}

#[test]
fn rejects_invalid_json_pointer() {
    for bad in ["updated_at", "/a~2", "/a~"] {
        let err = err(&format!(
            "[[routes]]\nmatch = \"POST /a\"\ncompare = {{ ignore_json = [\"/ok\", \"{bad}\"] }}\n"
        ));
        assert!(
            matches!(err, ConfigError::InvalidJsonPointer { ref key, ref value }
                if key == "routes[0].compare.ignore_json[1]" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn accepts_json_pointers() {
    let config = load(
        "[[routes]]\nmatch = \"POST /a\"\ncompare = { ignore_json = [\"\", \"/\", \"/a~0b/c~1d\", \"/items/0\"] }\n",
    )
    .unwrap();
    assert_eq!(
        config.routes[0].compare.as_ref().unwrap().ignore_json,
        ["", "/", "/a~0b/c~1d", "/items/0"]
    );
}

#[test]
fn route_options_default_to_none() {
    let config = load("[[routes]]\nmatch = \"MKCOL /dav/**\"\n").unwrap();
    let route = &config.routes[0];
    assert_eq!(route.source, "MKCOL /dav/**");
    assert_eq!(route.kind, None);
    assert_eq!(route.lane, None);
    assert_eq!(route.idempotency, None);
    assert_eq!(route.compare, None);
}

// --- [[verify.probes]] ---------------------------------------------------------------------------

#[test]
fn rejects_invalid_probe() {
    for bad in [
        "/accounts",
        "GET accounts",
        "GET|HEAD /accounts",
        "* /accounts",
        "GE(T /a",
        "GET /a b",
    ] {
        let err = err(&format!("[[verify.probes]]\nrequest = \"{bad}\"\n"));
        assert!(
            matches!(err, ConfigError::InvalidProbe { ref key, ref value, .. }
                if key == "verify.probes[0].request" && value == bad),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn rejects_invalid_probe_json_pointer() {
    let err = err("[[verify.probes]]\nrequest = \"GET /a\"\nignore_json = [\"x\"]\n");
    assert!(matches!(
        err,
        ConfigError::InvalidJsonPointer { ref key, .. } if key == "verify.probes[0].ignore_json[0]"
    ));
}

#[test]
fn parses_probe() {
    let config = load(
        "[[verify.probes]]\nrequest = \"get /accounts?limit=10\"\nstatus_only = true\nignore_headers = [\"ETag\"]\n",
    )
    .unwrap();
    let probe = &config.verify.probes[0];
    assert_eq!(probe.method, "GET");
    assert_eq!(probe.path, "/accounts?limit=10");
    assert!(probe.compare.status_only);
    assert_eq!(probe.compare.ignore_headers, ["etag"]);
}

#[test]
fn every_error_names_its_key_in_its_message() {
    let cases = [
        "[gateway]\nthreads = 0\n",
        "[gateway]\nlisten = \"x\"\n",
        "[replication]\nbackup_timeout = \"0s\"\n",
        "[[routes]]\nmatch = \"GET /{}\"\n",
        "[[verify.probes]]\nrequest = \"GET\"\n",
        "[admin]\ntoken_file = \"t\"\ntoken_env = \"T\"\n",
        "[admin]\ntoken_env = \"1\"\n",
        "[gateway]\nmax_in_flight = 0\n",
        "[catchup]\nconcurrency = 0\n",
        "[events]\nwebhook = \"ftp://x\"\n",
        "[log]\nlevel = \"\"\n",
        "[checkpoint]\nexport = { command = \"x\" }\n",
        "[checkpoint]\nimport = { command = \"x\" }\nexport = { request = \"x\" }\n",
        "[checkpoint]\nexport = {}\n",
        "[checkpoint]\nexport = { command = \"x\", request = \"POST /\" }\n",
        "[checkpoint]\nexport = { command = \"\" }\n",
    ];
    for extra in cases {
        let err = err(extra);
        let key = err.key().expect("a key").to_owned();
        assert!(err.to_string().contains(&key), "{err}");
    }
}

// --- refusals and re-admission ------------------------------------------------------------------

#[test]
fn refusals_default_to_408_429_503_and_reach_routes() {
    let config = load(
        "[[routes]]\nmatch = \"POST /a\"\ncompare = { status_only = true }\n\
         [[routes]]\nmatch = \"POST /b\"\nrefusals = [503]\n\
         [[routes]]\nmatch = \"POST /c\"\n",
    )
    .unwrap();
    assert_eq!(config.replication.refusals, vec![408, 429, 503]);
    let compare = |i: usize| config.routes[i].compare.clone();
    assert_eq!(compare(0).unwrap().refusals, vec![408, 429, 503]);
    assert_eq!(compare(1).unwrap().refusals, vec![503]);
    assert_eq!(compare(2), None, "the classifier's default rule applies");
    let none = load("[replication]\nrefusals = []\n").unwrap();
    assert!(none.replication.refusals.is_empty());
}

#[test]
fn rejects_a_refusal_that_is_not_a_4xx_or_5xx() {
    let e = err("[replication]\nrefusals = [503, 200]\n");
    assert!(
        matches!(e, ConfigError::InvalidNumber { ref key, ref value, .. } if key == "replication.refusals[1]" && value == "200"),
        "{e}"
    );
    let e = err("[[routes]]\nmatch = \"POST /a\"\nrefusals = [429, 429]\n");
    assert!(
        matches!(e, ConfigError::InvalidNumber { ref key, .. } if key == "routes[0].refusals[1]"),
        "{e}"
    );
}

#[test]
fn rejects_auto_rejoin_without_probes() {
    let e = err("[health]\nauto_rejoin = true\n");
    assert!(matches!(e, ConfigError::AutoRejoinWithoutProbes), "{e}");
    assert_eq!(e.key(), Some("health.auto_rejoin"));
    let ok = load(
        "[health]\nauto_rejoin = true\nidentity_header = \"X-Boot-Id\"\n\
         [[verify.probes]]\nrequest = \"GET /accounts\"\n",
    )
    .unwrap();
    assert!(ok.health.auto_rejoin);
    assert_eq!(ok.health.identity_header.as_deref(), Some("x-boot-id"));
}

#[test]
fn compare_noise_and_extra_headers_are_parsed() {
    let config = load(
        "[[routes]]\nmatch = \"POST /a\"\ncompare = { headers = [\"ETag\"], noise = [\"timestamp\", \"uuid\", \"timestamp\"] }\n",
    )
    .unwrap();
    let compare = config.routes[0].compare.as_ref().unwrap();
    assert_eq!(compare.headers, ["etag"]);
    assert_eq!(compare.noise, [NoiseKind::Timestamp, NoiseKind::Uuid]);
}

#[test]
fn rejects_an_unknown_noise_kind_naming_the_key_and_the_kinds() {
    let refused =
        err("[[routes]]\nmatch = \"POST /a\"\ncompare = { noise = [\"uuid\", \"time\"] }\n");
    assert!(
        matches!(refused, ConfigError::UnknownNoiseKind { ref key, ref value }
            if key == "routes[0].compare.noise[1]" && value == "time"),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        message.contains("\"timestamp\", \"uuid\", \"token\", \"own-address\""),
        "{message}"
    );
    let refused = err("[[verify.probes]]\nrequest = \"GET /a\"\nnoise = [\"ids\"]\n");
    assert!(
        matches!(refused, ConfigError::UnknownNoiseKind { ref key, .. } if key == "verify.probes[0].noise[0]"),
        "{refused:?}"
    );
}

#[test]
fn public_url_is_an_origin() {
    let config = load("[gateway]\npublic_url = \"https://api.example.com\"\n").unwrap();
    assert_eq!(
        config.gateway.public_url.unwrap().as_str(),
        "https://api.example.com/"
    );
    for bad in [
        "api.example.com",
        "ftp://api.example.com",
        "https://api.example.com/v1",
        "https://u:p@api.example.com",
        "https://api.example.com/?x=1",
    ] {
        let refused = err(&format!("[gateway]\npublic_url = \"{bad}\"\n"));
        assert!(
            matches!(refused, ConfigError::InvalidPublicUrl { ref key, .. } if key == "gateway.public_url"),
            "{bad}: {refused:?}"
        );
    }
}

// --- minted identifiers ------------------------------------------------------------------------

#[test]
fn parses_mint_places_and_translation() {
    let config = load(
        "[[routes]]\nmatch = \"POST|PATCH /posts/**\"\nmint = [\"/id\", \"/items/*/id\", \"/a~1b\", \"header:ETag\", \"/id\"]\ntranslate = { headers = [\"X-Ref\", \"if-match\"], numbers = true }\n",
    )
    .unwrap();
    let rule = config.routes[0].compare.as_ref().expect("a route rule");
    assert_eq!(
        rule.mint,
        vec![
            crate::MintPlace::Json(vec!["id".into()]),
            crate::MintPlace::Json(vec!["items".into(), "*".into(), "id".into()]),
            crate::MintPlace::Json(vec!["a/b".into()]),
            crate::MintPlace::Header("etag".into()),
        ],
        "parsed, unescaped, lowercased, once each"
    );
    assert_eq!(rule.mint[2].as_config(), "/a~1b");
    assert!(rule.translate.numbers);
    assert_eq!(
        rule.translate.headers,
        [
            "if-match",
            "if-none-match",
            "if-range",
            "destination",
            "x-ref"
        ],
        "the defaults, then the route's own"
    );
    assert_eq!(rule.route.as_deref(), Some("POST|PATCH /posts/**"));
}

#[test]
fn a_route_without_mint_translates_by_default() {
    let config = load("[[routes]]\nmatch = \"POST /x\"\nrefusals = [503]\n").unwrap();
    let rule = config.routes[0].compare.as_ref().unwrap();
    assert!(rule.mint.is_empty());
    assert_eq!(rule.translate, crate::TranslateRule::default());
    assert!(!rule.translate.numbers);
}

#[test]
fn rejects_a_mint_place_that_is_no_pointer_or_header() {
    for (value, index) in [("id", 0), ("", 0), ("header:", 0), ("header:bad name", 0)] {
        let err = err(&format!(
            "[[routes]]\nmatch = \"POST /x\"\nmint = [{value:?}]\n"
        ));
        assert_eq!(
            err.key(),
            Some(format!("routes[0].mint[{index}]").as_str()),
            "{value:?}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("JSON pointer") || text.contains("header"),
            "{value:?}: {text}"
        );
    }
}

#[test]
fn rejects_unknown_translate_keys_and_bad_header_names() {
    let e = err("[[routes]]\nmatch = \"POST /x\"\ntranslate = { numbrs = true }\n");
    assert!(e.to_string().contains("numbrs"), "{e}");
    let e = err("[[routes]]\nmatch = \"POST /x\"\ntranslate = { headers = [\"a b\"] }\n");
    assert_eq!(e.key(), Some("routes[0].translate.headers[0]"), "{e}");
}
