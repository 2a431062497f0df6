//! Chaos with real processes: demo-bank backends of both implementations behind the gateway
//! (built with the `failpoints` feature), a keyed and retrying client load, and faults injected
//! at moments drawn from a seeded RNG — SIGKILL of the primary, of a backup or of the gateway,
//! a backup or the primary restarted at once having lost its state (empty, or from a snapshot
//! taken earlier), aborts at the named failpoints, network partitions of a backend (network
//! namespaces, veth pairs and iptables DROP rules; root only). After each fault the deployment is
//! brought back (restarts, rejoins through the admin API) and the views are compared; a copy that
//! lost its state must never be trusted again (primary or in-sync) without every deposit
//! acknowledged before its loss; at the end every acknowledged deposit must be on every backend
//! exactly once.
//!
//! With random ids (odd seeds, or `CHAOS_IDS=random`) every bank runs `--ids random`, so each
//! copy shows its own ids for the same accounts, and the account-opening route declares
//! `mint = ["/id"]`: the writers use the ids they were given, the gateway translates them for
//! every copy, and the copies are compared modulo ids (accounts in creation order, by owner).
//!
//! Run by `scripts/chaos` (release build); ignored in the normal test run for its length.
//! Environment: `CHAOS_SEED` (default: drawn), `CHAOS_SECONDS` (the fault phase, default 150),
//! `CHAOS_DIR` (where data and logs go; default: a new temporary directory), `CHAOS_IDS`
//! (`sequential` or `random`; default: by the seed). The last line printed is the JSON summary.
//! On a violation the directory is kept and the test fails.

#[path = "support/procs.rs"]
mod procs;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Writers, each depositing into its own account (writer w's, owned by `w{w}`).
const WRITERS: usize = 4;
/// A deposit not done after this long is given up (and counted as stuck).
const STUCK_AFTER: Duration = Duration::from_secs(120);
/// How long bringing the deployment back after a fault may take.
const HEAL_LIMIT: Duration = Duration::from_secs(240);
/// The pause of each writer between two deposits. Unthrottled, the load outruns what a
/// catch-up into a sqlite copy replays per second, and a rejoin never reaches the tail.
const WRITER_PAUSE: Duration = Duration::from_millis(15);
/// Deposits that must succeed after each recovery before the next fault (and before the first):
/// a fault injected into an idle deployment proves nothing.
const MIN_PROGRESS: u64 = 20;
/// How soon the gateway must stop trusting a copy that restarted having lost its state (its
/// health checks run every 100 ms and see the new boot id).
const NOTICE_LIMIT: Duration = Duration::from_secs(10);

/// The faults, with their weights in the shuffled deck they are dealt from (every kind comes up
/// once per deck, so a short run still sees each).
const DECK: &[(&str, usize)] = &[
    ("kill-primary", 2),
    ("kill-backup", 2),
    ("kill-gateway", 2),
    ("backup-restarts-empty", 1),
    ("backup-restarts-old", 1),
    ("primary-restarts-empty", 1),
    ("primary-restarts-old", 1),
    ("partition-primary", 1),
    ("partition-backup", 1),
    ("journal-before-fsync", 1),
    ("after-primary-before-backups", 1),
    ("before-commit-record", 1),
    ("mid-catch-up", 1),
    ("during-promotion", 1),
];

// ---------------------------------------------------------------------------------------------
// The record of a run

/// Every step of the run, timestamped, in `events.log`; some of it echoed on stdout.
struct Timeline {
    start: Instant,
    file: Mutex<std::fs::File>,
}

impl Timeline {
    fn new(path: &Path) -> Timeline {
        Timeline {
            start: Instant::now(),
            file: Mutex::new(std::fs::File::create(path).unwrap()),
        }
    }

    fn log(&self, echo: bool, msg: &str) {
        let line = format!("[{:8.3}s] {msg}", self.start.elapsed().as_secs_f64());
        let _ = writeln!(self.file.lock(), "{line}");
        if echo {
            println!("chaos: {line}");
        }
    }

    /// Logged and printed.
    fn say(&self, msg: &str) {
        self.log(true, msg);
    }

    /// Logged only.
    fn note(&self, msg: &str) {
        self.log(false, msg);
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces

/// Runs a command; its stderr as the error when it fails.
fn run(cmd: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace joined to the root namespace by a veth pair: a backend listens on `ip`
/// inside it, and a partition is two iptables DROP rules (INPUT, OUTPUT) there, which cut the
/// backend off from the gateway, established connections included.
struct Netns {
    name: String,
    host_if: String,
    ip: String,
    partitioned: bool,
}

impl Netns {
    /// Namespace `index` of this run; `tag` (the test's process id) keeps concurrent runs
    /// apart, and tells `scripts/chaos` which namespaces a dead run left behind.
    fn create(tag: u32, index: usize) -> Result<Netns, String> {
        let net = format!("10.{}.{}", 200 + (tag / 250) % 50, tag % 250);
        let ns = Netns {
            name: format!("lockstep-chaos-{tag}-{index}"),
            host_if: format!("lsc{tag}h{index}"),
            ip: format!("{net}.{}", index * 4 + 2),
            partitioned: false,
        };
        let peer_if = format!("lsc{tag}p{index}");
        let host_ip = format!("{net}.{}/30", index * 4 + 1);
        let ip = format!("{}/30", ns.ip);
        // Leftovers of an earlier run that had the same tag.
        let _ = run(&["ip", "link", "del", &ns.host_if]);
        let _ = run(&["ip", "netns", "del", &ns.name]);
        run(&["ip", "netns", "add", &ns.name])?;
        let inside = |args: &[&str]| {
            let mut cmd = vec!["ip", "netns", "exec", ns.name.as_str()];
            cmd.extend_from_slice(args);
            run(&cmd)
        };
        run(&[
            "ip",
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ])?;
        run(&["ip", "link", "set", &peer_if, "netns", &ns.name])?;
        run(&["ip", "addr", "add", &host_ip, "dev", &ns.host_if])?;
        run(&["ip", "link", "set", &ns.host_if, "up"])?;
        inside(&["ip", "addr", "add", &ip, "dev", &peer_if])?;
        inside(&["ip", "link", "set", &peer_if, "up"])?;
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&["iptables", "-L", "-n"])?;
        Ok(ns)
    }

    fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = vec!["ip", "netns", "exec", self.name.as_str()];
        cmd.extend_from_slice(args);
        run(&cmd)
    }

    fn partition(&mut self) -> Result<(), String> {
        for chain in ["INPUT", "OUTPUT"] {
            self.exec(&["iptables", "-A", chain, "-j", "DROP"])?;
        }
        self.partitioned = true;
        Ok(())
    }

    fn heal(&mut self) -> Result<(), String> {
        if self.partitioned {
            self.exec(&["iptables", "-F"])?;
            self.partitioned = false;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.host_if]);
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// One namespace per backend, or why there are none (partitions are then skipped).
fn namespaces(n: usize) -> Result<Vec<Netns>, String> {
    if std::env::var("CHAOS_NO_NETNS").is_ok_and(|v| v == "1") {
        return Err("CHAOS_NO_NETNS=1".into());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not running as root".into());
    }
    let tag = std::process::id();
    (0..n).map(|i| Netns::create(tag, i)).collect()
}

// ---------------------------------------------------------------------------------------------
// Processes

/// One demo bank process, on loopback or inside its namespace.
struct Backend {
    name: String,
    implementation: &'static str,
    /// `--ids`: `sequential` or `random`.
    ids: &'static str,
    data: PathBuf,
    log: PathBuf,
    netns: Option<Netns>,
    addr: SocketAddr,
    child: Option<Child>,
    /// Killed and started again since its last rejoin: a memory copy lost its state.
    restarted: bool,
}

impl Backend {
    fn start(
        name: &str,
        implementation: &'static str,
        ids: &'static str,
        dir: &Path,
        netns: Option<Netns>,
    ) -> Self {
        let host = netns
            .as_ref()
            .map_or_else(|| "127.0.0.1".to_owned(), |n| n.ip.clone());
        let mut b = Backend {
            name: name.to_owned(),
            implementation,
            ids,
            data: dir.join(name),
            log: dir.join(format!("backend-{name}.log")),
            netns,
            addr: "127.0.0.1:0".parse().unwrap(),
            child: None,
            restarted: false,
        };
        std::fs::create_dir_all(&b.data).unwrap();
        b.spawn(&format!("{host}:0")).unwrap();
        b
    }

    fn spawn(&mut self, listen: &str) -> Result<(), String> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name])
                    .arg(procs::demo_binary());
                c
            }
            None => Command::new(procs::demo_binary()),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = cmd
            .args([
                "--listen",
                listen,
                "--implementation",
                self.implementation,
                "--ids",
                self.ids,
                "--data",
            ])
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.name))?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        match line.trim().strip_prefix("listening on ") {
            Some(addr) => {
                self.addr = addr.parse().unwrap();
                self.child = Some(child);
                Ok(())
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{} did not start on {listen}", self.name))
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, then starts again on the same address having lost its state: with an emptied
    /// data directory, or with `snapshot` (an export taken earlier) as its state. A sqlite copy
    /// gets the snapshot before it listens on its address (from a first start on another port,
    /// which writes it to the data directory); a memory copy, which keeps nothing across starts,
    /// right after.
    async fn restart_from(&mut self, snapshot: Option<&str>) -> Result<(), String> {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
        std::fs::create_dir_all(&self.data).map_err(|e| format!("{}: {e}", self.name))?;
        let addr = self.addr;
        if let Some(snapshot) = snapshot
            && self.implementation == "sqlite"
        {
            self.spawn(&format!("{}:0", addr.ip()))?;
            let imported = import(&self.url(), snapshot).await;
            self.kill();
            self.addr = addr;
            imported?;
        }
        self.restart().await?;
        if let Some(snapshot) = snapshot
            && self.implementation == "memory"
        {
            import(&self.url(), snapshot).await?;
        }
        Ok(())
    }

    /// Starts again on the same address, with the same data directory.
    async fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let listen = self.addr.to_string();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.spawn(&listen) {
                Ok(()) => {
                    self.restarted = true;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Replaces a demo bank's state with `snapshot` (`POST /admin/import`).
async fn import(base: &str, snapshot: &str) -> Result<(), String> {
    let r = client()
        .post(format!("{base}/admin/import"))
        .header("content-type", "application/json")
        .body(snapshot.to_owned())
        .send()
        .await
        .map_err(|e| format!("import into {base}: {e}"))?;
    match r.status().as_u16() {
        204 => Ok(()),
        status => Err(format!(
            "import into {base}: {status} {}",
            r.text().await.unwrap_or_default()
        )),
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The gateway binary with its configuration; restarted on the same addresses and journal.
struct Gateway {
    gateway: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: usize,
    /// How the last process ended, once it ended by itself.
    last_exit: Option<ExitStatus>,
    /// An exit reaped but not yet reported by `exited`.
    unseen_exit: Option<ExitStatus>,
}

impl Gateway {
    fn new(dir: &Path, config_body: &str) -> Gateway {
        let gateway = procs::free_addr();
        let admin = procs::free_addr();
        let config = dir.join("lockstep.toml");
        let text = format!(
            "[gateway]\nlisten = \"{gateway}\"\ngrace_period = \"0s\"\n\n[admin]\nlisten = \"{admin}\"\n\n[journal]\ndir = \"{}\"\n{config_body}",
            dir.join("journal").display()
        );
        std::fs::write(&config, text).unwrap();
        Gateway {
            gateway,
            admin,
            config,
            log: dir.join("gateway.log"),
            child: None,
            starts: 0,
            last_exit: None,
            unseen_exit: None,
        }
    }

    /// Starts the process, with `FAILPOINTS` set to `failpoints` (or unset).
    fn spawn(&mut self, failpoints: Option<&str>) {
        self.starts += 1;
        self.last_exit = None;
        self.unseen_exit = None;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let _ = writeln!(
            log,
            "===== start {} (FAILPOINTS={}) =====",
            self.starts,
            failpoints.unwrap_or("")
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockstep"));
        cmd.args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(f) = failpoints {
            cmd.env("FAILPOINTS", f);
        }
        self.child = Some(cmd.spawn().expect("lockstep starts"));
    }

    /// Reaps the process if it ended by itself.
    fn reap(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            self.child = None;
            self.last_exit = Some(status);
            self.unseen_exit = Some(status);
        }
    }

    fn running(&mut self) -> bool {
        self.reap();
        self.child.is_some()
    }

    /// How the process ended by itself, once (None while it runs, or when it was killed here).
    fn exited(&mut self) -> Option<ExitStatus> {
        self.reap();
        self.unseen_exit.take()
    }

    /// Waits until both listeners answer; an error when the process ended or `limit` passed.
    async fn ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if !self.running() {
                return Err(match self.last_exit {
                    Some(status) => format!("the gateway exited while starting: {status}"),
                    None => "the gateway is not running".into(),
                });
            }
            let status = admin(self.admin, "GET", "/status", Duration::from_secs(2)).await;
            if status.is_some_and(|(code, v)| code == 200 && v["primary"].is_string())
                && tokio::net::TcpStream::connect(self.gateway).await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the gateway did not become ready".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.unseen_exit = None;
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    async fn stop(&mut self) {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return;
        };
        let _ = run(&["kill", "-TERM", &pid.to_string()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
    }

    fn url(&self) -> String {
        format!("http://{}", self.gateway)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One admin request: the status code and the JSON answer, or None when it could not be made.
async fn admin(
    at: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Option<(u16, Value)> {
    let c = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = c
        .request(method, format!("http://{at}{path}"))
        .send()
        .await
        .ok()?;
    let code = r.status().as_u16();
    let text = r.text().await.ok()?;
    Some((
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

// ---------------------------------------------------------------------------------------------
// The workload

/// What one writer saw.
#[derive(Debug, Default)]
struct WriterLog {
    /// Deposits answered with a 2xx: each must be applied exactly once.
    done: u64,
    /// Deposits whose outcome the client cannot know (given up, or refused as unknown): each may
    /// or may not have been applied.
    uncertain: u64,
    /// 2xx answers whose balance does not fit the deposits before them (each counted once: the
    /// answers after one are judged against its balance).
    bad_answers: Vec<String>,
    /// How far the balances answered are off since the last bad answer.
    shift: i64,
    /// Answers no retry can change (400, 404, 422...).
    unexpected: Vec<String>,
    /// Deposits given up after `STUCK_AFTER`.
    stuck: u64,
}

struct Load {
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    /// Deposits acknowledged so far, by writer.
    acked: Arc<Vec<AtomicU64>>,
    statuses: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Each writer's account id, as the gateway gave it.
    ids: Vec<String>,
    tasks: Vec<tokio::task::JoinHandle<WriterLog>>,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The `id` of a JSON account, as text: a number, or a string with random ids.
fn account_id(account: &Value) -> Option<String> {
    match &account["id"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Writer `w`'s account in a backend's `GET /accounts`, found by its owner: with random ids
/// each copy names it differently.
fn account_of(accounts: &[Value], w: usize) -> Option<&Value> {
    let owner = format!("w{w}");
    accounts.iter().find(|a| a["owner"] == owner.as_str())
}

/// A `GET /accounts` answer without the ids: what copies with random ids must agree on (the
/// accounts in creation order, their owners and balances). Not JSON: the text as it is.
fn modulo_ids(view: &str) -> String {
    match serde_json::from_str::<Vec<Value>>(view) {
        Ok(mut accounts) => {
            for a in &mut accounts {
                if let Some(fields) = a.as_object_mut() {
                    fields.remove("id");
                }
            }
            Value::Array(accounts).to_string()
        }
        Err(_) => view.to_owned(),
    }
}

/// The `error` code of a JSON error body.
fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Sends `body` to `path` with `key` until the answer is final (2xx, or one a retry cannot
/// change); retries the same key on connection errors and 409/500/502/503/504.
async fn keyed(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
    body: &str,
    statuses: &Mutex<BTreeMap<String, u64>>,
) -> Result<(u16, String), String> {
    let started = Instant::now();
    loop {
        let sent = c
            .post(format!("{base}{path}"))
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        let label = match sent {
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "connection error".to_owned(),
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                let code = error_code(&text);
                let retry = matches!(status, 409 | 500 | 502 | 503 | 504)
                    && code != "idempotency_outcome_unknown";
                if !retry {
                    return Ok((status, text));
                }
                format!("{status} {code}")
            }
        };
        *statuses.lock().entry(label).or_default() += 1;
        if started.elapsed() > STUCK_AFTER {
            return Err(format!("no final answer after {STUCK_AFTER:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Load {
    /// Opens one account per writer (keyed), then starts the writers.
    async fn start(base: &str, prefix: &str, timeline: Arc<Timeline>) -> Load {
        let c = client();
        let statuses: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let mut ids = Vec::new();
        for w in 0..WRITERS {
            let body = format!("{{\"owner\":\"w{w}\"}}");
            let (status, text) = keyed(
                &c,
                base,
                "/accounts",
                &format!("{prefix}-open-{w}"),
                &body,
                &statuses,
            )
            .await
            .expect("accounts open before any fault");
            assert_eq!(status, 201, "opening account {}: {text}", w + 1);
            let id = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| account_id(&v))
                .unwrap_or_else(|| panic!("an opened account has an id: {text}"));
            ids.push(id);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let acked: Arc<Vec<AtomicU64>> =
            Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (c, base, stop, progress, acked, statuses, timeline) = (
                c.clone(),
                base.to_owned(),
                stop.clone(),
                progress.clone(),
                acked.clone(),
                statuses.clone(),
                timeline.clone(),
            );
            let prefix = prefix.to_owned();
            let path = format!("/accounts/{}/deposit", ids[w]);
            tasks.push(tokio::spawn(async move {
                let mut log = WriterLog::default();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(WRITER_PAUSE).await;
                    let key = format!("{prefix}-{w}-{i}");
                    i += 1;
                    match keyed(&c, &base, &path, &key, "{\"amount\":1}", &statuses).await {
                        Ok((status, text)) if (200..300).contains(&status) => {
                            let balance = serde_json::from_str::<Value>(&text)
                                .ok()
                                .and_then(|v| v["balance"].as_u64());
                            let low = (log.done + 1) as i64 + log.shift;
                            let high = low + log.uncertain as i64;
                            let balance = balance.map(|b| b as i64);
                            if !balance.is_some_and(|b| (low..=high).contains(&b)) {
                                timeline.say(&format!(
                                    "writer {w}: {key}: {status} {text}, expected a balance in {low}..={high}"
                                ));
                                log.bad_answers.push(format!(
                                    "{key}: {status} {text}, expected a balance in {low}..={high}"
                                ));
                                if let Some(b) = balance {
                                    log.shift = b - (log.done + 1) as i64;
                                }
                            }
                            log.done += 1;
                            acked[w].fetch_add(1, Ordering::Relaxed);
                            progress.fetch_add(1, Ordering::Relaxed);
                            *statuses.lock().entry("2xx".into()).or_default() += 1;
                        }
                        Ok((409, text)) => {
                            // idempotency_outcome_unknown: the gateway will not run it again.
                            timeline.say(&format!("writer {w}: {key}: 409 {text}"));
                            log.uncertain += 1;
                            *statuses
                                .lock()
                                .entry(format!("409 {}", error_code(&text)))
                                .or_default() += 1;
                        }
                        Ok((status, text)) => {
                            timeline.say(&format!("writer {w}: {key}: {status} {text}"));
                            log.unexpected.push(format!("{key}: {status} {text}"));
                        }
                        Err(e) => {
                            timeline.say(&format!("writer {w}: {key}: {e}"));
                            log.stuck += 1;
                            log.uncertain += 1;
                        }
                    }
                }
                log
            }));
        }
        Load {
            stop,
            progress,
            acked,
            statuses,
            ids,
            tasks,
        }
    }

    fn done(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Waits until `n` more deposits succeeded; false after `limit`.
    async fn advance(&self, n: u64, limit: Duration) -> bool {
        let target = self.done() + n;
        let deadline = Instant::now() + limit;
        while self.done() < target {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops the writers (each finishes the deposit it is on); what each saw.
    async fn stop(self) -> (Vec<WriterLog>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut logs = Vec::new();
        for t in self.tasks {
            logs.push(t.await.unwrap());
        }
        let statuses = self.statuses.lock().clone();
        (logs, statuses)
    }
}

// ---------------------------------------------------------------------------------------------
// The deployment, its faults and its repair

struct Chaos {
    rng: StdRng,
    backends: Vec<Backend>,
    gateway: Gateway,
    timeline: Arc<Timeline>,
    /// Violations found along the way, by kind.
    violations: BTreeMap<&'static str, u64>,
    /// Faults injected, by kind.
    by_kind: BTreeMap<String, u64>,
    skipped: u64,
    /// Failpoints set, and those that fired.
    failpoints_set: u64,
    failpoints_fired: u64,
    /// Why partitions are skipped, when they are.
    no_netns: Option<String>,
    /// Deposits acknowledged so far (the load's counter).
    progress: Arc<AtomicU64>,
    /// Deposits acknowledged so far, by writer (the load's counters).
    acked: Arc<Vec<AtomicU64>>,
    /// Each backend's state exported after the last repair, and when: what a restart from an
    /// old snapshot comes back with.
    snapshots: HashMap<String, (Instant, String)>,
    /// The last copy that lost its state.
    lost: Option<LostState>,
}

/// A copy that restarted having lost its state, and the deposits acknowledged before: whenever
/// the gateway trusts it again (as the primary or in-sync) it must hold every one of them.
struct LostState {
    name: String,
    /// Deposits acknowledged by writer w (account w+1) before the loss.
    floors: Vec<u64>,
    /// Whether its view was checked since the gateway last began to trust it.
    checked: bool,
}

impl Chaos {
    async fn status(&self) -> Option<Value> {
        match admin(self.gateway.admin, "GET", "/status", Duration::from_secs(5)).await {
            Some((200, v)) => Some(v),
            _ => None,
        }
    }

    fn backend_mut(&mut self, name: &str) -> &mut Backend {
        self.backends.iter_mut().find(|b| b.name == name).unwrap()
    }

    fn violation(&mut self, kind: &'static str, detail: &str) {
        *self.violations.entry(kind).or_default() += 1;
        self.timeline.say(&format!("VIOLATION {kind}: {detail}"));
    }

    /// The topology in one line: the primary, the last seq, each backend's role, state and acked
    /// seq.
    fn describe(status: &Value) -> String {
        let backends = status["backends"].as_array().cloned().unwrap_or_default();
        let parts: Vec<String> = backends
            .iter()
            .map(|b| {
                format!(
                    "{}:{}:{}@{}",
                    b["name"].as_str().unwrap_or("?"),
                    b["role"].as_str().unwrap_or("?"),
                    b["state"].as_str().unwrap_or("?"),
                    b["acked_seq"]
                )
            })
            .collect();
        format!(
            "primary {} last_seq {} [{}]",
            status["primary"].as_str().unwrap_or("?"),
            status["last_seq"],
            parts.join(" ")
        )
    }

    fn state_of<'a>(status: &'a Value, name: &str) -> (&'a str, u64) {
        let b = status["backends"]
            .as_array()
            .and_then(|bs| bs.iter().find(|b| b["name"] == name));
        match b {
            Some(b) => (
                b["state"].as_str().unwrap_or("?"),
                b["acked_seq"].as_u64().unwrap_or(0),
            ),
            None => ("?", 0),
        }
    }

    /// Whether a killed backend may be started again now. A memory copy comes back empty, so it
    /// is started only once the gateway no longer counts on it: not the primary, not in-sync, and
    /// not `down` with nothing sequenced since (a `down` backend that missed nothing is readmitted
    /// as in-sync by its health checks).
    fn safe_to_restart(status: &Value, b: &Backend) -> bool {
        if b.implementation != "memory" {
            return true;
        }
        let (state, acked) = Self::state_of(status, &b.name);
        let last = status["last_seq"].as_u64().unwrap_or(0);
        status["primary"] != b.name.as_str()
            && state != "in-sync"
            && state != "?"
            && (state != "down" || acked < last)
    }

    /// Brings everything back: the network, the gateway, the killed backends; rejoins every
    /// backend that is not in-sync. Returns once every backend is in-sync.
    async fn heal(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + HEAL_LIMIT;
        for b in &mut self.backends {
            if let Some(ns) = &mut b.netns {
                ns.heal()?;
            }
        }
        let mut attempts: HashMap<String, u32> = HashMap::new();
        let mut last = String::new();
        loop {
            if Instant::now() > deadline {
                return Err(format!("the deployment did not come back: {last}"));
            }
            if let Some(exit) = self.gateway.exited() {
                // Nothing here stops the gateway without reaping it: it ended by itself.
                self.violation("gateway-crash", &format!("the gateway exited: {exit}"));
            }
            if !self.gateway.running() {
                self.gateway.spawn(None);
                match self.gateway.ready(Duration::from_secs(60)).await {
                    Ok(()) => self.timeline.note("gateway restarted"),
                    Err(e) => {
                        // Exit code 1 is a start-up refusal (an address still taken); anything
                        // else (a panic, a signal) is a crash.
                        let crashed = self.gateway.last_exit.is_some_and(|s| s.code() != Some(1));
                        if crashed {
                            self.violation("gateway-crash", &e);
                        } else {
                            self.timeline.say(&format!("restarting the gateway: {e}"));
                        }
                        self.gateway.kill();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let Some(status) = self.status().await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let described = Self::describe(&status);
            if described != last {
                self.timeline.note(&format!("status: {described}"));
                last = described;
            }
            self.check_trust(&status).await;
            for i in 0..self.backends.len() {
                if !self.backends[i].running() && Self::safe_to_restart(&status, &self.backends[i])
                {
                    let b = &mut self.backends[i];
                    b.restart().await?;
                    let msg = format!("{} restarted on {}", b.name, b.addr);
                    self.timeline.note(&msg);
                }
            }
            let all_in_sync = self
                .backends
                .iter()
                .all(|b| b.running() && Self::state_of(&status, &b.name).0 == "in-sync");
            if all_in_sync {
                // A restarted gateway serves its status while it still recovers, with the
                // states it restored; a view check waits until the recovery is over.
                let _ = admin(
                    self.gateway.admin,
                    "GET",
                    "/verify",
                    Duration::from_secs(60),
                )
                .await;
                let again = self.status().await;
                let confirmed = again.is_some_and(|s| {
                    self.backends
                        .iter()
                        .all(|b| Self::state_of(&s, &b.name).0 == "in-sync")
                });
                if confirmed {
                    return Ok(());
                }
                continue;
            }
            let primary = status["primary"].as_str().unwrap_or("").to_owned();
            if Self::state_of(&status, &primary).0 != "in-sync" {
                // The primary itself is out: hand the role to an in-sync backup, then rejoin it.
                let successor = self
                    .backends
                    .iter()
                    .find(|b| b.name != primary && Self::state_of(&status, &b.name).0 == "in-sync")
                    .map(|b| b.name.clone());
                if let Some(s) = successor {
                    let r = admin(
                        self.gateway.admin,
                        "POST",
                        &format!("/backends/{s}/promote"),
                        Duration::from_secs(60),
                    )
                    .await;
                    self.timeline
                        .note(&format!("promote {s} (primary {primary} is out): {r:?}"));
                    continue;
                }
            }
            let mut rejoined = false;
            for i in 0..self.backends.len() {
                let (state, _) = Self::state_of(&status, &self.backends[i].name);
                if !matches!(state, "lagging" | "suspect" | "diverged")
                    || !self.backends[i].running()
                    || self.backends[i].name == primary
                {
                    continue;
                }
                let name = self.backends[i].name.clone();
                let n = attempts.entry(name.clone()).or_default();
                *n += 1;
                let tries = *n;
                let lost_state =
                    self.backends[i].restarted && self.backends[i].implementation == "memory";
                let reset =
                    lost_state || state == "diverged" || tries > 1 || self.rng.random_bool(0.5);
                let path = if reset {
                    format!("/backends/{name}/rejoin?reset=true")
                } else {
                    format!("/backends/{name}/rejoin")
                };
                let started = Instant::now();
                let r = admin(self.gateway.admin, "POST", &path, Duration::from_secs(180)).await;
                let ok = r.as_ref().is_some_and(|(code, _)| *code == 200);
                let outcome = match &r {
                    Some((code, v)) => format!("{code} {v}"),
                    None => "no answer".into(),
                };
                self.timeline.note(&format!(
                    "rejoin {name} ({state}, reset={reset}) in {} ms: {}",
                    started.elapsed().as_millis(),
                    outcome.chars().take(400).collect::<String>()
                ));
                if ok {
                    self.backends[i].restarted = false;
                }
                rejoined = true;
                break;
            }
            if !rejoined {
                // Down backends come back through their health checks; killed ones wait.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The copy that lost its state, once the gateway trusts it again (the primary, or in-sync),
    /// must hold every deposit acknowledged before its loss: a wrong promotion, a re-admission
    /// or a rejoin that took an empty or old copy for a good one is a violation.
    async fn check_trust(&mut self, status: &Value) {
        let Some(lost) = &self.lost else {
            return;
        };
        let trusted = status["primary"] == lost.name.as_str()
            || Self::state_of(status, &lost.name).0 == "in-sync";
        if !trusted {
            self.lost.as_mut().unwrap().checked = false;
            return;
        }
        if lost.checked {
            return;
        }
        let (name, floors) = (lost.name.clone(), lost.floors.clone());
        let url = self.backends.iter().find(|b| b.name == name).unwrap().url();
        let view = match client().get(format!("{url}/accounts")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            // Not answering is for the health checks; asked again at the next status.
            Err(_) => return,
        };
        self.lost.as_mut().unwrap().checked = true;
        let accounts: Vec<Value> = serde_json::from_str(&view).unwrap_or_default();
        let short: Vec<String> = floors
            .iter()
            .enumerate()
            .filter_map(|(w, floor)| {
                let balance = account_of(&accounts, w).and_then(|a| a["balance"].as_u64());
                balance.is_none_or(|b| b < *floor).then(|| {
                    format!(
                        "account {} holds {balance:?}, {floor} acknowledged before",
                        w + 1
                    )
                })
            })
            .collect();
        if !short.is_empty() {
            self.violation(
                "wrong-trust",
                &format!(
                    "{name} lost its state and is trusted again without acknowledged deposits: {}; {}",
                    short.join(", "),
                    Self::describe(status)
                ),
            );
        }
    }

    /// Exports every running backend's state (`GET /admin/export`, straight from the backend):
    /// the old snapshots of the next faults.
    async fn save_snapshots(&mut self) {
        for b in &self.backends {
            if !b.running() {
                continue;
            }
            let exported = client()
                .get(format!("{}/admin/export", b.url()))
                .send()
                .await;
            if let Ok(r) = exported
                && r.status().as_u16() == 200
                && let Ok(text) = r.text().await
            {
                self.snapshots
                    .insert(b.name.clone(), (Instant::now(), text));
            }
        }
    }

    /// Restarts `victim` empty or from its old snapshot, and waits until the gateway no longer
    /// trusts it. A backup is restarted at once: a write that reaches it before its health check
    /// names the new instance is compared with the primary's answer. The primary is restarted
    /// once the gateway has failed over: a write that reached it restarted before the next health
    /// check would be answered from the lost state and eject the good backups (the documented
    /// limit of `[health] identity_header`, see docs/testing.md).
    async fn restart_lost(&mut self, kind: &str, victim: &str, status: &Value) -> bool {
        let snapshot = if kind.ends_with("-old") {
            match self.snapshots.get(victim) {
                Some((at, s)) => Some((at.elapsed(), s.clone())),
                None => {
                    self.timeline
                        .say(&format!("{kind}: no snapshot of {victim} yet; skipped"));
                    self.skipped += 1;
                    return false;
                }
            }
        } else {
            None
        };
        let floors: Vec<u64> = self
            .acked
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        if kind.starts_with("primary-") {
            self.backend_mut(victim).kill();
            if !self.wait_out_of_sync(victim, NOTICE_LIMIT).await {
                let status = self.status().await.map(|s| Self::describe(&s));
                self.violation(
                    "unnoticed",
                    &format!("the primary {victim} was killed and is still trusted after {NOTICE_LIMIT:?}: {status:?}"),
                );
            }
        }
        let b = self.backend_mut(victim);
        let restarted = b
            .restart_from(snapshot.as_ref().map(|(_, s)| s.as_str()))
            .await;
        let what = match &snapshot {
            Some((age, _)) => format!("with its state of {} ms earlier", age.as_millis()),
            None => "empty".to_owned(),
        };
        let msg = format!(
            "{kind}: SIGKILL {victim} ({}), restarted {what}: {restarted:?}; {}",
            b.implementation,
            Self::describe(status)
        );
        self.timeline.say(&msg);
        if let Err(e) = restarted {
            self.violation("harness", &format!("{victim} could not be restarted: {e}"));
            return false;
        }
        self.lost = Some(LostState {
            name: victim.to_owned(),
            floors,
            checked: false,
        });
        if !self.wait_out_of_sync(victim, NOTICE_LIMIT).await {
            let status = self.status().await.map(|s| Self::describe(&s));
            self.violation(
                "unnoticed",
                &format!("{victim} lost its state and is still trusted after {NOTICE_LIMIT:?}: {status:?}"),
            );
        }
        true
    }

    /// Compares every in-sync backup's view with the primary's (`GET /verify`).
    async fn verify(&mut self, when: &str) {
        let r = admin(
            self.gateway.admin,
            "GET",
            "/verify",
            Duration::from_secs(30),
        )
        .await;
        let Some((200, report)) = r else {
            self.timeline
                .say(&format!("verify {when}: could not run: {r:?}"));
            return;
        };
        let backends = report["backends"].as_array().cloned().unwrap_or_default();
        for b in backends {
            if b["state"] == "in-sync" && b["equal"] == false && b.get("error").is_none() {
                let detail = format!(
                    "{when}: {} differs from the primary {}: {}",
                    b["name"], report["primary"], b["differences"]
                );
                self.violation("views-differ", &detail);
            }
        }
    }

    /// Waits until the gateway no longer has `name` in-sync (at most `limit`).
    async fn wait_out_of_sync(&self, name: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.status().await {
                if s["primary"] != name && Self::state_of(&s, name).0 != "in-sync" {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Waits until `n` more deposits were acknowledged; false after `limit`.
    async fn advance(&self, n: u64, limit: Duration) -> bool {
        let target = self.progress.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + limit;
        while self.progress.load(Ordering::Relaxed) < target {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn count(&mut self, kind: &str) {
        *self.by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// Injects one fault of `kind`; false when it was skipped.
    async fn inject(&mut self, kind: &str) -> bool {
        let Some(status) = self.status().await else {
            self.timeline
                .say(&format!("{kind}: no status from the gateway; skipped"));
            self.skipped += 1;
            return false;
        };
        let primary = status["primary"].as_str().unwrap_or("").to_owned();
        let backups: Vec<String> = self
            .backends
            .iter()
            .filter(|b| b.name != primary && Self::state_of(&status, &b.name).0 == "in-sync")
            .map(|b| b.name.clone())
            .collect();
        let victim_backup = backups
            .get(self.rng.random_range(0..backups.len().max(1)))
            .cloned();
        let linger = Duration::from_millis(self.rng.random_range(200..2000));
        match kind {
            "kill-primary" | "kill-backup" => {
                let victim = if kind == "kill-primary" {
                    Some(primary)
                } else {
                    victim_backup
                };
                let Some(victim) = victim else {
                    self.skipped += 1;
                    return false;
                };
                let b = self.backend_mut(&victim);
                b.kill();
                let msg = format!(
                    "{kind}: SIGKILL {victim} ({}), {}",
                    b.implementation,
                    Self::describe(&status)
                );
                self.timeline.say(&msg);
                tokio::time::sleep(linger).await;
            }
            "kill-gateway" => {
                self.gateway.kill();
                self.timeline.say(&format!(
                    "kill-gateway: SIGKILL, {}",
                    Self::describe(&status)
                ));
                tokio::time::sleep(linger / 2).await;
            }
            "partition-primary" | "partition-backup" => {
                if let Some(why) = &self.no_netns {
                    self.timeline
                        .say(&format!("{kind}: skipped (no network namespaces: {why})"));
                    self.skipped += 1;
                    return false;
                }
                let victim = if kind == "partition-primary" {
                    Some(primary)
                } else {
                    victim_backup
                };
                let Some(victim) = victim else {
                    self.skipped += 1;
                    return false;
                };
                let hold = Duration::from_millis(self.rng.random_range(1000..4000));
                let ns = self.backend_mut(&victim).netns.as_mut().unwrap();
                if let Err(e) = ns.partition() {
                    self.timeline.say(&format!("{kind}: {e}; skipped"));
                    self.skipped += 1;
                    return false;
                }
                self.timeline.say(&format!(
                    "{kind}: {victim} cut off for {} ms, {}",
                    hold.as_millis(),
                    Self::describe(&status)
                ));
                tokio::time::sleep(hold).await;
            }
            "backup-restarts-empty"
            | "backup-restarts-old"
            | "primary-restarts-empty"
            | "primary-restarts-old" => {
                // The primary loses its state only while an in-sync backup holds every write.
                let victim = if kind.starts_with("primary-") {
                    (!backups.is_empty()).then_some(primary)
                } else {
                    victim_backup
                };
                let Some(victim) = victim else {
                    self.skipped += 1;
                    return false;
                };
                if !self.restart_lost(kind, &victim, &status).await {
                    return false;
                }
            }
            failpoint => return self.failpoint(failpoint, &status).await,
        }
        self.count(kind);
        true
    }

    /// Restarts the gateway with the failpoint `name` set, provokes it when it needs a catch-up
    /// or a promotion, and waits for the abort.
    async fn failpoint(&mut self, name: &str, status: &Value) -> bool {
        if !cfg!(feature = "failpoints") {
            self.timeline.say(&format!(
                "{name}: skipped (built without the `failpoints` feature)"
            ));
            self.skipped += 1;
            return false;
        }
        let spec = match name {
            "journal-before-fsync" => {
                format!("{name}={}%return", self.rng.random_range(1..=4))
            }
            "after-primary-before-backups" | "before-commit-record" => {
                format!("{name}={}%return", self.rng.random_range(5..=25))
            }
            "mid-catch-up" => format!("{name}={}%return", self.rng.random_range(2..=10)),
            _ => format!("{name}=100%return"),
        };
        self.timeline.say(&format!(
            "{name}: gateway restarted with FAILPOINTS={spec}, {}",
            Self::describe(status)
        ));
        self.gateway.stop().await;
        self.gateway.spawn(Some(&spec));
        self.failpoints_set += 1;
        let up = self.gateway.ready(Duration::from_secs(30)).await;
        // A catch-up or a failover during the start-up recovery goes another way: wait until the
        // gateway admits writes again.
        let provoked = matches!(name, "mid-catch-up" | "during-promotion");
        let admitted = up.is_ok() && provoked && self.advance(5, Duration::from_secs(15)).await;
        if admitted {
            match name {
                "mid-catch-up" => self.provoke_catch_up().await,
                "during-promotion" => {
                    // Only with a successor: killing the only copy that has everything is not a
                    // single fault (a memory primary comes back empty).
                    if let Some(s) = self.status().await {
                        let primary = s["primary"].as_str().unwrap_or("").to_owned();
                        let successor = self.backends.iter().any(|b| {
                            b.name != primary && Self::state_of(&s, &b.name).0 == "in-sync"
                        });
                        if successor {
                            self.backend_mut(&primary).kill();
                            self.timeline
                                .note(&format!("during-promotion: SIGKILL the primary {primary}"));
                        } else {
                            self.timeline.say(&format!(
                                "during-promotion: no in-sync backup after the restart, the primary is not killed: {}",
                                Self::describe(&s)
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if !self.gateway.running() {
                // Reported here, not as a crash.
                self.gateway.exited();
                break self.gateway.last_exit;
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        match exit {
            Some(s) if s.signal() == Some(6) => {
                self.failpoints_fired += 1;
                self.timeline.say(&format!("{name}: the gateway aborted"));
                self.count(name);
            }
            other => {
                self.gateway.kill();
                self.timeline.say(&format!(
                    "{name}: did not fire ({other:?}); the gateway was killed instead"
                ));
                self.count("kill-gateway");
            }
        }
        true
    }

    /// Takes a backup out (SIGKILL, restart) and starts its rejoin, so that a catch-up runs.
    async fn provoke_catch_up(&mut self) {
        let Some(s) = self.status().await else {
            return;
        };
        let primary = s["primary"].as_str().unwrap_or("").to_owned();
        let backups: Vec<String> = self
            .backends
            .iter()
            .filter(|b| b.name != primary && Self::state_of(&s, &b.name).0 == "in-sync")
            .map(|b| b.name.clone())
            .collect();
        let Some(victim) = backups
            .get(self.rng.random_range(0..backups.len().max(1)))
            .cloned()
        else {
            return;
        };
        self.backend_mut(&victim).kill();
        self.timeline
            .note(&format!("mid-catch-up: SIGKILL {victim} to rejoin it"));
        if !self
            .wait_out_of_sync(&victim, Duration::from_secs(10))
            .await
        {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Some(s) = self.status().await else {
                return;
            };
            if Self::safe_to_restart(&s, self.backend_mut(&victim)) {
                break;
            }
            if Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.backend_mut(&victim).restart().await.is_err() {
            return;
        }
        let r = admin(
            self.gateway.admin,
            "POST",
            &format!("/backends/{victim}/rejoin?reset=true"),
            Duration::from_secs(60),
        )
        .await;
        if r.as_ref().is_some_and(|(code, _)| *code == 200) {
            self.backend_mut(&victim).restarted = false;
        }
        self.timeline
            .note(&format!("mid-catch-up: rejoin {victim}: {r:?}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The run

fn config_body(
    backends: &[Backend],
    fsync: &str,
    per_account_lanes: bool,
    random_ids: bool,
) -> String {
    let mut s = format!(
        "fsync = \"{fsync}\"\n\n[health]\ninterval = \"100ms\"\ntimeout = \"250ms\"\nidentity_header = \"x-boot-id\"\n\n[replication]\nbackup_timeout = \"2s\"\nprimary_timeout = \"2s\"\n\n[checkpoint]\nexport = {{ request = \"GET /admin/export\" }}\nimport = {{ request = \"POST /admin/import\" }}\nevery = 5000\nkeep = 2\n\n[[verify.probes]]\nrequest = \"GET /accounts\"\n"
    );
    if random_ids {
        // Each copy names a new account its own way: the client gets the primary's id.
        s.push_str("\n[[routes]]\nmatch = \"POST /accounts\"\nmint = [\"/id\"]\n");
    }
    if per_account_lanes {
        s.push_str(
            "\n[[routes]]\nmatch = \"POST /accounts/{id}/deposit\"\nkind = \"logical\"\nlane = \"{id}\"\n",
        );
    }
    for (i, b) in backends.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "backup" };
        s.push_str(&format!(
            "\n[[backends]]\nname = \"{}\"\nurl = \"{}\"\nrole = \"{role}\"\nimplementation = \"{}\"\nreset = {{ request = \"POST /admin/reset\" }}\n",
            b.name,
            b.url(),
            b.implementation
        ));
    }
    s
}

/// The balances a backend holds against what the writers were told: (lost, duplicated).
fn tally(view: &str, logs: &[WriterLog]) -> Result<(u64, u64), String> {
    let accounts: Vec<Value> =
        serde_json::from_str(view).map_err(|e| format!("not a list of accounts: {e}: {view}"))?;
    let mut lost = 0;
    let mut duplicated = accounts.len().saturating_sub(logs.len()) as u64;
    for (w, log) in logs.iter().enumerate() {
        let balance = account_of(&accounts, w).and_then(|a| a["balance"].as_u64());
        let Some(balance) = balance else {
            lost += log.done + 1;
            continue;
        };
        lost += log.done.saturating_sub(balance);
        duplicated += balance.saturating_sub(log.done + log.uncertain);
    }
    Ok((lost, duplicated))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run with scripts/chaos"]
async fn chaos() {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("chaos: seed {seed}");
    let seconds: u64 = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let dir = match std::env::var_os("CHAOS_DIR") {
        Some(d) => PathBuf::from(d),
        None => tempfile::Builder::new()
            .prefix("lockstep-chaos-")
            .tempdir()
            .unwrap()
            .keep(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let timeline = Arc::new(Timeline::new(&dir.join("events.log")));
    let mut rng = StdRng::seed_from_u64(seed);

    // The options this seed stands for.
    let fsync = ["always", "batch", "never"][rng.random_range(0..3)];
    let per_account_lanes = rng.random_bool(0.5);
    // Not drawn from the RNG, so that a seed keeps the schedule it had before random ids.
    let random_ids = match std::env::var("CHAOS_IDS").as_deref() {
        Ok("random") => true,
        Ok("sequential") => false,
        Ok("") | Err(_) => seed % 2 == 1,
        Ok(other) => panic!("CHAOS_IDS is sequential or random, not {other:?}"),
    };
    let ids = if random_ids { "random" } else { "sequential" };
    let sqlite_at = rng.random_range(0..3);
    let implementations: Vec<&'static str> = (0..3)
        .map(|i| {
            if i == sqlite_at || (i + 1) % 3 == sqlite_at && rng.random_bool(0.5) {
                "sqlite"
            } else {
                "memory"
            }
        })
        .collect();
    let (mut netns, no_netns) = match namespaces(3) {
        Ok(n) => (n.into_iter().map(Some).collect::<Vec<_>>(), None),
        Err(why) => (vec![None, None, None], Some(why)),
    };
    let names = ["a", "b", "c"];
    let backends: Vec<Backend> = names
        .iter()
        .zip(&implementations)
        .zip(netns.iter_mut())
        .map(|((name, imp), ns)| Backend::start(name, imp, ids, &dir, ns.take()))
        .collect();
    timeline.say(&format!(
        "seed {seed}: {seconds} s of faults, fsync={fsync}, lanes={}, ids={ids}, backends {}, partitions {}, data in {}",
        if per_account_lanes { "per-account" } else { "global" },
        backends
            .iter()
            .map(|b| format!("{}={}@{}", b.name, b.implementation, b.addr))
            .collect::<Vec<_>>()
            .join(" "),
        match &no_netns {
            None => "on (network namespaces)".to_owned(),
            Some(why) => format!("skipped ({why})"),
        },
        dir.display()
    ));
    let mut gateway = Gateway::new(
        &dir,
        &config_body(&backends, fsync, per_account_lanes, random_ids),
    );
    gateway.spawn(None);
    gateway
        .ready(Duration::from_secs(60))
        .await
        .expect("the gateway starts");

    let load = Load::start(&gateway.url(), &format!("chaos{seed}"), timeline.clone()).await;
    let mut chaos = Chaos {
        rng,
        backends,
        gateway,
        timeline: timeline.clone(),
        violations: BTreeMap::new(),
        by_kind: BTreeMap::new(),
        skipped: 0,
        failpoints_set: 0,
        failpoints_fired: 0,
        no_netns,
        progress: load.progress.clone(),
        acked: load.acked.clone(),
        snapshots: HashMap::new(),
        lost: None,
    };
    chaos.save_snapshots().await;
    assert!(
        load.advance(MIN_PROGRESS * 5, Duration::from_secs(60))
            .await,
        "too little traffic before the first fault"
    );

    // Faults, dealt from a shuffled deck, each followed by the repair and the checks.
    let mut deck: Vec<&str> = Vec::new();
    let mut faults = 0u64;
    let started = Instant::now();
    let mut broken: Option<String> = None;
    while started.elapsed() < Duration::from_secs(seconds) {
        if deck.is_empty() {
            deck = DECK
                .iter()
                .flat_map(|(kind, weight)| std::iter::repeat_n(*kind, *weight))
                .collect();
            deck.shuffle(&mut chaos.rng);
        }
        let kind = deck.pop().unwrap();
        let calm = Duration::from_millis(chaos.rng.random_range(300..2500));
        tokio::time::sleep(calm).await;
        if chaos.inject(kind).await {
            faults += 1;
        }
        let healing = Instant::now();
        if let Err(e) = chaos.heal().await {
            chaos.violation("stuck", &e);
            broken = Some(e);
            break;
        }
        timeline.note(&format!("healed in {} ms", healing.elapsed().as_millis()));
        chaos.save_snapshots().await;
        chaos
            .verify(&format!("after fault {faults} ({kind})"))
            .await;
        if !load.advance(MIN_PROGRESS, Duration::from_secs(60)).await {
            let status = chaos.status().await.map(|s| Chaos::describe(&s));
            chaos.violation(
                "stuck",
                &format!("no deposits for 60 s after fault {faults} ({kind}): {status:?}"),
            );
            broken = Some("no progress".into());
            break;
        }
    }

    // The end: stop the load, bring everything back, compare.
    timeline.say(&format!(
        "{faults} faults in {} s; stopping the load",
        started.elapsed().as_secs()
    ));
    let writer_ids = load.ids.clone();
    let stopped = tokio::time::timeout(STUCK_AFTER + Duration::from_secs(30), load.stop()).await;
    let Ok((logs, statuses)) = stopped else {
        panic!("the writers did not stop; data in {}", dir.display());
    };
    if broken.is_none() {
        if let Err(e) = chaos.heal().await {
            chaos.violation("stuck", &e);
        }
    }
    chaos.verify("at the end").await;
    // Every in-sync backend (all of them, unless the repair failed) against the writers' counts.
    let final_status = chaos.status().await.unwrap_or_default();
    timeline.say(&format!("at the end: {}", Chaos::describe(&final_status)));
    let c = client();
    let mut lost = 0;
    let mut duplicated = 0;
    let mut views: Vec<(String, String)> = Vec::new();
    for b in &chaos.backends {
        if Chaos::state_of(&final_status, &b.name).0 != "in-sync" {
            continue;
        }
        let view = match c.get(format!("{}/accounts", b.url())).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("unreachable: {e}"),
        };
        views.push((b.name.clone(), view));
    }
    for (name, view) in &views {
        match tally(view, &logs) {
            Ok((l, d)) => {
                lost = lost.max(l);
                duplicated = duplicated.max(d);
                timeline.note(&format!("{name}: {view}"));
            }
            Err(e) => chaos.violation("views-differ", &format!("{name}: {e}")),
        }
    }
    // With random ids each copy shows its own: they must agree on everything else.
    let comparable = |view: &str| {
        if random_ids {
            modulo_ids(view)
        } else {
            view.to_owned()
        }
    };
    for (name, view) in views.iter().skip(1) {
        if comparable(view) != comparable(&views[0].1) {
            chaos.violation(
                "views-differ",
                &format!("{name} {view} vs {} {}", views[0].0, views[0].1),
            );
        }
    }
    // The ids the writers hold reach their own accounts through the gateway (after every
    // failover, restart and replay): the balance there is the one the copies hold.
    if let Some((name, view)) = views.first() {
        let accounts: Vec<Value> = serde_json::from_str(view).unwrap_or_default();
        for (w, id) in writer_ids.iter().enumerate() {
            let held = account_of(&accounts, w).map(|a| a["balance"].clone());
            let read = match c
                .get(format!("{}/accounts/{id}", chaos.gateway.url()))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => format!("unreachable: {e}"),
            };
            let seen = serde_json::from_str::<Value>(&read)
                .ok()
                .filter(|a| a["owner"] == format!("w{w}").as_str())
                .map(|a| a["balance"].clone());
            if seen.is_none() || seen != held {
                chaos.violation(
                    "views-differ",
                    &format!(
                        "writer {w}'s account {id} through the gateway: {read}; {name} holds {held:?}"
                    ),
                );
            }
        }
    }
    if lost > 0 {
        chaos.violation("lost", &format!("{lost} acknowledged deposits missing"));
        *chaos.violations.get_mut("lost").unwrap() = lost;
    }
    if duplicated > 0 {
        chaos.violation(
            "duplicated",
            &format!("{duplicated} deposits applied twice"),
        );
        *chaos.violations.get_mut("duplicated").unwrap() = duplicated;
    }
    for (w, log) in logs.iter().enumerate() {
        for bad in &log.bad_answers {
            chaos.violation("bad-answer", &format!("writer {w}: {bad}"));
        }
        for bad in &log.unexpected {
            chaos.violation("unexpected-answer", &format!("writer {w}: {bad}"));
        }
        if log.stuck > 0 {
            chaos.violation(
                "stuck",
                &format!("writer {w}: {} deposits given up", log.stuck),
            );
        }
    }

    // Backups ejected for answering differently under live traffic: detected and repaired (not a
    // violation), but each one is a copy that was in-sync with a state the primary did not have.
    let live_divergences = std::fs::read_to_string(&chaos.gateway.log)
        .unwrap_or_default()
        .matches("backup diverged from the primary")
        .count();
    timeline.say(&format!(
        "backups ejected as diverged under live traffic: {live_divergences}"
    ));
    let operations: u64 = logs.iter().map(|l| l.done).sum();
    let uncertain: u64 = logs.iter().map(|l| l.uncertain).sum();
    let violations: u64 = chaos.violations.values().sum();
    timeline.say(&format!(
        "{operations} deposits acknowledged ({uncertain} with an unknown outcome); failpoints fired {}/{}; answers while faulted: {statuses:?}",
        chaos.failpoints_fired, chaos.failpoints_set
    ));
    timeline.say(&format!(
        "lost {lost}, duplicated {duplicated}, violations {violations} {:?}",
        chaos.violations
    ));
    assert!(
        faults > 0 && operations >= MIN_PROGRESS * 5,
        "a weak run proves nothing: {faults} faults, {operations} operations"
    );

    let by_kind: Vec<String> = chaos
        .by_kind
        .iter()
        .map(|(kind, n)| format!("\"{kind}\": {n}"))
        .collect();
    let summary = format!(
        "{{\"seed\": {seed}, \"faults\": {faults}, \"operations\": {operations}, \"violations\": {violations}, \"by_kind\": {{{}}}, \"skipped\": {}}}",
        by_kind.join(", "),
        chaos.skipped
    );
    let keep = violations > 0 || std::env::var("CHAOS_KEEP").is_ok_and(|v| v == "1");
    // Processes and namespaces go first (they hold the files).
    drop(chaos);
    if violations > 0 {
        println!(
            "chaos: VIOLATIONS: seed {seed}; logs and data kept in {} (events.log, gateway.log, backend-*.log, journal/)",
            dir.display()
        );
    } else if keep {
        println!("chaos: logs and data kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("{summary}");
    assert_eq!(violations, 0, "seed {seed}: see {}", dir.display());
}
