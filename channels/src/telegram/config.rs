//! `[channels.telegram]` in `gateway.toml`, named like the reference's
//! `channels.telegram.*` keys (snake_case here), and its resolved form.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The public Bot API.
pub const DEFAULT_API_ROOT: &str = "https://api.telegram.org";

/// Who may talk to the bot in a private chat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    /// Strangers get a pairing code to approve (the default).
    #[default]
    Pairing,
    /// Only `allow_from` (and approved pairings).
    Allowlist,
    /// Anyone (needs `allow_from = ["*"]`, as in the reference).
    Open,
    /// No private chats.
    Disabled,
}

/// Which session a private chat goes to (the reference's `session.dmScope`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DmScope {
    /// Every DM in the agent's main session, `agent:main:main` (the default: one assistant).
    #[default]
    Main,
    /// A session per sender: `agent:main:direct:<user id>`.
    PerPeer,
    /// A session per sender and channel: `agent:main:telegram:direct:<user id>`.
    PerChannelPeer,
}

/// Which groups the bot answers in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    /// Any group it is in.
    Open,
    /// Only groups listed under `groups` (the default).
    #[default]
    Allowlist,
    /// No groups.
    Disabled,
}

/// How a reply reaches the chat while the model writes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// One message when the reply is complete.
    Off,
    /// A draft message edited as the text grows, then finalised in place (the default here: on
    /// a phone the answer appears as it is written).
    #[default]
    Partial,
}

/// `[channels.telegram.groups."<chat id>"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    /// Answer only when mentioned (`@bot`) or replied to (default true).
    #[serde(default)]
    pub require_mention: Option<bool>,
}

/// `[channels.telegram.streaming]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingSection {
    /// `off` or `partial`.
    #[serde(default)]
    pub mode: Option<StreamMode>,
    /// Least time between two edits of the draft, ms (default 1000; Telegram allows about one
    /// edit per second per chat).
    #[serde(default)]
    pub edit_interval_ms: Option<u64>,
}

/// `[channels.telegram]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSection {
    /// Run the channel (default true when a token is configured).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The bot token from BotFather (`123456:ABC…`).
    #[serde(default)]
    pub bot_token: Option<String>,
    /// A file holding the token (first line).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Bot API base URL (default the public one; a local Bot API server or a test's fake).
    #[serde(default)]
    pub api_root: Option<String>,
    /// `pairing`, `allowlist`, `open` or `disabled`.
    #[serde(default)]
    pub dm_policy: Option<DmPolicy>,
    /// `main`, `per-peer` or `per-channel-peer`.
    #[serde(default)]
    pub dm_scope: Option<DmScope>,
    /// Numeric Telegram user ids (`tg:`/`telegram:` prefixes accepted), or `"*"`.
    #[serde(default)]
    pub allow_from: Vec<String>,
    /// `open`, `allowlist` or `disabled`.
    #[serde(default)]
    pub group_policy: Option<GroupPolicy>,
    /// User ids allowed to talk to the bot in groups (empty: anyone in an allowed group).
    #[serde(default)]
    pub group_allow_from: Vec<String>,
    /// Per-group settings; under `allowlist` the groups listed here are the allowed ones.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupSection>,
    /// Streaming of replies.
    #[serde(default)]
    pub streaming: StreamingSection,
    /// Characters per message before a reply is split (default 4000, at most 4096).
    #[serde(default)]
    pub text_chunk_limit: Option<usize>,
    /// Largest photo or file sent, MB (default 5).
    #[serde(default)]
    pub media_max_mb: Option<u64>,
    /// Long-poll timeout, s (default 30).
    #[serde(default)]
    pub poll_timeout_s: Option<u64>,
}

/// What is wrong with a `[channels.telegram]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TelegramConfigError {
    /// Enabled without any token source.
    #[error(
        "channels.telegram is enabled but has no bot token: set bot_token, token_file, or \
         TELEGRAM_BOT_TOKEN in the gateway's environment"
    )]
    NoToken,
    /// `token_file` unreadable.
    #[error("channels.telegram.token_file {path}: {why}")]
    TokenFile {
        /// The file.
        path: String,
        /// The OS error.
        why: String,
    },
    /// A token that cannot be a bot token.
    #[error("channels.telegram: the bot token does not look like <digits>:<secret>")]
    BadToken,
    /// `open` without `allow_from = ["*"]`.
    #[error("channels.telegram.dm_policy = \"open\" needs allow_from = [\"*\"]")]
    OpenWithoutStar,
    /// An `allow_from` entry that is not a user id.
    #[error("channels.telegram.{key}: {entry:?} is not a numeric Telegram user id")]
    BadUserId {
        /// `allow_from` or `group_allow_from`.
        key: &'static str,
        /// The entry.
        entry: String,
    },
}

/// `[channels.telegram]` resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct TelegramConfig {
    /// The token (never printed: see the `Debug` impl).
    pub token: String,
    /// Where it came from: `config`, `file` or `env` (the reference's `tokenSource`).
    pub token_source: &'static str,
    /// Bot API base URL.
    pub api_root: String,
    /// DM policy.
    pub dm_policy: DmPolicy,
    /// DM sessions.
    pub dm_scope: DmScope,
    /// Allowed DM senders; `None` inside means `"*"`.
    pub allow_from: Vec<i64>,
    /// `allow_from` had `"*"`.
    pub allow_any: bool,
    /// Group policy.
    pub group_policy: GroupPolicy,
    /// Allowed group senders (empty: anyone).
    pub group_allow_from: Vec<i64>,
    /// Groups by chat id: require a mention?
    pub groups: BTreeMap<i64, bool>,
    /// Streaming mode.
    pub stream: StreamMode,
    /// Least ms between draft edits.
    pub edit_interval_ms: u64,
    /// Characters per message.
    pub text_chunk_limit: usize,
    /// Largest media, bytes.
    pub media_max_bytes: u64,
    /// Long-poll timeout, s.
    pub poll_timeout_s: u64,
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("token", &"<redacted>")
            .field("api_root", &self.api_root)
            .field("dm_policy", &self.dm_policy)
            .field("allow_from", &self.allow_from)
            .field("group_policy", &self.group_policy)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// A user id from an `allow_from` entry (`123`, `tg:123`, `telegram:123`).
pub fn parse_user_id(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s
        .strip_prefix("telegram:")
        .or_else(|| s.strip_prefix("tg:"))
        .unwrap_or(s);
    s.parse::<i64>().ok()
}

impl TelegramSection {
    /// The resolved channel, `Ok(None)` when it is not to run (disabled, or no token and not
    /// explicitly enabled). `env_token` is `TELEGRAM_BOT_TOKEN`.
    pub fn resolve(
        &self,
        env_token: Option<String>,
    ) -> Result<Option<TelegramConfig>, TelegramConfigError> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let from_file = match &self.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| TelegramConfigError::TokenFile {
                        path: p.display().to_string(),
                        why: e.to_string(),
                    })?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let nonempty = |t: Option<String>| t.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let token = nonempty(self.bot_token.clone())
            .map(|t| (t, "config"))
            .or_else(|| nonempty(from_file).map(|t| (t, "file")))
            .or_else(|| nonempty(env_token).map(|t| (t, "env")));
        let Some((token, token_source)) = token else {
            return if self.enabled == Some(true) {
                Err(TelegramConfigError::NoToken)
            } else {
                Ok(None)
            };
        };
        let looks_right = token.split_once(':').is_some_and(|(id, secret)| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !looks_right {
            return Err(TelegramConfigError::BadToken);
        }
        let ids =
            |key: &'static str, list: &[String]| -> Result<(Vec<i64>, bool), TelegramConfigError> {
                let mut out = Vec::new();
                let mut any = false;
                for e in list {
                    if e.trim() == "*" {
                        any = true;
                        continue;
                    }
                    out.push(
                        parse_user_id(e).ok_or_else(|| TelegramConfigError::BadUserId {
                            key,
                            entry: e.clone(),
                        })?,
                    );
                }
                Ok((out, any))
            };
        let (allow_from, allow_any) = ids("allow_from", &self.allow_from)?;
        let (group_allow_from, _) = ids("group_allow_from", &self.group_allow_from)?;
        let dm_policy = self.dm_policy.unwrap_or_default();
        if dm_policy == DmPolicy::Open && !allow_any {
            return Err(TelegramConfigError::OpenWithoutStar);
        }
        let groups = self
            .groups
            .iter()
            .filter_map(|(id, g)| {
                Some((
                    id.trim().parse::<i64>().ok()?,
                    g.require_mention.unwrap_or(true),
                ))
            })
            .collect();
        Ok(Some(TelegramConfig {
            token,
            token_source,
            api_root: self
                .api_root
                .clone()
                .unwrap_or_else(|| DEFAULT_API_ROOT.to_owned()),
            dm_policy,
            dm_scope: self.dm_scope.unwrap_or_default(),
            allow_from,
            allow_any,
            group_policy: self.group_policy.unwrap_or_default(),
            group_allow_from,
            groups,
            stream: self.streaming.mode.unwrap_or_default(),
            edit_interval_ms: self.streaming.edit_interval_ms.unwrap_or(1000).max(250),
            text_chunk_limit: self.text_chunk_limit.unwrap_or(4000).clamp(256, 4096),
            media_max_bytes: self.media_max_mb.unwrap_or(5).clamp(1, 50) * 1024 * 1024,
            poll_timeout_s: self.poll_timeout_s.unwrap_or(30).clamp(1, 50),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> TelegramSection {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn token_sources_in_order_and_checked() {
        let s = section("bot_token = \"123:abc_DEF-9\"");
        assert_eq!(
            s.resolve(Some("9:env".into())).unwrap().unwrap().token,
            "123:abc_DEF-9"
        );
        let s = section("");
        assert_eq!(
            s.resolve(Some("9:env".into())).unwrap().unwrap().token,
            "9:env"
        );
        assert_eq!(s.resolve(None).unwrap(), None, "no token, not enabled: off");
        let s = section("enabled = true");
        assert_eq!(s.resolve(None), Err(TelegramConfigError::NoToken));
        let s = section("bot_token = \"not a token\"");
        assert_eq!(s.resolve(None), Err(TelegramConfigError::BadToken));
        let s = section("enabled = false\nbot_token = \"1:a\"");
        assert_eq!(s.resolve(None).unwrap(), None);
    }

    #[test]
    fn policies_and_ids() {
        let s = section("bot_token = \"1:a\"\ndm_policy = \"open\"");
        assert_eq!(s.resolve(None), Err(TelegramConfigError::OpenWithoutStar));
        let s = section("bot_token = \"1:a\"\ndm_policy = \"allowlist\"\nallow_from = [\"tg:42\", \"telegram:7\", \"9\"]\n[groups.\"-100123\"]\nrequire_mention = false");
        let c = s.resolve(None).unwrap().unwrap();
        assert_eq!(c.allow_from, vec![42, 7, 9]);
        assert_eq!(c.groups.get(&-100123), Some(&false));
        let s = section("bot_token = \"1:a\"\nallow_from = [\"@someone\"]");
        assert!(matches!(
            s.resolve(None),
            Err(TelegramConfigError::BadUserId { .. })
        ));
        let c = section("bot_token = \"1:SECRET\"")
            .resolve(None)
            .unwrap()
            .unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
        assert_eq!(c.dm_policy, DmPolicy::Pairing);
        assert_eq!(c.text_chunk_limit, 4000);
    }
}
