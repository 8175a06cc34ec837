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
pub type CommandFuture = Pin<Box<dyn Future<Output = Result<Value, CommandError>> + Send>>;

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
                        Arc::new(pincer_hal::camera::V4l2::default());
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
