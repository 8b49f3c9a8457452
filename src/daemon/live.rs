//! The live session as the daemon runs it: the pure [`Session`] machine, the
//! connection threads, reconnection, renewal and notifications.
//!
//! Everything here runs on the main loop. The machine decides *what* to send;
//! this module opens [`Connection`]s (ids tell a stale connection's events
//! from the current one's), puts the machine's frames on the socket, and keeps
//! the reconnect backoff (0.5 s doubling to 30 s, jittered) as a deadline.
//! Everything else the machine asks for (run a tool, mark a task announced,
//! play or stop audio, show a line to text clients, a voice command heard) is
//! returned as [`LiveStep`]s for the daemon to carry out, as
//! `daemon::dictation` returns its steps: `Live` never holds the supervisor,
//! the audio devices or a client's channel. A tool's result comes back through
//! [`Live::on_tool_result`]; what the session needs to know about tasks comes
//! in as data (a [`Briefing`], a task table, an ended task's record). So the
//! glue is unit-tested below with neither sockets nor processes.
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
use crate::control::reply::{self, LiveLine, LiveStatus, ProgressStatus};
use crate::paths::Paths;
use crate::realtime::connection::{ConnEvent, ConnId, ConnMessage, ConnectSpec, Connection};
use crate::realtime::events::ServerEvent;
use crate::realtime::session::{Output, Session, SessionConfig, Turn};
use crate::tasks::registry::{TaskRecord, unix_now};

use super::notifications::describe_end;
use super::tools::ToolResult;

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a session is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The user turned live mode on (hotkey / `ptt key toggle live`).
    Conversation,
    /// A `ptt live --text` client attached and started it; it ends with the last client.
    TextClient,
    /// Opened only to speak pending task results (`live.announce_when_idle`).
    Announce,
}

/// A line for attached text clients.
pub(crate) type FrontEvent = Value;

/// A tool call the model made: run it, then hand the result to [`Live::on_tool_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub(crate) call_id: String,
    pub(crate) name: String,
    /// The model's JSON text.
    pub(crate) arguments: String,
}

/// What the live session asks the daemon to do, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum LiveStep {
    /// Run this tool now and hand its result to [`Live::on_tool_result`].
    RunTool(ToolCall),
    /// The session spoke this task's end (or gave up on it): mark the task announced.
    MarkAnnounced(String),
    /// Queue the assistant's audio (voice sessions); report a start with [`Live::set_audio_playing`].
    Play { item_id: String, pcm: Vec<i16> },
    /// Stop playback now (barge-in), then report what was heard with [`Live::barge_in`].
    StopPlayback,
    /// The user said this in a voice session (for voice commands such as "dictate mode").
    Heard(String),
    /// Show this line to attached text clients; when the last one is gone, call
    /// [`Live::text_clients_gone`].
    Show(FrontEvent),
    /// The progress of these tasks was said (or given up on): their next update is due a period from now.
    ProgressSaid(Vec<String>),
}

/// Ids of progress items: `progress:<n>:<task ids joined by commas>`.
pub(crate) const PROGRESS_PREFIX: &str = "progress:";
/// Ids of the offer made when quiet mode ends (it marks nothing announced).
const OFFER_PREFIX: &str = "offer:";

/// The task ids a progress item's id names.
fn progress_tasks(id: &str) -> Option<Vec<String>> {
    let rest = id.strip_prefix(PROGRESS_PREFIX)?;
    let (_, ids) = rest.split_once(':')?;
    Some(ids.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

/// A task's end for the session to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct News {
    pub(crate) task_id: String,
    pub(crate) text: String,
}

/// What a session is told about tasks when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Briefing {
    /// The task table for the instructions.
    pub(crate) table: String,
    /// Every task whose end was not announced yet.
    pub(crate) news: Vec<News>,
    /// The questions of tasks waiting for an answer (`task_id` is the request's id), asked first.
    pub(crate) questions: Vec<News>,
}

/// Opens a connection (threads and socket; a thread-less stand-in in tests).
pub(crate) type Opener = Box<dyn FnMut(ConnId, ConnectSpec, Sender<ConnMessage>) -> std::io::Result<Connection>>;

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

pub(crate) struct Live {
    cfg: LiveConfig,
    paths: Paths,
    conn_tx: Sender<ConnMessage>,
    /// The loop selects on this.
    pub(crate) conn_rx: Receiver<ConnMessage>,
    open: Opener,
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
    /// The session speaks and listens (otherwise it is a text conversation).
    voice: bool,
    /// Set when the server refused the input-transcription model (shown in status).
    transcription_note: Option<String>,
    /// Quiet mode: nothing is spoken (the daemon owns the flag; a new session starts with it).
    quiet: bool,
    /// Progress items offered (their ids).
    progress_seq: u64,
    /// The session's last "a reply is awaited since" that the connection was told of.
    urged: Option<Instant>,
    /// Steps of the entry point being run; every entry point returns (and empties) it.
    steps: Vec<LiveStep>,
}

impl Live {
    pub(crate) fn new(cfg: LiveConfig, paths: &Paths) -> Live {
        Live::with_opener(cfg, paths, Box::new(Connection::open))
    }

    pub(crate) fn with_opener(cfg: LiveConfig, paths: &Paths, open: Opener) -> Live {
        let (conn_tx, conn_rx) = crossbeam_channel::unbounded();
        Live {
            cfg,
            paths: paths.clone(),
            conn_tx,
            conn_rx,
            open,
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
            voice: false,
            transcription_note: None,
            quiet: false,
            progress_seq: 0,
            urged: None,
            steps: Vec::new(),
        }
    }

    pub(crate) fn set_config(&mut self, cfg: LiveConfig) {
        self.cfg = cfg;
    }

    pub(crate) fn is_on(&self) -> bool {
        self.session.is_some()
    }

    /// The OpenAI key: `OPENAI_API_KEY`, else `live.key_file` (which must be 0600).
    pub(crate) fn api_key(&self) -> Result<String, String> {
        crate::secrets::load_key(&self.cfg, &self.paths)
    }

    fn show(&mut self, line: LiveLine) {
        self.steps.push(LiveStep::Show(reply::to_value(&line)));
    }

    fn take_steps(&mut self) -> Vec<LiveStep> {
        std::mem::take(&mut self.steps)
    }

    /// Feeds the machine's outputs and returns the steps they lead to.
    fn run(&mut self, outs: Vec<Output>, now: Instant) -> Vec<LiveStep> {
        self.apply(outs, now);
        self.take_steps()
    }

    /// Opens a session (or upgrades the purpose of the open one). A voice session
    /// (`voice`: the audio devices opened) speaks and listens; otherwise it is text.
    /// `briefing` is asked only when a session is really opened.
    pub(crate) fn start(
        &mut self,
        purpose: Purpose,
        voice: bool,
        briefing: impl FnOnce() -> Briefing,
        now: Instant,
    ) -> Result<Vec<LiveStep>, String> {
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
            return Ok(self.take_steps());
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
        let briefing = briefing();
        let mut session = Session::new(session_cfg);
        // Quiet before anything is queued: what the briefing brings is held, not said.
        let mut outs = session.set_quiet(self.quiet, now);
        outs.extend(session.set_task_table(&briefing.table, now));
        for n in &briefing.news {
            outs.extend(session.push_notification(&n.task_id, &n.text, now));
        }
        // Tasks waiting for an answer are asked first (a new session, or one after a restart).
        for q in &briefing.questions {
            outs.extend(session.push_question(&q.task_id, &q.text, now));
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
        Ok(self.run(outs, now))
    }

    /// Closes the session; pending notifications stay on disk for the next one.
    pub(crate) fn stop(&mut self, why: &str) -> Vec<LiveStep> {
        self.close_session(why);
        self.take_steps()
    }

    fn close_session(&mut self, why: &str) {
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
            self.steps.push(LiveStep::StopPlayback);
        }
        self.voice = false;
        self.show(LiveLine::status("off", Some(why.to_string())));
    }

    /// The last text client left: a session opened for text clients ends with it.
    pub(crate) fn text_clients_gone(&mut self) -> Vec<LiveStep> {
        if self.purpose == Some(Purpose::TextClient) {
            self.close_session("the last text client left");
        }
        self.take_steps()
    }

    /// The first line a text client gets when it attaches.
    pub(crate) fn attached_line(&self) -> FrontEvent {
        reply::to_value(&LiveLine::status(self.state_name(), Some("attached".into())))
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
        (self.open)(id, spec, self.conn_tx.clone()).map_err(|e| format!("cannot start the connection threads: {e}"))
    }

    fn schedule_reconnect(&mut self, reason: &str, now: Instant) {
        if self.session.is_none() || self.fatal.is_some() {
            return;
        }
        let delay = self.backoff.next_delay();
        self.reconnect_at = Some(now + delay);
        log::warn!("live: {reason}; reconnecting in {:.1} s", delay.as_secs_f64());
        self.show(LiveLine::status(
            "reconnecting",
            Some(format!("{reason}; reconnecting in {:.1} s", delay.as_secs_f64())),
        ));
    }

    fn fail(&mut self, message: String) {
        log::error!("live: {message}; not retrying (fix it, then start live mode again)");
        self.fatal = Some(message.clone());
        for c in [self.conn.take(), self.renewing.take()].into_iter().flatten() {
            c.close();
        }
        self.reconnect_at = None;
        self.show(LiveLine::Error { message: message.to_string() });
    }

    /// An event from a connection thread.
    pub(crate) fn on_conn(&mut self, (id, ev): ConnMessage, now: Instant) -> Vec<LiveStep> {
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
            return self.run(outs, now);
        }
        let outs = match ev {
            ConnEvent::Opened => {
                self.show(LiveLine::status("connected", None));
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
        self.run(outs, now)
    }

    fn session_mut(&mut self) -> Option<&mut Session> {
        self.session.as_mut()
    }

    /// A task ended (unannounced, on disk): hand its notification to the
    /// session, or open one to announce it (`briefing` is then asked for).
    pub(crate) fn on_task_ended(
        &mut self,
        task: &TaskRecord,
        briefing: impl FnOnce() -> Briefing,
        now: Instant,
    ) -> Vec<LiveStep> {
        let text = describe_end(task);
        self.show(LiveLine::Notification { task_id: task.id.clone(), text: text.to_string() });
        if self.session.is_none() {
            if self.cfg.announce_when_idle && self.fatal.is_none() && !self.quiet {
                // (The steps of `start` include the line above.)
                match self.start(Purpose::Announce, false, briefing, now) {
                    Ok(steps) => return steps,
                    Err(e) => log::warn!("live: cannot open a session to announce {}: {e}", task.id),
                }
            }
            return self.take_steps();
        }
        let outs = self.session_mut().map(|s| s.push_notification(&task.id, &text, now)).unwrap_or_default();
        self.run(outs, now)
    }

    /// A task's permission requests changed (one asked, one answered): a question no longer current and not
    /// yet said is taken back, and the current one (if it waits) goes ahead of result notifications, spoken
    /// when the floor is free. No session is opened just for a question: a desktop notification covers that.
    /// Questions are keyed by request, so each is asked once and a later one of the same task anew.
    pub(crate) fn on_task_question(&mut self, task: &TaskRecord, now: Instant) -> Vec<LiveStep> {
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
        self.show(LiveLine::Notification { task_id: task.id.clone(), text: text.to_string() });
        self.run(outs, now)
    }

    /// Quiet mode on or off (the daemon's flag, for this session and the next). On: nothing more is spoken, and
    /// a session opened only to announce closes. Off: held questions are asked and held results offered.
    pub(crate) fn set_quiet(&mut self, quiet: bool, now: Instant) -> Vec<LiveStep> {
        self.quiet = quiet;
        if quiet && self.purpose == Some(Purpose::Announce) {
            self.close_session("quiet mode");
            return self.take_steps();
        }
        let outs = self.session_mut().map(|s| s.set_quiet(quiet, now)).unwrap_or_default();
        if self.session.is_some() {
            let message = if quiet { "quiet mode on" } else { "quiet mode off" };
            self.show(LiveLine::status(self.state_name(), Some(message.to_string())));
        }
        self.run(outs, now)
    }

    /// Offers one progress item about `tasks` (their ids), replacing one not yet said. Spoken when the floor is
    /// free and nothing else waits; dropped while quiet.
    pub(crate) fn offer_progress(&mut self, tasks: &[String], text: &str, now: Instant) -> Vec<LiveStep> {
        // A session opened only to announce results closes once they are said: no progress for it.
        if self.purpose == Some(Purpose::Announce) {
            return vec![];
        }
        let Some(session) = self.session.as_mut() else { return vec![] };
        self.progress_seq += 1;
        let id = format!("{PROGRESS_PREFIX}{}:{}", self.progress_seq, tasks.join(","));
        let outs = session.push_progress(&id, text, now);
        if session.pending_notifications().contains(&id) {
            self.show(LiveLine::Progress { tasks: tasks.to_vec(), text: text.to_string() });
        }
        self.run(outs, now)
    }

    /// The progress item the session holds: the tasks it names, and whether it is being said.
    pub(crate) fn progress_item(&self) -> Option<(Vec<String>, bool)> {
        let (id, in_flight) = self.session.as_ref()?.progress_item()?;
        Some((progress_tasks(&id).unwrap_or_default(), in_flight))
    }

    /// Takes back a progress item not yet said (its tasks ended, or the daemon offers a newer one).
    pub(crate) fn withdraw_progress(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else { return false };
        match session.progress_item() {
            Some((id, false)) => session.withdraw_notification(&id),
            _ => false,
        }
    }

    /// Answers a `catch_up` call (a [`LiveStep::RunTool`]) from the session's own queue: every result and
    /// question not yet said, oldest first.
    pub(crate) fn catch_up(&mut self, call: &ToolCall, now: Instant) -> Vec<LiveStep> {
        let Some(session) = self.session.as_mut() else { return vec![] };
        let (output, outs) = session.catch_up(&call.call_id, now);
        self.apply(outs, now);
        if let Some(output) = output {
            let value: Value = serde_json::from_str(&output).unwrap_or(Value::String(output));
            self.show(LiveLine::Tool { name: call.name.clone(), result: value });
        }
        self.take_steps()
    }

    /// Tasks changed: refresh the table in the instructions (the machine debounces).
    pub(crate) fn on_tasks_changed(&mut self, table: &str, now: Instant) -> Vec<LiveStep> {
        let outs = self.session_mut().map(|s| s.set_task_table(table, now)).unwrap_or_default();
        self.run(outs, now)
    }

    /// A tool's answer (for a [`LiveStep::RunTool`]): it goes on the wire at
    /// once, and to text clients.
    pub(crate) fn on_tool_result(&mut self, call: &ToolCall, result: &ToolResult, now: Instant) -> Vec<LiveStep> {
        let value = serde_json::to_value(result)
            .unwrap_or_else(|e| json!({"status": "error", "message": format!("internal: {e}")}));
        let outs = self.session_mut().map(|s| s.on_tool_result(&call.call_id, &value.to_string(), now));
        self.apply(outs.unwrap_or_default(), now);
        self.show(LiveLine::Tool { name: call.name.clone(), result: value });
        self.take_steps()
    }

    /// The push-to-talk key went down or up (the floor waits while it is held).
    pub(crate) fn set_key_held(&mut self, held: bool, now: Instant) -> Vec<LiveStep> {
        let outs = self.session_mut().map(|s| s.set_key_held(held, now)).unwrap_or_default();
        self.run(outs, now)
    }

    /// Whether the open session speaks and listens.
    pub(crate) fn is_voice(&self) -> bool {
        self.session.is_some() && self.voice
    }

    pub(crate) fn turn(&self) -> LiveTurn {
        self.cfg.turn
    }

    pub(crate) fn full_duplex(&self) -> bool {
        self.cfg.full_duplex
    }

    /// 20 ms of microphone audio for the input buffer.
    pub(crate) fn append_audio(&mut self, pcm: &[i16]) {
        if let (Some(s), Some(c)) = (self.session.as_ref(), self.conn.as_ref())
            && let Some(ev) = s.append_audio(pcm)
        {
            c.send(ev.to_json());
        }
    }

    /// End of a push-to-talk turn: commit what was said and ask for an answer.
    pub(crate) fn commit_user_audio(&mut self, now: Instant) -> Vec<LiveStep> {
        let outs = self.session_mut().map(|s| s.commit_user_audio(now)).unwrap_or_default();
        self.run(outs, now)
    }

    /// Playback was stopped after `played_ms` of the current item (barge-in).
    pub(crate) fn barge_in(&mut self, heard: Option<(String, u64)>, now: Instant) -> Vec<LiveStep> {
        let outs = self.session_mut().map(|s| s.barge_in(heard, now)).unwrap_or_default();
        self.run(outs, now)
    }

    /// The assistant's audio started or stopped playing (the floor waits while it plays).
    pub(crate) fn set_audio_playing(&mut self, playing: bool, now: Instant) -> Vec<LiveStep> {
        let outs = self.session_mut().map(|s| s.set_audio_playing(playing, now)).unwrap_or_default();
        self.run(outs, now)
    }

    /// A line typed by a text client.
    pub(crate) fn user_text(&mut self, text: &str, now: Instant) -> Vec<LiveStep> {
        let outs = self.session_mut().map(|s| s.send_user_text(text, now)).unwrap_or_default();
        self.run(outs, now)
    }

    /// The earliest moment [`Live::poll`] has work.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.reconnect_at, self.session.as_ref().and_then(Session::next_deadline)].into_iter().flatten().min()
    }

    pub(crate) fn poll(&mut self, now: Instant) -> Vec<LiveStep> {
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.connect(now);
        }
        let outs = self.session_mut().map(|s| s.poll(now)).unwrap_or_default();
        self.run(outs, now)
    }

    /// Carries out the machine's outputs: frames go on the socket, the rest
    /// becomes steps (connection changes fed back into the machine at once).
    fn apply(&mut self, outs: Vec<Output>, now: Instant) {
        let mut work: std::collections::VecDeque<Output> = outs.into();
        while let Some(out) = work.pop_front() {
            match out {
                Output::Send(ev) => match &self.conn {
                    Some(c) => c.send(ev.to_json()),
                    None => log::debug!("live: dropping {} (no connection)", ev.type_name()),
                },
                Output::DispatchTool { call_id, name, arguments } => {
                    log::info!("live: tool {name}");
                    self.steps.push(LiveStep::RunTool(ToolCall { call_id, name, arguments }));
                }
                Output::NotificationDelivered { id } => {
                    if let Some(tasks) = progress_tasks(&id) {
                        self.steps.push(LiveStep::ProgressSaid(tasks));
                    } else if !id.starts_with(OFFER_PREFIX) {
                        // A question marks nothing: its task is not announced by it (ids differ anyway).
                        log::debug!("live: the end of task {id} was announced");
                        self.steps.push(LiveStep::MarkAnnounced(id));
                    }
                }
                Output::NotificationDropped { id, reason } => {
                    log::warn!("live: gave up announcing {id}: {reason}");
                    if let Some(tasks) = progress_tasks(&id) {
                        self.steps.push(LiveStep::ProgressSaid(tasks));
                    } else if !id.starts_with(OFFER_PREFIX) {
                        self.steps.push(LiveStep::MarkAnnounced(id));
                    }
                }
                Output::AssistantDelta { .. } => {}
                Output::AssistantText { text, phase, .. } => {
                    log::debug!("live: assistant said {} chars ({phase:?})", text.len());
                    self.show(LiveLine::Assistant { text, phase });
                }
                Output::TranscriptionRefused { model, message } => {
                    let note = format!(
                        "the server refused {model} for input transcription ({message}); your turns are \
                         transcribed out of band instead"
                    );
                    self.transcription_note = Some(note.clone());
                    self.show(LiveLine::status(self.state_name(), Some(note)));
                }
                Output::UserTranscript { text, .. } => {
                    if self.voice {
                        self.steps.push(LiveStep::Heard(text.clone()));
                    }
                    self.show(LiveLine::User { text })
                }
                Output::Audio { item_id, pcm } => {
                    if self.voice {
                        self.steps.push(LiveStep::Play { item_id, pcm });
                    }
                }
                Output::StopPlayback => {
                    if self.voice {
                        self.steps.push(LiveStep::StopPlayback);
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
            // A new wait for the server (a response.create or a committed turn just went out): ping now.
            if let (Some(since), Some(c)) = (s.reply_awaited_since(), &self.conn)
                && self.urged != Some(since)
            {
                c.expect_reply();
                self.urged = Some(since);
            }
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
                self.close_session("announcements delivered");
            }
        }
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

    /// For `ptt status`: `pending_notifications`, `waiting` (results not yet heard plus questions waiting for an
    /// answer) and `text_clients` are the daemon's to count.
    pub(crate) fn status(
        &self,
        pending_notifications: usize,
        waiting: usize,
        text_clients: usize,
        now: Instant,
    ) -> LiveStatus {
        let s = self.session.as_ref();
        LiveStatus {
            quiet: self.quiet,
            waiting: waiting as u64,
            responding: s.is_some_and(Session::response_active),
            progress: self.progress_item().map(|(tasks, speaking)| ProgressStatus { tasks, speaking }),
            state: Some(self.state_name().into()),
            purpose: self.purpose.map(|p| format!("{p:?}").to_lowercase()),
            error: self.fatal.clone(),
            last_close: self.last_close.clone(),
            // `None`: no attempt is planned (tests check that a fatal error plans none).
            reconnect_in_ms: self.reconnect_at.map(|t| t.saturating_duration_since(now).as_millis() as u64),
            session_id: s.and_then(|s| s.session_id()).map(str::to_string),
            expires_in_s: s.and_then(|s| s.expires_at()).map(|t| t.saturating_duration_since(now).as_secs()),
            pending_notifications: pending_notifications as u64,
            connects: self.connects,
            bad_frames: self.bad_frames,
            text_clients: text_clients as u64,
            model: self.cfg.model.clone(),
            transcription: self.transcription_note.clone(),
            key: Some(match self.api_key() {
                Ok(_) => "present".to_string(),
                Err(e) => e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::connection::Outbound;
    use crate::tasks::registry::{TaskState, sample};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A `Live` whose connections have no threads and no socket: what it sends on
    /// connection `n` arrives on `wires[n - 1]`.
    struct Harness {
        live: Live,
        wires: Rc<RefCell<Vec<Receiver<Outbound>>>>,
        t: Instant,
        _home: tempfile::TempDir,
    }

    fn harness(cfg: LiveConfig) -> Harness {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("tempdir");
        let key = home.path().join("key");
        std::fs::write(&key, "sk-test\n").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let paths = Paths::from_vars(|k| (k == "HOME").then(|| home.path().as_os_str().to_owned())).expect("paths");
        let wires = Rc::new(RefCell::new(Vec::new()));
        let w = wires.clone();
        let open: Opener = Box::new(move |id, _spec, _events| {
            let (conn, rx) = Connection::detached(id)?;
            w.borrow_mut().push(rx);
            Ok(conn)
        });
        let live = Live::with_opener(LiveConfig { key_file: Some(key), ..cfg }, &paths, open);
        Harness { live, wires, t: Instant::now(), _home: home }
    }

    impl Harness {
        /// The frames sent on connection `n` since the last look, as JSON.
        fn sent(&self, n: usize) -> Vec<Value> {
            let wires = self.wires.borrow();
            wires[n - 1]
                .try_iter()
                .filter_map(|o| match o {
                    Outbound::Text(t) => Some(serde_json::from_str(&t).expect("a frame is JSON")),
                    _ => None,
                })
                .collect()
        }

        fn connections(&self) -> usize {
            self.wires.borrow().len()
        }

        fn frame(&mut self, conn: ConnId, v: Value) -> Vec<LiveStep> {
            self.live.on_conn((conn, ConnEvent::Frame(v.to_string())), self.t)
        }

        /// Starts a session and brings connection `conn` to ready (its `session.update` read).
        fn ready(&mut self, purpose: Purpose, voice: bool, briefing: Briefing) -> Vec<Value> {
            self.live.start(purpose, voice, || briefing, self.t).expect("starts");
            let conn = self.connections() as ConnId;
            self.live.on_conn((conn, ConnEvent::Opened), self.t);
            let created = json!({"type": "session.created", "event_id": "e", "session": {"type": "realtime",
                "object": "realtime.session", "id": "sess_1", "expires_at": unix_now() + 3600}});
            self.frame(conn, created);
            let sent = self.sent(conn as usize);
            assert_eq!(sent.first().map(|f| f["type"].clone()), Some(json!("session.update")), "{sent:?}");
            sent
        }
    }

    fn types(frames: &[Value]) -> Vec<&str> {
        frames.iter().map(|f| f["type"].as_str().unwrap_or("?")).collect()
    }

    fn response(id: &str, status: &str) -> [Value; 2] {
        [
            json!({"type": "response.created", "response": {"id": id, "status": "in_progress", "output": []}}),
            json!({"type": "response.done", "response": {"id": id, "status": status, "output": []}}),
        ]
    }

    fn shown(steps: &[LiveStep]) -> Vec<&Value> {
        steps
            .iter()
            .filter_map(|s| match s {
                LiveStep::Show(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    fn ended(id: &str) -> TaskRecord {
        let mut t = sample(id, "auth refactor", TaskState::Succeeded);
        t.created_at = 1000;
        t.ended_at = Some(1060);
        t.summary = Some("All tests pass.".into());
        t
    }

    #[test]
    fn a_tool_call_becomes_a_step_and_its_result_one_output_and_one_create() {
        let mut h = harness(LiveConfig::default());
        h.ready(Purpose::Conversation, false, Briefing::default());
        let [created, done] = response("r1", "completed");
        assert!(h.frame(1, created).is_empty());
        let args = json!({"type": "response.function_call_arguments.done", "response_id": "r1", "item_id": "i1",
            "output_index": 0, "call_id": "c1", "name": "list_tasks", "arguments": "{}"});
        let steps = h.frame(1, args);
        let call = ToolCall { call_id: "c1".into(), name: "list_tasks".into(), arguments: "{}".into() };
        assert_eq!(steps, [LiveStep::RunTool(call.clone())]);
        assert!(h.sent(1).is_empty(), "nothing is answered before the tool ran");
        assert!(h.frame(1, done).is_empty());
        assert!(h.sent(1).is_empty(), "no response.create while a call is unanswered");

        let result = ToolResult::List(super::super::tools::TaskList { status: "ok", running: 0, tasks: vec![] });
        let steps = h.live.on_tool_result(&call, &result, h.t);
        let sent = h.sent(1);
        assert_eq!(types(&sent), ["conversation.item.create", "response.create"]);
        assert_eq!(sent[0]["item"]["type"], "function_call_output");
        assert_eq!(sent[0]["item"]["call_id"], "c1");
        let output: Value = serde_json::from_str(sent[0]["item"]["output"].as_str().unwrap_or("")).expect("JSON");
        assert_eq!(output, json!({"status": "ok", "running": 0, "tasks": []}));
        assert_eq!(shown(&steps), [&json!({"kind": "tool", "name": "list_tasks", "result": output})]);

        // A second answer to the same call goes nowhere.
        h.live.on_tool_result(&call, &result, h.t);
        assert!(h.sent(1).is_empty());
    }

    #[test]
    fn a_reply_awaited_from_the_session_makes_the_connection_ping_once_behind_the_frames() {
        let mut h = harness(LiveConfig::default());
        h.ready(Purpose::Conversation, false, Briefing::default());
        let all = |h: &Harness| -> Vec<String> {
            h.wires.borrow()[0]
                .try_iter()
                .map(|o| match o {
                    Outbound::Text(t) => serde_json::from_str::<Value>(&t).expect("JSON")["type"].to_string(),
                    Outbound::Ping => "ping".into(),
                    Outbound::Close => "close".into(),
                })
                .collect()
        };
        h.live.user_text("hello", h.t);
        assert_eq!(all(&h), ["\"conversation.item.create\"", "\"response.create\"", "ping"]);
        h.live.poll(h.t);
        assert!(all(&h).is_empty(), "one ping per wait");
        h.frame(1, json!({"type": "response.created", "response": {"id": "r1", "status": "in_progress"}}));
        h.live.on_tasks_changed("t1 'x' running", h.t);
        assert!(!all(&h).contains(&"ping".to_string()), "nothing owed: no ping");
    }

    #[test]
    fn a_notification_waits_for_the_floor_and_is_marked_announced_when_spoken() {
        let mut h = harness(LiveConfig::default());
        h.ready(Purpose::Conversation, false, Briefing::default());
        assert!(h.live.set_key_held(true, h.t).is_empty());
        let steps = h.live.on_task_ended(&ended("t7"), || panic!("a session is open"), h.t);
        assert_eq!(shown(&steps)[0]["kind"], "notification");
        assert!(h.sent(1).is_empty(), "the key is held: the floor is the user's");

        h.live.set_key_held(false, h.t);
        let sent = h.sent(1);
        assert_eq!(types(&sent), ["conversation.item.create", "response.create"]);
        assert_eq!(sent[0]["item"]["role"], "system");
        let text = sent[0]["item"]["content"][0]["text"].as_str().unwrap_or("");
        assert!(text.starts_with("[task t7 'auth refactor' finished"), "{text}");

        let [created, done] = response("r1", "completed");
        assert!(h.frame(1, created).is_empty(), "not announced before the response is done");
        assert!(h.frame(1, done).contains(&LiveStep::MarkAnnounced("t7".into())));
    }

    #[test]
    fn a_new_session_is_told_the_table_every_unannounced_end_and_asks_questions_first() {
        let mut h = harness(LiveConfig::default());
        let news = vec![News { task_id: "t3".into(), text: "[task t3 'x' failed after 1 second: no]".into() }];
        let questions = vec![News { task_id: "ask:t4:0".into(), text: "[task t4 wants to run: ls]".into() }];
        let briefing = Briefing { table: "t3 'x' failed 1 second".into(), news, questions };
        let sent = h.ready(Purpose::Conversation, false, briefing);
        assert_eq!(types(&sent), ["session.update", "conversation.item.create", "response.create"]);
        let instructions = sent[0]["session"]["instructions"].as_str().unwrap_or("");
        assert!(instructions.contains("t3 'x' failed 1 second"), "{instructions}");
        assert_eq!(sent[1]["item"]["content"][0]["text"], "[task t4 wants to run: ls]", "the question goes first");
        let [created, done] = response("r1", "completed");
        h.frame(1, created);
        let steps = h.frame(1, done);
        assert!(steps.contains(&LiveStep::MarkAnnounced("ask:t4:0".into())), "{steps:?}");
        let sent = h.sent(1);
        assert_eq!(types(&sent), ["conversation.item.create", "response.create"]);
        assert_eq!(sent[0]["item"]["content"][0]["text"], "[task t3 'x' failed after 1 second: no]");
    }

    #[test]
    fn a_question_waits_for_the_floor_and_is_taken_back_once_answered_elsewhere() {
        use crate::tasks::permission::PermissionEntry;
        let mut h = harness(LiveConfig::default());
        h.ready(Purpose::Conversation, false, Briefing::default());
        let mut task = sample("t4", "website", TaskState::Waiting);
        task.permissions =
            vec![PermissionEntry { asked_at: 0, what: "run: ls".into(), answered_at: None, answer: None, by: None }];
        task.waiting_for = Some("run: ls".into());
        h.live.set_key_held(true, h.t);
        let steps = h.live.on_task_question(&task, h.t);
        assert_eq!(shown(&steps)[0]["kind"], "notification");
        assert!(h.live.on_task_question(&task, h.t).is_empty(), "asked once");
        // Answered from the shell before the floor was free: nothing is said.
        task.waiting_for = None;
        task.permissions[0].answer = Some("allowed".into());
        task.state = TaskState::Running;
        h.live.on_task_question(&task, h.t);
        h.live.set_key_held(false, h.t);
        assert!(h.sent(1).is_empty(), "the stale question was taken back");
    }

    #[test]
    fn a_close_sets_the_reconnect_deadline_and_a_fatal_close_stops_retrying() {
        let mut h = harness(LiveConfig::default());
        h.ready(Purpose::Conversation, false, Briefing::default());
        let t = h.t;
        let steps = h.live.on_conn((1, ConnEvent::Closed { reason: "reset by peer".into(), fatal: false }), t);
        assert_eq!(shown(&steps)[0]["state"], "reconnecting");
        let at = h.live.next_deadline().expect("a reconnect deadline");
        assert!(at >= t + BACKOFF_FIRST.mul_f64(0.75) && at <= t + BACKOFF_FIRST, "{:?}", at - t);
        h.live.poll(at - Duration::from_millis(1));
        assert_eq!(h.connections(), 1, "not before the deadline");
        h.live.poll(at);
        assert_eq!(h.connections(), 2, "reconnected at the deadline");
        assert!(h.frame(1, json!({"type": "response.created"})).is_empty(), "the old connection is ignored");

        let steps = h.live.on_conn((2, ConnEvent::Closed { reason: "HTTP 401".into(), fatal: true }), t);
        assert_eq!(shown(&steps), [&json!({"kind": "error", "message": "HTTP 401"})]);
        assert_eq!(h.live.next_deadline(), None, "no retry after a fatal error");
        assert_eq!(h.live.status(0, 0, 0, t).state.as_deref(), Some("failed"));
        h.live.poll(t + BACKOFF_MAX * 2);
        assert_eq!(h.connections(), 2);
    }

    #[test]
    fn a_voice_session_asks_to_play_stop_and_hear() {
        let mut h = harness(LiveConfig::default());
        h.ready(Purpose::Conversation, true, Briefing::default());
        let [created, _] = response("r1", "completed");
        h.frame(1, created);
        let audio = json!({"type": "response.output_audio.delta", "response_id": "r1", "item_id": "a1",
            "delta": "AQD+/w=="});
        assert_eq!(h.frame(1, audio), [LiveStep::Play { item_id: "a1".into(), pcm: vec![1, -2] }]);
        let heard = json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1",
            "content_index": 0, "transcript": "dictate mode"});
        let steps = h.frame(1, heard);
        assert!(steps.contains(&LiveStep::Heard("dictate mode".into())), "{steps:?}");
        let steps = h.live.stop("live mode turned off");
        assert_eq!(steps[0], LiveStep::StopPlayback);
        assert_eq!(shown(&steps), [&json!({"kind": "status", "state": "off", "message": "live mode turned off"})]);
        assert!(!h.live.is_on());
        assert!(h.live.stop("again").is_empty());
    }

    #[test]
    fn an_announcement_session_opens_for_an_end_and_closes_once_it_is_spoken() {
        let mut h = harness(LiveConfig { announce_when_idle: true, ..LiveConfig::default() });
        let task = ended("t9");
        let news = vec![News { task_id: "t9".into(), text: describe_end(&task) }];
        let steps = h.live.on_task_ended(&task, || Briefing { news, ..Briefing::default() }, h.t);
        assert_eq!(shown(&steps)[0]["kind"], "notification");
        assert!(h.live.is_on() && h.connections() == 1);
        h.live.on_conn((1, ConnEvent::Opened), h.t);
        let created = json!({"type": "session.created", "session": {"id": "s", "expires_at": unix_now() + 3600}});
        h.frame(1, created);
        assert_eq!(types(&h.sent(1)), ["session.update", "conversation.item.create", "response.create"]);
        let [created, done] = response("r1", "completed");
        h.frame(1, created);
        let steps = h.frame(1, done);
        assert_eq!(steps[0], LiveStep::MarkAnnounced("t9".into()));
        assert_eq!(shown(&steps), [&json!({"kind": "status", "state": "off", "message": "announcements delivered"})]);
        assert!(!h.live.is_on());
    }

    #[test]
    fn a_session_for_text_clients_ends_with_the_last_one() {
        let mut h = harness(LiveConfig::default());
        h.ready(Purpose::Conversation, false, Briefing::default());
        assert!(h.live.text_clients_gone().is_empty(), "a conversation outlives its text clients");
        h.live.stop("off");
        h.ready(Purpose::TextClient, false, Briefing::default());
        assert_eq!(h.live.attached_line()["state"], "ready");
        assert_eq!(shown(&h.live.text_clients_gone())[0]["message"], "the last text client left");
        assert!(!h.live.is_on());
    }

    #[test]
    fn a_progress_item_reports_its_tasks_said_and_quiet_holds_results_until_catch_up() {
        let mut h = harness(LiveConfig::default());
        h.ready(Purpose::Conversation, false, Briefing::default());
        h.live.set_key_held(true, h.t);
        h.live.offer_progress(&["t1".into(), "t2".into()], "[progress, not a result: t1 and t2 run]", h.t);
        assert_eq!(h.live.progress_item(), Some((vec!["t1".to_string(), "t2".to_string()], false)));
        h.live.set_key_held(false, h.t);
        assert_eq!(types(&h.sent(1)), ["conversation.item.create", "response.create"]);
        assert_eq!(h.live.progress_item().map(|(_, said)| said), Some(true));
        let [created, done] = response("r1", "completed");
        h.frame(1, created);
        let steps = h.frame(1, done);
        assert!(steps.contains(&LiveStep::ProgressSaid(vec!["t1".into(), "t2".into()])), "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s, LiveStep::MarkAnnounced(_))), "{steps:?}");

        // Quiet: a result is held; leaving quiet offers it (the offer marks nothing); catch_up delivers it.
        h.live.set_quiet(true, h.t);
        h.live.on_task_ended(&ended("t7"), || panic!("a session is open"), h.t);
        assert!(h.sent(1).is_empty(), "quiet: nothing said");
        h.live.set_quiet(false, h.t);
        let sent = h.sent(1);
        assert_eq!(types(&sent), ["conversation.item.create", "response.create"]);
        assert!(sent[0]["item"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with("[Quiet mode is off")));
        let [created, done] = response("r2", "completed");
        h.frame(1, created);
        assert!(!h.frame(1, done).iter().any(|s| matches!(s, LiveStep::MarkAnnounced(_))), "the offer marks nothing");
        let [created, done] = response("r3", "completed");
        h.frame(1, created);
        let args = json!({"type": "response.function_call_arguments.done", "response_id": "r3", "item_id": "i1",
            "output_index": 0, "call_id": "c1", "name": "catch_up", "arguments": "{}"});
        let call = ToolCall { call_id: "c1".into(), name: "catch_up".into(), arguments: "{}".into() };
        assert_eq!(h.frame(1, args), [LiveStep::RunTool(call.clone())]);
        let steps = h.live.catch_up(&call, h.t);
        let sent = h.sent(1);
        assert_eq!(sent[0]["item"]["type"], "function_call_output");
        assert!(sent[0]["item"]["output"].as_str().is_some_and(|o| o.contains("[task t7 'auth refactor' finished")));
        assert_eq!(shown(&steps)[0]["name"], "catch_up");
        h.frame(1, done);
        let [created, done] = response("r4", "completed");
        h.frame(1, created);
        assert!(h.frame(1, done).contains(&LiveStep::MarkAnnounced("t7".into())), "heard once its response is done");
    }

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
