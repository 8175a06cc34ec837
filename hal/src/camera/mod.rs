//! Cameras through V4L2 (`v4l2`: the kernel interface, spoken with ioctls): which capture
//! nodes exist, and one still photo; and cameras that are libcamera devices (a Pi's CSI camera
//! module) through libcamera's own tools ([`libcamera`]). [`Local`] is both: what the node
//! serves.
//!
//! A [`Camera`] is a capture session on one device: [`Camera::open`] negotiates a format,
//! [`Camera::frame`] hands out frames. `snap` is one session that throws away warm-up frames
//! and encodes one; a later `clip` is the same session kept running, so both share the open,
//! busy and unplug handling here.
//!
//! Everything here blocks (V4L2 ioctls, `poll` with a timeout); callers run it on a blocking
//! thread. Two snaps on one device queue behind a per-device lock instead of fighting over it.

use std::io;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use crate::image::{ImageError, PixelFormat};

pub mod libcamera;
mod queue;
pub use libcamera::{Libcamera, Tool};
use queue::{Queue, Queues};

use crate::v4l2::{
    Device, Fract, FrameSize, Stream, CAP_STREAMING, CAP_VIDEO_CAPTURE, CAP_VIDEO_M2M,
    CAP_VIDEO_M2M_MPLANE,
};

/// A camera's failure, mapped to the reference's error codes by [`CameraError::code`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CameraError {
    /// No device node at that path (`ENOENT`/`ENXIO`).
    #[error("no camera at {0}")]
    NotFound(String),
    /// No device was named and no capture device exists.
    #[error("no camera is connected")]
    NoCamera,
    /// The device is streaming for another program (`EBUSY`).
    #[error("{0} is in use by another program")]
    Busy(String),
    /// The device node may not be opened (`EACCES`/`EPERM`): `CAMERA_PERMISSION_REQUIRED`.
    #[error("no permission to open {0} (is the node's user in the `video` group?)")]
    Permission(String),
    /// The device vanished mid-capture (`ENODEV`/`EIO`/`EPIPE`).
    #[error("{0} went away during the capture (unplugged?)")]
    Gone(String),
    /// The device (first) delivered no frame within the timeout (second, ms).
    #[error("{0} gave no frame within {1} ms")]
    NoFrame(String, u64),
    /// The device (first) offers none of the pixel formats this node decodes (second: what it offers).
    #[error("{0} offers no pixel format this node can read ({1})")]
    Unsupported(String, String),
    /// The node exists but is not a V4L2 video capture device: `INVALID_REQUEST`.
    #[error("{0} is not a V4L2 capture device")]
    NotCapture(String),
    /// A frame from the device (first) could not be decoded or converted.
    #[error("bad frame from {0}: {1}")]
    Frame(String, ImageError),
    /// Any other OS error on the device (first).
    #[error("{0}: {1}")]
    Io(String, io::Error),
    /// The camera (first) is a libcamera device that cannot be used here (second: why, e.g.
    /// no libcamera tools installed).
    #[error("{0} is a libcamera camera: {1}")]
    NeedsLibcamera(String, String),
    /// The libcamera tool failed on the camera (first): its message (second).
    #[error("{0}: {1}")]
    Tool(String, String),
    /// Recording from the device (first) failed in the encoder or container.
    #[cfg(feature = "video")]
    #[error("{0}: {1}")]
    Video(String, crate::video::VideoError),
}

#[cfg(feature = "video")]
impl From<crate::video::VideoError> for CameraError {
    fn from(e: crate::video::VideoError) -> Self {
        CameraError::Video(String::new(), e)
    }
}

impl CameraError {
    /// The reference error code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            CameraError::Permission(_) => "CAMERA_PERMISSION_REQUIRED",
            CameraError::NotCapture(_) => "INVALID_REQUEST",
            #[cfg(feature = "video")]
            CameraError::Video(_, crate::video::VideoError::Cancelled) => "CANCELLED",
            #[cfg(feature = "video")]
            CameraError::Video(_, _) => "UNAVAILABLE",
            _ => "CAMERA_UNAVAILABLE",
        }
    }

    fn from_io(path: &str, e: io::Error) -> CameraError {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENXIO) => CameraError::NotFound(path.into()),
            Some(libc::EBUSY) => CameraError::Busy(path.into()),
            Some(libc::EACCES) | Some(libc::EPERM) => CameraError::Permission(path.into()),
            Some(libc::ENODEV) | Some(libc::EIO) | Some(libc::EPIPE) => {
                CameraError::Gone(path.into())
            }
            _ => CameraError::Io(path.into(), e),
        }
    }
}

/// Which way a camera faces, as the reference names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// `front`: faces the user.
    Front,
    /// `back`: faces away; what board cameras (CSI, platform) report.
    Back,
    /// `external`: a USB camera.
    External,
}

impl Position {
    /// The reference's string: `front`, `back` or `external`.
    pub fn as_str(self) -> &'static str {
        match self {
            Position::Front => "front",
            Position::Back => "back",
            Position::External => "external",
        }
    }
}

/// How a camera is reached: what `pincer-node doctor` reports per camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// V4L2 streaming from the device node.
    V4l2,
    /// libcamera, through this tool (its path).
    Tool(String),
    /// A libcamera device that cannot be used now: why.
    Unavailable(String),
}

/// One capture device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    /// Its device node, e.g. `/dev/video0` (what `deviceId` names).
    pub id: String,
    /// The driver's card name, e.g. `HD Pro Webcam C920`.
    pub name: String,
    /// USB cameras are `external`; board cameras (CSI, platform) `back`.
    pub position: Position,
    /// Kernel driver, e.g. `uvcvideo`; `libcamera` for a libcamera camera.
    pub driver: String,
    /// How it is reached.
    pub access: Access,
}

/// The camera class: what `camera.list` and `camera.snap` need from a backend.
///
/// [`V4l2`] is plain V4L2 capture, [`Local`] that and the libcamera cameras ([`Libcamera`]).
/// `clip` is the same [`Camera`] capture session that `snap` uses, kept running.
pub trait Cameras: Send + Sync {
    /// Capture devices present now.
    fn list(&self) -> Vec<CameraInfo>;
    /// One still photo.
    fn snap(&self, req: &SnapRequest) -> Result<Photo, CameraError>;
    /// A video clip (H.264 MP4).
    #[cfg(feature = "video")]
    fn clip(&self, req: &ClipRequest) -> Result<crate::video::Clip, CameraError>;
}

impl Cameras for V4l2 {
    /// The capture devices present now (not metadata, output or codec nodes, nor the nodes
    /// of a libcamera media graph), sorted by path.
    fn list(&self) -> Vec<CameraInfo> {
        self.probe().0
    }
    /// Takes one photo; see [`SnapRequest`].
    fn snap(&self, req: &SnapRequest) -> Result<Photo, CameraError> {
        let path = self.pick(req.device.as_deref(), req.facing)?;
        let turn = Queue::take(&self.queues.of(&path));
        let t0 = Instant::now();
        let mut cam = Camera::open(&path, req.max_width, req.frame_timeout, FORMATS)?;
        let opened = t0.elapsed();
        let settle_until = Instant::now() + req.delay;
        let mut dropped = 0;
        while dropped < req.warmup_frames || Instant::now() < settle_until {
            cam.frame()?;
            dropped += 1;
        }
        let warmed = t0.elapsed();
        let (jpeg, width, height) = cam.photo(req)?;
        let done = t0.elapsed();
        tracing::debug!(
            open_ms = opened.as_secs_f64() * 1e3,
            warmup_ms = (warmed - opened).as_secs_f64() * 1e3,
            frame_and_encode_ms = (done - warmed).as_secs_f64() * 1e3,
            "camera.snap phases"
        );
        let source_format = String::from_utf8_lossy(&cam.fourcc).into_owned();
        // The photo is answered while the device closes (the turn ends with the close).
        queue::close_later(cam, turn);
        Ok(Photo {
            jpeg,
            width,
            height,
            source_format,
            device: path,
        })
    }

    /// Records a clip; see [`ClipRequest`]. Raw formats are preferred (the encoder takes
    /// I420); a camera that offers only JPEG frames is [`CameraError::Unsupported`].
    #[cfg(feature = "video")]
    fn clip(&self, req: &ClipRequest) -> Result<crate::video::Clip, CameraError> {
        let path = self.pick(req.device.as_deref(), req.facing)?;
        let _turn = Queue::take(&self.queues.of(&path));
        let mut cam = Camera::open(&path, req.max_width, req.frame_timeout, RAW_FORMATS)?;
        let (w, h, stride) = (cam.width, cam.height, cam.stride);
        let Some(layout) = cam.layout else {
            return Err(CameraError::Unsupported(path, "JPEG only".into()));
        };
        // Let exposure settle as for a photo; the clip starts after.
        for _ in 0..req.warmup_frames {
            cam.frame()?;
        }
        record_clip(&path, w, h, &req.record, |pic, due| loop {
            let data = cam.frame()?;
            if Instant::now() >= due {
                return pic
                    .fill_from(layout, data, w, h, stride)
                    .map_err(|e| CameraError::Frame(path.clone(), e));
            }
        })
    }
}

/// Records `rec` from `w` × `h` frames that `fill` puts into the picture (each once its due
/// time has come), through the board's H.264 encoder into an MP4: the one recording path of
/// V4L2 and libcamera cameras.
#[cfg(feature = "video")]
fn record_clip(
    id: &str,
    w: u32,
    h: u32,
    rec: &crate::video::RecordRequest,
    fill: impl FnMut(&mut crate::video::I420, Instant) -> Result<(), CameraError>,
) -> Result<crate::video::Clip, CameraError> {
    use crate::video::{self, I420};
    let mut pic = I420::new(w, h);
    let bitrate = video::bitrate_for(pic.width, pic.height, rec.fps, rec.duration, rec.max_bytes);
    let enc = video::encoder(pic.width, pic.height, rec.fps, bitrate)
        .map_err(|e| CameraError::Video(id.into(), e))?;
    tracing::info!(
        camera = id,
        width = pic.width,
        height = pic.height,
        fps = rec.fps,
        bitrate,
        encoder = enc.name(),
        "camera.clip recording"
    );
    video::record(&mut pic, rec, enc, fill).map_err(|e| match e {
        CameraError::Video(_, v) => CameraError::Video(id.into(), v),
        other => other,
    })
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_owned()
}

/// `VIDIOC_QUERYCAP`, read without trusting the driver's strings to be UTF-8.
fn query(dev: &Device) -> io::Result<(String, String, String, u32)> {
    let caps = dev.capability()?;
    Ok((
        c_string(&caps.card),
        c_string(&caps.driver),
        c_string(&caps.bus_info),
        caps.device_caps,
    ))
}

fn is_still_capture(device_caps: u32) -> bool {
    device_caps & CAP_VIDEO_CAPTURE != 0
        && device_caps & CAP_STREAMING != 0
        && device_caps & (CAP_VIDEO_M2M | CAP_VIDEO_M2M_MPLANE) == 0
}

/// Where to look for devices (`/dev` and `/sys/class/video4linux`; tests may point elsewhere).
#[derive(Debug, Clone)]
pub struct V4l2 {
    dev_dir: PathBuf,
    /// Turns per device node.
    queues: Queues,
}

impl Default for V4l2 {
    fn default() -> Self {
        V4l2::new("/dev")
    }
}

/// What `snap` should produce.
#[derive(Debug, Clone)]
pub struct SnapRequest {
    /// A device node from [`V4l2::list`]; none: by `facing`, else the first camera.
    pub device: Option<String>,
    /// With no `device`: the first camera facing this way, else the first camera.
    pub facing: Option<Position>,
    /// Widest image wanted; 0 = as large as the camera gives.
    pub max_width: u32,
    /// JPEG quality 1..=100 when the node encodes.
    pub quality: u8,
    /// Wait this long (frames keep flowing, exposure settles) before taking the photo.
    pub delay: Duration,
    /// Frames thrown away before the photo (auto-exposure/white balance settle).
    pub warmup_frames: u32,
    /// Longest wait for any one frame.
    pub frame_timeout: Duration,
    /// Base64 size the JPEG must stay under.
    pub max_base64: usize,
}

impl Default for SnapRequest {
    fn default() -> Self {
        SnapRequest {
            device: None,
            facing: None,
            max_width: 1600,
            quality: 90,
            delay: Duration::ZERO,
            warmup_frames: 4,
            frame_timeout: Duration::from_secs(3),
            max_base64: 5_000_000,
        }
    }
}

/// A still photo.
#[derive(Debug, Clone)]
pub struct Photo {
    /// The JPEG file.
    pub jpeg: Vec<u8>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// The device that took it.
    pub device: String,
    /// `MJPG` passthrough or the raw format that was converted.
    pub source_format: String,
}

/// The formats we ask for, best first: JPEG straight from the camera, then raw layouts.
const FORMATS: &[(&[u8; 4], Option<PixelFormat>)] = &[
    (b"MJPG", None),
    (b"JPEG", None),
    (b"YUYV", Some(PixelFormat::Yuyv)),
    (b"UYVY", Some(PixelFormat::Uyvy)),
    (b"NV12", Some(PixelFormat::Nv12)),
    (b"YU12", Some(PixelFormat::Yu12)),
    (b"RGB3", Some(PixelFormat::Rgb24)),
    (b"BGR3", Some(PixelFormat::Bgr24)),
    (b"RGBP", Some(PixelFormat::Rgb565)),
    (b"GREY", Some(PixelFormat::Grey)),
];

/// For video: the raw layouts only, in the order they convert to I420 most cheaply.
#[cfg(feature = "video")]
const RAW_FORMATS: &[(&[u8; 4], Option<PixelFormat>)] = &[
    (b"YU12", Some(PixelFormat::Yu12)),
    (b"NV12", Some(PixelFormat::Nv12)),
    (b"YUYV", Some(PixelFormat::Yuyv)),
    (b"UYVY", Some(PixelFormat::Uyvy)),
    (b"RGB3", Some(PixelFormat::Rgb24)),
    (b"BGR3", Some(PixelFormat::Bgr24)),
    (b"RGBP", Some(PixelFormat::Rgb565)),
    (b"GREY", Some(PixelFormat::Grey)),
];

/// What `clip` should record.
#[cfg(feature = "video")]
#[derive(Debug, Clone)]
pub struct ClipRequest {
    /// A device node from [`V4l2::list`]; none: by `facing`, else the first camera.
    pub device: Option<String>,
    /// With no `device`: the first camera facing this way, else the first camera.
    pub facing: Option<Position>,
    /// Widest picture wanted; 0 = as large as the camera gives.
    pub max_width: u32,
    /// Frames thrown away before recording starts.
    pub warmup_frames: u32,
    /// Longest wait for any one frame.
    pub frame_timeout: Duration,
    /// Duration, rate, size budget and the stop flag.
    pub record: crate::video::RecordRequest,
}

/// Capture buffers asked for: one with the application, one being filled, one queued.
const BUFFERS: u32 = 3;

/// An open capture session on one device.
pub struct Camera {
    path: String,
    /// Owns the device: dropping it stops streaming, frees the buffers and closes the node.
    stream: Stream,
    width: u32,
    height: u32,
    stride: u32,
    fourcc: [u8; 4],
    layout: Option<PixelFormat>,
    timeout: Duration,
}

impl Camera {
    /// Opens `path`, negotiates a format no wider than `max_width` when the camera has one
    /// (largest such size; else its smallest), and starts streaming.
    pub fn open(
        path: &str,
        max_width: u32,
        timeout: Duration,
        formats: &[(&[u8; 4], Option<PixelFormat>)],
    ) -> Result<Camera, CameraError> {
        let err = |e| CameraError::from_io(path, e);
        let dev = Device::open(Path::new(path)).map_err(err)?;
        let (_, _, _, caps) = query(&dev).map_err(err)?;
        if !is_still_capture(caps) {
            return Err(CameraError::NotCapture(path.into()));
        }
        let want = if max_width == 0 { u32::MAX } else { max_width };
        let mut chosen = None;
        let mut offered = Vec::new();
        for (code, layout) in formats {
            let fourcc = u32::from_le_bytes(**code);
            let Some((w, h)) = pick_size(&dev, fourcc, want) else {
                continue;
            };
            let mut fmt = dev.format().map_err(err)?;
            fmt.pixelformat = fourcc;
            fmt.width = w;
            fmt.height = h;
            let got = dev.set_format(&fmt).map_err(err)?;
            if got.pixelformat != fourcc {
                offered.push(String::from_utf8_lossy(&got.pixelformat.to_le_bytes()).into_owned());
                continue;
            }
            // Compressed frames only pass through when they already fit.
            if layout.is_none() && got.width > want {
                continue;
            }
            chosen = Some((got, **code, *layout));
            break;
        }
        let Some((fmt, fourcc, layout)) = chosen else {
            offered.dedup();
            return Err(CameraError::Unsupported(path.into(), offered.join(",")));
        };
        // Warm-up frames come at the frame rate: ask for 30 fps (drivers clamp to what the
        // mode allows; some webcams default to 5 fps, a second of warm-up). Not every
        // driver supports it; a failure only means the default rate.
        let fps30 = Fract {
            numerator: 1,
            denominator: 30,
        };
        if let Err(e) = dev.set_frame_interval(fps30) {
            tracing::debug!(path, error = %e, "cannot set the frame rate");
        }
        let stream = Stream::new(dev, BUFFERS).map_err(err)?;
        tracing::debug!(
            path,
            width = fmt.width,
            height = fmt.height,
            fourcc = %String::from_utf8_lossy(&fourcc),
            "camera streaming"
        );
        Ok(Camera {
            path: path.into(),
            stream,
            width: fmt.width,
            height: fmt.height,
            stride: fmt.bytesperline,
            fourcc,
            layout,
            timeout,
        })
    }

    /// The negotiated size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The next frame's bytes (only the part the driver filled).
    pub fn frame(&mut self) -> Result<&[u8], CameraError> {
        let (path, timeout) = (self.path.clone(), self.timeout);
        self.stream
            .next(timeout)
            .map_err(|e| frame_error(&path, timeout, e))
    }

    /// The next frame as the photo `req` asks for, streaming stopped once it is in hand:
    /// YUV frames are coded straight from the mapped buffer, RGB ones through
    /// [`Rgb`](crate::image::Rgb), and a camera's own JPEG passes through as it came.
    /// Returns the JPEG and its geometry.
    fn photo(&mut self, req: &SnapRequest) -> Result<(Vec<u8>, u32, u32), CameraError> {
        let (w, h, stride, layout) = (self.width, self.height, self.stride, self.layout);
        let (path, timeout) = (self.path.clone(), self.timeout);
        let data = self
            .stream
            .last(timeout)
            .map_err(|e| frame_error(&path, timeout, e))?;
        let err = |e| CameraError::Frame(path.clone(), e);
        let Some(l) = layout else {
            if data.len() < 4 || data[..2] != [0xFF, 0xD8] {
                return Err(err(ImageError::Encode(
                    "the camera's JPEG frame has no SOI marker".into(),
                )));
            }
            if data.len().div_ceil(3) * 4 > req.max_base64 {
                return Err(err(ImageError::Encode(format!(
                    "the camera's JPEG is {} bytes; ask for a smaller maxWidth",
                    data.len()
                ))));
            }
            return Ok((data.to_vec(), w, h));
        };
        encode_raw(l, data, w, h, stride, req).map_err(err)
    }
}

/// A raw frame as the photo `req` asks for: YUV coded straight from `data`, RGB through
/// [`Rgb`](crate::image::Rgb).
fn encode_raw(
    l: PixelFormat,
    data: &[u8],
    w: u32,
    h: u32,
    stride: u32,
    req: &SnapRequest,
) -> Result<(Vec<u8>, u32, u32), ImageError> {
    let (max_width, quality, max_base64) = (req.max_width, req.quality, req.max_base64);
    let t0 = Instant::now();
    if let Some(photo) = l.to_jpeg_within(data, w, h, stride, max_width, quality, max_base64)? {
        tracing::debug!(
            encode_ms = t0.elapsed().as_secs_f64() * 1e3,
            "camera.snap JPEG from YUV"
        );
        return Ok(photo);
    }
    l.to_rgb(data, w, h, stride)
        .and_then(|rgb| rgb.fit_width(max_width).to_jpeg_within(quality, max_base64))
}

/// A failed wait for a frame: [`CameraError::NoFrame`] when none came in time.
fn frame_error(path: &str, timeout: Duration, e: io::Error) -> CameraError {
    if e.kind() == io::ErrorKind::TimedOut {
        CameraError::NoFrame(path.to_owned(), timeout.as_millis() as u64)
    } else {
        CameraError::from_io(path, e)
    }
}

/// The size to ask for: the largest the camera lists with width ≤ `want`, else its smallest;
/// `None` when it does not offer `fourcc` at all. Drivers that cannot enumerate get `want`
/// (capped at 4K) and answer with what they can do.
fn pick_size(dev: &Device, fourcc: u32, want: u32) -> Option<(u32, u32)> {
    let sizes = match dev.frame_sizes(fourcc) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return None,
        Err(_) => {
            let w = want.min(3840);
            return Some((w, w * 3 / 4));
        }
    };
    let mut all = Vec::new();
    for s in sizes {
        match s {
            FrameSize::Discrete { width, height } => all.push((width, height)),
            FrameSize::Stepwise {
                min_width,
                max_width,
                min_height,
                max_height,
                ..
            } => {
                all.push((min_width, min_height));
                // max/min rather than clamp: a driver's min above its max must not panic.
                let w = want.max(min_width).min(max_width);
                let h = (u64::from(w) * u64::from(max_height) / u64::from(max_width.max(1))) as u32;
                all.push((w, h.max(min_height).min(max_height)));
            }
        }
    }
    if all.is_empty() {
        return None;
    }
    all.sort_unstable();
    all.iter()
        .rev()
        .find(|(w, _)| *w <= want)
        .or_else(|| all.first())
        .copied()
}

impl V4l2 {
    /// The device `device` names, else the first camera facing `facing`, else the first.
    fn pick(&self, device: Option<&str>, facing: Option<Position>) -> Result<String, CameraError> {
        pick_from(device, facing, || self.list())
    }

    /// Devices under `dev_dir` (normally `/dev`).
    pub fn new(dev_dir: impl Into<PathBuf>) -> V4l2 {
        V4l2 {
            dev_dir: dev_dir.into(),
            queues: Queues::default(),
        }
    }

    /// Every still-capture node, opened once, split into the plain V4L2 cameras and the
    /// capture nodes of libcamera media graphs (as `(driver, bus)`, each pair once).
    fn probe(&self) -> (Vec<CameraInfo>, Vec<(String, String)>) {
        let (mut plain, mut graph) = (Vec::new(), Vec::new());
        for path in crate::v4l2::video_nodes(&self.dev_dir) {
            let Some((cam, bus)) = probe(&path) else {
                continue;
            };
            if libcamera::is_graph_driver(&cam.driver) {
                graph.push((cam.driver, bus));
            } else {
                plain.push(cam);
            }
        }
        graph.sort();
        graph.dedup();
        (plain, graph)
    }
}

/// The cameras of this machine: libcamera's (CSI modules, listed first: the board's own) and
/// plain V4L2 ones (USB webcams, HDMI grabbers). A `deviceId` with [`libcamera::ID_PREFIX`]
/// goes to libcamera's tools, any other to V4L2.
#[derive(Debug, Clone, Default)]
pub struct Local {
    v4l2: V4l2,
    libcamera: Libcamera,
    /// Turns for libcamera cameras (one tool run per camera at a time).
    queues: Queues,
}

impl Local {
    fn pick(&self, device: Option<&str>, facing: Option<Position>) -> Result<String, CameraError> {
        pick_from(device, facing, || self.list())
    }
}

/// `device` when given, else the first of `list()` facing `facing`, else its first.
fn pick_from(
    device: Option<&str>,
    facing: Option<Position>,
    list: impl FnOnce() -> Vec<CameraInfo>,
) -> Result<String, CameraError> {
    if let Some(d) = device {
        return Ok(d.to_owned());
    }
    let cams = list();
    let pick = facing
        .and_then(|f| cams.iter().find(|c| c.position == f))
        .or_else(|| cams.first())
        .ok_or(CameraError::NoCamera)?;
    Ok(pick.id.clone())
}

impl Cameras for Local {
    fn list(&self) -> Vec<CameraInfo> {
        let (plain, graph) = self.v4l2.probe();
        let mut all = self.libcamera.list(&graph);
        all.extend(plain);
        all
    }

    fn snap(&self, req: &SnapRequest) -> Result<Photo, CameraError> {
        let id = self.pick(req.device.as_deref(), req.facing)?;
        if !id.starts_with(libcamera::ID_PREFIX) {
            return self.v4l2.snap(&SnapRequest {
                device: Some(id),
                ..req.clone()
            });
        }
        // No listing first: without a tool the snap says what to install, and a camera the
        // tool does not know is its "not found".
        let _turn = Queue::take(&self.queues.of(&id));
        self.libcamera.snap(&id, req)
    }

    #[cfg(feature = "video")]
    fn clip(&self, req: &ClipRequest) -> Result<crate::video::Clip, CameraError> {
        let id = self.pick(req.device.as_deref(), req.facing)?;
        if id.starts_with(libcamera::ID_PREFIX) {
            let _turn = Queue::take(&self.queues.of(&id));
            return self.libcamera.clip(&id, req);
        }
        self.v4l2.clip(&ClipRequest {
            device: Some(id),
            ..req.clone()
        })
    }
}

/// A device node that is a usable still-capture camera, and its bus.
fn probe(path: &Path) -> Option<(CameraInfo, String)> {
    let dev = match Device::open(path) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot open video node");
            return None;
        }
    };
    let (name, driver, bus, caps) = query(&dev).ok()?;
    if !is_still_capture(caps) {
        return None;
    }
    // The node's own name (`vivid-000-vid-cap`, a webcam's product name) says more than the
    // card name shared by all nodes of a driver instance.
    let node_name = path
        .file_name()
        .and_then(|n| {
            std::fs::read_to_string(Path::new("/sys/class/video4linux").join(n).join("name")).ok()
        })
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    let position = if bus.starts_with("usb") {
        Position::External
    } else {
        Position::Back
    };
    let info = CameraInfo {
        id: path.to_string_lossy().into_owned(),
        name: node_name.unwrap_or(name),
        position,
        driver,
        access: Access::V4l2,
    };
    Some((info, bus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_nodes_only() {
        assert!(is_still_capture(CAP_VIDEO_CAPTURE | CAP_STREAMING));
        assert!(!is_still_capture(0x0080_0000 | CAP_STREAMING)); // metadata capture
        assert!(!is_still_capture(
            CAP_VIDEO_CAPTURE | CAP_VIDEO_M2M | CAP_STREAMING
        ));
        assert!(!is_still_capture(0x0000_0002 | CAP_STREAMING)); // output
    }

    #[test]
    fn errors_map_to_reference_codes() {
        let busy = CameraError::from_io("/dev/video0", io::Error::from_raw_os_error(libc::EBUSY));
        assert!(matches!(busy, CameraError::Busy(_)));
        assert_eq!(busy.code(), "CAMERA_UNAVAILABLE");
        let gone = CameraError::from_io("/dev/video0", io::Error::from_raw_os_error(libc::ENODEV));
        assert!(matches!(gone, CameraError::Gone(_)));
        let perm = CameraError::from_io("/dev/video0", io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(perm.code(), "CAMERA_PERMISSION_REQUIRED");
    }

    #[test]
    fn absent_device_is_unavailable_not_a_panic() {
        let v = V4l2::new("/nonexistent-dev-dir");
        assert!(v.list().is_empty());
        let e = v.snap(&SnapRequest::default()).unwrap_err();
        assert!(matches!(e, CameraError::NoCamera), "{e}");
        let e = v
            .snap(&SnapRequest {
                device: Some("/nonexistent/video9".into()),
                ..SnapRequest::default()
            })
            .unwrap_err();
        assert!(matches!(e, CameraError::NotFound(_)), "{e}");
        assert_eq!(e.code(), "CAMERA_UNAVAILABLE");
    }
}
