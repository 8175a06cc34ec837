//! Model providers: the three streaming dialects the reference speaks
//! (`openai-completions`, `openai-responses`, `anthropic-messages`), each as a request body
//! builder and a decoder of its server-sent events into [`StreamEvent`]s. The HTTP exchange
//! itself is [`crate::http`]; the SSE framing is [`crate::sse`].

pub mod anthropic;
pub mod openai_completions;
pub mod openai_responses;

use serde::Deserialize;
use serde_json::Value;

use crate::sse::SseEvent;
use crate::transcript::{Message, StopReason, ToolCall, Usage};

/// Output tokens asked for, as the reference asks (`max_completion_tokens` /
/// `max_output_tokens` / `max_tokens`).
pub const MAX_OUTPUT_TOKENS: u32 = 8192;

/// A provider's wire dialect (`api` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Api {
    /// `POST {base_url}/chat/completions` (OpenAI, OpenRouter, llama.cpp, Ollama, vLLM…).
    #[serde(rename = "openai-completions")]
    OpenAiCompletions,
    /// `POST {base_url}/responses`.
    #[serde(rename = "openai-responses")]
    OpenAiResponses,
    /// `POST {base_url}/v1/messages`.
    #[serde(rename = "anthropic-messages")]
    AnthropicMessages,
}

impl Api {
    /// The config word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAiCompletions => "openai-completions",
            Api::OpenAiResponses => "openai-responses",
            Api::AnthropicMessages => "anthropic-messages",
        }
    }

    /// The path appended to the provider's `base_url`.
    pub fn path(self) -> &'static str {
        match self {
            Api::OpenAiCompletions => "/chat/completions",
            Api::OpenAiResponses => "/responses",
            Api::AnthropicMessages => "/v1/messages",
        }
    }

    /// The request headers besides `content-type` (the key's header and any version header).
    pub fn headers(self, api_key: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        match self {
            Api::OpenAiCompletions | Api::OpenAiResponses => {
                if let Some(k) = api_key {
                    h.push(("authorization", format!("Bearer {k}")));
                }
            }
            Api::AnthropicMessages => {
                if let Some(k) = api_key {
                    h.push(("x-api-key", k.to_owned()));
                }
                h.push(("anthropic-version", "2023-06-01".to_owned()));
            }
        }
        h
    }

    /// The streaming request body for `req`.
    pub fn body(self, req: &TurnRequest<'_>) -> Value {
        match self {
            Api::OpenAiCompletions => openai_completions::body(req),
            Api::OpenAiResponses => openai_responses::body(req),
            Api::AnthropicMessages => anthropic::body(req),
        }
    }

    /// A decoder for one response stream.
    pub fn decoder(self) -> Box<dyn Decoder + Send> {
        match self {
            Api::OpenAiCompletions => Box::new(openai_completions::Decoder::default()),
            Api::OpenAiResponses => Box::new(openai_responses::Decoder::default()),
            Api::AnthropicMessages => Box::new(anthropic::Decoder::default()),
        }
    }
}

/// A tool as the model is told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Its name (`nodes`, `exec`, …).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// Everything one model call needs.
#[derive(Debug, Clone, Copy)]
pub struct TurnRequest<'a> {
    /// The provider's model id (without the `<provider>/` prefix).
    pub model: &'a str,
    /// The system prompt.
    pub system: &'a str,
    /// The history the model sees, oldest first (no [`Message::Reset`] in it), the current
    /// user turn and any tool results of this run last.
    pub messages: &'a [Message],
    /// The tools offered.
    pub tools: &'a [ToolSpec],
}

/// What a response stream says, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More assistant text (a suffix).
    Text(String),
    /// A complete tool call (its arguments fully assembled).
    ToolCall(ToolCall),
    /// Token counts so far (the latest replaces earlier ones).
    Usage(Usage),
    /// The model finished, for this reason. Nothing follows.
    Done(StopReason),
}

/// How a stream went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// An event's data was not the JSON the dialect sends.
    #[error("malformed {dialect} stream event: {detail}")]
    Malformed {
        /// The dialect.
        dialect: &'static str,
        /// What was wrong (short; never the whole event).
        detail: String,
    },
    /// The provider reported an error inside the stream (`error` event / `response.failed`).
    #[error("the provider reported an error: {0}")]
    Provider(String),
    /// The stream ended before the dialect's terminal event.
    #[error("the stream ended before the model finished")]
    Truncated,
}

/// Decodes one response stream, event by event.
pub trait Decoder {
    /// The next server-sent event; the [`StreamEvent`]s it completes.
    fn feed(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, StreamError>;
    /// The stream ended (the connection closed). `Err(Truncated)` unless `Done` was returned.
    fn finish(&mut self) -> Result<Vec<StreamEvent>, StreamError>;
}

/// Bytes of one tool call's arguments a decoder assembles; past it the stream is malformed.
pub(crate) const MAX_ARGUMENTS: usize = 1 << 20;
/// Tool calls in one response a decoder accepts; past it the stream is malformed.
pub(crate) const MAX_CALLS: usize = 64;

/// A stream error of `dialect`.
pub(crate) fn malformed(dialect: &'static str, detail: String) -> StreamError {
    StreamError::Malformed { dialect, detail }
}

/// An event's `data` as the JSON object every dialect sends (`Err` for anything else).
pub(crate) fn event_object(dialect: &'static str, data: &str) -> Result<Value, StreamError> {
    let v: Value = serde_json::from_str(data)
        .map_err(|e| malformed(dialect, format!("{e}: {}", clip(data))))?;
    if !v.is_object() {
        return Err(malformed(dialect, format!("not an object: {}", clip(data))));
    }
    Ok(v)
}

/// `v[key]` as a string, `""` when absent or not one.
pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An image as a `data:` URL (both OpenAI dialects).
pub(crate) fn data_url(image: &crate::transcript::Image) -> String {
    format!("data:{};base64,{}", image.mime_type, image.data)
}

/// Tool call ids as the reference replays them: non-alphanumerics removed
/// (`call_1a6c0b9a` → `call1a6c0b9a`).
pub fn sanitize_call_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

/// Cuts `s` for an error message.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
