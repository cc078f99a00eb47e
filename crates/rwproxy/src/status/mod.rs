//! `rwproxy status`: every node of the cluster in one table (role, primary followed, lag,
//! positions and how far behind the primary's, health, version, uptime, request and 5xx
//! rates), disagreements flagged on their own lines, exit status 1 when there is any.
//!
//! Rates come from each node's `/metrics` counters: the first look divides them by the node's
//! uptime (an average since start); under `--watch` each refresh uses the difference from the
//! previous one (the rate over the refresh interval).

mod checks;
pub(crate) mod fetch;
pub mod manager;
mod model;
mod naming;
mod render;
pub(crate) mod targets;

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

pub use checks::problems;
pub use fetch::{client, parse_counters};
pub use model::{Counters, NodeDoc, NodeReport, Rates, Report};
pub use render::Output;
pub use targets::{base_url, TargetError};

/// Exit status when a problem was found (a node down or unhealthy, a disagreement).
pub const EXIT_PROBLEM: u8 = 1;
/// Exit status when the nodes to ask cannot be determined (as for a bad configuration).
pub const EXIT_USAGE: u8 = 64;

/// What `rwproxy status` was asked.
#[derive(Clone, Debug, Default)]
pub struct StatusOptions {
    /// `--node URL`, repeatable.
    pub nodes: Vec<String>,
    /// `--dns NAME:PORT`, repeatable.
    pub dns: Vec<String>,
    /// `--nodes-file FILE`.
    pub nodes_file: Option<PathBuf>,
    /// Print JSON instead of the table.
    pub json: bool,
    /// Refresh every this long until interrupted.
    pub watch: Option<Duration>,
    /// How long each node may take to answer.
    pub timeout: Duration,
}

/// Looks at every node once. `previous` holds the counters of the last look (per URL, with
/// when they were read) so rates cover the interval between looks; it is updated.
pub async fn gather(
    client: &reqwest::Client,
    urls: &[String],
    timeout: Duration,
    previous: &mut HashMap<String, (Counters, Instant)>,
) -> Report {
    let fetched = fetch::fetch_all(client, urls, timeout).await;
    let now = Instant::now();
    let mut nodes: Vec<NodeReport> = urls
        .iter()
        .zip(fetched)
        .map(|(url, fetched)| {
            let (doc, error) = match fetched.doc {
                Ok(doc) => (Some(doc), None),
                Err(error) => (None, Some(error)),
            };
            let uptime = doc.as_ref().and_then(|d| d.uptime_seconds);
            let rates = fetched
                .counters
                .and_then(|c| rates(c, previous.get(url).copied(), now, uptime));
            if let Some(counters) = fetched.counters {
                previous.insert(url.clone(), (counters, now));
            }
            NodeReport {
                url: url.clone(),
                error,
                doc,
                behind: Default::default(),
                rates,
            }
        })
        .collect();
    naming::name_followed_primaries(&mut nodes);
    let behind = checks::behind(&nodes);
    for (node, behind) in nodes.iter_mut().zip(behind) {
        node.behind = behind;
    }
    let problems = checks::problems(&nodes);
    Report { nodes, problems }
}

/// Rates from the difference with the previous look, else averaged over the uptime. A counter
/// that went down (the node restarted) also falls back to the uptime average.
fn rates(
    now_counters: Counters,
    previous: Option<(Counters, Instant)>,
    now: Instant,
    uptime_seconds: Option<f64>,
) -> Option<Rates> {
    if let Some((before, at)) = previous {
        let window = now.duration_since(at).as_secs_f64();
        let requests = now_counters.requests - before.requests;
        let errors = now_counters.errors - before.errors;
        if window > 0.0 && requests >= 0.0 && errors >= 0.0 {
            return Some(Rates {
                requests_per_second: requests / window,
                errors_per_second: errors / window,
                window_seconds: window,
                since_start: false,
            });
        }
    }
    let uptime = uptime_seconds.filter(|u| *u > 0.0)?;
    Some(Rates {
        requests_per_second: now_counters.requests / uptime,
        errors_per_second: now_counters.errors / uptime,
        window_seconds: uptime,
        since_start: true,
    })
}

/// The `--json` document: `{"ok": bool, "nodes": [...], "problems": [...]}`.
pub fn json(report: &Report) -> String {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        ok: bool,
        #[serde(flatten)]
        report: &'a Report,
    }
    serde_json::to_string_pretty(&Doc {
        ok: report.ok(),
        report,
    })
    .unwrap_or_default()
}

/// The `rwproxy status` command.
pub fn run(options: StatusOptions) -> ExitCode {
    let Some(runtime) = crate::command_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(run_async(options))
}

async fn run_async(options: StatusOptions) -> ExitCode {
    let urls =
        match targets::resolve(&options.nodes, &options.dns, options.nodes_file.as_deref()).await {
            Ok(urls) => urls,
            Err(error) => {
                eprintln!("rwproxy status: {error}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
    let client = match fetch::client(options.timeout) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("rwproxy status: cannot build the HTTP client: {error}");
            return ExitCode::FAILURE;
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let output = Output {
        // NO_COLOR (no-color.org): set to anything, no colours even on a terminal.
        colour: terminal && !options.json && std::env::var_os("NO_COLOR").is_none(),
        width: terminal
            .then(|| terminal_size::terminal_size().map(|(w, _)| usize::from(w.0)))
            .flatten(),
    };
    let mut previous = HashMap::new();
    let Some(interval) = options.watch else {
        let report = gather(&client, &urls, options.timeout, &mut previous).await;
        print(&report, &options, output);
        return exit_code(&report);
    };
    let in_place = terminal && !options.json;
    if in_place {
        // Once, so the first frame starts on a clean screen; later frames overwrite in place.
        print_flush("\x1b[2J");
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let report = gather(&client, &urls, options.timeout, &mut previous).await;
        if in_place {
            // Re-read the width each time: the terminal may have been resized.
            let output = Output {
                width: terminal_size::terminal_size().map(|(w, _)| usize::from(w.0)),
                ..output
            };
            let title = format!(
                "rwproxy status  {}  every {}  (Ctrl-C to stop)",
                humantime::format_rfc3339_seconds(SystemTime::now()),
                humantime::format_duration(interval)
            );
            let title: String = match output.width {
                Some(width) => title.chars().take(width).collect(),
                None => title,
            };
            print_flush(&render::frame(&title, &render::lines(&report, output)));
        } else {
            print(&report, &options, output);
            println!();
        }
        last = Some(exit_code(&report));
    }
    last.unwrap_or(ExitCode::SUCCESS)
}

fn print(report: &Report, options: &StatusOptions, output: Output) {
    if options.json {
        println!("{}", json(report));
    } else {
        for line in render::lines(report, output) {
            println!("{line}");
        }
    }
}

fn print_flush(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn exit_code(report: &Report) -> ExitCode {
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROBLEM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_use_the_previous_look_else_the_uptime() {
        let now = Instant::now();
        let c = |requests, errors| Counters { requests, errors };
        let first = rates(c(100.0, 10.0), None, now, Some(50.0)).unwrap();
        assert_eq!(
            (first.requests_per_second, first.errors_per_second),
            (2.0, 0.2)
        );
        assert!(first.since_start);
        let later = now + Duration::from_secs(2);
        let next = rates(
            c(110.0, 11.0),
            Some((c(100.0, 10.0), now)),
            later,
            Some(52.0),
        )
        .unwrap();
        assert_eq!(
            (next.requests_per_second, next.errors_per_second),
            (5.0, 0.5)
        );
        assert!(!next.since_start);
        // A restart resets the counters: back to the average since start.
        let restarted = rates(c(4.0, 0.0), Some((c(100.0, 10.0), now)), later, Some(2.0)).unwrap();
        assert!(restarted.since_start);
        assert_eq!(rates(c(1.0, 0.0), None, now, None), None);
    }
}
