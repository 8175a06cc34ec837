//! Running a helper program (libcamera's tools, the `tailscale` CLI) with a deadline and
//! bounded output, on the calling thread.
//!
//! The program gets its own process group, so a deadline kills it and whatever it started
//! (a child that kept the pipes open would otherwise keep the readers waiting). stdout and
//! stderr are read on two threads up to their bounds and drained past them, so a chatty
//! program never blocks on a full pipe.

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished program left.
#[derive(Debug)]
pub struct Ran {
    /// Exit status 0.
    pub success: bool,
    /// At most the stdout bound.
    pub stdout: Vec<u8>,
    /// At most the stderr bound.
    pub stderr: Vec<u8>,
}

/// Why a program gave no result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not be started (first: the program).
    #[error("cannot run {0}: {1}")]
    Spawn(String, io::Error),
    /// It was still running at the deadline (second, ms) and was killed.
    #[error("{0} did not finish within {1} ms")]
    TimedOut(String, u64),
}

/// Runs `cmd` with no stdin, keeping at most `stdout_limit` / `stderr_limit` bytes of its
/// output; past `timeout` its process group is killed and the result is
/// [`RunError::TimedOut`].
pub fn run_bounded(
    cmd: &mut Command,
    timeout: Duration,
    stdout_limit: usize,
    stderr_limit: usize,
) -> Result<Ran, RunError> {
    use std::os::unix::process::CommandExt;
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Spawn(name.clone(), e))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>, limit: usize| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = (&mut p).take(limit as u64).read_to_end(&mut buf);
                let _ = io::copy(&mut p, &mut io::sink());
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        stdout_limit,
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        stderr_limit,
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    // SAFETY: kill(2) on the group this function created; no memory involved.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(s) => Ok(Ran {
            success: s.success(),
            stdout,
            stderr,
        }),
        None => Err(RunError::TimedOut(name, timeout.as_millis() as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_program_and_its_children_are_killed_at_the_deadline() {
        let t0 = Instant::now();
        // the shell's child keeps the pipes open: only killing the group ends the wait
        let e = run_bounded(
            Command::new("sh").args(["-c", "sleep 30"]),
            Duration::from_millis(200),
            16,
            16,
        )
        .err();
        assert!(matches!(e, Some(RunError::TimedOut(_, 200))), "{e:?}");
        assert!(t0.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn output_past_the_bound_is_drained_not_kept() {
        let o = run_bounded(
            Command::new("sh").args([
                "-c",
                "head -c 100000 /dev/zero; head -c 100000 /dev/zero >&2",
            ]),
            Duration::from_secs(20),
            16,
            8,
        )
        .expect("ran");
        assert!(o.success);
        assert_eq!((o.stdout.len(), o.stderr.len()), (16, 8));
        let e = run_bounded(
            &mut Command::new("/nonexistent/program"),
            Duration::from_secs(1),
            1,
            1,
        );
        assert!(matches!(e, Err(RunError::Spawn(..))), "{e:?}");
    }
}
