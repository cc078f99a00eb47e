//! The keys of `cluster.source = "patroni"`: Patroni's API, this node's member name, the rule
//! that names the leader, and the PostgreSQL keys shared with `source = "postgres"`.

use http::Uri;
use rwproxy_cluster::{MemberField, MemberNaming};

use super::super::raw::RawCluster;
use super::super::values::{self, parse_choice};
use super::super::SourceConfig;
use super::{millis, postgres_source, secs, Checker};

/// Validates the Patroni source's keys.
pub(super) fn source(c: &mut Checker<'_>, raw: &RawCluster) -> SourceConfig {
    let api = match raw.api.as_deref() {
        Some(text) => c.value(
            "cluster.api",
            Some(text),
            |t| values::parse_origin(t, &["http", "https"]),
            Uri::from_static("http://127.0.0.1:8008"),
        ),
        None => {
            c.required(
                "cluster.api",
                "required key missing (this node's Patroni REST API, e.g. \
                 \"http://127.0.0.1:8008\", required when cluster.source = \"patroni\")",
            );
            Uri::from_static("http://127.0.0.1:8008")
        }
    };
    if raw.primary.as_deref().is_some_and(|p| !p.is_empty()) {
        c.report(
            "cluster.primary",
            "not used with cluster.source = \"patroni\": Patroni's leader names the primary \
             (see cluster.primary_from and [cluster.members])",
        );
    }
    let member = raw.member.as_deref().map(|name| {
        if let Err(message) = values::check_node_name(name) {
            c.report("cluster.member", message);
        }
        name.to_owned()
    });
    let field = c.value(
        "cluster.primary_from",
        raw.primary_from.as_deref(),
        |t| {
            parse_choice(
                t,
                &[("host", MemberField::Host), ("name", MemberField::Name)],
            )
        },
        MemberField::Host,
    );
    let table = raw.members.clone().unwrap_or_default();
    for (name, address) in &table {
        if let Err(message) = values::check_node_name(address) {
            c.report(&format!("cluster.members.{name}"), message);
        }
    }
    // The PostgreSQL keys are the postgres source's, checked by its code.
    let (url, password_file, poll, timeout) = match raw.url {
        None => {
            c.required(
                "cluster.url",
                "required key missing (this node's PostgreSQL URL, e.g. \
                 \"postgres://rwproxy@127.0.0.1:5432/postgres\", required when \
                 cluster.source = \"patroni\")",
            );
            let poll = c.nonzero_duration("cluster.poll", &raw.poll, millis(100));
            let timeout = c.nonzero_duration("cluster.timeout", &raw.timeout, secs(1));
            (String::new(), None, poll, timeout)
        }
        Some(_) => {
            // `cluster.primary` was refused above, so the copy leaves it out.
            match postgres_source(c, &raw_copy(raw)) {
                SourceConfig::Postgres {
                    url,
                    password_file,
                    poll,
                    timeout,
                    ..
                } => (url, password_file, poll, timeout),
                _ => (String::new(), None, millis(100), secs(1)),
            }
        }
    };
    SourceConfig::Patroni {
        api,
        member,
        naming: MemberNaming { field, table },
        url,
        password_file,
        poll,
        timeout,
    }
}

/// The keys the postgres source reads (`RawCluster` is not `Clone`).
fn raw_copy(raw: &RawCluster) -> RawCluster {
    RawCluster {
        url: raw.url.clone(),
        password_file: raw.password_file.clone(),
        poll: raw.poll.clone(),
        timeout: raw.timeout.clone(),
        ..RawCluster::default()
    }
}
