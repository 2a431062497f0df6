//! `lockstep-load`: parses the command line and hands over to the library.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lockstep_loadtest::{Mix, Progress, RequestSpec, RunSpec, Stop};

/// Exit code for an unusable command line or mix file.
const EXIT_CONFIG: u8 = 64;
/// Exit code when the run or the call could not be made.
const EXIT_FAILED: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "lockstep-load",
    version,
    about = "HTTP/1.1 load generator for lockstep: closed or open loop, templated requests, \
             HDR latency percentiles; `verify` checks the backends agree after a run.",
    after_help = "`run` is the default: `lockstep-load URL [OPTIONS]` is `lockstep-load run URL \
                  [OPTIONS]`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send load to URL and report latency, throughput and errors.
    Run(Box<RunArgs>),
    /// Ask the gateway's admin listener whether every backend shows the primary's view.
    /// Exit 0 when equal, 1 when a backend differs, 2 when the call fails.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The service or gateway, `http://HOST:PORT[/PATH]`; PATH is the default request path.
    url: String,

    /// Connections: each carries one request at a time (the concurrency bound in both modes).
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// Open loop: send this many requests per second at fixed intended times.
    #[arg(short = 'R', long)]
    rate: Option<f64>,
    /// Measure for this long (e.g. `10s`, `2m`); the default when --requests is not given is 10s.
    #[arg(short = 'd', long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Measure this many logical requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Send load for this long before measuring (not recorded).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    warmup: Duration,
    /// Runtime threads.
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,

    /// Request method (default POST with --body, else GET).
    #[arg(short = 'X', long)]
    method: Option<String>,
    /// Request path and query, a template (default: the URL's path).
    #[arg(long)]
    path: Option<String>,
    /// Request body, a template; sent with `Content-Type: application/json` unless a header
    /// says otherwise.
    #[arg(long)]
    body: Option<String>,
    /// Extra header `Name: value` (value is a template); repeatable; also added to --mix entries.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// TOML file of `[[request]]` entries (method, path, body, headers, weight).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["method", "path", "body"])]
    mix: Option<PathBuf>,
    /// First value of `{counter}`.
    #[arg(long, default_value_t = 0)]
    counter_start: u64,
    /// Seed of the mix choices and `{random:A..B}` (default: random, printed in the report).
    #[arg(long)]
    seed: Option<u64>,

    /// Add `Idempotency-Key: <uuid>` to each logical request; retries reuse the key.
    #[arg(long)]
    idempotency_key: bool,
    /// Name of the idempotency-key header (implies --idempotency-key).
    #[arg(long, value_name = "NAME")]
    idempotency_header: Option<String>,
    /// Retry a request that failed (connect, write, read, timeout, malformed) or got a 5xx up to
    /// N times; retries are reported separately.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retry: u32,
    /// Wait this long before each retry.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    retry_backoff: Duration,
    /// Limit for one attempt: connect, send and read the whole response.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    timeout: Duration,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print a progress line every second even when stderr is not a terminal.
    #[arg(long, conflicts_with = "quiet")]
    progress: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The gateway's admin listener, `http://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    admin: String,
    /// File holding the admin token, sent as `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Limit for the whole call.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    timeout: Duration,
    /// Print the admin listener's answer as JSON instead of the readable report.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_default_subcommand(std::env::args_os().collect()));
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Verify(args) => verify(args),
    }
}

/// Inserts `run` when the first argument is not a subcommand or a top-level flag.
fn with_default_subcommand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let explicit = args.get(1).and_then(|a| a.to_str()).is_none_or(|first| {
        matches!(
            first,
            "run" | "verify" | "help" | "-h" | "--help" | "-V" | "--version"
        )
    });
    if !explicit {
        args.insert(1, "run".into());
    }
    args
}

fn run(args: RunArgs) -> ExitCode {
    let json = args.json;
    let spec = match build_spec(args) {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("invalid configuration: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match lockstep_loadtest::run_blocking(spec) {
        Ok(report) => {
            let text = if json {
                serde_json::to_string_pretty(&report).expect("reports serialize") + "\n"
            } else {
                report.to_string()
            };
            print_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(e @ lockstep_loadtest::RunError::Invalid(_)) => {
            eprintln!("invalid configuration: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("lockstep-load: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn build_spec(args: RunArgs) -> Result<RunSpec, String> {
    let mut spec = RunSpec::new(&args.url).map_err(|e| e.to_string())?;
    spec.mix = match &args.mix {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read mix file {}: {e}", path.display()))?;
            Mix::from_toml(&text, &args.headers).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Mix::single(
            RequestSpec::from_flags(args.method, args.path, args.body, &args.headers)
                .map_err(|e| e.to_string())?,
        ),
    };
    spec.connections = args.connections;
    spec.rate = args.rate;
    spec.stop = match (args.requests, args.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::After(d),
        (None, None) => Stop::After(Duration::from_secs(10)),
    };
    spec.warmup = args.warmup;
    spec.threads = args.threads;
    spec.timeout = args.timeout;
    spec.retries = args.retry;
    spec.retry_backoff = args.retry_backoff;
    spec.idempotency_header = match (args.idempotency_header, args.idempotency_key) {
        (Some(name), _) => {
            lockstep_loadtest::parse_header_line(&format!("{name}: x"))
                .map_err(|_| format!("--idempotency-header `{name}` is not a header name"))?;
            Some(name)
        }
        (None, true) => Some("Idempotency-Key".to_owned()),
        (None, false) => None,
    };
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    spec.counter_start = args.counter_start;
    spec.progress = if args.quiet {
        Progress::Off
    } else if std::io::stderr().is_terminal() {
        Progress::Terminal
    } else if args.progress {
        Progress::Plain
    } else {
        Progress::Off
    };
    Ok(spec)
}

fn verify(args: VerifyArgs) -> ExitCode {
    let token = match args
        .token_file
        .as_deref()
        .map(lockstep_loadtest::read_token)
    {
        Some(Err(e)) => {
            eprintln!("lockstep-load verify: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
        Some(Ok(token)) => Some(token),
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lockstep-load verify: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let answer = runtime.block_on(lockstep_loadtest::verify(
        &args.admin,
        token.as_deref(),
        args.timeout,
    ));
    match answer {
        Ok(answer) => {
            let text = if args.json {
                serde_json::to_string_pretty(&answer).expect("answers serialize") + "\n"
            } else {
                answer.to_string()
            };
            print_stdout(&text);
            if answer.all_equal() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("lockstep-load verify: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
