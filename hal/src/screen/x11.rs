//! Screen capture from an X server: the core protocol's `GetImage` of the root window, spoken
//! over the display's socket (`/tmp/.X11-unix/X<n>`, or TCP 6000+n for `host:n`), with the
//! `MIT-MAGIC-COOKIE-1` from `$XAUTHORITY` / `~/.Xauthority` when there is one.
//!
//! One request needs only the connection setup and `GetImage`, so this is written out here
//! rather than pulling in a whole X binding. Every length read from the server is checked
//! against what arrived; replies are capped at 64 MiB.

use std::io::{self, Read, Write};
use std::time::Duration;

use crate::image::{PixelFormat, Rgb};

/// Why an X capture failed.
#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    /// `DISPLAY` (given) does not parse as `[host]:number[.screen]`.
    #[error("DISPLAY {0:?} is not a display name this node understands")]
    BadDisplay(String),
    /// The display's socket (first) could not be connected.
    #[error("cannot reach X display {0}: {1}")]
    Connect(String, io::Error),
    /// The server refused the connection setup (its reason given), e.g. missing authorization.
    #[error("X server refused the connection: {0}")]
    Refused(String),
    /// The display has no screen with that number.
    #[error("X display has no screen {0}")]
    NoScreen(u32),
    /// `GetImage` was answered with an X error (its code given).
    #[error("X server answered GetImage with error {0}")]
    Request(u8),
    /// The root window's depth and bits per pixel (given) are not a layout this node reads.
    #[error("unsupported X pixel format: depth {0}, {1} bits per pixel")]
    Unsupported(u8, u8),
    /// A reply does not hold together: too short, or missing what the setup must list.
    #[error("malformed X reply: {0}")]
    Malformed(&'static str),
    /// Reading or writing the connection failed.
    #[error("X connection: {0}")]
    Io(#[from] io::Error),
}

const MAX_REPLY: usize = 64 << 20;

/// A parsed `DISPLAY`: host (empty = local socket), display number, screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Display {
    /// Host to reach over TCP; empty means the local socket (`unix:n` parses to empty).
    pub host: String,
    /// Display number: socket `/tmp/.X11-unix/X<n>`, or TCP port 6000 + n.
    pub number: u32,
    /// Screen number on that display.
    pub screen: u32,
}

impl Display {
    /// `:0`, `:1.0`, `unix:2`, `localhost:10.0`.
    pub fn parse(s: &str) -> Result<Display, X11Error> {
        let bad = || X11Error::BadDisplay(s.to_owned());
        let (host, rest) = s.rsplit_once(':').ok_or_else(bad)?;
        let (num, screen) = rest.split_once('.').unwrap_or((rest, "0"));
        Ok(Display {
            host: if host == "unix" {
                String::new()
            } else {
                host.to_owned()
            },
            number: num.parse().map_err(|_| bad())?,
            screen: screen.parse().map_err(|_| bad())?,
        })
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(d: &Display, timeout: Duration) -> Result<Box<dyn Stream>, X11Error> {
    let name = format!("{}:{}", d.host, d.number);
    if d.host.is_empty() {
        let path = format!("/tmp/.X11-unix/X{}", d.number);
        let s = std::os::unix::net::UnixStream::connect(&path)
            .map_err(|e| X11Error::Connect(name, e))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Box::new(s))
    } else {
        let addr = (d.host.as_str(), 6000 + d.number as u16);
        let s = std::net::TcpStream::connect(addr).map_err(|e| X11Error::Connect(name, e))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Box::new(s))
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// The `MIT-MAGIC-COOKIE-1` for display `number` from an Xauthority file's bytes.
pub fn cookie_for(xauth: &[u8], number: u32, hostname: &str) -> Option<Vec<u8>> {
    let mut at = 0;
    let field = |at: &mut usize| -> Option<&[u8]> {
        let len = u16::from_be_bytes([*xauth.get(*at)?, *xauth.get(*at + 1)?]) as usize;
        let v = xauth.get(*at + 2..*at + 2 + len)?;
        *at += 2 + len;
        Some(v)
    };
    let want = number.to_string();
    while at + 2 <= xauth.len() {
        let family = u16::from_be_bytes([xauth[at], xauth[at + 1]]);
        at += 2;
        let address = field(&mut at)?;
        let num = field(&mut at)?;
        let name = field(&mut at)?;
        let data = field(&mut at)?;
        // 256 = FamilyLocal (by hostname), 65535 = FamilyWild.
        let host_ok = family == 65535 || (family == 256 && address == hostname.as_bytes());
        let num_ok = num.is_empty() || num == want.as_bytes();
        if host_ok && num_ok && name == b"MIT-MAGIC-COOKIE-1" {
            return Some(data.to_vec());
        }
    }
    None
}

/// The authority file X clients use: `$XAUTHORITY`, else `~/.Xauthority`.
pub fn default_xauthority() -> Option<std::path::PathBuf> {
    std::env::var_os("XAUTHORITY")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".Xauthority"))
        })
}

fn local_cookie(xauthority: Option<&std::path::Path>, number: u32) -> Option<Vec<u8>> {
    let bytes = std::fs::read(xauthority?).ok()?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    cookie_for(&bytes, number, host.trim())
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, X11Error> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(X11Error::Malformed("short setup reply"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, X11Error> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(X11Error::Malformed("short setup reply"))
}

/// What capture needs from the connection setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScreenInfo {
    root: u32,
    width: u16,
    height: u16,
    depth: u8,
    bpp: u8,
    pad: u8,
    masks: (u32, u32, u32),
    msb_first: bool,
}

/// Parses the setup reply's additional data for `screen`.
fn parse_setup(b: &[u8], screen: u32) -> Result<ScreenInfo, X11Error> {
    let vendor_len = u16_at(b, 16)? as usize;
    let screens = *b.get(20).ok_or(X11Error::Malformed("short setup reply"))?;
    let formats = *b.get(21).ok_or(X11Error::Malformed("short setup reply"))? as usize;
    let msb_first = b.get(22).copied() == Some(1);
    let fmt_at = 32 + vendor_len + pad4(vendor_len);
    let mut pixmap_formats = Vec::new();
    for i in 0..formats {
        let f = b
            .get(fmt_at + 8 * i..fmt_at + 8 * i + 3)
            .ok_or(X11Error::Malformed("short formats"))?;
        pixmap_formats.push((f[0], f[1], f[2]));
    }
    let mut at = fmt_at + 8 * formats;
    for s in 0..u32::from(screens) {
        let root = u32_at(b, at)?;
        let width = u16_at(b, at + 20)?;
        let height = u16_at(b, at + 22)?;
        let root_visual = u32_at(b, at + 32)?;
        let depth = *b.get(at + 38).ok_or(X11Error::Malformed("short screen"))?;
        let ndepths = *b.get(at + 39).ok_or(X11Error::Malformed("short screen"))?;
        at += 40;
        let mut masks = None;
        for _ in 0..ndepths {
            let nvis = u16_at(b, at + 2)? as usize;
            at += 8;
            for v in 0..nvis {
                let vat = at + 24 * v;
                if u32_at(b, vat)? == root_visual {
                    masks = Some((
                        u32_at(b, vat + 8)?,
                        u32_at(b, vat + 12)?,
                        u32_at(b, vat + 16)?,
                    ));
                }
            }
            at += 24 * nvis;
        }
        if s == screen {
            let (_, bpp, pad) = pixmap_formats
                .iter()
                .copied()
                .find(|(d, _, _)| *d == depth)
                .ok_or(X11Error::Malformed("no pixmap format for the root depth"))?;
            return Ok(ScreenInfo {
                root,
                width,
                height,
                depth,
                bpp,
                pad,
                masks: masks.ok_or(X11Error::Malformed("root visual not listed"))?,
                msb_first,
            });
        }
    }
    Err(X11Error::NoScreen(screen))
}

/// Parses an X server's connection setup reply (the bytes after its 8-byte header) for
/// `screen` and returns its width, height and depth: every length and offset is checked, so
/// a hostile server's reply is an error, never a panic (the `x11_setup` fuzz target drives it).
pub fn setup_geometry(reply: &[u8], screen: u32) -> Result<(u16, u16, u8), X11Error> {
    parse_setup(reply, screen).map(|s| (s.width, s.height, s.depth))
}

fn read_exact_n(s: &mut dyn Stream, n: usize) -> Result<Vec<u8>, X11Error> {
    if n > MAX_REPLY {
        return Err(X11Error::Malformed("reply larger than 64 MiB"));
    }
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}

/// Captures the whole root window of screen `screen` of `display` (default: the display
/// name's own screen).
pub fn capture(display: &str, screen: Option<u32>) -> Result<Rgb, X11Error> {
    capture_with(display, screen, default_xauthority().as_deref())
}

/// [`capture`] with the cookie from `xauthority` (none: connect without authentication).
pub fn capture_with(
    display: &str,
    screen: Option<u32>,
    xauthority: Option<&std::path::Path>,
) -> Result<Rgb, X11Error> {
    let mut d = Display::parse(display)?;
    if let Some(n) = screen {
        d.screen = n;
    }
    let mut s = connect(&d, Duration::from_secs(5))?;
    let cookie = local_cookie(xauthority, d.number);
    let (auth_name, auth_data): (&[u8], &[u8]) = match &cookie {
        Some(c) => (b"MIT-MAGIC-COOKIE-1", c),
        None => (b"", b""),
    };
    let mut req = vec![b'l', 0, 11, 0, 0, 0];
    req.extend_from_slice(&(auth_name.len() as u16).to_le_bytes());
    req.extend_from_slice(&(auth_data.len() as u16).to_le_bytes());
    req.extend_from_slice(&[0, 0]);
    req.extend_from_slice(auth_name);
    req.extend(std::iter::repeat_n(0u8, pad4(auth_name.len())));
    req.extend_from_slice(auth_data);
    req.extend(std::iter::repeat_n(0u8, pad4(auth_data.len())));
    s.write_all(&req)?;
    let head = read_exact_n(&mut *s, 8)?;
    let extra = u16::from_le_bytes([head[6], head[7]]) as usize * 4;
    let body = read_exact_n(&mut *s, extra)?;
    if head[0] != 1 {
        let reason_len = head[1] as usize;
        let reason = String::from_utf8_lossy(body.get(..reason_len).unwrap_or(&body)).into_owned();
        return Err(X11Error::Refused(reason));
    }
    let info = parse_setup(&body, d.screen)?;
    let layout = match (info.depth, info.bpp, info.masks, info.msb_first) {
        (24 | 32, 32, (r, g, b), false) if [r, g, b].iter().all(|m| m.count_ones() == 8) => {
            PixelFormat::Rgb32 {
                r: r.trailing_zeros() as u8,
                g: g.trailing_zeros() as u8,
                b: b.trailing_zeros() as u8,
            }
        }
        (16, 16, (0xF800, 0x07E0, 0x001F), false) => PixelFormat::Rgb565,
        _ => return Err(X11Error::Unsupported(info.depth, info.bpp)),
    };
    // GetImage (73), ZPixmap, whole root window, all planes.
    let mut get = vec![73u8, 2];
    get.extend_from_slice(&5u16.to_le_bytes());
    get.extend_from_slice(&info.root.to_le_bytes());
    get.extend_from_slice(&0i16.to_le_bytes());
    get.extend_from_slice(&0i16.to_le_bytes());
    get.extend_from_slice(&info.width.to_le_bytes());
    get.extend_from_slice(&info.height.to_le_bytes());
    get.extend_from_slice(&u32::MAX.to_le_bytes());
    s.write_all(&get)?;
    let head = read_exact_n(&mut *s, 32)?;
    if head[0] == 0 {
        return Err(X11Error::Request(head[1]));
    }
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize * 4;
    let data = read_exact_n(&mut *s, len)?;
    let bits = usize::from(info.width) * usize::from(info.bpp);
    let pad_bits = usize::from(info.pad.max(8));
    let stride = bits.div_ceil(pad_bits) * pad_bits / 8;
    layout
        .to_rgb(
            &data,
            u32::from(info.width),
            u32::from(info.height),
            stride as u32,
        )
        .map_err(|_| X11Error::Malformed("image shorter than the screen"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(
            Display::parse(":0").unwrap(),
            Display {
                host: String::new(),
                number: 0,
                screen: 0
            }
        );
        assert_eq!(Display::parse("unix:2.1").unwrap().screen, 1);
        assert_eq!(Display::parse("localhost:10.0").unwrap().host, "localhost");
        assert!(Display::parse("nonsense").is_err());
        assert!(Display::parse(":x").is_err());
    }

    #[test]
    fn xauthority_entries() {
        let mut f = Vec::new();
        let entry = |f: &mut Vec<u8>, family: u16, addr: &[u8], num: &[u8], data: &[u8]| {
            f.extend_from_slice(&family.to_be_bytes());
            for v in [addr, num, b"MIT-MAGIC-COOKIE-1".as_slice(), data] {
                f.extend_from_slice(&(v.len() as u16).to_be_bytes());
                f.extend_from_slice(v);
            }
        };
        entry(&mut f, 256, b"otherhost", b"0", &[1; 16]);
        entry(&mut f, 256, b"pi", b"0", &[2; 16]);
        entry(&mut f, 65535, b"", b"1", &[3; 16]);
        assert_eq!(cookie_for(&f, 0, "pi"), Some(vec![2; 16]));
        assert_eq!(cookie_for(&f, 1, "pi"), Some(vec![3; 16]));
        assert_eq!(cookie_for(&f, 2, "pi"), None);
        // A truncated file ends the search instead of reading past it.
        assert_eq!(cookie_for(&f[..f.len() - 3], 1, "pi"), None);
    }

    #[test]
    fn no_server_is_a_typed_error() {
        assert!(matches!(capture(":987", None), Err(X11Error::Connect(..))));
    }
}
