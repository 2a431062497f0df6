//! Copies of third-party services for the process tests: each with its own port and directory,
//! started from a command line the test builds, polled until it answers, killed by the test; and
//! the gateway configuration for a set of copies.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a copy may take to answer its health path.
const READY: Duration = Duration::from_secs(30);

/// Builds the command that starts a copy, given its home directory and port.
pub type CommandFor = Box<dyn Fn(&Path, u16) -> Command + Send + Sync>;

/// One copy of a service.
pub struct ServiceCopy {
    pub name: String,
    /// The service's name, for messages.
    pub label: &'static str,
    pub port: u16,
    /// The copy's own directory: configuration, log, state, scratch; the command runs in it.
    pub home: PathBuf,
    health_path: &'static str,
    command: CommandFor,
    child: Option<Child>,
}

impl ServiceCopy {
    /// Starts copy `name` of `label` in `root/name` and waits until `health_path` answers 200.
    pub fn start(
        label: &'static str,
        name: &str,
        root: &Path,
        health_path: &'static str,
        command: CommandFor,
    ) -> ServiceCopy {
        let home = root.join(name);
        std::fs::create_dir_all(&home).unwrap();
        let mut copy = ServiceCopy {
            name: name.to_owned(),
            label,
            port: 0,
            home,
            health_path,
            command,
            child: None,
        };
        // A free port can be taken by another test between its choice and the bind: the copy
        // then exits, and starts again on another port.
        for attempt in 1.. {
            copy.port = crate::procs::free_addr().port();
            match copy.spawn() {
                Ok(()) => break,
                Err(e) if attempt < 3 => eprintln!("{e}; trying another port"),
                Err(e) => panic!("{e}"),
            }
        }
        copy
    }

    /// Starts the service on `self.port` and waits until it answers; an error when it exits.
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.home.join("service.log")).unwrap();
        let mut cmd = (self.command)(&self.home, self.port);
        let child = cmd
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.label));
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        loop {
            let ready = answers_200(self.addr(), self.health_path);
            // A copy that could not bind exits, and the port may be another test's.
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "{} {} exited ({status}); log: {}",
                    self.label,
                    self.name,
                    std::fs::read_to_string(self.home.join("service.log")).unwrap_or_default()
                ));
            }
            if ready {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "{} {} did not answer on {}",
                self.label,
                self.name,
                self.addr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ServiceCopy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts one copy per name at once (each takes a while to boot).
pub fn start_copies(
    names: &[&str],
    start: impl Fn(&str) -> ServiceCopy + Sync,
) -> Vec<ServiceCopy> {
    std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let start = &start;
                s.spawn(move || start(name))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The gateway configuration for `copies`, the first the primary: health checks every 100 ms
/// on `health_path`, a 5 s backup timeout, then `routes`.
pub fn gateway_config(health_path: &str, routes: &str, copies: &[&ServiceCopy]) -> String {
    let mut body = format!(
        "[health]\npath = \"{health_path}\"\ninterval = \"100ms\"\ntimeout = \"1s\"\n\n[replication]\nbackup_timeout = \"5s\"\n{routes}"
    );
    for (i, c) in copies.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "backup" };
        body.push_str(&format!(
            "\n[[backends]]\nname = \"{}\"\nurl = \"{}\"\nrole = \"{role}\"\n",
            c.name,
            c.url()
        ));
    }
    body
}

/// Whether a bare GET of `path` answers 200 (HTTP/1.0 or 1.1: some servers speak only 1.0).
pub fn answers_200(addr: std::net::SocketAddr, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200"
}
