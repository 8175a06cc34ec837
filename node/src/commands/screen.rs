//! `screen.snapshot {screenIndex=0, format="png"|"jpg", maxWidth?, quality?}` →
//! `{format, base64, width, height}`: a Pincer command (the reference only records video).

use std::sync::Arc;

use pincer_hal::screen::{to_png, Screens};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, Command, CommandError, CommandFuture, Reply};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Params {
    #[serde(default)]
    screen_index: Option<u32>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    max_width: Option<i64>,
    #[serde(default)]
    quality: Option<f64>,
}

/// `screen.snapshot`.
pub struct Snapshot(pub Arc<dyn Screens>);

/// Base64 budget for the image (as for camera.snap).
const MAX_BASE64: usize = 5_000_000;

impl Command for Snapshot {
    fn run(&self, params: Value) -> CommandFuture {
        let fbs = self.0.clone();
        Box::pin(async move {
            let p: Params = serde_json::from_value(params)
                .map_err(|e| CommandError::invalid(format!("screen.snapshot: {e}")))?;
            let jpg = match p.format.as_deref().unwrap_or("png") {
                "png" => false,
                "jpg" | "jpeg" => true,
                other => {
                    return Err(CommandError::invalid(format!(
                        "screen.snapshot: format {other:?} is not png|jpg"
                    )))
                }
            };
            let max_width = match p.max_width {
                Some(w) if w > 0 => w.min(16_384) as u32,
                _ => 0,
            };
            let quality = (p
                .quality
                .filter(|q| q.is_finite())
                .unwrap_or(0.9)
                .clamp(0.1, 1.0)
                * 100.0)
                .round() as u8;
            let index = p.screen_index.unwrap_or(0);
            let (bytes, width, height) = blocking(move || {
                let err =
                    |e: pincer_hal::screen::ScreenError| CommandError::new(e.code(), e.to_string());
                let img = fbs.capture(index).map_err(err)?.fit_width(max_width);
                if jpg {
                    img.to_jpeg_within(quality, MAX_BASE64)
                        .map_err(|e| CommandError::unavailable(e.to_string()))
                } else {
                    let (w, h) = (img.width, img.height);
                    let png = to_png(&img).map_err(err)?;
                    Ok((png, w, h))
                }
            })
            .await?;
            Ok(Reply::media(
                json!({
                    "format": if jpg { "jpg" } else { "png" },
                    "width": width,
                    "height": height,
                    "screenIndex": index,
                }),
                bytes,
            ))
        })
    }
}

#[cfg(feature = "video")]
pub use record::Record;

/// `screen.record {screenIndex=0, durationMs=10000 (200..60000), fps=10 (1..30),
/// format?="mp4", includeAudio=true, maxWidth?}` →
/// `{format:"mp4", base64, durationMs, fps, screenIndex, hasAudio}`.
#[cfg(feature = "video")]
mod record {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use pincer_hal::screen::{ScreenError, Screens};
    use pincer_hal::video::{self, RecordRequest, VideoError, I420};
    use serde::Deserialize;
    use serde_json::{json, Value};

    use super::super::video::{result, StopOnDrop, MAX_MP4_BYTES};
    use super::super::{blocking, Command, CommandError, CommandFuture};

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        #[serde(default)]
        screen_index: Option<u32>,
        #[serde(default)]
        duration_ms: Option<i64>,
        #[serde(default)]
        fps: Option<f64>,
        #[serde(default)]
        format: Option<String>,
        #[serde(default)]
        include_audio: Option<bool>,
        #[serde(default)]
        max_width: Option<i64>,
    }

    /// Checked params: screen, request, whether audio was asked, max width.
    pub(super) fn request(params: Value) -> Result<(u32, RecordRequest, bool, u32), CommandError> {
        let p: Params = serde_json::from_value(params)
            .map_err(|e| CommandError::invalid(format!("screen.record: {e}")))?;
        if let Some(f) = p.format.as_deref() {
            if f != "mp4" {
                return Err(CommandError::invalid(format!(
                    "screen.record: format {f:?} is not supported (mp4)"
                )));
            }
        }
        let fps = p
            .fps
            .filter(|f| f.is_finite())
            .unwrap_or(10.0)
            .clamp(1.0, 30.0)
            .round() as u32;
        let duration = p.duration_ms.unwrap_or(10_000).clamp(200, 60_000) as u64;
        let max_width = match p.max_width {
            Some(w) if w > 0 => w.min(16_384) as u32,
            _ => 1280,
        };
        Ok((
            p.screen_index.unwrap_or(0),
            RecordRequest {
                duration: Duration::from_millis(duration),
                fps,
                max_bytes: MAX_MP4_BYTES,
                stop: Default::default(),
            },
            p.include_audio.unwrap_or(true),
            max_width,
        ))
    }

    /// Why a recording failed: the screen's error or the encoder's.
    enum Failure {
        Screen(ScreenError),
        Video(VideoError),
    }

    impl From<VideoError> for Failure {
        fn from(e: VideoError) -> Self {
            Failure::Video(e)
        }
    }

    impl From<Failure> for CommandError {
        fn from(f: Failure) -> Self {
            match f {
                Failure::Screen(e) => CommandError::new(e.code(), e.to_string()),
                Failure::Video(VideoError::Cancelled) => {
                    CommandError::new("CANCELLED", VideoError::Cancelled.to_string())
                }
                Failure::Video(e) => CommandError::unavailable(e.to_string()),
            }
        }
    }

    /// `screen.record`.
    pub struct Record(pub Arc<dyn Screens>);

    impl Command for Record {
        fn run(&self, params: Value) -> CommandFuture {
            let fbs = self.0.clone();
            Box::pin(async move {
                let (index, req, audio, max_width) = request(params)?;
                let stop = StopOnDrop(req.stop.clone());
                let fps = req.fps;
                let clip = blocking(move || {
                    let first = fbs
                        .capture(index)
                        .map_err(|e| CommandError::new(e.code(), e.to_string()))?
                        .fit_width(max_width);
                    let mut pic = I420::new(first.width, first.height);
                    pic.fill_from_rgb(&first);
                    let bitrate =
                        video::bitrate_for(pic.width, pic.height, fps, req.duration, req.max_bytes);
                    let enc = video::encoder(pic.width, pic.height, fps, bitrate)
                        .map_err(|e| CommandError::unavailable(e.to_string()))?;
                    tracing::info!(
                        index,
                        width = pic.width,
                        height = pic.height,
                        fps,
                        bitrate,
                        encoder = enc.name(),
                        "screen.record recording"
                    );
                    let mut first = Some(first);
                    let clip = video::record::<Failure>(&mut pic, &req, enc, |pic, due| {
                        if first.take().is_some() {
                            return Ok(());
                        }
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        let img = fbs
                            .capture(index)
                            .map_err(Failure::Screen)?
                            .fit_width(max_width);
                        pic.fill_from_rgb(&img);
                        Ok(())
                    })?;
                    Ok::<_, CommandError>(clip)
                })
                .await?;
                drop(stop);
                result(clip, audio, json!({ "fps": fps, "screenIndex": index }))
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn params_follow_the_reference() {
            let (i, r, audio, _) = request(json!({})).unwrap();
            assert_eq!(
                (i, r.fps, r.duration.as_millis(), audio),
                (0, 10, 10_000, true)
            );
            let (i, r, _, _) =
                request(json!({"screenIndex": 1, "fps": 99.0, "durationMs": 1})).unwrap();
            assert_eq!((i, r.fps, r.duration.as_millis()), (1, 30, 200));
            for bad in [json!({"format": "gif"}), json!({"fps": "x"})] {
                assert_eq!(request(bad).unwrap_err().code, "INVALID_REQUEST");
            }
        }
    }
}
