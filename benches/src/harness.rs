//! Pieces of a loopback load benchmark: child processes stopped on drop, pinning, `wrk` at
//! saturation and an open-loop client at a fixed rate. Used by `load` and `embed`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream as StdStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Body of the benchmarked writes (a small JSON document).
pub const WRITE_BODY: &str = r#"{"note":"hello"}"#;

/// A child process, terminated (TERM, then KILL after 3 s) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` (its stdin a pipe, so a child that watches it exits with us).
    pub fn spawn(name: &str, cmd: &mut Command) -> std::io::Result<Proc> {
        let child = cmd.stdin(Stdio::piped()).spawn()?;
        Ok(Proc {
            name: name.to_owned(),
            child,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True once the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Its standard output, if it was piped and not taken yet.
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on TERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) the threads of `pid` have run so far, to the nanosecond, from
/// `/proc/<pid>/task/*/schedstat` (`/proc/<pid>/stat` counts in 10 ms ticks, too coarse for a
/// few seconds of a few thousand requests). Threads that ended since are not counted: compare
/// two readings of a process whose threads live on (a Tokio runtime's).
pub fn sched_cpu(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// `program` pinned to `core` through taskset (which execs it: same pid).
pub fn pinned(core: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(core).arg(program);
    cmd
}

/// A port to listen on, below Linux's ephemeral range (32768 and up) so that no outgoing
/// connection takes it between this check and the server's bind.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = 20_000 + std::process::id() % 6_000;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(port) = u16::try_from(base + n % 6_000) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One request on a fresh connection (`POST`s carry [`WRITE_BODY`]; `cookie`, if any, as the
/// `Cookie` header); the response status, if any.
pub fn status_of(port: u16, method: &str, cookie: Option<&str>) -> Option<u16> {
    let mut s = StdStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let body = if method == "POST" { WRITE_BODY } else { "" };
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    write!(
        s,
        "{method} / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n{cookie}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

/// True once `port` answers `method /` with `status` ([`status_of`]), false after 10 s of
/// trying.
pub fn answers(port: u16, method: &str, cookie: Option<&str>, status: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if status_of(port, method, cookie) == Some(status) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In a benchmark's child server: exits the process once stdin (the benchmark's pipe) closes,
/// so no server outlives a benchmark that ended or was killed.
pub fn exit_with_parent() {
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
}

/// In a benchmark's child server: a listener on a free loopback port, the port printed on
/// stdout for the benchmark to read.
pub async fn announced_listener() -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    Ok(listener)
}

/// What a load generator sends: a `GET` (with a `Cookie` header, or none) or a `POST` of
/// [`WRITE_BODY`].
#[derive(Clone, Debug)]
pub struct Load {
    method: Method,
    cookie: Option<String>,
}

impl Load {
    /// `GET /`, with `Cookie: <cookie>` when given.
    pub fn get(cookie: Option<String>) -> Load {
        Load {
            method: Method::GET,
            cookie,
        }
    }

    /// `POST /` with a JSON body.
    pub fn post() -> Load {
        Load {
            method: Method::POST,
            cookie: None,
        }
    }

    fn is_post(&self) -> bool {
        self.method == Method::POST
    }

    fn request(&self) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri("/")
            .header(http::header::HOST, "bench");
        if let Some(cookie) = &self.cookie {
            builder = builder.header(http::header::COOKIE, cookie.as_str());
        }
        if self.is_post() {
            builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(WRITE_BODY.as_bytes())))
        } else {
            builder.body(Full::new(Bytes::new()))
        }
    }
}

/// What `wrk` reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct WrkResult {
    /// Requests per second.
    pub rps: f64,
    /// Requests completed.
    pub requests: u64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Non-2xx/3xx responses and socket errors.
    pub bad: u64,
}

/// Runs `wrk -t1 -c<connections> -d<secs>s --latency` pinned to `core` against `port`.
/// Missing or failing `wrk` reads as zero requests.
pub fn wrk(core: &str, connections: usize, port: u16, secs: u64, load: &Load) -> WrkResult {
    let mut cmd = pinned(core, "wrk");
    cmd.arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency");
    let script = tempfile::NamedTempFile::new().ok();
    if let (true, Some(script)) = (load.is_post(), &script) {
        let lua = format!(
            "wrk.method = \"POST\"\nwrk.body = '{WRITE_BODY}'\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n"
        );
        if std::fs::write(script.path(), lua).is_ok() {
            cmd.arg("-s").arg(script.path());
        }
    }
    if let Some(cookie) = &load.cookie {
        cmd.arg("-H").arg(format!("Cookie: {cookie}"));
    }
    match cmd
        .arg(format!("http://127.0.0.1:{port}/"))
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) => parse_wrk(&String::from_utf8_lossy(&out.stdout)),
        Err(_) => WrkResult::default(),
    }
}

fn parse_wrk_duration(text: &str) -> Duration {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => f64::NAN,
    };
    Duration::try_from_secs_f64(secs).unwrap_or_default()
}

/// Reads `wrk --latency`'s report.
pub fn parse_wrk(out: &str) -> WrkResult {
    let mut r = WrkResult::default();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50 = parse_wrk_duration(v),
            ["99%", v] => r.p99 = parse_wrk_duration(v),
            ["Requests/sec:", v] => r.rps = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => r.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => r.bad += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                r.bad += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    r
}

type Sender = SendRequest<Full<Bytes>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn connect(port: u16) -> Result<Sender, BoxError> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// What the open-loop client saw.
#[derive(Debug, Default, Clone)]
pub struct OpenLoop {
    /// Latency of each successful (2xx) request, sorted.
    pub latencies: Vec<Duration>,
    /// Requests that failed or were not answered 2xx.
    pub bad: u64,
    /// Connections opened.
    pub connections: usize,
}

/// Sends `rate` requests per second for `secs`, each at its scheduled instant on an idle
/// keep-alive connection (a new one when all are busy). Latency runs from the scheduled
/// instant to the end of the response body, so a stall delays every request behind it as real
/// clients would see.
pub async fn open_loop(port: u16, rate: u32, secs: f64, load: &Load) -> OpenLoop {
    let n = (f64::from(rate) * secs).round() as u32;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let idle: Arc<Mutex<Vec<Sender>>> = Arc::default();
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..16 {
        if let Ok(s) = connect(port).await {
            if let Ok(mut idle) = idle.lock() {
                idle.push(s);
            }
            opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let start = Instant::now() + Duration::from_millis(20);
    // A thread keeps the schedule: tokio's timer has millisecond granularity, nanosleep does
    // better than 0.1 ms.
    let scheduler = std::thread::spawn(move || {
        for i in 0..n {
            let at = start + interval * i;
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send(at).is_err() {
                break;
            }
        }
    });
    let mut result = OpenLoop::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut record = |r: Result<Result<Duration, BoxError>, tokio::task::JoinError>| match r {
        Ok(Ok(latency)) => result.latencies.push(latency),
        _ => result.bad += 1,
    };
    while let Some(at) = rx.recv().await {
        let idle = idle.clone();
        let opened = opened.clone();
        let request = load.request();
        tasks.spawn(async move {
            let pooled = idle.lock().ok().and_then(|mut idle| idle.pop());
            let mut sender = match pooled {
                Some(s) => s,
                None => {
                    opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    connect(port).await?
                }
            };
            let response = sender.send_request(request?).await?;
            let ok = response.status().is_success();
            response.into_body().collect().await?;
            let latency = at.elapsed();
            if sender.ready().await.is_ok() {
                if let Ok(mut idle) = idle.lock() {
                    idle.push(sender);
                }
            }
            if ok {
                Ok(latency)
            } else {
                Err("status".into())
            }
        });
        while let Some(done) = tasks.try_join_next() {
            record(done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        record(done);
    }
    let _ = scheduler.join();
    result.latencies.sort();
    result.connections = opened.load(std::sync::atomic::Ordering::Relaxed);
    result
}

/// The program `name` in this program's directory (`target/release/rwproxy` beside
/// `target/release/load`): the default binary under test.
pub fn beside_this_program(name: &str) -> PathBuf {
    std::env::current_exe()
        .unwrap_or_default()
        .with_file_name(name)
}

/// Set in the re-executed, pinned process.
const PINNED_ENV: &str = "RWPROXY_BENCH_PINNED";

/// Runs this program again with `args` on `core` (`taskset`), so that the benchmark's own
/// client and `wrk` stay off the measured core, and answers its exit code; `None` in the
/// re-executed process itself (go on with the benchmark).
pub fn rerun_pinned(core: &str, args: &[String]) -> Option<std::process::ExitCode> {
    use std::process::ExitCode;
    if std::env::var_os(PINNED_ENV).is_some() {
        return None;
    }
    let status = Command::new("taskset")
        .arg("-c")
        .arg(core)
        .arg(std::env::current_exe().unwrap_or_default())
        .args(args)
        .env(PINNED_ENV, "1")
        .status();
    Some(match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cannot run taskset (util-linux): {e}");
            ExitCode::FAILURE
        }
    })
}
