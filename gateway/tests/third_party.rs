//! *Processes.* lockstep in front of real, unmodified third-party HTTP services that were not
//! written for it: WsgiDAV (WebDAV, PyPI), Radicale (CalDAV/CardDAV, PyPI) and Debian's nginx
//! with its WebDAV module. Their answers carry per-instance data — each copy's own address in
//! `Location`, the moment in error and status pages, inode-based `ETag`s — and the gateway runs
//! with the default comparison plus only the route rules a user would write from the docs.
//!
//! For each service, three copies (own data directory, own port, started here), the real
//! `lockstep` binary in front:
//!
//! 1. a clean run of mixed writes (at least 1,000) ejects nobody, and the copies end identical
//!    (their files on disk, and for WsgiDAV the dead properties it keeps in memory);
//! 2. after a kill -9 of the primary mid-run, a backup takes over, the writes continue and the
//!    survivors end identical;
//! 3. changes made to one backup behind the gateway's back (a file created or deleted, a
//!    calendar event edited) are all detected by the next write whose answer shows them.
//!
//! The PyPI services are pinned in `tests/third_party/requirements.txt` and installed by
//! `scripts/test` into `target/third-party-venv` (or `LOCKSTEP_THIRD_PARTY_VENV`); nginx is
//! Debian's (`/usr/sbin/nginx`, or `LOCKSTEP_NGINX`). A missing service fails its test with the
//! command that installs it; `LOCKSTEP_SKIP_THIRD_PARTY=1` skips them instead.

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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::eventually;
use procs::GatewayProc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use services::ServiceCopy;
use workload::{admin_call, client};

/// Writes of the clean run, and of the run during which the primary is killed.
const CLEAN_WRITES: usize = 1_000;
const FAILOVER_WRITES: usize = 300;
/// The failover run kills the primary after this many of its writes.
const KILL_AT: usize = 100;
/// Divergences injected per service: two per deployment (one into each backup).
const INJECTIONS: usize = 20;
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    WsgiDav,
    Radicale,
    Nginx,
}

impl Service {
    fn label(self) -> &'static str {
        match self {
            Service::WsgiDav => "wsgidav",
            Service::Radicale => "radicale",
            Service::Nginx => "nginx",
        }
    }

    /// A path each copy answers 200 to when it is up: the gateway's health checks and this
    /// test's readiness poll use it.
    fn health_path(self) -> &'static str {
        match self {
            // WsgiDAV and nginx (autoindex) list the root folder; Radicale's `/` redirects to
            // its web page.
            Service::WsgiDav | Service::Nginx => "/",
            Service::Radicale => "/.web/",
        }
    }

    /// The route rules a user writes for this service, from docs/configuration.md.
    fn routes(self) -> &'static str {
        match self {
            // PROPFIND is how WebDAV clients list folders: a read, served by the primary (by
            // default every method but GET, HEAD and OPTIONS is logical, and a PROPFIND's
            // answer — quotas, creation dates, inode ETags — differs between copies). WsgiDAV's
            // HTML status pages (201 Created, 404, 409 ...) end with the moment they were made.
            Service::WsgiDav => {
                r#"
[[routes]]
match = "PROPFIND *"
kind = "read"

[[routes]]
match = "PUT|DELETE|MKCOL|COPY|MOVE|PROPPATCH *"
compare = { noise = ["timestamp"] }
"#
            }
            // CalDAV and CardDAV clients read with PROPFIND and REPORT.
            Service::Radicale => {
                r#"
[[routes]]
match = "PROPFIND|REPORT *"
kind = "read"
"#
            }
            // No rule: nginx's Location names the copy's own address, which the default
            // comparison takes as one value and rewrites to the gateway's.
            Service::Nginx => "",
        }
    }
}

/// The virtualenv holding the pinned PyPI services.
fn venv() -> PathBuf {
    std::env::var_os("LOCKSTEP_THIRD_PARTY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/third-party-venv"))
}

/// The program that runs `service`, or None when the test is skipped on purpose. Fails the
/// test when it is missing: CI installs it (scripts/test), so absence is an error, not a pass.
fn program(service: Service) -> Option<PathBuf> {
    let path = match service {
        Service::WsgiDav => venv().join("bin/wsgidav"),
        Service::Radicale => venv().join("bin/radicale"),
        Service::Nginx => std::env::var_os("LOCKSTEP_NGINX")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx")),
    };
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("LOCKSTEP_SKIP_THIRD_PARTY").is_some_and(|v| v == "1") {
        eprintln!(
            "SKIPPED: {} not found at {} (LOCKSTEP_SKIP_THIRD_PARTY=1)",
            service.label(),
            path.display()
        );
        return None;
    }
    let how = match service {
        Service::Nginx => {
            "apt-get install nginx (scripts/test does it when run as root)".to_owned()
        }
        _ => format!(
            "python3 -m venv {0} && {0}/bin/pip install -r gateway/tests/third_party/requirements.txt \
             (scripts/test does it; LOCKSTEP_THIRD_PARTY_VENV names another virtualenv)",
            venv().display()
        ),
    };
    panic!(
        "{} is missing ({} not found); install it with: {how}; or set LOCKSTEP_SKIP_THIRD_PARTY=1 to skip these tests",
        service.label(),
        path.display()
    );
}

/// One copy of a service: its own port and data directory, started and killed by the test.
struct Instance {
    copy: ServiceCopy,
    /// Where the service keeps its state.
    data: PathBuf,
}

impl Instance {
    fn start(service: Service, program: &Path, name: &str, root: &Path) -> Instance {
        let data = root.join(name).join("data");
        std::fs::create_dir_all(&data).unwrap();
        let (program, state) = (program.to_owned(), data.clone());
        let command = move |home: &Path, port: u16| command(service, &program, home, &state, port);
        Instance {
            copy: ServiceCopy::start(
                service.label(),
                name,
                root,
                service.health_path(),
                Box::new(command),
            ),
            data,
        }
    }

    fn name(&self) -> &str {
        &self.copy.name
    }

    fn url(&self) -> String {
        self.copy.url()
    }

    fn kill(&mut self) {
        self.copy.kill();
    }
}

/// The command line of one copy of `service`, its configuration written into `home`.
fn command(service: Service, program: &Path, home: &Path, data: &Path, port: u16) -> Command {
    let mut cmd = Command::new(program);
    match service {
        Service::WsgiDav => {
            let config = home.join("wsgidav.yaml");
            // Dead properties (PROPPATCH) need a property manager: WsgiDAV's in-memory one.
            let yaml = format!(
                "host: 127.0.0.1\nport: {port}\nprovider_mapping:\n  \"/\": \"{}\"\n\
                 http_authenticator:\n  domain_controller: null\n  accept_basic: false\n  \
                 accept_digest: false\n  default_to_digest: false\n\
                 simple_dc:\n  user_mapping:\n    \"*\": true\n\
                 property_manager: true\nlock_storage: true\nverbose: 1\n",
                data.display()
            );
            std::fs::write(&config, yaml).unwrap();
            cmd.arg("--config").arg(config);
        }
        Service::Radicale => {
            cmd.arg("--config")
                .arg("")
                .arg("--server-hosts")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--storage-filesystem-folder")
                .arg(data)
                .args(["--auth-type", "none"]);
        }
        Service::Nginx => {
            let tmp = home.join("tmp");
            std::fs::create_dir_all(&tmp).unwrap();
            let config = home.join("nginx.conf");
            // One process (no master, no daemon), so that a kill -9 kills the server; every
            // path in the copy's directory, so that it runs without root too.
            let conf = format!(
                "daemon off;\nmaster_process off;\npid {home}/nginx.pid;\nerror_log stderr;\n\
                 events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  \
                 proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n  \
                 uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  \
                 server {{\n    listen 127.0.0.1:{port};\n    root {data};\n    \
                 dav_methods PUT DELETE MKCOL COPY MOVE;\n    \
                 create_full_put_path on;\n    autoindex on;\n  }}\n}}\n",
                home = home.display(),
                tmp = tmp.display(),
                data = data.display()
            );
            std::fs::write(&config, conf).unwrap();
            cmd.args(["-e", "stderr", "-p"])
                .arg(home)
                .arg("-c")
                .arg(config);
        }
    }
    cmd
}

/// Three copies of `service` (`a` the primary) and a gateway in front of them.
struct Deployment {
    service: Service,
    copies: Vec<Instance>,
    gateway: GatewayProc,
    _dir: tempfile::TempDir,
}

impl Deployment {
    fn start(service: Service, program: &Path) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        // Started together: each takes a few hundred milliseconds to boot.
        let copies: Vec<Instance> = std::thread::scope(|s| {
            let handles: Vec<_> = ["a", "b", "c"]
                .into_iter()
                .map(|name| s.spawn(|| Instance::start(service, program, name, dir.path())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let body = services::gateway_config(
            service.health_path(),
            service.routes(),
            &copies.iter().map(|c| &c.copy).collect::<Vec<_>>(),
        );
        let gateway = GatewayProc::start(dir.path(), "batch", &body);
        Deployment {
            service,
            copies,
            gateway,
            _dir: dir,
        }
    }

    fn copy(&self, name: &str) -> &Instance {
        self.copies.iter().find(|c| c.name() == name).unwrap()
    }

    async fn status(&self) -> Value {
        admin_call(self.gateway.admin, reqwest::Method::GET, "/status", None)
            .await
            .1
    }

    async fn state(&self, name: &str) -> String {
        let s = self.status().await;
        backend(&s, name)["state"].as_str().unwrap_or("").to_owned()
    }

    async fn wait_state(&self, name: &str, state: &str) {
        eventually(&format!("{name} {state}"), LIMIT, || async {
            (self.state(name).await == state).then_some(())
        })
        .await;
    }

    /// The gateway log's "backup diverged from the primary" lines.
    fn divergence_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.gateway.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("backup diverged from the primary"))
            .map(str::to_owned)
            .collect()
    }

    /// What a copy holds: every file and folder under its data directory with its content
    /// (Radicale's caches and lock left out), and for WsgiDAV the dead properties.
    async fn contents(&self, copy: &Instance) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        walk(&copy.data, &copy.data, &mut out);
        out.retain(|path, _| {
            !path.contains(".Radicale.cache") && !path.ends_with(".Radicale.lock")
        });
        if self.service == Service::WsgiDav {
            out.insert(
                "(dead properties)".into(),
                dead_properties(copy).await.into_bytes(),
            );
        }
        out
    }

    /// Asserts the named copies hold the same state; returns how many entries they hold.
    async fn assert_identical(&self, names: &[&str]) -> usize {
        let first = self.contents(self.copy(names[0])).await;
        for name in &names[1..] {
            let other = self.contents(self.copy(name)).await;
            let keys = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(
                keys(&first),
                keys(&other),
                "{}: {} and {name} hold the same paths",
                self.service.label(),
                names[0]
            );
            for (path, content) in &first {
                assert!(
                    other[path] == *content,
                    "{}: {path} differs between {} and {name}: {:?} / {:?}",
                    self.service.label(),
                    names[0],
                    String::from_utf8_lossy(content),
                    String::from_utf8_lossy(&other[path])
                );
            }
        }
        first.len()
    }
}

fn backend<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or(&Value::Null)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        if entry.file_type().unwrap().is_dir() {
            out.insert(format!("{rel}/"), Vec::new());
            walk(root, &path, out);
        } else {
            out.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

/// WsgiDAV's dead properties, which it keeps in memory: a PROPFIND of the whole tree straight
/// to the copy, its per-resource answers sorted (folder listing order is the file system's).
async fn dead_properties(copy: &Instance) -> String {
    let body = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:lockstep-test"><D:prop><Z:color/></D:prop></D:propfind>"#;
    let r = client()
        .request(method("PROPFIND"), format!("{}/", copy.url()))
        .header("Depth", "infinity")
        .header("Content-Type", "application/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 207, "PROPFIND on {}", copy.name());
    let text = r.text().await.unwrap();
    let mut parts: Vec<&str> = text.split("<ns0:response>").skip(1).collect();
    parts.sort_unstable();
    parts.join("\n")
}

fn method(name: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(name.as_bytes()).unwrap()
}

/// One request to send.
#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Req {
    fn new(method: &'static str, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Req {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<String>) -> Req {
        self.body = body.into();
        self
    }
}

/// Sends `req` once; the status, headers and body (None on a connection error).
async fn send_once(
    c: &reqwest::Client,
    base: &str,
    req: &Req,
    key: Option<&str>,
) -> Option<(u16, reqwest::header::HeaderMap, String)> {
    let mut r = c
        .request(method(req.method), format!("{base}{}", req.path))
        .body(req.body.clone());
    for (name, value) in &req.headers {
        r = r.header(*name, value);
    }
    if let Some(key) = key {
        r = r.header("Idempotency-Key", key);
    }
    let r = r.send().await.ok()?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Some((status, headers, r.text().await.unwrap_or_default()))
}

/// Whether an answer is the gateway's own refusal to take the request now (its errors are JSON
/// `{"error": ...}`; the services' are HTML, text or XML), so a retry with the same key is due.
fn gateway_busy(status: u16, body: &str) -> bool {
    matches!(status, 409 | 429 | 502 | 503 | 504)
        && serde_json::from_str::<Value>(body).is_ok_and(|v| v.get("error").is_some())
}

/// Sends a write through the gateway with an Idempotency-Key, retrying the same key while the
/// gateway cannot take it (a failover); the service's answer.
async fn write(c: &reqwest::Client, base: &str, req: &Req, key: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((status, _, body)) = send_once(c, base, req, Some(key)).await {
            assert!(
                !body.contains("idempotency_outcome_unknown"),
                "{key}: {} {}: {body}",
                req.method,
                req.path
            );
            if !gateway_busy(status, &body) {
                return (status, body);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{key} ({} {}) never went through",
            req.method,
            req.path
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The mixed workload: the `i`th write for `service` (paths drawn from a small tree, so that
/// writes hit existing resources, missing ones and conflicts alike), or a read.
fn next_request(service: Service, rng: &mut StdRng, i: usize, gateway: &str) -> Req {
    match service {
        Service::WsgiDav | Service::Nginx => webdav_request(service, rng, i, gateway),
        Service::Radicale => caldav_request(rng, i, gateway),
    }
}

fn webdav_request(service: Service, rng: &mut StdRng, i: usize, gateway: &str) -> Req {
    let dir = |rng: &mut StdRng| format!("/d{}/", rng.random_range(0..4));
    let file = |rng: &mut StdRng| format!("{}f{}.txt", dir(rng), rng.random_range(0..12));
    let roll = rng.random_range(0..100);
    match roll {
        0..6 => Req::new("MKCOL", dir(rng)),
        6..46 => {
            let n: u64 = rng.random();
            Req::new("PUT", file(rng)).body(format!("write {i}: {n:x}\n"))
        }
        46..58 => Req::new("DELETE", file(rng)),
        58..76 => {
            let from = file(rng);
            let mut to = file(rng);
            while to == from {
                to = file(rng);
            }
            let m = if roll < 70 { "MOVE" } else { "COPY" };
            Req::new(m, from)
                .header("Destination", format!("http://{gateway}{to}"))
                .header("Overwrite", if rng.random_bool(0.8) { "T" } else { "F" })
        }
        76..78 => Req::new("DELETE", dir(rng)).header("Depth", "infinity"),
        _ if service == Service::Nginx => {
            let n: u64 = rng.random();
            Req::new("PUT", file(rng)).body(format!("write {i}: {n:x}\n"))
        }
        _ => {
            let target = file(rng);
            let update = if rng.random_bool(0.8) {
                format!(
                    "<D:set><D:prop><Z:color>c{}</Z:color></D:prop></D:set>",
                    rng.random_range(0..1000)
                )
            } else {
                "<D:remove><D:prop><Z:color/></D:prop></D:remove>".to_owned()
            };
            Req::new("PROPPATCH", target)
                .header("Content-Type", "application/xml")
                .body(format!(
                    r#"<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:lockstep-test">{update}</D:propertyupdate>"#
                ))
        }
    }
}

fn event(uid: &str, summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//lockstep//third-party test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn vcard(uid: &str, name: &str) -> String {
    format!("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nEND:VCARD\r\n")
}

const ADDRESSBOOK: &str = r#"<?xml version="1.0" encoding="utf-8"?><D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype><D:displayname>Contacts</D:displayname></D:prop></D:set></D:mkcol>"#;

fn caldav_request(rng: &mut StdRng, i: usize, gateway: &str) -> Req {
    if i == 0 {
        return Req::new("MKCOL", "/u/");
    }
    let cal = |rng: &mut StdRng| format!("/u/cal{}/", rng.random_range(0..3));
    let book = |rng: &mut StdRng| format!("/u/book{}/", rng.random_range(0..2));
    let roll = rng.random_range(0..100);
    match roll {
        0..4 => Req::new("MKCALENDAR", cal(rng)),
        4..6 => Req::new("MKCOL", book(rng))
            .header("Content-Type", "application/xml")
            .body(ADDRESSBOOK),
        6..46 => {
            let j = rng.random_range(0..10);
            let n: u32 = rng.random();
            Req::new("PUT", format!("{}e{j}.ics", cal(rng)))
                .header("Content-Type", "text/calendar")
                .body(event(&format!("e{j}"), &format!("meeting {i} {n:x}")))
        }
        46..60 => {
            let j = rng.random_range(0..10);
            let n: u32 = rng.random();
            Req::new("PUT", format!("{}c{j}.vcf", book(rng)))
                .header("Content-Type", "text/vcard")
                .body(vcard(&format!("c{j}"), &format!("Person {n:x}")))
        }
        60..72 => Req::new(
            "DELETE",
            format!("{}e{}.ics", cal(rng), rng.random_range(0..10)),
        ),
        72..80 => {
            let j = rng.random_range(0..10);
            let (from, to) = (cal(rng), cal(rng));
            Req::new("MOVE", format!("{from}e{j}.ics"))
                .header("Destination", format!("http://{gateway}{to}e{j}.ics"))
        }
        80..92 => {
            let prop = if rng.random_bool(0.5) {
                format!("<D:displayname>Calendar {i}</D:displayname>")
            } else {
                format!(
                    "<I:calendar-color>#{:06x}</I:calendar-color>",
                    rng.random_range(0..0xffffff)
                )
            };
            Req::new("PROPPATCH", cal(rng))
                .header("Content-Type", "application/xml")
                .body(format!(
                    r#"<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:I="http://apple.com/ns/ical/"><D:set><D:prop>{prop}</D:prop></D:set></D:propertyupdate>"#
                ))
        }
        92..94 => Req::new("DELETE", cal(rng)),
        _ => Req::new(
            "DELETE",
            format!("{}c{}.vcf", book(rng), rng.random_range(0..10)),
        ),
    }
}

/// A read through the gateway, as a client would list what it has: PROPFIND for the DAV
/// services (a `kind = "read"` route), GET for nginx. Its status.
async fn read(c: &reqwest::Client, base: &str, service: Service) -> u16 {
    let req = match service {
        Service::Nginx => Req::new("GET", "/"),
        Service::WsgiDav => Req::new("PROPFIND", "/").header("Depth", "1"),
        Service::Radicale => Req::new("PROPFIND", "/u/").header("Depth", "1"),
    };
    // Reads are retried like writes while the gateway cannot serve them (the primary was just
    // killed and no backup has taken over yet).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((status, _, body)) = send_once(c, base, &req, None).await {
            if !gateway_busy(status, &body) {
                return status;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}: a read never went through",
            service.label()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `n` writes of the mixed workload through the gateway (keys `prefix-i`), with a read
/// every 20 writes; `progress` counts the writes done. Returns the statuses seen, counted.
async fn run_writes(
    service: Service,
    base: String,
    gateway: String,
    n: usize,
    seed: u64,
    prefix: &str,
    progress: Arc<AtomicUsize>,
) -> BTreeMap<u16, usize> {
    let c = client();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut statuses = BTreeMap::new();
    for i in 0..n {
        let req = next_request(service, &mut rng, i, &gateway);
        let (status, body) = write(&c, &base, &req, &format!("{prefix}-{i}")).await;
        // The service's own answers, 5xx included (nginx answers 500 to a COPY into a missing
        // folder), but never the gateway's errors (JSON `{"error": ...}`).
        assert!(
            serde_json::from_str::<Value>(&body).is_err(),
            "{} {} {} through the gateway: {status} {body}",
            service.label(),
            req.method,
            req.path
        );
        *statuses.entry(status).or_insert(0) += 1;
        progress.fetch_add(1, Ordering::Relaxed);
        if i % 20 == 19 {
            let s = read(&c, &base, service).await;
            assert!(
                matches!(s, 200 | 207),
                "{}: a read answered {s}",
                service.label()
            );
        }
    }
    statuses
}

/// Part 1 and 2: a clean run of mixed writes, then a run during which the primary is killed.
async fn clean_run_then_failover(service: Service) {
    let Some(program) = program(service) else {
        return;
    };
    let started = Instant::now();
    let mut d = Deployment::start(service, &program);
    let gateway = d.gateway.gateway.to_string();
    let base = d.gateway.url();

    let statuses = run_writes(
        service,
        base.clone(),
        gateway.clone(),
        CLEAN_WRITES,
        1,
        "clean",
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    let s = d.status().await;
    let not_in_sync: Vec<String> = ["b", "c"]
        .iter()
        .filter(|n| backend(&s, n)["state"] != "in-sync")
        .map(|n| format!("{n}: {}", backend(&s, n)))
        .collect();
    let false_divergences = d.divergence_lines();
    eprintln!(
        "[{}] clean run: {CLEAN_WRITES} writes in {:.1}s (statuses {statuses:?}), {} false divergences, backups not in-sync: {not_in_sync:?}",
        service.label(),
        started.elapsed().as_secs_f64(),
        false_divergences.len()
    );
    assert!(
        false_divergences.is_empty() && not_in_sync.is_empty(),
        "{}: false divergences: {false_divergences:#?}; backups: {not_in_sync:#?}",
        service.label()
    );
    assert!(
        statuses.len() >= 3,
        "the workload mixes outcomes: {statuses:?}"
    );
    if service == Service::Nginx {
        // nginx names the new file with its own address (`http://127.0.0.1:<its port>/...`):
        // one value for the comparison, and the client sees the gateway's.
        let put = Req::new("PUT", "/located.txt").body("here\n");
        let (status, headers, _) = send_once(&client(), &base, &put, Some("located"))
            .await
            .unwrap();
        assert_eq!(status, 201);
        assert_eq!(
            headers.get("location").and_then(|v| v.to_str().ok()),
            Some(format!("http://{gateway}/located.txt").as_str()),
            "nginx's Location, rewritten to the gateway's address"
        );
    }
    let entries = d.assert_identical(&["a", "b", "c"]).await;
    assert!(
        entries > 10,
        "{}: the copies hold the run's writes",
        service.label()
    );
    eprintln!(
        "[{}] clean run: the three copies are identical ({entries} files and folders)",
        service.label()
    );

    // Part 2: kill -9 of the primary while writes flow.
    let progress = Arc::new(AtomicUsize::new(0));
    let writes = tokio::spawn(run_writes(
        service,
        base.clone(),
        gateway,
        FAILOVER_WRITES,
        2,
        "failover",
        progress.clone(),
    ));
    eventually("writes before the kill", LIMIT, || async {
        (progress.load(Ordering::Relaxed) >= KILL_AT).then_some(())
    })
    .await;
    d.copies[0].kill();
    let killed_at = progress.load(Ordering::Relaxed);
    let kill_time = Instant::now();
    let statuses = writes.await.unwrap();
    eprintln!(
        "[{}] failover: the remaining writes took {:.1}s",
        service.label(),
        kill_time.elapsed().as_secs_f64()
    );
    let s = d.status().await;
    let primary = s["primary"].as_str().unwrap_or("").to_owned();
    assert!(
        primary == "b" || primary == "c",
        "{}: a backup took over: {s}",
        service.label()
    );
    let other = if primary == "b" { "c" } else { "b" };
    assert_eq!(
        backend(&s, other)["state"],
        "in-sync",
        "{}: the other survivor stays in-sync: {s}",
        service.label()
    );
    let false_divergences = d.divergence_lines();
    assert!(
        false_divergences.is_empty(),
        "{}: {false_divergences:#?}",
        service.label()
    );
    let entries = d.assert_identical(&[primary.as_str(), other]).await;
    eprintln!(
        "[{}] failover: primary a killed (kill -9) after {killed_at} of {FAILOVER_WRITES} writes; {primary} took over, {other} in-sync, survivors identical ({entries} entries), statuses {statuses:?}; {:.1}s in all",
        service.label(),
        started.elapsed().as_secs_f64()
    );
}

/// A change made straight to a backup, behind the gateway's back, and the write through the
/// gateway whose answer shows it.
struct Injection {
    what: String,
    direct: Req,
    through: Req,
}

/// Writes through the gateway before the injections: what they change must exist everywhere.
fn seed_requests(service: Service) -> Vec<Req> {
    match service {
        Service::WsgiDav | Service::Nginx => ["b", "c"]
            .iter()
            .map(|n| Req::new("PUT", format!("/seed-{n}.txt")).body(format!("seed {n}\n")))
            .collect(),
        Service::Radicale => {
            let mut v = vec![Req::new("MKCOL", "/u/"), Req::new("MKCALENDAR", "/u/cal/")];
            for n in ["b", "c"] {
                v.push(
                    Req::new("PUT", format!("/u/cal/seed-{n}.ics"))
                        .header("Content-Type", "text/calendar")
                        .body(event(&format!("seed-{n}"), "planning")),
                );
            }
            v
        }
    }
}

/// The `k`th injection, into backup `name`.
fn injection(service: Service, k: usize, name: &str, gateway: &str, etag: &str) -> Injection {
    match service {
        Service::WsgiDav | Service::Nginx => match k % 4 {
            0 => Injection {
                what: "a file created on the backup alone; then PUT through the gateway (201 vs 204)".into(),
                direct: Req::new("PUT", format!("/x{k}.txt")).body("stray\n"),
                through: Req::new("PUT", format!("/x{k}.txt")).body("real\n"),
            },
            1 => Injection {
                what: "a file deleted on the backup alone; then DELETE through the gateway (204 vs 404)".into(),
                direct: Req::new("DELETE", format!("/seed-{name}.txt")),
                through: Req::new("DELETE", format!("/seed-{name}.txt")),
            },
            2 => Injection {
                what: "a folder created on the backup alone; then MKCOL through the gateway (201 vs 405)".into(),
                direct: Req::new("MKCOL", format!("/x{k}/")),
                through: Req::new("MKCOL", format!("/x{k}/")),
            },
            _ => Injection {
                what: "a file deleted on the backup alone; then MOVE through the gateway (2xx vs 404)".into(),
                direct: Req::new("DELETE", format!("/seed-{name}.txt")),
                through: Req::new("MOVE", format!("/seed-{name}.txt"))
                    .header("Destination", format!("http://{gateway}/moved-{name}.txt")),
            },
        },
        Service::Radicale => {
            let seed = format!("/u/cal/seed-{name}.ics");
            match k % 4 {
                0 => Injection {
                    what: "an event created on the backup alone; then PUT with If-None-Match: * through the gateway (201 vs 412)".into(),
                    direct: Req::new("PUT", format!("/u/cal/x{k}.ics"))
                        .header("Content-Type", "text/calendar")
                        .body(event(&format!("x{k}"), "stray")),
                    through: Req::new("PUT", format!("/u/cal/x{k}.ics"))
                        .header("Content-Type", "text/calendar")
                        .header("If-None-Match", "*")
                        .body(event(&format!("x{k}"), "real")),
                },
                1 => Injection {
                    what: "an event edited on the backup alone; then PUT with the primary's If-Match through the gateway (204 vs 412)".into(),
                    direct: Req::new("PUT", seed.clone())
                        .header("Content-Type", "text/calendar")
                        .body(event(&format!("seed-{name}"), "edited behind the gateway")),
                    through: Req::new("PUT", seed)
                        .header("Content-Type", "text/calendar")
                        .header("If-Match", etag)
                        .body(event(&format!("seed-{name}"), "moved to Tuesday")),
                },
                2 => Injection {
                    what: "an event deleted on the backup alone; then DELETE through the gateway (200 vs 404)".into(),
                    direct: Req::new("DELETE", seed.clone()),
                    through: Req::new("DELETE", seed),
                },
                _ => Injection {
                    what: "a calendar created on the backup alone; then MKCALENDAR through the gateway".into(),
                    direct: Req::new("MKCALENDAR", format!("/u/x{k}/")),
                    through: Req::new("MKCALENDAR", format!("/u/x{k}/")),
                },
            }
        }
    }
}

/// Part 3: divergences injected into backups, two per fresh deployment, all detected.
async fn injected_divergences_are_detected(service: Service) {
    let Some(program) = program(service) else {
        return;
    };
    let started = Instant::now();
    let c = client();
    let (mut injected, mut detected) = (0, 0);
    let mut missed = Vec::new();
    while injected < INJECTIONS {
        let d = Deployment::start(service, &program);
        let base = d.gateway.url();
        let gateway = d.gateway.gateway.to_string();
        let mut etags = BTreeMap::new();
        for (i, req) in seed_requests(service).iter().enumerate() {
            let key = format!("seed-{injected}-{i}");
            let r = send_once(&c, &base, req, Some(&key)).await.unwrap();
            assert!(
                r.0 < 300,
                "{}: seeding {} {}: {r:?}",
                service.label(),
                req.method,
                req.path
            );
            if let Some(etag) = r.1.get("etag") {
                etags.insert(req.path.clone(), etag.to_str().unwrap().to_owned());
            }
        }
        for name in ["b", "c"] {
            assert_eq!(
                d.state(name).await,
                "in-sync",
                "{name} before the injection"
            );
            let k = injected;
            let etag = etags
                .get(&format!("/u/cal/seed-{name}.ics"))
                .cloned()
                .unwrap_or_default();
            let inj = injection(service, k, name, &gateway, &etag);
            let copy = d.copy(name);
            let direct = send_once(&c, &copy.url(), &inj.direct, None).await.unwrap();
            assert!(
                direct.0 < 300,
                "{}: injecting into {name} ({}): {direct:?}",
                service.label(),
                inj.what
            );
            injected += 1;
            let (status, body) = write(&c, &base, &inj.through, &format!("reveal-{k}")).await;
            assert!(
                status < 300,
                "{}: the primary took {}: {status} {body}",
                service.label(),
                inj.what
            );
            // The comparison's verdict: the backup leaves the in-sync set as `diverged`.
            let verdict =
                tokio::time::timeout(Duration::from_secs(10), d.wait_state(name, "diverged")).await;
            let state = match verdict {
                Ok(()) => "diverged".to_owned(),
                Err(_) => d.state(name).await,
            };
            if state == "diverged" {
                detected += 1;
                let lines = d.divergence_lines();
                assert!(
                    lines
                        .iter()
                        .any(|l| l.contains(&format!("backend={name} "))),
                    "{}: the log names {name}'s divergence: {lines:#?}",
                    service.label()
                );
                if k < 4 {
                    let s = d.status().await;
                    eprintln!(
                        "[{}] injection {k} ({}): {name} diverged: {}",
                        service.label(),
                        inj.what,
                        backend(&s, name)["detail"]
                    );
                }
            } else {
                missed.push(format!("{name}: {} (state {state})", inj.what));
            }
        }
    }
    eprintln!(
        "[{}] injected {injected} divergences, detected {detected}, missed {missed:?}; {:.1}s",
        service.label(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        detected,
        injected,
        "{}: every injected divergence is detected: {missed:#?}",
        service.label()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsgidav_clean_run_then_failover() {
    clean_run_then_failover(Service::WsgiDav).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsgidav_injected_divergences_are_detected() {
    injected_divergences_are_detected(Service::WsgiDav).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale_clean_run_then_failover() {
    clean_run_then_failover(Service::Radicale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radicale_injected_divergences_are_detected() {
    injected_divergences_are_detected(Service::Radicale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_clean_run_then_failover() {
    clean_run_then_failover(Service::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_injected_divergences_are_detected() {
    injected_divergences_are_detected(Service::Nginx).await;
}
