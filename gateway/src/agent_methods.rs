//! Routing of the agent's methods (`chat.*`, `agent`, `agent.wait`, `sessions.*`,
//! `models.list`) to `pincer_agent::methods`. Scopes were checked by `methods::dispatch`.

use std::sync::Arc;

use pincer_agent::methods as m;
use pincer_protocol::error::ErrorShape;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::conn::ConnHandle;
use crate::hub::Hub;
use crate::methods::Dispatch;
use crate::reply::Reply;

/// Whether `method` is the agent's.
pub fn handles(method: &str) -> bool {
    m::METHODS.contains(&method) || pincer_agent::control_ui::METHODS.contains(&method)
}

fn json(r: Result<Value, ErrorShape>) -> Reply {
    r.map(|v| v.to_string())
}

/// The dispatch of an agent method.
pub fn dispatch(
    hub: &Arc<Hub>,
    conn: &Arc<ConnHandle>,
    method: &str,
    raw: Option<Box<RawValue>>,
) -> Dispatch {
    let Some(agent) = hub.agent.get().cloned() else {
        return Dispatch::Now(Err(ErrorShape::unavailable(
            "the agent runtime is not running",
        )));
    };
    let raw: Option<String> = raw.map(|r| r.get().to_owned());
    let origin = conn.id;
    let now = |r: Result<Value, ErrorShape>| Dispatch::Now(json(r));
    match method {
        "chat.history" | "chat.startup" => now(m::chat_history(&agent, method, raw.as_deref())),
        "agent.identity.get" => now(Ok(m::identity(&agent))),
        "sessions.list" => now(m::sessions_list(&agent, raw.as_deref())),
        "sessions.preview" => now(m::sessions_preview(&agent, raw.as_deref())),
        "sessions.resolve" => now(m::sessions_resolve(&agent, raw.as_deref())),
        "models.list" => now(Ok(m::models_list(&agent))),
        _ if pincer_agent::control_ui::METHODS.contains(&method) => now(
            pincer_agent::control_ui::answer(&agent, method, raw.as_deref())
                .unwrap_or_else(|| Err(ErrorShape::invalid(format!("unknown method: {method}")))),
        ),
        "agent"
            if !conn.has_scope(pincer_protocol::scopes::ADMIN)
                && raw
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok())
                    .is_some_and(|v| {
                        v["message"].as_str().and_then(m::session_command).is_some()
                    }) =>
        {
            Dispatch::Now(Err(crate::reply::missing_scope(
                conn,
                pincer_protocol::scopes::ADMIN,
            )))
        }
        "agent" => Dispatch::Twice(Box::pin(async move {
            match m::agent_accept(&agent, origin, raw.as_deref()).await {
                Err(e) => (Some(Err(e)), None),
                Ok((first, accepted)) => {
                    let rest: crate::methods::Pending =
                        Box::pin(async move { json(m::agent_final(&agent, accepted).await) });
                    (first.map(|v| Ok(v.to_string())), Some(rest))
                }
            }
        })),
        "send" => {
            // A retry with the same idempotencyKey gets the first outcome, not a second message.
            let key = raw
                .as_deref()
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .and_then(|v| {
                    v["idempotencyKey"]
                        .as_str()
                        .map(|k| crate::dedupe::Dedupe::key("send", k))
                });
            let hub = hub.clone();
            Dispatch::Later(Box::pin(async move {
                let lock = || hub.dedupe.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(o) = key.as_deref().and_then(|k| lock().get(k)) {
                    return o;
                }
                let out = json(m::send(&agent, raw.as_deref()).await);
                if let Some(k) = key {
                    lock().put(k, out.clone());
                }
                out
            }))
        }
        _ => {
            let method = method.to_owned();
            Dispatch::Later(Box::pin(async move {
                json(match method.as_str() {
                    "chat.send" => m::chat_send(&agent, origin, raw.as_deref()).await,
                    "chat.abort" => m::chat_abort(&agent, raw.as_deref()).await,
                    "chat.inject" => m::chat_inject(&agent, raw.as_deref()).await,
                    "agent.wait" => m::agent_wait(&agent, raw.as_deref()).await,
                    "sessions.patch" => m::sessions_patch(&agent, raw.as_deref()).await,
                    "sessions.reset" => m::sessions_reset(&agent, raw.as_deref()).await,
                    "sessions.delete" => m::sessions_delete(&agent, raw.as_deref()).await,
                    "wake" => m::wake(&agent, raw.as_deref()).await,
                    c if c.starts_with("cron.") => m::cron(&agent, c, raw.as_deref()).await,
                    other => Err(ErrorShape::invalid(format!("unknown method: {other}"))),
                })
            }))
        }
    }
}
