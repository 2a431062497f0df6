//! The `lockstep` command: parse the CLI, load the config, run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lockstep::Gateway;
use lockstep::demo::{self, DemoOptions};
use lockstep_config::Config;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
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
            finish(
                Gateway::new(config)
                    .map_err(anyhow::Error::from)
                    .and_then(Gateway::run),
            )
        }
        Command::Demo {
            listen,
            admin,
            demo_binary,
        } => finish(demo::run(DemoOptions {
            listen,
            admin,
            demo_binary,
        })),
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

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
