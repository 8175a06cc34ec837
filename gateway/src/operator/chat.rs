//! `pincer-gateway chat`: a terminal chat with the gateway's assistant — `chat.send`, then the
//! run's `chat` deltas printed as they stream, until its final (or error, or abort).

use std::io::{BufRead, Write};

use pincer_client::session::Session;
use serde_json::json;

use super::call::{session, CallOptions};
use super::CliError;

/// Sends `message` to `session_key` and prints the reply as it streams; the reply's text.
pub async fn turn(
    s: &mut Session,
    session_key: &str,
    message: &str,
    out: &mut (dyn Write + Send),
) -> Result<String, CliError> {
    let run_id = pincer_os::uuid_v4();
    let r = s
        .request(
            "chat.send",
            &json!({ "sessionKey": session_key, "message": message, "idempotencyKey": run_id }),
        )
        .await?;
    let run_id = r["runId"].as_str().unwrap_or(&run_id).to_owned();
    let mut shown = String::new();
    loop {
        let e = s.next_event().await.map_err(|c| CliError::Closed {
            code: c.code,
            reason: c.reason,
        })?;
        if e.event.as_str() != "chat" {
            continue;
        }
        let Some(p) = e.payload else { continue };
        if p["runId"] != run_id.as_str() {
            continue;
        }
        let text = p["message"]["content"][0]["text"].as_str().unwrap_or("");
        match p["state"].as_str() {
            Some("delta") => {
                if p["replace"] == true || !text.starts_with(shown.as_str()) {
                    let _ = write!(out, "\n{text}");
                } else {
                    let _ = write!(out, "{}", &text[shown.len()..]);
                }
                shown = text.to_owned();
                let _ = out.flush();
            }
            Some("final") => {
                if text.len() > shown.len() && text.starts_with(shown.as_str()) {
                    let _ = write!(out, "{}", &text[shown.len()..]);
                }
                let _ = writeln!(out);
                return Ok(text.to_owned());
            }
            Some("error") => {
                let _ = writeln!(out);
                return Err(CliError::Result(
                    p["errorMessage"]
                        .as_str()
                        .unwrap_or("the run failed")
                        .to_owned(),
                ));
            }
            Some("aborted") => {
                let _ = writeln!(out, " [aborted]");
                return Err(CliError::Result("the run was aborted".into()));
            }
            _ => {}
        }
    }
}

/// One message (`--message`), or a prompt loop on stdin until EOF.
pub async fn run(
    opts: &CallOptions,
    session_key: &str,
    message: Option<&str>,
) -> Result<(), CliError> {
    let mut s = session(opts).await?;
    let mut out = std::io::stdout();
    if let Some(m) = message {
        turn(&mut s, session_key, m, &mut out).await?;
        s.close().await;
        return Ok(());
    }
    let stdin = std::io::stdin();
    loop {
        let _ = write!(out, "> ");
        let _ = out.flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Err(e) = turn(&mut s, session_key, line, &mut out).await {
            eprintln!("error: {e}");
            if matches!(e, CliError::Closed { .. } | CliError::Client(_)) {
                return Err(e);
            }
        }
    }
    s.close().await;
    Ok(())
}
