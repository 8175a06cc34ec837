//! The `openai-responses` dialect: `POST {base_url}/responses` with `stream:true` and
//! `store:false`, answered by typed events (`response.created`, `response.output_text.delta`,
//! `response.function_call_arguments.delta`, `response.output_item.done`,
//! `response.completed`, …).
//!
//! A tool call's id is `<call_id>|<item_id>` (as the reference keeps it); the request replays
//! the `call_id` part, unsanitised, as the reference does.

use serde_json::{json, Map, Value};

use super::{
    clip, str_of, StreamError, StreamEvent, TurnRequest, MAX_ARGUMENTS, MAX_CALLS,
    MAX_OUTPUT_TOKENS,
};
use crate::sse::SseEvent;
use crate::transcript::{Image, Message, StopReason, ToolCall, Usage};

const DIALECT: &str = "openai-responses";

/// The streaming request body, shaped as the reference shapes it.
pub fn body(req: &TurnRequest<'_>) -> Value {
    let mut input = vec![json!({
        "type": "message",
        "role": "system",
        "content": [{"type": "input_text", "text": req.system}],
    })];
    // Images from tool results go in a user message after the run of outputs.
    let mut tool_images: Vec<Value> = Vec::new();
    for m in req.messages {
        if !matches!(m, Message::ToolResult { .. }) {
            flush_images(&mut input, &mut tool_images);
        }
        match m {
            Message::User { text, images, .. } => {
                let mut content = Vec::new();
                if !text.is_empty() || images.is_empty() {
                    content.push(json!({"type": "input_text", "text": text}));
                }
                content.extend(images.iter().map(image_part));
                input.push(json!({"type": "message", "role": "user", "content": content}));
            }
            Message::Assistant {
                text, tool_calls, ..
            } => {
                if !text.is_empty() {
                    input.push(json!({
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}],
                    }));
                }
                for c in tool_calls {
                    input.push(json!({
                        "type": "function_call",
                        "call_id": call_id(&c.id),
                        "name": c.name,
                        "arguments": c.arguments,
                    }));
                }
            }
            Message::ToolResult {
                tool_call_id,
                tool_name,
                text,
                images,
                ..
            } => {
                input.push(json!({
                    "type": "function_call_output",
                    "call_id": call_id(tool_call_id),
                    "output": text,
                }));
                for image in images {
                    let label = format!("Image from tool {tool_name}:");
                    tool_images.push(json!({"type": "input_text", "text": label}));
                    tool_images.push(image_part(image));
                }
            }
            Message::Reset { .. } => {}
        }
    }
    flush_images(&mut input, &mut tool_images);

    let mut body = Map::new();
    body.insert("model".into(), req.model.into());
    body.insert("input".into(), input.into());
    body.insert("stream".into(), true.into());
    body.insert("max_output_tokens".into(), MAX_OUTPUT_TOKENS.into());
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(|t| {
            json!({"type": "function", "name": t.name, "description": t.description,
                "parameters": t.parameters})
        });
        body.insert("tools".into(), tools.collect());
    }
    body.insert("store".into(), false.into());
    Value::Object(body)
}

/// The `call_id` of a `<call_id>|<item_id>` tool call id.
fn call_id(id: &str) -> &str {
    id.split('|').next().unwrap_or(id)
}

fn image_part(image: &Image) -> Value {
    let url = super::data_url(image);
    json!({"type": "input_image", "detail": "auto", "image_url": url})
}

fn flush_images(input: &mut Vec<Value>, images: &mut Vec<Value>) {
    if !images.is_empty() {
        let content = std::mem::take(images);
        input.push(json!({"type": "message", "role": "user", "content": content}));
    }
}

/// A function call being assembled.
#[derive(Debug, Default)]
struct Partial {
    item_id: String,
    output_index: Option<u64>,
    call_id: String,
    name: String,
    arguments: String,
    sent: bool,
}

/// Decodes one Responses event stream.
#[derive(Debug, Default)]
pub struct Decoder {
    calls: Vec<Partial>,
    sent_any: bool,
    done: bool,
}

impl Decoder {
    /// The call an event is about (by `item_id`, else `output_index`, else the latest one not
    /// yet out), created if new.
    fn call(&mut self, item_id: &str, index: Option<u64>) -> Result<usize, StreamError> {
        let found = if item_id.is_empty() && index.is_none() {
            self.calls.iter().rposition(|p| !p.sent)
        } else {
            self.calls.iter().position(|p| {
                if item_id.is_empty() || p.item_id.is_empty() {
                    index.is_some() && p.output_index == index
                } else {
                    p.item_id == item_id
                }
            })
        };
        let i = match found {
            Some(i) => i,
            None if self.calls.len() >= MAX_CALLS => {
                return Err(malformed(format!("more than {MAX_CALLS} tool calls")));
            }
            None => {
                self.calls.push(Partial::default());
                self.calls.len() - 1
            }
        };
        let p = &mut self.calls[i];
        if p.item_id.is_empty() {
            item_id.clone_into(&mut p.item_id);
        }
        p.output_index = p.output_index.or(index);
        Ok(i)
    }

    /// Fills a call from a `function_call` item (`output_item.added` / `.done`).
    fn item(&mut self, v: &Value) -> Result<Option<usize>, StreamError> {
        let Some(item) = v
            .get("item")
            .filter(|i| str_of(i, "type") == "function_call")
        else {
            return Ok(None);
        };
        let index = v.get("output_index").and_then(Value::as_u64);
        let i = self.call(str_of(item, "id"), index)?;
        let p = &mut self.calls[i];
        for (field, key) in [(&mut p.call_id, "call_id"), (&mut p.name, "name")] {
            if field.is_empty() {
                str_of(item, key).clone_into(field);
            }
        }
        let args = str_of(item, "arguments");
        if !args.is_empty() {
            set_arguments(p, args)?;
        }
        Ok(Some(i))
    }

    /// Hands out call `only` if it is complete, or (`None`) every call not yet out.
    fn send(&mut self, only: Option<usize>, out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        for (i, p) in self.calls.iter_mut().enumerate() {
            if p.sent || only.is_some_and(|o| o != i) {
                continue;
            }
            if p.name.is_empty() {
                if only.is_some() {
                    continue; // its item will name it
                }
                return Err(malformed("a function call without a name".into()));
            }
            p.sent = true;
            self.sent_any = true;
            let id = match (p.call_id.is_empty(), p.item_id.is_empty()) {
                (false, false) => format!("{}|{}", p.call_id, p.item_id),
                (false, true) => p.call_id.clone(),
                (true, _) => p.item_id.clone(),
            };
            let arguments = if p.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                std::mem::take(&mut p.arguments)
            };
            out.push(StreamEvent::ToolCall(ToolCall {
                id,
                name: p.name.clone(),
                arguments,
            }));
        }
        Ok(())
    }

    /// `response.completed` / `response.incomplete`.
    fn terminal(&mut self, kind: &str, v: &Value) -> Result<Vec<StreamEvent>, StreamError> {
        let mut out = Vec::new();
        self.send(None, &mut out)?;
        let resp = v.get("response").unwrap_or(&Value::Null);
        if let Some(usage) = resp.get("usage").filter(|u| u.is_object()) {
            let count = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
            out.push(StreamEvent::Usage(Usage {
                input: count("input_tokens"),
                output: count("output_tokens"),
            }));
        }
        let incomplete = resp.get("incomplete_details").map(|d| str_of(d, "reason"));
        let reason = if incomplete == Some("content_filter") {
            StopReason::Error
        } else if kind == "response.incomplete"
            || str_of(resp, "status") == "incomplete"
            || incomplete == Some("max_output_tokens")
        {
            StopReason::Length
        } else if self.sent_any {
            StopReason::ToolUse
        } else {
            StopReason::Stop
        };
        self.done = true;
        out.push(StreamEvent::Done(reason));
        Ok(out)
    }
}

impl super::Decoder for Decoder {
    fn feed(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, StreamError> {
        let data = event.data.trim();
        if self.done || data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let v = super::event_object(DIALECT, data)?;
        let kind = match v.get("type").and_then(Value::as_str) {
            Some(t) => t,
            None => event.event.as_deref().unwrap_or(""),
        };
        let mut out = Vec::new();
        match kind {
            "response.output_text.delta" | "response.refusal.delta" => {
                let delta = str_of(&v, "delta");
                if !delta.is_empty() {
                    out.push(StreamEvent::Text(delta.to_owned()));
                }
            }
            "response.output_item.added" => {
                self.item(&v)?;
            }
            "response.function_call_arguments.delta" => {
                let index = v.get("output_index").and_then(Value::as_u64);
                let i = self.call(str_of(&v, "item_id"), index)?;
                let p = &mut self.calls[i];
                let delta = str_of(&v, "delta");
                if p.arguments.len() + delta.len() > MAX_ARGUMENTS {
                    return Err(too_long());
                }
                p.arguments.push_str(delta);
            }
            "response.function_call_arguments.done" => {
                let index = v.get("output_index").and_then(Value::as_u64);
                let i = self.call(str_of(&v, "item_id"), index)?;
                if let Some(args) = v.get("arguments").and_then(Value::as_str) {
                    set_arguments(&mut self.calls[i], args)?;
                }
                self.send(Some(i), &mut out)?;
            }
            "response.output_item.done" => {
                if let Some(i) = self.item(&v)? {
                    self.send(Some(i), &mut out)?;
                }
            }
            "response.completed" | "response.incomplete" => return self.terminal(kind, &v),
            "response.failed" => {
                let err = v.get("response").and_then(|r| r.get("error"));
                let msg = err.map_or("", |e| str_of(e, "message"));
                return Err(StreamError::Provider(if msg.is_empty() {
                    "the response failed".into()
                } else {
                    clip(msg)
                }));
            }
            "error" => {
                let msg = match str_of(&v, "message") {
                    "" => v.get("error").map_or("", |e| str_of(e, "message")),
                    m => m,
                };
                let msg = if msg.is_empty() {
                    clip(data)
                } else {
                    clip(msg)
                };
                return Err(StreamError::Provider(msg));
            }
            _ => {} // created, in_progress, content_part.*, reasoning, … and anything newer
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

fn set_arguments(p: &mut Partial, args: &str) -> Result<(), StreamError> {
    if args.len() > MAX_ARGUMENTS {
        return Err(too_long());
    }
    args.clone_into(&mut p.arguments);
    Ok(())
}

fn too_long() -> StreamError {
    malformed(format!("tool call arguments over {MAX_ARGUMENTS} bytes"))
}

fn malformed(detail: String) -> StreamError {
    super::malformed(DIALECT, detail)
}

#[cfg(test)]
mod tests {
    use super::super::{Decoder as _, ToolSpec};
    use super::*;

    fn history() -> Vec<Message> {
        vec![
            Message::User {
                text: "status please".into(),
                images: vec![],
                timestamp: 1,
                run_id: None,
            },
            Message::Assistant {
                text: "Let me check.".into(),
                tool_calls: vec![ToolCall {
                    id: "call_aa17b6eb|fc_32962d56".into(),
                    name: "nodes".into(),
                    arguments: r#"{"action":"status"}"#.into(),
                }],
                stop_reason: StopReason::ToolUse,
                model: "fakeresp/fake-resp".into(),
                usage: Usage::default(),
                timestamp: 2,
                run_id: None,
            },
            Message::ToolResult {
                tool_call_id: "call_aa17b6eb|fc_32962d56".into(),
                tool_name: "nodes".into(),
                text: "{\"nodes\":[]}".into(),
                images: vec![Image {
                    mime_type: "image/png".into(),
                    data: "iVBO".into(),
                }],
                is_error: false,
                timestamp: 3,
            },
        ]
    }

    #[test]
    fn body_has_the_reference_shape() {
        let history = history();
        let tools = vec![ToolSpec {
            name: "nodes".into(),
            description: "Reach nodes".into(),
            parameters: json!({"type": "object", "properties": {}}),
        }];
        let req = TurnRequest {
            model: "fake-resp",
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
                "input",
                "max_output_tokens",
                "model",
                "store",
                "stream",
                "tools"
            ]
        );
        assert_eq!(b["stream"], true);
        assert_eq!(b["store"], false);
        assert_eq!(b["max_output_tokens"], 8192);
        assert!(b.get("instructions").is_none());
        assert_eq!(
            b["tools"],
            json!([{"type": "function", "name": "nodes", "description": "Reach nodes",
                "parameters": {"type": "object", "properties": {}}}])
        );
        let want = json!([
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "You are a test."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "status please"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
            {"type": "function_call", "call_id": "call_aa17b6eb", "name": "nodes", "arguments": "{\"action\":\"status\"}"},
            {"type": "function_call_output", "call_id": "call_aa17b6eb", "output": "{\"nodes\":[]}"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Image from tool nodes:"},
                {"type": "input_image", "detail": "auto", "image_url": "data:image/png;base64,iVBO"}]},
        ]);
        assert_eq!(b["input"], want);

        let req = TurnRequest { tools: &[], ..req };
        assert!(body(&req).get("tools").is_none());
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

    fn completed(status: &str) -> Value {
        json!({"type": "response.completed", "sequence_number": 9, "response": {"id": "resp_1",
            "status": status, "output": [], "usage": {"input_tokens": 30, "output_tokens": 4, "total_tokens": 34}}})
    }

    #[test]
    fn decodes_text_usage_and_done() {
        let events = vec![
            json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "status": "in_progress"}}),
            json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []}}),
            json!({"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1",
                "output_index": 0, "content_index": 0, "delta": "Hel"}),
            json!({"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1",
                "output_index": 0, "content_index": 0, "delta": "lo"}),
            json!({"type": "response.some_future_event", "sequence_number": 4}),
            completed("completed"),
        ];
        let mut d = Decoder::default();
        let out = run(&mut d, events).unwrap();
        assert_eq!(
            out,
            vec![
                StreamEvent::Text("Hel".into()),
                StreamEvent::Text("lo".into()),
                StreamEvent::Usage(Usage {
                    input: 30,
                    output: 4
                }),
                StreamEvent::Done(StopReason::Stop),
            ]
        );
        assert_eq!(d.finish(), Ok(vec![]));
    }

    #[test]
    fn assembles_a_function_call() {
        let delta = |s: &str| {
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1",
                "output_index": 1, "delta": s})
        };
        let events = vec![
            json!({"type": "response.output_item.added", "output_index": 1, "item": {"id": "fc_1",
                "type": "function_call", "status": "in_progress", "arguments": "", "call_id": "call_x", "name": "nodes"}}),
            delta("{\"act"),
            delta("ion\":\"sta"),
            delta("tus\"}"),
        ];
        let mut d = Decoder::default();
        assert_eq!(run(&mut d, events).unwrap(), vec![]);
        let out = run(
            &mut d,
            vec![
                json!({"type": "response.function_call_arguments.done", "item_id": "fc_1",
                    "output_index": 1, "arguments": "{\"action\":\"status\"}"}),
                json!({"type": "response.output_item.done", "output_index": 1, "item": {"id": "fc_1",
                    "type": "function_call", "status": "completed", "arguments": "{\"action\":\"status\"}",
                    "call_id": "call_x", "name": "nodes"}}),
                completed("completed"),
            ],
        )
        .unwrap();
        assert_eq!(
            out[0],
            StreamEvent::ToolCall(ToolCall {
                id: "call_x|fc_1".into(),
                name: "nodes".into(),
                arguments: r#"{"action":"status"}"#.into()
            })
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[2], StreamEvent::Done(StopReason::ToolUse));
    }

    #[test]
    fn incomplete_is_length() {
        let mut d = Decoder::default();
        let mut e = completed("incomplete");
        e["response"]["incomplete_details"] = json!({"reason": "max_output_tokens"});
        let out = run(&mut d, vec![e]).unwrap();
        assert_eq!(out.last(), Some(&StreamEvent::Done(StopReason::Length)));
    }

    #[test]
    fn errors_malformed_and_truncated() {
        let mut d = Decoder::default();
        let r = run(
            &mut d,
            vec![
                json!({"type": "error", "code": "server_error", "message": "Boom", "param": null}),
            ],
        );
        assert_eq!(r, Err(StreamError::Provider("Boom".into())));

        let mut d = Decoder::default();
        let r = run(
            &mut d,
            vec![
                json!({"type": "response.failed", "response": {"status": "failed",
                "error": {"code": "server_error", "message": "Overloaded"}}}),
            ],
        );
        assert_eq!(r, Err(StreamError::Provider("Overloaded".into())));

        let mut d = Decoder::default();
        let bad = SseEvent {
            event: Some("response.output_text.delta".into()),
            data: "{nope".into(),
        };
        assert!(matches!(
            d.feed(&bad),
            Err(StreamError::Malformed {
                dialect: "openai-responses",
                ..
            })
        ));

        let mut d = Decoder::default();
        let delta = json!({"type": "response.output_text.delta", "item_id": "m", "delta": "Hi"});
        run(&mut d, vec![delta]).unwrap();
        assert_eq!(d.finish(), Err(StreamError::Truncated));
    }

    #[test]
    fn bounds_calls_and_arguments() {
        let mut d = Decoder::default();
        let added = |i: u64| {
            json!({"type": "response.output_item.added", "output_index": i, "item": {"id": format!("fc_{i}"),
                "type": "function_call", "arguments": "", "call_id": format!("c{i}"), "name": "ls"}})
        };
        let r = run(&mut d, (0..65).map(added).collect());
        assert!(matches!(r, Err(StreamError::Malformed { .. })));

        let mut d = Decoder::default();
        let big = json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1",
            "output_index": 0, "delta": "x".repeat(700 * 1024)});
        let r = run(&mut d, vec![added(0), big.clone(), big]);
        assert!(matches!(r, Err(StreamError::Malformed { .. })));
    }
}
