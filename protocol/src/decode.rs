//! Inbound decoding on the gateway side: one text frame → a typed request, or the exact reason
//! it is invalid. The JSON Schemas in `protocol/schema/` describe what this accepts; the
//! conformance test feeds both the same corpus.

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::connect::ConnectParams;
use crate::frames::{classify, FrameError, RequestFrame};
use crate::methods::{
    ChannelsStatusParams, DeviceIdParams, EmptyParams, HealthParams, NodeEventParams, NodeIdParams,
    NodeInvokeParams, NodeInvokeResultParams, OpenObject, RequestIdParams, SetupCodeParams,
    SystemEventParams, TokenRevokeParams, TokenRotateParams,
};

/// Typed params of a request whose method Pincer knows.
#[derive(Debug, Clone)]
pub enum Params {
    /// `connect`: the handshake (only valid as the first request).
    Connect(Box<ConnectParams>),
    /// `health`: callable by any authenticated connection.
    Health(HealthParams),
    /// `status` (`operator.read`).
    Status(EmptyParams),
    /// `system-presence` (`operator.read`): the presence list.
    SystemPresence(EmptyParams),
    /// `last-heartbeat` (`operator.read`).
    LastHeartbeat(EmptyParams),
    /// `config.get` (`operator.read`).
    ConfigGet(EmptyParams),
    /// `channels.status` (`operator.read`).
    ChannelsStatus(ChannelsStatusParams),
    /// `system-event` (`operator.admin`): a client reports presence text.
    SystemEvent(Box<SystemEventParams>),
    /// `device.pair.list` (`operator.pairing`).
    DevicePairList(EmptyParams),
    /// `device.pair.approve` (`operator.pairing`).
    DevicePairApprove(RequestIdParams),
    /// `device.pair.reject` (`operator.pairing`).
    DevicePairReject(RequestIdParams),
    /// `device.pair.remove` (`operator.pairing`).
    DevicePairRemove(DeviceIdParams),
    /// `device.pair.setupCode` (v4, `operator.admin`): issue a bootstrap token.
    DevicePairSetupCode(SetupCodeParams),
    /// `device.token.rotate` (`operator.pairing`).
    DeviceTokenRotate(TokenRotateParams),
    /// `device.token.revoke` (`operator.pairing`).
    DeviceTokenRevoke(TokenRevokeParams),
    /// `node.list` (`operator.read`).
    NodeList(EmptyParams),
    /// `node.describe` (`operator.read`).
    NodeDescribe(NodeIdParams),
    /// `node.invoke` (`operator.write`): run a command on a node.
    NodeInvoke(Box<NodeInvokeParams>),
    /// `node.invoke.result` (node role): a node's answer to `node.invoke.request`.
    NodeInvokeResult(Box<NodeInvokeResultParams>),
    /// `node.event` (node role): an event a node reports.
    NodeEvent(Box<NodeEventParams>),
    /// `node.pair.list` (`operator.pairing`).
    NodePairList(EmptyParams),
    /// `node.pair.approve` (`operator.pairing`, more for exec commands).
    NodePairApprove(RequestIdParams),
    /// `node.pair.reject` (`operator.pairing`).
    NodePairReject(RequestIdParams),
    /// Node inventory updates (`node.runnerInventory.update`, `node.skills.update`,
    /// `node.pluginTools.update`, `skills.bins`): acknowledged.
    NodeInventory(OpenObject),
    /// An agent method (`chat.*`, `agent`, `sessions.*`, `models.list`): params checked
    /// against their type in [`crate::agent`] and kept as raw JSON for the agent runtime.
    Agent(Option<Box<RawValue>>),
    /// A method this build does not implement; params are kept as raw JSON.
    Unknown(Option<Box<RawValue>>),
}

type Parse = fn(Option<&RawValue>) -> Result<Params, String>;

/// Every method whose params are typed here, with its parser: the single source for
/// [`decode_params`] and for the schema list (a test checks each has a generated schema).
pub const TYPED: &[(&str, Parse)] = &[
    ("connect", |r| Ok(Params::Connect(Box::new(typed(r)?)))),
    ("health", |r| Ok(Params::Health(typed(r)?))),
    ("status", |r| Ok(Params::Status(typed(r)?))),
    ("system-presence", |r| Ok(Params::SystemPresence(typed(r)?))),
    ("last-heartbeat", |r| Ok(Params::LastHeartbeat(typed(r)?))),
    ("config.get", |r| Ok(Params::ConfigGet(typed(r)?))),
    ("channels.status", |r| Ok(Params::ChannelsStatus(typed(r)?))),
    ("system-event", |r| {
        Ok(Params::SystemEvent(Box::new(typed(r)?)))
    }),
    ("device.pair.list", |r| {
        Ok(Params::DevicePairList(typed(r)?))
    }),
    ("device.pair.approve", |r| {
        Ok(Params::DevicePairApprove(typed(r)?))
    }),
    ("device.pair.reject", |r| {
        Ok(Params::DevicePairReject(typed(r)?))
    }),
    ("device.pair.remove", |r| {
        Ok(Params::DevicePairRemove(typed(r)?))
    }),
    ("device.pair.setupCode", |r| {
        Ok(Params::DevicePairSetupCode(typed(r)?))
    }),
    ("device.token.rotate", |r| {
        Ok(Params::DeviceTokenRotate(typed(r)?))
    }),
    ("device.token.revoke", |r| {
        Ok(Params::DeviceTokenRevoke(typed(r)?))
    }),
    ("node.list", |r| Ok(Params::NodeList(typed(r)?))),
    ("node.describe", |r| Ok(Params::NodeDescribe(typed(r)?))),
    ("node.invoke", |r| {
        Ok(Params::NodeInvoke(Box::new(typed(r)?)))
    }),
    ("node.invoke.result", |r| {
        Ok(Params::NodeInvokeResult(Box::new(typed(r)?)))
    }),
    ("node.event", |r| Ok(Params::NodeEvent(Box::new(typed(r)?)))),
    ("node.pair.list", |r| Ok(Params::NodePairList(typed(r)?))),
    ("node.pair.approve", |r| {
        Ok(Params::NodePairApprove(typed(r)?))
    }),
    ("node.pair.reject", |r| {
        Ok(Params::NodePairReject(typed(r)?))
    }),
    ("node.runnerInventory.update", |r| {
        Ok(Params::NodeInventory(typed(r)?))
    }),
    ("node.skills.update", |r| {
        Ok(Params::NodeInventory(typed(r)?))
    }),
    ("node.pluginTools.update", |r| {
        Ok(Params::NodeInventory(typed(r)?))
    }),
    ("skills.bins", |r| Ok(Params::NodeInventory(typed(r)?))),
    ("chat.send", agent::<crate::agent::ChatSendParams>),
    ("chat.history", agent::<crate::agent::ChatHistoryParams>),
    ("chat.startup", agent::<crate::agent::ChatHistoryParams>),
    ("chat.abort", agent::<crate::agent::ChatAbortParams>),
    ("chat.inject", agent::<crate::agent::ChatInjectParams>),
    ("agent", agent::<crate::agent::AgentParams>),
    ("agent.wait", agent::<crate::agent::AgentWaitParams>),
    ("agent.identity.get", agent::<OpenObject>),
    ("sessions.list", agent::<crate::agent::SessionsListParams>),
    (
        "sessions.preview",
        agent::<crate::agent::SessionsPreviewParams>,
    ),
    ("sessions.resolve", agent::<crate::agent::SessionKeyParams>),
    ("sessions.patch", agent::<crate::agent::SessionKeyParams>),
    ("sessions.reset", agent::<crate::agent::SessionKeyParams>),
    ("sessions.delete", agent::<crate::agent::SessionKeyParams>),
    ("models.list", agent::<OpenObject>),
    ("wake", agent::<crate::agent::WakeParams>),
    ("send", agent::<crate::agent::SendParams>),
    ("cron.status", agent::<OpenObject>),
    ("cron.list", agent::<OpenObject>),
    ("cron.get", agent::<crate::agent::CronJobParams>),
    ("cron.add", agent::<crate::agent::CronAddParams>),
    ("cron.update", agent::<crate::agent::CronJobParams>),
    ("cron.remove", agent::<crate::agent::CronJobParams>),
    ("cron.run", agent::<crate::agent::CronJobParams>),
    ("cron.runs", agent::<crate::agent::CronJobParams>),
];

/// Checks `raw` against `T` and keeps it raw ([`Params::Agent`]).
fn agent<T: DeserializeOwned>(raw: Option<&RawValue>) -> Result<Params, String> {
    agent_params::<T>(raw.map(RawValue::get))?;
    Ok(Params::Agent(raw.map(RawValue::to_owned)))
}

/// An agent method's params (absent: `{}`) as `T`, under the same bound on JSON values as
/// every method, with missing fields worded as the reference words them (`must have required
/// property 'idempotencyKey'`). The gateway checks them with this when it decodes the frame,
/// and the agent runtime reads them with it.
pub fn agent_params<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, String> {
    let text = raw.unwrap_or("{}");
    if crate::weight::json_values(text, MAX_PARAM_VALUES + 1) > MAX_PARAM_VALUES {
        return Err(format!(
            "params hold more than {MAX_PARAM_VALUES} JSON values ({} bytes)",
            text.len()
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        let m = clip_echo(e.to_string());
        match m
            .strip_prefix("missing field `")
            .and_then(|r| r.split_once('`'))
        {
            Some((field, _)) => format!("must have required property '{field}'"),
            None => m,
        }
    })
}

/// Names of the typed methods.
pub fn typed_methods() -> impl Iterator<Item = &'static str> {
    TYPED.iter().map(|(m, _)| *m)
}

/// A decoded request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Request id, echoed in the `res`.
    pub id: String,
    /// Method name as sent.
    pub method: String,
    /// The params, typed when the method is known (absent params decoded as `{}`).
    pub params: Params,
}

/// Why a request frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON at all.
    NotJson(String),
    /// JSON, but not a valid request frame.
    InvalidFrame {
        /// The frame's `id`, when it had a string one.
        id: Option<String>,
        /// What was wrong, clipped to [`MAX_ECHO`].
        message: String,
    },
    /// A valid frame whose params do not match the method's schema.
    InvalidParams {
        /// Request id, echoed in the error `res`.
        id: String,
        /// The method whose params were refused.
        method: String,
        /// What was wrong, clipped to [`MAX_ECHO`].
        message: String,
    },
}

impl DecodeError {
    /// The id to answer with (`"invalid"` when the frame had none).
    pub fn reply_id(&self) -> &str {
        match self {
            Self::NotJson(_) => "invalid",
            Self::InvalidFrame { id, .. } => id.as_deref().unwrap_or("invalid"),
            Self::InvalidParams { id, .. } => id,
        }
    }

    /// The error message in the reference's wording.
    pub fn message(&self) -> String {
        match self {
            Self::NotJson(m) => format!("invalid request frame: {m}"),
            Self::InvalidFrame { message, .. } => format!("invalid request frame: {message}"),
            Self::InvalidParams {
                method, message, ..
            } => format!("invalid {method} params: {message}"),
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for DecodeError {}

/// Longest decoder message echoed back: serde quotes offending field names and values, and a
/// client must not be able to make a refusal as large as its request.
pub const MAX_ECHO: usize = 512;

/// `message` cut to [`MAX_ECHO`] bytes at a character boundary, marked with `…`.
pub fn clip_echo(mut message: String) -> String {
    if crate::clip_in_place(&mut message, MAX_ECHO) {
        message.push('…');
    }
    message
}

/// The most JSON values a request's params may hold to be decoded (a `node.invoke.result`
/// with a large object, a `system.which` with thousands of names hold far fewer; a photo is
/// one). A bigger tree is never built: whoever can send a 25 MB frame of `[0,0,…]` (any
/// authenticated client, any paired node) would otherwise make ~400 MB of it.
pub const MAX_PARAM_VALUES: usize = 262_144;

fn typed<T: DeserializeOwned>(raw: Option<&RawValue>) -> Result<T, String> {
    let text = raw.map_or("{}", RawValue::get);
    if crate::weight::json_values(text, MAX_PARAM_VALUES + 1) > MAX_PARAM_VALUES {
        return Err(format!(
            "params hold more than {MAX_PARAM_VALUES} JSON values ({} bytes)",
            text.len()
        ));
    }
    serde_json::from_str(text).map_err(|e| clip_echo(e.to_string()))
}

/// Decodes params of `method` (absent params count as `{}`).
pub fn decode_params(method: &str, raw: Option<Box<RawValue>>) -> Result<Params, String> {
    match TYPED.iter().find(|(m, _)| *m == method) {
        Some((_, parse)) => parse(raw.as_deref()),
        None => Ok(Params::Unknown(raw)),
    }
}

/// Decodes one inbound text frame.
pub fn decode_request(text: &str) -> Result<Request, DecodeError> {
    let frame: RequestFrame = serde_json::from_str(text).map_err(|e| match classify(&e, text) {
        FrameError::NotJson(m) => DecodeError::NotJson(clip_echo(m)),
        FrameError::Invalid { id, message } => DecodeError::InvalidFrame {
            id,
            message: clip_echo(message),
        },
    })?;
    let id = frame.id.into_string();
    let method = frame.method.into_string();
    match decode_params(&method, frame.params) {
        Ok(params) => Ok(Request { id, method, params }),
        Err(message) => Err(DecodeError::InvalidParams {
            id,
            method,
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_of_too_many_values_are_refused_before_any_tree_is_built() {
        let zeros = vec!["0"; MAX_PARAM_VALUES + 10].join(",");
        let text = format!(
            r#"{{"type":"req","id":"r1","method":"node.invoke.result","params":{{"id":"i","nodeId":"n","ok":true,"payload":[{zeros}]}}}}"#
        );
        match decode_request(&text) {
            Err(DecodeError::InvalidParams { id, message, .. }) => {
                assert_eq!(id, "r1");
                assert!(message.contains("JSON values"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A large string is one value.
        let photo = "A".repeat(5_000_000);
        let text = format!(
            r#"{{"type":"req","id":"r2","method":"node.invoke.result","params":{{"id":"i","nodeId":"n","ok":true,"payloadJSON":"{photo}"}}}}"#
        );
        assert!(decode_request(&text).is_ok());
    }

    #[test]
    fn decodes_a_captured_node_connect() {
        let text = r#"{"type":"req","id":"1:x","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"node-host","displayName":"n","version":"2026.9.6","platform":"linux","deviceFamily":"Linux","mode":"node","instanceId":"i"},"caps":["system"],"commands":["system.run"],"pathEnv":"/bin","auth":{"token":"t"},"role":"node","scopes":[],"device":{"id":"d","publicKey":"k","signature":"s","signedAt":1,"nonce":"n"}}}"#;
        let r = decode_request(text).unwrap();
        let Params::Connect(c) = r.params else {
            panic!("not connect")
        };
        assert_eq!(c.role(), "node");
        assert_eq!(c.client.id.as_str(), "node-host");
    }

    #[test]
    fn refuses_what_the_reference_refuses() {
        let bad_client = r#"{"type":"req","id":"1","method":"connect","params":{"minProtocol":3,"maxProtocol":3,"client":{"id":"ios-node","version":"1","platform":"x","mode":"node"}}}"#;
        assert!(matches!(
            decode_request(bad_client),
            Err(DecodeError::InvalidParams { .. })
        ));
        let extra = r#"{"type":"req","id":"1","method":"health","params":{"probe":true,"x":1}}"#;
        let e = decode_request(extra).unwrap_err();
        assert_eq!(e.reply_id(), "1");
        assert!(e
            .message()
            .starts_with("invalid health params: unknown field `x`"));
        assert!(matches!(
            decode_request(r#"{"type":"req","id":"","method":"health"}"#),
            Err(DecodeError::InvalidFrame { .. })
        ));
        assert!(matches!(
            decode_request("[1,2"),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(
            decode_request(r#"{"type":"event","event":"x"}"#),
            Err(DecodeError::InvalidFrame { .. })
        ));
    }

    #[test]
    fn refusals_do_not_echo_large_values_in_full() {
        let key = "k".repeat(100_000);
        let frame =
            format!(r#"{{"type":"req","id":"1","method":"health","params":{{"{key}":1}}}}"#);
        let e = decode_request(&frame).unwrap_err();
        assert!(e.message().len() < MAX_ECHO + 64, "{}", e.message().len());
        assert!(e
            .message()
            .starts_with("invalid health params: unknown field `kkk"));
        let frame = format!(
            r#"{{"type":"req","id":"1","method":{}}}"#,
            "7".repeat(100_000)
        );
        assert!(decode_request(&frame).unwrap_err().message().len() < MAX_ECHO + 64);
    }

    #[test]
    fn absent_params_are_empty_and_unknown_methods_pass_through() {
        assert!(matches!(
            decode_request(r#"{"type":"req","id":"1","method":"status"}"#)
                .unwrap()
                .params,
            Params::Status(_)
        ));
        assert!(matches!(
            decode_request(r#"{"type":"req","id":"1","method":"talk.catalog","params":{"a":1}}"#)
                .unwrap()
                .params,
            Params::Unknown(Some(_))
        ));
    }

    #[test]
    fn agent_params_are_checked_then_kept_raw_and_worded_as_the_reference_words_them() {
        let ok = r#"{"type":"req","id":"1","method":"chat.send","params":{"sessionKey":"main","message":"hi","idempotencyKey":"k","deliver":false}}"#;
        match decode_request(ok).unwrap().params {
            Params::Agent(Some(raw)) => assert!(raw.get().contains("\"deliver\":false")),
            other => panic!("{other:?}"),
        }
        let missing = r#"{"type":"req","id":"1","method":"chat.send","params":{"sessionKey":"main","message":"hi"}}"#;
        assert_eq!(
            decode_request(missing).unwrap_err().message(),
            "invalid chat.send params: must have required property 'idempotencyKey'"
        );
    }
}
