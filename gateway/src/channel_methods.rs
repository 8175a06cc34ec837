//! The channels' wire methods: `channels.status` (each channel's state, last error and bot
//! identity) and the reference's DM pairing methods, `channels.pairing.list|approve|dismiss`.
//! What they answer comes from `pincer-channels`; this module parses params and shapes replies.

use std::sync::Arc;

use pincer_protocol::error::ErrorShape;
use pincer_protocol::methods::ChannelsStatusResult;
use serde_json::Value;

use crate::hub::Hub;
use crate::methods::Dispatch;
use crate::reply::Reply;

/// The pairing methods (`channels.status` is typed in `pincer-protocol`).
pub const METHODS: &[&str] = &[
    "channels.pairing.list",
    "channels.pairing.approve",
    "channels.pairing.dismiss",
];

/// `channels.status` (`probe`: each account asks its service now).
pub async fn status(hub: &Hub, probe: bool) -> Reply {
    let v = match hub.channels.get() {
        Some(c) => c.status(probe).await,
        None => serde_json::json!({ "ts": crate::now_ms(), "channelOrder": [], "channelLabels": {},
            "channels": {}, "channelAccounts": {}, "channelDefaultAccountId": {} }),
    };
    let typed: ChannelsStatusResult = serde_json::from_value(v)
        .map_err(|e| ErrorShape::unavailable(format!("channels.status: {e}")))?;
    serde_json::to_string(&typed).map_err(|e| ErrorShape::unavailable(e.to_string()))
}

fn err(e: pincer_channels::ChannelError) -> ErrorShape {
    match e {
        pincer_channels::ChannelError::Pairing(_) => ErrorShape::unavailable(e.to_string()),
        _ => ErrorShape::invalid(e.to_string()),
    }
}

fn string<'a>(p: &'a Value, method: &str, key: &str) -> Result<&'a str, ErrorShape> {
    p[key].as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
        ErrorShape::invalid(format!(
            "invalid {method} params: must have required property '{key}'"
        ))
    })
}

/// One of [`METHODS`].
pub fn dispatch(hub: &Arc<Hub>, method: &str, raw: Option<&str>) -> Dispatch {
    let p: Value = raw
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    let Some(channels) = hub.channels.get().cloned() else {
        return Dispatch::Now(Err(ErrorShape::unavailable("channels are not running")));
    };
    match method {
        "channels.pairing.list" => Dispatch::Now(
            channels
                .pairing_list(p["channel"].as_str())
                .map(|v| v.to_string())
                .map_err(err),
        ),
        "channels.pairing.dismiss" => Dispatch::Now((|| -> Reply {
            let channel = string(&p, method, "channel")?;
            let id = string(&p, method, "requestId")?;
            channels
                .pairing_dismiss(channel, id)
                .map(|v| v.to_string())
                .map_err(err)
        })()),
        "channels.pairing.approve" => {
            let args = string(&p, method, "channel").and_then(|c| {
                string(&p, method, "requestId").map(|r| (c.to_owned(), r.to_owned()))
            });
            let (channel, id) = match args {
                Ok(a) => a,
                Err(e) => return Dispatch::Now(Err(e)),
            };
            let notify = p["notify"].as_bool().unwrap_or(false);
            Dispatch::Later(Box::pin(async move {
                channels
                    .pairing_approve(&channel, &id, notify)
                    .await
                    .map(|v| v.to_string())
                    .map_err(err)
            }))
        }
        other => Dispatch::Now(Err(ErrorShape::invalid(format!("unknown method: {other}")))),
    }
}
