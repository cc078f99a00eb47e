//! Maps the TLS keys of the configuration to the listener's and the forwarder's TLS.

use std::io;

use rwproxy_http::tls::{ServerTls, UpstreamTls};

use crate::config::Config;

fn invalid(key: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{key}: {error}"))
}

/// TLS for `proxy.listen` when `[proxy.tls]` is set; its certificate reloads on file change and
/// SIGHUP for as long as the listener runs.
pub(crate) fn server_tls(
    config: &Config,
    history: &rwproxy_http::History,
) -> io::Result<Option<ServerTls>> {
    config
        .proxy
        .tls
        .clone()
        .map(|files| {
            ServerTls::start_recording(files, Some(history.clone()))
                .map_err(|e| invalid("proxy.tls", e))
        })
        .transpose()
}

/// TLS toward the primary when `writes.primary_url` is `https` (or a `writes` TLS key is set).
pub(crate) fn upstream_tls(config: &Config) -> io::Result<Option<UpstreamTls>> {
    let writes = &config.writes;
    let wanted = writes.primary_url.starts_with("https://")
        || writes.tls.ca.is_some()
        || writes.tls.client_identity.is_some();
    if !wanted {
        return Ok(None);
    }
    UpstreamTls::new(&writes.tls)
        .map(Some)
        .map_err(|e| invalid("writes", e))
}
