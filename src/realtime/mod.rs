//! Live mode's protocol layer: the OpenAI Realtime API (GA) as typed events, the six task tools, and a
//! pure session state machine.
//!
//! Why it is split this way: the daemon's loop must never block and must be testable without a socket
//! (design §3). So nothing in here does I/O, spawns a thread or reads a clock. The I/O thread turns text
//! frames into [`events::ServerEvent`]s, the loop feeds them and local facts (key held, audio playing, tool
//! results, task notifications, the time) into [`session::Session`], and the session answers with
//! [`session::Output`]s: client events to send and things for the daemon to do. Everything the upstream
//! Python app got wrong here (duplicate `response.create`, a tool dispatched twice, notifications spoken over
//! the user or lost on reconnect) is a property of that one machine and is unit-tested in it.

pub(crate) mod connection;
pub(crate) mod events;
pub(crate) mod session;
pub(crate) mod tools;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod schema_tests;
