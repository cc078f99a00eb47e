//! Which nodes to ask: `--node URL` (repeatable), `--dns NAME:PORT` (every A/AAAA record) and
//! `--nodes-file FILE` (one URL a line), in that order, without duplicates.

use std::path::Path;

/// Why the list of nodes could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `--dns` is not `NAME:PORT`, or the name does not resolve.
    #[error("--dns {name}: {reason}")]
    Dns {
        /// The argument.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The nodes file cannot be read.
    #[error("--nodes-file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Nothing to ask.
    #[error("no nodes: give --node URL, --dns NAME:PORT or --nodes-file FILE")]
    Empty,
}

/// `http://host:port` for a URL given with or without a scheme, without a trailing slash.
pub fn base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// Every node's base URL.
pub async fn resolve(
    nodes: &[String],
    dns: &[String],
    file: Option<&Path>,
) -> Result<Vec<String>, TargetError> {
    let mut urls: Vec<String> = nodes.iter().map(|n| base_url(n)).collect();
    for name in dns {
        let dns_error = |reason: String| TargetError::Dns {
            name: name.clone(),
            reason,
        };
        let has_port = name
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
        if !has_port {
            return Err(dns_error("expected NAME:PORT".to_owned()));
        }
        let mut addrs: Vec<_> = tokio::net::lookup_host(name.as_str())
            .await
            .map_err(|e| dns_error(e.to_string()))?
            .collect();
        // Stable order: the resolver may rotate records between refreshes.
        addrs.sort();
        urls.extend(addrs.into_iter().map(|addr| format!("http://{addr}")));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| TargetError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        urls.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(base_url),
        );
    }
    let mut seen = std::collections::HashSet::new();
    urls.retain(|u| seen.insert(u.clone()));
    if urls.is_empty() {
        return Err(TargetError::Empty);
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nodes_dns_and_file_are_merged_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nodes");
        std::fs::write(
            &file,
            "# the fleet\nhttp://127.0.0.1:9090/\n\n127.0.0.1:9091\n",
        )
        .unwrap();
        let urls = resolve(
            &["127.0.0.1:9090".to_owned()],
            &["localhost:9092".to_owned()],
            Some(&file),
        )
        .await
        .unwrap();
        assert_eq!(urls[0], "http://127.0.0.1:9090");
        assert!(urls.iter().any(|u| u.ends_with(":9092")), "{urls:?}");
        assert_eq!(urls.last().unwrap(), "http://127.0.0.1:9091");
        assert_eq!(
            urls.iter()
                .filter(|u| *u == "http://127.0.0.1:9090")
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn bad_arguments_name_the_flag() {
        let e = resolve(&[], &["no-port".to_owned()], None)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "--dns no-port: expected NAME:PORT");
        assert!(matches!(
            resolve(&[], &[], None).await,
            Err(TargetError::Empty)
        ));
        let e = resolve(&[], &[], Some(Path::new("/nonexistent/nodes")))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--nodes-file /nonexistent/nodes: "),
            "{e}"
        );
    }
}
