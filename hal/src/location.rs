//! Position from `gpsd` (default `127.0.0.1:2947`): connect, `?WATCH` for JSON reports, take the
//! first TPV with a 2D/3D fix. The last fix is cached so that a caller that accepts an age gets
//! an answer at once. A gpsd that is down is `LOCATION_UNAVAILABLE`; no fix in time is
//! `LOCATION_TIMEOUT`. Nothing here blocks forever or buffers without bound.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use gpsd_proto::{Mode, UnifiedResponse};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest gpsd report line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Why there is no position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// gpsd cannot be reached or stopped talking: `LOCATION_UNAVAILABLE`.
    #[error("gpsd unavailable at {addr}: {reason}")]
    Unavailable {
        /// gpsd's `host:port`.
        addr: String,
        /// Why: connection refused, gpsd closed the stream, …
        reason: String,
    },
    /// gpsd answered but gave no 2D/3D fix within the time (given): `LOCATION_TIMEOUT`.
    #[error("no GPS fix within {0:?}")]
    Timeout(Duration),
}

impl LocationError {
    /// The reference's error code.
    pub fn code(&self) -> &'static str {
        match self {
            LocationError::Unavailable { .. } => "LOCATION_UNAVAILABLE",
            LocationError::Timeout(_) => "LOCATION_TIMEOUT",
        }
    }
}

/// One position fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// Latitude, degrees (WGS84, north positive).
    pub lat: f64,
    /// Longitude, degrees (WGS84, east positive).
    pub lon: f64,
    /// Horizontal error estimate in metres (gpsd's `eph`, else the larger of `epx`/`epy`).
    pub accuracy_m: Option<f64>,
    /// Altitude above mean sea level, metres (gpsd's `altMSL`, else `alt`).
    pub altitude_m: Option<f64>,
    /// Ground speed, m/s.
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees from true north (gpsd's `track`).
    pub heading_deg: Option<f64>,
    /// ISO-8601 time of the fix, as gpsd reports it.
    pub time: Option<String>,
    /// A 3D fix.
    pub three_d: bool,
    received: Instant,
}

impl Fix {
    /// How old the fix is.
    pub fn age(&self) -> Duration {
        self.received.elapsed()
    }
}

/// A gpsd client with a one-fix cache.
#[derive(Debug)]
pub struct Gpsd {
    addr: String,
    last: Mutex<Option<Fix>>,
}

fn fix_from(tpv: gpsd_proto::Tpv) -> Option<Fix> {
    if matches!(tpv.mode, Mode::NoFix) {
        return None;
    }
    let (lat, lon) = (tpv.lat?, tpv.lon?);
    if !lat.is_finite() || !lon.is_finite() {
        return None;
    }
    let accuracy = tpv.eph.or_else(|| match (tpv.epx, tpv.epy) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    });
    // gpsd's error and motion figures are f32: keep the digits they carry.
    let tidy = |x: f32| (f64::from(x) * 1000.0).round() / 1000.0;
    Some(Fix {
        lat,
        lon,
        accuracy_m: accuracy.map(tidy),
        altitude_m: tpv.alt_msl.or(tpv.alt).map(tidy),
        speed_mps: tpv.speed.map(tidy),
        heading_deg: tpv.track.map(tidy),
        time: tpv.time,
        three_d: matches!(tpv.mode, Mode::Fix3d),
        received: Instant::now(),
    })
}

/// The location class: a position fix, fresh or cached. [`Gpsd`] is the Linux backend.
pub trait Locator: Send + Sync {
    /// A fix no older than `max_age` (cached) or a fresh one within `timeout`.
    fn fix(
        &self,
        timeout: Duration,
        max_age: Option<Duration>,
    ) -> impl std::future::Future<Output = Result<Fix, LocationError>> + Send;
}

impl Gpsd {
    /// A client for gpsd at `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Gpsd {
        Gpsd {
            addr: addr.into(),
            last: Mutex::new(None),
        }
    }

    /// gpsd's address, `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn cached(&self, max_age: Duration) -> Option<Fix> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().filter(|f| f.age() <= max_age).cloned()
    }

    async fn read_fix(&self) -> Result<Fix, LocationError> {
        let unavailable = |reason: String| LocationError::Unavailable {
            addr: self.addr.clone(),
            reason,
        };
        let mut stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        stream
            .write_all(b"?WATCH={\"enable\":true,\"json\":true};\n")
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut reader = BufReader::new(stream);
        let mut line = Vec::with_capacity(512);
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            if n == 0 {
                return Err(unavailable("gpsd closed the connection".into()));
            }
            if n >= MAX_LINE && line.last() != Some(&b'\n') {
                return Err(unavailable("gpsd sent an over-long report".into()));
            }
            // Reports we do not model (or that do not parse) are skipped.
            if let Ok(UnifiedResponse::Tpv(tpv)) = serde_json::from_slice::<UnifiedResponse>(&line)
            {
                if let Some(fix) = fix_from(tpv) {
                    return Ok(fix);
                }
            }
        }
    }
}

impl Locator for Gpsd {
    /// The cached fix when it is no older than `max_age`, else a fresh one from gpsd within
    /// `timeout`.
    async fn fix(
        &self,
        timeout: Duration,
        max_age: Option<Duration>,
    ) -> Result<Fix, LocationError> {
        if let Some(f) = max_age.and_then(|a| self.cached(a)) {
            return Ok(f);
        }
        let fix = tokio::time::timeout(timeout, self.read_fix())
            .await
            .map_err(|_| LocationError::Timeout(timeout))??;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(fix.clone());
        Ok(fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_daemon_is_unavailable_not_a_hang() {
        // Nothing listens on this port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let g = Gpsd::new(format!("127.0.0.1:{port}"));
        let e = g.fix(Duration::from_secs(2), None).await.unwrap_err();
        assert_eq!(e.code(), "LOCATION_UNAVAILABLE");
    }
}
