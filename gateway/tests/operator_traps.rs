//! What an operator runs into around the gateway's process: a stop while idle, a second
//! gateway on the same journal, the start-up line, a mistyped admin address, the event stream
//! at a stop. Real `lockstep` processes in front of real demo banks.

#[path = "support/procs.rs"]
mod procs;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::{DemoProc, GatewayProc, backends_toml};

/// A gateway in front of two demo banks, with a long grace period (so that waiting it out would
/// show).
fn deployment(dir: &std::path::Path) -> (DemoProc, DemoProc, GatewayProc) {
    let a = DemoProc::start("a", "sqlite", dir);
    let b = DemoProc::start("b", "memory", dir);
    let gw =
        GatewayProc::start_custom(dir, "grace_period = \"60s\"", "", &backends_toml(&[&a, &b]));
    (a, b, gw)
}

fn lockstep(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A bare HTTP/1.1 POST; the whole answer.
fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn sigterm_while_idle_exits_at_once_and_the_journal_can_be_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, _b, mut gw) = deployment(dir.path());
    let answer = post(gw.gateway, "/accounts", r#"{"owner":"ada"}"#);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    gw.signal("TERM");
    // Nothing is in flight: no reason to wait out the 60 s grace period.
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0));
    let log = std::fs::read_to_string(&gw.log).unwrap();
    assert!(log.contains("no request in flight; stopped"), "{log}");

    // The journal was released: a restart right away opens it and keeps the write.
    gw.restart();
    let accounts = procs::blocking_get(gw.gateway, "/accounts").unwrap();
    assert_eq!(accounts, r#"[{"id":1,"owner":"ada","balance":0}]"#);
}

#[test]
fn a_second_gateway_on_the_same_journal_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, _b, gw) = deployment(dir.path());
    // The same file with other listeners: only the journal is in the way.
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let other = text
        .replace(&gw.gateway.to_string(), &procs::free_addr().to_string())
        .replace(&gw.admin.to_string(), &procs::free_addr().to_string());
    let second = dir.path().join("second.toml");
    std::fs::write(&second, other).unwrap();
    let (code, _, stderr) = lockstep(&["run", "--config", second.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("lockstep: cannot open the journal in journal.dir = "),
        "{stderr}"
    );
}

#[test]
fn the_start_up_line_counts_the_backends_of_the_saved_topology() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, _b, mut gw) = deployment(dir.path());
    let admin = format!("http://{}", gw.admin);
    let (code, out, err) = lockstep(&["backend", "remove", "b", "--admin", &admin], &[]);
    assert_eq!(code, 0, "{out}{err}");
    // The file still names b; the journal says it was removed.
    gw.restart();
    let log = std::fs::read_to_string(&gw.log).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("lockstep listening"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].ends_with("backends=2"), "{}", lines[0]);
    assert!(lines[1].ends_with("backends=1"), "{}", lines[1]);
}

#[test]
fn an_admin_address_without_a_scheme_gets_a_clear_message() {
    let (code, out, err) = lockstep(&["status"], &[("LOCKSTEP_ADMIN", "127.0.0.1:8081")]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        err.trim(),
        "lockstep: the admin URL \"127.0.0.1:8081\" (--admin or LOCKSTEP_ADMIN) is not an http:// or https:// URL; write it like http://127.0.0.1:8081"
    );
}

#[test]
fn lockstep_events_ends_with_exit_0_when_the_gateway_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, _b, mut gw) = deployment(dir.path());
    let mut events = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["events", "--admin", &format!("http://{}", gw.admin)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Subscribed once the current status is printed.
    let mut stdout = events.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let first = String::from_utf8(first).unwrap();
    assert!(first.starts_with("{\"primary\":\"a\""), "{first}");

    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = events.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "lockstep events did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    events
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
}
