//! `ptt status --follow [--format text|json|waybar]`: one line per change, for status bars.
//!
//! A status bar keeps one process running and reads a line whenever something changes. So this subscribes to the
//! daemon's events (task started/ended/activity, dictation recording/typed/failed, ...) on one connection and,
//! after each burst, asks for the status on another and prints a line only when the rendered line differs from the
//! last one. Bursts are debounced: the status is fetched 150 ms after the last event, and at most 500 ms after the
//! first, so a chatty task does not flood the bar. A refresh every 5 s catches what has no event (the live
//! session's state, the day's spend rolling over). When the daemon is not running, the line says so (class
//! `stopped`) and the subscription is retried every 2 s, so the bar module survives daemon restarts. A closed
//! stdout (the bar went away) ends the process.
//!
//! Formats (documented in the README, so icons can be themed):
//! * `waybar`: `{"text", "alt", "class", "tooltip"}`. `alt` is the single most pressing state, for waybar's
//!   `format-icons`: `recording`, `transcribing`, `live`, `failed` (a dictation clip is kept after a failed
//!   transcription), `busy` (tasks running), `idle`, `stopped` (no daemon). `class` lists every state that holds:
//!   `recording`, `transcribing`, `live`, `quiet`, `dictation-failed`, `tasks`, `idle`, `stopped`.
//! * `json`: the state as an object (`running`, `dictation`, `live`, `spent_today_usd`, `alt`, `class`).
//! * `text`: the waybar text (i3blocks, polybar's `tail = true` scripts).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::control::reply::{self, StatusReply};
use crate::control::{Request, client};

const QUIET: Duration = Duration::from_millis(150);
const MAX_DELAY: Duration = Duration::from_millis(500);
const REFRESH: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Waybar,
}

/// What a status bar shows, derived from `ptt status --json` (or `None`: no daemon).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BarState {
    pub(crate) running: u64,
    /// Tasks waiting for a permission answer.
    pub(crate) waiting: u64,
    /// `off`, `idle`, `recording`, `transcribing`, `failed` (clips kept).
    pub(crate) dictation: &'static str,
    pub(crate) kept_clips: u64,
    /// The live session's state (`off`, `connecting`, `ready`, `reconnecting`, `failed`).
    pub(crate) live: String,
    pub(crate) spent_today_usd: f64,
    pub(crate) stopped: bool,
    /// Quiet mode, and how many results and questions wait for the user.
    pub(crate) quiet: bool,
    pub(crate) missed: u64,
}

impl BarState {
    pub(crate) fn from_status(status: Option<&StatusReply>) -> BarState {
        let Some(v) = status else {
            return BarState {
                running: 0,
                waiting: 0,
                dictation: "off",
                kept_clips: 0,
                live: "off".into(),
                spent_today_usd: 0.0,
                stopped: true,
                quiet: false,
                missed: 0,
            };
        };
        let d = v.dictation.clone().unwrap_or_default();
        let dictation = if !d.enabled {
            "off"
        } else if d.recording {
            "recording"
        } else if d.in_flight > 0 {
            "transcribing"
        } else if d.kept_clips > 0 {
            "failed"
        } else {
            "idle"
        };
        BarState {
            running: v.tasks.running,
            waiting: v.tasks.waiting.len() as u64,
            dictation,
            kept_clips: d.kept_clips,
            live: v.live.state.clone().unwrap_or_else(|| "off".into()),
            spent_today_usd: v.tasks.spent_today_usd,
            stopped: false,
            quiet: v.live.quiet,
            missed: v.live.waiting,
        }
    }

    fn live_on(&self) -> bool {
        self.live != "off"
    }

    /// The most pressing state, for icons.
    pub(crate) fn alt(&self) -> &'static str {
        if self.stopped {
            "stopped"
        } else if self.dictation == "recording" {
            "recording"
        } else if self.dictation == "transcribing" {
            "transcribing"
        } else if self.waiting > 0 {
            "asking"
        } else if self.live_on() {
            "live"
        } else if self.dictation == "failed" {
            "failed"
        } else if self.running > 0 {
            "busy"
        } else {
            "idle"
        }
    }

    /// Every state that holds, for CSS classes.
    pub(crate) fn classes(&self) -> Vec<&'static str> {
        if self.stopped {
            return vec!["stopped"];
        }
        let mut c = Vec::new();
        match self.dictation {
            "recording" => c.push("recording"),
            "transcribing" => c.push("transcribing"),
            "failed" => c.push("dictation-failed"),
            _ => {}
        }
        if self.waiting > 0 {
            c.push("asking");
        }
        if self.live_on() {
            c.push("live");
        }
        if self.quiet {
            c.push("quiet");
        }
        if self.running > 0 {
            c.push("tasks");
        }
        if c.is_empty() {
            c.push("idle");
        }
        c
    }

    pub(crate) fn text(&self) -> String {
        if self.stopped {
            return "ptt off".into();
        }
        let mut parts = Vec::new();
        match self.dictation {
            "recording" => parts.push("rec".to_string()),
            "transcribing" => parts.push("…".to_string()),
            "failed" => parts.push(format!("{} kept", self.kept_clips)),
            _ => {}
        }
        if self.live_on() {
            parts.push(format!("live {}", self.live));
        }
        if self.quiet {
            parts.push(if self.missed > 0 { format!("quiet ({} missed)", self.missed) } else { "quiet".into() });
        }
        if self.running > 0 {
            parts.push(format!("{} task{}", self.running, if self.running == 1 { "" } else { "s" }));
        }
        if self.waiting > 0 {
            parts.push(format!("{} asking", self.waiting));
        }
        if self.spent_today_usd > 0.0 {
            parts.push(format!("${:.2}", self.spent_today_usd));
        }
        if parts.is_empty() { "ptt".into() } else { parts.join(" · ") }
    }

    pub(crate) fn tooltip(&self) -> String {
        if self.stopped {
            return "ptt: the daemon is not running".into();
        }
        let dictation = match self.dictation {
            "failed" => format!("{} clip(s) kept after failed transcriptions (ptt dictate retry)", self.kept_clips),
            other => other.to_string(),
        };
        format!(
            "tasks running: {}\ndictation: {dictation}\nlive: {}\nspent today: ${:.2}",
            self.running, self.live, self.spent_today_usd
        )
    }

    /// The line for `format`.
    pub(crate) fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Waybar => json!({
                "text": self.text(),
                "alt": self.alt(),
                "class": self.classes(),
                "tooltip": self.tooltip(),
            })
            .to_string(),
            Format::Json => json!({
                "running": self.running,
                "waiting": self.waiting,
                "dictation": self.dictation,
                "kept_clips": self.kept_clips,
                "live": self.live,
                "spent_today_usd": self.spent_today_usd,
                "stopped": self.stopped,
                "quiet": self.quiet,
                "missed": self.missed,
                "alt": self.alt(),
                "class": self.classes(),
            })
            .to_string(),
        }
    }
}

enum Msg {
    Event,
    Gone,
}

/// Runs until stdout closes; returns the exit status.
pub(crate) fn run(socket: &Path, format: Format) -> i32 {
    let mut last: Option<String> = None;
    let mut out = std::io::stdout();
    loop {
        let (tx, rx) = crossbeam_channel::unbounded();
        let path = socket.to_path_buf();
        // Ends (and says so) when the daemon is not running or goes away.
        std::thread::spawn(move || {
            let _ = client::subscribe(&path, |_| tx.send(Msg::Event).is_ok());
            let _ = tx.send(Msg::Gone);
        });
        // The state now, then after each burst of events.
        let mut first_event: Option<Instant> = Some(Instant::now() - MAX_DELAY);
        let mut last_event = Instant::now();
        let mut next_refresh = Instant::now() + REFRESH;
        let mut gone = false;
        let running = loop {
            let now = Instant::now();
            let due = match first_event {
                Some(first) => (last_event + QUIET).min(first + MAX_DELAY),
                None => next_refresh,
            };
            if now >= due {
                first_event = None;
                next_refresh = now + REFRESH;
                // A reply of another shape (a failure: the daemon is stopping) shows as a daemon with nothing on.
                let status = client::request(socket, &Request::Status)
                    .ok()
                    .map(|v| reply::parse::<StatusReply>(&v).unwrap_or_default());
                let line = BarState::from_status(status.as_ref()).render(format);
                if last.as_deref() != Some(line.as_str()) {
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        return 0; // the bar went away
                    }
                    last = Some(line);
                }
                if status.is_none() || gone {
                    break status.is_some();
                }
                continue;
            }
            match rx.recv_timeout(due - now) {
                Ok(Msg::Event) => {
                    last_event = Instant::now();
                    first_event.get_or_insert(last_event);
                }
                Ok(Msg::Gone) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    // Show the state at once, then subscribe again.
                    gone = true;
                    first_event = Some(Instant::now() - MAX_DELAY);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
        };
        if !running {
            std::thread::sleep(RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn typed(v: Value) -> StatusReply {
        reply::parse(&v).expect("a status reply")
    }

    fn status(running: u64, recording: bool, in_flight: u64, kept: u64, live: &str, spent: f64) -> Value {
        json!({
            "tasks": {"running": running, "spent_today_usd": spent},
            "dictation": {"enabled": true, "recording": recording, "in_flight": in_flight, "kept_clips": kept},
            "live": {"state": live},
        })
    }

    #[test]
    fn waybar_lines_carry_text_alt_class_and_tooltip() {
        let idle = BarState::from_status(Some(&typed(status(0, false, 0, 0, "off", 0.0))));
        let v: Value = serde_json::from_str(&idle.render(Format::Waybar)).expect("JSON");
        assert_eq!(v["text"], "ptt");
        assert_eq!(v["alt"], "idle");
        assert_eq!(v["class"], json!(["idle"]));
        assert!(v["tooltip"].as_str().unwrap_or("").contains("tasks running: 0"));

        let busy = BarState::from_status(Some(&typed(status(2, false, 0, 0, "off", 0.4213))));
        let v: Value = serde_json::from_str(&busy.render(Format::Waybar)).expect("JSON");
        assert_eq!((v["text"].as_str(), v["alt"].as_str()), (Some("2 tasks · $0.42"), Some("busy")));
        assert_eq!(v["class"], json!(["tasks"]));

        let rec = BarState::from_status(Some(&typed(status(1, true, 0, 1, "ready", 0.0))));
        assert_eq!(rec.alt(), "recording");
        assert_eq!(rec.classes(), ["recording", "live", "tasks"]);
        assert_eq!(rec.text(), "rec · live ready · 1 task");

        let mut asking = status(1, false, 0, 0, "off", 0.0);
        asking["tasks"]["waiting"] = json!([{"task_id": "t4", "waiting_for": "run: rm -rf build"}]);
        let asking = BarState::from_status(Some(&typed(asking)));
        assert_eq!((asking.alt(), asking.text().as_str()), ("asking", "1 task · 1 asking"));
        assert_eq!(asking.classes(), ["asking", "tasks"]);

        let mut quiet = status(1, false, 0, 0, "ready", 0.0);
        quiet["live"]["quiet"] = json!(true);
        quiet["live"]["waiting"] = json!(2);
        let quiet = BarState::from_status(Some(&typed(quiet)));
        assert_eq!(quiet.text(), "live ready · quiet (2 missed) · 1 task");
        assert_eq!(quiet.classes(), ["live", "quiet", "tasks"]);

        let sending = BarState::from_status(Some(&typed(status(0, false, 1, 0, "off", 0.0))));
        assert_eq!((sending.alt(), sending.dictation), ("transcribing", "transcribing"));
        let failed = BarState::from_status(Some(&typed(status(0, false, 0, 2, "off", 0.0))));
        assert_eq!((failed.alt(), failed.classes()), ("failed", vec!["dictation-failed"]));
        assert!(failed.tooltip().contains("2 clip(s) kept"));

        let stopped = BarState::from_status(None);
        let v: Value = serde_json::from_str(&stopped.render(Format::Json)).expect("JSON");
        assert_eq!((v["alt"].as_str(), v["stopped"].as_bool()), (Some("stopped"), Some(true)));
        assert_eq!(stopped.render(Format::Text), "ptt off");
    }
}
