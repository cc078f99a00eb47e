//! The `rwproxy demo` command: start the cluster, print what to try, run until Ctrl-C, SIGTERM
//! or `--duration`, then stop every node cleanly and remove the temporary files.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use super::{intro, Demo, DemoOptions};
use crate::config::LogFormat;
use crate::logging;

/// Runs the demo until a signal or `duration`. Logs go to stderr at `log_level` (`RUST_LOG`
/// overrides it); the URLs and instructions go to stdout.
pub fn run(options: DemoOptions, duration: Option<Duration>, log_level: &str) -> ExitCode {
    logging::init(LogFormat::Text, log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let demo = match Demo::start(&options).await {
            Ok(demo) => demo,
            Err(error) => {
                eprintln!("cannot start the demo: {error}");
                return ExitCode::FAILURE;
            }
        };
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{}", intro(&demo));
        let _ = stdout.flush();
        drop(stdout);

        let why = match duration {
            Some(duration) => tokio::select! {
                () = crate::signals::shutdown_signal() => "signal",
                () = tokio::time::sleep(duration) => "--duration elapsed",
            },
            None => {
                crate::signals::shutdown_signal().await;
                "signal"
            }
        };
        println!("\nstopping ({why}): draining the nodes...");
        let dir = demo.dir().to_owned();
        demo.shutdown().await;
        println!("stopped; removed {}", dir.display());
        ExitCode::SUCCESS
    })
}
