//! What `camera.clip` and `screen.record` share: the MP4's byte budget, stopping a recording
//! when its invoke is cancelled, and the result payload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{CommandError, Reply};

/// Base64 the result may carry: the gateway's 25 MiB frame cap minus a 64 KiB envelope, as
/// OpenClaw's Linux node reckons it.
pub const MAX_BASE64: usize = 25 * 1024 * 1024 - 64 * 1024;
/// The MP4's byte budget that keeps its base64 within [`MAX_BASE64`].
pub const MAX_MP4_BYTES: usize = MAX_BASE64 / 4 * 3;

/// Held by a recording command's future: when the invoke is cancelled (or times out) the
/// future is dropped, and the recording thread sees the flag at its next picture.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `{format:"mp4", base64, durationMs, hasAudio}` plus `extra`'s fields.
pub fn result(
    clip: pincer_hal::video::Clip,
    audio_asked: bool,
    extra: Value,
) -> Result<Reply, CommandError> {
    if audio_asked {
        tracing::info!("includeAudio: this node has no AAC encoder; the clip has no audio track (hasAudio false)");
    }
    tracing::info!(
        bytes = clip.mp4.len(),
        frames = clip.frames,
        duration_ms = clip.duration_ms,
        width = clip.width,
        height = clip.height,
        encoder = clip.encoder,
        truncated = clip.truncated,
        "clip recorded"
    );
    let mut out = json!({
        "format": "mp4",
        "durationMs": clip.duration_ms,
        "hasAudio": false,
    });
    if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    Ok(Reply::media(out, clip.mp4))
}
