//! The systemd notification protocol (`sd_notify(3)`) without libsystemd: one datagram per
//! state change to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an
//! abstract socket). Used for `Type=notify` (`READY=1` once serving, `STOPPING=1` on shutdown)
//! and `WatchdogSec=` (`WATCHDOG=1` at half of `$WATCHDOG_USEC`, sent from the event loop so a
//! hung runtime stops the pings and systemd restarts the service).
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call is a no-op.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A `$NOTIFY_SOCKET` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The value (given) is neither an absolute path nor `@name`.
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute path nor an abstract @name")]
    BadAddress(String),
    /// The address could not be built, or the datagram not sent.
    #[error("NOTIFY_SOCKET {addr:?}: {source}")]
    Io {
        /// `$NOTIFY_SOCKET` as given.
        addr: String,
        /// What the OS said.
        source: io::Error,
    },
}

/// Where systemd listens for this service's notifications.
#[derive(Clone, Debug)]
pub struct Notifier {
    addr: SocketAddr,
    name: String,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, `Ok(None)` when the variable is unset or empty
    /// (not started by systemd, or not `Type=notify`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(v) if !v.is_empty() => Notifier::at(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for `addr`: an absolute socket path, or `@name` for an abstract socket.
    pub fn at(addr: &str) -> Result<Notifier, NotifyError> {
        let io_err = |source| NotifyError::Io {
            addr: addr.to_owned(),
            source,
        };
        let sock_addr = if let Some(name) = addr.strip_prefix('@') {
            abstract_addr(name.as_bytes()).map_err(io_err)?
        } else if addr.starts_with('/') {
            SocketAddr::from_pathname(addr).map_err(io_err)?
        } else {
            return Err(NotifyError::BadAddress(addr.to_owned()));
        };
        Ok(Notifier {
            addr: sock_addr,
            name: addr.to_owned(),
        })
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments) as one datagram.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        let io_err = |source| NotifyError::Io {
            addr: self.name.clone(),
            source,
        };
        let sock = UnixDatagram::unbound().map_err(io_err)?;
        sock.send_to_addr(state.as_bytes(), &self.addr)
            .map_err(io_err)?;
        Ok(())
    }

    /// `READY=1` plus a one-line `STATUS=` for `systemctl status`.
    pub fn ready(&self, status: &str) {
        self.best_effort(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.best_effort("STOPPING=1");
    }

    /// `WATCHDOG=1`: still alive.
    pub fn watchdog(&self) {
        self.best_effort("WATCHDOG=1");
    }

    /// A lost notification must not stop the service: log it and go on.
    fn best_effort(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::warn!("systemd notification failed: {e}");
        }
    }
}

/// Sends `WATCHDOG=1` every [`watchdog_interval`] from a task on the caller's tokio runtime:
/// if that runtime's loop hangs, the pings stop and systemd restarts the service
/// (`WatchdogSec=`). Does nothing when systemd asked for no watchdog.
pub fn spawn_watchdog(n: Notifier) {
    if let Some(every) = watchdog_interval() {
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                t.tick().await;
                n.watchdog();
            }
        });
    }
}

/// The notifier for `$NOTIFY_SOCKET`, if any. A bad value is logged and treated as absent.
pub fn systemd() -> Option<Notifier> {
    Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!("systemd notifications off: {e}");
        None
    })
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when that is set for this process
/// (`$WATCHDOG_PID` unset or equal to our pid). `None` without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] on explicit values.
pub fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets are Linux-only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_states_to_a_socket_path() {
        let dir = std::env::temp_dir().join(format!("pincer-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::at(path.to_str().unwrap()).unwrap();
        n.ready("listening on ws://127.0.0.1:1\nsecond line");
        assert_eq!(
            recv(&server),
            "READY=1\nSTATUS=listening on ws://127.0.0.1:1 second line"
        );
        n.watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.stopping();
        assert_eq!(recv(&server), "STOPPING=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pincer-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::at(&format!("@{name}"))
            .unwrap()
            .send("READY=1")
            .unwrap();
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn rejects_relative_addresses_and_reports_a_missing_listener() {
        assert!(matches!(
            Notifier::at("relative/sock"),
            Err(NotifyError::BadAddress(_))
        ));
        let n = Notifier::at("/nonexistent/pincer/notify.sock").unwrap();
        assert!(matches!(n.send("READY=1"), Err(NotifyError::Io { .. })));
    }

    #[test]
    fn watchdog_runs_at_half_the_timeout_for_this_pid_only() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }
}
