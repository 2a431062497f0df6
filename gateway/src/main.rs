//! The `lockstep` command: parse the CLI, load the config, run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lockstep::Gateway;
use lockstep::client::{join_summary, verify_report, with_progress};
use lockstep::demo::{self, DemoOptions};
use lockstep_config::{Config, LogFormat};

/// Exit status for a configuration the gateway refuses (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "lockstep",
    version,
    about = "A replication gateway: keeps N copies of an HTTP service logically equivalent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file.
        #[arg(short, long, default_value = "lockstep.toml")]
        config: PathBuf,
        /// Take over from a gateway running with the same configuration, without dropping a
        /// connection: start this, then send the running one SIGQUIT.
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Check a configuration file and exit: 0 when valid, 64 with the problem otherwise.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Show the gateway's backends, roles, states and lag; exits 2 when degraded.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print topology events as they happen (JSON, one per line).
    Events {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Change the topology: add, remove, list, promote or rejoin backends.
    Backend {
        #[command(subcommand)]
        action: BackendAction,
    },
    /// Compare the backups' views with the primary's (the configured view probes) and print
    /// what differs; exits 1 when a view differs.
    Verify {
        /// The backends to check (default: every backup).
        names: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// The noise finder: learn what differs between copies that agree, then print it grouped by
    /// route and place with the rule that would silence each (and flag what looks like a real
    /// divergence). While learning, no backup is ejected.
    Noise {
        /// Start learning for this many compared backup answers.
        #[arg(long, value_name = "N", conflicts_with_all = ["learn_for", "stop"])]
        learn: Option<u64>,
        /// Start learning for this long (`10m`, `90s`).
        #[arg(long, value_name = "DURATION", conflicts_with = "stop")]
        learn_for: Option<String>,
        /// Stop learning now.
        #[arg(long)]
        stop: bool,
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take a checkpoint now (or list them with --list).
    Checkpoint {
        /// List the stored checkpoints instead.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Move the deployment to another implementation of the service, one verified step at a
    /// time (see docs/operations.md).
    Rollout {
        /// The plan: `implementation = "v2"` and the new instances as [[backends]] name, url.
        plan: PathBuf,
        /// Print the steps and exit.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start three demo-service instances and a gateway in front of them.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the admin listener listens.
        #[arg(long, default_value = "127.0.0.1:8081")]
        admin: SocketAddr,
        /// The demo-service binary (default: next to this one, then PATH).
        #[arg(long)]
        demo_binary: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// The gateway's admin listener.
    #[arg(long, env = "LOCKSTEP_ADMIN", default_value = "http://127.0.0.1:8081")]
    admin: String,
    /// A file holding the admin bearer token.
    #[arg(long, env = "LOCKSTEP_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum BackendAction {
    /// Add a new, empty backend: it is filled from the journal (or the latest checkpoint) while
    /// traffic flows, then verified; shows progress and the admission pause.
    Add {
        name: String,
        /// Its base URL, like http://127.0.0.1:9004.
        url: String,
        /// A free label: which implementation or version of the service it runs.
        #[arg(long)]
        implementation: Option<String>,
        /// Start from the latest checkpoint (the default when there is one).
        #[arg(long, conflicts_with = "no_checkpoint")]
        checkpoint: bool,
        /// Replay the whole journal even when there is a checkpoint.
        #[arg(long)]
        no_checkpoint: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a backup (never the primary: promote another one first).
    Remove {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the backends: role, state, implementation, acknowledged seq, lag.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Controlled switchover: make NAME (an in-sync backup) the primary; prints the pause.
    Promote {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Bring NAME back in-sync: replay what it missed and verify its view (or, with --reset,
    /// empty it through its reset hook and replay everything).
    Rejoin {
        name: String,
        /// Empty the backend with its configured reset hook and replay the whole journal.
        #[arg(long)]
        reset: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: valid ({} backends, {} routes, {} view probes)",
                    file.display(),
                    config.backends.len(),
                    config.routes.len(),
                    config.verify.probes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Run { config, upgrade } => {
            // Activates the failpoints named in the `FAILPOINTS` environment variable.
            #[cfg(feature = "failpoints")]
            let _failpoints = fail::FailScenario::setup();
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            init_logging(config.log.format, &config.log.level);
            if upgrade {
                return finish(Gateway::run_upgrade(config));
            }
            finish(
                Gateway::new(config)
                    .map_err(anyhow::Error::from)
                    .and_then(Gateway::run),
            )
        }
        Command::Status { admin, json } => admin_call(&admin, |client| async move {
            let status = client.status().await?;
            let (table, degraded) = lockstep::client::status_table(&status);
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{table}");
            }
            Ok(if degraded {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }),
        Command::Events { admin } => admin_call(&admin, |client| async move {
            client.tail_events(|line| println!("{line}")).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Backend {
            action: BackendAction::Promote { name, admin },
        } => admin_call(&admin, |client| async move {
            let r = client.promote(&name).await?;
            println!(
                "{name} is the primary; admission paused {:.1} ms",
                r["pause_ms"].as_f64().unwrap_or(0.0)
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Backend {
            action: BackendAction::Rejoin { name, reset, admin },
        } => admin_call(&admin, |client| async move {
            let r = with_progress(&client, &name, client.rejoin(&name, reset)).await?;
            println!("{}", join_summary(&name, &r));
            Ok(ExitCode::SUCCESS)
        }),
        Command::Backend {
            action:
                BackendAction::Add {
                    name,
                    url,
                    implementation,
                    checkpoint,
                    no_checkpoint,
                    admin,
                },
        } => admin_call(&admin, |client| async move {
            let from_checkpoint = match (checkpoint, no_checkpoint) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let add = client.add_backend(&name, &url, implementation.as_deref(), from_checkpoint);
            let r = with_progress(&client, &name, add).await?;
            println!("{}", join_summary(&name, &r));
            Ok(ExitCode::SUCCESS)
        }),
        Command::Backend {
            action: BackendAction::Remove { name, admin },
        } => admin_call(&admin, |client| async move {
            let r = client.remove_backend(&name).await?;
            println!(
                "{name} removed (it had acknowledged request {})",
                r["acked_seq"]
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Backend {
            action: BackendAction::List { admin },
        } => admin_call(&admin, |client| async move {
            let status = client.status().await?;
            print!("{}", lockstep::client::status_table(&status).0);
            Ok(ExitCode::SUCCESS)
        }),
        Command::Verify { names, admin, json } => admin_call(&admin, |client| async move {
            let report = client.verify(&names).await?;
            let (text, equal) = verify_report(&report);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{text}");
            }
            Ok(if equal {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }),
        Command::Noise {
            learn,
            learn_for,
            stop,
            admin,
            json,
        } => admin_call(&admin, |client| async move {
            let report = match (learn, learn_for, stop) {
                (Some(n), _, _) => client.learn_noise(&format!("answers={n}")).await?,
                (_, Some(d), _) => client.learn_noise(&format!("for={d}")).await?,
                (_, _, true) => client.stop_learning().await?,
                _ => client.noise().await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", lockstep::client::noise_report(&report));
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Checkpoint { list, admin } => admin_call(&admin, |client| async move {
            if list {
                let all = client.checkpoints().await?;
                let all = all.as_array().cloned().unwrap_or_default();
                if all.is_empty() {
                    println!(
                        "no checkpoints yet: take one with `lockstep checkpoint` (needs the [checkpoint] export and import hooks), or set [checkpoint] every"
                    );
                }
                for c in &all {
                    println!(
                        "seq {:>10}  {:>10} bytes  from {} ({})",
                        c["seq"].as_u64().unwrap_or(0),
                        c["bytes"].as_u64().unwrap_or(0),
                        c["source"].as_str().unwrap_or("?"),
                        c["implementation"].as_str().unwrap_or("?")
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let c = client.take_checkpoint().await?;
            println!(
                "checkpoint at request {} from {} ({} bytes); admission paused {} ms; the journal now starts at request {}",
                c["seq"],
                c["source"].as_str().unwrap_or("?"),
                c["bytes"],
                c["pause_ms"],
                c["first_seq"]
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Rollout {
            plan,
            dry_run,
            admin,
        } => admin_call(&admin, |client| async move {
            let plan = lockstep::rollout::Plan::load(&plan)?;
            lockstep::rollout::run(&client, &plan, dry_run).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Demo {
            listen,
            admin,
            demo_binary,
        } => {
            init_logging(LogFormat::Text, "info");
            finish(demo::run(DemoOptions {
                listen,
                admin,
                demo_binary,
            }))
        }
    }
}

/// Runs one admin request on a small runtime of its own.
fn admin_call<F, Fut>(args: &AdminArgs, call: F) -> ExitCode
where
    F: FnOnce(lockstep::client::AdminClient) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let run = || -> anyhow::Result<ExitCode> {
        let client = lockstep::client::AdminClient::new(&args.admin, args.token_file.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(call(client))
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lockstep: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: &lockstep_config::ConfigError) -> ExitCode {
    eprintln!("invalid configuration: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockstep: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: `RUST_LOG` wins over the configured level; colours only on a terminal.
fn init_logging(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
