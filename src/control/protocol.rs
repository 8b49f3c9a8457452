//! Requests and replies on the control socket.
//!
//! A request is one JSON object on one line, tagged by `cmd`; the reply is one
//! JSON object on one line. Replies are plain `serde_json::Value`s built by the
//! daemon from the same typed outcomes the Realtime tools return, so the two
//! front ends cannot drift apart. A reply with an `error` key is a failure of
//! the request itself (bad JSON, refused peer, daemon busy).

use std::path::PathBuf;

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
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
        binding: String,
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
pub enum KeyAction {
    Press,
    Release,
    Toggle,
}

/// What the connection threads hand to the main loop.
#[derive(Debug)]
pub enum Incoming {
    Request {
        request: Request,
        reply: Sender<Value>,
    },
    Subscribe {
        events: Sender<Value>,
    },
    /// A text client attaches; the loop answers `Ok(front id)` or why not.
    LiveAttach {
        events: Sender<Value>,
        reply: Sender<Result<u64, String>>,
    },
    /// A line from an attached (or local) text client.
    LiveInput {
        text: String,
    },
    /// The attached client with this id went away.
    LiveDetach {
        id: u64,
    },
}

/// A failure reply.
pub fn error_reply(message: impl Into<String>) -> Value {
    serde_json::json!({ "error": message.into() })
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
    }
}
