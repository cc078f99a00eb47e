//! Turns the raw serde shape into a typed [`Config`], applying defaults and collecting a
//! [`Problem`] for every value that does not make sense.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use rwproxy_core::{StalePolicy, TimeoutPolicy, WriteMode};
use rwproxy_http::SessionMode;

use super::raw::{
    DurationText, RawCluster, RawConfig, RawConsistency, RawHealth, RawLog, RawProxy, RawReads,
    RawRouting, RawWrites,
};
use super::values::{self, parse_choice, parse_duration};

mod mysql;
mod patroni;
mod peers;
mod tls;
use super::{
    AdminConfig, ClusterConfig, Config, ConsistencyConfig, HealthConfig, LogConfig, LogFormat,
    Problem, ProxyConfig, ReadsConfig, RoutingConfig, SourceConfig, WritesConfig,
};

/// Builds the typed config from `raw`, pushing every problem found onto `problems`.
///
/// `bad_keys` had type errors (already reported): they are not reported again as missing.
/// `hostname` is the default node name. The returned config is meaningful only when no problem
/// was pushed.
pub(crate) fn validate(
    raw: RawConfig,
    bad_keys: &[String],
    hostname: &str,
    problems: &mut Vec<Problem>,
) -> Config {
    let mut c = Checker { problems, bad_keys };
    let node = raw.node.unwrap_or_else(|| hostname.to_owned());
    if let Err(message) = values::check_node_name(&node) {
        c.report("node", message);
    }
    let proxy = proxy(&mut c, raw.proxy);
    let admin = AdminConfig {
        listen: match raw.admin.listen.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            Some("") => None,
            Some(text) => c.value(
                "admin.listen",
                Some(text),
                |t| values::parse_socket_addr(t).map(Some),
                None,
            ),
        },
        agent_listen: match raw.admin.agent_listen.as_deref() {
            None | Some("") => None,
            Some(text) => c.value(
                "admin.agent_listen",
                Some(text),
                |t| values::parse_socket_addr(t).map(Some),
                None,
            ),
        },
        ui: raw.admin.ui.unwrap_or(true),
    };
    if let Some(admin_listen) = admin.listen {
        if conflicts(admin_listen, proxy.listen) {
            c.report(
                "admin.listen",
                format!(
                    "{admin_listen} conflicts with proxy.listen {}",
                    proxy.listen
                ),
            );
        }
    }
    if let Some(agent_listen) = admin.agent_listen {
        let others = [
            ("proxy.listen", Some(proxy.listen)),
            ("admin.listen", admin.listen),
        ];
        for (key, other) in others {
            if let Some(other) = other.filter(|o| conflicts(agent_listen, *o)) {
                c.report(
                    "admin.agent_listen",
                    format!("{agent_listen} conflicts with {key} {other}"),
                );
            }
        }
    }
    let peers = peers::peers(&mut c, &raw.cluster, &raw.health);
    Config {
        node,
        proxy,
        admin,
        peers,
        cluster: cluster(&mut c, raw.cluster),
        writes: writes(&mut c, raw.writes),
        reads: reads(&mut c, raw.reads),
        routing: routing(&mut c, raw.routing),
        consistency: consistency(&mut c, raw.consistency),
        health: health(&mut c, raw.health),
        log: log(&mut c, raw.log),
    }
}

fn proxy(c: &mut Checker<'_>, raw: RawProxy) -> ProxyConfig {
    let app = match raw.app.as_deref() {
        Some(text) => c.value(
            "proxy.app",
            Some(text),
            |t| values::parse_origin(t, &["http"]).map(Some),
            None,
        ),
        None => {
            c.required(
                "proxy.app",
                "required key missing (the local app's URL, e.g. \"http://127.0.0.1:8081\")",
            );
            None
        }
    };
    ProxyConfig {
        listen: c.value(
            "proxy.listen",
            raw.listen.as_deref(),
            values::parse_socket_addr,
            SocketAddr::from(([0, 0, 0, 0], 8080)),
        ),
        app: app.unwrap_or_else(|| Uri::from_static("http://127.0.0.1:8081/")),
        app_connect_retry: c.duration("proxy.app_connect_retry", &raw.app_connect_retry, secs(30)),
        app_max_connections: match raw.app_max_connections {
            Some(0) => {
                c.report("proxy.app_max_connections", "must be at least 1");
                1
            }
            Some(n) => n,
            None => 1024,
        },
        app_queue_timeout: c.nonzero_duration(
            "proxy.app_queue_timeout",
            &raw.app_queue_timeout,
            secs(5),
        ),
        drain_timeout: c.duration("proxy.drain_timeout", &raw.drain_timeout, secs(30)),
        workers: raw.workers.unwrap_or(0),
        max_body: raw.max_body,
        tls: tls::proxy_tls(c, raw.tls),
        upgrade_idle_timeout: c.nonzero_duration(
            "proxy.upgrade_idle_timeout",
            &raw.upgrade_idle_timeout,
            secs(300),
        ),
        max_connections: match raw.max_connections {
            Some(0) => {
                c.report("proxy.max_connections", "must be at least 1");
                1
            }
            Some(n) => n,
            None => 10_000,
        },
        header_timeout: c.nonzero_duration("proxy.header_timeout", &raw.header_timeout, secs(30)),
        drain_delay: c.duration("proxy.drain_delay", &raw.drain_delay, secs(0)),
        allow_underscores_in_headers: raw.allow_underscores_in_headers.unwrap_or(false),
        body_timeout: c.duration("proxy.body_timeout", &raw.body_timeout, secs(60)),
        body_min_rate: raw.body_min_rate.unwrap_or(500),
        write_timeout: c.duration("proxy.write_timeout", &raw.write_timeout, secs(60)),
        title_case_headers: raw.title_case_headers.unwrap_or(false),
    }
}

/// Which `cluster.source` was chosen, before its keys are read.
#[derive(Clone, Copy)]
enum SourceKind {
    Static,
    Litefs,
    Http,
    Postgres,
    Patroni,
    Mysql,
}

fn cluster(c: &mut Checker<'_>, mut raw: RawCluster) -> ClusterConfig {
    let kinds = [
        ("static", Some(SourceKind::Static)),
        ("litefs", Some(SourceKind::Litefs)),
        ("http", Some(SourceKind::Http)),
        ("postgres", Some(SourceKind::Postgres)),
        ("patroni", Some(SourceKind::Patroni)),
        ("mysql", Some(SourceKind::Mysql)),
    ];
    let kind = c.value(
        "cluster.source",
        raw.source.as_deref(),
        |t| parse_choice(t, &kinds),
        Some(SourceKind::Litefs),
    );
    let databases = match raw.databases.take() {
        // PostgreSQL has one WAL position for the whole server: the token's key names it.
        None if matches!(kind, Some(SourceKind::Postgres | SourceKind::Patroni)) => {
            vec!["wal".to_owned()]
        }
        // MySQL and MariaDB: one GTID position for the whole server, as for PostgreSQL.
        None if matches!(kind, Some(SourceKind::Mysql)) => vec!["gtid".to_owned()],
        None => vec!["app.db".to_owned()],
        Some(list) => {
            check_databases(c, &list);
            if matches!(kind, Some(SourceKind::Postgres | SourceKind::Patroni)) && list.len() > 1 {
                c.report(
                    "cluster.databases",
                    "the postgres source has one WAL position for the whole server: name it \
                     with one entry (default \"wal\")",
                );
            }
            if matches!(kind, Some(SourceKind::Mysql)) && list.len() > 1 {
                c.report(
                    "cluster.databases",
                    "the mysql source has one GTID position for the whole server: name it \
                     with one entry (default \"gtid\")",
                );
            }
            list
        }
    };
    // Only the chosen source's keys are checked; the others may be left in the file. With an
    // invalid source nothing more is checked, as it is unknown which keys apply.
    let source = match kind {
        Some(SourceKind::Static) => {
            let primary = match raw.primary {
                Some(primary) => {
                    if let Err(message) = values::check_node_name(&primary) {
                        c.report("cluster.primary", message);
                    }
                    primary
                }
                None => {
                    c.required(
                        "cluster.primary",
                        "required key missing (the primary's node name, required when \
                         cluster.source = \"static\")",
                    );
                    String::new()
                }
            };
            SourceConfig::Static { primary }
        }
        Some(SourceKind::Http) => SourceConfig::Http {
            url: c.value(
                "cluster.url",
                raw.url.as_deref(),
                values::parse_http_url,
                Uri::from_static("http://127.0.0.1:8081/.well-known/replication"),
            ),
            poll: c.nonzero_duration("cluster.poll", &raw.poll, millis(100)),
            timeout: c.nonzero_duration("cluster.timeout", &raw.timeout, secs(1)),
        },
        Some(SourceKind::Postgres) => postgres_source(c, &raw),
        Some(SourceKind::Patroni) => patroni::source(c, &raw),
        Some(SourceKind::Mysql) => mysql::mysql_source(c, &raw),
        Some(SourceKind::Litefs) | None => {
            let mount = raw.mount.unwrap_or_else(|| "/litefs".to_owned());
            if mount.is_empty() {
                c.report("cluster.mount", "must not be empty");
            }
            let api = match raw.api.as_deref() {
                None | Some("") => None,
                Some(text) => c.value(
                    "cluster.api",
                    Some(text),
                    |t| values::parse_origin(t, &["http", "https"]).map(Some),
                    None,
                ),
            };
            SourceConfig::Litefs {
                mount: PathBuf::from(mount),
                api,
                poll: c.nonzero_duration("cluster.poll", &raw.poll, millis(100)),
            }
        }
    };
    let secret = match raw.secret {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) if s.len() < 16 => {
            c.report(
                "cluster.secret",
                "must be at least 16 characters (or \"\" for none)",
            );
            None
        }
        Some(s) if http::HeaderValue::from_str(&s).is_err() || s.trim() != s => {
            c.report(
                "cluster.secret",
                "must be printable ASCII without leading or trailing spaces",
            );
            None
        }
        Some(s) => Some(s),
    };
    ClusterConfig {
        source,
        databases,
        secret,
    }
}

/// `cluster.url` of a database source: checked by the source's own `check`, or reported as
/// missing with `missing` (an empty URL then).
fn database_url(
    c: &mut Checker<'_>,
    raw: &RawCluster,
    check: fn(&str) -> Result<(), String>,
    missing: &str,
) -> String {
    match raw.url.as_deref() {
        Some(url) => {
            if let Err(message) = check(url) {
                c.report("cluster.url", message);
            }
            url.to_owned()
        }
        None => {
            c.required("cluster.url", missing);
            String::new()
        }
    }
}

/// The keys of `cluster.source = "postgres"`.
fn postgres_source(c: &mut Checker<'_>, raw: &RawCluster) -> SourceConfig {
    let url = database_url(
        c,
        raw,
        rwproxy_cluster::check_postgres_url,
        "required key missing (the local server's URL, e.g. \
         \"postgres://rwproxy@127.0.0.1:5432/postgres\", required when \
         cluster.source = \"postgres\")",
    );
    let password_file = match raw.password_file.as_deref() {
        None | Some("") => None,
        Some(path) => Some(PathBuf::from(path)),
    };
    let primary = match raw.primary.as_deref() {
        None | Some("") => None,
        Some(name) => {
            if let Err(message) = values::check_node_name(name) {
                c.report("cluster.primary", message);
            }
            Some(name.to_owned())
        }
    };
    SourceConfig::Postgres {
        url,
        password_file,
        primary,
        poll: c.nonzero_duration("cluster.poll", &raw.poll, millis(100)),
        timeout: c.nonzero_duration("cluster.timeout", &raw.timeout, secs(1)),
    }
}

fn check_databases(c: &mut Checker<'_>, list: &[String]) {
    if list.is_empty() {
        c.report("cluster.databases", "must name at least one database");
    }
    if list.len() > rwproxy_core::token::MAX_ENTRIES {
        c.report(
            "cluster.databases",
            format!(
                "{} databases configured, at most {} are supported",
                list.len(),
                rwproxy_core::token::MAX_ENTRIES
            ),
        );
    }
    for (i, name) in list.iter().enumerate() {
        if let Err(message) = values::check_database_name(name) {
            c.report("cluster.databases", message);
        } else if list[..i].contains(name) {
            c.report("cluster.databases", format!("{name:?} is listed twice"));
        }
    }
}

fn writes(c: &mut Checker<'_>, raw: RawWrites) -> WritesConfig {
    let modes = [
        ("forward", WriteMode::Forward),
        ("fly-replay", WriteMode::FlyReplay),
        ("redirect", WriteMode::Redirect),
    ];
    let mode = c.value(
        "writes.mode",
        raw.mode.as_deref(),
        |t| parse_choice(t, &modes),
        WriteMode::Forward,
    );
    let primary_url = raw
        .primary_url
        .unwrap_or_else(|| "http://{primary}:8080".to_owned());
    if let Err(message) = values::check_primary_url(&primary_url) {
        c.report("writes.primary_url", message);
    }
    WritesConfig {
        mode,
        primary_url,
        primary_wait: c.duration("writes.primary_wait", &raw.primary_wait, secs(5)),
        timeout: c.nonzero_duration("writes.timeout", &raw.timeout, secs(30)),
        connect_timeout: c.nonzero_duration(
            "writes.connect_timeout",
            &raw.connect_timeout,
            secs(2),
        ),
        tls: tls::writes_tls(c, raw.ca, raw.client_cert, raw.client_key),
        warm_path: warm_path(c, raw.warm_connections, raw.http2),
    }
}

/// `writes.warm_connections` (at most 64: each is a connection the primary keeps open for
/// every replica) and `writes.http2`.
fn warm_path(
    c: &mut Checker<'_>,
    warm_connections: Option<usize>,
    http2: Option<bool>,
) -> rwproxy_http::upstream::warm::WarmPathParams {
    let defaults = rwproxy_http::upstream::warm::WarmPathParams::default();
    let warm_connections = warm_connections.unwrap_or(defaults.warm_connections);
    if warm_connections > 64 {
        c.report("writes.warm_connections", "must be at most 64");
    }
    rwproxy_http::upstream::warm::WarmPathParams {
        warm_connections,
        http2: http2.unwrap_or(defaults.http2),
    }
}

fn reads(c: &mut Checker<'_>, raw: RawReads) -> ReadsConfig {
    let methods = match raw.methods {
        None => vec![Method::GET, Method::HEAD, Method::OPTIONS],
        Some(list) => list
            .iter()
            .filter_map(|m| {
                c.value(
                    "reads.methods",
                    Some(m),
                    |t| values::parse_method(t).map(Some),
                    None,
                )
            })
            .collect(),
    };
    let policies = [
        ("forward", StalePolicy::Forward),
        ("reject", StalePolicy::Reject),
        ("serve", StalePolicy::Serve),
    ];
    ReadsConfig {
        methods,
        max_lag: c.duration("reads.max_lag", &raw.max_lag, secs(5)),
        when_stale: c.value(
            "reads.when_stale",
            raw.when_stale.as_deref(),
            |t| parse_choice(t, &policies),
            StalePolicy::Forward,
        ),
        route_header: raw.route_header.unwrap_or(true),
    }
}

fn routing(c: &mut Checker<'_>, raw: RawRouting) -> RoutingConfig {
    let mut globs = |key: &str, list: Option<Vec<String>>| {
        let list = list.unwrap_or_default();
        for glob in &list {
            if let Err(message) = values::check_glob(glob) {
                c.report(key, message);
            }
        }
        list
    };
    RoutingConfig {
        passthrough: globs("routing.passthrough", raw.passthrough),
        always_forward: globs("routing.always_forward", raw.always_forward),
    }
}

fn consistency(c: &mut Checker<'_>, raw: RawConsistency) -> ConsistencyConfig {
    let cookie = raw.cookie.unwrap_or_else(|| "__txid".to_owned());
    if let Err(message) = values::check_cookie_name(&cookie) {
        c.report("consistency.cookie", message);
    }
    let max_waiters = raw.max_waiters.unwrap_or(10_000);
    if max_waiters == 0 {
        c.report("consistency.max_waiters", "must be greater than zero");
    }
    let policies = [
        ("forward", TimeoutPolicy::Forward),
        ("error", TimeoutPolicy::Error),
    ];
    let sessions = [
        ("writes", SessionMode::Writes),
        ("reads-too", SessionMode::ReadsToo),
    ];
    ConsistencyConfig {
        cookie,
        header: c.value(
            "consistency.header",
            raw.header.as_deref(),
            values::parse_header_name,
            HeaderName::from_static("rwproxy-position"),
        ),
        wait: c.duration("consistency.wait", &raw.wait, secs(5)),
        on_timeout: c.value(
            "consistency.on_timeout",
            raw.on_timeout.as_deref(),
            |t| parse_choice(t, &policies),
            TimeoutPolicy::Forward,
        ),
        cookie_max_age: c.nonzero_duration(
            "consistency.cookie_max_age",
            &raw.cookie_max_age,
            secs(300),
        ),
        max_waiters,
        session: c.value(
            "consistency.session",
            raw.session.as_deref(),
            |t| parse_choice(t, &sessions),
            SessionMode::Writes,
        ),
    }
}

fn health(c: &mut Checker<'_>, raw: RawHealth) -> HealthConfig {
    let path = raw.path.unwrap_or_else(|| "/health".to_owned());
    if let Err(message) = values::check_path(&path) {
        c.report("health.path", message);
    }
    let mut count = |key: &str, value: Option<u32>, default: u32| {
        let value = value.unwrap_or(default);
        if value == 0 {
            c.report(key, "must be at least 1");
            return default;
        }
        value
    };
    let rise = count("health.rise", raw.rise, 2);
    let fall = count("health.fall", raw.fall, 3);
    let app_path = match raw.app_path {
        None => None,
        Some(p) if p.is_empty() => None,
        Some(p) => {
            if let Err(message) = values::check_path_and_query(&p) {
                c.report("health.app_path", message);
            }
            Some(p)
        }
    };
    HealthConfig {
        path,
        max_lag: c.duration("health.max_lag", &raw.max_lag, secs(10)),
        rise,
        fall,
        app_path,
        app_interval: c.nonzero_duration("health.app_interval", &raw.app_interval, secs(1)),
        app_timeout: c.nonzero_duration("health.app_timeout", &raw.app_timeout, secs(1)),
    }
}

fn log(c: &mut Checker<'_>, raw: RawLog) -> LogConfig {
    let formats = [("text", LogFormat::Text), ("json", LogFormat::Json)];
    let level = raw.level.unwrap_or_else(|| "info".to_owned());
    if level.trim().is_empty() {
        c.report("log.level", "must not be empty (e.g. \"info\")");
    }
    LogConfig {
        format: c.value(
            "log.format",
            raw.format.as_deref(),
            |t| parse_choice(t, &formats),
            LogFormat::Text,
        ),
        access: raw.access.unwrap_or(true),
        level,
    }
}

/// Two listeners that cannot both bind: same port, and the same or an unspecified address.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Collects problems and applies defaults.
struct Checker<'a> {
    problems: &'a mut Vec<Problem>,
    bad_keys: &'a [String],
}

impl Checker<'_> {
    fn report(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }

    /// Reports a missing required key, unless it (or its section) was present with a wrong type.
    fn required(&mut self, key: &str, message: &str) {
        let already_reported = self.bad_keys.iter().any(|bad| {
            key == bad || (key.starts_with(bad.as_str()) && key[bad.len()..].starts_with('.'))
        });
        if !already_reported {
            self.report(key, message);
        }
    }

    /// Parses `text` when present, else returns `default`; a parse error is reported.
    fn value<T>(
        &mut self,
        key: &str,
        text: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
        default: T,
    ) -> T {
        match text.map(parse) {
            None => default,
            Some(Ok(value)) => value,
            Some(Err(message)) => {
                self.report(key, message);
                default
            }
        }
    }

    fn duration(&mut self, key: &str, text: &Option<DurationText>, default: Duration) -> Duration {
        self.value(
            key,
            text.as_ref().map(|t| t.0.as_str()),
            parse_duration,
            default,
        )
    }

    fn nonzero_duration(
        &mut self,
        key: &str,
        text: &Option<DurationText>,
        default: Duration,
    ) -> Duration {
        let value = self.duration(key, text, default);
        if value.is_zero() {
            self.report(key, "must be greater than zero");
            return default;
        }
        value
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn listener_conflicts() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(conflicts(a("0.0.0.0:8080"), a("127.0.0.1:8080")));
        assert!(conflicts(a("127.0.0.1:8080"), a("127.0.0.1:8080")));
        assert!(!conflicts(a("127.0.0.1:8080"), a("127.0.0.2:8080")));
        assert!(!conflicts(a("127.0.0.1:9090"), a("0.0.0.0:8080")));
        assert!(!conflicts(a("127.0.0.1:0"), a("127.0.0.1:0")));
        assert!(conflicts(a("[::]:8080"), a("[::1]:8080")));
    }
}
