//! The loopback load benchmark: rwproxy side by side with nginx and HAProxy (and no proxy at
//! all), in front of the same small hyper app, measured in one run.
//!
//! ```sh
//! bash benches/setup.sh                       # nginx and wrk from Debian (HAProxy if missing)
//! cargo build --release -p rwproxy            # the real binary under test
//! cargo run --release -p rwproxy-benches --bin load -- --rounds 3
//! cargo run --release -p rwproxy-benches --bin load -- --soak 300   # memory over a soak
//! ```
//!
//! Pinning (2 cores): this process, the app and the load generator share `--load-core` (0);
//! the proxy under test runs alone on `--proxy-core` (1), so proxies are compared on one core
//! each (`proxy.workers = 1`, nginx `worker_processes 1`, HAProxy `nbthread 1`).
//!
//! Per target and round: a short warm-up, then saturation with `wrk -t1 -c50` (requests/s,
//! wrk's p50/p99, proxy CPU per request from `/proc/<pid>/stat` before and after), then a fixed
//! rate with this program's own open-loop client (latency from each request's scheduled send
//! time, so a stall delays every request behind it as it would real clients), then
//! `--idle` idle keep-alive client connections and the proxy's `VmRSS`.
//! Targets rotate between rounds; the table shows the median of the rounds.
//!
//! A/B: `--baseline <other rwproxy>` pairs each rwproxy target with the same target run by the
//! other binary, back to back in alternating order, and prints the per-round ratios.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rwproxy_benches::harness::{
    self, free_port, open_loop, parse_wrk, pinned, Load, Proc, WrkResult,
};
use rwproxy_benches::{median, quantile, tree_cpu, tree_rss_kib, CpuTimes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The app's answer to every request: a small body, as in a typical JSON or HTML fragment read.
const APP_BODY: &[u8] = b"hello, world\n";

/// The suffix of a target run with the `--baseline` binary.
const BASELINE: &str = "@baseline";

const ALL_TARGETS: [&str; 7] = [
    "direct",
    "rwproxy",
    "nginx",
    "haproxy",
    "rwproxy-write-local",
    "rwproxy-write-fwd",
    "rwproxy-access-log",
];
const DEFAULT_TARGETS: [&str; 6] = [
    "direct",
    "rwproxy",
    "nginx",
    "haproxy",
    "rwproxy-write-local",
    "rwproxy-write-fwd",
];

/// The loopback load benchmark (see the module documentation).
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "load")]
struct Opts {
    /// Rounds; targets rotate between rounds and the table shows the medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of saturation (wrk) per target and round.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// wrk's connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// The fixed rate of the open-loop client, requests per second.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// Seconds at the fixed rate.
    #[arg(long, default_value_t = 5.0)]
    rate_secs: f64,
    /// Idle keep-alive connections opened before the proxy's memory is read.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// A soak of this many seconds instead (rwproxy's memory over time).
    #[arg(long)]
    soak: Option<u64>,
    /// The core of this program, the app and the load generator.
    #[arg(long, default_value = "0")]
    load_core: String,
    /// The core of the proxy under test.
    #[arg(long, default_value = "1")]
    proxy_core: String,
    /// Targets, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_TARGETS.map(String::from),
          value_parser = clap::builder::PossibleValuesParser::new(ALL_TARGETS))]
    targets: Vec<String>,
    /// The rwproxy binary under test (default: `rwproxy` beside this program).
    #[arg(long, default_value_os_t = harness::beside_this_program("rwproxy"))]
    rwproxy: PathBuf,
    /// A second rwproxy binary (`--baseline`): every rwproxy target also runs with it, right
    /// before or after the same target with `rwproxy`, in alternating order, and a table of
    /// per-round ratios follows.
    #[arg(long)]
    baseline: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--app") {
        return app_main();
    }
    let opts = <Opts as clap::Parser>::parse_from(
        std::iter::once("load".to_owned()).chain(args.iter().cloned()),
    );
    // Run the whole benchmark (its client, the app, wrk) on the load core.
    if have("taskset") {
        if let Some(code) = harness::rerun_pinned(&opts.load_core, &args) {
            return code;
        }
    }
    for binary in std::iter::once(&opts.rwproxy).chain(&opts.baseline) {
        if !binary.is_file() {
            eprintln!(
                "no rwproxy binary at {} (build it: cargo build --release -p rwproxy)",
                binary.display()
            );
            return ExitCode::FAILURE;
        }
    }
    if !have("wrk") {
        eprintln!("wrk is not installed (run: bash benches/setup.sh)");
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match opts.soak {
        Some(secs) => soak(&rt, &opts, secs),
        None => bench(&rt, &opts),
    }
    ExitCode::SUCCESS
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Waits until `port` answers `method /` with 200.
fn wait_ready(port: u16, method: &str, what: &str) {
    assert!(answers(port, method), "{what} never answered 200");
}

/// True once `port` answers `method /` with 200, false after 10 s of trying.
fn answers(port: u16, method: &str) -> bool {
    harness::answers(port, method, None, 200)
}

// ---------------------------------------------------------------------------------------------
// The app

fn app_main() -> ExitCode {
    harness::exit_with_parent();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = harness::announced_listener().await.expect("listen");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(app))
                    .await;
            });
        }
    })
}

async fn app(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    Ok(Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(APP_BODY)))
        .expect("response"))
}

fn start_app(opts: &Opts) -> (Proc, u16) {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = pinned(&opts.load_core, exe);
    cmd.arg("--app").stdout(Stdio::piped());
    let mut proc = Proc::spawn("app", &mut cmd).expect("start the app");
    let stdout = proc.stdout().expect("app stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("app port");
    let port = line.trim().parse().expect("app port");
    wait_ready(port, "GET", "the app");
    (proc, port)
}

// ---------------------------------------------------------------------------------------------
// Proxies under test

/// A started target: its processes, the port clients use, and whose CPU counts.
struct Running {
    _procs: Vec<Proc>,
    port: u16,
    measured: Vec<u32>,
    post: bool,
}

impl Running {
    /// One process under test, serving on `port`.
    fn one(proc: Proc, port: u16, post: bool) -> Self {
        let measured = vec![proc.pid()];
        Running {
            _procs: vec![proc],
            port,
            measured,
            post,
        }
    }
}

fn rwproxy_config(node: &str, listen: u16, app: u16, primary: u16, access_log: bool) -> String {
    format!(
        r#"node = "{node}"

[proxy]
listen = "127.0.0.1:{listen}"
app = "http://127.0.0.1:{app}"
workers = 1
drain_timeout = "1s"
# Idle keep-alive connections are closed after `header_timeout` (30 s by default); the soak
# holds its 1,000 idle connections for minutes.
header_timeout = "10m"

[admin]
listen = "127.0.0.1:{admin}"

[cluster]
source = "static"
primary = "primary"

[writes]
mode = "forward"
primary_url = "http://127.0.0.1:{primary}"

[log]
access = {access_log}
level = "{level}"
"#,
        level = if access_log { "info" } else { "warn" },
        admin = free_port(),
    )
}

#[allow(clippy::too_many_arguments)]
fn start_rwproxy(
    opts: &Opts,
    binary: &Path,
    dir: &Path,
    node: &str,
    app: u16,
    primary: u16,
    access_log: bool,
) -> (Proc, u16) {
    let port = free_port();
    let config = dir.join(format!("{node}.toml"));
    std::fs::write(
        &config,
        rwproxy_config(node, port, app, primary, access_log),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.join(format!("{node}.log"))).expect("log file");
    let mut cmd = pinned(&opts.proxy_core, binary);
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log);
    let proc = Proc::spawn(&format!("rwproxy {node}"), &mut cmd).expect("start rwproxy");
    if !answers(port, "GET") {
        let log = std::fs::read_to_string(dir.join(format!("{node}.log"))).unwrap_or_default();
        panic!("rwproxy {node} never answered 200; its log:\n{log}");
    }
    (proc, port)
}

fn nginx_config(dir: &Path, listen: u16, app: u16) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream app {{
        server 127.0.0.1:{app};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"#
    )
}

fn haproxy_config(listen: u16, app: u16) -> String {
    format!(
        r#"global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s

frontend bench
    bind 127.0.0.1:{listen}
    option forwardfor
    default_backend app

backend app
    server app 127.0.0.1:{app}
"#
    )
}

fn nginx_path() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

fn haproxy_path() -> Option<&'static str> {
    ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

fn available(target: &str) -> bool {
    match target {
        "nginx" => nginx_path().is_some(),
        "haproxy" => haproxy_path().is_some(),
        _ => true,
    }
}

fn start_target(target: &str, opts: &Opts, app: &Proc, app_port: u16, dir: &Path) -> Running {
    let (target, binary) = match (target.strip_suffix(BASELINE), &opts.baseline) {
        (Some(t), Some(baseline)) => (t, baseline.as_path()),
        _ => (target, opts.rwproxy.as_path()),
    };
    match target {
        "direct" => Running {
            _procs: vec![],
            port: app_port,
            measured: vec![app.pid()],
            post: false,
        },
        "rwproxy" | "rwproxy-access-log" | "rwproxy-write-local" => {
            let log = target == "rwproxy-access-log";
            let (p, port) = start_rwproxy(opts, binary, dir, "primary", app_port, 9, log);
            Running::one(p, port, target == "rwproxy-write-local")
        }
        "rwproxy-write-fwd" => {
            let (primary, primary_port) =
                start_rwproxy(opts, binary, dir, "primary", app_port, 9, false);
            let (replica, port) =
                start_rwproxy(opts, binary, dir, "replica", app_port, primary_port, false);
            wait_ready(port, "POST", "the forwarded write path");
            let measured = vec![replica.pid(), primary.pid()];
            Running {
                _procs: vec![replica, primary],
                port,
                measured,
                post: true,
            }
        }
        "nginx" => {
            let port = free_port();
            let config = dir.join("nginx.conf");
            std::fs::write(&config, nginx_config(dir, port, app_port)).expect("write config");
            let mut cmd = pinned(&opts.proxy_core, nginx_path().expect("nginx"));
            cmd.arg("-c")
                .arg(&config)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("nginx-error.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let p = Proc::spawn("nginx", &mut cmd).expect("start nginx");
            wait_ready(port, "GET", "nginx");
            Running::one(p, port, false)
        }
        "haproxy" => {
            let port = free_port();
            let config = dir.join("haproxy.cfg");
            std::fs::write(&config, haproxy_config(port, app_port)).expect("write config");
            let mut cmd = pinned(&opts.proxy_core, haproxy_path().expect("haproxy"));
            cmd.arg("-db")
                .arg("-f")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let p = Proc::spawn("haproxy", &mut cmd).expect("start haproxy");
            wait_ready(port, "GET", "haproxy");
            Running::one(p, port, false)
        }
        other => panic!("unknown target {other}"),
    }
}

fn cpu_of(pids: &[u32]) -> CpuTimes {
    pids.iter().map(|p| tree_cpu(*p)).sum()
}

fn rss_mib(pids: &[u32]) -> f64 {
    pids.iter().map(|p| tree_rss_kib(*p)).sum::<u64>() as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// wrk

fn load_of(post: bool) -> Load {
    if post {
        Load::post()
    } else {
        Load::get(None)
    }
}

fn wrk(opts: &Opts, port: u16, secs: u64, post: bool) -> WrkResult {
    harness::wrk(
        &opts.load_core,
        opts.connections,
        port,
        secs,
        &load_of(post),
    )
}

// ---------------------------------------------------------------------------------------------
// The open-loop fixed-rate client

// `harness::open_loop`

// ---------------------------------------------------------------------------------------------
// Idle keep-alive connections

/// Opens `n` client connections, each sending one GET and reading the whole response, then
/// left open and idle (in batches, so the proxy's upstream pool stays small, as it would with
/// clients that come and go).
async fn open_idle(port: u16, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let batch = left.min(50);
        left -= batch;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            set.spawn(async move {
                let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .await?;
                read_response(&mut s).await?;
                Ok::<_, std::io::Error>(s)
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Ok(s)) = r {
                streams.push(s);
            }
        }
    }
    streams
}

async fn read_response(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let got = s.read(&mut chunk).await?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..got]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark

#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    rps: f64,
    sat_p50: f64,
    sat_p99: f64,
    sat_cpu: f64,
    /// The user-space part of `sat_cpu`.
    sat_user: f64,
    /// The app's CPU per request over the same saturation run: the same work in every run, so
    /// `sat_cpu / app_cpu` leaves out much of how fast the machine happened to be then.
    app_cpu: f64,
    fix_p50: f64,
    fix_p99: f64,
    fix_cpu: f64,
    bad: u64,
    rss: f64,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn measure(
    rt: &tokio::runtime::Runtime,
    opts: &Opts,
    target: &str,
    app: &Proc,
    app_port: u16,
    dir: &Path,
) -> Sample {
    let running = start_target(target, opts, app, app_port, dir);
    let (port, post) = (running.port, running.post);
    // Warm-up: connections, pools, caches.
    wrk(opts, port, 1, post);

    let before = cpu_of(&running.measured);
    let app_before = tree_cpu(app.pid());
    let w = wrk(opts, port, opts.duration, post);
    let sat_cpu = cpu_of(&running.measured).since(before);
    let app_cpu = tree_cpu(app.pid()).since(app_before);

    let before = cpu_of(&running.measured);
    let fixed = rt.block_on(open_loop(port, opts.rate, opts.rate_secs, &load_of(post)));
    let fix_cpu = cpu_of(&running.measured).since(before).total();

    let rss = if post || opts.idle == 0 {
        f64::NAN
    } else {
        if std::env::var_os("RWPROXY_BENCH_DEBUG_RSS").is_some() {
            eprintln!(
                "  {target}: RSS before idle connections {:.1} MiB",
                rss_mib(&running.measured)
            );
        }
        let idle = rt.block_on(open_idle(port, opts.idle));
        std::thread::sleep(Duration::from_millis(500));
        let rss = rss_mib(&running.measured);
        if idle.len() < opts.idle {
            eprintln!(
                "  only {} of {} idle connections opened",
                idle.len(),
                opts.idle
            );
        }
        drop(idle);
        rss
    };
    let per = |cpu: Duration, n: u64| {
        if n == 0 {
            f64::NAN
        } else {
            us(cpu) / n as f64
        }
    };
    Sample {
        rps: w.rps,
        sat_p50: us(w.p50),
        sat_p99: us(w.p99),
        sat_cpu: per(sat_cpu.total(), w.requests),
        sat_user: per(sat_cpu.user, w.requests),
        app_cpu: per(app_cpu.total(), w.requests),
        fix_p50: us(quantile(&fixed.latencies, 0.5)),
        fix_p99: us(quantile(&fixed.latencies, 0.99)),
        fix_cpu: per(fix_cpu, fixed.latencies.len() as u64),
        bad: w.bad + fixed.bad,
        rss,
    }
}

fn bench(rt: &tokio::runtime::Runtime, opts: &Opts) {
    let targets: Vec<&str> = opts
        .targets
        .iter()
        .map(String::as_str)
        .filter(|t| {
            let ok = available(t);
            if !ok {
                eprintln!("skipping {t}: not installed (bash benches/setup.sh)");
            }
            ok
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, app_port) = start_app(opts);
    println!(
        "load benchmark: {} rounds; saturation wrk -t1 -c{} -d{}s; open loop {} req/s for {} s; \
         {} idle connections; load core {}, proxy core {}",
        opts.rounds,
        opts.connections,
        opts.duration,
        opts.rate,
        opts.rate_secs,
        opts.idle,
        opts.load_core,
        opts.proxy_core
    );
    println!(
        "{:<29} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>5}",
        "target",
        "round",
        "req/s",
        "p50",
        "p99",
        "cpu/req",
        "user",
        "app/req",
        "p50@R",
        "p99@R",
        "cpu@R",
        "RSS",
        "bad"
    );
    // A/B mode pairs each rwproxy target with its baseline run: the two run back to back,
    // and which goes first alternates between rounds, so slow drift of the machine (other
    // work, thermal state) weighs on both alike.
    let units: Vec<Vec<String>> = targets
        .iter()
        .map(|t| match &opts.baseline {
            Some(_) if t.starts_with("rwproxy") => vec![(*t).to_owned(), format!("{t}{BASELINE}")],
            _ => vec![(*t).to_owned()],
        })
        .collect();
    let mut samples: Vec<(String, Vec<Sample>)> = units
        .iter()
        .flatten()
        .map(|t| (t.clone(), Vec::new()))
        .collect();
    for round in 0..opts.rounds {
        // Rotate the order so no target always runs first (or right after a heavy one).
        for i in 0..units.len() {
            let mut unit: Vec<&String> = units[(i + round) % units.len()].iter().collect();
            if round % 2 == 1 {
                unit.reverse();
            }
            for target in unit {
                let s = measure(rt, opts, target, &app, app_port, dir.path());
                println!(
                    "{:<29} {:>5} {:>9.0} {:>8.0} {:>8.0} {:>8.1} {:>8.1} {:>8.1} {:>8.0} {:>8.0} {:>8.1} {:>6.1} {:>5}",
                    target,
                    round + 1,
                    s.rps,
                    s.sat_p50,
                    s.sat_p99,
                    s.sat_cpu,
                    s.sat_user,
                    s.app_cpu,
                    s.fix_p50,
                    s.fix_p99,
                    s.fix_cpu,
                    s.rss,
                    s.bad
                );
                if let Some((_, v)) = samples.iter_mut().find(|(t, _)| t == target) {
                    v.push(s);
                }
            }
        }
    }
    drop(app);
    print_tables(opts, &samples);
}

fn print_tables(opts: &Opts, samples: &[(String, Vec<Sample>)]) {
    let med = |v: &[Sample], f: fn(&Sample) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let rows: Vec<(String, Sample)> = samples
        .iter()
        .map(|(t, v)| {
            (
                t.clone(),
                Sample {
                    rps: med(v, |s| s.rps),
                    sat_p50: med(v, |s| s.sat_p50),
                    sat_p99: med(v, |s| s.sat_p99),
                    sat_cpu: med(v, |s| s.sat_cpu),
                    sat_user: med(v, |s| s.sat_user),
                    app_cpu: med(v, |s| s.app_cpu),
                    fix_p50: med(v, |s| s.fix_p50),
                    fix_p99: med(v, |s| s.fix_p99),
                    fix_cpu: med(v, |s| s.fix_cpu),
                    bad: v.iter().map(|s| s.bad).sum(),
                    rss: med(v, |s| s.rss),
                },
            )
        })
        .collect();
    let find = |name: &str| rows.iter().find(|(t, _)| t == name).map(|(_, s)| *s);
    let r = opts.rate;
    println!();
    println!(
        "Median of {} rounds. Saturation: wrk -t1 -c{} -d{}s. @{r}: open loop at {r} req/s for {} s. \
         CPU: µs of proxy CPU (user+system) per request (direct: the app's), and its user-space part. RSS: with {} idle \
         keep-alive client connections.",
        opts.rounds, opts.connections, opts.duration, opts.rate_secs, opts.idle
    );
    println!();
    println!(
        "| target | req/s | p50 µs | p99 µs | CPU µs/req | of which user | p50 µs @{r} | p99 µs @{r} | CPU µs/req @{r} | RSS MiB | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (t, s) in &rows {
        println!(
            "| {t} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {} | {} |",
            s.rps,
            s.sat_p50,
            s.sat_p99,
            s.sat_cpu,
            s.sat_user,
            s.fix_p50,
            s.fix_p99,
            s.fix_cpu,
            if s.rss.is_nan() {
                "-".to_owned()
            } else {
                format!("{:.1}", s.rss)
            },
            s.bad
        );
    }
    let ratio = |a: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 && a.is_finite() => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    };
    for (base_name, base) in [("direct", find("direct")), ("nginx", find("nginx"))] {
        let Some(base) = base else { continue };
        println!();
        println!("Ratios to {base_name}:");
        println!();
        println!("| target | req/s | CPU µs/req | user CPU µs/req | CPU µs/req @{r} | p50 @{r} | p99 @{r} | p50 added µs @{r} |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let direct = find("direct");
        for (t, s) in &rows {
            if t == base_name || t == "direct" {
                continue;
            }
            println!(
                "| {t} | {} | {} | {} | {} | {} | {} | {} |",
                ratio(s.rps, Some(base.rps)),
                ratio(s.sat_cpu, Some(base.sat_cpu)),
                ratio(s.sat_user, Some(base.sat_user)),
                ratio(s.fix_cpu, Some(base.fix_cpu)),
                ratio(s.fix_p50, Some(base.fix_p50)),
                ratio(s.fix_p99, Some(base.fix_p99)),
                direct.map_or("-".to_owned(), |d| format!("{:.0}", s.fix_p50 - d.fix_p50)),
            );
        }
    }
    ab_table(samples);
    goals(&find);
}

/// The `q` quantile of sorted values, interpolated between neighbours.
fn quantile_f64(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (at - low as f64)
}

/// With `--baseline`: for each rwproxy target, the ratio new / baseline of each round's pair
/// (measured back to back), and the median of those ratios. Pairing cancels the drift between
/// rounds that the medians of each side keep.
fn ab_table(samples: &[(String, Vec<Sample>)]) {
    let pairs: Vec<(&str, &[Sample], &[Sample])> = samples
        .iter()
        .filter_map(|(t, new)| {
            let (_, old) = samples
                .iter()
                .find(|(b, _)| *b == format!("{t}{BASELINE}"))?;
            Some((t.as_str(), new.as_slice(), old.as_slice()))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    println!();
    println!(
        "A/B, --rwproxy over --baseline: median (interquartile range) of the per-round ratios; \
         below 1.00 is cheaper or faster. CPU ÷ app: the proxy's CPU per request over the app's \
         in the same run (the app does the same work in every run, so the ratio leaves out much \
         of the machine's own drift)."
    );
    println!();
    println!(
        "| target | rounds | CPU µs/req | CPU ÷ app | user CPU µs/req | CPU µs/req @R | req/s | RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (target, new, old) in pairs {
        let cell = |f: fn(&Sample) -> f64| {
            let mut ratios: Vec<f64> = new
                .iter()
                .zip(old)
                .map(|(n, o)| f(n) / f(o))
                .filter(|r| r.is_finite())
                .collect();
            if ratios.is_empty() {
                return "-".to_owned();
            }
            ratios.sort_by(f64::total_cmp);
            format!(
                "{:.3} ({:.2}–{:.2})",
                median(&ratios),
                quantile_f64(&ratios, 0.25),
                quantile_f64(&ratios, 0.75)
            )
        };
        println!(
            "| {target} | {} | {} | {} | {} | {} | {} | {} |",
            new.len().min(old.len()),
            cell(|s| s.sat_cpu),
            cell(|s| s.sat_cpu / s.app_cpu),
            cell(|s| s.sat_user),
            cell(|s| s.fix_cpu),
            cell(|s| s.rps),
            cell(|s| s.rss),
        );
    }
}

fn goals(find: &dyn Fn(&str) -> Option<Sample>) {
    println!();
    println!("Goals:");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let Some(rw) = find("rwproxy") else { return };
    for other in ["nginx", "haproxy"] {
        if let Some(o) = find(other) {
            println!(
                "  CPU/request ≤ {other}: {:.1} vs {:.1} µs (user space: {:.1} vs {:.1}; at fixed rate: {:.1} vs {:.1}): {}",
                rw.sat_cpu,
                o.sat_cpu,
                rw.sat_user,
                o.sat_user,
                rw.fix_cpu,
                o.fix_cpu,
                verdict(rw.sat_cpu <= o.sat_cpu)
            );
        }
    }
    if let Some(n) = find("nginx") {
        println!(
            "  throughput ≥ nginx: {:.0} vs {:.0} req/s: {}",
            rw.rps,
            n.rps,
            verdict(rw.rps >= n.rps)
        );
        println!(
            "  p50 at fixed rate ≤ nginx: {:.0} vs {:.0} µs: {}",
            rw.fix_p50,
            n.fix_p50,
            verdict(rw.fix_p50 <= n.fix_p50)
        );
        println!(
            "  p99 at fixed rate ≤ 1.2 × nginx: {:.0} vs {:.0} µs: {}",
            rw.fix_p99,
            1.2 * n.fix_p99,
            verdict(rw.fix_p99 <= 1.2 * n.fix_p99)
        );
    }
    if let Some(w) = find("rwproxy-write-fwd") {
        println!(
            "  forwarded write ≤ 2 × local read CPU: {:.1} vs {:.1} µs: {}",
            w.sat_cpu,
            2.0 * rw.sat_cpu,
            verdict(w.sat_cpu <= 2.0 * rw.sat_cpu)
        );
    }
    if rw.rss.is_finite() {
        println!(
            "  RSS with idle connections ≤ 32 MiB: {:.1} MiB: {}",
            rw.rss,
            verdict(rw.rss <= 32.0)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Soak

fn soak(rt: &tokio::runtime::Runtime, opts: &Opts, secs: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, app_port) = start_app(opts);
    let (proxy, port) = start_rwproxy(
        opts,
        &opts.rwproxy,
        dir.path(),
        "primary",
        app_port,
        9,
        false,
    );
    let pid = [proxy.pid()];
    let started = Instant::now();
    println!("soak: rwproxy with {} idle connections, saturated by wrk -t1 -c{} for {secs} s; RSS every 10 s", opts.idle, opts.connections);
    println!("RSS at start: {:.1} MiB", rss_mib(&pid));
    let idle = rt.block_on(open_idle(port, opts.idle));
    println!(
        "RSS with {} idle connections: {:.1} MiB",
        idle.len(),
        rss_mib(&pid)
    );
    let mut cmd = pinned(&opts.load_core, "wrk");
    let mut load = Proc::spawn(
        "wrk",
        cmd.arg("-t1")
            .arg(format!("-c{}", opts.connections))
            .arg(format!("-d{secs}s"))
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdout(Stdio::piped()),
    )
    .expect("start wrk");
    let t0 = Instant::now();
    let mut series = Vec::new();
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let rss = rss_mib(&pid);
        let t = t0.elapsed().as_secs();
        series.push((t, rss));
        println!("  t={t:>4}s RSS {rss:.1} MiB");
        if load.exited() {
            break;
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = load.stdout() {
        let _ = stdout.read_to_string(&mut out);
    }
    let w = parse_wrk(&out);
    drop(load);
    let after_load = rss_mib(&pid);
    drop(idle);
    std::thread::sleep(Duration::from_secs(1));
    let closed = rss_mib(&pid);
    let max = series.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    let first = series.first().map_or(f64::NAN, |(_, r)| *r);
    let last = series.last().map_or(f64::NAN, |(_, r)| *r);
    println!(
        "soak done in {:.0} s: {} requests ({:.0} req/s), {} errors; RSS first sample {first:.1}, \
         last {last:.1}, max {max:.1} MiB; after load {after_load:.1}; idle connections closed \
         {closed:.1} MiB",
        started.elapsed().as_secs_f64(),
        w.requests,
        w.rps,
        w.bad
    );
    drop(proxy);
    drop(app);
}
