//! The software H.264 encoder: `rusty_h264-encoder` (pure Rust, BSD-2), in its
//! `baseline()` configuration — Constrained Baseline, CAVLC, one reference, no lookahead:
//! one access unit out per picture in, nothing buffered, the profile every player decodes.
//!
//! Chosen over openh264 (C++: no static musl C++ toolchain for the armv6 node, ~1 MB) and
//! x264 (GPL, C); measured in `docs/size.md`.

use rusty_h264_common::YuvPlanes;
use rusty_h264_encoder::{Encoder, EncoderConfig};

use super::{Coded, H264Encoder, VideoError, I420};

/// The software encoder for one stream.
pub struct Soft {
    enc: Encoder,
    out: Vec<u8>,
    width: u32,
    height: u32,
}

impl Soft {
    /// An encoder for `width`×`height` (even) pictures at about `fps`, aiming at
    /// `bitrate` bits/s (0: constant quality), an IDR every `gop` pictures.
    pub fn new(
        width: u32,
        height: u32,
        fps: u32,
        bitrate: u32,
        gop: u32,
    ) -> Result<Soft, VideoError> {
        let mut cfg = EncoderConfig::baseline(width as usize, height as usize);
        cfg.gop_size = gop.max(1);
        cfg.min_keyint = gop.max(1);
        cfg.framerate = fps.max(1) as f32;
        cfg.qp = 28;
        cfg.bitrate = bitrate;
        let enc = Encoder::new(cfg).map_err(|e| VideoError::Encoder(format!("{e:?}")))?;
        Ok(Soft {
            enc,
            // An IDR at low QP can approach the raw size; the encoder reports a short buffer.
            out: vec![0; (width * height * 3 / 2) as usize + 65_536],
            width,
            height,
        })
    }
}

impl H264Encoder for Soft {
    fn name(&self) -> &'static str {
        "software (rusty_h264)"
    }

    fn encode(&mut self, pic: &I420, pts_us: u64) -> Result<Vec<Coded>, VideoError> {
        if pic.width != self.width || pic.height != self.height {
            return Err(VideoError::Encoder(format!(
                "picture {}x{} for a {}x{} stream",
                pic.width, pic.height, self.width, self.height
            )));
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let planes = YuvPlanes::new(w, h, &pic.y, &pic.u, &pic.v, w, w / 2)
            .ok_or_else(|| VideoError::Encoder("picture planes do not match its size".into()))?;
        let n = self
            .enc
            .encode_into(&planes, &mut self.out)
            .map_err(|e| VideoError::Encoder(format!("{e:?}")))?;
        Ok(vec![Coded {
            data: self.out[..n].to_vec(),
            pts_us,
        }])
    }

    fn finish(&mut self) -> Result<Vec<Coded>, VideoError> {
        // baseline() buffers nothing.
        Ok(Vec::new())
    }
}
