//! The gateway on a tailnet: the local `tailscaled` (its LocalAPI: [`pincer_os::tailscale`]), the
//! tailnet address `bind = "tailnet"` listens on (watched, so a tailnet that comes up after
//! the gateway is still listened on: [`crate::listeners`]), Tailscale Serve in front of the
//! gateway ([`serve`]) and the sign-in by Serve's identity headers ([`ingress`]).
//!
//! **Owns:** what the gateway knows about the daemon ([`Tailscale::report`], shown by
//! `status`), the whois cache. **Must not touch:** sockets of the gateway's own port (the
//! listeners do), or auth decisions (the handshake reads [`ingress::ServeIdentity`]).

pub mod ingress;
pub mod serve;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use pincer_os::tailscale::{DaemonStatus, LocalApi, LocalApiError, Whois};
use serde_json::{json, Value};

pub use pincer_os::tailscale::DEFAULT_SOCKET;
/// How long a whois answer is reused: short, so a device removed from the tailnet stops
/// signing in within seconds.
pub const WHOIS_TTL: Duration = Duration::from_secs(5);
/// At most this many whois answers are kept (oldest dropped first).
pub const WHOIS_CACHE: usize = 64;

/// `[tailscale]` resolved.
#[derive(Debug, Clone)]
pub struct TailscaleConfig {
    /// Set up Tailscale Serve towards the gateway's own Serve listener.
    pub serve: bool,
    /// Serve HTTPS on 443; false: plain HTTP on 80.
    pub serve_https: bool,
    /// The daemon's LocalAPI socket.
    pub socket: PathBuf,
    /// The `tailscale` CLI (sets up and clears the Serve route).
    pub cli: PathBuf,
}

impl Default for TailscaleConfig {
    fn default() -> Self {
        TailscaleConfig {
            serve: false,
            serve_https: true,
            socket: PathBuf::from(DEFAULT_SOCKET),
            cli: PathBuf::from("tailscale"),
        }
    }
}

impl TailscaleConfig {
    /// From `[tailscale]` in `gateway.toml`.
    pub fn from_file(f: crate::config::FileTailscale) -> TailscaleConfig {
        let d = TailscaleConfig::default();
        TailscaleConfig {
            serve: f.serve.unwrap_or(d.serve),
            serve_https: f.serve_https.unwrap_or(d.serve_https),
            socket: f.socket.unwrap_or(d.socket),
            cli: f.cli.unwrap_or(d.cli),
        }
    }
}

/// Whois answers by address: at most [`WHOIS_CACHE`], each kept [`WHOIS_TTL`].
#[derive(Debug, Default)]
struct WhoisCache(HashMap<IpAddr, (Instant, Option<Whois>)>);

impl WhoisCache {
    /// The answer for `ip` if it is fresh at `now`.
    fn get(&self, ip: IpAddr, now: Instant) -> Option<Option<Whois>> {
        let (at, w) = self.0.get(&ip)?;
        (now.duration_since(*at) < WHOIS_TTL).then(|| w.clone())
    }

    /// Keeps `w` for `ip`: stale answers go first, then the oldest beyond the bound.
    fn put(&mut self, ip: IpAddr, now: Instant, w: Option<Whois>) {
        self.0
            .retain(|_, (at, _)| now.duration_since(*at) < WHOIS_TTL);
        if self.0.len() >= WHOIS_CACHE && !self.0.contains_key(&ip) {
            if let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| *k)
            {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(ip, (now, w));
    }
}

/// What `status` says about the tailnet.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The tailnet address listened on (`bind = "tailnet"`).
    pub listening: Option<IpAddr>,
    /// Why none is, when `bind = "tailnet"` and there is none.
    pub why_not: Option<String>,
    /// The daemon at the last look, or why it could not be asked.
    pub daemon: Option<Result<DaemonStatus, String>>,
    /// The Serve route: its URL once set up.
    pub serve_url: Option<String>,
    /// Why the Serve route is not (yet) set up.
    pub serve_error: Option<String>,
    /// The loopback listener the route points at.
    pub serve_listener: Option<std::net::SocketAddr>,
}

/// The gateway's view of the local daemon, shared by the listeners, the handshake and
/// `status`.
#[derive(Debug)]
pub struct Tailscale {
    /// The daemon's LocalAPI.
    pub api: LocalApi,
    /// The Serve route is HTTPS (`[tailscale] serve_https`).
    pub serve_https: bool,
    whois: Mutex<WhoisCache>,
    report: Mutex<Report>,
}

impl Tailscale {
    /// The daemon of `cfg`.
    pub fn new(cfg: &TailscaleConfig) -> Tailscale {
        Tailscale {
            api: LocalApi::new(cfg.socket.clone()),
            serve_https: cfg.serve_https,
            whois: Mutex::new(WhoisCache::default()),
            report: Mutex::new(Report::default()),
        }
    }

    /// Who is at `ip`, from the cache when asked within [`WHOIS_TTL`]; the daemon's errors
    /// are not cached (its "no such node" is).
    pub async fn whois(&self, ip: IpAddr) -> Result<Option<Whois>, LocalApiError> {
        if let Some(w) = self
            .whois
            .lock()
            .ok()
            .and_then(|c| c.get(ip, Instant::now()))
        {
            return Ok(w);
        }
        let w = self.api.whois(ip).await?;
        if let Ok(mut c) = self.whois.lock() {
            c.put(ip, Instant::now(), w.clone());
        }
        Ok(w)
    }

    /// Updates the report.
    pub fn update(&self, f: impl FnOnce(&mut Report)) {
        if let Ok(mut r) = self.report.lock() {
            f(&mut r);
        }
    }

    /// A copy of the report.
    pub fn report(&self) -> Report {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Asks the daemon and keeps its answer in the report.
    pub async fn refresh(&self) -> Result<DaemonStatus, String> {
        let s = self.api.status().await.map_err(|e| e.to_string());
        self.update(|r| r.daemon = Some(s.clone()));
        s
    }

    /// Why the daemon gives no tailnet address to listen on, in words for the log and
    /// `status`.
    pub fn why_no_address(status: &Result<DaemonStatus, String>) -> String {
        match status {
            Err(e) => e.clone(),
            Ok(s) if !s.running() => format!(
                "tailscaled is {} (not logged in or not up: tailscale up)",
                s.backend_state
            ),
            Ok(s) if !s.tun => "tailscaled runs in userspace mode (--tun=userspace-networking): \
                 no tailnet address on this host to listen on (use [tailscale] serve)"
                .into(),
            Ok(s) => match s.addresses.iter().find(|a| a.is_ipv4()) {
                Some(a) => format!("{a} is not on a local interface yet"),
                None => "tailscaled has no tailnet IPv4 address".into(),
            },
        }
    }

    /// `status.gateway.tailnet`.
    pub fn status_json(&self, bind_tailnet: bool, port: u16) -> Value {
        let r = self.report();
        let mut v = json!({});
        match &r.daemon {
            Some(Ok(s)) => {
                v["daemon"] = json!({
                    "running": s.running(),
                    "backendState": s.backend_state,
                    "tun": s.tun,
                    "addresses": s.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "dnsName": s.dns_name,
                    "login": s.login,
                });
            }
            Some(Err(e)) => v["daemon"] = json!({ "running": false, "error": e }),
            None => {}
        }
        if bind_tailnet {
            v["listening"] = match r.listening {
                Some(ip) => json!(std::net::SocketAddr::new(ip, port).to_string()),
                None => Value::Null,
            };
            if r.listening.is_none() {
                v["reason"] = json!(r.why_not);
            }
        }
        if let Some(l) = r.serve_listener {
            v["serve"] = json!({
                "url": r.serve_url,
                "error": r.serve_error,
                "listener": l.to_string(),
            });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whois_cache_is_bounded_and_forgets_after_its_ttl() {
        let t0 = Instant::now();
        let mut c = WhoisCache::default();
        let who = |n: u32| Whois {
            login: format!("user{n}@"),
            name: None,
            node: None,
        };
        for n in 0..200u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x6440_0000 + n));
            c.put(ip, t0 + Duration::from_millis(n as u64), Some(who(n)));
            assert!(c.0.len() <= WHOIS_CACHE);
        }
        let newest = IpAddr::V4(std::net::Ipv4Addr::from(0x6440_0000 + 199));
        let oldest = IpAddr::V4(std::net::Ipv4Addr::from(0x6440_0000));
        let at = t0 + Duration::from_millis(300);
        assert_eq!(c.get(newest, at), Some(Some(who(199))));
        assert_eq!(
            c.get(oldest, at),
            None,
            "the oldest was dropped for the bound"
        );
        // A known "no such node" is kept like an answer; past the TTL nothing is.
        let gone = IpAddr::V4(std::net::Ipv4Addr::new(100, 64, 9, 9));
        c.put(gone, at, None);
        assert_eq!(c.get(gone, at), Some(None));
        assert_eq!(c.get(gone, at + WHOIS_TTL), None);
        assert_eq!(c.get(newest, at + WHOIS_TTL), None);
    }
}
