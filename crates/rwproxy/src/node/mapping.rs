//! Mapping the validated configuration into the parameters of the cluster source and the
//! request pipeline, so that those layers never see the whole `Config`.

use crate::config::{Config, SourceConfig};
use http::uri::Authority;
use rwproxy_cluster::{HttpSpec, LitefsSpec, MysqlSpec, PatroniSpec, PostgresSpec, SourceSpec};
use rwproxy_core::{Classifier, RoutePolicy};
use rwproxy_http::health::AppCheck;
use rwproxy_http::{ConsistencyParams, HealthParams, PrimaryUrl, ProxyParams};
use std::io;
use std::sync::Arc;

pub(crate) fn source_spec(config: &Config) -> SourceSpec {
    let databases = config.cluster.databases.clone();
    match &config.cluster.source {
        SourceConfig::Static { primary } => SourceSpec::Static {
            primary: primary.clone(),
        },
        SourceConfig::Litefs { mount, api, poll } => SourceSpec::Litefs(LitefsSpec {
            mount: mount.clone(),
            databases,
            api: api
                .as_ref()
                .map(|u| u.to_string().trim_end_matches('/').to_owned()),
            poll: *poll,
        }),
        SourceConfig::Http { url, poll, timeout } => SourceSpec::Http(HttpSpec {
            url: url.to_string(),
            poll: *poll,
            timeout: *timeout,
            databases,
        }),
        SourceConfig::Postgres {
            url,
            password_file,
            primary,
            poll,
            timeout,
        } => SourceSpec::Postgres(PostgresSpec {
            url: url.clone(),
            password_file: password_file.clone(),
            primary: primary.clone(),
            poll: *poll,
            timeout: *timeout,
            position_key: wal_key(&databases),
        }),
        SourceConfig::Patroni {
            api,
            member,
            naming,
            url,
            password_file,
            poll,
            timeout,
        } => SourceSpec::Patroni(PatroniSpec {
            api: api.to_string().trim_end_matches('/').to_owned(),
            postgres: PostgresSpec {
                url: url.clone(),
                password_file: password_file.clone(),
                primary: None,
                poll: *poll,
                timeout: *timeout,
                position_key: wal_key(&databases),
            },
            member: member.clone().unwrap_or_else(|| config.node.clone()),
            naming: naming.clone(),
        }),
        SourceConfig::Mysql {
            url,
            password_file,
            primary,
            flavor,
            poll,
            timeout,
        } => SourceSpec::Mysql(MysqlSpec {
            url: url.clone(),
            password_file: password_file.clone(),
            primary: primary.clone(),
            flavor: *flavor,
            poll: *poll,
            timeout: *timeout,
            // The first database names the one GTID position (validation keeps it to one).
            position_key: databases
                .first()
                .cloned()
                .unwrap_or_else(|| "gtid".to_owned()),
        }),
    }
}

/// The key of the one WAL position of the postgres and patroni sources: the first database
/// (validation keeps it to one).
fn wal_key(databases: &[String]) -> String {
    databases
        .first()
        .cloned()
        .unwrap_or_else(|| "wal".to_owned())
}

pub(super) fn proxy_params(
    config: &Config,
    node: Arc<str>,
    databases: Vec<Arc<str>>,
) -> io::Result<ProxyParams> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let app: Authority = config
        .proxy
        .app
        .authority()
        .cloned()
        .ok_or_else(|| invalid("proxy.app has no host".into()))?;
    let classifier = Classifier::new(
        config.reads.methods.clone(),
        &config.routing.passthrough,
        &config.routing.always_forward,
    )
    .map_err(|e| invalid(e.to_string()))?;
    Ok(ProxyParams {
        node,
        app,
        app_connect_retry: config.proxy.app_connect_retry,
        app_max_connections: Some(config.proxy.app_max_connections),
        app_queue_timeout: config.proxy.app_queue_timeout,
        classifier,
        policy: RoutePolicy {
            write_mode: config.writes.mode,
            when_stale: config.reads.when_stale,
            on_timeout: config.consistency.on_timeout,
        },
        primary_url: PrimaryUrl::new(config.writes.primary_url.clone()),
        primary_wait: config.writes.primary_wait,
        write_timeout: config.writes.timeout,
        connect_timeout: config.writes.connect_timeout,
        max_lag: config.reads.max_lag,
        max_body: config.proxy.max_body,
        forward_secret: match &config.cluster.secret {
            Some(secret) => Some(
                http::HeaderValue::from_str(secret)
                    .map_err(|_| invalid("cluster.secret is not a valid header value".into()))?,
            ),
            None => None,
        },
        consistency: ConsistencyParams {
            cookie: config.consistency.cookie.clone(),
            header: config.consistency.header.clone(),
            wait: config.consistency.wait,
            cookie_max_age: config.consistency.cookie_max_age,
            max_waiters: config.consistency.max_waiters,
            databases,
            session: config.consistency.session,
        },
        health: HealthParams {
            path: config.health.path.clone(),
            max_lag: config.health.max_lag,
        },
        route_header: config.reads.route_header,
        access_log: config.log.access,
        upstream_tls: crate::tls::upstream_tls(config)?,
        upgrade_idle_timeout: config.proxy.upgrade_idle_timeout,
        allow_underscores_in_headers: config.proxy.allow_underscores_in_headers,
        body_timeouts: rwproxy_http::body_clock::BodyTimeouts {
            pause: config.proxy.body_timeout,
            min_rate: config.proxy.body_min_rate,
        },
        warm_path: config.writes.warm_path,
    })
}

/// The app check for `health.app_path`, if configured.
pub(super) fn app_check(config: &Config) -> io::Result<Option<AppCheck>> {
    let Some(path) = &config.health.app_path else {
        return Ok(None);
    };
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let app = config
        .proxy
        .app
        .authority()
        .cloned()
        .ok_or_else(|| invalid("proxy.app has no host".into()))?;
    let path = path
        .parse()
        .map_err(|_| invalid(format!("health.app_path: invalid path {path:?}")))?;
    Ok(Some(AppCheck::new(app, path, config.health.app_timeout)))
}
