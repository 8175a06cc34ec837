//! Node settings: built-in defaults, then `node.toml`, then environment, then flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the node's configuration cannot be used; the node does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
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
    /// No state dir given, and none of `$PINCER_STATE_DIR`, `$XDG_STATE_HOME`, `$HOME` is set.
    #[error("cannot determine a state directory: set --state-dir or PINCER_STATE_DIR")]
    NoStateDir,
    /// A capability class (first) this build lacks (second: the ones it has).
    #[error("unknown capability {0:?} (this build has: {1})")]
    UnknownCap(String, String),
    /// The gateway URL is not `ws://` or `wss://`.
    #[error("gateway URL must start with ws:// or wss://: {0}")]
    Url(String),
    /// The setup code is empty.
    #[error("setup code is not valid: {0}")]
    SetupCode(String),
    /// A TLS pin was given for a `ws://` URL (given).
    #[error("a TLS fingerprint needs a wss:// gateway URL (not {0})")]
    PinNeedsWss(String),
    /// The TLS pin is not 64 hex digits (after dropping a `sha256:` prefix and separators).
    #[error("TLS fingerprint {0:?} is not a SHA-256 (64 hex digits)")]
    Pin(String),
}

/// `node.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Gateway URL, `ws://HOST:PORT` or `wss://HOST:PORT`.
    pub gateway: Option<String>,
    /// Shared gateway token.
    pub token: Option<String>,
    /// One-time setup code (or its short form, or a raw bootstrap token).
    pub setup_code: Option<String>,
    /// Capability classes to serve, e.g. `["system", "camera"]`.
    pub caps: Option<Vec<String>>,
    /// Display name (`client.displayName`); default: the host name.
    pub name: Option<String>,
    /// Where the identity, device token and exec policy live.
    pub state_dir: Option<PathBuf>,
    /// SHA-256 of the gateway's TLS certificate to pin (`wss://` only).
    pub tls_fingerprint: Option<String>,
    /// gpsd's `host:port` for `location.get`.
    pub gpsd: Option<String>,
}

impl FileConfig {
    /// Reads and parses `node.toml` at `path`.
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

/// Command-line values (all optional).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--gateway`.
    pub gateway: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--setup-code`.
    pub setup_code: Option<String>,
    /// `--caps`, comma separated.
    pub caps: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--tls-fingerprint`.
    pub tls_fingerprint: Option<String>,
    /// `--gpsd`.
    pub gpsd: Option<String>,
    /// `--config`: the `node.toml` to read.
    pub config: Option<PathBuf>,
}

/// How the node proves itself on first contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A shared gateway token.
    Token(String),
    /// A one-time setup code (`auth.bootstrapToken`).
    SetupCode(String),
    /// Only the stored device token (or nothing, on a gateway with auth "none").
    None,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Gateway URL (default `ws://127.0.0.1:18789`, or the setup code's URL).
    pub gateway: String,
    /// What the node authenticates with on first contact.
    pub credential: Credential,
    /// Capability classes to serve, each compiled into this build.
    pub caps: Vec<String>,
    /// Display name (`client.displayName`).
    pub name: String,
    /// Where the identity, device token and exec policy live.
    pub state_dir: PathBuf,
    /// The gateway certificate's SHA-256 pin, when set.
    pub tls_fingerprint: Option<String>,
    /// gpsd's `host:port` (default `127.0.0.1:2947`).
    pub gpsd: String,
}

impl NodeConfig {
    /// What the command classes need.
    pub fn setup(&self) -> crate::commands::Setup {
        crate::commands::Setup {
            state_dir: self.state_dir.clone(),
            gpsd: self.gpsd.clone(),
        }
    }
}

use pincer_os::env_first;

/// `$PINCER_STATE_DIR`, else `$XDG_STATE_HOME/pincer-node`, else `~/.local/state/pincer-node`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(d) = env_first(&["PINCER_STATE_DIR"]) {
        return Some(d.into());
    }
    if let Some(d) = env_first(&["XDG_STATE_HOME"]) {
        return Some(PathBuf::from(d).join("pincer-node"));
    }
    env_first(&["HOME"]).map(|h| PathBuf::from(h).join(".local/state/pincer-node"))
}

/// A setup code in the reference's form (base64url of `{"url","bootstrapToken"}`) gives both
/// the gateway URL and the token; a short code (`ABCD-EFGH`) or raw token is used as it is.
pub fn parse_setup_code(code: &str) -> (Option<String>, String) {
    let code = code.trim();
    let mut buf = vec![0u8; code.len()];
    if let Ok(n) = pincer_protocol::base64url::decode_into(code, &mut buf) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&buf[..n]) {
            if let Some(t) = v["bootstrapToken"].as_str() {
                return (v["url"].as_str().map(str::to_owned), t.to_owned());
            }
        }
    }
    (None, code.to_owned())
}

impl NodeConfig {
    /// Loads `o.config` (when set) and resolves it with the flags: [`NodeConfig::from_file`].
    pub fn resolve(o: Overrides, available_caps: &[&str]) -> Result<NodeConfig, ConfigError> {
        let file = match &o.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        NodeConfig::from_file(file, o, available_caps)
    }

    /// Defaults, then `file`, then environment, then flags; every check the node makes before
    /// it starts (gateway URL, setup code, caps against `available_caps`, the TLS pin).
    pub fn from_file(
        file: FileConfig,
        o: Overrides,
        available_caps: &[&str],
    ) -> Result<NodeConfig, ConfigError> {
        NodeConfig::from_file_with(file, o, available_caps, &|names| env_first(names))
    }

    /// [`NodeConfig::from_file`] with `env` standing for the process environment (the first
    /// non-empty value among the names). Flags win over the environment, the environment over
    /// the file: a `--setup-code` beats a token in `PINCER_GATEWAY_TOKEN`, which beats the
    /// file's token and setup code; `PINCER_STATE_DIR` beats the file's `state_dir`.
    pub fn from_file_with(
        file: FileConfig,
        o: Overrides,
        available_caps: &[&str],
        env: &dyn Fn(&[&str]) -> Option<String>,
    ) -> Result<NodeConfig, ConfigError> {
        let state_dir = o
            .state_dir
            .or_else(|| env(&["PINCER_STATE_DIR"]).map(PathBuf::from))
            .or(file.state_dir)
            .or_else(default_state_dir)
            .ok_or(ConfigError::NoStateDir)?;
        let setup_flag = o.setup_code.is_some();
        let setup = o.setup_code.or(file.setup_code);
        let (setup_url, setup_token) = match setup.as_deref() {
            Some(c) => {
                let (u, t) = parse_setup_code(c);
                if t.is_empty() {
                    return Err(ConfigError::SetupCode("empty".into()));
                }
                (u, Some(t))
            }
            None => (None, None),
        };
        let gateway = o
            .gateway
            .or(file.gateway)
            .or(setup_url)
            .unwrap_or_else(|| "ws://127.0.0.1:18789".into());
        if !(gateway.starts_with("ws://") || gateway.starts_with("wss://")) {
            return Err(ConfigError::Url(gateway));
        }
        let env_token = || env(&["PINCER_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN"]);
        let credential = match (o.token, setup_token) {
            (Some(t), _) => Credential::Token(t),
            (None, Some(s)) if setup_flag => Credential::SetupCode(s),
            (None, setup) => match (env_token().or(file.token), setup) {
                (Some(t), _) => Credential::Token(t),
                (None, Some(s)) => Credential::SetupCode(s),
                (None, None) => Credential::None,
            },
        };
        let caps: Vec<String> = match o.caps {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => file.caps.unwrap_or_default(),
        };
        for c in &caps {
            if !available_caps.contains(&c.as_str()) {
                return Err(ConfigError::UnknownCap(
                    c.clone(),
                    available_caps.join(", "),
                ));
            }
        }
        let tls_fingerprint = o.tls_fingerprint.or(file.tls_fingerprint);
        if let Some(pin) = &tls_fingerprint {
            if !gateway.starts_with("wss://") {
                return Err(ConfigError::PinNeedsWss(gateway));
            }
            if pincer_client::pin::normalize_pin(pin).is_none() {
                return Err(ConfigError::Pin(pin.clone()));
            }
        }
        Ok(NodeConfig {
            gateway,
            credential,
            caps,
            name: o.name.or(file.name).unwrap_or_else(crate::board::hostname),
            state_dir,
            tls_fingerprint,
            gpsd: o
                .gpsd
                .or(file.gpsd)
                .unwrap_or_else(|| "127.0.0.1:2947".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let env = |names: &[&str]| -> Option<String> {
            match names.first().copied() {
                Some("PINCER_GATEWAY_TOKEN") => Some("env-token".into()),
                Some("PINCER_STATE_DIR") => Some("/env/state".into()),
                _ => None,
            }
        };
        let file = || FileConfig {
            token: Some("file-token".into()),
            state_dir: Some("/file/state".into()),
            ..FileConfig::default()
        };
        let with = |o: Overrides| NodeConfig::from_file_with(file(), o, &[], &env).unwrap();
        // a setup code given as a flag is used, not the token in the environment
        let c = with(Overrides {
            setup_code: Some("ABCD-EFGH".into()),
            ..Overrides::default()
        });
        assert_eq!(c.credential, Credential::SetupCode("ABCD-EFGH".into()));
        // without flags the environment's token beats the file's
        let c = with(Overrides::default());
        assert_eq!(c.credential, Credential::Token("env-token".into()));
        assert_eq!(c.state_dir, PathBuf::from("/env/state"));
        // a token flag beats everything; a state-dir flag too
        let c = with(Overrides {
            token: Some("flag".into()),
            setup_code: Some("ABCD-EFGH".into()),
            state_dir: Some("/flag".into()),
            ..Overrides::default()
        });
        assert_eq!(c.credential, Credential::Token("flag".into()));
        assert_eq!(c.state_dir, PathBuf::from("/flag"));
        // nothing in the environment: the file's
        let c = NodeConfig::from_file_with(file(), Overrides::default(), &[], &|_| None).unwrap();
        assert_eq!(c.credential, Credential::Token("file-token".into()));
        assert_eq!(c.state_dir, PathBuf::from("/file/state"));
    }

    use super::*;

    #[test]
    fn setup_code_forms() {
        let json = pincer_protocol::base64url::encode(
            br#"{"url":"ws://10.0.0.2:18789","bootstrapToken":"abc"}"#,
        );
        assert_eq!(
            parse_setup_code(&json),
            (Some("ws://10.0.0.2:18789".into()), "abc".into())
        );
        assert_eq!(parse_setup_code("ABCD-EFGH"), (None, "ABCD-EFGH".into()));
    }

    #[test]
    fn flags_win_and_caps_are_checked() {
        let o = Overrides {
            state_dir: Some("/tmp/x".into()),
            caps: Some("system".into()),
            token: Some("t".into()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(o.clone(), &["system"]).unwrap();
        assert_eq!(c.credential, Credential::Token("t".into()));
        assert!(matches!(
            NodeConfig::resolve(o, &[]),
            Err(ConfigError::UnknownCap(..))
        ));
    }
}

#[cfg(test)]
mod pin {
    use super::*;

    #[test]
    fn a_pin_needs_wss_and_a_sha256() {
        let file = |gateway: &str, pin: &str| FileConfig {
            gateway: Some(gateway.into()),
            tls_fingerprint: Some(pin.into()),
            state_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let good = format!("sha256:{}", "ab".repeat(32));
        let r = |f| NodeConfig::from_file(f, Overrides::default(), &[]);
        assert!(r(file("wss://gw:1", &good)).is_ok());
        assert!(matches!(
            r(file("ws://gw:1", &good)),
            Err(ConfigError::PinNeedsWss(_))
        ));
        #[cfg(feature = "tls")]
        assert!(matches!(
            r(file("wss://gw:1", "sha256:abcd")),
            Err(ConfigError::Pin(_))
        ));
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn example_node_toml_loads() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/node.toml");
        let f = super::FileConfig::load(&p).expect("configs/node.toml parses");
        assert_eq!(f.caps, Some(vec!["system".to_owned()]));
    }
}
