//! The workspace's pincer-node binary, for gateway tests that run a real node process (in a
//! namespace of its own, or against the reference gateway).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The variables cargo sets for the crate it runs (its manifest, package metadata, binaries).
fn set_for_this_crate(key: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_EXE_",
        "CARGO_CRATE_",
    ];
    const NAMES: [&str; 4] = [
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

/// The pincer-node binary of this workspace. It is another package's binary, so
/// `CARGO_BIN_EXE_pincer-node` is not set for these tests: cargo builds it (once per run, a
/// no-op when it is up to date) and names the executable in its artifact message. A build that
/// fails or names no executable fails the test; there is no fallback to an old binary.
pub fn pincer_node_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut build = Command::new(&cargo);
        // What cargo set for this test crate is no configuration for the inner build; left in,
        // it dirties build scripts that track it (ring's tracks CARGO_MANIFEST_DIR), and
        // pincer-node would be rebuilt on every run.
        for (key, _) in std::env::vars_os() {
            if set_for_this_crate(&key.to_string_lossy()) {
                build.env_remove(&key);
            }
        }
        let out = build
            .current_dir(&workspace)
            .args(["build", "-p", "pincer-node", "--bin", "pincer-node"])
            .arg("--message-format=json-render-diagnostics")
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("running {cargo:?} build -p pincer-node: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "cargo build -p pincer-node failed ({}):\n{stderr}",
            out.status
        );
        let exe = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact"
                    && m["target"]["name"] == "pincer-node"
                    && m["target"]["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| panic!("cargo build -p pincer-node named no executable:\n{stderr}"));
        assert!(exe.is_file(), "{} is not a file", exe.display());
        exe
    })
}
