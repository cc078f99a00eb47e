//! The serde shape of the configuration file, and the pass that turns TOML text into it while
//! collecting every syntax error, type error and unknown key.
//!
//! Values whose meaning is checked later (durations, enums, addresses, URLs) stay strings here so
//! that validation can name both the key and the offending value.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_path_to_error::Segment;

use super::Problem;

/// The whole file. Every leaf is optional: defaults are applied during validation.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawConfig {
    pub node: Option<String>,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub writes: RawWrites,
    #[serde(default)]
    pub reads: RawReads,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub consistency: RawConsistency,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawProxy {
    pub listen: Option<String>,
    pub app: Option<String>,
    pub app_connect_retry: Option<DurationText>,
    pub app_max_connections: Option<usize>,
    pub app_queue_timeout: Option<DurationText>,
    pub drain_timeout: Option<DurationText>,
    pub workers: Option<usize>,
    pub max_body: Option<u64>,
    pub tls: Option<RawProxyTls>,
    pub upgrade_idle_timeout: Option<DurationText>,
    pub max_connections: Option<usize>,
    pub drain_delay: Option<DurationText>,
    pub header_timeout: Option<DurationText>,
    pub allow_underscores_in_headers: Option<bool>,
    pub body_timeout: Option<DurationText>,
    pub body_min_rate: Option<u64>,
    pub write_timeout: Option<DurationText>,
    pub title_case_headers: Option<bool>,
}

/// `[proxy.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawProxyTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawAdmin {
    pub listen: Option<String>,
    pub agent_listen: Option<String>,
    /// `admin.ui`: the operator's page on `/` and `/ui` (default true).
    pub ui: Option<bool>,
}

/// Keys of every source live side by side; only the selected source's keys are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawCluster {
    pub source: Option<String>,
    pub primary: Option<String>,
    pub mount: Option<String>,
    pub databases: Option<Vec<String>>,
    pub api: Option<String>,
    pub url: Option<String>,
    pub poll: Option<DurationText>,
    pub timeout: Option<DurationText>,
    pub secret: Option<String>,
    pub password_file: Option<String>,
    // source = "patroni"
    pub member: Option<String>,
    pub primary_from: Option<String>,
    pub members: Option<std::collections::BTreeMap<String, String>>,
    // Peer-aware health (validated in validate/peers.rs).
    pub peers: Option<Vec<String>>,
    pub peers_dns: Option<String>,
    pub peer_poll: Option<DurationText>,
    pub flavor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawWrites {
    pub mode: Option<String>,
    pub primary_url: Option<String>,
    pub primary_wait: Option<DurationText>,
    pub timeout: Option<DurationText>,
    pub connect_timeout: Option<DurationText>,
    pub ca: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub warm_connections: Option<usize>,
    pub http2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawReads {
    pub methods: Option<Vec<String>>,
    pub max_lag: Option<DurationText>,
    pub when_stale: Option<String>,
    pub route_header: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawRouting {
    pub passthrough: Option<Vec<String>>,
    pub always_forward: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawConsistency {
    pub cookie: Option<String>,
    pub header: Option<String>,
    pub wait: Option<DurationText>,
    pub on_timeout: Option<String>,
    pub cookie_max_age: Option<DurationText>,
    pub max_waiters: Option<usize>,
    pub session: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawHealth {
    pub path: Option<String>,
    pub max_lag: Option<DurationText>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub app_path: Option<String>,
    pub app_interval: Option<DurationText>,
    pub app_timeout: Option<DurationText>,
    // Peer-aware health (validated in validate/peers.rs).
    pub fail_static: Option<bool>,
    pub fail_static_agree: Option<f64>,
    pub fail_static_min_peers: Option<u32>,
    pub fail_static_max: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table")]
pub(crate) struct RawLog {
    pub format: Option<String>,
    pub access: Option<bool>,
    pub level: Option<String>,
}

/// A duration as written (`"250ms"`); parsed during validation so the error can quote it.
///
/// A bare TOML number is rejected here with a hint, since the unit is what is missing.
#[derive(Debug, Clone)]
pub(crate) struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        fn unitless<E: de::Error>(n: impl fmt::Display) -> E {
            E::custom(format!(
                "invalid duration {n} (a duration is a string with a unit, e.g. \"{n}s\")"
            ))
        }

        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, e.g. \"5s\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                Err(unitless(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                Err(unitless(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationText, E> {
                Err(unitless(v))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

/// What the first pass produced: the raw config (unless the text could not be read as TOML at
/// all), the problems found so far, and the keys whose values were dropped for a type error.
pub(crate) struct FirstPass {
    pub raw: Option<RawConfig>,
    pub problems: Vec<Problem>,
    pub bad_keys: Vec<String>,
    /// The document's top-level keys, in file order.
    pub top_level: Vec<String>,
}

/// The tables of the file; anything else under these names is a type error.
const SECTIONS: &[&str] = &[
    "proxy",
    "admin",
    "cluster",
    "writes",
    "reads",
    "routing",
    "consistency",
    "health",
    "log",
];

/// Upper bound on type errors reported before giving up, so a pathological file cannot loop.
const MAX_TYPE_ERRORS: usize = 200;

/// Parses TOML text into [`RawConfig`], collecting every problem serde can see.
///
/// `origin` names the file in syntax errors. A type error stops serde at the first bad value, so
/// the offending key is reported, removed from the document, and deserialization runs again: the
/// result names every badly typed key, and every unknown key (from the final, successful pass).
pub(crate) fn first_pass(text: &str, origin: Option<&str>) -> FirstPass {
    let mut pass = FirstPass {
        raw: None,
        problems: Vec::new(),
        bad_keys: Vec::new(),
        top_level: Vec::new(),
    };
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(err) => {
            pass.problems.push(syntax_problem(text, origin, &err));
            return pass;
        }
    };
    pass.top_level = table.keys().cloned().collect();
    // Serde would accept an array (`[[proxy]]`) for a struct and report its first element as a
    // bad field, so sections that are not tables are caught here with a clearer message.
    for section in SECTIONS {
        if let Some(value) = table.get(*section).filter(|v| !v.is_table()) {
            let message = format!("invalid type: {}, expected a table", value.type_str());
            pass.problems.push(Problem::new(*section, message));
            pass.bad_keys.push((*section).to_owned());
            table.remove(*section);
        }
    }
    for _ in 0..MAX_TYPE_ERRORS {
        let mut unknown = Vec::new();
        let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(dotted(&path));
        let de =
            serde_ignored::Deserializer::new(toml::Value::Table(table.clone()), &mut on_ignored);
        match serde_path_to_error::deserialize::<_, RawConfig>(de) {
            Ok(raw) => {
                pass.problems.extend(
                    unknown
                        .into_iter()
                        .map(|key| Problem::new(key, "unknown key")),
                );
                pass.raw = Some(raw);
                return pass;
            }
            Err(err) => {
                let segments: Vec<&Segment> = err.path().iter().collect();
                let key = display_segments(&segments);
                pass.problems
                    .push(Problem::new(key, type_message(err.inner().message())));
                // Drop the whole top-level value of the key (not just one array element).
                let map_keys: Vec<&str> = segments
                    .iter()
                    .map_while(|s| match s {
                        Segment::Map { key } => Some(key.as_str()),
                        _ => None,
                    })
                    .collect();
                if !remove_path(&mut table, &map_keys) {
                    return pass;
                }
                pass.bad_keys.push(map_keys.join("."));
            }
        }
    }
    pass
}

fn syntax_problem(text: &str, origin: Option<&str>, err: &toml::de::Error) -> Problem {
    let (line, column) = match err.span() {
        Some(span) => line_column(text, span.start),
        None => (1, 1),
    };
    let key = match origin {
        Some(file) => format!("{file}:{line}:{column}"),
        None => format!("line {line}, column {column}"),
    };
    let hint = match err.span() {
        Some(span) if follows_backslash(text, span.start) => BACKSLASH_HINT,
        _ => "",
    };
    Problem::new(
        key,
        format!("invalid TOML: {}{hint}", one_line(err.message())),
    )
}

/// Why a backslash in a glob fails to parse, and the two spellings that work (LiteFS users
/// escape glob characters, and every example uses double-quoted strings).
const BACKSLASH_HINT: &str = "; in a \"double-quoted\" TOML string a backslash starts an \
     escape: write a glob's literal character in single quotes ('/file\\?.txt') or double the \
     backslash (\"/file\\\\?.txt\")";

/// Whether the parser stopped on or just after a backslash (a bad escape sequence).
fn follows_backslash(text: &str, at: usize) -> bool {
    let bytes = text.as_bytes();
    bytes.get(at) == Some(&b'\\') || (at > 0 && bytes.get(at - 1) == Some(&b'\\'))
}

/// Problems are one line each; multi-line parser messages are joined with `; `.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A key as TOML would write it: bare when it can be, quoted otherwise (so a key holding a
/// newline or a dot cannot garble the problem line).
fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Serde's wording, with its Rust type names replaced by what a TOML user sees.
fn type_message(message: &str) -> String {
    one_line(message)
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected a sequence", "expected an array")
}

fn remove_path(table: &mut toml::Table, keys: &[&str]) -> bool {
    match keys {
        [] => false,
        [last] => table.remove(*last).is_some(),
        [first, rest @ ..] => match table.get_mut(*first) {
            Some(toml::Value::Table(inner)) => remove_path(inner, rest),
            _ => false,
        },
    }
}

/// `a.b[2].c`: the way problems name keys.
fn display_segments(segments: &[&Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&key_segment(key));
            }
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str(if out.is_empty() { "?" } else { ".?" }),
        }
    }
    if out.is_empty() {
        out.push_str("(document)");
    }
    out
}

/// serde_ignored's own Display marks `Option` layers with `?`; problems use plain dotted keys.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        Path::Map { parent, key } => {
            let parent = dotted(parent);
            if parent.is_empty() {
                key_segment(key)
            } else {
                format!("{parent}.{}", key_segment(key))
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 4), (2, 2));
        assert_eq!(line_column("x", 99), (1, 2));
    }

    #[test]
    fn odd_keys_are_quoted() {
        assert_eq!(key_segment("listen"), "listen");
        assert_eq!(key_segment("max-lag_2"), "max-lag_2");
        assert_eq!(key_segment("a.b"), "\"a.b\"");
        assert_eq!(key_segment("a\nb"), "\"a\\nb\"");
        assert_eq!(key_segment(""), "\"\"");
    }

    #[test]
    fn problems_are_single_lines() {
        let pass = first_pass("[proxy]\n\"x\\ny\" = 1\napp = \n", None);
        assert_eq!(pass.problems.len(), 1);
        assert!(
            !pass.problems[0].to_string().contains('\n'),
            "{:?}",
            pass.problems
        );
        let pass = first_pass("[proxy]\n\"x\\ny\" = 1\n", None);
        assert_eq!(pass.problems[0].to_string(), "proxy.\"x\\ny\": unknown key");
    }
}
