//! The live session as the daemon runs it: the pure [`Session`] machine, the
//! connection threads, reconnection, renewal, notifications and front ends.
//!
//! Everything here runs on the main loop. The machine decides *what* to send;
//! this module does the rest: it opens [`Connection`]s (ids tell a stale
//! connection's events from the current one's), turns the machine's
//! [`Output`]s into actions (frames on the socket, tool calls on the
//! supervisor, lines for attached `ptt live --text` clients), and keeps the
//! reconnect backoff (0.5 s doubling to 30 s, jittered) as a deadline.
//!
//! Notifications come from the registry (a task ends unannounced, in the same
//! write as its outcome) and a task is marked announced only when the machine
//! reports its notification delivered, so a closed socket, an expired session
//! or a restart loses none (see [`super::notifications`]).

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::{Value, json};

use super::notifications::{QUESTION_PREFIX, describe_question};
use crate::config::{LiveConfig, LiveTurn};
use crate::paths::Paths;
use crate::realtime::connection::{ConnEvent, ConnId, ConnMessage, ConnectSpec, Connection};
use crate::realtime::events::ServerEvent;
use crate::realtime::session::{Output, Session, SessionConfig, Turn};
use crate::tasks::registry::{TaskRecord, unix_now};
use crate::tasks::{Notice, Supervisor};

use super::notifications::{MAX_AGE_S, MAX_PENDING, describe_end};
use super::tools;

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a session is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The user turned live mode on (hotkey / `ptt key toggle live`).
    Conversation,
    /// A `ptt live --text` client attached and started it; it ends with the last client.
    TextClient,
    /// Opened only to speak pending task results (`live.announce_when_idle`).
    Announce,
}

/// Sound the daemon must play or stop (carried out by `daemon::voice`).
#[derive(Debug)]
pub enum AudioAction {
    Play { item_id: String, pcm: Vec<i16> },
    Stop,
}

/// A line for attached text clients.
pub type FrontEvent = Value;

struct Front {
    id: u64,
    tx: Sender<FrontEvent>,
}

/// Jittered exponential backoff.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: BACKOFF_FIRST }
    }
    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
    /// The next delay, between 75 % and 100 % of the step; doubles the step.
    fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let fraction = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
        step.mul_f64(0.75 + 0.25 * fraction)
    }
}

pub struct Live {
    cfg: LiveConfig,
    paths: Paths,
    conn_tx: Sender<ConnMessage>,
    /// The loop selects on this.
    pub conn_rx: Receiver<ConnMessage>,
    session: Option<Session>,
    purpose: Option<Purpose>,
    conn: Option<Connection>,
    renewing: Option<Connection>,
    next_conn_id: ConnId,
    backoff: Backoff,
    reconnect_at: Option<Instant>,
    was_ready: bool,
    fatal: Option<String>,
    last_close: Option<String>,
    connects: u64,
    bad_frames: u64,
    fronts: Vec<Front>,
    next_front_id: u64,
    /// The session speaks and listens (otherwise it is a text conversation).
    voice: bool,
    audio: Vec<AudioAction>,
    /// What the user said in a voice session (checked for "dictate mode").
    heard: Vec<String>,
    /// Set when the server refused the input-transcription model (shown in status).
    transcription_note: Option<String>,
}

impl Live {
    pub fn new(cfg: LiveConfig, paths: &Paths) -> Live {
        let (conn_tx, conn_rx) = crossbeam_channel::unbounded();
        Live {
            cfg,
            paths: paths.clone(),
            conn_tx,
            conn_rx,
            session: None,
            purpose: None,
            conn: None,
            renewing: None,
            next_conn_id: 1,
            backoff: Backoff::new(),
            reconnect_at: None,
            was_ready: false,
            fatal: None,
            last_close: None,
            connects: 0,
            bad_frames: 0,
            fronts: Vec::new(),
            next_front_id: 1,
            voice: false,
            audio: Vec::new(),
            heard: Vec::new(),
            transcription_note: None,
        }
    }

    pub fn set_config(&mut self, cfg: LiveConfig) {
        self.cfg = cfg;
    }

    pub fn is_on(&self) -> bool {
        self.session.is_some()
    }

    /// The OpenAI key: `OPENAI_API_KEY`, else `live.key_file` (which must be 0600).
    pub fn api_key(&self) -> Result<String, String> {
        crate::secrets::load_key(&self.cfg, &self.paths)
    }

    /// Opens a session (or upgrades the purpose of the open one). A voice session
    /// (`voice`: the audio devices opened) speaks and listens; otherwise it is text.
    pub fn start(
        &mut self,
        purpose: Purpose,
        voice: bool,
        sup: &mut Supervisor,
        now: Instant,
    ) -> Result<Vec<Notice>, String> {
        if self.session.is_some() {
            // A conversation outranks a text client, which outranks an announcement.
            let rank = |p: Purpose| match p {
                Purpose::Announce => 0,
                Purpose::TextClient => 1,
                Purpose::Conversation => 2,
            };
            if self.purpose.is_none_or(|cur| rank(purpose) > rank(cur)) {
                self.purpose = Some(purpose);
            }
            return Ok(vec![]);
        }
        self.api_key()?;
        let instructions = match &self.cfg.instructions_file {
            Some(f) => {
                let path = self.paths.expand_tilde(f);
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read live.instructions_file {}: {e}", path.display()))?
            }
            None => crate::realtime::session::DEFAULT_INSTRUCTIONS.to_string(),
        };
        let session_cfg = SessionConfig {
            model: self.cfg.model.clone(),
            instructions,
            voice: self.cfg.voice.clone(),
            text_mode: !voice,
            turn: match self.cfg.turn {
                LiveTurn::Vad => Turn::Vad,
                LiveTurn::Ptt => Turn::Ptt,
                LiveTurn::SemanticVad => Turn::SemanticVad { eagerness: self.cfg.vad_eagerness.as_str() },
            },
            reasoning_effort: self.cfg.reasoning_effort.as_str().to_owned(),
            parallel_tool_calls: self.cfg.parallel_tool_calls,
            retention_ratio: self.cfg.retention_ratio,
            renew_margin: Duration::from_secs_f64(self.cfg.renew_before_s),
            transcription_model: Some(self.cfg.transcription_model.clone()).filter(|m| !m.is_empty()),
            ..SessionConfig::default()
        };
        let mut session = Session::new(session_cfg);
        let mut outs = session.set_task_table(&tools::task_table(sup), now);
        for t in sup.unannounced(MAX_PENDING, MAX_AGE_S) {
            outs.extend(session.push_notification(&t.id, &describe_end(t), now));
        }
        // Tasks waiting for an answer are asked first (a new session, or one after a restart).
        for (id, text) in sup.registry().tasks.iter().filter_map(describe_question) {
            outs.extend(session.push_question(&id, &text, now));
        }
        self.session = Some(session);
        self.purpose = Some(purpose);
        self.voice = voice;
        self.fatal = None;
        self.transcription_note = None;
        self.backoff.reset();
        self.was_ready = false;
        log::info!("live: starting a session ({purpose:?}) with {}", self.cfg.endpoint());
        self.connect(now);
        Ok(self.apply(outs, sup, now))
    }

    /// Closes the session; pending notifications stay on disk for the next one.
    pub fn stop(&mut self, why: &str) {
        if self.session.is_none() {
            return;
        }
        log::info!("live: session stopped ({why})");
        for c in [self.conn.take(), self.renewing.take()].into_iter().flatten() {
            c.close();
        }
        self.session = None;
        self.purpose = None;
        self.reconnect_at = None;
        if self.voice {
            self.audio.push(AudioAction::Stop);
        }
        self.voice = false;
        self.broadcast(json!({"kind": "status", "state": "off", "message": why}));
    }

    fn connect(&mut self, now: Instant) {
        self.reconnect_at = None;
        match self.open_connection() {
            Ok(c) => self.conn = Some(c),
            Err(e) => {
                log::warn!("live: cannot open a connection: {e}");
                self.schedule_reconnect(&e, now);
            }
        }
    }

    fn open_connection(&mut self) -> Result<Connection, String> {
        let key = self.api_key()?;
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        self.connects += 1;
        let spec = ConnectSpec {
            url: self.cfg.endpoint(),
            api_key: key,
            connect_timeout: Duration::from_secs(10),
            ping_every: Duration::from_secs_f64(self.cfg.ping_interval_s),
            pong_timeout: Duration::from_secs_f64(self.cfg.pong_timeout_s),
        };
        Connection::open(id, spec, self.conn_tx.clone())
            .map_err(|e| format!("cannot start the connection threads: {e}"))
    }

    fn schedule_reconnect(&mut self, reason: &str, now: Instant) {
        if self.session.is_none() || self.fatal.is_some() {
            return;
        }
        let delay = self.backoff.next_delay();
        self.reconnect_at = Some(now + delay);
        log::warn!("live: {reason}; reconnecting in {:.1} s", delay.as_secs_f64());
        self.broadcast(json!({"kind": "status", "state": "reconnecting", "message": format!("{reason}; reconnecting in {:.1} s", delay.as_secs_f64())}));
    }

    fn fail(&mut self, message: String) {
        log::error!("live: {message}; not retrying (fix it, then start live mode again)");
        self.fatal = Some(message.clone());
        for c in [self.conn.take(), self.renewing.take()].into_iter().flatten() {
            c.close();
        }
        self.reconnect_at = None;
        self.broadcast(json!({"kind": "error", "message": message}));
    }

    /// An event from a connection thread.
    pub fn on_conn(&mut self, (id, ev): ConnMessage, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let is_current = self.conn.as_ref().is_some_and(|c| c.id == id);
        let is_renewing = self.renewing.as_ref().is_some_and(|c| c.id == id);
        if self.session.is_none() || !(is_current || is_renewing) {
            log::debug!("live: ignoring {ev:?} from old connection {id}");
            return vec![];
        }
        let unix = unix_now();
        if is_renewing {
            // The successor of a session about to expire. Until it opens, the old one stays current.
            let outs = match ev {
                ConnEvent::Opened => {
                    log::info!("live: renewed connection {id} is open; closing the old one");
                    if let Some(old) = self.conn.take() {
                        old.close();
                    }
                    self.conn = self.renewing.take();
                    self.session_mut().map(|s| s.on_connected(now, unix)).unwrap_or_default()
                }
                ConnEvent::Closed { .. } | ConnEvent::Dead => {
                    log::warn!("live: the renewal connection failed; keeping the current session");
                    self.renewing = None;
                    self.session_mut().map(|s| s.renewal_failed(now)).unwrap_or_default()
                }
                // Frames arrive only after Opened, when the connection is already current.
                ConnEvent::Frame(_) => vec![],
            };
            return self.apply(outs, sup, now);
        }
        let outs = match ev {
            ConnEvent::Opened => {
                self.broadcast(json!({"kind": "status", "state": "connected"}));
                self.session_mut().map(|s| s.on_connected(now, unix)).unwrap_or_default()
            }
            ConnEvent::Frame(text) => match ServerEvent::parse(&text) {
                Ok(ev) => self.session_mut().map(|s| s.on_server_event(ev, now)).unwrap_or_default(),
                Err(e) => {
                    self.bad_frames += 1;
                    log::debug!("live: ignoring a frame that is not a valid server event: {e}");
                    vec![]
                }
            },
            ConnEvent::Closed { reason, fatal } => {
                self.conn = None;
                self.last_close = Some(reason.clone());
                let outs = self.session_mut().map(|s| s.on_closed(now)).unwrap_or_default();
                if fatal {
                    // A 404 on the upgrade is the model being gone: say which and what to set.
                    let reason = if reason.contains("404") || reason.contains("model_not_found") {
                        crate::models::gone_message("live.model", &self.cfg.model, &reason)
                    } else {
                        reason
                    };
                    self.fail(reason);
                } else {
                    self.schedule_reconnect(&reason, now);
                }
                outs
            }
            ConnEvent::Dead => {
                if let Some(c) = self.conn.take() {
                    c.close();
                }
                self.last_close = Some("no pong from the server".into());
                let outs = self.session_mut().map(|s| s.on_closed(now)).unwrap_or_default();
                self.schedule_reconnect("no pong from the server", now);
                outs
            }
        };
        self.apply(outs, sup, now)
    }

    fn session_mut(&mut self) -> Option<&mut Session> {
        self.session.as_mut()
    }

    /// A task ended: persist its notification and hand it to the session (or
    /// open one to announce it).
    pub fn on_task_ended(&mut self, task: &TaskRecord, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let text = describe_end(task);
        self.broadcast(json!({"kind": "notification", "task_id": task.id, "text": text}));
        if self.session.is_none() {
            if self.cfg.announce_when_idle && self.fatal.is_none() {
                match self.start(Purpose::Announce, false, sup, now) {
                    Ok(n) => return n,
                    Err(e) => log::warn!("live: cannot open a session to announce {}: {e}", task.id),
                }
            }
            return vec![];
        }
        let outs = self.session_mut().map(|s| s.push_notification(&task.id, &text, now)).unwrap_or_default();
        self.apply(outs, sup, now)
    }

    /// A task's permission requests changed (one asked, one answered): a question no longer current and not
    /// yet said is taken back, and the current one (if it waits) goes ahead of result notifications, spoken
    /// when the floor is free. No session is opened just for a question: a desktop notification covers that.
    /// Questions are keyed by request, so each is asked once and a later one of the same task anew.
    pub fn on_task_question(&mut self, task: &TaskRecord, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let current = describe_question(task);
        let Some(session) = self.session.as_mut() else { return vec![] };
        let prefix = format!("{QUESTION_PREFIX}{}:", task.id);
        let stale = session
            .pending_notifications()
            .into_iter()
            .filter(|id| id.starts_with(&prefix) && current.as_ref().is_none_or(|(cur, _)| cur != id));
        for id in stale.collect::<Vec<_>>() {
            session.withdraw_notification(&id);
        }
        let Some((id, text)) = current else { return vec![] };
        if session.pending_notifications().contains(&id) {
            return vec![];
        }
        let outs = session.push_question(&id, &text, now);
        self.broadcast(json!({"kind": "notification", "task_id": task.id, "text": text}));
        self.apply(outs, sup, now)
    }

    /// Tasks changed: refresh the table in the instructions (the machine debounces).
    pub fn on_tasks_changed(&mut self, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let table = tools::task_table(sup);
        let outs = self.session_mut().map(|s| s.set_task_table(&table, now)).unwrap_or_default();
        self.apply(outs, sup, now)
    }

    /// The push-to-talk key went down or up (the floor waits while it is held).
    pub fn set_key_held(&mut self, held: bool, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let outs = self.session_mut().map(|s| s.set_key_held(held, now)).unwrap_or_default();
        self.apply(outs, sup, now)
    }

    /// Whether the open session speaks and listens.
    pub fn is_voice(&self) -> bool {
        self.session.is_some() && self.voice
    }

    pub fn turn(&self) -> LiveTurn {
        self.cfg.turn
    }

    pub fn full_duplex(&self) -> bool {
        self.cfg.full_duplex
    }

    /// Sound to play or stop, in order (the daemon drains this after each event).
    /// The user's transcribed turns since the last call (voice sessions only).
    pub fn take_heard(&mut self) -> Vec<String> {
        std::mem::take(&mut self.heard)
    }

    pub fn take_audio(&mut self) -> Vec<AudioAction> {
        std::mem::take(&mut self.audio)
    }

    /// 20 ms of microphone audio for the input buffer.
    pub fn append_audio(&mut self, pcm: &[i16]) {
        if let (Some(s), Some(c)) = (self.session.as_ref(), self.conn.as_ref())
            && let Some(ev) = s.append_audio(pcm)
        {
            c.send(ev.to_json());
        }
    }

    /// End of a push-to-talk turn: commit what was said and ask for an answer.
    pub fn commit_user_audio(&mut self, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let outs = self.session_mut().map(|s| s.commit_user_audio(now)).unwrap_or_default();
        self.apply(outs, sup, now)
    }

    /// Playback was stopped after `played_ms` of the current item (barge-in).
    pub fn barge_in(&mut self, heard: Option<(String, u64)>, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let outs = self.session_mut().map(|s| s.barge_in(heard, now)).unwrap_or_default();
        self.apply(outs, sup, now)
    }

    /// The assistant's audio started or stopped playing (the floor waits while it plays).
    pub fn set_audio_playing(&mut self, playing: bool, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let outs = self.session_mut().map(|s| s.set_audio_playing(playing, now)).unwrap_or_default();
        self.apply(outs, sup, now)
    }

    /// A line typed by a text client.
    pub fn user_text(&mut self, text: &str, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let outs = self.session_mut().map(|s| s.send_user_text(text, now)).unwrap_or_default();
        self.apply(outs, sup, now)
    }

    /// A text client attaches: it gets every front event; a session is opened
    /// for it when none is.
    pub fn attach(
        &mut self,
        tx: Sender<FrontEvent>,
        sup: &mut Supervisor,
        now: Instant,
    ) -> Result<(u64, Vec<Notice>), String> {
        let notices = self.start(Purpose::TextClient, false, sup, now)?;
        let id = self.next_front_id;
        self.next_front_id += 1;
        let _ = tx.try_send(json!({"kind": "status", "state": self.state_name(), "message": "attached"}));
        self.fronts.push(Front { id, tx });
        Ok((id, notices))
    }

    /// A text client went away; a session opened for text clients ends with the last one.
    pub fn detach(&mut self, id: u64) {
        self.fronts.retain(|f| f.id != id);
        if self.fronts.is_empty() && self.purpose == Some(Purpose::TextClient) {
            self.stop("the last text client left");
        }
    }

    /// Sends a line to every text client. A client that is gone is dropped (and
    /// a session opened for text clients ends with the last one); a client that
    /// is merely slow misses this line rather than stalling the loop.
    fn broadcast(&mut self, ev: FrontEvent) {
        let before = self.fronts.len();
        self.fronts.retain(|f| match f.tx.try_send(ev.clone()) {
            Ok(()) => true,
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                log::debug!("live: text client {} is slow; it misses a line", f.id);
                true
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => false,
        });
        if before > 0 && self.fronts.is_empty() && self.purpose == Some(Purpose::TextClient) {
            self.stop("the last text client left");
        }
    }

    /// The earliest moment [`Live::poll`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.reconnect_at, self.session.as_ref().and_then(Session::next_deadline)].into_iter().flatten().min()
    }

    pub fn poll(&mut self, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.connect(now);
        }
        let outs = self.session_mut().map(|s| s.poll(now)).unwrap_or_default();
        self.apply(outs, sup, now)
    }

    /// Carries out the machine's outputs (tool results feed back into it).
    fn apply(&mut self, outs: Vec<Output>, sup: &mut Supervisor, now: Instant) -> Vec<Notice> {
        let mut notices = Vec::new();
        let mut work: std::collections::VecDeque<Output> = outs.into();
        while let Some(out) = work.pop_front() {
            match out {
                Output::Send(ev) => match &self.conn {
                    Some(c) => c.send(ev.to_json()),
                    None => log::debug!("live: dropping {} (no connection)", ev.type_name()),
                },
                Output::DispatchTool { call_id, name, arguments } => {
                    log::info!("live: tool {name}");
                    let (answer, n) = tools::run(&name, &arguments, sup, now);
                    notices.extend(n);
                    if let Some(s) = self.session.as_mut() {
                        work.extend(s.on_tool_result(&call_id, &answer, now));
                    }
                    self.broadcast(json!({"kind": "tool", "name": name, "result": serde_json::from_str::<Value>(&answer).unwrap_or(Value::Null)}));
                }
                Output::NotificationDelivered { id } => {
                    // A question marks nothing: its task is not announced by it (ids differ anyway).
                    sup.mark_announced(&id, now);
                    log::debug!("live: the end of task {id} was announced");
                }
                Output::NotificationDropped { id, reason } => {
                    sup.mark_announced(&id, now);
                    log::warn!("live: gave up announcing task {id}: {reason}");
                }
                Output::AssistantDelta { .. } => {}
                Output::AssistantText { text, phase, .. } => {
                    log::debug!("live: assistant said {} chars ({phase:?})", text.len());
                    self.broadcast(json!({"kind": "assistant", "text": text, "phase": phase}));
                }
                Output::TranscriptionRefused { model, message } => {
                    let note = format!(
                        "the server refused {model} for input transcription ({message}); your turns are \
                         transcribed out of band instead"
                    );
                    self.transcription_note = Some(note.clone());
                    self.broadcast(json!({"kind": "status", "state": self.state_name(), "message": note}));
                }
                Output::UserTranscript { text, .. } => {
                    if self.voice {
                        self.heard.push(text.clone());
                    }
                    self.broadcast(json!({"kind": "user", "text": text}))
                }
                Output::Audio { item_id, pcm } => {
                    if self.voice {
                        self.audio.push(AudioAction::Play { item_id, pcm });
                    }
                }
                Output::StopPlayback => {
                    if self.voice {
                        self.audio.push(AudioAction::Stop);
                    }
                }
                Output::Renew => {
                    if self.renewing.is_none() {
                        log::info!("live: the session expires soon; opening its successor");
                        match self.open_connection() {
                            Ok(c) => self.renewing = Some(c),
                            Err(e) => {
                                log::warn!("live: renewal failed: {e}");
                                if let Some(s) = self.session.as_mut() {
                                    work.extend(s.renewal_failed(now));
                                }
                            }
                        }
                    }
                }
                Output::Reconnect { reason } => {
                    if let Some(c) = self.conn.take() {
                        c.close();
                    }
                    self.last_close = Some(reason.clone());
                    if let Some(s) = self.session.as_mut() {
                        work.extend(s.on_closed(now));
                    }
                    log::info!("live: {reason}; opening a new session");
                    self.backoff.reset();
                    self.connect(now);
                }
                Output::Fatal { code, message } => self.fail(format!("{code}: {message}")),
            }
        }
        if let Some(s) = &self.session {
            if s.is_ready() && !self.was_ready {
                self.backoff.reset();
            }
            self.was_ready = s.is_ready();
            if self.purpose == Some(Purpose::Announce)
                && s.is_ready()
                && s.pending_notifications().is_empty()
                && !s.response_active()
                && !s.response_pending()
            {
                self.stop("announcements delivered");
            }
        }
        notices
    }

    fn state_name(&self) -> &'static str {
        match (&self.session, &self.fatal) {
            (None, _) => "off",
            (Some(_), Some(_)) => "failed",
            (Some(s), None) if s.is_ready() => "ready",
            (Some(_), None) if self.reconnect_at.is_some() => "reconnecting",
            (Some(_), None) => "connecting",
        }
    }

    pub fn status(&self, sup: &Supervisor, now: Instant) -> Value {
        let s = self.session.as_ref();
        json!({
            "state": self.state_name(),
            "purpose": self.purpose.map(|p| format!("{p:?}").to_lowercase()),
            "error": self.fatal,
            "last_close": self.last_close,
            "session_id": s.and_then(|s| s.session_id()),
            "expires_in_s": s.and_then(|s| s.expires_at()).map(|t| t.saturating_duration_since(now).as_secs()),
            "pending_notifications": sup.unannounced(MAX_PENDING, MAX_AGE_S).len(),
            "connects": self.connects,
            "bad_frames": self.bad_frames,
            "text_clients": self.fronts.len(),
            "model": self.cfg.model,
            "transcription": self.transcription_note,
            "key": match self.api_key() { Ok(_) => Value::from("present"), Err(e) => Value::from(e) },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        let steps = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0];
        for (d, step) in delays.iter().zip(steps) {
            let s = d.as_secs_f64();
            assert!(s >= 0.75 * step - 1e-9 && s <= step + 1e-9, "{s} for step {step}");
        }
        b.reset();
        assert!(b.next_delay() <= BACKOFF_FIRST);
    }
}
