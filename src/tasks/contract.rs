//! What the supervisor promises its callers: requests, outcomes, notices and views.
//!
//! The control socket and the Realtime tools both hand these to their clients, so
//! the shapes here are the contract with the CLI and with the model (design.md
//! §3's tool answers): changing a field name changes what the model reads. They
//! live apart from the lifecycle so that a front end can see every answer the
//! supervisor gives without reading how it gets there.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Supervisor;
use super::reference::{self, Resolution};
use super::registry::{TaskRecord, TaskState, unix_now};

/// A request to start a task.
#[derive(Debug, Clone, Default)]
pub(crate) struct StartRequest {
    pub(crate) text: String,
    pub(crate) name: Option<String>,
    pub(crate) project: Option<String>,
    pub(crate) dir: Option<PathBuf>,
}

/// Why a start was refused (the contract with the model and the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RejectReason {
    LimitReached,
    UnknownProject,
    NotAllowed,
    ClaudeNotFound,
    BudgetExceeded,
    DirectoryBusy,
    NotARepository,
    SpawnFailed,
    BadRequest,
    ShuttingDown,
    /// The registry cannot be written (a full or read-only disk): a task nobody could find after a
    /// restart is not started.
    StateUnwritable,
    /// Every id has been handed out (the counter would wrap): ids are never reused.
    IdsExhausted,
}

/// A task named in an ambiguous answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Candidate {
    pub(crate) task_id: String,
    pub(crate) name: String,
    pub(crate) state: TaskState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum StartOutcome {
    Started {
        task_id: String,
        name: String,
        dir: PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    Rejected {
        reason: RejectReason,
        message: String,
    },
    Ambiguous {
        candidates: Vec<Candidate>,
        message: String,
    },
    NotFound {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum CancelOutcome {
    Cancelling { task_id: String, name: String, message: String },
    NotRunning { task_id: String, name: String, state: TaskState, message: String },
    Ambiguous { candidates: Vec<Candidate>, message: String },
    NotFound { message: String },
}

/// The result of looking a task up.
pub(crate) enum Lookup<'a> {
    Found(&'a TaskRecord),
    Ambiguous(Vec<Candidate>),
    NotFound,
}

/// Something the daemon may want to tell others (subscribers, the live session).
///
/// The supervisor builds every notice itself and hands it back with the answer
/// or event that caused it, so a caller cannot forget one or send one twice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Notice {
    Started(String),
    Activity(String),
    Stalled(String),
    Ended(String),
    /// Today's spending reached 80 % of `tasks.budget_usd` (once a local day).
    BudgetWarning(String),
    /// The task asks for permission (`waiting_for` says what it wants).
    Waiting(String),
}

/// A task as clients see it: the record plus its elapsed seconds and, while
/// the API holds it back, until when.
///
/// Everything that leaves the daemon this way (`task show`, `tasks`, the Realtime tools) is
/// redacted when serialized, every string of it: the registry and the log keep the task's text
/// verbatim (both private to the user), what is shown does not.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskView<'a> {
    pub(crate) record: &'a TaskRecord,
    pub(crate) elapsed_s: u64,
    /// "rate-limited until 14:05" (local time) while an active task waits for its limit.
    pub(crate) rate_limited: Option<String>,
}

impl Serialize for TaskView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Raw<'b> {
            #[serde(flatten)]
            record: &'b TaskRecord,
            elapsed_s: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            rate_limited: &'b Option<String>,
        }
        let raw = Raw { record: self.record, elapsed_s: self.elapsed_s, rate_limited: &self.rate_limited };
        let mut v = serde_json::to_value(raw).map_err(serde::ser::Error::custom)?;
        redact_strings(&mut v);
        v.serialize(serializer)
    }
}

/// What a status bar needs about a task, for `watch` subscribers: never the prompt, the tail
/// or the paths, so an event is small (under 1 KiB: name, activity and summary are clipped)
/// whatever the task's text, and a subscriber's queue of 256 is its byte budget. Redacted.
pub(crate) fn brief(t: &TaskRecord) -> Value {
    let end = t.ended_at.unwrap_or_else(unix_now);
    let mut v = json!({
        "id": t.id,
        "name": crate::text::clip(&t.name, 80),
        "state": t.state,
        "stalled": t.stalled,
        "activity": t.activity.as_deref().map(|a| crate::text::clip(a, 120)),
        "waiting_for": t.waiting_for.as_deref().map(|a| crate::text::clip(a, 120)),
        "cost_usd": t.cost_usd,
        "elapsed_s": end.saturating_sub(t.created_at),
        "output_bytes": t.output_bytes,
        // The ear-length summary (a few sentences, redacted when stored).
        "summary": t.summary.as_deref().map(|s| crate::text::clip(s, 400)),
    });
    redact_strings(&mut v);
    v
}

/// Redacts every string inside `v`, in place.
fn redact_strings(v: &mut Value) {
    match v {
        Value::String(s) => {
            let clean = crate::text::redact(s);
            if clean != *s {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_strings),
        Value::Object(map) => map.values_mut().for_each(redact_strings),
        _ => {}
    }
}

impl<'a> TaskView<'a> {
    pub(crate) fn of(record: &'a TaskRecord) -> TaskView<'a> {
        let now = unix_now();
        let end = record.ended_at.unwrap_or(now);
        let rate_limited = record
            .rate_limited_until
            .filter(|u| *u > now && record.state.is_active())
            .map(|until| format!("rate-limited until {}", super::admission::local_hhmm(until)));
        TaskView { record, elapsed_s: end.saturating_sub(record.created_at), rate_limited }
    }

    /// The view as JSON (an empty object if a path in it is not UTF-8).
    pub(crate) fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

/// The answer to "show me task X" (`ptt task show`, the `get_task_result` tool).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum ShowOutcome<'a> {
    Found { task: TaskView<'a> },
    Ambiguous { candidates: Vec<Candidate>, message: String },
    NotFound { message: String },
}

/// The supervisor's part of `ptt status` (`control::reply::StatusReply::tasks`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TasksStatus {
    pub(crate) running: u64,
    pub(crate) max_concurrent: u64,
    pub(crate) known: u64,
    pub(crate) next_id: String,
    /// Why `tasks.json` cannot be written (new tasks are refused meanwhile).
    pub(crate) registry_error: Option<String>,
    pub(crate) budget_usd: f64,
    pub(crate) spent_today_usd: f64,
    pub(crate) waiting: Vec<WaitingTask>,
    pub(crate) rate_limited: Option<String>,
    pub(crate) claude: ClaudeFound,
    pub(crate) shutting_down: bool,
}

/// A task waiting for a permission answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct WaitingTask {
    pub(crate) task_id: String,
    pub(crate) name: String,
    pub(crate) waiting_for: Option<String>,
}

/// Where `claude` was found, or why not.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ClaudeFound {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// What start-up found and did.
#[derive(Debug, Default)]
pub(crate) struct StartupReport {
    pub(crate) interrupted: Vec<String>,
    pub(crate) swept: usize,
    pub(crate) registry_moved_aside: Option<(PathBuf, String)>,
}

impl Supervisor {
    // ----- looking up and stopping ------------------------------------------

    /// Resolves a reference among the tasks `preferred` accepts first (a cancel prefers running tasks, an
    /// answer waiting ones), then among all tasks.
    pub(crate) fn lookup_preferring(&self, reference: &str, preferred: impl Fn(&TaskRecord) -> bool) -> Lookup<'_> {
        match self.lookup(reference, preferred) {
            Lookup::NotFound => self.lookup(reference, |_| true),
            other => other,
        }
    }

    /// Resolves a reference among the tasks `eligible` accepts (ids always resolve).
    pub(crate) fn lookup(&self, reference: &str, eligible: impl Fn(&TaskRecord) -> bool) -> Lookup<'_> {
        let tasks = &self.registry.tasks;
        match reference::resolve(reference, tasks, eligible) {
            Resolution::Found(i) => Lookup::Found(&tasks[i]),
            Resolution::Ambiguous(idx) => Lookup::Ambiguous(
                idx.into_iter()
                    .map(|i| Candidate {
                        task_id: tasks[i].id.clone(),
                        name: tasks[i].name.clone(),
                        state: tasks[i].state,
                    })
                    .collect(),
            ),
            Resolution::NotFound => Lookup::NotFound,
        }
    }

    // ----- views --------------------------------------------------------------

    /// Any task, by id or words of its name.
    pub(crate) fn show(&self, reference: &str) -> ShowOutcome<'_> {
        match self.lookup(reference, |_| true) {
            Lookup::Found(t) => ShowOutcome::Found { task: TaskView::of(t) },
            Lookup::Ambiguous(candidates) => {
                ShowOutcome::Ambiguous { message: ambiguity_message(reference, &candidates), candidates }
            }
            Lookup::NotFound => ShowOutcome::NotFound { message: not_found_message(reference) },
        }
    }

    /// A task as clients see it: the record plus elapsed seconds.
    pub(crate) fn view<'a>(&self, t: &'a TaskRecord) -> TaskView<'a> {
        TaskView::of(t)
    }

    /// Tasks of this run and recent ones (a day), or all.
    pub(crate) fn list(&self, all: bool) -> Vec<TaskView<'_>> {
        let since = self.run_started_at.min(unix_now().saturating_sub(24 * 3600));
        self.registry
            .tasks
            .iter()
            .filter(|t| all || t.state.is_active() || t.created_at >= since || t.ended_at.is_some_and(|e| e >= since))
            .map(TaskView::of)
            .collect()
    }

    pub(crate) fn status(&self) -> TasksStatus {
        let tasks = &self.registry.tasks;
        TasksStatus {
            running: self.live.len() as u64,
            waiting: tasks
                .iter()
                .filter(|t| t.state == TaskState::Waiting)
                .map(|t| WaitingTask {
                    task_id: t.id.clone(),
                    name: t.name.clone(),
                    waiting_for: t.waiting_for.clone(),
                })
                .collect(),
            rate_limited: tasks
                .iter()
                .filter(|t| t.state.is_active())
                .filter_map(|t| t.rate_limited_until)
                .filter(|u| *u > unix_now())
                .max()
                .map(|u| format!("rate-limited until {}", super::admission::local_hhmm(u))),
            max_concurrent: self.config.max_concurrent as u64,
            known: tasks.len() as u64,
            next_id: format!("t{}", self.registry.next_id),
            spent_today_usd: (self.spent_today() * 10000.0).round() / 10000.0,
            budget_usd: self.config.budget_usd,
            claude: match self.claude_path() {
                Ok(p) => ClaudeFound { path: Some(p.to_string_lossy().into_owned()), error: None },
                Err(e) => ClaudeFound { path: None, error: Some(e) },
            },
            shutting_down: self.shutting_down,
            registry_error: self.registry_error.clone().or_else(|| self.keeper.error()),
        }
    }
}

pub(crate) fn ambiguity_message(reference: &str, candidates: &[Candidate]) -> String {
    let list: Vec<String> =
        candidates.iter().map(|c| format!("{} '{}' ({})", c.task_id, c.name, c.state.as_str())).collect();
    format!("\"{reference}\" matches several tasks: {}; which one?", list.join(", "))
}

pub(crate) fn not_found_message(reference: &str) -> String {
    format!("no task matches \"{reference}\"")
}
