//! Raw frames to RGB, downscaling and JPEG, shared by the camera and screen classes.
//!
//! Every conversion checks the buffer length against the geometry first and returns
//! [`ImageError`] rather than reading past a short frame (a camera unplugged mid-transfer can
//! hand back a truncated buffer).
//!
//! `jpeg` is the baseline JPEG encoder both classes' photos go through.

#[cfg(feature = "jpeg")]
mod jpeg;

/// An 8-bit RGB image, rows packed (`width * 3` bytes per row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// `width * height * 3` bytes, R G B per pixel, top row first.
    pub data: Vec<u8>,
}

/// An 8-bit full-range YCbCr image (JPEG's own colour space), laid out as an [`Rgb`]'s pixels
/// (Y Cb Cr per pixel): a camera's YUV frames go to JPEG through this with one range expansion
/// instead of a round trip through RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ycc(pub Rgb);

/// A raw pixel layout this module can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// Packed 4:2:2, U Y0 V Y1.
    Uyvy,
    /// Planar 4:2:0: Y plane, then interleaved UV.
    Nv12,
    /// Planar 4:2:0: Y, U, V planes (I420).
    Yu12,
    /// R G B, 3 bytes.
    Rgb24,
    /// B G R, 3 bytes.
    Bgr24,
    /// 8-bit grey.
    Grey,
    /// 16-bit little-endian 5:6:5.
    Rgb565,
    /// 32-bit little-endian pixels with red/green/blue at these bit offsets (8 bits each), as
    /// framebuffers describe them (`XRGB8888` is red 16, green 8, blue 0).
    Rgb32 {
        /// Bit offset of the red byte.
        r: u8,
        /// Bit offset of the green byte.
        g: u8,
        /// Bit offset of the blue byte.
        b: u8,
    },
}

/// Why a frame could not be converted or encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageError {
    /// The buffer is shorter than its geometry needs (a truncated frame).
    #[error("frame is {got} bytes; {width}x{height} needs {need}")]
    Short {
        /// Bytes the buffer has.
        got: usize,
        /// Bytes the geometry and format need.
        need: usize,
        /// Width, pixels.
        width: u32,
        /// Height, pixels.
        height: u32,
    },
    /// Width or height (given) is zero.
    #[error("empty image ({0}x{1})")]
    Empty(u32, u32),
    /// A side (width, height given) exceeds JPEG's 65 535 pixels.
    #[error("image too large for JPEG ({0}x{1}; 65535 max)")]
    TooLarge(u32, u32),
    /// The JPEG encoder failed.
    #[error("JPEG encoding failed: {0}")]
    Encode(String),
}

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// `v * 255 / range`, rounded half away from zero.
fn expand(v: i32, range: i32) -> i32 {
    let d = v * 510;
    if d >= 0 {
        (d + range) / (2 * range)
    } else {
        -((range - d) / (2 * range))
    }
}

/// BT.601 limited range YCbCr to RGB, integer arithmetic.
fn yuv_to_rgb(y: u8, u: u8, v: u8, out: &mut [u8]) {
    let c = (i32::from(y) - 16) * 298;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    out[0] = clamp_u8((c + 409 * e + 128) >> 8);
    out[1] = clamp_u8((c - 100 * d - 208 * e + 128) >> 8);
    out[2] = clamp_u8((c + 516 * d + 128) >> 8);
}

impl PixelFormat {
    /// The YUV layouts (the ones a JPEG takes without a colour transform).
    fn is_yuv(self) -> bool {
        matches!(
            self,
            PixelFormat::Yuyv | PixelFormat::Uyvy | PixelFormat::Nv12 | PixelFormat::Yu12
        )
    }

    /// Bytes of one packed row of `width` pixels (a row's least stride): 4:2:2 comes in
    /// 4-byte pairs and 4:2:0 chroma rows hold ceil(width / 2) samples, so an odd width
    /// still ends on a whole pair.
    pub(crate) fn row_bytes(self, width: usize) -> usize {
        match self {
            PixelFormat::Yuyv | PixelFormat::Uyvy => width.div_ceil(2) * 4,
            PixelFormat::Rgb565 => width * 2,
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => width * 3,
            PixelFormat::Grey => width,
            PixelFormat::Nv12 | PixelFormat::Yu12 => width.div_ceil(2) * 2,
            PixelFormat::Rgb32 { .. } => width * 4,
        }
    }

    /// Bytes needed for a frame whose rows are `stride` bytes apart (stride 0: packed).
    pub(crate) fn frame_len(self, width: usize, height: usize, stride: usize) -> usize {
        let packed = self.row_bytes(width);
        let stride = stride.max(packed);
        match self {
            // Chroma planes follow the luma plane: half the rows (NV12) or two quarter
            // planes (I420), with the stride halved for I420's chroma rows.
            PixelFormat::Nv12 => stride * height + stride * height.div_ceil(2),
            PixelFormat::Yu12 => stride * height + 2 * (stride / 2) * height.div_ceil(2),
            _ => stride * (height.saturating_sub(1)) + packed,
        }
    }

    /// Checks that `src` holds a whole `width` x `height` frame (neither zero) at `stride`;
    /// returns the stride rows really advance by (at least a packed row).
    pub(crate) fn checked_stride(
        self,
        src: &[u8],
        width: u32,
        height: u32,
        stride: u32,
    ) -> Result<usize, ImageError> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 {
            return Err(ImageError::Empty(width, height));
        }
        let need = self.frame_len(w, h, stride as usize);
        if src.len() < need {
            return Err(ImageError::Short {
                got: src.len(),
                need,
                width,
                height,
            });
        }
        Ok((stride as usize).max(self.row_bytes(w)))
    }

    /// Converts one frame of a YUV layout to full-range YCbCr (`None` for RGB layouts: use
    /// [`PixelFormat::to_rgb`]). Chroma is repeated per pixel; limited range (16–235/240, what
    /// V4L2 YUV is) is expanded to JPEG's 0–255 by table.
    pub fn to_ycc(
        self,
        src: &[u8],
        width: u32,
        height: u32,
        stride: u32,
    ) -> Result<Option<Ycc>, ImageError> {
        if !self.is_yuv() {
            return Ok(None);
        }
        let (w, h) = (width as usize, height as usize);
        let stride = self.checked_stride(src, width, height, stride)?;
        let mut luma = [0u8; 256];
        let mut chroma = [0u8; 256];
        for i in 0..256 {
            luma[i] = clamp_u8(expand(i as i32 - 16, 219));
            chroma[i] = clamp_u8(128 + expand(i as i32 - 128, 224));
        }
        let mut out = vec![0u8; w * h * 3];
        let plane = stride * h;
        for (row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
            let line = &src[row * stride..];
            match self {
                PixelFormat::Yuyv | PixelFormat::Uyvy => {
                    let (yo, uo, vo) = if self == PixelFormat::Yuyv {
                        (0, 1, 3)
                    } else {
                        (1, 0, 2)
                    };
                    for (pair, px) in line.chunks_exact(4).zip(dst.chunks_mut(6)) {
                        let (u, v) = (chroma[pair[uo] as usize], chroma[pair[vo] as usize]);
                        px[0] = luma[pair[yo] as usize];
                        px[1] = u;
                        px[2] = v;
                        if px.len() == 6 {
                            px[3] = luma[pair[yo + 2] as usize];
                            px[4] = u;
                            px[5] = v;
                        }
                    }
                }
                _ => {
                    let (cs, quarter) = (stride / 2, (stride / 2) * h.div_ceil(2));
                    for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                        let (u, v) = if self == PixelFormat::Nv12 {
                            let c = plane + (row / 2) * stride + (x / 2) * 2;
                            (src[c], src[c + 1])
                        } else {
                            let c = (row / 2) * cs + x / 2;
                            (src[plane + c], src[plane + quarter + c])
                        };
                        px[0] = luma[line[x] as usize];
                        px[1] = chroma[u as usize];
                        px[2] = chroma[v as usize];
                    }
                }
            }
        }
        Ok(Some(Ycc(Rgb {
            width,
            height,
            data: out,
        })))
    }

    /// Converts one frame to RGB.
    pub fn to_rgb(
        self,
        src: &[u8],
        width: u32,
        height: u32,
        stride: u32,
    ) -> Result<Rgb, ImageError> {
        let (w, h) = (width as usize, height as usize);
        let stride = self.checked_stride(src, width, height, stride)?;
        let mut out = vec![0u8; w * h * 3];
        for (row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
            let line = &src[row * stride..];
            match self {
                PixelFormat::Yuyv | PixelFormat::Uyvy => {
                    let (yo, uo, vo) = if self == PixelFormat::Yuyv {
                        (0, 1, 3)
                    } else {
                        (1, 0, 2)
                    };
                    for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                        let pair = &line[(x / 2) * 4..(x / 2) * 4 + 4];
                        let y = pair[yo + (x % 2) * 2];
                        yuv_to_rgb(y, pair[uo], pair[vo], px);
                    }
                }
                PixelFormat::Nv12 | PixelFormat::Yu12 => {
                    let plane = stride * h;
                    for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                        let y = line[x];
                        let (u, v) = if self == PixelFormat::Nv12 {
                            let c = plane + (row / 2) * stride + (x / 2) * 2;
                            (src[c], src[c + 1])
                        } else {
                            let cs = stride / 2;
                            let quarter = cs * h.div_ceil(2);
                            let c = (row / 2) * cs + x / 2;
                            (src[plane + c], src[plane + quarter + c])
                        };
                        yuv_to_rgb(y, u, v, px);
                    }
                }
                PixelFormat::Rgb24 => dst.copy_from_slice(&line[..w * 3]),
                PixelFormat::Bgr24 => {
                    for (px, s) in dst.chunks_exact_mut(3).zip(line.chunks_exact(3)) {
                        px.copy_from_slice(&[s[2], s[1], s[0]]);
                    }
                }
                PixelFormat::Grey => {
                    for (px, &g) in dst.chunks_exact_mut(3).zip(line[..w].iter()) {
                        px.copy_from_slice(&[g, g, g]);
                    }
                }
                PixelFormat::Rgb565 => {
                    for (px, s) in dst.chunks_exact_mut(3).zip(line.chunks_exact(2)) {
                        let v = u16::from_le_bytes([s[0], s[1]]);
                        let (r, g, b) = ((v >> 11) & 0x1f, (v >> 5) & 0x3f, v & 0x1f);
                        px.copy_from_slice(&[
                            ((r << 3) | (r >> 2)) as u8,
                            ((g << 2) | (g >> 4)) as u8,
                            ((b << 3) | (b >> 2)) as u8,
                        ]);
                    }
                }
                PixelFormat::Rgb32 { r, g, b } => {
                    for (px, s) in dst.chunks_exact_mut(3).zip(line.chunks_exact(4)) {
                        let v = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                        // offsets come from the driver: one past 31 reads as 0, not a panic
                        let at = |o: u8| v.checked_shr(u32::from(o)).unwrap_or(0) as u8;
                        px.copy_from_slice(&[at(r), at(g), at(b)]);
                    }
                }
            }
        }
        Ok(Rgb {
            width,
            height,
            data: out,
        })
    }
}

impl Rgb {
    /// Scales down (area average) so the width is at most `max_width`, keeping the aspect
    /// ratio; returns the image unchanged when it already fits.
    pub fn fit_width(self, max_width: u32) -> Rgb {
        if max_width == 0 || self.width <= max_width {
            return self;
        }
        let (sw, sh) = (self.width as usize, self.height as usize);
        let dw = max_width as usize;
        let dh = ((sh * dw + sw / 2) / sw).max(1);
        let mut out = vec![0u8; dw * dh * 3];
        for dy in 0..dh {
            let (y0, y1) = (dy * sh / dh, ((dy + 1) * sh / dh).max(dy * sh / dh + 1));
            for dx in 0..dw {
                let (x0, x1) = (dx * sw / dw, ((dx + 1) * sw / dw).max(dx * sw / dw + 1));
                let mut acc = [0u32; 3];
                for y in y0..y1 {
                    let row = &self.data[(y * sw + x0) * 3..(y * sw + x1) * 3];
                    for px in row.chunks_exact(3) {
                        acc[0] += u32::from(px[0]);
                        acc[1] += u32::from(px[1]);
                        acc[2] += u32::from(px[2]);
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)) as u32;
                let o = (dy * dw + dx) * 3;
                for c in 0..3 {
                    out[o + c] = ((acc[c] + n / 2) / n) as u8;
                }
            }
        }
        Rgb {
            width: dw as u32,
            height: dh as u32,
            data: out,
        }
    }

    /// Baseline JPEG at `quality` (1..=100), chroma subsampled 4:2:0 (what cameras make).
    #[cfg(feature = "jpeg")]
    pub fn to_jpeg(&self, quality: u8) -> Result<Vec<u8>, ImageError> {
        jpeg::encode(&jpeg::Source::Rgb(self), quality)
    }

    /// JPEG whose base64 form stays under `max_base64` bytes: lowers the quality, then halves
    /// the size, until it fits. Returns the JPEG and its final geometry.
    #[cfg(feature = "jpeg")]
    pub fn to_jpeg_within(
        self,
        quality: u8,
        max_base64: usize,
    ) -> Result<(Vec<u8>, u32, u32), ImageError> {
        within(self, false, quality, max_base64)
    }
}

impl Ycc {
    /// As [`Rgb::fit_width`].
    pub fn fit_width(self, max_width: u32) -> Ycc {
        Ycc(self.0.fit_width(max_width))
    }

    /// As [`Rgb::to_jpeg_within`]: the samples go to the encoder as they are.
    #[cfg(feature = "jpeg")]
    pub fn to_jpeg_within(
        self,
        quality: u8,
        max_base64: usize,
    ) -> Result<(Vec<u8>, u32, u32), ImageError> {
        within(self.0, true, quality, max_base64)
    }
}

#[cfg(feature = "jpeg")]
impl PixelFormat {
    /// A YUV frame straight to JPEG, no full-frame copy on the way (the camera's photo path):
    /// as [`Ycc::to_jpeg_within`] of [`PixelFormat::to_ycc`] then [`Ycc::fit_width`], and
    /// equal to it, but only when the frame needs scaling or a halving to fit does it
    /// convert the frame first. `None` for RGB layouts.
    #[allow(clippy::too_many_arguments)] // a frame's geometry plus the photo's three limits
    pub fn to_jpeg_within(
        self,
        src: &[u8],
        width: u32,
        height: u32,
        stride: u32,
        max_width: u32,
        quality: u8,
        max_base64: usize,
    ) -> Result<Option<(Vec<u8>, u32, u32)>, ImageError> {
        if !self.is_yuv() {
            return Ok(None);
        }
        let row_stride = self.checked_stride(src, width, height, stride)?;
        if max_width == 0 || width <= max_width {
            let frame = jpeg::Source::Yuv {
                format: self,
                data: src,
                width,
                height,
                stride: row_stride,
            };
            for q in qualities(quality) {
                let jpeg = jpeg::encode(&frame, q)?;
                if jpeg.len() <= max_base64 / 4 * 3 {
                    return Ok(Some((jpeg, width, height)));
                }
            }
        }
        let Some(ycc) = self.to_ycc(src, width, height, stride)? else {
            return Ok(None);
        };
        let fit = if max_width == 0 || width <= max_width {
            width / 2
        } else {
            max_width
        };
        ycc.fit_width(fit)
            .to_jpeg_within(quality, max_base64)
            .map(Some)
    }
}

/// The qualities a budgeted JPEG tries: the asked one, then 15 lower each time, down to 40.
#[cfg(feature = "jpeg")]
fn qualities(quality: u8) -> impl Iterator<Item = u8> {
    let first = quality.clamp(1, 100);
    std::iter::successors(Some(first), |&q| {
        (q > 40).then(|| q.saturating_sub(15).max(40))
    })
}

#[cfg(feature = "jpeg")]
fn within(
    img: Rgb,
    ycc: bool,
    quality: u8,
    max_base64: usize,
) -> Result<(Vec<u8>, u32, u32), ImageError> {
    let max_bytes = max_base64 / 4 * 3;
    let mut img = img;
    loop {
        for q in qualities(quality) {
            let src = if ycc {
                jpeg::Source::Ycc(&img)
            } else {
                jpeg::Source::Rgb(&img)
            };
            let jpeg = jpeg::encode(&src, q)?;
            if jpeg.len() <= max_bytes {
                return Ok((jpeg, img.width, img.height));
            }
        }
        if img.width <= 16 {
            return Err(ImageError::Encode(format!(
                "cannot fit the image in {max_base64} base64 bytes"
            )));
        }
        let half = img.width / 2;
        img = img.fit_width(half);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_to_full_range_ycc() {
        // Two YUYV pairs: black and white at limited range, chroma at its extremes.
        let yuyv = [16, 16, 235, 240, 235, 128, 16, 128];
        let ycc = PixelFormat::Yuyv.to_ycc(&yuyv, 4, 1, 0).unwrap().unwrap();
        assert_eq!(
            ycc.0.data,
            vec![0, 0, 255, 255, 0, 255, 255, 128, 128, 0, 128, 128]
        );
        assert_eq!(PixelFormat::Rgb24.to_ycc(&[0; 3], 1, 1, 0), Ok(None));
        assert!(matches!(
            PixelFormat::Nv12.to_ycc(&[0; 5], 2, 2, 0),
            Err(ImageError::Short { .. })
        ));
        // NV12 and YUYV of the same picture agree.
        let nv12 = [235, 16, 235, 16, 240, 16];
        let a = PixelFormat::Nv12.to_ycc(&nv12, 2, 2, 0).unwrap().unwrap();
        let yuyv = [235, 240, 16, 16, 235, 240, 16, 16];
        let b = PixelFormat::Yuyv.to_ycc(&yuyv, 2, 2, 0).unwrap().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn odd_widths_and_wild_offsets_are_errors_or_pixels_never_panics() {
        // found by the `pixels` fuzz target: a 1-pixel-wide UYVY frame of 2 bytes
        assert!(PixelFormat::Uyvy.to_rgb(&[0, 0], 1, 1, 0).is_err());
        // and a 1-pixel-wide NV12 / I420 frame whose chroma rows would overrun the stride
        assert!(PixelFormat::Nv12.to_rgb(&[0; 3], 1, 2, 0).is_err());
        assert_eq!(
            PixelFormat::Nv12
                .to_rgb(&[0; 6], 1, 2, 0)
                .unwrap()
                .data
                .len(),
            6
        );
        assert_eq!(
            PixelFormat::Yu12
                .to_rgb(&[0; 6], 1, 2, 0)
                .unwrap()
                .data
                .len(),
            6
        );
        let rgb = PixelFormat::Yuyv
            .to_rgb(&[16, 128, 16, 128], 1, 1, 0)
            .unwrap();
        assert_eq!(rgb.data.len(), 3);
        let rgb = PixelFormat::Yuyv
            .to_rgb(&[16, 128, 16, 128, 16, 128, 16, 128], 3, 1, 0)
            .unwrap();
        assert_eq!(rgb.data.len(), 9);
        let wild = PixelFormat::Rgb32 {
            r: 40,
            g: 255,
            b: 0,
        };
        assert_eq!(
            wild.to_rgb(&[1, 2, 3, 4], 1, 1, 0).unwrap().data,
            vec![0, 0, 1]
        );
    }

    #[test]
    fn yuyv_colours_and_short_frames() {
        // One white and one black pixel pair (limited range), then a pure red-ish pair.
        let frame = [235, 128, 235, 128, 81, 90, 81, 240];
        let rgb = PixelFormat::Yuyv.to_rgb(&frame, 2, 2, 4).unwrap();
        assert_eq!(&rgb.data[..6], &[255, 255, 255, 255, 255, 255]);
        let red = &rgb.data[6..9];
        assert!(red[0] > 240 && red[1] < 20 && red[2] < 20, "{red:?}");
        assert_eq!(
            PixelFormat::Yuyv.to_rgb(&frame[..6], 2, 2, 4),
            Err(ImageError::Short {
                got: 6,
                need: 8,
                width: 2,
                height: 2
            })
        );
        assert_eq!(
            PixelFormat::Yuyv.to_rgb(&frame, 0, 2, 4),
            Err(ImageError::Empty(0, 2))
        );
    }

    #[test]
    fn nv12_i420_rgb32_and_strides() {
        // 2x2, grey luma 128, neutral chroma → mid grey everywhere.
        let nv12 = [126, 126, 126, 126, 128, 128];
        let g = PixelFormat::Nv12.to_rgb(&nv12, 2, 2, 2).unwrap();
        assert!(g.data.iter().all(|&v| (128..=130).contains(&v)), "{g:?}");
        let i420 = [126, 126, 0, 0, 126, 126, 0, 0, 128, 0, 128, 0];
        let g = PixelFormat::Yu12.to_rgb(&i420, 2, 2, 4).unwrap();
        assert!(g.data.iter().all(|&v| (128..=130).contains(&v)), "{g:?}");
        // XRGB8888 with padding at the end of each row.
        let fb = [0, 0, 255, 0, 7, 7, 7, 7, 255, 0, 0, 0];
        let c = PixelFormat::Rgb32 { r: 16, g: 8, b: 0 }
            .to_rgb(&fb, 1, 2, 8)
            .unwrap();
        assert_eq!(c.data, vec![255, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn downscale_averages() {
        let img = Rgb {
            width: 4,
            height: 2,
            data: [[0u8, 0, 0], [255, 255, 255]]
                .iter()
                .cycle()
                .take(8)
                .flatten()
                .copied()
                .collect(),
        };
        let small = img.fit_width(2);
        assert_eq!((small.width, small.height), (2, 1));
        assert!(small.data.iter().all(|&v| (127..=128).contains(&v)));
    }

    #[cfg(feature = "jpeg")]
    #[test]
    fn jpeg_within_a_budget_shrinks() {
        let mut data = vec![0u8; 640 * 480 * 3];
        let mut seed = 7u32;
        for b in &mut data {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *b = (seed >> 16) as u8;
        }
        let img = Rgb {
            width: 640,
            height: 480,
            data,
        };
        let (jpeg, w, _) = img.clone().to_jpeg_within(90, 10_000_000).unwrap();
        assert_eq!(w, 640);
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let (small, w2, _) = img.to_jpeg_within(90, 40_000).unwrap();
        assert!(
            small.len() <= 30_000 && w2 < 640,
            "{} bytes {w2}",
            small.len()
        );
    }
}
