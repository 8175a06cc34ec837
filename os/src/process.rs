//! Running a helper program (libcamera's tools, the `tailscale` CLI) with a deadline and
//! bounded output, on the calling thread ([`run_bounded`]), or keeping it running while its
//! output is read ([`Spawned`]).
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

/// A helper program started in its own process group, for output read while it runs (a
/// camera tool streaming frames). Its stdout is the caller's to read ([`Spawned::stdout`]);
/// stderr is kept up to a bound on a thread. Dropping it kills the whole group and reaps it,
/// so a caller that stops early (an error, a cancelled request) never leaves it running.
pub struct Spawned {
    name: String,
    child: std::process::Child,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    /// Set once the program has been waited for.
    status: Option<std::process::ExitStatus>,
}

impl Spawned {
    /// Starts `cmd` with no stdin, stdout piped, and at most `stderr_limit` bytes of stderr
    /// kept (the rest drained, so the program never blocks on it).
    pub fn start(cmd: &mut Command, stderr_limit: usize) -> Result<Spawned, RunError> {
        use std::os::unix::process::CommandExt;
        let name = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RunError::Spawn(name.clone(), e))?;
        let stderr = child.stderr.take().map(|p| bounded_reader(p, stderr_limit));
        Ok(Spawned {
            name,
            child,
            stderr,
            status: None,
        })
    }

    /// The program's name, as started.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its stdout, once (`None` after the first call).
    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// `Some(success)` once it has exited; `None` while it runs.
    pub fn exited(&mut self) -> Option<bool> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.map(|s| s.success())
    }

    /// Kills the group (if still running), reaps it and returns what it wrote to stderr.
    pub fn stop(mut self) -> Vec<u8> {
        self.kill();
        self.stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the group `start` created; no memory involved.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A thread keeping the first `limit` bytes of `pipe` and draining the rest.
fn bounded_reader(
    pipe: impl Read + Send + 'static,
    limit: usize,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut buf = Vec::new();
        let _ = (&mut pipe).take(limit as u64).read_to_end(&mut buf);
        let _ = io::copy(&mut pipe, &mut io::sink());
        buf
    })
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
    let mut p = Spawned::start(cmd, stderr_limit)?;
    let out = p.stdout().map(|s| bounded_reader(s, stdout_limit));
    let deadline = Instant::now() + timeout;
    let success = loop {
        if let Some(ok) = p.exited() {
            break Some(ok);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let name = p.name.clone();
    let stderr = p.stop();
    let stdout = out.and_then(|t| t.join().ok()).unwrap_or_default();
    match success {
        Some(success) => Ok(Ran {
            success,
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

    #[test]
    fn a_spawned_program_streams_until_stopped_and_its_children_go_with_it() {
        let mut p = Spawned::start(
            Command::new("sh").args(["-c", "echo started >&2; sleep 30 & yes"]),
            64,
        )
        .expect("started");
        let mut out = p.stdout().expect("stdout");
        let mut buf = [0u8; 4];
        out.read_exact(&mut buf).expect("streamed");
        assert_eq!(&buf, b"y\ny\n");
        assert_eq!(p.exited(), None);
        let t0 = Instant::now();
        // the backgrounded sleep holds stderr open: only killing the group lets stop return
        let stderr = p.stop();
        assert_eq!(stderr, b"started\n");
        assert!(t0.elapsed() < Duration::from_secs(20));
        // the stream ends once the group is gone
        assert!(io::copy(&mut out, &mut io::sink()).is_ok());
    }
}
