//! The keys of `cluster.source = "mysql"`.

use std::path::PathBuf;

use rwproxy_core::gtid::Flavor;

use super::super::raw::RawCluster;
use super::super::values;
use super::{millis, secs, Checker, SourceConfig};

/// Reads `cluster.url`, `password_file`, `primary`, `flavor`, `poll` and `timeout`.
pub(super) fn mysql_source(c: &mut Checker<'_>, raw: &RawCluster) -> SourceConfig {
    let url = super::database_url(
        c,
        raw,
        rwproxy_cluster::check_mysql_url,
        "required key missing (the local server's URL, e.g. \
         \"mysql://rwproxy@127.0.0.1:3306\", required when cluster.source = \"mysql\")",
    );
    let flavor = match raw.flavor.as_deref() {
        None | Some("") | Some("auto") => None,
        Some("mariadb") => Some(Flavor::MariaDb),
        Some("mysql") => Some(Flavor::MySql),
        Some(other) => {
            c.report(
                "cluster.flavor",
                format!("invalid value {other:?} (expected \"auto\", \"mariadb\" or \"mysql\")"),
            );
            None
        }
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
    SourceConfig::Mysql {
        url,
        password_file: raw
            .password_file
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        primary,
        flavor,
        poll: c.nonzero_duration("cluster.poll", &raw.poll, millis(100)),
        timeout: c.nonzero_duration("cluster.timeout", &raw.timeout, secs(1)),
    }
}
