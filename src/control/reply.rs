//! Replies on the control socket: one type per request.
//!
//! The daemon serializes these and the CLI deserializes them, so the two ends
//! agree by construction instead of by string keys. A failure of any request
//! has ONE shape, [`Failure`] (`{"status":"error","message":...}`); the task
//! requests answer with the outcomes of `tasks::contract` (their own `status`
//! tags, never `error`). Field names are the documented JSON (`ptt status
//! --json`, the tests): renaming one is a wire change.
//!
//! The `status` reply is typed in full: each component builds its part
//! ([`HotkeysStatus`], [`AudioStatus`], ..., the supervisor's `TasksStatus`
//! from `tasks::contract`) and the daemon serializes [`StatusReply`]. The task
//! views the CLI reads ([`TaskInfo`], [`TaskReply`]) name the fields it prints;
//! deserializing ignores the others. `--json` prints a reply as received.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{DictateEngine, TyperKind};
/// The supervisor's part of `status` is its own contract (`tasks` knows nothing of `control`).
pub(crate) use crate::tasks::contract::TasksStatus;

/// The `status` tag of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorTag {
    Error,
}

/// The `status` tag of a success that carries no outcome of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OkTag {
    Ok,
}

/// The `status` tag of the shutdown reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoppingTag {
    Stopping,
}

/// A request that failed: bad JSON, a refused peer, a busy daemon, or the
/// request's own failure (`ptt key` without a key, `ptt dictate retry` ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub(crate) status: ErrorTag,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure { status: ErrorTag::Error, message: message.into() }
    }

    /// The failure a reply carries, if it is one.
    pub(crate) fn of(reply: &Value) -> Option<Failure> {
        if reply.get("status").and_then(Value::as_str) != Some("error") {
            return None;
        }
        serde_json::from_value(reply.clone()).ok().or_else(|| Some(Failure::new("failed (no message)")))
    }
}

/// `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pong {
    pub(crate) pong: bool,
    pub(crate) pid: u32,
}

/// `sync`: sent only once everything received before it was handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Synced {
    pub(crate) synced: bool,
}

/// `tasks`: each task as the tasks' JSON contract shows it (`TaskView::to_json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TaskList {
    pub(crate) tasks: Vec<Value>,
}

/// A task as `tasks` and `task show` return it (the JSON of `tasks::contract::TaskView`), with the fields the
/// CLI prints; deserializing ignores the others (`--json` prints the reply as received).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TaskInfo {
    pub(crate) id: String,
    pub(crate) name: String,
    /// `running`, `waiting`, `succeeded`, ... (`TaskState`'s names).
    pub(crate) state: String,
    pub(crate) stalled: bool,
    pub(crate) prompt: String,
    pub(crate) dir: PathBuf,
    pub(crate) branch: Option<String>,
    pub(crate) elapsed_s: u64,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) num_turns: Option<u64>,
    pub(crate) waiting_for: Option<String>,
    pub(crate) activity: Option<String>,
    pub(crate) rate_limited: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) summary: Option<String>,
    pub(crate) changes: Option<ChangesInfo>,
    pub(crate) permissions: Vec<PermissionInfo>,
    pub(crate) session_id: Option<String>,
    pub(crate) log_path: PathBuf,
    pub(crate) tail: Vec<String>,
}

/// What a task changed (`tasks::changes::Changes`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ChangesInfo {
    pub(crate) files: Vec<String>,
    pub(crate) diff: Option<DiffInfo>,
}

/// The diff stat since the task's start commit.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DiffInfo {
    pub(crate) base: String,
    pub(crate) summary: String,
    pub(crate) files: Vec<FileInfo>,
}

/// One file of a diff stat (`None`: a binary file's counts).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FileInfo {
    pub(crate) path: String,
    pub(crate) added: Option<u64>,
    pub(crate) removed: Option<u64>,
    pub(crate) untracked: bool,
}

/// A permission request of the task and its answer (`None` while it waits).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PermissionInfo {
    pub(crate) what: String,
    pub(crate) answer: Option<String>,
    pub(crate) by: Option<String>,
}

/// `tasks`, as the CLI reads it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub(crate) struct TaskTable {
    pub(crate) tasks: Vec<TaskInfo>,
}

/// A task named in an `ambiguous` answer.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CandidateInfo {
    pub(crate) task_id: String,
    pub(crate) name: String,
    pub(crate) state: String,
}

/// What a task request (`start`, `continue`, `show`, `cancel`, `allow`, `deny`) answered, as the CLI reads it:
/// the outcomes of `tasks::contract` (and `tasks::waiting`) by their `status` tag, or a [`Failure`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum TaskReply {
    Started {
        task_id: String,
        name: String,
        dir: PathBuf,
        #[serde(default)]
        warning: Option<String>,
    },
    Found {
        task: Box<TaskInfo>,
    },
    Cancelling {
        message: String,
    },
    Answered {
        message: String,
    },
    Ambiguous {
        candidates: Vec<CandidateInfo>,
        message: String,
    },
    NotFound {
        message: String,
    },
    /// `rejected`, `not_running`, `not_waiting`, `error`: a refusal with its message.
    #[serde(alias = "rejected", alias = "not_running", alias = "not_waiting", alias = "error")]
    Refused {
        message: String,
    },
}

impl TaskReply {
    /// Reads a task request's reply; a reply of no known shape is a refusal saying so.
    pub(crate) fn of(reply: &Value) -> TaskReply {
        serde_json::from_value(reply.clone()).unwrap_or_else(|e| TaskReply::Refused {
            message: match reply.get("message").and_then(Value::as_str) {
                Some(m) => m.to_string(),
                None => format!("unexpected reply from the daemon: {e}"),
            },
        })
    }
}

/// `shutdown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stopping {
    pub(crate) status: StoppingTag,
}

impl Stopping {
    pub(crate) fn new() -> Stopping {
        Stopping { status: StoppingTag::Stopping }
    }
}

impl Default for Stopping {
    fn default() -> Self {
        Stopping::new()
    }
}

/// Whether live mode is on (or starting) after a `key` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub(crate) fn from_bool(on: bool) -> OnOff {
        if on { OnOff::On } else { OnOff::Off }
    }

    fn off() -> OnOff {
        OnOff::Off
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            OnOff::On => "on",
            OnOff::Off => "off",
        }
    }
}

/// `key`: what the binding did, and whether live mode and quiet mode are now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyReply {
    pub(crate) status: OkTag,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    pub(crate) live: OnOff,
    #[serde(default = "OnOff::off")]
    pub(crate) quiet: OnOff,
}

/// `dictate_retry`: the ids of the clips sent again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Retried {
    pub(crate) status: OkTag,
    pub(crate) retried: Vec<String>,
    pub(crate) message: String,
}

/// `status`: every part typed; the daemon serializes it (`ptt status --json` prints it as received) and the CLI
/// reads it back. Deserializing is lenient (a missing field takes its default) so that a newer daemon's reply
/// still reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct StatusReply {
    pub(crate) daemon: DaemonInfo,
    pub(crate) tasks: TasksStatus,
    pub(crate) live: LiveStatus,
    pub(crate) hotkeys: HotkeysStatus,
    pub(crate) audio: Option<AudioStatus>,
    pub(crate) dictation: Option<DictationStatus>,
    pub(crate) models: ModelsStatus,
}

/// The model lifecycle check: what each key uses, its problems, what the last check said.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ModelsStatus {
    pub(crate) used: Vec<UsedModel>,
    pub(crate) warnings: Vec<String>,
    pub(crate) errors: Vec<String>,
    pub(crate) checked: Vec<CheckedModel>,
    /// The local day of the last check.
    pub(crate) checked_on: Option<String>,
    /// Why the last check was skipped.
    pub(crate) check_skipped: Option<String>,
}

/// A model a config key uses (`model`), as configured (`configured`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct UsedModel {
    pub(crate) key: String,
    pub(crate) configured: String,
    pub(crate) model: String,
}

/// What the API said of a model (`current`, `shutdown_soon`, `not_found`, `unknown`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct CheckedModel {
    pub(crate) key: String,
    pub(crate) model: String,
    pub(crate) state: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct DaemonInfo {
    pub(crate) pid: u32,
    pub(crate) version: String,
    pub(crate) uptime_s: u64,
    pub(crate) config: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) socket: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct LiveStatus {
    /// `off`, `connecting`, `ready`, `reconnecting`, `failed`.
    pub(crate) state: Option<String>,
    /// Why live mode is on (`conversation`, ...).
    pub(crate) purpose: Option<String>,
    /// The fatal error that stopped it.
    pub(crate) error: Option<String>,
    pub(crate) last_close: Option<String>,
    /// When the next connection attempt is due (`None`: none is planned).
    pub(crate) reconnect_in_ms: Option<u64>,
    /// `present`, or why the key is missing.
    pub(crate) key: Option<String>,
    pub(crate) model: String,
    pub(crate) session_id: Option<String>,
    pub(crate) expires_in_s: Option<u64>,
    /// A response is active (tests wait for this fact before they assert what waits for the floor).
    pub(crate) responding: bool,
    /// The progress update the session holds (tests wait for this fact).
    pub(crate) progress: Option<ProgressStatus>,
    pub(crate) pending_notifications: u64,
    /// Quiet mode: nothing is spoken; results and questions wait.
    pub(crate) quiet: bool,
    /// Results not yet heard plus questions waiting for an answer.
    pub(crate) waiting: u64,
    pub(crate) connects: u64,
    pub(crate) bad_frames: u64,
    pub(crate) text_clients: u64,
    /// A note on the live transcription model (a fallback, say).
    pub(crate) transcription: Option<String>,
}

/// A progress update the live session holds: about which tasks, and whether it is being said.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ProgressStatus {
    pub(crate) tasks: Vec<String>,
    pub(crate) speaking: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct HotkeysStatus {
    /// The key source (`x11`, `evdev`, `socket`).
    pub(crate) source: String,
    pub(crate) report: Vec<String>,
    pub(crate) stopped: Option<String>,
    /// What the machine holds now (tests wait for it).
    pub(crate) held: Vec<String>,
    /// Whether an edge still waits out its debounce (tests wait for it).
    pub(crate) settling: bool,
}

/// One audio device: opened (`ok`: its description) or why not (`error`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Device {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ok: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Device {
    pub(crate) fn of(r: &Result<String, String>) -> Device {
        match r {
            Ok(d) => Device { ok: Some(d.clone()), error: None },
            Err(e) => Device { ok: None, error: Some(e.clone()) },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct AudioStatus {
    pub(crate) input: Device,
    pub(crate) output: Device,
    /// `audio.cues`.
    pub(crate) cues: bool,
    pub(crate) cues_played: u64,
    pub(crate) cues_skipped: u64,
    /// The microphone is open.
    pub(crate) voice: bool,
    pub(crate) playing: bool,
    pub(crate) mic_dropped_chunks: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct DictationStatus {
    pub(crate) enabled: bool,
    pub(crate) recording: bool,
    pub(crate) in_flight: u64,
    pub(crate) kept_clips: u64,
    pub(crate) typed: u64,
    pub(crate) typing: u64,
    pub(crate) dropped: u64,
    pub(crate) failed: u64,
    pub(crate) typer: TyperKind,
    pub(crate) last_error: Option<String>,
    pub(crate) engine: DictateEngine,
    /// The local model file dictation would load.
    pub(crate) local_model: Option<PathBuf>,
    pub(crate) model: LocalModelStatus,
}

/// The local model's state (`not loaded`, `loaded`, `unloaded`, `failed`) and what the last event said.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct LocalModelStatus {
    pub(crate) state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) load_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// A line shown to an attached text client (`ptt live --text`): the daemon
/// serializes these (tag `kind`), the CLI deserializes them and prints one
/// line each. A kind this CLI does not know (a newer daemon) reads as
/// [`LiveLine::Unknown`] and prints nothing, so the conversation goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum LiveLine {
    /// The session's state (`off`, `connecting`, `connected`, `reconnecting` ...) and why, if said.
    Status {
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The session failed (or could not be attached to); the CLI exits non-zero.
    Error { message: String },
    /// A task's result, as offered to the model.
    Notification { task_id: String, text: String },
    /// A progress item about some tasks (their ids).
    Progress { tasks: Vec<String>, text: String },
    /// A tool call and its outcome (the JSON returned to the model).
    Tool { name: String, result: Value },
    /// What the assistant said; `phase` is `commentary` for a 2.x preamble (null when the model gives none).
    Assistant { text: String, phase: Option<String> },
    /// What the user was heard to say.
    User { text: String },
    /// A kind this build does not know.
    #[serde(other)]
    Unknown,
}

impl LiveLine {
    pub(crate) fn status(state: &str, message: Option<String>) -> LiveLine {
        LiveLine::Status { state: state.to_string(), message }
    }
}

/// A reply as the daemon sends it.
pub(crate) fn to_value<T: Serialize>(reply: &T) -> Value {
    serde_json::to_value(reply)
        .unwrap_or_else(|e| to_value(&Failure::new(format!("internal: cannot serialize the reply: {e}"))))
}

/// Reads a reply as `T`: its failure if it is one, `Err` too if it does not have `T`'s shape.
pub(crate) fn parse<T: DeserializeOwned>(reply: &Value) -> Result<T, Failure> {
    if let Some(f) = Failure::of(reply) {
        return Err(f);
    }
    serde_json::from_value(reply.clone()).map_err(|e| Failure::new(format!("garbled reply from the daemon: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(reply: T, wire: Value) {
        assert_eq!(to_value(&reply), wire, "serialized");
        assert_eq!(parse::<T>(&wire).expect("parse"), reply, "deserialized");
    }

    #[test]
    fn live_lines_read_back_as_the_cli_sees_them() {
        let lines = [
            (
                LiveLine::status("off", Some("live mode turned off".into())),
                json!({"kind": "status", "state": "off", "message": "live mode turned off"}),
            ),
            (LiveLine::status("connected", None), json!({"kind": "status", "state": "connected"})),
            (LiveLine::Error { message: "HTTP 401".into() }, json!({"kind": "error", "message": "HTTP 401"})),
            (
                LiveLine::Notification { task_id: "t1".into(), text: "done".into() },
                json!({"kind": "notification", "task_id": "t1", "text": "done"}),
            ),
            (
                LiveLine::Progress { tasks: vec!["t1".into(), "t2".into()], text: "working".into() },
                json!({"kind": "progress", "tasks": ["t1", "t2"], "text": "working"}),
            ),
            (
                LiveLine::Tool { name: "list_tasks".into(), result: json!({"status": "ok", "tasks": []}) },
                json!({"kind": "tool", "name": "list_tasks", "result": {"status": "ok", "tasks": []}}),
            ),
            (
                LiveLine::Assistant { text: "On it.".into(), phase: Some("commentary".into()) },
                json!({"kind": "assistant", "text": "On it.", "phase": "commentary"}),
            ),
            (
                LiveLine::Assistant { text: "Done.".into(), phase: None },
                json!({"kind": "assistant", "text": "Done.", "phase": null}),
            ),
            (LiveLine::User { text: "hello".into() }, json!({"kind": "user", "text": "hello"})),
        ];
        for (line, wire) in lines {
            // What the daemon writes is what the CLI reads off the socket (a text line).
            let text = to_value(&line).to_string();
            assert_eq!(serde_json::from_str::<Value>(&text).expect("json"), wire, "serialized");
            assert_eq!(serde_json::from_str::<LiveLine>(&text).expect("parse"), line, "deserialized");
        }
    }

    #[test]
    fn an_unknown_live_kind_reads_as_unknown() {
        let line = r#"{"kind":"hologram","frames":3}"#;
        assert_eq!(serde_json::from_str::<LiveLine>(line).expect("parse"), LiveLine::Unknown);
        // A status without a message (older daemons) still reads.
        let line = r#"{"kind":"status","state":"connected"}"#;
        assert_eq!(serde_json::from_str::<LiveLine>(line).expect("parse"), LiveLine::status("connected", None));
    }

    #[test]
    fn each_reply_round_trips_as_the_documented_json() {
        round_trip(Pong { pong: true, pid: 42 }, json!({"pong": true, "pid": 42}));
        round_trip(Synced { synced: true }, json!({"synced": true}));
        round_trip(TaskList { tasks: vec![json!({"id": "t1"})] }, json!({"tasks": [{"id": "t1"}]}));
        round_trip(Stopping::new(), json!({"status": "stopping"}));
        round_trip(
            KeyReply { status: OkTag::Ok, message: None, live: OnOff::Off, quiet: OnOff::Off },
            json!({"status": "ok", "live": "off", "quiet": "off"}),
        );
        round_trip(
            KeyReply {
                status: OkTag::Ok,
                message: Some("nothing is playing".into()),
                live: OnOff::On,
                quiet: OnOff::On,
            },
            json!({"status": "ok", "message": "nothing is playing", "live": "on", "quiet": "on"}),
        );
        round_trip(
            Retried { status: OkTag::Ok, retried: vec!["c1".into()], message: "sent 1".into() },
            json!({"status": "ok", "retried": ["c1"], "message": "sent 1"}),
        );
        let wire = json!({"status": "error", "message": "no key"});
        assert_eq!((to_value(&Failure::new("no key")), Failure::of(&wire)), (wire, Some(Failure::new("no key"))));
    }

    #[test]
    fn a_failure_is_read_as_a_failure_whatever_was_asked() {
        let wire = json!({"status": "error", "message": "the daemon is stopping"});
        assert_eq!(parse::<KeyReply>(&wire), Err(Failure::new("the daemon is stopping")));
        assert_eq!(parse::<StatusReply>(&wire), Err(Failure::new("the daemon is stopping")));
        // A reply of another shape is an error, not a default.
        assert!(parse::<KeyReply>(&json!({"pong": true})).is_err());
        assert_eq!(Failure::of(&json!({"status": "ok"})), None);
    }

    #[test]
    fn a_task_view_is_read_back_as_the_task_the_cli_prints() {
        use crate::tasks::TaskView;
        use crate::tasks::registry::{TaskState, sample};
        let mut t = sample("t3", "fix auth", TaskState::Waiting);
        t.stalled = true;
        t.cost_usd = Some(0.25);
        t.waiting_for = Some("run: ls".into());
        t.tail = vec!["a".into(), "b".into()];
        t.changes = Some(crate::tasks::changes::Changes {
            files: vec!["src/a.rs".into()],
            diff: Some(crate::tasks::changes::DiffStat {
                base: "0123456789abcdef".into(),
                summary: "1 file changed".into(),
                files: vec![crate::tasks::changes::FileStat {
                    path: "src/a.rs".into(),
                    added: Some(3),
                    removed: None,
                    untracked: true,
                }],
            }),
            ..Default::default()
        });
        let wire = json!({"tasks": [TaskView::of(&t).to_json()]});
        let table: TaskTable = parse(&wire).expect("parse");
        let got = &table.tasks[0];
        assert_eq!((got.id.as_str(), got.name.as_str(), got.state.as_str()), ("t3", "fix auth", "waiting"));
        assert_eq!((got.stalled, got.cost_usd, got.waiting_for.as_deref()), (true, Some(0.25), Some("run: ls")));
        assert_eq!((got.dir.clone(), got.log_path.clone()), (PathBuf::from("/tmp"), PathBuf::from("/tmp/t3.log")));
        assert_eq!(got.tail, ["a", "b"]);
        let diff = got.changes.as_ref().and_then(|c| c.diff.as_ref()).expect("diff");
        assert_eq!((diff.files[0].added, diff.files[0].removed, diff.files[0].untracked), (Some(3), None, true));
        let shown = TaskReply::of(&json!({"status": "found", "task": TaskView::of(&t).to_json()}));
        assert!(matches!(&shown, TaskReply::Found { task } if **task == *got), "{shown:?}");
    }

    #[test]
    fn task_outcomes_are_read_by_their_status() {
        let started = json!({"status": "started", "task_id": "t1", "name": "n", "dir": "/d"});
        assert_eq!(
            TaskReply::of(&started),
            TaskReply::Started { task_id: "t1".into(), name: "n".into(), dir: "/d".into(), warning: None }
        );
        let ambiguous = json!({"status": "ambiguous", "message": "which?",
            "candidates": [{"task_id": "t1", "name": "a", "state": "running"}]});
        let TaskReply::Ambiguous { candidates, message } = TaskReply::of(&ambiguous) else { panic!("ambiguous") };
        assert_eq!((candidates[0].task_id.as_str(), message.as_str()), ("t1", "which?"));
        for status in ["rejected", "not_running", "not_waiting", "error"] {
            let v = json!({"status": status, "message": "no", "reason": "limit_reached", "task_id": "t1"});
            assert_eq!(TaskReply::of(&v), TaskReply::Refused { message: "no".into() }, "{status}");
        }
        assert_eq!(
            TaskReply::of(&json!({"status": "not_found", "message": "x"})),
            TaskReply::NotFound { message: "x".into() }
        );
        assert!(
            matches!(TaskReply::of(&json!({"pong": true})), TaskReply::Refused { message } if message.contains("unexpected"))
        );
    }

    #[test]
    fn the_status_reply_reads_the_fields_the_cli_prints_and_ignores_the_rest() {
        let wire = json!({
            "daemon": {"pid": 7, "version": "0.1.0", "uptime_s": 65, "config": "/c", "state_dir": "/s", "socket": "/r"},
            "tasks": {"running": 1, "max_concurrent": 3, "known": 4, "next_id": "t5", "budget_usd": 5.0,
                      "spent_today_usd": 0.25, "waiting": [{"task_id": "t2", "name": "n", "waiting_for": "run: ls"}],
                      "claude": {"path": "/bin/claude"}, "unread": 1},
            "live": {"state": "off", "error": null, "key": "present", "pending_notifications": 2, "connects": 0},
            "hotkeys": {"source": "evdev", "report": ["ok"], "stopped": null, "held": []},
            "audio": {"input": {"ok": "mic"}, "output": {"error": "not opened yet"}, "playing": false},
            "dictation": {"enabled": true, "recording": false, "in_flight": 0, "kept_clips": 1, "typed": 3,
                          "typer": "wtype", "last_error": null},
        });
        let s: StatusReply = parse(&wire).expect("parse");
        assert_eq!((s.daemon.pid, s.daemon.uptime_s, s.daemon.config.clone()), (7, 65, PathBuf::from("/c")));
        assert_eq!(s.tasks.waiting[0].waiting_for.as_deref(), Some("run: ls"));
        assert_eq!(s.tasks.claude.path.as_deref(), Some("/bin/claude"));
        assert_eq!((s.live.state.as_deref(), s.live.pending_notifications), (Some("off"), 2));
        assert_eq!(s.hotkeys.report, ["ok"]);
        let audio = s.audio.clone().expect("audio");
        assert_eq!((audio.input.ok.as_deref(), audio.output.error.as_deref()), (Some("mic"), Some("not opened yet")));
        assert_eq!(s.dictation.as_ref().map(|d| (d.kept_clips, d.typer)), Some((1, TyperKind::Wtype)));
        // Typed back and read again, it is the same.
        assert_eq!(parse::<StatusReply>(&to_value(&s)).expect("again"), s);
    }
}
