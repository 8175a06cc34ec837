//! The systemd notify protocol against the real binary, with the test in systemd's place:
//! `READY=1` once it listens (`Type=notify`), `WATCHDOG=1` from its event loop at half of
//! `WATCHDOG_USEC` (`WatchdogSec=`), `STOPPING=1` on SIGTERM, then a clean exit.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pincer-gateway");

fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification within 5 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("pincer-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--port",
            "0",
            "--token",
            "notify-test",
            "--state-dir",
        ])
        .arg(dir.join("state"))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pincer-gateway");

    let ready = next(&sock);
    assert!(
        ready.contains("READY=1") && ready.contains("STATUS=listening on ws://127.0.0.1:"),
        "{ready:?}"
    );
    // Every 100 ms: at least 5 pings in a second, however busy the machine is.
    let until = Instant::now() + Duration::from_secs(1);
    let mut pings = 0;
    while Instant::now() < until {
        if next(&sock) == "WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(
        pings >= 5,
        "{pings} WATCHDOG=1 in a second (WATCHDOG_USEC=200000)"
    );

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let stopping = (0..50)
        .map(|_| next(&sock))
        .find(|m| m != "WATCHDOG=1")
        .expect("a notification other than the watchdog");
    assert_eq!(stopping, "STOPPING=1");
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
