//! What a live session is told when a task ends.
//!
//! Whether a task's end has been announced is part of the task's record
//! (`TaskRecord::announced`), written in the same atomic registry write as the
//! outcome itself: the notification is on disk the moment the result is, with
//! no second file and no second fsync on the way to the speaker. A session
//! takes the unannounced tasks when it starts and each new one as it ends; a
//! task is marked announced only when the session machine reports the
//! response that spoke it finished. So a dropped connection, an expired
//! session or a daemon restart in between loses nothing. Old news is not kept
//! forever: a user who never opens a live session should not hear yesterday's.

use crate::tasks::registry::{TaskRecord, TaskState, unix_now};

/// At most this many wait; the oldest are skipped first.
pub(crate) const MAX_PENDING: usize = 20;
/// Tasks that ended longer ago than this are not announced (their results stay in the registry).
pub(crate) const MAX_AGE_S: u64 = 6 * 3600;

/// "[task t7 'auth refactor' finished after 4 minutes 12 seconds, $0.31: <summary>]"
pub(crate) fn describe_end(t: &TaskRecord) -> String {
    let took = t.ended_at.unwrap_or_else(unix_now).saturating_sub(t.created_at);
    let took = crate::text::duration_words(took);
    let cost = t.cost_usd.map(|c| format!(", ${c:.2}")).unwrap_or_default();
    let what = match t.state {
        TaskState::Succeeded => "finished",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "was cancelled",
        TaskState::TimedOut => "timed out",
        TaskState::Interrupted => "was interrupted",
        TaskState::Running => "is running",
        TaskState::Waiting => "is waiting for an answer",
    };
    let summary = t.summary.as_deref().unwrap_or("");
    format!("[task {} '{}' {what} after {took}{cost}: {summary}]", t.id, t.name)
}

/// The desktop notification for a task's end: the outcome in the title, the reason (failures) or the summary in
/// the body, urgency by outcome (failures critical, successes normal, cancellations low). Keyed by the task's
/// id, so it replaces an earlier notification of the same task. `notify` redacts it again before it is shown.
pub(crate) fn desktop_note(t: &TaskRecord) -> crate::notify::Note {
    use crate::notify::Urgency;
    let took = crate::text::duration_words(t.ended_at.unwrap_or_else(unix_now).saturating_sub(t.created_at));
    let (what, urgency) = match t.state {
        TaskState::Succeeded => ("finished", Urgency::Normal),
        TaskState::Failed => ("failed", Urgency::Critical),
        TaskState::TimedOut => ("timed out", Urgency::Critical),
        TaskState::Interrupted => ("was interrupted", Urgency::Critical),
        TaskState::Cancelled => ("was cancelled", Urgency::Low),
        TaskState::Running => ("is running", Urgency::Low),
        TaskState::Waiting => ("is waiting for an answer", Urgency::Critical),
    };
    let mut body = Vec::new();
    if matches!(t.state, TaskState::Failed | TaskState::TimedOut | TaskState::Interrupted)
        && let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty())
    {
        body.push(reason.to_string());
    }
    if let Some(summary) = t.summary.as_deref().filter(|s| !s.is_empty()) {
        body.push(summary.to_string());
    }
    let cost = t.cost_usd.map(|c| format!(", ${c:.2}")).unwrap_or_default();
    body.push(format!("after {took}{cost}"));
    crate::notify::Note {
        key: t.id.clone(),
        summary: format!("ptt: task {} '{}' {what}", t.id, t.name),
        body: body.join("\n"),
        urgency,
    }
}

/// Ids of questions start with this (task ends use the task's id): a delivered question marks nothing announced.
pub(crate) const QUESTION_PREFIX: &str = "ask:";

/// The question a waiting task puts to the user, for the live session: `(id, text)`. The id names the request
/// (`ask:t4:2`: the task's third), so each request is asked once and an answered one can be taken back.
pub(crate) fn describe_question(t: &TaskRecord) -> Option<(String, String)> {
    let what = t.waiting_for.as_deref()?;
    let index = t.permissions.iter().rposition(|e| e.answer.is_none() && e.what == what)?;
    let id = format!("{QUESTION_PREFIX}{}:{index}", t.id);
    let text = format!(
        "[task {} '{}' is waiting for permission: it wants to {what}. Ask the user now, in one short sentence \
         (for example \"{} wants to {what}: allow?\"), then call answer_permission with their answer. Do not \
         answer it yourself.]",
        t.id, t.name, t.id
    );
    Some((id, text))
}

/// The desktop notification for a task that asks while nobody would hear it: what it wants and how to answer.
/// Keyed by the task's id, so the task's end replaces it.
pub(crate) fn waiting_note(t: &TaskRecord) -> crate::notify::Note {
    let what = t.waiting_for.as_deref().unwrap_or("use a tool");
    crate::notify::Note {
        key: t.id.clone(),
        summary: format!("ptt: task {} '{}' asks", t.id, t.name),
        body: format!("{} wants to {what}\nptt task allow {} / ptt task deny {}", t.id, t.id, t.id),
        urgency: crate::notify::Urgency::Critical,
    }
}

/// The desktop notification for the budget warning (once a local day, at 80 % of `tasks.budget_usd`).
pub(crate) fn budget_note(message: &str) -> crate::notify::Note {
    crate::notify::Note {
        key: "budget".into(),
        summary: "ptt: most of today's task budget is spent".into(),
        body: format!("{message}; new tasks are refused at 100 % (tasks.budget_usd)"),
        urgency: crate::notify::Urgency::Normal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_task_is_asked_once_per_request() {
        use crate::tasks::permission::PermissionEntry;
        let mut t = sample("t4", "website", TaskState::Waiting);
        assert_eq!(describe_question(&t), None, "nothing asked");
        let entry = |what: &str, answer: Option<&str>| PermissionEntry {
            asked_at: 0,
            what: what.into(),
            answered_at: None,
            answer: answer.map(str::to_owned),
            by: None,
        };
        t.permissions = vec![entry("run: ls", Some("allowed")), entry("run: rm -rf build", None)];
        t.waiting_for = Some("run: rm -rf build".into());
        let (id, text) = describe_question(&t).expect("a question");
        assert_eq!(id, "ask:t4:1");
        assert!(text.contains("t4 wants to run: rm -rf build: allow?"), "{text}");
        assert!(text.contains("answer_permission"));
    }

    #[test]
    fn a_waiting_task_says_what_and_how_to_answer() {
        let mut t = sample("t4", "website", TaskState::Waiting);
        t.waiting_for = Some("run: rm -rf build".into());
        let n = waiting_note(&t);
        assert_eq!(n.summary, "ptt: task t4 'website' asks");
        assert!(n.body.starts_with("t4 wants to run: rm -rf build\n"), "{}", n.body);
        assert!(n.body.contains("ptt task allow t4"));
        assert_eq!(n.key, "t4", "the end replaces it");
    }
    use crate::tasks::registry::sample;

    #[test]
    fn a_desktop_note_says_the_outcome_with_its_urgency() {
        use crate::notify::Urgency;
        let mut t = sample("t7", "auth refactor", TaskState::Failed);
        t.created_at = 1000;
        t.ended_at = Some(1061);
        t.reason = Some("exit status 1".into());
        t.summary = Some("Could not find the tests.".into());
        let n = desktop_note(&t);
        assert_eq!(n.key, "t7");
        assert_eq!(n.summary, "ptt: task t7 'auth refactor' failed");
        assert_eq!(n.body, "exit status 1\nCould not find the tests.\nafter 1 minute 1 second");
        assert_eq!(n.urgency, Urgency::Critical);
        t.state = TaskState::Succeeded;
        t.reason = None;
        t.cost_usd = Some(0.31);
        let n = desktop_note(&t);
        assert_eq!((n.summary.as_str(), n.urgency), ("ptt: task t7 'auth refactor' finished", Urgency::Normal));
        assert!(n.body.ends_with("after 1 minute 1 second, $0.31"), "{}", n.body);
        t.state = TaskState::Cancelled;
        assert_eq!(desktop_note(&t).urgency, Urgency::Low);
    }

    #[test]
    fn describes_an_end_for_the_ear() {
        let mut t = sample("t7", "auth refactor", TaskState::Succeeded);
        t.created_at = 1000;
        t.ended_at = Some(1252);
        t.cost_usd = Some(0.31);
        t.summary = Some("All tests pass.".into());
        assert_eq!(
            describe_end(&t),
            "[task t7 'auth refactor' finished after 4 minutes 12 seconds, $0.31: All tests pass.]"
        );
        t.state = TaskState::TimedOut;
        t.cost_usd = None;
        t.ended_at = Some(1001);
        assert_eq!(describe_end(&t), "[task t7 'auth refactor' timed out after 1 second: All tests pass.]");
    }
}
