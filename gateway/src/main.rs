//! The `lockstep` command: parse the CLI, load the config, run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lockstep::Gateway;
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
    /// Change the topology: promote or rejoin a backend.
    Backend {
        #[command(subcommand)]
        action: BackendAction,
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
        Command::Run { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            init_logging(config.log.format, &config.log.level);
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
            let r = client.rejoin(&name, reset).await?;
            println!(
                "{name} is in-sync: replayed {} requests (seq {} to {}) in {} ms; admission paused {} ms",
                r["replayed"], r["from"], r["to"], r["elapsed_ms"], r["pause_ms"]
            );
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
