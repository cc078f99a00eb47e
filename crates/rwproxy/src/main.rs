//! `rwproxy`: a write-forwarding HTTP reverse proxy for replicated apps.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rwproxy::config::{self, Config};
use rwproxy::{logging, Node};

/// Exit status for a configuration that does not validate (EX_USAGE / EX_DATAERR family).
const EXIT_CONFIG: u8 = 64;

/// mimalloc rather than glibc's allocator: hyper allocates (and soon frees) an 8 KiB read buffer
/// per request on each side, past glibc's per-thread cache, and mimalloc serves those from its
/// page-local free lists. Measured in docs/benchmarks.md ("Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `rwproxy --version`: the version, the commit and the date (see build.rs).
const VERSION: &str = if env!("RWPROXY_BUILD_DATE").is_empty() {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("RWPROXY_COMMIT"),
        ")"
    )
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("RWPROXY_COMMIT"),
        ", ",
        env!("RWPROXY_BUILD_DATE"),
        ")"
    )
};

#[derive(Parser)]
#[command(
    name = "rwproxy",
    version = VERSION,
    about = "A write-forwarding HTTP reverse proxy for replicated apps (LiteFS and others)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with this configuration.
    Run {
        /// The configuration file (TOML).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// Ask the running node to re-read its configuration file (as SIGHUP does).
    ///
    /// Asks through the admin listener FILE names (POST /reload): exit 0 when applied, 64
    /// when FILE does not validate, 1 when the node refused it or could not be reached.
    Reload {
        /// The configuration file the node runs from.
        #[arg(short = 'c', long = "config", value_name = "FILE", default_value = rwproxy::reload_command::DEFAULT_CONFIG)]
        config: PathBuf,
        /// How long the node may take to answer.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = config::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Validate the configuration and exit: 0 and `ok`, or 64 and one line per problem.
    Check {
        /// The configuration file (TOML).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// Also read the cluster state source once (connect, authenticate, query) and say
        /// what it found; exit 1 with its problem when it fails.
        #[arg(long)]
        connect: bool,
    },
    /// Start a local demo cluster (three notes apps, each behind its own rwproxy, one primary
    /// and two replicas, on 127.0.0.1) and print what to try. Ctrl-C stops it.
    Demo {
        /// First of nine consecutive ports (node N: rwproxy, admin, app); default: ephemeral.
        #[arg(long, value_name = "PORT")]
        base_port: Option<u16>,
        /// How long writes take to reach the replicas (makes read-your-writes waits visible).
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = config::parse_duration)]
        replication_delay: std::time::Duration,
        /// Stop by itself after this long (e.g. "30s"); default: run until Ctrl-C.
        #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Log level of the demo's rwproxies (stderr), e.g. "info" for one line per request.
        #[arg(long, value_name = "FILTER", default_value = "warn")]
        log_level: String,
    },
    /// Show every node of the cluster in one table; exit 1 when nodes disagree or one is down.
    Status {
        /// A node's admin (or proxy) listener base URL, e.g. http://10.0.0.5:9090; repeatable.
        #[arg(long = "node", value_name = "URL")]
        nodes: Vec<String>,
        /// Every A/AAAA record of NAME, at PORT (the admin listener's), e.g. app.internal:9090.
        #[arg(long, value_name = "NAME:PORT")]
        dns: Vec<String>,
        /// A file of node URLs, one a line (# comments allowed).
        #[arg(long, value_name = "FILE")]
        nodes_file: Option<PathBuf>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Refresh every DURATION (e.g. "2s") until Ctrl-C.
        #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
        watch: Option<std::time::Duration>,
        /// How long each node may take to answer.
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = config::parse_duration)]
        timeout: std::time::Duration,
    },
    /// GET a health URL once: exit 0 on 200, 1 otherwise (for container HEALTHCHECKs).
    Health {
        /// The URL to probe.
        #[arg(long, value_name = "URL", default_value = rwproxy::healthcheck::DEFAULT_URL)]
        url: String,
        /// Give up after this long.
        #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = config::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, connect } => match config::load(&config) {
            Ok(config) => {
                // Valid but likely wrong: said, without failing the check.
                for warning in config::warnings(&config) {
                    eprintln!("warning: {warning}");
                }
                if connect {
                    match rwproxy::connect_check::run(&config) {
                        Ok(found) => println!("{found}"),
                        Err(problem) => {
                            eprintln!("cluster source: {problem}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Demo {
            base_port,
            replication_delay,
            duration,
            log_level,
        } => rwproxy::demo::run(
            rwproxy::demo::DemoOptions {
                base_port,
                replication_delay,
            },
            duration,
            &log_level,
        ),
        Command::Health { url, timeout } => rwproxy::healthcheck::run(&url, timeout),
        Command::Status {
            nodes,
            dns,
            nodes_file,
            json,
            watch,
            timeout,
        } => rwproxy::status::run(rwproxy::status::StatusOptions {
            nodes,
            dns,
            nodes_file,
            json,
            watch,
            timeout,
        }),
        Command::Reload { config, timeout } => rwproxy::reload_command::run(&config, timeout),
        Command::Run { config: file } => match config::load(&file) {
            Ok(config) => run(config, file),
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn run(config: Config, file: PathBuf) -> ExitCode {
    let log_level = logging::init(config.log.format, &config.log.level);
    for warning in config::warnings(&config) {
        tracing::warn!(key = %warning.key, "{}", warning.message);
    }
    // One worker: a current-thread runtime drives everything on one thread, without the
    // cross-thread wake-ups and work-stealing bookkeeping a multi-thread runtime pays.
    let mut runtime = match config.proxy.workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                builder.worker_threads(n);
            }
            builder
        }
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let node = match Node::start(&config).await {
            Ok(node) => node,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        node.reloader().set_file(file);
        node.reloader().set_log_level(log_level);
        let reloads = tokio::spawn(rwproxy::node::reload_on_hangup(node.reloader().clone()));
        rwproxy::signals::shutdown_signal().await;
        reloads.abort();
        tracing::info!("shutting down: draining");
        node.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
