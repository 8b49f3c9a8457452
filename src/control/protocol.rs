//! Requests and replies on the control socket.
//!
//! A request is one JSON object on one line, tagged by `cmd`; the reply is one
//! JSON object on one line, typed per request in [`super::reply`] (the task
//! requests answer with the same typed outcomes the Realtime tools return, so
//! the two front ends cannot drift apart). Every failure has one shape,
//! [`Failure`]: `{"status":"error","message":...}`.

use std::path::PathBuf;

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::reply::Failure;
use crate::hotkey::Binding;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Request {
    Ping,
    Status,
    Tasks {
        #[serde(default)]
        all: bool,
    },
    Start {
        text: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        project: Option<String>,
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    Show {
        reference: String,
    },
    Cancel {
        reference: String,
    },
    Continue {
        reference: String,
        text: String,
    },
    /// A stream of events (one JSON line each) until the client hangs up.
    Subscribe,
    /// Turns the connection into a text conversation: the daemon streams the
    /// live session's lines; the client sends `say` requests (no replies).
    LiveAttach,
    /// A user line for the live session (on an attached connection).
    Say {
        text: String,
    },
    /// A hotkey action from a compositor binding: `ptt key toggle live`.
    Key {
        action: KeyAction,
        binding: Binding,
    },
    /// From `ptt mcp-permission`: task `task` (its uuid) asks whether it may
    /// make a tool call; `arguments` as the CLI sent them (`tool_name`,
    /// `input`, `tool_use_id`). The reply comes when the request is answered
    /// (by the user, a timeout, or the task's end): the connection waits.
    PermissionAsk {
        task: String,
        arguments: Value,
    },
    /// Allows a waiting task's oldest request (`ptt task allow`).
    Allow {
        reference: String,
        #[serde(default)]
        remember: bool,
    },
    /// Denies a waiting task's oldest request (`ptt task deny`).
    Deny {
        reference: String,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Sends the clips kept after failed transcriptions again.
    DictateRetry,
    /// Answered (`{"synced": true}`) only once everything the daemon received before it, on any channel, has
    /// been handled and no timer is due: tests wait for this fact instead of sleeping.
    Sync,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyAction {
    Press,
    Release,
    Toggle,
}

/// What the connection threads hand to the main loop.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A request whose answer is a `Value` on `reply`, whenever it is ready: a `permission_ask` (answered
    /// by the user, its timeout or the task's end), a `sync`, the daemon's own shutdown.
    Request { request: Request, reply: Sender<Value> },
    /// Any other request: answered at once, the reply line written by the loop itself (see `super::direct`).
    Call { request: Request, replier: super::direct::Replier },
    /// A `watch` client: the loop writes `{"subscribed":true}` and then its events.
    Subscribe { subscriber: super::direct::Subscriber },
    /// A text client attaches; the loop answers `Ok(front id)` or why not.
    LiveAttach { events: Sender<Value>, reply: Sender<Result<u64, String>> },
    /// A line from an attached (or local) text client.
    LiveInput { text: String },
    /// The attached client with this id went away.
    LiveDetach { id: u64 },
}

/// A failure reply, as it goes on the wire.
pub(crate) fn error_reply(message: impl Into<String>) -> Value {
    super::reply::to_value(&Failure::new(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let r: Request = serde_json::from_str(r#"{"cmd":"start","text":"fix it","project":"site"}"#).expect("parse");
        assert_eq!(r, Request::Start { text: "fix it".into(), name: None, project: Some("site".into()), dir: None });
        let r: Request = serde_json::from_str(r#"{"cmd":"tasks"}"#).expect("parse");
        assert_eq!(r, Request::Tasks { all: false });
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm -rf"}"#).is_err());
        assert_eq!(serde_json::from_str::<Request>(r#"{"cmd":"sync"}"#).expect("parse"), Request::Sync);
        let s = serde_json::to_string(&Request::Cancel { reference: "t1".into() }).expect("ser");
        assert_eq!(s, r#"{"cmd":"cancel","reference":"t1"}"#);
        let r: Request = serde_json::from_str(r#"{"cmd":"key","action":"toggle","binding":"live"}"#).expect("parse");
        assert_eq!(r, Request::Key { action: KeyAction::Toggle, binding: Binding::Live });
        let e =
            serde_json::from_str::<Request>(r#"{"cmd":"key","action":"press","binding":"shift"}"#).expect_err("bad");
        assert!(e.to_string().contains("unknown variant `shift`"), "{e}");
        assert_eq!(error_reply("busy"), serde_json::json!({"status": "error", "message": "busy"}));
    }
}
