//! The getting-started guide and the operations guide, executed: every shell command they show
//! runs, in order, against real processes, and what it prints must match the output the guide
//! shows beside it. Ports, process ids, temporary directories, dates, times and durations differ
//! from run to run and are matched as such; everything else must be equal.
//!
//! How a guide marks its blocks (the info string of a fenced code block; GitHub highlights by
//! its first word and ignores the rest):
//!
//! - ```` ```sh ```` runs each line with `bash -c` in a scratch directory, with the workspace's
//!   binaries first on `PATH` (`target/release/` in a command is the tested build) and
//!   `LOCKSTEP_ADMIN` set to the demo's admin listener; `lockstep.toml` there is a copy of
//!   `lockstep.example.toml`. Each line must exit 0 (`exit=N`: the last
//!   one exits N). A line ending in `&` runs in the background until the guide ends; when it
//!   names `--listen ADDR`, the next line waits until ADDR accepts connections.
//! - The first `text` or `json` block after a `sh` block, before the next `sh` block, is what the
//!   `sh` block prints on stdout. `sh unchecked` runs without comparing.
//! - ```` ```sh background=NAME ```` starts its lines in the background and keeps what they
//!   print under NAME; ```` ```text output=NAME ```` later is compared with what NAME printed so far
//!   (the block is a prefix of it), waiting up to 15 s for it to appear. A `text` block right
//!   after a `background` block is its output; without one, the guide goes on once it printed
//!   something.
//! - ```` ```sh no-run ```` is shown only (a build, a production-only example).
//!
//! In expected output: `127.0.0.1:PORT` binds PORT to the port really used (and later commands
//! use the real one); so do `pid N` and `…/lockstep-demo-N` directories. `…` stands for any text
//! within a line, and for any lines when alone on its line. HTTP dates, RFC 3339 times,
//! `N ms`/`N.N s` durations, `"pause_ms"`/`"elapsed_ms"` values, `X-Request-Id` and `ETag`
//! values and UUIDs match any value. JSON output is compared as pretty-printed JSON with sorted keys.

#[path = "support/procs.rs"]
mod procs;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use procs::{demo_binary, free_addr};

/// One fenced code block of a guide.
#[derive(Debug, Clone)]
struct Block {
    lang: String,
    attrs: Vec<String>,
    text: String,
    /// 1-based line of the opening fence.
    line: usize,
}

impl Block {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find_map(|a| {
            if a == name {
                Some("")
            } else {
                a.strip_prefix(name)?.strip_prefix('=')
            }
        })
    }
}

/// The fenced code blocks of `markdown`, in order (indented fences too, as in lists).
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(Block, usize)> = None;
    for (i, raw) in markdown.lines().enumerate() {
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim_start();
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    let mut words = info.split_whitespace();
                    let lang = words.next().unwrap_or("").to_owned();
                    let block = Block {
                        lang,
                        attrs: words.map(str::to_owned).collect(),
                        text: String::new(),
                        line: i + 1,
                    };
                    open = Some((block, indent));
                }
            }
            Some((block, indent)) => {
                if line == "```" {
                    out.push(open.take().unwrap().0);
                } else {
                    let content = raw.get(*indent..).unwrap_or(raw.trim_start());
                    block.text.push_str(content);
                    block.text.push('\n');
                }
            }
        }
    }
    out
}

/// Values the guide shows that differ on every run, bound to the values of this run.
#[derive(Debug, Default)]
struct Bindings {
    /// Guide text → this run's text, for ports (`127.0.0.1:N`), pids and data directories.
    map: BTreeMap<String, String>,
}

impl Bindings {
    /// `command` with every bound value of the guide replaced by this run's, in one pass (a
    /// real value may be another value of the guide).
    fn apply(&self, command: &str) -> String {
        let bound = Regex::new(r"127\.0\.0\.1:\d+|/\S*?/lockstep-demo-\d+|\b\d+\b").unwrap();
        bound
            .replace_all(command, |c: &regex::Captures<'_>| {
                let found = &c[0];
                if let Some(real) = self.map.get(found) {
                    return real.clone();
                }
                // A bare number is a pid when the guide showed it as one.
                match self.map.get(&format!("pid {found}")) {
                    Some(real) => real.trim_start_matches("pid ").to_owned(),
                    None => found.to_owned(),
                }
            })
            .into_owned()
    }
}

/// The kinds of run-dependent values in expected output.
enum Var {
    /// Matches any value.
    Any(&'static str),
    /// Binds the guide's value to this run's (`prefix` kept literally).
    Bind { pattern: &'static str },
}

/// Patterns found in expected output, with what they stand for.
fn var_patterns() -> Vec<(Regex, Var)> {
    let r = |s: &str| Regex::new(s).unwrap();
    vec![
        (
            r(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT"),
            Var::Any(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT"),
        ),
        (
            r(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z"),
            Var::Any(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z"),
        ),
        (r(r"\b\d+(\.\d+)? ms\b"), Var::Any(r"\d+(\.\d+)? ms")),
        (r(r"\b\d+\.\d+ s\b"), Var::Any(r"\d+\.\d+ s")),
        (
            r(r#""(pause_ms|elapsed_ms)": \d+(\.\d+)?"#),
            Var::Any(r#""(pause_ms|elapsed_ms)": \d+(\.\d+)?"#),
        ),
        (
            r(r"(?i)x-request-id: \S+"),
            Var::Any(r"(?i)x-request-id: \S+"),
        ),
        (
            r(r#"(?i)etag: "[0-9a-f]+""#),
            Var::Any(r#"(?i)etag: "[0-9a-f]+""#),
        ),
        (
            r(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
            Var::Any(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        ),
        (
            r(r"127\.0\.0\.1:\d+"),
            Var::Bind {
                pattern: r"127\.0\.0\.1:\d+",
            },
        ),
        (
            r(r"pid \d+"),
            Var::Bind {
                pattern: r"pid \d+",
            },
        ),
        (
            r(r"/\S*?/lockstep-demo-\d+"),
            Var::Bind {
                pattern: r"/\S*?/lockstep-demo-\d+",
            },
        ),
    ]
}

/// A regex for `expected`: literal text, `…`, run-dependent values. Returns the regex and, per
/// capture group, the guide's value it binds.
fn expected_regex(expected: &str, bindings: &Bindings, prefix_only: bool) -> (Regex, Vec<String>) {
    let vars = var_patterns();
    let mut re = String::from("^");
    let mut binds = Vec::new();
    let mut lines = expected.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "…" {
            re.push_str(r"(?:[^\n]*\n)*?");
            continue;
        }
        let mut rest = line;
        while !rest.is_empty() {
            // The earliest variable or ellipsis in what is left of the line.
            let mut best: Option<(usize, usize, Option<&Var>)> = None;
            for (pattern, var) in &vars {
                if let Some(m) = pattern.find(rest) {
                    if best.is_none_or(|(start, _, _)| m.start() < start) {
                        best = Some((m.start(), m.end(), Some(var)));
                    }
                }
            }
            if let Some(i) = rest.find('…') {
                if best.is_none_or(|(start, _, _)| i < start) {
                    best = Some((i, i + '…'.len_utf8(), None));
                }
            }
            let Some((start, end, var)) = best else {
                re.push_str(&regex::escape(rest));
                break;
            };
            re.push_str(&regex::escape(&rest[..start]));
            let found = &rest[start..end];
            match var {
                None => re.push_str("[^\n]*?"),
                Some(Var::Any(p)) => re.push_str(&format!("(?:{p})")),
                Some(Var::Bind { pattern }) => match bindings.map.get(found) {
                    Some(real) => re.push_str(&regex::escape(real)),
                    None => {
                        re.push_str(&format!("({pattern})"));
                        binds.push(found.to_owned());
                    }
                },
            }
            rest = &rest[end..];
        }
        if lines.peek().is_some() || !prefix_only {
            re.push('\n');
        } else {
            re.push_str("(?:\n|$)");
        }
    }
    if !prefix_only {
        re.push('$');
    }
    (
        Regex::new(&re).expect("a valid expected-output regex"),
        binds,
    )
}

/// Whether `actual` matches `expected`; on a match, learns the new bindings.
fn matches(expected: &str, actual: &str, bindings: &mut Bindings, prefix_only: bool) -> bool {
    let (expected, actual) = canonical(expected, actual);
    let (re, binds) = expected_regex(&expected, bindings, prefix_only);
    let Some(caps) = re.captures(&actual) else {
        return false;
    };
    let mut learned: BTreeMap<String, String> = BTreeMap::new();
    for (i, doc) in binds.iter().enumerate() {
        let real = caps.get(i + 1).unwrap().as_str().to_owned();
        match learned.get(doc) {
            Some(seen) if *seen != real => return false,
            _ => {
                learned.insert(doc.clone(), real);
            }
        }
    }
    // Two values of the guide are two values of the run.
    let mut reals: Vec<&String> = learned.values().collect();
    reals.extend(bindings.map.values());
    let count = reals.len();
    reals.sort();
    reals.dedup();
    if reals.len() != count {
        return false;
    }
    bindings.map.extend(learned);
    true
}

/// Both outputs in comparable form: without `\r`, trailing spaces or trailing blank lines;
/// JSON documents pretty-printed with sorted keys.
fn canonical(expected: &str, actual: &str) -> (String, String) {
    let clean = |s: &str| {
        let lines: Vec<&str> = s.lines().map(|l| l.trim_end_matches(['\r', ' '])).collect();
        lines.join("\n").trim_end_matches('\n').to_owned() + "\n"
    };
    let (expected, actual) = (clean(expected), clean(actual));
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    match (json(&expected), json(&actual)) {
        (Some(e), Some(a)) if expected.trim_start().starts_with(['{', '[']) => (
            serde_json::to_string_pretty(&sorted(e)).unwrap() + "\n",
            serde_json::to_string_pretty(&sorted(a)).unwrap() + "\n",
        ),
        _ => (expected, actual),
    }
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A process started by the guide in the background, with what it printed.
struct Background {
    command: String,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        // SIGINT first, as Ctrl-C would: the demo stops its copies and removes its data.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "`{}` did not stop on SIGINT within 10 s; killed",
            self.command
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one guide.
struct Runner {
    guide: String,
    scratch: tempfile::TempDir,
    bin: PathBuf,
    gateway: SocketAddr,
    admin: SocketAddr,
    bindings: Bindings,
    background: BTreeMap<String, Background>,
    /// Background processes without a name (`cmd &`), stopped at the end.
    anonymous: Vec<Background>,
    failures: Vec<String>,
}

impl Runner {
    fn new(guide: &str) -> Runner {
        let lockstep = PathBuf::from(env!("CARGO_BIN_EXE_lockstep"));
        let bin = lockstep.parent().unwrap().to_path_buf();
        assert!(demo_binary().is_file());
        let (gateway, admin) = (free_addr(), free_addr());
        let mut bindings = Bindings::default();
        bindings
            .map
            .insert("127.0.0.1:8080".into(), gateway.to_string());
        bindings
            .map
            .insert("127.0.0.1:8081".into(), admin.to_string());
        // The guides' `lockstep.toml`: the annotated example configuration.
        let scratch = tempfile::tempdir().unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../lockstep.example.toml"),
            scratch.path().join("lockstep.toml"),
        )
        .unwrap();
        Runner {
            guide: guide.to_owned(),
            scratch,
            bin,
            gateway,
            admin,
            bindings,
            background: BTreeMap::new(),
            anonymous: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The command as this run executes it.
    fn command(&self, line: &str) -> String {
        let mut line = self.bindings.apply(line);
        line = line.replace("target/release/", &format!("{}/", self.bin.display()));
        if line.contains("lockstep demo") && !line.contains("--listen") {
            line = line.replace(
                "lockstep demo",
                &format!(
                    "lockstep demo --listen {} --admin {}",
                    self.gateway, self.admin
                ),
            );
        }
        line
    }

    fn shell(&self, command: &str) -> Command {
        let mut c = Command::new("bash");
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.arg("-c")
            .arg(command)
            .current_dir(self.scratch.path())
            .env("PATH", path)
            .env("TMPDIR", self.scratch.path())
            .env("LOCKSTEP_ADMIN", format!("http://{}", self.admin))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    fn spawn(&self, command: &str) -> Background {
        let mut child = self
            .shell(&format!("exec {command}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash starts");
        let output = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        if let Some(addr) = listen_addr(command).filter(|a| a.port() != 0) {
            wait_connectable(addr);
        }
        Background {
            command: command.to_owned(),
            child,
            output,
        }
    }

    fn fail(&mut self, block: &Block, what: String) {
        self.failures
            .push(format!("{} line {}: {what}", self.guide, block.line));
    }

    /// Runs a `sh` block in the foreground; returns its stdout.
    fn run_block(&mut self, block: &Block) -> String {
        let mut stdout = String::new();
        let lines: Vec<&str> = block
            .text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .collect();
        let expected_exit: i32 = block.attr("exit").map_or(0, |e| e.parse().unwrap());
        for (i, line) in lines.iter().enumerate() {
            let command = self.command(line);
            if let Some(bg) = command.trim_end().strip_suffix('&') {
                let process = self.spawn(bg.trim());
                self.anonymous.push(process);
                continue;
            }
            let started = Instant::now();
            let out = self
                .shell(&command)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
            if started.elapsed() > Duration::from_secs(2) {
                eprintln!(
                    "{} line {}: `{command}` took {:?}",
                    self.guide,
                    block.line,
                    started.elapsed()
                );
            }
            stdout.push_str(&String::from_utf8_lossy(&out.stdout));
            // A guide shows each command's output on lines of its own (a terminal's prompt
            // would follow it), also when it does not end in a newline.
            if !stdout.is_empty() && !stdout.ends_with('\n') {
                stdout.push('\n');
            }
            let want = if i + 1 == lines.len() {
                expected_exit
            } else {
                0
            };
            let code = out.status.code().unwrap_or(-1);
            if code != want {
                self.fail(
                    block,
                    format!(
                        "`{command}` exited {code}, the guide expects {want}\nstdout:\n{}\nstderr:\n{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                );
            }
        }
        stdout
    }

    /// The guide's expected output as this run prints it: `target/release/` is the tested build.
    fn expected(&self, block: &Block) -> String {
        block
            .text
            .replace("target/release/", &format!("{}/", self.bin.display()))
    }

    fn compare(&mut self, block: &Block, expected: &Block, actual: &str) {
        if !matches(&self.expected(expected), actual, &mut self.bindings, false) {
            let (e, a) = canonical(&expected.text, actual);
            self.fail(
                expected,
                format!(
                    "the output differs from the guide's (block of line {})\n--- guide\n{e}--- this run\n{a}",
                    block.line
                ),
            );
        }
    }

    /// Waits until background process `name` printed `expected` (as a prefix). `started`: it was
    /// just started, and every address it printed must accept connections before the guide
    /// goes on.
    fn compare_background(&mut self, name: &str, expected: &Block, started: bool) {
        let Some(output) = self.background.get(name).map(|b| b.output.clone()) else {
            self.fail(expected, format!("no background process named {name}"));
            return;
        };
        let address = Regex::new(r"127\.0\.0\.1:\d+").unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let actual = output.lock().unwrap().clone();
            if matches(&self.expected(expected), &actual, &mut self.bindings, true) {
                if !started {
                    return;
                }
                for addr in address
                    .find_iter(&actual)
                    .filter_map(|m| m.as_str().parse().ok())
                {
                    wait_connectable(addr);
                }
                return;
            }
            if Instant::now() > deadline {
                let (e, a) = canonical(&expected.text, &actual);
                self.fail(
                    expected,
                    format!(
                        "{name} did not print what the guide shows within 15 s\n--- guide\n{e}--- this run\n{a}"
                    ),
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 15 s) until background process `name` printed something: it is ready.
    fn wait_for_output(&self, name: &str) {
        let output = self.background[name].output.clone();
        let deadline = Instant::now() + Duration::from_secs(15);
        while output.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "{name} printed nothing within 15 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn run(mut self, markdown: &str) {
        let blocks = blocks(markdown);
        let mut i = 0;
        let mut ran = 0;
        while i < blocks.len() {
            let block = blocks[i].clone();
            i += 1;
            if let Some(name) = blocks_output_of(&block) {
                self.compare_background(&name, &block, false);
                continue;
            }
            if block.lang != "sh" || block.attr("no-run").is_some() {
                continue;
            }
            ran += 1;
            // The output block that belongs to this one, if any.
            let expected = blocks
                .get(i)
                .filter(|b| {
                    matches!(b.lang.as_str(), "text" | "json") && b.attr("output").is_none()
                })
                .cloned();
            if let Some(name) = block.attr("background") {
                let command = block
                    .text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| self.command(l))
                    .collect::<Vec<_>>()
                    .join("\n");
                let process = self.spawn(&command);
                self.background.insert(name.to_owned(), process);
                match expected {
                    Some(expected) => {
                        i += 1;
                        self.compare_background(name, &expected, true);
                    }
                    None => self.wait_for_output(name),
                }
                continue;
            }
            let stdout = self.run_block(&block);
            if let Some(expected) = expected {
                i += 1;
                if block.attr("unchecked").is_none() {
                    self.compare(&block, &expected, &stdout);
                }
            }
        }
        assert!(ran > 0, "{}: no command was run", self.guide);
        let failures = std::mem::take(&mut self.failures);
        drop(self);
        assert!(
            failures.is_empty(),
            "{} failure(s):\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

/// `output=NAME` of a block that shows a background process's output.
fn blocks_output_of(block: &Block) -> Option<String> {
    block.attr("output").map(str::to_owned)
}

/// The address a command listens on (`--listen ADDR`), if it names one.
fn listen_addr(command: &str) -> Option<SocketAddr> {
    let mut words = command.split_whitespace();
    while let Some(w) = words.next() {
        if w == "--listen" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Waits (up to 15 s) until `addr` accepts a connection.
fn wait_connectable(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr} does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn guide(name: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (format!("docs/{name}"), text)
}

#[test]
fn getting_started_guide_runs_as_written() {
    let (name, text) = guide("getting-started.md");
    Runner::new(&name).run(&text);
}

#[test]
fn operations_guide_runs_as_written() {
    let (name, text) = guide("operations.md");
    Runner::new(&name).run(&text);
}

#[test]
fn the_matcher_binds_run_dependent_values_and_rejects_other_differences() {
    let mut b = Bindings::default();
    let guide = "backend a  http://127.0.0.1:40747  pid 4242  data /tmp/lockstep-demo-7/a\n\
                 paused 8 ms at 2026-11-28T00:37:59.162Z: …\n";
    let run = "backend a  http://127.0.0.1:5000  pid 99  data /x/y/lockstep-demo-12/a\n\
               paused 0.4 ms at 2026-12-02T10:00:00Z: anything at all\n";
    assert!(matches(guide, run, &mut b, false));
    assert_eq!(b.map["127.0.0.1:40747"], "127.0.0.1:5000");
    assert_eq!(
        b.apply("kill 4242; curl 127.0.0.1:40747 --data /tmp/lockstep-demo-7/a"),
        "kill 99; curl 127.0.0.1:5000 --data /x/y/lockstep-demo-12/a"
    );
    // A bound port must stay the same; other text must be equal.
    assert!(!matches(
        "http://127.0.0.1:40747\n",
        "http://127.0.0.1:5001\n",
        &mut b,
        false
    ));
    assert!(!matches("balance 100\n", "balance 150\n", &mut b, false));
    // Two ports of the guide cannot be one port of the run.
    assert!(!matches(
        "127.0.0.1:1 127.0.0.1:2\n",
        "127.0.0.1:3 127.0.0.1:3\n",
        &mut Bindings::default(),
        false
    ));
    // JSON is compared whatever the key order and layout.
    assert!(matches(
        "{\"b\": 1, \"a\": [1, 2]}\n",
        "{\"a\":[1,2],\"b\":1}",
        &mut Bindings::default(),
        false
    ));
    // A missing or extra field is a difference.
    assert!(!matches(
        "{\"a\": 1}\n",
        "{\"a\":1,\"b\":2}",
        &mut Bindings::default(),
        false
    ));
    // A line of its own `…` stands for any lines; prefixes for background output.
    assert!(matches(
        "first\n…\nlast\n",
        "first\nx\ny\nlast\n",
        &mut Bindings::default(),
        false
    ));
    assert!(matches(
        "first\n",
        "first\nmore\n",
        &mut Bindings::default(),
        true
    ));
    assert!(!matches(
        "first\n",
        "first\nmore\n",
        &mut Bindings::default(),
        false
    ));
}
