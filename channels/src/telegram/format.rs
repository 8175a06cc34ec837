//! A model's Markdown as Telegram renders it: `parse_mode: "HTML"` with the few tags the Bot
//! API knows (`b i s code pre a blockquote`), everything else escaped. The output is always
//! well-formed (tags are emitted in pairs, `&`, `<`, `>` and `"` are escaped), so a reply with
//! `<`, `_` or `*` in it never fails to send; unmatched markers stay as text.
//!
//! Long replies are split by [`chunks`] on the Markdown, at paragraph, then line, then word
//! boundaries; a code block cut in two is closed and reopened, so every chunk renders alone.

/// Escapes text for Telegram HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        c => out.push(c),
    }
}

/// Markdown → Telegram HTML.
pub fn html(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + 32);
    let mut lines = md.split('\n').peekable();
    let mut first = true;
    while let Some(line) = lines.next() {
        if !first {
            out.push('\n');
        }
        first = false;
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            // A fenced block: verbatim up to the closing fence (or the end).
            let lang: String = lang
                .trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '#'))
                .collect();
            let mut body = Vec::new();
            for l in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    break;
                }
                body.push(l);
            }
            if lang.is_empty() {
                out.push_str("<pre>");
            } else {
                out.push_str(&format!("<pre><code class=\"language-{lang}\">"));
            }
            out.push_str(&escape(&body.join("\n")));
            out.push_str(if lang.is_empty() {
                "</pre>"
            } else {
                "</code></pre>"
            });
            continue;
        }
        if let Some(h) = heading(trimmed) {
            out.push_str("<b>");
            out.push_str(&inline(h));
            out.push_str("</b>");
        } else if let Some(q) = trimmed
            .strip_prefix("> ")
            .or(trimmed.strip_prefix('>').filter(|q| q.is_empty()))
        {
            out.push_str("<blockquote>");
            out.push_str(&inline(q));
            out.push_str("</blockquote>");
        } else {
            out.push_str(&inline(line));
        }
    }
    out
}

fn heading(line: &str) -> Option<&str> {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    if (1..=6).contains(&hashes) {
        line[hashes..].strip_prefix(' ').map(str::trim)
    } else {
        None
    }
}

/// Inline markup of one line: `code`, **bold**, __bold__, *italic*, _italic_, ~~strike~~,
/// [text](url).
fn inline(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            if let Some(end) = find(&chars, i + 1, &['`']) {
                let code: String = chars[i + 1..end].iter().collect();
                out.push_str("<code>");
                out.push_str(&escape(&code));
                out.push_str("</code>");
                i = end + 1;
                continue;
            }
        }
        if c == '[' {
            if let Some((text, url, next)) = link(&chars, i) {
                out.push_str(&format!(
                    "<a href=\"{}\">{}</a>",
                    escape(&url),
                    inline(&text)
                ));
                i = next;
                continue;
            }
        }
        let pairs: [(&[char], &str); 5] = [
            (&['*', '*'], "b"),
            (&['_', '_'], "b"),
            (&['~', '~'], "s"),
            (&['*'], "i"),
            (&['_'], "i"),
        ];
        let mut matched = false;
        for (marker, tag) in pairs {
            if !starts(&chars, i, marker) {
                continue;
            }
            let from = i + marker.len();
            // `*x*` yes, `* x` (a list bullet) or `2*3` no; `_` inside a word (snake_case) no.
            let opens = chars.get(from).is_some_and(|c| !c.is_whitespace())
                && !(marker[0] == '_' && i > 0 && chars[i - 1].is_alphanumeric());
            if !opens {
                continue;
            }
            if let Some(end) = find(&chars, from, marker) {
                let closes = end > from
                    && !chars[end - 1].is_whitespace()
                    && !(marker[0] == '_'
                        && chars
                            .get(end + marker.len())
                            .is_some_and(|c| c.is_alphanumeric()));
                if closes {
                    let inner: String = chars[from..end].iter().collect();
                    out.push_str(&format!("<{tag}>{}</{tag}>", inline(&inner)));
                    i = end + marker.len();
                    matched = true;
                    break;
                }
            }
        }
        if matched {
            continue;
        }
        push_escaped(&mut out, c);
        i += 1;
    }
    out
}

fn starts(chars: &[char], at: usize, marker: &[char]) -> bool {
    chars.len() >= at + marker.len() && chars[at..at + marker.len()] == *marker
}

/// The next `marker` at or after `from`.
fn find(chars: &[char], from: usize, marker: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&j| starts(chars, j, marker))
}

/// `[text](url)` at `at`: text, url, and the index after it. Only http(s), mailto and tg links.
fn link(chars: &[char], at: usize) -> Option<(String, String, usize)> {
    let close = find(chars, at + 1, &[']'])?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = find(chars, close + 2, &[')'])?;
    let text: String = chars[at + 1..close].iter().collect();
    let url: String = chars[close + 2..end].iter().collect();
    let ok = ["http://", "https://", "mailto:", "tg://"]
        .iter()
        .any(|p| url.starts_with(p))
        && !url.contains(char::is_whitespace);
    (ok && !text.is_empty()).then_some((text, url, end + 1))
}

/// Splits `md` into pieces of at most `limit` characters, at the best boundary available: a
/// blank line, a line end, a space, else anywhere. A code fence open at a cut is closed at the
/// end of its piece and reopened at the start of the next.
pub fn chunks(md: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(64);
    let mut out = Vec::new();
    let mut rest: &str = md;
    let mut reopen: Option<String> = None;
    while !rest.is_empty() {
        let prefix = reopen.take().map(|f| format!("{f}\n")).unwrap_or_default();
        // Room for the prefix and a closing fence.
        let room = limit.saturating_sub(prefix.chars().count() + 4).max(16);
        let (piece, next) = if rest.chars().count() <= room {
            (rest, "")
        } else {
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            let window = &rest[..cut];
            let at = window
                .rfind("\n\n")
                .filter(|&i| i > 0)
                .or_else(|| window.rfind('\n').filter(|&i| i > 0))
                .or_else(|| window.rfind(' ').filter(|&i| i > 0))
                .unwrap_or(cut);
            (&rest[..at], rest[at..].trim_start_matches([' ', '\n']))
        };
        let mut text = format!("{prefix}{piece}");
        // Is a fence open at the end of this piece?
        let mut open: Option<String> = None;
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with("```") {
                open = match open {
                    Some(_) => None,
                    None => Some(t.to_owned()),
                };
            }
        }
        if let Some(fence) = open {
            if !next.is_empty() {
                text.push_str("\n```");
                reopen = Some(fence);
            }
        }
        if !text.trim().is_empty() {
            out.push(text);
        }
        rest = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_the_tags_telegram_knows() {
        assert_eq!(
            html("**bold** and *it* and `a<b`"),
            "<b>bold</b> and <i>it</i> and <code>a&lt;b</code>"
        );
        assert_eq!(html("# Title\ntext"), "<b>Title</b>\ntext");
        assert_eq!(
            html("see [docs](https://x.org/?a=1&b=2)"),
            "see <a href=\"https://x.org/?a=1&amp;b=2\">docs</a>"
        );
        assert_eq!(html("~~gone~~"), "<s>gone</s>");
        assert_eq!(
            html("```rust\nlet a = b < c && d;\n```\nafter"),
            "<pre><code class=\"language-rust\">let a = b &lt; c &amp;&amp; d;</code></pre>\nafter"
        );
        assert_eq!(html("> quoted"), "<blockquote>quoted</blockquote>");
    }

    #[test]
    fn stray_markers_and_html_stay_text() {
        assert_eq!(
            html("2 * 3 = 6, snake_case_name, <script>"),
            "2 * 3 = 6, snake_case_name, &lt;script&gt;"
        );
        assert_eq!(html("* item\n* item"), "* item\n* item");
        assert_eq!(html("**unclosed"), "**unclosed");
        assert_eq!(html("[x](javascript:alert(1))"), "[x](javascript:alert(1))");
        assert_eq!(html("a \"quote\" & more"), "a &quot;quote&quot; &amp; more");
    }

    /// Every output has balanced tags (the property that keeps sendMessage from failing).
    #[test]
    fn the_output_is_always_balanced() {
        let inputs = [
            "*a **b* c**",
            "_a __b_ c__",
            "`x",
            "```\nno end",
            "[a](http://x",
            "**",
            "__init__",
            "<b>not a tag</b>",
            "~~~~",
            "*_*_",
            "[**b**](https://x.y)",
            "# # #",
            ">",
        ];
        for s in inputs {
            let h = html(s);
            let mut stack = Vec::new();
            let mut rest = h.as_str();
            while let Some(i) = rest.find('<') {
                let j = rest[i..].find('>').map(|j| i + j).unwrap();
                let tag = &rest[i + 1..j];
                if let Some(t) = tag.strip_prefix('/') {
                    assert_eq!(stack.pop(), Some(t.to_owned()), "{s:?} → {h:?}");
                } else {
                    stack.push(tag.split(' ').next().unwrap().to_owned());
                }
                rest = &rest[j + 1..];
            }
            assert!(stack.is_empty(), "{s:?} → {h:?}");
        }
    }

    #[test]
    fn long_text_splits_at_boundaries_and_keeps_everything() {
        let para = "word ".repeat(300); // 1500 chars
        let md = format!("{para}\n\n{para}\n\n{para}");
        let parts = chunks(&md, 2000);
        assert_eq!(
            parts.len(),
            3,
            "{:?}",
            parts.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        assert!(parts.iter().all(|p| p.chars().count() <= 2000));
        let words: usize = parts.iter().map(|p| p.split_whitespace().count()).sum();
        assert_eq!(words, 900, "nothing lost");
        let ten_k: String = (0..10_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let parts = chunks(&ten_k, 4000);
        assert_eq!(parts.concat(), ten_k, "an unbroken string is cut, in order");
        assert!(parts.iter().all(|p| p.chars().count() <= 4000));
    }

    #[test]
    fn a_code_block_cut_in_two_renders_in_both_pieces() {
        let code: String = (0..200).map(|i| format!("line {i}\n")).collect();
        let md = format!("```sh\n{code}```");
        let parts = chunks(&md, 500);
        assert!(parts.len() > 2);
        for p in &parts {
            assert!(p.trim_start().starts_with("```"), "{p}");
            assert_eq!(p.matches("```").count() % 2, 0, "{p}");
            assert!(html(p).starts_with("<pre>"), "{p}");
        }
    }
}
