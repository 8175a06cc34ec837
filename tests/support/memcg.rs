//! A memory cgroup the size a Pi leaves a daemon, for the abuse suites (gateway and node): the
//! process under attack runs inside it, so an attack that would need more memory ends in the
//! kernel's OOM killer, which the suite sees, instead of in swap or a busy machine. Works with
//! the cgroup v2 memory controller (`memory.max`) and with v1 (`memory.limit_in_bytes`); shared
//! by `gateway/tests` and `node/tests` through `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// One memory cgroup; removed on drop (after the processes in it are gone).
pub struct MemCgroup {
    path: PathBuf,
    v2: bool,
    /// The limit, bytes.
    pub limit: u64,
}

/// Where this kernel's memory controller is mounted, and whether it is v2.
fn memory_root() -> Option<(PathBuf, bool)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let mut v1 = None;
    let mut v2 = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        match f[2] {
            "cgroup2" => {
                let dir = PathBuf::from(f[1]);
                let controllers =
                    std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "memory") {
                    v2 = Some(dir);
                }
            }
            "cgroup" if f[3].split(',').any(|o| o == "memory") => v1 = Some(PathBuf::from(f[1])),
            _ => {}
        }
    }
    v2.map(|d| (d, true)).or(v1.map(|d| (d, false)))
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

impl MemCgroup {
    /// A fresh cgroup `name` limited to `limit` bytes (swap included where the kernel counts
    /// it); `Err` says why there is none (no memory controller, not root).
    pub fn create(name: &str, limit: u64) -> Result<MemCgroup, String> {
        let (root, v2) = memory_root().ok_or("no memory cgroup controller mounted")?;
        let path = root.join(format!("pincer-abuse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        if v2 {
            // The controller must be enabled for the root's children.
            let _ = write(&root.join("cgroup.subtree_control"), "+memory");
        }
        std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        let cg = MemCgroup { path, v2, limit };
        let set = |file: &str, v: &str| {
            write(&cg.path.join(file), v).map_err(|e| format!("{file} = {v}: {e}"))
        };
        if v2 {
            set("memory.max", &limit.to_string())?;
            // No swap to hide in (absent when the kernel has no swap accounting).
            let _ = set("memory.swap.max", "0");
        } else {
            set("memory.limit_in_bytes", &limit.to_string())?;
            let _ = set("memory.memsw.limit_in_bytes", &limit.to_string());
        }
        Ok(cg)
    }

    /// `program args…` started inside this cgroup (a shell moves itself in, then execs), so
    /// every byte the program allocates is charged here from its first instruction.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(self.path.join("cgroup.procs"))
            .arg(program);
        c
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file)).unwrap_or_default()
    }

    /// How many processes of this cgroup the OOM killer has killed.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.read(file)
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Highest memory charged to the cgroup so far (page cache and socket buffers included),
    /// bytes; `None` where the kernel does not keep it (v2 before 5.19).
    pub fn peak(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        self.read(file).trim().parse().ok()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Whatever still runs in it (a test that failed before its process was stopped) is
        // killed, so the cgroup can go; a few tries while they exit.
        for pid in self.read("cgroup.procs").split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Resident and peak resident memory of a process, KiB (`VmRSS`, `VmHWM`).
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Waits (bounded by `within`) until process `pid` is resident in at most `kib`; returns its
/// resident size then, whether or not it got there. Memory coming back is a condition to wait
/// for, never a guessed time.
pub async fn rss_settled(pid: u32, kib: u64, within: std::time::Duration) -> u64 {
    let by = std::time::Instant::now() + within;
    loop {
        let (rss, _) = rss_kib(pid);
        if rss <= kib || std::time::Instant::now() > by {
            return rss;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The release binary named by `var` (the abuse suites run the binaries a board runs). `Err`
/// when unset: the caller fails when `PINCER_REQUIRE_ABUSE=1` and says it skipped otherwise.
pub fn release_binary(var: &str) -> Result<PathBuf, String> {
    match std::env::var_os(var) {
        Some(p) if Path::new(&p).is_file() => Ok(PathBuf::from(p)),
        Some(p) => Err(format!("{var}={} is not a file", Path::new(&p).display())),
        None => Err(format!("{var} is not set (a release build of the binary)")),
    }
}

/// Whether the run requires the abuse suite (the full test command sets it).
pub fn required() -> bool {
    std::env::var("PINCER_REQUIRE_ABUSE").is_ok_and(|v| v == "1")
}
