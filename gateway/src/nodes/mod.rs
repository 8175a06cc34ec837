//! Nodes: the command [`policy`] (platform defaults, config allow/deny, which commands need an
//! operator's approval), a connected node's [`session`] and its admission, and invoke
//! [`routing`] (the registry of connected nodes and the invoke round trip).

pub mod policy;
pub mod routing;
pub mod session;

pub use policy::{allowlist, is_dangerous, DANGEROUS};
pub use routing::{NodeRegistry, DEFAULT_INVOKE_TIMEOUT_MS, MAX_INVOKE_TIMEOUT_MS};
pub use session::{admit, pending_json, NodeSession};

use std::sync::{Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
