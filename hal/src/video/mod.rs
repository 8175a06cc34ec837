//! Video: pictures in, a playable H.264 MP4 out, for `camera.clip` and `screen.record`.
//!
//! * [`I420`]: the encoders' one input format; camera and screen frames are converted once.
//! * [`H264Encoder`]: one stream's encoder. [`encoder`] picks the board's: the kernel's
//!   memory-to-memory encoder when one exists (later), else the software one ([`soft`], the
//!   `video-soft` feature), else [`VideoError::NoEncoder`].
//! * [`mp4`]: the container, written in memory within a byte budget.
//! * [`record`]: the loop both commands share — pace the source, stamp, encode, mux, stop at
//!   the duration, the budget or a cancel.
//!
//! Memory while recording: one raw frame from the source, one [`I420`] picture, the encoder's
//! reference picture and the coded samples (bounded by the budget). No raw clip is kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod i420;
pub mod m2m;
pub mod mp4;
#[cfg(feature = "video-soft")]
pub mod soft;

pub use i420::I420;
use mp4::{Mp4Error, Mp4Writer};

/// Why a clip could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoError {
    /// This build has no software encoder and the board no hardware one.
    #[error("no H.264 encoder: no V4L2 memory-to-memory encoder here and this node was built without `video-soft`")]
    NoEncoder,
    /// The encoder failed (its message).
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    /// The container refused the stream.
    #[error("MP4: {0}")]
    Mp4(#[from] Mp4Error),
    /// The source gave no picture before the clip ended.
    #[error("no picture was recorded")]
    NoFrames,
    /// Stopped before the first picture (`node.invoke.cancel`).
    #[error("the recording was cancelled")]
    Cancelled,
}

/// One coded unit (Annex-B for H.264) and the presentation time of the picture it codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coded {
    /// The bytes.
    pub data: Vec<u8>,
    /// Microseconds from the start of the clip.
    pub pts_us: u64,
}

/// One H.264 stream's encoder.
pub trait H264Encoder: Send {
    /// What it is, for logs and `doctor`.
    fn name(&self) -> &'static str;
    /// Codes one picture presented at `pts_us`: the units that are ready (possibly none yet,
    /// possibly earlier pictures'; the first carries SPS/PPS).
    fn encode(&mut self, pic: &I420, pts_us: u64) -> Result<Vec<Coded>, VideoError>;
    /// Drains what the encoder still holds at the end of the stream.
    fn finish(&mut self) -> Result<Vec<Coded>, VideoError>;
}

/// Where the board's hardware H.264 encoders are looked for.
const DEV_DIR: &str = "/dev";

/// The encoder `camera.clip` and `screen.record` will use, described (for `doctor` and logs):
/// the first V4L2 memory-to-memory H.264 encoder, else the software one, else none.
pub fn encoder_name() -> String {
    if let Some(d) = m2m::list(std::path::Path::new(DEV_DIR))
        .into_iter()
        .find(|d| d.coded.iter().any(|c| c == "H264"))
    {
        return format!("hardware: {} ({}, V4L2 memory-to-memory)", d.path, d.card);
    }
    if cfg!(feature = "video-soft") {
        "software: rusty_h264, Constrained Baseline (no hardware H.264 encoder found)".into()
    } else {
        "none: no hardware H.264 encoder found and this node was built without video-soft".into()
    }
}

/// An encoder for `width`×`height` (even) at about `fps`, aiming at `bitrate` bits/s: the
/// board's hardware encoder when it has one that opens, else the software one.
#[allow(unused_variables)]
pub fn encoder(
    width: u32,
    height: u32,
    fps: u32,
    bitrate: u32,
) -> Result<Box<dyn H264Encoder>, VideoError> {
    // An IDR every 2 s: seeking and a damaged frame recover quickly.
    let gop = fps.max(1) * 2;
    for d in m2m::list(std::path::Path::new(DEV_DIR)) {
        if !d.coded.iter().any(|c| c == "H264") {
            continue;
        }
        // Hardware encoders need a rate: 0.1 bit per pixel and picture unless capped.
        let rate = if bitrate == 0 {
            (u64::from(width) * u64::from(height) * u64::from(fps.max(1)) / 10)
                .min(u64::from(u32::MAX)) as u32
        } else {
            bitrate
        };
        match m2m::M2mEncoder::open(&d.path, b"H264", width, height, rate, gop) {
            Ok(enc) => return Ok(Box::new(enc)),
            Err(e) => {
                tracing::warn!(path = %d.path, error = %e, "hardware encoder unusable; trying the next")
            }
        }
    }
    #[cfg(feature = "video-soft")]
    {
        let enc = soft::Soft::new(width, height, fps, bitrate, gop)?;
        return Ok(Box::new(enc));
    }
    #[allow(unreachable_code)]
    Err(VideoError::NoEncoder)
}

/// The bitrate for `width`×`height` at `fps` over `duration` that keeps the file within
/// `max_bytes`: 0 (constant quality, QP 28: the encoder's fastest mode, ~0.03 bit per pixel on
/// a camera's 640×480) when even a quarter bit per pixel and picture would fit, else the budget's
/// rate, logged, since the clip then loses quality to fit.
pub fn bitrate_for(width: u32, height: u32, fps: u32, duration: Duration, max_bytes: usize) -> u32 {
    let worst = u64::from(width) * u64::from(height) * u64::from(fps.max(1)) / 4;
    let secs = duration.as_secs_f64().max(0.2);
    // 85 %: the rate control overshoots a little, and IDRs are large.
    let budget = (max_bytes as f64 * 8.0 * 0.85 / secs) as u64;
    if budget >= worst {
        return 0;
    }
    let rate = budget.clamp(50_000, u64::from(u32::MAX)) as u32;
    tracing::info!(
        width,
        height,
        fps,
        secs,
        bitrate = rate,
        "the clip's size budget caps its bitrate"
    );
    rate
}

/// What [`record`] should make.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    /// How long to record.
    pub duration: Duration,
    /// Pictures per second at most.
    pub fps: u32,
    /// Bytes the MP4 must stay within (the result's base64 budget × 3/4).
    pub max_bytes: usize,
    /// Set by the caller to stop early (a cancelled invoke); what was recorded is discarded.
    pub stop: Arc<AtomicBool>,
}

/// A recorded clip.
#[derive(Debug, Clone)]
pub struct Clip {
    /// The MP4 file.
    pub mp4: Vec<u8>,
    /// Its duration, milliseconds.
    pub duration_ms: u64,
    /// Pictures in it.
    pub frames: usize,
    /// Picture size.
    pub width: u32,
    /// Picture size.
    pub height: u32,
    /// The encoder that made it.
    pub encoder: &'static str,
    /// The budget ended the clip before its duration.
    pub truncated: bool,
}

/// Records `req.duration` of pictures from `next`, which fills the picture with a frame taken at
/// or after the instant it is given (it paces itself: a camera drops what comes earlier, a
/// screen waits). Errors from `next` end the recording with that error (an unplugged camera).
pub fn record<E: From<VideoError>>(
    pic: &mut I420,
    req: &RecordRequest,
    mut enc: Box<dyn H264Encoder>,
    mut next: impl FnMut(&mut I420, Instant) -> Result<(), E>,
) -> Result<Clip, E> {
    let (w, h) = (pic.width, pic.height);
    let side = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    let mut mux = Mp4Writer::new(side(w), side(h), req.max_bytes);
    let interval = Duration::from_micros(1_000_000 / u64::from(req.fps.max(1)));
    let start = Instant::now();
    let end = start + req.duration;
    let mut due = start;
    let mut last_pts = 0u64;
    let mut truncated = false;
    while !truncated {
        if req.stop.load(Ordering::Relaxed) {
            return Err(VideoError::Cancelled.into());
        }
        next(pic, due)?;
        let now = Instant::now();
        if now >= end && !mux.is_empty() {
            break;
        }
        let pts = now.duration_since(start).as_micros() as u64;
        for unit in enc.encode(pic, pts)? {
            match mux.push(&unit.data, unit.pts_us) {
                Ok(()) => last_pts = last_pts.max(unit.pts_us),
                Err(Mp4Error::Full(limit)) => {
                    tracing::warn!(
                        limit,
                        frames = mux.samples(),
                        "the clip reached its size budget; ending it early"
                    );
                    truncated = true;
                    break;
                }
                Err(e) => return Err(VideoError::from(e).into()),
            }
        }
        due = (due + interval).max(now);
    }
    if !truncated {
        for unit in enc.finish()? {
            if mux.push(&unit.data, unit.pts_us).is_err() {
                break;
            }
            last_pts = last_pts.max(unit.pts_us);
        }
    }
    let frames = mux.samples();
    // The last picture lasts until the end of the asked duration (or one interval).
    let total = req.duration.as_micros() as u64;
    let tail = if truncated {
        interval.as_micros() as u64
    } else {
        total
            .saturating_sub(last_pts)
            .max(interval.as_micros() as u64 / 2)
    };
    let mp4 = mux.finish(tail).ok_or(VideoError::NoFrames)?;
    let duration_ms = (last_pts + tail) / 1000;
    Ok(Clip {
        mp4,
        duration_ms,
        frames,
        width: w,
        height: h,
        encoder: enc.name(),
        truncated,
    })
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    #[test]
    fn constant_quality_unless_the_budget_needs_a_cap() {
        let mb19 = 19 << 20;
        assert_eq!(bitrate_for(640, 480, 15, Duration::from_secs(3), mb19), 0);
        assert_eq!(bitrate_for(640, 480, 15, Duration::from_secs(60), mb19), 0);
        // 1080p for a minute would not fit at a quarter bit per pixel: capped to the budget.
        let r = bitrate_for(1920, 1080, 30, Duration::from_secs(60), mb19);
        assert!(r > 0 && u64::from(r) * 60 / 8 <= mb19 as u64, "{r}");
    }
}

#[cfg(all(test, feature = "video-soft"))]
mod tests {
    use super::*;

    #[test]
    fn records_a_playable_stream_within_its_duration() {
        let mut pic = I420::new(64, 48);
        let req = RecordRequest {
            duration: Duration::from_millis(300),
            fps: 20,
            max_bytes: 1 << 20,
            stop: Arc::default(),
        };
        let enc = encoder(64, 48, 20, 200_000).unwrap();
        let mut n = 0u8;
        let clip = record::<VideoError>(&mut pic, &req, enc, |p, due| {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            n = n.wrapping_add(40);
            p.y.fill(n);
            Ok(())
        })
        .unwrap();
        assert!(clip.frames >= 2, "{clip:?}");
        assert!(
            (250..=400).contains(&clip.duration_ms),
            "{}",
            clip.duration_ms
        );
        assert_eq!(&clip.mp4[4..8], b"ftyp");
        assert!(!clip.truncated);
        if let Ok(p) = std::env::var("PINCER_DUMP_MP4") {
            std::fs::write(p, &clip.mp4).unwrap();
        }
    }

    #[test]
    fn cancel_and_budget() {
        let mut pic = I420::new(64, 48);
        let stop = Arc::new(AtomicBool::new(true));
        let req = RecordRequest {
            duration: Duration::from_secs(60),
            fps: 30,
            max_bytes: 1 << 20,
            stop: stop.clone(),
        };
        let e = record::<VideoError>(&mut pic, &req, encoder(64, 48, 30, 0).unwrap(), |_, _| {
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e, VideoError::Cancelled);
        // A 6 KB budget: noise frames fill it long before 60 s, and the file stays within it.
        stop.store(false, Ordering::Relaxed);
        let req = RecordRequest {
            max_bytes: 6000,
            ..req
        };
        let mut seed = 1u32;
        let clip = record::<VideoError>(&mut pic, &req, encoder(64, 48, 30, 0).unwrap(), |p, _| {
            for v in p.y.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *v = (seed >> 16) as u8;
            }
            Ok(())
        })
        .unwrap();
        assert!(clip.truncated);
        assert!(clip.mp4.len() <= 6000, "{}", clip.mp4.len());
    }
}
