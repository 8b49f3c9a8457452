//! The tools of the live session, answered at once: the six task tools from the supervisor, `set_quiet` by
//! the daemon's quiet flag, `catch_up` from the session's own queue (`Live::catch_up`).
//!
//! Each answer is the same JSON the control socket returns for the matching
//! CLI command (`StartOutcome`, `CancelOutcome`, …), so the model and the shell
//! see one contract. Nothing here waits for Claude: `start_task` answers
//! `started` as soon as the child is spawned and on disk.
//!
//! The daemon runs a tool when the live session asks for it (a
//! `LiveStep::RunTool`) and hands the typed [`ToolResult`] back to the session,
//! which serializes it once for the wire and once for attached text clients.
//! The session is given what it needs about tasks as data ([`briefing`],
//! [`task_table`]); it never holds the supervisor.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::live::{Briefing, News};
use super::notifications::{MAX_AGE_S, MAX_PENDING, describe_end, describe_question};
use crate::realtime::tools::{ANSWER_PERMISSION, CANCEL_TASK, CONTINUE_TASK, GET_TASK_RESULT, LIST_TASKS, START_TASK};
use crate::tasks::permission::Decision;
use crate::tasks::registry::TaskState;
use crate::tasks::waiting::PermissionOutcome;
use crate::tasks::{CancelOutcome, Candidate, Notice, ShowOutcome, StartOutcome, StartRequest, Supervisor, TaskView};

/// A tool's answer, as the model (and text clients) get it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum ToolResult {
    /// `start_task`, `continue_task`.
    Start(StartOutcome),
    /// `cancel_task`.
    Cancel(CancelOutcome),
    /// `list_tasks`.
    List(TaskList),
    /// `get_task_result`.
    Task(TaskAnswer),
    /// `answer_permission`.
    Permission(PermissionOutcome),
    /// `set_quiet`.
    Quiet(QuietAnswer),
    /// Bad arguments or an unknown tool.
    Error(ToolError),
}

impl ToolResult {
    fn error(message: impl Into<String>) -> ToolResult {
        ToolResult::Error(ToolError { status: "error", message: message.into() })
    }
}

/// `set_quiet`: the mode now, and how many results and questions wait (heard later with `catch_up`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QuietAnswer {
    /// Always `"ok"`.
    pub(crate) status: &'static str,
    pub(crate) quiet: bool,
    pub(crate) waiting: usize,
}

impl ToolResult {
    pub(crate) fn quiet(quiet: bool, waiting: usize) -> ToolResult {
        ToolResult::Quiet(QuietAnswer { status: "ok", quiet, waiting })
    }
}

/// `set_quiet`'s argument: `on` (true or false), or the error the model gets.
pub(crate) fn quiet_argument(arguments: &str) -> Result<bool, ToolResult> {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|v| v.get("on").and_then(Value::as_bool))
        .ok_or_else(|| ToolResult::error("set_quiet needs `on`: true (be quiet) or false (talk again)"))
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ToolError {
    /// Always `"error"`.
    pub(crate) status: &'static str,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskList {
    /// Always `"ok"`.
    pub(crate) status: &'static str,
    pub(crate) running: usize,
    /// The 15 most recent tasks, newest first.
    pub(crate) tasks: Vec<TaskBrief>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum TaskAnswer {
    Found {
        #[serde(flatten)]
        task: Box<TaskBrief>,
        log_path: PathBuf,
    },
    Ambiguous {
        message: String,
        candidates: Vec<Candidate>,
    },
    NotFound {
        message: String,
    },
}

/// What the model needs to talk about a task, without the raw log.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskBrief {
    pub(crate) task_id: String,
    pub(crate) name: String,
    pub(crate) state: TaskState,
    pub(crate) elapsed_s: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) activity: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) stalled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) project: Option<String>,
    /// What it asks permission for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) waiting_for: Option<String>,
    /// "rate-limited until 14:05", while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rate_limited: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) changed: Option<Changed>,
}

/// What a task changed: the files, and the diff's summary line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Changed {
    pub(crate) files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) diff: Option<String>,
}

impl TaskBrief {
    fn of(view: &TaskView) -> TaskBrief {
        let t = view.record;
        TaskBrief {
            task_id: t.id.clone(),
            name: t.name.clone(),
            state: t.state,
            elapsed_s: view.elapsed_s,
            activity: t.activity.clone(),
            stalled: t.stalled,
            cost_usd: t.cost_usd.map(|c| (c * 100.0).round() / 100.0),
            summary: t.summary.clone(),
            project: t.project.clone(),
            waiting_for: t.waiting_for.clone(),
            rate_limited: view.rate_limited.clone(),
            changed: t
                .changes
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| Changed { files: c.all_paths(), diff: c.diff.as_ref().map(|d| d.summary.clone()) }),
        }
    }
}

/// Runs one tool call; returns its answer and any notices (a task started).
pub(crate) fn run(name: &str, arguments: &str, sup: &mut Supervisor, now: Instant) -> (ToolResult, Vec<Notice>) {
    let args: Value = match serde_json::from_str(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(Value::Null) | Err(_) if arguments.trim().is_empty() => Value::Object(Default::default()),
        _ => return (ToolResult::error(format!("the arguments of {name} are not a JSON object")), vec![]),
    };
    let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let mut notices = Vec::new();
    let mut started = |(outcome, started): (StartOutcome, Vec<Notice>)| {
        notices.extend(started);
        ToolResult::Start(outcome)
    };
    let answer = match name {
        START_TASK => match text("task") {
            None => ToolResult::error("start_task needs `task`: what Claude should do"),
            Some(task) => {
                let req = StartRequest {
                    text: task.to_string(),
                    name: text("name").map(str::to_string),
                    project: text("project").map(str::to_string),
                    dir: None,
                };
                started(sup.start(req, now))
            }
        },
        LIST_TASKS => ToolResult::List(TaskList {
            status: "ok",
            running: sup.running_count(),
            tasks: sup.registry().tasks.iter().rev().take(15).map(|t| TaskBrief::of(&sup.view(t))).collect(),
        }),
        GET_TASK_RESULT => match text("task") {
            None => ToolResult::error("get_task_result needs `task`: an id or words of its name"),
            Some(r) => ToolResult::Task(match sup.show(r) {
                ShowOutcome::Found { task } => {
                    TaskAnswer::Found { task: Box::new(TaskBrief::of(&task)), log_path: task.record.log_path.clone() }
                }
                ShowOutcome::Ambiguous { candidates, message } => TaskAnswer::Ambiguous { message, candidates },
                ShowOutcome::NotFound { message } => TaskAnswer::NotFound { message },
            }),
        },
        CANCEL_TASK => match text("task") {
            None => ToolResult::error("cancel_task needs `task`"),
            Some(r) => ToolResult::Cancel(sup.cancel(r, now)),
        },
        CONTINUE_TASK => match (text("task"), text("instruction")) {
            (Some(r), Some(instruction)) => started(sup.continue_task(r, instruction, now)),
            _ => ToolResult::error("continue_task needs `task` and `instruction`"),
        },
        ANSWER_PERMISSION => match (text("task"), args.get("allow").and_then(Value::as_bool)) {
            (Some(r), Some(allow)) => {
                let remember = args.get("remember").and_then(Value::as_bool).unwrap_or(false);
                let decision = if allow {
                    Decision::Allow { remember }
                } else {
                    Decision::Deny { message: "The user said no.".into() }
                };
                let outcome = sup.answer_permission(r, decision, "voice", now);
                if let PermissionOutcome::Answered { task_id, .. } = &outcome {
                    notices.push(Notice::Activity(task_id.clone()));
                }
                ToolResult::Permission(outcome)
            }
            _ => ToolResult::error("answer_permission needs `task` and `allow` (true or false)"),
        },
        other => ToolResult::error(format!("there is no tool named {other}")),
    };
    (answer, notices)
}

/// The compact task table appended to the session's instructions.
pub(crate) fn task_table(sup: &Supervisor) -> String {
    let tasks = &sup.registry().tasks;
    if tasks.is_empty() {
        return "No tasks yet.".into();
    }
    let mut lines = Vec::new();
    let running = tasks.iter().filter(|t| t.state.is_active());
    let recent = tasks.iter().rev().filter(|t| !t.state.is_active()).take(5);
    for t in running.chain(recent) {
        let mut line = format!(
            "{} '{}' {} {}",
            t.id,
            t.name,
            t.state.as_str(),
            crate::text::duration_words(sup.view(t).elapsed_s)
        );
        if let Some(w) = &t.waiting_for {
            line.push_str(&format!(": waiting for permission to {w}"));
        } else if let Some(a) = &t.activity {
            line.push_str(&format!(": {a}"));
        } else if let Some(s) = &t.summary {
            line.push_str(&format!(": {}", crate::text::clip(s, 120)));
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// What a session starting now is told: the task table and every task whose end
/// was not announced yet.
pub(crate) fn briefing(sup: &Supervisor) -> Briefing {
    Briefing {
        table: task_table(sup),
        news: sup
            .unannounced(MAX_PENDING, MAX_AGE_S)
            .into_iter()
            .map(|t| News { task_id: t.id.clone(), text: describe_end(t) })
            .collect(),
        questions: sup
            .registry()
            .tasks
            .iter()
            .filter_map(describe_question)
            .map(|(task_id, text)| News { task_id, text })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::registry::sample;

    #[test]
    fn set_quiet_takes_a_boolean_and_answers_with_the_mode() {
        assert!(quiet_argument("{\"on\": true}").expect("valid"));
        assert!(!quiet_argument("{\"on\": false}").expect("valid"));
        for bad in ["{}", "{\"on\": \"yes\"}", "not json", ""] {
            let err = quiet_argument(bad).err().map(|e| serde_json::to_value(e).expect("serializes"));
            assert_eq!(err.as_ref().map(|e| e["status"].clone()), Some(serde_json::json!("error")), "{bad}");
        }
        let v = serde_json::to_value(ToolResult::quiet(true, 2)).expect("serializes");
        assert_eq!(v, serde_json::json!({"status": "ok", "quiet": true, "waiting": 2}));
    }

    #[test]
    fn answers_serialize_to_the_control_contract() {
        let mut t = sample("t3", "auth", TaskState::Succeeded);
        t.created_at = 100;
        t.ended_at = Some(160);
        t.cost_usd = Some(0.314);
        t.summary = Some("done".into());
        let found = ToolResult::Task(TaskAnswer::Found {
            task: Box::new(TaskBrief::of(&TaskView::of(&t))),
            log_path: "/l/t3.log".into(),
        });
        let v = serde_json::to_value(&found).expect("serializes");
        assert_eq!(v["status"], "found");
        assert_eq!(v["task_id"], "t3");
        assert_eq!(v["elapsed_s"], 60);
        assert_eq!(v["cost_usd"], 0.31);
        assert_eq!(v["log_path"], "/l/t3.log");
        assert!(v.get("stalled").is_none() && v.get("activity").is_none(), "{v}");
        let v = serde_json::to_value(ToolResult::error("nope")).expect("serializes");
        assert_eq!(v, serde_json::json!({"status": "error", "message": "nope"}));
        let none = ToolResult::Task(TaskAnswer::NotFound { message: "no".into() });
        assert_eq!(serde_json::to_value(none).expect("serializes")["status"], "not_found");
    }
}
