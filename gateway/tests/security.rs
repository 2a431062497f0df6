//! Security properties at the gateway's edges: idempotency keys never cross credentials, the
//! admin API refuses every request without the exact token, the dashboard page shows nothing
//! without it, and the gateway refuses to expose an unauthenticated admin API off loopback.

#[path = "support/harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ------------------------------------------------------------------------------------------
// Idempotency keys are scoped by credentials.

/// The credential headers one client sends: `Authorization` and `Cookie`, either may be absent.
#[derive(Debug, Clone, PartialEq)]
struct Credentials {
    authorization: Option<String>,
    cookie: Option<String>,
}

impl Credentials {
    fn apply(&self, mut b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(a) = &self.authorization {
            b = b.header("Authorization", a);
        }
        if let Some(c) = &self.cookie {
            b = b.header("Cookie", c);
        }
        b
    }
}

fn token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Two different sets of credentials, of a randomly chosen kind: different users, the same
/// value moved from one header to the other, a value differing in its last byte, an anonymous
/// client against an authenticated one, and so on.
fn two_credentials(rng: &mut StdRng) -> (Credentials, Credentials, &'static str) {
    let (len_a, len_b) = (rng.random_range(8..40), rng.random_range(8..40));
    let secret = token(rng, len_a);
    let other = token(rng, len_b);
    let bearer = |s: &str| Some(format!("Bearer {s}"));
    let cookie = |s: &str| Some(format!("session={s}"));
    let none = Credentials {
        authorization: None,
        cookie: None,
    };
    let (a, b, kind) = match rng.random_range(0..7) {
        0 => (
            Credentials {
                authorization: bearer(&secret),
                ..none.clone()
            },
            Credentials {
                authorization: bearer(&other),
                ..none.clone()
            },
            "two bearer tokens",
        ),
        1 => (
            Credentials {
                cookie: cookie(&secret),
                ..none.clone()
            },
            Credentials {
                cookie: cookie(&other),
                ..none.clone()
            },
            "two session cookies",
        ),
        2 => {
            let mut last = secret.clone().into_bytes();
            let end = last.len() - 1;
            last[end] = if last[end] == b'x' { b'y' } else { b'x' };
            (
                Credentials {
                    authorization: bearer(&secret),
                    ..none.clone()
                },
                Credentials {
                    authorization: bearer(&String::from_utf8(last).unwrap()),
                    ..none.clone()
                },
                "bearer tokens differing in the last byte",
            )
        }
        3 => (
            Credentials {
                authorization: Some(secret.clone()),
                ..none.clone()
            },
            Credentials {
                cookie: Some(secret.clone()),
                ..none.clone()
            },
            "one value moved from Authorization to Cookie",
        ),
        4 => (
            none.clone(),
            Credentials {
                authorization: bearer(&secret),
                ..none.clone()
            },
            "anonymous against a bearer token",
        ),
        5 => (
            Credentials {
                authorization: bearer(&secret),
                cookie: cookie(&other),
            },
            Credentials {
                authorization: bearer(&secret),
                cookie: cookie(&secret),
            },
            "same bearer token, different cookies",
        ),
        _ => (
            Credentials {
                authorization: bearer(&secret),
                ..none.clone()
            },
            Credentials {
                authorization: bearer(&format!("{secret}{}", token(rng, 1))),
                ..none.clone()
            },
            "a bearer token and the same one a byte longer",
        ),
    };
    (a, b, kind)
}

struct Answer {
    status: u16,
    replayed: bool,
    seq: String,
    body: String,
}

async fn send(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    body: &str,
    creds: &Credentials,
) -> Answer {
    let r = creds
        .apply(
            c.post(url)
                .header("Idempotency-Key", key)
                .header("content-type", "application/json"),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    Answer {
        status: r.status().as_u16(),
        replayed: r.headers().get("idempotent-replayed").is_some(),
        seq: r
            .headers()
            .get("lockstep-sequence")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: r.text().await.unwrap(),
    }
}

/// One trial: the same key and the same request under two credentials is processed twice,
/// each retry replays its own credentials' response.
async fn trial(c: &reqwest::Client, gw: &str, i: usize, rng: &mut StdRng) -> (String, usize) {
    // Random, and unique per trial: anonymous clients of two trials share a scope.
    let len = rng.random_range(1..=64);
    let key = format!("{}.{i}", token(rng, len));
    let (a, b, kind) = two_credentials(rng);
    let what = format!("trial {i} ({kind}, key {key:?}, {a:?} / {b:?})");
    let url = format!("http://{gw}/t{i}/op");
    let body = format!("{{\"amount\":{}}}", rng.random_range(1..1000));

    let first_a = send(c, &url, &key, &body, &a).await;
    assert_eq!(first_a.status, 200, "{what}: {}", first_a.body);
    assert!(!first_a.replayed, "{what}: the first request was replayed");
    assert!(first_a.body.contains("\"n\":1"), "{what}: {}", first_a.body);

    let first_b = send(c, &url, &key, &body, &b).await;
    assert_eq!(first_b.status, 200, "{what}: {}", first_b.body);
    assert!(
        !first_b.replayed,
        "{what}: other credentials received the stored response of the first"
    );
    assert!(
        first_b.body.contains("\"n\":2"),
        "{what}: other credentials were not processed separately: {}",
        first_b.body
    );
    assert_ne!(first_a.seq, first_b.seq, "{what}");

    for (creds, original, who) in [(&a, &first_a, "first"), (&b, &first_b, "second")] {
        let again = send(c, &url, &key, &body, creds).await;
        assert_eq!(again.status, 200, "{what}: retry by the {who}");
        assert!(again.replayed, "{what}: the {who}'s retry was not a replay");
        assert_eq!(
            (&again.seq, &again.body),
            (&original.seq, &original.body),
            "{what}: the {who}'s retry replayed another response"
        );
    }
    (format!("/t{i}/op"), 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_never_answers_across_credentials() {
    const TRIALS: usize = 1000;
    const WORKERS: usize = 8;
    let (mocks, backends) = start_mocks(2).await;
    let gw = start_gateway(&backends);
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let c = client();
    let addr = gw.gateway.to_string();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (c, addr) = (c.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (w as u64));
            let mut done = Vec::new();
            for i in (w..TRIALS).step_by(WORKERS) {
                done.push(trial(&c, &addr, i, &mut rng).await);
            }
            done
        }));
    }
    let mut expected = Vec::new();
    for t in tasks {
        expected.extend(t.await.unwrap_or_else(|e| panic!("seed {seed}: {e}")));
    }
    assert_eq!(expected.len(), TRIALS);
    // Every backend processed each trial's request exactly twice: once per credentials, never
    // for a replay.
    for (m, name) in mocks.iter().zip(["a", "b"]) {
        m.mock
            .wait_until("every trial reached the backend", |r| r.len() >= 2 * TRIALS)
            .await;
        let received = m.mock.received();
        let mut per_uri = std::collections::HashMap::<&str, usize>::new();
        for r in &received {
            *per_uri.entry(r.uri.as_str()).or_default() += 1;
        }
        for (uri, n) in &expected {
            assert_eq!(
                per_uri.get(uri.as_str()).copied().unwrap_or(0),
                *n,
                "seed {seed}: backend {name} received {uri} that many times"
            );
        }
        assert_eq!(received.len(), 2 * TRIALS, "seed {seed}: backend {name}");
    }
    gw.stop().await;
}

// ------------------------------------------------------------------------------------------
// The admin API.

const ADMIN_TOKEN: &str = "adm1n-T0ken-with-some-length";

/// Every admin endpoint, with the status it answers the right token here (no checkpoint
/// export configured, no view probes, no backend named `x`).
const ADMIN_ENDPOINTS: &[(&str, &str, u16)] = &[
    ("GET", "/status", 200),
    ("GET", "/backends", 200),
    ("GET", "/events", 200),
    ("GET", "/verify", 409),
    ("GET", "/metrics", 200),
    ("GET", "/checkpoints", 200),
    ("POST", "/backends", 400),
    ("DELETE", "/backends/x", 404),
    ("POST", "/backends/x/promote", 404),
    ("POST", "/backends/x/rejoin", 404),
    ("POST", "/checkpoints", 409),
];

/// Distinctive backend names and their mocks, so that leaks are easy to spot.
async fn named_backends() -> (Vec<MockServer>, String, Vec<String>) {
    let mocks = vec![MockServer::start().await, MockServer::start().await];
    let names = ["primary-alpha-7f3e", "backup-bravo-91c2"];
    let list: Vec<(&str, String)> = names
        .iter()
        .zip(&mocks)
        .map(|(n, m)| (*n, m.url.clone()))
        .collect();
    let mut secrets: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    secrets.extend(mocks.iter().map(|m| m.addr.to_string()));
    (mocks, backends_toml(&list), secrets)
}

/// A gateway in front of named mock backends whose admin listener requires `ADMIN_TOKEN` (from
/// a token file), with the names and addresses no unauthenticated answer may reveal. Keep the
/// mocks and the directory alive as long as the gateway.
async fn guarded_gateway() -> (
    Vec<MockServer>,
    tempfile::TempDir,
    lockstep::Running,
    Vec<String>,
) {
    let (mocks, backends, secrets) = named_backends().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let gw = start_gateway(&format!(
        "[admin]\ntoken_file = \"{}\"\n{backends}",
        token_file.display()
    ));
    (mocks, dir, gw, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_admin_endpoint_requires_the_exact_token() {
    let (_mocks, _dir, gw, secrets) = guarded_gateway().await;
    let c = client();
    let mut last_byte = ADMIN_TOKEN.as_bytes().to_vec();
    *last_byte.last_mut().unwrap() ^= 0x01;
    let last_byte = String::from_utf8(last_byte).unwrap();
    let shorter = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    let longer = format!("{ADMIN_TOKEN}x");
    let wrong: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("an empty bearer token", Some("Bearer ".to_owned())),
        ("another token", Some("Bearer nope".to_owned())),
        (
            "the token differing in its last byte",
            Some(format!("Bearer {last_byte}")),
        ),
        (
            "the token without its last byte",
            Some(format!("Bearer {shorter}")),
        ),
        (
            "the token and one byte more",
            Some(format!("Bearer {longer}")),
        ),
        (
            "the token without the Bearer scheme",
            Some(ADMIN_TOKEN.to_owned()),
        ),
        (
            "the token as Basic credentials",
            Some(format!("Basic {ADMIN_TOKEN}")),
        ),
    ];
    for &(method, path, ok_status) in ADMIN_ENDPOINTS {
        let url = format!("http://{}{path}", gw.admin);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for (what, authorization) in &wrong {
            let mut b = c.request(method.clone(), &url);
            if let Some(a) = authorization {
                b = b.header("Authorization", a);
            }
            let r = b.send().await.unwrap();
            let case = format!("{method} {path} with {what}");
            assert_eq!(r.status(), 401, "{case}");
            let challenge = r
                .headers()
                .get("www-authenticate")
                .unwrap_or_else(|| panic!("{case}: no WWW-Authenticate"))
                .to_str()
                .unwrap()
                .to_owned();
            assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
            assert_eq!(r.headers()["content-type"], "application/json", "{case}");
            let text = r.text().await.unwrap();
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {text}"));
            assert_eq!(v["error"], "unauthorized", "{case}: {v}");
            assert!(v["detail"].is_string(), "{case}: {v}");
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "{case}: leaks {secret}");
            }
        }
        let r = c
            .request(method.clone(), &url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            ok_status,
            "{method} {path} with the right token"
        );
        // `/events` is a stream: the answer's head is enough.
        drop(r);
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_page_is_public_but_holds_no_topology() {
    let (_mocks, _dir, gw, secrets) = guarded_gateway().await;
    let c = client();
    let r = c.get(format!("http://{}/", gw.admin)).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET / without a token");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "GET / is the dashboard page"
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "GET /: {page:.200}"
    );
    for secret in secrets.iter().map(String::as_str).chain([ADMIN_TOKEN]) {
        assert!(
            !page.contains(secret),
            "the dashboard page contains {secret}"
        );
    }
    // Anything else at `/` still needs the token.
    let r = c
        .post(format!("http://{}/", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "POST / without a token");
    gw.stop().await;
}

// ------------------------------------------------------------------------------------------
// No unauthenticated admin listener off loopback.

fn lockstep(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "lockstep {args:?} still running after 30s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_gateway_refuses_an_open_admin_listener_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("lockstep.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"0.0.0.0:{port}\"\n[journal]\ndir = \"{}\"\n[[backends]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\nrole = \"primary\"\n",
            dir.path().join("journal").display()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    for args in [
        vec!["run", "--config", config.as_str()],
        vec!["check-config", config.as_str()],
    ] {
        let (code, err) = lockstep(&args);
        assert_eq!(code, 64, "lockstep {args:?}: {err}");
        assert!(
            err.contains("admin.token_file"),
            "lockstep {args:?} names admin.token_file: {err}"
        );
    }
    // With a token the same listener is accepted.
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let with_token = dir.path().join("with-token.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[journal]",
        &format!("token_file = \"{}\"\n[journal]", token.display()),
    );
    std::fs::write(&with_token, text).unwrap();
    let (code, err) = lockstep(&["check-config", &with_token.to_string_lossy()]);
    assert_eq!(code, 0, "check-config with a token: {err}");
}
