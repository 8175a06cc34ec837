//! Gateway settings: built-in defaults, then `gateway.toml`, then environment, then flags.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors loading or resolving the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file, or the stored token file, could not be read or written.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, or has unknown keys.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// `bind` is none of `loopback`, `lan`, `tailnet` or an IP address.
    #[error("invalid bind {0:?}: use loopback, lan, tailnet or an IP address")]
    Bind(String),
    /// `bind = "tailnet"`, but no local interface has a Tailscale address.
    #[error("no tailnet address (100.64.0.0/10 or fd7a:115c:a1e0::/48) on any local interface")]
    NoTailnet,
    /// Auth mode `none` with a bind other than `loopback`.
    #[error("auth mode \"none\" is only allowed on a loopback bind")]
    OpenNonLoopback,
    /// An auth mode this gateway does not have (a typo, or the reference's `trusted-proxy`).
    #[error("unknown auth mode {0:?}: use token, password or none")]
    AuthMode(String),
    /// Auth mode `password` and no password anywhere.
    #[error("auth mode \"password\" needs a password (--password, PINCER_GATEWAY_PASSWORD or auth.password)")]
    NoPassword,
    /// No state dir given, and none of `$PINCER_STATE_DIR`, `$XDG_STATE_HOME`, `$HOME` is set.
    #[error("cannot determine a state directory: set --state-dir or PINCER_STATE_DIR")]
    NoStateDir,
}

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// 127.0.0.1 only (default).
    Loopback,
    /// Every interface (0.0.0.0).
    Lan,
    /// The host's Tailscale address.
    Tailnet,
    /// One address.
    Ip(IpAddr),
}

impl Bind {
    /// `loopback`, `lan`, `tailnet` or an IP address.
    pub fn parse(s: &str) -> Result<Bind, ConfigError> {
        match s {
            "loopback" => Ok(Bind::Loopback),
            "lan" => Ok(Bind::Lan),
            "tailnet" => Ok(Bind::Tailnet),
            other => other
                .parse()
                .map(Bind::Ip)
                .map_err(|_| ConfigError::Bind(other.into())),
        }
    }

    /// The address to bind.
    pub fn resolve(&self) -> Result<IpAddr, ConfigError> {
        match self {
            Bind::Loopback => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Bind::Lan => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            Bind::Ip(ip) => Ok(*ip),
            Bind::Tailnet => tailnet_address().ok_or(ConfigError::NoTailnet),
        }
    }
}

pub use pincer_os::tailscale::is_tailnet;

/// The first tailnet IPv4 address configured on a local interface (from `/proc/net`).
pub fn tailnet_address() -> Option<IpAddr> {
    // /proc/net/fib_trie lists local addresses as "/32 host LOCAL" leaves.
    let trie = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
    let mut last: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+']);
        if let Ok(ip) = t.trim().parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if t.contains("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| is_tailnet(IpAddr::V4(*ip))) {
                return Some(IpAddr::V4(ip));
            }
        }
    }
    None
}

/// How clients prove they may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Shared token (default).
    Token(String),
    /// Shared password.
    Password(String),
    /// No shared secret (loopback only).
    None,
}

impl AuthMode {
    /// `token`, `password` or `none`, as `config.get`, `status` and the snapshot report it.
    pub fn name(&self) -> &'static str {
        match self {
            AuthMode::Token(_) => "token",
            AuthMode::Password(_) => "password",
            AuthMode::None => "none",
        }
    }
}

/// Limits and timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted before `hello-ok` (64 KiB).
    pub preauth_max_payload: usize,
    /// Largest frame after `hello-ok` (`policy.maxPayload`, 25 MiB) for nodes and for operators
    /// that may write (`operator.write` or `operator.admin`).
    pub max_payload: usize,
    /// Largest frame after `hello-ok` for every other operator (1 MiB): none of the methods it
    /// may call takes large params. It is the `policy.maxPayload` such a client is told.
    pub readonly_max_payload: usize,
    /// Advertised `policy.maxBufferedBytes` (50 MiB): one connection's outbound byte budget.
    pub max_buffered_bytes: usize,
    /// Outbound bytes of all connections together (128 MiB); past it a frame for a connection
    /// that already has some queued closes that connection as a slow consumer.
    pub max_buffered_bytes_total: usize,
    /// Frames queued for one connection before events are dropped or the socket is closed.
    pub outbound_queue: usize,
    /// Connect deadline after the socket opens.
    pub handshake_timeout_ms: u64,
    /// `tick` cadence.
    pub tick_interval_ms: u64,
    /// Unauthenticated sockets allowed per client IP.
    pub max_preauth_per_ip: usize,
    /// Unauthenticated sockets allowed from all addresses together.
    pub max_preauth_total: usize,
    /// Sockets held at once, authenticated or not; past it new ones get HTTP 503. The gateway
    /// raises its open-file limit to fit (`pincer_os::raise_nofile`).
    pub max_connections: usize,
    /// Failed authentications per client IP within `auth_window_ms` before a lockout.
    pub auth_max_attempts: usize,
    /// Window over which failed authentications are counted, ms.
    pub auth_window_ms: u64,
    /// How long an IP that reached `auth_max_attempts` is locked out, ms.
    pub auth_lockout_ms: u64,
    /// Failed authentications from all non-loopback addresses together within `auth_window_ms`;
    /// past it the shared secret is not compared for any of them until the window moves on
    /// (paired devices still get in with their device tokens; loopback is exempt).
    pub auth_max_failures_total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            preauth_max_payload: 64 * 1024,
            max_payload: 25 * 1024 * 1024,
            readonly_max_payload: 1024 * 1024,
            max_buffered_bytes: 50 * 1024 * 1024,
            max_buffered_bytes_total: 128 * 1024 * 1024,
            outbound_queue: 256,
            handshake_timeout_ms: 10_000,
            tick_interval_ms: 30_000,
            max_preauth_per_ip: 32,
            max_preauth_total: 256,
            max_connections: 16_000,
            auth_max_attempts: 10,
            auth_window_ms: 60_000,
            auth_lockout_ms: 300_000,
            auth_max_failures_total: 60,
        }
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub bind: Bind,
    /// TCP port for HTTP and WebSocket (default 18789).
    pub port: u16,
    /// Trust store, generated token and identities (0700).
    pub state_dir: PathBuf,
    /// How clients authenticate.
    pub auth: AuthMode,
    /// True when the token was generated and stored by the gateway itself.
    pub token_generated: bool,
    /// Limits and timers.
    pub limits: Limits,
    /// Proxies whose `X-Forwarded-For` / `X-Real-IP` name the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// Node commands added to / removed from the platform allowlists.
    pub node_allow: Vec<String>,
    /// Node commands removed from the platform allowlists (after `node_allow`).
    pub node_deny: Vec<String>,
    /// The config file this came from, if any.
    pub config_path: Option<PathBuf>,
    /// The agent runtime: `[agent]` and `[models]`.
    pub agent: pincer_agent::config::AgentConfig,
    /// `[control_ui]`: what the HTTP side of the port serves, and which browser origins may
    /// open the WebSocket.
    pub control_ui: ControlUi,
    /// `[channels]` as written (resolved when the gateway starts: tokens may come from the
    /// environment and files).
    pub channels: pincer_channels::ChannelsSection,
    /// `[tls]`: TLS on the port (off by default).
    pub tls: crate::tls::TlsConfig,
    /// `[tailscale]`: the local daemon, and Tailscale Serve in front of the gateway.
    pub tailscale: crate::tailscale::TailscaleConfig,
    /// `[auth] allow_tailscale`: an operator who reaches the gateway through its own Serve
    /// route signs in as the tailnet login Tailscale names (default: on when serving).
    pub allow_tailscale: bool,
}

/// `[control_ui]` resolved.
#[derive(Debug, Clone)]
pub struct ControlUi {
    /// Serve pages at all (default true); when false every GET is 404.
    pub enabled: bool,
    /// A static bundle on disk served instead of the embedded WebChat (e.g. the `dist/control-ui`
    /// folder of an installed `openclaw` package).
    pub root: Option<PathBuf>,
    /// Browser origins allowed besides the gateway's own (`"*"` allows any).
    pub allowed_origins: Vec<String>,
}

impl Default for ControlUi {
    fn default() -> Self {
        ControlUi {
            enabled: true,
            root: None,
            allowed_origins: vec![],
        }
    }
}

/// `[control_ui]` in `gateway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileControlUi {
    /// Serve pages (default true).
    pub enabled: Option<bool>,
    /// A static bundle directory served instead of the embedded WebChat.
    pub root: Option<PathBuf>,
    /// Extra browser origins allowed to open the WebSocket.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// The TOML file layout (`configs/gateway.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `loopback` (default), `lan`, `tailnet` or an IP address.
    pub bind: Option<String>,
    /// TCP port (default 18789).
    pub port: Option<u16>,
    /// State directory; default from the environment (see [`default_state_dir`]).
    pub state_dir: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` / `X-Real-IP` name the client.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// `[auth]`.
    #[serde(default)]
    pub auth: FileAuth,
    /// `[limits]`.
    #[serde(default)]
    pub limits: FileLimits,
    /// `[nodes]`.
    #[serde(default)]
    pub nodes: FileNodes,
    /// `[agent]`: the default model, workspace and run bounds.
    #[serde(default)]
    pub agent: pincer_agent::config::AgentSection,
    /// `[models]`: `[models.providers.<id>]`.
    #[serde(default)]
    pub models: pincer_agent::config::ModelsConfig,
    /// `[control_ui]`: the pages served on the port and the browser origins allowed.
    #[serde(default)]
    pub control_ui: FileControlUi,
    /// `[channels]`: `[channels.telegram]`.
    #[serde(default)]
    pub channels: pincer_channels::ChannelsSection,
    /// `[tls]`: `enabled`, `cert`, `key`.
    #[serde(default)]
    pub tls: FileTls,
    /// `[tailscale]`: `serve`, `serve_https`, `socket`, `cli`.
    #[serde(default)]
    pub tailscale: FileTailscale,
}

/// `[tailscale]` in `gateway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTailscale {
    /// Set up Tailscale Serve towards the gateway (default false).
    pub serve: Option<bool>,
    /// Serve HTTPS on 443 (default true); false serves plain HTTP on 80 (tailnets without
    /// HTTPS certificates, such as a headscale).
    pub serve_https: Option<bool>,
    /// The local daemon's LocalAPI socket (default `/var/run/tailscale/tailscaled.sock`).
    pub socket: Option<PathBuf>,
    /// The `tailscale` CLI that sets up Serve (default `tailscale` on `PATH`).
    pub cli: Option<PathBuf>,
}

/// `[tls]` in `gateway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// Serve `wss://` / `https://` on the port (default false).
    pub enabled: Option<bool>,
    /// PEM certificate chain; with `key`. Neither: a self-signed pair in the state dir.
    pub cert: Option<PathBuf>,
    /// PEM private key; with `cert`.
    pub key: Option<PathBuf>,
}

/// `[nodes]` in `gateway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNodes {
    /// Node commands added to the platform allowlists.
    #[serde(default)]
    pub allow_commands: Vec<String>,
    /// Node commands removed from them.
    #[serde(default)]
    pub deny_commands: Vec<String>,
}

/// `[auth]` in `gateway.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    /// `token` (default), `password` or `none` (loopback only).
    pub mode: Option<String>,
    /// Shared token; the environment and `--token` override it.
    pub token: Option<String>,
    /// Shared password; the environment and `--password` override it.
    pub password: Option<String>,
    /// Accept Tailscale Serve's identity headers, confirmed by the local daemon's whois, on
    /// the gateway's own Serve listener (default: true when `[tailscale] serve` is on).
    pub allow_tailscale: Option<bool>,
}

/// `[limits]` in `gateway.toml`; each key overrides the [`Limits`] field of the same name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Connect deadline after the socket opens, ms.
    pub handshake_timeout_ms: Option<u64>,
    /// `tick` cadence, ms (at least 10).
    pub tick_interval_ms: Option<u64>,
    /// Largest frame after `hello-ok`, bytes (at least the 64 KiB pre-auth cap).
    pub max_payload: Option<usize>,
    /// Largest frame after `hello-ok` from an operator without `operator.write` or
    /// `operator.admin`, bytes (between the pre-auth cap and `max_payload`).
    pub readonly_max_payload: Option<usize>,
    /// A connection's outbound byte budget (`policy.maxBufferedBytes`).
    pub max_buffered_bytes: Option<usize>,
    /// Outbound bytes of all connections together (at least `max_buffered_bytes`).
    pub max_buffered_bytes_total: Option<usize>,
    /// Frames queued per connection (at least 4).
    pub outbound_queue: Option<usize>,
    /// Unauthenticated sockets per client IP (at least 1).
    pub max_preauth_per_ip: Option<usize>,
    /// Unauthenticated sockets from all addresses (at least `max_preauth_per_ip`).
    pub max_preauth_total: Option<usize>,
    /// Sockets held at once (at least 1).
    pub max_connections: Option<usize>,
    /// Failed authentications per client IP before a lockout (at least 1).
    pub auth_max_attempts: Option<usize>,
    /// Window for counting failed authentications, ms.
    pub auth_window_ms: Option<u64>,
    /// Lockout of an IP past `auth_max_attempts`, ms.
    pub auth_lockout_ms: Option<u64>,
    /// Failures of all remote IPs in the window before guessing pauses (at least `auth_max_attempts`).
    pub auth_max_failures_total: Option<usize>,
}

impl FileConfig {
    /// Reads and parses `gateway.toml` at `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }
}

/// Command-line overrides (all optional).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--bind`.
    pub bind: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--token`.
    pub token: Option<String>,
    /// `--password`.
    pub password: Option<String>,
    /// `--auth`: `token`, `password` or `none`.
    pub auth_mode: Option<String>,
    /// `--config`: the `gateway.toml` to read.
    pub config: Option<PathBuf>,
    /// `--tick-interval-ms`.
    pub tick_interval_ms: Option<u64>,
    /// `--handshake-timeout-ms`.
    pub handshake_timeout_ms: Option<u64>,
    /// `--control-ui-dir`: a static bundle served instead of the embedded WebChat.
    pub control_ui_dir: Option<PathBuf>,
}

pub use pincer_os::env_first;

/// Token environment variables, in precedence order.
pub const TOKEN_ENV: [&str; 3] = [
    "PINCER_GATEWAY_TOKEN",
    "OPENCLAW_GATEWAY_TOKEN",
    "CLAWDBOT_GATEWAY_TOKEN",
];
/// Password environment variables, in precedence order.
pub const PASSWORD_ENV: [&str; 2] = ["PINCER_GATEWAY_PASSWORD", "OPENCLAW_GATEWAY_PASSWORD"];

/// The default state directory: `$PINCER_STATE_DIR`, else `$XDG_STATE_HOME/pincer`, else
/// `~/.local/state/pincer`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(d) = env_first(&["PINCER_STATE_DIR"]) {
        return Some(d.into());
    }
    if let Some(d) = env_first(&["XDG_STATE_HOME"]) {
        return Some(PathBuf::from(d).join("pincer"));
    }
    env_first(&["HOME"]).map(|h| PathBuf::from(h).join(".local/state/pincer"))
}

/// File name of the generated token inside the state dir.
pub const TOKEN_FILE: &str = "gateway-token";

impl Config {
    /// Resolves the configuration. May create the state dir and generate a token.
    pub fn resolve(o: Overrides) -> Result<Config, ConfigError> {
        Config::resolve_with(o, &|names| env_first(names))
    }

    /// [`Config::resolve`] with `env` standing for the process environment (the first
    /// non-empty value among the names): flags beat the environment, which beats the file.
    pub fn resolve_with(
        o: Overrides,
        env: &dyn Fn(&[&str]) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = match &o.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let bind = Bind::parse(
            o.bind
                .as_deref()
                .or(file.bind.as_deref())
                .unwrap_or("loopback"),
        )?;
        let port = o.port.or(file.port).unwrap_or(18789);
        let state_dir = o
            .state_dir
            .or_else(|| env(&["PINCER_STATE_DIR"]).map(PathBuf::from))
            .or(file.state_dir)
            .or_else(default_state_dir)
            .ok_or(ConfigError::NoStateDir)?;
        let mut limits = Limits::default();
        let fl = &file.limits;
        limits.handshake_timeout_ms = o
            .handshake_timeout_ms
            .or(fl.handshake_timeout_ms)
            .unwrap_or(limits.handshake_timeout_ms);
        limits.tick_interval_ms = o
            .tick_interval_ms
            .or(fl.tick_interval_ms)
            .unwrap_or(limits.tick_interval_ms)
            .max(10);
        limits.max_payload = fl
            .max_payload
            .unwrap_or(limits.max_payload)
            .max(limits.preauth_max_payload);
        limits.readonly_max_payload = fl
            .readonly_max_payload
            .unwrap_or(limits.readonly_max_payload)
            .clamp(limits.preauth_max_payload, limits.max_payload);
        limits.max_buffered_bytes = fl.max_buffered_bytes.unwrap_or(limits.max_buffered_bytes);
        limits.max_buffered_bytes_total = fl
            .max_buffered_bytes_total
            .unwrap_or(limits.max_buffered_bytes_total)
            .max(limits.max_buffered_bytes);
        limits.outbound_queue = fl.outbound_queue.unwrap_or(limits.outbound_queue).max(4);
        limits.max_preauth_per_ip = fl
            .max_preauth_per_ip
            .unwrap_or(limits.max_preauth_per_ip)
            .max(1);
        limits.max_preauth_total = fl
            .max_preauth_total
            .unwrap_or(limits.max_preauth_total)
            .max(limits.max_preauth_per_ip);
        limits.max_connections = fl.max_connections.unwrap_or(limits.max_connections).max(1);
        limits.auth_max_attempts = fl
            .auth_max_attempts
            .unwrap_or(limits.auth_max_attempts)
            .max(1);
        limits.auth_window_ms = fl.auth_window_ms.unwrap_or(limits.auth_window_ms);
        limits.auth_lockout_ms = fl.auth_lockout_ms.unwrap_or(limits.auth_lockout_ms);
        limits.auth_max_failures_total = fl
            .auth_max_failures_total
            .unwrap_or(limits.auth_max_failures_total)
            .max(limits.auth_max_attempts);

        let password = o
            .password
            .or_else(|| env(&PASSWORD_ENV))
            .or(file.auth.password);
        let token = o.token.or_else(|| env(&TOKEN_ENV)).or(file.auth.token);
        let mode = o.auth_mode.or(file.auth.mode).unwrap_or_else(|| {
            if password.is_some() && token.is_none() {
                "password".into()
            } else {
                "token".into()
            }
        });
        let mut token_generated = false;
        let auth = match mode.as_str() {
            "password" => AuthMode::Password(password.ok_or(ConfigError::NoPassword)?),
            "none" => {
                if !matches!(bind, Bind::Loopback) {
                    return Err(ConfigError::OpenNonLoopback);
                }
                AuthMode::None
            }
            "token" => match token {
                Some(t) => AuthMode::Token(t),
                None => {
                    let (t, generated) =
                        load_or_generate_token(&state_dir).map_err(|source| ConfigError::Read {
                            path: state_dir.join(TOKEN_FILE),
                            source,
                        })?;
                    token_generated = generated;
                    AuthMode::Token(t)
                }
            },
            other => return Err(ConfigError::AuthMode(other.to_owned())),
        };
        let agent =
            pincer_agent::config::AgentConfig::resolve(&file.agent, &file.models, &state_dir);
        Ok(Config {
            bind,
            port,
            state_dir,
            auth,
            token_generated,
            limits,
            trusted_proxies: file.trusted_proxies,
            node_allow: file.nodes.allow_commands,
            node_deny: file.nodes.deny_commands,
            config_path: o.config,
            agent,
            control_ui: ControlUi {
                enabled: file.control_ui.enabled.unwrap_or(true),
                root: o.control_ui_dir.or(file.control_ui.root),
                allowed_origins: file.control_ui.allowed_origins,
            },
            channels: file.channels,
            tls: crate::tls::TlsConfig {
                enabled: file.tls.enabled.unwrap_or(false),
                cert: file.tls.cert,
                key: file.tls.key,
            },
            allow_tailscale: file
                .auth
                .allow_tailscale
                .unwrap_or(file.tailscale.serve == Some(true)),
            tailscale: crate::tailscale::TailscaleConfig::from_file(file.tailscale),
        })
    }
}

/// Reads the stored token, or creates one (returns `true` when it was just created).
pub fn load_or_generate_token(state_dir: &Path) -> std::io::Result<(String, bool)> {
    let path = state_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    pincer_os::ensure_private_dir(state_dir)?;
    let t = crate::secret::new_token();
    pincer_os::write_atomic(&path, format!("{t}\n").as_bytes())?;
    Ok((t, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tailnet_ranges() {
        assert!(is_tailnet("100.64.0.1".parse().unwrap()));
        assert!(is_tailnet("100.127.255.255".parse().unwrap()));
        assert!(!is_tailnet("100.128.0.1".parse().unwrap()));
        assert!(!is_tailnet("10.0.0.1".parse().unwrap()));
        assert!(is_tailnet("fd7a:115c:a1e0::1".parse().unwrap()));
        assert!(!is_tailnet("fd7a:115c:a1e1::1".parse().unwrap()));
    }

    #[test]
    fn bind_parsing() {
        assert_eq!(Bind::parse("loopback").unwrap(), Bind::Loopback);
        assert_eq!(
            Bind::parse("192.168.1.5").unwrap(),
            Bind::Ip("192.168.1.5".parse().unwrap())
        );
        assert!(Bind::parse("everywhere").is_err());
    }

    #[test]
    fn token_is_generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("pincer-cfg-{}", std::process::id()));
        let o = Overrides {
            state_dir: Some(dir.clone()),
            ..Default::default()
        };
        let first = Config::resolve(o.clone()).unwrap();
        assert!(first.token_generated);
        let second = Config::resolve(o).unwrap();
        assert!(!second.token_generated);
        assert_eq!(first.auth, second.auth);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unknown_auth_mode_is_an_error_not_token_mode() {
        for mode in ["tokn", "trusted-proxy"] {
            let o = Overrides {
                state_dir: Some(std::env::temp_dir().join("pincer-cfg-unused")),
                auth_mode: Some(mode.into()),
                token: Some("t".into()),
                ..Default::default()
            };
            match Config::resolve_with(o, &|_| None) {
                Err(ConfigError::AuthMode(m)) => assert_eq!(m, mode),
                other => panic!("{mode}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_environment_beats_the_file_and_flags_beat_both() {
        let dir = std::env::temp_dir().join(format!("pincer-cfg-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gateway.toml");
        std::fs::write(
            &file,
            "state_dir = \"/file/state\"\n[auth]\ntoken = \"file-token\"\n",
        )
        .unwrap();
        let env = |names: &[&str]| -> Option<String> {
            match names.first().copied() {
                Some("PINCER_STATE_DIR") => Some("/env/state".into()),
                Some(n) if TOKEN_ENV.contains(&n) => Some("env-token".into()),
                _ => None,
            }
        };
        let o = Overrides {
            config: Some(file.clone()),
            ..Default::default()
        };
        let c = Config::resolve_with(o.clone(), &env).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/env/state"));
        assert_eq!(c.auth, AuthMode::Token("env-token".into()));
        let c = Config::resolve_with(o.clone(), &|_| None).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/file/state"));
        assert_eq!(c.auth, AuthMode::Token("file-token".into()));
        let c = Config::resolve_with(
            Overrides {
                state_dir: Some(dir.clone()),
                token: Some("flag".into()),
                ..o
            },
            &env,
        )
        .unwrap();
        assert_eq!(c.state_dir, dir);
        assert_eq!(c.auth, AuthMode::Token("flag".into()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn open_auth_refused_off_loopback() {
        let o = Overrides {
            bind: Some("lan".into()),
            auth_mode: Some("none".into()),
            state_dir: Some("/nonexistent".into()),
            ..Default::default()
        };
        assert!(matches!(
            Config::resolve(o),
            Err(ConfigError::OpenNonLoopback)
        ));
    }
}
