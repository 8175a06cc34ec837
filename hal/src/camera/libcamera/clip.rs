//! `camera.clip` from a libcamera camera: a libcamera tool streams raw frames while the one
//! recording path of this crate (`record_clip`: I420, the board's H.264 encoder, the MP4
//! muxer) takes the newest frame each time a picture is due.
//!
//! * `rpicam-vid` (`libcamera-vid` before rpicam-apps 1.4): `--codec yuv420` to stdout, packed
//!   I420 frames of a size chosen here (width a multiple of 64 and height of 16, so the ISP's
//!   rows carry no padding).
//! * `cam`: `--capture` with no count into a private directory, one file per frame; a watcher
//!   takes each completed file and deletes it, so disk (or tmpfs) holds a frame or two.
//!
//! Memory: the frame being read, the newest frame and the one being converted (at most three
//! frame buffers, reused). The tool runs in its own process group and is killed when the
//! recording ends, fails or is cancelled ([`pincer_os::process::Spawned`]).

use std::ffi::OsStr;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pincer_os::process::Spawned;

use super::{
    layout_of, parse_cam_stream, rpicam_index, tool_failure, Every, Libcamera, TempDir, ID_PREFIX,
    LIST_TIMEOUT, TEXT_LIMIT,
};
use crate::camera::{CameraError, ClipRequest};
use crate::image::PixelFormat;
use crate::video::{Clip, I420};

/// What to install when no video tool is found.
const VIDEO_HINT: &str = "no libcamera video tool: install rpicam-apps (`rpicam-vid`, Raspberry \
     Pi OS) or libcamera-tools (`cam`, Debian)";

/// Widest picture a clip is recorded at (what the boards' H.264 encoders take at 30 fps).
const MAX_CLIP_WIDTH: u32 = 1920;

/// A libcamera tool that streams frames.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VideoTool {
    /// `rpicam-vid` / `libcamera-vid`.
    Rpicam(PathBuf),
    /// libcamera's `cam`.
    Cam(PathBuf),
}

impl VideoTool {
    fn find(path: &OsStr) -> Option<VideoTool> {
        let exe = |name: &str| pincer_os::which_in(path, name);
        exe("rpicam-vid")
            .or_else(|| exe("libcamera-vid"))
            .map(VideoTool::Rpicam)
            .or_else(|| exe("cam").map(VideoTool::Cam))
    }
}

impl Libcamera {
    /// A clip from the libcamera camera `id` (with [`ID_PREFIX`]).
    pub fn clip(&self, id: &str, req: &ClipRequest) -> Result<Clip, CameraError> {
        let path = match &self.path {
            Some(p) => Some(p.clone()),
            None => std::env::var_os("PATH"),
        };
        let tool = path
            .as_deref()
            .and_then(VideoTool::find)
            .ok_or_else(|| CameraError::NeedsLibcamera(id.into(), VIDEO_HINT.into()))?;
        match &tool {
            VideoTool::Rpicam(vid) => clip_rpicam(vid, id, rpicam_index(vid, id)?, req),
            VideoTool::Cam(cam) => clip_cam(cam, id, req),
        }
    }
}

/// A clip through `rpicam-vid`'s raw I420 output.
fn clip_rpicam(vid: &Path, id: &str, index: usize, req: &ClipRequest) -> Result<Clip, CameraError> {
    let wanted = match req.max_width {
        0 => MAX_CLIP_WIDTH,
        w => w.min(MAX_CLIP_WIDTH),
    };
    let w = (wanted / 64 * 64).max(64);
    let h = (w * 3 / 4) & !15;
    let frame_len = (w * h * 3 / 2) as usize;
    let mut cmd = Command::new(vid);
    cmd.args(["-n", "--codec", "yuv420", "-o", "-", "-t", "0"])
        .arg(format!("--camera={index}"))
        .arg(format!("--width={w}"))
        .arg(format!("--height={h}"))
        .arg(format!("--framerate={}", req.record.fps.clamp(1, 60)));
    let mut tool = spawn(&mut cmd, id)?;
    let latest = Arc::new(Latest::default());
    if let Some(mut out) = tool.stdout() {
        let slot = latest.clone();
        std::thread::spawn(move || {
            let mut seq = 0u64;
            let mut buf = vec![0u8; frame_len];
            while out.read_exact(&mut buf).is_ok() {
                let spare = slot.put(Frame { seq, data: buf });
                buf = spare.unwrap_or_else(|| vec![0u8; frame_len]);
                seq += 1;
            }
            slot.end();
        });
    }
    let source = Source {
        id,
        latest: &latest,
        layout: PixelFormat::Yu12,
        width: w,
        height: h,
    };
    let res = source.record(&mut tool, req);
    finish(res, tool, vid, id, None)
}

/// A clip through `cam`, one file per frame in a private directory.
fn clip_cam(cam: &Path, id: &str, req: &ClipRequest) -> Result<Clip, CameraError> {
    let camera = id.strip_prefix(ID_PREFIX).unwrap_or(id);
    let dir = TempDir::new().map_err(|e| CameraError::Io(id.into(), e))?;
    let mut stream = "role=video,pixelformat=YUV420".to_owned();
    if req.max_width > 0 {
        // libcamera picks the nearest size the pipeline can do.
        let w = req.max_width.min(MAX_CLIP_WIDTH);
        stream.push_str(&format!(",width={w},height={}", (w * 3 / 4).max(2)));
    }
    let mut cmd = Command::new(cam);
    cmd.args(["-c", camera, "--info", "-s", &stream, "--capture"])
        .arg(format!("--file={}/frame-#.bin", dir.0.display()));
    let mut tool = spawn(&mut cmd, id)?;
    // cam prints the configuration it settled on, then a line per frame: read it all (so cam
    // never blocks on the pipe), keep the first TEXT_LIMIT bytes for error messages.
    let (tx, rx) = mpsc::channel();
    let text = tool.stdout().map(|out| {
        std::thread::spawn(move || {
            let mut out = std::io::BufReader::new(out);
            let (mut kept, mut line, mut sent) = (String::new(), Vec::new(), false);
            loop {
                line.clear();
                match (&mut out).take(4096).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return kept,
                    Ok(_) => {}
                }
                let l = String::from_utf8_lossy(&line);
                if !sent {
                    if let Some(cfg) = parse_cam_stream(&l) {
                        sent = tx.send(cfg).is_ok();
                    }
                }
                if kept.len() + l.len() <= TEXT_LIMIT {
                    kept.push_str(&l);
                }
            }
        })
    });
    let (w, h, fmt) = match rx.recv_timeout(LIST_TIMEOUT + req.frame_timeout) {
        Ok(cfg) => cfg,
        Err(_) => {
            if tool.exited().is_some() {
                return finish(Err(Ended), tool, cam, id, text);
            }
            return Err(CameraError::Tool(
                id.into(),
                format!("{} printed no stream configuration", cam.display()),
            ));
        }
    };
    let layout = layout_of(&fmt)
        .ok_or_else(|| CameraError::Unsupported(id.into(), format!("libcamera {fmt}")))?;
    let latest = Arc::new(Latest::default());
    let watcher = watch(dir.0.clone(), latest.clone());
    let source = Source {
        id,
        latest: &latest,
        layout,
        width: w,
        height: h,
    };
    let res = source.record(&mut tool, req);
    drop(watcher);
    // cam's messages go to stdout as well as stderr.
    finish(res, tool, cam, id, text)
}

/// Starts a video tool with libcamera's logging at `ERROR` and up.
fn spawn(cmd: &mut Command, id: &str) -> Result<Spawned, CameraError> {
    Spawned::start(cmd.env("LIBCAMERA_LOG_LEVELS", "*:ERROR"), TEXT_LIMIT)
        .map_err(|e| CameraError::Tool(id.into(), e.to_string()))
}

/// Stops the tool; a recording that ended because the tool did is the tool's failure, told
/// by its stderr and what `text` (its stdout reader) kept.
fn finish(
    res: Result<Result<Clip, CameraError>, Ended>,
    tool: Spawned,
    path: &Path,
    id: &str,
    text: Option<std::thread::JoinHandle<String>>,
) -> Result<Clip, CameraError> {
    let stderr = tool.stop();
    let stdout = text.and_then(|t| t.join().ok()).unwrap_or_default();
    match res {
        Ok(r) => r,
        Err(Ended) => Err(tool_failure(
            id,
            path,
            &stdout,
            &String::from_utf8_lossy(&stderr),
        )),
    }
}

/// The camera tool exited while frames were wanted.
#[derive(Debug)]
struct Ended;

/// One raw frame and its sequence number (from 0, counting the tool's frames).
struct Frame {
    seq: u64,
    data: Vec<u8>,
}

#[derive(Default)]
struct Slot {
    frame: Option<Frame>,
    /// A buffer the recorder is done with, for the reader's next frame.
    spare: Option<Vec<u8>>,
    ended: bool,
}

/// The newest frame a tool gave, handed from its reader to the recorder.
#[derive(Default)]
struct Latest {
    slot: Mutex<Slot>,
    ready: Condvar,
}

impl Latest {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `f` as the newest frame; a buffer for the next one (that of the frame it
    /// replaces, or one the recorder gave back), for reuse.
    fn put(&self, f: Frame) -> Option<Vec<u8>> {
        let mut slot = self.lock();
        let old = slot.frame.replace(f).map(|f| f.data);
        let spare = old.or_else(|| slot.spare.take());
        drop(slot);
        self.ready.notify_all();
        spare
    }

    /// Gives a taken frame's buffer back.
    fn give_back(&self, buf: Vec<u8>) {
        self.lock().spare = Some(buf);
    }

    /// No more frames will come.
    fn end(&self) {
        self.lock().ended = true;
        self.ready.notify_all();
    }

    /// The newest frame, waiting up to `wait`; `Err` once the reader ended with none left.
    fn take(&self, wait: Duration) -> Result<Option<Frame>, Ended> {
        let slot = self.lock();
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, wait, |s| s.frame.is_none() && !s.ended)
            .unwrap_or_else(|e| e.into_inner());
        match slot.frame.take() {
            Some(f) => Ok(Some(f)),
            None if slot.ended => Err(Ended),
            None => Ok(None),
        }
    }
}

/// Where the recorder takes its frames from.
struct Source<'a> {
    id: &'a str,
    latest: &'a Latest,
    layout: PixelFormat,
    width: u32,
    height: u32,
}

/// Why no frame came.
enum Missed {
    /// None for this long while the tool ran.
    Late(Duration),
    /// The tool exited.
    Ended,
}

impl Source<'_> {
    /// Records `req` from the frames the running `tool` gives; `Err(Ended)` when the tool exited.
    /// The recording starts with the first frame after the warm-up ones (so a tool's start-up
    /// does not eat into the clip).
    fn record(
        &self,
        tool: &mut Spawned,
        req: &ClipRequest,
    ) -> Result<Result<Clip, CameraError>, Ended> {
        let (w, h, id) = (self.width, self.height, self.id);
        let no_frame = |t: Duration| CameraError::NoFrame(id.into(), t.as_millis() as u64);
        // The first frame may take the tool's start-up as well.
        let warmup = u64::from(req.warmup_frames);
        let mut first = match self.next(
            tool,
            warmup,
            Instant::now(),
            LIST_TIMEOUT + req.frame_timeout,
        ) {
            Ok(f) => Some(f),
            Err(Missed::Ended) => return Err(Ended),
            Err(Missed::Late(t)) => return Ok(Err(no_frame(t))),
        };
        let mut ended = false;
        let res = super::super::record_clip(id, w, h, &req.record, |pic: &mut I420, due| {
            let f = match first.take() {
                Some(f) => f,
                None => match self.next(tool, 0, due, req.frame_timeout) {
                    Ok(f) => f,
                    Err(Missed::Late(t)) => return Err(no_frame(t)),
                    Err(Missed::Ended) => {
                        ended = true;
                        return Err(CameraError::Tool(id.into(), "stopped".into()));
                    }
                },
            };
            let fill = self.fill(pic, &f.data);
            self.latest.give_back(f.data);
            fill
        });
        if ended {
            Err(Ended)
        } else {
            Ok(res)
        }
    }

    /// The first frame numbered `min_seq` or later to be the newest at or after `due`, with no
    /// more than `patience` between frames.
    fn next(
        &self,
        tool: &mut Spawned,
        min_seq: u64,
        due: Instant,
        patience: Duration,
    ) -> Result<Frame, Missed> {
        let mut since = Instant::now();
        loop {
            match self.latest.take(Duration::from_millis(100)) {
                Ok(Some(f)) if f.seq >= min_seq && Instant::now() >= due => return Ok(f),
                Ok(Some(f)) => {
                    self.latest.give_back(f.data);
                    since = Instant::now();
                }
                Ok(None) if tool.exited().is_none() => {
                    if since.elapsed() >= patience {
                        return Err(Missed::Late(patience));
                    }
                }
                Ok(None) | Err(Ended) => return Err(Missed::Ended),
            }
        }
    }

    fn fill(&self, pic: &mut I420, data: &[u8]) -> Result<(), CameraError> {
        let (w, h) = (self.width, self.height);
        let stride = match self.layout {
            // Planar 4:2:0: a luma plane of `stride * h` and chroma half that.
            PixelFormat::Yu12 | PixelFormat::Nv12 if h > 0 => {
                (data.len() * 2 / (h as usize * 3)) as u32
            }
            _ if h > 0 => (data.len() / h as usize) as u32,
            _ => 0,
        };
        pic.fill_from(self.layout, data, w, h, stride)
            .map_err(|e| CameraError::Frame(self.id.into(), e))
    }
}

/// Takes each frame file `cam` completes in `dir` (every file but the newest: cam opens,
/// writes and closes one file per frame, named by zero-padded sequence number) into `latest`
/// and deletes it, every 10 ms until dropped.
fn watch(dir: PathBuf, latest: Arc<Latest>) -> Every {
    let mut spare: Option<Vec<u8>> = None;
    Every::start(Duration::from_millis(10), move || {
        if let Some(f) = take_completed(&dir, spare.take()) {
            spare = latest.put(f);
        }
    })
}

/// The newest completed frame file in `dir` read (into `buf` when given), and every completed
/// file removed.
fn take_completed(dir: &Path, buf: Option<Vec<u8>>) -> Option<Frame> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files.pop();
    let newest = files.last()?.clone();
    let mut data = buf.unwrap_or_default();
    data.clear();
    let read = std::fs::File::open(&newest).and_then(|mut f| f.read_to_end(&mut data));
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    read.ok()?;
    Some(Frame {
        seq: frame_seq(&newest)?,
        data,
    })
}

/// `frame-cam0-stream0-000012.bin` → 12.
fn frame_seq(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.rsplit('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_files_are_numbered_by_sequence() {
        assert_eq!(
            frame_seq(Path::new("/t/frame-cam0-stream0-000012.bin")),
            Some(12)
        );
        assert_eq!(frame_seq(Path::new("/t/frame-x.bin")), None);
    }

    #[test]
    fn completed_frames_are_taken_newest_first_and_removed() {
        let dir = TempDir::new().unwrap();
        for (n, byte) in [(1u8, 1u8), (2, 2), (3, 3)] {
            std::fs::write(
                dir.0.join(format!("frame-cam0-stream0-00000{n}.bin")),
                [byte],
            )
            .unwrap();
        }
        let f = take_completed(&dir.0, None).unwrap();
        assert_eq!((f.seq, f.data), (2, vec![2]));
        let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
        assert_eq!(
            left.len(),
            1,
            "only the file cam may still be writing stays"
        );
        assert!(take_completed(&dir.0, None).is_none());
    }

    #[test]
    fn a_missing_video_tool_says_what_to_install() {
        let empty = TempDir::new().unwrap();
        let lc = Libcamera::with_path(empty.0.as_os_str());
        let err = lc.clip("libcamera:x", &request(500)).unwrap_err();
        assert_eq!(err.code(), "CAMERA_UNAVAILABLE", "{err}");
        assert!(err.to_string().contains("rpicam-vid"), "{err}");
    }

    fn request(ms: u64) -> ClipRequest {
        ClipRequest {
            device: None,
            facing: None,
            max_width: 320,
            warmup_frames: 2,
            frame_timeout: Duration::from_secs(3),
            record: crate::video::RecordRequest {
                duration: Duration::from_millis(ms),
                fps: 10,
                max_bytes: 4 << 20,
                stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            },
        }
    }

    /// A stand-in `rpicam-vid` (a shell script speaking its command line and raw output).
    /// Copied into place by `cp`, so no thread of this test process ever holds it open for
    /// writing: a fork elsewhere in the test binary would inherit such a descriptor and make
    /// exec'ing the script fail with ETXTBSY.
    fn fake_rpicam(dir: &Path, body: &str) {
        let script = format!(
            "#!/bin/sh\nif [ \"$1\" = --list-cameras ]; then\n  echo 'Available cameras'\n  \
             echo '0 : imx219 [3280x2464 10-bit RGGB] (/base/imx219@10)'\n  exit 0\nfi\n{body}\n"
        );
        let src = dir.join("rpicam-vid.sh");
        std::fs::write(&src, script).unwrap();
        let ok = Command::new("install")
            .arg("-m755")
            .arg(&src)
            .arg(dir.join("rpicam-vid"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "install the fake rpicam-vid");
    }

    #[cfg(feature = "video-soft")]
    #[test]
    fn rpicam_vid_frames_become_an_mp4() {
        let dir = TempDir::new().unwrap();
        // 320x240 I420, mid-grey.
        std::fs::write(dir.0.join("frame.yuv"), vec![128u8; 320 * 240 * 3 / 2]).unwrap();
        fake_rpicam(
            &dir.0,
            &format!(
                "case \"$*\" in *--width=320*--height=240*) ;; *) echo \"bad args $*\" >&2; exit 2;; esac\n\
                 while :; do cat '{}/frame.yuv' || exit 1; sleep 0.03; done",
                dir.0.display()
            ),
        );
        let lc = Libcamera::with_path(dir.0.as_os_str());
        let clip = lc.clip("libcamera:/base/imx219@10", &request(800)).unwrap();
        assert_eq!((clip.width, clip.height), (320, 240));
        assert!(clip.frames >= 3, "{} frames", clip.frames);
        assert!(
            (700..=900).contains(&clip.duration_ms),
            "{} ms",
            clip.duration_ms
        );
        assert_eq!(&clip.mp4[4..8], b"ftyp");
    }

    #[test]
    fn a_tool_that_dies_is_its_error_not_a_hang() {
        let dir = TempDir::new().unwrap();
        fake_rpicam(
            &dir.0,
            "echo 'ERROR: *** no cameras available ***' >&2\nexit 1",
        );
        let lc = Libcamera::with_path(dir.0.as_os_str());
        let err = lc
            .clip("libcamera:/base/imx219@10", &request(800))
            .unwrap_err();
        assert!(err.to_string().contains("no cameras available"), "{err}");
    }

    #[test]
    fn a_tool_that_streams_nothing_is_no_frame_not_a_hang() {
        let dir = TempDir::new().unwrap();
        fake_rpicam(&dir.0, "exec sleep 60");
        let lc = Libcamera::with_path(dir.0.as_os_str());
        let mut req = request(800);
        req.frame_timeout = Duration::from_millis(200);
        let err = lc.clip("libcamera:/base/imx219@10", &req).unwrap_err();
        assert!(matches!(err, CameraError::NoFrame(..)), "{err}");
    }

    #[test]
    fn an_unknown_camera_is_not_found() {
        let dir = TempDir::new().unwrap();
        fake_rpicam(&dir.0, "exit 1");
        let lc = Libcamera::with_path(dir.0.as_os_str());
        let err = lc.clip("libcamera:/base/other", &request(800)).unwrap_err();
        assert!(matches!(err, CameraError::NotFound(ref id) if id == "libcamera:/base/other"));
    }
}
