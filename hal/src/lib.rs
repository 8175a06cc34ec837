//! # pincer-hal
//!
//! The board's hardware as small async interfaces, one cargo feature per class, so a node built
//! without a class contains none of its code (linux-embedded-hal style: thin wrappers over the
//! OS services, an error type per class mapped to the reference's error codes).
//!
//! **Owns:** talking to devices and daemons — V4L2 cameras, libcamera's tools, framebuffers,
//! ALSA, gpsd.
//! **Must not touch:** the wire protocol, the gateway, or command names and params; `pincer-node`
//! turns these results into `node.invoke` payloads.
//!
//! | class | feature | backend | status |
//! |---|---|---|---|
//! | location | `location` | gpsd (TCP JSON, `gpsd_proto` types) | done |
//! | camera | `camera` | V4L2 single-planar capture (kernel ioctls, mmap streaming), JPEG (our baseline encoder, `image::jpeg`, coded straight from YUV frames); libcamera devices (CSI modules) through `rpicam-still` / `rpicam-vid` / `cam` (`camera::libcamera`) | stills, clips |
//! | screen | `screen` | X11 `GetImage` when `DISPLAY` answers, else fbdev (`/dev/fbN`, incl. KMS fbdev emulation); PNG/JPEG | done |
//! | audio | `audio` | ALSA kernel PCM ioctls on `hw:` devices, 16-bit WAV | done |
//! | video | `video`, `video-soft` | I420 conversion, H.264 (software: `rusty_h264-encoder`), MP4 muxer | clips |
//!
//! `image` (raw frame conversion, downscaling, JPEG) is shared by camera and screen.

#![warn(missing_docs)]

#[cfg(feature = "audio")]
pub mod audio;
#[cfg(feature = "camera")]
pub mod camera;
#[cfg(any(feature = "camera", feature = "screen", feature = "video"))]
pub mod image;
#[cfg(feature = "location")]
pub mod location;
#[cfg(feature = "screen")]
pub mod screen;
#[cfg(any(feature = "camera", feature = "video"))]
#[cfg_attr(not(all(feature = "camera", feature = "video")), allow(dead_code))] // one half each
mod v4l2;
#[cfg(feature = "video")]
pub mod video;
