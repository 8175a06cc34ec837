//! Frame envelope for `no_std` peers: read a frame's kind and routing fields without allocating,
//! and write request frames into a caller's buffer. Built on `serde-json-core`.
//!
//! Full typed frames (with `params` / `payload` bodies) live in [`crate::frames`] under `std`.

use serde::{Deserialize, Serialize};

/// The `type` discriminator of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameType {
    /// `"req"`: a request; only clients send them.
    #[serde(rename = "req")]
    Req,
    /// `"res"`: the gateway's response, echoing the request's `id`.
    #[serde(rename = "res")]
    Res,
    /// `"event"`: a gateway-pushed event (`node.invoke.request`, `tick`, …).
    #[serde(rename = "event")]
    Event,
}

/// Routing fields of any frame; bodies (`params`, `payload`, `error`) are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Header<'a> {
    /// The frame's `type`.
    #[serde(rename = "type")]
    pub kind: FrameType,
    /// Request id (`req`), or the request id a `res` answers.
    #[serde(borrow, default)]
    pub id: Option<&'a str>,
    /// Method name of a `req`.
    #[serde(borrow, default)]
    pub method: Option<&'a str>,
    /// Event name of an `event`.
    #[serde(borrow, default)]
    pub event: Option<&'a str>,
    /// Success flag of a `res`.
    #[serde(default)]
    pub ok: Option<bool>,
    /// Broadcast sequence number of an `event` (absent on targeted events).
    #[serde(default)]
    pub seq: Option<u64>,
}

/// Errors from envelope encoding and decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not a JSON object with a known `type` (or a string field uses escapes, which the
    /// borrowing decoder cannot represent).
    Malformed,
    /// A `req` without a non-empty `id` and `method`, a `res` without `id` and `ok`, or an
    /// `event` without a non-empty `event`.
    MissingField,
    /// The output buffer is too small.
    BufferFull,
}

/// Reads the header of one frame.
pub fn decode_header(frame: &[u8]) -> Result<Header<'_>, EnvelopeError> {
    let (h, _) =
        serde_json_core::from_slice::<Header<'_>>(frame).map_err(|_| EnvelopeError::Malformed)?;
    let non_empty = |s: Option<&str>| s.is_some_and(|s| !s.is_empty());
    let complete = match h.kind {
        FrameType::Req => non_empty(h.id) && non_empty(h.method),
        FrameType::Res => non_empty(h.id) && h.ok.is_some(),
        FrameType::Event => non_empty(h.event),
    };
    if complete {
        Ok(h)
    } else {
        Err(EnvelopeError::MissingField)
    }
}

#[derive(Serialize)]
struct Req<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: FrameType,
    id: &'a str,
    method: &'a str,
    params: &'a P,
}

/// Writes a `req` frame into `out`, returning the number of bytes used.
pub fn encode_request<P: Serialize>(
    out: &mut [u8],
    id: &str,
    method: &str,
    params: &P,
) -> Result<usize, EnvelopeError> {
    serde_json_core::to_slice(
        &Req {
            kind: FrameType::Req,
            id,
            method,
            params,
        },
        out,
    )
    .map_err(|_| EnvelopeError::BufferFull)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_and_skips_bodies() {
        let ev = br#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":1,"capabilities":["x"]}}"#;
        let h = decode_header(ev).unwrap();
        assert_eq!(
            (h.kind, h.event),
            (FrameType::Event, Some("connect.challenge"))
        );
        let res = br#"{"type":"res","id":"7","ok":false,"error":{"code":"INVALID_REQUEST","message":"m"}}"#;
        let h = decode_header(res).unwrap();
        assert_eq!(
            (h.kind, h.id, h.ok),
            (FrameType::Res, Some("7"), Some(false))
        );
        let tick = br#"{"type":"event","event":"tick","payload":{"ts":5},"seq":12}"#;
        assert_eq!(decode_header(tick).unwrap().seq, Some(12));
    }

    #[test]
    fn rejects_incomplete_or_unknown_frames() {
        assert_eq!(
            decode_header(br#"{"type":"req","id":"","method":"x"}"#),
            Err(EnvelopeError::MissingField)
        );
        assert_eq!(
            decode_header(br#"{"type":"res","id":"1"}"#),
            Err(EnvelopeError::MissingField)
        );
        assert_eq!(
            decode_header(br#"{"type":"nope"}"#),
            Err(EnvelopeError::Malformed)
        );
        assert_eq!(decode_header(b"not json"), Err(EnvelopeError::Malformed));
    }

    #[test]
    fn writes_requests() {
        #[derive(Serialize)]
        struct P {
            probe: bool,
        }
        let mut buf = [0u8; 128];
        let n = encode_request(&mut buf, "1", "health", &P { probe: true }).unwrap();
        assert_eq!(
            &buf[..n],
            br#"{"type":"req","id":"1","method":"health","params":{"probe":true}}"#
        );
        let mut tiny = [0u8; 8];
        assert_eq!(
            encode_request(&mut tiny, "1", "health", &P { probe: true }),
            Err(EnvelopeError::BufferFull)
        );
    }
}
