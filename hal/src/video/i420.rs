//! Frames to I420 (planar 4:2:0, even sides), the one input format the H.264 encoders take.
//!
//! YUV layouts are repacked directly (luma copied, chroma subsampled); RGB layouts go through
//! one BT.601 limited-range conversion. Odd sides are cropped by one pixel. Lengths are checked
//! as in [`crate::image`], so a truncated frame is an error, never a read past its end.

use crate::image::{ImageError, PixelFormat, Rgb};

/// One planar 4:2:0 picture; `width` and `height` are even.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420 {
    /// Width, pixels (even).
    pub width: u32,
    /// Height, pixels (even).
    pub height: u32,
    /// `width * height` luma samples.
    pub y: Vec<u8>,
    /// `width/2 * height/2` Cb samples.
    pub u: Vec<u8>,
    /// `width/2 * height/2` Cr samples.
    pub v: Vec<u8>,
}

impl I420 {
    /// A black picture, sides rounded down to even (at least 2).
    pub fn new(width: u32, height: u32) -> I420 {
        let (w, h) = ((width & !1).max(2), (height & !1).max(2));
        let (luma, chroma) = ((w * h) as usize, (w / 2 * h / 2) as usize);
        I420 {
            width: w,
            height: h,
            y: vec![16; luma],
            u: vec![128; chroma],
            v: vec![128; chroma],
        }
    }

    /// Fills this picture (same size as the frame's even-cropped size) from a raw frame.
    pub fn fill_from(
        &mut self,
        format: PixelFormat,
        src: &[u8],
        width: u32,
        height: u32,
        stride: u32,
    ) -> Result<(), ImageError> {
        let (w, h) = (self.width as usize, self.height as usize);
        if width & !1 != self.width || height & !1 != self.height {
            return Err(ImageError::Empty(width, height));
        }
        if !matches!(
            format,
            PixelFormat::Yuyv
                | PixelFormat::Uyvy
                | PixelFormat::Nv12
                | PixelFormat::Yu12
                | PixelFormat::Grey
        ) {
            let rgb = format.to_rgb(src, width, height, stride)?;
            self.fill_from_rgb(&rgb);
            return Ok(());
        }
        let stride = format.checked_stride(src, width, height, stride)?;
        let (packed, rows) = (format.row_bytes(width as usize), height as usize);
        let cw = w / 2;
        match format {
            PixelFormat::Yuyv | PixelFormat::Uyvy => {
                let (yo, uo, vo) = if format == PixelFormat::Yuyv {
                    (0, 1, 3)
                } else {
                    (1, 0, 2)
                };
                for row in 0..h {
                    let line = &src[row * stride..row * stride + packed];
                    let dst = &mut self.y[row * w..(row + 1) * w];
                    for (x, px) in dst.iter_mut().enumerate() {
                        *px = line[(x / 2) * 4 + yo + (x % 2) * 2];
                    }
                }
                for cy in 0..h / 2 {
                    let (a, b) = (&src[2 * cy * stride..], &src[(2 * cy + 1) * stride..]);
                    for cx in 0..cw {
                        let o = cx * 4;
                        let avg = |i: usize| {
                            (u16::from(a[o + i]) + u16::from(b[o + i])).div_ceil(2) as u8
                        };
                        self.u[cy * cw + cx] = avg(uo);
                        self.v[cy * cw + cx] = avg(vo);
                    }
                }
            }
            PixelFormat::Nv12 | PixelFormat::Yu12 | PixelFormat::Grey => {
                for row in 0..h {
                    self.y[row * w..(row + 1) * w]
                        .copy_from_slice(&src[row * stride..row * stride + w]);
                }
                let plane = stride * rows;
                match format {
                    PixelFormat::Nv12 => {
                        for cy in 0..h / 2 {
                            let line = &src[plane + cy * stride..];
                            for cx in 0..cw {
                                self.u[cy * cw + cx] = line[cx * 2];
                                self.v[cy * cw + cx] = line[cx * 2 + 1];
                            }
                        }
                    }
                    PixelFormat::Yu12 => {
                        let cs = stride / 2;
                        let quarter = cs * rows.div_ceil(2);
                        for cy in 0..h / 2 {
                            let u = &src[plane + cy * cs..];
                            let v = &src[plane + quarter + cy * cs..];
                            self.u[cy * cw..(cy + 1) * cw].copy_from_slice(&u[..cw]);
                            self.v[cy * cw..(cy + 1) * cw].copy_from_slice(&v[..cw]);
                        }
                    }
                    _ => {
                        self.u.fill(128);
                        self.v.fill(128);
                    }
                }
            }
            // RGB layouts were converted above.
            _ => {}
        }
        Ok(())
    }

    /// Fills this picture from an RGB image of the same (even-cropped) size.
    pub fn fill_from_rgb(&mut self, rgb: &Rgb) {
        let (w, h) = (self.width as usize, self.height as usize);
        let sw = rgb.width as usize;
        if rgb.width & !1 != self.width || rgb.height & !1 != self.height {
            return;
        }
        let px = |x: usize, y: usize| {
            let o = (y * sw + x) * 3;
            (
                i32::from(rgb.data[o]),
                i32::from(rgb.data[o + 1]),
                i32::from(rgb.data[o + 2]),
            )
        };
        for y in 0..h {
            for x in 0..w {
                let (r, g, b) = px(x, y);
                self.y[y * w + x] = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
            }
        }
        let cw = w / 2;
        for cy in 0..h / 2 {
            for cx in 0..cw {
                let (mut r, mut g, mut b) = (0, 0, 0);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let p = px(cx * 2 + dx, cy * 2 + dy);
                    r += p.0;
                    g += p.1;
                    b += p.2;
                }
                let (r, g, b) = (r / 4, g / 4, b / 4);
                self.u[cy * cw + cx] =
                    (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128).clamp(0, 255) as u8;
                self.v[cy * cw + cx] =
                    (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128).clamp(0, 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_nv12_and_rgb_agree_on_a_red_frame() {
        // BT.601 red: Y 81, U 90, V 240.
        let (w, h) = (4u32, 2u32);
        let yuyv: Vec<u8> = [81, 90, 81, 240].repeat(4);
        let mut a = I420::new(w, h);
        a.fill_from(PixelFormat::Yuyv, &yuyv, w, h, 0).unwrap();
        assert_eq!((a.y[0], a.u[0], a.v[0]), (81, 90, 240));
        let mut nv12 = vec![81u8; 8];
        nv12.extend_from_slice(&[90, 240, 90, 240]);
        let mut b = I420::new(w, h);
        b.fill_from(PixelFormat::Nv12, &nv12, w, h, 0).unwrap();
        assert_eq!(a, b);
        let rgb = Rgb {
            width: w,
            height: h,
            data: [255, 0, 0].repeat(8),
        };
        let mut c = I420::new(w, h);
        c.fill_from_rgb(&rgb);
        assert_eq!((c.y[0], c.u[0], c.v[0]), (82, 90, 240));
    }

    #[test]
    fn short_and_odd_frames() {
        let mut p = I420::new(5, 3);
        assert_eq!((p.width, p.height), (4, 2));
        let e = p
            .fill_from(PixelFormat::Yuyv, &[0; 10], 5, 3, 0)
            .unwrap_err();
        assert!(matches!(e, ImageError::Short { .. }), "{e}");
        // A 5×3 YUYV frame (12 bytes a row) fills the 4×2 crop.
        p.fill_from(PixelFormat::Yuyv, &[100; 36], 5, 3, 0).unwrap();
        assert!(p.y.iter().all(|&y| y == 100));
        assert!(p.fill_from(PixelFormat::Yuyv, &[0; 64], 8, 2, 0).is_err());
    }
}
