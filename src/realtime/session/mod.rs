//! The live session as a pure state machine, in the style of ureq-proto: facts in, actions out.
//!
//! Why pure: this is where the upstream Python app failed (duplicate `response.create`, a tool run twice,
//! a notification spoken over the user or lost on reconnect, state raced between handlers). Here one struct
//! owns all of it, only the daemon's loop calls it, and every method returns the [`Output`]s to act on. It
//! does no I/O, starts no thread and reads no clock: the caller passes `now`, and [`Session::next_deadline`]
//! tells the loop when to call [`Session::poll`] if nothing else happens first.
//!
//! Invariants (each has a test in `tests.rs`):
//! - At most one `response.create` of ours is in flight, and none is sent while a response is active.
//! - A `call_id` is dispatched at most once, and only from `response.function_call_arguments.done`.
//! - Tool outputs (and user turns) get exactly one `response.create` once no response is active, no tool
//!   call of the same turn is still unanswered (up to a 5 s grace), the key is up and the user is not
//!   mid-turn, unless a response the server started by itself demonstrably covered them (`responses.rs`).
//! - A notification is sent only when the floor is free (connected, no response active, nothing waiting for
//!   a response, no unanswered tool call, key not held, user not speaking and no VAD turn about to be
//!   answered by the server, no assistant audio playing), one
//!   at a time, as one system item plus one `response.create`. It is reported delivered only after that
//!   response's `response.done` with status `completed`/`incomplete`, or `cancelled` after it produced
//!   output (the user heard it start and interrupted); `failed` or cancelled-before-speaking asks again
//!   (no second item), and a close replays it once in the next session.
//! - Benign errors never tear the session down; fatal ones stop it ([`Output::Fatal`]); `session_expired`
//!   is handled as a close ([`Output::Reconnect`]).
//! - Client events are produced only while connected and after `session.created`.
//! - One response may hold several output items (2.x models): a preamble message (`phase: commentary`),
//!   N function calls, a final message. Each call is dispatched once and answered with its own
//!   `function_call_output`; the single `response.create` waits for that response's `response.done`
//!   and for every call of it to be answered.
//! - Barge-in truncates the item the user was hearing (the player says which, and how far into it), not
//!   the last item received: audio of one response can belong to several items.
//! - A refused input-transcription model (an `error` about the transcription settings, or a
//!   transcription `failed` naming the model) never ends the session: the full `session.update` is sent
//!   again without transcription, and each later user turn is transcribed by an out-of-band text
//!   response instead (`fallback.rs`), so the ring keeps the user's turns.

mod calls;
mod config;
mod fallback;
mod notify;
mod recent;
pub(crate) mod responses;
#[cfg(test)]
mod tests;
mod transcript;

pub(crate) use config::{DEFAULT_INSTRUCTIONS, SessionConfig, Turn};
pub(crate) use transcript::Speaker;

use crate::realtime::events::server::{ErrorInfo, Item as ServerItem, SessionInfo};
use crate::realtime::events::{ClientEvent, ServerEvent};
use calls::{Answer, Calls};
use fallback::Fallback;
use notify::Notifications;
use recent::RecentSet;
use responses::{Echo, Finished, Purpose, Responses};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use transcript::Transcript;

/// After a failed renewal, wait this long before the next attempt.
const RENEW_RETRY: Duration = Duration::from_secs(30);
/// After server VAD reports the end of speech, the server commits the turn and starts its own response;
/// hold our own `response.create`s this long (or until that `response.created`) so they do not race it.
pub(crate) const VAD_SETTLE: Duration = Duration::from_millis(1500);
/// Error codes that stop the session for good (until the user starts it again).
const FATAL_CODES: [&str; 4] = ["invalid_api_key", "model_not_found", "invalid_model", "beta_api_shape_disabled"];

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    /// Send this event on the socket.
    Send(ClientEvent),
    /// Run this tool and answer with [`Session::on_tool_result`]. `arguments` is the model's JSON text.
    DispatchTool { call_id: String, name: String, arguments: String },
    /// The server finished the response that spoke this notification: mark it done on disk.
    NotificationDelivered { id: String },
    /// Its responses kept failing; it was given up (remove it from disk, log it).
    NotificationDropped { id: String, reason: String },
    /// Streaming assistant text (text mode output or the audio transcript).
    AssistantDelta { item_id: String, delta: String },
    /// The assistant's final text for one item. `phase` is `commentary` for a 2.x preamble (said before
    /// the tool calls of the same response), `final_answer` or absent otherwise.
    AssistantText { item_id: String, text: String, phase: Option<String> },
    /// What the user said (input transcription), when it arrives.
    UserTranscript { item_id: String, text: String },
    /// Assistant audio to play: PCM16 24 kHz mono.
    Audio { item_id: String, pcm: Vec<i16> },
    /// Stop local playback now (barge-in), then call [`Session::barge_in`] with the ms actually played.
    StopPlayback,
    /// The session expires soon and the floor is free: open a new connection, then call
    /// [`Session::on_connected`] for it (or [`Session::renewal_failed`]), then close the old one.
    Renew,
    /// The server ended the session (`session_expired`): reconnect now.
    Reconnect { reason: String },
    /// Do not retry: report in status, doctor and the journal.
    Fatal { code: String, message: String },
    /// The server refused the input-transcription model: the session goes on without it, and user turns
    /// are transcribed out of band. Report it in status and the journal.
    TranscriptionRefused { model: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Closed,
    /// Socket open, waiting for `session.created`.
    Awaiting,
    Ready,
    /// A fatal error: nothing more is sent until the next `on_connected`.
    Failed,
}

/// The session machine. See the module docs.
#[derive(Debug)]
pub(crate) struct Session {
    cfg: SessionConfig,
    task_table: String,
    link: Link,
    session_id: Option<String>,
    expires_at: Option<Instant>,
    /// `(instant, unix seconds)` at connect time: converts `expires_at` to an `Instant`.
    wall: Option<(Instant, u64)>,
    key_held: bool,
    user_speaking: bool,
    /// Until then, the server is expected to answer the user's VAD turn by itself.
    turn_settle_until: Option<Instant>,
    audio_playing: bool,
    /// The assistant audio item last received (whether there is anything to stop).
    audio_item: Option<String>,
    /// Assistant items of this connection that carried audio (what a truncate may name).
    audio_items: RecentSet,
    /// `phase` of recent assistant message items, from `response.output_item.added`.
    phases: VecDeque<(String, String)>,
    /// The server refused the transcription model: transcribe out of band for the rest of this session.
    transcription_refused: bool,
    fallback: Fallback,
    /// `event_id` of the last full `session.update`, and a counter for the next one.
    update_id: Option<String>,
    update_seq: u64,
    responses: Responses,
    calls: Calls,
    notes: Notifications,
    ring: Transcript,
    table_dirty: bool,
    table_sent_at: Option<Instant>,
    renewing: bool,
    renew_not_before: Option<Instant>,
    last_now: Option<Instant>,
    /// Offers made on leaving quiet mode (their ids).
    offers: u64,
    /// When we last asked the server for something it must answer (`response.create`, a committed turn), until
    /// the server is next heard from: while set, a silent server is a suspect ([`Session::reply_awaited_since`]).
    awaiting_since: Option<Instant>,
}

impl Session {
    pub(crate) fn new(cfg: SessionConfig) -> Self {
        let ring = Transcript::new(cfg.transcript_turns);
        Session {
            cfg,
            task_table: String::new(),
            link: Link::Closed,
            session_id: None,
            expires_at: None,
            wall: None,
            key_held: false,
            user_speaking: false,
            turn_settle_until: None,
            audio_playing: false,
            audio_item: None,
            audio_items: RecentSet::new(64),
            phases: VecDeque::new(),
            transcription_refused: false,
            fallback: Fallback::default(),
            update_id: None,
            update_seq: 0,
            responses: Responses::default(),
            calls: Calls::default(),
            notes: Notifications::default(),
            ring,
            table_dirty: false,
            table_sent_at: None,
            renewing: false,
            renew_not_before: None,
            last_now: None,
            offers: 0,
            awaiting_since: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    // ---- connection ----

    /// A socket is open (first connect, reconnect, or the new socket of a renewal, which replaces the old
    /// one). `unix_now_secs` is the wall clock at `now`, used only to place `expires_at`. Nothing is sent
    /// until `session.created`.
    pub(crate) fn on_connected(&mut self, now: Instant, unix_now_secs: u64) -> Vec<Output> {
        if matches!(self.link, Link::Awaiting | Link::Ready) {
            self.drop_connection();
        }
        self.link = Link::Awaiting;
        self.wall = Some((now, unix_now_secs));
        self.renewing = false;
        self.renew_not_before = None;
        self.step(now, Vec::new())
    }

    /// The socket closed or died. Pending notifications stay queued for the next session.
    pub(crate) fn on_closed(&mut self, now: Instant) -> Vec<Output> {
        if matches!(self.link, Link::Awaiting | Link::Ready) {
            self.drop_connection();
            self.link = Link::Closed;
        }
        self.step(now, Vec::new())
    }

    /// A renewal connection could not be opened; keep the current one and retry later.
    pub(crate) fn renewal_failed(&mut self, now: Instant) -> Vec<Output> {
        self.renewing = false;
        self.renew_not_before = now.checked_add(RENEW_RETRY);
        self.step(now, Vec::new())
    }

    fn drop_connection(&mut self) {
        self.awaiting_since = None;
        self.responses.close();
        self.calls.on_close();
        self.notes.requeue_all();
        self.user_speaking = false;
        self.turn_settle_until = None;
        self.audio_item = None;
        self.audio_items = RecentSet::new(64);
        self.phases.clear();
        self.fallback.close();
        self.update_id = None;
        self.session_id = None;
        self.expires_at = None;
        self.table_dirty = false;
        self.renewing = false;
    }

    // ---- server events ----

    /// Feeds one parsed server event.
    pub(crate) fn on_server_event(&mut self, ev: ServerEvent, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        // The server spoke: whatever we were waiting for, the link is alive.
        self.awaiting_since = None;
        match self.link {
            Link::Closed | Link::Failed => {
                log::debug!("ignoring {} while not connected", ev.type_name());
                return self.step(now, out);
            }
            Link::Awaiting => match ev {
                ServerEvent::SessionCreated(info) => self.on_session_created(info, now, &mut out),
                ServerEvent::Error(e) => self.on_error(e, now, &mut out),
                other => log::debug!("ignoring {} before session.created", other.type_name()),
            },
            Link::Ready => self.on_ready_event(ev, now, &mut out),
        }
        self.step(now, out)
    }

    fn on_session_created(&mut self, info: SessionInfo, now: Instant, out: &mut Vec<Output>) {
        self.link = Link::Ready;
        log::info!("realtime session {} created", info.id);
        self.session_id = Some(info.id);
        self.expires_at = info.expires_at.and_then(|e| self.place_expiry(e));
        out.push(Output::Send(self.full_update()));
        self.table_dirty = false;
        self.table_sent_at = Some(now);
        if let Some(summary) = self.ring.summary() {
            out.push(Output::Send(ClientEvent::system_text(&summary)));
        }
    }

    /// The full `session.update` (transcription left out once refused), with a fresh `event_id`.
    fn full_update(&mut self) -> ClientEvent {
        self.update_seq += 1;
        let id = format!("ptt_su_{}", self.update_seq);
        self.update_id = Some(id.clone());
        self.cfg.session_update(&self.task_table, !self.transcription_refused, Some(id))
    }

    /// Whether an `error` is the server refusing our transcription settings (not the session's model).
    fn refuses_transcription(&self, e: &ErrorInfo) -> bool {
        if !self.cfg.transcribes() || self.transcription_refused {
            return false;
        }
        let about_update = match (&e.event_id, &self.update_id) {
            (Some(theirs), Some(ours)) => theirs == ours,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let param = e.param.as_deref().unwrap_or("").to_ascii_lowercase();
        let message = e.message.to_ascii_lowercase();
        about_update && (param.contains("transcription") || message.contains("transcription"))
    }

    /// Turns input transcription off for this session and re-sends the whole update without it.
    fn transcription_refused(&mut self, message: String, out: &mut Vec<Output>) {
        let model = self.cfg.transcription_model.clone().unwrap_or_default();
        log::warn!(
            "the server refused input transcription with {model}: {message}; user turns are transcribed \
             out of band instead"
        );
        self.transcription_refused = true;
        out.push(Output::Send(self.full_update()));
        out.push(Output::TranscriptionRefused { model, message });
    }

    fn place_expiry(&self, expires_unix: i64) -> Option<Instant> {
        let (at, unix) = self.wall?;
        let ahead = expires_unix.saturating_sub(i64::try_from(unix).unwrap_or(i64::MAX));
        // A day is far beyond any session; anything larger is nonsense and would only risk overflow.
        let secs = u64::try_from(ahead).unwrap_or(0).min(86_400);
        at.checked_add(Duration::from_secs(secs))
    }

    fn on_ready_event(&mut self, ev: ServerEvent, now: Instant, out: &mut Vec<Output>) {
        match ev {
            ServerEvent::SessionCreated(_) => log::debug!("duplicate session.created ignored"),
            ServerEvent::SessionUpdated(info) => {
                if let Some(e) = info.expires_at {
                    self.expires_at = self.place_expiry(e).or(self.expires_at);
                }
            }
            ServerEvent::Error(e) => self.on_error(e, now, out),
            ServerEvent::ResponseCreated(r) if r.tag(fallback::TAG_KEY) == Some(fallback::TAG_VALUE) => {
                self.fallback.started(&r.id, r.tag(fallback::ITEM_KEY).unwrap_or(""));
            }
            ServerEvent::ResponseCreated(r) => {
                self.turn_settle_until = None;
                self.responses.on_created(&r.id, now);
            }
            ServerEvent::ResponseDone(r) if self.fallback.owns(&r.id) => {
                let item = self.fallback.finished(&r.id).unwrap_or_default();
                match r.first_text().map(str::trim).filter(|t| !t.is_empty()) {
                    Some(text) => {
                        self.ring.push(Speaker::User, text);
                        out.push(Output::UserTranscript { item_id: item, text: text.to_owned() });
                    }
                    None => log::debug!("out-of-band transcription of {item} ended {} with no text", r.status),
                }
            }
            ServerEvent::ResponseDone(r) => {
                let said_something = !r.output.is_empty();
                let fin = self.responses.on_done(&r.id, &r.status, said_something, now);
                self.finish(fin, out);
            }
            ServerEvent::OutputItemAdded(o) | ServerEvent::OutputItemDone(o) => {
                if self.fallback.owns(&o.response_id) {
                    return;
                }
                // Calls are dispatched from arguments.done only; these describe the same call again.
                self.responses.touch(now);
                let is_message = o.item.type_ == "message" && !o.item.id.is_empty();
                if let Some(phase) = o.item.phase.filter(|_| is_message)
                    && !self.phases.iter().any(|(id, _)| *id == o.item.id)
                {
                    if self.phases.len() == 32 {
                        self.phases.pop_front();
                    }
                    self.phases.push_back((o.item.id, phase));
                }
            }
            ServerEvent::FunctionCallArgumentsDone(c) if self.fallback.owns(&c.response_id) => {
                log::warn!("out-of-band transcription {} asked for a tool; ignored", c.response_id);
            }
            ServerEvent::FunctionCallArgumentsDone(c) => {
                self.responses.touch(now);
                if c.call_id.is_empty() {
                    log::warn!("function call {:?} without call_id ignored", c.name);
                } else if self.calls.dispatch(&c.call_id, &c.name, now) {
                    out.push(Output::DispatchTool { call_id: c.call_id, name: c.name, arguments: c.arguments });
                } else {
                    log::debug!("call {} already dispatched", c.call_id);
                }
            }
            ServerEvent::OutputTextDelta(d) | ServerEvent::OutputAudioTranscriptDelta(d)
                if self.fallback.owns(&d.response_id) => {}
            ServerEvent::OutputTextDone(d) if self.fallback.owns(&d.response_id) => {}
            ServerEvent::OutputTextDelta(d) | ServerEvent::OutputAudioTranscriptDelta(d) => {
                self.responses.touch(now);
                out.push(Output::AssistantDelta { item_id: d.item_id, delta: d.delta });
            }
            ServerEvent::OutputTextDone(d) => self.assistant_text(d.item_id, d.text, now, out),
            ServerEvent::OutputAudioTranscriptDone(d) => self.assistant_text(d.item_id, d.transcript, now, out),
            ServerEvent::OutputAudioDelta(a) => {
                self.responses.touch(now);
                match a.decode_pcm() {
                    Ok(pcm) => {
                        self.audio_item = Some(a.item_id.clone());
                        self.audio_items.insert(&a.item_id);
                        out.push(Output::Audio { item_id: a.item_id, pcm });
                    }
                    Err(e) => log::warn!("undecodable audio delta dropped: {e}"),
                }
            }
            ServerEvent::OutputAudioDone(_) => self.responses.touch(now),
            ServerEvent::SpeechStarted(_) => {
                self.user_speaking = true;
                if self.audio_playing || self.audio_item.is_some() {
                    out.push(Output::StopPlayback);
                }
            }
            ServerEvent::SpeechStopped(_) => {
                self.user_speaking = false;
                if self.cfg.turn.is_vad() {
                    self.turn_settle_until = now.checked_add(VAD_SETTLE);
                }
            }
            ServerEvent::InputAudioBufferCleared => {
                self.user_speaking = false;
                self.turn_settle_until = None;
            }
            ServerEvent::InputAudioBufferCommitted(c) => {
                self.user_speaking = false;
                self.responses.on_echo(&Echo::Commit);
                if self.transcription_refused && self.cfg.transcribes() && !c.item_id.is_empty() {
                    out.push(Output::Send(self.fallback.request(&c.item_id)));
                }
            }
            ServerEvent::ConversationItemAdded(e)
            | ServerEvent::ConversationItemCreated(e)
            | ServerEvent::ConversationItemDone(e) => {
                if let Some(echo) = echo_of(&e.item) {
                    self.responses.on_echo(&echo);
                }
            }
            ServerEvent::ConversationItemTruncated(t) => {
                if self.audio_item.as_deref() == Some(t.item_id.as_str()) {
                    self.audio_item = None;
                }
            }
            ServerEvent::InputAudioTranscriptionCompleted(t) => {
                self.ring.push(Speaker::User, &t.transcript);
                out.push(Output::UserTranscript { item_id: t.item_id, text: t.transcript });
            }
            ServerEvent::InputAudioTranscriptionFailed(f) => {
                let code = f.error.code.as_deref().unwrap_or("");
                let message = f.error.message.to_ascii_lowercase();
                let model_refused = ["model_not_found", "invalid_model", "unsupported_model", "model_not_supported"]
                    .contains(&code)
                    || (message.contains("model")
                        && (message.contains("not supported") || message.contains("does not exist")));
                if model_refused && self.cfg.transcribes() && !self.transcription_refused {
                    self.transcription_refused(format!("{code}: {}", f.error.message), out);
                    if !f.item_id.is_empty() {
                        out.push(Output::Send(self.fallback.request(&f.item_id)));
                    }
                } else {
                    log::info!("transcription of {} failed: {code} {}", f.item_id, f.error.message);
                }
            }
            ServerEvent::RateLimitsUpdated(_) => {}
            ServerEvent::Unknown { type_ } => log::debug!("unhandled server event {type_}"),
        }
    }

    fn assistant_text(&mut self, item_id: String, text: String, now: Instant, out: &mut Vec<Output>) {
        self.responses.touch(now);
        self.ring.push(Speaker::Assistant, &text);
        let phase = self.phases.iter().find(|(id, _)| *id == item_id).map(|(_, p)| p.clone());
        out.push(Output::AssistantText { item_id, text, phase });
    }

    fn on_error(&mut self, e: ErrorInfo, now: Instant, out: &mut Vec<Output>) {
        let code = e.code.clone().unwrap_or_default();
        if self.link == Link::Ready && self.refuses_transcription(&e) {
            self.transcription_refused(format!("{code}: {}", e.message), out);
            return;
        }
        if e.event_id.as_deref().is_some_and(Fallback::is_request) {
            log::warn!("out-of-band transcription refused: {code} {}", e.message);
            return;
        }
        match code.as_str() {
            "conversation_already_has_active_response" => {
                log::info!("server already has an active response; will ask again after it");
                self.responses.on_already_active(e.event_id.as_deref(), now);
            }
            "response_cancel_not_active" => log::debug!("nothing to cancel"),
            "session_expired" => {
                log::info!("session expired: {}", e.message);
                self.drop_connection();
                self.link = Link::Closed;
                out.push(Output::Reconnect { reason: e.message });
            }
            c if FATAL_CODES.contains(&c) => {
                log::error!("fatal realtime error {c}: {}", e.message);
                self.drop_connection();
                self.link = Link::Failed;
                let message = if c == "model_not_found" || c == "invalid_model" {
                    // Say which model is gone and what to set instead.
                    crate::models::gone_message("live.model", &self.cfg.model, &e.message)
                } else {
                    e.message
                };
                out.push(Output::Fatal { code, message });
            }
            _ => {
                log::warn!("realtime error {} {code}: {} (event {:?})", e.type_, e.message, e.event_id);
                let ours = e.event_id.as_deref().is_some_and(|id| self.responses.on_create_failed(id, now));
                if ours {
                    log::warn!("our response.create failed; will retry");
                }
            }
        }
    }

    fn finish(&mut self, fin: Finished, out: &mut Vec<Output>) {
        for id in fin.covered.into_iter().flat_map(Purpose::into_notifications) {
            if let Some(text) = self.notes.delivered(&id) {
                self.ring.push(Speaker::Event, &text);
                out.push(Output::NotificationDelivered { id });
            }
        }
        for id in fin.retried.into_iter().flat_map(Purpose::into_notifications) {
            if self.notes.failed(&id) >= notify::MAX_FAILURES {
                self.notes.remove(&id);
                self.responses.forget_notification(&id);
                out.push(Output::NotificationDropped { id, reason: "its responses failed repeatedly".into() });
            }
        }
    }

    // ---- local facts and requests ----

    /// The push-to-talk key went down or up. A press during playback asks to stop it.
    pub(crate) fn set_key_held(&mut self, held: bool, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if held && !self.key_held && (self.audio_playing || self.audio_item.is_some()) {
            out.push(Output::StopPlayback);
        }
        self.key_held = held;
        self.step(now, out)
    }

    /// Assistant audio started or stopped playing locally.
    pub(crate) fn set_audio_playing(&mut self, playing: bool, now: Instant) -> Vec<Output> {
        self.audio_playing = playing;
        if !playing {
            self.audio_item = None;
        }
        self.step(now, Vec::new())
    }

    /// Playback was stopped for a barge-in. `heard` is the item the user was hearing and how many
    /// milliseconds of it were played (from that item's own start): cancel the response if one is active
    /// and truncate that item there, so the server forgets what the user never heard.
    pub(crate) fn barge_in(&mut self, heard: Option<(String, u64)>, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.link == Link::Ready {
            if self.responses.is_active() {
                out.push(Output::Send(ClientEvent::ResponseCancel { response_id: None }));
            }
            match heard {
                // Only an item of this connection: a truncate naming an unknown item is an error.
                Some((item_id, ms)) if self.audio_items.contains(&item_id) => {
                    out.push(Output::Send(ClientEvent::ConversationItemTruncate {
                        item_id,
                        content_index: 0,
                        audio_end_ms: ms,
                    }));
                }
                Some((item_id, _)) => log::debug!("not truncating {item_id}: not an audio item of this session"),
                None => {}
            }
        }
        self.audio_item = None;
        self.audio_playing = false;
        self.step(now, out)
    }

    /// Microphone audio to stream; `None` when not connected.
    pub(crate) fn append_audio(&self, pcm: &[i16]) -> Option<ClientEvent> {
        (self.link == Link::Ready).then(|| ClientEvent::append_pcm(pcm))
    }

    /// Push-to-talk release: commit the buffer and ask for a response (once no response is active).
    /// Implies the key is up. Does nothing with server VAD, which commits by itself.
    pub(crate) fn commit_user_audio(&mut self, now: Instant) -> Vec<Output> {
        self.key_held = false;
        let mut out = Vec::new();
        if self.link == Link::Ready && self.cfg.turn == Turn::Ptt {
            out.push(Output::Send(ClientEvent::InputAudioBufferCommit));
            self.responses.add(Purpose::UserAudio, Echo::Commit);
        }
        self.step(now, out)
    }

    /// A typed user message (text mode). Dropped with a warning when not connected.
    pub(crate) fn send_user_text(&mut self, text: &str, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.link == Link::Ready {
            out.push(Output::Send(ClientEvent::user_text(text)));
            self.ring.push(Speaker::User, text);
            self.responses.add(Purpose::UserText, Echo::Message { role: "user".into(), text: text.to_owned() });
        } else {
            log::warn!("user text dropped: not connected");
        }
        self.step(now, out)
    }

    /// The answer to a dispatched call (`output` is usually JSON text). Answered once; a result for a call
    /// of a closed connection is only recorded for the reconnect summary.
    pub(crate) fn on_tool_result(&mut self, call_id: &str, output: &str, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match self.calls.answer(call_id) {
            Answer::Current(name) => {
                out.push(Output::Send(ClientEvent::function_call_output(call_id, output)));
                self.responses.add(Purpose::Tool, Echo::Call(call_id.to_owned()));
                self.ring.push(Speaker::Event, &format!("{name} returned {output}"));
            }
            Answer::Orphaned(name) => {
                log::info!("result of {name} ({call_id}) arrived after its connection closed");
                self.ring.push(Speaker::Event, &format!("{name} returned {output}"));
            }
            Answer::Unknown => log::warn!("result for unknown or answered call {call_id} ignored"),
        }
        self.step(now, out)
    }

    /// Queues a task notification (a duplicate id is ignored). It is spoken when the floor is free.
    pub(crate) fn push_notification(&mut self, id: &str, text: &str, now: Instant) -> Vec<Output> {
        if !self.notes.push(id, text) {
            log::debug!("notification {id} already queued or delivered");
        }
        self.step(now, Vec::new())
    }

    /// Queues a task's question ahead of result notifications; spoken when the floor is free.
    pub(crate) fn push_question(&mut self, id: &str, text: &str, now: Instant) -> Vec<Output> {
        if !self.notes.push_urgent(id, text) {
            log::debug!("question {id} already queued or delivered");
        }
        self.step(now, Vec::new())
    }

    /// Queues a progress item ("t3 has run 12 minutes…") behind every result and question, replacing one not
    /// yet sent; ignored while quiet. Spoken when the floor is free, like a notification.
    pub(crate) fn push_progress(&mut self, id: &str, text: &str, now: Instant) -> Vec<Output> {
        if !self.notes.push_progress(id, text) {
            log::debug!("progress {id} not queued (quiet, or seen before)");
        }
        self.step(now, Vec::new())
    }

    /// The queued progress item, if any: `(id, in flight)`.
    pub(crate) fn progress_item(&self) -> Option<(String, bool)> {
        self.notes.progress()
    }

    /// Quiet mode: while on, nothing queued is spoken (results and questions wait, held; progress is
    /// dropped). Turning it off asks held questions at once and offers the held results in one system item
    /// ("three tasks finished while you were away; shall I go through them?"); they wait for `catch_up`.
    pub(crate) fn set_quiet(&mut self, quiet: bool, now: Instant) -> Vec<Output> {
        let held = self.notes.set_quiet(quiet);
        if held > 0 {
            self.offers += 1;
            let text = format!(
                "[Quiet mode is off. While it was on, {held} task result{} came in that the user has not heard.                  Tell the user in one short sentence (for example \"{held} tasks finished while you were away;                  shall I go through them?\") and call catch_up only when they want to hear them. Do not guess                  what they say.]",
                if held == 1 { "" } else { "s" }
            );
            self.notes.offer(&format!("offer:{}", self.offers), &text);
        }
        self.step(now, Vec::new())
    }

    /// Results and questions not yet said (held by quiet mode, or waiting for the floor).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.notes.waiting()
    }

    /// Answers a `catch_up` call: every result and question not yet said, oldest first, in one tool output.
    /// They count as heard when the response that speaks that output is done (a close before that says them
    /// again in the next session). Returns the output (`None` for a call that is not current).
    pub(crate) fn catch_up(&mut self, call_id: &str, now: Instant) -> (Option<String>, Vec<Output>) {
        let mut out = Vec::new();
        let answer = match self.calls.answer(call_id) {
            Answer::Current(name) => {
                let missed = self.notes.catch_up();
                let output = catch_up_output(&missed);
                out.push(Output::Send(ClientEvent::function_call_output(call_id, &output)));
                let ids = missed.into_iter().map(|m| m.id).collect();
                self.responses.add(Purpose::CatchUp(ids), Echo::Call(call_id.to_owned()));
                self.ring.push(Speaker::Event, &format!("{name} returned {output}"));
                Some(output)
            }
            Answer::Orphaned(name) => {
                log::info!("{name} ({call_id}) arrived after its connection closed; nothing taken");
                None
            }
            Answer::Unknown => {
                log::warn!("catch_up for unknown or answered call {call_id} ignored");
                None
            }
        };
        (answer, self.step(now, out))
    }

    /// Takes back a notification not yet sent (a question answered elsewhere). One already being said stays.
    pub(crate) fn withdraw_notification(&mut self, id: &str) -> bool {
        self.notes.withdraw(id)
    }

    /// New task table for the instructions; sent debounced (at most one update per `table_debounce`).
    pub(crate) fn set_task_table(&mut self, table: &str, now: Instant) -> Vec<Output> {
        if table != self.task_table {
            self.task_table = table.to_owned();
            self.table_dirty = self.link == Link::Ready;
        }
        self.step(now, Vec::new())
    }

    /// Timers: call at [`next_deadline`](Self::next_deadline) (calling earlier or more often is harmless).
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Output> {
        self.step(now, Vec::new())
    }

    // ---- the pump ----

    /// Runs after every input: does whatever the new state allows, then notes whether the server now owes us
    /// an answer.
    fn step(&mut self, now: Instant, out: Vec<Output>) -> Vec<Output> {
        let out = self.pump(now, out);
        let asks = |o: &Output| {
            matches!(o, Output::Send(ClientEvent::ResponseCreate { .. } | ClientEvent::InputAudioBufferCommit))
        };
        if out.iter().any(asks) {
            self.awaiting_since = Some(now);
        }
        out
    }

    /// Does whatever the new state allows, in priority order.
    fn pump(&mut self, now: Instant, mut out: Vec<Output>) -> Vec<Output> {
        self.last_now = Some(now);
        if self.link != Link::Ready {
            return out;
        }
        if let Some(fin) = self.responses.watchdog(now) {
            self.finish(fin, &mut out);
        }
        if self.table_dirty && self.table_due().is_none_or(|t| now >= t) {
            out.push(Output::Send(self.cfg.instructions_update(&self.task_table)));
            self.table_dirty = false;
            self.table_sent_at = Some(now);
        }
        if self.responses.has_uncovered() && self.may_answer(now) {
            out.push(Output::Send(self.responses.create(now)));
        }
        let next_note = if !self.renewing && self.floor_free(now) { self.notes.start_next() } else { None };
        if let Some((id, text)) = next_note {
            out.push(Output::Send(ClientEvent::system_text(&text)));
            self.responses.add(Purpose::Notification(id), Echo::Message { role: "system".into(), text });
            out.push(Output::Send(self.responses.create(now)));
        }
        if self.needs_renewal(now) {
            self.renewing = true;
            out.push(Output::Renew);
        }
        out
    }

    /// Whether a `response.create` for waiting items may go out now.
    fn may_answer(&self, now: Instant) -> bool {
        self.responses.can_create(now)
            && !self.key_held
            && !self.user_turn_open(now)
            && !self.calls.blocking(now)
            && (!self.audio_playing || !self.responses.uncovered_has_notification())
    }

    /// The user is speaking, or just stopped and the server's own answer has not started yet.
    fn user_turn_open(&self, now: Instant) -> bool {
        self.user_speaking || self.turn_settle_until.is_some_and(|t| now < t)
    }

    fn table_due(&self) -> Option<Instant> {
        self.table_sent_at.and_then(|t| t.checked_add(self.cfg.table_debounce))
    }

    fn renewal_due(&self) -> Option<Instant> {
        let at = self.expires_at?;
        let at = at.checked_sub(self.cfg.renew_margin).unwrap_or(at);
        Some(match self.renew_not_before {
            Some(nb) => at.max(nb),
            None => at,
        })
    }

    // ---- queries ----

    /// The floor is free: connected, no response active or wanted, no unanswered tool call, key not
    /// held, user not speaking (nor just finished a VAD turn the server is about to answer), no assistant
    /// audio playing, no notification in flight.
    pub(crate) fn floor_free(&self, now: Instant) -> bool {
        self.link == Link::Ready
            && self.responses.can_create(now)
            && !self.responses.has_uncovered()
            && !self.calls.blocking(now)
            && !self.notes.any_in_flight()
            && !self.key_held
            && !self.user_turn_open(now)
            && !self.audio_playing
    }

    /// The session expires within the renewal margin, the floor is free and no renewal is under way.
    pub(crate) fn needs_renewal(&self, now: Instant) -> bool {
        !self.renewing && self.renewal_due().is_some_and(|t| now >= t) && self.floor_free(now)
    }

    /// When to call [`poll`](Self::poll) if no other input arrives first. Deadlines that are already due
    /// but wait on an event (the floor) are left out, so the loop never spins.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut candidates: Vec<Instant> = Vec::new();
        if self.link == Link::Ready {
            if self.table_dirty {
                candidates.extend(self.table_due());
            }
            if !self.renewing {
                candidates.extend(self.renewal_due());
            }
            candidates.extend(self.responses.deadlines());
            candidates.extend(self.calls.next_deadline());
            candidates.extend(self.turn_settle_until);
        }
        candidates.into_iter().filter(|t| self.last_now.is_none_or(|now| *t > now)).min()
    }

    /// Since when the server owes us events: set when we send `response.create` (ours or an out-of-band
    /// transcription) or commit a push-to-talk turn, cleared by the next server event or a close. The
    /// connection's keepalive pings at once when a new wait starts, so a link that stalls mid-conversation is
    /// noticed one pong timeout later, not at the next scheduled ping.
    pub(crate) fn reply_awaited_since(&self) -> Option<Instant> {
        self.awaiting_since
    }

    /// Connected and `session.created` seen.
    pub(crate) fn is_ready(&self) -> bool {
        self.link == Link::Ready
    }

    #[cfg(test)]
    /// A fatal error stopped the session.
    pub(crate) fn is_failed(&self) -> bool {
        self.link == Link::Failed
    }

    pub(crate) fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    pub(crate) fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    pub(crate) fn response_active(&self) -> bool {
        self.responses.is_active()
    }

    /// Whether an answer is still owed (tool outputs or user turns not yet covered by a response).
    pub(crate) fn response_pending(&self) -> bool {
        self.responses.has_uncovered()
    }

    /// Ids of notifications not yet confirmed, oldest first.
    pub(crate) fn pending_notifications(&self) -> Vec<String> {
        self.notes.pending_ids()
    }

    #[cfg(test)]
    /// The server refused the input-transcription model; user turns are transcribed out of band.
    pub(crate) fn transcription_refused_by_server(&self) -> bool {
        self.transcription_refused
    }
}

/// The output of `catch_up`: what was missed, oldest first, and how to say it.
fn catch_up_output(missed: &[notify::Missed]) -> String {
    let items: Vec<serde_json::Value> = missed
        .iter()
        .map(|m| serde_json::json!({"kind": if m.question { "question" } else { "result" }, "text": m.text}))
        .collect();
    let message = if missed.is_empty() {
        "Nothing was missed: every task result has been said."
    } else {
        "Tell the user each item in order, briefly, in your own words; add nothing the items do not say. A \
         question needs the user's own answer (answer_permission)."
    };
    serde_json::json!({"status": "ok", "items": items, "message": message}).to_string()
}

/// Recognises the server's echo of an item we created.
fn echo_of(item: &ServerItem) -> Option<Echo> {
    match item.type_.as_str() {
        "function_call_output" if !item.call_id.is_empty() => Some(Echo::Call(item.call_id.clone())),
        "message" if item.role == "user" || item.role == "system" => {
            let text = item.content.iter().find(|c| c.type_ == "input_text").and_then(|c| c.text.clone())?;
            Some(Echo::Message { role: item.role.clone(), text })
        }
        _ => None,
    }
}
