//! The configuration file: reading it, checking every key, and the typed [`Config`] the rest of
//! the binary works from. The schema is documented key by key in `docs/configuration.md`.
//!
//! Every problem in a file is reported at once, each naming its key:
//! unknown keys, values of the wrong type and values that do not make sense.

mod raw;
mod validate;
mod values;
mod warnings;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use rwproxy_core::{StalePolicy, TimeoutPolicy, WriteMode};
pub use rwproxy_http::tls::{ClientTlsFiles, ServerTlsFiles};
use rwproxy_http::SessionMode;

pub use values::parse_duration;
pub use warnings::{warnings, LITEFS_MIN_MAX_LAG};

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_from(&text, Some(&origin)),
        Err(err) => Err(ConfigErrors(vec![Problem::new(
            origin,
            format!("cannot read the configuration file: {err}"),
        )])),
    }
}

/// Parses and validates configuration text.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_from(text, None)
}

fn parse_from(text: &str, origin: Option<&str>) -> Result<Config, ConfigErrors> {
    let pass = raw::first_pass(text, origin);
    let mut problems = pass.problems;
    let config = pass.raw.map(|raw| {
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        validate::validate(raw, &pass.bad_keys, &hostname, &mut problems)
    });
    // Group problems by section, sections in file order (absent ones last); within a section,
    // type errors come first, then unknown keys, then bad values.
    problems.sort_by_key(|problem| {
        let section = problem.key.split(['.', '[']).next().unwrap_or_default();
        pass.top_level
            .iter()
            .position(|key| key == section)
            .unwrap_or(usize::MAX)
    });
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigErrors(problems)),
    }
}

/// Everything wrong with a configuration; never empty when returned as an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One thing wrong with a configuration, shown as `key: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`writes.primary_wait`), or the file or position for whole-file problems.
    pub key: String,
    /// What is wrong, quoting the value where there is one.
    pub message: String,
}

impl Problem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A validated configuration, one field per section of the file.
#[derive(Clone, Debug)]
pub struct Config {
    /// `node`: this node's name (default: the machine's hostname).
    pub node: String,
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[cluster]`.
    pub cluster: ClusterConfig,
    /// `[writes]`.
    pub writes: WritesConfig,
    /// `[reads]`.
    pub reads: ReadsConfig,
    /// `[routing]`.
    pub routing: RoutingConfig,
    /// `[consistency]`.
    pub consistency: ConsistencyConfig,
    /// `[health]`.
    pub health: HealthConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// Peer-aware health: `cluster.peers*` and `health.fail_static*`.
    pub peers: PeersConfig,
}

/// Peer-aware health (`cluster.peers`, `cluster.peers_dns`, `cluster.peer_poll`,
/// `health.fail_static*`): who this node asks about the primary, and what it makes of the
/// answers.
#[derive(Clone, Debug)]
pub struct PeersConfig {
    /// `cluster.peers`: other nodes' admin URLs (`http://10.0.0.6:9090`).
    pub urls: Vec<String>,
    /// `cluster.peers_dns`: `NAME:PORT`, every A/AAAA record at that port; `None` when absent
    /// or `""`.
    pub dns: Option<String>,
    /// `cluster.peer_poll`: how often the peers are asked (also the bound on one answer).
    pub poll: Duration,
    /// `health.fail_static` and its policy keys.
    pub policy: rwproxy_http::health::FailStaticPolicy,
}

impl PeersConfig {
    /// True when there is anyone to ask.
    pub fn any(&self) -> bool {
        !self.urls.is_empty() || self.dns.is_some()
    }
}

/// `[proxy]`: the client-facing listener and the local app.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// `proxy.listen`: where clients and the edge connect.
    pub listen: SocketAddr,
    /// `proxy.app`: the local app, normalized to `http://host:port/` with an explicit port.
    pub app: Uri,
    /// `proxy.app_connect_retry`: how long refused connects to the app are retried (cold start).
    pub app_connect_retry: Duration,
    /// `proxy.app_max_connections`: connections open to the app at once (default 1,024); past
    /// it requests queue for a free one.
    pub app_max_connections: usize,
    /// `proxy.app_queue_timeout`: how long a queued request waits for a connection to the app
    /// before the 503 `overloaded` (default 5 s).
    pub app_queue_timeout: Duration,
    /// `proxy.drain_timeout`: how long in-flight requests may take to finish on shutdown.
    pub drain_timeout: Duration,
    /// `proxy.workers`: runtime worker threads; 0 means one per core.
    pub workers: usize,
    /// `proxy.max_body`: largest request body accepted, in bytes; `None` is no limit.
    pub max_body: Option<u64>,
    /// `[proxy.tls]`: TLS on `proxy.listen`; `None` serves plain HTTP.
    pub tls: Option<ServerTlsFiles>,
    /// `proxy.upgrade_idle_timeout`: an upgraded connection (WebSocket) silent this long closes.
    pub upgrade_idle_timeout: Duration,
    /// `proxy.max_connections`: client connections open at once (default 10,000); past it the
    /// listener stops accepting until one closes.
    pub max_connections: usize,
    /// `proxy.header_timeout`: time a client has to send a request's headers (default 30 s),
    /// also how long an idle keep-alive connection waits for its next request.
    pub header_timeout: Duration,
    /// `proxy.drain_delay`: on SIGTERM/SIGINT, how long health reports `draining` while the
    /// listeners keep serving, before they stop accepting (default 0 s).
    pub drain_delay: Duration,
    /// `proxy.allow_underscores_in_headers`: pass on request header names containing `_`
    /// (default false: dropped, as nginx does).
    pub allow_underscores_in_headers: bool,
    /// `proxy.body_timeout`: longest pause while a client sends a request body, and the grace
    /// before `body_min_rate` applies (default 60 s, nginx's `client_body_timeout`; 0 s: off).
    pub body_timeout: Duration,
    /// `proxy.body_min_rate`: average bytes a second a request body must keep after
    /// `body_timeout` (default 500, Apache's `MinRate`; 0: no rate bound).
    pub body_min_rate: u64,
    /// `proxy.write_timeout`: longest a client may leave a response unread before its
    /// connection is closed (default 60 s, nginx's `send_timeout`; 0 s: off).
    pub write_timeout: Duration,
    /// `proxy.title_case_headers`: HTTP/1.1 response header names in Title-Case, as LiteFS's
    /// proxy (Go) wrote them (default false: lower case).
    pub title_case_headers: bool,
}

/// `[admin]`: the metrics/health/status listener.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// `admin.listen`; `None` when set to `""` (admin listener disabled).
    pub listen: Option<SocketAddr>,
    /// `admin.agent_listen`: the HAProxy agent-check TCP listener; `None` when `""` or absent.
    pub agent_listen: Option<SocketAddr>,
    /// `admin.ui`: serve the operator's page on `/` and `/ui` (default true).
    pub ui: bool,
}

/// `[cluster]`: where this node learns the primary, positions and lag.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The selected source and its settings (`cluster.source` plus that source's keys).
    pub source: SourceConfig,
    /// `cluster.databases`: databases whose positions back the consistency token; never empty.
    /// The first one backs the `__txid` cookie.
    pub databases: Vec<String>,
    /// `cluster.secret`: shared by every node; authenticates forwarded requests between them.
    /// `None` when absent or `""`.
    pub secret: Option<String>,
}

/// The cluster state source, `cluster.source`.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// `"static"`: a fixed primary, no positions or lag.
    Static {
        /// `cluster.primary`: the primary's node name; this node is primary when equal to `node`.
        primary: String,
    },
    /// `"litefs"`: the LiteFS mount (and optionally its API).
    Litefs {
        /// `cluster.mount`: the LiteFS FUSE mount directory.
        mount: PathBuf,
        /// `cluster.api`: the LiteFS API origin; `None` when `""` or absent.
        api: Option<Uri>,
        /// `cluster.poll`: how often the mount files are re-read.
        poll: Duration,
    },
    /// `"http"`: a JSON status document polled over HTTP.
    Http {
        /// `cluster.url`: the status document's URL.
        url: Uri,
        /// `cluster.poll`: how often it is fetched.
        poll: Duration,
        /// `cluster.timeout`: bound on one fetch; a slower answer counts as unknown state.
        timeout: Duration,
    },
    /// `"postgres"`: this node's own PostgreSQL server, a primary or a streaming replica.
    Postgres {
        /// `cluster.url`: the server's libpq-style URL (may hold the password).
        url: String,
        /// `cluster.password_file`: read when the URL has no password (else `PGPASSWORD`).
        password_file: Option<PathBuf>,
        /// `cluster.primary`: the primary's name instead of the replica's `sender_host`.
        primary: Option<String>,
        /// `cluster.poll`: how often the server is polled.
        poll: Duration,
        /// `cluster.timeout`: bound on connecting and on each query.
        timeout: Duration,
    },
    /// `"patroni"`: a Patroni-managed PostgreSQL node; Patroni's leader lock decides the primary.
    Patroni {
        /// `cluster.api`: this node's Patroni REST API origin.
        api: Uri,
        /// `cluster.member`: this node's Patroni member name; `None` means the node's name.
        member: Option<String>,
        /// `cluster.primary_from` and `[cluster.members]`: how the leader becomes `{primary}`.
        naming: rwproxy_cluster::MemberNaming,
        /// `cluster.url`: this node's PostgreSQL server (positions, tokens, lag).
        url: String,
        /// `cluster.password_file`: read when the URL has no password (else `PGPASSWORD`).
        password_file: Option<PathBuf>,
        /// `cluster.poll`: how often PostgreSQL and Patroni are polled.
        poll: Duration,
        /// `cluster.timeout`: bound on each query and each Patroni request.
        timeout: Duration,
    },
    /// `"mysql"`: this node's own MySQL or MariaDB server, a primary or a GTID replica.
    Mysql {
        /// `cluster.url`: `mysql://USER[:PASSWORD]@HOST[:PORT]` (may hold the password).
        url: String,
        /// `cluster.password_file`: read when the URL has no password (else `MYSQL_PWD`).
        password_file: Option<PathBuf>,
        /// `cluster.primary`: the primary's name instead of the replica's source host.
        primary: Option<String>,
        /// `cluster.flavor`: `None` detects MariaDB or MySQL from the server's version.
        flavor: Option<rwproxy_core::gtid::Flavor>,
        /// `cluster.poll`: how often the server is polled.
        poll: Duration,
        /// `cluster.timeout`: bound on connecting and on each query.
        timeout: Duration,
    },
}

impl SourceConfig {
    /// The `cluster.source` name of this source.
    pub fn name(&self) -> &'static str {
        match self {
            SourceConfig::Static { .. } => "static",
            SourceConfig::Litefs { .. } => "litefs",
            SourceConfig::Http { .. } => "http",
            SourceConfig::Postgres { .. } => "postgres",
            SourceConfig::Patroni { .. } => "patroni",
            SourceConfig::Mysql { .. } => "mysql",
        }
    }
}

/// `[writes]`: how writes reach the primary.
#[derive(Clone, Debug)]
pub struct WritesConfig {
    /// `writes.mode`.
    pub mode: WriteMode,
    /// `writes.primary_url`: template of the primary's rwproxy origin; `{primary}` is replaced
    /// by the primary's name. See [`WritesConfig::primary_uri`].
    pub primary_url: String,
    /// `writes.primary_wait`: how long a write waits for a primary to become known.
    pub primary_wait: Duration,
    /// `writes.timeout`: upper bound on a forwarded request.
    pub timeout: Duration,
    /// `writes.connect_timeout`: bound on connecting to the primary's rwproxy.
    pub connect_timeout: Duration,
    /// `writes.ca`, `writes.client_cert`, `writes.client_key`: TLS toward an `https` primary.
    pub tls: ClientTlsFiles,
    /// `writes.warm_connections` and `writes.http2`: the path to the primary.
    pub warm_path: rwproxy_http::upstream::warm::WarmPathParams,
}

impl WritesConfig {
    /// The primary's rwproxy origin for the primary named `primary`, or `None` when the name
    /// does not make a valid URL.
    pub fn primary_uri(&self, primary: &str) -> Option<Uri> {
        self.primary_url.replace("{primary}", primary).parse().ok()
    }
}

/// `[reads]`: which requests are reads and when a replica may serve them.
#[derive(Clone, Debug)]
pub struct ReadsConfig {
    /// `reads.methods`: read methods; every other method is a write.
    pub methods: Vec<Method>,
    /// `reads.max_lag`: a replica lagging more than this does not serve reads itself.
    pub max_lag: Duration,
    /// `reads.when_stale`: what a stale replica does with reads.
    pub when_stale: StalePolicy,
    /// `reads.route_header`: add the `rwproxy-route` header to responses.
    pub route_header: bool,
}

/// `[routing]`: path globs that override the method-based class.
#[derive(Clone, Debug)]
pub struct RoutingConfig {
    /// `routing.passthrough`: always served by the local app (checked first).
    pub passthrough: Vec<String>,
    /// `routing.always_forward`: always treated as writes.
    pub always_forward: Vec<String>,
}

/// `[consistency]`: the read-your-writes token.
#[derive(Clone, Debug)]
pub struct ConsistencyConfig {
    /// `consistency.cookie`: the token cookie's name.
    pub cookie: String,
    /// `consistency.header`: the token header's name.
    pub header: HeaderName,
    /// `consistency.wait`: how long a read waits for this node to reach its token.
    pub wait: Duration,
    /// `consistency.on_timeout`: what a read does after waiting in vain.
    pub on_timeout: TimeoutPolicy,
    /// `consistency.cookie_max_age`: the token cookie's `Max-Age`.
    pub cookie_max_age: Duration,
    /// `consistency.max_waiters`: most reads waiting at once; beyond it a read times out at once.
    pub max_waiters: usize,
    /// `consistency.session`: `"writes"` (read-your-writes) or `"reads-too"` (reads earn a
    /// token too: monotonic reads).
    pub session: SessionMode,
}

/// `[health]`: the health endpoint.
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// `health.path`: answered on the proxy listener before any routing.
    pub path: String,
    /// `health.max_lag`: lag above this makes the node unhealthy.
    pub max_lag: Duration,
    /// `health.rise`: consecutive healthy observations before an unhealthy node turns healthy.
    pub rise: u32,
    /// `health.fall`: consecutive unhealthy observations before a healthy node turns unhealthy
    /// (lag only; other reasons turn it unhealthy at once).
    pub fall: u32,
    /// `health.app_path`: path (and query) of the local app's own health check; `None` when
    /// `""` or absent (no app check).
    pub app_path: Option<String>,
    /// `health.app_interval`: how often the app check runs.
    pub app_interval: Duration,
    /// `health.app_timeout`: bound on one app check.
    pub app_timeout: Duration,
}

/// `[log]`: logging.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `log.format`.
    pub format: LogFormat,
    /// `log.access`: one log line per request.
    pub access: bool,
    /// `log.level`: a `tracing` EnvFilter directive, e.g. `info` or `rwproxy=debug,info`.
    pub level: String,
}

/// `log.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
