//! Node commands: a small trait, one module per capability class, and the registry built from
//! the classes enabled with `--caps`. Hardware classes (camera, screen, audio, location) plug in
//! here from `pincer-hal`, each behind its cargo feature.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

#[cfg(feature = "audio")]
pub mod audio;
#[cfg(feature = "camera")]
pub mod camera;
#[cfg(feature = "location")]
pub mod location;
#[cfg(feature = "screen")]
pub mod screen;
#[cfg(feature = "system")]
pub mod system;
#[cfg(feature = "video")]
pub mod video;

/// What command classes need from the node's configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The node's state dir (exec policy).
    pub state_dir: std::path::PathBuf,
    /// gpsd's `host:port`.
    pub gpsd: String,
}

/// A command's failure, as sent back in `node.invoke.result.error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// `error.code`: `INVALID_REQUEST`, `UNAVAILABLE`, `CAMERA_UNAVAILABLE`, …
    pub code: String,
    /// `error.message`: human-readable text.
    pub message: String,
}

impl CommandError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        CommandError {
            code: code.into(),
            message: message.into(),
        }
    }
    /// `INVALID_REQUEST`: the params are wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("INVALID_REQUEST", message)
    }
    /// `UNAVAILABLE`: the command could not run here or now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new("UNAVAILABLE", message)
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// What [`Command::run`] returns: the result payload, or why the command failed.
pub type CommandFuture = Pin<Box<dyn Future<Output = Result<Reply, CommandError>> + Send>>;

/// A command's result payload.
///
/// Media results (photos, clips, screenshots, recordings) keep their bytes raw: they are
/// base64-encoded straight into the `node.invoke.result` frame as the payload's `base64`
/// member, so the node never holds them as a base64 string and a JSON text besides (for a
/// 25 MB clip that is two copies of 33 MB fewer) and they are never scanned for escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Any JSON result.
    Json(Value),
    /// `fields` plus `"base64"`: the standard padded base64 of `bytes`.
    Media {
        /// The other members (`format`, `width`, …).
        fields: serde_json::Map<String, Value>,
        /// What `base64` encodes.
        bytes: Vec<u8>,
    },
}

impl From<Value> for Reply {
    fn from(v: Value) -> Reply {
        Reply::Json(v)
    }
}

impl Reply {
    /// A media result: `fields` (an object; anything else counts as `{}`) plus `base64`.
    pub fn media(fields: Value, bytes: Vec<u8>) -> Reply {
        let fields = match fields {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        Reply::Media { fields, bytes }
    }

    /// The whole payload as a JSON value (tests and logs; the frame is written from `self`).
    pub fn to_value(&self) -> Value {
        match self {
            Reply::Json(v) => v.clone(),
            Reply::Media { fields, bytes } => {
                let mut m = fields.clone();
                let b64 = pincer_protocol::base64url::encode_standard(bytes);
                m.insert("base64".into(), Value::String(b64));
                Value::Object(m)
            }
        }
    }

    /// Bytes the payload's JSON text takes, about (at least the base64 and the top-level
    /// strings): what the result frame reserves up front and checks against the gateway's cap.
    pub fn text_len_hint(&self) -> usize {
        let strings = |m: &serde_json::Map<String, Value>| -> usize {
            m.iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(8, str::len) + 4)
                .sum()
        };
        match self {
            Reply::Json(Value::Object(m)) => strings(m) + 2,
            Reply::Json(Value::String(s)) => s.len() + 2,
            Reply::Json(_) => 64,
            Reply::Media { fields, bytes } => {
                strings(fields) + pincer_protocol::base64url::padded_len(bytes.len()) + 16
            }
        }
    }
}

/// The payload's compact JSON text, written piecewise (into `payloadJSON`'s escaper): a media
/// payload's base64 goes out in 4 KB pieces, never whole.
impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (fields, bytes) = match self {
            Reply::Json(v) => return write!(f, "{v}"),
            Reply::Media { fields, bytes } => (fields, bytes),
        };
        f.write_str("{")?;
        for (k, v) in fields {
            if k == "base64" {
                continue;
            }
            write!(f, "{}:{v},", Value::String(k.clone()))?;
        }
        f.write_str("\"base64\":\"")?;
        let mut buf = [0u8; 4096];
        for piece in bytes.chunks(3072) {
            let text = pincer_protocol::base64url::encode_standard_into(piece, &mut buf)
                .ok_or(std::fmt::Error)?;
            f.write_str(text)?;
        }
        f.write_str("\"}")
    }
}

/// Runs blocking device I/O (ioctls, polls with deadlines) off the runtime's thread.
#[allow(dead_code)] // with no hardware class compiled in
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CommandError> + Send + 'static,
) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CommandError::unavailable(format!("device worker failed: {e}")))?
}

/// One node command.
pub trait Command: Send + Sync {
    /// Runs with the decoded params (`{}` when none were sent).
    fn run(&self, params: Value) -> CommandFuture;
}

/// Capability classes compiled into this build.
pub const AVAILABLE_CAPS: &[&str] = &[
    #[cfg(feature = "system")]
    "system",
    #[cfg(feature = "location")]
    "location",
    #[cfg(feature = "camera")]
    "camera",
    #[cfg(feature = "screen")]
    "screen",
    #[cfg(feature = "audio")]
    "audio",
];

/// The commands of the enabled capability classes.
#[derive(Clone, Default)]
pub struct Registry {
    commands: BTreeMap<&'static str, Arc<dyn Command>>,
    caps: Vec<String>,
}

impl Registry {
    /// Builds the registry for `caps` (validated against [`AVAILABLE_CAPS`] by the config).
    #[allow(unreachable_code, unused_variables, unused_mut)] // with no class compiled in, nothing matches
    pub fn for_caps(caps: &[String], setup: &Setup) -> Registry {
        let mut r = Registry::default();
        for cap in caps {
            match cap.as_str() {
                #[cfg(feature = "system")]
                "system" => {
                    r.add("system.which", Arc::new(system::Which));
                    r.add(
                        "system.run",
                        Arc::new(system::Run {
                            state_dir: setup.state_dir.clone(),
                        }),
                    );
                }
                #[cfg(feature = "location")]
                "location" => r.add("location.get", Arc::new(location::Get::new(&setup.gpsd))),
                #[cfg(feature = "camera")]
                "camera" => {
                    let cams: Arc<dyn pincer_hal::camera::Cameras> =
                        Arc::new(pincer_hal::camera::Local::default());
                    r.add("camera.list", Arc::new(camera::List(cams.clone())));
                    #[cfg(feature = "video")]
                    r.add("camera.clip", Arc::new(camera::Clip(cams.clone())));
                    r.add("camera.snap", Arc::new(camera::Snap(cams)));
                }
                #[cfg(feature = "screen")]
                "screen" => {
                    let fbs: Arc<dyn pincer_hal::screen::Screens> =
                        Arc::new(pincer_hal::screen::Framebuffers::default());
                    #[cfg(feature = "video")]
                    r.add("screen.record", Arc::new(screen::Record(fbs.clone())));
                    r.add("screen.snapshot", Arc::new(screen::Snapshot(fbs)));
                }
                #[cfg(feature = "audio")]
                "audio" => {
                    let alsa: Arc<dyn pincer_hal::audio::AudioDevices> =
                        Arc::new(pincer_hal::audio::Alsa::default());
                    r.add("audio.list", Arc::new(audio::List(alsa.clone())));
                    r.add("audio.record", Arc::new(audio::Record(alsa.clone())));
                    r.add("audio.play", Arc::new(audio::Play(alsa)));
                }
                _ => continue,
            }
            r.caps.push(cap.clone());
        }
        r
    }

    /// Adds a command (tests and later capability classes).
    pub fn add(&mut self, name: &'static str, cmd: Arc<dyn Command>) {
        self.commands.insert(name, cmd);
    }

    /// The command called `name`, when an enabled class provides it.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Command>> {
        self.commands.get(name).cloned()
    }

    /// Declared in `connect.commands`.
    pub fn names(&self) -> Vec<String> {
        self.commands.keys().map(|s| s.to_string()).collect()
    }

    /// Declared in `connect.caps`.
    pub fn caps(&self) -> Vec<String> {
        self.caps.clone()
    }
}
