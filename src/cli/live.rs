//! `ptt live --text`: a typed conversation with the live session.
//!
//! There is only ever one owner of the tasks. When a daemon runs, this command
//! attaches to it over the control socket (the daemon runs the session; this
//! process only types and prints). When none runs, this process becomes the
//! daemon for as long as the conversation lasts: same supervisor, same socket
//! (so `ptt tasks` works from another shell), and its tasks stop when it ends.

use std::io::{BufRead, BufReader, Write};

use serde_json::Value;

use crate::control::client::{self, ClientError};
use crate::control::reply::Failure;
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
        if Failure::of(&ev).is_some() || ev["kind"] == "error" {
            status = super::EXIT_FAILED;
        }
        print_event(&ev);
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
            print_event(&ev);
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

/// One line per event, stable enough for scripts to read.
pub(crate) fn print_event(ev: &Value) {
    let text = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("");
    let line = match ev.get("kind").and_then(Value::as_str) {
        // A 2.x preamble (said before the tool calls of the same response) is marked as such.
        Some("assistant") if text("phase") == "commentary" => format!("assistant (preamble): {}", text("text")),
        Some("assistant") => format!("assistant: {}", text("text")),
        Some("user") => format!("you (heard): {}", text("text")),
        Some("notification" | "progress") => text("text").to_string(),
        Some("tool") => {
            let r = &ev["result"];
            let id = r.get("task_id").and_then(Value::as_str).map(|i| format!(" {i}")).unwrap_or_default();
            format!("(tool {}: {}{id})", text("name"), r.get("status").and_then(Value::as_str).unwrap_or("?"))
        }
        Some("status") => {
            let m = text("message");
            format!("(live: {}{})", text("state"), if m.is_empty() { String::new() } else { format!(": {m}") })
        }
        Some("error") => {
            eprintln!("ptt: live: {}", text("message"));
            return;
        }
        _ => match Failure::of(ev) {
            Some(f) => {
                eprintln!("ptt: {}", f.message);
                return;
            }
            None => return,
        },
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
