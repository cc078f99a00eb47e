//! The configuration reload's metrics, named as Prometheus names its own
//! (`prometheus_config_last_reload_successful`, `..._success_timestamp_seconds`).

use std::time::SystemTime;

use metrics::{Counter, Gauge, Key, Label, Recorder, Unit};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::METADATA;

/// `rwproxy_config_reloads_total{result}`, the last success's time and whether the last
/// attempt succeeded.
pub(super) struct ReloadMetrics {
    success: Counter,
    failure: Counter,
    last_success: Gauge,
    last_successful: Gauge,
}

impl ReloadMetrics {
    /// Registers and describes them. Starting counts as loading the configuration: the
    /// timestamp is the start time and the last attempt a success, so an alert on
    /// `rwproxy_config_last_reload_successful == 0` holds only after a refused reload.
    pub(super) fn register(recorder: &PrometheusRecorder) -> Self {
        let reloads = |result: &'static str| {
            let key = Key::from_parts(
                "rwproxy_config_reloads_total",
                vec![Label::from_static_parts("result", result)],
            );
            recorder.register_counter(&key, &METADATA)
        };
        let gauge = |name: &'static str| recorder.register_gauge(&Key::from_name(name), &METADATA);
        recorder.describe_counter(
            "rwproxy_config_reloads_total".into(),
            None,
            "Configuration reloads (SIGHUP, rwproxy reload), by result (success, failure).".into(),
        );
        recorder.describe_gauge(
            "rwproxy_config_last_reload_success_timestamp_seconds".into(),
            Some(Unit::Seconds),
            "When the configuration was last loaded successfully (start or reload), in seconds since the Unix epoch.".into(),
        );
        recorder.describe_gauge(
            "rwproxy_config_last_reload_successful".into(),
            None,
            "1 when the last configuration reload (or the start) succeeded, 0 after a refused one."
                .into(),
        );
        let metrics = ReloadMetrics {
            success: reloads("success"),
            failure: reloads("failure"),
            last_success: gauge("rwproxy_config_last_reload_success_timestamp_seconds"),
            last_successful: gauge("rwproxy_config_last_reload_successful"),
        };
        metrics.last_success.set(unix_now());
        metrics.last_successful.set(1.0);
        metrics
    }

    /// Counts one reload attempt.
    pub(super) fn attempt(&self, applied: bool) {
        if applied {
            self.success.increment(1);
            self.last_success.set(unix_now());
            self.last_successful.set(1.0);
        } else {
            self.failure.increment(1);
            self.last_successful.set(0.0);
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
