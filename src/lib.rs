//! ptt: a push-to-talk daemon for Linux with a supervisor for background
//! Claude Code tasks.
//!
//! The binary (`src/main.rs`) is a thin shell around [`cli::main`]. The crate
//! is a library as well so that integration tests reach the internals. See
//! ARCHITECTURE.md for the thread map and the invariants.
//!
//! Items are `pub(crate)` by default: `pub` marks only what the binary, `tests/` and `benches/` use, so the
//! compiler reports dead code (`unreachable_pub` keeps it that way).

#![warn(unreachable_pub)]
// The docs are for working on ptt (`cargo doc --document-private-items`): public items link to crate items.
#![allow(rustdoc::private_intra_doc_links)]

pub mod audio;
pub mod cli;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod daemon;
pub mod dictate;
pub mod hotkey;
pub(crate) mod logging;
pub(crate) mod mcp;
pub mod models;
pub(crate) mod notify;
pub(crate) mod paths;
pub(crate) mod process;
pub(crate) mod realtime;
pub(crate) mod secrets;
pub mod tasks;
pub(crate) mod text;
