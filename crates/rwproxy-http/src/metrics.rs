//! Prometheus metrics. Every handle is registered once at start-up, indexed by small fixed label
//! sets, so the request path records without formatting or allocating. Each proxy owns its own
//! recorder (not the process-global one), so several proxies can live in one test process.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use rwproxy_core::{ErrorCode, NodeState, RequestClass, Role};

mod reload;
use reload::ReloadMetrics;

const CLASSES: [RequestClass; 3] = [
    RequestClass::Read,
    RequestClass::Write,
    RequestClass::Passthrough,
];
/// The `route` label values, in index order.
pub const ROUTES: [&str; 5] = ["local", "primary", "replay", "redirect", "rejected"];
const CODES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static METADATA: Metadata<'static> = Metadata::new("rwproxy", metrics::Level::INFO, None);

/// All of rwproxy's metric handles and the renderer for `/metrics`.
pub struct Metrics {
    handle: PrometheusHandle,
    /// Kept to register a request series the first time an unexpected combination occurs.
    recorder: PrometheusRecorder,
    requests: Vec<OnceLock<Counter>>,
    durations: Vec<OnceLock<Histogram>>,
    errors: Vec<Counter>,
    forward_duration: Histogram,
    in_flight: Gauge,
    lag: Gauge,
    is_primary: Gauge,
    primary_known: Gauge,
    healthy: Gauge,
    positions: Vec<(Arc<str>, Gauge)>,
    consistency_wait: Histogram,
    consistency_timeouts: Counter,
    tokens_lost: Counter,
    consistency_waiting: Gauge,
    primary_reachable: Gauge,
    idle_app: Gauge,
    idle_primary: Gauge,
    app_queued: Gauge,
    reads_max_lag: Gauge,
    health_max_lag: Gauge,
    fail_static: FailStaticGauges,
    started: Instant,
    version: &'static str,
    client_write_timeouts: Counter,
    reloads: ReloadMetrics,
    primary_path: PrimaryPathMetrics,
}

/// The path to the primary (#28): its connections, set at scrape time.
struct PrimaryPathMetrics {
    open: Gauge,
    warm: Gauge,
    created_warm: Counter,
    created_demand: Counter,
    http2_fallbacks: Counter,
    tls_full: Counter,
    tls_resumed: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn class_index(class: RequestClass) -> usize {
    match class {
        RequestClass::Read => 0,
        RequestClass::Write => 1,
        RequestClass::Passthrough => 2,
    }
}

fn route_index(route: &str) -> usize {
    ROUTES
        .iter()
        .position(|r| *r == route)
        .unwrap_or(ROUTES.len() - 1)
}

fn code_index(status: StatusCode) -> usize {
    (usize::from(status.as_u16() / 100)).clamp(1, 5) - 1
}

impl Metrics {
    /// Registers every metric; `databases` get one `rwproxy_position{db}` gauge each.
    pub fn new(databases: &[Arc<str>], version: &'static str) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        describe(&recorder);
        let counter = |name: &'static str, labels: Vec<Label>| {
            recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
        };
        let gauge = |name: &'static str, labels: Vec<Label>| {
            recorder.register_gauge(&Key::from_parts(name, labels), &METADATA)
        };
        let histogram = |name: &'static str, labels: Vec<Label>| {
            recorder.register_histogram(&Key::from_parts(name, labels), &METADATA)
        };

        let mut requests = Vec::with_capacity(CLASSES.len() * ROUTES.len() * CODES.len());
        let mut durations = Vec::with_capacity(CLASSES.len() * ROUTES.len());
        for class in CLASSES {
            for route in ROUTES {
                for code in CODES {
                    let slot = OnceLock::new();
                    if series::expected(class, route, code) {
                        let _ = slot.set(counter(
                            "rwproxy_requests_total",
                            series::request_labels(class, route, code),
                        ));
                    }
                    requests.push(slot);
                }
                let slot = OnceLock::new();
                if series::expected_route(class, route) {
                    let _ = slot.set(histogram(
                        "rwproxy_request_duration_seconds",
                        series::duration_labels(class, route),
                    ));
                }
                durations.push(slot);
            }
        }
        let errors = ErrorCode::ALL
            .iter()
            .map(|c| {
                counter(
                    "rwproxy_errors_total",
                    vec![Label::from_static_parts("reason", c.as_str())],
                )
            })
            .collect();
        let positions = databases
            .iter()
            .map(|db| {
                (
                    db.clone(),
                    gauge("rwproxy_position", vec![Label::new("db", db.to_string())]),
                )
            })
            .collect();
        gauge(
            "rwproxy_build_info",
            vec![Label::from_static_parts("version", version)],
        )
        .set(1.0);
        // Process-exporter convention: dashboards compute uptime as time() minus this.
        gauge("rwproxy_start_time_seconds", vec![]).set(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        let metrics = Metrics {
            handle: recorder.handle(),
            requests,
            durations,
            errors,
            forward_duration: histogram("rwproxy_forward_duration_seconds", vec![]),
            in_flight: gauge("rwproxy_in_flight_requests", vec![]),
            lag: gauge("rwproxy_replication_lag_seconds", vec![]),
            is_primary: gauge("rwproxy_is_primary", vec![]),
            primary_known: gauge("rwproxy_primary_known", vec![]),
            healthy: gauge("rwproxy_healthy", vec![]),
            positions,
            consistency_wait: histogram("rwproxy_consistency_wait_seconds", vec![]),
            consistency_timeouts: counter("rwproxy_consistency_timeouts_total", vec![]),
            tokens_lost: counter("rwproxy_tokens_lost_total", vec![]),
            consistency_waiting: gauge("rwproxy_consistency_waiting", vec![]),
            primary_reachable: gauge("rwproxy_primary_reachable", vec![]),
            idle_app: gauge(
                "rwproxy_upstream_idle_connections",
                vec![Label::from_static_parts("upstream", "app")],
            ),
            idle_primary: gauge(
                "rwproxy_upstream_idle_connections",
                vec![Label::from_static_parts("upstream", "primary")],
            ),
            app_queued: gauge("rwproxy_app_queued_requests", vec![]),
            reads_max_lag: gauge("rwproxy_reads_max_lag_seconds", vec![]),
            health_max_lag: gauge("rwproxy_health_max_lag_seconds", vec![]),
            fail_static: FailStaticGauges {
                degraded: gauge("rwproxy_degraded", vec![]),
                known: gauge(
                    "rwproxy_peers",
                    vec![Label::from_static_parts("state", "known")],
                ),
                heard: gauge(
                    "rwproxy_peers",
                    vec![Label::from_static_parts("state", "heard")],
                ),
                lost: gauge(
                    "rwproxy_peers",
                    vec![Label::from_static_parts("state", "lost-primary")],
                ),
            },
            started: Instant::now(),
            version,
            primary_path: PrimaryPathMetrics {
                open: gauge(
                    "rwproxy_primary_connections",
                    vec![Label::from_static_parts("state", "open")],
                ),
                warm: gauge(
                    "rwproxy_primary_connections",
                    vec![Label::from_static_parts("state", "warm")],
                ),
                created_warm: counter(
                    "rwproxy_primary_connections_created_total",
                    vec![Label::from_static_parts("reason", "warm")],
                ),
                created_demand: counter(
                    "rwproxy_primary_connections_created_total",
                    vec![Label::from_static_parts("reason", "demand")],
                ),
                http2_fallbacks: counter("rwproxy_primary_http2_fallbacks_total", vec![]),
                tls_full: counter(
                    "rwproxy_primary_tls_handshakes_total",
                    vec![Label::from_static_parts("kind", "full")],
                ),
                tls_resumed: counter(
                    "rwproxy_primary_tls_handshakes_total",
                    vec![Label::from_static_parts("kind", "resumed")],
                ),
            },
            client_write_timeouts: counter("rwproxy_client_write_timeouts_total", vec![]),
            reloads: ReloadMetrics::register(&recorder),
            // Last: the registration closures above borrow it.
            recorder,
        };
        // No failure seen yet: the primary counts as reachable until a connect to it fails.
        metrics.primary_reachable.set(1.0);
        metrics
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Publishes the configured lag thresholds, so dashboards draw lag against them.
    pub fn max_lag(&self, reads: Duration, health: Duration) {
        self.reads_max_lag.set(reads.as_secs_f64());
        self.health_max_lag.set(health.as_secs_f64());
    }

    /// Counts a configuration reload, applied or refused.
    pub fn config_reload(&self, applied: bool) {
        self.reloads.attempt(applied);
    }

    /// How long ago this node's metrics (and so the node) started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The build's version (the `rwproxy_build_info` label).
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Folds the histogram samples recorded since the last call into their buckets. Until then
    /// every sample is kept (8 bytes and more per request), so this must run periodically
    /// whether or not anything scrapes `/metrics`: see [`upkeep`].
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Records one finished request.
    pub fn request(&self, class: RequestClass, route: &str, status: StatusCode, elapsed: Duration) {
        let (c, r, k) = (class_index(class), route_index(route), code_index(status));
        if let Some(slot) = self.requests.get((c * ROUTES.len() + r) * CODES.len() + k) {
            // Only series that can occur are exported from the start; one that was not
            // expected is registered the first time it happens, so it is still counted.
            slot.get_or_init(|| {
                self.recorder.register_counter(
                    &Key::from_parts(
                        "rwproxy_requests_total",
                        series::request_labels(CLASSES[c], ROUTES[r], CODES[k]),
                    ),
                    &METADATA,
                )
            })
            .increment(1);
        }
        if let Some(slot) = self.durations.get(c * ROUTES.len() + r) {
            slot.get_or_init(|| {
                self.recorder.register_histogram(
                    &Key::from_parts(
                        "rwproxy_request_duration_seconds",
                        series::duration_labels(CLASSES[c], ROUTES[r]),
                    ),
                    &METADATA,
                )
            })
            .record(elapsed.as_secs_f64());
        }
    }

    /// Records an answer rwproxy made itself.
    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].increment(1);
        }
    }

    /// Records a client connection closed by `proxy.write_timeout` (no answer can be sent).
    pub fn client_write_timeout(&self) {
        self.client_write_timeouts.increment(1);
    }

    /// Records the time to the primary's response head.
    pub fn forwarded(&self, elapsed: Duration) {
        self.forward_duration.record(elapsed.as_secs_f64());
    }

    /// Tracks requests in flight.
    pub fn in_flight(&self, delta: f64) {
        self.in_flight.increment(delta);
    }

    /// Records one finished consistency wait.
    pub fn consistency_wait(&self, elapsed: Duration, timed_out: bool) {
        self.consistency_wait.record(elapsed.as_secs_f64());
        if timed_out {
            self.consistency_timeouts.increment(1);
        }
    }

    /// Counts one read whose token named a write a failover lost.
    pub fn token_lost(&self) {
        self.tokens_lost.increment(1);
    }

    /// Tracks reads waiting for a position.
    pub fn consistency_waiting(&self, n: usize) {
        self.consistency_waiting.set(n as f64);
    }

    /// Records whether the last attempt to reach the primary's rwproxy connected.
    pub fn primary_reachable(&self, reachable: bool) {
        self.primary_reachable.set(f64::from(u8::from(reachable)));
    }

    /// Sets the idle pooled connections to the local app and to primaries (at scrape time).
    pub fn upstream_idle(&self, app: usize, primary: usize) {
        self.idle_app.set(app as f64);
        self.idle_primary.set(primary as f64);
    }

    /// Sets the connections to primaries (at scrape time): open, ready for a write, and how
    /// many were opened ahead of writes and by a write that found none.
    pub fn primary_connections(
        &self,
        open: usize,
        warm: usize,
        created_warm: u64,
        created_demand: u64,
    ) {
        let m = &self.primary_path;
        m.open.set(open as f64);
        m.warm.set(warm as f64);
        m.created_warm.absolute(created_warm);
        m.created_demand.absolute(created_demand);
    }

    /// Sets the counts of the path to the primary's protocol (at scrape time): primaries found
    /// not to speak HTTP/2, and TLS handshakes to primaries, full and resumed.
    pub fn primary_protocol(&self, counts: &crate::upstream::multiplex::ConnectionCounts) {
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        let m = &self.primary_path;
        m.http2_fallbacks.absolute(load(&counts.http2_fallbacks));
        m.tls_full.absolute(load(&counts.tls_full));
        m.tls_resumed.absolute(load(&counts.tls_resumed));
    }

    /// Sets the requests waiting for a connection to the local app (at scrape time).
    pub fn app_queued(&self, waiting: usize) {
        self.app_queued.set(waiting as f64);
    }

    /// Updates the state gauges (called on every state change, not per request).
    pub fn state(&self, state: &NodeState, healthy: bool) {
        self.lag
            .set(state.lag.map_or(f64::NAN, |l| l.as_secs_f64()));
        self.is_primary
            .set(f64::from(u8::from(state.role == Role::Primary)));
        self.primary_known
            .set(f64::from(u8::from(state.primary.is_some())));
        self.healthy.set(f64::from(u8::from(healthy)));
        for (db, gauge) in &self.positions {
            if let Some(p) = state.positions.get(db) {
                gauge.set(*p as f64);
            }
        }
    }
}

/// Peer-aware health's gauges (`health.fail_static`).
struct FailStaticGauges {
    degraded: Gauge,
    known: Gauge,
    heard: Gauge,
    lost: Gauge,
}

impl Metrics {
    /// Records the fail-static verdict: degraded or not, and how many peers are known, answered
    /// and lost the primary too (called by the state-watch task, not per request).
    pub fn fail_static(&self, degraded: bool, known: usize, heard: usize, lost: usize) {
        let g = &self.fail_static;
        g.degraded.set(f64::from(u8::from(degraded)));
        g.known.set(known as f64);
        g.heard.set(heard as f64);
        g.lost.set(lost as f64);
    }
}

/// How often [`upkeep`] drains histogram samples. Samples wait in memory until drained (~0.7 MiB
/// per second at 50,000 requests/s): every second keeps that under a MiB where the exporter's
/// own 5 s let it reach 3.5 MiB; the work per sample is the same either way.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Runs [`Metrics::run_upkeep`] every [`UPKEEP_INTERVAL`] until `stop` resolves. Without it,
/// a node that nobody scrapes keeps every request's duration sample: memory grew by ~0.7 MiB/s
/// at 45,000 requests/s in the load benchmark's soak.
pub async fn upkeep(metrics: Arc<Metrics>, stop: impl std::future::Future<Output = ()>) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => metrics.run_upkeep(),
            () = &mut stop => return,
        }
    }
}

/// Which `rwproxy_requests_total` / `rwproxy_request_duration_seconds` series exist (at zero)
/// from start-up: only the combinations that can occur, so dashboards and `/metrics` are not
/// padded with impossible ones such as `class="passthrough",route="rejected",code="2xx"`.
mod series {
    use metrics::Label;
    use rwproxy_core::RequestClass;

    /// Whether requests of `class` can take `route`: reads and passthrough paths never get a
    /// `fly-replay` or a redirect (only writes honour `writes.mode`), and passthrough paths are
    /// never forwarded to the primary.
    pub(super) fn expected_route(class: RequestClass, route: &str) -> bool {
        matches!(
            (class, route),
            (_, "local" | "rejected")
                | (RequestClass::Read | RequestClass::Write, "primary")
                | (RequestClass::Write, "replay" | "redirect")
        )
    }

    /// Whether a response of status class `code` can end on `route`: rwproxy's own refusals
    /// are 4xx/5xx, a fly-replay answer is a 421 and a redirect a 307; the app (local or the
    /// primary's) may answer anything, 1xx being a `101` upgrade.
    pub(super) fn expected(class: RequestClass, route: &str, code: &str) -> bool {
        expected_route(class, route)
            && match route {
                "rejected" => matches!(code, "4xx" | "5xx"),
                "replay" => code == "4xx",
                "redirect" => code == "3xx",
                _ => true,
            }
    }

    pub(super) fn request_labels(
        class: RequestClass,
        route: &'static str,
        code: &'static str,
    ) -> Vec<Label> {
        vec![
            Label::from_static_parts("class", class.as_str()),
            Label::from_static_parts("route", route),
            Label::from_static_parts("code", code),
        ]
    }

    pub(super) fn duration_labels(class: RequestClass, route: &'static str) -> Vec<Label> {
        vec![
            Label::from_static_parts("class", class.as_str()),
            Label::from_static_parts("route", route),
        ]
    }
}

fn describe(recorder: &PrometheusRecorder) {
    let d = |name: &'static str, unit: Option<Unit>, help: &'static str| {
        (
            KeyName::from_const_str(name),
            unit,
            SharedString::const_str(help),
        )
    };
    for (name, unit, help) in [
        d(
            "rwproxy_requests_total",
            None,
            "Requests answered, by class, route and status class.",
        ),
        d(
            "rwproxy_errors_total",
            None,
            "Responses rwproxy made itself, by rwproxy-error code.",
        ),
        d(
            "rwproxy_consistency_timeouts_total",
            None,
            "Reads whose consistency wait ended without reaching the token.",
        ),
        d(
            "rwproxy_primary_connections_created_total",
            None,
            "Connections opened to the primary's rwproxy: ahead of writes (warm) or by a write that found none (demand).",
        ),
        d(
            "rwproxy_primary_http2_fallbacks_total",
            None,
            "Primaries found not to speak HTTP/2 (h2c or ALPN h2): forwarded to over HTTP/1.1 until the primary changes.",
        ),
        d(
            "rwproxy_primary_tls_handshakes_total",
            None,
            "TLS handshakes to the primary: full (certificates checked) or resumed (an earlier session's ticket).",
        ),
        d(
            "rwproxy_client_write_timeouts_total",
            None,
            "Client connections closed because the client left a response unread for proxy.write_timeout.",
        ),
        d(
            "rwproxy_tokens_lost_total",
            None,
            "Reads whose token named a write a database failover lost (answered 409 token-lost).",
        ),
    ] {
        recorder.describe_counter(name, unit, help);
    }
    for (name, unit, help) in [
        d(
            "rwproxy_request_duration_seconds",
            Some(Unit::Seconds),
            "Time from request to response head, by class and route.",
        ),
        d(
            "rwproxy_forward_duration_seconds",
            Some(Unit::Seconds),
            "Time from sending to the primary to its response head.",
        ),
        d(
            "rwproxy_consistency_wait_seconds",
            Some(Unit::Seconds),
            "Time reads waited for this node to reach their token.",
        ),
    ] {
        recorder.describe_histogram(name, unit, help);
    }
    for (name, unit, help) in [
        d(
            "rwproxy_replication_lag_seconds",
            Some(Unit::Seconds),
            "Replication lag reported by the cluster source (NaN when unknown).",
        ),
        d(
            "rwproxy_is_primary",
            None,
            "1 when this node is the primary.",
        ),
        d(
            "rwproxy_primary_known",
            None,
            "1 when this node knows the primary.",
        ),
        d(
            "rwproxy_healthy",
            None,
            "1 when the health endpoint answers 200.",
        ),
        d(
            "rwproxy_position",
            None,
            "Replication position (TXID) per database.",
        ),
        d(
            "rwproxy_in_flight_requests",
            None,
            "Requests being handled now.",
        ),
        d(
            "rwproxy_consistency_waiting",
            None,
            "Reads waiting for this node to reach their token now.",
        ),
        d(
            "rwproxy_primary_reachable",
            None,
            "1 when the last connect to the primary's rwproxy succeeded (or none failed yet), 0 after a connect failure.",
        ),
        d(
            "rwproxy_primary_connections",
            None,
            "Connections to the primary's rwproxy: open (both protocols), warm (ready for a write now).",
        ),
        d(
            "rwproxy_upstream_idle_connections",
            None,
            "Idle keep-alive connections pooled, by upstream (app, primary).",
        ),
        d(
            "rwproxy_app_queued_requests",
            None,
            "Requests waiting for a connection to the local app (proxy.app_max_connections are open).",
        ),
        d(
            "rwproxy_reads_max_lag_seconds",
            Some(Unit::Seconds),
            "reads.max_lag: above this lag a replica does not serve reads itself.",
        ),
        d(
            "rwproxy_health_max_lag_seconds",
            Some(Unit::Seconds),
            "health.max_lag: above this lag the node is unhealthy.",
        ),
        d(
            "rwproxy_start_time_seconds",
            Some(Unit::Seconds),
            "When this node started, in seconds since the Unix epoch.",
        ),
        d(
            "rwproxy_degraded",
            None,
            "1 while fail-static: no primary anywhere reachable, reads served from local data, writes refused.",
        ),
        d(
            "rwproxy_peers",
            None,
            "Peers of peer-aware health by state: known, heard (answered the last poll), lost-primary.",
        ),
        d(
            "rwproxy_build_info",
            None,
            "Always 1; the version label says which build runs.",
        ),
    ] {
        recorder.describe_gauge(name, unit, help);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_keeps_the_samples_it_drains() {
        let m = Metrics::new(&[], "test");
        for _ in 0..1000 {
            m.request(
                RequestClass::Read,
                "local",
                StatusCode::OK,
                Duration::from_millis(1),
            );
        }
        m.run_upkeep();
        m.run_upkeep();
        let text = m.render();
        assert!(
            text.contains(
                "rwproxy_request_duration_seconds_count{class=\"read\",route=\"local\"} 1000"
            ),
            "{text}"
        );
    }
    #[test]
    fn only_possible_request_series_start_at_zero_and_others_still_count() {
        let m = Metrics::new(&[], "test");
        let text = m.render();
        let series = |t: &str| {
            t.lines()
                .filter(|l| l.starts_with("rwproxy_requests_total{"))
                .count()
        };
        assert_eq!(series(&text), 33, "{text}");
        for impossible in [
            "class=\"passthrough\",route=\"rejected\",code=\"2xx\"",
            "class=\"read\",route=\"replay\"",
            "class=\"passthrough\",route=\"primary\"",
        ] {
            assert!(!text.contains(impossible), "{impossible} in {text}");
        }
        assert!(!text
            .contains("rwproxy_request_duration_seconds_count{class=\"read\",route=\"redirect\"}"));
        // Should one happen after all, it is counted, not lost.
        m.request(
            RequestClass::Passthrough,
            "rejected",
            StatusCode::OK,
            Duration::from_millis(1),
        );
        m.run_upkeep();
        let text = m.render();
        assert!(
            text.contains(
                "rwproxy_requests_total{class=\"passthrough\",route=\"rejected\",code=\"2xx\"} 1"
            ),
            "{text}"
        );
        assert_eq!(series(&text), 34);
    }
}
