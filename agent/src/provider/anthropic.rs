//! The `anthropic-messages` dialect: `POST {base_url}/v1/messages` with `stream:true`,
//! answered by `message_start`, `content_block_start|delta|stop`, `message_delta` and
//! `message_stop` events.
//!
//! Prompt-cache breakpoints go where the reference puts them: the system block, the last tool,
//! the last user text and, when the request ends with tool results, the last of those.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{
    clip, sanitize_call_id, str_of, StreamError, StreamEvent, TurnRequest, MAX_ARGUMENTS,
    MAX_CALLS, MAX_OUTPUT_TOKENS,
};
use crate::sse::SseEvent;
use crate::transcript::{Image, Message, StopReason, ToolCall, Usage};

const DIALECT: &str = "anthropic-messages";

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// The streaming request body, shaped as the reference shapes it.
pub fn body(req: &TurnRequest<'_>) -> Value {
    let last_user = req.messages.iter().rposition(
        |m| matches!(m, Message::User { text, images, .. } if !text.is_empty() || !images.is_empty()),
    );
    let mut messages: Vec<Value> = Vec::new();
    // The last message is a user message of `tool_result`s: more results join it (the
    // results of one assistant turn answer it together, in one message).
    let mut results_open = false;
    for (i, m) in req.messages.iter().enumerate() {
        match m {
            Message::User { text, images, .. } => {
                results_open = false;
                let cached = last_user == Some(i);
                if images.is_empty() && !cached {
                    if !text.is_empty() {
                        messages.push(json!({"role": "user", "content": text}));
                    }
                    continue;
                }
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(json!({"type": "text", "text": text}));
                }
                content.extend(images.iter().map(image_block));
                if cached {
                    if let Some(block) = content.first_mut() {
                        block["cache_control"] = ephemeral();
                    }
                }
                messages.push(json!({"role": "user", "content": content}));
            }
            Message::Assistant {
                text, tool_calls, ..
            } => {
                results_open = false;
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(json!({"type": "text", "text": text}));
                }
                for c in tool_calls {
                    let input = serde_json::from_str::<Value>(&c.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    content.push(json!({"type": "tool_use", "id": sanitize_call_id(&c.id),
                        "name": c.name, "input": input}));
                }
                if !content.is_empty() {
                    messages.push(json!({"role": "assistant", "content": content}));
                }
            }
            Message::ToolResult {
                tool_call_id,
                text,
                images,
                is_error,
                ..
            } => {
                let mut block = Map::new();
                block.insert("type".into(), "tool_result".into());
                block.insert("tool_use_id".into(), sanitize_call_id(tool_call_id).into());
                if !images.is_empty() {
                    let mut content = Vec::new();
                    if !text.is_empty() {
                        content.push(json!({"type": "text", "text": text}));
                    }
                    content.extend(images.iter().map(image_block));
                    block.insert("content".into(), content.into());
                } else if !text.is_empty() {
                    block.insert("content".into(), text.as_str().into());
                }
                block.insert("is_error".into(), (*is_error).into());
                let open = messages
                    .last_mut()
                    .filter(|_| results_open)
                    .and_then(|m| m.get_mut("content"))
                    .and_then(Value::as_array_mut);
                match open {
                    Some(content) => content.push(Value::Object(block)),
                    None => {
                        messages.push(json!({"role": "user", "content": [Value::Object(block)]}));
                        results_open = true;
                    }
                }
            }
            Message::Reset { .. } => {}
        }
    }
    if results_open {
        let last_block = messages
            .last_mut()
            .and_then(|m| m.get_mut("content"))
            .and_then(Value::as_array_mut)
            .and_then(|c| c.last_mut());
        if let Some(block) = last_block {
            block["cache_control"] = ephemeral();
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), req.model.into());
    body.insert("messages".into(), messages.into());
    body.insert("max_tokens".into(), MAX_OUTPUT_TOKENS.into());
    body.insert("stream".into(), true.into());
    if !req.system.is_empty() {
        let system = json!([{"type": "text", "text": req.system, "cache_control": ephemeral()}]);
        body.insert("system".into(), system);
    }
    if !req.tools.is_empty() {
        let mut tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({"name": t.name, "description": t.description,
                "input_schema": input_schema(&t.parameters)})
            })
            .collect();
        if let Some(last) = tools.last_mut() {
            last["cache_control"] = ephemeral();
        }
        body.insert("tools".into(), tools.into());
    }
    Value::Object(body)
}

/// The schema as Anthropic wants it: an object schema with `properties` and `required`.
fn input_schema(parameters: &Value) -> Value {
    let mut schema = match parameters {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    schema.entry("type").or_insert_with(|| "object".into());
    schema.entry("properties").or_insert_with(|| json!({}));
    schema.entry("required").or_insert_with(|| json!([]));
    Value::Object(schema)
}

fn image_block(image: &Image) -> Value {
    json!({"type": "image", "source": {"type": "base64", "media_type": image.mime_type,
        "data": image.data}})
}

/// A `tool_use` block being assembled.
#[derive(Debug, Default)]
struct Block {
    id: String,
    name: String,
    json: String,
    /// The `input` of `content_block_start`, if it was not empty.
    start_input: Option<String>,
}

/// Decodes one Messages event stream.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Open `tool_use` blocks by `index`.
    blocks: BTreeMap<u64, Block>,
    calls: usize,
    usage: Usage,
    stop: Option<StopReason>,
    done: bool,
}

impl Decoder {
    fn close(&mut self, index: u64) -> Option<StreamEvent> {
        let b = self.blocks.remove(&index)?;
        let arguments = if !b.json.trim().is_empty() {
            b.json
        } else {
            b.start_input.unwrap_or_else(|| "{}".to_owned())
        };
        Some(StreamEvent::ToolCall(ToolCall {
            id: b.id,
            name: b.name,
            arguments,
        }))
    }

    fn usage(&mut self, u: &Value) -> StreamEvent {
        let count = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(input) = count("input_tokens") {
            // Cached prompt tokens are prompt tokens too (as OpenAI counts them).
            let cached = count("cache_read_input_tokens").unwrap_or(0)
                + count("cache_creation_input_tokens").unwrap_or(0);
            self.usage.input = input + cached;
        }
        if let Some(output) = count("output_tokens") {
            self.usage.output = output;
        }
        StreamEvent::Usage(self.usage)
    }
}

impl super::Decoder for Decoder {
    fn feed(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, StreamError> {
        let data = event.data.trim();
        if self.done || data.is_empty() {
            return Ok(Vec::new());
        }
        let v = super::event_object(DIALECT, data)?;
        let kind = match v.get("type").and_then(Value::as_str) {
            Some(t) => t,
            None => event.event.as_deref().unwrap_or(""),
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                if let Some(u) = v.get("message").and_then(|m| m.get("usage")) {
                    out.push(self.usage(u));
                }
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match str_of(block, "type") {
                    "text" if !str_of(block, "text").is_empty() => {
                        out.push(StreamEvent::Text(str_of(block, "text").to_owned()));
                    }
                    "tool_use" => {
                        if self.calls >= MAX_CALLS {
                            return Err(malformed(format!("more than {MAX_CALLS} tool calls")));
                        }
                        let name = str_of(block, "name");
                        if name.is_empty() {
                            return Err(malformed("a tool_use block without a name".into()));
                        }
                        self.calls += 1;
                        let start_input = block
                            .get("input")
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                            .map(Value::to_string);
                        let b = Block {
                            id: match str_of(block, "id") {
                                "" => format!("toolu_{index}"),
                                id => id.to_owned(),
                            },
                            name: name.to_owned(),
                            json: String::new(),
                            start_input,
                        };
                        self.blocks.insert(index, b);
                    }
                    _ => {} // thinking, redacted_thinking, server tools
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match str_of(delta, "type") {
                    "text_delta" => {
                        let text = str_of(delta, "text");
                        if !text.is_empty() {
                            out.push(StreamEvent::Text(text.to_owned()));
                        }
                    }
                    "input_json_delta" => {
                        if let Some(b) = self.blocks.get_mut(&index) {
                            let part = str_of(delta, "partial_json");
                            if b.json.len() + part.len() > MAX_ARGUMENTS {
                                return Err(malformed(format!(
                                    "tool call arguments over {MAX_ARGUMENTS} bytes"
                                )));
                            }
                            b.json.push_str(part);
                        }
                    }
                    _ => {} // thinking_delta, signature_delta, citations
                }
            }
            "content_block_stop" => out.extend(self.close(index)),
            "message_delta" => {
                let reason = v.get("delta").map_or("", |d| str_of(d, "stop_reason"));
                if !reason.is_empty() {
                    self.stop = Some(match reason {
                        "tool_use" => StopReason::ToolUse,
                        "max_tokens" | "model_context_window_exceeded" => StopReason::Length,
                        "refusal" => StopReason::Error,
                        _ => StopReason::Stop, // end_turn, stop_sequence, pause_turn
                    });
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    out.push(self.usage(u));
                }
            }
            "message_stop" => {
                let open: Vec<u64> = self.blocks.keys().copied().collect();
                out.extend(open.into_iter().filter_map(|i| self.close(i)));
                let derived = if self.calls > 0 {
                    StopReason::ToolUse
                } else {
                    StopReason::Stop
                };
                self.done = true;
                out.push(StreamEvent::Done(self.stop.unwrap_or(derived)));
            }
            "error" => {
                let err = v.get("error").unwrap_or(&Value::Null);
                let msg = match (str_of(err, "type"), str_of(err, "message")) {
                    ("", "") => clip(data),
                    ("", m) => clip(m),
                    (t, "") => t.to_owned(),
                    (t, m) => clip(&format!("{t}: {m}")),
                };
                return Err(StreamError::Provider(msg));
            }
            _ => {} // ping, and anything newer
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, StreamError> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(StreamError::Truncated)
        }
    }
}

fn malformed(detail: String) -> StreamError {
    super::malformed(DIALECT, detail)
}

#[cfg(test)]
mod tests {
    use super::super::{Decoder as _, ToolSpec};
    use super::*;

    fn result(id: &str, text: &str, images: Vec<Image>) -> Message {
        Message::ToolResult {
            tool_call_id: id.into(),
            tool_name: "nodes".into(),
            text: text.into(),
            images,
            is_error: false,
            timestamp: 3,
        }
    }

    fn history() -> Vec<Message> {
        let call = |id: &str, args: &str| ToolCall {
            id: id.into(),
            name: "nodes".into(),
            arguments: args.into(),
        };
        vec![
            Message::User {
                text: "warm up".into(),
                images: vec![],
                timestamp: 0,
                run_id: None,
            },
            Message::Assistant {
                text: "Hello.".into(),
                tool_calls: vec![],
                stop_reason: StopReason::Stop,
                model: "fakeanth/fake-claude".into(),
                usage: Usage::default(),
                timestamp: 1,
                run_id: None,
            },
            Message::User {
                text: "status".into(),
                images: vec![],
                timestamp: 1,
                run_id: None,
            },
            Message::Assistant {
                text: "Let me check.".into(),
                tool_calls: vec![
                    call("toolu_1f580106c3", r#"{"action":"status"}"#),
                    call("toolu_2", "not json"),
                ],
                stop_reason: StopReason::ToolUse,
                model: "fakeanth/fake-claude".into(),
                usage: Usage::default(),
                timestamp: 2,
                run_id: None,
            },
            result("toolu_1f580106c3", "{\"nodes\":[]}", vec![]),
            result(
                "toolu_2",
                "snap",
                vec![Image {
                    mime_type: "image/jpeg".into(),
                    data: "AAAA".into(),
                }],
            ),
        ]
    }

    #[test]
    fn body_has_the_reference_shape() {
        let history = history();
        let tools = vec![
            ToolSpec {
                name: "ls".into(),
                description: "List".into(),
                parameters: json!({"type": "object", "properties": {}}),
            },
            ToolSpec {
                name: "nodes".into(),
                description: "Reach nodes".into(),
                parameters: json!({"type": "object", "required": ["action"], "properties": {"action": {"type": "string"}}}),
            },
        ];
        let req = TurnRequest {
            model: "fake-claude",
            system: "You are a test.",
            messages: &history,
            tools: &tools,
        };
        let b = body(&req);
        let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "max_tokens",
                "messages",
                "model",
                "stream",
                "system",
                "tools"
            ]
        );
        assert_eq!(b["max_tokens"], 8192);
        assert_eq!(b["stream"], true);
        assert_eq!(
            b["system"],
            json!([{"type": "text", "text": "You are a test.", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(
            b["tools"],
            json!([
                {"name": "ls", "description": "List", "input_schema": {"type": "object", "properties": {}, "required": []}},
                {"name": "nodes", "description": "Reach nodes", "input_schema": {"type": "object",
                    "required": ["action"], "properties": {"action": {"type": "string"}}},
                    "cache_control": {"type": "ephemeral"}},
            ])
        );
        let want = json!([
            {"role": "user", "content": "warm up"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {"role": "user", "content": [{"type": "text", "text": "status", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu1f580106c3", "name": "nodes", "input": {"action": "status"}},
                {"type": "tool_use", "id": "toolu2", "name": "nodes", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu1f580106c3", "content": "{\"nodes\":[]}", "is_error": false},
                {"type": "tool_result", "tool_use_id": "toolu2", "content": [
                    {"type": "text", "text": "snap"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
                ], "is_error": false, "cache_control": {"type": "ephemeral"}},
            ]},
        ]);
        assert_eq!(b["messages"], want);

        let req = TurnRequest {
            tools: &[],
            system: "",
            ..req
        };
        let b = body(&req);
        assert!(b.get("tools").is_none() && b.get("system").is_none());
    }

    fn ev(v: Value) -> SseEvent {
        SseEvent {
            event: v["type"].as_str().map(str::to_owned),
            data: v.to_string(),
        }
    }

    fn run(d: &mut Decoder, events: Vec<Value>) -> Result<Vec<StreamEvent>, StreamError> {
        let mut out = Vec::new();
        for e in events {
            out.extend(d.feed(&ev(e))?);
        }
        Ok(out)
    }

    fn start() -> Value {
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "content": [], "stop_reason": null, "usage": {"input_tokens": 20, "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 0, "output_tokens": 1}}})
    }

    fn end(reason: &str) -> Vec<Value> {
        vec![
            json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": {"output_tokens": 7}}),
            json!({"type": "message_stop"}),
        ]
    }

    #[test]
    fn decodes_text_usage_and_done() {
        let mut events = vec![
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            json!({"type": "content_block_stop", "index": 0}),
        ];
        events.extend(end("end_turn"));
        let mut d = Decoder::default();
        let out = run(&mut d, events).unwrap();
        let usage = |output| StreamEvent::Usage(Usage { input: 25, output });
        assert_eq!(
            out,
            vec![
                usage(1),
                StreamEvent::Text("Hel".into()),
                StreamEvent::Text("lo".into()),
                usage(7),
                StreamEvent::Done(StopReason::Stop),
            ]
        );
        assert_eq!(d.finish(), Ok(vec![]));
    }

    #[test]
    fn assembles_tool_use_blocks() {
        let delta = |i: u64, s: &str| json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": s}});
        let mut events = vec![
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use",
                "id": "toolu_01", "name": "nodes", "input": {}}}),
            delta(0, ""),
            delta(0, "{\"act"),
            delta(0, "ion\": \"stat"),
            delta(0, "us\"}"),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use",
                "id": "toolu_02", "name": "ls", "input": {}}}),
            json!({"type": "content_block_stop", "index": 1}),
        ];
        events.extend(end("tool_use"));
        let mut d = Decoder::default();
        let out = run(&mut d, events).unwrap();
        let calls: Vec<&StreamEvent> = out
            .iter()
            .filter(|e| matches!(e, StreamEvent::ToolCall(_)))
            .collect();
        assert_eq!(
            calls,
            [
                &StreamEvent::ToolCall(ToolCall {
                    id: "toolu_01".into(),
                    name: "nodes".into(),
                    arguments: "{\"action\": \"status\"}".into()
                }),
                &StreamEvent::ToolCall(ToolCall {
                    id: "toolu_02".into(),
                    name: "ls".into(),
                    arguments: "{}".into()
                }),
            ]
        );
        assert_eq!(out.last(), Some(&StreamEvent::Done(StopReason::ToolUse)));
    }

    #[test]
    fn errors_malformed_truncated_and_bounds() {
        let mut d = Decoder::default();
        let r = run(
            &mut d,
            vec![
                start(),
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ],
        );
        assert_eq!(
            r,
            Err(StreamError::Provider("overloaded_error: Overloaded".into()))
        );

        let mut d = Decoder::default();
        let bad = SseEvent {
            event: Some("content_block_delta".into()),
            data: "{\"type\": \"content_bl".into(),
        };
        assert!(matches!(
            d.feed(&bad),
            Err(StreamError::Malformed {
                dialect: "anthropic-messages",
                ..
            })
        ));

        let mut d = Decoder::default();
        run(&mut d, vec![start()]).unwrap();
        assert_eq!(d.finish(), Err(StreamError::Truncated));

        let mut d = Decoder::default();
        let tool = |i: u64| {
            json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use",
                "id": format!("t{i}"), "name": "ls", "input": {}}})
        };
        assert!(matches!(
            run(&mut d, (0..65).map(tool).collect()),
            Err(StreamError::Malformed { .. })
        ));

        let mut d = Decoder::default();
        let big = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta",
            "partial_json": "x".repeat(700 * 1024)}});
        assert!(matches!(
            run(&mut d, vec![tool(0), big.clone(), big]),
            Err(StreamError::Malformed { .. })
        ));
    }
}
