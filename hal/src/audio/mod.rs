//! Audio through ALSA `hw:` devices: list the cards' PCMs, record a WAV, play a WAV.
//!
//! Device ids are ALSA's `hw:CARD,DEVICE` (card by index or by id, e.g. `hw:Loopback,1`).
//! Samples are 16-bit little-endian PCM. All calls block (run them on a blocking thread)
//! and end by a deadline.

pub mod pcm;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pcm::{Direction, Pcm};

/// Why an audio call failed; [`AudioError::code`] maps it to the reference's error codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// No device can do this direction (`capture` or `playback`) and none was named.
    #[error("no {0} device")]
    NoDevice(&'static str),
    /// The named device (or its card) does not exist.
    #[error("no audio device {0}")]
    NotFound(String),
    /// The device is open elsewhere (`EBUSY`).
    #[error("{0} is in use by another program")]
    Busy(String),
    /// The device node may not be opened (`EACCES`/`EPERM`): `MIC_PERMISSION_REQUIRED`.
    #[error("no permission to open {0} (is the node's user in the `audio` group?)")]
    Permission(String),
    /// The device (first) cannot do the rate, channel count or format (second).
    #[error("{0} cannot do {1}")]
    Unsupported(String, String),
    /// A read or write did not finish by its deadline.
    #[error("{0} stopped delivering audio")]
    Stalled(String),
    /// The id is not `hw:CARD,DEVICE`.
    #[error("bad device id {0:?} (expected hw:CARD,DEVICE)")]
    BadId(String),
    /// The WAV to play is not 16-bit PCM RIFF/WAVE, or is malformed.
    #[error("bad WAV: {0}")]
    BadWav(String),
    /// Any other OS error on the device (first).
    #[error("{0}: {1}")]
    Io(String, io::Error),
}

impl AudioError {
    /// The reference-style error code.
    pub fn code(&self) -> &'static str {
        match self {
            AudioError::Permission(_) => "MIC_PERMISSION_REQUIRED",
            AudioError::BadId(_) | AudioError::BadWav(_) | AudioError::Unsupported(..) => {
                "INVALID_REQUEST"
            }
            _ => "UNAVAILABLE",
        }
    }

    fn from_io(what: &str, e: io::Error) -> AudioError {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) => {
                AudioError::NotFound(what.into())
            }
            Some(libc::EBUSY) => AudioError::Busy(what.into()),
            Some(libc::EACCES) | Some(libc::EPERM) => AudioError::Permission(what.into()),
            _ if e.kind() == io::ErrorKind::TimedOut => AudioError::Stalled(what.into()),
            _ => AudioError::Io(what.into(), e),
        }
    }
}

/// One PCM device of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDevice {
    /// `hw:CARD,DEVICE` with the card's index.
    pub id: String,
    /// e.g. `Loopback: Loopback PCM`.
    pub name: String,
    /// ALSA card index.
    pub card: u32,
    /// PCM device number on the card.
    pub device: u32,
    /// Whether it can record.
    pub capture: bool,
    /// Whether it can play.
    pub playback: bool,
}

/// Where ALSA's device nodes and proc files are.
#[derive(Debug, Clone)]
pub struct Alsa {
    snd_dir: PathBuf,
    proc_dir: PathBuf,
}

impl Default for Alsa {
    fn default() -> Self {
        Alsa {
            snd_dir: "/dev/snd".into(),
            proc_dir: "/proc/asound".into(),
        }
    }
}

/// A recording.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The recording as a WAV file: 44-byte header, 16-bit little-endian samples.
    pub wav: Vec<u8>,
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// Channel count (interleaved).
    pub channels: u16,
    /// Duration recorded, ms (the length asked for).
    pub duration_ms: u64,
    /// The device recorded from, `hw:CARD,DEVICE`.
    pub device: String,
}

/// `/proc/asound/pcm` lines: `00-01: Loopback PCM : Loopback PCM : playback 8 : capture 8`.
pub fn parse_pcm_list(text: &str, card_names: &[(u32, String)]) -> Vec<AudioDevice> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((ids, rest)) = line.split_once(':') else {
            continue;
        };
        let Some((c, d)) = ids.trim().split_once('-') else {
            continue;
        };
        let (Ok(card), Ok(device)) = (c.parse::<u32>(), d.parse::<u32>()) else {
            continue;
        };
        let fields: Vec<&str> = rest.split(" : ").map(str::trim).collect();
        let pcm_name = fields.first().copied().unwrap_or("").trim();
        let card_name = card_names
            .iter()
            .find(|(i, _)| *i == card)
            .map(|(_, n)| n.as_str())
            .unwrap_or("");
        out.push(AudioDevice {
            id: format!("hw:{card},{device}"),
            name: if card_name.is_empty() {
                pcm_name.to_owned()
            } else {
                format!("{card_name}: {pcm_name}")
            },
            card,
            device,
            capture: fields.iter().any(|f| f.starts_with("capture")),
            playback: fields.iter().any(|f| f.starts_with("playback")),
        });
    }
    out
}

/// `/proc/asound/cards`: ` 0 [Loopback       ]: Loopback - Loopback` → (0, "Loopback", id).
fn parse_cards(text: &str) -> Vec<(u32, String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (idx, rest) = l.split_once(' ')?;
            let idx = idx.parse().ok()?;
            let id = rest.split_once('[')?.1.split_once(']')?.0.trim().to_owned();
            let name = rest.split_once(" - ").map(|x| x.1.trim()).unwrap_or(&id);
            Some((idx, name.to_owned(), id))
        })
        .collect()
}

/// Card and device numbers of `hw:CARD,DEVICE` (card by index or id).
fn parse_id(id: &str, cards: &[(u32, String, String)]) -> Result<(u32, u32), AudioError> {
    let bad = || AudioError::BadId(id.to_owned());
    let rest = id
        .strip_prefix("hw:")
        .or_else(|| id.strip_prefix("plughw:"))
        .ok_or_else(bad)?;
    let (card, dev) = rest.split_once(',').unwrap_or((rest, "0"));
    let dev = dev
        .split(',')
        .next()
        .unwrap_or("0")
        .parse()
        .map_err(|_| bad())?;
    let card = match card.parse::<u32>() {
        Ok(c) => c,
        Err(_) => cards
            .iter()
            .find(|(_, _, cid)| cid == card)
            .map(|(i, _, _)| *i)
            .ok_or_else(|| AudioError::NotFound(id.to_owned()))?,
    };
    Ok((card, dev))
}

impl Alsa {
    /// Devices under other directories (tests).
    pub fn new(snd_dir: impl Into<PathBuf>, proc_dir: impl Into<PathBuf>) -> Alsa {
        Alsa {
            snd_dir: snd_dir.into(),
            proc_dir: proc_dir.into(),
        }
    }

    fn cards(&self) -> Vec<(u32, String, String)> {
        std::fs::read_to_string(self.proc_dir.join("cards"))
            .map(|t| parse_cards(&t))
            .unwrap_or_default()
    }

    /// The node path for `id` (or the first device that can) in `direction`.
    fn node(&self, id: Option<&str>, direction: Direction) -> Result<(String, String), AudioError> {
        let (card, dev) = match id {
            Some(id) => parse_id(id, &self.cards())?,
            None => {
                let d = self
                    .list()
                    .into_iter()
                    .find(|d| match direction {
                        Direction::Capture => d.capture,
                        Direction::Playback => d.playback,
                    })
                    .ok_or(AudioError::NoDevice(match direction {
                        Direction::Capture => "capture",
                        Direction::Playback => "playback",
                    }))?;
                (d.card, d.device)
            }
        };
        let suffix = if direction == Direction::Capture {
            'c'
        } else {
            'p'
        };
        let path = self
            .snd_dir
            .join(format!("pcmC{card}D{dev}{suffix}"))
            .to_string_lossy()
            .into_owned();
        Ok((format!("hw:{card},{dev}"), path))
    }

    fn open(
        &self,
        id: Option<&str>,
        direction: Direction,
        rate: Option<u32>,
        channels: Option<u16>,
    ) -> Result<(Pcm, String), AudioError> {
        let (hw, path) = self.node(id, direction)?;
        let range = pcm::range(&path).map_err(|e| AudioError::from_io(&hw, e))?;
        let rate = rate.unwrap_or_else(|| 48_000u32.clamp(range.rate.0, range.rate.1.max(1)));
        let channels =
            channels.unwrap_or_else(|| 1u16.max(range.channels.0.min(u32::from(u16::MAX)) as u16));
        if rate < range.rate.0 || rate > range.rate.1 {
            return Err(AudioError::Unsupported(
                hw,
                format!("{rate} Hz (it does {}..{} Hz)", range.rate.0, range.rate.1),
            ));
        }
        if u32::from(channels) < range.channels.0 || u32::from(channels) > range.channels.1 {
            return Err(AudioError::Unsupported(
                hw,
                format!(
                    "{channels} channels (it does {}..{})",
                    range.channels.0, range.channels.1
                ),
            ));
        }
        let pcm =
            Pcm::open(&path, direction, rate, channels).map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => AudioError::Unsupported(
                    hw.clone(),
                    format!("S16_LE at {rate} Hz with {channels} channels"),
                ),
                _ => AudioError::from_io(&hw, e),
            })?;
        Ok((pcm, hw))
    }
}

/// The audio class: what `audio.list`, `audio.record` and `audio.play` need from a backend.
pub trait AudioDevices: Send + Sync {
    /// Every capture and playback device.
    fn list(&self) -> Vec<AudioDevice>;
    /// Records `duration` from `id` (default: the first capture device).
    fn record(
        &self,
        id: Option<&str>,
        duration: Duration,
        rate: Option<u32>,
        channels: Option<u16>,
    ) -> Result<Recording, AudioError>;
    /// Plays a 16-bit PCM WAV on `id` (default: the first playback device); returns the
    /// device and the duration played in ms.
    fn play(&self, id: Option<&str>, wav: &[u8]) -> Result<(String, u64), AudioError>;
}

impl AudioDevices for Alsa {
    /// Every PCM device of every card.
    fn list(&self) -> Vec<AudioDevice> {
        let names: Vec<(u32, String)> = self.cards().into_iter().map(|(i, n, _)| (i, n)).collect();
        std::fs::read_to_string(self.proc_dir.join("pcm"))
            .map(|t| parse_pcm_list(&t, &names))
            .unwrap_or_default()
    }
    /// Records `duration` from capture device `id` (default: the first that can capture).
    fn record(
        &self,
        id: Option<&str>,
        duration: Duration,
        rate: Option<u32>,
        channels: Option<u16>,
    ) -> Result<Recording, AudioError> {
        let (pcm, hw) = self.open(id, Direction::Capture, rate, channels)?;
        let s = pcm.setup;
        let frames = (u128::from(s.rate) * duration.as_millis() / 1000) as usize;
        let mut data = vec![0u8; frames * 2 * usize::from(s.channels)];
        let deadline = Instant::now() + duration + Duration::from_secs(2);
        let xruns = pcm
            .read_all(&mut data, deadline)
            .map_err(|e| AudioError::from_io(&hw, e))?;
        if xruns > 0 {
            tracing::warn!(device = %hw, xruns, "capture overruns (gaps in the recording)");
        }
        Ok(Recording {
            wav: wav::encode(&data, s.rate, s.channels),
            sample_rate: s.rate,
            channels: s.channels,
            duration_ms: duration.as_millis() as u64,
            device: hw,
        })
    }
    /// Plays a 16-bit PCM WAV on playback device `id` and returns once it has been played.
    fn play(&self, id: Option<&str>, wav_bytes: &[u8]) -> Result<(String, u64), AudioError> {
        let w = wav::decode(wav_bytes).map_err(AudioError::BadWav)?;
        let (pcm, hw) = self.open(id, Direction::Playback, Some(w.rate), Some(w.channels))?;
        let frames = w.data.len() / (2 * usize::from(w.channels));
        let ms = (frames as u64 * 1000) / u64::from(w.rate.max(1));
        let deadline = Instant::now() + Duration::from_millis(ms) + Duration::from_secs(3);
        pcm.write_all(w.data, deadline)
            .map_err(|e| AudioError::from_io(&hw, e))?;
        Ok((hw, ms))
    }
}

/// RIFF/WAVE, 16-bit PCM only.
pub mod wav {
    /// A decoded WAV: its samples borrow the input.
    #[derive(Debug)]
    pub struct Wav<'a> {
        /// Sample rate, Hz.
        pub rate: u32,
        /// Channel count (interleaved).
        pub channels: u16,
        /// The samples, 16-bit little-endian, borrowed from the input.
        pub data: &'a [u8],
    }

    /// A 44-byte header and the samples.
    pub fn encode(samples: &[u8], rate: u32, channels: u16) -> Vec<u8> {
        let len = samples.len() as u32;
        let mut v = Vec::with_capacity(44 + samples.len());
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        v.extend_from_slice(&(2 * channels).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(samples);
        v
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }
    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    /// Reads a 16-bit PCM WAV (plain or WAVE_FORMAT_EXTENSIBLE); a `data` chunk longer than
    /// the file (streamed WAVs) is cut to what is there.
    pub fn decode(b: &[u8]) -> Result<Wav<'_>, String> {
        if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WAVE" {
            return Err("not a RIFF/WAVE file".into());
        }
        let mut at = 12;
        let mut fmt = None;
        while at + 8 <= b.len() {
            let id = &b[at..at + 4];
            let len = u32_at(b, at + 4).ok_or("truncated chunk")? as usize;
            let body = at + 8;
            match id {
                b"fmt " => {
                    let tag = u16_at(b, body).ok_or("truncated fmt")?;
                    let channels = u16_at(b, body + 2).ok_or("truncated fmt")?;
                    let rate = u32_at(b, body + 4).ok_or("truncated fmt")?;
                    let bits = u16_at(b, body + 14).ok_or("truncated fmt")?;
                    let pcm = tag == 1 || (tag == 0xFFFE && u16_at(b, body + 24) == Some(1));
                    if !pcm || bits != 16 {
                        return Err(format!(
                            "only 16-bit PCM is played (format {tag:#x}, {bits} bits)"
                        ));
                    }
                    if !(1..=8).contains(&channels) || !(8_000..=192_000).contains(&rate) {
                        return Err(format!("{channels} channels at {rate} Hz"));
                    }
                    fmt = Some((rate, channels));
                }
                b"data" => {
                    let (rate, channels) = fmt.ok_or("data before fmt")?;
                    let end = body.saturating_add(len).min(b.len());
                    let frame = 2 * usize::from(channels);
                    let end = body + (end - body) / frame * frame;
                    return Ok(Wav {
                        rate,
                        channels,
                        data: &b[body..end],
                    });
                }
                _ => {}
            }
            at = body.saturating_add(len).saturating_add(len & 1);
        }
        Err("no data chunk".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let cards = parse_cards(
            " 0 [Loopback       ]: Loopback - Loopback\n                      Loopback 1\n 1 [Dummy          ]: Dummy - Dummy\n",
        );
        assert_eq!(cards[0], (0, "Loopback".into(), "Loopback".into()));
        assert_eq!(cards[1].0, 1);
        let names: Vec<(u32, String)> = cards.iter().map(|(i, n, _)| (*i, n.clone())).collect();
        let list = parse_pcm_list(
            "00-00: Loopback PCM : Loopback PCM : playback 8 : capture 8\n01-00: Dummy PCM : Dummy PCM : playback 8\n",
            &names,
        );
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, "hw:0,0");
        assert_eq!(list[0].name, "Loopback: Loopback PCM");
        assert!(list[0].capture && list[0].playback);
        assert!(!list[1].capture && list[1].playback);
        assert_eq!(parse_id("hw:Loopback,1", &cards).unwrap(), (0, 1));
        assert_eq!(parse_id("hw:1", &cards).unwrap(), (1, 0));
        assert!(matches!(
            parse_id("default", &cards),
            Err(AudioError::BadId(_))
        ));
        assert!(matches!(
            parse_id("hw:Nope,0", &cards),
            Err(AudioError::NotFound(_))
        ));
    }

    #[test]
    fn wav_roundtrip_and_bad_input() {
        let samples: Vec<u8> = (0..100u16).flat_map(|s| s.to_le_bytes()).collect();
        let w = wav::encode(&samples, 16_000, 2);
        let d = wav::decode(&w).unwrap();
        assert_eq!((d.rate, d.channels), (16_000, 2));
        assert_eq!(d.data, &samples[..]);
        // A streamed WAV claims more data than it holds; it is cut to whole frames.
        let mut streamed = w.clone();
        streamed[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        streamed.pop();
        assert_eq!(wav::decode(&streamed).unwrap().data.len(), 196);
        assert!(wav::decode(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(wav::decode(b"hello").is_err());
        let mut eight_bit = w.clone();
        eight_bit[34] = 8;
        assert!(wav::decode(&eight_bit).unwrap_err().contains("16-bit"));
    }

    #[test]
    fn no_cards_is_a_typed_error() {
        let a = Alsa::new("/nonexistent", "/nonexistent");
        assert!(a.list().is_empty());
        let e = a
            .record(None, Duration::from_millis(100), None, None)
            .unwrap_err();
        assert!(matches!(e, AudioError::NoDevice("capture")), "{e}");
        let e = a
            .play(Some("hw:0,0"), &wav::encode(&[0; 4], 8000, 1))
            .unwrap_err();
        assert!(matches!(e, AudioError::NotFound(_)), "{e}");
    }
}
