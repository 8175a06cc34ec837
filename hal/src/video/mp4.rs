//! A minimal MP4 (ISO BMFF) writer for one H.264 track: `ftyp`, `moov` (with the `avcC` the
//! stream's SPS/PPS make), then `mdat` — the "fast start" order, so players and phones can begin
//! before the last byte arrives.
//!
//! Hand-written because the whole job is ~20 fixed boxes: the `mp4` crate would bring serde,
//! byteorder and bytes for the same bytes. The writer keeps the coded samples (not raw frames)
//! and refuses to grow past a byte budget ([`Mp4Error::Full`]), so a recording's memory is
//! bounded by what the result may carry.

/// Media timescale: 90 kHz, the usual one for video.
pub const TIMESCALE: u32 = 90_000;

/// Why a sample was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mp4Error {
    /// The file would pass its byte budget (given).
    #[error("the clip reached its {0}-byte budget")]
    Full(usize),
    /// The first access unit carried no SPS and PPS (an encoder bug, or a stream cut short).
    #[error("the H.264 stream starts without SPS/PPS")]
    NoParameterSets,
    /// An access unit carried no slice.
    #[error("an access unit holds no picture")]
    Empty,
}

/// Writes one H.264 track into an in-memory MP4.
#[derive(Debug)]
pub struct Mp4Writer {
    width: u16,
    height: u16,
    budget: usize,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// The samples, each NAL length-prefixed (4 bytes), back to back: the `mdat` payload.
    data: Vec<u8>,
    sizes: Vec<u32>,
    /// Sample durations in [`TIMESCALE`] units (the last one is known only at `finish`).
    durations: Vec<u32>,
    sync: Vec<u32>,
    last_pts: Option<u64>,
}

/// Bytes of the boxes around the samples, per sample (`stsz` 4, `stts` ≤ 8, `stss` ≤ 4) and
/// fixed (everything else, with room for the parameter sets).
const PER_SAMPLE: usize = 16;
const FIXED: usize = 1024;

impl Mp4Writer {
    /// A track of `width`×`height` pictures whose file must stay within `budget` bytes.
    pub fn new(width: u16, height: u16, budget: usize) -> Mp4Writer {
        Mp4Writer {
            width,
            height,
            budget,
            sps: None,
            pps: None,
            data: Vec::new(),
            sizes: Vec::new(),
            durations: Vec::new(),
            sync: Vec::new(),
            last_pts: None,
        }
    }

    /// Samples taken so far.
    pub fn samples(&self) -> usize {
        self.sizes.len()
    }

    /// Bytes the file would have now.
    pub fn len(&self) -> usize {
        FIXED + self.data.len() + self.sizes.len() * PER_SAMPLE
    }

    /// No sample yet.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Adds one access unit (Annex-B: start-code separated NALs) presented at `pts_us`
    /// microseconds from the start. SPS/PPS go to the `avcC`, access unit delimiters and SEI
    /// are dropped, slices become the sample. A unit that would pass the budget is refused
    /// whole and the file stays valid without it.
    pub fn push(&mut self, annex_b: &[u8], pts_us: u64) -> Result<(), Mp4Error> {
        let mut sample = Vec::with_capacity(annex_b.len() + 16);
        let mut idr = false;
        for nal in nals(annex_b) {
            match nal.first().map(|b| b & 0x1f) {
                Some(7) => self.sps = Some(nal.to_vec()),
                Some(8) => self.pps = Some(nal.to_vec()),
                Some(t @ 1..=5) => {
                    idr |= t == 5;
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
                _ => {}
            }
        }
        if self.sps.is_none() || self.pps.is_none() {
            return Err(Mp4Error::NoParameterSets);
        }
        if sample.is_empty() {
            // Parameter sets alone (hardware encoders send them as a unit of their own).
            if annex_b_has_parameter_sets(annex_b) {
                return Ok(());
            }
            return Err(Mp4Error::Empty);
        }
        if self.len() + sample.len() + PER_SAMPLE > self.budget {
            return Err(Mp4Error::Full(self.budget));
        }
        let pts = pts_us * u64::from(TIMESCALE) / 1_000_000;
        if let Some(last) = self.last_pts {
            // Timestamps that do not advance still get one tick: stts holds no zero durations.
            self.durations
                .push(pts.saturating_sub(last).clamp(1, u64::from(u32::MAX)) as u32);
        }
        self.last_pts = Some(pts.max(self.last_pts.map_or(0, |l| l + 1)));
        self.sizes.push(sample.len() as u32);
        if idr {
            self.sync.push(self.sizes.len() as u32);
        }
        self.data.extend_from_slice(&sample);
        Ok(())
    }

    /// The file, with the last sample lasting `last_us` microseconds; `None` without a sample.
    pub fn finish(mut self, last_us: u64) -> Option<Vec<u8>> {
        if self.sizes.is_empty() {
            return None;
        }
        let last = (last_us * u64::from(TIMESCALE) / 1_000_000).clamp(1, u64::from(u32::MAX));
        self.durations.push(last as u32);
        let duration: u64 = self.durations.iter().map(|&d| u64::from(d)).sum();
        let ftyp = ftyp();
        // The chunk offset depends on moov's size, which does not depend on the offset's value.
        let moov_len = self.moov(duration, 0).len();
        let mdat_at = ftyp.len() + moov_len + 8;
        let moov = self.moov(duration, mdat_at as u32);
        let mut out = Vec::with_capacity(mdat_at + self.data.len());
        out.extend_from_slice(&ftyp);
        out.extend_from_slice(&moov);
        out.extend_from_slice(&((self.data.len() + 8) as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.append(&mut self.data);
        Some(out)
    }

    /// The track's duration in milliseconds so far (without the last sample's).
    pub fn duration_ms(&self) -> u64 {
        let d: u64 = self.durations.iter().map(|&d| u64::from(d)).sum();
        d * 1000 / u64::from(TIMESCALE)
    }

    fn moov(&self, duration: u64, chunk_offset: u32) -> Vec<u8> {
        let ms = (duration * 1000 / u64::from(TIMESCALE)) as u32;
        let dur = duration.min(u64::from(u32::MAX)) as u32;
        let (w, h) = (u32::from(self.width), u32::from(self.height));
        let mut mvhd = Vec::new();
        put(&mut mvhd, &[0; 4]); // version 0, flags
        put(&mut mvhd, &[0; 8]); // creation, modification
        put32(&mut mvhd, 1000);
        put32(&mut mvhd, ms);
        put32(&mut mvhd, 0x0001_0000); // rate 1.0
        put(&mut mvhd, &[0x01, 0x00]); // volume 1.0
        put(&mut mvhd, &[0; 10]);
        matrix(&mut mvhd);
        put(&mut mvhd, &[0; 24]); // pre_defined
        put32(&mut mvhd, 2); // next track id

        let mut tkhd = Vec::new();
        put(&mut tkhd, &[0, 0, 0, 3]); // enabled, in movie
        put(&mut tkhd, &[0; 8]);
        put32(&mut tkhd, 1); // track id
        put32(&mut tkhd, 0);
        put32(&mut tkhd, ms);
        put(&mut tkhd, &[0; 8]);
        put(&mut tkhd, &[0; 4]); // layer, alternate group
        put(&mut tkhd, &[0; 4]); // volume 0 (video), reserved
        matrix(&mut tkhd);
        put32(&mut tkhd, w << 16);
        put32(&mut tkhd, h << 16);

        let mut mdhd = Vec::new();
        put(&mut mdhd, &[0; 4]);
        put(&mut mdhd, &[0; 8]);
        put32(&mut mdhd, TIMESCALE);
        put32(&mut mdhd, dur);
        put(&mut mdhd, &[0x55, 0xc4, 0, 0]); // language "und", pre_defined

        let mut hdlr = Vec::new();
        put(&mut hdlr, &[0; 8]);
        put(&mut hdlr, b"vide");
        put(&mut hdlr, &[0; 12]);
        put(&mut hdlr, b"VideoHandler\0");

        let vmhd = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let url = boxed(b"url ", &[0, 0, 0, 1]);
        let mut dref = vec![0, 0, 0, 0, 0, 0, 0, 1];
        dref.extend_from_slice(&url);
        let dinf = boxed(b"dinf", &boxed(b"dref", &dref));

        let stbl = [
            boxed(b"stsd", &self.stsd()),
            boxed(b"stts", &self.stts()),
            boxed(b"stss", &table(&self.sync)),
            boxed(b"stsc", &{
                let mut v = vec![0, 0, 0, 0];
                put32(&mut v, 1);
                put32(&mut v, 1); // first chunk 1
                put32(&mut v, self.sizes.len() as u32); // every sample in it
                put32(&mut v, 1);
                v
            }),
            boxed(b"stsz", &{
                let mut v = vec![0; 8]; // version/flags, sample_size 0 (sizes follow)
                put32(&mut v, self.sizes.len() as u32);
                for &s in &self.sizes {
                    put32(&mut v, s);
                }
                v
            }),
            boxed(b"stco", &table(&[chunk_offset])),
        ]
        .concat();
        let minf = [boxed(b"vmhd", &vmhd), dinf, boxed(b"stbl", &stbl)].concat();
        let mdia = [
            boxed(b"mdhd", &mdhd),
            boxed(b"hdlr", &hdlr),
            boxed(b"minf", &minf),
        ]
        .concat();
        let trak = [boxed(b"tkhd", &tkhd), boxed(b"mdia", &mdia)].concat();
        boxed(
            b"moov",
            &[boxed(b"mvhd", &mvhd), boxed(b"trak", &trak)].concat(),
        )
    }

    fn stsd(&self) -> Vec<u8> {
        let sps = self.sps.as_deref().unwrap_or_default();
        let pps = self.pps.as_deref().unwrap_or_default();
        let mut avcc = vec![
            1,
            sps.get(1).copied().unwrap_or(66),
            sps.get(2).copied().unwrap_or(0),
            sps.get(3).copied().unwrap_or(30),
            0xff, // 4-byte NAL lengths
            0xe1, // one SPS
        ];
        avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(sps);
        avcc.push(1);
        avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(pps);

        let mut avc1 = vec![0; 6];
        put(&mut avc1, &[0, 1]); // data reference index
        put(&mut avc1, &[0; 16]);
        put(&mut avc1, &self.width.to_be_bytes());
        put(&mut avc1, &self.height.to_be_bytes());
        put32(&mut avc1, 0x0048_0000); // 72 dpi
        put32(&mut avc1, 0x0048_0000);
        put32(&mut avc1, 0);
        put(&mut avc1, &[0, 1]); // frame count
        put(&mut avc1, &[0; 32]); // compressor name
        put(&mut avc1, &[0, 0x18, 0xff, 0xff]); // depth 24, pre_defined -1
        avc1.extend_from_slice(&boxed(b"avcC", &avcc));

        let mut v = vec![0, 0, 0, 0, 0, 0, 0, 1];
        v.extend_from_slice(&boxed(b"avc1", &avc1));
        v
    }

    /// Run-length coded durations.
    fn stts(&self) -> Vec<u8> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &d in &self.durations {
            match runs.last_mut() {
                Some((n, last)) if *last == d => *n += 1,
                _ => runs.push((1, d)),
            }
        }
        let mut v = vec![0, 0, 0, 0];
        put32(&mut v, runs.len() as u32);
        for (n, d) in runs {
            put32(&mut v, n);
            put32(&mut v, d);
        }
        v
    }
}

fn annex_b_has_parameter_sets(annex_b: &[u8]) -> bool {
    nals(annex_b).any(|n| matches!(n.first().map(|b| b & 0x1f), Some(7 | 8)))
}

/// The NAL units of an Annex-B stream (3- or 4-byte start codes).
pub fn nals(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            let mut e = s - 3;
            // A 4-byte start code's leading zero (and any trailing zeros) belong to no NAL.
            while e > 0 && annex_b[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(annex_b.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter(|(s, e)| e > s)
        .map(move |(s, e)| &annex_b[s..e])
}

fn ftyp() -> Vec<u8> {
    boxed(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41")
}

fn put(v: &mut Vec<u8>, b: &[u8]) {
    v.extend_from_slice(b);
}

fn put32(v: &mut Vec<u8>, n: u32) {
    v.extend_from_slice(&n.to_be_bytes());
}

fn matrix(v: &mut Vec<u8>) {
    for m in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        put32(v, m);
    }
}

/// A full box's body holding a count and that many `u32`s.
fn table(entries: &[u32]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0];
    put32(&mut v, entries.len() as u32);
    for &e in entries {
        put32(&mut v, e);
    }
    v
}

fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 8);
    put32(&mut v, (body.len() + 8) as u32);
    v.extend_from_slice(kind);
    v.extend_from_slice(body);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn au(kind: u8, with_headers: bool) -> Vec<u8> {
        let mut v = Vec::new();
        if with_headers {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(SPS);
            v.extend_from_slice(&[0, 0, 1]);
            v.extend_from_slice(PPS);
        }
        v.extend_from_slice(&[0, 0, 0, 1, kind, 0x88, 0x84, 0x21]);
        v
    }

    fn find(hay: &[u8], kind: &[u8; 4]) -> Option<usize> {
        hay.windows(4).position(|w| w == kind)
    }

    #[test]
    fn splits_annex_b() {
        let a = au(0x65, true);
        let n: Vec<&[u8]> = nals(&a).collect();
        assert_eq!(n, vec![SPS, PPS, &[0x65, 0x88, 0x84, 0x21][..]]);
        assert_eq!(nals(&[0, 0, 0]).count(), 0);
        assert_eq!(nals(&[]).count(), 0);
    }

    #[test]
    fn file_layout_and_timing() {
        let mut w = Mp4Writer::new(640, 480, 1 << 20);
        assert_eq!(w.push(&au(0x41, false), 0), Err(Mp4Error::NoParameterSets));
        w.push(&au(0x65, true), 0).unwrap();
        w.push(&au(0x41, false), 100_000).unwrap();
        w.push(&au(0x41, false), 200_000).unwrap();
        assert_eq!(w.duration_ms(), 200);
        let f = w.finish(100_000).unwrap();
        // ftyp, then moov, then mdat, and stco points at the first sample.
        assert_eq!(&f[4..8], b"ftyp");
        let moov = find(&f, b"moov").unwrap();
        let mdat = find(&f, b"mdat").unwrap();
        assert!(moov < mdat);
        let stco = find(&f, b"stco").unwrap();
        let off = u32::from_be_bytes(f[stco + 12..stco + 16].try_into().unwrap()) as usize;
        assert_eq!(off, mdat + 4);
        assert_eq!(&f[off..off + 5], &[0, 0, 0, 4, 0x65]);
        // 3 samples of 100 ms at 90 kHz: one stts run, mvhd duration 300 ms.
        let stts = find(&f, b"stts").unwrap();
        assert_eq!(
            &f[stts + 8..stts + 20],
            &[0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0x23, 0x28]
        );
        let mvhd = find(&f, b"mvhd").unwrap();
        assert_eq!(&f[mvhd + 20..mvhd + 24], &300u32.to_be_bytes());
        // One sync sample: the IDR.
        let stss = find(&f, b"stss").unwrap();
        assert_eq!(&f[stss + 8..stss + 16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        // avcC carries profile/level from the SPS.
        let avcc = find(&f, b"avcC").unwrap();
        assert_eq!(&f[avcc + 4..avcc + 8], &[1, 0x42, 0xc0, 0x1e]);
    }

    #[test]
    fn budget_refuses_whole_samples() {
        let mut w = Mp4Writer::new(16, 16, FIXED + 2 * (12 + PER_SAMPLE));
        w.push(&au(0x65, true), 0).unwrap();
        w.push(&au(0x41, false), 1).unwrap();
        assert_eq!(w.push(&au(0x41, false), 2), Err(Mp4Error::Full(w.budget)));
        assert_eq!(w.samples(), 2);
        assert!(w.finish(1).unwrap().len() <= FIXED + 2 * (12 + PER_SAMPLE));
        assert!(Mp4Writer::new(16, 16, 1 << 20).finish(0).is_none());
    }
}
