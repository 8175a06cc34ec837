//! `pincer-node doctor`: what works on this board and what does not, one [`Check`] per line —
//! the state dir and identity, the capability classes compiled in and enabled, each hardware
//! class (what is there or why not) and whether the gateway answers with `connect.challenge`.
//! It reads and probes; it never connects as the node or changes the state dir beyond making
//! the identity on first use.

use std::fmt;

use pincer_client::identity::{Identity, IdentityFiles};

use crate::commands::{Registry, AVAILABLE_CAPS};
use crate::config::NodeConfig;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Does not work; the text says why.
    Fail,
    /// A fact, neither good nor bad.
    Info,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`identity`, `camera`, `gateway`, …).
    pub area: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub text: String,
}

impl Check {
    fn new(area: &'static str, status: Status, text: impl Into<String>) -> Check {
        Check {
            area,
            status,
            text: text.into(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Ok => "ok  ",
            Status::Fail => "FAIL  ",
            Status::Info => "",
        };
        write!(f, "{:<13} {status}{}", self.area, self.text)
    }
}

/// Runs every check for `cfg`.
pub async fn report(cfg: &NodeConfig) -> Vec<Check> {
    let mut out = vec![Check::new(
        "state dir",
        Status::Info,
        cfg.state_dir.display().to_string(),
    )];
    match Identity::load_or_create(IdentityFiles::node(&cfg.state_dir)) {
        Ok(id) => {
            out.push(Check::new("identity", Status::Ok, id.device_id.clone()));
            out.push(Check::new(
                "device token",
                Status::Info,
                if id.device_token("node").is_some() {
                    "stored"
                } else {
                    "none yet (first connect pairs)"
                },
            ));
        }
        Err(e) => out.push(Check::new("identity", Status::Fail, e.to_string())),
    }
    out.push(Check::new(
        "compiled caps",
        Status::Info,
        AVAILABLE_CAPS.join(", "),
    ));
    out.push(Check::new(
        "enabled caps",
        Status::Info,
        if cfg.caps.is_empty() {
            "(none: --caps ...)".to_owned()
        } else {
            cfg.caps.join(", ")
        },
    ));
    let reg = Registry::for_caps(&cfg.caps, &cfg.setup());
    out.push(Check::new("commands", Status::Info, reg.names().join(", ")));
    let (family, model) = crate::board::identify();
    out.push(Check::new(
        "board",
        Status::Info,
        format!(
            "{family}{}",
            model.map(|m| format!(" ({m})")).unwrap_or_default()
        ),
    ));
    out.extend(hardware(&cfg.gpsd).await);
    out.push(tailnet(cfg).await);
    out.push(match crate::link::probe(cfg).await {
        Ok(()) => Check::new(
            "gateway",
            Status::Ok,
            format!("{} answers with connect.challenge", cfg.gateway),
        ),
        Err(e) => Check::new("gateway", Status::Fail, format!("{}: {e}", cfg.gateway)),
    });
    out
}

/// The board's tailnet: whether the local `tailscaled` is up, with which address and login,
/// and whether the gateway URL is a tailnet address (the `gateway` line then says whether it
/// answers over it). The socket is `$PINCER_TAILSCALE_SOCKET`, else Tailscale's default.
async fn tailnet(cfg: &NodeConfig) -> Check {
    use pincer_os::tailscale::{is_tailnet, LocalApi, DEFAULT_SOCKET};
    let socket = std::env::var_os("PINCER_TAILSCALE_SOCKET")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| DEFAULT_SOCKET.into());
    let gateway_host = cfg
        .gateway
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?']).next())
        .and_then(|hp| hp.rsplit_once(':').map_or(Some(hp), |(h, _)| Some(h)))
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok());
    let via = match gateway_host {
        Some(ip) if is_tailnet(ip) => format!("; the gateway {ip} is a tailnet address"),
        _ => String::new(),
    };
    match LocalApi::new(socket).status().await {
        Err(e) => Check::new("tailnet", Status::Info, format!("{e}{via}")),
        Ok(s) if !s.running() => Check::new(
            "tailnet",
            Status::Fail,
            format!("tailscaled is {} (tailscale up){via}", s.backend_state),
        ),
        Ok(s) => {
            let addrs: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
            let mut text = format!("up: {}", addrs.join(", "));
            if let Some(l) = &s.login {
                text.push_str(&format!(", login {l}"));
            }
            if let Some(n) = &s.dns_name {
                text.push_str(&format!(", {n}"));
            }
            if !s.tun {
                text.push_str(", userspace mode (no address on this host)");
            }
            Check::new("tailnet", Status::Ok, text + &via)
        }
    }
}

/// The encoder `camera.clip` / `screen.record` use, and each hardware encoder found, tried
/// with a short test stream.
#[cfg(feature = "video")]
fn video() -> Vec<Check> {
    use pincer_hal::video::{self, m2m};
    let mut out = Vec::new();
    for d in m2m::list(std::path::Path::new("/dev")) {
        let api = if d.mplane {
            "multi-planar"
        } else {
            "single-planar"
        };
        out.push(match m2m::self_test(&d, 10) {
            Ok(t) if t.units >= t.pictures && t.bytes > 0 => Check::new(
                "video",
                Status::Ok,
                format!(
                    "{} {}: {} ({api}): {} test pictures in, {} units out, {} bytes, head {}",
                    d.path,
                    d.card,
                    d.coded.join(","),
                    t.pictures,
                    t.units,
                    t.bytes,
                    t.head
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ),
            ),
            Ok(t) => Check::new(
                "video",
                Status::Fail,
                format!(
                    "{} {}: {} test pictures in, only {} units out",
                    d.path, d.card, t.pictures, t.units
                ),
            ),
            Err(e) => Check::new("video", Status::Fail, format!("{} {}: {e}", d.path, d.card)),
        });
    }
    let name = video::encoder_name();
    let status = if name.starts_with("none") {
        Status::Fail
    } else {
        Status::Ok
    };
    out.push(Check::new("video", status, format!("clips use {name}")));
    out
}

/// One check per hardware class compiled in: what is there, or why not.
#[allow(unused_variables, unused_mut)] // (a build without hardware classes checks none)
async fn hardware(gpsd: &str) -> Vec<Check> {
    let mut out = Vec::new();
    #[cfg(feature = "camera")]
    {
        use pincer_hal::camera::{Access, Cameras as _};
        let cams = pincer_hal::camera::Local::default().list();
        if cams.is_empty() {
            out.push(Check::new(
                "camera",
                Status::Fail,
                "no V4L2 capture device or libcamera camera (plugged in? `video` group?)",
            ));
        }
        for c in cams {
            let (status, path) = match &c.access {
                Access::V4l2 => (Status::Ok, format!("V4L2, {}", c.driver)),
                Access::Tool(tool) => (Status::Ok, format!("libcamera via {tool}")),
                Access::Unavailable(why) => (Status::Fail, format!("libcamera: {why}")),
            };
            out.push(Check::new(
                "camera",
                status,
                format!("{} {} ({path})", c.id, c.name),
            ));
        }
    }
    #[cfg(feature = "video")]
    out.extend(video());
    #[cfg(feature = "screen")]
    {
        use pincer_hal::screen::Screens as _;
        let fbs = pincer_hal::screen::Framebuffers::default();
        if let Some(d) = fbs.display() {
            out.push(match pincer_hal::screen::x11::capture(d, None) {
                Ok(img) => Check::new(
                    "screen",
                    Status::Ok,
                    format!("X display {d} {}x{}", img.width, img.height),
                ),
                Err(e) => Check::new("screen", Status::Fail, format!("X display {d}: {e}")),
            });
        }
        let list = fbs.list();
        if list.is_empty() {
            out.push(Check::new(
                "screen",
                Status::Fail,
                "no framebuffer (/dev/fb*)",
            ));
        }
        for (i, name) in list {
            out.push(match fbs.geometry(i) {
                Ok(g) => Check::new(
                    "screen",
                    Status::Ok,
                    format!(
                        "fb{i} {name} {}x{} {} bpp",
                        g.width, g.height, g.bits_per_pixel
                    ),
                ),
                Err(e) => Check::new("screen", Status::Fail, format!("fb{i} {name}: {e}")),
            });
        }
    }
    #[cfg(feature = "audio")]
    {
        use pincer_hal::audio::AudioDevices as _;
        let devs = pincer_hal::audio::Alsa::default().list();
        if devs.is_empty() {
            out.push(Check::new(
                "audio",
                Status::Fail,
                "no ALSA PCM device (/proc/asound/pcm)",
            ));
        }
        for d in devs {
            let dir = match (d.capture, d.playback) {
                (true, true) => "in+out",
                (true, false) => "in",
                _ => "out",
            };
            out.push(Check::new(
                "audio",
                Status::Ok,
                format!("{} {} ({dir})", d.id, d.name),
            ));
        }
    }
    #[cfg(feature = "location")]
    out.push(
        match tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect(gpsd),
        )
        .await
        {
            Ok(Ok(_)) => Check::new("location", Status::Ok, format!("gpsd answers at {gpsd}")),
            Ok(Err(e)) => Check::new("location", Status::Fail, format!("gpsd at {gpsd}: {e}")),
            Err(_) => Check::new(
                "location",
                Status::Fail,
                format!("gpsd at {gpsd}: timed out"),
            ),
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_the_columns_scripts_read() {
        assert_eq!(
            Check::new("gateway", Status::Ok, "ws://x answers").to_string(),
            "gateway       ok  ws://x answers"
        );
        assert_eq!(
            Check::new("identity", Status::Fail, "bad").to_string(),
            "identity      FAIL  bad"
        );
        assert_eq!(
            Check::new("state dir", Status::Info, "/s").to_string(),
            "state dir     /s"
        );
    }
}
