//! `lockstep-demo`: parses flags, opens the store, binds, announces the address, serves.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lockstep_demo::{Faults, Ids, Implementation};
use tokio::net::TcpListener;

/// The exit code for a configuration the service cannot run with (EX_USAGE).
const EXIT_INVALID_CONFIG: u8 = 64;

/// A small bank over HTTP: the stateful service lockstep replicates in its demo and tests.
#[derive(Debug, Parser)]
#[command(name = "lockstep-demo", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long)]
    listen: String,
    /// Where the state lives.
    #[arg(long, value_enum)]
    implementation: Implementation,
    /// Data directory for the sqlite implementation (created if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Misbehave on purpose: after N successful writes, every deposit credits amount+1.
    #[arg(long, value_name = "N")]
    diverge_after: Option<u64>,
    /// Sleep this long before every POST or DELETE, e.g. `200ms`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay: Duration,
    /// Refuse about this percentage of writes with 503 or 429 and `Retry-After: 0`, without
    /// processing them, as a service shedding load does (0 to 100).
    #[arg(long, value_name = "PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    shed: u8,
    /// Put per-instance values in every answer, as real services do: this instance's address
    /// (`X-Served-By`, an absolute `Location` for a new account), the time, a minted request id
    /// and its own `ETag`.
    #[arg(long)]
    noise: bool,
    /// How account ids look over HTTP. `random` ids are 16 hex digits (JSON strings), different
    /// on every instance given the same requests, as minted UUIDs are: each instance draws a
    /// secret key (kept in the sqlite data directory, so a restart shows the same ids; carried by
    /// /admin/export and adopted by /admin/import). A data directory keeps the kind it was
    /// created with.
    #[arg(long, value_enum, default_value_t = Ids::Sequential)]
    ids: Ids,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; in a harness's log they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let store =
        match lockstep_demo::open_store_with(cli.implementation, cli.data.as_deref(), cli.ids) {
            Ok(store) => store,
            Err(e) => {
                eprintln!("invalid configuration: {e}");
                return ExitCode::from(EXIT_INVALID_CONFIG);
            }
        };
    let faults = Faults {
        diverge_after: cli.diverge_after,
        delay: cli.delay,
        shed_percent: cli.shed,
    };
    match run(
        &cli.listen,
        lockstep_demo::app_with(store, faults),
        cli.noise,
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(listen: &str, app: axum::Router, noise: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let app = if noise {
        lockstep_demo::with_noise(app, addr)
    } else {
        app
    };
    // Test harnesses read this line to learn the port, so it goes to stdout, alone, flushed.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, "serving");
    lockstep_demo::serve(listener, app, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
