//! `rwproxy`: a write-forwarding HTTP reverse proxy for replicated apps.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rwproxy::config::{self, Config};
use rwproxy::{logging, Node};

/// Exit status for a configuration that does not validate (EX_USAGE / EX_DATAERR family).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "rwproxy",
    version,
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
    /// Validate the configuration and exit: 0 and `ok`, or 64 and one line per problem.
    Check {
        /// The configuration file (TOML).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config } => match config::load(&config) {
            Ok(config) => run(config),
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn run(config: Config) -> ExitCode {
    logging::init(config.log.format, &config.log.level);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.proxy.workers > 0 {
        runtime.worker_threads(config.proxy.workers);
    }
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
        shutdown_signal().await;
        tracing::info!("shutting down: draining");
        node.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
