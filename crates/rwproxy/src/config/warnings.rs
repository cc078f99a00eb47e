//! Settings that are valid but likely wrong: `rwproxy check` prints them on stderr and still
//! succeeds, `rwproxy run` logs them at start-up.

use std::time::Duration;

use super::{Config, Problem, SourceConfig};

/// Below this, a lag threshold makes a healthy, idle LiteFS replica flap: LiteFS heartbeats
/// once a second, so an idle replica's `.lag` is a saw-tooth from 0 to about 1000 ms.
pub const LITEFS_MIN_MAX_LAG: Duration = Duration::from_secs(2);

/// Every warning for `config`, each naming its key.
pub fn warnings(config: &Config) -> Vec<Problem> {
    let mut warnings = Vec::new();
    if matches!(config.cluster.source, SourceConfig::Litefs { .. }) {
        for (key, value) in [
            ("reads.max_lag", config.reads.max_lag),
            ("health.max_lag", config.health.max_lag),
        ] {
            if value < LITEFS_MIN_MAX_LAG {
                warnings.push(Problem::new(
                    key,
                    format!(
                        "{} is under 2s: LiteFS heartbeats once a second, so an idle replica's \
                         lag runs from 0 to about 1s and a healthy replica would flap; use 2s \
                         or more",
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(source: &str, reads: &str, health: &str) -> Config {
        let text = format!(
            "[proxy]\napp = \"http://127.0.0.1:8081\"\n[cluster]\nsource = \"{source}\"\n\
             primary = \"a\"\nmount = \"/litefs\"\n[reads]\nmax_lag = \"{reads}\"\n\
             [health]\nmax_lag = \"{health}\"\n"
        );
        super::super::parse(&text).unwrap()
    }

    #[test]
    fn litefs_lag_thresholds_under_two_seconds_are_warned_about() {
        let found = warnings(&config("litefs", "500ms", "1s"));
        let keys: Vec<&str> = found.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["reads.max_lag", "health.max_lag"]);
        assert!(
            found[0]
                .message
                .starts_with("500ms is under 2s: LiteFS heartbeats"),
            "{}",
            found[0]
        );
        assert!(warnings(&config("litefs", "2s", "10s")).is_empty());
    }

    #[test]
    fn other_sources_are_not_warned_about() {
        assert!(warnings(&config("static", "100ms", "100ms")).is_empty());
    }
}
