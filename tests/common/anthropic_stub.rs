//! A tiny local stand-in for the Anthropic Messages API, so integration tests can
//! drive the real Claude Code CLI (`claude -p ... --output-format stream-json`)
//! offline, with real tool calls and real process trees.
//!
//! Point the CLI at it with `ANTHROPIC_BASE_URL=<stub.base_url>` and any
//! `ANTHROPIC_API_KEY`. The stub speaks just enough HTTP/1.1 (keep-alive,
//! `Content-Length` or chunked request bodies) and answers
//! `POST /v1/messages` with server-sent events in the order the real API uses:
//! `message_start`, `ping`, then per content block `content_block_start`,
//! `content_block_delta`s, `content_block_stop`, then `message_delta` and
//! `message_stop`. `HEAD`/`GET /api/hello` get an empty 200, anything else 404.
//!
//! It is stateless: a conversation is a sequence of requests, each carrying the
//! whole history. The scenario comes from a marker word in the prompt (the most
//! recent user message whose text contains a `SCENARIO_` marker, i.e. the first
//! user message in an ordinary single-prompt run), and the turn is the number
//! of assistant messages after that prompt:
//!
//! * `SCENARIO_WRITE_FILE <relative path> <word>`: turn 1 is a short text plus a
//!   `Write` tool call writing `<word>\n` to the path, made absolute against the
//!   "Primary working directory" the CLI reports in the request; turn 2 is the
//!   text `Wrote <path>. All done.`
//! * `SCENARIO_BASH_SLEEP <seconds>`: turn 1 is a `Bash` tool call running
//!   `sleep <seconds>` (in the foreground, timeout 10 min); turn 2 is the text
//!   `Done sleeping.` The CLI refuses a plain `sleep N` with N >= 25 outright,
//!   so such a sleep is sent as `sleep Ns` (still `sleep 30s` in `ps`).
//! * `SCENARIO_TEXT <words...>`: one text turn with those words.
//! * `SCENARIO_BASH_ASK <command...>`: turn 1 is a `Bash` tool call running the
//!   rest of the text (words joined by single spaces), a command that
//!   `acceptEdits` does not allow on its own (`python3 -c ...`); turn 2 is the
//!   text `Tool said: <the tool_result's text>`, so a test sees whether the
//!   model got the command's output or a refusal.
//! * `SCENARIO_WRITE_TWO <path1> <path2>`: turn 1 writes both files (two `Write`
//!   calls in one turn, contents `one\n` and `two\n`); turn 2 is `Wrote both.`
//! * `SCENARIO_WRITE_THEN_SLEEP <path> <seconds>`: turn 1 writes `<path>`
//!   (`before\n`), turn 2 runs `sleep <seconds>`, turn 3 is `Done.`
//! * anything else (and any turn past a script's end): the text `OK.`
//!
//! Usage numbers are realistic enough (input tokens ~ request bytes / 4) that
//! the CLI reports a `total_cost_usd` above zero.
#![allow(dead_code)] // each test binary uses its own subset of the common code

use serde_json::{Value, json};
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::http::{Request, Server, StopFlag, connection, read_request};

/// How often blocked reads wake up to check whether the stub was dropped.
const POLL: Duration = Duration::from_millis(200);
const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

/// A running stub server; dropping it stops the server.
pub struct AnthropicStub {
    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub base_url: String,
    shared: Arc<Shared>,
    /// Last: dropping it stops the threads.
    server: Server,
}

struct Shared {
    stop: AtomicBool,
    requests: AtomicUsize,
    next_id: AtomicUsize,
}

impl StopFlag for Shared {
    fn flag(&self) -> &AtomicBool {
        &self.stop
    }
}

impl AnthropicStub {
    /// Binds `127.0.0.1:0` and serves on background threads (one per connection).
    pub fn start() -> AnthropicStub {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            next_id: AtomicUsize::new(1),
        });
        let server = Server::start("anthropic-stub", Arc::clone(&shared), serve_connection);
        let addr = server.addr;
        AnthropicStub { base_url: format!("http://{addr}"), shared, server }
    }

    /// Number of `POST /v1/messages` requests served so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

fn serve_connection(stream: TcpStream, _number: u64, shared: Arc<Shared>) {
    let Some((mut reader, mut writer)) = connection(stream, &shared, POLL) else { return };
    loop {
        let request = match read_request(&mut reader, &mut writer) {
            // Problems that leave the framing intact (a missing Host, say) do not matter to this stub.
            Some(request) if !request.fatal => request,
            Some(_) => {
                let response = error_response("400 Bad Request", "invalid_request_error", "bad request");
                let _ = write_response(&mut writer, &shared, "", &response, false);
                break;
            }
            None => break, // clean end of the connection
        };
        let response = route(&request, &shared);
        let written = write_response(&mut writer, &shared, &request.method, &response, request.keep_alive);
        if written.is_err() || !request.keep_alive {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

fn write_response(
    writer: &mut TcpStream,
    shared: &Shared,
    method: &str,
    response: &Response,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
         request-id: req_01Stub{:012}\r\nConnection: {}\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len(),
        next_id(shared),
        if keep_alive { "keep-alive" } else { "close" },
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(&response.body);
    }
    writer.write_all(&out)?;
    writer.flush()
}

fn route(request: &Request, shared: &Shared) -> Response {
    match (request.method.as_str(), request.path()) {
        ("POST", "/v1/messages") => {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            messages(request, shared)
        }
        ("POST", "/v1/messages/count_tokens") => {
            let tokens = request.body.len() / 4 + 1;
            json_response("200 OK", &json!({ "input_tokens": tokens }))
        }
        ("HEAD" | "GET", "/api/hello") => Response { status: "200 OK", content_type: "text/plain", body: Vec::new() },
        _ => error_response(
            "404 Not Found",
            "not_found_error",
            &format!("anthropic stub: no route for {} {}", request.method, request.target),
        ),
    }
}

fn json_response(status: &'static str, value: &Value) -> Response {
    Response { status, content_type: "application/json", body: value.to_string().into_bytes() }
}

fn error_response(status: &'static str, kind: &str, message: &str) -> Response {
    json_response(status, &json!({ "type": "error", "error": { "type": kind, "message": message } }))
}

/// One content block of a scripted assistant turn.
enum Block {
    Text(String),
    ToolUse { name: &'static str, input: Value },
}

/// A scripted assistant turn.
struct Turn {
    blocks: Vec<Block>,
    stop_reason: &'static str,
}

impl Turn {
    fn text(text: impl Into<String>) -> Turn {
        Turn { blocks: vec![Block::Text(text.into())], stop_reason: "end_turn" }
    }
}

fn messages(request: &Request, shared: &Shared) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return error_response("400 Bad Request", "invalid_request_error", "anthropic stub: body is not JSON");
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or(DEFAULT_MODEL).to_string();
    let turn = script(&body);
    let input_tokens = request.body.len() / 4 + 1;
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        Response {
            status: "200 OK",
            content_type: "text/event-stream; charset=utf-8",
            body: sse_body(&turn, &model, input_tokens, shared).into_bytes(),
        }
    } else {
        json_response("200 OK", &plain_message(&turn, &model, input_tokens, shared))
    }
}

/// Picks the scripted turn answering this request.
fn script(body: &Value) -> Turn {
    let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    // The prompt: the latest user message whose own text carries a marker.
    let prompt = messages.iter().enumerate().rev().find_map(|(i, m)| {
        if m.get("role").and_then(Value::as_str) != Some("user") {
            return None;
        }
        user_texts(m).into_iter().find_map(|text| parse_marker(&text)).map(|marker| (i, marker))
    });
    let Some((index, marker)) = prompt else {
        return Turn::text("OK.");
    };
    let turn =
        messages[index + 1..].iter().filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant")).count();
    match (marker, turn) {
        (Marker::WriteFile { path, word }, 0) => {
            let file_path = absolute_path(body, &path);
            Turn {
                blocks: vec![
                    Block::Text(format!("I'll write {path}.")),
                    Block::ToolUse {
                        name: "Write",
                        input: json!({ "file_path": file_path, "content": format!("{word}\n") }),
                    },
                ],
                stop_reason: "tool_use",
            }
        }
        (Marker::WriteFile { path, .. }, 1) => Turn::text(format!("Wrote {path}. All done.")),
        (Marker::BashSleep { duration }, 0) => Turn {
            blocks: vec![
                Block::Text(format!("Running sleep {duration}.")),
                Block::ToolUse {
                    name: "Bash",
                    input: json!({
                        "command": format!("sleep {duration}"),
                        "description": format!("Sleep for {duration}"),
                        "timeout": 600_000,
                    }),
                },
            ],
            stop_reason: "tool_use",
        },
        (Marker::BashSleep { .. }, 1) => Turn::text("Done sleeping."),
        (Marker::Text(words), 0) if !words.is_empty() => Turn::text(words),
        (Marker::BashAsk { command }, 0) => Turn {
            blocks: vec![
                Block::Text("Running a command.".into()),
                Block::ToolUse {
                    name: "Bash",
                    input: json!({ "command": command, "description": "Run the requested command" }),
                },
            ],
            stop_reason: "tool_use",
        },
        (Marker::BashAsk { .. }, 1) => {
            Turn::text(format!("Tool said: {}", last_tool_result(&messages[index + 1..]).unwrap_or_default()))
        }
        (Marker::WriteTwo { first, second }, 0) => Turn {
            blocks: vec![
                Block::Text("Writing two files.".into()),
                Block::ToolUse {
                    name: "Write",
                    input: json!({ "file_path": absolute_path(body, &first), "content": "one\n" }),
                },
                Block::ToolUse {
                    name: "Write",
                    input: json!({ "file_path": absolute_path(body, &second), "content": "two\n" }),
                },
            ],
            stop_reason: "tool_use",
        },
        (Marker::WriteTwo { .. }, 1) => Turn::text("Wrote both."),
        (Marker::WriteThenSleep { path, .. }, 0) => Turn {
            blocks: vec![Block::ToolUse {
                name: "Write",
                input: json!({ "file_path": absolute_path(body, &path), "content": "before\n" }),
            }],
            stop_reason: "tool_use",
        },
        (Marker::WriteThenSleep { duration, .. }, 1) => Turn {
            blocks: vec![Block::ToolUse {
                name: "Bash",
                input: json!({
                    "command": format!("sleep {duration}"),
                    "description": format!("Sleep for {duration}"),
                    "timeout": 600_000,
                }),
            }],
            stop_reason: "tool_use",
        },
        (Marker::WriteThenSleep { .. }, 2) => Turn::text("Done."),
        _ => Turn::text("OK."),
    }
}

enum Marker {
    WriteFile { path: String, word: String },
    BashSleep { duration: String },
    Text(String),
    BashAsk { command: String },
    WriteTwo { first: String, second: String },
    WriteThenSleep { path: String, duration: String },
}

/// Finds a scenario marker word in one text block.
fn parse_marker(text: &str) -> Option<Marker> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|w| {
        matches!(
            *w,
            "SCENARIO_WRITE_FILE"
                | "SCENARIO_BASH_SLEEP"
                | "SCENARIO_TEXT"
                | "SCENARIO_BASH_ASK"
                | "SCENARIO_WRITE_TWO"
                | "SCENARIO_WRITE_THEN_SLEEP"
        )
    })?;
    let args = &words[at + 1..];
    match words[at] {
        "SCENARIO_WRITE_FILE" => match args {
            [path, word, ..] => Some(Marker::WriteFile { path: (*path).to_string(), word: (*word).to_string() }),
            _ => None,
        },
        "SCENARIO_BASH_SLEEP" => sleep_argument(args.first()?).map(|duration| Marker::BashSleep { duration }),
        "SCENARIO_BASH_ASK" => (!args.is_empty()).then(|| Marker::BashAsk { command: args.join(" ") }),
        "SCENARIO_WRITE_TWO" => match args {
            [first, second, ..] => {
                Some(Marker::WriteTwo { first: (*first).to_string(), second: (*second).to_string() })
            }
            _ => None,
        },
        "SCENARIO_WRITE_THEN_SLEEP" => match args {
            [path, seconds, ..] => {
                sleep_argument(seconds).map(|duration| Marker::WriteThenSleep { path: (*path).to_string(), duration })
            }
            _ => None,
        },
        _ => Some(Marker::Text(args.join(" "))),
    }
}

/// The CLI refuses a foreground `sleep N` with N >= 25 ("Blocked: standalone sleep N",
/// matched by `^sleep\s+(\d+(?:\.\d*)?)\s*$`), so long plain sleeps get an `s` suffix.
const CLI_SLEEP_BLOCK_SECONDS: f64 = 25.0;

/// Validates a `sleep` duration (`30`, `0.5`, `2m`, ...) and makes it one the CLI runs.
fn sleep_argument(arg: &str) -> Option<String> {
    let number = arg.strip_suffix(['s', 'm', 'h', 'd']).unwrap_or(arg);
    let valid =
        !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.') && number.parse::<f64>().is_ok();
    if !valid {
        return None;
    }
    let plain = number.len() == arg.len();
    match number.parse::<f64>() {
        Ok(seconds) if plain && seconds >= CLI_SLEEP_BLOCK_SECONDS => Some(format!("{arg}s")),
        _ => Some(arg.to_string()),
    }
}

/// The plain-text parts of a user message (not tool results).
fn user_texts(message: &Value) -> Vec<String> {
    match message.get("content") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The text of the most recent `tool_result` block in `messages` (a string, or
/// the text parts of a block list).
fn last_tool_result(messages: &[Value]) -> Option<String> {
    let blocks = messages.iter().rev().filter_map(|m| m.get("content").and_then(Value::as_array));
    blocks.flat_map(|b| b.iter().rev()).find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")).map(
        |b| match b.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        },
    )
}

/// Resolves `path` against the "Primary working directory" the CLI reports.
fn absolute_path(body: &Value, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    match find_working_dir(body) {
        Some(dir) => format!("{}/{}", dir.trim_end_matches('/'), path),
        None => path.to_string(),
    }
}

fn find_working_dir(value: &Value) -> Option<String> {
    const KEY: &str = "Primary working directory:";
    match value {
        Value::String(text) => {
            let start = text.find(KEY)? + KEY.len();
            let dir = text[start..].lines().next()?.trim();
            (!dir.is_empty()).then(|| dir.to_string())
        }
        Value::Array(items) => items.iter().find_map(find_working_dir),
        Value::Object(map) => {
            // The system prompt first, then everything else.
            map.get("system").and_then(find_working_dir).or_else(|| map.values().find_map(find_working_dir))
        }
        _ => None,
    }
}

fn next_id(shared: &Shared) -> usize {
    shared.next_id.fetch_add(1, Ordering::SeqCst)
}

fn output_tokens(turn: &Turn) -> usize {
    let chars: usize = turn
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text(text) => text.len(),
            Block::ToolUse { input, .. } => input.to_string().len() + 20,
        })
        .sum();
    chars / 4 + 5
}

fn start_usage(input_tokens: usize) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1,
        "service_tier": "standard",
    })
}

fn sse_body(turn: &Turn, model: &str, input_tokens: usize, shared: &Shared) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({
            "type": "message_start",
            "message": {
                "id": format!("msg_01Stub{:012}", next_id(shared)),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": start_usage(input_tokens),
            },
        }),
    );
    event("ping", json!({ "type": "ping" }));
    for (index, block) in turn.blocks.iter().enumerate() {
        match block {
            Block::Text(text) => {
                event(
                    "content_block_start",
                    json!({
                        "type": "content_block_start",
                        "index": index,
                        "content_block": { "type": "text", "text": "" },
                    }),
                );
                for piece in split_in_two(text) {
                    event(
                        "content_block_delta",
                        json!({
                            "type": "content_block_delta",
                            "index": index,
                            "delta": { "type": "text_delta", "text": piece },
                        }),
                    );
                }
            }
            Block::ToolUse { name, input } => {
                event(
                    "content_block_start",
                    json!({
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": format!("toolu_01Stub{:012}", next_id(shared)),
                            "name": name,
                            "input": {},
                        },
                    }),
                );
                for piece in split_in_two(&input.to_string()) {
                    event(
                        "content_block_delta",
                        json!({
                            "type": "content_block_delta",
                            "index": index,
                            "delta": { "type": "input_json_delta", "partial_json": piece },
                        }),
                    );
                }
            }
        }
        event("content_block_stop", json!({ "type": "content_block_stop", "index": index }));
    }
    event(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": { "stop_reason": turn.stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": output_tokens(turn) },
        }),
    );
    event("message_stop", json!({ "type": "message_stop" }));
    out
}

/// Splits text into two pieces at a char boundary, so clients see real streaming.
fn split_in_two(text: &str) -> Vec<&str> {
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid += 1;
    }
    let (a, b) = text.split_at(mid);
    [a, b].into_iter().filter(|p| !p.is_empty()).collect()
}

/// The same turn as a non-streaming Message (for `"stream": false` requests).
fn plain_message(turn: &Turn, model: &str, input_tokens: usize, shared: &Shared) -> Value {
    let content: Vec<Value> = turn
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text(text) => json!({ "type": "text", "text": text }),
            Block::ToolUse { name, input } => json!({
                "type": "tool_use",
                "id": format!("toolu_01Stub{:012}", next_id(shared)),
                "name": name,
                "input": input,
            }),
        })
        .collect();
    let mut usage = start_usage(input_tokens);
    usage["output_tokens"] = json!(output_tokens(turn));
    json!({
        "id": format!("msg_01Stub{:012}", next_id(shared)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": turn.stop_reason,
        "stop_sequence": null,
        "usage": usage,
    })
}
