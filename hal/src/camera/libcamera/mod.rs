//! Cameras that are libcamera devices (a Pi's CSI camera module on `unicam` / `rp1-cfe`, the
//! `vimc` test driver): their V4L2 capture nodes give raw Bayer out of a media graph that has
//! to be configured entity by entity and then needs an ISP, so plain V4L2 capture cannot take
//! a photo from them. libcamera can; this module drives libcamera's own command-line tools
//! instead of linking it (C++, no static or musl build), which keeps the node free of C++:
//!
//! * `rpicam-still` (Raspberry Pi OS; `libcamera-still` before rpicam-apps 1.4): the Pi's tuned
//!   pipeline, JPEG on stdout.
//! * `cam` (Debian's `libcamera-tools`): one raw frame to a file, converted and coded here.
//!
//! Which tool is found is the camera's [`Access`]; without either, the camera is still listed
//! with the reason it cannot be used, and `camera.snap` on it is `CAMERA_UNAVAILABLE` saying
//! what to install. Tools run with a deadline and bounded output ([`run`]): a hung tool is
//! killed, never waited for. `camera.clip` streams frames from `rpicam-vid` or `cam` while
//! they run ([`clip`]).

#[cfg(feature = "video")]
mod clip;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Access, CameraError, CameraInfo, Photo, Position, SnapRequest};
use crate::image::PixelFormat;

/// The prefix of a libcamera camera's `deviceId` (`libcamera:platform/vimc.0 Sensor B`).
pub const ID_PREFIX: &str = "libcamera:";

/// V4L2 drivers whose capture nodes are parts of a libcamera media graph, not cameras one can
/// stream from directly: CSI-2 receivers (`unicam` on Pi 0–4, `rp1-cfe` on the Pi 5), ISPs
/// (`bcm2835-isp`, `pispbe`, `rkisp1`) and the `vimc` test driver.
const GRAPH_DRIVERS: &[&str] = &[
    "unicam",
    "bcm2835-unicam",
    "rp1-cfe",
    "bcm2835-isp",
    "pispbe",
    "rkisp1",
    "vimc",
];

/// Whether a V4L2 node of `driver` belongs to a libcamera media graph.
pub fn is_graph_driver(driver: &str) -> bool {
    GRAPH_DRIVERS.contains(&driver)
}

/// What to install when no tool is found.
const INSTALL_HINT: &str =
    "no libcamera tools: install rpicam-apps (Raspberry Pi OS) or libcamera-tools (`cam`, Debian)";

/// Longest a tool may take to list cameras.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most a tool's stdout/stderr is read (a JPEG on stdout is bounded by the request instead).
const TEXT_LIMIT: usize = 64 * 1024;

/// A libcamera command-line tool found on `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// `rpicam-still` / `libcamera-still`.
    RpicamStill(PathBuf),
    /// libcamera's `cam`.
    Cam(PathBuf),
}

impl Tool {
    /// The program's path.
    pub fn path(&self) -> &Path {
        match self {
            Tool::RpicamStill(p) | Tool::Cam(p) => p,
        }
    }

    /// The first of `rpicam-still`, `libcamera-still`, `cam` in the directories of `path`
    /// (a `PATH`-style list).
    pub fn find(path: &std::ffi::OsStr) -> Option<Tool> {
        let exe = |name: &str| pincer_os::which_in(path, name);
        exe("rpicam-still")
            .or_else(|| exe("libcamera-still"))
            .map(Tool::RpicamStill)
            .or_else(|| exe("cam").map(Tool::Cam))
    }
}

/// The libcamera cameras, through whichever tool is on `PATH` (tests set another `PATH`).
#[derive(Debug, Clone, Default)]
pub struct Libcamera {
    /// `PATH` to search; `None`: the process's.
    path: Option<OsString>,
}

impl Libcamera {
    /// Tools are looked up in `path` instead of `$PATH`.
    pub fn with_path(path: impl Into<OsString>) -> Libcamera {
        Libcamera {
            path: Some(path.into()),
        }
    }

    /// The tool in use now (looked up every time: installing one needs no restart).
    pub fn tool(&self) -> Option<Tool> {
        match &self.path {
            Some(p) => Tool::find(p),
            None => Tool::find(&std::env::var_os("PATH")?),
        }
    }

    /// The cameras behind `graph` (the media-graph V4L2 nodes found, as `(driver, bus)`): as
    /// the tool lists them, or one unusable entry per bus saying why.
    pub fn list(&self, graph: &[(String, String)]) -> Vec<CameraInfo> {
        if graph.is_empty() {
            return Vec::new();
        }
        let unusable = |reason: String| {
            let mut buses: Vec<&(String, String)> = graph.iter().collect();
            buses.dedup_by(|a, b| a.1 == b.1);
            buses
                .into_iter()
                .map(|(driver, bus)| CameraInfo {
                    id: format!("{ID_PREFIX}{bus}"),
                    name: driver.clone(),
                    position: Position::Back,
                    driver: "libcamera".into(),
                    access: Access::Unavailable(reason.clone()),
                })
                .collect()
        };
        let Some(tool) = self.tool() else {
            return unusable(INSTALL_HINT.into());
        };
        match list_with(&tool) {
            Ok(cams) if !cams.is_empty() => cams,
            Ok(_) => unusable(format!(
                "{} lists no camera (try `LIBCAMERA_LOG_LEVELS=*:INFO {} --list`)",
                tool.path().display(),
                tool.path().display()
            )),
            Err(e) => unusable(e.to_string()),
        }
    }

    /// One photo from the libcamera camera `id` (with [`ID_PREFIX`]).
    pub fn snap(&self, id: &str, req: &SnapRequest) -> Result<Photo, CameraError> {
        let tool = self
            .tool()
            .ok_or_else(|| CameraError::NeedsLibcamera(id.into(), INSTALL_HINT.into()))?;
        let camera = id.strip_prefix(ID_PREFIX).unwrap_or(id);
        match &tool {
            Tool::Cam(cam) => snap_cam(cam, id, camera, req),
            Tool::RpicamStill(still) => snap_rpicam(still, id, rpicam_index(still, id)?, req),
        }
    }
}

fn list_with(tool: &Tool) -> Result<Vec<CameraInfo>, CameraError> {
    match tool {
        Tool::RpicamStill(p) => rpicam_list(p),
        Tool::Cam(p) => {
            let out = run(Command::new(p).arg("--list"), LIST_TIMEOUT, TEXT_LIMIT)
                .and_then(|o| succeeded(o, p))?;
            let mut cams = Vec::new();
            for (cam_id, name) in parse_cam_list(&String::from_utf8_lossy(&out.stdout)) {
                let props = run(
                    Command::new(p).args(["-c", &cam_id, "--list-properties"]),
                    LIST_TIMEOUT,
                    TEXT_LIMIT,
                )
                .and_then(|o| succeeded(o, p))?;
                let (location, model) =
                    parse_cam_properties(&String::from_utf8_lossy(&props.stdout));
                let position = match location {
                    Some(0) => Position::Front,
                    // An external libcamera camera is a UVC webcam, served by plain V4L2.
                    Some(2) => continue,
                    _ => Position::Back,
                };
                cams.push(CameraInfo {
                    id: format!("{ID_PREFIX}{cam_id}"),
                    name: model.unwrap_or(name),
                    position,
                    driver: "libcamera".into(),
                    access: Access::Tool(p.display().to_string()),
                });
            }
            Ok(cams)
        }
    }
}

/// The `--camera` index an rpicam tool gives the camera `id`.
fn rpicam_index(tool: &Path, id: &str) -> Result<usize, CameraError> {
    rpicam_list(tool)?
        .iter()
        .position(|c| c.id == id)
        .ok_or_else(|| CameraError::NotFound(id.into()))
}

fn rpicam_list(still: &Path) -> Result<Vec<CameraInfo>, CameraError> {
    let out = run(
        Command::new(still).arg("--list-cameras"),
        LIST_TIMEOUT,
        TEXT_LIMIT,
    )
    .and_then(|o| succeeded(o, still))?;
    Ok(parse_rpicam_list(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .map(|(cam_id, model)| CameraInfo {
            id: format!("{ID_PREFIX}{cam_id}"),
            name: model,
            position: Position::Back,
            driver: "libcamera".into(),
            access: Access::Tool(still.display().to_string()),
        })
        .collect())
}

/// `cam --list`: `1: 'Sensor B' (platform/vimc.0 Sensor B)` → (id, name).
pub(crate) fn parse_cam_list(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (index, rest) = l.split_once(": ")?;
            index.trim().parse::<u32>().ok()?;
            let rest = rest.trim_end().strip_suffix(')')?;
            let open = rest.rfind(" (")?;
            let name = rest[..open].trim().trim_matches('\'').trim().to_owned();
            let id = rest[open + 2..].to_owned();
            (!id.is_empty()).then_some((id, name))
        })
        .collect()
}

/// `cam -c ID --list-properties`: `Property: Location = 1`, `Property: Model = imx219`.
pub(crate) fn parse_cam_properties(out: &str) -> (Option<i64>, Option<String>) {
    let mut location = None;
    let mut model = None;
    for l in out.lines() {
        let Some(p) = l.trim().strip_prefix("Property: ") else {
            continue;
        };
        let Some((k, v)) = p.split_once(" = ") else {
            continue;
        };
        match k {
            "Location" => location = v.trim().parse().ok(),
            "Model" => model = Some(v.trim().to_owned()).filter(|m| !m.is_empty()),
            _ => {}
        }
    }
    (location, model)
}

/// `rpicam-still --list-cameras`:
/// `0 : imx219 [3280x2464 10-bit RGGB] (/base/soc/i2c0mux/i2c@1/imx219@10)` → (id, model),
/// in index order.
pub(crate) fn parse_rpicam_list(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (index, rest) = l.split_once(" : ")?;
            index.trim().parse::<u32>().ok()?;
            let model = rest.split([' ', '[']).next()?.trim().to_owned();
            let rest = rest.trim_end().strip_suffix(')')?;
            let id = rest[rest.rfind(" (")? + 2..].to_owned();
            (!id.is_empty() && !model.is_empty()).then_some((id, model))
        })
        .collect()
}

/// `cam --info`'s stream line after configuration: `0: 1920x1080-BGR888` → (w, h, format).
pub(crate) fn parse_cam_stream(out: &str) -> Option<(u32, u32, String)> {
    out.lines().find_map(|l| {
        let (index, cfg) = l.trim().split_once(": ")?;
        index.parse::<u32>().ok()?;
        let (size, fmt) = cfg.trim().split_once('-')?;
        let (w, h) = size.split_once('x')?;
        Some((w.parse().ok()?, h.parse().ok()?, fmt.to_owned()))
    })
}

/// libcamera's pixel format names → this crate's layouts (libcamera's `BGR888` is the byte
/// order R, G, B: DRM naming, as V4L2's `RGB3`).
fn layout_of(libcamera_format: &str) -> Option<PixelFormat> {
    Some(match libcamera_format {
        "BGR888" => PixelFormat::Rgb24,
        "RGB888" => PixelFormat::Bgr24,
        "YUYV" => PixelFormat::Yuyv,
        "UYVY" => PixelFormat::Uyvy,
        "NV12" => PixelFormat::Nv12,
        "YUV420" => PixelFormat::Yu12,
        _ => return None,
    })
}

/// Most frames one `cam` photo streams (warm-up and `delay`): 10 s at 30 frames/s.
const MAX_CAM_FRAMES: u32 = 300;

/// A photo through `cam`: `warmup_frames` (and `delay` worth of frames at 30 fps) stream by,
/// `cam` writes each into a private directory, where [`prune`] keeps only the newest (disk or
/// tmpfs use stays at a frame or two, whatever the delay); the last is converted and coded here.
fn snap_cam(cam: &Path, id: &str, camera: &str, req: &SnapRequest) -> Result<Photo, CameraError> {
    let dir = TempDir::new().map_err(|e| CameraError::Io(id.into(), e))?;
    let frames = (req.warmup_frames + 1 + (req.delay.as_millis() / 33) as u32).min(MAX_CAM_FRAMES);
    let mut stream = "role=still,pixelformat=BGR888".to_owned();
    if req.max_width > 0 {
        // libcamera picks the nearest size the pipeline can do (vimc: multiples of 6).
        let w = req.max_width.min(4096);
        stream.push_str(&format!(",width={w},height={}", (w * 3 / 4).max(2)));
    }
    let timeout = req.delay + req.frame_timeout * frames.min(10) + LIST_TIMEOUT;
    // cam opens, writes and closes one file per frame, so a file that is not the newest is
    // complete and no longer written: all but the newest are removed every 20 ms.
    let pruner = {
        let dir = dir.0.clone();
        Every::start(Duration::from_millis(20), move || prune(&dir))
    };
    let out = run(
        Command::new(cam)
            .args(["-c", camera, "--info", "-s", &stream])
            .arg(format!("--capture={frames}"))
            .arg(format!("--file={}/frame-#.bin", dir.0.display())),
        timeout,
        TEXT_LIMIT,
    )
    .map_err(|e| retag(e, id));
    drop(pruner);
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    let err_text = String::from_utf8_lossy(&out.stderr);
    if !out.success {
        return Err(tool_failure(id, cam, &text, &err_text));
    }
    let Some((w, h, fmt)) = parse_cam_stream(&text) else {
        return Err(CameraError::Tool(
            id.into(),
            format!("{} printed no stream configuration", cam.display()),
        ));
    };
    let layout = layout_of(&fmt)
        .ok_or_else(|| CameraError::Unsupported(id.into(), format!("libcamera {fmt}")))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .map_err(|e| CameraError::Io(id.into(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let last = files
        .last()
        .ok_or_else(|| CameraError::NoFrame(id.into(), req.frame_timeout.as_millis() as u64))?;
    let data = std::fs::read(last).map_err(|e| CameraError::Io(id.into(), e))?;
    let stride = if h == 0 {
        0
    } else {
        (data.len() / h as usize) as u32
    };
    let (jpeg, width, height) = super::encode_raw(layout, &data, w, h, stride, req)
        .map_err(|e| CameraError::Frame(id.into(), e))?;
    Ok(Photo {
        jpeg,
        width,
        height,
        device: id.into(),
        source_format: format!("libcamera {fmt} via cam"),
    })
}

/// A photo through `rpicam-still`: its own JPEG on stdout, after `delay` (at least half a
/// second for exposure to settle) of preview frames.
fn snap_rpicam(
    still: &Path,
    id: &str,
    index: usize,
    req: &SnapRequest,
) -> Result<Photo, CameraError> {
    let settle = req.delay.max(Duration::from_millis(500));
    let mut cmd = Command::new(still);
    cmd.args(["-n", "-e", "jpg", "-o", "-"])
        .arg(format!("--camera={index}"))
        .arg(format!("--quality={}", req.quality.clamp(1, 100)))
        .arg(format!("--timeout={}", settle.as_millis()));
    if req.max_width > 0 {
        let w = req.max_width.min(4056);
        cmd.arg(format!("--width={w}"))
            .arg(format!("--height={}", w * 3 / 4));
    }
    let limit = req.max_base64 / 4 * 3 + 1;
    let out = run(&mut cmd, settle + LIST_TIMEOUT, limit).map_err(|e| retag(e, id))?;
    if !out.success {
        let text = String::from_utf8_lossy(&out.stdout);
        return Err(tool_failure(
            id,
            still,
            &text,
            &String::from_utf8_lossy(&out.stderr),
        ));
    }
    if out.stdout.len() >= limit {
        return Err(CameraError::Frame(
            id.into(),
            crate::image::ImageError::Encode(
                "the camera's JPEG is over the size limit; ask for a smaller maxWidth".into(),
            ),
        ));
    }
    let (width, height) = jpeg_size(&out.stdout).ok_or_else(|| {
        CameraError::Tool(id.into(), format!("{} wrote no JPEG", still.display()))
    })?;
    Ok(Photo {
        jpeg: out.stdout,
        width,
        height,
        device: id.into(),
        source_format: "JPEG via rpicam-still".into(),
    })
}

/// Width and height from a JPEG's first start-of-frame marker.
pub(crate) fn jpeg_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = u16::from_be_bytes([*jpeg.get(i + 5)?, *jpeg.get(i + 6)?]);
            let w = u16::from_be_bytes([*jpeg.get(i + 7)?, *jpeg.get(i + 8)?]);
            return Some((u32::from(w), u32::from(h)));
        }
        i += 2 + len;
    }
    None
}

/// A tool's non-zero exit as the camera error its message means.
fn tool_failure(id: &str, tool: &Path, stdout: &str, stderr: &str) -> CameraError {
    let all = format!("{stdout}\n{stderr}");
    let lower = all.to_lowercase();
    if lower.contains("not found") && lower.contains("camera") {
        CameraError::NotFound(id.into())
    } else if lower.contains("permission denied") || lower.contains("operation not permitted") {
        CameraError::Permission(id.into())
    } else if lower.contains("busy") || lower.contains("failed to acquire") {
        CameraError::Busy(id.into())
    } else {
        let last = all
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no message");
        CameraError::Tool(id.into(), format!("{} failed: {last}", tool.display()))
    }
}

/// Puts the camera's id on an error [`run`] made.
fn retag(e: CameraError, id: &str) -> CameraError {
    match e {
        CameraError::NoFrame(_, ms) => CameraError::NoFrame(id.into(), ms),
        CameraError::Tool(_, m) => CameraError::Tool(id.into(), m),
        other => other,
    }
}

/// What a finished tool left.
type Output = pincer_os::process::Ran;

/// Success, else the tool's failure.
fn succeeded(out: Output, tool: &Path) -> Result<Output, CameraError> {
    if out.success {
        return Ok(out);
    }
    Err(tool_failure(
        &tool.display().to_string(),
        tool,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    ))
}

/// Runs a libcamera tool ([`pincer_os::process::run_bounded`]: its own process group, killed
/// at `timeout`), keeping at most `limit` bytes of stdout and [`TEXT_LIMIT`] of stderr, with
/// libcamera's logging at `ERROR` and up only. A timeout is [`CameraError::NoFrame`].
pub(crate) fn run(
    cmd: &mut Command,
    timeout: Duration,
    limit: usize,
) -> Result<Output, CameraError> {
    use pincer_os::process::{run_bounded, RunError};
    run_bounded(
        cmd.env("LIBCAMERA_LOG_LEVELS", "*:ERROR"),
        timeout,
        limit,
        TEXT_LIMIT,
    )
    .map_err(|e| match e {
        RunError::TimedOut(name, ms) => CameraError::NoFrame(name, ms),
        e @ RunError::Spawn(..) => {
            let name = cmd.get_program().to_string_lossy().into_owned();
            CameraError::Tool(name, e.to_string())
        }
    })
}

/// Runs a task every `period` on its own thread until dropped, and once more then: the
/// housekeeping beside a running `cam` (pruning its frame files, taking them for a clip).
struct Every {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Every {
    fn start(period: Duration, mut task: impl FnMut() + Send + 'static) -> Every {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || loop {
            let done = flag.load(Ordering::Relaxed);
            task();
            if done {
                return;
            }
            std::thread::sleep(period);
        });
        Every {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Every {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// All but the newest (by name: cam numbers frames with zero-padded sequence numbers) of the
/// frame files in `dir`, removed.
fn prune(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.pop();
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

/// A private directory for one capture's files, removed with them on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pincer-cam-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // 0700 from the start, and never a directory someone else made first
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cam_listing_and_properties() {
        let list = "Available cameras:\n1: 'Sensor B' (platform/vimc.0 Sensor B)\n\
                    2: Internal back camera (/base/soc/i2c0mux/i2c@1/imx219@10)\n";
        assert_eq!(
            parse_cam_list(list),
            vec![
                ("platform/vimc.0 Sensor B".into(), "Sensor B".into()),
                (
                    "/base/soc/i2c0mux/i2c@1/imx219@10".into(),
                    "Internal back camera".into()
                ),
            ]
        );
        assert!(parse_cam_list("Available cameras:\n").is_empty());
        let props = "Using camera platform/vimc.0 Sensor B as cam0\n\
                     Property: PixelArraySize = 4096x2160\nProperty: Model = Sensor B\n\
                     Property: Location = 1\n";
        assert_eq!(
            parse_cam_properties(props),
            (Some(1), Some("Sensor B".into()))
        );
        assert_eq!(
            parse_cam_properties("garbage\nProperty: Location = x"),
            (None, None)
        );
    }

    #[test]
    fn rpicam_listing() {
        let out = "Available cameras\n-----------------\n\
                   0 : imx219 [3280x2464 10-bit RGGB] (/base/soc/i2c0mux/i2c@1/imx219@10)\n\
                   \x20   Modes: 'SRGGB10_CSI2P' : 640x480 [206.65 fps - (1000, 752)/1280x960 crop]\n\
                   1 : imx708_wide [4608x2592] (/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a)\n";
        assert_eq!(
            parse_rpicam_list(out),
            vec![
                ("/base/soc/i2c0mux/i2c@1/imx219@10".into(), "imx219".into()),
                (
                    "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a".into(),
                    "imx708_wide".into()
                ),
            ]
        );
        assert!(parse_rpicam_list("No cameras available!\n").is_empty());
    }

    #[test]
    fn stream_line() {
        let out = "Using camera platform/vimc.0 Sensor B as cam0\nCamera configuration adjusted\n\
                   0: 636x477-BGR888\n * Pixelformat: BGR888 (48x48)-(4096x2160)/(+1,+1)\n";
        assert_eq!(parse_cam_stream(out), Some((636, 477, "BGR888".into())));
        assert_eq!(parse_cam_stream("cam0: Capture 1 frames\n"), None);
        assert_eq!(layout_of("BGR888"), Some(PixelFormat::Rgb24));
        assert_eq!(layout_of("SRGGB10_CSI2P"), None);
    }

    #[test]
    fn jpeg_dimensions() {
        // SOI, APP0 (len 4), SOF0: len 17, precision 8, height 480, width 640
        let j = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01,
            0xE0, 0x02, 0x80,
        ];
        assert_eq!(jpeg_size(&j), Some((640, 480)));
        assert_eq!(jpeg_size(&j[..12]), None);
        assert_eq!(jpeg_size(b"not a jpeg"), None);
    }

    #[test]
    fn tool_messages_map_to_camera_errors() {
        let t = Path::new("/usr/bin/cam");
        let id = "libcamera:x";
        assert!(matches!(
            tool_failure(
                id,
                t,
                "Failed to create camera session",
                "Camera x not found"
            ),
            CameraError::NotFound(_)
        ));
        assert_eq!(
            tool_failure(id, t, "", "Failed to acquire camera x").code(),
            "CAMERA_UNAVAILABLE"
        );
        assert_eq!(
            tool_failure(id, t, "", "open /dev/media0: Permission denied").code(),
            "CAMERA_PERMISSION_REQUIRED"
        );
        let e = tool_failure(id, t, "", "something odd\n\n");
        assert!(e.to_string().contains("something odd"), "{e}");
    }

    #[test]
    fn a_hung_tool_is_a_camera_that_gave_no_frame() {
        // (the deadline, the group kill and the output bounds: pincer_os::process's tests)
        let e = run(
            Command::new("sh").args(["-c", "sleep 30"]),
            Duration::from_millis(200),
            16,
        )
        .err();
        assert!(matches!(e, Some(CameraError::NoFrame(_, 200))), "{e:?}");
        assert_eq!(e.map(|e| e.code()), Some("CAMERA_UNAVAILABLE"));
        let e = run(
            &mut Command::new("/nonexistent/cam"),
            Duration::from_secs(1),
            16,
        )
        .err();
        assert!(matches!(e, Some(CameraError::Tool(..))), "{e:?}");
    }

    #[test]
    fn only_the_newest_frame_is_kept_on_disk() {
        let dir = TempDir::new().expect("temp dir");
        for n in [3, 1, 10, 2] {
            std::fs::write(dir.0.join(format!("frame-cam0-stream0-{n:06}.bin")), b"x")
                .expect("write");
        }
        prune(&dir.0);
        let left: Vec<_> = std::fs::read_dir(&dir.0)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("frame-cam0-stream0-000010.bin")]
        );
        let path = dir.0.clone();
        drop(dir);
        assert!(!path.exists(), "the capture directory outlives its photo");
    }

    #[test]
    fn no_tool_lists_the_camera_as_unusable_with_the_reason() {
        let lc = Libcamera::with_path("/nonexistent-bin");
        assert!(lc.list(&[]).is_empty());
        let graph = vec![
            ("vimc".to_owned(), "platform:vimc".to_owned()),
            ("vimc".to_owned(), "platform:vimc".to_owned()),
        ];
        let cams = lc.list(&graph);
        assert_eq!(cams.len(), 1, "{cams:?}");
        assert_eq!(cams[0].id, "libcamera:platform:vimc");
        assert!(
            matches!(&cams[0].access, Access::Unavailable(r) if r.contains("libcamera-tools")),
            "{cams:?}"
        );
        let e = lc
            .snap("libcamera:platform:vimc", &SnapRequest::default())
            .unwrap_err();
        assert_eq!(e.code(), "CAMERA_UNAVAILABLE");
        assert!(e.to_string().contains("rpicam-apps"), "{e}");
    }
}
