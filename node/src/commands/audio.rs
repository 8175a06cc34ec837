//! Pincer audio commands (cap `audio`), on ALSA `hw:` devices:
//! - `audio.list {}` → `{inputs:[{id, name}], outputs:[{id, name}]}`
//! - `audio.record {durationMs=5000 (100..60000), sampleRate?, channels?, deviceId?}` →
//!   `{format:"wav", base64, durationMs, sampleRate, channels, deviceId}`
//! - `audio.play {base64 (16-bit PCM WAV), deviceId?}` → `{played:true, durationMs, deviceId}`

use std::time::Duration;

use std::sync::Arc;

use pincer_hal::audio::{AudioDevices, AudioError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, Command, CommandError, CommandFuture, Reply};

fn hal_error(e: AudioError) -> CommandError {
    CommandError::new(e.code(), e.to_string())
}

/// `audio.list`.
pub struct List(pub Arc<dyn AudioDevices>);

impl Command for List {
    fn run(&self, _params: Value) -> CommandFuture {
        let alsa = self.0.clone();
        Box::pin(async move {
            let devices = blocking(move || Ok(alsa.list())).await?;
            let pick = |capture: bool| -> Vec<Value> {
                devices
                    .iter()
                    .filter(|d| if capture { d.capture } else { d.playback })
                    .map(|d| json!({ "id": d.id, "name": d.name }))
                    .collect()
            };
            Ok(json!({ "inputs": pick(true), "outputs": pick(false) }).into())
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RecordParams {
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    sample_rate: Option<u32>,
    #[serde(default)]
    channels: Option<u16>,
    #[serde(default)]
    device_id: Option<String>,
}

/// `audio.record`.
pub struct Record(pub Arc<dyn AudioDevices>);

impl Command for Record {
    fn run(&self, params: Value) -> CommandFuture {
        let alsa = self.0.clone();
        Box::pin(async move {
            let p: RecordParams = serde_json::from_value(params)
                .map_err(|e| CommandError::invalid(format!("audio.record: {e}")))?;
            let ms = p.duration_ms.unwrap_or(5_000);
            if !(100..=60_000).contains(&ms) {
                return Err(CommandError::invalid(format!(
                    "audio.record: durationMs {ms} is outside 100..60000"
                )));
            }
            if p.sample_rate
                .is_some_and(|r| !(8_000..=192_000).contains(&r))
            {
                return Err(CommandError::invalid(
                    "audio.record: sampleRate is outside 8000..192000",
                ));
            }
            if p.channels.is_some_and(|c| !(1..=8).contains(&c)) {
                return Err(CommandError::invalid(
                    "audio.record: channels is outside 1..8",
                ));
            }
            let rec = blocking(move || {
                alsa.record(
                    p.device_id.as_deref().filter(|d| !d.is_empty()),
                    Duration::from_millis(ms),
                    p.sample_rate,
                    p.channels,
                )
                .map_err(hal_error)
            })
            .await?;
            Ok(Reply::media(
                json!({
                    "format": "wav",
                    "durationMs": rec.duration_ms,
                    "sampleRate": rec.sample_rate,
                    "channels": rec.channels,
                    "deviceId": rec.device,
                }),
                rec.wav,
            ))
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlayParams {
    base64: String,
    #[serde(default)]
    device_id: Option<String>,
}

/// `audio.play`.
pub struct Play(pub Arc<dyn AudioDevices>);

impl Command for Play {
    fn run(&self, params: Value) -> CommandFuture {
        let alsa = self.0.clone();
        Box::pin(async move {
            let p: PlayParams = serde_json::from_value(params)
                .map_err(|e| CommandError::invalid(format!("audio.play: {e}")))?;
            let wav = pincer_protocol::base64url::decode(&p.base64)
                .map_err(|e| CommandError::invalid(format!("audio.play: base64: {e}")))?;
            let (device, ms) = blocking(move || {
                alsa.play(p.device_id.as_deref().filter(|d| !d.is_empty()), &wav)
                    .map_err(hal_error)
            })
            .await?;
            Ok(json!({ "played": true, "durationMs": ms, "deviceId": device }).into())
        })
    }
}
