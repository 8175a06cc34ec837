//! `screen` from a real X server: Xvfb with `MIT-MAGIC-COOKIE-1` access control, its root
//! window painted by `xsetroot`, captured through the hand-written `GetImage` client; a client
//! without the cookie is refused with a typed error.
//!
//! Needs Xvfb, xsetroot and xauth (Debian: xvfb x11-xserver-utils xauth, installed by
//! `scripts/test.sh`); without them the test says so and passes, unless `PINCER_REQUIRE_XVFB=1`.
#![cfg(feature = "screen")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pincer_hal::screen::x11::{capture_with, X11Error};
use pincer_hal::screen::{Framebuffers, ScreenError, Screens};

struct Xvfb(Child);
impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn xsetroot(display: &str, auth: &Path, colour: &str) {
    let st = Command::new("xsetroot")
        .args(["-display", display, "-solid", colour])
        .env("XAUTHORITY", auth)
        .status()
        .expect("xsetroot");
    assert!(st.success(), "xsetroot {colour}");
}

#[test]
fn root_window_of_a_real_x_server() {
    if !["Xvfb", "xsetroot", "xauth"].iter().all(|t| have(t)) {
        assert!(
            std::env::var("PINCER_REQUIRE_XVFB").map_or(true, |v| v != "1"),
            "Xvfb / xsetroot / xauth not installed"
        );
        eprintln!("skipping: apt-get install xvfb x11-xserver-utils xauth");
        return;
    }
    let dir = std::env::temp_dir().join(format!("pincer-x11-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let number = 90 + std::process::id() % 800;
    let display = format!(":{number}");
    let auth = dir.join("Xauthority");
    let st = Command::new("xauth")
        .args(["-q", "-f"])
        .arg(&auth)
        .args([
            "add",
            &display,
            "MIT-MAGIC-COOKIE-1",
            "00112233445566778899aabbccddeeff",
        ])
        .status()
        .expect("xauth");
    assert!(st.success());
    let _x = Xvfb(
        Command::new("Xvfb")
            .args([
                &display,
                "-screen",
                "0",
                "320x200x24",
                "-nolisten",
                "tcp",
                // Stay up between clients (xsetroot exits at once), as a desktop's server does.
                "-noreset",
                "-auth",
            ])
            .arg(&auth)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb"),
    );
    let socket = format!("/tmp/.X11-unix/X{number}");
    let up = Instant::now();
    while !Path::new(&socket).exists() {
        assert!(up.elapsed() < Duration::from_secs(10), "Xvfb did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Without the cookie: refused, with the server's reason.
    let no_cookie = dir.join("none");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match capture_with(&display, None, Some(&no_cookie)) {
            Err(X11Error::Refused(why)) => {
                assert!(!why.is_empty());
                break;
            }
            // The socket file can appear a moment before the server accepts on it.
            Err(X11Error::Connect(..)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => panic!("capture without the cookie: {other:?}"),
        }
    }

    for (colour, rgb) in [("#ff0000", [255u8, 0, 0]), ("#0000ff", [0, 0, 255])] {
        xsetroot(&display, &auth, colour);
        let img = capture_with(&display, None, Some(&auth)).expect("capture");
        assert_eq!((img.width, img.height), (320, 200));
        assert!(
            img.data.chunks_exact(3).all(|p| p == rgb),
            "root window is not {colour} everywhere"
        );
    }
    // Through the screen class: the X display first; this server has no screen 1.
    let screens = Framebuffers::new("/nonexistent", "/nonexistent")
        .with_display(Some(display.clone()))
        .with_xauthority(Some(auth.clone()));
    let img = screens.capture(0).expect("screen 0 via X");
    assert_eq!(&img.data[..3], &[0, 0, 255]);
    assert!(matches!(
        screens.capture(1),
        Err(ScreenError::X11(X11Error::NoScreen(1)))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
