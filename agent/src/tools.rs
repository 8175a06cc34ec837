//! The tools the model gets, named and shaped like the reference's: `nodes` (list, describe,
//! camera, screen, location, audio, any command) and `exec` (a shell command through a node's
//! `system.run`, under that node's exec policy). A tool's text is cut to
//! `AgentConfig::max_tool_output` bytes; images (a camera snap) go to the model as image
//! content.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::host::Host;
use crate::provider::ToolSpec;
use crate::transcript::Image;

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// Text for the model (JSON for node results).
    pub text: String,
    /// Images for the model.
    pub images: Vec<Image>,
    /// Whether it failed.
    pub is_error: bool,
    /// The parsed result (`details` in the `tool` event).
    pub details: Value,
    /// A short title for the `item` event (`Nodes <node>`).
    pub title: String,
}

impl ToolOutput {
    fn ok(title: String, details: Value) -> ToolOutput {
        ToolOutput {
            text: details.to_string(),
            images: vec![],
            is_error: false,
            details,
            title,
        }
    }

    fn error(title: String, message: impl Into<String>) -> ToolOutput {
        let message = message.into();
        ToolOutput {
            text: json!({ "status": "error", "error": message }).to_string(),
            images: vec![],
            is_error: true,
            details: json!({ "status": "error", "error": message }),
            title,
        }
    }
}

/// The tools offered to the model.
pub fn specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "nodes".into(),
            description: "Discover and control paired nodes (boards with camera, screen, audio, location). \
                Actions: status (list nodes), describe, camera_list, camera_snap (returns the photo), \
                screen_snapshot, location_get, audio_record, invoke (any node command with invokeCommand and invokeParamsJson)."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "action": { "type": "string", "enum": ["status", "describe", "camera_list", "camera_snap", "screen_snapshot", "location_get", "audio_record", "invoke"] },
                    "node": { "type": "string", "description": "Node id or display name; optional when one node can do it" },
                    "facing": { "type": "string", "enum": ["front", "back", "both"] },
                    "deviceId": { "type": "string" },
                    "maxWidth": { "type": "number" },
                    "quality": { "type": "number" },
                    "screenIndex": { "type": "number" },
                    "durationMs": { "type": "number" },
                    "desiredAccuracy": { "type": "string", "enum": ["coarse", "balanced", "precise"] },
                    "locationTimeoutMs": { "type": "number" },
                    "invokeCommand": { "type": "string" },
                    "invokeParamsJson": { "type": "string" },
                    "invokeTimeoutMs": { "type": "number" }
                },
                "required": ["action"]
            }),
        },
        ToolSpec {
            name: "message".into(),
            description: "Send a message. The target is a messaging channel's chat (telegram:<chat id>) \
                or a chat session key (e.g. agent:main:main), where it appears as an assistant message."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "action": { "type": "string", "enum": ["send"] },
                    "target": { "type": "string", "description": "telegram:<chat id>, or a session key" },
                    "message": { "type": "string" }
                },
                "required": ["action", "message"]
            }),
        },
        ToolSpec {
            name: "automations".into(),
            description: "Scheduled jobs: status, list, add (job: {name, schedule:{kind:\"every\", everyMs} or \
                {kind:\"at\", at}, sessionTarget:\"main\"|\"isolated\", wakeMode:\"now\", payload:{kind:\"agentTurn\", message} \
                or {kind:\"systemEvent\", text}}), remove, run, runs (jobId)."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "action": { "type": "string", "enum": ["status", "list", "add", "remove", "run", "runs"] },
                    "job": { "type": "object" },
                    "jobId": { "type": "string" }
                },
                "required": ["action"]
            }),
        },
        ToolSpec {
            name: "exec".into(),
            description: "Run a shell command on a node (its system.run, under the node's exec policy). \
                Returns exit code, stdout and stderr."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": { "type": "string" },
                    "node": { "type": "string", "description": "Node id or display name; optional when one node can run commands" },
                    "workdir": { "type": "string" },
                    "timeoutSeconds": { "type": "number" }
                },
                "required": ["command"]
            }),
        },
    ]
}

/// Runs tool `name` with `arguments` (the model's JSON text).
pub async fn run(
    agent: &Arc<crate::runtime::Agent>,
    name: &str,
    arguments: &str,
    timeout: Duration,
    max_text: usize,
) -> ToolOutput {
    let args: Value = match serde_json::from_str(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) if arguments.trim().is_empty() => json!({}),
        _ => {
            return ToolOutput::error(
                title(name, None),
                format!(
                    "the arguments are not a JSON object: {}",
                    clip(arguments, 200)
                ),
            )
        }
    };
    let host = agent.host();
    let mut out = match name {
        "nodes" => nodes(host, &args, timeout).await,
        "exec" => exec(host, &args, timeout).await,
        "message" => message(agent, &args).await,
        "automations" => automations(agent, &args).await,
        other => ToolOutput::error(other.to_owned(), format!("unknown tool: {other}")),
    };
    if out.text.len() > max_text {
        let mut end = max_text;
        while !out.text.is_char_boundary(end) {
            end -= 1;
        }
        out.text = format!("{}\n… (cut at {max_text} bytes)", &out.text[..end]);
    }
    out
}

fn title(tool: &str, node: Option<&str>) -> String {
    let t = match tool {
        "nodes" => "Nodes",
        "exec" => "Exec",
        other => other,
    };
    match node {
        Some(n) => format!("{t} {n}"),
        None => t.to_owned(),
    }
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The node named by `wanted` (id or display name), or the only connected one that has
/// `command`.
fn pick_node(host: &Arc<dyn Host>, wanted: Option<&str>, command: &str) -> Result<String, String> {
    let nodes = host.nodes();
    let connected = |n: &&Value| n["connected"].as_bool().unwrap_or(true);
    if let Some(w) = wanted {
        return nodes
            .iter()
            .filter(connected)
            .find(|n| n["nodeId"] == w || n["displayName"] == w)
            .and_then(|n| n["nodeId"].as_str().map(str::to_owned))
            .ok_or_else(|| format!("no connected node \"{w}\""));
    }
    let able: Vec<&Value> = nodes
        .iter()
        .filter(connected)
        .filter(|n| {
            n["commands"]
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x == command))
        })
        .collect();
    match able.as_slice() {
        [one] => one["nodeId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "node without id".into()),
        [] => Err(format!("no connected node offers {command}")),
        many => Err(format!(
            "{} nodes offer {command}; say which with \"node\": {}",
            many.len(),
            many.iter()
                .filter_map(|n| n["displayName"].as_str().or(n["nodeId"].as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

async fn nodes(host: &Arc<dyn Host>, args: &Value, timeout: Duration) -> ToolOutput {
    let action = args["action"].as_str().unwrap_or("");
    let wanted = args["node"].as_str();
    let status = || {
        let nodes = host.nodes();
        let v = json!({ "ts": pincer_os::now_ms(), "nodes": nodes });
        ToolOutput {
            text: serde_json::to_string_pretty(&v).unwrap_or_default(),
            images: vec![],
            is_error: false,
            details: v,
            title: title("nodes", None),
        }
    };
    let (command, params) = match action {
        "status" => return status(),
        "describe" => {
            let nodes = host.nodes();
            let found = nodes
                .into_iter()
                .find(|n| wanted.is_some_and(|w| n["nodeId"] == w || n["displayName"] == w));
            return match found {
                Some(n) => ToolOutput {
                    text: serde_json::to_string_pretty(&n).unwrap_or_default(),
                    images: vec![],
                    is_error: false,
                    details: n,
                    title: title("nodes", wanted),
                },
                None => ToolOutput::error(title("nodes", wanted), "unknown node"),
            };
        }
        "camera_list" => ("camera.list", json!({})),
        "camera_snap" => (
            "camera.snap",
            pick(args, &["facing", "deviceId", "maxWidth", "quality"]),
        ),
        "screen_snapshot" => ("screen.snapshot", pick(args, &["screenIndex", "maxWidth"])),
        "location_get" => {
            let mut p = pick(args, &["desiredAccuracy"]);
            if let Some(t) = args["locationTimeoutMs"].as_u64() {
                p["timeoutMs"] = json!(t);
            }
            ("location.get", p)
        }
        "audio_record" => ("audio.record", pick(args, &["durationMs"])),
        "invoke" => {
            let Some(c) = args["invokeCommand"].as_str() else {
                return ToolOutput::error(title("nodes", wanted), "invoke needs invokeCommand");
            };
            let p = match args["invokeParamsJson"].as_str() {
                None => json!({}),
                Some(s) => match serde_json::from_str(s) {
                    Ok(v) => v,
                    Err(e) => {
                        return ToolOutput::error(
                            title("nodes", wanted),
                            format!("invokeParamsJson is not JSON: {e}"),
                        )
                    }
                },
            };
            // Borrowed for the invoke below.
            return invoke(
                host,
                wanted,
                c,
                p,
                args["invokeTimeoutMs"].as_u64(),
                timeout,
            )
            .await;
        }
        "" => return ToolOutput::error(title("nodes", wanted), "action is required"),
        other => {
            return ToolOutput::error(title("nodes", wanted), format!("unknown action: {other}"))
        }
    };
    invoke(host, wanted, command, params, None, timeout).await
}

fn pick(args: &Value, keys: &[&str]) -> Value {
    let mut p = json!({});
    for k in keys {
        if !args[*k].is_null() {
            p[*k] = args[*k].clone();
        }
    }
    p
}

async fn invoke(
    host: &Arc<dyn Host>,
    wanted: Option<&str>,
    command: &str,
    params: Value,
    timeout_ms: Option<u64>,
    cap: Duration,
) -> ToolOutput {
    let node = match pick_node(host, wanted, command) {
        Ok(n) => n,
        Err(e) => return ToolOutput::error(title("nodes", wanted), e),
    };
    let t = title("nodes", Some(&node));
    let ms = timeout_ms
        .unwrap_or(30_000)
        .min(cap.as_millis() as u64)
        .max(100);
    let fut = host.invoke(
        &node,
        command,
        Some(params.to_string()),
        ms,
        pincer_os::uuid_v4(),
    );
    let payload = match tokio::time::timeout(Duration::from_millis(ms + 1_000), fut).await {
        Err(_) => return ToolOutput::error(t, format!("{command} on {node} timed out")),
        Ok(Err(e)) => return ToolOutput::error(t, format!("{}: {}", e.code, e.message)),
        Ok(Ok(p)) => p,
    };
    node_output(t, payload)
}

/// A node's payload as tool output: images out of it (`base64` + `format`), the rest as
/// pretty JSON.
fn node_output(title: String, mut payload: Value) -> ToolOutput {
    let mut images = Vec::new();
    let mut take = |v: &mut Value| {
        if let (Some(b64), Some(fmt)) = (v["base64"].as_str(), v["format"].as_str()) {
            let mime = match fmt {
                "jpg" | "jpeg" => Some("image/jpeg"),
                "png" => Some("image/png"),
                "webp" => Some("image/webp"),
                _ => None,
            };
            if let Some(mime) = mime {
                images.push(Image {
                    mime_type: mime.into(),
                    data: b64.to_owned(),
                });
                v["base64"] = json!(format!(
                    "<{} bytes of {fmt}, attached as an image>",
                    b64.len()
                ));
            }
        }
    };
    take(&mut payload);
    if let Some(list) = payload.as_array_mut() {
        list.iter_mut().for_each(&mut take);
    }
    ToolOutput {
        text: serde_json::to_string_pretty(&payload).unwrap_or_default(),
        images,
        is_error: false,
        details: payload,
        title,
    }
}

async fn exec(host: &Arc<dyn Host>, args: &Value, timeout: Duration) -> ToolOutput {
    let wanted = args["node"].as_str();
    let Some(cmd) = args["command"].as_str().filter(|c| !c.trim().is_empty()) else {
        return ToolOutput::error(title("exec", wanted), "command is required");
    };
    let ms = args["timeoutSeconds"]
        .as_u64()
        .map_or(30_000, |s| s.saturating_mul(1000));
    let mut p = json!({ "command": ["sh", "-c", cmd], "timeoutMs": ms });
    if let Some(w) = args["workdir"].as_str() {
        p["cwd"] = json!(w);
    }
    let mut out = invoke(host, wanted, "system.run", p, Some(ms + 1_000), timeout).await;
    out.title = out.title.replacen("Nodes", "Exec", 1);
    out
}

fn from_method(title: &str, r: Result<Value, pincer_protocol::error::ErrorShape>) -> ToolOutput {
    match r {
        Ok(v) => ToolOutput {
            text: serde_json::to_string_pretty(&v).unwrap_or_default(),
            images: vec![],
            is_error: false,
            details: v,
            title: title.into(),
        },
        Err(e) => ToolOutput::error(title.into(), e.message),
    }
}

async fn message(agent: &Arc<crate::runtime::Agent>, args: &Value) -> ToolOutput {
    let Some(text) = args["message"].as_str().filter(|m| !m.is_empty()) else {
        return ToolOutput::error("Message".into(), "message is required");
    };
    let target = args["target"].as_str().unwrap_or("main");
    if let Some((_, to)) = target
        .split_once(':')
        .filter(|(c, _)| matches!(*c, "telegram" | "tg"))
    {
        return match agent
            .host()
            .deliver(Some("telegram".into()), to.to_owned(), text.to_owned())
            .await
        {
            Ok(v) => ToolOutput::ok(format!("Message {target}"), v),
            Err(e) => ToolOutput::error(
                format!("Message {target}"),
                format!("{}: {}", e.code, e.message),
            ),
        };
    }
    let key = crate::methods::session_key(target);
    let store = agent.store().clone();
    let k = key.clone();
    if let Ok(Err(e)) =
        tokio::task::spawn_blocking(move || store.ensure(&k, "message", pincer_os::now_ms())).await
    {
        return ToolOutput::error("Message".into(), e.to_string());
    }
    let params = json!({ "sessionKey": key, "message": text }).to_string();
    from_method(
        &format!("Message {key}"),
        crate::methods::chat_inject(agent, Some(&params)).await,
    )
}

async fn automations(agent: &Arc<crate::runtime::Agent>, args: &Value) -> ToolOutput {
    let id = args["jobId"].clone();
    let (method, params) = match args["action"].as_str().unwrap_or("") {
        "status" => ("cron.status", json!({})),
        "list" => ("cron.list", json!({})),
        "add" => ("cron.add", args["job"].clone()),
        "remove" => ("cron.remove", json!({ "id": id })),
        "run" => ("cron.run", json!({ "id": id })),
        "runs" => ("cron.runs", json!({ "id": id })),
        other => {
            return ToolOutput::error("Automations".into(), format!("unknown action: {other}"))
        }
    };
    let params = params.to_string();
    from_method(
        "Automations",
        crate::methods::cron(agent, method, Some(&params)).await,
    )
}
