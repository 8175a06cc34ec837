//! Baseline JPEG (JFIF, 4:2:0, the typical Huffman tables of Annex K), coded straight from a
//! frame's own samples.
//!
//! Why hand-written: the `jpeg-encoder` crate this replaced takes whole interleaved images
//! only, so a camera's YUV frame went through two full-frame copies (to YCbCr, then the
//! crate's per-pixel row buffers) and a strided block gather before a block was coded; those
//! passes were 40 % of a photo's encode time, and on a board's CPU (or the test VM's emulated
//! one) every pass over 900 KB counts. This reads each 8x8 block straight from the frame,
//! expands limited-range YUV by table on the way, and codes each block
//! with the AAN integer DCT, a reciprocal quantiser and a Huffman writer that jumps over
//! zero coefficients by bitmask. With more than one CPU the image is cut into stripes of
//! rows, each a restart interval, coded on up to [`MAX_THREADS`] threads (a Pi 3, 4, 5 or
//! Zero 2 W has four cores) and joined. `pincer-bench camera` and `docs/benchmarks.md` have
//! the figures.
//!
//! Memory: the output (in one piece per thread) and a few 64-entry blocks per thread.

use super::{ImageError, PixelFormat, Rgb};

/// Where the samples come from. Lengths are checked by [`encode`]'s callers
/// ([`PixelFormat::frame_len`] for raw frames; an [`Rgb`] is whole by construction).
pub(crate) enum Source<'a> {
    /// A YUV frame as the camera gave it (limited range, expanded while reading).
    Yuv {
        format: PixelFormat,
        data: &'a [u8],
        width: u32,
        height: u32,
        /// Bytes between rows (at least the packed row).
        stride: usize,
    },
    /// Full-range Y Cb Cr per pixel (an [`super::Ycc`]'s image).
    Ycc(&'a Rgb),
    /// R G B per pixel.
    Rgb(&'a Rgb),
}

impl Source<'_> {
    fn size(&self) -> (u32, u32) {
        match self {
            Source::Yuv { width, height, .. } => (*width, *height),
            Source::Ycc(img) | Source::Rgb(img) => (img.width, img.height),
        }
    }
}

/// Annex K.1 luminance quantisation table, natural order.
const LUMA_Q: [u8; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// Annex K.2 chrominance quantisation table, natural order.
const CHROMA_Q: [u8; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// The natural (row-major) index of the k-th coefficient in zigzag order.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

// Annex K.3: code counts per length 1..=16, then the symbols in code order.
const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];
const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
    0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

/// A Huffman table as the writer uses it: code and length per symbol (Annex C).
struct Huffman {
    code: [u16; 256],
    len: [u8; 256],
}

impl Huffman {
    fn new(bits: &[u8; 16], values: &[u8]) -> Huffman {
        let mut h = Huffman {
            code: [0; 256],
            len: [0; 256],
        };
        let (mut code, mut k) = (0u32, 0usize);
        for (i, &n) in bits.iter().enumerate() {
            for _ in 0..n {
                let s = usize::from(values[k]);
                h.code[s] = code as u16;
                h.len[s] = i as u8 + 1;
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        h
    }
}

/// One component's quantiser: the 1/divisor of every (natural-order) coefficient as
/// 2^-24 fixed point, with the AAN DCT's output scaling folded in.
struct Quantiser {
    /// The table as written to DQT (natural order, 1..=255).
    table: [u8; 64],
    /// Per natural-order coefficient: the reciprocal << 6 | its zigzag index (one load
    /// for both: under emulation the loads are the cost).
    recip: [u32; 64],
}

impl Quantiser {
    fn new(base: &[u8; 64], quality: u8) -> Quantiser {
        // libjpeg's quality scaling, so quality means what other encoders make it mean.
        let q = u32::from(quality.clamp(1, 100));
        let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
        let mut table = [0u8; 64];
        for (t, &b) in table.iter_mut().zip(base) {
            *t = ((u32::from(b) * scale + 50) / 100).clamp(1, 255) as u8;
        }
        // The AAN DCT's outputs come scaled by 8 * s(u) * s(v), s(0) = 1,
        // s(k) = cos(k pi / 16) * sqrt(2).
        let s = |k: usize| {
            if k == 0 {
                1.0
            } else {
                (k as f64 * core::f64::consts::PI / 16.0).cos() * core::f64::consts::SQRT_2
            }
        };
        let mut recip = [0u32; 64];
        for (i, r) in recip.iter_mut().enumerate() {
            let divisor = f64::from(table[i]) * 8.0 * s(i / 8) * s(i % 8);
            // At most 2^21 (divisor 8), so 26 bits with the index.
            *r = (((1u64 << 24) as f64 / divisor).round() as u32) << 6 | u32::from(UNZIGZAG[i]);
        }
        Quantiser { table, recip }
    }

    /// The DCT's column pass over `block` (rows already transformed, see [`dct8`]), each
    /// output quantised as it comes and written back in place (natural order); returns the
    /// mask of non-zero AC coefficients in zigzag order (bit k for zigzag index k), which is
    /// all the Huffman coder walks. One pass, no second block: on an emulated or in-order
    /// CPU the loads and stores are the cost (a 16-bit, vectorisable split into column
    /// pass, quantiser and mask ran 1.2x faster natively and 1.2x slower in the TCG VM).
    #[inline(always)]
    fn columns(&self, block: &mut [i32; 64]) -> u64 {
        let mut mask = 0u64;
        for c in 0..8 {
            let col = core::array::from_fn(|r| block[r * 8 + c]);
            for (u, v) in dct8(col).into_iter().enumerate() {
                let n = u * 8 + c;
                let rk = self.recip[n];
                let k = (rk & 63) as usize;
                let q =
                    ((u64::from(v.unsigned_abs()) * u64::from(rk >> 6) + (1 << 23)) >> 24) as i32;
                // Baseline's ranges: AC magnitudes up to 10 bits, and DC too, so that a DC
                // difference stays within 11.
                let q = q.min(1023);
                block[n] = if v < 0 { -q } else { q };
                mask |= u64::from(q != 0) << k;
            }
        }
        mask & !1
    }
}

/// The zigzag index of each natural-order coefficient ([`ZIGZAG`] inverted).
const UNZIGZAG: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut k = 0;
    while k < 64 {
        t[ZIGZAG[k] as usize] = k as u8;
        k += 1;
    }
    t
};

/// One 8-point pass of the AAN forward DCT in integers (8-bit fixed-point constants),
/// outputs in frequency order. Rows then columns make the 2-D DCT, its outputs scaled as
/// [`Quantiser`] expects.
#[inline(always)]
fn dct8(x: [i32; 8]) -> [i32; 8] {
    const C0_382: i32 = 98; // 0.382683433 * 256
    const C0_541: i32 = 139; // 0.541196100 * 256
    const C0_707: i32 = 181; // 0.707106781 * 256
    const C1_306: i32 = 334; // 1.306562965 * 256
    let mul = |v: i32, c: i32| (v * c) >> 8;
    let (t0, t7) = (x[0] + x[7], x[0] - x[7]);
    let (t1, t6) = (x[1] + x[6], x[1] - x[6]);
    let (t2, t5) = (x[2] + x[5], x[2] - x[5]);
    let (t3, t4) = (x[3] + x[4], x[3] - x[4]);
    // Even part.
    let (t10, t13) = (t0 + t3, t0 - t3);
    let (t11, t12) = (t1 + t2, t1 - t2);
    let z1 = mul(t12 + t13, C0_707);
    // Odd part.
    let (o10, o11, o12) = (t4 + t5, t5 + t6, t6 + t7);
    let z5 = mul(o10 - o12, C0_382);
    let z2 = mul(o10, C0_541) + z5;
    let z4 = mul(o12, C1_306) + z5;
    let z3 = mul(o11, C0_707);
    let (z11, z13) = (t7 + z3, t7 - z3);
    [
        t10 + t11,
        z11 + z4,
        t13 + z1,
        z13 - z2,
        t10 - t11,
        z13 + z2,
        t13 - z1,
        z11 - z4,
    ]
}

/// The entropy-coded segment's bit writer: a 64-bit accumulator flushed 32 bits at a time,
/// with 0xFF bytes stuffed.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    #[inline(always)]
    fn put(&mut self, bits: u32, len: u32) {
        self.acc = (self.acc << len) | u64::from(bits);
        self.n += len;
        if self.n >= 32 {
            self.n -= 32;
            let w = (self.acc >> self.n) as u32;
            // Any 0xFF byte in w (a zero byte in !w) needs a 0x00 after it.
            let inv = !w;
            if inv.wrapping_sub(0x0101_0101) & !inv & 0x8080_8080 == 0 {
                self.out.extend_from_slice(&w.to_be_bytes());
            } else {
                for b in w.to_be_bytes() {
                    self.out.push(b);
                    if b == 0xFF {
                        self.out.push(0);
                    }
                }
            }
        }
    }

    /// Pads the last byte with 1 bits (as the standard asks) and flushes.
    fn finish(mut self) -> Vec<u8> {
        let pad = (8 - self.n % 8) % 8;
        self.put((1 << pad) - 1, pad);
        while self.n >= 8 {
            self.n -= 8;
            let b = (self.acc >> self.n) as u8;
            self.out.push(b);
            if b == 0xFF {
                self.out.push(0);
            }
        }
        self.out
    }

    #[inline(always)]
    fn code(&mut self, h: &Huffman, symbol: u8, extra: u32, extra_len: u32) {
        let s = usize::from(symbol);
        self.put(
            (u32::from(h.code[s]) << extra_len) | extra,
            u32::from(h.len[s]) + extra_len,
        );
    }
}

/// A value's magnitude category and its extra bits (ones' complement for negatives).
#[inline(always)]
fn category(v: i32) -> (u32, u32) {
    let size = 32 - v.unsigned_abs().leading_zeros();
    let bits = if v < 0 { v - 1 } else { v } as u32 & ((1u32 << size) - 1);
    (size, bits)
}

/// One component's coding state.
struct Component<'a> {
    quant: &'a Quantiser,
    dc: &'a Huffman,
    ac: &'a Huffman,
    prev_dc: i32,
}

impl Component<'_> {
    /// Codes a block whose rows [`Blocks`] has transformed.
    fn code_block(&mut self, w: &mut Bits, block: &mut [i32; 64]) {
        let mut mask = self.quant.columns(block);
        let (size, bits) = category(block[0] - self.prev_dc);
        self.prev_dc = block[0];
        w.code(self.dc, size as u8, bits, size);
        let mut last = 0;
        while mask != 0 {
            let k = mask.trailing_zeros();
            let mut run = k - last - 1;
            while run >= 16 {
                w.code(self.ac, 0xF0, 0, 0);
                run -= 16;
            }
            let (size, bits) = category(block[usize::from(ZIGZAG[k as usize])]);
            w.code(self.ac, ((run << 4) | size) as u8, bits, size);
            last = k;
            mask &= mask - 1;
        }
        if last != 63 {
            w.code(self.ac, 0x00, 0, 0);
        }
    }
}

/// Limited-range (V4L2 YUV) to full-range tables, centred on 0 as the DCT takes samples.
struct Expand {
    luma: [i32; 256],
    chroma: [i32; 256],
}

impl Expand {
    fn new() -> Expand {
        let mut e = Expand {
            luma: [0; 256],
            chroma: [0; 256],
        };
        for i in 0..256 {
            e.luma[i] = i32::from(super::clamp_u8(super::expand(i as i32 - 16, 219))) - 128;
            e.chroma[i] =
                i32::from(super::clamp_u8(128 + super::expand(i as i32 - 128, 224))) - 128;
        }
        e
    }
}

/// Reads 8x8 blocks (centred on 0) straight from the source, each row through the DCT's
/// row pass as it is read ([`Quantiser::columns`] does the rest). Samples past the right or
/// bottom edge repeat the last column or row (what keeps edge blocks smooth); chroma is
/// 4:2:0, each sample the mean of the 2x2 pixels it covers.
struct Blocks<'a> {
    src: &'a Source<'a>,
    e: Expand,
    w: usize,
    h: usize,
}

/// The mean of two centred samples, rounded half up as for uncentred ones.
#[inline(always)]
fn mean2(a: i32, b: i32) -> i32 {
    (a + b + 1) >> 1
}

impl Blocks<'_> {
    /// Luma of the block whose top-left pixel is (x0, y0).
    #[inline(always)]
    fn luma(&self, x0: usize, y0: usize, out: &mut [i32; 64]) {
        let (w, h) = (self.w, self.h);
        // Column c of the block; the fast paths below take whole blocks only.
        let col = |c: usize| (x0 + c).min(w - 1);
        let full = x0 + 8 <= w;
        let rows = out.chunks_exact_mut(8).enumerate();
        let tab = &self.e.luma;
        match *self.src {
            Source::Yuv {
                format,
                data,
                stride,
                ..
            } => {
                let yo = usize::from(format == PixelFormat::Uyvy);
                let packed = matches!(format, PixelFormat::Yuyv | PixelFormat::Uyvy);
                for (r, dst) in rows {
                    let line = &data[(y0 + r).min(h - 1) * stride..];
                    match (packed, full) {
                        (true, true) => {
                            // Two 8-byte loads for the row's 16 bytes (under emulation each
                            // load is the cost), the Y bytes shifted out of them.
                            let px = &line[x0 * 2..x0 * 2 + 16];
                            let words = [word(&px[..8]), word(&px[8..])];
                            for (i, d) in dst.iter_mut().enumerate() {
                                let b = (words[i / 4] >> (16 * (i % 4) + 8 * yo)) as u8;
                                *d = tab[usize::from(b)];
                            }
                        }
                        (true, false) => {
                            for (c, d) in dst.iter_mut().enumerate() {
                                *d = tab[usize::from(line[col(c) * 2 + yo])];
                            }
                        }
                        (false, true) => {
                            for (d, &p) in dst.iter_mut().zip(&line[x0..x0 + 8]) {
                                *d = tab[usize::from(p)];
                            }
                        }
                        (false, false) => {
                            for (c, d) in dst.iter_mut().enumerate() {
                                *d = tab[usize::from(line[col(c)])];
                            }
                        }
                    }
                    row_dct(dst);
                }
            }
            Source::Ycc(img) => {
                for (r, dst) in rows {
                    let line = &img.data[(y0 + r).min(h - 1) * w * 3..];
                    for (c, d) in dst.iter_mut().enumerate() {
                        *d = i32::from(line[col(c) * 3]) - 128;
                    }
                    row_dct(dst);
                }
            }
            Source::Rgb(img) => {
                for (r, dst) in rows {
                    let line = &img.data[(y0 + r).min(h - 1) * w * 3..];
                    for (c, d) in dst.iter_mut().enumerate() {
                        let p = &line[col(c) * 3..col(c) * 3 + 3];
                        let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
                        *d = ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) - 128;
                    }
                    row_dct(dst);
                }
            }
        }
    }

    /// Cb and Cr of the chroma block whose top-left sample is (x0, y0) in chroma samples
    /// (luma pixel (2 x0, 2 y0)).
    #[inline(always)]
    fn chroma(&self, x0: usize, y0: usize, cb: &mut [i32; 64], cr: &mut [i32; 64]) {
        let (w, h) = (self.w, self.h);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let col = |c: usize| (x0 + c).min(cw - 1);
        let full = x0 + 8 <= cw;
        let tab = &self.e.chroma;
        let rows = cb
            .chunks_exact_mut(8)
            .zip(cr.chunks_exact_mut(8))
            .enumerate();
        match *self.src {
            Source::Yuv {
                format,
                data,
                stride,
                ..
            } => match format {
                PixelFormat::Yuyv | PixelFormat::Uyvy => {
                    let uo = usize::from(format == PixelFormat::Yuyv);
                    for (r, (u, v)) in rows {
                        let (ya, yb) = ((2 * (y0 + r)).min(h - 1), (2 * (y0 + r) + 1).min(h - 1));
                        let (la, lb) = (&data[ya * stride..], &data[yb * stride..]);
                        // Expanded, then averaged: the same samples as through a Ycc.
                        let out = u.iter_mut().zip(v.iter_mut());
                        if full {
                            // 8-byte loads, two pixel pairs (two U, two V) in each.
                            let (pa, pb) = (&la[x0 * 4..x0 * 4 + 32], &lb[x0 * 4..x0 * 4 + 32]);
                            let words = pa.chunks_exact(8).zip(pb.chunks_exact(8));
                            let mut out = out;
                            for (a, b) in words {
                                let (a, b) = (word(a), word(b));
                                for pair in 0..2 {
                                    let Some((u, v)) = out.next() else { break };
                                    let at = |w: u64, i: usize| {
                                        tab[usize::from((w >> (32 * pair + 8 * i)) as u8)]
                                    };
                                    *u = mean2(at(a, uo), at(b, uo));
                                    *v = mean2(at(a, uo + 2), at(b, uo + 2));
                                }
                            }
                        } else {
                            for (c, (u, v)) in out.enumerate() {
                                let x = col(c) * 4 + uo;
                                let at = |p: &[u8], i: usize| tab[usize::from(p[i])];
                                *u = mean2(at(la, x), at(lb, x));
                                *v = mean2(at(la, x + 2), at(lb, x + 2));
                            }
                        }
                        row_dct(u);
                        row_dct(v);
                    }
                }
                PixelFormat::Nv12 => {
                    for (r, (u, v)) in rows {
                        let line = &data[stride * h + (y0 + r).min(ch - 1) * stride..];
                        for (c, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
                            let x = col(c) * 2;
                            *u = tab[usize::from(line[x])];
                            *v = tab[usize::from(line[x + 1])];
                        }
                        row_dct(u);
                        row_dct(v);
                    }
                }
                _ => {
                    let (plane, cs) = (stride * h, stride / 2);
                    for (r, (u, v)) in rows {
                        let row = (y0 + r).min(ch - 1) * cs;
                        let (us, vs) = (&data[plane + row..], &data[plane + cs * ch + row..]);
                        for (c, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
                            *u = tab[usize::from(us[col(c)])];
                            *v = tab[usize::from(vs[col(c)])];
                        }
                        row_dct(u);
                        row_dct(v);
                    }
                }
            },
            Source::Ycc(img) | Source::Rgb(img) => {
                let rgb = matches!(self.src, Source::Rgb(_));
                let px = |x: usize, y: usize| {
                    let p = &img.data[(y * w + x) * 3..(y * w + x) * 3 + 3];
                    [i32::from(p[0]), i32::from(p[1]), i32::from(p[2])]
                };
                for (r, (u, v)) in rows {
                    let (ya, yb) = ((2 * (y0 + r)).min(h - 1), (2 * (y0 + r) + 1).min(h - 1));
                    for (c, (u, v)) in u.iter_mut().zip(v.iter_mut()).enumerate() {
                        let xa = (2 * (x0 + c)).min(w - 1);
                        let xb = (xa + 1).min(w - 1);
                        let mut sum = [0i32; 3];
                        for p in [px(xa, ya), px(xb, ya), px(xa, yb), px(xb, yb)] {
                            for (s, v) in sum.iter_mut().zip(p) {
                                *s += v;
                            }
                        }
                        let [s0, s1, s2] = sum;
                        if rgb {
                            // Cb and Cr of the 2x2 mean: the sums are 4x, hence 18 bits.
                            let half = (128 << 18) + (1 << 17);
                            let b = -11059 * s0 - 21709 * s1 + 32768 * s2 + half;
                            let r = 32768 * s0 - 27439 * s1 - 5329 * s2 + half;
                            *u = i32::from(super::clamp_u8(b >> 18)) - 128;
                            *v = i32::from(super::clamp_u8(r >> 18)) - 128;
                        } else {
                            *u = ((s1 + 2) >> 2) - 128;
                            *v = ((s2 + 2) >> 2) - 128;
                        }
                    }
                    row_dct(u);
                    row_dct(v);
                }
            }
        }
    }
}

/// The little-endian u64 of `b`'s first 8 bytes (one load; callers pass 8).
#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// The DCT's row pass over one block row of samples, in place.
#[inline(always)]
fn row_dct(row: &mut [i32]) {
    let x = [
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
    ];
    row[..8].copy_from_slice(&dct8(x));
}

fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&(body.len() as u16 + 2).to_be_bytes());
    out.extend_from_slice(body);
}

fn headers(
    out: &mut Vec<u8>,
    w: u16,
    h: u16,
    restart_interval: Option<u16>,
    luma: &Quantiser,
    chroma: &Quantiser,
) {
    out.extend_from_slice(&[0xFF, 0xD8]);
    // JFIF 1.01, no density unit, 1:1, no thumbnail.
    segment(out, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    let mut dqt = Vec::with_capacity(130);
    for (id, q) in [(0u8, luma), (1, chroma)] {
        dqt.push(id);
        dqt.extend(ZIGZAG.iter().map(|&n| q.table[usize::from(n)]));
    }
    segment(out, 0xDB, &dqt);
    let [hh, hl] = h.to_be_bytes();
    let [wh, wl] = w.to_be_bytes();
    // 8-bit, three components: Y 2x2 with table 0, Cb and Cr 1x1 with table 1.
    segment(
        out,
        0xC0,
        &[8, hh, hl, wh, wl, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1],
    );
    let mut dht = Vec::with_capacity(432);
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_VALUES),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    ];
    for (class_id, bits, values) in tables {
        dht.push(class_id);
        dht.extend_from_slice(bits);
        dht.extend_from_slice(values);
    }
    segment(out, 0xC4, &dht);
    if let Some(mcus) = restart_interval {
        segment(out, 0xDD, &mcus.to_be_bytes());
    }
    segment(out, 0xDA, &[3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
}

/// Codes `src` as a baseline JFIF at `quality` (1..=100, as libjpeg scales it), on as many
/// threads as [`threads_for`] gives it.
pub(crate) fn encode(src: &Source, quality: u8) -> Result<Vec<u8>, ImageError> {
    let threads = threads_for(src.size().1.div_ceil(16) as usize);
    encode_on(src, quality, threads)
}

/// The most threads a photo is coded on.
pub const MAX_THREADS: usize = 4;

/// Threads for `mcu_rows` rows of 16x16 pixels: the CPUs this process may use, at most
/// [`MAX_THREADS`], and at least 8 rows each (a thread costs a few hundred microseconds to
/// start on a small board; a 640x480 photo has 30 rows).
fn threads_for(mcu_rows: usize) -> usize {
    cpus().min(MAX_THREADS).min(mcu_rows / 8).max(1)
}

/// The CPUs this thread may run on (`sched_getaffinity`; 1 if unknown). Not
/// `std::thread::available_parallelism`: its cgroup-quota parsing is 8 KB of the node.
fn cpus() -> usize {
    // SAFETY: an all-zero `cpu_set_t` is a valid empty set; the kernel writes at most
    // `size_of::<cpu_set_t>()` bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            usize::try_from(libc::CPU_COUNT(&set)).unwrap_or(1)
        } else {
            1
        }
    }
}

/// What every stripe of an encode reads: the samples, the tables.
struct Coder<'a> {
    blocks: Blocks<'a>,
    luma_q: Quantiser,
    chroma_q: Quantiser,
    dc_l: Huffman,
    ac_l: Huffman,
    dc_c: Huffman,
    ac_c: Huffman,
}

impl Coder<'_> {
    /// Codes MCU rows `rows` (rows of 16 pixels) onto `out` as one restart interval: DC
    /// predictions from 0, the last byte padded. A whole image is one such stripe; stripes
    /// of equal rows, joined by `RSTn` markers, are the same image on several threads.
    // One copy of the coding loop for the whole-image and the threaded calls (13 KB).
    #[inline(never)]
    fn stripe(&self, rows: std::ops::Range<usize>, out: Vec<u8>) -> Vec<u8> {
        let (w, h) = (self.blocks.w, self.blocks.h);
        let mut bits = Bits { out, acc: 0, n: 0 };
        let component = |quant, dc, ac| Component {
            quant,
            dc,
            ac,
            prev_dc: 0,
        };
        let mut y = component(&self.luma_q, &self.dc_l, &self.ac_l);
        let mut cb = component(&self.chroma_q, &self.dc_c, &self.ac_c);
        let mut cr = component(&self.chroma_q, &self.dc_c, &self.ac_c);
        let (mut block, mut block2) = ([0i32; 64], [0i32; 64]);
        for my in (rows.start * 16..(rows.end * 16).min(h)).step_by(16) {
            for mx in (0..w).step_by(16) {
                for (dx, dy) in [(0, 0), (8, 0), (0, 8), (8, 8)] {
                    self.blocks.luma(mx + dx, my + dy, &mut block);
                    y.code_block(&mut bits, &mut block);
                }
                self.blocks.chroma(mx / 2, my / 2, &mut block, &mut block2);
                cb.code_block(&mut bits, &mut block);
                cr.code_block(&mut bits, &mut block2);
            }
        }
        bits.finish()
    }
}

/// [`encode`] on up to `threads` threads. One thread codes the image as one piece; more
/// split it into stripes of equal rows, each a restart interval (the decoded pixels are the
/// same: a restart only resets how DC differences are counted).
pub(crate) fn encode_on(src: &Source, quality: u8, threads: usize) -> Result<Vec<u8>, ImageError> {
    let (width, height) = src.size();
    if width == 0 || height == 0 {
        return Err(ImageError::Empty(width, height));
    }
    let (Ok(w16), Ok(h16)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(ImageError::TooLarge(width, height));
    };
    let (w, h) = (width as usize, height as usize);
    let coder = Coder {
        blocks: Blocks {
            src,
            e: Expand::new(),
            w,
            h,
        },
        luma_q: Quantiser::new(&LUMA_Q, quality),
        chroma_q: Quantiser::new(&CHROMA_Q, quality),
        dc_l: Huffman::new(&DC_LUMA_BITS, &DC_VALUES),
        ac_l: Huffman::new(&AC_LUMA_BITS, &AC_LUMA_VALUES),
        dc_c: Huffman::new(&DC_CHROMA_BITS, &DC_VALUES),
        ac_c: Huffman::new(&AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    };
    let rows = h.div_ceil(16);
    let per = rows.div_ceil(threads.clamp(1, rows));
    // The restart interval counts MCUs in a u16.
    let interval = u16::try_from(w.div_ceil(16) * per)
        .ok()
        .filter(|_| per < rows);
    let room = w * h / 8 + 1024;
    let mut out = Vec::with_capacity(room);
    headers(&mut out, w16, h16, interval, &coder.luma_q, &coder.chroma_q);
    let mut out = match interval {
        None => coder.stripe(0..rows, out),
        Some(_) => std::thread::scope(|scope| {
            let coder = &coder;
            let stripes: Vec<_> = (0..rows)
                .step_by(per)
                .map(|r| r..(r + per).min(rows))
                .collect();
            let part_room = room / stripes.len();
            // Stripes after the first on threads of their own; one that cannot start is
            // coded here, in its turn.
            let others: Vec<_> = stripes[1..]
                .iter()
                .map(|rows| {
                    let job = std::thread::Builder::new()
                        .name("jpeg".into())
                        .stack_size(64 * 1024)
                        .spawn_scoped(scope, {
                            let rows = rows.clone();
                            move || coder.stripe(rows, Vec::with_capacity(part_room))
                        });
                    (rows.clone(), job)
                })
                .collect();
            let mut out = coder.stripe(stripes[0].clone(), out);
            for (i, (rows, job)) in others.into_iter().enumerate() {
                out.extend_from_slice(&[0xFF, 0xD0 + (i % 8) as u8]);
                match job.map(|j| j.join()) {
                    Ok(Ok(part)) => out.extend_from_slice(&part),
                    // Did not start (or died, which these paths cannot: no panics).
                    _ => out = coder.stripe(rows, out),
                }
            }
            out
        }),
    };
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test card: eight colour bars over a grey ramp, with noise on the lower half (what
    /// makes the Huffman writer stuff 0xFF bytes and run long AC sequences).
    fn card(w: u32, h: u32) -> Rgb {
        const BARS: [[u8; 3]; 8] = [
            [192, 192, 192],
            [192, 192, 0],
            [0, 192, 192],
            [0, 192, 0],
            [192, 0, 192],
            [192, 0, 0],
            [0, 0, 192],
            [0, 0, 0],
        ];
        let mut seed = 11u32;
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                // Bars where they are wider than a chroma block; a gradient on small cards
                // (4:2:0 cannot keep one-pixel bars, whatever the encoder).
                let bar = if w >= 128 {
                    BARS[(x * 8 / w) as usize]
                } else {
                    [(x * 255 / w) as u8, (y * 255 / h) as u8, 128]
                };
                for c in bar {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let noise = if y * 2 >= h {
                        (seed >> 27) as i32 - 16
                    } else {
                        0
                    };
                    let ramp = (y * 48 / h) as i32;
                    data.push((i32::from(c) + ramp + noise).clamp(0, 255) as u8);
                }
            }
        }
        Rgb {
            width: w,
            height: h,
            data,
        }
    }

    fn decode(jpeg: &[u8]) -> (u16, u16, Vec<u8>) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let pixels = d.decode().expect("a decodable JPEG");
        let info = d.info().expect("a frame header");
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        (info.width, info.height, pixels)
    }

    fn psnr(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let mse = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
    }

    /// The card as limited-range YUYV (BT.601), what a webcam hands over.
    fn yuyv(img: &Rgb, stride: usize) -> Vec<u8> {
        let (w, h) = (img.width as usize, img.height as usize);
        let mut out = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                let p = &img.data[(y * w + x) * 3..][..3];
                let (r, g, b) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
                let luma = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
                let cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
                let cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
                let o = y * stride + (x / 2) * 4;
                out[o + (x % 2) * 2] = luma.round() as u8;
                if x % 2 == 0 {
                    out[o + 1] = cb.round() as u8;
                    out[o + 3] = cr.round() as u8;
                }
            }
            if w % 2 == 1 {
                // The odd last pixel's pair: its partner repeats it.
                let o = y * stride + (w / 2) * 4;
                out[o + 2] = out[o];
            }
        }
        out
    }

    #[test]
    fn rgb_round_trips_through_a_real_decoder() {
        for (w, h) in [
            (640, 480),
            (1, 1),
            (16, 16),
            (32, 16),
            (16, 32),
            (17, 16),
            (16, 9),
            (17, 9),
            (33, 31),
            (8, 300),
        ] {
            let img = card(w, h);
            let jpeg = encode(&Source::Rgb(&img), 90).unwrap();
            assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
            assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
            let (dw, dh, px) = decode(&jpeg);
            assert_eq!((u32::from(dw), u32::from(dh)), (w, h));
            // 4:2:0 on hard colour edges and noise: 30 dB is what libjpeg gets here too.
            let p = psnr(&px, &img.data);
            assert!(p > 30.0, "{w}x{h}: {p:.1} dB");
        }
    }

    #[test]
    fn stripes_on_threads_decode_to_the_same_pixels_as_one_piece() {
        for (w, h) in [(640, 480), (33, 300), (16, 16), (100, 17)] {
            let img = card(w, h);
            let one = encode_on(&Source::Rgb(&img), 90, 1).unwrap();
            let (dw, dh, pixels) = decode(&one);
            assert_eq!((u32::from(dw), u32::from(dh)), (w, h));
            assert!(psnr(&pixels, &img.data) > 30.0, "{w}x{h}");
            let rows = h.div_ceil(16) as usize;
            for threads in [2, 3, 4, 64] {
                let many = encode_on(&Source::Rgb(&img), 90, threads).unwrap();
                assert!(decode(&many).2 == pixels, "{w}x{h} on {threads} threads");
                // RST0, RST1, … between the stripes, none in one piece.
                let markers = |jpeg: &[u8]| -> Vec<u8> {
                    jpeg.windows(2)
                        .filter(|p| p[0] == 0xFF && (0xD0..=0xD7).contains(&p[1]))
                        .map(|p| p[1])
                        .collect()
                };
                let stripes = rows.div_ceil(rows.div_ceil(threads.min(rows)));
                let expect: Vec<u8> = (0..stripes - 1).map(|i| 0xD0 + (i % 8) as u8).collect();
                assert_eq!(markers(&many), expect, "{w}x{h} on {threads} threads");
                assert!(markers(&one).is_empty());
            }
        }
    }

    #[test]
    fn every_quality_decodes_and_higher_is_closer() {
        // Grey, so that 4:2:0 costs nothing and the quantiser is all that is measured.
        let mut img = card(64, 48);
        for p in img.data.chunks_exact_mut(3) {
            let y = ((u32::from(p[0]) * 3 + u32::from(p[1]) * 6 + u32::from(p[2])) / 10) as u8;
            p.fill(y);
        }
        let mut last = (0.0, 0);
        for q in [1, 10, 50, 75, 90, 95, 99, 100] {
            let jpeg = encode(&Source::Rgb(&img), q).unwrap();
            let (_, _, px) = decode(&jpeg);
            let p = psnr(&px, &img.data);
            assert!(
                p >= last.0,
                "quality {q}: {p:.1} dB, below quality {}'s",
                last.1
            );
            last = (p, q);
        }
        // Near-lossless at the top.
        assert!(last.0 > 45.0, "quality 100: {:.1} dB", last.0);
        // Every DQT step is 1..=255.
        for q in [1, 50, 100] {
            assert!(Quantiser::new(&LUMA_Q, q).table.iter().all(|&s| s >= 1));
        }
    }

    #[test]
    fn yuv_frames_code_as_their_ycc_would_and_decode_to_the_picture() {
        for (w, h) in [(640, 480), (33, 31), (18, 20), (1, 40)] {
            let img = card(w, h);
            let stride = (w as usize).div_ceil(2) * 4 + 8;
            let frame = yuyv(&img, stride);
            let direct = PixelFormat::Yuyv
                .to_jpeg_within(&frame, w, h, stride as u32, 0, 90, usize::MAX)
                .unwrap()
                .unwrap();
            let ycc = PixelFormat::Yuyv
                .to_ycc(&frame, w, h, stride as u32)
                .unwrap()
                .unwrap();
            let via = encode(&Source::Ycc(&ycc.0), 90).unwrap();
            assert_eq!(direct.0, via, "{w}x{h}");
            assert_eq!((direct.1, direct.2), (w, h));
            let (_, _, px) = decode(&direct.0);
            let p = psnr(&px, &img.data);
            assert!(p > 28.0, "{w}x{h}: {p:.1} dB");
            // UYVY of the same frame codes the same; NV12 and I420 of the same 4:2:0
            // samples (YUYV's even rows' chroma) code alike and decode to the picture.
            let uyvy: Vec<u8> = frame.chunks_exact(2).flat_map(|p| [p[1], p[0]]).collect();
            let uyvy_jpeg = PixelFormat::Uyvy
                .to_jpeg_within(&uyvy, w, h, stride as u32, 0, 90, usize::MAX)
                .unwrap()
                .unwrap();
            assert_eq!(uyvy_jpeg.0, direct.0, "{w}x{h} UYVY");
            let (ws, hs) = (w as usize, h as usize);
            let (cw, ch) = (ws.div_ceil(2), hs.div_ceil(2));
            let mut luma = Vec::new();
            for y in 0..hs {
                luma.extend((0..cw * 2).map(|x| frame[y * stride + x.min(ws - 1) * 2]));
            }
            let chroma = |j: usize, x: usize, o: usize| frame[2 * j * stride + x * 4 + o];
            let mut nv12 = luma.clone();
            let mut i420 = luma;
            for j in 0..ch {
                nv12.extend((0..cw).flat_map(|x| [chroma(j, x, 1), chroma(j, x, 3)]));
            }
            for o in [1, 3] {
                for j in 0..ch {
                    i420.extend((0..cw).map(|x| chroma(j, x, o)));
                }
            }
            let planar = |f: PixelFormat, data: &[u8]| {
                f.to_jpeg_within(data, w, h, (cw * 2) as u32, 0, 90, usize::MAX)
                    .unwrap()
                    .unwrap()
                    .0
            };
            let a = planar(PixelFormat::Nv12, &nv12);
            assert_eq!(a, planar(PixelFormat::Yu12, &i420), "{w}x{h} NV12 = I420");
            let p = psnr(&decode(&a).2, &img.data);
            assert!(p > 26.0, "{w}x{h} NV12: {p:.1} dB");
        }
    }
}
