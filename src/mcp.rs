//! `ptt mcp-permission --task <uuid>`: the permission-prompt server a task's
//! Claude CLI runs, so that what the task wants to do is asked of the user.
//!
//! Why an MCP server and not a `PreToolUse` hook returning `defer`: with the
//! pinned CLI (2.1.329) a deferred hook *ends* the run (`terminal_reason:
//! "tool_deferred"`), and the answer needs a second `claude -p --resume` run
//! that starts from scratch (a new process, a new reaper, the prompt cache
//! cold) and whose hooks run in a session of their own, outside the task's
//! process group. A permission-prompt tool keeps the run alive while it
//! waits: the CLI starts this server as its own child (same process group,
//! same `PTT_TASK_ID`, so cancel and the sweep reach it), calls the tool once
//! per request and waits for as long as the call takes. The cost is one idle
//! process per task, and that nothing in the CLI's output says a task waits:
//! the daemon learns it from this server's request.
//!
//! The protocol is JSON-RPC 2.0, one message per line on stdin/stdout (MCP's
//! stdio transport). The CLI sends `server/discover` (answered "method not
//! found"), `initialize`, `notifications/initialized`, `tools/list`, then a
//! `tools/call` of `ask` with `{"tool_name", "input", "tool_use_id"}` per
//! request. The answer is the text of the tool result: the JSON the daemon
//! returns (`{"behavior":"allow","updatedInput":…}` or
//! `{"behavior":"deny","message":…}`). Each call is asked on a thread of its
//! own, so the server keeps answering (pings, a second call) while one waits;
//! if the daemon cannot be reached the request is denied, never left hanging.
//! [`handle`] is the pure part: a message in, what to do out.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::control::client;
use crate::control::protocol::Request;
use crate::tasks::permission::TOOL_NAME;

/// Protocol version answered when the client names none.
const DEFAULT_PROTOCOL: &str = "2025-06-18";
/// Longest line read from the CLI.
const MAX_LINE: u64 = 4 << 20;

/// What to do with one incoming message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Write this response.
    Reply(Value),
    /// Ask the daemon with these `tools/call` arguments, then answer request `id`.
    Ask { id: Value, arguments: Value },
    /// A notification (or a response): nothing to say.
    Nothing,
}

/// The pure protocol: one parsed message in, one step out.
pub(crate) fn handle(msg: &Value) -> Step {
    let Some(id) = msg.get("id").cloned() else { return Step::Nothing };
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        // A response to something we never sent.
        return Step::Nothing;
    };
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => {
            let version = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(DEFAULT_PROTOCOL);
            Step::Reply(result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": { "tools": {} },
                    "serverInfo": { "name": "ptt", "version": env!("CARGO_PKG_VERSION") },
                }),
            ))
        }
        "ping" => Step::Reply(result(id, json!({}))),
        "tools/list" => Step::Reply(result(
            id,
            json!({ "tools": [{
                "name": TOOL_NAME,
                "description": "Asks the ptt user whether the task may use a tool its permission mode does not allow.",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "tool_name": { "type": "string" },
                        "input": { "type": "object" },
                        "tool_use_id": { "type": "string" },
                    },
                    "required": ["tool_name", "input"],
                },
            }]}),
        )),
        "tools/call" => match params.get("name").and_then(Value::as_str) {
            Some(TOOL_NAME) => Step::Ask { id, arguments: params.get("arguments").cloned().unwrap_or(Value::Null) },
            other => Step::Reply(error(id, -32602, &format!("unknown tool {}", other.unwrap_or("(none)")))),
        },
        _ => Step::Reply(error(id, -32601, &format!("method not found: {method}"))),
    }
}

fn result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// The `tools/call` response carrying the daemon's answer as its text.
pub(crate) fn tool_result(id: Value, answer: &Value) -> Value {
    result(id, json!({ "content": [{ "type": "text", "text": answer.to_string() }] }))
}

/// A denial in the CLI's shape, for when the daemon cannot answer.
pub(crate) fn deny(message: &str) -> Value {
    json!({ "behavior": "deny", "message": message })
}

/// Asks the daemon and waits as long as it takes (the daemon always answers:
/// the user, a timeout, or the task's end).
pub(crate) fn ask_daemon(socket: &Path, task: &str, arguments: Value) -> Value {
    let req = Request::PermissionAsk { task: task.to_string(), arguments };
    match client::request_waiting(socket, &req) {
        Ok(answer) if answer.get("behavior").and_then(Value::as_str).is_some() => answer,
        Ok(other) => deny(&format!("ptt could not ask the user: {other}")),
        Err(e) => deny(&format!("ptt could not ask the user: {e}")),
    }
}

/// Serves the CLI on stdin/stdout until it closes stdin.
pub(crate) fn run(socket: PathBuf, task: String) -> std::io::Result<()> {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let write = |out: &Mutex<std::io::Stdout>, v: &Value| {
        let mut line = v.to_string();
        line.push('\n');
        if let Ok(mut o) = out.lock() {
            let _ = o.write_all(line.as_bytes());
            let _ = o.flush();
        }
    };
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut line = Vec::new();
        if (&mut stdin).take(MAX_LINE).read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) => {
                write(
                    &out,
                    &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("parse error: {e}")}}),
                );
                continue;
            }
        };
        match handle(&msg) {
            Step::Reply(v) => write(&out, &v),
            Step::Nothing => {}
            Step::Ask { id, arguments } => {
                let (out2, socket2, task2) = (Arc::clone(&out), socket.clone(), task.clone());
                let (id2, arguments2) = (id.clone(), arguments.clone());
                let spawned = std::thread::Builder::new().name("ask".into()).spawn(move || {
                    let answer = ask_daemon(&socket2, &task2, arguments2);
                    write(&out2, &tool_result(id2, &answer));
                });
                if spawned.is_err() {
                    // No thread to spare: ask inline rather than leave the call unanswered.
                    write(&out, &tool_result(id, &ask_daemon(&socket, &task, arguments)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(line: &str) -> Step {
        handle(&serde_json::from_str(line).expect("json"))
    }

    #[test]
    fn the_handshake_the_cli_makes() {
        // As sent by the CLI 2.1.329 (recorded with a logging server).
        let discover = step(
            r#"{"jsonrpc":"2.0","id":"server-discover-probe-1","method":"server/discover","params":{"_meta":{}}}"#,
        );
        let Step::Reply(v) = discover else { panic!("{discover:?}") };
        assert_eq!(v["error"]["code"], -32601);
        assert_eq!(v["id"], "server-discover-probe-1");
        let init = step(
            r#"{"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},
            "clientInfo":{"name":"claude-code","version":"2.1.329"}},"jsonrpc":"2.0","id":0}"#,
        );
        let Step::Reply(v) = init else { panic!("{init:?}") };
        assert_eq!(v["result"]["protocolVersion"], "2025-11-25");
        assert_eq!(v["id"], 0);
        assert!(v["result"]["capabilities"]["tools"].is_object());
        assert_eq!(step(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), Step::Nothing);
        let Step::Reply(v) = step(r#"{"method":"tools/list","jsonrpc":"2.0","id":1}"#) else { panic!() };
        assert_eq!(v["result"]["tools"][0]["name"], TOOL_NAME);
        let Step::Reply(v) = step(r#"{"method":"ping","jsonrpc":"2.0","id":9}"#) else { panic!() };
        assert_eq!(v["result"], json!({}));
    }

    #[test]
    fn a_call_is_asked_with_its_arguments() {
        let call = step(
            r#"{"method":"tools/call","params":{"name":"ask","arguments":{"tool_name":"Bash",
            "input":{"command":"python3 -c 1","description":"d"},"tool_use_id":"toolu_1"},
            "_meta":{"claudecode/toolUseId":"toolu_1","progressToken":2}},"jsonrpc":"2.0","id":2}"#,
        );
        let Step::Ask { id, arguments } = call else { panic!("{call:?}") };
        assert_eq!(id, 2);
        assert_eq!(arguments["tool_name"], "Bash");
        assert_eq!(arguments["input"]["command"], "python3 -c 1");
        let Step::Reply(v) = step(r#"{"method":"tools/call","params":{"name":"other"},"jsonrpc":"2.0","id":3}"#) else {
            panic!()
        };
        assert_eq!(v["error"]["code"], -32602);
    }

    #[test]
    fn the_answer_is_the_text_of_the_tool_result() {
        let answer = json!({"behavior": "deny", "message": "no"});
        let v = tool_result(json!(2), &answer);
        let text = v["result"]["content"][0]["text"].as_str().expect("text");
        assert_eq!(serde_json::from_str::<Value>(text).expect("json"), answer);
    }

    #[test]
    fn an_unreachable_daemon_means_deny() {
        let dir = tempfile::tempdir().expect("tmp");
        let v = ask_daemon(&dir.path().join("none.sock"), "u", json!({"tool_name": "Bash", "input": {}}));
        assert_eq!(v["behavior"], "deny");
        assert!(v["message"].as_str().unwrap_or("").contains("not running"), "{v}");
    }
}
