//! A small synchronous driver for headless Chromium over the DevTools protocol, for the tests
//! (and benchmarks) that need a real browser: load a page, evaluate JavaScript, wait for the DOM,
//! take screenshots, read the console and the network responses.
//!
//! It uses the pipe transport (`--remote-debugging-pipe`): Chromium reads NUL-terminated JSON
//! messages from fd 3 and writes them to fd 4. There is no DevTools port, so the browser also
//! works inside a network namespace (`ip netns exec NAME chromium ...`) the test cannot reach
//! over TCP. The fds are set up without `unsafe` by spawning through
//! `sh -c 'exec "$@" 3<&0 4>&1 </dev/null >/dev/null'`, so the child's stdin pipe becomes fd 3
//! and its stdout pipe fd 4.
//!
//! One reader thread parses the messages: replies go to the caller waiting on that `id`, events
//! (flattened sessions, one per [`Page`]) into that page's console lines, network responses and
//! loads. Every command has a timeout; a command error, a timeout or the browser dying panics with
//! the method and the tail of Chromium's stderr, so a test fails with a reason instead of hanging.
//!
//! Include it with `#[path = "../../tests/support/cdp.rs"] mod cdp;`.
//!
//! Each browser gets a fresh profile directory under the temp dir, which is also its `HOME` (so
//! crash reports and `~/.pki` stay out of the real one) and holds `chromium-stderr.log`; all of it
//! is removed on drop, after Chromium and its helper processes are gone.
//!
//! Environment: `PINCER_CHROMIUM` names the binary (default: `chromium` on `PATH`);
//! `PINCER_REQUIRE_CHROMIUM=1` turns "no browser here" from a skip ([`Browser::launch`] returns
//! `None`) into a failure.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long any one DevTools command may take before the caller panics.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Page::goto`] waits for the load event.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Page::wait_for`] evaluates its expression.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Console lines, finished responses and in-flight responses kept per page (oldest dropped).
const KEEP: usize = 2_000;
/// Loader ids whose `load` lifecycle event was seen, kept per page.
const KEEP_LOADS: usize = 64;
/// Bytes of Chromium's stderr quoted in a failure.
const STDERR_TAIL: u64 = 4_000;
/// The phone viewport of [`Options::mobile`]: CSS pixels and device pixel ratio.
const PHONE: (u32, u32, f64) = (390, 844, 3.0);

/// How to launch the browser.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run Chromium inside this network namespace (`ip netns exec NAME ...`; needs root).
    pub netns: Option<String>,
    /// Window width, pixels (`--window-size`); the viewport of a non-mobile page.
    pub width: u32,
    /// Window height, pixels.
    pub height: u32,
    /// Give every page a phone viewport (390×844 CSS px, device pixel ratio 3, touch) through
    /// `Emulation.setDeviceMetricsOverride`, whatever `width` and `height` say.
    pub mobile: bool,
    /// More Chromium flags (e.g. `--host-resolver-rules=MAP evil.test 127.0.0.1`).
    pub extra_args: Vec<String>,
}

impl Default for Options {
    /// A 1280×800 desktop window in the test's own network namespace.
    fn default() -> Self {
        Options {
            netns: None,
            width: 1280,
            height: 800,
            mobile: false,
            extra_args: Vec::new(),
        }
    }
}

/// One network response that finished loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The response's URL (after redirects).
    pub url: String,
    /// HTTP status (data: URLs report 200).
    pub status: u16,
    /// Bytes received on the wire, headers included (`Network.loadingFinished`
    /// `encodedDataLength`).
    pub encoded_bytes: u64,
    /// The response's MIME type, as Chromium saw it.
    pub mime: String,
}

/// A running headless Chromium; killed, and its profile directory removed, on drop.
pub struct Browser {
    conn: Arc<Conn>,
    opts: Options,
    profile: PathBuf,
    /// How long [`Browser::launch`] took, from spawn to the first reply.
    pub launch_time: Duration,
}

/// A tab of the browser, attached through its own flattened session. Closed on drop.
pub struct Page {
    conn: Arc<Conn>,
    session: String,
    target: String,
}

/// The pipe to the browser and everything the reader thread fills in.
struct Conn {
    writer: Mutex<ChildStdin>,
    child: Mutex<Child>,
    next_id: AtomicU64,
    /// Callers waiting for a reply, by command id; `closed` once the pipe hit EOF.
    pending: Mutex<Pending>,
    /// Set (before `changed` is notified) when the pipe hit EOF.
    dead: AtomicBool,
    sessions: Mutex<HashMap<String, Session>>,
    /// Notified whenever a session's state changes, and when the browser dies.
    changed: Condvar,
    stderr_log: PathBuf,
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, mpsc::Sender<Value>>,
    /// Why the pipe closed, once it has.
    closed: Option<String>,
}

/// What one page's events told us so far.
#[derive(Default)]
struct Session {
    console: VecDeque<String>,
    requests: VecDeque<Request>,
    /// `Network.responseReceived` waiting for its `Network.loadingFinished`, by request id.
    inflight: VecDeque<(String, Request)>,
    /// Loader ids whose document fired its load event.
    loaded: VecDeque<String>,
}

fn push_capped<T>(q: &mut VecDeque<T>, item: T, cap: usize) {
    if q.len() >= cap {
        q.pop_front();
    }
    q.push_back(item);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The binary to run: `$PINCER_CHROMIUM` (a path, or a name looked up on `PATH`), else
/// `chromium` on `PATH`. A `PINCER_CHROMIUM` that names nothing panics: it is a misconfiguration,
/// not a machine without a browser.
fn find_chromium() -> Option<PathBuf> {
    let on_path = |name: &str| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    match std::env::var("PINCER_CHROMIUM") {
        Ok(p) if p.contains('/') => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "cdp: PINCER_CHROMIUM={} is not a file",
                p.display()
            );
            Some(p)
        }
        Ok(name) if !name.is_empty() => Some(
            on_path(&name).unwrap_or_else(|| panic!("cdp: PINCER_CHROMIUM={name} is not on PATH")),
        ),
        _ => on_path("chromium"),
    }
}

/// A fresh directory for one browser's profile.
fn fresh_profile() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "pincer-cdp-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cdp: create profile dir {}: {e}", dir.display()));
    dir
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and waits until it answers.
    ///
    /// `None` when no binary is found (see the module docs) and `PINCER_REQUIRE_CHROMIUM` is not
    /// `"1"`; with it set, that panics instead. Once a binary is found, any failure to start
    /// panics with Chromium's stderr.
    pub fn launch(opts: Options) -> Option<Browser> {
        let Some(bin) = find_chromium() else {
            if std::env::var("PINCER_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
                panic!(
                    "cdp: PINCER_REQUIRE_CHROMIUM=1 but no chromium found (set PINCER_CHROMIUM \
                     or put `chromium` on PATH; Debian: apt-get install chromium)"
                );
            }
            eprintln!("cdp: no chromium binary found; skipping the browser test");
            return None;
        };
        let profile = fresh_profile();
        let stderr_log = profile.join("chromium-stderr.log");
        let log = std::fs::File::create(&stderr_log)
            .unwrap_or_else(|e| panic!("cdp: create {}: {e}", stderr_log.display()));

        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg("sh");
        if let Some(ns) = &opts.netns {
            cmd.args(["ip", "netns", "exec", ns]);
        }
        cmd.arg(&bin)
            .args([
                "--remote-debugging-pipe",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--password-store=basic",
                "--use-mock-keychain",
                "--mute-audio",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={},{}", opts.width, opts.height))
            .args(&opts.extra_args)
            .arg("about:blank")
            // Everything Chromium keeps under $HOME (crash reports, ~/.pki) stays in the profile.
            .env("HOME", &profile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);

        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cdp: spawn sh for {}: {e}", bin.display()));
        let (Some(writer), Some(reader)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("cdp: the child's stdin and stdout were not piped");
        };
        let conn = Arc::new(Conn {
            writer: Mutex::new(writer),
            child: Mutex::new(child),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Pending::default()),
            dead: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            stderr_log,
        });
        let reader_conn = Arc::clone(&conn);
        std::thread::Builder::new()
            .name("cdp-reader".into())
            .spawn(move || reader_conn.read_loop(reader))
            .unwrap_or_else(|e| panic!("cdp: spawn the reader thread: {e}"));

        let mut browser = Browser {
            conn,
            opts,
            profile,
            launch_time: Duration::ZERO,
        };
        browser.conn.call(None, "Browser.getVersion", json!({}));
        browser.launch_time = started.elapsed();
        Some(browser)
    }

    /// Opens a new tab on `about:blank` with the Runtime, Page, Network and Log domains on (and
    /// the phone viewport when [`Options::mobile`]).
    pub fn page(&self) -> Page {
        let c = &self.conn;
        let created = c.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target = str_field(&created, "targetId", "Target.createTarget");
        let attached = c.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        );
        let session = str_field(&attached, "sessionId", "Target.attachToTarget");
        lock(&c.sessions).entry(session.clone()).or_default();
        let page = Page {
            conn: Arc::clone(c),
            session,
            target,
        };
        for method in [
            "Runtime.enable",
            "Page.enable",
            "Network.enable",
            "Log.enable",
        ] {
            page.call(method, json!({}));
        }
        page.call("Page.setLifecycleEventsEnabled", json!({ "enabled": true }));
        if self.opts.mobile {
            let (width, height, scale) = PHONE;
            page.call(
                "Emulation.setDeviceMetricsOverride",
                json!({
                    "width": width,
                    "height": height,
                    "deviceScaleFactor": scale,
                    "mobile": true,
                }),
            );
            page.call(
                "Emulation.setTouchEmulationEnabled",
                json!({ "enabled": true, "maxTouchPoints": 5 }),
            );
        }
        page
    }

    /// The profile directory (`--user-data-dir`), which also holds `chromium-stderr.log`.
    pub fn profile_dir(&self) -> &Path {
        &self.profile
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask politely, so Chromium takes its helper processes down, then make sure.
        if !self.conn.dead.load(Ordering::SeqCst) {
            let id = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
            let _ = self
                .conn
                .send(&json!({ "id": id, "method": "Browser.close", "params": {} }));
        }
        let mut child = lock(&self.conn.child);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(child);
        // Helpers (GPU, network, renderers, crashpad) outlive the browser process by a moment
        // and keep writing into the profile; wait for them, then kill what is left.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = processes_using(&self.profile);
            if left.is_empty() && std::fs::remove_dir_all(&self.profile).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                for pid in left {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                }
                std::thread::sleep(Duration::from_millis(100));
                let _ = std::fs::remove_dir_all(&self.profile);
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Processes with an argument that is, ends with or lies under `dir`: a browser's helpers all
/// carry `--user-data-dir=<profile>` (and, with `HOME` there, crashpad its `--database`).
fn processes_using(dir: &Path) -> Vec<u32> {
    let dir = dir.as_os_str().as_encoded_bytes();
    let mut under = dir.to_vec();
    under.push(b'/');
    let names = |arg: &[u8]| arg.ends_with(dir) || arg.windows(under.len()).any(|w| w == under);
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|&b| b == 0).any(names))
        })
        .collect()
}

impl Page {
    /// Navigates to `url` and waits for that document's load event. Panics when the navigation
    /// fails (`net::ERR_...`) or the load takes longer than 30 s. A same-document navigation
    /// (only the fragment changes) returns at once.
    pub fn goto(&self, url: &str) {
        let reply = self.call("Page.navigate", json!({ "url": url }));
        if let Some(err) = reply.get("errorText").and_then(Value::as_str) {
            panic!("cdp: navigate to {url} failed: {err}");
        }
        let Some(loader) = reply.get("loaderId").and_then(Value::as_str) else {
            return;
        };
        let deadline = Instant::now() + LOAD_TIMEOUT;
        let mut sessions = lock(&self.conn.sessions);
        loop {
            if sessions
                .get(&self.session)
                .is_some_and(|s| s.loaded.iter().any(|l| l == loader))
            {
                return;
            }
            if self.conn.dead.load(Ordering::SeqCst) {
                drop(sessions);
                self.conn.died(&format!("waiting for the load of {url}"));
            }
            let now = Instant::now();
            if now >= deadline {
                drop(sessions);
                panic!(
                    "cdp: {url} did not fire its load event within {LOAD_TIMEOUT:?}; console:\n{}",
                    self.console().join("\n")
                );
            }
            sessions = self
                .conn
                .changed
                .wait_timeout(sessions, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Evaluates `js` in the page (promises are awaited) and returns its value as JSON
    /// (`undefined` is `null`; `NaN`, `Infinity`, `-0` and bigints come back as strings).
    /// Panics with the exception on a JavaScript exception.
    pub fn eval(&self, js: &str) -> Value {
        match self.try_eval(js) {
            Ok(v) => v,
            Err(e) => panic!("cdp: evaluating `{js}` threw: {e}"),
        }
    }

    /// Evaluates the expression `js` every ~50 ms until its value is truthy and returns that
    /// value. Exceptions and lost contexts (a navigation in between) count as not yet. Panics
    /// after `within`, naming the expression, its last value or error, and the console so far.
    pub fn wait_for(&self, js: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.try_eval(js) {
                Ok(v) if truthy(&v) => return v,
                Ok(v) => format!("last value: {v}"),
                Err(e) => format!("last error: {e}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "cdp: `{js}` was not truthy within {within:?} ({last}); console:\n{}",
                    self.console().join("\n")
                );
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Writes a PNG screenshot of the viewport to `path`, creating its parent directories.
    pub fn screenshot(&self, path: &Path) {
        let reply = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = str_field(&reply, "data", "Page.captureScreenshot");
        let png = base64_decode(&data)
            .unwrap_or_else(|| panic!("cdp: Page.captureScreenshot returned bad base64"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cdp: create {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cdp: write {}: {e}", path.display()));
    }

    /// Console calls, uncaught exceptions and browser log entries seen so far, oldest first, as
    /// `"<level>: <text>"` (`"log: ..."`, `"error: ..."`, `"warning: ..."`, `"exception: ..."`).
    /// The last 2,000 are kept.
    pub fn console(&self) -> Vec<String> {
        lock(&self.conn.sessions)
            .get(&self.session)
            .map(|s| s.console.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every network response that finished loading so far, in order (the last 2,000).
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.conn.sessions)
            .get(&self.session)
            .map(|s| s.requests.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Sends a raw DevTools command in this page's session and returns its result; panics on an
    /// error reply.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.conn.call(Some(&self.session), method, params)
    }

    fn try_eval(&self, js: &str) -> Result<Value, String> {
        let params = json!({
            "expression": js,
            "awaitPromise": true,
            "returnByValue": true,
            "userGesture": true,
        });
        let reply = self
            .conn
            .try_call(Some(&self.session), "Runtime.evaluate", params)?;
        if let Some(ex) = reply.get("exceptionDetails") {
            return Err(exception_text(ex));
        }
        let result = reply.get("result").unwrap_or(&Value::Null);
        if let Some(v) = result.get("value") {
            return Ok(v.clone());
        }
        Ok(result
            .get("unserializableValue")
            .cloned()
            .unwrap_or(Value::Null))
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        lock(&self.conn.sessions).remove(&self.session);
        if !self.conn.dead.load(Ordering::SeqCst) {
            // Fire and forget: nobody waits for this reply.
            let id = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
            let _ = self.conn.send(&json!({
                "id": id,
                "method": "Target.closeTarget",
                "params": { "targetId": self.target },
            }));
        }
    }
}

impl Conn {
    /// Sends a command and waits for its result; panics on an error reply.
    fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_call(session, method, params) {
            Ok(v) => v,
            Err(e) => panic!("cdp: {method} failed: {e}"),
        }
    }

    /// Sends a command and waits for its reply. Panics on a timeout and when the browser dies;
    /// an error reply (`{"error": ...}`) comes back as its message.
    fn try_call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.closed.is_some() {
                drop(pending);
                self.died(&format!("sending {method}"));
            }
            pending.waiters.insert(id, tx);
        }
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = Value::from(s);
        }
        if let Err(e) = self.send(&msg) {
            lock(&self.pending).waiters.remove(&id);
            self.died(&format!("sending {method} ({e})"));
        }
        let reply = match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(reply) => reply,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.died(&format!("waiting for the reply to {method}"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.pending).waiters.remove(&id);
                panic!(
                    "cdp: {method} got no reply within {COMMAND_TIMEOUT:?}; chromium stderr:\n{}",
                    self.stderr_tail()
                );
            }
        };
        if let Some(err) = reply.get("error") {
            let message = err.get("message").and_then(Value::as_str).unwrap_or("");
            let data = err.get("data").and_then(Value::as_str).unwrap_or("");
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
            let text = if data.is_empty() {
                format!("{message} (code {code})")
            } else {
                format!("{message}: {data} (code {code})")
            };
            return Err(text);
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    fn send(&self, msg: &Value) -> std::io::Result<()> {
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        let mut w = lock(&self.writer);
        w.write_all(&bytes)?;
        w.flush()
    }

    /// Panics saying the browser is gone, with its exit status and stderr.
    fn died(&self, doing: &str) -> ! {
        let status = {
            let mut child = lock(&self.child);
            // Give the exit a moment to be reaped: EOF usually comes just before it.
            let mut status = None;
            for _ in 0..25 {
                if let Ok(Some(s)) = child.try_wait() {
                    status = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            status.map_or_else(|| "still running".to_string(), |s| s.to_string())
        };
        let why = lock(&self.pending)
            .closed
            .clone()
            .unwrap_or_else(|| "write failed".into());
        panic!(
            "cdp: chromium is gone ({why}; {status}) while {doing}; chromium stderr ({}):\n{}",
            self.stderr_log.display(),
            self.stderr_tail()
        );
    }

    /// The end of Chromium's stderr, without its D-Bus complaints (there is no bus here; they
    /// are noise).
    fn stderr_tail(&self) -> String {
        let Ok(mut f) = std::fs::File::open(&self.stderr_log) else {
            return "(no stderr log)".into();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * STDERR_TAIL)));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        let mut kept = Vec::new();
        let mut bytes = 0;
        for line in text.lines().rev().filter(|l| !l.contains(":ERROR:dbus/")) {
            bytes += line.len() + 1;
            if bytes > STDERR_TAIL as usize {
                break;
            }
            kept.push(line);
        }
        kept.reverse();
        if kept.is_empty() {
            return "(empty, apart from D-Bus noise)".into();
        }
        kept.join("\n")
    }

    /// The reader thread: one NUL-terminated message at a time until EOF.
    fn read_loop(&self, out: ChildStdout) {
        let mut r = BufReader::new(out);
        let mut buf = Vec::new();
        let why = loop {
            buf.clear();
            match r.read_until(0, &mut buf) {
                Ok(0) => break "EOF on the DevTools pipe".to_string(),
                Ok(_) => {
                    if buf.last() == Some(&0) {
                        buf.pop();
                    }
                    match serde_json::from_slice::<Value>(&buf) {
                        Ok(msg) => self.dispatch(msg),
                        Err(e) => eprintln!("cdp: unparsable DevTools message ({e})"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break format!("reading the DevTools pipe: {e}"),
            }
        };
        {
            let mut pending = lock(&self.pending);
            pending.closed = Some(why);
            // Dropping the senders wakes every waiting caller with `Disconnected`.
            pending.waiters.clear();
        }
        self.dead.store(true, Ordering::SeqCst);
        let _sessions = lock(&self.sessions);
        self.changed.notify_all();
    }

    fn dispatch(&self, msg: Value) {
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            if let Some(tx) = lock(&self.pending).waiters.remove(&id) {
                let _ = tx.send(msg);
            }
            return;
        }
        let (Some(method), Some(session)) = (
            msg.get("method").and_then(Value::as_str),
            msg.get("sessionId").and_then(Value::as_str),
        ) else {
            return; // a browser-level event; nothing here needs them
        };
        let params = msg.get("params").unwrap_or(&Value::Null);
        let mut sessions = lock(&self.sessions);
        let Some(s) = sessions.get_mut(session) else {
            return; // a page already dropped, or one attached by someone else
        };
        match method {
            "Runtime.consoleAPICalled" => {
                let kind = params.get("type").and_then(Value::as_str).unwrap_or("log");
                let text = params
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|args| args.iter().map(remote_text).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                push_capped(&mut s.console, format!("{kind}: {text}"), KEEP);
            }
            "Runtime.exceptionThrown" => {
                let text = params
                    .get("exceptionDetails")
                    .map(exception_text)
                    .unwrap_or_default();
                push_capped(&mut s.console, format!("exception: {text}"), KEEP);
            }
            "Log.entryAdded" => {
                let entry = params.get("entry").unwrap_or(&Value::Null);
                let level = entry.get("level").and_then(Value::as_str).unwrap_or("info");
                let text = entry.get("text").and_then(Value::as_str).unwrap_or("");
                let line = match entry.get("url").and_then(Value::as_str) {
                    Some(url) if !url.is_empty() => format!("{level}: {text} ({url})"),
                    _ => format!("{level}: {text}"),
                };
                push_capped(&mut s.console, line, KEEP);
            }
            "Network.responseReceived" => {
                let id = params.get("requestId").and_then(Value::as_str);
                let resp = params.get("response").unwrap_or(&Value::Null);
                if let Some(id) = id {
                    let req = Request {
                        url: resp.get("url").and_then(Value::as_str).unwrap_or("").into(),
                        status: resp
                            .get("status")
                            .and_then(Value::as_f64)
                            .map_or(0, |n| n as u16),
                        encoded_bytes: 0,
                        mime: resp
                            .get("mimeType")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                    };
                    s.inflight.retain(|(r, _)| r != id);
                    push_capped(&mut s.inflight, (id.to_string(), req), KEEP);
                }
            }
            "Network.loadingFinished" => {
                let id = params.get("requestId").and_then(Value::as_str);
                if let Some(at) = id.and_then(|id| s.inflight.iter().position(|(r, _)| r == id)) {
                    if let Some((_, mut req)) = s.inflight.remove(at) {
                        req.encoded_bytes = params
                            .get("encodedDataLength")
                            .and_then(Value::as_f64)
                            .map_or(0, |n| n as u64);
                        push_capped(&mut s.requests, req, KEEP);
                    }
                }
            }
            "Network.loadingFailed" => {
                if let Some(id) = params.get("requestId").and_then(Value::as_str) {
                    s.inflight.retain(|(r, _)| r != id);
                }
            }
            "Page.lifecycleEvent" => {
                let name = params.get("name").and_then(Value::as_str);
                let loader = params.get("loaderId").and_then(Value::as_str);
                if let (Some("load"), Some(loader)) = (name, loader) {
                    push_capped(&mut s.loaded, loader.to_string(), KEEP_LOADS);
                }
            }
            _ => return,
        }
        self.changed.notify_all();
    }
}

/// A required string field of a command's result.
fn str_field(v: &Value, field: &str, method: &str) -> String {
    match v.get(field).and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => panic!("cdp: {method} returned no {field}: {v}"),
    }
}

/// JavaScript truthiness of a value returned by value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        // `unserializableValue`s arrive as strings too: "NaN" and "-0" are falsy, "0n" as well.
        Value::String(s) => !(s.is_empty() || s == "NaN" || s == "-0" || s == "0n"),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// One console argument (a `Runtime.RemoteObject`) as text: strings bare, other values as
/// JSON, objects from their preview (`{a: 1, b: "x"}`) or description (`Error: ...` with stack).
fn remote_text(o: &Value) -> String {
    let field = |k: &str| o.get(k).and_then(Value::as_str);
    if let Some(v) = o.get("value") {
        return v.as_str().map_or_else(|| v.to_string(), str::to_string);
    }
    if let Some(u) = field("unserializableValue") {
        return u.to_string();
    }
    let preview = o
        .get("preview")
        .filter(|_| field("subtype") != Some("error"));
    if let Some(props) = preview.and_then(|p| p.get("properties")?.as_array().cloned()) {
        let array = field("subtype") == Some("array");
        let items: Vec<String> = props
            .iter()
            .map(|p| {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("?");
                let value = p.get("value").and_then(Value::as_str).unwrap_or("");
                let value = if p.get("type").and_then(Value::as_str) == Some("string") {
                    Value::from(value).to_string()
                } else {
                    value.to_string()
                };
                if array {
                    value
                } else {
                    format!("{name}: {value}")
                }
            })
            .collect();
        let more = preview.and_then(|p| p.get("overflow")?.as_bool()) == Some(true);
        let body = items.join(", ") + if more { ", ..." } else { "" };
        return if array {
            format!("[{body}]")
        } else {
            format!("{{{body}}}")
        };
    }
    field("description")
        .or_else(|| field("type"))
        .unwrap_or("?")
        .to_string()
}

/// A `Runtime.ExceptionDetails` as text: the exception's description (message and stack), else
/// the summary text, with the location.
fn exception_text(ex: &Value) -> String {
    let described = ex
        .get("exception")
        .and_then(|e| e.get("description").or_else(|| e.get("value")))
        .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string));
    let text = described.unwrap_or_else(|| {
        ex.get("text")
            .and_then(Value::as_str)
            .unwrap_or("exception")
            .to_string()
    });
    match ex.get("url").and_then(Value::as_str) {
        Some(url) if !url.is_empty() => {
            let line = ex.get("lineNumber").and_then(Value::as_u64).unwrap_or(0) + 1;
            format!("{text} ({url}:{line})")
        }
        _ => text,
    }
}

/// Standard base64 (padding and whitespace tolerated); `None` on any other byte.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
