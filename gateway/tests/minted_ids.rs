//! *Processes.* Services that mint their own identifiers, run unmodified behind the real gateway:
//! json-server (npm), which gives each record a random 7-character id, and Kinto (PyPI), which
//! gives each record a random UUID and a millisecond timestamp it accepts back in `If-Match`.
//! Each copy mints different values for the same request; the routes declare where (`mint`),
//! and the gateway translates between what the client saw and what each copy holds.
//!
//! For each service, three copies (own state, own port, started here) and then, one after the
//! other, on the same deployment:
//!
//! 1. creates, updates (json-server: foreign keys in bodies and queries; Kinto: `If-Match` with
//!    the entity tag the client got), deletes and reads by the ids the client got: no backup is
//!    ejected, and `lockstep verify` finds the views equal;
//! 2. kill -9 of the primary: the same ids keep working on the promoted copy, reads included,
//!    and every request succeeds (retried with its idempotency key only while the failover
//!    runs);
//! 3. kill -9 of the gateway and a restart: the learned pairs come back from the journal, and
//!    the next writes by old ids keep the remaining backup in-sync;
//! 4. a new, empty copy added online learns its own ids while it replays, and ends in-sync;
//!
//! and at the end every surviving copy holds the same records in its own ids, with every
//! reference between records pointing at the right record in that copy.
//!
//! json-server comes from `tests/third_party/npm` (`npm ci`, done by `scripts/test`), Kinto from
//! the virtualenv of `tests/third_party/requirements.txt`. A missing service fails its test with
//! the command that installs it; `LOCKSTEP_SKIP_THIRD_PARTY=1` skips them instead.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/procs.rs"]
mod procs;
#[path = "support/services.rs"]
mod services;
#[path = "support/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use procs::GatewayProc;
use serde_json::{Value, json};
use services::ServiceCopy;
use workload::admin_call;

const LIMIT: Duration = Duration::from_secs(30);
/// Records created in the first phase, and in each later one.
const FIRST: usize = 30;
const LATER: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    JsonServer,
    Kinto,
}

impl Service {
    fn label(self) -> &'static str {
        match self {
            Service::JsonServer => "json-server",
            Service::Kinto => "kinto",
        }
    }

    fn program(self) -> Option<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = match self {
            Service::JsonServer => {
                root.join("tests/third_party/npm/node_modules/json-server/lib/cli/bin.js")
            }
            Service::Kinto => std::env::var_os("LOCKSTEP_THIRD_PARTY_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("../target/third-party-venv"))
                .join("bin/kinto"),
        };
        if path.is_file() {
            return Some(path);
        }
        if std::env::var_os("LOCKSTEP_SKIP_THIRD_PARTY").is_some_and(|v| v == "1") {
            eprintln!("SKIPPED: {} not found at {}", self.label(), path.display());
            return None;
        }
        let how = match self {
            Service::JsonServer => "npm ci --prefix gateway/tests/third_party/npm",
            Service::Kinto => {
                "python3 -m venv target/third-party-venv && target/third-party-venv/bin/pip install -r gateway/tests/third_party/requirements.txt"
            }
        };
        panic!(
            "{} is missing ({} not found); install it with: {how} (scripts/test does it); or set LOCKSTEP_SKIP_THIRD_PARTY=1 to skip",
            self.label(),
            path.display()
        );
    }

    fn health_path(self) -> &'static str {
        match self {
            Service::JsonServer => "/posts",
            Service::Kinto => "/v1/__heartbeat__",
        }
    }

    /// The routes a user writes for the service, from docs/fronting.md.
    fn routes(self) -> &'static str {
        match self {
            // The id is in the body and, as a URL, in `Location`.
            Service::JsonServer => {
                r#"
[[routes]]
match = "POST|PUT|PATCH|DELETE /**"
mint = ["/id", "header:Location"]

[[verify.probes]]
request = "GET /posts"

[[verify.probes]]
request = "GET /comments"
"#
            }
            // Ids and timestamps; the timestamp comes back as a number in bodies and as the
            // entity tag, which clients send back in `If-Match`. Reads of the records are
            // translated too (after a failover, and for the probes), numbers included.
            Service::Kinto => {
                r#"
[[routes]]
match = "GET|POST|PUT|PATCH|DELETE /v1/buckets/**"
mint = ["/data/id", "/data/last_modified", "header:ETag"]
translate = { numbers = true }

[[verify.probes]]
request = "GET /v1/buckets/b/collections/c/records?_sort=title"
"#
            }
        }
    }
}

/// Starts copy `name` of `service` in `root/name`.
fn start_copy(service: Service, program: &Path, name: &str, root: &Path) -> ServiceCopy {
    let program = program.to_owned();
    let command = move |home: &Path, port: u16| match service {
        Service::JsonServer => {
            // A collection that already holds a string id makes json-server mint random ones
            // (`nanoid(7)`); every copy starts from the same seed.
            std::fs::write(
                home.join("db.json"),
                r#"{"posts":[{"id":"seed-post","title":"seed"}],"comments":[{"id":"seed-comment","postId":"seed-post","body":"seed"}]}"#,
            )
            .unwrap();
            let mut cmd = Command::new("node");
            cmd.arg(&program)
                .args(["--quiet", "--host", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .arg("db.json");
            cmd
        }
        Service::Kinto => {
            // One configuration for every copy: Kinto derives user ids (shown in every answer's
            // permissions) from this secret. Memory storage: the state is the process's.
            let ini = home.join("kinto.ini");
            std::fs::write(
                &ini,
                "[server:main]\nuse = egg:waitress#main\nhost = 127.0.0.1\nport = %(http_port)s\n\n\
                 [app:main]\nuse = egg:kinto\n\
                 kinto.storage_backend = kinto.core.storage.memory\nkinto.storage_url =\n\
                 kinto.cache_backend = kinto.core.cache.memory\nkinto.cache_url =\n\
                 kinto.permission_backend = kinto.core.permission.memory\nkinto.permission_url =\n\
                 kinto.userid_hmac_secret = 0123456789abcdef0123456789abcdef\n\
                 multiauth.policies = basicauth\n\
                 kinto.bucket_create_principals = system.Everyone\n\n\
                 [loggers]\nkeys = root\n[handlers]\nkeys = console\n[formatters]\nkeys = plain\n\
                 [logger_root]\nlevel = WARNING\nhandlers = console\n\
                 [handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nlevel = NOTSET\nformatter = plain\n\
                 [formatter_plain]\nformat = %(levelname)s %(name)s %(message)s\n",
            )
            .unwrap();
            let mut cmd = Command::new(&program);
            // A fixed hash seed: Kinto lists exposed headers in set order.
            cmd.env("PYTHONHASHSEED", "0")
                .args(["start", "--ini"])
                .arg(&ini)
                .arg("--port")
                .arg(port.to_string());
            cmd
        }
    };
    ServiceCopy::start(
        service.label(),
        name,
        root,
        service.health_path(),
        Box::new(command),
    )
}

/// A record as the client knows it: the canonical id, the entity tag it last got (Kinto), and
/// the record it refers to (json-server comments, Kinto `parent`).
#[derive(Debug, Clone)]
struct Known {
    id: String,
    etag: Option<String>,
    title: String,
}

struct Deployment {
    service: Service,
    program: PathBuf,
    copies: Vec<ServiceCopy>,
    gateway: GatewayProc,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    /// Writes that needed more than one attempt, and the longest time one took.
    retried: usize,
    slowest: Duration,
}

impl Deployment {
    fn start(service: Service, program: PathBuf) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let copies = services::start_copies(&["a", "b", "c"], |name| {
            start_copy(service, &program, name, dir.path())
        });
        let body = services::gateway_config(
            service.health_path(),
            service.routes(),
            &copies.iter().collect::<Vec<_>>(),
        );
        let gateway = GatewayProc::start(dir.path(), "batch", &body);
        Deployment {
            service,
            program,
            copies,
            gateway,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            dir,
            retried: 0,
            slowest: Duration::ZERO,
        }
    }

    fn copy_mut(&mut self, name: &str) -> &mut ServiceCopy {
        self.copies.iter_mut().find(|c| c.name == name).unwrap()
    }

    async fn status(&self) -> Value {
        admin_call(self.gateway.admin, reqwest::Method::GET, "/status", None)
            .await
            .1
    }

    async fn states(&self) -> BTreeMap<String, String> {
        self.status().await["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["name"].as_str().unwrap().to_owned(),
                    format!(
                        "{} {}",
                        b["state"].as_str().unwrap_or(""),
                        b["detail"].as_str().unwrap_or("")
                    ),
                )
            })
            .collect()
    }

    /// Asserts every named copy is in-sync.
    async fn assert_in_sync(&self, names: &[&str], when: &str) {
        let states = self.states().await;
        for name in names {
            assert!(
                states[*name].starts_with("in-sync"),
                "{} {when}: {name} is {}; log: {}",
                self.service.label(),
                states[*name],
                self.gateway.log.display()
            );
        }
    }

    /// One write through the gateway, retried with its idempotency key while the gateway
    /// answers that it cannot take it now (a failover under way) or the connection fails.
    async fn write(
        &mut self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
        key: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut r = self
                .http
                .request(method.clone(), format!("{}{path}", self.gateway.url()))
                .header("Idempotency-Key", key);
            for (n, v) in headers {
                r = r.header(*n, *v);
            }
            if let Some(b) = &body {
                r = r.json(b);
            }
            let retry = match r.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let head = resp.headers().clone();
                    let text = resp.text().await.unwrap_or_default();
                    if status == 503 || status == 409 && text.contains("in_flight") {
                        format!("{status} {text}")
                    } else {
                        if attempts > 1 {
                            self.retried += 1;
                        }
                        self.slowest = self.slowest.max(started.elapsed());
                        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                        return (status, head, value);
                    }
                }
                Err(e) => e.to_string(),
            };
            assert!(
                started.elapsed() < LIMIT,
                "{} {method} {path} kept failing: {retry}",
                self.service.label()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn read(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.gateway.url()))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates the containers the records live in (Kinto's bucket and collection).
    async fn prepare(&mut self) {
        if self.service == Service::Kinto {
            for (path, key) in [
                ("/v1/buckets/b", "bucket"),
                ("/v1/buckets/b/collections/c", "collection"),
            ] {
                let (status, _, body) = self
                    .write(reqwest::Method::PUT, path, &[], Some(json!({})), key)
                    .await;
                assert_eq!(status, 201, "PUT {path}: {body}");
            }
        }
    }

    fn records_path(&self) -> &'static str {
        match self.service {
            Service::JsonServer => "/posts",
            Service::Kinto => "/v1/buckets/b/collections/c/records",
        }
    }

    /// Creates a record titled `title` that refers to `parent`; what the client was given.
    async fn create(&mut self, title: &str, parent: Option<&Known>) -> Known {
        let path = self.records_path();
        let key = format!("create-{title}");
        match self.service {
            Service::JsonServer => {
                let (status, head, body) = self
                    .write(
                        reqwest::Method::POST,
                        path,
                        &[],
                        Some(json!({ "title": title })),
                        &key,
                    )
                    .await;
                assert_eq!(status, 201, "{title}: {body}");
                let id = body["id"].as_str().unwrap().to_owned();
                let location = head["location"].to_str().unwrap();
                assert_eq!(
                    location,
                    format!("{}/posts/{id}", self.gateway.url()),
                    "the client's Location names the gateway and the id it got"
                );
                if let Some(parent) = parent {
                    // A comment on the parent: a foreign key in the body.
                    let (status, _, c) = self
                        .write(
                            reqwest::Method::POST,
                            "/comments",
                            &[],
                            Some(json!({ "postId": parent.id, "body": format!("{title} on {}", parent.title) })),
                            &format!("comment-{title}"),
                        )
                        .await;
                    assert_eq!(status, 201, "{c}");
                    assert_eq!(c["postId"], parent.id.as_str());
                }
                Known {
                    id,
                    etag: None,
                    title: title.to_owned(),
                }
            }
            Service::Kinto => {
                let data = match parent {
                    Some(p) => json!({ "title": title, "parent": p.id }),
                    None => json!({ "title": title }),
                };
                let (status, head, body) = self
                    .write(
                        reqwest::Method::POST,
                        path,
                        &[],
                        Some(json!({ "data": data })),
                        &key,
                    )
                    .await;
                assert_eq!(status, 201, "{title}: {body}");
                let id = body["data"]["id"].as_str().unwrap().to_owned();
                let etag = head["etag"].to_str().unwrap().to_owned();
                assert_eq!(
                    etag,
                    format!("\"{}\"", body["data"]["last_modified"]),
                    "the entity tag is the record's timestamp"
                );
                Known {
                    id,
                    etag: Some(etag),
                    title: title.to_owned(),
                }
            }
        }
    }

    /// Renames a record by the id the client got (Kinto: only if it still has the entity tag
    /// the client last got).
    async fn rename(&mut self, known: &mut Known, title: &str) {
        let path = format!("{}/{}", self.records_path(), known.id);
        let key = format!("rename-{}-{title}", known.id);
        let (status, head, body) = match self.service {
            Service::JsonServer => {
                self.write(
                    reqwest::Method::PATCH,
                    &path,
                    &[],
                    Some(json!({ "title": title })),
                    &key,
                )
                .await
            }
            Service::Kinto => {
                let etag = known.etag.clone().unwrap();
                self.write(
                    reqwest::Method::PATCH,
                    &path,
                    &[("If-Match", etag.as_str())],
                    Some(json!({ "data": { "title": title } })),
                    &key,
                )
                .await
            }
        };
        assert_eq!(status, 200, "PATCH {path}: {body}");
        let id = match self.service {
            Service::JsonServer => &body["id"],
            Service::Kinto => &body["data"]["id"],
        };
        assert_eq!(
            id,
            known.id.as_str(),
            "the answer names the id the client knows"
        );
        if self.service == Service::Kinto {
            known.etag = Some(head["etag"].to_str().unwrap().to_owned());
        }
        known.title = title.to_owned();
    }

    async fn delete(&mut self, known: &Known) {
        let path = format!("{}/{}", self.records_path(), known.id);
        let etag = known.etag.clone();
        let headers: Vec<(&str, &str)> = etag.iter().map(|e| ("If-Match", e.as_str())).collect();
        let (status, _, body) = self
            .write(
                reqwest::Method::DELETE,
                &path,
                &headers,
                None,
                &format!("delete-{}", known.id),
            )
            .await;
        assert_eq!(status, 200, "DELETE {path}: {body}");
    }

    /// Reads a record by the id the client got, through the gateway.
    async fn assert_readable(&self, known: &Known) {
        let (status, body) = self
            .read(&format!("{}/{}", self.records_path(), known.id))
            .await;
        assert_eq!(status, 200, "GET {}: {body}", known.id);
        let (id, title) = match self.service {
            Service::JsonServer => (&body["id"], &body["title"]),
            Service::Kinto => (&body["data"]["id"], &body["data"]["title"]),
        };
        assert_eq!(id, known.id.as_str(), "{body}");
        assert_eq!(title, known.title.as_str(), "{body}");
        if self.service == Service::JsonServer {
            // A query by the id: the comments on this post.
            let (status, list) = self.read(&format!("/comments?postId={}", known.id)).await;
            assert_eq!(status, 200);
            for c in list.as_array().unwrap() {
                assert_eq!(c["postId"], known.id.as_str(), "{list}");
            }
        }
    }

    /// `lockstep verify` of the named backups against the primary.
    async fn verify(&self, names: &[&str], when: &str) {
        let query: Vec<String> = names.iter().map(|n| format!("backend={n}")).collect();
        let (status, report) = admin_call(
            self.gateway.admin,
            reqwest::Method::GET,
            &format!("/verify?{}", query.join("&")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(
            report["equal"],
            true,
            "{} {when}: lockstep verify: {report}",
            self.service.label()
        );
    }

    /// Each copy's records, in its own ids, as (title, title of the record it refers to):
    /// equal on every copy when each translated every reference right.
    async fn holdings(&self, name: &str) -> Vec<(String, String)> {
        let copy = self.copies.iter().find(|c| c.name == name).unwrap();
        let get = |path: String| {
            let http = self.http.clone();
            async move {
                http.get(path)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        let mut out = Vec::new();
        match self.service {
            Service::JsonServer => {
                let posts = get(format!("{}/posts", copy.url())).await;
                let comments = get(format!("{}/comments", copy.url())).await;
                let title_of = |id: &Value| {
                    posts
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["id"] == *id)
                        .map_or("(missing)".to_owned(), |p| {
                            p["title"].as_str().unwrap().to_owned()
                        })
                };
                for p in posts.as_array().unwrap() {
                    out.push((p["title"].as_str().unwrap().to_owned(), String::new()));
                }
                for c in comments.as_array().unwrap() {
                    out.push((
                        c["body"].as_str().unwrap().to_owned(),
                        title_of(&c["postId"]),
                    ));
                }
            }
            Service::Kinto => {
                let list = get(format!("{}/v1/buckets/b/collections/c/records", copy.url())).await;
                let records = list["data"].as_array().unwrap();
                for r in records {
                    let parent = match r.get("parent") {
                        Some(p) => records
                            .iter()
                            .find(|x| x["id"] == *p)
                            .map_or("(missing)".to_owned(), |x| {
                                x["title"].as_str().unwrap().to_owned()
                            }),
                        None => String::new(),
                    };
                    out.push((r["title"].as_str().unwrap().to_owned(), parent));
                }
            }
        }
        out.sort();
        out
    }

    /// The ids a copy gave its records (its own, unseen by clients unless it minted them for
    /// the primary).
    async fn own_ids(&self, name: &str) -> std::collections::BTreeSet<String> {
        let copy = self.copies.iter().find(|c| c.name == name).unwrap();
        let list: Value = self
            .http
            .get(format!("{}{}", copy.url(), self.records_path()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = match self.service {
            Service::JsonServer => list.as_array().unwrap().clone(),
            Service::Kinto => list["data"].as_array().unwrap().clone(),
        };
        items
            .iter()
            .filter_map(|r| r["id"].as_str())
            .filter(|id| *id != "seed-post")
            .map(str::to_owned)
            .collect()
    }

    /// The life of `n` records named `phase-i`: created (each referring to the one before),
    /// renamed, one in four deleted, the rest read back.
    async fn phase(&mut self, phase: &str, n: usize, known: &mut Vec<Known>) {
        let mut fresh: Vec<Known> = Vec::new();
        for i in 0..n {
            let parent = fresh.last().cloned();
            let k = self.create(&format!("{phase}-{i}"), parent.as_ref()).await;
            fresh.push(k);
        }
        for k in fresh.iter_mut() {
            let title = format!("{}-renamed", k.title);
            self.rename(k, &title).await;
        }
        // Records of earlier phases, by the ids their clients got then.
        let mut old = std::mem::take(known);
        for k in old.iter_mut().take(5) {
            let title = format!("{}+{phase}", k.title);
            self.rename(k, &title).await;
        }
        known.extend(old);
        for (i, k) in fresh.into_iter().enumerate() {
            if i % 4 == 3 {
                self.delete(&k).await;
            } else {
                known.push(k);
            }
        }
        for k in known.iter() {
            self.assert_readable(k).await;
        }
    }
}

async fn minted_ids_replicate_fail_over_and_rejoin(service: Service) {
    let Some(program) = service.program() else {
        return;
    };
    let mut d = Deployment::start(service, program);
    d.prepare().await;
    let mut known = Vec::new();

    // 1. Copies that mint different ids stay in-sync.
    d.phase("first", FIRST, &mut known).await;
    d.assert_in_sync(&["b", "c"], "after the first phase").await;
    d.verify(&["b", "c"], "after the first phase").await;

    // 2. kill -9 of the primary: b or c takes over, in its own ids.
    d.copy_mut("a").kill();
    d.phase("failover", LATER, &mut known).await;
    let status = d.status().await;
    let primary = status["primary"].as_str().unwrap().to_owned();
    assert_ne!(primary, "a", "{status}");
    let other = if primary == "b" { "c" } else { "b" };
    d.assert_in_sync(&[other], "after the failover").await;
    assert!(
        d.slowest < Duration::from_secs(15),
        "{}: the longest write took {:?}",
        service.label(),
        d.slowest
    );

    // 3. The gateway killed and restarted: the pairs come back from the journal.
    d.gateway.restart();
    d.phase("restart", LATER, &mut known).await;
    d.assert_in_sync(&[other], "after the gateway's restart")
        .await;

    // 4. A new empty copy learns its own ids while it replays the journal.
    let program = d.program.clone();
    let root = d.dir.path().to_owned();
    let fresh = start_copy(service, &program, "d", &root);
    let url = fresh.url();
    d.copies.push(fresh);
    let (code, report) = admin_call(
        d.gateway.admin,
        reqwest::Method::POST,
        "/backends",
        Some(json!({ "name": "d", "url": url })),
    )
    .await;
    assert_eq!(code, 200, "{report}");
    d.phase("joined", LATER, &mut known).await;
    d.assert_in_sync(&[other, "d"], "after d joined").await;
    d.verify(&[other, "d"], "at the end").await;

    // The copies really hold different ids for the same records: what the test proves rests
    // on the translation.
    let primary_ids = d.own_ids(&primary).await;
    for name in [other, "d"] {
        let theirs = d.own_ids(name).await;
        assert_eq!(theirs.len(), primary_ids.len());
        assert!(
            theirs.is_disjoint(&primary_ids),
            "{}: {name} and {primary} minted the same ids",
            service.label()
        );
    }
    // Every surviving copy holds the same records, each reference pointing at the right one.
    let expected = d.holdings(&primary).await;
    assert!(expected.len() > FIRST, "{}: {expected:?}", service.label());
    for name in [other, "d"] {
        assert_eq!(
            d.holdings(name).await,
            expected,
            "{}: {name} and the primary {primary}",
            service.label()
        );
    }
    assert!(
        !std::fs::read_to_string(&d.gateway.log)
            .unwrap_or_default()
            .contains("backup diverged"),
        "{}: log {}",
        service.label(),
        d.gateway.log.display()
    );
    eprintln!(
        "{}: {} records, {} writes retried during the failover, slowest write {:?}",
        service.label(),
        expected.len(),
        d.retried,
        d.slowest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_server_ids_replicate_fail_over_and_rejoin() {
    minted_ids_replicate_fail_over_and_rejoin(Service::JsonServer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinto_ids_and_timestamps_replicate_fail_over_and_rejoin() {
    minted_ids_replicate_fail_over_and_rejoin(Service::Kinto).await;
}

/// Figures for docs/benchmarks.md: the gateway's CPU per write with translation against the same
/// writes without, and the memory per learned pair. Three deployments side by side, each a
/// gateway in front of three demo banks: *plain* (every copy mints the same sequential ids, no
/// `mint`); *same ids* (the same copies, `mint` declared and 1,000,000 pairs per backup already in
/// the journal, so every request is translated though none of its tokens is known: the
/// translation's own cost); *own ids* (copies minting random ids of their own, the same pairs:
/// every request and answer rewritten). Their runs of deposits alternate, five each (`ROUNDS`);
/// the medians are compared. Run by `scripts/mint-bench`
/// (release build); ignored in the normal test run for its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run with scripts/mint-bench"]
async fn mint_bench() {
    use procs::DemoProc;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let pairs: u64 = std::env::var("PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let writes: usize = std::env::var("WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    const CLIENTS: usize = 16;

    /// utime + stime of a process, in seconds.
    fn cpu(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }
    fn rss_kib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    }

    struct Side {
        _copies: Vec<DemoProc>,
        gateway: GatewayProc,
        accounts: Vec<String>,
        cpu_us: Vec<f64>,
        rate: Vec<f64>,
    }

    /// A deployment in `root/label`: copies minting random ids or not; `pairs` per backup in
    /// the journal beforehand, and the `mint` route, when `pairs` is not zero.
    async fn start(root: &Path, label: &str, random: bool, pairs: u64) -> Side {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let flags: &[&str] = if random { &["--ids", "random"] } else { &[] };
        let copies: Vec<DemoProc> = ["a", "b", "c"]
            .iter()
            .map(|n| DemoProc::start_with(n, "memory", &dir, flags))
            .collect();
        if pairs > 0 {
            // The pairs a long-lived deployment would have learned, journaled as the gateway
            // journals them (groups of 1,000 per seq), for both backups.
            let journal = lockstep_journal::FileJournal::open(
                &dir.join("journal"),
                lockstep_journal::Durability::Batch,
            )
            .unwrap();
            use lockstep_journal::Journal;
            for backup in ["b", "c"] {
                for group in 0..pairs.div_ceil(1000) {
                    let pairs: Vec<(String, String)> = (group * 1000
                        ..((group + 1) * 1000).min(pairs))
                        .map(|i| (format!("\"c{i:015x}\""), format!("\"l{backup}{i:014x}\"")))
                        .collect();
                    journal.record_ids(0, backup, pairs).await.unwrap();
                }
            }
            journal.sync().await.unwrap();
        }
        let mint = if pairs > 0 {
            "[[routes]]\nmatch = \"POST /accounts\"\nmint = [\"/id\"]\n\n"
        } else {
            ""
        };
        let body = format!(
            "[log]\nlevel = \"warn\"\n\n{mint}[[routes]]\nmatch = \"POST /accounts/{{id}}/**\"\nlane = \"{{id}}\"\n\n{}",
            procs::backends_toml(&copies.iter().collect::<Vec<_>>())
        );
        let gateway = GatewayProc::start(&dir, "batch", &body);
        let http = reqwest::Client::new();
        let mut accounts = Vec::new();
        for w in 0..CLIENTS {
            let r = http
                .post(format!("{}/accounts", gateway.url()))
                .header("content-type", "application/json")
                .body(format!("{{\"owner\":\"o{w}\"}}"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            let v: Value = r.json().await.unwrap();
            accounts.push(match &v["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        Side {
            _copies: copies,
            gateway,
            accounts,
            cpu_us: Vec::new(),
            rate: Vec::new(),
        }
    }

    async fn run(side: &mut Side, writes: usize) {
        let http = reqwest::Client::new();
        let left = Arc::new(AtomicUsize::new(writes));
        let pid = side.gateway.pid();
        let before = cpu(pid);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for account in side.accounts.clone() {
            let (http, base, left) = (http.clone(), side.gateway.url(), left.clone());
            tasks.push(tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let r = http
                        .post(format!("{base}/accounts/{account}/deposit"))
                        .header("content-type", "application/json")
                        .body("{\"amount\":1}")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        side.cpu_us.push((cpu(pid) - before) * 1e6 / writes as f64);
        side.rate.push(writes as f64 / elapsed);
    }

    fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }

    let root = tempfile::tempdir().unwrap();
    let mut plain = start(root.path(), "plain", false, 0).await;
    // The same agreeing copies, the maps loaded and every request translated (no token of these
    // writes is a known value): the translation's own cost.
    let mut same = start(root.path(), "same-ids", false, pairs).await;
    let loading = Instant::now();
    // Copies minting ids of their own: every request and answer rewritten for both backups.
    let mut own = start(root.path(), "own-ids", true, pairs).await;
    let load_s = loading.elapsed().as_secs_f64();
    // Memory per pair: the translating gateway holds `pairs` per backup, the plain one none.
    let extra_kib = rss_kib(own.gateway.pid()).saturating_sub(rss_kib(plain.gateway.pid()));
    let bytes_per_pair = extra_kib as f64 * 1024.0 / (2 * pairs.max(1)) as f64;
    // Warm-up, then alternate.
    for side in [&mut plain, &mut same, &mut own] {
        run(side, writes / 4).await;
        side.cpu_us.clear();
        side.rate.clear();
    }
    for _ in 0..rounds {
        run(&mut plain, writes).await;
        run(&mut same, writes).await;
        run(&mut own, writes).await;
    }
    // Every backup is still in-sync: the translated writes really were equal.
    for side in [&plain, &same, &own] {
        let status = admin_call(side.gateway.admin, reqwest::Method::GET, "/status", None)
            .await
            .1;
        for b in status["backends"].as_array().unwrap() {
            assert_eq!(b["state"], "in-sync", "{status}");
        }
    }
    let runs = |side: &Side| {
        side.cpu_us
            .iter()
            .map(|v| (v * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    };
    let p = median(&plain.cpu_us);
    println!(
        "{{\"pairs_per_backup\":{pairs},\"writes_per_run\":{writes},\"rounds\":{rounds},\"plain_cpu_us_per_write\":{p:.1},\"same_ids_cpu_us_per_write\":{:.1},\"own_ids_cpu_us_per_write\":{:.1},\"same_ids_ratio\":{:.3},\"own_ids_ratio\":{:.3},\"writes_per_s\":[{:.0},{:.0},{:.0}],\"plain_runs_us\":{:?},\"same_ids_runs_us\":{:?},\"own_ids_runs_us\":{:?},\"bytes_per_pair\":{bytes_per_pair:.0},\"start_with_pairs_s\":{load_s:.1}}}",
        median(&same.cpu_us),
        median(&own.cpu_us),
        median(&same.cpu_us) / p,
        median(&own.cpu_us) / p,
        median(&plain.rate),
        median(&same.rate),
        median(&own.rate),
        runs(&plain),
        runs(&same),
        runs(&own),
    );
}
