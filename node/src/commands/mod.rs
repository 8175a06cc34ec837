//! Node commands: a small trait, one module per capability class, and the registry built from
//! the classes enabled with `--caps`. Hardware classes (camera, screen, audio, location) plug in
//! here from `pincer-hal`, each behind its cargo feature.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

#[cfg(feature = "location")]
pub mod location;
#[cfg(feature = "system")]
pub mod system;

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
    pub code: String,
    pub message: String,
}

impl CommandError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        CommandError {
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("INVALID_REQUEST", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new("UNAVAILABLE", message)
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

pub type CommandFuture = Pin<Box<dyn Future<Output = Result<Value, CommandError>> + Send>>;

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
