//! The dictation threads: `dictate-upload` (transcription by the API, with its
//! retries and their sleeps), `dictate-local` (transcription by whisper.cpp,
//! `local.rs`) and `dictate-type` (waiting for modifier keys, then running the
//! typing command).
//!
//! Each is a queue served in order, so dictations are typed in the order they
//! were spoken even when one needs a retry. Neither touches daemon state:
//! they report facts ([`DictationEvent`]) to the loop, which decides what a
//! transcription means (text or a voice command) and what to keep on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::transcribe::{self, Endpoint, Failure, Hints};
use super::typer::{self, TyperKind};

/// A clip to transcribe.
#[derive(Debug, Clone)]
pub(crate) struct UploadJob {
    pub(crate) id: String,
    pub(crate) wav: Arc<Vec<u8>>,
    pub(crate) endpoint: Endpoint,
    pub(crate) model: String,
    /// The vocabulary, recent dictations and languages.
    pub(crate) hints: Hints,
    /// When the dictation passed each stage so far.
    pub(crate) timing: Timing,
}

/// Text to type (`'\n'` is Enter).
#[derive(Debug, Clone)]
pub(crate) struct TypeJob {
    pub(crate) id: String,
    pub(crate) text: String,
    pub(crate) kind: TyperKind,
    pub(crate) key_delay_ms: u32,
    /// The paste keystroke, for the clipboard typer.
    pub(crate) paste_keys: typer::PasteKeys,
    pub(crate) timing: Timing,
}

/// When one dictation passed each stage from the key release to the typed text, for the journal's
/// breakdown and the `dictation_typed` event (`benches/local.rs` prints it). Each thread stamps its own
/// stages; a retried clip has no release and so no breakdown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Timing {
    /// The key went up.
    pub(crate) released: Option<Instant>,
    /// The capture delivered the clip's last chunk (`TurnEnd` reached the loop).
    pub(crate) clip_end: Option<Instant>,
    /// The clip was encoded, written to the spool and queued for the engine.
    pub(crate) queued: Option<Instant>,
    /// The engine starts on it (local: resampled, the model loaded, the free cores counted).
    pub(crate) engine_start: Option<Instant>,
    /// The engine's own time: whisper.cpp's decode, or the HTTP request with its retries.
    pub(crate) engine: Option<Duration>,
    /// The engine thread had the text.
    pub(crate) transcribed: Option<Instant>,
    /// The typing thread took it.
    pub(crate) typing_start: Option<Instant>,
    /// The typing tool was started (session probed, modifiers let go).
    pub(crate) typer_start: Option<Instant>,
    /// The typing tool finished.
    pub(crate) typed: Option<Instant>,
}

impl Timing {
    /// A dictation whose key went up at `released`.
    pub(crate) fn released(released: Option<Instant>) -> Timing {
        Timing { released, ..Timing::default() }
    }

    /// Milliseconds from the key release to the text typed.
    pub(crate) fn total_ms(&self) -> Option<f64> {
        Some(ms(self.typed?.checked_duration_since(self.released?)?))
    }

    /// Milliseconds spent in each stage, in order: `capture` (release → last chunk), `spool` (encode, write,
    /// queue), `prepare` (waiting for the engine thread, resampling, the model, counting the free cores),
    /// `engine` (whisper.cpp or the
    /// upload), `after_engine` (the rest of the engine thread's work and the loop's turn), `to_typer` (the
    /// typing queue), `typer_setup` (the session probe and the wait for modifiers), `typing` (the tool).
    /// A stage with a missing stamp is left out.
    pub(crate) fn stages(&self) -> Vec<(&'static str, f64)> {
        let gap = |a: Option<Instant>, b: Option<Instant>| Some(ms(b?.checked_duration_since(a?)?));
        let after_engine = self.engine.and_then(|e| {
            let whole = self.transcribed?.checked_duration_since(self.engine_start?)?;
            Some(ms(whole.saturating_sub(e)))
        });
        [
            ("capture", gap(self.released, self.clip_end)),
            ("spool", gap(self.clip_end, self.queued)),
            ("prepare", gap(self.queued, self.engine_start)),
            ("engine", self.engine.map(ms)),
            ("after_engine", after_engine),
            ("to_typer", gap(self.transcribed, self.typing_start)),
            ("typer_setup", gap(self.typing_start, self.typer_start)),
            ("typing", gap(self.typer_start, self.typed)),
        ]
        .into_iter()
        .filter_map(|(name, v)| Some((name, v?)))
        .collect()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the threads report.
#[derive(Debug)]
pub(crate) enum DictationEvent {
    Transcribed {
        id: String,
        text: String,
        timing: Timing,
    },
    Failed {
        id: String,
        failure: Failure,
        wav: Arc<Vec<u8>>,
    },
    Typed {
        id: String,
        backend: String,
        waited_for_modifiers: Duration,
        timing: Timing,
    },
    TypeFailed {
        id: String,
        error: String,
        text: String,
    },
    /// The local model was loaded, unloaded, or could not be loaded (`dictate-local`).
    Model(super::local::ModelEvent),
}

/// How long typing waits for the user to let go of Ctrl/Shift/Alt before typing anyway.
const MODIFIER_WAIT: Duration = Duration::from_secs(3);
/// A typing command that takes longer is killed.
const TYPE_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) struct Workers {
    upload: Sender<UploadJob>,
    /// The `dictate-local` thread (whisper.cpp), which owns the local model.
    local: Sender<super::local::LocalMsg>,
    typing: Sender<TypeJob>,
    /// The loop selects on this.
    pub(crate) rx: Receiver<DictationEvent>,
}

impl Workers {
    pub(crate) fn start() -> std::io::Result<Workers> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (upload, upload_rx) = crossbeam_channel::unbounded::<UploadJob>();
        let (typing, typing_rx) = crossbeam_channel::unbounded::<TypeJob>();
        let local = super::local::spawn(tx.clone())?;
        let to_loop = tx.clone();
        std::thread::Builder::new().name("dictate-upload".into()).spawn(move || {
            for job in upload_rx {
                let mut timing = Timing { engine_start: Some(Instant::now()), ..job.timing };
                let req = transcribe::Request { wav: &job.wav, model: &job.model, hints: &job.hints };
                let outcome = transcribe::transcribe(&job.endpoint, &req);
                timing.transcribed = Some(Instant::now());
                timing.engine = timing.transcribed.zip(timing.engine_start).map(|(b, a)| b - a);
                let event = match outcome {
                    Ok(t) => DictationEvent::Transcribed { id: job.id, text: t.text, timing },
                    Err(failure) => DictationEvent::Failed { id: job.id, failure, wav: job.wav.clone() },
                };
                if to_loop.send(event).is_err() {
                    return;
                }
            }
        })?;
        std::thread::Builder::new().name("dictate-type".into()).spawn(move || {
            for job in typing_rx {
                if tx.send(type_one(job)).is_err() {
                    return;
                }
            }
        })?;
        Ok(Workers { upload, local, typing, rx })
    }

    pub(crate) fn transcribe(&self, job: UploadJob) {
        let _ = self.upload.send(job);
    }

    /// A clip (or a preload) for the local model.
    pub(crate) fn local(&self, msg: super::local::LocalMsg) {
        let _ = self.local.send(msg);
    }

    pub(crate) fn type_text(&self, job: TypeJob) {
        let _ = self.typing.send(job);
    }
}

/// The session as it is now: the daemon's environment, or (for a daemon
/// started by systemd before the graphical session) the user manager's; probed
/// for what wtype and ydotool need (asks the compositor: worker threads only).
pub(crate) fn current_session() -> typer::SessionInfo {
    detect_session().probe()
}

/// The session's variables and tools, without asking the compositor anything.
fn detect_session() -> typer::SessionInfo {
    let own = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let path = std::env::var_os("PATH");
    if own("DISPLAY").is_some() || own("WAYLAND_DISPLAY").is_some() {
        return typer::SessionInfo::detect(own, path.as_deref());
    }
    let manager = systemd_user_environment();
    let var = |k: &str| own(k).or_else(|| manager.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
    typer::SessionInfo::detect(var, path.as_deref())
}

/// `systemctl --user show-environment`, for DISPLAY / WAYLAND_DISPLAY imported
/// into the user manager after the daemon started. Empty when unavailable.
fn systemd_user_environment() -> Vec<(String, String)> {
    let out = std::process::Command::new("systemctl")
        .args(["--user", "show-environment"])
        // Never the daemon's secrets (OPENAI_API_KEY): the typing tools' allowlist.
        .env_clear()
        .envs(crate::process::inherited_env(std::env::vars_os()))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| matches!(*k, "DISPLAY" | "WAYLAND_DISPLAY" | "XAUTHORITY" | "YDOTOOL_SOCKET"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _ => Vec::new(),
    }
}

fn type_one(job: TypeJob) -> DictationEvent {
    let mut timing = Timing { typing_start: Some(Instant::now()), ..job.timing };
    let session = current_session();
    let backend = match typer::choose(job.kind, &session) {
        Ok(b) => b.with_paste_keys(job.paste_keys),
        Err(error) => return DictationEvent::TypeFailed { id: job.id, error, text: job.text },
    };
    // A Ctrl still held from the push-to-talk chord would turn letters into shortcuts.
    let waited = typer::wait_for_modifiers_up(session.x11_display(), MODIFIER_WAIT).unwrap_or_else(|e| {
        log::debug!("dictation: cannot check the modifier keys ({e}); typing anyway");
        Duration::ZERO
    });
    let pieces = typer::pieces(&job.text);
    timing.typer_start = Some(Instant::now());
    let typed = typer::type_text(&backend, &pieces, &session, job.key_delay_ms, TYPE_TIMEOUT);
    timing.typed = Some(Instant::now());
    match typed {
        Ok(()) => DictationEvent::Typed {
            id: job.id,
            backend: format!("{backend:?}").to_lowercase(),
            waited_for_modifiers: waited,
            timing,
        },
        Err(e) => DictationEvent::TypeFailed { id: job.id, error: e.to_string(), text: job.text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timing_breaks_release_to_typed_into_stages() {
        let t0 = Instant::now();
        let at = |ms: u64| Some(t0 + Duration::from_millis(ms));
        let timing = Timing {
            released: at(0),
            clip_end: at(40),
            queued: at(42),
            engine_start: at(50),
            engine: Some(Duration::from_millis(300)),
            transcribed: at(352),
            typing_start: at(353),
            typer_start: at(356),
            typed: at(400),
        };
        assert_eq!(timing.total_ms(), Some(400.0));
        let stages = timing.stages();
        let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["capture", "spool", "prepare", "engine", "after_engine", "to_typer", "typer_setup", "typing"]
        );
        let total: f64 = stages.iter().map(|(_, v)| v).sum();
        assert!((total - 400.0).abs() < 1e-6, "the stages add up to the whole: {stages:?}");
        assert_eq!(stages[3], ("engine", 300.0));
        assert_eq!(stages[4], ("after_engine", 2.0));
        // A retried clip has no release: no total, and no stage that needs it.
        let retried = Timing { released: None, ..timing };
        assert_eq!(retried.total_ms(), None);
        assert!(!retried.stages().iter().any(|(n, _)| *n == "capture"));
    }
}
