//! `lockstep demo`: three demo-service instances (both implementations) behind a gateway, with a
//! built-in configuration, until Ctrl-C.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use lockstep_config::Config;

use crate::Gateway;

/// The demo instances: name, implementation.
const INSTANCES: &[(&str, &str)] = &[("a", "sqlite"), ("b", "memory"), ("c", "sqlite")];

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The `lockstep-demo` binary; by default the one next to this executable, then `$PATH`.
    pub demo_binary: Option<PathBuf>,
}

/// Kills the demo backends however the demo ends.
struct Backends {
    children: Vec<Child>,
    data: PathBuf,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

pub fn run(options: DemoOptions) -> anyhow::Result<()> {
    let binary = match options.demo_binary.clone() {
        Some(b) => b,
        None => find_demo_binary()?,
    };
    let data = std::env::temp_dir().join(format!("lockstep-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let mut backends = Backends {
        children: Vec::new(),
        data: data.clone(),
    };
    let mut addrs = Vec::new();
    for (name, implementation) in INSTANCES {
        let (child, addr) = start_instance(&binary, name, implementation, &data)?;
        backends.children.push(child);
        addrs.push(addr);
    }
    let config = Config::from_toml_str(&demo_config(&options, &addrs, &data))
        .map_err(|e| anyhow::anyhow!("the built-in demo configuration is invalid: {e}"))?;

    let gw = options.listen;
    println!("lockstep demo: a gateway in front of three copies of a small bank service\n");
    for ((name, implementation), addr) in INSTANCES.iter().zip(&addrs) {
        let role = if *name == "a" { "primary" } else { "backup " };
        println!("  backend {name} ({role}, {implementation:<6})  http://{addr}");
    }
    println!("  gateway                          http://{gw}");
    println!(
        "  admin                            http://{}/status",
        options.admin
    );
    println!("\nTry:");
    println!("  curl -s -XPOST http://{gw}/accounts -d '{{\"owner\":\"ada\"}}'");
    println!(
        "  curl -s -XPOST http://{gw}/accounts/1/deposit -H 'Idempotency-Key: k1' -d '{{\"amount\":100}}'"
    );
    println!("  curl -s http://{gw}/accounts");
    for addr in &addrs {
        println!("  curl -s http://{addr}/accounts     # the same on every copy");
    }
    println!("  curl -s http://{}/status", options.admin);
    println!("\nCtrl-C stops everything.\n");

    let result = Gateway::new(config)
        .map_err(anyhow::Error::from)
        .and_then(Gateway::run);
    drop(backends);
    result
}

fn demo_config(options: &DemoOptions, addrs: &[SocketAddr], data: &Path) -> String {
    let mut toml = format!(
        r#"
[gateway]
listen = "{listen}"

[admin]
listen = "{admin}"

[journal]
dir = "{journal}"

# One global lane: a transfer touches two accounts, so per-account lanes would let copies
# apply a transfer and a withdrawal in different orders.

[[verify.probes]]
request = "GET /accounts"
"#,
        listen = options.listen,
        admin = options.admin,
        journal = data.join("journal").display(),
    );
    for (((name, implementation), addr), i) in INSTANCES.iter().zip(addrs).zip(0..) {
        let role = if i == 0 { "primary" } else { "backup" };
        toml.push_str(&format!(
            "\n[[backends]]\nname = \"{name}\"\nurl = \"http://{addr}\"\nrole = \"{role}\"\nimplementation = \"{implementation}\"\n"
        ));
    }
    toml
}

fn find_demo_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the lockstep executable")?;
    if let Some(dir) = exe.parent() {
        let sibling = dir.join("lockstep-demo");
        if sibling.is_file() {
            return Ok(sibling);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("lockstep-demo");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "cannot find the lockstep-demo binary next to lockstep or on PATH; build it with `cargo build --release -p lockstep-demo`"
    )
}

/// Starts one demo instance on a free port and waits for its `listening on ADDR` line.
fn start_instance(
    binary: &Path,
    name: &str,
    implementation: &str,
    data: &Path,
) -> anyhow::Result<(Child, SocketAddr)> {
    let dir = data.join(name);
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(data.join(format!("{name}.log")))?;
    let mut child = Command::new(binary)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--implementation",
            implementation,
            "--data",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            bail!("demo backend {name} did not start within 10 s");
        }
    };
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("demo backend {name} printed {line:?} instead of its address"))?;
    Ok((child, addr))
}
