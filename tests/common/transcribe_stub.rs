//! A scripted local stand-in for OpenAI's speech-to-text endpoint,
//! `POST {base}/audio/transcriptions`, so tests can drive the daemon's upload
//! path offline and check exactly what it sent.
//!
//! Point the daemon at `stub.base` (`http://127.0.0.1:PORT/v1`). Every request
//! is parsed by hand and strictly: HTTP/1.1 (keep-alive, `Content-Length` or
//! chunked bodies, `Expect: 100-continue`), the `multipart/form-data` body
//! (RFC 7578 / RFC 2046) and the WAV in its `file` part (RIFF/WAVE, PCM 16-bit).
//! Each request is recorded as an [`Upload`] *before* it is answered, so a test
//! that sees a reply can always see the upload that caused it.
//!
//! Replies come from a script ([`TranscribeStub::push`], used in order) and,
//! once it is empty, from a default ([`TranscribeStub::set_default`], initially
//! `Reply::text("hello world from ptt")`). A request with anything wrong with
//! it (its `problems` are not empty) is answered `400` with an OpenAI-shaped
//! error listing the problems, and does *not* use up a scripted reply.
//!
//! The API's rules for `gpt-transcribe` are checked as problems too (docs/openai-2027-models.md §4):
//! repeated `keywords[]` / `languages[]` parts are collected in [`Upload::lists`]; a keyword with a line
//! break, `<` or `>` fails the whole request (as the real API does); `languages[]` next to `language`,
//! or either list sent to a model that does not take it, is refused; `gpt-transcribe` needs
//! `response_format=json`.
//!
//! The stub never panics on its own threads: whatever is malformed becomes a
//! problem on the upload. Only the test-facing calls (`wait_uploads`) panic.
#![allow(dead_code)] // each test binary uses its own subset of the common code

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::http::{Request, Server, StopFlag, connection, read_request};

/// How often blocked reads (and reply delays) wake up to check whether the stub was dropped.
const POLL: Duration = Duration::from_millis(100);
const DEFAULT_TEXT: &str = "hello world from ptt";

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status; `0` means hang up: close the connection without answering.
    pub status: u16,
    /// JSON body, sent as `application/json`.
    pub body: String,
    /// Value of a `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// Wait this long (after the request is complete and recorded) before answering or hanging up.
    pub delay: Duration,
}

impl Reply {
    /// `200` with a transcription, shaped like the real API's (`gpt-4o-transcribe` style usage).
    pub fn text(t: &str) -> Reply {
        // Written by hand to keep the real API's key order (serde_json would sort the keys).
        let body = format!(
            r#"{{"text":{},"usage":{{"type":"tokens","input_tokens":1,"output_tokens":1,"total_tokens":2}}}}"#,
            serde_json::Value::from(t)
        );
        Reply { status: 200, body, retry_after: None, delay: Duration::ZERO }
    }

    /// `200` shaped like `gpt-transcribe`'s answer: detected `languages` and duration usage.
    pub fn transcribed(t: &str, languages: &[&str]) -> Reply {
        let langs: Vec<serde_json::Value> = languages.iter().map(|l| serde_json::json!({ "code": l })).collect();
        let body = format!(
            r#"{{"text":{},"languages":{},"usage":{{"type":"duration","seconds":1.2}}}}"#,
            serde_json::Value::from(t),
            serde_json::Value::from(langs)
        );
        Reply { status: 200, body, retry_after: None, delay: Duration::ZERO }
    }

    /// `status` with an OpenAI-shaped error body.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply { status, body: error_body(status, message), retry_after: None, delay: Duration::ZERO }
    }

    /// Adds `Retry-After: <secs>` (sent verbatim, so malformed values can be tested too).
    pub fn retry_after(mut self, secs: &str) -> Reply {
        self.retry_after = Some(secs.to_string());
        self
    }

    /// Answers only after `d`.
    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// Closes the connection without answering: the client sees a network failure.
    pub fn hang_up() -> Reply {
        Reply { status: 0, body: String::new(), retry_after: None, delay: Duration::ZERO }
    }
}

/// A decoded PCM WAV file.
#[derive(Clone, Debug)]
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    pub bits: u16,
    /// Interleaved samples (`frames() * channels` of them).
    pub samples: Vec<i16>,
}

impl Wav {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames() as f64 / f64::from(self.rate.max(1)))
    }
}

/// One request as the stub received it.
#[derive(Clone, Debug)]
pub struct Upload {
    /// When the request's body was complete.
    pub at: Instant,
    pub method: String,
    /// Request target without its query string.
    pub path: String,
    /// Every request header, names as sent.
    pub headers: Vec<(String, String)>,
    /// Which TCP connection (numbered from 1 in accept order) carried the request: equal numbers
    /// mean a kept-alive connection was reused.
    pub connection: u64,
    pub authorization: Option<String>,
    /// Every non-file part that appears once: `model`, `prompt`, `language`, `response_format`, ...
    pub fields: BTreeMap<String, String>,
    /// Repeated array parts (`keywords[]`, `languages[]`), values in order, keyed without the `[]`.
    pub lists: BTreeMap<String, Vec<String>>,
    pub file_name: Option<String>,
    pub file_content_type: Option<String>,
    /// Strict decode of the `file` part; `Err` says what is wrong.
    pub wav: Result<Wav, String>,
    /// Anything malformed about the request (empty for a good one). A bad WAV is listed here too.
    pub problems: Vec<String>,
}

impl Upload {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A running stub; dropping it stops the server.
pub struct TranscribeStub {
    /// `http://127.0.0.1:PORT/v1`.
    pub base: String,
    shared: Arc<Shared>,
    /// Last: dropping it stops the threads.
    server: Server,
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    script: VecDeque<Reply>,
    default: Reply,
    uploads: Vec<Upload>,
    /// `GET /v1/models/{id}`: `(id, authorization)` in order (not uploads).
    model_requests: Vec<(String, String)>,
    /// `shutdown_date` per model id; ids in `gone_models` answer 404 `model_not_found`.
    shutdowns: BTreeMap<String, String>,
    gone_models: Vec<String>,
}

impl StopFlag for Shared {
    fn flag(&self) -> &AtomicBool {
        &self.stop
    }
}

impl Shared {
    /// The state, even if a thread panicked while holding the lock (the data stays usable).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TranscribeStub {
    /// Binds `127.0.0.1:0` and serves on background threads (one per connection).
    pub fn start() -> TranscribeStub {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                script: VecDeque::new(),
                default: Reply::text(DEFAULT_TEXT),
                uploads: Vec::new(),
                model_requests: Vec::new(),
                shutdowns: BTreeMap::new(),
                gone_models: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let server = Server::start("transcribe-stub", Arc::clone(&shared), serve_connection);
        let addr = server.addr;
        TranscribeStub { base: format!("http://{addr}/v1"), shared, server }
    }

    /// Queues a reply; queued replies are used in order, one per well-formed request.
    pub fn push(&self, r: Reply) {
        self.shared.lock().script.push_back(r);
    }

    /// The reply used when the script is empty.
    pub fn set_default(&self, r: Reply) {
        self.shared.lock().default = r;
    }

    /// `shutdown_date` of `GET /v1/models/{model}` (the model lifecycle check).
    pub fn set_model_shutdown(&self, model: &str, date: &str) {
        self.shared.lock().shutdowns.insert(model.to_owned(), date.to_owned());
    }

    /// Models whose `GET /v1/models/{id}` answers 404 `model_not_found`.
    pub fn set_gone_models(&self, models: &[&str]) {
        self.shared.lock().gone_models = models.iter().map(|m| (*m).to_owned()).collect();
    }

    /// `(model id, authorization)` of every `GET /v1/models/{id}` so far (they are not uploads).
    pub fn model_requests(&self) -> Vec<(String, String)> {
        self.shared.lock().model_requests.clone()
    }

    /// Every upload received so far, in arrival order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.shared.lock().uploads.clone()
    }

    /// Waits until at least `n` requests have arrived and returns them all; panics with a
    /// description of what did arrive after `timeout`.
    pub fn wait_uploads(&self, n: usize, timeout: Duration) -> Vec<Upload> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.uploads.len() >= n {
                return state.uploads.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let described = describe_uploads(&state.uploads);
                drop(state);
                panic!("transcribe stub: wanted {n} upload(s) within {timeout:?}, got {described}");
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// A readable summary of uploads for panic messages.
pub fn describe_uploads(uploads: &[Upload]) -> String {
    if uploads.is_empty() {
        return "no uploads".to_string();
    }
    let mut out = format!("{} upload(s):", uploads.len());
    for (i, u) in uploads.iter().enumerate() {
        let wav = match &u.wav {
            Ok(w) => format!("{} Hz x{} {}-bit, {} frames", w.rate, w.channels, w.bits, w.frames()),
            Err(e) => format!("bad wav: {e}"),
        };
        let _ = write!(
            out,
            "\n  #{i} (connection {}): {} {} auth={:?} fields={:?} file={:?} ({:?}) {wav} problems={:?}",
            u.connection, u.method, u.path, u.authorization, u.fields, u.file_name, u.file_content_type, u.problems
        );
    }
    out
}

fn serve_connection(stream: TcpStream, number: u64, shared: Arc<Shared>) {
    let Some((mut reader, mut writer)) = connection(stream, &shared, POLL) else { return };
    // Ends at a clean end of the connection, or when the stub stopped.
    while let Some(request) = read_request(&mut reader, &mut writer) {
        if request.method == "GET"
            && let Some(id) = request.path().strip_prefix("/v1/models/")
        {
            // The model lifecycle check, answered like the real API; not an upload.
            let reply = {
                let mut st = shared.lock();
                let auth = request.header("authorization").unwrap_or("").to_owned();
                st.model_requests.push((id.to_owned(), auth));
                if st.gone_models.iter().any(|m| m == id) {
                    let body = serde_json::json!({"error": {"message": format!("The model `{id}` does not exist"),
                        "type": "invalid_request_error", "param": null, "code": "model_not_found"}});
                    Reply { status: 404, body: body.to_string(), retry_after: None, delay: Duration::ZERO }
                } else {
                    let date = st.shutdowns.get(id).cloned();
                    let body = serde_json::json!({"id": id, "object": "model", "created": 1, "owned_by": "system",
                        "shutdown_date": date});
                    Reply { status: 200, body: body.to_string(), retry_after: None, delay: Duration::ZERO }
                }
            };
            shared.changed.notify_all();
            let keep_alive = request.keep_alive && !request.fatal;
            if write_reply(&mut writer, &reply, keep_alive).is_err() || !keep_alive {
                break;
            }
            continue;
        }
        let upload = inspect(&request, number);
        let reply = if upload.problems.is_empty() {
            let mut state = shared.lock();
            let reply = state.script.pop_front().unwrap_or_else(|| state.default.clone());
            state.uploads.push(upload);
            reply
        } else {
            let message = format!("transcribe stub: malformed request: {}", upload.problems.join("; "));
            shared.lock().uploads.push(upload);
            Reply::error(400, &message)
        };
        shared.changed.notify_all();

        if !sleep_unless_stopped(reply.delay, &shared) {
            break;
        }
        if reply.status == 0 {
            break; // hang up
        }
        let keep_alive = request.keep_alive && !request.fatal;
        if write_reply(&mut writer, &reply, keep_alive).is_err() || !keep_alive {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// Sleeps `d` in small steps; false if the stub was dropped meanwhile.
fn sleep_unless_stopped(d: Duration, shared: &Shared) -> bool {
    let end = Instant::now() + d;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        thread::sleep((end - now).min(POLL));
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn error_body(status: u16, message: &str) -> String {
    let kind = match status {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 | 403 => "authentication_error",
        429 => "rate_limit_exceeded",
        _ => "server_error",
    };
    serde_json::json!({ "error": { "message": message, "type": kind, "param": null, "code": null } }).to_string()
}

fn write_reply(writer: &mut TcpStream, reply: &Reply, keep_alive: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    if let Some(secs) = &reply.retry_after {
        let _ = write!(head, "Retry-After: {secs}\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(reply.body.as_bytes());
    writer.write_all(&out)?;
    writer.flush()
}

// ---------------------------------------------------------------------------------------------
// What the request carries

/// Turns a request into an upload: checks the route and headers, parses the multipart body and
/// decodes the WAV. Never fails: everything wrong becomes a problem.
fn inspect(request: &Request, connection: u64) -> Upload {
    let mut upload = Upload {
        at: Instant::now(),
        method: request.method.clone(),
        path: request.path().to_string(),
        headers: request.headers.clone(),
        connection,
        authorization: request.header("authorization").map(str::to_string),
        fields: BTreeMap::new(),
        lists: BTreeMap::new(),
        file_name: None,
        file_content_type: None,
        wav: Err("no file part".into()),
        problems: request.problems.clone(),
    };
    if request.fatal {
        upload.wav = Err("request not readable".into());
        return upload;
    }
    if request.method != "POST" {
        upload.problems.push(format!("method {} (expected POST)", request.method));
    }
    if upload.path != "/v1/audio/transcriptions" {
        upload.problems.push(format!("path {} (expected /v1/audio/transcriptions)", upload.path));
    }
    match &upload.authorization {
        None => upload.problems.push("no Authorization header".into()),
        Some(auth) => match auth.strip_prefix("Bearer ") {
            Some(key) if !key.trim().is_empty() && key.trim() == key => {}
            _ => upload.problems.push(format!("Authorization is not `Bearer <key>`: {auth:?}")),
        },
    }

    let Some(content_type) = request.header("content-type") else {
        upload.problems.push("no Content-Type header".into());
        return upload;
    };
    let (mime, params) = parse_header_value(content_type);
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        upload.problems.push(format!("Content-Type {mime:?} (expected multipart/form-data)"));
        return upload;
    }
    let boundary = match params {
        Err(e) => {
            upload.problems.push(format!("Content-Type parameters: {e}"));
            return upload;
        }
        Ok(params) => match params.iter().find(|(k, _)| k.eq_ignore_ascii_case("boundary")) {
            Some((_, b)) => b.clone(),
            None => {
                upload.problems.push("Content-Type has no boundary parameter".into());
                return upload;
            }
        },
    };
    if let Err(e) = check_boundary(&boundary) {
        upload.problems.push(e);
        return upload;
    }

    let parts = match split_multipart(&request.body, boundary.as_bytes()) {
        Ok(parts) => parts,
        Err(e) => {
            upload.problems.push(format!("multipart body: {e}"));
            return upload;
        }
    };
    let mut seen_file = false;
    for (index, raw) in parts.iter().enumerate() {
        let part = match parse_part(raw) {
            Ok(part) => part,
            Err(e) => {
                upload.problems.push(format!("part #{index}: {e}"));
                continue;
            }
        };
        if part.name == "file" {
            if seen_file {
                upload.problems.push("more than one `file` part".into());
                continue;
            }
            seen_file = true;
            match &part.filename {
                Some(f) if !f.is_empty() => {}
                _ => upload.problems.push("the `file` part has no filename".into()),
            }
            if part.content_type.is_none() {
                upload.problems.push("the `file` part has no Content-Type".into());
            }
            upload.file_name = part.filename;
            upload.file_content_type = part.content_type;
            upload.wav = decode_wav(part.body);
            if let Err(e) = &upload.wav {
                upload.problems.push(format!("file: {e}"));
            }
        } else {
            if part.filename.is_some() {
                upload.problems.push(format!("field `{}` has a filename", part.name));
            }
            let value = match std::str::from_utf8(part.body) {
                Ok(v) => v.to_string(),
                Err(_) => {
                    upload.problems.push(format!("field `{}` is not UTF-8", part.name));
                    String::from_utf8_lossy(part.body).into_owned()
                }
            };
            if let Some(list) = part.name.strip_suffix("[]") {
                upload.lists.entry(list.to_string()).or_default().push(value);
            } else if upload.fields.insert(part.name.clone(), value).is_some() {
                upload.problems.push(format!("field `{}` appears more than once", part.name));
            }
        }
    }
    if !seen_file {
        upload.problems.push("no `file` part".into());
    }
    match upload.fields.get("model") {
        Some(m) if !m.is_empty() => {}
        _ => upload.problems.push("no `model` field".into()),
    }
    check_model_rules(&mut upload);
    upload
}

/// The per-model rules of `gpt-transcribe` / `gpt-live-transcribe` and the older models.
fn check_model_rules(upload: &mut Upload) {
    let model = upload.fields.get("model").cloned().unwrap_or_default();
    let takes_lists = model == "gpt-transcribe" || model == "gpt-live-transcribe";
    for list in upload.lists.keys() {
        if !takes_lists {
            upload.problems.push(format!("`{list}[]` is only supported by gpt-transcribe and gpt-live-transcribe"));
        }
        if list != "keywords" && list != "languages" {
            upload.problems.push(format!("unknown array field `{list}[]`"));
        }
    }
    for k in upload.lists.get("keywords").into_iter().flatten() {
        if k.contains(['<', '>', '\r', '\n']) || k.trim().is_empty() {
            upload.problems.push(format!("invalid keyword {k:?}: the whole request is rejected"));
        }
    }
    for l in upload.lists.get("languages").into_iter().flatten() {
        if l.len() != 2 || !l.bytes().all(|b| b.is_ascii_lowercase()) {
            upload.problems.push(format!("`languages[]` value {l:?} is not an ISO-639-1 code"));
        }
    }
    if upload.lists.contains_key("languages") && upload.fields.contains_key("language") {
        upload.problems.push("`language` and `languages[]` must not be sent together".into());
    }
    if takes_lists && upload.fields.get("response_format").map(String::as_str) != Some("json") {
        upload.problems.push(format!("{model} needs response_format=json"));
    }
}

/// Splits `type/subtype; k=v; k="quoted"` into the value and its parameters (RFC 9110 5.6.6).
fn parse_header_value(value: &str) -> (String, Result<Vec<(String, String)>, String>) {
    let (head, rest) = match value.find(';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    (head.trim().to_string(), parse_params(rest))
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses `; name=value` pairs, values being tokens or quoted strings with backslash escapes.
fn parse_params(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        match chars.next() {
            None => return Ok(params),
            Some(';') => {}
            Some(c) => return Err(format!("expected `;`, found {c:?} in {text:?}")),
        }
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.peek().is_none() {
            return Ok(params); // a trailing `;` is tolerated
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| is_token_char(*c)) {
            name.push(c);
        }
        if name.is_empty() {
            return Err(format!("empty parameter name in {text:?}"));
        }
        if chars.next() != Some('=') {
            return Err(format!("parameter {name:?} has no `=value` in {text:?}"));
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted value for {name:?} in {text:?}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("dangling backslash in {text:?}")),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| is_token_char(*c)) {
                value.push(c);
            }
            if value.is_empty() {
                return Err(format!("parameter {name:?} has an empty value in {text:?}"));
            }
        }
        params.push((name.to_ascii_lowercase(), value));
    }
}

/// RFC 2046 5.1.1: 1 to 70 characters from `bchars`, not ending in a space.
fn check_boundary(boundary: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if boundary.is_empty() || boundary.len() > 70 || boundary.ends_with(' ') || !boundary.chars().all(ok_char) {
        return Err(format!("invalid multipart boundary {boundary:?} (RFC 2046: 1-70 bchars, no trailing space)"));
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    haystack[from..].windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// Skips RFC 2046 transport padding (linear white space) after a boundary.
fn skip_padding(body: &[u8], mut at: usize) -> usize {
    while at < body.len() && (body[at] == b' ' || body[at] == b'\t') {
        at += 1;
    }
    at
}

/// Splits a multipart body into its raw parts (headers + content), strictly per RFC 2046 5.1.1.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Result<Vec<&'a [u8]>, String> {
    let mut dash_boundary = b"--".to_vec();
    dash_boundary.extend_from_slice(boundary);
    let mut delimiter = b"\r\n".to_vec();
    delimiter.extend_from_slice(&dash_boundary);

    // The first boundary opens the body, or follows a preamble ending in CRLF.
    let mut at = if body.starts_with(&dash_boundary) {
        dash_boundary.len()
    } else {
        match find(body, &delimiter, 0) {
            Some(i) => i + delimiter.len(),
            None => {
                let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
                return Err(format!(
                    "boundary {:?} never appears (body starts {shown:?})",
                    String::from_utf8_lossy(boundary)
                ));
            }
        }
    };
    let mut parts = Vec::new();
    loop {
        if body[at..].starts_with(b"--") {
            // Close delimiter: optional padding, then nothing or CRLF and an epilogue.
            let after = skip_padding(body, at + 2);
            if after < body.len() && !body[after..].starts_with(b"\r\n") {
                return Err("garbage after the closing boundary".into());
            }
            if parts.is_empty() {
                return Err("no parts".into());
            }
            return Ok(parts);
        }
        let after = skip_padding(body, at);
        if !body[after..].starts_with(b"\r\n") {
            if after >= body.len() {
                return Err("body ends right after a boundary, without the closing `--boundary--`".into());
            }
            return Err(format!("boundary at byte {at} is not followed by CRLF or `--`"));
        }
        let start = after + 2;
        let Some(end) = find(body, &delimiter, start) else {
            return Err(format!("part #{} is not closed by a boundary (no closing `--boundary--`)", parts.len()));
        };
        parts.push(&body[start..end]);
        at = end + delimiter.len();
    }
}

struct Part<'a> {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    body: &'a [u8],
}

/// Parses one part: its header lines, a blank line, its content.
fn parse_part(raw: &[u8]) -> Result<Part<'_>, String> {
    // A part without headers starts with the blank line itself.
    let (head, body) = if raw.starts_with(b"\r\n") {
        (&raw[..0], &raw[2..])
    } else {
        match find(raw, b"\r\n\r\n", 0) {
            Some(i) => (&raw[..i], &raw[i + 4..]),
            None => return Err("no blank line after the part headers".into()),
        }
    };
    let head = std::str::from_utf8(head).map_err(|_| "part headers are not UTF-8".to_string())?;
    let mut disposition = None;
    let mut content_type = None;
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err(format!("folded part header line {line:?}"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed part header line {line:?}"));
        };
        let value = value.trim();
        let slot = if name.eq_ignore_ascii_case("content-disposition") {
            &mut disposition
        } else if name.eq_ignore_ascii_case("content-type") {
            &mut content_type
        } else {
            continue;
        };
        if slot.replace(value.to_string()).is_some() {
            return Err(format!("duplicate {name} header"));
        }
    }
    let disposition = disposition.ok_or("no Content-Disposition header")?;
    let (kind, params) = parse_header_value(&disposition);
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err(format!("Content-Disposition {kind:?} (expected form-data)"));
    }
    let params = params.map_err(|e| format!("Content-Disposition: {e}"))?;
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let name = get("name").ok_or_else(|| format!("Content-Disposition without a name: {disposition:?}"))?;
    if name.is_empty() {
        return Err("empty part name".into());
    }
    Ok(Part { name, filename: get("filename"), content_type, body })
}

// ---------------------------------------------------------------------------------------------
// WAV

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Strictly decodes a RIFF/WAVE PCM 16-bit file; unknown chunks are skipped.
pub fn decode_wav(bytes: &[u8]) -> Result<Wav, String> {
    if bytes.len() < 12 {
        return Err(format!("{} bytes, too short for a RIFF header", bytes.len()));
    }
    if &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(format!("not RIFF/WAVE (starts {:?})", String::from_utf8_lossy(&bytes[..12])));
    }
    let riff_size = u32_at(bytes, 4) as usize;
    if riff_size != bytes.len() - 8 {
        return Err(format!(
            "RIFF size says {} bytes of file, but {} arrived",
            riff_size.saturating_add(8),
            bytes.len()
        ));
    }
    let mut format: Option<(u16, u32, u16)> = None; // channels, rate, bits
    let mut data: Option<&[u8]> = None;
    let mut at = 12;
    while at < bytes.len() {
        if bytes.len() - at < 8 {
            return Err(format!("{} stray bytes after the last chunk", bytes.len() - at));
        }
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4) as usize;
        let start = at + 8;
        let available = bytes.len() - start;
        if size > available {
            return Err(format!(
                "chunk {:?} says {size} bytes but only {available} follow",
                String::from_utf8_lossy(id)
            ));
        }
        let chunk = &bytes[start..start + size];
        match id {
            b"fmt " => {
                if format.is_some() {
                    return Err("two `fmt ` chunks".into());
                }
                if size < 16 {
                    return Err(format!("`fmt ` chunk of {size} bytes (need 16)"));
                }
                let tag = u16_at(chunk, 0);
                let channels = u16_at(chunk, 2);
                let rate = u32_at(chunk, 4);
                let byte_rate = u32_at(chunk, 8);
                let block_align = u16_at(chunk, 12);
                let bits = u16_at(chunk, 14);
                if tag != 1 {
                    return Err(format!("format tag {tag:#06x}, expected 1 (PCM)"));
                }
                if bits != 16 {
                    return Err(format!("{bits} bits per sample, expected 16"));
                }
                if channels == 0 || rate == 0 {
                    return Err(format!("{channels} channels at {rate} Hz"));
                }
                if u32::from(block_align) != u32::from(channels) * 2
                    || u64::from(byte_rate) != u64::from(rate) * u64::from(block_align)
                {
                    return Err(format!(
                        "inconsistent `fmt `: block_align {block_align}, byte_rate {byte_rate} for {channels} \
                         channels of 16-bit at {rate} Hz"
                    ));
                }
                format = Some((channels, rate, bits));
            }
            b"data" => {
                if data.is_some() {
                    return Err("two `data` chunks".into());
                }
                if format.is_none() {
                    return Err("`data` chunk before the `fmt ` chunk".into());
                }
                data = Some(chunk);
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = start + size + (size & 1);
        if at > bytes.len() {
            return Err(format!("odd-sized chunk {:?} lacks its pad byte", String::from_utf8_lossy(id)));
        }
    }
    let (channels, rate, bits) = format.ok_or("no `fmt ` chunk")?;
    let data = data.ok_or("no `data` chunk")?;
    let block = usize::from(channels) * 2;
    if data.len() % block != 0 {
        return Err(format!("`data` holds {} bytes, not a whole number of {block}-byte frames", data.len()));
    }
    let samples = data.chunks_exact(2).map(|s| i16::from_le_bytes([s[0], s[1]])).collect();
    Ok(Wav { rate, channels, bits, samples })
}

/// Encodes a PCM 16-bit WAV (for tests that need to build one).
pub fn encode_wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The API key dictation homes use (tests check it never leaks).
pub const DICTATION_KEY: &str = "sk-test-dictation";

/// A home whose dictation goes to `stub` with [`DICTATION_KEY`], cues off, the PulseAudio server `pulse_env`
/// started, and the display the typer types into (`("DISPLAY", ":99")`, `("WAYLAND_DISPLAY", socket)`);
/// `dictate` adds lines to the `[dictate]` section.
pub fn dictation_home(stub: &TranscribeStub, dictate: &str, display: (&str, String)) -> super::TestHome {
    let mut home = super::TestHome::with_fake(&format!(
        "[dictate]\napi_base = \"{}\"\n{dictate}\n[audio]\ncues = false\n",
        stub.base
    ));
    home.env.push(("OPENAI_API_KEY".into(), DICTATION_KEY.into()));
    home.use_pulse();
    home.env.push((display.0.into(), display.1));
    home
}
