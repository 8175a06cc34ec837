//! `camera.list {}` → `{devices:[{id, name, position, deviceType:"v4l2"|"libcamera"}]}`
//! `camera.snap {facing?, maxWidth=1600, quality=0.9, format?="jpg", delayMs=0, deviceId?}` →
//! `{format:"jpg", base64, width, height}` — the reference's shapes, from V4L2 devices and
//! libcamera cameras (`deviceId` `libcamera:<libcamera id>`, through libcamera's tools).
//! `camera.clip {facing?, durationMs=3000 (200..60000), includeAudio=true, format?="mp4",
//! deviceId?, maxWidth?}` → `{format:"mp4", base64, durationMs, hasAudio}`: H.264 in MP4.

use std::time::Duration;

use std::sync::Arc;

use pincer_hal::camera::{Access, CameraError, Cameras, Position, SnapRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, Command, CommandError, CommandFuture, Reply};

fn hal_error(e: CameraError) -> CommandError {
    CommandError::new(e.code(), e.to_string())
}

/// `camera.list`.
pub struct List(pub Arc<dyn Cameras>);

impl Command for List {
    fn run(&self, _params: Value) -> CommandFuture {
        let cams = self.0.clone();
        Box::pin(async move {
            let list = blocking(move || Ok(cams.list())).await?;
            let devices: Vec<Value> = list
                .into_iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "name": c.name,
                        "position": c.position.as_str(),
                        "deviceType": match c.access {
                            Access::V4l2 => "v4l2",
                            _ => "libcamera",
                        },
                    })
                })
                .collect();
            Ok(json!({ "devices": devices }).into())
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SnapParams {
    #[serde(default)]
    facing: Option<String>,
    #[serde(default)]
    max_width: Option<i64>,
    #[serde(default)]
    quality: Option<f64>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    device_id: Option<String>,
}

/// The `facing` param: `front`, `back` or none.
fn facing(command: &str, f: Option<&str>) -> Result<Option<Position>, CommandError> {
    match f {
        None => Ok(None),
        Some("front") => Ok(Some(Position::Front)),
        Some("back") => Ok(Some(Position::Back)),
        Some(other) => Err(CommandError::invalid(format!(
            "{command}: facing {other:?} is not front|back"
        ))),
    }
}

/// `camera.snap`.
pub struct Snap(pub Arc<dyn Cameras>);

/// The HAL request for `camera.snap` params, checked.
fn snap_request(params: Value) -> Result<SnapRequest, CommandError> {
    let p: SnapParams = serde_json::from_value(params)
        .map_err(|e| CommandError::invalid(format!("camera.snap: {e}")))?;
    if let Some(f) = p.format.as_deref() {
        if !matches!(f, "jpg" | "jpeg") {
            return Err(CommandError::invalid(format!(
                "camera.snap: format {f:?} is not supported (jpg)"
            )));
        }
    }
    let facing = facing("camera.snap", p.facing.as_deref())?;
    let quality = p.quality.unwrap_or(0.9);
    if !quality.is_finite() {
        return Err(CommandError::invalid(
            "camera.snap: quality is not a number",
        ));
    }
    Ok(SnapRequest {
        device: p.device_id.filter(|d| !d.is_empty()),
        facing,
        max_width: match p.max_width {
            None => 1600,
            Some(w) if w <= 0 => 0,
            Some(w) => w.min(16_384) as u32,
        },
        quality: (quality.clamp(0.1, 1.0) * 100.0).round() as u8,
        delay: Duration::from_millis(p.delay_ms.unwrap_or(0).min(10_000)),
        ..SnapRequest::default()
    })
}

impl Command for Snap {
    fn run(&self, params: Value) -> CommandFuture {
        let cams = self.0.clone();
        Box::pin(async move {
            let req = snap_request(params)?;
            let photo = blocking(move || cams.snap(&req).map_err(hal_error)).await?;
            tracing::info!(
                device = %photo.device,
                width = photo.width,
                height = photo.height,
                bytes = photo.jpeg.len(),
                from = %photo.source_format,
                "camera.snap"
            );
            Ok(Reply::media(
                json!({ "format": "jpg", "width": photo.width, "height": photo.height }),
                photo.jpeg,
            ))
        })
    }
}

#[cfg(feature = "video")]
pub use clip::Clip;

#[cfg(feature = "video")]
mod clip {
    use super::*;
    use pincer_hal::camera::ClipRequest;
    use pincer_hal::video::RecordRequest;

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct ClipParams {
        #[serde(default)]
        facing: Option<String>,
        #[serde(default)]
        duration_ms: Option<i64>,
        #[serde(default)]
        include_audio: Option<bool>,
        #[serde(default)]
        format: Option<String>,
        #[serde(default)]
        device_id: Option<String>,
        #[serde(default)]
        max_width: Option<i64>,
    }

    /// Pictures per second in a camera clip: smooth enough to see motion, cheap enough for
    /// a software encoder on a small board.
    pub const CLIP_FPS: u32 = 15;
    /// Default picture width (a board camera's 640×480 mode).
    pub const CLIP_WIDTH: u32 = 640;

    /// `camera.clip`.
    pub struct Clip(pub Arc<dyn Cameras>);

    /// The HAL request for `camera.clip` params, checked; also whether audio was asked for.
    pub(super) fn clip_request(params: Value) -> Result<(ClipRequest, bool), CommandError> {
        let p: ClipParams = serde_json::from_value(params)
            .map_err(|e| CommandError::invalid(format!("camera.clip: {e}")))?;
        if let Some(f) = p.format.as_deref() {
            if f != "mp4" {
                return Err(CommandError::invalid(format!(
                    "camera.clip: format {f:?} is not supported (mp4)"
                )));
            }
        }
        let facing = super::facing("camera.clip", p.facing.as_deref())?;
        let duration = p.duration_ms.unwrap_or(3000).clamp(200, 60_000) as u64;
        Ok((
            ClipRequest {
                device: p.device_id.filter(|d| !d.is_empty()),
                facing,
                max_width: match p.max_width {
                    None => CLIP_WIDTH,
                    Some(w) if w <= 0 => 0,
                    Some(w) => w.min(16_384) as u32,
                },
                warmup_frames: 4,
                frame_timeout: Duration::from_secs(3),
                record: RecordRequest {
                    duration: Duration::from_millis(duration),
                    fps: CLIP_FPS,
                    max_bytes: super::super::video::MAX_MP4_BYTES,
                    stop: Default::default(),
                },
            },
            p.include_audio.unwrap_or(true),
        ))
    }

    impl Command for Clip {
        fn run(&self, params: Value) -> CommandFuture {
            let cams = self.0.clone();
            Box::pin(async move {
                let (req, audio) = clip_request(params)?;
                let stop = super::super::video::StopOnDrop(req.record.stop.clone());
                let clip = blocking(move || cams.clip(&req).map_err(hal_error)).await?;
                drop(stop);
                super::super::video::result(clip, audio, json!({}))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_the_reference() {
        let r = snap_request(json!({})).unwrap();
        assert_eq!((r.max_width, r.quality), (1600, 90));
        let r =
            snap_request(json!({"maxWidth": 0, "quality": 5, "facing": "back", "delayMs": 99999}))
                .unwrap();
        assert_eq!((r.max_width, r.quality), (0, 100));
        assert_eq!(r.facing, Some(Position::Back));
        assert_eq!(r.delay, Duration::from_secs(10));
        let r = snap_request(json!({"quality": 0.01, "deviceId": "/dev/video2"})).unwrap();
        assert_eq!(r.quality, 10);
        assert_eq!(r.device.as_deref(), Some("/dev/video2"));
        for bad in [
            json!({"format": "png"}),
            json!({"facing": "up"}),
            json!({"maxWidth": "x"}),
        ] {
            assert_eq!(snap_request(bad).unwrap_err().code, "INVALID_REQUEST");
        }
    }
}

#[cfg(all(test, feature = "video"))]
mod clip_tests {
    use super::clip::clip_request;
    use serde_json::json;

    #[test]
    fn clip_params_follow_the_reference() {
        let (r, audio) = clip_request(json!({})).unwrap();
        assert_eq!(r.record.duration.as_millis(), 3000);
        assert!(audio);
        let (r, audio) =
            clip_request(json!({"durationMs": 10, "includeAudio": false, "maxWidth": 0})).unwrap();
        assert_eq!(
            (r.record.duration.as_millis(), r.max_width, audio),
            (200, 0, false)
        );
        let (r, _) = clip_request(json!({"durationMs": 999999})).unwrap();
        assert_eq!(r.record.duration.as_millis(), 60_000);
        for bad in [
            json!({"format": "webm"}),
            json!({"facing": "up"}),
            json!({"durationMs": "x"}),
        ] {
            assert_eq!(clip_request(bad).unwrap_err().code, "INVALID_REQUEST");
        }
    }
}
