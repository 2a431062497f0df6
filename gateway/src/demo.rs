//! `lockstep demo`: three demo-service instances (both implementations) behind a gateway, with a
//! built-in configuration, until Ctrl-C.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use lockstep_config::Config;
use parking_lot::Mutex;

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

/// One demo instance the demo started.
struct Instance {
    name: &'static str,
    child: Child,
    /// Set once its exit was noticed and reported.
    exited: bool,
}

/// Kills the demo backends however the demo ends.
struct Backends {
    instances: Arc<Mutex<Vec<Instance>>>,
    data: PathBuf,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for instance in self.instances.lock().iter_mut() {
            let _ = instance.child.kill();
            let _ = instance.child.wait();
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
    let backends = Backends {
        instances: Arc::default(),
        data: data.clone(),
    };
    let mut addrs = Vec::new();
    let mut restart = Vec::new();
    for (name, implementation) in INSTANCES {
        let (child, addr) = start_instance(&binary, name, implementation, &data)?;
        restart.push(format!(
            "{} --listen {addr} --implementation {implementation} --noise --data {}",
            binary.display(),
            data.join(name).display()
        ));
        backends.instances.lock().push(Instance {
            name,
            child,
            exited: false,
        });
        addrs.push(addr);
    }
    let config = Config::from_toml_str(&demo_config(&options, &addrs, &data))
        .map_err(|e| anyhow::anyhow!("the built-in demo configuration is invalid: {e}"))?;

    let gw = options.listen;
    println!("lockstep demo: a gateway in front of three copies of a small bank service\n");
    let pids: Vec<u32> = backends
        .instances
        .lock()
        .iter()
        .map(|i| i.child.id())
        .collect();
    for (((name, implementation), addr), pid) in INSTANCES.iter().zip(&addrs).zip(&pids) {
        let role = if *name == "a" { "primary" } else { "backup " };
        println!(
            "  backend {name} ({role}, {implementation:<6})  http://{addr}  pid {pid}  data {}",
            data.join(name).display()
        );
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

    watch_instances(backends.instances.clone(), restart);
    let gateway = match Gateway::new(config) {
        Ok(g) => g,
        Err(e) => {
            drop(backends);
            return Err(e.into());
        }
    };
    gateway.run_then(move || drop(backends))
}

/// Says so, once, when one of the demo's instances exits while the demo runs, with the command
/// that starts it again on its port and its data.
fn watch_instances(instances: Arc<Mutex<Vec<Instance>>>, restart: Vec<String>) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            for (instance, restart) in instances.lock().iter_mut().zip(&restart) {
                if instance.exited {
                    continue;
                }
                if let Ok(Some(status)) = instance.child.try_wait() {
                    instance.exited = true;
                    println!(
                        "lockstep demo: backend {} (pid {}) exited ({status}); the gateway carries on with the others. Start it again with:\n  {restart} &",
                        instance.name,
                        instance.child.id()
                    );
                }
            }
        }
    });
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

# The demo service exports and imports its whole state: checkpoints.
[checkpoint]
export = {{ request = "GET /admin/export" }}
import = {{ request = "POST /admin/import" }}
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
            // Per-instance values in every answer, as a real service has (the gateway's
            // default comparison must see through them).
            "--noise",
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
