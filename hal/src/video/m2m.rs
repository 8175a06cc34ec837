//! The kernel's hardware encoders: V4L2 memory-to-memory devices speaking the stateful encoder
//! interface (`Documentation/userspace-api/media/v4l/dev-encoder.rst`). The Pi 0–4's
//! `bcm2835-codec` (`/dev/video11`, H.264) is one; `vicodec` (FWHT) speaks the same sequence
//! and is what the tests run it against.
//!
//! Raw pictures go into the OUTPUT queue (I420 as `YU12`, else `NV12`), coded units come out of
//! the CAPTURE queue; both single-planar and multi-planar (one plane) devices are handled.
//! Four buffers a side, mapped once; `encode` blocks only when all four raw buffers are with
//! the driver, and every wait is a `poll` with a deadline, so a wedged encoder is an error, not
//! a hang. `finish` drains with `V4L2_ENC_CMD_STOP` until the buffer flagged `LAST`.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Coded, H264Encoder, VideoError, I420};
use crate::v4l2::{
    Buffer, Control, Device, EncoderCmd, Mapping, PixFormat, PixFormatMplane, Plane, Zeroed,
    BUF_FLAG_LAST, BUF_TYPE_VIDEO_CAPTURE, BUF_TYPE_VIDEO_CAPTURE_MPLANE, BUF_TYPE_VIDEO_OUTPUT,
    BUF_TYPE_VIDEO_OUTPUT_MPLANE, CAP_VIDEO_M2M, CAP_VIDEO_M2M_MPLANE, DQBUF, ENCODER_CMD,
    MEMORY_MMAP, QBUF, QUERYBUF, S_CTRL,
};

/// Buffers asked for on each side.
const BUFFERS: u32 = 4;
/// Longest wait for the driver to take or give back a buffer.
const WAIT: Duration = Duration::from_secs(3);
/// Coded formats that make a device an encoder (its CAPTURE side).
const CODED: &[&[u8; 4]] = &[
    b"H264", b"HEVC", b"FWHT", b"VP80", b"VP90", b"MJPG", b"JPEG",
];

fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

fn name_of(code: u32) -> String {
    String::from_utf8_lossy(&code.to_le_bytes()).into_owned()
}

/// A memory-to-memory encoder found on this board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct M2mDevice {
    /// Its device node.
    pub path: String,
    /// The driver's card name.
    pub card: String,
    /// Coded formats it produces (`H264`, `FWHT`, …).
    pub coded: Vec<String>,
    /// Multi-planar API.
    pub mplane: bool,
}

/// Every encoder under `dev_dir` (M2M devices whose raw side takes `YU12` or `NV12` and whose
/// coded side gives one of the known formats), by path.
pub fn list(dev_dir: &Path) -> Vec<M2mDevice> {
    let paths = crate::v4l2::video_nodes(dev_dir);
    paths.iter().filter_map(|p| probe(p)).collect()
}

fn probe(path: &Path) -> Option<M2mDevice> {
    let dev = Device::open(path).ok()?;
    let caps = dev.capability().ok()?;
    let mplane = caps.device_caps & CAP_VIDEO_M2M_MPLANE != 0;
    if !mplane && caps.device_caps & CAP_VIDEO_M2M == 0 {
        return None;
    }
    let (out_t, cap_t) = types(mplane);
    let raw = dev.formats(out_t);
    if !raw.contains(&fourcc(b"YU12")) && !raw.contains(&fourcc(b"NV12")) {
        return None;
    }
    let coded: Vec<String> = dev
        .formats(cap_t)
        .into_iter()
        .filter(|f| CODED.iter().any(|c| fourcc(c) == *f))
        .map(name_of)
        .collect();
    if coded.is_empty() {
        return None;
    }
    let end = caps
        .card
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(caps.card.len());
    Some(M2mDevice {
        path: path.to_string_lossy().into_owned(),
        card: String::from_utf8_lossy(&caps.card[..end]).trim().to_owned(),
        coded,
        mplane,
    })
}

fn types(mplane: bool) -> (u32, u32) {
    if mplane {
        (BUF_TYPE_VIDEO_OUTPUT_MPLANE, BUF_TYPE_VIDEO_CAPTURE_MPLANE)
    } else {
        (BUF_TYPE_VIDEO_OUTPUT, BUF_TYPE_VIDEO_CAPTURE)
    }
}

/// Codec controls (`V4L2_CID_MPEG_VIDEO_*`); a driver without one ignores it.
const CID_BITRATE: u32 = 0x0099_09cf;
const CID_GOP_SIZE: u32 = 0x0099_09cb;
const CID_REPEAT_SEQ_HEADER: u32 = 0x0099_09e2;
const CID_H264_I_PERIOD: u32 = 0x0099_0a66;
const CID_H264_PROFILE: u32 = 0x0099_0a6b;
/// `V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE`.
const H264_CONSTRAINED_BASELINE: i32 = 1;
/// `V4L2_ENC_CMD_STOP`.
const ENC_CMD_STOP: u32 = 1;

/// One stream on a memory-to-memory encoder.
pub struct M2mEncoder {
    path: String,
    dev: Device,
    mplane: bool,
    out_type: u32,
    cap_type: u32,
    out: Vec<Mapping>,
    out_free: Vec<u32>,
    cap: Vec<Mapping>,
    nv12: bool,
    width: u32,
    height: u32,
    /// The driver's luma stride and (possibly aligned) height of the raw buffers.
    stride: usize,
    rows: usize,
    sizeimage: u32,
    done: bool,
}

impl M2mEncoder {
    /// Opens `path` to code `width`×`height` pictures as `coded` (e.g. `H264`) at about `fps`,
    /// `bitrate` bits/s (0: the driver's default), an IDR every `gop` pictures.
    pub fn open(
        path: &str,
        coded: &[u8; 4],
        width: u32,
        height: u32,
        bitrate: u32,
        gop: u32,
    ) -> Result<M2mEncoder, VideoError> {
        let err = |e: io::Error| VideoError::Encoder(format!("{path}: {e}"));
        let dev = Device::open(Path::new(path)).map_err(err)?;
        let caps = dev.capability().map_err(err)?;
        let mplane = caps.device_caps & CAP_VIDEO_M2M_MPLANE != 0;
        if !mplane && caps.device_caps & CAP_VIDEO_M2M == 0 {
            return Err(VideoError::Encoder(format!(
                "{path} is not a memory-to-memory device"
            )));
        }
        let (out_type, cap_type) = types(mplane);
        let raw_formats = dev.formats(out_type);
        let nv12 = !raw_formats.contains(&fourcc(b"YU12"));
        let raw = if nv12 {
            fourcc(b"NV12")
        } else {
            fourcc(b"YU12")
        };
        // The coded side first (the encoder interface's order), then the raw side.
        let coded_size = width * height * 3 / 2 + 4096;
        let (stride, rows, sizeimage) = if mplane {
            let mut f = zeroed_mplane();
            f.width = width;
            f.height = height;
            f.pixelformat = fourcc(coded);
            f.num_planes = 1;
            f.plane_fmt[0].sizeimage = coded_size;
            let got = dev.set_format_mplane(cap_type, &f).map_err(err)?;
            if got.pixelformat != fourcc(coded) {
                return Err(VideoError::Encoder(format!(
                    "{path} does not code {}",
                    name_of(fourcc(coded))
                )));
            }
            let mut f = zeroed_mplane();
            f.width = width;
            f.height = height;
            f.pixelformat = raw;
            f.num_planes = 1;
            let got = dev.set_format_mplane(out_type, &f).map_err(err)?;
            let (gw, gh) = (got.width, got.height);
            size_taken(path, (width, height), (gw, gh))?;
            let plane = got.plane_fmt[0];
            (
                (plane.bytesperline as usize).max(width as usize),
                (got.height as usize).max(height as usize),
                plane.sizeimage,
            )
        } else {
            let mut f = zeroed_pix();
            f.width = width;
            f.height = height;
            f.pixelformat = fourcc(coded);
            f.sizeimage = coded_size;
            let got = dev.set_format_of(cap_type, &f).map_err(err)?;
            if got.pixelformat != fourcc(coded) {
                return Err(VideoError::Encoder(format!(
                    "{path} does not code {}",
                    name_of(fourcc(coded))
                )));
            }
            let mut f = zeroed_pix();
            f.width = width;
            f.height = height;
            f.pixelformat = raw;
            let got = dev.set_format_of(out_type, &f).map_err(err)?;
            size_taken(path, (width, height), (got.width, got.height))?;
            (
                (got.bytesperline as usize).max(width as usize),
                (got.height as usize).max(height as usize),
                got.sizeimage,
            )
        };
        if (sizeimage as usize) < stride * rows * 3 / 2 {
            return Err(VideoError::Encoder(format!(
                "{path}: raw buffers of {sizeimage} bytes for {width}x{height}"
            )));
        }
        for (id, value) in [
            (CID_BITRATE, bitrate as i32),
            (CID_GOP_SIZE, gop as i32),
            (CID_H264_I_PERIOD, gop as i32),
            (CID_REPEAT_SEQ_HEADER, 1),
            (CID_H264_PROFILE, H264_CONSTRAINED_BASELINE),
        ] {
            if id == CID_BITRATE && value == 0 {
                continue;
            }
            if let Err(e) = dev.ioctl(S_CTRL, &mut Control { id, value }) {
                tracing::debug!(path, id, error = %e, "encoder control not set");
            }
        }
        let mut enc = M2mEncoder {
            path: path.to_owned(),
            dev,
            mplane,
            out_type,
            cap_type,
            out: Vec::new(),
            out_free: Vec::new(),
            cap: Vec::new(),
            nv12,
            width,
            height,
            stride,
            rows,
            sizeimage,
            done: false,
        };
        enc.out = enc.map(out_type, true).map_err(err)?;
        enc.out_free = (0..enc.out.len() as u32).rev().collect();
        enc.cap = enc.map(cap_type, false).map_err(err)?;
        for i in 0..enc.cap.len() as u32 {
            enc.queue(cap_type, i, 0, 0).map_err(err)?;
        }
        enc.dev.stream(out_type, true).map_err(err)?;
        enc.dev.stream(cap_type, true).map_err(err)?;
        tracing::debug!(
            path,
            mplane,
            nv12,
            stride,
            rows,
            "hardware encoder streaming"
        );
        Ok(enc)
    }

    /// Requests and maps the buffers of queue `type_`.
    fn map(&self, type_: u32, write: bool) -> io::Result<Vec<Mapping>> {
        let n = self.dev.request_buffers_of(type_, BUFFERS)?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        let mut maps = Vec::with_capacity(n as usize);
        for index in 0..n.min(32) {
            let mut plane = Plane::zeroed();
            let mut b = self.buffer(type_, index, &mut plane);
            self.dev.ioctl(QUERYBUF, &mut b)?;
            // SAFETY: QUERYBUF fills `offset` (single-planar) or the plane's `mem_offset`
            // (multi-planar) for MMAP buffers; any bytes are a valid u32.
            let (offset, len) = if self.mplane {
                (unsafe { plane.m.mem_offset }, plane.length)
            } else {
                (unsafe { b.m.offset }, b.length)
            };
            maps.push(Mapping::new(&self.dev, offset, len as usize, write)?);
        }
        Ok(maps)
    }

    /// A buffer descriptor for `index` of queue `type_`; multi-planar ones point at `plane`.
    fn buffer(&self, type_: u32, index: u32, plane: &mut Plane) -> Buffer {
        let mut b = Buffer {
            index,
            type_,
            memory: MEMORY_MMAP,
            ..Buffer::zeroed()
        };
        if self.mplane {
            b.m.planes = plane;
            b.length = 1;
        }
        b
    }

    fn queue(&self, type_: u32, index: u32, bytesused: u32, pts_us: u64) -> io::Result<()> {
        let maps = if type_ == self.out_type {
            &self.out
        } else {
            &self.cap
        };
        let mut plane = Plane {
            bytesused,
            length: maps
                .get(index as usize)
                .map_or(0, |m| m.bytes().len() as u32),
            ..Plane::zeroed()
        };
        // The plane is complete before the buffer points at it.
        let mut b = self.buffer(type_, index, &mut plane);
        b.timestamp.tv_sec = (pts_us / 1_000_000) as _;
        b.timestamp.tv_usec = (pts_us % 1_000_000) as _;
        if !self.mplane {
            b.bytesused = bytesused;
        }
        self.dev.ioctl(QBUF, &mut b)
    }

    /// Dequeues one buffer of `type_` if one is ready: (index, bytes used, flags, pts).
    fn dequeue(&self, type_: u32) -> io::Result<Option<(u32, usize, u32, u64)>> {
        let mut plane = Plane::zeroed();
        let mut b = self.buffer(type_, 0, &mut plane);
        match self.dev.ioctl(DQBUF, &mut b) {
            Ok(()) => {
                let used = if self.mplane {
                    plane.bytesused
                } else {
                    b.bytesused
                } as usize;
                let pts = (b.timestamp.tv_sec as u64) * 1_000_000 + b.timestamp.tv_usec as u64;
                Ok(Some((b.index, used, b.flags, pts)))
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes every coded unit that is ready (and gives its buffer back), and every raw buffer
    /// the driver is done with.
    fn collect(&mut self, out: &mut Vec<Coded>) -> io::Result<()> {
        while let Some((index, used, flags, pts)) = self.dequeue(self.cap_type)? {
            let Some(m) = self.cap.get(index as usize) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "coded buffer index out of range",
                ));
            };
            if used > 0 {
                out.push(Coded {
                    data: m.bytes()[..used.min(m.bytes().len())].to_vec(),
                    pts_us: pts,
                });
            }
            if flags & BUF_FLAG_LAST != 0 {
                self.done = true;
                break;
            }
            self.queue(self.cap_type, index, 0, 0)?;
        }
        while let Some((index, ..)) = self.dequeue(self.out_type)? {
            self.out_free.push(index);
        }
        Ok(())
    }

    fn fill(&mut self, index: u32, pic: &I420) -> Result<(), VideoError> {
        let (w, h, stride, rows, nv12) = (
            pic.width as usize,
            pic.height as usize,
            self.stride,
            self.rows,
            self.nv12,
        );
        let Some(m) = self.out.get_mut(index as usize) else {
            return Err(VideoError::Encoder("raw buffer index out of range".into()));
        };
        let buf = m.bytes_mut();
        if buf.len() < stride * rows * 3 / 2 {
            return Err(VideoError::Encoder(format!(
                "raw buffer of {} bytes is too small",
                buf.len()
            )));
        }
        for y in 0..h {
            buf[y * stride..y * stride + w].copy_from_slice(&pic.y[y * w..(y + 1) * w]);
        }
        let luma = stride * rows;
        let cw = w / 2;
        if nv12 {
            for y in 0..h / 2 {
                let row = &mut buf[luma + y * stride..luma + y * stride + w];
                for x in 0..cw {
                    row[2 * x] = pic.u[y * cw + x];
                    row[2 * x + 1] = pic.v[y * cw + x];
                }
            }
        } else {
            let cs = stride / 2;
            let quarter = cs * (rows / 2);
            for y in 0..h / 2 {
                buf[luma + y * cs..luma + y * cs + cw]
                    .copy_from_slice(&pic.u[y * cw..(y + 1) * cw]);
                let v = luma + quarter + y * cs;
                buf[v..v + cw].copy_from_slice(&pic.v[y * cw..(y + 1) * cw]);
            }
        }
        Ok(())
    }

    fn io(&self, e: io::Error) -> VideoError {
        VideoError::Encoder(format!("{}: {e}", self.path))
    }
}

/// The raw side must keep the width and may only round the height up (alignment rows).
fn size_taken(path: &str, asked: (u32, u32), got: (u32, u32)) -> Result<(), VideoError> {
    if got.0 != asked.0 || got.1 < asked.1 {
        return Err(VideoError::Encoder(format!(
            "{path} does not take {}x{} pictures (offers {}x{})",
            asked.0, asked.1, got.0, got.1
        )));
    }
    Ok(())
}

fn zeroed_pix() -> PixFormat {
    PixFormat {
        width: 0,
        height: 0,
        pixelformat: 0,
        field: 1, // V4L2_FIELD_NONE
        bytesperline: 0,
        sizeimage: 0,
        colorspace: 0,
        priv_: 0,
        flags: 0,
        ycbcr_enc: 0,
        quantization: 0,
        xfer_func: 0,
    }
}

fn zeroed_mplane() -> PixFormatMplane {
    let plane = crate::v4l2::PlanePixFormat {
        sizeimage: 0,
        bytesperline: 0,
        reserved: [0; 6],
    };
    PixFormatMplane {
        width: 0,
        height: 0,
        pixelformat: 0,
        field: 1,
        colorspace: 0,
        plane_fmt: [plane; 8],
        num_planes: 0,
        flags: 0,
        ycbcr_enc: 0,
        quantization: 0,
        xfer_func: 0,
        reserved: [0; 7],
    }
}

impl H264Encoder for M2mEncoder {
    fn name(&self) -> &'static str {
        "hardware (V4L2 memory-to-memory)"
    }

    fn encode(&mut self, pic: &I420, pts_us: u64) -> Result<Vec<Coded>, VideoError> {
        if pic.width != self.width || pic.height != self.height {
            return Err(VideoError::Encoder(format!(
                "picture {}x{} for a {}x{} stream",
                pic.width, pic.height, self.width, self.height
            )));
        }
        let mut coded = Vec::new();
        self.collect(&mut coded).map_err(|e| self.io(e))?;
        let deadline = Instant::now() + WAIT;
        let index = loop {
            if let Some(i) = self.out_free.pop() {
                break i;
            }
            // Every raw buffer is with the driver: wait for it to finish one.
            self.dev
                .wait(libc::POLLIN | libc::POLLOUT, deadline)
                .map_err(|e| self.io(e))?;
            self.collect(&mut coded).map_err(|e| self.io(e))?;
        };
        self.fill(index, pic)?;
        self.queue(self.out_type, index, self.sizeimage, pts_us)
            .map_err(|e| self.io(e))?;
        self.collect(&mut coded).map_err(|e| self.io(e))?;
        Ok(coded)
    }

    fn finish(&mut self) -> Result<Vec<Coded>, VideoError> {
        let mut coded = Vec::new();
        let mut stop = EncoderCmd {
            cmd: ENC_CMD_STOP,
            ..EncoderCmd::zeroed()
        };
        let drains = self.dev.ioctl(ENCODER_CMD, &mut stop).is_ok();
        let deadline = Instant::now() + WAIT;
        while !self.done {
            match self.dev.wait(libc::POLLIN, deadline) {
                Ok(_) => {}
                // A driver without the stop command: whatever came within the wait.
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !drains => break,
                Err(e) => return Err(self.io(e)),
            }
            match self.collect(&mut coded) {
                Ok(()) => {}
                // DQBUF after the last buffer.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => break,
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(coded)
    }
}

impl Drop for M2mEncoder {
    fn drop(&mut self) {
        let _ = self.dev.stream(self.out_type, false);
        let _ = self.dev.stream(self.cap_type, false);
        self.out.clear();
        self.cap.clear();
        let _ = self.dev.request_buffers_of(self.out_type, 0);
        let _ = self.dev.request_buffers_of(self.cap_type, 0);
    }
}

/// What [`self_test`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTest {
    /// Pictures queued.
    pub pictures: usize,
    /// Coded units that came back (with the drain).
    pub units: usize,
    /// Their bytes.
    pub bytes: usize,
    /// The first unit's first bytes (a format's magic: `00 00 00 01` for H.264).
    pub head: Vec<u8>,
}

/// Codes `pictures` 640×480 test pictures (a moving gradient) on `dev` in its first coded
/// format and drains it: the whole stateful-encoder sequence, for `pincer-node doctor`.
pub fn self_test(dev: &M2mDevice, pictures: usize) -> Result<SelfTest, VideoError> {
    let code = dev
        .coded
        .first()
        .and_then(|c| <[u8; 4]>::try_from(c.as_bytes()).ok())
        .ok_or_else(|| VideoError::Encoder(format!("{}: no coded format", dev.path)))?;
    // 640×480: within every encoder's range (vicodec's smallest is 640×360).
    let (w, h) = (640, 480);
    let mut enc = M2mEncoder::open(&dev.path, &code, w, h, 500_000, 30)?;
    let mut pic = I420::new(w, h);
    let mut units = Vec::new();
    for n in 0..pictures {
        for (i, y) in pic.y.iter_mut().enumerate() {
            *y = ((i % w as usize) + n * 8) as u8;
        }
        units.extend(enc.encode(&pic, n as u64 * 33_333)?);
    }
    units.extend(enc.finish()?);
    Ok(SelfTest {
        pictures,
        units: units.len(),
        bytes: units.iter().map(|u| u.data.len()).sum(),
        head: units
            .first()
            .map(|u| u.data.iter().take(8).copied().collect())
            .unwrap_or_default(),
    })
}
