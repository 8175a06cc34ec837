//! # pincer-os
//!
//! Small pieces of operating-system plumbing that both binaries need, written once:
//! crash-safe state files ([`write_atomic`], [`ensure_private_dir`]), logging setup
//! ([`init_logging`]), environment and `PATH` lookups ([`env_first`], [`which`]), helper
//! programs run with a deadline and bounded output ([`process`]) and systemd
//! readiness and watchdog
//! notifications ([`notify`]), the byte-bounded outbound queue of a WebSocket link
//! ([`outbox`]), the wall clock ([`now_ms`]), random ids ([`uuid_v4`]) and handing freed heap
//! back to the kernel ([`release_free_memory`]), and the local `tailscaled`'s LocalAPI
//! ([`tailscale`]: the daemon's state, whois) that the gateway and `pincer-node doctor` ask.
//!
//! **Must not touch:** the protocol, the gateway's sockets or hardware (the one socket spoken
//! on here is the local daemon's LocalAPI).

#![warn(missing_docs)]

pub mod notify;
pub mod outbox;
pub mod process;
pub mod tailscale;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The civil date `(year, month 1..=12, day 1..=31)` of `days` since 1970-01-01 (UTC), after
/// Howard Hinnant's `civil_from_days`; the one calendar the gateway, agent and node share
/// (HTTP dates, the model's time stamps, ISO 8601 fixes).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The English weekday abbreviation of `days` since 1970-01-01 (a Thursday).
pub fn weekday(days: i64) -> &'static str {
    ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize]
}

/// Raises this process's soft limit on open files to `want` (at most the hard limit) and
/// returns the soft limit in force afterwards (`None` if it cannot be read). systemd starts
/// services with a soft limit of 1024 whatever the hard one is; a daemon that holds a socket
/// per client raises its own, as Go's runtime does.
pub fn raise_nofile(want: u64) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        #[allow(clippy::useless_conversion)]
        let target = libc::rlim_t::try_from(want)
            .unwrap_or(libc::rlim_t::MAX)
            .min(lim.rlim_max);
        if target > lim.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = target;
            }
        }
    }
    // rlim_t is u32 on 32-bit glibc ARM, u64 elsewhere.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(lim.rlim_cur))
}

/// Gives memory the allocator holds but no longer uses back to the kernel. glibc's malloc keeps
/// what its arenas freed (after a burst of large frames a process stays near its peak: 248 MB
/// after `abuse::clients_that_stop_reading`, 26 MB with musl); musl's returns it by itself, so
/// this does nothing there. Returns whether anything was released.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// A random UUIDv4 string (nonces, connection ids, request and instance ids), from the OS's
/// randomness; if the OS refused (never on Linux, where `getrandom(2)` waits until seeded), from
/// the clock and the process id, which is unique enough for ids but no secret.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ (u128::from(std::process::id()) << 64);
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Resolves on SIGTERM or SIGINT (never, if the handlers cannot be installed): how both
/// daemons learn to stop.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `data` to `path` atomically with mode 0600: temp file, fsync, rename, fsync of the
/// folder. A reader — or a power cut at any instant — sees the old content or the new, never a
/// torn file. Creates the folder (0700) if needed.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    ensure_private_dir(folder(path))?;
    write_atomic_as(path, data, 0o600, None)
}

/// [`write_atomic`] into an existing folder, with `mode` and, when `gid` is set, that group
/// (both set on the temporary file, before the rename: the file never exists with others).
pub fn write_atomic_as(path: &Path, data: &[u8], mode: u32, gid: Option<u32>) -> io::Result<()> {
    let dir = folder(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some(gid) = gid {
            std::os::unix::fs::fchown(&f, None, Some(gid))?;
        }
        // (after the chown, which may clear set-id bits; the umask does not apply here)
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The folder `path` is in (`.` for a bare file name).
fn folder(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The id of group `name` in `/etc/group`, if there is one.
pub fn group_id(name: &str) -> Option<u32> {
    group_id_in(&fs::read_to_string("/etc/group").ok()?, name)
}

/// The id of group `name` in `group`-file text (`name:x:gid:members` lines).
pub fn group_id_in(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1)?.parse().ok())
            .flatten()
    })
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An executable regular file at `p`.
fn executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `bin` on `$PATH` (or as given when it contains a slash): [`which_in`].
pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    which_in(&std::env::var_os("PATH")?, bin)
}

/// Resolves `bin` in the directories of `path` (a `PATH`-style list), or as given when it
/// contains a slash: the first executable regular file.
pub fn which_in(path: &std::ffi::OsStr, bin: &str) -> Option<std::path::PathBuf> {
    if bin.contains('/') {
        let p = std::path::PathBuf::from(bin);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path)
        .map(|d| d.join(bin))
        .find(|p| executable(p))
}

/// First non-empty value among the environment variables `names`.
pub fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// Logs to stderr. `RUST_LOG` takes `level` or `target=level,...` directives (no regex engine:
/// it would cost ~300 KB of binary). Colour only on a terminal, so journald and log files get
/// plain text.
pub fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_only_executable_files_in_order() {
        let base = std::env::temp_dir().join(format!("pincer-os-which-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(b.join("tool-dir")).unwrap();
        fs::write(a.join("tool"), b"#!/bin/sh\n").unwrap(); // not executable: skipped
        fs::write(b.join("tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(b.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(which_in(&path, "tool"), Some(b.join("tool")));
        assert_eq!(
            which_in(&path, "tool-dir"),
            None,
            "a directory is no program"
        );
        assert_eq!(which_in(&path, "missing"), None);
        let abs = b.join("tool").display().to_string();
        assert_eq!(
            which_in(std::ffi::OsStr::new(""), &abs),
            Some(b.join("tool"))
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn writes_replace_whole_files_with_private_mode() {
        let dir = std::env::temp_dir().join(format!("pincer-os-{}", std::process::id()));
        let p = dir.join("sub/x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(
            fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temp files left behind"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn modes_and_groups() {
        let dir = std::env::temp_dir().join(format!("pincer-os-as-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("node.toml");
        let own_gid = std::os::unix::fs::MetadataExt::gid(&fs::metadata(&dir).unwrap());
        write_atomic_as(&p, b"a = 1\n", 0o640, Some(own_gid)).unwrap();
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&m), own_gid);
        assert!(write_atomic_as(&dir.join("none/x"), b"", 0o600, None).is_err());
        fs::remove_dir_all(&dir).unwrap();

        let g = "root:x:0:\npincer:x:998:\nbad:x:\nvideo:x:44:pincer\n";
        assert_eq!(group_id_in(g, "pincer"), Some(998));
        assert_eq!(group_id_in(g, "video"), Some(44));
        assert_eq!(group_id_in(g, "bad"), None);
        assert_eq!(group_id_in(g, "pinc"), None);
    }
}

#[cfg(test)]
mod nofile_tests {
    #[test]
    fn the_open_file_limit_is_raised_up_to_the_hard_limit_never_lowered() {
        let now = super::raise_nofile(0).expect("getrlimit");
        let after = super::raise_nofile(now + 1).expect("getrlimit");
        assert!(after >= now, "lowered from {now} to {after}");
        assert_eq!(
            super::raise_nofile(1),
            Some(after),
            "a smaller wish changes nothing"
        );
    }
}

/// Total and available bytes of the file system holding `path` (`statvfs(3)`; available is what
/// an unprivileged process may still write).
pub fn disk_space(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` a zeroed statvfs the call fills in.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        st
    };
    let frsize = st.f_frsize as u64;
    Ok((
        (st.f_blocks as u64).saturating_mul(frsize),
        (st.f_bavail as u64).saturating_mul(frsize),
    ))
}
