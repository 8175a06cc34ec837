//! The three frame kinds as closed objects (reference §1.2), plus encoders the gateway uses on
//! its hot path.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::ErrorShape;
use crate::text::{literal, Bounded, NonEmpty};

literal!(ReqTag, "req");
literal!(ResTag, "res");
literal!(EventTag, "event");

/// Client → gateway request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestFrame {
    /// `type`: always `"req"`.
    #[serde(rename = "type")]
    pub kind: ReqTag,
    /// Request id chosen by the client (UUIDv4 in the reference), echoed in the `res`.
    pub id: NonEmpty,
    /// Method name, e.g. `connect`, `health`, `node.invoke`.
    pub method: NonEmpty,
    /// The method's params, kept as raw JSON text until the method is known; absent means `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Value>"))]
    pub params: Option<Box<RawValue>>,
    /// v4: W3C trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<Bounded<128>>,
    /// v4: the profile the client expects to reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_profile_id: Option<NonEmpty>,
}

/// Gateway → client response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ResponseFrame {
    /// `type`: always `"res"`.
    #[serde(rename = "type")]
    pub kind: ResTag,
    /// The `id` of the request this answers.
    pub id: NonEmpty,
    /// True on success (then `payload`), false on failure (then `error`).
    pub ok: bool,
    /// The method's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorShape>,
}

/// `stateVersion` on `presence` / `health` events and in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StateVersion {
    /// Bumped on every presence change (connect, disconnect); starts at 1.
    pub presence: u64,
    /// Bumped on every health refresh; starts at 1.
    pub health: u64,
}

/// Gateway → client event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventFrame {
    /// `type`: always `"event"`.
    #[serde(rename = "type")]
    pub kind: EventTag,
    /// Event name, e.g. `tick`, `presence`, `node.invoke.request`.
    pub event: NonEmpty,
    /// The event's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Broadcast sequence number, strictly increasing per socket; absent on targeted events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// State counters, on `presence` and `health` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_version: Option<StateVersion>,
    /// v4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_profile_id: Option<NonEmpty>,
}

/// Any frame, for peers that read both responses and events (nodes, operator clients).
#[derive(Debug, Clone)]
pub enum Frame {
    /// A `req` frame.
    Req(RequestFrame),
    /// A `res` frame.
    Res(ResponseFrame),
    /// An `event` frame.
    Event(EventFrame),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The text is not JSON.
    NotJson(String),
    /// JSON, but not a valid frame; `id` is the frame's id when it had a string one.
    Invalid {
        /// The frame's `id`, when it had a string one (so the error can answer it).
        id: Option<String>,
        /// What was wrong, from the decoder.
        message: String,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotJson(m) => write!(f, "frame is not JSON: {m}"),
            Self::Invalid { message, .. } => write!(f, "invalid frame: {message}"),
        }
    }
}

impl std::error::Error for FrameError {}

#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: Option<Value>,
    id: Option<Value>,
}

impl Frame {
    /// Decodes any frame, rejecting unknown keys at the frame level.
    pub fn decode(text: &str) -> Result<Frame, FrameError> {
        let head: TypeOnly = serde_json::from_str(text).map_err(|e| classify(&e, text))?;
        let id = head.id.and_then(|v| v.as_str().map(str::to_owned));
        let invalid = |e: serde_json::Error| FrameError::Invalid {
            id: id.clone(),
            message: e.to_string(),
        };
        match head.kind.as_ref().and_then(Value::as_str) {
            Some("req") => serde_json::from_str(text).map(Frame::Req).map_err(invalid),
            Some("res") => serde_json::from_str(text).map(Frame::Res).map_err(invalid),
            Some("event") => serde_json::from_str(text)
                .map(Frame::Event)
                .map_err(invalid),
            _ => Err(FrameError::Invalid {
                id,
                message: "unknown frame type".into(),
            }),
        }
    }
}

/// Syntax errors mean "not JSON"; anything else means "JSON of the wrong shape".
pub(crate) fn classify(e: &serde_json::Error, text: &str) -> FrameError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => FrameError::NotJson(e.to_string()),
        Category::Data => match serde_json::from_str::<Value>(text) {
            // Wrong shape found before the syntax error: still not JSON.
            Err(syntax) => FrameError::NotJson(syntax.to_string()),
            Ok(v) => {
                let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
                FrameError::Invalid {
                    id,
                    message: e.to_string(),
                }
            }
        },
    }
}

/// Serialises a request with typed params in one pass (client side: `connect`,
/// `node.invoke.result`, operator calls). Fails only if `params` cannot be serialised.
pub fn encode_req<T: Serialize + ?Sized>(
    id: &str,
    method: &str,
    params: &T,
) -> Result<String, serde_json::Error> {
    encode_req_sized(id, method, params, 0)
}

/// [`encode_req`] into a buffer with room for `params_len` bytes of params from the start (a
/// photo's result is written without growing, and copying, its buffer on the way).
pub fn encode_req_sized<T: Serialize + ?Sized>(
    id: &str,
    method: &str,
    params: &T,
    params_len: usize,
) -> Result<String, serde_json::Error> {
    let mut out = String::with_capacity(id.len() + method.len() + 64 + params_len);
    out.push_str(r#"{"type":"req","id":"#);
    push_json_str(&mut out, id);
    out.push_str(r#","method":"#);
    push_json_str(&mut out, method);
    out.push_str(r#","params":"#);
    let mut bytes = out.into_bytes();
    serde_json::to_writer(&mut bytes, params)?;
    bytes.push(b'}');
    // serde_json writes UTF-8 only, and the head was a String.
    String::from_utf8(bytes).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// Serialises a successful response whose payload is already JSON text.
pub fn encode_res_ok_raw(id: &str, payload_json: &str) -> String {
    let mut out = String::with_capacity(payload_json.len() + id.len() + 40);
    out.push_str(r#"{"type":"res","id":"#);
    push_json_str(&mut out, id);
    out.push_str(r#","ok":true,"payload":"#);
    out.push_str(payload_json);
    out.push('}');
    out
}

/// Serialises a successful response.
pub fn encode_res_ok<T: Serialize + ?Sized>(id: &str, payload: &T) -> String {
    match serde_json::to_string(payload) {
        Ok(p) => encode_res_ok_raw(id, &p),
        Err(e) => encode_res_err(
            id,
            &ErrorShape::unavailable(format!("failed to encode result: {e}")),
        ),
    }
}

/// Serialises an error response.
pub fn encode_res_err(id: &str, error: &ErrorShape) -> String {
    let mut out = String::with_capacity(128);
    out.push_str(r#"{"type":"res","id":"#);
    push_json_str(&mut out, id);
    out.push_str(r#","ok":false,"error":"#);
    out.push_str(
        &serde_json::to_string(error)
            .unwrap_or_else(|_| r#"{"code":"UNAVAILABLE","message":"error"}"#.into()),
    );
    out.push('}');
    out
}

/// Serialises an event; `payload_json` is JSON text.
pub fn encode_event_raw(
    event: &str,
    payload_json: &str,
    seq: Option<u64>,
    state_version: Option<StateVersion>,
) -> String {
    use core::fmt::Write;
    let mut out = String::with_capacity(payload_json.len() + event.len() + 64);
    out.push_str(r#"{"type":"event","event":"#);
    push_json_str(&mut out, event);
    out.push_str(r#","payload":"#);
    out.push_str(payload_json);
    if let Some(seq) = seq {
        let _ = write!(out, r#","seq":{seq}"#);
    }
    if let Some(sv) = state_version {
        let _ = write!(
            out,
            r#","stateVersion":{{"presence":{},"health":{}}}"#,
            sv.presence, sv.health
        );
    }
    out.push('}');
    out
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's string escaping is the reference for correctness.
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders_produce_frames_the_decoder_accepts() {
        let ok = encode_res_ok_raw("a\"b", r#"{"x":1}"#);
        let Frame::Res(r) = Frame::decode(&ok).unwrap() else {
            panic!("not a res")
        };
        assert_eq!((r.id.as_str(), r.ok), ("a\"b", true));
        let err = encode_res_err("1", &ErrorShape::invalid("nope").with_detail_code("X"));
        let Frame::Res(r) = Frame::decode(&err).unwrap() else {
            panic!("not a res")
        };
        assert_eq!(r.error.unwrap().detail_code(), Some("X"));
        let ev = encode_event_raw(
            "tick",
            r#"{"ts":1}"#,
            Some(3),
            Some(StateVersion {
                presence: 1,
                health: 2,
            }),
        );
        let Frame::Event(e) = Frame::decode(&ev).unwrap() else {
            panic!("not an event")
        };
        assert_eq!((e.seq, e.state_version.unwrap().health), (Some(3), 2));
        let req = encode_req(
            "r\"1",
            "node.invoke.result",
            &serde_json::json!({"ok": true}),
        )
        .unwrap();
        let Frame::Req(r) = Frame::decode(&req).unwrap() else {
            panic!("not a req")
        };
        assert_eq!(
            (r.id.as_str(), r.method.as_str()),
            ("r\"1", "node.invoke.result")
        );
        assert_eq!(r.params.unwrap().get(), r#"{"ok":true}"#);
    }

    #[test]
    fn unknown_keys_and_garbage_are_rejected() {
        assert!(matches!(
            Frame::decode("{nope"),
            Err(FrameError::NotJson(_))
        ));
        let extra = r#"{"type":"res","id":"9","ok":true,"extra":1}"#;
        assert_eq!(Frame::decode(extra).unwrap_err(), FrameError::Invalid {
            id: Some("9".into()),
            message: "unknown field `extra`, expected one of `type`, `id`, `ok`, `payload`, `error` at line 1 column 40".into()
        });
        assert!(Frame::decode(r#"{"type":"event","event":""}"#).is_err());
        assert!(Frame::decode(r#"{"type":"event","event":"x","seq":-1}"#).is_err());
    }
}
