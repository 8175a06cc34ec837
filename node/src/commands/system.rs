//! `system.which` and `system.run`, as the reference headless node host has them. `system.run`
//! is governed by an exec policy in the state dir (`exec-policy.toml`), deny by default:
//!
//! ```toml
//! mode = "allowlist"            # deny | allowlist | full
//! allow = ["/usr/bin/uptime", "vcgencmd"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::{Command, CommandError, CommandFuture};

/// Output kept per stream (the tail), as the reference caps it.
pub const OUTPUT_CAP: usize = 200_000;
/// Default and longest `system.run` timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// Longest `system.run` timeout, ms (30 min): a larger `timeoutMs` is cut to this.
pub const MAX_TIMEOUT_MS: u64 = 30 * 60 * 1000;

/// Resolves `bin` on `$PATH` (or as given when it contains a slash).
pub use pincer_os::which;

#[derive(Deserialize)]
struct WhichParams {
    bins: Vec<String>,
}

/// `system.which {bins}` → `{bins: {name: path}}` (found entries only).
pub struct Which;

impl Command for Which {
    fn run(&self, params: Value) -> CommandFuture {
        Box::pin(async move {
            let p: WhichParams = serde_json::from_value(params)
                .map_err(|e| CommandError::invalid(format!("system.which: {e}")))?;
            let found: BTreeMap<String, String> = p
                .bins
                .iter()
                .filter_map(|b| which(b).map(|p| (b.clone(), p.display().to_string())))
                .collect();
            Ok(json!({ "bins": found }).into())
        })
    }
}

/// Who may run what through `system.run`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecPolicy {
    /// How `system.run` is gated (default `deny`).
    #[serde(default)]
    pub mode: ExecMode,
    /// With `allowlist`: programs that may run, by name (`vcgencmd`), absolute path, or as invoked.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `mode` in `exec-policy.toml`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// `deny`: nothing runs (also when the policy file is missing or unreadable).
    #[default]
    Deny,
    /// `allowlist`: only programs listed in `allow`.
    Allowlist,
    /// `full`: anything.
    Full,
}

impl ExecPolicy {
    /// Reads `<state>/exec-policy.toml`; missing or unreadable means deny (and is logged).
    pub fn load(state_dir: &Path) -> ExecPolicy {
        let path = state_dir.join("exec-policy.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
                tracing::error!(path = %path.display(), error = %e, "exec policy unreadable; denying system.run");
                ExecPolicy::default()
            }),
            Err(_) => ExecPolicy::default(),
        }
    }

    /// Whether `argv0` (resolved to `resolved`) may run.
    pub fn allows(&self, argv0: &str, resolved: Option<&Path>) -> bool {
        match self.mode {
            ExecMode::Deny => false,
            ExecMode::Full => true,
            ExecMode::Allowlist => self.allow.iter().any(|a| {
                a == argv0
                    || resolved.is_some_and(|r| Path::new(a) == r)
                    || (!a.contains('/')
                        && resolved
                            .and_then(|r| r.file_name())
                            .is_some_and(|n| n == a.as_str()))
            }),
        }
    }
}

/// Environment variables a caller may never set, and that are removed from the node's own
/// environment before running anything.
pub fn dangerous_env(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    k == "PATH"
        || k.starts_with("LD_")
        || k.starts_with("DYLD_")
        || k == "NODE_OPTIONS"
        || k.starts_with("PYTHON")
        || k.starts_with("PERL")
        || k == "RUBYOPT"
        || k == "SHELLOPTS"
        || k == "PS4"
        || k == "BASH_ENV"
        || k == "ENV"
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunParams {
    command: Vec<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Keeps the last `OUTPUT_CAP` characters of a stream, however much it writes (bytes are
/// dropped from the front as they come, so memory stays bounded).
async fn read_tail<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> (String, bool) {
    // A UTF-8 character is at most 4 bytes.
    const KEEP_BYTES: usize = OUTPUT_CAP * 4;
    let mut keep: Vec<u8> = Vec::new();
    let mut dropped = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > KEEP_BYTES + 64 * 1024 {
                    let cut = keep.len() - KEEP_BYTES;
                    keep.drain(..cut);
                    dropped = true;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&keep);
    let chars = text.chars().count();
    if chars > OUTPUT_CAP || dropped {
        let tail: String = text
            .chars()
            .skip(chars.saturating_sub(OUTPUT_CAP))
            .collect();
        (format!("... (truncated) {tail}"), true)
    } else {
        (text.into_owned(), false)
    }
}

/// `system.run {command, cwd?, env?, timeoutMs?}` → `{exitCode, timedOut, success, stdout,
/// stderr, error}`.
pub struct Run {
    /// Where `exec-policy.toml` lives; read on every call, so edits apply without a restart.
    pub state_dir: PathBuf,
}

impl Command for Run {
    fn run(&self, params: Value) -> CommandFuture {
        let policy = ExecPolicy::load(&self.state_dir);
        Box::pin(async move {
            let p: RunParams = serde_json::from_value(params)
                .map_err(|e| CommandError::invalid(format!("system.run: {e}")))?;
            let Some(argv0) = p.command.first().filter(|a| !a.is_empty()) else {
                return Err(CommandError::invalid(
                    "system.run: command must not be empty",
                ));
            };
            let resolved = which(argv0);
            if !policy.allows(argv0, resolved.as_deref()) {
                return Err(CommandError::unavailable(format!(
                    "system.run denied by exec policy ({:?} mode; edit exec-policy.toml in the node's state dir)",
                    policy.mode
                )));
            }
            let program =
                resolved.ok_or_else(|| CommandError::unavailable(format!("{argv0}: not found")))?;
            let mut cmd = tokio::process::Command::new(&program);
            cmd.args(&p.command[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            for (k, _) in std::env::vars_os() {
                if dangerous_env(&k.to_string_lossy()) && k != "PATH" {
                    cmd.env_remove(&k);
                }
            }
            for (k, v) in p.env.iter().flatten() {
                if !dangerous_env(k) {
                    cmd.env(k, v);
                }
            }
            if let Some(dir) = &p.cwd {
                cmd.current_dir(dir);
            }
            let mut child = cmd
                .spawn()
                .map_err(|e| CommandError::unavailable(format!("{argv0}: {e}")))?;
            let out = child.stdout.take().map(read_tail);
            let err = child.stderr.take().map(read_tail);
            let timeout = Duration::from_millis(
                p.timeout_ms
                    .unwrap_or(DEFAULT_TIMEOUT_MS)
                    .min(MAX_TIMEOUT_MS),
            );
            let collect = async {
                let (o, e) = tokio::join!(
                    async {
                        match out {
                            Some(f) => f.await.0,
                            None => String::new(),
                        }
                    },
                    async {
                        match err {
                            Some(f) => f.await.0,
                            None => String::new(),
                        }
                    }
                );
                (child.wait().await, o, e)
            };
            match tokio::time::timeout(timeout, collect).await {
                Ok((status, stdout, stderr)) => {
                    let status = status.map_err(|e| CommandError::unavailable(e.to_string()))?;
                    Ok(json!({
                        "exitCode": status.code(), "timedOut": false, "success": status.success(),
                        "stdout": stdout, "stderr": stderr, "error": Value::Null,
                    })
                    .into())
                }
                // Dropping the future kills the child (kill_on_drop).
                Err(_) => Ok(json!({
                    "exitCode": Value::Null, "timedOut": true, "success": false, "stdout": "", "stderr": "",
                    "error": format!("timed out after {} ms", timeout.as_millis()),
                })
                .into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_and_env_rules() {
        let deny = ExecPolicy::default();
        assert!(!deny.allows("ls", None));
        let list = ExecPolicy {
            mode: ExecMode::Allowlist,
            allow: vec!["uptime".into(), "/bin/echo".into()],
        };
        assert!(list.allows("uptime", Some(Path::new("/usr/bin/uptime"))));
        assert!(list.allows("echo", Some(Path::new("/bin/echo"))));
        assert!(!list.allows("rm", Some(Path::new("/bin/rm"))));
        assert!(
            dangerous_env("LD_PRELOAD") && dangerous_env("pythonpath") && !dangerous_env("HOME")
        );
    }

    #[tokio::test]
    async fn run_caps_output_and_times_out() {
        let dir = std::env::temp_dir().join(format!("pincer-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("exec-policy.toml"), "mode = \"full\"\n").unwrap();
        let run = Run {
            state_dir: dir.clone(),
        };
        let v = run
            .run(json!({ "command": ["sh", "-c", "yes x | head -c 300000; echo err >&2; exit 3"] }))
            .await
            .unwrap()
            .to_value();
        assert_eq!(v["exitCode"], 3);
        assert!(v["stdout"]
            .as_str()
            .unwrap()
            .starts_with("... (truncated) "));
        let out = v["stdout"].as_str().unwrap();
        assert_eq!(out.chars().count(), OUTPUT_CAP + "... (truncated) ".len());
        assert!(out.ends_with("x\nx\n"));
        assert_eq!(v["stderr"], "err\n");
        let t = std::time::Instant::now();
        let v = run
            .run(json!({ "command": ["sleep", "5"], "timeoutMs": 200 }))
            .await
            .unwrap()
            .to_value();
        assert_eq!(v["timedOut"], true);
        assert!(t.elapsed() < Duration::from_secs(2));
        let v = run.run(json!({ "command": ["sh", "-c", "echo ${LD_PRELOAD:-clean}"], "env": { "LD_PRELOAD": "/evil.so" } })).await.unwrap().to_value();
        assert_eq!(v["stdout"], "clean\n");
        std::fs::remove_file(dir.join("exec-policy.toml")).unwrap();
        assert_eq!(
            run.run(json!({ "command": ["true"] }))
                .await
                .unwrap_err()
                .code,
            "UNAVAILABLE",
            "no policy file means deny"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
