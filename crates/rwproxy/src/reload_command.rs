//! `rwproxy reload [-c FILE]`: asks the node running from FILE to re-read it, through
//! `POST /reload` on the admin listener FILE names (for containers, where sending SIGHUP is
//! awkward). The file is checked here first, as `rwproxy check` does: a file the node would
//! refuse is reported without asking it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config;

/// Where `rwproxy run` reads its configuration in the container image and the service unit.
pub const DEFAULT_CONFIG: &str = "/etc/rwproxy/rwproxy.toml";

/// Exit status when the file does not validate (as `rwproxy check`).
const EXIT_CONFIG: u8 = 64;

/// Runs the command: 0 when the node applied the file; 64 when it does not validate; 1 when
/// the node refused it or could not be asked. Reasons go to stderr.
pub fn run(file: &Path, timeout: Duration) -> ExitCode {
    let config = match config::load(file) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(admin) = config.admin.listen else {
        eprintln!(
            "admin.listen is disabled in {}: send SIGHUP to the rwproxy process instead",
            file.display()
        );
        return ExitCode::FAILURE;
    };
    let url = format!("http://{}/reload", reachable(admin));
    let Some(runtime) = crate::command_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let client = rwproxy_cluster::client_builder().and_then(|builder| {
            builder
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .map_err(|e| e.to_string())
        });
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        };
        let response = match client.post(&url).send().await {
            Ok(response) => response,
            Err(error) => {
                // reqwest's own line names only the URL; the cause is in its sources.
                let mut reason = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    reason = format!("{reason}: {cause}");
                    source = cause.source();
                }
                eprintln!("cannot reach the node at {url}: {reason}");
                return ExitCode::FAILURE;
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            print!("{body}");
            ExitCode::SUCCESS
        } else {
            eprint!("refused ({status}): {body}");
            ExitCode::FAILURE
        }
    })
}

/// The address to connect to for a listener bound to `addr`: a wildcard means this host.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        assert_eq!(reachable(any), "127.0.0.1:9090".parse().unwrap());
        let any6: SocketAddr = "[::]:9090".parse().unwrap();
        assert_eq!(reachable(any6), "[::1]:9090".parse().unwrap());
        let own: SocketAddr = "10.0.0.5:9090".parse().unwrap();
        assert_eq!(reachable(own), own);
    }
}
