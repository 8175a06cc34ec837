//! The kernel's ALSA PCM interface (`/dev/snd/pcmC<card>D<device><p|c>`), spoken directly with
//! ioctls: hardware parameters, prepare/start, interleaved reads and writes, drain.
//!
//! Why not alsa-lib (`cpal` → `alsa-sys`): it is a shared C library with its own config tree
//! under `/usr/share/alsa`, which a static musl build (the armv6 and emulated-board targets)
//! cannot link and a minimal initramfs does not have. A fixed format (S16_LE, interleaved) on
//! a `hw:` device needs only the dozen ioctls below.
//!
//! The device is opened non-blocking and every wait is a `poll` with a deadline, so a stalled
//! or unplugged card ends in an error, never a hang.

use std::ffi::CString;
use std::io;
use std::os::raw::{c_int, c_long, c_uint, c_ulong, c_void};
use std::time::{Duration, Instant};

/// `struct snd_mask`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Mask {
    bits: [u32; 8],
}

/// `struct snd_interval` (`openmin:1, openmax:1, integer:1, empty:1` in `flags`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Interval {
    min: c_uint,
    max: c_uint,
    flags: c_uint,
}

const INTERVAL_INTEGER: c_uint = 1 << 2;

/// `struct snd_pcm_hw_params`.
#[repr(C)]
struct HwParams {
    flags: c_uint,
    masks: [Mask; 3],
    mres: [Mask; 5],
    intervals: [Interval; 12],
    ires: [Interval; 9],
    rmask: c_uint,
    cmask: c_uint,
    info: c_uint,
    msbits: c_uint,
    rate_num: c_uint,
    rate_den: c_uint,
    fifo_size: c_ulong,
    reserved: [u8; 64],
}

/// `struct snd_xferi`.
#[repr(C)]
struct Xferi {
    result: c_long,
    buf: *mut c_void,
    frames: c_ulong,
}

// Parameter indices (`SNDRV_PCM_HW_PARAM_*`).
const ACCESS: usize = 0;
const FORMAT: usize = 1;
const SUBFORMAT: usize = 2;
const FIRST_INTERVAL: usize = 8;
const CHANNELS: usize = 10;
const RATE: usize = 11;
const PERIOD_TIME: usize = 12;
const PERIOD_SIZE: usize = 13;
const BUFFER_TIME: usize = 16;
const BUFFER_SIZE: usize = 17;

const ACCESS_RW_INTERLEAVED: u32 = 3;
const FORMAT_S16_LE: u32 = 2;
const SUBFORMAT_STD: u32 = 0;

/// `_IOC(dir, 'A', nr, size)` with the generic Linux encoding (x86, ARM, RISC-V).
const fn ioc(dir: u32, nr: u32, size: usize) -> c_ulong {
    ((dir << 30) | ((size as u32) << 16) | ((b'A' as u32) << 8) | nr) as c_ulong
}
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const HW_REFINE: c_ulong = ioc(IOC_READ | IOC_WRITE, 0x10, std::mem::size_of::<HwParams>());
const HW_PARAMS: c_ulong = ioc(IOC_READ | IOC_WRITE, 0x11, std::mem::size_of::<HwParams>());
const PREPARE: c_ulong = ioc(IOC_NONE, 0x40, 0);
const START: c_ulong = ioc(IOC_NONE, 0x42, 0);
const DROP: c_ulong = ioc(IOC_NONE, 0x43, 0);
const DRAIN: c_ulong = ioc(IOC_NONE, 0x44, 0);
const WRITEI: c_ulong = ioc(IOC_WRITE, 0x50, std::mem::size_of::<Xferi>());
const READI: c_ulong = ioc(IOC_READ, 0x51, std::mem::size_of::<Xferi>());

impl HwParams {
    /// Everything allowed (alsa-lib's `snd_pcm_hw_params_any`).
    fn any() -> HwParams {
        HwParams {
            flags: 0,
            masks: [Mask { bits: [!0; 8] }; 3],
            mres: [Mask { bits: [0; 8] }; 5],
            intervals: [Interval {
                min: 0,
                max: c_uint::MAX,
                flags: 0,
            }; 12],
            ires: [Interval {
                min: 0,
                max: 0,
                flags: 0,
            }; 9],
            rmask: !0,
            cmask: 0,
            info: !0,
            msbits: 0,
            rate_num: 0,
            rate_den: 0,
            fifo_size: 0,
            reserved: [0; 64],
        }
    }

    fn only(&mut self, mask: usize, bit: u32) {
        self.masks[mask].bits = [0; 8];
        self.masks[mask].bits[(bit / 32) as usize] = 1 << (bit % 32);
    }

    fn range(&mut self, param: usize, min: u32, max: u32) {
        let i = &mut self.intervals[param - FIRST_INTERVAL];
        i.min = min;
        i.max = max;
        i.flags = INTERVAL_INTEGER;
    }

    fn interval(&self, param: usize) -> (u32, u32) {
        let i = &self.intervals[param - FIRST_INTERVAL];
        (i.min, i.max)
    }
}

/// The parameters a stream ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Sample rate, Hz.
    pub rate: u32,
    /// Channel count (interleaved).
    pub channels: u16,
    /// Frames per period (the kernel's wake-up unit).
    pub period_frames: u32,
    /// Frames the kernel's ring buffer holds.
    pub buffer_frames: u32,
}

/// What a device can do for S16_LE interleaved (from `HW_REFINE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Lowest and highest sample rate, Hz.
    pub rate: (u32, u32),
    /// Lowest and highest channel count.
    pub channels: (u32, u32),
}

/// Capture or playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Recording (`pcmC*D*c` nodes).
    Capture,
    /// Playing (`pcmC*D*p` nodes).
    Playback,
}

/// An open PCM substream. Dropping it stops the stream and closes the device.
pub struct Pcm {
    fd: c_int,
    frame_bytes: usize,
    /// The parameters the stream was opened with.
    pub setup: Setup,
    direction: Direction,
}

fn check(rc: c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens the device node non-blocking.
fn open_node(path: &str) -> io::Result<c_int> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid NUL-terminated path; the fd is owned by the caller.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

fn close(fd: c_int) {
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
}

fn s16_params() -> HwParams {
    let mut p = HwParams::any();
    p.only(ACCESS, ACCESS_RW_INTERLEAVED);
    p.only(FORMAT, FORMAT_S16_LE);
    p.only(SUBFORMAT, SUBFORMAT_STD);
    p
}

/// What `path` supports for S16_LE interleaved.
pub fn range(path: &str) -> io::Result<Range> {
    let fd = open_node(path)?;
    let mut p = s16_params();
    // SAFETY: p is a live HwParams of the size encoded in the request.
    let rc = unsafe { libc::ioctl(fd, HW_REFINE as _, &mut p as *mut HwParams) };
    let r = check(rc).map(|()| Range {
        rate: p.interval(RATE),
        channels: p.interval(CHANNELS),
    });
    close(fd);
    r
}

/// Rounds a poll timeout up to whole milliseconds, at least 1.
fn poll_ms(left: Duration) -> c_int {
    left.as_millis().clamp(1, c_int::MAX as u128) as c_int
}

impl Pcm {
    /// Opens `path` for S16_LE interleaved at exactly `rate` and `channels`, periods of
    /// 10–100 ms and a buffer of at most 500 ms.
    pub fn open(path: &str, direction: Direction, rate: u32, channels: u16) -> io::Result<Pcm> {
        let fd = open_node(path)?;
        let mut p = s16_params();
        p.range(CHANNELS, u32::from(channels), u32::from(channels));
        p.range(RATE, rate, rate);
        p.range(PERIOD_TIME, 10_000, 100_000);
        p.range(BUFFER_TIME, 0, 500_000);
        // SAFETY: p is a live HwParams of the size encoded in the request.
        let rc = unsafe { libc::ioctl(fd, HW_PARAMS as _, &mut p as *mut HwParams) };
        if let Err(e) = check(rc) {
            close(fd);
            return Err(e);
        }
        let setup = Setup {
            rate: p.interval(RATE).0,
            channels: p.interval(CHANNELS).0 as u16,
            period_frames: p.interval(PERIOD_SIZE).0,
            buffer_frames: p.interval(BUFFER_SIZE).0,
        };
        let pcm = Pcm {
            fd,
            frame_bytes: 2 * usize::from(channels),
            setup,
            direction,
        };
        pcm.ioctl(PREPARE)?;
        Ok(pcm)
    }

    fn ioctl(&self, req: c_ulong) -> io::Result<()> {
        // SAFETY: argument-less PCM ioctl on our fd.
        check(unsafe { libc::ioctl(self.fd, req as _) })
    }

    fn wait(&self, events: i16, deadline: Instant) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events,
            revents: 0,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            // SAFETY: one live pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, poll_ms(left)) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if pfd.revents & (libc::POLLERR | libc::POLLNVAL | libc::POLLHUP) != 0
                && pfd.revents & events == 0
            {
                // An xrun also shows as POLLERR: let the transfer report EPIPE.
                return Ok(());
            }
            if n > 0 {
                return Ok(());
            }
        }
    }

    /// One READI/WRITEI of up to `frames` frames at `buf`.
    fn transfer(&self, req: c_ulong, buf: *mut c_void, frames: usize) -> io::Result<usize> {
        let mut x = Xferi {
            result: 0,
            buf,
            frames: frames as c_ulong,
        };
        // SAFETY: buf points to at least frames * frame_bytes bytes (callers slice it so).
        check(unsafe { libc::ioctl(self.fd, req as _, &mut x as *mut Xferi) })?;
        Ok(x.result.max(0) as usize)
    }

    /// Fills `out` (whole frames) from the capture stream by `deadline`; recovers from
    /// overruns (counted in the return value).
    pub fn read_all(&self, out: &mut [u8], deadline: Instant) -> io::Result<u32> {
        debug_assert_eq!(self.direction, Direction::Capture);
        let total = out.len() / self.frame_bytes;
        let mut done = 0;
        let mut xruns = 0;
        self.ioctl(START).or_else(|e| {
            if e.raw_os_error() == Some(libc::EBADFD) {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        while done < total {
            let at = done * self.frame_bytes;
            match self.transfer(READI, out[at..].as_mut_ptr().cast(), total - done) {
                Ok(n) => done += n,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    self.wait(libc::POLLIN, deadline)?
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    xruns += 1;
                    self.ioctl(PREPARE)?;
                    self.ioctl(START)?;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
            if done < total && Instant::now() >= deadline {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
        }
        Ok(xruns)
    }

    /// Plays `data` (whole frames) and waits until it has been heard, by `deadline`.
    pub fn write_all(&self, data: &[u8], deadline: Instant) -> io::Result<u32> {
        debug_assert_eq!(self.direction, Direction::Playback);
        let total = data.len() / self.frame_bytes;
        let mut done = 0;
        let mut xruns = 0;
        while done < total {
            let at = done * self.frame_bytes;
            match self.transfer(WRITEI, data[at..].as_ptr() as *mut c_void, total - done) {
                Ok(n) => done += n,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    self.wait(libc::POLLOUT, deadline)?
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    xruns += 1;
                    self.ioctl(PREPARE)?;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
            if done < total && Instant::now() >= deadline {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
        }
        // A stream shorter than the start threshold never started: start it to drain.
        let _ = self.ioctl(START);
        // Drain blocks in blocking mode; the buffer is at most 500 ms long.
        // SAFETY: fcntl on our own fd.
        unsafe {
            let fl = libc::fcntl(self.fd, libc::F_GETFL);
            libc::fcntl(self.fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
        match self.ioctl(DRAIN) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {} // ran dry at the very end
            Err(e) => return Err(e),
        }
        Ok(xruns)
    }
}

impl Drop for Pcm {
    fn drop(&mut self) {
        let _ = self.ioctl(DROP);
        close(self.fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel_abi() {
        // sound/asound.h on LP64: 608 bytes; ILP32 (armhf): 604.
        let expect = if std::mem::size_of::<c_ulong>() == 8 {
            608
        } else {
            604
        };
        assert_eq!(std::mem::size_of::<HwParams>(), expect);
        // The request numbers as the C headers compute them on x86-64.
        if cfg!(target_arch = "x86_64") {
            assert_eq!(HW_PARAMS, 0xc260_4111);
            assert_eq!(READI, 0x8018_4151);
            assert_eq!(WRITEI, 0x4018_4150);
            assert_eq!(PREPARE, 0x4140);
        }
    }

    #[test]
    fn missing_device_is_an_error() {
        let e = Pcm::open("/dev/snd/pcmC99D0c", Direction::Capture, 48_000, 1)
            .err()
            .expect("no such card");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
