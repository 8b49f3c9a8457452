//! A scripted local stand-in for the OpenAI Realtime API (GA) on plain `ws://`, so integration tests can
//! drive the daemon's live session offline and check what it sends.
//!
//! Point the daemon at [`FakeRealtime::url`] (`ws://127.0.0.1:PORT/v1/realtime`). Every TCP connection
//! gets its own thread that owns the tungstenite socket with a short read timeout: it reads client frames
//! (answering pings), runs the commands the test queued for it, and flushes. What the fake does on its own:
//!
//! * Upgrade: the handshake headers are recorded (lowercase names). While
//!   [`reject_next_upgrades`](FakeRealtime::reject_next_upgrades) is set, the upgrade is refused with that
//!   HTTP status and an OpenAI error body (`{"error":{"code":"invalid_api_key",...}}` for 401).
//! * First event on every accepted connection: `session.created` with a full GA session (`id` `sess_N`,
//!   N = connection index + 1, `expires_at` = now + [`set_expires_in`](FakeRealtime::set_expires_in)).
//! * `session.update` → `session.updated` with the whole effective session (the update merged in).
//! * `conversation.item.create` → `conversation.item.added` + `conversation.item.done` (item id generated
//!   unless the client gave one; the client's `previous_item_id` is kept, else the previous item's id).
//! * `input_audio_buffer.commit` → `input_audio_buffer.committed` + the user audio item's
//!   `conversation.item.added/done`; `input_audio_buffer.clear` → `input_audio_buffer.cleared`;
//!   `conversation.item.truncate` → `conversation.item.truncated`; `conversation.item.delete` →
//!   `conversation.item.deleted`.
//! * `response.create` while a default-conversation response is active (held, or announced with
//!   `response.created` through [`send`](FakeRealtime::send) and not done) → `error`
//!   `conversation_already_has_active_response` carrying the create's `event_id`, as the real server does.
//!   Otherwise, with auto-respond on (the default), a text response: `response.created`,
//!   `rate_limits.updated`, output item / content part events, `response.output_text.delta`s,
//!   `response.output_text.done`, `response.done` (`completed`). With
//!   [`set_hold_responses(true)`](FakeRealtime::set_hold_responses) only `response.created` (and the rate
//!   limits) go out; [`finish_held_response`](FakeRealtime::finish_held_response) sends the rest.
//!   `response.conversation:"none"` (out-of-band) responses never conflict.
//! * `response.cancel` → `response.done` `cancelled` (empty output) for the active (or named) response,
//!   else `error` `response_cancel_not_active`.
//! * A frame that is not JSON is recorded as `{"_invalid": text}` and answered with an `error`
//!   (`invalid_json`); an unknown `type` gets an `error` (`invalid_event`). Both count as schema errors.
//!
//! The 2.x additions (docs/openai-2027-models.md):
//!
//! * [`respond_multi`](FakeRealtime::respond_multi): one response holding a preamble message with
//!   `phase: "commentary"`, N function calls and a final message (`phase: "final_answer"`), as
//!   `gpt-realtime-2` sends them.
//! * [`refuse_transcription`](FakeRealtime::refuse_transcription): a `session.update` naming that input
//!   transcription model is refused as a whole with an `error` (`invalid_value`, `param`
//!   `session.audio.input.transcription.model`, the update's `event_id`) and not applied. Out-of-band
//!   responses tagged `metadata.ptt = "transcribe"` answer with
//!   [`set_transcript_text`](FakeRealtime::set_transcript_text).
//! * [`set_gone_models`](FakeRealtime::set_gone_models): an upgrade for such a `?model=` is accepted,
//!   then gets `error` `model_not_found` and a close (4000), as a retired model would.
//! * `GET /v1/models/{id}` on the same port (plain HTTP): `{"id", "object":"model", "shutdown_date"}` from
//!   [`set_model_shutdown`](FakeRealtime::set_model_shutdown) (`null` when unset), 404 `model_not_found` for
//!   a gone model. Such requests are not upgrade attempts; [`model_requests`](FakeRealtime::model_requests)
//!   lists them.
//!
//! Every server event carries an `event_id`. Every client event is validated against
//! `$defs/RealtimeClientEvent` of the GA bundle and against its own `$defs` entry (as in
//! `src/realtime/schema_tests.rs`); failures are listed by [`schema_errors`](FakeRealtime::schema_errors).
//! Nothing the client sends can panic the fake; the test-facing helpers panic with a dump on misuse or
//! timeout.
#![allow(dead_code)] // each test binary uses its own subset of the common code

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{HandshakeError, Message, WebSocket};

/// The GA schema bundle; `realtime-ga-event-types.json` is read from the same directory.
pub const DEFAULT_SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/realtime-ga-events.schema.json");
/// What an auto response says unless [`FakeRealtime::set_reply_text`] changed it.
pub const DEFAULT_REPLY: &str = "Noted.";
/// Socket read timeout of the connection threads: the longest a queued server event waits.
const POLL: Duration = Duration::from_millis(10);
/// A write blocked this long (client not reading) is retried on the next turn.
const WRITE_TIMEOUT: Duration = Duration::from_millis(100);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After our close frame, how long to wait for the client's before dropping the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the command helpers wait for a live connection to appear.
const TARGET_WAIT: Duration = Duration::from_secs(5);
/// Most frames read in one turn before queued commands get their go.
const READ_BURST: usize = 64;

/// One client event as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Connection index (0-based, in accept order).
    pub conn: usize,
    pub at: Instant,
    /// The parsed frame; `{"_invalid": text}` for a non-JSON text frame, `{"_binary": len}` for a binary one.
    pub event: Value,
}

impl Received {
    /// The event's `type` (empty when it has none).
    pub fn ty(&self) -> &str {
        self.event.get("type").and_then(Value::as_str).unwrap_or("")
    }
}

/// One server event the fake wrote (same fields as [`Received`]).
pub type Sent = Received;

/// A running fake server; dropping it stops every thread and releases the port.
pub struct FakeRealtime {
    /// `ws://127.0.0.1:PORT/v1/realtime`.
    pub url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    next_id: AtomicU64,
    started: Instant,
    schemas: Arc<Schemas>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct State {
    expires_in: u64,
    reject: Option<u16>,
    auto_respond: bool,
    hold: bool,
    reply_text: String,
    attempts: usize,
    upgrade_requests: Vec<Vec<(String, String)>>,
    conns: Vec<ConnInfo>,
    received: Vec<Received>,
    sent: Vec<Sent>,
    schema_errors: Vec<String>,
    /// WebSocket pings read, per connection.
    pings: Vec<u64>,
    refused_transcription: Vec<String>,
    transcript_text: String,
    gone_models: Vec<String>,
    shutdowns: HashMap<String, String>,
    /// `(path, authorization)` of each `GET /v1/models/...`.
    model_requests: Vec<(String, String)>,
}

struct ConnInfo {
    headers: Vec<(String, String)>,
    uri: String,
    tx: Sender<Cmd>,
    /// Accepted and not closed, aborted, stalled or closed by the client: where commands go.
    live: bool,
    /// Its thread has returned: it reads nothing more.
    ended: bool,
}

enum Cmd {
    Send(Value),
    Calls(Vec<(String, String, String)>),
    Multi(String, Vec<(String, String, String)>, String),
    Respond,
    FinishHeld,
    Close(u16, String),
    Abort,
    Stall,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}_{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits on `changed` until `step` gives `Ok` (it may change the state on the way); after `timeout`,
    /// panics with `step`'s last `Err` and everything received.
    fn wait<T>(&self, timeout: Duration, mut step: impl FnMut(&mut State) -> Result<T, String>) -> T {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            let why = match step(&mut st) {
                Ok(value) => return value,
                Err(why) => why,
            };
            let now = Instant::now();
            if now >= deadline {
                let dump = dump(self, &st);
                drop(st);
                panic!("fake realtime: {why} (waited {timeout:?})\n{dump}");
            }
            st = self.changed.wait_timeout(st, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn pinged(&self, conn: usize) {
        let mut st = self.lock();
        if st.pings.len() <= conn {
            st.pings.resize(conn + 1, 0);
        }
        st.pings[conn] += 1;
        self.changed.notify_all();
    }

    fn retire(&self, conn: usize) {
        let mut st = self.lock();
        if let Some(c) = st.conns.get_mut(conn) {
            c.live = false;
        }
        self.changed.notify_all();
    }
}

impl FakeRealtime {
    /// Binds `127.0.0.1:0` and serves on background threads, validating against [`DEFAULT_SCHEMA`].
    pub fn start() -> FakeRealtime {
        FakeRealtime::start_with_schema(Path::new(DEFAULT_SCHEMA))
    }

    /// Like [`start`](Self::start) with another copy of the schema bundle (compiled once per process).
    pub fn start_with_schema(schema: &Path) -> FakeRealtime {
        let schemas = Schemas::cached(schema);
        let listener = TcpListener::bind("127.0.0.1:0").expect("fake realtime: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake realtime: local address");
        listener.set_nonblocking(true).expect("fake realtime: non-blocking listener");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                expires_in: 3600,
                reject: None,
                auto_respond: true,
                hold: false,
                reply_text: DEFAULT_REPLY.to_owned(),
                attempts: 0,
                upgrade_requests: Vec::new(),
                conns: Vec::new(),
                received: Vec::new(),
                sent: Vec::new(),
                schema_errors: Vec::new(),
                pings: Vec::new(),
                refused_transcription: Vec::new(),
                transcript_text: "start a task".to_owned(),
                gone_models: Vec::new(),
                shutdowns: HashMap::new(),
                model_requests: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            schemas,
            threads: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("fake-realtime-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .expect("fake realtime: spawn accept thread")
        };
        FakeRealtime { url: format!("ws://{addr}/v1/realtime"), addr, shared, acceptor: Some(acceptor) }
    }

    // ---- knobs ----

    /// `expires_at` of later `session.created` events = now + `secs` (default 3600).
    pub fn set_expires_in(&self, secs: u64) {
        self.shared.lock().expires_in = secs;
    }

    /// Refuse upgrades with this HTTP status (>= 400) and an OpenAI error body until set back to `None`.
    pub fn reject_next_upgrades(&self, status: Option<u16>) {
        self.shared.lock().reject = status;
    }

    /// Whether `response.create` gets an answer (default true). Off, only the duplicate check remains.
    pub fn set_auto_respond(&self, on: bool) {
        self.shared.lock().auto_respond = on;
    }

    /// The text of auto responses (default [`DEFAULT_REPLY`]).
    pub fn set_reply_text(&self, text: &str) {
        self.shared.lock().reply_text = text.to_owned();
    }

    /// While true, responses started from then on send `response.created` and stay active until
    /// [`finish_held_response`](Self::finish_held_response) (or a `response.cancel`).
    pub fn set_hold_responses(&self, hold: bool) {
        self.shared.lock().hold = hold;
    }

    /// A `session.update` with this input-transcription model is refused (and not applied).
    pub fn refuse_transcription(&self, model: &str) {
        self.shared.lock().refused_transcription.push(model.to_owned());
    }

    /// What out-of-band transcription responses (`metadata.ptt = "transcribe"`) say.
    pub fn set_transcript_text(&self, text: &str) {
        self.shared.lock().transcript_text = text.to_owned();
    }

    /// Models that are gone: their upgrades get `model_not_found` and a close; `GET /v1/models/{id}` 404s.
    pub fn set_gone_models(&self, models: &[&str]) {
        self.shared.lock().gone_models = models.iter().map(|m| (*m).to_owned()).collect();
    }

    /// `shutdown_date` of `GET /v1/models/{model}` (`YYYY-MM-DD`).
    pub fn set_model_shutdown(&self, model: &str, date: &str) {
        self.shared.lock().shutdowns.insert(model.to_owned(), date.to_owned());
    }

    /// `(path, authorization)` of every `GET /v1/models/...` so far.
    pub fn model_requests(&self) -> Vec<(String, String)> {
        self.shared.lock().model_requests.clone()
    }

    // ---- observations ----

    /// Upgrades accepted.
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// Accepted connections commands can still go to (not closed, aborted or stalled).
    pub fn live_connections(&self) -> usize {
        self.shared.lock().conns.iter().filter(|c| c.live).count()
    }

    /// TCP connections, rejected upgrades included.
    pub fn attempts(&self) -> usize {
        self.shared.lock().attempts
    }

    /// Handshake headers of accepted connection `conn` (0-based), names lowercase.
    pub fn headers(&self, conn: usize) -> Vec<(String, String)> {
        let st = self.shared.lock();
        match st.conns.get(conn) {
            Some(c) => c.headers.clone(),
            None => {
                let n = st.conns.len();
                drop(st);
                panic!("fake realtime: no connection {conn} (only {n} accepted)")
            }
        }
    }

    /// One handshake header of connection `conn` (name case-insensitive).
    pub fn header(&self, conn: usize, name: &str) -> Option<String> {
        self.headers(conn).into_iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Headers of every upgrade request in arrival order, rejected ones included.
    pub fn upgrade_requests(&self) -> Vec<Vec<(String, String)>> {
        self.shared.lock().upgrade_requests.clone()
    }

    /// Request target of connection `conn`, e.g. `/v1/realtime?model=gpt-realtime`.
    pub fn uri(&self, conn: usize) -> String {
        self.shared.lock().conns.get(conn).map(|c| c.uri.clone()).unwrap_or_default()
    }

    /// The session id announced on connection `conn`.
    pub fn session_id(conn: usize) -> String {
        format!("sess_{}", conn + 1)
    }

    /// Every client event received, all connections, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Received events of this `type`.
    pub fn received_of(&self, ty: &str) -> Vec<Received> {
        self.shared.lock().received.iter().filter(|r| r.ty() == ty).cloned().collect()
    }

    /// How many received events match.
    pub fn count(&self, pred: impl Fn(&Received) -> bool) -> usize {
        self.shared.lock().received.iter().filter(|r| pred(r)).count()
    }

    /// Every server event written, all connections, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.lock().sent.clone()
    }

    /// `"<event type>: <error>"` for every received client event that fails the GA schema.
    pub fn schema_errors(&self) -> Vec<String> {
        self.shared.lock().schema_errors.clone()
    }

    /// The first received event matching `pred`, already there or arriving within `timeout`; panics with a
    /// dump of everything received otherwise.
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
        self.wait_for_nth(timeout, what, 0, pred)
    }

    /// Like [`wait_for`](Self::wait_for), for the `n`-th match (0-based: `n = 1` is the second).
    pub fn wait_for_nth(&self, timeout: Duration, what: &str, n: usize, pred: impl Fn(&Received) -> bool) -> Received {
        let (mut next, mut seen) = (0, 0);
        self.shared.wait(timeout, |st| {
            while next < st.received.len() {
                if pred(&st.received[next]) {
                    if seen == n {
                        return Ok(st.received[next].clone());
                    }
                    seen += 1;
                }
                next += 1;
            }
            Err(format!("timed out waiting for {what} (match #{n}, saw {seen})"))
        })
    }

    /// Waits until at least `n` upgrades were accepted.
    pub fn wait_connections(&self, n: usize, timeout: Duration) {
        self.shared.wait(timeout, |st| {
            if st.conns.len() >= n { Ok(()) } else { Err(format!("timed out waiting for {n} connections")) }
        })
    }

    /// Returns once every frame the client queued before this call, on any connection open now, has been
    /// received (or its connection has ended).
    ///
    /// The client (ptt's keepalive) queues a ping on the same ordered queue as its frames, and at most one at a
    /// time, after the previous pong. So of two pings read after this call, the second was queued after it, behind
    /// every frame queued before it. Needs a short `live.ping_interval_s` (the tests use 0.5 s). Call it after
    /// `TestHome::sync`, which says the daemon has queued whatever it was going to send.
    pub fn barrier(&self, timeout: Duration) {
        let pings = |st: &State, c: usize| st.pings.get(c).copied().unwrap_or(0);
        let open: Vec<(usize, u64)> = {
            let st = self.shared.lock();
            (0..st.conns.len()).filter(|&c| st.conns[c].live).map(|c| (c, pings(&st, c))).collect()
        };
        self.shared.wait(timeout, |st| {
            let waiting: Vec<usize> =
                open.iter().filter(|&&(c, at)| !st.conns[c].ended && pings(st, c) < at + 2).map(|&(c, _)| c).collect();
            if waiting.is_empty() { Ok(()) } else { Err(format!("no two pings on connection(s) {waiting:?}")) }
        })
    }

    /// Everything received so far, for assertion messages.
    pub fn dump(&self) -> String {
        let st = self.shared.lock();
        dump(&self.shared, &st)
    }

    // ---- scripted server events (all go to the newest live connection) ----

    /// Sends `event` as is (an `event_id` is added when missing). A `response.created` sent this way makes
    /// that response active (unless its `conversation_id` is `null`) until a `response.done` with its id.
    pub fn send(&self, event: Value) {
        self.command(None, Cmd::Send(event), false);
    }

    /// [`send`](Self::send) to connection `conn`, live or not.
    pub fn send_to(&self, conn: usize, event: Value) {
        self.command(Some(conn), Cmd::Send(event), false);
    }

    /// A complete function-call response (see [`call_tools`](Self::call_tools)); returns the `call_id`.
    pub fn call_tool(&self, name: &str, arguments: Value) -> String {
        self.call_tools(&[(name, arguments)]).remove(0)
    }

    /// One response with a function call per entry: `response.created`, `rate_limits.updated`, then per call
    /// `response.output_item.added`, `conversation.item.added`, `response.function_call_arguments.delta`s,
    /// `response.function_call_arguments.done`, `response.output_item.done`, `conversation.item.done`, and
    /// `response.done` (`completed`, every call in `output`). Returns the `call_id`s.
    pub fn call_tools(&self, calls: &[(&str, Value)]) -> Vec<String> {
        let calls: Vec<(String, String, String)> =
            calls.iter().map(|(name, args)| ((*name).to_owned(), args.to_string(), self.shared.id("call"))).collect();
        let ids = calls.iter().map(|c| c.2.clone()).collect();
        self.command(None, Cmd::Calls(calls), false);
        ids
    }

    /// One 2.x response: a spoken preamble (`phase: "commentary"`), a function call per entry, then a
    /// final message (`phase: "final_answer"`), and `response.done` with all of them in `output`.
    /// Returns the `call_id`s.
    pub fn respond_multi(&self, preamble: &str, calls: &[(&str, Value)], final_text: &str) -> Vec<String> {
        let calls: Vec<(String, String, String)> =
            calls.iter().map(|(name, args)| ((*name).to_owned(), args.to_string(), self.shared.id("call"))).collect();
        let ids = calls.iter().map(|c| c.2.clone()).collect();
        self.command(None, Cmd::Multi(preamble.to_owned(), calls, final_text.to_owned()), false);
        ids
    }

    /// A response the server starts by itself (as after a VAD turn), obeying hold, not the duplicate check.
    pub fn respond_now(&self) {
        self.command(None, Cmd::Respond, false);
    }

    /// Sends the rest (output, `response.done` `completed`) of every held response.
    pub fn finish_held_response(&self) {
        self.command(None, Cmd::FinishHeld, false);
    }

    /// A close frame (1000); the connection is no longer live.
    pub fn close_clean(&self) {
        self.close_with(1000, "");
    }

    /// A close frame with this code and reason (e.g. 1001 as at session expiry, 4000 for the beta header).
    pub fn close_with(&self, code: u16, reason: &str) {
        self.command(None, Cmd::Close(code, reason.to_owned()), true);
    }

    /// Drops the TCP connection without a close frame (shutdown of both directions).
    pub fn close_abrupt(&self) {
        self.command(None, Cmd::Abort, true);
    }

    /// [`close_abrupt`](Self::close_abrupt) for connection `conn` (also works on a stalled one).
    pub fn close_abrupt_conn(&self, conn: usize) {
        self.command(Some(conn), Cmd::Abort, true);
    }

    /// Stops reading (no pongs, nothing answered) and sending on the newest connection, TCP kept open. It
    /// stops counting as live, so later commands go to the client's next connection.
    pub fn stall(&self) {
        self.command(None, Cmd::Stall, true);
    }

    /// An `error` event of type `invalid_request_error`.
    pub fn send_error(&self, code: &str, message: &str) {
        self.send(error_event("invalid_request_error", Some(code), message, None, Value::Null));
    }

    /// What the real server does at the 60-minute limit: `error` `session_expired`, then close 1001.
    pub fn expire_session(&self) {
        let message = "Your session hit the maximum duration of 60 minutes.";
        self.send_error("session_expired", message);
        self.close_with(1001, message);
    }

    fn command(&self, conn: Option<usize>, cmd: Cmd, retire: bool) {
        let mut cmd = Some(cmd);
        self.shared.wait(TARGET_WAIT, |st| {
            let target = match conn {
                Some(i) => (i < st.conns.len()).then_some(i),
                None => st.conns.iter().rposition(|c| c.live),
            };
            let Some(i) = target else { return Err(format!("no live connection (wanted {conn:?})")) };
            if retire {
                st.conns[i].live = false;
                self.shared.changed.notify_all();
            }
            // A connection whose thread ended drops the command, like a dead socket would.
            if let Some(cmd) = cmd.take() {
                let _ = st.conns[i].tx.send(cmd);
            }
            Ok(())
        })
    }
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
        let handles: Vec<_> = self.shared.threads.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        for handle in handles {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stopped() {
        match listener.accept() {
            Ok((stream, _)) => {
                let conn_shared = Arc::clone(&shared);
                let spawned =
                    thread::Builder::new().name("fake-realtime-conn".into()).spawn(move || serve(stream, conn_shared));
                // If the thread cannot be spawned the connection is simply dropped.
                if let Ok(handle) = spawned {
                    shared.threads.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
                }
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Handshake, then the connection's loop. Returns (dropping the socket) when it ends.
#[allow(clippy::result_large_err)] // the callback's error type is tungstenite's
fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    if is_models_request(&stream, &shared) {
        serve_models(stream, &shared);
        return;
    }
    shared.lock().attempts += 1;
    shared.changed.notify_all();
    let mut request: Option<(Vec<(String, String)>, String)> = None;
    let started = Instant::now();
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let reject = {
            let mut st = shared.lock();
            st.upgrade_requests.push(headers.clone());
            st.reject
        };
        request = Some((headers, req.uri().to_string()));
        match reject {
            Some(status) => Err(error_response(status)),
            None => Ok(resp),
        }
    };
    let mut handshake = tungstenite::accept_hdr(stream, callback);
    let ws = loop {
        match handshake {
            Ok(ws) => break ws,
            Err(HandshakeError::Interrupted(mid)) => {
                if shared.stopped() || started.elapsed() > HANDSHAKE_TIMEOUT {
                    return;
                }
                handshake = mid.handshake();
            }
            // A refused upgrade (after its response went out), or garbage instead of an upgrade.
            Err(HandshakeError::Failure(_)) => return,
        }
    };
    let Some((headers, uri)) = request else { return };
    let gone = {
        let st = shared.lock();
        st.gone_models.iter().find(|m| uri.contains(&format!("model={m}"))).cloned()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (id, expires_in) = {
        let mut st = shared.lock();
        st.conns.push(ConnInfo { headers, uri, tx, live: true, ended: false });
        shared.changed.notify_all();
        (st.conns.len() - 1, st.expires_in)
    };
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut conn = Conn {
        id,
        ws,
        shared,
        rx,
        session: default_session(id, unix_now.saturating_add(expires_in)),
        conversation_id: format!("conv_{}", id + 1),
        last_item: None,
        active: Vec::new(),
        stalled: false,
        closing_since: None,
        done: false,
    };
    if let Some(model) = gone {
        // What a retired model gets: the session is refused right after the upgrade.
        let message = format!("The model `{model}` does not exist or you do not have access to it.");
        conn.emit(error_event("invalid_request_error", Some("model_not_found"), &message, Some("model"), Value::Null));
        conn.run_command(Cmd::Close(4000, "model_not_found".into()));
        conn.flush();
    }
    conn.run();
    conn.shared.retire(id);
    let mut st = conn.shared.lock();
    st.conns[id].ended = true;
    conn.shared.changed.notify_all();
}

/// A response the connection knows to be in progress (after its `response.created`).
#[derive(Debug, Clone)]
struct Resp {
    id: String,
    /// Writes to the default conversation (only one such may be active).
    default_conv: bool,
    /// Ours and waiting for [`Cmd::FinishHeld`]; false for one a test announced through `send`.
    held: bool,
    item_id: String,
    text: String,
    modalities: Value,
    metadata: Value,
}

struct Conn {
    id: usize,
    ws: WebSocket<TcpStream>,
    shared: Arc<Shared>,
    rx: Receiver<Cmd>,
    session: Value,
    conversation_id: String,
    last_item: Option<String>,
    active: Vec<Resp>,
    stalled: bool,
    closing_since: Option<Instant>,
    done: bool,
}

impl Conn {
    fn run(&mut self) {
        let session = self.session.clone();
        self.emit(json!({ "type": "session.created", "session": session }));
        self.flush();
        while !self.done && !self.shared.stopped() {
            if self.stalled {
                match self.rx.recv_timeout(POLL) {
                    Ok(Cmd::Abort) => self.abort(),
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => thread::sleep(POLL),
                }
                continue;
            }
            self.read_some();
            while !self.done && !self.stalled {
                match self.rx.try_recv() {
                    Ok(cmd) => self.run_command(cmd),
                    Err(_) => break,
                }
            }
            if !self.stalled {
                self.flush();
            }
            if self.closing_since.is_some_and(|t| t.elapsed() > CLOSE_GRACE) {
                self.done = true;
            }
        }
    }

    fn read_some(&mut self) {
        for _ in 0..READ_BURST {
            if self.done {
                return;
            }
            match self.ws.read() {
                Ok(Message::Text(text)) => self.on_text(text.as_str()),
                Ok(Message::Binary(data)) => {
                    let error = format!("<binary frame>: {} bytes; the API takes text frames only", data.len());
                    self.record(json!({ "_binary": data.len() }), vec![error]);
                }
                // tungstenite queued the reply; keep reading until the close handshake completes.
                Ok(Message::Close(_)) => self.shared.retire(self.id),
                // A ping's pong is queued by tungstenite and flushed below.
                Ok(Message::Ping(_)) => self.shared.pinged(self.id),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) =>
                {
                    return;
                }
                Err(_) => self.done = true,
            }
        }
    }

    fn flush(&mut self) {
        match self.ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => self.done = true,
        }
    }

    fn run_command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Send(event) => {
                self.track(&event);
                self.emit(event);
            }
            Cmd::Calls(calls) => self.function_calls(calls),
            Cmd::Multi(preamble, calls, final_text) => self.multi_item(&preamble, calls, &final_text),
            Cmd::Respond => self.start_response(&Value::Null),
            Cmd::FinishHeld => {
                let (held, rest): (Vec<Resp>, Vec<Resp>) = self.active.drain(..).partition(|r| r.held);
                self.active = rest;
                for r in held {
                    self.complete(r);
                }
            }
            Cmd::Close(code, reason) => {
                let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                if self.ws.close(Some(frame)).is_err() {
                    self.done = true;
                }
                self.closing_since = Some(Instant::now());
            }
            Cmd::Abort => self.abort(),
            Cmd::Stall => self.stalled = true,
        }
    }

    fn abort(&mut self) {
        let _ = self.ws.get_ref().shutdown(Shutdown::Both);
        self.done = true;
    }

    /// Keeps the active-response bookkeeping right for events a test sends by hand.
    fn track(&mut self, event: &Value) {
        let id = event.pointer("/response/id").and_then(Value::as_str).unwrap_or("");
        match event.get("type").and_then(Value::as_str) {
            Some("response.created") if !id.is_empty() && !self.active.iter().any(|r| r.id == id) => {
                let default_conv = event.pointer("/response/conversation_id").is_none_or(|c| !c.is_null());
                self.active.push(Resp {
                    id: id.to_owned(),
                    default_conv,
                    held: false,
                    item_id: String::new(),
                    text: String::new(),
                    modalities: Value::Null,
                    metadata: Value::Null,
                });
            }
            Some("response.done") => self.active.retain(|r| r.id != id),
            _ => {}
        }
    }

    /// Writes one server event (adding `event_id`) and records it.
    fn emit(&mut self, mut event: Value) {
        if let Some(obj) = event.as_object_mut()
            && !obj.get("event_id").is_some_and(Value::is_string)
        {
            obj.insert("event_id".into(), Value::String(self.shared.id("event")));
        }
        if self.done || self.stalled || self.closing_since.is_some() {
            return;
        }
        let text = event.to_string();
        self.shared.lock().sent.push(Received { conn: self.id, at: Instant::now(), event });
        match self.ws.write(Message::text(text)) {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => self.done = true,
        }
    }

    fn record(&self, event: Value, errors: Vec<String>) {
        let mut st = self.shared.lock();
        st.received.push(Received { conn: self.id, at: Instant::now(), event });
        st.schema_errors.extend(errors);
        self.shared.changed.notify_all();
    }

    fn on_text(&mut self, text: &str) {
        match serde_json::from_str::<Value>(text) {
            Ok(event) => {
                let errors = self.shared.schemas.check(&event);
                self.record(event.clone(), errors);
                self.handle(&event);
            }
            Err(e) => {
                let error = clip(&format!("<invalid JSON>: {e}: {text}"), 400);
                self.record(json!({ "_invalid": text }), vec![error]);
                let message = format!("The event could not be parsed as JSON: {e}");
                self.emit(error_event("invalid_request_error", Some("invalid_json"), &message, None, Value::Null));
            }
        }
    }

    /// Answers one client event.
    fn handle(&mut self, event: &Value) {
        let event_id = event.get("event_id").filter(|v| v.is_string()).cloned().unwrap_or(Value::Null);
        let ty = event.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "session.update" => {
                let model = event.pointer("/session/audio/input/transcription/model").and_then(Value::as_str);
                let refused = model.is_some_and(|m| self.shared.lock().refused_transcription.iter().any(|r| r == m));
                if refused {
                    let message = format!(
                        "Invalid value: '{}'. This model is not supported for input audio transcription in \
                         realtime sessions.",
                        model.unwrap_or("")
                    );
                    let param = Some("session.audio.input.transcription.model");
                    self.emit(error_event("invalid_request_error", Some("invalid_value"), &message, param, event_id));
                    return;
                }
                if let Some(update) = event.get("session").filter(|s| s.is_object()) {
                    merge_session(&mut self.session, update);
                }
                let session = self.session.clone();
                self.emit(json!({ "type": "session.updated", "session": session }));
            }
            "input_audio_buffer.append" => {}
            "input_audio_buffer.commit" => {
                let item_id = self.shared.id("item");
                let previous = self.last_item.clone();
                self.emit(json!({
                    "type": "input_audio_buffer.committed",
                    "previous_item_id": previous,
                    "item_id": item_id,
                }));
                let item = json!({
                    "id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
                    "role": "user", "content": [{ "type": "input_audio", "transcript": null }],
                });
                self.add_item(previous, item);
            }
            "input_audio_buffer.clear" => self.emit(json!({ "type": "input_audio_buffer.cleared" })),
            "conversation.item.create" => self.item_create(event, event_id),
            "conversation.item.truncate" => self.emit(json!({
                "type": "conversation.item.truncated",
                "item_id": event.get("item_id").cloned().unwrap_or(Value::Null),
                "content_index": event.get("content_index").cloned().unwrap_or(json!(0)),
                "audio_end_ms": event.get("audio_end_ms").cloned().unwrap_or(json!(0)),
            })),
            "conversation.item.delete" => {
                let item_id = event.get("item_id").cloned().unwrap_or(Value::Null);
                self.emit(json!({ "type": "conversation.item.deleted", "item_id": item_id }));
            }
            "response.create" => self.response_create(event, event_id),
            "response.cancel" => self.response_cancel(event, event_id),
            "conversation.item.retrieve" | "output_audio_buffer.clear" => {}
            _ => {
                let message =
                    format!("Invalid value: '{}'. Supported values are the GA client event types.", clip(ty, 80));
                self.emit(error_event(
                    "invalid_request_error",
                    Some("invalid_event"),
                    &message,
                    Some("type"),
                    event_id,
                ));
            }
        }
    }

    fn item_create(&mut self, event: &Value, event_id: Value) {
        let Some(mut item) = event.get("item").filter(|i| i.is_object()).cloned() else {
            let message = "Missing required parameter: 'item'.";
            self.emit(error_event(
                "invalid_request_error",
                Some("missing_required_parameter"),
                message,
                Some("item"),
                event_id,
            ));
            return;
        };
        let item_id = match item.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => self.shared.id("item"),
        };
        item["id"] = json!(item_id);
        item["object"] = json!("realtime.item");
        if item.get("status").is_none() {
            item["status"] = json!("completed");
        }
        let previous = match event.get("previous_item_id").and_then(Value::as_str) {
            Some("root") => None,
            Some(p) => Some(p.to_owned()),
            None => self.last_item.clone(),
        };
        let appended = previous == self.last_item;
        self.emit(json!({ "type": "conversation.item.added", "previous_item_id": previous, "item": item }));
        self.emit(json!({ "type": "conversation.item.done", "previous_item_id": previous, "item": item }));
        if appended {
            self.last_item = Some(item_id);
        }
    }

    /// `conversation.item.added` + `.done` for an item appended by the server, which becomes the last item.
    fn add_item(&mut self, previous: Option<String>, item: Value) {
        self.emit(json!({ "type": "conversation.item.added", "previous_item_id": previous, "item": item }));
        self.emit(json!({ "type": "conversation.item.done", "previous_item_id": previous, "item": item }));
        self.last_item = item.get("id").and_then(Value::as_str).map(str::to_owned);
    }

    fn response_create(&mut self, event: &Value, event_id: Value) {
        let params = event.get("response").filter(|p| p.is_object()).cloned().unwrap_or(Value::Null);
        let out_of_band = params.get("conversation").and_then(Value::as_str) == Some("none");
        if !out_of_band && let Some(active) = self.active.iter().find(|r| r.default_conv) {
            let message = format!(
                "Conversation already has an active response in progress: {}. Wait until the response is \
                 finished before creating a new one.",
                active.id
            );
            let code = Some("conversation_already_has_active_response");
            self.emit(error_event("invalid_request_error", code, &message, None, event_id));
            return;
        }
        if self.shared.lock().auto_respond {
            self.start_response(&params);
        }
    }

    fn response_cancel(&mut self, event: &Value, event_id: Value) {
        let wanted = event.get("response_id").and_then(Value::as_str);
        let index = match wanted {
            Some(id) => self.active.iter().position(|r| r.id == id),
            None => self.active.iter().position(|r| r.default_conv),
        };
        let Some(index) = index else {
            let message = "Cancellation failed: no active response found";
            self.emit(error_event(
                "invalid_request_error",
                Some("response_cancel_not_active"),
                message,
                None,
                event_id,
            ));
            return;
        };
        let r = self.active.remove(index);
        let details = json!({ "type": "cancelled", "reason": "client_cancelled" });
        let response = self.response_object(&r, "cancelled", json!([]), details, Value::Null);
        self.emit(json!({ "type": "response.done", "response": response }));
    }

    /// Starts an assistant text response: held, or sent through to `response.done` at once.
    fn start_response(&mut self, params: &Value) {
        let transcribing = params.pointer("/metadata/ptt").and_then(Value::as_str) == Some("transcribe");
        let (hold, text) = {
            let st = self.shared.lock();
            if transcribing { (false, st.transcript_text.clone()) } else { (st.hold, st.reply_text.clone()) }
        };
        let modalities = params
            .get("output_modalities")
            .filter(|m| m.is_array())
            .or_else(|| self.session.get("output_modalities"))
            .cloned()
            .unwrap_or_else(|| json!(["audio"]));
        let r = Resp {
            id: self.shared.id("resp"),
            default_conv: params.get("conversation").and_then(Value::as_str) != Some("none"),
            held: hold,
            item_id: self.shared.id("item"),
            text,
            modalities,
            metadata: params.get("metadata").filter(|m| m.is_object()).cloned().unwrap_or(Value::Null),
        };
        let response = self.response_object(&r, "in_progress", json!([]), Value::Null, Value::Null);
        self.emit(json!({ "type": "response.created", "response": response }));
        self.emit(rate_limits());
        if hold {
            self.active.push(r);
        } else {
            self.complete(r);
        }
    }

    /// The output and `response.done` (`completed`) of a text response.
    fn complete(&mut self, r: Resp) {
        let (rid, iid, text) = (r.id.clone(), r.item_id.clone(), r.text.clone());
        let mut item = json!({
            "id": iid, "object": "realtime.item", "type": "message", "status": "in_progress",
            "role": "assistant", "content": [],
        });
        let previous = self.last_item.clone();
        self.emit(json!({ "type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item }));
        if r.default_conv {
            self.emit(json!({ "type": "conversation.item.added", "previous_item_id": previous, "item": item }));
        }
        let at = json!({ "response_id": rid, "item_id": iid, "output_index": 0, "content_index": 0 });
        self.emit(with(&at, json!({ "type": "response.content_part.added", "part": { "type": "text", "text": "" } })));
        for piece in split_in_two(&text) {
            self.emit(with(&at, json!({ "type": "response.output_text.delta", "delta": piece, "obfuscation": "fk3" })));
        }
        self.emit(with(&at, json!({ "type": "response.output_text.done", "text": text })));
        self.emit(with(&at, json!({ "type": "response.content_part.done", "part": { "type": "text", "text": text } })));
        item["status"] = json!("completed");
        item["content"] = json!([{ "type": "output_text", "text": text }]);
        self.emit(json!({ "type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": item }));
        if r.default_conv {
            self.emit(json!({ "type": "conversation.item.done", "previous_item_id": previous, "item": item }));
            self.last_item = Some(iid);
        }
        let response = self.response_object(&r, "completed", json!([item]), Value::Null, usage(text.len()));
        self.emit(json!({ "type": "response.done", "response": response }));
    }

    /// One response carrying these `(name, arguments, call_id)` function calls, start to `response.done`.
    fn function_calls(&mut self, calls: Vec<(String, String, String)>) {
        let r = self.open_response();
        let rid = r.id.clone();
        let mut output = Vec::new();
        let mut size = 0;
        for (index, (name, arguments, call_id)) in calls.into_iter().enumerate() {
            size += arguments.len();
            let deltas = split_in_two(&arguments);
            output.push(self.function_call_item(&rid, index, &name, &arguments, &call_id, &deltas));
        }
        let response = self.response_object(&r, "completed", Value::Array(output), Value::Null, usage(size));
        self.emit(json!({ "type": "response.done", "response": response }));
    }

    /// A 2.x response: preamble message, function calls, final message, one `response.done`.
    fn multi_item(&mut self, preamble: &str, calls: Vec<(String, String, String)>, final_text: &str) {
        let r = self.open_response();
        let rid = r.id.clone();
        let mut output = Vec::new();
        let mut index = 0;
        let message = |conn: &mut Conn, text: &str, phase: &str, index: usize| {
            let iid = conn.shared.id("item");
            let mut item = json!({
                "id": iid, "object": "realtime.item", "type": "message", "status": "in_progress",
                "role": "assistant", "phase": phase, "content": [],
            });
            let previous = conn.last_item.clone();
            conn.emit(json!({ "type": "response.output_item.added", "response_id": rid, "output_index": index, "item": item }));
            conn.emit(json!({ "type": "conversation.item.added", "previous_item_id": previous, "item": item }));
            let at = json!({ "response_id": rid, "item_id": iid, "output_index": index, "content_index": 0 });
            for piece in split_in_two(text) {
                conn.emit(with(&at, json!({ "type": "response.output_text.delta", "delta": piece })));
            }
            conn.emit(with(&at, json!({ "type": "response.output_text.done", "text": text })));
            item["status"] = json!("completed");
            item["content"] = json!([{ "type": "output_text", "text": text }]);
            conn.emit(
                json!({ "type": "response.output_item.done", "response_id": rid, "output_index": index, "item": item }),
            );
            conn.emit(json!({ "type": "conversation.item.done", "previous_item_id": previous, "item": item }));
            conn.last_item = Some(iid);
            item
        };
        output.push(message(self, preamble, "commentary", index));
        index += 1;
        for (name, arguments, call_id) in calls {
            output.push(self.function_call_item(&rid, index, &name, &arguments, &call_id, &[arguments.as_str()]));
            index += 1;
        }
        output.push(message(self, final_text, "final_answer", index));
        let response =
            self.response_object(&r, "completed", Value::Array(output), Value::Null, usage(final_text.len()));
        self.emit(json!({ "type": "response.done", "response": response }));
    }

    /// A default-conversation response with the session's modalities: `response.created`, then the rate limits.
    fn open_response(&mut self) -> Resp {
        let modalities = self.session.get("output_modalities").cloned().unwrap_or_else(|| json!(["audio"]));
        let r = Resp {
            id: self.shared.id("resp"),
            default_conv: true,
            held: false,
            item_id: String::new(),
            text: String::new(),
            modalities,
            metadata: Value::Null,
        };
        let response = self.response_object(&r, "in_progress", json!([]), Value::Null, Value::Null);
        self.emit(json!({ "type": "response.created", "response": response }));
        self.emit(rate_limits());
        r
    }

    /// One function call item of response `rid`, added to done, its arguments sent in `deltas`; returns the
    /// completed item.
    fn function_call_item(
        &mut self,
        rid: &str,
        index: usize,
        name: &str,
        arguments: &str,
        call_id: &str,
        deltas: &[&str],
    ) -> Value {
        let iid = self.shared.id("item");
        let mut item = json!({
            "id": iid, "object": "realtime.item", "type": "function_call", "status": "in_progress",
            "name": name, "call_id": call_id, "arguments": "",
        });
        let previous = self.last_item.clone();
        self.emit(
            json!({ "type": "response.output_item.added", "response_id": rid, "output_index": index, "item": item }),
        );
        self.emit(json!({ "type": "conversation.item.added", "previous_item_id": previous, "item": item }));
        let at = json!({ "response_id": rid, "item_id": iid, "output_index": index, "call_id": call_id });
        for piece in deltas {
            self.emit(with(&at, json!({ "type": "response.function_call_arguments.delta", "delta": piece })));
        }
        self.emit(with(
            &at,
            json!({ "type": "response.function_call_arguments.done", "name": name, "arguments": arguments }),
        ));
        item["status"] = json!("completed");
        item["arguments"] = json!(arguments);
        self.emit(
            json!({ "type": "response.output_item.done", "response_id": rid, "output_index": index, "item": item }),
        );
        self.emit(json!({ "type": "conversation.item.done", "previous_item_id": previous, "item": item }));
        self.last_item = Some(iid);
        item
    }

    fn response_object(&self, r: &Resp, status: &str, output: Value, details: Value, usage: Value) -> Value {
        let voice = self.session.pointer("/audio/output/voice").cloned().unwrap_or_else(|| json!("alloy"));
        json!({
            "object": "realtime.response",
            "id": r.id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": if r.default_conv { json!(self.conversation_id) } else { Value::Null },
            "output_modalities": r.modalities,
            "max_output_tokens": "inf",
            "audio": { "output": { "format": { "type": "audio/pcm", "rate": 24000 }, "voice": voice } },
            "usage": usage,
            "metadata": r.metadata,
        })
    }
}

fn default_session(conn: usize, expires_at: u64) -> Value {
    json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": FakeRealtime::session_id(conn),
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "instructions": "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": null,
        "truncation": "auto",
        "prompt": null,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": { "type": "audio/pcm", "rate": 24000 },
                "transcription": null,
                "noise_reduction": null,
                "turn_detection": {
                    "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200,
                    "idle_timeout_ms": null, "create_response": true, "interrupt_response": true,
                },
            },
            "output": { "format": { "type": "audio/pcm", "rate": 24000 }, "voice": "alloy", "speed": 1.0 },
        },
        "include": null,
    })
}

/// Merges a `session.update` into the effective session; nested objects merge, everything else replaces.
/// The server-owned fields (`id`, `object`, `expires_at`, `model`) do not change.
fn merge_session(session: &mut Value, update: &Value) {
    let Some(update) = update.as_object() else { return };
    for (key, value) in update {
        if matches!(key.as_str(), "id" | "object" | "expires_at" | "model") {
            continue;
        }
        merge(&mut session[key.as_str()], value);
    }
}

fn merge(dst: &mut Value, src: &Value) {
    match (dst.as_object_mut(), src.as_object()) {
        (Some(d), Some(s)) => {
            for (key, value) in s {
                merge(d.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        _ => *dst = src.clone(),
    }
}

/// `fields` plus the members of `base` (for the ids shared by a response's events).
fn with(base: &Value, mut fields: Value) -> Value {
    if let (Some(f), Some(b)) = (fields.as_object_mut(), base.as_object()) {
        for (k, v) in b {
            f.insert(k.clone(), v.clone());
        }
    }
    fields
}

fn error_event(kind: &str, code: Option<&str>, message: &str, param: Option<&str>, event_id: Value) -> Value {
    json!({
        "type": "error",
        "error": { "type": kind, "code": code, "message": message, "param": param, "event_id": event_id },
    })
}

fn rate_limits() -> Value {
    json!({
        "type": "rate_limits.updated",
        "rate_limits": [{ "name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5 }],
    })
}

fn usage(output_chars: usize) -> Value {
    let output = output_chars / 4 + 1;
    let input = 120;
    json!({
        "total_tokens": input + output,
        "input_tokens": input,
        "output_tokens": output,
        "input_token_details": {
            "text_tokens": input, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0,
            "cached_tokens_details": { "text_tokens": 0, "audio_tokens": 0, "image_tokens": 0 },
        },
        "output_token_details": { "text_tokens": output, "audio_tokens": 0 },
    })
}

/// The HTTP answer to a refused upgrade, with the body OpenAI sends for that status.
fn error_response(status: u16) -> ErrorResponse {
    let (kind, code, message) = match status {
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided: sk-test. You can find your API key at \
             https://platform.openai.com/account/api-keys.",
        ),
        403 => (
            "invalid_request_error",
            Some("unsupported_country_region_territory"),
            "Country, region, or territory not supported",
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model `gpt-realtime` does not exist or you do not have access to it.",
        ),
        429 => ("requests", Some("rate_limit_exceeded"), "Rate limit reached for requests."),
        500..=599 => ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
        _ => ("invalid_request_error", None, "The upgrade was refused."),
    };
    let body = json!({ "error": { "message": message, "type": kind, "param": null, "code": code } }).to_string();
    let build = |status: u16, body: String| {
        tungstenite::http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(Some(body))
    };
    build(status, body.clone()).or_else(|_| build(500, body)).unwrap_or_default()
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

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn dump(shared: &Shared, st: &State) -> String {
    let live = st.conns.iter().filter(|c| c.live).count();
    let mut out = format!(
        "fake realtime: {} TCP attempts, {} upgrades accepted ({live} live)\nreceived {} client events:\n",
        st.attempts,
        st.conns.len(),
        st.received.len()
    );
    let mut appends = 0;
    for (i, r) in st.received.iter().enumerate() {
        if r.ty() == "input_audio_buffer.append" {
            appends += 1;
            continue;
        }
        let ms = r.at.saturating_duration_since(shared.started).as_millis();
        out.push_str(&format!("  #{i} conn {} +{ms}ms {}\n", r.conn, clip(&r.event.to_string(), 300)));
    }
    if appends > 0 {
        out.push_str(&format!("  (+ {appends} input_audio_buffer.append not shown)\n"));
    }
    let skip = st.sent.len().saturating_sub(80);
    let types: Vec<String> = st.sent.iter().skip(skip).map(|s| format!("{}:{}", s.conn, s.ty())).collect();
    out.push_str(&format!(
        "sent {} server events (last {}, conn:type): {}\n",
        st.sent.len(),
        types.len(),
        types.join(" ")
    ));
    if !st.schema_errors.is_empty() {
        out.push_str(&format!("schema errors:\n  {}\n", st.schema_errors.join("\n  ")));
    }
    out
}

/// The GA client-event validators: the union and one per event type.
struct Schemas {
    union: jsonschema::Validator,
    per_type: HashMap<String, jsonschema::Validator>,
}

impl Schemas {
    /// Compiled once per schema path per process.
    fn cached(path: &Path) -> Arc<Schemas> {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Schemas>>>> = OnceLock::new();
        let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(cache.entry(path.to_path_buf()).or_insert_with(|| Arc::new(Schemas::load(path))))
    }

    fn load(path: &Path) -> Schemas {
        let bundle = read_json(path);
        let types_path = path.with_file_name("realtime-ga-event-types.json");
        let types = if types_path.exists() { read_json(&types_path) } else { Value::Null };
        let per_type = types
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(ty, def)| {
                let def = def.as_str().filter(|d| d.starts_with("RealtimeClientEvent"))?;
                Some((ty.clone(), validator_for_def(&bundle, def)))
            })
            .collect();
        Schemas { union: validator_for_def(&bundle, "RealtimeClientEvent"), per_type }
    }

    fn check(&self, event: &Value) -> Vec<String> {
        let ty = event.get("type").and_then(Value::as_str);
        let label = ty.unwrap_or("<no type>");
        let describe = |e: jsonschema::ValidationError<'_>| clip(&format!("{label}: {}: {e}", e.instance_path()), 400);
        let mut errors: Vec<String> = match ty.and_then(|t| self.per_type.get(t)) {
            Some(v) => v.iter_errors(event).map(describe).collect(),
            None if !self.per_type.is_empty() => vec![clip(&format!("{label}: not a GA client event type"), 400)],
            None => Vec::new(),
        };
        if errors.is_empty() && !self.union.is_valid(event) {
            errors.extend(self.union.iter_errors(event).map(describe));
        }
        errors
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("fake realtime: {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fake realtime: {}: {e}", path.display()))
}

/// A validator for one `$defs` entry of the bundle.
fn validator_for_def(bundle: &Value, def: &str) -> jsonschema::Validator {
    let mut root = bundle.clone();
    assert!(root["$defs"].get(def).is_some(), "fake realtime: no $defs/{def} in the schema bundle");
    root["$ref"] = json!(format!("#/$defs/{def}"));
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("fake realtime: schema {def}: {e}"))
}

/// Whether the connection carries `GET /v1/models/...` (plain HTTP) rather than an upgrade. Peeks at the
/// first bytes without consuming them.
fn is_models_request(stream: &TcpStream, shared: &Shared) -> bool {
    const PREFIX: &[u8] = b"GET /v1/models/";
    let started = Instant::now();
    let mut buf = [0u8; 16];
    loop {
        match stream.peek(&mut buf) {
            Ok(0) => return false,
            Ok(n) if n >= PREFIX.len() => return buf.starts_with(PREFIX),
            Ok(n) if !PREFIX.starts_with(&buf[..n]) => return false,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return false,
        }
        if shared.stopped() || started.elapsed() > HANDSHAKE_TIMEOUT {
            return false;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Answers one `GET /v1/models/{id}` like the real API (Model object, or 404 `model_not_found`).
fn serve_models(mut stream: TcpStream, shared: &Shared) {
    use std::io::{Read, Write};
    let started = Instant::now();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return,
        }
        if head.len() > 64 * 1024 || shared.stopped() || started.elapsed() > HANDSHAKE_TIMEOUT {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let authorization = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("authorization")))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let id = path.trim_start_matches("/v1/models/").split('?').next().unwrap_or("").to_owned();
    let (status, body) = {
        let mut st = shared.lock();
        st.model_requests.push((path.clone(), authorization));
        shared.changed.notify_all();
        if st.gone_models.contains(&id) {
            let message = format!("The model `{id}` does not exist or you do not have access to it.");
            let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "model_not_found"}});
            (404, body)
        } else {
            let shutdown = st.shutdowns.get(&id).cloned().map_or(Value::Null, Value::String);
            (
                200,
                json!({"id": id, "object": "model", "created": 1_756_339_200, "owned_by": "system", "shutdown_date": shutdown}),
            )
        }
    };
    let body = body.to_string();
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// The API key [`live_home`] gives the daemon.
pub const LIVE_KEY: &str = "sk-test-live-key-0123456789";

/// How long the helpers below wait for the daemon.
const WAIT: Duration = Duration::from_secs(20);

/// A home whose daemon talks to `fake` with [`LIVE_KEY`] and a fast keepalive (0.5 s pings, dead after 2 s:
/// quick to notice a stall, slack for a loaded machine) unless `extra` (more of `[live]`) sets its own.
pub fn live_home(fake: &FakeRealtime, extra: &str) -> super::TestHome {
    let keepalive = if extra.contains("pong_timeout_s") { "" } else { "ping_interval_s = 0.5\npong_timeout_s = 2.0\n" };
    let mut home =
        super::TestHome::with_fake(&format!("share_dirs = true\n[live]\nurl = \"{}\"\n{keepalive}{extra}", fake.url));
    home.env.push(("OPENAI_API_KEY".into(), LIVE_KEY.into()));
    home
}

/// The JSON output the daemon sent for `call_id`.
pub fn tool_output(fake: &FakeRealtime, call_id: &str) -> (Received, Value) {
    let r = fake.wait_for(WAIT, &format!("function_call_output for {call_id}"), |r| {
        r.ty() == "conversation.item.create"
            && r.event["item"]["type"] == "function_call_output"
            && r.event["item"]["call_id"] == call_id
    });
    let output: Value = serde_json::from_str(r.event["item"]["output"].as_str().unwrap_or("")).expect("output is JSON");
    (r, output)
}

/// The text of a system message the daemon added (notifications, progress, offers).
pub fn system_text(r: &Received) -> Option<&str> {
    (r.ty() == "conversation.item.create" && r.event["item"]["role"] == "system")
        .then(|| r.event["item"]["content"][0]["text"].as_str())
        .flatten()
}

/// The notification of task `task`'s end.
pub fn is_notification(task: &str) -> impl Fn(&Received) -> bool + '_ {
    move |r| system_text(r).is_some_and(|t| t.starts_with(&format!("[task {task} ")))
}

/// Every client event the daemon sent passes the official GA schema.
pub fn assert_schema_clean(fake: &FakeRealtime) {
    let errors = fake.schema_errors();
    assert!(errors.is_empty(), "client events that fail the GA schema: {errors:#?}");
}

/// The daemon never sent `response.create` while a response was active.
pub fn no_duplicate_creates(fake: &FakeRealtime) {
    let dups = fake
        .sent()
        .into_iter()
        .filter(|s| s.ty() == "error" && s.event["error"]["code"] == "conversation_already_has_active_response")
        .count();
    assert_eq!(dups, 0, "the daemon sent response.create while a response was active:\n{}", fake.dump());
}
