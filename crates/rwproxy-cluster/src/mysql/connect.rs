//! One long-lived connection to the local MySQL or MariaDB server, reopened on demand after it
//! fails.
//!
//! Every connect and every query is bounded by the source's `timeout`: a server that accepts TCP
//! and then says nothing (or is not MySQL at all) costs one timeout, never a hang.

use std::sync::Arc;

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Opts, OptsBuilder, Row};
use tokio::sync::Mutex;

use crate::error::SourceError;
use crate::MysqlSpec;

/// A connection that reconnects by itself: the next use after a failure opens a new one.
#[derive(Debug)]
pub(crate) struct Connection {
    spec: MysqlSpec,
    /// Where the server is, for error texts (never the password).
    target: Arc<str>,
    live: Mutex<Option<Conn>>,
}

impl Connection {
    /// A connection to the server `spec.url` names; nothing is opened until first use.
    pub(crate) fn new(spec: &MysqlSpec) -> Self {
        Connection {
            target: describe_target(&spec.url).into(),
            spec: spec.clone(),
            live: Mutex::new(None),
        }
    }

    /// Runs one text-protocol statement and returns its rows, connecting first if needed. A
    /// connection whose statement failed in any way is dropped so that the next call starts
    /// afresh: the server grants global privileges (`SLAVE MONITOR`) to a session when it
    /// connects, so a privilege granted after a refusal takes effect only on a new connection.
    pub(crate) async fn query(&self, sql: &str) -> Result<Vec<Row>, SourceError> {
        let mut live = self.live.lock().await;
        let mut conn = match live.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let answer = tokio::time::timeout(self.spec.timeout, conn.query::<Row, _>(sql)).await;
        match answer {
            Ok(Ok(rows)) => {
                *live = Some(conn);
                Ok(rows)
            }
            Ok(Err(mysql_async::Error::Server(e))) => {
                Err(self.fail(format!("{} (error {})", e.message, e.code)))
            }
            Ok(Err(e)) => Err(self.fail(e.to_string())),
            Err(_) => Err(self.fail(format!(
                "the query did not answer within {:?}",
                self.spec.timeout
            ))),
        }
    }

    /// A new connection, within the timeout.
    async fn connect(&self) -> Result<Conn, SourceError> {
        let opts = self.opts()?;
        match tokio::time::timeout(self.spec.timeout, Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(mysql_async::Error::Server(e))) => {
                Err(self.fail(format!("{} (error {})", e.message, e.code)))
            }
            Ok(Err(e @ mysql_async::Error::Io(_))) => Err(self.fail(format!(
                "{e} (is it a MySQL or MariaDB server, and is it running?)"
            ))),
            Ok(Err(e)) => Err(self.fail(format!(
                "{e} (not a MySQL or MariaDB server, or it closed the connection)"
            ))),
            Err(_) => Err(self.fail(format!(
                "connecting did not finish within {:?} (not a MySQL or MariaDB server?)",
                self.spec.timeout
            ))),
        }
    }

    /// The connection settings: the URL, plus the password from `password_file` or
    /// `MYSQL_PWD` when the URL has none; always TCP to the host the URL names.
    fn opts(&self) -> Result<Opts, SourceError> {
        let opts = Opts::from_url(&self.spec.url).map_err(|e| self.fail(e.to_string()))?;
        let mut builder = OptsBuilder::from_opts(opts.clone())
            // mysql_async would otherwise switch to the server's Unix socket after connecting
            // to localhost; rwproxy talks to exactly the address it was given.
            .prefer_socket(false)
            // Bounded by hand around every query; no statement cache is needed for text queries.
            .stmt_cache_size(0);
        if opts.pass().is_none() {
            if let Some(path) = &self.spec.password_file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    self.fail(format!("cannot read password_file {}: {e}", path.display()))
                })?;
                builder = builder.pass(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
            } else if let Ok(password) = std::env::var("MYSQL_PWD") {
                builder = builder.pass(Some(password));
            }
        }
        Ok(builder.into())
    }

    /// A server answer rwproxy cannot use (not the shape its queries give).
    pub(crate) fn unexpected(&self, reason: &str) -> SourceError {
        self.fail(reason.to_owned())
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Mysql {
            target: self.target.to_string(),
            reason,
        }
    }
}

/// `host:port` of a URL, without user or password, for logs and health reasons.
pub(crate) fn describe_target(url: &str) -> String {
    match Opts::from_url(url) {
        Ok(opts) => format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
        Err(_) => "(invalid url)".to_owned(),
    }
}

/// Checks a `cluster.url` for the mysql source: `mysql://USER[:PASSWORD]@HOST[:PORT][/DB]`,
/// naming a user and a host, without TLS (not supported: connect over loopback).
pub fn check_url(url: &str) -> Result<(), String> {
    if !url.starts_with("mysql://") {
        return Err(format!(
            "invalid URL {:?} (expected mysql://USER@HOST:PORT)",
            redact(url)
        ));
    }
    let opts = Opts::from_url(url).map_err(|e| format!("invalid URL {:?}: {e}", redact(url)))?;
    if opts.user().is_none_or(str::is_empty) {
        return Err("the URL must name a user (mysql://USER@HOST:PORT)".to_owned());
    }
    if opts.ssl_opts().is_some() {
        return Err(
            "require_ssl: TLS to MySQL is not supported (connect to the local server over \
             loopback)"
                .to_owned(),
        );
    }
    Ok(())
}

/// The URL with any password replaced, for messages.
pub(crate) fn redact(url: &str) -> String {
    crate::postgres::redact(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_redacted() {
        assert_eq!(check_url("mysql://rwproxy@127.0.0.1:3306"), Ok(()));
        assert_eq!(check_url("mysql://u:pw@db/app"), Ok(()));
        assert!(check_url("postgres://u@127.0.0.1:3306").is_err());
        assert!(check_url("mysql://127.0.0.1:3306")
            .unwrap_err()
            .contains("user"));
        assert!(check_url("mysql://u@h/app?require_ssl=true")
            .unwrap_err()
            .contains("TLS"));
        assert!(check_url("mysql://u@h:notaport/app").is_err());
        assert!(check_url("mysql://u:secret@h:notaport")
            .unwrap_err()
            .contains("u:***@"));
        assert_eq!(redact("mysql://u:secret@h:3306"), "mysql://u:***@h:3306");
        assert_eq!(describe_target("mysql://u:secret@h:3307/db"), "h:3307");
        assert_eq!(describe_target("mysql://u@h"), "h:3306");
        assert_eq!(describe_target("mysql://u@h:x"), "(invalid url)");
    }
}
