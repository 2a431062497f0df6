//! Real processes for fault tests: demo-bank backends and the `lockstep` binary, killed with
//! SIGKILL and restarted on the same addresses and data.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `lockstep-demo` binary, built next to `lockstep` (building it if this test run did not).
pub fn demo_binary() -> PathBuf {
    let lockstep = PathBuf::from(env!("CARGO_BIN_EXE_lockstep"));
    let demo = lockstep.with_file_name("lockstep-demo");
    if !demo.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "lockstep-demo"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building lockstep-demo failed");
    }
    demo
}

/// A free loopback port (bound and released: a small window for another process to take it).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One demo bank process.
pub struct DemoProc {
    pub name: String,
    pub addr: SocketAddr,
    pub implementation: &'static str,
    pub data: PathBuf,
    flags: Vec<String>,
    child: Option<Child>,
}

impl DemoProc {
    /// Starts on a fresh port; sqlite keeps its files in `data`.
    pub fn start(name: &str, implementation: &'static str, data: &Path) -> DemoProc {
        Self::start_with(name, implementation, data, &[])
    }

    /// [`DemoProc::start`] with more command-line flags (`--diverge-after 5`).
    pub fn start_with(
        name: &str,
        implementation: &'static str,
        data: &Path,
        flags: &[&str],
    ) -> DemoProc {
        let mut p = DemoProc {
            name: name.to_owned(),
            addr: "127.0.0.1:0".parse().unwrap(),
            implementation,
            data: data.join(name),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            child: None,
        };
        std::fs::create_dir_all(&p.data).unwrap();
        p.spawn("127.0.0.1:0");
        p
    }

    fn spawn(&mut self, listen: &str) {
        let mut child = Command::new(demo_binary())
            .args([
                "--listen",
                listen,
                "--implementation",
                self.implementation,
                "--data",
            ])
            .arg(&self.data)
            .args(&self.flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lockstep-demo starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("announces its address")
            .parse()
            .unwrap();
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same address (same data directory).
    pub fn restart(&mut self) {
        self.kill();
        let listen = self.addr.to_string();
        // The address was just released; retry briefly if the kernel still holds it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = TcpListener::bind(&listen);
            if probe.is_ok() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.spawn(&listen);
    }
}

impl Drop for DemoProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `[[backends]]` entries for `demos`, the first one the primary, each with its implementation.
pub fn backends_toml(demos: &[&DemoProc]) -> String {
    let mut s = String::new();
    for (i, d) in demos.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "backup" };
        s.push_str(&format!(
            "\n[[backends]]\nname = \"{}\"\nurl = \"{}\"\nrole = \"{role}\"\nimplementation = \"{}\"\n",
            d.name,
            d.url(),
            d.implementation
        ));
    }
    s
}

/// The gateway binary with a config file.
pub struct GatewayProc {
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl GatewayProc {
    /// Writes a config (listeners, a journal in `dir` with `fsync`, then `body`) and starts the
    /// gateway.
    pub fn start(dir: &Path, fsync: &str, body: &str) -> GatewayProc {
        Self::start_with(dir, &format!("fsync = \"{fsync}\""), body)
    }

    /// [`GatewayProc::start`] with `journal` as the `[journal]` keys besides `dir`.
    pub fn start_with(dir: &Path, journal: &str, body: &str) -> GatewayProc {
        Self::start_custom(dir, "grace_period = \"0s\"", journal, body)
    }

    /// [`GatewayProc::start_with`] with `gateway` as the `[gateway]` keys besides `listen`.
    pub fn start_custom(dir: &Path, gateway_keys: &str, journal: &str, body: &str) -> GatewayProc {
        let gateway = free_addr();
        let admin = free_addr();
        let config = dir.join("lockstep.toml");
        let text = format!(
            "[gateway]\nlisten = \"{gateway}\"\n{gateway_keys}\n\n[admin]\nlisten = \"{admin}\"\n\n[journal]\ndir = \"{}\"\n{journal}\n\n{body}",
            dir.join("journal").display()
        );
        std::fs::write(&config, text).unwrap();
        let mut g = GatewayProc {
            gateway,
            admin,
            config,
            log: dir.join("gateway.log"),
            child: None,
        };
        g.spawn();
        g
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("lockstep starts");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the admin listener answers and the journal is recovered.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The admin listener answers and the data listener accepts (pingora binds each
            // service's listener on its own runtime, so one may be up before the other).
            let data_up = || {
                std::net::TcpStream::connect_timeout(&self.gateway, Duration::from_millis(200))
                    .is_ok()
            };
            if let Some(status) = blocking_get(self.admin, "/status") {
                if status.contains("\"primary\"") && data_up() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not become ready; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.gateway)
    }

    /// The process id of the running gateway.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (`TERM`, `QUIT`, ...) to the gateway process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Waits until the process exits (at most `limit`); its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `lockstep run --upgrade` on the same configuration, logging to `log`; returns once
    /// it waits for the listening sockets. The returned process takes over after SIGQUIT.
    pub fn start_upgrade(&self, log: &Path) -> GatewayProc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["run", "--upgrade", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("lockstep starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("waiting for the listening sockets")
        {
            assert!(Instant::now() < deadline, "the new gateway did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        GatewayProc {
            gateway: self.gateway,
            admin: self.admin,
            config: self.config.clone(),
            log: log.to_owned(),
            child: Some(child),
        }
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bare HTTP/1.1 GET over a std socket (no runtime needed); the body, or None on any failure.
pub fn blocking_get(addr: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}
