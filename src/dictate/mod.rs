//! Dictation: hold the push-to-talk key, speak, release; the words are typed
//! into the focused window.
//!
//! The parts, each with one job:
//! - [`wav`]: the clip as a WAV file.
//! - [`transcribe`]: the upload (multipart over ureq) and its retry policy.
//! - [`local`]: whisper.cpp on this machine, and the `dictate-local` thread that owns the model.
//! - [`model_store`]: the downloadable models, `ptt model download`, and which model is in use.
//! - [`engine`]: which of the two transcribes a clip (`dictate.engine`).
//! - [`spool`]: clips on disk until they are typed, kept after a failure.
//! - [`vocabulary`]: the words file and the prompt built from it.
//! - [`commands`]: voice commands ("live mode", "add word X", "new line").
//! - [`typer`]: typing backends (xdotool, wtype, ydotool, clipboard, stdout).
//! - [`worker`]: the upload and typing threads.
//! - [`legacy`]: importing the Python app's config on first run.
//!
//! The daemon side (what a key press does, which clip is where) is
//! `daemon::dictation`; `ptt dictate --once` and `ptt dictate retry` without a
//! daemon use these parts directly (`cli::dictate`).

pub(crate) mod commands;
pub(crate) mod engine;
pub(crate) mod legacy;
pub mod local;
pub mod model_store;
pub(crate) mod spool;
pub(crate) mod transcribe;
pub(crate) mod typer;
pub(crate) mod vocabulary;
pub mod wav;
pub(crate) mod worker;
