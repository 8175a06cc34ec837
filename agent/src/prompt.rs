//! What the model is told: the system prompt (who it is, where it runs, its tools, the
//! workspace's bootstrap files) and the part of the history that fits its context window.

use crate::config::AgentConfig;
use crate::store::Line;
use crate::transcript::{Message, StopReason};

/// Workspace files fed into the system prompt, in this order, when present (the reference's
/// bootstrap files).
pub const BOOTSTRAP_FILES: [&str; 6] = [
    "AGENTS.md",
    "SOUL.md",
    "IDENTITY.md",
    "USER.md",
    "TOOLS.md",
    "BOOTSTRAP.md",
];

/// Bytes of one bootstrap file kept (the rest is cut, with a note).
pub const MAX_BOOTSTRAP_FILE: usize = 20 * 1024;

/// Characters per token assumed when fitting history into a context window.
const CHARS_PER_TOKEN: u64 = 3;

/// The system prompt.
pub fn system_prompt(config: &AgentConfig) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut s = format!(
        "You are {}, a personal assistant running on a small Linux board through Pincer, an \
         OpenClaw-compatible gateway.\n## Tooling\n- nodes: list the paired boards and use their \
         camera, screen, audio and location\n- exec: run a shell command on a node\n\
         Answer briefly; use tools when the question needs the real world.\n## Runtime\n\
         agent=main | host={host} | time={}\n",
        config.name,
        stamp(pincer_os::now_ms()),
    );
    for name in BOOTSTRAP_FILES {
        let path = config.workspace.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut end = text.len().min(MAX_BOOTSTRAP_FILE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        s.push_str(&format!("\n## {name}\n{}", &text[..end]));
        if end < text.len() {
            s.push_str("\n… (cut)");
        }
        s.push('\n');
    }
    s
}

/// The history a model call gets: entries after the last reset, oldest dropped until it fits
/// `context_tokens` (a cut starts at a user turn, so no tool result loses its call); images
/// only from the newest user turn on (older ones become a note).
pub fn history(lines: Vec<Line>, context_tokens: u64, system_chars: usize) -> Vec<Message> {
    let after_reset = lines
        .iter()
        .rposition(|l| matches!(l.message, Message::Reset { .. }))
        .map_or(0, |i| i + 1);
    // A failed run's error note is for the people reading the history, not for the model.
    let mut msgs: Vec<Message> = lines
        .into_iter()
        .skip(after_reset)
        .map(|l| l.message)
        .filter(|m| {
            !matches!(
                m,
                Message::Assistant {
                    stop_reason: StopReason::Error,
                    ..
                }
            )
        })
        .collect();
    let budget = (context_tokens.saturating_mul(CHARS_PER_TOKEN) as usize)
        .saturating_sub(system_chars)
        .saturating_sub(16 * 1024); // the reply and the tool schemas
    let mut total = 0usize;
    let mut start = msgs.len();
    for (i, m) in msgs.iter().enumerate().rev() {
        total += size(m);
        if total > budget && start < msgs.len() {
            break;
        }
        if matches!(m, Message::User { .. }) {
            start = i;
        }
    }
    if start > 0 {
        tracing::debug!(dropped = start, "history cut to the context window");
        msgs.drain(..start);
    }
    let last_user = msgs
        .iter()
        .rposition(|m| matches!(m, Message::User { .. }))
        .unwrap_or(0);
    for m in msgs.iter_mut().take(last_user) {
        if let Message::User { images, text, .. } | Message::ToolResult { images, text, .. } = m {
            if !images.is_empty() {
                text.push_str(&format!("\n[{} image(s) shown earlier]", images.len()));
                images.clear();
            }
        }
    }
    msgs
}

fn size(m: &Message) -> usize {
    match m {
        Message::User { text, images, .. } | Message::ToolResult { text, images, .. } => {
            text.len() + images.len() * 3000
        }
        Message::Assistant {
            text, tool_calls, ..
        } => {
            text.len()
                + tool_calls
                    .iter()
                    .map(|c| c.arguments.len() + 32)
                    .sum::<usize>()
        }
        Message::Reset { .. } => 0,
    }
}

/// `Tue 2026-12-01 12:31 UTC` for `ms` since the epoch (the reference's user-turn prefix).
pub fn stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let (y, mo, d) = pincer_os::civil_from_days(days);
    let wd = pincer_os::weekday(days);
    format!("{wd} {y:04}-{mo:02}-{d:02} {h:02}:{m:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_like_the_reference() {
        // 2026-12-01 12:31 UTC was a Tuesday.
        assert_eq!(stamp(1_796_128_260_000), "Tue 2026-12-01 12:31 UTC");
        assert_eq!(stamp(0), "Thu 1970-01-01 00:00 UTC");
        assert_eq!(stamp(951_782_400_000), "Tue 2000-02-29 00:00 UTC");
    }

    fn user(t: &str) -> Line {
        Line {
            seq: 0,
            message: Message::User {
                text: t.into(),
                images: vec![],
                timestamp: 0,
                run_id: None,
            },
        }
    }

    #[test]
    fn history_starts_after_a_reset_and_fits_the_window_from_a_user_turn() {
        let mut lines = vec![
            user("old"),
            Line {
                seq: 0,
                message: Message::Reset { timestamp: 0 },
            },
        ];
        for i in 0..100 {
            lines.push(user(&format!("{i}{}", "x".repeat(1000))));
        }
        let h = history(lines, 10_000, 1000);
        assert!(h.len() < 100 && !h.is_empty(), "{}", h.len());
        assert!(matches!(&h[0], Message::User { text, .. } if text != "old"));
        let h = history(
            vec![
                user("old"),
                Line {
                    seq: 0,
                    message: Message::Reset { timestamp: 0 },
                },
                user("new"),
            ],
            32_768,
            0,
        );
        assert_eq!(h.len(), 1);
    }
}
