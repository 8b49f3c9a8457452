//! A task that asks: permission requests through the supervisor.
//!
//! `ptt mcp-permission` (the CLI's permission-prompt tool) sends each request
//! over the control socket; the daemon hands it here with the connection's
//! reply channel. The request joins the [`Board`](super::permission::Board),
//! the task's state becomes `waiting` with what it wants in one redacted line,
//! and the request is written to the task's log and record. It leaves the
//! board through exactly one answer: `ptt task allow/deny` or the Realtime
//! tool `answer_permission` ([`Supervisor::answer_permission`]), a rule the
//! user remembered, the `tasks.permission_timeout_min` deadline
//! ([`Supervisor::expire_permissions`], from the supervisor's timer), or
//! "deny" when the task is stopped or ends ([`Supervisor::close_permissions`]).

use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::Serialize;
use serde_json::Value;

use super::Supervisor;
use super::contract::{Candidate, Lookup, Notice, ambiguity_message, not_found_message};
use super::permission::{Answered, Ask, Asked, Decision, PermissionEntry};
use super::registry::{TaskState, unix_now};

/// Requests (with answers) kept per task in the registry; older ones stay in the log.
const MAX_ENTRIES: usize = 50;

/// The answer to `ptt task allow/deny` and `answer_permission`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum PermissionOutcome {
    Answered { task_id: String, name: String, what: String, decision: String, message: String },
    NotWaiting { task_id: String, name: String, state: TaskState, message: String },
    Ambiguous { candidates: Vec<Candidate>, message: String },
    NotFound { message: String },
}

impl Supervisor {
    /// A request from task `uuid`'s permission-prompt server. `reply` gets the
    /// answer (maybe at once: an unknown task, `permissions = "deny"`, a
    /// remembered rule); the notices say the task now waits.
    pub(crate) fn permission_ask(
        &mut self,
        uuid: &str,
        arguments: &Value,
        reply: Sender<Value>,
        now: Instant,
    ) -> Vec<Notice> {
        let deny = |reply: &Sender<Value>, message: &str| {
            let _ = reply.try_send(serde_json::json!({ "behavior": "deny", "message": message }));
        };
        let ask = match Ask::from_arguments(arguments) {
            Ok(a) => a,
            Err(e) => {
                deny(&reply, &format!("ptt could not read the request: {e}"));
                return vec![];
            }
        };
        let Some(t) = self.registry.tasks.iter().find(|t| t.uuid == uuid && self.live.contains_key(&t.id)) else {
            deny(&reply, "ptt knows no running task with this id");
            return vec![];
        };
        let (id, dir) = (t.id.clone(), t.dir.clone());
        let what = ask.describe(&dir);
        if self.config.permissions == crate::config::PermissionPolicy::Deny {
            // Only reachable with a prompt tool configured by hand; kept for completeness.
            deny(&reply, "ptt is configured to deny requests (tasks.permissions = \"deny\")");
            return vec![];
        }
        if self.live.get(&id).is_some_and(|l| l.stop.is_some()) {
            deny(&reply, "the task is being stopped");
            return vec![];
        }
        let timeout_min = self.config.permission_timeout_min;
        let deadline =
            (timeout_min > 0.0 && timeout_min.is_finite()).then(|| now + Duration::from_secs_f64(timeout_min * 60.0));
        let asked = self.board.ask(&id, ask, what.clone(), deadline, reply);
        let entry =
            PermissionEntry { asked_at: unix_now(), what: what.clone(), answered_at: None, answer: None, by: None };
        self.append_task_log(&id, &format!("asked: {what}"));
        if let Some(t) = self.registry.get_mut(&id) {
            if t.permissions.len() >= MAX_ENTRIES {
                t.permissions.remove(0);
            }
            t.permissions.push(entry);
        }
        match asked {
            Asked::Remembered => {
                self.record_answers(
                    &[Answered { task: id.clone(), what, decision: Decision::Allow { remember: false } }],
                    "remembered",
                );
                self.schedule_save(&id, now);
                vec![Notice::Activity(id)]
            }
            Asked::Waiting => {
                log::info!("task {id} waits for permission: {what}");
                self.refresh_waiting(&id);
                let _ = self.save_task(&id);
                vec![Notice::Waiting(id)]
            }
        }
    }

    /// Answers the oldest waiting request of the task `reference` names.
    pub(crate) fn answer_permission(
        &mut self,
        reference: &str,
        decision: Decision,
        by: &str,
        now: Instant,
    ) -> PermissionOutcome {
        let task = match self.lookup_preferring(reference, |t| t.state == TaskState::Waiting) {
            Lookup::Found(t) => t.clone(),
            Lookup::Ambiguous(candidates) => {
                let message = ambiguity_message(reference, &candidates);
                return PermissionOutcome::Ambiguous { candidates, message };
            }
            Lookup::NotFound => return PermissionOutcome::NotFound { message: not_found_message(reference) },
        };
        let answered = self.board.answer(&task.id, decision.clone());
        let Some(first) = answered.first().cloned() else {
            return PermissionOutcome::NotWaiting {
                message: format!("task {} '{}' is not waiting for an answer", task.id, task.name),
                task_id: task.id,
                name: task.name,
                state: task.state,
            };
        };
        self.record_answers(&answered, by);
        let _ = self.save_task(&task.id);
        let _ = now;
        let verb = match &decision {
            Decision::Allow { remember: true } => "allowed, and will allow the same kind without asking,",
            Decision::Allow { remember: false } => "allowed",
            Decision::Deny { .. } => "denied",
        };
        PermissionOutcome::Answered {
            message: format!("{verb} task {} '{}': {}", task.id, task.name, first.what),
            task_id: task.id,
            name: task.name,
            what: first.what,
            decision: first.decision.describe(),
        }
    }

    /// Denies the requests whose time is up (called from the timer).
    pub(super) fn expire_permissions(&mut self, now: Instant) -> Vec<Notice> {
        let minutes = self.config.permission_timeout_min;
        let message = format!("no answer within {minutes} min, so ptt denied it");
        let answered = self.board.expire(now, &message);
        if answered.is_empty() {
            return vec![];
        }
        self.record_answers(&answered, "timeout");
        let mut ids: Vec<String> = answered.into_iter().map(|a| a.task).collect();
        ids.dedup();
        for id in &ids {
            let _ = self.save_task(id);
        }
        ids.into_iter().map(Notice::Activity).collect()
    }

    /// Denies every waiting request of task `id` (it is being stopped or has ended).
    pub(super) fn close_permissions(&mut self, id: &str, message: &str, by: &str) {
        let answered = self.board.close(id, message);
        if !answered.is_empty() {
            self.record_answers(&answered, by);
        }
    }

    /// The earliest permission deadline.
    pub(super) fn permission_deadline(&self) -> Option<Instant> {
        self.board.next_deadline()
    }

    /// True while task `id` waits for an answer.
    pub(super) fn is_waiting(&self, id: &str) -> bool {
        self.board.waiting(id).is_some()
    }

    /// Writes answers to the records and logs, and updates each task's state.
    fn record_answers(&mut self, answered: &[Answered], by: &str) {
        for a in answered {
            // In the journal with the caller's write, or within a second.
            self.schedule_save(&a.task, Instant::now());
            let text = a.decision.describe();
            log::info!("task {}: {} ({text}, by {by})", a.task, a.what);
            self.append_task_log(&a.task, &format!("{text} (by {by}): {}", a.what));
            if let Some(t) = self.registry.get_mut(&a.task)
                && let Some(entry) = t.permissions.iter_mut().rev().find(|e| e.answer.is_none() && e.what == a.what)
            {
                entry.answer = Some(text);
                entry.answered_at = Some(unix_now());
                entry.by = Some(by.to_string());
            }
            self.refresh_waiting(&a.task);
        }
    }

    /// The task's state and `waiting_for` from the board.
    fn refresh_waiting(&mut self, id: &str) {
        let waiting = self.board.waiting(id).map(str::to_owned);
        let live = self.live.contains_key(id);
        if let Some(t) = self.registry.get_mut(id)
            && t.state.is_active()
        {
            t.state = if waiting.is_some() && live { TaskState::Waiting } else { TaskState::Running };
            t.waiting_for = waiting.clone().filter(|_| live);
        }
        if waiting.is_none()
            && let Some(l) = self.live.get_mut(id)
        {
            // Time spent waiting for the user is not silence.
            l.last_output = Instant::now();
        }
    }

    /// One line in the task's log, between the CLI's own (the reaper appends too; O_APPEND keeps lines whole).
    fn append_task_log(&self, id: &str, line: &str) {
        let Some(t) = self.registry.get(id) else { return };
        let line = format!("[ptt {}] permission {}\n", unix_now(), crate::text::redact(line));
        let written =
            std::fs::OpenOptions::new().append(true).open(&t.log_path).and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            log::debug!("task {id}: cannot append to its log: {e}");
        }
    }
}
