//! Log output: text (default) or JSON lines, filtered by `log.level` or `RUST_LOG`.

use std::io::IsTerminal as _;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some(),
        ))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
