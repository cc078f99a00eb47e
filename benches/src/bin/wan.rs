//! The WAN benchmark: forwarded-write latency from a replica to a primary across a simulated
//! long link, as a ratio to the round trip.
//!
//! ```sh
//! cargo run --release -p rwproxy-benches --bin wan -- --rtt 100ms            # HTTP between nodes
//! cargo run --release -p rwproxy-benches --bin wan -- --rtt 100ms --tls      # HTTPS between nodes
//! cargo run --release -p rwproxy-benches --bin wan -- --idle 120,600         # + the long idle cases
//! cargo run --release -p rwproxy-benches --bin wan -- --old-path   # as before #28: no warm
//!                                          # connections, HTTP/1.1 (the "before" numbers)
//! ```
//!
//! One process: an app answering at once, two primaries-to-be (P1, P2) and one replica R, each a
//! real rwproxy node (the library's `Node`, on 127.0.0.1:0) with the `http` cluster source
//! served by this program, so the bench can hand the primary over. R reaches each primary
//! through a [`WanLink`] (one-way delay, handshake modelled; optional jitter and loss); the
//! clients sit next to R (loopback, no delay), as users next to their nearest region.
//!
//! Cases, in this order: steady writes from one client (20/s), from 50 clients (100/s in all),
//! a burst of 200 concurrent writes after a quiet pause, the first write after each `--idle`
//! pause, and the first 20 writes (20/s) after the primary moves from P1 to P2, which R had
//! never written to. The table gives p50, p99 and max, in ms and as a ratio to the round trip,
//! the goal (p99 <= 1.1 x RTT + 5 ms), and the connections R opened to the primary in the case.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rwproxy::Node;
use rwproxy_benches::quantile;
use rwproxy_benches::wan_link::{LinkShape, WanLink};
use tokio::net::{TcpListener, TcpStream};

const WRITE_BODY: &str = r#"{"note":"hello"}"#;

struct Opts {
    shape: LinkShape,
    tls: bool,
    /// `--light`: skip the 50-client and burst cases (the CPU-heavy ones).
    light: bool,
    /// `--old-path`: the path to the primary as before #28 (no warm connections, HTTP/1.1).
    old_path: bool,
    idle: Vec<Duration>,
    quiet: Duration,
    steady_secs: u64,
}

/// The WAN benchmark: forwarded-write latency across a simulated long link, as a ratio to the
/// round trip (see the module documentation).
#[derive(Debug, clap::Parser)]
#[command(name = "wan")]
struct Args {
    /// The round trip between replica and primary (`100ms`).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    rtt: Duration,
    /// Jitter added to each one-way delay.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    jitter: Duration,
    /// Probability that a segment is lost (0..1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// The quiet pause before the burst.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    quiet: Duration,
    /// Seconds of steady writes per steady case.
    #[arg(long, default_value_t = 10)]
    steady_secs: u64,
    /// Idle pauses before a first write, seconds, comma-separated (`120,600`).
    #[arg(long, value_delimiter = ',')]
    idle: Vec<u64>,
    /// HTTPS between the nodes.
    #[arg(long)]
    tls: bool,
    /// Skip the 50-client and burst cases (the CPU-heavy ones).
    #[arg(long)]
    light: bool,
    /// The path to the primary as before #28 (no warm connections, HTTP/1.1).
    #[arg(long)]
    old_path: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    rwproxy::config::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_opts() -> Opts {
    let args = <Args as clap::Parser>::parse();
    Opts {
        shape: LinkShape {
            one_way: args.rtt / 2,
            jitter: args.jitter,
            loss: args.loss,
        },
        tls: args.tls,
        light: args.light,
        old_path: args.old_path,
        idle: args.idle.into_iter().map(Duration::from_secs).collect(),
        quiet: args.quiet,
        steady_secs: args.steady_secs,
    }
}

// ---------------------------------------------------------------------------------------------
// The app and the cluster's status documents

async fn app(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
}

/// Serves `service` on `127.0.0.1:0` (HTTP/1.1), for as long as the process runs.
async fn serve_http1<F, Fut>(service: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(service))
                    .await;
            });
        }
    });
    addr
}

/// Who is primary, as the `http` source documents say it: the name of the primary node.
#[derive(Clone)]
struct Cluster(Arc<Mutex<String>>);

impl Cluster {
    /// The status document of node `name`.
    fn document(&self, name: &str) -> String {
        let primary = self.0.lock().unwrap().clone();
        let role = if primary == name {
            "primary"
        } else {
            "replica"
        };
        format!(
            r#"{{"role":"{role}","primary":"{primary}","positions":{{}},"lag_ms":0,"ready":true}}"#
        )
    }
}

struct Nodes {
    replica: Node,
    replica_port: u16,
    links: [WanLink; 2],
    names: [String; 2],
    cluster: Cluster,
    _primaries: [Node; 2],
    _pki: Option<rwproxy_tests::tls::Pki>,
}

fn node_config(
    name: &str,
    app: SocketAddr,
    status: SocketAddr,
    opts: &Opts,
    pki: Option<&rwproxy_tests::tls::Pki>,
    server: Option<&rwproxy_tests::tls::Identity>,
) -> rwproxy::config::Config {
    let key = name.replace([':', '.'], "_");
    let scheme = if opts.tls { "https" } else { "http" };
    let mut writes = pki.map_or(String::new(), |p| {
        format!("ca = \"{}\"\n", p.ca_path.display())
    });
    if opts.old_path {
        writes.push_str("warm_connections = 0\nhttp2 = false\n");
    }
    let tls = server.map_or(String::new(), |id| {
        format!(
            "[proxy.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            id.cert.display(),
            id.key.display()
        )
    });
    let text = format!(
        r#"node = "{name}"
[proxy]
listen = "127.0.0.1:0"
app = "http://{app}"
drain_timeout = "1s"
{tls}
[admin]
listen = ""
[cluster]
source = "http"
url = "http://{status}/{key}"
poll = "50ms"
[writes]
primary_url = "{scheme}://{{primary}}"
primary_wait = "5s"
timeout = "30s"
{writes}
[log]
access = false
"#
    );
    rwproxy::config::parse(&text).unwrap_or_else(|e| panic!("config invalid: {e}\n{text}"))
}

async fn start_nodes(opts: &Opts) -> Nodes {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = serve_http1(app).await;
    let cluster = Cluster(Arc::new(Mutex::new(String::new())));
    let docs = cluster.clone();
    let status = serve_http1(move |request: Request<Incoming>| {
        let docs = docs.clone();
        async move {
            let key = request.uri().path().trim_start_matches('/').to_owned();
            let name = key.replacen('_', ".", 3).replacen('_', ":", 1);
            Ok(Response::new(Full::new(Bytes::from(docs.document(&name)))))
        }
    })
    .await;
    let pki = opts.tls.then(rwproxy_tests::tls::Pki::new);
    // Each primary is named after its link's address: R reaches it as `{primary}`.
    let mut listeners = Vec::new();
    let mut links = Vec::new();
    let mut names = Vec::new();
    for _ in 0..2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let link = WanLink::start(listener.local_addr().expect("addr"), opts.shape)
            .await
            .expect("link");
        names.push(link.addr().to_string());
        links.push(link);
        listeners.push(listener);
    }
    *cluster.0.lock().unwrap() = names[0].clone();
    let mut primaries = Vec::new();
    for (name, listener) in names.iter().zip(listeners) {
        let identity = pki.as_ref().map(|p| p.server());
        let config = node_config(name, app, status, opts, pki.as_ref(), identity.as_ref());
        primaries.push(Node::start_on(&config, listener, None).await.expect("node"));
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let replica_port = listener.local_addr().expect("addr").port();
    let config = node_config("127.0.0.1:1", app, status, opts, pki.as_ref(), None);
    let replica = Node::start_on(&config, listener, None)
        .await
        .expect("replica");
    let Ok(links) = <[WanLink; 2]>::try_from(links) else {
        panic!("two links")
    };
    let Ok(primaries) = <[Node; 2]>::try_from(primaries) else {
        panic!("two primaries")
    };
    let nodes = Nodes {
        replica,
        replica_port,
        links,
        names: names.clone().try_into().expect("two names"),
        cluster,
        _primaries: primaries,
        _pki: pki,
    };
    nodes.wait_primary(&names[0]).await;
    nodes
}

impl Nodes {
    async fn wait_primary(&self, name: &str) {
        let mut state = self.replica.state();
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.borrow().primary.as_deref() != Some(name) {
            assert!(Instant::now() < deadline, "replica never followed {name}");
            let _ = tokio::time::timeout(Duration::from_millis(100), state.changed()).await;
        }
    }

    fn connections(&self) -> u64 {
        self.links.iter().map(WanLink::connections).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

async fn client(port: u16) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// One write; its latency (failures are reported and counted as the time they took).
async fn write(sender: &mut SendRequest<Full<Bytes>>) -> Duration {
    let started = Instant::now();
    let request = Request::post("/w")
        .header(http::header::HOST, "bench")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(WRITE_BODY.as_bytes())))
        .expect("request");
    sender.ready().await.expect("client connection");
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status();
            let _ = response.into_body().collect().await;
            if !status.is_success() {
                eprintln!("write answered {status}");
            }
        }
        Err(e) => eprintln!("write failed: {e}"),
    }
    started.elapsed()
}

/// `clients` clients, each writing `count` times, one write every `every` (or right after the
/// last one answered, when that took longer).
async fn steady(port: u16, clients: usize, every: Duration, count: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut sender = client(port).await;
            // Spread the clients over the period.
            let start =
                tokio::time::Instant::now() + every.mul_f64(c as f64 / clients.max(1) as f64);
            let mut ticks = tokio::time::interval_at(start, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut out = Vec::new();
            for _ in 0..count {
                ticks.tick().await;
                out.push(write(&mut sender).await);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    all
}

/// `n` writes at once, each from its own client connection opened beforehand.
async fn burst(port: u16, n: usize, quiet: Duration) -> Vec<Duration> {
    let mut senders = Vec::new();
    for _ in 0..n {
        senders.push(client(port).await);
    }
    tokio::time::sleep(quiet).await;
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut s| tokio::spawn(async move { write(&mut s).await }))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.expect("writer"));
    }
    all
}

// ---------------------------------------------------------------------------------------------
// The table

struct Row {
    case: String,
    samples: Vec<Duration>,
    connections: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_row(row: &mut Row, rtt: Duration) {
    row.samples.sort();
    let (p50, p99, max) = (
        quantile(&row.samples, 0.5),
        quantile(&row.samples, 0.99),
        row.samples.last().copied().unwrap_or_default(),
    );
    let goal = rtt.mul_f64(1.1) + Duration::from_millis(5);
    let r = |d: Duration| d.as_secs_f64() / rtt.as_secs_f64();
    println!(
        "| {} | {} | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.1} ({:.2}) | {} | {} |",
        row.case,
        row.samples.len(),
        ms(p50),
        r(p50),
        ms(p99),
        r(p99),
        ms(max),
        r(max),
        if p99 <= goal { "met" } else { "missed" },
        row.connections,
    );
}

/// Prints one case's row; `before` is the links' connection count when the case started.
fn report(nodes: &Nodes, rtt: Duration, case: String, samples: Vec<Duration>, before: u64) {
    let mut row = Row {
        case,
        samples,
        connections: nodes.connections() - before,
    };
    print_row(&mut row, rtt);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = parse_opts();
    let rtt = opts.shape.rtt();
    let nodes = start_nodes(&opts).await;
    let port = nodes.replica_port;
    println!(
        "WAN benchmark: RTT {} ms (jitter {} ms, loss {}), {} between nodes, {}",
        ms(rtt),
        ms(opts.shape.jitter),
        opts.shape.loss,
        if opts.tls { "HTTPS" } else { "HTTP" },
        if opts.old_path {
            "old path (no warm connections, HTTP/1.1)"
        } else {
            "warm path"
        }
    );
    println!();
    println!(
        "| case | writes | p50 ms (x RTT) | p99 ms (x RTT) | max ms (x RTT) | goal | new conns |"
    );
    println!("|---|---|---|---|---|---|---|");
    // What R does on its own before the first write (a warm path connects ahead).
    tokio::time::sleep(rtt * 3).await;
    let run = |case: String, samples: Vec<Duration>, before: u64| {
        report(&nodes, rtt, case, samples, before)
    };
    let before = nodes.connections();
    let count = 20 * opts.steady_secs as usize;
    let samples = steady(port, 1, Duration::from_millis(50), count).await;
    run("steady, 1 client, 20/s".into(), samples, before);

    if opts.light {
        return idle_and_hand_off(&opts, &nodes, rtt).await;
    }
    let before = nodes.connections();
    let count = 2 * opts.steady_secs as usize;
    let samples = steady(port, 50, Duration::from_millis(500), count).await;
    run("steady, 50 clients, 100/s".into(), samples, before);

    let before = nodes.connections();
    let samples = burst(port, 200, opts.quiet).await;
    let case = format!("burst of 200 after {} s quiet", opts.quiet.as_secs());
    run(case, samples, before);
    idle_and_hand_off(&opts, &nodes, rtt).await;
}

/// The idle cases, then the hand-off (last: it moves the primary).
async fn idle_and_hand_off(opts: &Opts, nodes: &Nodes, rtt: Duration) {
    let port = nodes.replica_port;
    let run = |case: String, samples: Vec<Duration>, before: u64| {
        report(nodes, rtt, case, samples, before)
    };

    for idle in &opts.idle {
        tokio::time::sleep(*idle).await;
        // A new client connection: the replica closes idle ones after `proxy.header_timeout`.
        let mut sender = client(port).await;
        let before = nodes.connections();
        let samples = vec![write(&mut sender).await];
        run(
            format!("first write after {} s idle", idle.as_secs()),
            samples,
            before,
        );
    }

    // The hand-off: P2, never written to, becomes primary.
    let before = nodes.connections();
    *nodes.cluster.0.lock().unwrap() = nodes.names[1].clone();
    nodes.wait_primary(&nodes.names[1]).await;
    let samples = steady(port, 1, Duration::from_millis(50), 20).await;
    run("first 20 writes after a hand-off".into(), samples, before);
}
