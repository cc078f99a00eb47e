//! The one-second series of the last hour: lag, positions, and requests and refusals per
//! second by code. The per-second counts are differences of the metrics' own counters, read by
//! the sampler once a second from the rendered exposition, so the request path does nothing
//! more than the counter bumps it already does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rwproxy_core::{ErrorCode, NodeState};
use serde::Serialize;

/// How many databases' positions the series keeps (the first ones of `cluster.databases`);
/// a fixed number keeps each sample's size fixed.
pub const MAX_DATABASES: usize = 4;

/// The `code` label values of `rwproxy_requests_total`, in index order.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Lag value meaning "unknown".
const LAG_UNKNOWN: u32 = u32::MAX;

/// Counter totals at one instant: requests by status class, refusals by `rwproxy-error` code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// `rwproxy_requests_total` summed by `code` (1xx … 5xx).
    pub requests: [u64; 5],
    /// `rwproxy_errors_total` by `reason`, in [`ErrorCode::ALL`] order.
    pub refusals: [u64; ErrorCode::ALL.len()],
}

impl Totals {
    /// Reads the totals from a Prometheus text exposition (`Metrics::render`).
    pub fn from_exposition(text: &str) -> Totals {
        let mut totals = Totals::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            // Counters are whole numbers; `as` saturates and maps NaN to 0.
            let value = value as u64;
            if let Some(labels) = series.strip_prefix("rwproxy_requests_total{") {
                if let Some(i) =
                    label(labels, "code").and_then(|c| STATUS_CLASSES.iter().position(|s| *s == c))
                {
                    totals.requests[i] += value;
                }
            } else if let Some(labels) = series.strip_prefix("rwproxy_errors_total{") {
                if let Some(i) = label(labels, "reason")
                    .and_then(ErrorCode::from_code)
                    .and_then(|code| ErrorCode::ALL.iter().position(|c| *c == code))
                {
                    totals.refusals[i] += value;
                }
            }
        }
        totals
    }
}

/// The value of label `name` in `a="x",b="y"}` (values here never hold quotes).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// One second of the node's life.
#[derive(Clone, Debug)]
struct Sample {
    /// Seconds since the Unix epoch.
    at: u64,
    lag_ms: u32,
    positions: [u64; MAX_DATABASES],
    requests: [u32; 5],
    refusals: [u32; ErrorCode::ALL.len()],
}

/// The last `capacity` samples, oldest first.
#[derive(Debug)]
pub struct Series {
    samples: VecDeque<Sample>,
    capacity: usize,
    databases: Vec<Arc<str>>,
    previous: Option<Totals>,
}

impl Series {
    /// An empty series of at most `capacity` samples over `databases` (the first
    /// [`MAX_DATABASES`] are kept); the storage is allocated now.
    pub fn new(capacity: usize, databases: &[Arc<str>]) -> Self {
        let capacity = capacity.max(1);
        Series {
            samples: VecDeque::with_capacity(capacity),
            capacity,
            databases: databases.iter().take(MAX_DATABASES).cloned().collect(),
            previous: None,
        }
    }

    /// Records one sample: the state now and the counters' totals (their growth since the
    /// previous sample is what the series keeps).
    pub fn record(&mut self, at: SystemTime, state: &NodeState, totals: Totals) {
        let delta =
            |now: u64, before: u64| u32::try_from(now.saturating_sub(before)).unwrap_or(u32::MAX);
        let before = self.previous.take().unwrap_or_else(|| totals.clone());
        let second = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The sampler's ticks are a second apart give or take a few milliseconds, so two can
        // fall in one wall-clock second; the later one is the next second's sample.
        let second = match self.samples.back() {
            Some(last) if second <= last.at => last.at + 1,
            _ => second,
        };
        let mut sample = Sample {
            at: second,
            lag_ms: state.lag.map_or(LAG_UNKNOWN, |l| {
                u32::try_from(l.as_millis()).unwrap_or(LAG_UNKNOWN - 1)
            }),
            positions: [0; MAX_DATABASES],
            requests: [0; 5],
            refusals: [0; ErrorCode::ALL.len()],
        };
        for (slot, db) in sample.positions.iter_mut().zip(&self.databases) {
            *slot = state.positions.get(db).copied().unwrap_or(0);
        }
        for (i, slot) in sample.requests.iter_mut().enumerate() {
            *slot = delta(totals.requests[i], before.requests[i]);
        }
        for (i, slot) in sample.refusals.iter_mut().enumerate() {
            *slot = delta(totals.refusals[i], before.refusals[i]);
        }
        self.previous = Some(totals);
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// How many samples the series holds.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True before the first sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The series as `/series` serves it: one array per quantity (compact for a chart), codes
    /// without any request or refusal in the window left out. `since` (Unix seconds) keeps
    /// only later samples, for a client that follows.
    pub(crate) fn document(&self, since: Option<u64>, limits: LagLimits) -> SeriesDoc<'_> {
        let kept: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| since.is_none_or(|t| s.at > t))
            .collect();
        let mut requests = BTreeMap::new();
        for (i, name) in STATUS_CLASSES.iter().enumerate() {
            let column: Vec<u32> = kept.iter().map(|s| s.requests[i]).collect();
            if column.iter().any(|n| *n > 0) {
                requests.insert(*name, column);
            }
        }
        let mut refusals = BTreeMap::new();
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            let column: Vec<u32> = kept.iter().map(|s| s.refusals[i]).collect();
            if column.iter().any(|n| *n > 0) {
                refusals.insert(code.as_str(), column);
            }
        }
        let positions = self
            .databases
            .iter()
            .enumerate()
            .map(|(i, db)| (&**db, kept.iter().map(|s| s.positions[i]).collect()))
            .collect();
        SeriesDoc {
            interval_seconds: 1,
            capacity: self.capacity,
            reads_max_lag_ms: millis(limits.reads),
            health_max_lag_ms: millis(limits.health),
            t: kept.iter().map(|s| s.at).collect(),
            lag_ms: kept
                .iter()
                .map(|s| (s.lag_ms != LAG_UNKNOWN).then_some(s.lag_ms))
                .collect(),
            positions,
            requests,
            refusals,
        }
    }
}

/// The size of one stored sample (for the documented memory bound).
#[cfg(test)]
pub(crate) fn sample_size() -> usize {
    std::mem::size_of::<Sample>()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The two lag limits a chart draws lag against.
#[derive(Clone, Copy, Debug)]
pub struct LagLimits {
    /// `reads.max_lag`.
    pub reads: Duration,
    /// `health.max_lag`.
    pub health: Duration,
}

/// `/series`: columns of equal length, one entry per second.
#[derive(Serialize)]
pub(crate) struct SeriesDoc<'a> {
    interval_seconds: u32,
    capacity: usize,
    reads_max_lag_ms: u64,
    health_max_lag_ms: u64,
    /// Unix seconds of each sample.
    t: Vec<u64>,
    /// Lag in milliseconds; `null` when unknown.
    lag_ms: Vec<Option<u32>>,
    positions: BTreeMap<&'a str, Vec<u64>>,
    /// Requests answered per second, by status class.
    requests: BTreeMap<&'static str, Vec<u32>>,
    /// Responses rwproxy made itself per second, by `rwproxy-error` code.
    refusals: BTreeMap<&'static str, Vec<u32>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwproxy_core::{Positions, Role};

    const EXPOSITION: &str = "\
# TYPE rwproxy_requests_total counter
rwproxy_requests_total{class=\"read\",route=\"local\",code=\"2xx\"} 7
rwproxy_requests_total{class=\"write\",route=\"primary\",code=\"2xx\"} 3
rwproxy_requests_total{class=\"read\",route=\"rejected\",code=\"5xx\"} 2
rwproxy_errors_total{reason=\"stale\"} 2
rwproxy_errors_total{reason=\"no-such-code\"} 9
rwproxy_request_duration_seconds_count{class=\"read\",route=\"local\"} 7
";

    #[test]
    fn totals_sum_requests_by_class_and_refusals_by_code() {
        let totals = Totals::from_exposition(EXPOSITION);
        assert_eq!(totals.requests, [0, 10, 0, 0, 2]);
        let stale = ErrorCode::ALL
            .iter()
            .position(|c| *c == ErrorCode::Stale)
            .unwrap_or(usize::MAX);
        assert_eq!(totals.refusals[stale], 2);
        assert_eq!(totals.refusals.iter().sum::<u64>(), 2);
    }

    fn state(lag_ms: Option<u64>, pos: u64) -> NodeState {
        let mut positions = Positions::new();
        positions.insert("app.db".into(), pos);
        NodeState {
            role: Role::Replica,
            primary: Some("p".into()),
            positions,
            lag: lag_ms.map(Duration::from_millis),
            ready: true,
            problem: None,
            ..NodeState::default()
        }
    }

    #[test]
    fn samples_keep_per_second_growth_and_the_window() {
        let dbs: Vec<Arc<str>> = vec!["app.db".into()];
        let mut series = Series::new(2, &dbs);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut totals = Totals::default();
        series.record(t0, &state(Some(5), 1), totals.clone());
        totals.requests[1] = 40;
        totals.refusals[0] = 3;
        series.record(t0 + Duration::from_secs(1), &state(None, 2), totals.clone());
        totals.requests[1] = 50;
        series.record(t0 + Duration::from_secs(2), &state(Some(9), 3), totals);
        assert_eq!(series.len(), 2);
        let limits = LagLimits {
            reads: Duration::from_secs(5),
            health: Duration::from_secs(10),
        };
        let doc = serde_json::to_value(series.document(None, limits)).unwrap_or_default();
        assert_eq!(doc["t"], serde_json::json!([101, 102]));
        assert_eq!(doc["lag_ms"], serde_json::json!([null, 9]));
        assert_eq!(doc["positions"]["app.db"], serde_json::json!([2, 3]));
        assert_eq!(doc["requests"]["2xx"], serde_json::json!([40, 10]));
        assert_eq!(
            doc["refusals"][ErrorCode::ALL[0].as_str()],
            serde_json::json!([3, 0])
        );
        assert!(doc["requests"].get("5xx").is_none());
        assert_eq!(doc["health_max_lag_ms"], 10_000);
        let later = serde_json::to_value(series.document(Some(101), limits)).unwrap_or_default();
        assert_eq!(later["t"], serde_json::json!([102]));
        // A tick early within the same wall-clock second is the next second's sample.
        let early = t0 + Duration::from_millis(2_990);
        series.record(early, &state(Some(1), 4), Totals::default());
        let doc = serde_json::to_value(series.document(None, limits)).unwrap_or_default();
        assert_eq!(doc["t"], serde_json::json!([102, 103]));
    }
}
