//! `ptt live --text`: a typed conversation with the live session.
//!
//! There is only ever one owner of the tasks. When a daemon runs, this command
//! attaches to it over the control socket (the daemon runs the session; this
//! process only types and prints). When none runs, this process becomes the
//! daemon for as long as the conversation lasts: same supervisor, same socket
//! (so `ptt tasks` works from another shell), and its tasks stop when it ends.

use std::io::{BufRead, BufReader, Write};

use serde::Deserialize;
use serde_json::Value;

use crate::control::client::{self, ClientError};
use crate::control::reply::{Failure, LiveLine};
use crate::paths::Paths;

/// Runs the text conversation; returns the exit status.
pub(crate) fn run(paths: &Paths) -> i32 {
    match client::connect(&paths.socket()) {
        Ok(stream) => attached(stream),
        Err(ClientError::NotRunning(_)) => owned(paths),
        Err(e) => {
            eprintln!("ptt: {e}");
            super::EXIT_FAILED
        }
    }
}

fn attached(stream: std::os::unix::net::UnixStream) -> i32 {
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ptt: {e}");
            return super::EXIT_FAILED;
        }
    };
    if client::send_all(&writer, b"{\"cmd\":\"live_attach\"}\n").is_err() {
        eprintln!("ptt: the daemon closed the connection");
        return super::EXIT_FAILED;
    }
    let input = std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let mut msg = serde_json::json!({"cmd": "say", "text": text}).to_string();
            msg.push('\n');
            if client::send_all(&writer, msg.as_bytes()).is_err() {
                return;
            }
        }
        // End of input: hang up our half; the daemon detaches us and closes.
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    let mut status = 0;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Ok(ev) = serde_json::from_str::<Value>(&line) else { continue };
        if print_event(&ev) {
            status = super::EXIT_FAILED;
        }
    }
    drop(input);
    status
}

fn owned(paths: &Paths) -> i32 {
    eprintln!("ptt: no daemon is running; this conversation runs its own (its tasks stop when you leave)");
    // A conversation in a terminal: only warnings and errors interleave with it, unless asked.
    if std::env::var_os("PTT_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let (tx, rx) = crossbeam_channel::bounded::<Value>(1024);
    let printer = std::thread::spawn(move || {
        for ev in rx {
            let _ = print_event(&ev);
        }
    });
    let code = match crate::daemon::run_with(paths.clone(), Some(crate::daemon::LocalText { output: tx })) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ptt: {e:#}");
            super::EXIT_FAILED
        }
    };
    let _ = printer.join();
    code
}

/// One line per event, stable enough for scripts to read. A line is a
/// [`LiveLine`]; anything else is a request's [`Failure`] (printed) or noise
/// from a newer daemon (ignored). Returns true when the line reports a failure.
pub(crate) fn print_event(ev: &Value) -> bool {
    let line = match LiveLine::deserialize(ev) {
        Ok(line) => line,
        Err(e) => {
            if let Some(f) = Failure::of(ev) {
                eprintln!("ptt: {}", f.message);
                return true;
            }
            log::debug!("live: ignored a line this ptt cannot read ({e}): {ev}");
            return false;
        }
    };
    let text = match line {
        // A 2.x preamble (said before the tool calls of the same response) is marked as such.
        LiveLine::Assistant { text, phase } if phase.as_deref() == Some("commentary") => {
            format!("assistant (preamble): {text}")
        }
        LiveLine::Assistant { text, .. } => format!("assistant: {text}"),
        LiveLine::User { text } => format!("you (heard): {text}"),
        LiveLine::Notification { text, .. } | LiveLine::Progress { text, .. } => text,
        LiveLine::Tool { name, result } => {
            let id = result.get("task_id").and_then(Value::as_str).map(|i| format!(" {i}")).unwrap_or_default();
            format!("(tool {name}: {}{id})", result.get("status").and_then(Value::as_str).unwrap_or("?"))
        }
        LiveLine::Status { state, message } => match message.filter(|m| !m.is_empty()) {
            Some(m) => format!("(live: {state}: {m})"),
            None => format!("(live: {state})"),
        },
        LiveLine::Error { message } => {
            eprintln!("ptt: live: {message}");
            return true;
        }
        LiveLine::Unknown => {
            log::debug!("live: ignored a kind of line this ptt does not know: {ev}");
            return false;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::reply::to_value;

    #[test]
    fn failures_are_reported_and_unknown_lines_ignored() {
        assert!(print_event(&to_value(&LiveLine::Error { message: "HTTP 401".into() })));
        assert!(print_event(&to_value(&Failure::new("no key"))));
        assert!(!print_event(&serde_json::json!({"kind": "hologram", "frames": 3})));
        assert!(!print_event(&serde_json::json!({"something": "else"})));
        assert!(!print_event(&to_value(&LiveLine::status("connected", None))));
    }
}
