//! The gateway as the agent runtime's host: its events go out through the hub's broadcast (to
//! operators that may read, the `tool` stream only to the run's own connection when it asked
//! for `tool-events`), and its node commands through the same routing and policy as
//! `node.invoke`.

use std::sync::{Arc, Weak};

use pincer_agent::host::{Audience, BoxFuture, Host, InvokeError};
use pincer_agent::runtime::Agent;
use pincer_protocol::scopes::{self, Role};
use serde_json::{value::RawValue, Value};

use crate::hub::Hub;

struct GatewayHost {
    hub: Weak<Hub>,
}

/// Makes the hub's agent runtime (opening its session store) and its channels (not started).
pub fn attach(hub: &Arc<Hub>) -> Result<(), crate::server::GatewayError> {
    let host = Arc::new(GatewayHost {
        hub: Arc::downgrade(hub),
    });
    let agent = Agent::new(host, hub.config.agent.clone())?;
    let channels =
        pincer_channels::Channels::new(&hub.config.channels, &agent, &hub.config.state_dir, |k| {
            std::env::var(k).ok().filter(|v| !v.is_empty())
        })?;
    let _ = hub.agent.set(agent);
    let _ = hub.channels.set(Arc::new(channels));
    Ok(())
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Host for GatewayHost {
    fn emit(&self, event: &str, payload: &Value, to: Audience) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        if let Some(c) = hub.channels.get() {
            c.observe(event, payload);
        }
        // Chat deltas may be skipped for a slow client (the next one carries the whole text);
        // everything else is not (a client that cannot keep up is closed, as for `tick`).
        let droppable = event == "chat" && payload["state"] == "delta";
        let text = payload.to_string();
        match to {
            Audience::Readers => hub.broadcast(event, &text, None, droppable, |c| {
                c.role == Role::Operator && c.has_scope(scopes::READ)
            }),
            Audience::ToolRecipients { origin } => hub.broadcast(event, &text, None, false, |c| {
                Some(c.id) == origin && c.tool_events
            }),
            Audience::SessionWatchers => hub.broadcast(event, &text, None, true, |c| {
                c.has_scope(scopes::READ) && lock(&c.watching).sessions
            }),
            Audience::MessageWatchers => {
                let key = payload["sessionKey"].as_str().unwrap_or("");
                hub.broadcast(event, &text, None, false, |c| {
                    c.has_scope(scopes::READ) && lock(&c.watching).messages.iter().any(|k| k == key)
                })
            }
        }
    }

    fn deliver(
        &self,
        channel: Option<String>,
        to: String,
        text: String,
    ) -> BoxFuture<Result<Value, InvokeError>> {
        let channels = self.hub.upgrade().and_then(|h| h.channels.get().cloned());
        Box::pin(async move {
            let Some(c) = channels.filter(|c| c.any()) else {
                return Err(InvokeError::no_channels());
            };
            c.send(channel.as_deref(), &to, &text).await.map_err(|e| {
                use pincer_channels::ChannelError as E;
                let code = match e {
                    E::Unknown(..) | E::NoChannels => "UNKNOWN_CHANNEL",
                    E::BadTarget(_) => "BAD_TARGET",
                    _ => "DELIVERY_FAILED",
                };
                InvokeError {
                    code: code.into(),
                    message: e.to_string(),
                }
            })
        })
    }

    fn nodes(&self) -> Vec<Value> {
        let Some(hub) = self.hub.upgrade() else {
            return vec![];
        };
        crate::methods::node_catalog(&hub)
            .into_iter()
            .filter_map(|n| serde_json::to_value(n).ok())
            .collect()
    }

    fn invoke(
        &self,
        node_id: &str,
        command: &str,
        params_json: Option<String>,
        timeout_ms: u64,
        idempotency_key: String,
    ) -> BoxFuture<Result<Value, InvokeError>> {
        let hub = self.hub.upgrade();
        let (node_id, command) = (node_id.to_owned(), command.to_owned());
        Box::pin(async move {
            let Some(hub) = hub else {
                return Err(InvokeError {
                    code: "UNAVAILABLE".into(),
                    message: "the gateway is shutting down".into(),
                });
            };
            let raw = params_json.and_then(|p| RawValue::from_string(p).ok());
            match hub
                .nodes
                .invoke(
                    &node_id,
                    &command,
                    raw.as_deref(),
                    Some(timeout_ms),
                    &idempotency_key,
                )
                .await
            {
                Ok(r) => Ok(r.payload),
                Err(e) => Err(InvokeError {
                    code: e
                        .details
                        .as_ref()
                        .and_then(|d| d["code"].as_str())
                        .unwrap_or(&e.code)
                        .to_owned(),
                    message: e.message,
                }),
            }
        })
    }
}
