//! The listener's certificate, swapped in place when its files change or on SIGHUP.
//!
//! New connections get the new certificate; open connections keep the one they started with.
//! A pair that cannot be used (unreadable, half written, key and certificate mismatched) is
//! logged and the previous pair stays in service. Either outcome is also a `tls-reloaded`
//! event in the node's history when one is given (a failure once per distinct error, like its
//! log line).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{certified_key, read, TlsError};
use crate::history::{EventKind, Happening};
use crate::History;

/// How often the certificate and key files are checked for changes.
const POLL: Duration = Duration::from_secs(2);

/// Resolves every handshake to the current certificate.
#[derive(Debug)]
pub(super) struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
    // What the last reload attempt read and what it logged, so an unchanged file is not parsed
    // again and a lasting problem is logged once.
    seen: Mutex<Seen>,
    /// Where reloads are recorded (`tls-reloaded` events), if anywhere.
    history: Option<History>,
}

#[derive(Debug, Default)]
struct Seen {
    files: Option<(Vec<u8>, Vec<u8>)>,
    error: Option<String>,
}

impl ReloadingCert {
    /// Loads the pair; fails when it cannot be used. Reloads are recorded in `history`.
    pub(super) fn load(
        cert: &Path,
        key: &Path,
        history: Option<History>,
    ) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let loaded = certified_key(cert, &cert_pem, key, &key_pem)?;
        Ok(ReloadingCert {
            current: RwLock::new(Arc::new(loaded)),
            seen: Mutex::new(Seen {
                files: Some((cert_pem, key_pem)),
                error: None,
            }),
            history,
        })
    }

    /// Reads the files and swaps the pair in when they changed (or always, when `forced`).
    fn reload(&self, cert: &Path, key: &Path, forced: bool) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let attempt = read(cert).and_then(|c| read(key).map(|k| (c, k)));
        let result = match attempt {
            Ok(files) => {
                if !forced && seen.files.as_ref() == Some(&files) {
                    return;
                }
                let result = certified_key(cert, &files.0, key, &files.1);
                seen.files = Some(files);
                result
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
                seen.error = None;
                tracing::info!(cert = %cert.display(), key = %key.display(), "TLS certificate reloaded");
                self.record(Happening::new(EventKind::TlsReloaded));
            }
            Err(error) => {
                let message = error.to_string();
                if forced || seen.error.as_deref() != Some(message.as_str()) {
                    tracing::error!(error = %message, "TLS certificate not reloaded; keeping the previous one");
                    self.record(Happening::new(EventKind::TlsReloaded).message(&format!(
                        "not reloaded, the previous certificate stays: {message}"
                    )));
                }
                seen.error = Some(message);
            }
        }
    }
}

impl ReloadingCert {
    fn record(&self, what: Happening) {
        if let Some(history) = &self.history {
            history.record(what);
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Checks the files every [`POLL`] and on SIGHUP, until `resolver` is dropped.
pub(super) fn spawn_watch(resolver: Weak<ReloadingCert>, cert: PathBuf, key: PathBuf) {
    tokio::spawn(async move {
        let mut hangup = Hangup::new();
        loop {
            let forced = tokio::select! {
                () = tokio::time::sleep(POLL) => false,
                () = hangup.recv() => true,
            };
            let Some(resolver) = resolver.upgrade() else {
                return;
            };
            // Reading two small files; off the runtime's threads all the same.
            let (c, k) = (cert.clone(), key.clone());
            let _ = tokio::task::spawn_blocking(move || resolver.reload(&c, &k, forced)).await;
        }
    });
}

/// SIGHUP where there is one; a future that never completes elsewhere.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = match signal(SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGHUP; TLS files are still polled");
                    None
                }
            };
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            if signal.recv().await.is_some() {
                return;
            }
            self.signal = None;
        }
        std::future::pending::<()>().await
    }
}
