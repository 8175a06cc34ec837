//! What the official Control UI reads on load about this agent, in the reference's shapes:
//! `agents.list`, `models.authStatus`, `chat.metadata`, `sessions.describe`, and the features
//! Pincer has none of — background tasks, progress cards, branches, the companion — answered
//! as empty, which is the truth (a UI that gets an error shows a toast for each).
//!
//! Shapes follow `agent-captures/control-ui-load.cdp.json`; fields that describe machinery
//! Pincer does not have (placement, swarm, account selection) carry their "off" values.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::methods::{params, row, session_key, AGENT_ID};
use crate::runtime::Agent;
use pincer_protocol::error::ErrorShape;

/// The methods of this module.
pub const METHODS: &[&str] = &[
    "agents.list",
    "models.authStatus",
    "chat.metadata",
    "sessions.describe",
    "sessions.branches.list",
    "sessions.companion.state",
    "progressCard.get",
    "tasks.list",
];

/// The answer to one of [`METHODS`]; `None` for another method.
pub fn answer(agent: &Agent, method: &str, raw: Option<&str>) -> Option<Result<Value, ErrorShape>> {
    Some(match method {
        "agents.list" => Ok(agents_list(agent)),
        "models.authStatus" => Ok(auth_status(agent)),
        "chat.metadata" => Ok(chat_metadata(agent)),
        "sessions.describe" => describe(agent, raw),
        "sessions.branches.list" => Ok(json!({ "branches": [] })),
        "sessions.companion.state" => Ok(json!({ "exchanges": [] })),
        "progressCard.get" => Ok(json!({ "card": null })),
        "tasks.list" => Ok(json!({ "tasks": [] })),
        _ => return None,
    })
}

fn runtime() -> Value {
    json!({ "id": "pincer", "cloudPlacementSupported": false, "devicePlacementSupported": false, "source": "implicit" })
}

fn off() -> Value {
    json!([{ "id": "off", "label": "off" }])
}

/// `agents.list`: the one agent, `main`.
fn agents_list(agent: &Agent) -> Value {
    let c = agent.config();
    let mut main = json!({ "id": AGENT_ID, "kind": "agent", "name": c.name,
        "workspace": c.workspace.display().to_string(), "workspaceGit": false, "agentRuntime": runtime(),
        "thinkingLevels": off(), "thinkingOptions": ["off"], "thinkingDefault": "off", "defaultPermissionMode": "full" });
    if let Some(m) = &c.model {
        main["model"] = json!({ "primary": m });
    }
    json!({ "defaultId": AGENT_ID, "ownership": "sole", "selectionRequired": false, "mainKey": "main",
        "scope": "per-sender", "agents": [main] })
}

/// `models.authStatus`: each configured provider, its key from the config (or none).
fn auth_status(agent: &Agent) -> Value {
    let providers: Vec<Value> = agent
        .config()
        .providers
        .iter()
        .map(|(id, p)| {
            let key = if p.api_key.is_some() {
                json!({ "source": "config" })
            } else {
                Value::Null
            };
            json!({ "provider": id, "authProvider": id, "displayName": id, "status": "static", "profiles": [], "apiKey": key })
        })
        .collect();
    json!({ "ts": pincer_os::now_ms(), "providers": providers, "providerCapabilities": [] })
}

/// `chat.metadata`: the models (as `models.list`) and the slash commands Pincer runs.
fn chat_metadata(agent: &Agent) -> Value {
    let mut models = crate::methods::models_list(agent)["models"].take();
    if let Value::Array(list) = &mut models {
        for m in list {
            m["thinkingLevels"] = off();
        }
    }
    let command = |name: &str, description: &str| {
        json!({ "name": name, "nativeName": name, "textAliases": [format!("/{name}")], "description": description,
            "category": "session", "source": "native", "scope": "both", "acceptsArgs": true })
    };
    json!({ "models": models,
        "commands": [command("new", "Start a new session."), command("reset", "Reset the current session.")],
        "swarmEnabled": false, "accountSelection": { "kind": "automatic", "label": "Automatic account selection" },
        "runtimeSelectionLocked": false })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeParams {
    key: Option<String>,
    session_key: Option<String>,
    #[allow(dead_code)]
    agent_id: Option<String>,
}

/// `sessions.describe {key}`: the session's row with the reference's extra descriptors.
fn describe(agent: &Agent, raw: Option<&str>) -> Result<Value, ErrorShape> {
    let p: DescribeParams = params("sessions.describe", raw)?;
    let key = session_key(p.key.or(p.session_key).as_deref().unwrap_or("main"));
    // A session not started yet (the UI opens `main` before the first message) is described
    // as the empty session it will be.
    let mut s = match agent.store().get(&key) {
        Some(entry) => row(agent, &entry),
        None => json!({ "key": key, "agentId": AGENT_ID, "sessionId": null, "kind": "direct",
            "classification": if key.ends_with(":main") { "main" } else { "other" },
            "isMain": key == "agent:main:main", "status": "idle", "hasActiveRun": false, "activeRunIds": [],
            "inputTokens": 0, "outputTokens": 0, "totalTokens": 0, "snapshotAt": pincer_os::now_ms() }),
    };
    let extra = json!({ "visibility": "shared", "permissionModePending": false, "participants": [],
        "expandedParticipants": [], "participantCount": 0, "isBackground": false, "chatType": "direct",
        "archived": false, "pinned": false, "unread": false, "thinkingLevels": off(), "thinkingOptions": ["off"],
        "thinkingDefault": "off", "agentRuntime": runtime(), "runtimeSelectionLocked": false,
        "hiddenFromInvolvingMe": false, "sharingRole": "admin" });
    if let (Value::Object(s), Value::Object(extra)) = (&mut s, extra) {
        for (k, v) in extra {
            s.entry(k).or_insert(v);
        }
    }
    Ok(json!({ "session": s }))
}
