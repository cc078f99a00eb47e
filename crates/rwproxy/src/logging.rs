//! Log output: text (default) or JSON lines, filtered by `log.level` or `RUST_LOG`.

use std::io::IsTerminal as _;
use std::sync::Arc;

use tracing_subscriber::{reload, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`. The handle changes
/// the level later (a configuration reload); it does nothing when another subscriber was
/// installed first (tests) or `RUST_LOG` is set.
pub fn init(format: LogFormat, level: &str) -> LogLevel {
    let from_env = EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(level));
    // Colours only for a terminal: a log file or the journal gets plain lines.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // The handle's type names the formatter, so each format keeps its own behind one closure.
    let (installed, set): (bool, SetLevel) = match format {
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let set = level_setter(builder.reload_handle());
            (builder.try_init().is_ok(), set)
        }
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let set = level_setter(builder.reload_handle());
            (builder.try_init().is_ok(), set)
        }
    };
    LogLevel {
        set: (installed && !pinned).then_some(set),
    }
}

type SetLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The level setter of a subscriber whose filter `handle` swaps.
fn level_setter<S: 'static>(handle: reload::Handle<EnvFilter, S>) -> SetLevel {
    Arc::new(move |level: &str| {
        handle
            .reload(EnvFilter::new(level))
            .map_err(|e| e.to_string())
    })
}

/// Changes `log.level` of the installed subscriber.
#[derive(Clone, Default)]
pub struct LogLevel {
    /// `None`: the level is not ours to change (`RUST_LOG`, or another subscriber).
    set: Option<SetLevel>,
}

impl std::fmt::Debug for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevel")
            .field("reloadable", &self.set.is_some())
            .finish()
    }
}

impl LogLevel {
    /// Filters with `level` from now on (a no-op when the level is pinned by `RUST_LOG`).
    pub fn set(&self, level: &str) -> Result<(), String> {
        match &self.set {
            Some(set) => set(level),
            None => Ok(()),
        }
    }
}
