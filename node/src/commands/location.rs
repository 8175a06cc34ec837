//! `location.get {timeoutMs=10000 (1000..60000), maxAgeMs?, desiredAccuracy?}` →
//! `{lat, lon, accuracyMeters, altitudeMeters?, speedMps?, headingDeg?, timestamp, isPrecise,
//! source:"gps"}` from gpsd, with the reference's field names and error codes.

use std::sync::Arc;
use std::time::Duration;

use pincer_hal::location::{Gpsd, Locator};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Command, CommandError, CommandFuture};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Params {
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    max_age_ms: Option<u64>,
    #[serde(default)]
    desired_accuracy: Option<String>,
}

/// `location.get`.
pub struct Get {
    gpsd: Arc<Gpsd>,
}

impl Get {
    /// The command, reading from gpsd at `addr` (`host:port`).
    pub fn new(addr: &str) -> Get {
        Get {
            gpsd: Arc::new(Gpsd::new(addr)),
        }
    }
}

/// ISO-8601 (UTC, milliseconds) for a time in ms since the epoch.
fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = pincer_os::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

impl Command for Get {
    fn run(&self, params: Value) -> CommandFuture {
        let gpsd = self.gpsd.clone();
        Box::pin(async move {
            let p: Params = serde_json::from_value(params)
                .map_err(|e| CommandError::invalid(format!("location.get: {e}")))?;
            if let Some(a) = p.desired_accuracy.as_deref() {
                if !matches!(a, "coarse" | "balanced" | "precise") {
                    return Err(CommandError::invalid(format!(
                        "location.get: desiredAccuracy {a:?} is not coarse|balanced|precise"
                    )));
                }
            }
            let timeout =
                Duration::from_millis(p.timeout_ms.unwrap_or(10_000).clamp(1_000, 60_000));
            let fix = gpsd
                .fix(timeout, p.max_age_ms.map(Duration::from_millis))
                .await
                .map_err(|e| CommandError::new(e.code(), e.to_string()))?;
            let mut v = json!({
                "lat": fix.lat,
                "lon": fix.lon,
                "accuracyMeters": fix.accuracy_m.unwrap_or(if fix.three_d { 10.0 } else { 50.0 }),
                "timestamp": fix.time.clone().unwrap_or_else(|| iso8601(crate::now_ms())),
                "isPrecise": fix.three_d,
                "source": "gps",
            });
            if let Some(a) = fix.altitude_m {
                v["altitudeMeters"] = json!(a);
            }
            if let Some(s) = fix.speed_mps {
                v["speedMps"] = json!(s);
            }
            if let Some(h) = fix.heading_deg {
                v["headingDeg"] = json!(h);
            }
            Ok(v.into())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::iso8601(1_795_492_424_458),
            "2026-11-24T03:53:44.458Z"
        );
    }
}
