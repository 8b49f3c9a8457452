//! ptt: a push-to-talk daemon for Linux with a supervisor for background
//! Claude Code tasks.
//!
//! The binary (`src/main.rs`) is a thin shell around [`cli::main`]. The crate
//! is a library as well so that integration tests reach the internals. See
//! ARCHITECTURE.md for the thread map and the invariants.

pub mod audio;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dictate;
pub mod hotkey;
pub mod logging;
pub mod mcp;
pub mod models;
pub mod notify;
pub mod paths;
pub mod process;
pub mod realtime;
pub mod secrets;
pub mod tasks;
pub mod text;
