//! What rwproxy costs an app, three ways (#28 item 4): the same small hyper app bare, with
//! `rwproxy::embed`'s tower layer around its service (one process), and behind the rwproxy
//! binary as a sidecar (two processes); and what `consistency.session = "reads-too"` costs
//! against `"writes"` for reads that carry a position token.
//!
//! ```sh
//! bash benches/setup.sh                       # wrk from Debian
//! cargo build --release -p rwproxy -p rwproxy-benches
//! target/release/embed --rounds 5             # ~10 minutes
//! ```
//!
//! Every rwproxy here runs the LiteFS source on a mount directory this program writes (so a
//! write on the primary gets a position token, read from the mount as in production), the
//! same configuration for the embedded layer and the binary (`proxy.workers = 1`, no access
//! log, no admin listener). The app answers a `GET` with 200 and 13 bytes, a `POST` with 201,
//! at once. Pinning (2 cores): this program and `wrk` on `--load-core` (0); the app (bare or
//! embedded) and the sidecar on `--serve-core` (1): the app's core pays everything rwproxy adds.
//!
//! Per case and round: a 1 s warm-up, then for each request kind (a read; on a primary also a
//! write) saturation with `wrk -t1 -c50` (requests/s, CPU per request), then this program's
//! open-loop client at `--rate` requests/s (CPU per request, p50, p99 from each request's
//! scheduled send time). CPU is the time on a CPU (user + system) of every thread of every
//! serving process (app, and sidecar if any), never the load generator's, from
//! `/proc/<pid>/task/*/schedstat` (nanoseconds; the user-space share from `/proc/<pid>/stat`'s
//! 10 ms ticks). Cases rotate between rounds;
//! the tables give medians and ranges, and the embedded and sidecar layers' extra CPU over the
//! bare app, paired within each round.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rwproxy_benches::harness::{
    self, announced_listener, answers, exit_with_parent, free_port, open_loop, pinned, sched_cpu,
    wrk, Load, Proc,
};
use rwproxy_benches::{median, quantile, tree_cpu, CpuTimes};
use rwproxy_tests::mount::Mount;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// The app's answer to a read.
const APP_BODY: &[u8] = b"hello, world\n";
/// The database the mount holds.
const DATABASE: &str = "app.db";
/// Its position on every node (a token at this position never waits).
const POSITION: u64 = 1;

/// One way of running the app (`--cases` names them in kebab case, as [`Case::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Case {
    /// The app alone.
    Bare,
    /// The app with `rwproxy::embed`'s layer, this node the primary.
    EmbeddedPrimary,
    /// The app with the layer, this node a replica (reads served by the app).
    EmbeddedReplica,
    /// The bare app behind the rwproxy binary, primary.
    SidecarPrimary,
    /// The bare app behind the rwproxy binary, replica.
    SidecarReplica,
    /// The sidecar replica, reads carrying a token, `consistency.session = "writes"`.
    TokensWrites,
    /// The same with `consistency.session = "reads-too"`.
    TokensReadsToo,
}

const CASES: [Case; 7] = [
    Case::Bare,
    Case::EmbeddedPrimary,
    Case::EmbeddedReplica,
    Case::SidecarPrimary,
    Case::SidecarReplica,
    Case::TokensWrites,
    Case::TokensReadsToo,
];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Bare => "bare",
            Case::EmbeddedPrimary => "embedded-primary",
            Case::EmbeddedReplica => "embedded-replica",
            Case::SidecarPrimary => "sidecar-primary",
            Case::SidecarReplica => "sidecar-replica",
            Case::TokensWrites => "tokens-writes",
            Case::TokensReadsToo => "tokens-reads-too",
        }
    }

    fn embedded(self) -> bool {
        matches!(self, Case::EmbeddedPrimary | Case::EmbeddedReplica)
    }

    fn primary(self) -> bool {
        matches!(
            self,
            Case::Bare | Case::EmbeddedPrimary | Case::SidecarPrimary
        )
    }

    /// Reads carry a `__txid` cookie at the node's own position.
    fn tokens(self) -> bool {
        matches!(self, Case::TokensWrites | Case::TokensReadsToo)
    }

    fn session(self) -> &'static str {
        if self == Case::TokensReadsToo {
            "reads-too"
        } else {
            "writes"
        }
    }
}

/// Embedded vs sidecar vs bare (see the module documentation).
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "embed")]
struct Opts {
    /// Rounds; cases rotate between rounds, extra CPU is paired with the round's bare run.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of saturation (wrk) per request kind, case and round.
    #[arg(long, default_value_t = 3)]
    duration: u64,
    /// wrk's connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// The fixed rate of the open-loop client, requests per second.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Seconds at the fixed rate.
    #[arg(long, default_value_t = 5.0)]
    rate_secs: f64,
    /// The core of this program and wrk.
    #[arg(long, default_value = "0")]
    load_core: String,
    /// The core of the app and the sidecar.
    #[arg(long, default_value = "1")]
    serve_core: String,
    /// Cases, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = CASES)]
    cases: Vec<Case>,
    /// The rwproxy binary of the sidecar cases (default: `rwproxy` beside this program).
    #[arg(long, default_value_os_t = harness::beside_this_program("rwproxy"))]
    rwproxy: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve_main(&args[1..]);
    }
    let opts = <Opts as clap::Parser>::parse_from(
        std::iter::once("embed".to_owned()).chain(args.iter().cloned()),
    );
    // Run this program (its open-loop client) and wrk on the load core.
    if let Some(code) = harness::rerun_pinned(&opts.load_core, &args) {
        return code;
    }
    if opts.cases.iter().any(|c| !c.embedded() && *c != Case::Bare) && !opts.rwproxy.is_file() {
        eprintln!(
            "no rwproxy binary at {} (build it: cargo build --release -p rwproxy)",
            opts.rwproxy.display()
        );
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench(&rt, &opts);
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// The app, bare or embedded (a child process: `embed --serve bare|embedded [CONFIG]`)

/// The app: a read answered 200 with a small body, a write (any other method) 201, at once.
async fn app<B: hyper::body::Body>(
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = if request.method() == Method::GET {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let _ = request.into_body().collect().await;
    Ok(Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(APP_BODY)))
        .expect("response"))
}

fn serve_main(args: &[String]) -> ExitCode {
    exit_with_parent();
    // One thread, as the binary with `proxy.workers = 1`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = announced_listener().await.expect("listen");
        match (args.first().map(String::as_str), args.get(1)) {
            (Some("bare"), _) => serve_bare(listener).await,
            (Some("embedded"), Some(config)) => serve_embedded(listener, Path::new(config)).await,
            _ => {
                eprintln!("usage: embed --serve bare | embed --serve embedded CONFIG");
                std::process::exit(2)
            }
        }
    })
}

async fn serve_bare(listener: TcpListener) -> ExitCode {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(app::<Incoming>),
                )
                .await;
        });
    }
}

/// The app as an embedding user writes it with plain hyper: rwproxy's layer around the app's
/// tower service, the client's address in the request's extensions, one clone of the service
/// per request (as hyper-util's `TowerToHyperService` and axum do).
async fn serve_embedded(listener: TcpListener, config: &Path) -> ExitCode {
    let node = match rwproxy::embed::Embedded::from_file(config) {
        Ok(embedded) => embedded.start().await.expect("start the embedded node"),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let service = tower::ServiceBuilder::new()
        .layer(node.layer())
        .service(tower::service_fn(app::<rwproxy_http::Body>));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let per_request = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(rwproxy_http::ClientInfo::new(peer.ip(), false));
                service.clone().oneshot(request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), per_request)
                .await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Starting a case

/// The rwproxy configuration of a case: the same for the embedded layer and the binary (the
/// embedded node ignores `[proxy]`'s listener and app).
fn config(case: Case, mount: &Path, listen: u16, app: u16) -> String {
    format!(
        r#"node = "{node}"

[proxy]
listen = "127.0.0.1:{listen}"
app = "http://127.0.0.1:{app}"
workers = 1
drain_timeout = "1s"
header_timeout = "10m"

[admin]
listen = ""

[cluster]
source = "litefs"
mount = "{mount}"
databases = ["{DATABASE}"]

[consistency]
session = "{session}"

[writes]
primary_url = "http://127.0.0.1:9"

[log]
access = false
level = "warn"
"#,
        node = if case.primary() { "primary" } else { "replica" },
        mount = mount.display(),
        session = case.session(),
    )
}

/// A started case: its processes, the port clients use, whose CPU counts.
struct Running {
    procs: Vec<Proc>,
    port: u16,
    _mount: Mount,
}

impl Running {
    fn measured(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }

    /// CPU so far: to the nanosecond (total), and in ticks (the user/system split).
    fn cpu(&self) -> (Duration, CpuTimes) {
        let pids = self.measured();
        (
            pids.iter().map(|p| sched_cpu(*p)).sum(),
            pids.into_iter().map(tree_cpu).sum(),
        )
    }
}

/// Starts `embed --serve MODE [CONFIG]` pinned to the serve core; returns it and its port.
fn start_app(opts: &Opts, mode: &str, config: Option<&Path>) -> (Proc, u16) {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = pinned(&opts.serve_core, exe);
    cmd.arg("--serve").arg(mode).stdout(Stdio::piped());
    if let Some(config) = config {
        cmd.arg(config);
    }
    let mut proc = Proc::spawn(&format!("app ({mode})"), &mut cmd)
        .unwrap_or_else(|e| panic!("cannot start the app: {e}"));
    let stdout = proc.stdout().expect("app stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("app port");
    let port = line.trim().parse().expect("app port");
    (proc, port)
}

fn start_case(case: Case, opts: &Opts, dir: &Path) -> Running {
    let mount = Mount::new();
    if case.primary() {
        mount.make_primary();
    } else {
        mount.make_replica("127.0.0.1:9", 0);
    }
    mount.set_pos(DATABASE, POSITION);
    let config_path = dir.join(format!("{}.toml", case.name()));
    let (procs, port) = match case {
        Case::Bare => {
            let (app, port) = start_app(opts, "bare", None);
            (vec![app], port)
        }
        Case::EmbeddedPrimary | Case::EmbeddedReplica => {
            std::fs::write(&config_path, config(case, mount.path(), 9, 9)).expect("config");
            let (app, port) = start_app(opts, "embedded", Some(&config_path));
            (vec![app], port)
        }
        Case::SidecarPrimary | Case::SidecarReplica | Case::TokensWrites | Case::TokensReadsToo => {
            let (app, app_port) = start_app(opts, "bare", None);
            let port = free_port();
            std::fs::write(&config_path, config(case, mount.path(), port, app_port))
                .expect("config");
            let log = std::fs::File::create(dir.join(format!("{}.log", case.name()))).expect("log");
            let mut cmd = pinned(&opts.serve_core, &opts.rwproxy);
            cmd.arg("run")
                .arg("-c")
                .arg(&config_path)
                .stdout(Stdio::null())
                .stderr(log);
            let sidecar = Proc::spawn("rwproxy", &mut cmd)
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", opts.rwproxy.display()));
            (vec![app, sidecar], port)
        }
    };
    let running = Running {
        procs,
        port,
        _mount: mount,
    };
    let cookie = case.tokens().then(token_cookie);
    let ready = answers(port, "GET", cookie.as_deref(), 200)
        && (!case.primary() || answers(port, "POST", None, 201));
    if !ready {
        let log =
            std::fs::read_to_string(dir.join(format!("{}.log", case.name()))).unwrap_or_default();
        panic!("{} never answered as expected; log:\n{log}", case.name());
    }
    running
}

/// `Cookie: __txid=…` at the nodes' position: the token a client that wrote there holds.
fn token_cookie() -> String {
    format!("__txid={POSITION:016x}")
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// One request kind of one case in one round.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    rps: f64,
    /// CPU µs per request at saturation (every serving process, user + system).
    sat_cpu: f64,
    /// Its user-space part.
    sat_user: f64,
    /// CPU µs per request at the fixed rate.
    fix_cpu: f64,
    fix_p50: f64,
    fix_p99: f64,
    bad: u64,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn per(cpu: Duration, n: u64) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        us(cpu) / n as f64
    }
}

fn measure(rt: &tokio::runtime::Runtime, opts: &Opts, running: &Running, load: &Load) -> Sample {
    let (before, before_ticks) = running.cpu();
    let w = wrk(
        &opts.load_core,
        opts.connections,
        running.port,
        opts.duration,
        load,
    );
    let (after, after_ticks) = running.cpu();
    let (sat, sat_ticks) = (
        after.saturating_sub(before),
        after_ticks.since(before_ticks),
    );

    let (before, _) = running.cpu();
    let fixed = rt.block_on(open_loop(running.port, opts.rate, opts.rate_secs, load));
    let fix = running.cpu().0.saturating_sub(before);
    Sample {
        rps: w.rps,
        sat_cpu: per(sat, w.requests),
        sat_user: per(sat_ticks.user, w.requests),
        fix_cpu: per(fix, fixed.latencies.len() as u64),
        fix_p50: us(quantile(&fixed.latencies, 0.5)),
        fix_p99: us(quantile(&fixed.latencies, 0.99)),
        bad: w.bad + fixed.bad,
    }
}

/// Results by `(case, kind)`, one sample per round.
type Samples = Vec<((Case, &'static str), Vec<Sample>)>;

fn bench(rt: &tokio::runtime::Runtime, opts: &Opts) {
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "embed benchmark: {} rounds; saturation wrk -t1 -c{} -d{}s; open loop {} req/s for {} s; \
         load core {}, serve core {}",
        opts.rounds,
        opts.connections,
        opts.duration,
        opts.rate,
        opts.rate_secs,
        opts.load_core,
        opts.serve_core
    );
    println!(
        "{:<18} {:<5} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5}",
        "case", "kind", "round", "req/s", "cpu/req", "user", "cpu@R", "p50@R", "p99@R", "bad"
    );
    let mut samples: Samples = Vec::new();
    for round in 0..opts.rounds {
        for i in 0..opts.cases.len() {
            // Rotate the order so no case always runs first or after the same one.
            let case = opts.cases[(i + round) % opts.cases.len()];
            let running = start_case(case, opts, dir.path());
            let cookie = case.tokens().then(token_cookie);
            let read = Load::get(cookie);
            wrk(&opts.load_core, opts.connections, running.port, 1, &read);
            let mut kinds = vec![("read", read)];
            if case.primary() {
                kinds.push(("write", Load::post()));
            }
            for (kind, load) in &kinds {
                let s = measure(rt, opts, &running, load);
                println!(
                    "{:<18} {:<5} {:>5} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>8.0} {:>8.0} {:>5}",
                    case.name(),
                    kind,
                    round + 1,
                    s.rps,
                    s.sat_cpu,
                    s.sat_user,
                    s.fix_cpu,
                    s.fix_p50,
                    s.fix_p99,
                    s.bad
                );
                match samples.iter_mut().find(|(k, _)| *k == (case, *kind)) {
                    Some((_, v)) => v.push(s),
                    None => samples.push(((case, *kind), vec![s])),
                }
            }
            drop(running);
        }
    }
    print_tables(opts, &samples);
}

// ---------------------------------------------------------------------------------------------
// Tables

/// `median (min–max)` of `values`.
fn spread(values: &[f64], decimals: usize) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return "-".to_owned();
    }
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.d$} ({:.d$}–{:.d$})",
        median(&finite),
        min,
        max,
        d = decimals
    )
}

fn print_tables(opts: &Opts, samples: &Samples) {
    let r = opts.rate;
    let get = |case: Case, kind: &str| {
        samples
            .iter()
            .find(|((c, k), _)| *c == case && *k == kind)
            .map(|(_, v)| v.as_slice())
    };
    println!();
    println!(
        "Median (min–max) of {} rounds. CPU: µs of CPU (user + system) of every serving process \
         per request; sat: wrk -t1 -c{} for {} s; @{r}: open loop at {r} req/s for {} s.",
        opts.rounds, opts.connections, opts.duration, opts.rate_secs
    );
    println!();
    println!(
        "| case | request | req/s (sat) | CPU µs/req (sat) | of which user | CPU µs/req @{r} | p50 µs @{r} | p99 µs @{r} | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for ((case, kind), v) in samples {
        let col = |f: fn(&Sample) -> f64, d: usize| spread(&v.iter().map(f).collect::<Vec<_>>(), d);
        println!(
            "| {} | {kind} | {} | {} | {} | {} | {} | {} | {} |",
            case.name(),
            col(|s| s.rps, 0),
            col(|s| s.sat_cpu, 1),
            col(|s| s.sat_user, 1),
            col(|s| s.fix_cpu, 1),
            col(|s| s.fix_p50, 0),
            col(|s| s.fix_p99, 0),
            v.iter().map(|s| s.bad).sum::<u64>()
        );
    }

    // Extra CPU over the bare app, paired within each round (the same round's bare run).
    if get(Case::Bare, "read").is_none() {
        return;
    }
    println!();
    println!(
        "Extra CPU per request over the bare app (µs, paired by round: median (min–max)), and \
         the embedded layer's extra as a share of the sidecar's (goal: ≤ 0.20 for reads):"
    );
    println!();
    println!("| request | embedded extra (sat) | sidecar extra (sat) | embedded ÷ sidecar (sat) | embedded extra @{r} | sidecar extra @{r} | embedded ÷ sidecar @{r} |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let extra = |v: &[Sample], bare: &[Sample], f: fn(&Sample) -> f64| -> Vec<f64> {
        v.iter().zip(bare).map(|(s, b)| f(s) - f(b)).collect()
    };
    let ratio =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a / b).collect() };
    let rows = [
        (
            "read on a primary",
            Case::EmbeddedPrimary,
            Case::SidecarPrimary,
            "read",
        ),
        (
            "read on a replica",
            Case::EmbeddedReplica,
            Case::SidecarReplica,
            "read",
        ),
        (
            "write on a primary",
            Case::EmbeddedPrimary,
            Case::SidecarPrimary,
            "write",
        ),
    ];
    for (label, embedded, sidecar, kind) in rows {
        let (Some(e), Some(s), Some(bare)) = (
            get(embedded, kind),
            get(sidecar, kind),
            get(Case::Bare, kind),
        ) else {
            continue;
        };
        let (es, ss) = (extra(e, bare, |x| x.sat_cpu), extra(s, bare, |x| x.sat_cpu));
        let (ef, sf) = (extra(e, bare, |x| x.fix_cpu), extra(s, bare, |x| x.fix_cpu));
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            spread(&es, 1),
            spread(&ss, 1),
            spread(&ratio(&es, &ss), 2),
            spread(&ef, 1),
            spread(&sf, 1),
            spread(&ratio(&ef, &sf), 2),
        );
    }

    if let (Some(w), Some(rt)) = (
        get(Case::TokensWrites, "read"),
        get(Case::TokensReadsToo, "read"),
    ) {
        let paired = |f: fn(&Sample) -> f64| -> Vec<f64> {
            rt.iter().zip(w).map(|(a, b)| f(a) / f(b)).collect()
        };
        println!();
        println!(
            "consistency.session = \"reads-too\" over \"writes\", reads with a token (sidecar \
             replica), paired by round: CPU per read (sat) {}, @{r} {}; req/s (sat) {}",
            spread(&paired(|s| s.sat_cpu), 3),
            spread(&paired(|s| s.fix_cpu), 3),
            spread(&paired(|s| s.rps), 3),
        );
    }
}
