//! The `openai-completions` dialect: `POST {base_url}/chat/completions` with `stream:true`,
//! answered by `chat.completion.chunk` events and a final `data: [DONE]`.
//!
//! Tool calls arrive as `delta.tool_calls[{index, id, function:{name, arguments}}]` fragments;
//! the decoder assembles them per `index` and hands them out, complete, when `finish_reason`
//! arrives (or at `[DONE]`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{
    clip, sanitize_call_id, StreamError, StreamEvent, TurnRequest, MAX_ARGUMENTS, MAX_CALLS,
    MAX_OUTPUT_TOKENS,
};
use crate::sse::SseEvent;
use crate::transcript::{Image, Message, StopReason, ToolCall, Usage};

const DIALECT: &str = "openai-completions";

/// The streaming request body, shaped as the reference shapes it.
pub fn body(req: &TurnRequest<'_>) -> Value {
    let mut messages = vec![json!({"role": "system", "content": req.system})];
    // Images from tool results wait here until the run of `tool` messages ends: nothing may
    // come between the `tool` answers to one assistant turn, and a `tool` message cannot carry
    // an image in this dialect.
    let mut tool_images: Vec<Value> = Vec::new();
    for m in req.messages {
        if !matches!(m, Message::ToolResult { .. }) {
            flush_images(&mut messages, &mut tool_images);
        }
        match m {
            Message::User { text, images, .. } if images.is_empty() => {
                messages.push(json!({"role": "user", "content": text}));
            }
            Message::User { text, images, .. } => {
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(json!({"type": "text", "text": text}));
                }
                content.extend(images.iter().map(image_part));
                messages.push(json!({"role": "user", "content": content}));
            }
            Message::Assistant {
                text, tool_calls, ..
            } => {
                if text.is_empty() && tool_calls.is_empty() {
                    continue;
                }
                let mut msg = Map::new();
                msg.insert("role".into(), "assistant".into());
                let content = if text.is_empty() {
                    Value::Null
                } else {
                    text.as_str().into()
                };
                msg.insert("content".into(), content);
                if !tool_calls.is_empty() {
                    let calls = tool_calls.iter().map(|c| {
                        json!({
                            "id": sanitize_call_id(&c.id),
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    });
                    msg.insert("tool_calls".into(), calls.collect());
                }
                messages.push(Value::Object(msg));
            }
            Message::ToolResult {
                tool_call_id,
                tool_name,
                text,
                images,
                ..
            } => {
                messages.push(json!({
                    "role": "tool",
                    "content": text,
                    "tool_call_id": sanitize_call_id(tool_call_id),
                }));
                for image in images {
                    let label = format!("Image from tool {tool_name}:");
                    tool_images.push(json!({"type": "text", "text": label}));
                    tool_images.push(image_part(image));
                }
            }
            Message::Reset { .. } => {}
        }
    }
    flush_images(&mut messages, &mut tool_images);

    let mut body = Map::new();
    body.insert("model".into(), req.model.into());
    body.insert("messages".into(), messages.into());
    body.insert("stream".into(), true.into());
    body.insert("stream_options".into(), json!({"include_usage": true}));
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(|t| {
            json!({
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            })
        });
        body.insert("tools".into(), tools.collect());
        body.insert("tool_choice".into(), "auto".into());
    }
    body.insert("max_completion_tokens".into(), MAX_OUTPUT_TOKENS.into());
    Value::Object(body)
}

fn image_part(image: &Image) -> Value {
    let url = super::data_url(image);
    json!({"type": "image_url", "image_url": {"url": url}})
}

fn flush_images(messages: &mut Vec<Value>, images: &mut Vec<Value>) {
    if !images.is_empty() {
        let content = std::mem::take(images);
        messages.push(json!({"role": "user", "content": content}));
    }
}

/// A tool call being assembled from its fragments.
#[derive(Debug, Default)]
struct Partial {
    id: String,
    name: String,
    arguments: String,
}

/// Decodes one `chat.completion.chunk` stream.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Calls being assembled, by their `index`.
    calls: BTreeMap<u64, Partial>,
    last_index: u64,
    /// Why the model stopped, once `finish_reason` arrived (the calls are out by then).
    finish: Option<StopReason>,
    done: bool,
}

impl Decoder {
    fn choice(&mut self, choice: &Value, out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        let delta = choice.get("delta");
        let text = delta.and_then(|d| d.get("content")).and_then(Value::as_str);
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::Text(text.to_owned()));
        }
        let calls = delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array);
        if self.finish.is_none() {
            for call in calls.into_iter().flatten() {
                self.fragment(call)?;
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            out.extend(self.settle(Some(reason))?);
        }
        Ok(())
    }

    /// One `delta.tool_calls[]` entry.
    fn fragment(&mut self, call: &Value) -> Result<(), StreamError> {
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let index = match call.get("index").and_then(Value::as_u64) {
            Some(i) => i,
            // Servers that leave `index` out: a new id starts a new call.
            None => match id {
                Some(id) if !self.calls.values().any(|p| p.id == id) => {
                    self.calls.keys().next_back().map_or(0, |k| k + 1)
                }
                _ => self.last_index,
            },
        };
        if !self.calls.contains_key(&index) && self.calls.len() >= MAX_CALLS {
            return Err(malformed(format!("more than {MAX_CALLS} tool calls")));
        }
        self.last_index = index;
        let partial = self.calls.entry(index).or_default();
        if let Some(id) = id.filter(|_| partial.id.is_empty()) {
            id.clone_into(&mut partial.id);
        }
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
        if let Some(name) = name.filter(|n| !n.is_empty() && partial.name.is_empty()) {
            name.clone_into(&mut partial.name);
        }
        let args = function
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str);
        if let Some(args) = args {
            if partial.arguments.len() + args.len() > MAX_ARGUMENTS {
                return Err(malformed(format!(
                    "tool call arguments over {MAX_ARGUMENTS} bytes"
                )));
            }
            partial.arguments.push_str(args);
        }
        Ok(())
    }

    /// The model finished (`finish_reason`, or `[DONE]` without one): the assembled calls.
    fn settle(&mut self, reason: Option<&str>) -> Result<Vec<StreamEvent>, StreamError> {
        if self.finish.is_some() {
            return Ok(Vec::new());
        }
        let calls = std::mem::take(&mut self.calls);
        let mut stop = match reason {
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            Some("length") => StopReason::Length,
            Some("content_filter" | "error") => StopReason::Error,
            _ => StopReason::Stop,
        };
        if stop == StopReason::Stop && !calls.is_empty() {
            stop = StopReason::ToolUse; // some servers say "stop" after tool calls
        }
        self.finish = Some(stop);
        calls
            .into_iter()
            .map(|(index, p)| {
                if p.name.is_empty() {
                    return Err(malformed(format!("tool call {index} has no name")));
                }
                let id = if p.id.is_empty() {
                    format!("call_{index}")
                } else {
                    p.id
                };
                let arguments = if p.arguments.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    p.arguments
                };
                Ok(StreamEvent::ToolCall(ToolCall {
                    id,
                    name: p.name,
                    arguments,
                }))
            })
            .collect()
    }

    fn done(&mut self) -> Result<Vec<StreamEvent>, StreamError> {
        let mut out = self.settle(None)?;
        self.done = true;
        out.push(StreamEvent::Done(self.finish.unwrap_or(StopReason::Stop)));
        Ok(out)
    }
}

impl super::Decoder for Decoder {
    fn feed(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, StreamError> {
        let data = event.data.trim();
        if self.done || data.is_empty() {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            return self.done();
        }
        let v = super::event_object(DIALECT, data)?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(StreamError::Provider(error_message(err)));
        }
        let mut out = Vec::new();
        let choices = v.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            // One choice is asked for; any other is not this conversation.
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0 {
                self.choice(choice, &mut out)?;
            }
        }
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            let count = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
            out.push(StreamEvent::Usage(Usage {
                input: count("prompt_tokens"),
                output: count("completion_tokens"),
            }));
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<StreamEvent>, StreamError> {
        match (self.done, self.finish) {
            (true, _) => Ok(Vec::new()),
            // A server that closes after `finish_reason` without `[DONE]`.
            (false, Some(_)) => self.done(),
            (false, None) => Err(StreamError::Truncated),
        }
    }
}

fn malformed(detail: String) -> StreamError {
    super::malformed(DIALECT, detail)
}

/// `{"message": …}` or a bare string, as servers send them.
fn error_message(err: &Value) -> String {
    match err {
        Value::String(s) => clip(s),
        _ => match err.get("message").and_then(Value::as_str) {
            Some(m) => clip(m),
            None => clip(&err.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Decoder as _, ToolSpec};
    use super::*;

    fn history() -> Vec<Message> {
        let image = Image {
            mime_type: "image/jpeg".into(),
            data: "AAAA".into(),
        };
        vec![
            Message::User {
                text: "where am I?".into(),
                images: vec![],
                timestamp: 1,
                run_id: None,
            },
            Message::Assistant {
                text: "Let me check.".into(),
                tool_calls: vec![ToolCall {
                    id: "call_1a6c0b9a".into(),
                    name: "nodes".into(),
                    arguments: r#"{"action":"camera_snap"}"#.into(),
                }],
                stop_reason: StopReason::ToolUse,
                model: "fake/fake-model".into(),
                usage: Usage::default(),
                timestamp: 2,
                run_id: None,
            },
            Message::ToolResult {
                tool_call_id: "call_1a6c0b9a".into(),
                tool_name: "nodes".into(),
                text: "{\"ok\":true}".into(),
                images: vec![image],
                is_error: false,
                timestamp: 3,
            },
            Message::Reset { timestamp: 4 },
        ]
    }

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "nodes".into(),
            description: "Reach nodes".into(),
            parameters: json!({"type": "object", "properties": {}}),
        }]
    }

    #[test]
    fn body_has_the_reference_shape() {
        let (history, tools) = (history(), tools());
        let req = TurnRequest {
            model: "fake-model",
            system: "You are a test.",
            messages: &history,
            tools: &tools,
        };
        let b = body(&req);
        let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "max_completion_tokens",
            "messages",
            "model",
            "stream",
            "stream_options",
            "tool_choice",
            "tools",
        ];
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
        assert_eq!(b["max_completion_tokens"], 8192);
        assert_eq!(b["tool_choice"], "auto");
        assert_eq!(
            b["tools"],
            json!([{"type": "function", "function": {"name": "nodes", "description": "Reach nodes",
                "parameters": {"type": "object", "properties": {}}}}])
        );
        let want_messages = json!([
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": "where am I?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [{"id": "call1a6c0b9a",
                "type": "function", "function": {"name": "nodes", "arguments": "{\"action\":\"camera_snap\"}"}}]},
            {"role": "tool", "content": "{\"ok\":true}", "tool_call_id": "call1a6c0b9a"},
            {"role": "user", "content": [{"type": "text", "text": "Image from tool nodes:"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]},
        ]);
        assert_eq!(b["messages"], want_messages);
    }

    #[test]
    fn no_tools_no_tool_keys_and_empty_text_is_null() {
        let history = vec![Message::Assistant {
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: "x".into(),
                name: "ls".into(),
                arguments: "{}".into(),
            }],
            stop_reason: StopReason::ToolUse,
            model: "m".into(),
            usage: Usage::default(),
            timestamp: 0,
            run_id: None,
        }];
        let req = TurnRequest {
            model: "m",
            system: "s",
            messages: &history,
            tools: &[],
        };
        let b = body(&req);
        assert!(b.get("tools").is_none() && b.get("tool_choice").is_none());
        assert_eq!(b["messages"][1]["content"], Value::Null);
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    fn chunk(delta: Value, finish: Value) -> String {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        .to_string()
    }

    fn run(d: &mut Decoder, events: &[String]) -> Result<Vec<StreamEvent>, StreamError> {
        let mut out = Vec::new();
        for e in events {
            out.extend(d.feed(&ev(e))?);
        }
        Ok(out)
    }

    #[test]
    fn decodes_text_usage_and_done() {
        let usage = r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        let events = vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(json!({}), json!("stop")),
            usage.to_owned(),
            "[DONE]".to_owned(),
        ];
        let mut d = Decoder::default();
        let out = run(&mut d, &events).unwrap();
        assert_eq!(
            out,
            vec![
                StreamEvent::Text("Hel".into()),
                StreamEvent::Text("lo".into()),
                StreamEvent::Usage(Usage {
                    input: 12,
                    output: 3
                }),
                StreamEvent::Done(StopReason::Stop),
            ]
        );
        assert_eq!(d.finish(), Ok(vec![]));
    }

    #[test]
    fn assembles_tool_call_fragments() {
        let start = json!({"tool_calls": [{"index": 0, "id": "call_ab", "type": "function",
            "function": {"name": "nodes", "arguments": ""}}]});
        let frag = |s: &str| json!({"tool_calls": [{"index": 0, "function": {"arguments": s}}]});
        let second = json!({"tool_calls": [{"index": 1, "id": "call_cd", "type": "function",
            "function": {"name": "ls", "arguments": ""}}]});
        let events = vec![
            chunk(json!({"content": "Let me check."}), Value::Null),
            chunk(start, Value::Null),
            chunk(frag("{\"act"), Value::Null),
            chunk(frag("ion\":\"st"), Value::Null),
            chunk(second, Value::Null),
            chunk(frag("atus\"}"), Value::Null),
            chunk(json!({}), json!("tool_calls")),
        ];
        let mut d = Decoder::default();
        let out = run(&mut d, &events).unwrap();
        assert_eq!(out[0], StreamEvent::Text("Let me check.".into()));
        assert_eq!(
            out[1..],
            [
                StreamEvent::ToolCall(ToolCall {
                    id: "call_ab".into(),
                    name: "nodes".into(),
                    arguments: r#"{"action":"status"}"#.into()
                }),
                StreamEvent::ToolCall(ToolCall {
                    id: "call_cd".into(),
                    name: "ls".into(),
                    arguments: "{}".into()
                }),
            ]
        );
        // The stream closes without `[DONE]`: the finish_reason was enough.
        assert_eq!(d.finish(), Ok(vec![StreamEvent::Done(StopReason::ToolUse)]));
    }

    #[test]
    fn errors_malformed_and_truncated() {
        let mut d = Decoder::default();
        let err = d.feed(&ev(
            r#"{"error":{"message":"Rate limit","type":"requests"}}"#,
        ));
        assert_eq!(err, Err(StreamError::Provider("Rate limit".into())));

        let mut d = Decoder::default();
        assert!(matches!(
            d.feed(&ev("{\"choices\": [")),
            Err(StreamError::Malformed {
                dialect: "openai-completions",
                ..
            })
        ));
        assert!(matches!(
            d.feed(&ev("[1]")),
            Err(StreamError::Malformed { .. })
        ));

        let mut d = Decoder::default();
        run(&mut d, &[chunk(json!({"content": "Hel"}), Value::Null)]).unwrap();
        assert_eq!(d.finish(), Err(StreamError::Truncated));
    }

    #[test]
    fn bounds_calls_and_arguments() {
        let mut d = Decoder::default();
        let many: Vec<Value> = (0..65)
            .map(|i| json!({"index": i, "id": format!("c{i}"), "function": {"name": "ls"}}))
            .collect();
        let r = d.feed(&ev(&chunk(json!({"tool_calls": many}), Value::Null)));
        assert!(matches!(r, Err(StreamError::Malformed { .. })));

        let mut d = Decoder::default();
        let big = "x".repeat(600 * 1024);
        let frag =
            json!({"tool_calls": [{"index": 0, "function": {"name": "ls", "arguments": big}}]});
        assert!(d.feed(&ev(&chunk(frag.clone(), Value::Null))).is_ok());
        let r = d.feed(&ev(&chunk(frag, Value::Null)));
        assert!(matches!(r, Err(StreamError::Malformed { .. })));
    }
}
