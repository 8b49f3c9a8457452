//! The six task tools of the live session, answered at once from the supervisor.
//!
//! Each answer is the same JSON the control socket returns for the matching
//! CLI command (`StartOutcome`, `CancelOutcome`, …), so the model and the shell
//! see one contract. Nothing here waits for Claude: `start_task` answers
//! `started` as soon as the child is spawned and on disk.

use std::time::Instant;

use serde_json::{Value, json};

use crate::realtime::tools::{ANSWER_PERMISSION, CANCEL_TASK, CONTINUE_TASK, GET_TASK_RESULT, LIST_TASKS, START_TASK};
use crate::tasks::permission::Decision;
use crate::tasks::registry::TaskRecord;
use crate::tasks::waiting::PermissionOutcome;
use crate::tasks::{Notice, ShowOutcome, StartRequest, Supervisor};

/// Runs one tool call; returns the output JSON text and any notices (a task started).
pub fn run(name: &str, arguments: &str, sup: &mut Supervisor, now: Instant) -> (String, Vec<Notice>) {
    let args: Value = match serde_json::from_str(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(Value::Null) | Err(_) if arguments.trim().is_empty() => json!({}),
        _ => return (error(&format!("the arguments of {name} are not a JSON object")), vec![]),
    };
    let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let mut notices = Vec::new();
    let answer = match name {
        START_TASK => match text("task") {
            None => error("start_task needs `task`: what Claude should do"),
            Some(task) => {
                let req = StartRequest {
                    text: task.to_string(),
                    name: text("name").map(str::to_string),
                    project: text("project").map(str::to_string),
                    dir: None,
                };
                let (outcome, started) = sup.start(req, now);
                notices.extend(started);
                to_json(&outcome)
            }
        },
        LIST_TASKS => {
            let tasks: Vec<Value> = sup.registry().tasks.iter().rev().take(15).map(|t| brief(sup, t)).collect();
            json!({"status": "ok", "running": sup.running_count(), "tasks": tasks}).to_string()
        }
        GET_TASK_RESULT => match text("task") {
            None => error("get_task_result needs `task`: an id or words of its name"),
            Some(r) => match sup.show(r) {
                ShowOutcome::Found { task } => {
                    let mut v = brief(sup, task.record);
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("status".into(), json!("found"));
                        obj.insert("log_path".into(), json!(task.record.log_path));
                    }
                    v.to_string()
                }
                other => to_json(&other),
            },
        },
        CANCEL_TASK => match text("task") {
            None => error("cancel_task needs `task`"),
            Some(r) => to_json(&sup.cancel(r, now)),
        },
        CONTINUE_TASK => match (text("task"), text("instruction")) {
            (Some(r), Some(instruction)) => {
                let (outcome, started) = sup.continue_task(r, instruction, now);
                notices.extend(started);
                to_json(&outcome)
            }
            _ => error("continue_task needs `task` and `instruction`"),
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
                to_json(&outcome)
            }
            _ => error("answer_permission needs `task` and `allow` (true or false)"),
        },
        other => error(&format!("there is no tool named {other}")),
    };
    (answer, notices)
}

/// What the model needs to talk about a task, without the raw log.
fn brief(sup: &Supervisor, t: &TaskRecord) -> Value {
    let view = sup.view(t);
    let mut out = json!({
        "task_id": t.id,
        "name": t.name,
        "state": t.state,
        "elapsed_s": view.elapsed_s,
    });
    let obj = out.as_object_mut().expect("object literal");
    if let Some(a) = &t.activity {
        obj.insert("activity".into(), json!(a));
    }
    if t.stalled {
        obj.insert("stalled".into(), json!(true));
    }
    if let Some(c) = t.cost_usd {
        obj.insert("cost_usd".into(), json!((c * 100.0).round() / 100.0));
    }
    if let Some(s) = &t.summary {
        obj.insert("summary".into(), json!(s));
    }
    if let Some(p) = &t.project {
        obj.insert("project".into(), json!(p));
    }
    if let Some(w) = &t.waiting_for {
        obj.insert("waiting_for".into(), json!(w));
    }
    if let Some(r) = view.rate_limited {
        obj.insert("rate_limited".into(), json!(r));
    }
    if let Some(c) = t.changes.as_ref().filter(|c| !c.is_empty()) {
        let mut changed = json!({"files": c.all_paths()});
        if let Some(d) = &c.diff {
            changed["diff"] = json!(d.summary);
        }
        obj.insert("changed".into(), changed);
    }
    out
}

/// The compact task table appended to the session's instructions.
pub fn task_table(sup: &Supervisor) -> String {
    let tasks = &sup.registry().tasks;
    if tasks.is_empty() {
        return "No tasks yet.".into();
    }
    let mut lines = Vec::new();
    let running = tasks.iter().filter(|t| t.state.is_active());
    let recent = tasks.iter().rev().filter(|t| !t.state.is_active()).take(5);
    for t in running.chain(recent) {
        let elapsed = sup.view(t).elapsed_s;
        let mut line = format!("{} '{}' {} {}", t.id, t.name, t.state.as_str(), crate::text::duration_words(elapsed));
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

fn error(message: &str) -> String {
    json!({"status": "error", "message": message}).to_string()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| error(&format!("internal: {e}")))
}
