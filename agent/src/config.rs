//! The agent's configuration, as `gateway.toml` spells it (the reference's names in TOML):
//!
//! ```toml
//! [agent]
//! model = "local/qwen2.5"            # <provider>/<model>
//! workspace = "/var/lib/pincer/workspace"   # AGENTS.md and friends feed the system prompt
//!
//! [models.providers.local]
//! base_url = "http://127.0.0.1:8080/v1"
//! api = "openai-completions"         # | "openai-responses" | "anthropic-messages"
//! api_key = "${LOCAL_KEY}"           # a literal, or ${ENV_VAR}
//! models = [{ id = "qwen2.5", name = "Qwen 2.5", context_tokens = 32768 }]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::provider::Api;

/// `[models]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// `[models.providers.<id>]`.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
}

/// One provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `http(s)://host[:port][/prefix]`; the dialect's path is appended.
    pub base_url: String,
    /// The dialect.
    pub api: Api,
    /// The key: a literal or `${ENV_VAR}`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Its models.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// Seconds to wait for response headers (default 60).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl ProviderConfig {
    /// The key with `${VAR}` resolved from the environment; `Err(var)` when it is unset.
    pub fn resolved_key(&self) -> Result<Option<String>, String> {
        match self.api_key.as_deref() {
            None | Some("") => Ok(None),
            Some(k) => match k.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                Some(var) => std::env::var(var).map(Some).map_err(|_| var.to_owned()),
                None => Ok(Some(k.to_owned())),
            },
        }
    }
}

/// One model of a provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id the provider knows it by.
    pub id: String,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its context window in tokens (default 32768): the history sent is cut to fit.
    #[serde(default)]
    pub context_tokens: Option<u64>,
}

/// `[agent]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// `<provider>/<model>` used when a session has no override.
    #[serde(default)]
    pub model: Option<String>,
    /// The workspace folder (default `<state_dir>/workspace`).
    #[serde(default)]
    pub workspace: Option<PathBuf>,
    /// The assistant's name (default "Assistant").
    #[serde(default)]
    pub name: Option<String>,
    /// Model calls per run (tool iterations + 1), default 8.
    #[serde(default)]
    pub max_model_calls: Option<u32>,
    /// Milliseconds a tool call may take (default 60000).
    #[serde(default)]
    pub tool_timeout_ms: Option<u64>,
    /// Milliseconds a stream may stay silent before the run fails (default 60000).
    #[serde(default)]
    pub stream_idle_ms: Option<u64>,
    /// Sessions kept (default 200).
    #[serde(default)]
    pub max_sessions: Option<usize>,
}

/// Everything the runtime needs, resolved.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Default `<provider>/<model>`.
    pub model: Option<String>,
    /// Providers by id.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Where the session store lives.
    pub sessions_dir: PathBuf,
    /// The workspace folder.
    pub workspace: PathBuf,
    /// The assistant's name.
    pub name: String,
    /// Model calls per run.
    pub max_model_calls: u32,
    /// Tool call deadline.
    pub tool_timeout_ms: u64,
    /// Stream idle deadline.
    pub stream_idle_ms: u64,
    /// Store bounds.
    pub store: crate::store::Limits,
    /// Tool output kept per call, bytes of text (longer is cut, with a note).
    pub max_tool_output: usize,
}

impl AgentConfig {
    /// Resolves the file sections against the gateway's state dir.
    pub fn resolve(
        section: &AgentSection,
        models: &ModelsConfig,
        state_dir: &std::path::Path,
    ) -> AgentConfig {
        let mut store = crate::store::Limits::default();
        if let Some(n) = section.max_sessions {
            store.max_sessions = n.max(1);
        }
        AgentConfig {
            model: section.model.clone(),
            providers: models.providers.clone(),
            sessions_dir: state_dir.join("agents").join("main").join("sessions"),
            workspace: section
                .workspace
                .clone()
                .unwrap_or_else(|| state_dir.join("workspace")),
            name: section.name.clone().unwrap_or_else(|| "Assistant".into()),
            max_model_calls: section.max_model_calls.unwrap_or(8).clamp(1, 64),
            tool_timeout_ms: section.tool_timeout_ms.unwrap_or(60_000).max(100),
            stream_idle_ms: section.stream_idle_ms.unwrap_or(60_000).max(100),
            store,
            max_tool_output: 64 * 1024,
        }
    }

    /// `<provider>/<model>` split and looked up.
    pub fn model_ref<'a>(&'a self, reference: &str) -> Result<ModelRef<'a>, String> {
        let (p, m) = reference.split_once('/').ok_or_else(|| {
            format!(
                "model \"{reference}\" is not <provider>/<model> ([agent] model in gateway.toml)"
            )
        })?;
        let provider = self.providers.get(p).ok_or_else(|| {
            format!(
                "model \"{reference}\": no provider \"{p}\" ([models.providers.{p}] base_url, api, api_key in gateway.toml)"
            )
        })?;
        Ok(ModelRef {
            provider_id: p.to_owned(),
            model: m.to_owned(),
            provider,
            context_tokens: provider
                .models
                .iter()
                .find(|x| x.id == m)
                .and_then(|x| x.context_tokens)
                .unwrap_or(32_768),
        })
    }
}

/// A model to call.
#[derive(Debug, Clone)]
pub struct ModelRef<'a> {
    /// The provider's id.
    pub provider_id: String,
    /// The model id.
    pub model: String,
    /// The provider.
    pub provider: &'a ProviderConfig,
    /// Its context window.
    pub context_tokens: u64,
}

/// The error a run ends with when no model is configured: it names the keys to set.
pub const NO_MODEL: &str = "no model configured: set [agent] model = \"<provider>/<model>\" and [models.providers.<provider>] base_url, api, api_key in gateway.toml";
