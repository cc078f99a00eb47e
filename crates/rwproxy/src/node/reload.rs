//! Configuration reload (SIGHUP, `POST /reload` on the admin listener, `rwproxy reload`): the
//! file is read and validated as `check` does; a valid one is mapped into new pipeline
//! parameters with the same function as at start and swapped in whole; an invalid one changes
//! nothing. Keys that only take effect at start are named in the log and the answer.
//!
//! The swap is one [`Live`] store: requests already running finish under the parameters they
//! started with, a connection's next request gets the new ones.
//!
//! Changed cluster source settings restart the source first ([`super::source_switch`]): the
//! reload waits until the new source has read the cluster (or its bound passed), then swaps
//! the pipeline, so the two change as close together as they can.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rwproxy_http::history::{EventKind, Happening};
use rwproxy_http::{History, Live, Proxy, ProxyService};

use super::mapping::{proxy_params, source_spec};
use super::source_switch::{Restarted, SourceControl};
use crate::config::{self, Config, ConfigErrors, SourceConfig};
use crate::logging::LogLevel;

/// Re-reads the configuration file and applies it. Cheap to clone; reloads run one at a time.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    /// The file the node runs from (`None`: started from a `Config` value only).
    file: Mutex<Option<PathBuf>>,
    log_level: Mutex<LogLevel>,
    /// The configuration the node started with: what the start-only keys still are.
    started: Config,
    proxy: Live<Proxy>,
    service: Live<ProxyService>,
    /// One reload at a time, so a storm of them applies each file in order.
    serial: tokio::sync::Mutex<()>,
    /// Each reload's outcome is an event of the node's history.
    history: History,
    /// Restarts the cluster source.
    source: SourceControl,
    /// The source settings running now (the last ones a reload restarted the source with).
    running_source: Mutex<SourceConfig>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// A reload that was applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Keys whose value in the file differs from the running one but only take effect at
    /// start (`proxy.listen`, `proxy.workers`, ...): the rest was applied.
    pub needs_restart: Vec<&'static str>,
    /// How the restart of the cluster source went, when its settings changed (one line).
    pub source: Option<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The node was started from a configuration value, not a file.
    #[error("this node was started without a configuration file: nothing to re-read")]
    NoFile,
    /// The file does not validate: one problem a line, as `rwproxy check` prints them.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The file validates but could not be turned into pipeline parameters.
    #[error("{0}")]
    Unusable(String),
}

impl Reloader {
    /// A reloader for a node started with `started`, serving `proxy`'s stack from `service`.
    pub(super) fn new(
        started: Config,
        proxy: Live<Proxy>,
        service: Live<ProxyService>,
        history: History,
        source: SourceControl,
    ) -> Self {
        Reloader {
            inner: Arc::new(Inner {
                history,
                source,
                running_source: Mutex::new(started.cluster.source.clone()),
                file: Mutex::new(None),
                log_level: Mutex::new(LogLevel::default()),
                started,
                proxy,
                service,
                serial: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The file a reload re-reads (the one the node was started from).
    pub fn set_file(&self, path: PathBuf) {
        *lock(&self.inner.file) = Some(path);
    }

    /// The handle through which a reload changes `log.level`.
    pub fn set_log_level(&self, level: LogLevel) {
        *lock(&self.inner.log_level) = level;
    }

    /// Re-reads the file and applies it, or changes nothing and says why. Logs the outcome
    /// and counts it in `rwproxy_config_reloads_total{result}`.
    pub async fn reload(&self) -> Result<Applied, Refused> {
        let _one_at_a_time = self.inner.serial.lock().await;
        let file = lock(&self.inner.file).clone();
        let outcome = match file {
            None => Err(Refused::NoFile),
            Some(path) => match tokio::task::spawn_blocking(move || config::load(&path)).await {
                Ok(Ok(config)) => self.apply(&config).await,
                Ok(Err(problems)) => Err(Refused::Invalid(problems)),
                Err(error) => Err(Refused::Unusable(format!(
                    "reading the file failed: {error}"
                ))),
            },
        };
        let proxy = self.inner.proxy.load();
        proxy.metrics().config_reload(outcome.is_ok());
        match &outcome {
            Ok(applied) if applied.needs_restart.is_empty() => {
                tracing::info!("configuration reloaded");
            }
            Ok(applied) => tracing::warn!(
                needs_restart = %applied.needs_restart.join(", "),
                "configuration reloaded; these keys changed but take effect only at start: restart to apply them"
            ),
            Err(Refused::Invalid(problems)) => {
                for problem in &problems.0 {
                    tracing::error!("configuration reload refused: {problem}");
                }
            }
            Err(refused) => tracing::error!("configuration reload refused: {refused}"),
        }
        // The node's history tells the story too (`/events`, the operator's page).
        let what = match &outcome {
            Ok(applied) => {
                let restart = (!applied.needs_restart.is_empty())
                    .then(|| format!("restart to apply {}", applied.needs_restart.join(", ")));
                restart
                    .into_iter()
                    .chain(applied.source.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Err(Refused::Invalid(problems)) => format!(
                "refused: {}",
                problems
                    .0
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            Err(refused) => format!("refused: {refused}"),
        };
        self.inner
            .history
            .record(Happening::new(EventKind::ConfigReloaded).message(&what));
        outcome
    }

    /// Swaps `config`'s parameters in, after restarting the cluster source when its settings
    /// changed. Nothing changes unless all the parameters could be built.
    async fn apply(&self, config: &Config) -> Result<Applied, Refused> {
        let started = &self.inner.started;
        let running = self.inner.proxy.load();
        // The node's name and databases belong to the cluster source, which keeps running.
        let params = proxy_params(
            config,
            running.params().node.clone(),
            running.params().consistency.databases.clone(),
        )
        .map_err(|error| Refused::Unusable(error.to_string()))?;
        let source = self.restart_source(config).await;
        let next = running.reconfigured(params);
        self.inner.service.store(next.service());
        next.metrics()
            .max_lag(config.reads.max_lag, config.health.max_lag);
        self.inner.proxy.store(next);
        if let Err(error) = lock(&self.inner.log_level).set(&config.log.level) {
            tracing::warn!(%error, "log.level could not be changed");
        }
        Ok(Applied {
            needs_restart: start_only_changes(started, config),
            source,
        })
    }

    /// Restarts the cluster source when `config`'s settings for it differ from the running
    /// ones; returns how that went. The node's name and databases stay the started ones
    /// (both are start-only).
    async fn restart_source(&self, config: &Config) -> Option<String> {
        let wanted = &config.cluster.source;
        if !differs(&*lock(&self.inner.running_source), wanted) {
            return None;
        }
        let mut effective = config.clone();
        effective.node = self.inner.started.node.clone();
        effective.cluster.databases = self.inner.started.cluster.databases.clone();
        let outcome = self.inner.source.restart(source_spec(&effective)).await;
        if outcome != Restarted::Abandoned {
            *lock(&self.inner.running_source) = wanted.clone();
        }
        Some(outcome.to_string())
    }
}

/// The keys read only at start whose value in `new` differs from the running one.
fn start_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let (r, n) = (running, new);
    let keys = [
        ("node", r.node != n.node),
        ("proxy.listen", r.proxy.listen != n.proxy.listen),
        ("proxy.workers", r.proxy.workers != n.proxy.workers),
        (
            "proxy.max_connections",
            r.proxy.max_connections != n.proxy.max_connections,
        ),
        (
            "proxy.header_timeout",
            r.proxy.header_timeout != n.proxy.header_timeout,
        ),
        (
            "proxy.drain_timeout",
            r.proxy.drain_timeout != n.proxy.drain_timeout,
        ),
        (
            "proxy.drain_delay",
            r.proxy.drain_delay != n.proxy.drain_delay,
        ),
        ("proxy.tls", differs(&r.proxy.tls, &n.proxy.tls)),
        // Listener limits: every connection is set up with them when it is accepted.
        (
            "proxy.write_timeout",
            r.proxy.write_timeout != n.proxy.write_timeout,
        ),
        (
            "proxy.title_case_headers",
            r.proxy.title_case_headers != n.proxy.title_case_headers,
        ),
        ("admin.listen", r.admin.listen != n.admin.listen),
        (
            "admin.agent_listen",
            r.admin.agent_listen != n.admin.agent_listen,
        ),
        // The source and its settings restart live, but the LiteFS primary-name check runs
        // beside a LiteFS source only when the node started with one.
        (
            "cluster.source (to or from litefs: the primary-name check)",
            is_litefs(&r.cluster.source) != is_litefs(&n.cluster.source),
        ),
        // The peer poller and the fail-static policy are set up once, beside the source.
        (
            "cluster.peers, cluster.peers_dns, cluster.peer_poll, health.fail_static*",
            differs(&r.peers, &n.peers),
        ),
        (
            "cluster.databases",
            r.cluster.databases != n.cluster.databases,
        ),
        ("health.rise", r.health.rise != n.health.rise),
        ("health.fall", r.health.fall != n.health.fall),
        ("health.app_path", r.health.app_path != n.health.app_path),
        (
            "health.app_interval",
            r.health.app_interval != n.health.app_interval,
        ),
        (
            "health.app_timeout",
            r.health.app_timeout != n.health.app_timeout,
        ),
        ("log.format", r.log.format != n.log.format),
    ];
    keys.into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
}

fn is_litefs(source: &SourceConfig) -> bool {
    matches!(source, SourceConfig::Litefs { .. })
}

/// For settings without `PartialEq` (enums of paths and URLs): their debug forms differ.
fn differs<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reloads on every SIGHUP until the future is dropped (the node stops). Several signals
/// arriving during one reload make one more reload, not one each.
pub async fn reload_on_hangup(reloader: Reloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP: reload with `rwproxy reload` (POST /reload)");
                return std::future::pending().await;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            // The outcome is logged and counted by `reload`.
            let _ = reloader.reload().await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        std::future::pending::<()>().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        node = "a"
        [proxy]
        listen = "127.0.0.1:8080"
        app = "http://127.0.0.1:8081"
        [cluster]
        source = "static"
        primary = "a"
    "#;

    fn parse(text: &str) -> Config {
        config::parse(text).unwrap()
    }

    #[test]
    fn live_keys_are_not_start_only() {
        let running = parse(BASE);
        let new = parse(&format!(
            "{BASE}\n[reads]\nmax_lag = \"1s\"\n[routing]\npassthrough = [\"/x/*\"]\n[log]\nlevel = \"debug\"\naccess = true\n"
        ));
        assert_eq!(start_only_changes(&running, &new), Vec::<&str>::new());
    }

    #[test]
    fn start_only_keys_are_named() {
        let running = parse(BASE);
        let new = parse(
            &(BASE
                .replace("127.0.0.1:8080", "127.0.0.1:8082")
                .replace("primary = \"a\"", "primary = \"b\"")
                .replace("node = \"a\"", "node = \"c\"")
                + "\n[health]\nrise = 5\n[log]\nformat = \"json\"\n"),
        );
        assert_eq!(
            start_only_changes(&running, &new),
            vec!["node", "proxy.listen", "health.rise", "log.format"]
        );
    }

    #[test]
    fn a_source_change_is_live_but_to_litefs_names_its_primary_name_check() {
        let running = parse(BASE);
        let http = parse(&BASE.replace(
            "source = \"static\"\n        primary = \"a\"",
            "source = \"http\"\n        url = \"http://127.0.0.1:9/status\"",
        ));
        assert_eq!(start_only_changes(&running, &http), Vec::<&str>::new());
        let litefs = parse(&BASE.replace(
            "source = \"static\"\n        primary = \"a\"",
            "source = \"litefs\"\n        mount = \"/litefs\"",
        ));
        assert_eq!(
            start_only_changes(&running, &litefs),
            vec!["cluster.source (to or from litefs: the primary-name check)"]
        );
    }
}
