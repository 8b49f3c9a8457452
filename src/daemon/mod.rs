//! The daemon: one loop, one `Event` enum, all mutable state in one struct.
//!
//! Every other thread (signals, control connections, reapers) owns an I/O
//! handle and reports facts over a channel. [`Daemon::next_event`] waits on all
//! of them with one `select!`, with the earliest timer deadline as timeout;
//! [`Daemon::handle_event`] is the one place state changes. Because only this
//! thread mutates the registry, a race between two writers cannot be written.
//!
//! Start-up order matters: config, then the per-user lock (a second daemon
//! exits here), then the registry and the orphan sweep, then the socket, then
//! `READY=1`.

pub(crate) mod dictation;
pub(crate) mod fronts;
pub(crate) mod keys;
pub(crate) mod lifecycle;
pub(crate) mod live;
pub(crate) mod lock;
pub(crate) mod notifications;
pub(crate) mod progress;
pub(crate) mod scheduler;
pub(crate) mod systemd;
pub(crate) mod tools;
pub(crate) mod voice;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender, select};
use serde_json::{Value, json};

use crate::audio::cues::Cue;
use crate::config::Config;
use crate::control::protocol::{KeyAction, error_reply};
use crate::control::reply;
use crate::control::{Incoming, Request};
use crate::hotkey::{Action, Binding, BindingEvent, SourceEvent};
use crate::paths::Paths;
use crate::realtime::connection::ConnMessage;
use crate::tasks::permission::Decision;
use crate::tasks::reaper::TaskEvent;
use crate::tasks::waiting::PermissionOutcome;
use crate::tasks::{CancelOutcome, Notice, StartRequest, Supervisor, TaskView};
use live::{Live, LiveStep, Purpose};
use scheduler::{Scheduler, TimerKind};

/// Exit status for a configuration error (sysexits' EX_CONFIG); the systemd
/// unit does not restart on it.
pub(crate) const EXIT_CONFIG: i32 = 78;

/// Everything the loop waits for.
#[derive(Debug)]
pub(crate) enum Event {
    Control(Incoming),
    Task(TaskEvent),
    /// From a Realtime connection's threads.
    Live(ConnMessage),
    /// From the hotkey listener thread.
    Hotkey(SourceEvent),
    /// From the audio actors (device opened, unavailable, lost).
    Audio(crate::audio::AudioEvent),
    /// The audio probe's answer: both devices open (a voice session) or why not.
    VoiceProbe(Result<(), String>),
    /// From the dictation threads (transcribed, typed, failed).
    Dictation(crate::dictate::worker::DictationEvent),
    /// The model lifecycle check's reports.
    Models(Vec<crate::models::check::Report>),
    /// From the microphone: a 20 ms chunk, or the end of a push-to-talk turn
    /// (boxed: a chunk is 960 bytes, the other events are small).
    Mic(Box<crate::audio::capture::Captured>),
    Signal(i32),
    /// The earliest deadline passed.
    Timer,
    /// Every sender of this channel is gone (its thread ended).
    Gone(Channel),
}

/// The loop's channels, to retire one whose producers are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Control,
    Tasks,
    Live,
    Hotkeys,
    Audio,
    Mic,
    Probe,
    Dictation,
    Signals,
}

/// The one state struct.
pub(crate) struct Daemon {
    paths: Paths,
    /// The whole configuration; each component also keeps its own section.
    config: Config,
    supervisor: Supervisor,
    live: Live,
    /// Attached text clients (`ptt live --text`).
    fronts: fronts::Fronts,
    /// What the user said in a voice session since the last event (checked for voice commands).
    heard: Vec<String>,
    hotkeys: keys::Hotkeys,
    voice: voice::Voice,
    dictation: dictation::Dictation,
    /// Desktop notifications (`None`: off, or no session bus).
    notifier: Option<crate::notify::Notifier>,
    /// Which models are used, retired-model warnings, the daily model check.
    lifecycle: lifecycle::Lifecycle,
    /// While a key machine's binding event is handled: when its key physically went up.
    key_went_up: Option<Instant>,
    /// Live mode was turned on; the session starts when the audio probe answers.
    live_starting: bool,
    /// Quiet mode: nothing is spoken; results and questions wait (unannounced on disk) for `catch_up`.
    quiet: bool,
    /// When running tasks are due for a spoken update (`live.progress_min`).
    progress: progress::Progress,
    scheduler: Scheduler,
    subscribers: Vec<crate::control::direct::Subscriber>,
    /// Notices of a request, published once its reply has been sent.
    after_reply: Vec<Notice>,
    /// `sync` requests waiting for the loop to have nothing queued (see [`Daemon::answer_syncs`]).
    syncs: Vec<Sender<Value>>,
    started: Instant,
    shutting_down: bool,
    watchdog: Option<Duration>,
    control_rx: Receiver<Incoming>,
    task_rx: Receiver<TaskEvent>,
    signal_rx: Receiver<i32>,
}

/// A text conversation run by this process itself (`ptt live --text` with no
/// daemon running): stdin lines go to the session, its lines to `output`.
pub(crate) struct LocalText {
    pub(crate) output: Sender<Value>,
}

/// `ptt run`: runs the daemon in the foreground until SIGTERM/SIGINT.
pub(crate) fn run(paths: Paths) -> Result<i32> {
    run_with(paths, None)
}

/// The daemon, optionally with a local text conversation attached.
pub(crate) fn run_with(paths: Paths, local: Option<LocalText>) -> Result<i32> {
    // Everything the daemon writes (state, logs, socket, lock) is private to the user.
    crate::paths::set_private_umask();
    match crate::dictate::legacy::import_on_first_run(&paths) {
        Ok(Some(lines)) => lines.iter().for_each(|l| log::warn!("{l}")),
        Ok(None) => {}
        Err(e) => log::warn!("the Python app's settings were not imported: {e}"),
    }
    let config = match Config::load(&paths.config_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "ptt: config error: {e}\n(check it with `ptt config check`; `ptt config default` prints a valid file)"
            );
            return Ok(EXIT_CONFIG);
        }
    };
    config.warnings(&paths.config_file).iter().for_each(|w| log::warn!("{w}"));
    paths.ensure_runtime_dir()?;
    let _lock = match lock::acquire(&paths.lock_file()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ptt: {e}");
            return Ok(1);
        }
    };
    if config.tasks.permission_mode == crate::config::PermissionMode::BypassPermissions {
        log::warn!("tasks.permission_mode = \"bypassPermissions\": Claude tasks will run tools WITHOUT asking");
    }
    let (task_tx, task_rx) = crossbeam_channel::unbounded();
    // Retired models: warned until their shutdown date, replaced from then on (docs/openai-2027-models.md).
    let today = crate::models::Date::today();
    let lifecycle = lifecycle::Lifecycle::new(&config, today, Instant::now());
    let (config, _) = lifecycle::effective(&config, today);
    let live = Live::new(config.live.clone(), &paths);
    if local.is_some()
        && let Err(e) = live.api_key()
    {
        eprintln!("ptt: cannot start a live session: {e}");
        return Ok(1);
    }
    let (supervisor, report) = Supervisor::new(config.tasks.clone(), config.projects.clone(), paths.clone(), task_tx)?;
    if let Some((aside, why)) = &report.registry_moved_aside {
        log::warn!("the task registry was corrupt ({why}); moved it to {} and started empty", aside.display());
    }
    if !report.interrupted.is_empty() {
        log::warn!("tasks interrupted by the previous daemon's end: {}", report.interrupted.join(", "));
    }
    if report.swept > 0 {
        log::warn!("killed {} process(es) left behind by a previous daemon", report.swept);
    }
    let signal_rx = spawn_signal_thread()?;
    let hotkeys = keys::Hotkeys::start(&config.keys);
    let voice = voice::Voice::new(config.audio.clone());
    let dictation = dictation::Dictation::new(config.dictate.clone(), &paths);
    let notifier = if config.notify.enabled { crate::notify::Notifier::start() } else { None };
    let (control_tx, control_rx) = crossbeam_channel::unbounded();
    crate::control::server::start(&paths.socket(), control_tx.clone())?;
    let config_progress_min = config.live.progress_min;
    let mut daemon = Daemon {
        paths,
        config,
        supervisor,
        live,
        fronts: fronts::Fronts::default(),
        heard: Vec::new(),
        hotkeys,
        voice,
        dictation,
        notifier,
        lifecycle,
        key_went_up: None,
        live_starting: false,
        quiet: false,
        progress: progress::Progress::new(config_progress_min),
        scheduler: Scheduler::default(),
        subscribers: Vec::new(),
        after_reply: Vec::new(),
        syncs: Vec::new(),
        started: Instant::now(),
        shutting_down: false,
        watchdog: systemd::watchdog_interval(),
        control_rx,
        task_rx,
        signal_rx,
    };
    if let Some(every) = daemon.watchdog {
        daemon.scheduler.schedule(TimerKind::Watchdog, Instant::now() + every);
    }
    log::info!(
        "ptt {} ready (pid {}, socket {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        daemon.paths.socket().display()
    );
    systemd::notify("READY=1");
    if let Some(local) = local {
        let now = Instant::now();
        match daemon.attach_text_client(local.output, now) {
            Ok(_) => {}
            Err(e) => {
                eprintln!("ptt: cannot start a live session: {e}");
                return Ok(1);
            }
        }
        spawn_stdin_thread(control_tx)?;
    }
    daemon.main_loop();
    let _ = std::fs::remove_file(daemon.paths.socket());
    log::info!("stopped");
    Ok(0)
}

/// Feeds stdin lines to the local text conversation; end of input stops the daemon.
fn spawn_stdin_thread(to_loop: Sender<Incoming>) -> Result<()> {
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let text = line.trim().to_string();
            if text.is_empty() {
                continue;
            }
            if to_loop.send(Incoming::LiveInput { text }).is_err() {
                return;
            }
        }
        let (reply, _) = crossbeam_channel::bounded(1);
        let _ = to_loop.send(Incoming::Request { request: Request::Shutdown, reply });
    })?;
    Ok(())
}

fn spawn_signal_thread() -> Result<Receiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).context("cannot install signal handlers")?;
    let (tx, rx) = crossbeam_channel::bounded(16);
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if tx.send(sig).is_err() {
                return;
            }
        }
    })?;
    Ok(rx)
}

impl Daemon {
    fn main_loop(&mut self) {
        loop {
            match self.next_event() {
                Event::Control(Incoming::Request { request: Request::Sync, reply }) => self.syncs.push(reply),
                event => self.handle_event(event),
            }
            self.answer_syncs();
            if self.shutting_down
                && (self.supervisor.is_idle() || !self.scheduler.is_scheduled(TimerKind::ShutdownDeadline))
            {
                break;
            }
        }
        self.supervisor.finish_shutdown();
        systemd::notify("STOPPING=1");
        self.broadcast(json!({"event": "daemon_stopped"}));
    }

    /// Answers the waiting `sync` requests once nothing is queued on any channel and no timer is due: then
    /// everything that reached the daemon before them has been handled. `select!` picks among ready channels at
    /// random, so the order of one channel alone would not say that.
    fn answer_syncs(&mut self) {
        if self.syncs.is_empty() {
            return;
        }
        let queued = !self.control_rx.is_empty()
            || !self.task_rx.is_empty()
            || !self.live.conn_rx.is_empty()
            || !self.hotkeys.rx.is_empty()
            || !self.voice.rx.is_empty()
            || !self.voice.probe_rx.is_empty()
            || !self.voice.mic_rx.is_empty()
            || !self.dictation.rx.is_empty()
            || !self.signal_rx.is_empty();
        let now = Instant::now();
        if queued || self.next_deadline().is_some_and(|at| at <= now) {
            return;
        }
        let answer = self.handle_request(Request::Sync, now);
        for reply in self.syncs.drain(..) {
            let _ = reply.send(answer.clone());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.scheduler.next_deadline(),
            self.supervisor.next_deadline(),
            self.live.next_deadline(),
            self.hotkeys.next_deadline(),
            self.lifecycle.next_deadline(),
            self.progress.next_deadline(&self.progress_pending()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn next_event(&self) -> Event {
        let timeout = match self.next_deadline() {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        // A channel whose senders are all gone is always ready: it becomes an event
        // that retires the receiver, or the loop would spin.
        select! {
            recv(self.control_rx) -> msg => msg.map(Event::Control).unwrap_or(Event::Gone(Channel::Control)),
            recv(self.task_rx) -> msg => msg.map(Event::Task).unwrap_or(Event::Gone(Channel::Tasks)),
            recv(self.live.conn_rx) -> msg => msg.map(Event::Live).unwrap_or(Event::Gone(Channel::Live)),
            recv(self.hotkeys.rx) -> msg => msg.map(Event::Hotkey).unwrap_or(Event::Gone(Channel::Hotkeys)),
            recv(self.voice.rx) -> msg => msg.map(Event::Audio).unwrap_or(Event::Gone(Channel::Audio)),
            recv(self.voice.probe_rx) -> msg => msg.map(Event::VoiceProbe).unwrap_or(Event::Gone(Channel::Probe)),
            recv(self.voice.mic_rx) -> msg => {
                msg.map(|m| Event::Mic(Box::new(m))).unwrap_or(Event::Gone(Channel::Mic))
            }
            recv(self.dictation.rx) -> msg => msg.map(Event::Dictation).unwrap_or(Event::Gone(Channel::Dictation)),
            // The lifecycle keeps a sender itself: this channel never disconnects.
            recv(self.lifecycle.rx) -> msg => msg.map(Event::Models).unwrap_or(Event::Timer),
            recv(self.signal_rx) -> msg => msg.map(Event::Signal).unwrap_or(Event::Gone(Channel::Signals)),
            default(timeout) => Event::Timer,
        }
    }

    /// One event: dispatch it, then [`Daemon::after_event`].
    fn handle_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Control(incoming) => self.on_control(incoming, now),
            Event::Task(ev) => {
                let notices = self.supervisor.on_event(ev, now);
                self.publish(notices, now);
            }
            Event::Live(msg) => {
                let steps = self.live.on_conn(msg, now);
                self.run_live_steps(steps, now);
            }
            Event::Audio(ev) => self.on_audio(ev, now),
            Event::VoiceProbe(answer) => self.on_voice_probe(answer, now),
            Event::Mic(captured) => self.on_mic(*captured, now),
            Event::Hotkey(ev) => {
                for b in self.hotkeys.on_source(ev) {
                    self.on_key_binding(b, now);
                }
            }
            Event::Dictation(ev) => {
                let steps = self.dictation.on_event(ev);
                self.run_dictation_steps(steps);
            }
            Event::Signal(sig) => self.handle_signal(sig, now),
            Event::Models(reports) => self.lifecycle.on_reports(reports, crate::models::Date::today()),
            Event::Timer => {}
            Event::Gone(channel) => self.retire(channel),
        }
        // Notices held back for a reply that was sent (or whose sender was not a connection).
        let notices = std::mem::take(&mut self.after_reply);
        self.publish(notices, now);
        self.after_event(now);
    }

    /// After every event: due timers (cheap to check, and nothing is late because a
    /// busy channel kept the select from timing out), then voice commands heard.
    fn after_event(&mut self, now: Instant) {
        if self.lifecycle.next_deadline().is_some_and(|t| t <= now) {
            let today = crate::models::Date::today();
            if let Some(c) = self.lifecycle.refresh(today) {
                self.live.set_config(c.live.clone());
                self.dictation.set_config(c.dictate.clone());
                self.config = c;
            }
            let key = crate::secrets::load_key(&self.config.live, &self.paths);
            self.lifecycle.poll(now, today, key);
        }
        for due in self.scheduler.take_due(now) {
            match due {
                TimerKind::Watchdog => {
                    systemd::notify("WATCHDOG=1");
                    if let Some(every) = self.watchdog {
                        self.scheduler.schedule(TimerKind::Watchdog, now + every);
                    }
                }
                TimerKind::ShutdownDeadline => {
                    log::warn!("shutdown: tasks did not stop within the grace period; killing them")
                }
            }
        }
        if self.supervisor.next_deadline().is_some_and(|d| d <= now) {
            let notices = self.supervisor.on_timer(now);
            self.publish(notices, now);
        }
        if self.hotkeys.next_deadline().is_some_and(|d| d <= now) {
            for b in self.hotkeys.machine.poll(now) {
                self.on_key_binding(b, now);
            }
        }
        if self.live.next_deadline().is_some_and(|d| d <= now) {
            let steps = self.live.poll(now);
            self.run_live_steps(steps, now);
        }
        if self.progress.next_deadline(&self.progress_pending()).is_some_and(|d| d <= now) {
            self.progress_due(now);
        }
        for said in std::mem::take(&mut self.heard) {
            // Voice commands said in a live conversation work as they do in dictation.
            use crate::dictate::commands::Meaning;
            match crate::dictate::commands::interpret(&said, &self.config.dictate.commands) {
                Meaning::DictateMode => {
                    log::info!("live: voice command: dictate mode");
                    self.run_dictation_steps(vec![dictation::Step::LiveOff]);
                }
                Meaning::QuietOn => self.set_quiet(true, QuietBy::Voice, now),
                Meaning::QuietOff => self.set_quiet(false, QuietBy::Voice, now),
                _ => {}
            }
        }
    }

    /// A channel whose producers are all gone is replaced by one that never fires.
    fn retire(&mut self, channel: Channel) {
        log::debug!("the {channel:?} channel has no producer any more");
        use crossbeam_channel::never;
        match channel {
            Channel::Control => self.control_rx = never(),
            Channel::Tasks => self.task_rx = never(),
            Channel::Live => self.live.conn_rx = never(),
            Channel::Hotkeys => self.hotkeys.rx = never(),
            Channel::Audio => self.voice.rx = never(),
            Channel::Mic => self.voice.mic_rx = never(),
            Channel::Probe => self.voice.probe_rx = never(),
            Channel::Dictation => self.dictation.rx = never(),
            Channel::Signals => self.signal_rx = never(),
        }
    }

    fn on_control(&mut self, incoming: Incoming, now: Instant) {
        match incoming {
            Incoming::Request { request: Request::PermissionAsk { task, arguments }, reply } => {
                // Answered later (by the user, the timeout or the task's end); the connection waits.
                let notices = self.supervisor.permission_ask(&task, &arguments, reply, now);
                self.publish(notices, now);
            }
            Incoming::Request { request, reply } => {
                let answer = self.handle_request(request, now);
                let _ = reply.send(answer);
                let notices = std::mem::take(&mut self.after_reply);
                self.publish(notices, now);
            }
            Incoming::Call { request, replier } => {
                // The reply goes out before what the request set off (events, cues, the task table).
                let answer = self.handle_request(request, now);
                replier.answer(&answer);
                let notices = std::mem::take(&mut self.after_reply);
                self.publish(notices, now);
            }
            Incoming::Subscribe { subscriber } => {
                // Written by the loop, so it comes before any event, and only once the loop knows the subscriber.
                if subscriber.send_line(b"{\"subscribed\":true}\n") {
                    self.subscribers.push(subscriber);
                }
            }
            Incoming::LiveAttach { events, reply } => {
                let _ = reply.send(self.attach_text_client(events, now));
            }
            Incoming::LiveInput { text } => {
                let steps = self.live.user_text(&text, now);
                self.run_live_steps(steps, now);
            }
            Incoming::LiveDetach { id } => {
                if self.fronts.remove(id) {
                    let steps = self.live.text_clients_gone();
                    self.run_live_steps(steps, now);
                }
            }
        }
    }

    /// A text client attaches: it gets every line the session shows; a session is
    /// opened for it when none is.
    fn attach_text_client(&mut self, events: Sender<Value>, now: Instant) -> Result<u64, String> {
        if self.shutting_down {
            return Err("the daemon is shutting down".into());
        }
        let sup = &self.supervisor;
        let steps = self.live.start(Purpose::TextClient, false, || tools::briefing(sup), now)?;
        self.run_live_steps(steps, now);
        Ok(self.fronts.add(events, self.live.attached_line()))
    }

    fn on_audio(&mut self, ev: crate::audio::AudioEvent, now: Instant) {
        match ev {
            crate::audio::AudioEvent::PlaybackIdle => {
                if self.voice.playing {
                    self.voice.playing = false;
                    let steps = self.live.set_audio_playing(false, now);
                    self.run_live_steps(steps, now);
                    self.set_mic_gate();
                }
            }
            ev => self.voice.on_event(ev),
        }
    }

    fn on_mic(&mut self, captured: crate::audio::capture::Captured, now: Instant) {
        match captured {
            crate::audio::capture::Captured::Chunk(pcm) => {
                if self.dictation.is_recording() {
                    self.dictation.chunk(&pcm);
                } else if self.live.is_voice() {
                    self.live.append_audio(&pcm);
                }
            }
            crate::audio::capture::Captured::TurnEnd => {
                if self.dictation.is_recording() {
                    let steps = self.dictation.turn_end(self.live.api_key(), self.voice.input_problem());
                    self.run_dictation_steps(steps);
                } else if self.live.is_voice() && self.live.turn() == crate::config::LiveTurn::Ptt {
                    let steps = self.live.commit_user_audio(now);
                    self.run_live_steps(steps, now);
                }
            }
        }
    }

    /// Carries out what the live session asked for, in order, feeding results
    /// back into it (their steps join the queue).
    fn run_live_steps(&mut self, steps: Vec<LiveStep>, now: Instant) {
        let mut work: std::collections::VecDeque<LiveStep> = steps.into();
        while let Some(step) = work.pop_front() {
            match step {
                LiveStep::RunTool(call) if call.name == crate::realtime::tools::CATCH_UP => {
                    work.extend(self.live.catch_up(&call, now));
                }
                LiveStep::RunTool(call) if call.name == crate::realtime::tools::SET_QUIET => {
                    let result = match tools::quiet_argument(&call.arguments) {
                        Ok(on) => {
                            self.set_quiet(on, QuietBy::Assistant, now);
                            tools::ToolResult::quiet(self.quiet, self.waiting())
                        }
                        Err(e) => e,
                    };
                    work.extend(self.live.on_tool_result(&call, &result, now));
                }
                LiveStep::ProgressSaid(ids) => self.progress.said(&ids, now),
                LiveStep::RunTool(call) => {
                    let (result, notices) = tools::run(&call.name, &call.arguments, &mut self.supervisor, now);
                    // The answer goes on the wire first; a started task's cue and table after.
                    work.extend(self.live.on_tool_result(&call, &result, now));
                    self.publish(notices, now);
                }
                LiveStep::MarkAnnounced(id) => self.supervisor.mark_announced(&id, now),
                LiveStep::Play { item_id, pcm } => {
                    if self.voice.play(&item_id, &pcm) {
                        work.extend(self.live.set_audio_playing(true, now));
                        self.set_mic_gate();
                    }
                }
                LiveStep::StopPlayback => self.barge_in(now),
                LiveStep::Heard(text) => self.heard.push(text),
                LiveStep::Show(line) => {
                    if self.fronts.show(line) {
                        work.extend(self.live.text_clients_gone());
                    }
                }
            }
        }
    }

    /// Stops the assistant now and tells the session what was really heard.
    fn barge_in(&mut self, now: Instant) {
        let was_playing = self.voice.playing;
        let played = self.voice.flush();
        if was_playing {
            match &played {
                Some((item, ms)) => log::info!("barge-in: playback stopped after {ms} ms of item {item}"),
                None => log::info!("barge-in: playback stopped"),
            }
            let mut steps = self.live.barge_in(played, now);
            steps.extend(self.live.set_audio_playing(false, now));
            self.run_live_steps(steps, now);
        }
        self.set_mic_gate();
    }

    /// The microphone gate for the current state: with server VAD it is open
    /// while live, except while the assistant speaks (unless full duplex); with
    /// push-to-talk it follows the key (set by the binding).
    fn set_mic_gate(&mut self) {
        if !self.live.is_voice() || !self.live.turn().is_vad() {
            return;
        }
        let open = !self.voice.playing || self.live.full_duplex();
        self.voice.set_gate(open, false);
    }

    fn handle_signal(&mut self, sig: i32, now: Instant) {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        match sig {
            SIGTERM | SIGINT => self.begin_shutdown(now, if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }),
            SIGHUP => match Config::reload(&self.paths.config_file) {
                Ok(c) => {
                    log::info!("SIGHUP: reloaded {}", self.paths.config_file.display());
                    c.warnings(&self.paths.config_file).iter().for_each(|w| log::warn!("{w}"));
                    let today = crate::models::Date::today();
                    self.lifecycle.set_config(&c, today, now);
                    let (c, _) = lifecycle::effective(&c, today);
                    self.live.set_config(c.live.clone());
                    self.progress.set_period(c.live.progress_min);
                    self.voice.set_config(c.audio.clone());
                    self.dictation.set_config(c.dictate.clone());
                    self.supervisor.set_config(c.tasks.clone(), c.projects.clone());
                    self.config = c;
                }
                Err(e) => log::error!("SIGHUP: config not reloaded, keeping the old one: {e}"),
            },
            other => log::debug!("ignoring signal {other}"),
        }
    }

    fn begin_shutdown(&mut self, now: Instant, why: &str) {
        if self.shutting_down {
            return;
        }
        log::info!("{why}: stopping {} running task(s)", self.supervisor.running_count());
        systemd::notify("STOPPING=1");
        self.shutting_down = true;
        let steps = self.live.stop("the daemon is stopping");
        self.run_live_steps(steps, now);
        self.supervisor.begin_shutdown(now);
        let grace = Duration::from_secs(u64::from(self.config.tasks.kill_grace_s));
        self.scheduler.schedule(TimerKind::ShutdownDeadline, now + grace);
    }

    fn handle_request(&mut self, request: Request, now: Instant) -> Value {
        match request {
            Request::Ping => reply::to_value(&reply::Pong { pong: true, pid: std::process::id() }),
            Request::Status => reply::to_value(&self.status()),
            Request::Tasks { all } => {
                let tasks: Vec<Value> = self.supervisor.list(all).iter().map(TaskView::to_json).collect();
                reply::to_value(&reply::TaskList { tasks })
            }
            Request::Start { text, name, project, dir } => {
                let (outcome, notices) = self.supervisor.start(StartRequest { text, name, project, dir }, now);
                // Published once the reply is on its way (see `on_control`).
                self.after_reply.extend(notices);
                to_json(&outcome)
            }
            Request::Continue { reference, text } => {
                let (outcome, notices) = self.supervisor.continue_task(&reference, &text, now);
                self.after_reply.extend(notices);
                to_json(&outcome)
            }
            Request::Show { reference } => to_json(&self.supervisor.show(&reference)),
            Request::Cancel { reference } => {
                let outcome: CancelOutcome = self.supervisor.cancel(&reference, now);
                to_json(&outcome)
            }
            Request::Shutdown => {
                self.begin_shutdown(now, "shutdown requested");
                reply::to_value(&reply::Stopping::new())
            }
            Request::Key { action, binding } => match self.key(action, binding, now) {
                Ok(answer) => reply::to_value(&answer),
                Err(e) => error_reply(e),
            },
            Request::DictateRetry => match self.dictation.retry(self.live.api_key()) {
                Ok(retried) => reply::to_value(&retried),
                Err(e) => error_reply(e),
            },
            Request::Sync => reply::to_value(&reply::Synced { synced: true }),
            Request::Allow { reference, remember } => {
                let outcome = self.supervisor.answer_permission(&reference, Decision::Allow { remember }, "shell", now);
                self.after_answer(&outcome, now);
                to_json(&outcome)
            }
            Request::Deny { reference, reason } => {
                let message = reason
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty())
                    .map(|r| format!("The user denied this: {r}"))
                    .unwrap_or_else(|| "The user denied this.".into());
                let outcome = self.supervisor.answer_permission(&reference, Decision::Deny { message }, "shell", now);
                self.after_answer(&outcome, now);
                to_json(&outcome)
            }
            Request::PermissionAsk { .. } => error_reply("internal: a permission request reached the wrong handler"),
            Request::Subscribe | Request::LiveAttach | Request::Say { .. } => {
                error_reply("this request is only valid as the first line of a connection")
            }
        }
    }

    /// A hotkey action from the control socket (a compositor binding): the
    /// same path as a key from a listener thread.
    fn key(&mut self, action: KeyAction, binding: Binding, now: Instant) -> Result<reply::KeyReply, String> {
        let action = match (binding, action) {
            // A compositor can only send press/release; for the live toggle either means "toggle".
            (Binding::Live | Binding::Quiet, KeyAction::Release) => None,
            (Binding::Live | Binding::Quiet, _) => Some(Action::Toggle),
            (_, KeyAction::Press | KeyAction::Toggle) => Some(Action::Press),
            (_, KeyAction::Release) => Some(Action::Release),
        };
        let message = match action {
            Some(action) => self.on_binding(BindingEvent::new(binding, action), now)?,
            None => None,
        };
        let live = reply::OnOff::from_bool(self.live.is_on() || self.live_starting);
        let quiet = reply::OnOff::from_bool(self.quiet);
        Ok(reply::KeyReply { status: reply::OkTag::Ok, message: message.map(str::to_string), live, quiet })
    }

    /// Live mode was turned on and the audio probe answered: start the session,
    /// spoken when both devices open, typed otherwise.
    fn on_voice_probe(&mut self, answer: Result<(), String>, now: Instant) {
        let voice = match self.voice.on_probe(answer) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("live mode without voice ({e}): a text session, for `ptt live --text`");
                false
            }
        };
        if !std::mem::take(&mut self.live_starting) {
            // Turned off again while the probe ran.
            self.voice.stop_voice();
            return;
        }
        let sup = &self.supervisor;
        match self.live.start(Purpose::Conversation, voice, || tools::briefing(sup), now) {
            Ok(steps) => {
                self.voice.cue(Cue::LiveOn);
                self.set_mic_gate();
                self.run_live_steps(steps, now);
            }
            Err(e) => {
                self.voice.stop_voice();
                log::warn!("live mode: {e}");
            }
        }
    }

    /// Turns live mode on (the session starts when the audio probe answers) or off.
    fn toggle_live(&mut self) -> Result<(), String> {
        if self.dictation.is_recording() {
            // The live chord took over the push-to-talk key: that clip is not a dictation.
            self.dictation.cancel();
            self.voice.set_gate(false, false);
        }
        if self.live.is_on() {
            let steps = self.live.stop("live mode turned off");
            self.run_live_steps(steps, Instant::now());
            self.voice.stop_voice();
            self.voice.cue(Cue::LiveOff);
        } else if self.live_starting {
            log::info!("live mode turned off before it started");
            self.live_starting = false;
        } else if let Err(e) = self.live.api_key() {
            log::warn!("live mode: {e}");
            return Err(e);
        } else {
            // The session starts when the audio probe answers (off the loop).
            self.live_starting = true;
            self.voice.request_voice();
        }
        Ok(())
    }

    /// Carries out what dictation asked for.
    fn run_dictation_steps(&mut self, steps: Vec<dictation::Step>) {
        for step in steps {
            match step {
                dictation::Step::Cue(c) => self.voice.cue(c),
                dictation::Step::LiveOn => {
                    if !self.live.is_on() && !self.live_starting {
                        // A failure is logged; the key's caller has no reply to carry it.
                        let _ = self.toggle_live();
                    }
                }
                dictation::Step::LiveOff => {
                    if self.live.is_on() || self.live_starting {
                        let _ = self.toggle_live();
                    } else {
                        log::info!("dictation: already in dictate mode");
                    }
                }
                dictation::Step::Quiet(on) => self.set_quiet(on, QuietBy::Voice, Instant::now()),
                dictation::Step::Broadcast(v) => self.broadcast(v),
                dictation::Step::Notify(note) => {
                    if let Some(n) = &self.notifier {
                        n.send(note);
                    }
                }
            }
        }
    }

    /// A binding event from the key machine (not the socket): its releases carry when the key went up.
    fn on_key_binding(&mut self, ev: BindingEvent, now: Instant) {
        self.key_went_up = self.hotkeys.machine.last_key_up();
        // A failure was logged and cued; a key from a listener has nobody to answer.
        let _ = self.on_binding(ev, now);
        self.key_went_up = None;
    }

    /// What a binding does: a note for `ptt key …` to print, or why it failed.
    fn on_binding(&mut self, ev: BindingEvent, now: Instant) -> Result<Option<&'static str>, String> {
        log::debug!("binding {:?} {:?} ({:?})", ev.binding, ev.action, ev.cause);
        match (ev.binding, ev.action) {
            (Binding::Live, Action::Toggle) => self.toggle_live().map(|()| None),
            (Binding::Quiet, Action::Toggle) => {
                self.set_quiet(!self.quiet, QuietBy::Key, now);
                Ok(Some(if self.quiet { "quiet mode on" } else { "quiet mode off" }))
            }
            (Binding::Ptt, Action::Press | Action::Release) => {
                let pressed = ev.action == Action::Press;
                if pressed && self.voice.playing {
                    // The user always wins: speaking cuts the assistant off.
                    self.barge_in(now);
                }
                // While the key is held the floor is the user's: no notification is spoken.
                let steps = self.live.set_key_held(pressed, now);
                self.run_live_steps(steps, now);
                if !self.live.is_on() && !self.live_starting && self.dictation.enabled() {
                    // A key release is reported a debounce after the key went up; the clip ends when it did.
                    let went_up = self.key_went_up.filter(|_| ev.cause == crate::hotkey::Cause::Key);
                    return self.dictate_key(pressed, went_up.unwrap_or(now)).map(|()| None);
                }
                if self.live.is_voice() && self.live.turn() == crate::config::LiveTurn::Ptt {
                    // (When the live chord takes over from ptt, the same chord turns live mode off and
                    // closes the microphone, so that short "turn" is never committed.)
                    self.voice.set_gate(pressed, true);
                }
                Ok(None)
            }
            (Binding::Interrupt, Action::Press) => {
                if self.voice.playing {
                    self.barge_in(now);
                    Ok(Some("stopped the assistant"))
                } else {
                    Ok(Some("nothing is playing"))
                }
            }
            _ => Ok(None),
        }
    }

    /// The push-to-talk key outside a live session: record while it is held.
    fn dictate_key(&mut self, pressed: bool, at: Instant) -> Result<(), String> {
        if pressed {
            if let Err(e) = self.voice.open_mic() {
                log::warn!("dictation: {e}");
                self.voice.cue(Cue::DictationFailed);
                return Err(e);
            }
            self.dictation.press();
            self.voice.set_gate(true, true);
            // Status bars show the recording (`ptt status --follow`).
            self.broadcast(json!({"event": "dictation_recording"}));
        } else if self.dictation.is_recording() {
            self.dictation.release(at);
            self.voice.set_gate_at(false, true, at);
            self.broadcast(json!({"event": "dictation_released"}));
        }
        Ok(())
    }

    fn status(&self) -> reply::StatusReply {
        reply::StatusReply {
            daemon: reply::DaemonInfo {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                uptime_s: self.started.elapsed().as_secs(),
                config: self.paths.config_file.clone(),
                state_dir: self.paths.state_dir.clone(),
                socket: self.paths.socket(),
            },
            tasks: self.supervisor.status(),
            live: self.live.status(
                self.supervisor.unannounced(notifications::MAX_PENDING, notifications::MAX_AGE_S).len(),
                self.waiting(),
                self.fronts.len(),
                Instant::now(),
            ),
            hotkeys: self.hotkeys.status(),
            audio: Some(self.voice.status()),
            dictation: Some(self.dictation.status()),
            models: self.lifecycle.status(),
        }
    }

    /// Routes supervisor notices: to subscribers and the live session first, then what
    /// may take longer (the supervisor's writes and sweeps, desktop notes, cues, the
    /// task table), so that nobody waits for those to hear what happened.
    fn publish(&mut self, notices: Vec<Notice>, now: Instant) {
        // 1. Subscribers get the event, and the live session a task's end (it may go on the wire now).
        for notice in &notices {
            self.broadcast_notice(notice);
            if let Notice::Ended(id) = notice {
                // It gets only its result: an update about it not yet said is taken back (the others
                // still due are offered again at once).
                self.progress.ended(id);
                if self.live.progress_item().is_some_and(|(ids, said)| !said && ids.contains(id)) {
                    self.live.withdraw_progress();
                }
            }
            if let Notice::Ended(id) = notice
                && let Some(task) = self.supervisor.registry().get(id)
            {
                let sup = &self.supervisor;
                let steps = self.live.on_task_ended(task, || tools::briefing(sup), now);
                self.run_live_steps(steps, now);
            }
        }
        // 2. What the supervisor does once everyone has heard (an end's record, its sweep).
        self.supervisor.after_publish(now);
        // 3. The slower consequences.
        let mut table_changed = false;
        for notice in notices {
            match &notice {
                Notice::Ended(id) => {
                    if let Some(task) = self.supervisor.registry().get(id).cloned() {
                        if let Some(notifier) = &self.notifier {
                            notifier.send(notifications::desktop_note(&task));
                        }
                        self.voice.cue(if task.state == crate::tasks::registry::TaskState::Succeeded {
                            Cue::TaskSucceeded
                        } else {
                            Cue::TaskFailed
                        });
                        self.task_question(&task, now);
                        table_changed = true;
                    }
                    if self.supervisor.running_count() == 0 {
                        // Idle again: hand what big prompts and outputs used back to the system (on the
                        // keeper thread, not on the way to the next start).
                        self.supervisor.trim_memory();
                    }
                }
                Notice::Started(id) => {
                    self.progress.started(id, now);
                    self.voice.cue(Cue::TaskStarted);
                    table_changed = true;
                }
                Notice::Activity(id) => {
                    // An answer (from the shell, the timeout) comes as activity: the question may be stale.
                    if let Some(task) = self.supervisor.registry().get(id).cloned() {
                        self.task_question(&task, now);
                    }
                    table_changed = true;
                }
                Notice::Stalled(id) => {
                    self.progress.stalled(id);
                    table_changed = true;
                }
                Notice::BudgetWarning(message) => {
                    if let Some(notifier) = &self.notifier {
                        notifier.send(notifications::budget_note(message));
                    }
                }
                Notice::Waiting(id) => {
                    if let Some(task) = self.supervisor.registry().get(id).cloned() {
                        self.voice.cue(Cue::Question);
                        if (!self.live.is_on() || self.quiet)
                            && let Some(notifier) = &self.notifier
                        {
                            notifier.send(notifications::waiting_note(&task));
                        }
                        self.task_question(&task, now);
                        table_changed = true;
                    }
                }
            }
        }
        if table_changed {
            self.tasks_changed(now);
        }
    }

    /// One notice as a subscriber event: what a status bar needs, never the prompt (see `tasks::contract::brief`).
    fn broadcast_notice(&mut self, notice: &Notice) {
        if self.subscribers.is_empty() {
            return;
        }
        let (event, id) = match notice {
            Notice::Started(id) => ("task_started", id),
            Notice::Activity(id) => ("task_activity", id),
            Notice::Stalled(id) => ("task_stalled", id),
            Notice::Ended(id) => ("task_ended", id),
            Notice::Waiting(id) => ("task_waiting", id),
            Notice::BudgetWarning(message) => {
                self.broadcast(json!({"event": "budget_warning", "task": null, "message": message}));
                return;
            }
        };
        let task = self.supervisor.registry().get(id).map(crate::tasks::contract::brief);
        self.broadcast(json!({"event": event, "task": task}));
    }

    /// After an answer: subscribers and the live session see the task run again.
    fn after_answer(&mut self, outcome: &PermissionOutcome, now: Instant) {
        if let PermissionOutcome::Answered { task_id, .. } = outcome {
            self.publish(vec![Notice::Activity(task_id.clone())], now);
        }
    }

    /// A task's permission requests changed: the session asks the current question, or takes a stale one back.
    fn task_question(&mut self, task: &crate::tasks::registry::TaskRecord, now: Instant) {
        let steps = self.live.on_task_question(task, now);
        self.run_live_steps(steps, now);
    }

    /// The task table changed: an open session refreshes its instructions.
    fn tasks_changed(&mut self, now: Instant) {
        if self.live.is_on() {
            let table = tools::task_table(&self.supervisor);
            let steps = self.live.on_tasks_changed(&table, now);
            self.run_live_steps(steps, now);
        }
    }

    /// Results not yet heard plus questions waiting for an answer (`ptt status`, `set_quiet`).
    fn waiting(&self) -> usize {
        let results = self.supervisor.unannounced(notifications::MAX_PENDING, notifications::MAX_AGE_S).len();
        let questions =
            self.supervisor.registry().tasks.iter().filter(|t| notifications::describe_question(t).is_some()).count();
        results + questions
    }

    /// Quiet mode on or off: the session holds or offers what waits, subscribers and the journal hear of it. A
    /// key or a voice command gets a short cue (the assistant confirms its own `set_quiet` in words).
    fn set_quiet(&mut self, on: bool, by: QuietBy, now: Instant) {
        if by != QuietBy::Assistant {
            self.voice.cue(Cue::Done);
        }
        if self.quiet == on {
            return;
        }
        self.quiet = on;
        log::info!("quiet mode {} ({}); {} item(s) wait", if on { "on" } else { "off" }, by.label(), self.waiting());
        let steps = self.live.set_quiet(on, now);
        self.run_live_steps(steps, now);
        self.broadcast(json!({"event": "quiet", "on": on, "waiting": self.waiting()}));
    }

    /// The live session's progress item, as the tracker sees it.
    fn progress_pending(&self) -> progress::Pending {
        match self.live.progress_item() {
            None => progress::Pending::None,
            Some((ids, false)) => progress::Pending::Queued(ids),
            Some((_, true)) => progress::Pending::Speaking,
        }
    }

    /// Running tasks are due for an update: one short item for all of them, to be said in a pause. With no
    /// session (or in quiet mode) it is skipped, and the clock of each restarts.
    fn progress_due(&mut self, now: Instant) {
        use crate::tasks::registry::TaskState;
        for (id, _) in self.progress.due(now) {
            match self.supervisor.registry().get(&id) {
                Some(t) if t.state.is_active() => self.progress.observe(&id, t.stalled),
                _ => self.progress.ended(&id),
            }
        }
        let mut lines = Vec::new();
        let mut say = Vec::new();
        let mut skip = Vec::new();
        for (id, due) in self.progress.due(now) {
            let Some(t) = self.supervisor.registry().get(&id) else { continue };
            // A task waiting for an answer has its question; a stall already said waits for new output.
            if t.state != TaskState::Running || due == progress::Due::Check {
                skip.push(id);
                continue;
            }
            let view = self.supervisor.view(t);
            let line = match due {
                progress::Due::Stalled => format!(
                    "{} '{}' has printed nothing for {}; it may be stuck",
                    t.id,
                    t.name,
                    crate::text::duration_words((self.config.tasks.stall_min * 60.0) as u64)
                ),
                _ => {
                    let ran = format!("{} '{}' has run {}", t.id, t.name, crate::text::duration_words(view.elapsed_s));
                    match (&view.rate_limited, &t.activity) {
                        (Some(r), _) => format!("{ran}; it is {r}"),
                        (None, Some(a)) => format!("{ran}; it is {a}"),
                        (None, None) => ran,
                    }
                }
            };
            lines.push(line);
            say.push(id);
        }
        if !skip.is_empty() {
            self.progress.said(&skip, now);
        }
        if say.is_empty() {
            return;
        }
        if !self.live.is_on() || self.quiet {
            self.progress.said(&say, now);
            return;
        }
        let text = format!(
            "[progress, not a result: {}. Say it in one short sentence; add nothing it does not say.]",
            lines.join(". ")
        );
        let steps = self.live.offer_progress(&say, &text, now);
        self.run_live_steps(steps, now);
        if self.live.progress_item().is_none_or(|(ids, _)| ids != say) {
            // Not queued (a session only announcing, say): skip this round rather than ask again at once.
            self.progress.said(&say, now);
        }
    }

    fn broadcast(&mut self, event: Value) {
        if self.subscribers.is_empty() {
            return;
        }
        let mut line = serde_json::to_vec(&event).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        // A subscriber that cannot keep up (full queue) or went away is dropped.
        self.subscribers.retain(|s| s.send_line(&line));
    }
}

/// Who turned quiet mode on or off: a key or a voice command gets a cue, the assistant answers in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuietBy {
    Voice,
    Key,
    Assistant,
}

impl QuietBy {
    fn label(self) -> &'static str {
        match self {
            QuietBy::Voice => "voice command",
            QuietBy::Key => "the quiet key",
            QuietBy::Assistant => "the assistant",
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| error_reply(format!("internal: {e}")))
}

#[cfg(test)]
mod tests {
    //! The loop's glue without threads of our own making, in the spirit of
    //! alacritty's `ActionContext`: a `Daemon` is put together by hand (no
    //! socket, no signals, keys from the socket only, no cues), its live
    //! connections are thread-less, and events go through `handle_event` as the
    //! loop would hand them over.

    use super::*;
    use crate::realtime::connection::{ConnEvent, Connection, Outbound};
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Harness {
        daemon: Daemon,
        wires: Rc<RefCell<Vec<Receiver<Outbound>>>>,
        _home: tempfile::TempDir,
    }

    fn harness() -> Harness {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("tempdir");
        let key = home.path().join("key");
        std::fs::write(&key, "sk-test\n").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let paths = Paths::from_vars(|k| (k == "HOME").then(|| home.path().as_os_str().to_owned())).expect("paths");
        let mut config = Config::default();
        config.keys.source = crate::config::KeySource::Socket;
        config.audio.cues = false;
        config.live.key_file = Some(key);
        let wires = Rc::new(RefCell::new(Vec::new()));
        let w = wires.clone();
        let open: live::Opener = Box::new(move |id, _spec, _events| {
            let (conn, rx) = Connection::detached(id)?;
            w.borrow_mut().push(rx);
            Ok(conn)
        });
        let live = Live::with_opener(config.live.clone(), &paths, open);
        let (task_tx, task_rx) = crossbeam_channel::unbounded();
        let (supervisor, _) =
            Supervisor::new(config.tasks.clone(), config.projects.clone(), paths.clone(), task_tx).expect("supervisor");
        // The model check is not for these tests: its first run is skipped (no key), the next is a day away.
        let today = crate::models::Date::today();
        let mut lifecycle = lifecycle::Lifecycle::new(&config, today, Instant::now());
        lifecycle.poll(Instant::now(), today, Err("not in unit tests".into()));
        let daemon = Daemon {
            lifecycle,
            hotkeys: keys::Hotkeys::start(&config.keys),
            voice: voice::Voice::new(config.audio.clone()),
            dictation: dictation::Dictation::new(config.dictate.clone(), &paths),
            paths,
            config,
            supervisor,
            live,
            fronts: fronts::Fronts::default(),
            heard: Vec::new(),
            key_went_up: None,
            live_starting: false,
            quiet: false,
            progress: progress::Progress::new(0.0),
            scheduler: Scheduler::default(),
            subscribers: Vec::new(),
            after_reply: Vec::new(),
            syncs: Vec::new(),
            notifier: None,
            started: Instant::now(),
            shutting_down: false,
            watchdog: None,
            control_rx: crossbeam_channel::never(),
            task_rx,
            signal_rx: crossbeam_channel::never(),
        };
        Harness { daemon, wires, _home: home }
    }

    impl Harness {
        fn frame(&mut self, conn: u64, v: Value) {
            self.daemon.handle_event(Event::Live((conn, ConnEvent::Frame(v.to_string()))));
        }

        /// Frames sent on connection `n` since the last look.
        fn sent(&self, n: usize) -> Vec<Value> {
            self.wires.borrow()[n - 1]
                .try_iter()
                .filter_map(|o| match o {
                    Outbound::Text(t) => Some(serde_json::from_str(&t).expect("a frame is JSON")),
                    _ => None,
                })
                .collect()
        }

        /// Brings connection `n` to ready.
        fn ready(&mut self, n: u64) {
            self.daemon.handle_event(Event::Live((n, ConnEvent::Opened)));
            let expires = crate::tasks::registry::unix_now() + 3600;
            self.frame(n, json!({"type": "session.created", "session": {"id": "s1", "expires_at": expires}}));
            assert_eq!(self.sent(n as usize)[0]["type"], "session.update");
        }

        fn attach(&mut self) -> (u64, Receiver<Value>) {
            let (events, lines) = crossbeam_channel::bounded(64);
            let (reply, answer) = crossbeam_channel::bounded(1);
            self.daemon.handle_event(Event::Control(Incoming::LiveAttach { events, reply }));
            let id = answer.try_recv().expect("answered at once").expect("attached");
            (id, lines)
        }
    }

    #[test]
    fn a_tool_call_runs_on_the_supervisor_and_its_answer_goes_back_on_the_wire() {
        let mut h = harness();
        let (_, lines) = h.attach();
        h.ready(1);
        h.frame(1, json!({"type": "response.created", "response": {"id": "r1", "status": "in_progress"}}));
        h.frame(
            1,
            json!({"type": "response.function_call_arguments.done", "response_id": "r1", "item_id": "i1",
                "output_index": 0, "call_id": "c1", "name": "get_task_result", "arguments": "{\"task\": \"t41\"}"}),
        );
        let sent = h.sent(1);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["item"]["type"], "function_call_output");
        assert_eq!(sent[0]["item"]["call_id"], "c1");
        let output: Value = serde_json::from_str(sent[0]["item"]["output"].as_str().unwrap_or("")).expect("JSON");
        assert_eq!(output, json!({"status": "not_found", "message": "no task matches \"t41\""}));
        let lines: Vec<Value> = lines.try_iter().collect();
        assert!(lines.contains(&json!({"kind": "tool", "name": "get_task_result", "result": output})), "{lines:?}");
        // The response ends: the answered call gets one response.create.
        h.frame(1, json!({"type": "response.done", "response": {"id": "r1", "status": "completed", "output": []}}));
        let sent = h.sent(1);
        assert_eq!(sent.iter().filter(|f| f["type"] == "response.create").count(), 1, "{sent:?}");
    }

    #[test]
    fn a_text_session_ends_when_its_last_client_leaves_or_is_gone() {
        let mut h = harness();
        let (id, lines) = h.attach();
        assert_eq!(lines.try_recv().expect("the attached line")["message"], "attached");
        assert!(h.daemon.live.is_on());
        h.daemon.handle_event(Event::Control(Incoming::LiveDetach { id }));
        assert!(!h.daemon.live.is_on(), "detached: the session ends");

        let (_, lines) = h.attach();
        assert!(h.daemon.live.is_on());
        drop(lines);
        // The next line the session shows finds nobody: the session ends.
        h.daemon.handle_event(Event::Live((2, ConnEvent::Opened)));
        assert!(!h.daemon.live.is_on(), "a vanished client ends the session too");
    }

    #[test]
    fn dictate_mode_said_in_a_voice_session_turns_live_mode_off_after_the_event() {
        let mut h = harness();
        let now = Instant::now();
        let steps = h.daemon.live.start(Purpose::Conversation, true, Default::default, now).expect("starts");
        h.daemon.run_live_steps(steps, now);
        h.ready(1);
        assert!(h.daemon.live.is_voice());
        h.frame(
            1,
            json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1",
                "content_index": 0, "transcript": "Dictate mode."}),
        );
        assert!(!h.daemon.live.is_on(), "the voice command ended live mode");
        assert!(h.daemon.heard.is_empty());
    }

    #[test]
    fn set_quiet_and_catch_up_are_answered_at_once_and_quiet_shows_in_status() {
        let mut h = harness();
        let _client = h.attach();
        h.ready(1);
        h.frame(1, json!({"type": "response.created", "response": {"id": "r1", "status": "in_progress"}}));
        h.frame(
            1,
            json!({"type": "response.function_call_arguments.done", "response_id": "r1", "item_id": "i1",
                "output_index": 0, "call_id": "c1", "name": "set_quiet", "arguments": "{\"on\": true}"}),
        );
        let sent = h.sent(1);
        let output: Value = serde_json::from_str(sent[0]["item"]["output"].as_str().unwrap_or("")).expect("JSON");
        assert_eq!(output, json!({"status": "ok", "quiet": true, "waiting": 0}));
        assert!(h.daemon.quiet);
        assert!(h.daemon.status().live.quiet);
        h.frame(
            1,
            json!({"type": "response.function_call_arguments.done", "response_id": "r1", "item_id": "i2",
                "output_index": 1, "call_id": "c2", "name": "catch_up", "arguments": "{}"}),
        );
        let sent = h.sent(1);
        assert_eq!(sent[0]["item"]["call_id"], "c2");
        let output: Value = serde_json::from_str(sent[0]["item"]["output"].as_str().unwrap_or("")).expect("JSON");
        assert_eq!(output["items"], json!([]));
        h.frame(
            1,
            json!({"type": "response.function_call_arguments.done", "response_id": "r1", "item_id": "i3",
                "output_index": 2, "call_id": "c3", "name": "set_quiet", "arguments": "{}"}),
        );
        let output: Value = serde_json::from_str(h.sent(1)[0]["item"]["output"].as_str().unwrap_or("")).expect("JSON");
        assert_eq!(output["status"], "error", "{output}");
        assert!(h.daemon.quiet, "a bad call changes nothing");
    }

    #[test]
    fn a_ping_is_answered_through_handle_event() {
        let mut h = harness();
        let (reply, answer) = crossbeam_channel::bounded(1);
        h.daemon.handle_event(Event::Control(Incoming::Request { request: Request::Ping, reply }));
        assert_eq!(answer.try_recv().expect("answered")["pong"], true);
    }
}
