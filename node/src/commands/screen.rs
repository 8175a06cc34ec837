//! `screen.snapshot {screenIndex=0, format="png"|"jpg", maxWidth?, quality?}` →
//! `{format, base64, width, height}`: a Pincer command (the reference only records video).

use std::sync::Arc;

use pincer_hal::screen::{to_png, Screens};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, Command, CommandError, CommandFuture};

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
            Ok(json!({
                "format": if jpg { "jpg" } else { "png" },
                "base64": pincer_protocol::base64url::encode_standard(&bytes),
                "width": width,
                "height": height,
                "screenIndex": index,
            }))
        })
    }
}
