//! Log output: text (default) or JSON lines, filtered by `log.level` or `RUST_LOG`.

use std::io::IsTerminal as _;

use std::sync::Arc;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{reload, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`. The handle changes
/// the level later (a configuration reload); it does nothing when another subscriber was
/// installed first (tests) or `RUST_LOG` is set.
pub fn init(format: LogFormat, level: &str) -> LogLevel {
    let from_env = EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(directives(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some(),
        ))
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
            .reload(EnvFilter::new(directives(level)))
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

/// Whether text logs carry colour codes: only on a terminal (a file or a log collector would
/// keep the escapes as text), and never with `NO_COLOR` set (no-color.org), as `rwproxy status`.
fn colour(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, false));
        assert!(!colour(false, false));
        assert!(!colour(true, true));
        assert!(!colour(false, true));
    }
}

// `log.level` speaks of rwproxy: a bare level (`"debug"`) applies to rwproxy's own targets,
// every other crate (the HTTP client's connection pool, TLS, ...) stays at `warn` unless a
// directive names it (`"debug,hyper_util=debug"`). `RUST_LOG`, when set, replaces the whole
// filter with its usual meaning.

/// The level other crates log at unless `log.level` names them.
const THIRD_PARTY_LEVEL: LevelFilter = LevelFilter::WARN;

/// The target prefix of every rwproxy crate (EnvFilter matches targets by prefix, so this one
/// covers `rwproxy_http`, `rwproxy_cluster`, `rwproxy_core` and `rwproxy::access` too).
const OWN_TARGET: &str = "rwproxy";

/// The EnvFilter directives for `log.level`: each bare level becomes rwproxy's own, other
/// crates get [`THIRD_PARTY_LEVEL`] (or less, when rwproxy's level is quieter still), and
/// `target=level` directives pass through unchanged, so a named crate gets what it asks for.
pub fn directives(level: &str) -> String {
    let mut own: Option<LevelFilter> = None;
    let mut named = Vec::new();
    for part in level.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<LevelFilter>() {
            Ok(bare) if !part.contains('=') => own = Some(bare),
            _ => named.push(part),
        }
    }
    let own = own.unwrap_or(LevelFilter::INFO);
    // LevelFilter orders by verbosity (OFF < ERROR < WARN ...): the quieter of the two.
    let others = own.min(THIRD_PARTY_LEVEL);
    let mut out = others.to_string();
    // A directive for rwproxy's own target wins over the bare level.
    if !named
        .iter()
        .any(|d| d.split('=').next() == Some(OWN_TARGET))
    {
        out.push_str(&format!(",{OWN_TARGET}={own}"));
    }
    for directive in named {
        out.push(',');
        out.push_str(directive);
    }
    out
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn a_bare_level_is_rwproxys_own_and_other_crates_stay_at_warn() {
        assert_eq!(directives("debug"), "warn,rwproxy=debug");
        assert_eq!(directives("trace"), "warn,rwproxy=trace");
        assert_eq!(directives("info"), "warn,rwproxy=info");
        assert_eq!(directives("warn"), "warn,rwproxy=warn");
    }

    #[test]
    fn a_quieter_level_quietens_other_crates_too() {
        assert_eq!(directives("error"), "error,rwproxy=error");
        assert_eq!(directives("off"), "off,rwproxy=off");
    }

    #[test]
    fn named_targets_pass_through_after_the_defaults() {
        assert_eq!(
            directives("debug,hyper_util=debug"),
            "warn,rwproxy=debug,hyper_util=debug"
        );
        // The old documented form keeps working: rwproxy at debug, the rest at warn.
        assert_eq!(directives("rwproxy=debug,info"), "warn,rwproxy=debug");
        // Only targets: rwproxy keeps info.
        assert_eq!(directives("h2=trace"), "warn,rwproxy=info,h2=trace");
    }

    #[test]
    fn every_result_is_a_valid_filter() {
        for level in [
            "debug",
            "error",
            "debug,hyper_util=debug",
            "rwproxy_cluster=trace",
        ] {
            assert!(EnvFilter::try_new(directives(level)).is_ok(), "{level}");
        }
    }
}
