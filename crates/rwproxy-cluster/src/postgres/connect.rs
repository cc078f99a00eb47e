//! One long-lived connection to the local PostgreSQL server, reopened on demand after it fails.
//!
//! Every connect and every query is bounded by the source's `timeout`: a server that accepts TCP
//! and then says nothing (or is not PostgreSQL at all) costs one timeout, never a hang.

use std::error::Error as _;
use std::str::FromStr as _;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, NoTls, Socket};

use super::tls;

use crate::error::SourceError;
use crate::{AbortOnDrop, PostgresSpec};

/// A connection that reconnects by itself: the next use after a failure opens a new one.
#[derive(Debug)]
pub(crate) struct Connection {
    spec: PostgresSpec,
    /// Where the server is, for error texts (never the password).
    target: Arc<str>,
    live: Mutex<Option<Live>>,
}

/// An open connection and the task that drives it (aborted when dropped).
#[derive(Debug)]
struct Live {
    client: Arc<Client>,
    _driver: AbortOnDrop,
}

impl Connection {
    /// A connection to the server `spec.url` names; nothing is opened until first use.
    pub(crate) fn new(spec: &PostgresSpec) -> Self {
        Connection {
            target: describe_target(&spec.url).into(),
            spec: spec.clone(),
            live: Mutex::new(None),
        }
    }

    /// Runs one simple query (one round trip, text results), connecting first if needed. A
    /// connection that failed or timed out is dropped so that the next call starts afresh; one
    /// whose server answered with an error (a SQL error) is kept.
    pub(crate) async fn simple_query(
        &self,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, SourceError> {
        let client = self.client().await?;
        let reason = match tokio::time::timeout(self.spec.timeout, client.simple_query(sql)).await {
            Ok(Ok(rows)) => return Ok(rows),
            Ok(Err(e)) if e.as_db_error().is_some() => return Err(self.fail(describe(&e))),
            Ok(Err(e)) => describe(&e),
            Err(_) => format!("the query did not answer within {:?}", self.spec.timeout),
        };
        let mut live = self.live.lock().await;
        // Only this client: another caller may have opened a new one meanwhile.
        if live
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.client, &client))
        {
            *live = None;
        }
        Err(self.fail(reason))
    }

    /// The open client, or a new one.
    async fn client(&self) -> Result<Arc<Client>, SourceError> {
        let mut live = self.live.lock().await;
        if let Some(open) = live.as_ref().filter(|l| !l.client.is_closed()) {
            return Ok(open.client.clone());
        }
        *live = None;
        let (config, connector) = self.config()?;
        let (client, driver) = match connector {
            Some(tls) => self.open(&config, tls).await?,
            None => self.open(&config, NoTls).await?,
        };
        let client = Arc::new(client);
        *live = Some(Live {
            client: client.clone(),
            _driver: AbortOnDrop(driver),
        });
        Ok(client)
    }

    /// Connects with `tls` (the connector, or `NoTls`) and spawns the task that drives the
    /// connection.
    async fn open<T>(
        &self,
        config: &Config,
        tls: T,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), SourceError>
    where
        T: MakeTlsConnect<Socket> + Send,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let (client, connection) =
            match tokio::time::timeout(self.spec.timeout, config.connect(tls)).await {
                Ok(Ok(open)) => open,
                Ok(Err(e)) => return Err(self.fail(connect_failure(&e))),
                Err(_) => {
                    return Err(self.fail(format!(
                        "connecting did not finish within {:?}",
                        self.spec.timeout
                    )))
                }
            };
        let target = self.target.clone();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target = %target, error = %describe(&e), "postgres connection ended");
            }
        });
        Ok((client, driver))
    }

    /// The connection settings and the TLS connector (`None` for `sslmode=disable`): the URL,
    /// plus the password from `password_file` or `PGPASSWORD` when the URL has none.
    fn config(
        &self,
    ) -> Result<(Config, Option<tokio_postgres_rustls::MakeRustlsConnect>), SourceError> {
        let tls = tls::split(&self.spec.url).map_err(|e| self.fail(e))?;
        let mut config = Config::from_str(&tls.url).map_err(|e| self.fail(describe(&e)))?;
        config.ssl_mode(tls.ssl_mode());
        let connector = tls.connector().map_err(|e| self.fail(e))?;
        if config.get_password().is_none() {
            if let Some(path) = &self.spec.password_file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    self.fail(format!("cannot read password_file {}: {e}", path.display()))
                })?;
                config.password(text.trim_end_matches(['\r', '\n']));
            } else if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("rwproxy");
        }
        config.connect_timeout(self.spec.timeout);
        Ok((config, connector))
    }

    /// A server answer rwproxy cannot use (not the shape its queries give).
    pub(crate) fn unexpected(&self, reason: &str) -> SourceError {
        self.fail(reason.to_owned())
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Postgres {
            target: self.target.to_string(),
            reason,
        }
    }
}

/// `host:port/dbname` of a URL, without user or password, for logs and health reasons.
pub(crate) fn describe_target(url: &str) -> String {
    let Some(config) = tls::split(url)
        .ok()
        .and_then(|t| Config::from_str(&t.url).ok())
    else {
        return "(invalid url)".to_owned();
    };
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("{host}:{port}/{db}")
}

/// The error with its causes (tokio-postgres puts the server's message in the cause). Stable
/// for a steady failure: the text becomes the health reason and is logged once per change.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Why connecting failed. A failure after the TCP connection opened that is not the server's
/// own error message means the other end does not speak PostgreSQL's protocol: say so.
fn connect_failure(error: &tokio_postgres::Error) -> String {
    let text = describe(error);
    if error.as_db_error().is_some() || text.starts_with("error connecting to server") {
        text
    } else {
        format!("{text} (not a PostgreSQL server, or it closed the connection)")
    }
}

/// Checks a `cluster.url` for the postgres source: a URL tokio-postgres accepts, naming a user
/// and a host, with TLS options rwproxy supports (see [`tls`]).
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "invalid URL {:?} (expected postgres://USER@HOST:PORT/DBNAME)",
            redact(url)
        ));
    }
    let tls = tls::split(url)?;
    let config = Config::from_str(&tls.url).map_err(|e| {
        format!(
            "invalid URL {:?}: {}",
            redact(url),
            describe(&e).trim_start_matches("invalid connection string: ")
        )
    })?;
    if config.get_user().is_none() {
        return Err("the URL must name a user (postgres://USER@HOST/DBNAME)".to_owned());
    }
    if config.get_hosts().is_empty() {
        return Err("the URL must name a host (postgres://USER@HOST/DBNAME)".to_owned());
    }
    monitoring_options(&config)
}

/// Options that cannot be right for a connection that watches this node's own server: they
/// would make rwproxy watch another server, or none, after a failover.
fn monitoring_options(config: &Config) -> Result<(), String> {
    use tokio_postgres::config::TargetSessionAttrs;
    let hosts = config.get_hosts().len();
    if hosts > 1 || config.get_hostaddrs().len() > 1 {
        return Err(format!(
            "the URL names {} hosts: rwproxy watches this node's own server, name only that one",
            hosts.max(config.get_hostaddrs().len())
        ));
    }
    match config.get_target_session_attrs() {
        TargetSessionAttrs::Any => Ok(()),
        other => Err(format!(
            "target_session_attrs={}: rwproxy must connect to this node's server whatever its \
             role (a replica would be refused); remove the option",
            match other {
                TargetSessionAttrs::ReadWrite => "read-write",
                _ => "read-only",
            }
        )),
    }
}

/// The URL with any password replaced, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_redacted() {
        assert_eq!(
            check_url("postgres://rwproxy@127.0.0.1:5432/postgres"),
            Ok(())
        );
        assert_eq!(check_url("postgresql://u:pw@db/app"), Ok(()));
        assert!(check_url("http://127.0.0.1:5432").is_err());
        assert!(check_url("postgres://127.0.0.1/app")
            .unwrap_err()
            .contains("user"));
        assert_eq!(check_url("postgres://u@h/app?sslmode=require"), Ok(()));
        assert_eq!(
            check_url("postgres://u@h/app?sslmode=verify-full&sslrootcert=/ca.pem"),
            Ok(())
        );
        assert!(check_url("postgres://u@h/app?sslmode=verify-ca")
            .unwrap_err()
            .contains("sslrootcert"));
        assert!(check_url("postgres://u@h:notaport/app").is_err());
        assert!(check_url("postgres://u@h1,h2/app")
            .unwrap_err()
            .contains("2 hosts"));
        assert!(
            check_url("postgres://u@h/app?target_session_attrs=read-write")
                .unwrap_err()
                .contains("target_session_attrs=read-write")
        );
        assert_eq!(
            check_url("postgres://u@h/app?application_name=mine"),
            Ok(()),
            "a chosen application_name is used as given"
        );
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            describe_target("postgres://u:secret@h:5433/db"),
            "h:5433/db"
        );
    }
}
