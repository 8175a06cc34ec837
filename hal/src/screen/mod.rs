//! Screen capture: from the X server named by `DISPLAY` when one answers ([`x11`]), else from
//! Linux framebuffers (`/dev/fbN`): the console of a headless board, or what a KMS driver's
//! fbdev emulation shows (vc4, bochs, simpledrm…).
//!
//! The geometry and pixel layout come from `FBIOGET_VSCREENINFO`, the row stride from sysfs
//! (`/sys/class/graphics/fbN/stride`); the visible area (`xoffset`/`yoffset` into the virtual
//! screen) is read with a plain `pread` — no mmap, so a framebuffer that vanishes cannot fault
//! the process.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

use crate::image::{ImageError, PixelFormat, Rgb};

pub mod x11;

/// Why a screen capture failed; [`ScreenError::code`] maps it to the reference's error codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScreenError {
    /// No framebuffer with that index (first) exists (second: the device path tried).
    #[error("no screen {0} (no {1})")]
    NoScreen(u32, String),
    /// The framebuffer may not be read: `PERMISSION_MISSING`.
    #[error("no permission to read {0} (is the node's user in the `video` group?)")]
    Permission(String),
    /// The framebuffer (first) uses a pixel layout this node cannot read (second: bits per pixel).
    #[error("{0}: unsupported pixel layout ({1} bits per pixel)")]
    Unsupported(String, u32),
    /// Any other OS error on the framebuffer (first).
    #[error("{0}: {1}")]
    Io(String, io::Error),
    /// The captured pixels could not be converted or encoded.
    #[error("{0}: {1}")]
    Image(String, ImageError),
    /// Capture from the X server failed.
    #[error("X11: {0}")]
    X11(#[from] x11::X11Error),
}

impl ScreenError {
    /// The reference-style error code.
    pub fn code(&self) -> &'static str {
        match self {
            ScreenError::Permission(_) => "PERMISSION_MISSING",
            _ => "UNAVAILABLE",
        }
    }
}

/// `struct fb_bitfield`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct Bitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

/// `struct fb_var_screeninfo` (all 32-bit fields: the same layout on every architecture).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct VarScreenInfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: Bitfield,
    green: Bitfield,
    blue: Bitfield,
    transp: Bitfield,
    nonstd: u32,
    activate: u32,
    height: u32,
    width: u32,
    accel_flags: u32,
    pixclock: u32,
    left_margin: u32,
    right_margin: u32,
    upper_margin: u32,
    lower_margin: u32,
    hsync_len: u32,
    vsync_len: u32,
    sync: u32,
    vmode: u32,
    rotate: u32,
    colorspace: u32,
    reserved: [u32; 4],
}

const FBIOGET_VSCREENINFO: u32 = 0x4600;

/// A framebuffer's visible geometry and layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Visible width, pixels.
    pub width: u32,
    /// Visible height, pixels.
    pub height: u32,
    /// Bytes per row of the virtual screen (sysfs `stride`, else `xres_virtual` × bytes per pixel).
    pub stride: u32,
    /// Bits per pixel.
    pub bits_per_pixel: u32,
    /// Byte offset of the visible area's first pixel.
    pub offset: u64,
    /// How a pixel's bytes map to colours.
    pub layout: PixelFormat,
}

/// The screens: an X display (when `DISPLAY` names one), framebuffers under `/dev` and
/// `/sys/class/graphics`.
#[derive(Debug, Clone)]
pub struct Framebuffers {
    dev_dir: PathBuf,
    sys_dir: PathBuf,
    display: Option<String>,
    /// The X authority file (`$XAUTHORITY`, else `~/.Xauthority`).
    xauthority: Option<PathBuf>,
}

impl Default for Framebuffers {
    fn default() -> Self {
        Framebuffers {
            dev_dir: "/dev".into(),
            sys_dir: "/sys/class/graphics".into(),
            display: std::env::var("DISPLAY").ok().filter(|d| !d.is_empty()),
            xauthority: x11::default_xauthority(),
        }
    }
}

fn layout_of(v: &VarScreenInfo, name: &str) -> Result<PixelFormat, ScreenError> {
    match v.bits_per_pixel {
        32 if v.red.length == 8 && v.green.length == 8 && v.blue.length == 8 => {
            Ok(PixelFormat::Rgb32 {
                r: v.red.offset as u8,
                g: v.green.offset as u8,
                b: v.blue.offset as u8,
            })
        }
        24 if v.red.offset == 16 && v.blue.offset == 0 => Ok(PixelFormat::Bgr24),
        24 if v.red.offset == 0 && v.blue.offset == 16 => Ok(PixelFormat::Rgb24),
        16 if v.red.offset == 11 && v.green.length == 6 => Ok(PixelFormat::Rgb565),
        8 if v.grayscale != 0 => Ok(PixelFormat::Grey),
        bpp => Err(ScreenError::Unsupported(name.into(), bpp)),
    }
}

impl Framebuffers {
    /// Framebuffers in other directories (tests).
    pub fn new(dev_dir: impl Into<PathBuf>, sys_dir: impl Into<PathBuf>) -> Framebuffers {
        Framebuffers {
            dev_dir: dev_dir.into(),
            sys_dir: sys_dir.into(),
            display: None,
            xauthority: x11::default_xauthority(),
        }
    }

    /// Captures from X display `display` first (e.g. `:0`).
    pub fn with_display(mut self, display: Option<String>) -> Framebuffers {
        self.display = display;
        self
    }

    /// Authenticates to the X display with the cookie in `path` (none: without a cookie).
    pub fn with_xauthority(mut self, path: Option<PathBuf>) -> Framebuffers {
        self.xauthority = path;
        self
    }

    /// The X display tried first, if any.
    pub fn display(&self) -> Option<&str> {
        self.display.as_deref()
    }

    fn path(&self, index: u32) -> PathBuf {
        self.dev_dir.join(format!("fb{index}"))
    }

    fn open(&self, index: u32) -> Result<(File, String), ScreenError> {
        let path = self.path(index);
        let name = path.to_string_lossy().into_owned();
        match File::open(&path) {
            Ok(f) => Ok((f, name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ScreenError::NoScreen(index, name))
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Err(ScreenError::Permission(name))
            }
            Err(e) => Err(ScreenError::Io(name, e)),
        }
    }

    /// The visible geometry of screen `index`.
    pub fn geometry(&self, index: u32) -> Result<Geometry, ScreenError> {
        let (file, name) = self.open(index)?;
        self.geometry_of(&file, &name, index)
    }

    fn geometry_of(&self, file: &File, name: &str, index: u32) -> Result<Geometry, ScreenError> {
        let mut v = VarScreenInfo::default();
        // SAFETY: the pointer is to a live VarScreenInfo, the struct the ioctl fills.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                FBIOGET_VSCREENINFO as _,
                &mut v as *mut VarScreenInfo,
            )
        };
        if rc != 0 {
            return Err(ScreenError::Io(name.into(), io::Error::last_os_error()));
        }
        let layout = layout_of(&v, name)?;
        let bytes_pp = v.bits_per_pixel.div_ceil(8);
        let stride = std::fs::read_to_string(self.sys_dir.join(format!("fb{index}/stride")))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&s| s >= v.xres_virtual * bytes_pp)
            .unwrap_or(v.xres_virtual * bytes_pp);
        Ok(Geometry {
            width: v.xres,
            height: v.yres,
            stride,
            bits_per_pixel: v.bits_per_pixel,
            offset: u64::from(v.yoffset) * u64::from(stride)
                + u64::from(v.xoffset) * u64::from(bytes_pp),
            layout,
        })
    }
}

/// The screen class: what `screen.snapshot` needs from a backend.
pub trait Screens: Send + Sync {
    /// Screens present: `(index, name)`.
    fn list(&self) -> Vec<(u32, String)>;
    /// What screen `index` shows now.
    fn capture(&self, index: u32) -> Result<Rgb, ScreenError>;
}

impl Screens for Framebuffers {
    /// Screens present: `(index, driver name)`.
    fn list(&self) -> Vec<(u32, String)> {
        let mut out: Vec<(u32, String)> = std::fs::read_dir(&self.sys_dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        let i = n.strip_prefix("fb")?.parse().ok()?;
                        let name = std::fs::read_to_string(e.path().join("name"))
                            .unwrap_or_default()
                            .trim()
                            .to_owned();
                        Some((i, name))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
    /// What screen `index` shows now: X screen `index` of `DISPLAY` when that server answers,
    /// else framebuffer `index`.
    fn capture(&self, index: u32) -> Result<Rgb, ScreenError> {
        if let Some(d) = &self.display {
            match x11::capture_with(d, Some(index), self.xauthority.as_deref()) {
                Ok(img) => return Ok(img),
                Err(e @ x11::X11Error::Connect(..)) => {
                    tracing::debug!(error = %e, "no X server; trying the framebuffer");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (file, name) = self.open(index)?;
        let g = self.geometry_of(&file, &name, index)?;
        let len = g.stride as usize * g.height as usize;
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match file.read_at(&mut buf[done..], g.offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ScreenError::Io(name, e)),
            }
        }
        buf.truncate(done);
        g.layout
            .to_rgb(&buf, g.width, g.height, g.stride)
            .map_err(|e| ScreenError::Image(name, e))
    }
}

/// PNG (8-bit RGB, zlib via miniz_oxide).
pub fn to_png(img: &Rgb) -> Result<Vec<u8>, ScreenError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let io_err = |e: png::EncodingError| ScreenError::Io("png".into(), io::Error::other(e));
    let mut w = enc.write_header().map_err(io_err)?;
    w.write_image_data(&img.data).map_err(io_err)?;
    w.finish().map_err(io_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_screeninfo_is_the_kernel_size() {
        assert_eq!(std::mem::size_of::<VarScreenInfo>(), 160);
    }

    #[test]
    fn layouts() {
        let mut v = VarScreenInfo {
            bits_per_pixel: 32,
            ..Default::default()
        };
        v.red = Bitfield {
            offset: 16,
            length: 8,
            msb_right: 0,
        };
        v.green = Bitfield {
            offset: 8,
            length: 8,
            msb_right: 0,
        };
        v.blue = Bitfield {
            offset: 0,
            length: 8,
            msb_right: 0,
        };
        assert_eq!(
            layout_of(&v, "fb0").unwrap(),
            PixelFormat::Rgb32 { r: 16, g: 8, b: 0 }
        );
        v.bits_per_pixel = 16;
        v.red.offset = 11;
        v.green.length = 6;
        assert_eq!(layout_of(&v, "fb0").unwrap(), PixelFormat::Rgb565);
        v.bits_per_pixel = 8;
        assert!(matches!(
            layout_of(&v, "fb0"),
            Err(ScreenError::Unsupported(_, 8))
        ));
    }

    #[test]
    fn missing_screen_is_a_typed_error() {
        let fbs = Framebuffers::new("/nonexistent", "/nonexistent");
        assert!(fbs.list().is_empty());
        assert!(matches!(fbs.capture(3), Err(ScreenError::NoScreen(3, _))));
    }

    #[test]
    fn png_roundtrip_header() {
        let img = Rgb {
            width: 2,
            height: 1,
            data: vec![255, 0, 0, 0, 0, 255],
        };
        let png = to_png(&img).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
