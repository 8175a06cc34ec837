//! `pincer-bench video`: the software H.264 path on the same 640×480 frames as
//! `ffmpeg -c:v libx264 -preset ultrafast`, in one run: frames per second and bytes out.
//!
//! Pincer's side is the node's own code path: YUYV frames (what a webcam and vivid give)
//! converted to I420, encoded by `pincer_hal::video::encoder`, muxed into MP4 by
//! `pincer_hal::video::mp4`. ffmpeg reads the same frames, already I420, from a raw file (its
//! conversion is not counted). Both are single-threaded (`-threads 1`), as a board's node is.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pincer_hal::image::PixelFormat;
use pincer_hal::video::{self, mp4::Mp4Writer, I420};

use super::temp_dir;

const W: u32 = 640;
const H: u32 = 480;
const FPS: u32 = 15;
/// 10 s at 15 fps.
const FRAMES: u32 = 150;

/// vivid-like content: colour bars that move, a moving box and sensor-like noise, as YUYV.
fn frame(n: u32, seed: &mut u32) -> Vec<u8> {
    const BARS: [(u8, u8, u8); 8] = [
        (180, 128, 128),
        (162, 44, 142),
        (131, 156, 44),
        (112, 72, 58),
        (84, 184, 198),
        (65, 100, 212),
        (35, 212, 114),
        (16, 128, 128),
    ];
    let mut out = vec![0u8; (W * H * 2) as usize];
    for y in 0..H {
        for x in (0..W).step_by(2) {
            let bar = (((x + n * 3) * 8 / W) % 8) as usize;
            let (mut l, u, v) = BARS[bar];
            let in_box = (x + 4 * n) % W < 96 && (y + 2 * n) % H < 96;
            if in_box {
                l = 235;
            }
            *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let noise = ((*seed >> 16) % 5) as u8;
            let o = ((y * W + x) * 2) as usize;
            out[o..o + 4].copy_from_slice(&[
                l.saturating_add(noise),
                u,
                l.saturating_add(noise / 2),
                v,
            ]);
        }
    }
    out
}

pub fn run() -> Result<()> {
    let dir = temp_dir("video");
    let mut seed = 7u32;
    let frames: Vec<Vec<u8>> = (0..FRAMES).map(|n| frame(n, &mut seed)).collect();

    // pincer: YUYV → I420 → H.264 → MP4.
    let mut pic = I420::new(W, H);
    let duration = Duration::from_secs(u64::from(FRAMES / FPS));
    let bitrate = std::env::var("PINCER_BENCH_BITRATE")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| video::bitrate_for(W, H, FPS, duration, 19 << 20));
    let mut enc = video::encoder(W, H, FPS, bitrate)?;
    let mut mux = Mp4Writer::new(W as u16, H as u16, 19 << 20);
    let t = Instant::now();
    for (i, f) in frames.iter().enumerate() {
        pic.fill_from(PixelFormat::Yuyv, f, W, H, 0)?;
        let pts = i as u64 * 1_000_000 / u64::from(FPS);
        for unit in enc.encode(&pic, pts)? {
            mux.push(&unit.data, unit.pts_us)?;
        }
    }
    let mp4 = mux
        .finish(1_000_000 / u64::from(FPS))
        .context("no frames")?;
    let ours = t.elapsed();
    std::fs::write(dir.join("pincer.mp4"), &mp4)?;

    // ffmpeg libx264 ultrafast on the same pictures (converted to I420 beforehand).
    let mut raw = Vec::with_capacity((W * H * 3 / 2 * FRAMES) as usize);
    for f in &frames {
        pic.fill_from(PixelFormat::Yuyv, f, W, H, 0)?;
        raw.extend_from_slice(&pic.y);
        raw.extend_from_slice(&pic.u);
        raw.extend_from_slice(&pic.v);
    }
    let raw_path = dir.join("frames.yuv");
    std::fs::write(&raw_path, &raw)?;
    let out_path = dir.join("x264.mp4");
    let t = Instant::now();
    let st = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p"])
        .args(["-s", &format!("{W}x{H}"), "-r", &FPS.to_string(), "-i"])
        .arg(&raw_path)
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-threads", "1"])
        // The same rate mode: constant QP 28 (as the node's default), else the same bitrate.
        .args(if bitrate == 0 {
            ["-qp".to_string(), "28".to_string()]
        } else {
            ["-b:v".to_string(), bitrate.to_string()]
        })
        .arg(&out_path)
        .status()
        .context("ffmpeg (Debian's ffmpeg package)")?;
    let theirs = t.elapsed();
    if !st.success() {
        bail!("ffmpeg failed: {st}");
    }
    let x264_bytes = std::fs::metadata(&out_path)?.len();
    let fps = |d: Duration| f64::from(FRAMES) / d.as_secs_f64();
    let rate = if bitrate == 0 {
        "constant QP 28".to_string()
    } else {
        format!("{} kb/s", bitrate / 1000)
    };
    println!(
        "## Video encode, 640x480, {FRAMES} frames ({} s at {FPS} fps), {rate}",
        FRAMES / FPS
    );
    println!();
    println!("| encoder | frames/s | file bytes |");
    println!("|---|---|---|");
    println!(
        "| pincer: YUYV→I420 + {} + MP4 | {:.1} | {} |",
        enc.name(),
        fps(ours),
        mp4.len()
    );
    println!("| ffmpeg libx264 -preset ultrafast -threads 1 (I420 in, process start included) | {:.1} | {} |", fps(theirs), x264_bytes);
    println!();
    println!("files in {}", dir.display());
    Ok(())
}
