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
    /// When the key was released (for the release → typed figure).
    pub(crate) released_at: Option<Instant>,
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
    pub(crate) released_at: Option<Instant>,
}

/// What the threads report.
#[derive(Debug)]
pub(crate) enum DictationEvent {
    Transcribed {
        id: String,
        text: String,
        released_at: Option<Instant>,
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
        released_at: Option<Instant>,
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
                let req = transcribe::Request { wav: &job.wav, model: &job.model, hints: &job.hints };
                let event = match transcribe::transcribe(&job.endpoint, &req) {
                    Ok(t) => DictationEvent::Transcribed { id: job.id, text: t.text, released_at: job.released_at },
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
    match typer::type_text(&backend, &pieces, &session, job.key_delay_ms, TYPE_TIMEOUT) {
        Ok(()) => DictationEvent::Typed {
            id: job.id,
            backend: format!("{backend:?}").to_lowercase(),
            waited_for_modifiers: waited,
            released_at: job.released_at,
        },
        Err(e) => DictationEvent::TypeFailed { id: job.id, error: e.to_string(), text: job.text },
    }
}
