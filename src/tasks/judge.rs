//! Judging a finished task: its outcome, its spoken summary, and names.
//!
//! Pure functions of what the reaper saw and why we stopped the child, so the
//! rules (failure is `is_error`, the exit status and our own stop reason, never
//! `subtype`) are tested without a process.

use super::changes::Changes;
use super::reaper::Finished;
use super::registry::{TaskRecord, TaskState};

/// Characters of a spoken summary.
pub(crate) const SUMMARY_CHARS: usize = 400;

/// Why the supervisor stopped a child (it wins over what the child reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Cancel,
    Timeout,
    Shutdown,
}

/// The outcome from how the run ended. Failure is judged by `is_error`, the
/// exit status and why we stopped it, never by `subtype`.
pub(super) fn judge(
    stop: Option<StopReason>,
    f: &Finished,
    timeout_min: f64,
    max_task_usd: f64,
) -> (TaskState, Option<String>) {
    match stop {
        Some(StopReason::Cancel) => return (TaskState::Cancelled, Some("cancelled".into())),
        Some(StopReason::Timeout) => {
            return (TaskState::TimedOut, Some(format!("stopped after the {timeout_min} min timeout")));
        }
        Some(StopReason::Shutdown) => {
            return (TaskState::Interrupted, Some("the daemon stopped while the task ran".into()));
        }
        None => {}
    }
    let how = match (f.exit_code, f.exit_signal) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "ended in an unknown way".into(),
    };
    match &f.result {
        Some(r) if r.budget_exhausted() => {
            let budget = if max_task_usd > 0.0 {
                usd(max_task_usd)
            } else {
                // Not ours: say what the CLI said ("Reached maximum budget ($0.01)").
                r.errors.first().cloned().unwrap_or_else(|| "its limit".into())
            };
            (TaskState::Failed, Some(format!("stopped at its budget of {budget}")))
        }
        Some(r) if r.is_error => {
            let why = r
                .result
                .clone()
                .filter(|s| !s.trim().is_empty())
                .or_else(|| r.terminal_reason.clone())
                .or_else(|| r.subtype.clone())
                .unwrap_or_else(|| "Claude reported an error".into());
            (TaskState::Failed, Some(crate::text::clip(&why, 500)))
        }
        Some(_) if f.exit_code == Some(0) => (TaskState::Succeeded, None),
        Some(_) => (TaskState::Failed, Some(format!("claude {how} after reporting a result"))),
        None => {
            let detail = f.last_plain.as_deref().map(|l| format!(": {l}")).unwrap_or_default();
            (TaskState::Failed, Some(crate::text::clip(&format!("claude {how} without a result{detail}"), 500)))
        }
    }
}

/// "$0.50", "$0.005": an amount as the user set it.
fn usd(x: f64) -> String {
    if ((x * 100.0).round() - x * 100.0).abs() < 1e-9 { format!("${x:.2}") } else { format!("${x}") }
}

/// Records a task that was active when the daemon stopped (or crashed) as
/// interrupted, unannounced, ended at `ended_at` (Unix seconds).
pub(super) fn mark_interrupted(t: &mut TaskRecord, ended_at: u64) {
    t.state = TaskState::Interrupted;
    t.announced = false;
    t.ended_at = Some(ended_at);
    t.activity = None;
    t.waiting_for = None;
    t.reason = Some("the daemon stopped while the task ran".into());
    t.summary = Some(format!("Task {} was interrupted because the daemon stopped.", t.id));
}

/// The ear-length summary stored with the task, ending with what it changed.
pub(super) fn summarize(t: &TaskRecord, result: Option<&str>, last_text: Option<&str>, changes: &Changes) -> String {
    let body = match t.state {
        TaskState::Succeeded => {
            result.or(last_text).filter(|s| !s.trim().is_empty()).unwrap_or("It finished without a summary.")
        }
        _ => t.reason.as_deref().unwrap_or("No reason was given."),
    };
    let spoken = changes.spoken();
    let changed = match t.state {
        _ if spoken.is_empty() => String::new(),
        TaskState::Cancelled | TaskState::TimedOut | TaskState::Interrupted => {
            format!(" Before it was stopped {}.", spoken.replacen("it changed", "it had changed", 1))
        }
        _ => format!(" {}{}.", spoken[..1].to_uppercase(), &spoken[1..]),
    };
    let room = SUMMARY_CHARS.saturating_sub(changed.chars().count()).max(SUMMARY_CHARS / 2);
    format!("{}{changed}", crate::text::for_the_ear(body, room))
}

pub(super) fn state_phrase(s: TaskState) -> &'static str {
    match s {
        TaskState::Running => "is running",
        TaskState::Waiting => "is waiting for permission",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "was cancelled",
        TaskState::TimedOut => "timed out",
        TaskState::Interrupted => "was interrupted",
    }
}

/// A short name from the task text: its first few meaningful words.
pub(crate) fn derive_name(text: &str) -> String {
    const SKIP: &[&str] =
        &["the", "a", "an", "please", "can", "you", "could", "to", "in", "of", "and", "for", "on", "my"];
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| !w.is_empty() && !SKIP.contains(&w.as_str()))
        .take(4)
        .collect();
    if words.is_empty() { "task".into() } else { crate::text::clip(&words.join(" "), 40) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::stream_json::ResultInfo;

    fn finished(result: Option<ResultInfo>, code: Option<i32>) -> Finished {
        Finished { result, exit_code: code, ..Default::default() }
    }

    #[test]
    fn judged_by_is_error_not_subtype() {
        let r = ResultInfo {
            is_error: true,
            subtype: Some("success".into()),
            result: Some("Not logged in · Please run /login".into()),
            ..Default::default()
        };
        let (state, reason) = judge(None, &finished(Some(r), Some(1)), 30.0, 0.0);
        assert_eq!(state, TaskState::Failed);
        assert_eq!(reason.as_deref(), Some("Not logged in · Please run /login"));
    }

    #[test]
    fn success_needs_result_and_clean_exit() {
        let ok = ResultInfo { result: Some("done".into()), ..Default::default() };
        assert_eq!(judge(None, &finished(Some(ok.clone()), Some(0)), 30.0, 0.0).0, TaskState::Succeeded);
        let (s, why) = judge(None, &finished(Some(ok), Some(2)), 30.0, 0.0);
        assert_eq!(s, TaskState::Failed);
        assert!(why.unwrap_or_default().contains("status 2"));
        let f = Finished { exit_code: Some(1), last_plain: Some("No conversation found".into()), ..Default::default() };
        let (s, why) = judge(None, &f, 30.0, 0.0);
        assert_eq!(s, TaskState::Failed);
        assert_eq!(why.as_deref(), Some("claude exited with status 1 without a result: No conversation found"));
        let f = Finished { exit_signal: Some(9), ..Default::default() };
        assert!(judge(None, &f, 30.0, 0.0).1.unwrap_or_default().contains("signal 9"));
    }

    #[test]
    fn a_budget_stop_names_the_budget() {
        let r = ResultInfo {
            is_error: true,
            subtype: Some("error_max_budget_usd".into()),
            terminal_reason: Some("budget_exhausted".into()),
            errors: vec!["Reached maximum budget ($0.01)".into()],
            ..Default::default()
        };
        let (s, why) = judge(None, &finished(Some(r.clone()), Some(1)), 30.0, 0.5);
        assert_eq!(s, TaskState::Failed);
        assert_eq!(why.as_deref(), Some("stopped at its budget of $0.50"));
        let (_, why) = judge(None, &finished(Some(r), Some(1)), 30.0, 0.0);
        assert_eq!(why.as_deref(), Some("stopped at its budget of Reached maximum budget ($0.01)"));
        assert_eq!(usd(0.005), "$0.005");
    }

    #[test]
    fn the_summary_says_what_changed() {
        let mut t = crate::tasks::registry::sample("t4", "x", TaskState::Succeeded);
        let c = Changes { files: vec!["a.txt".into(), "b.txt".into()], ..Default::default() };
        assert_eq!(summarize(&t, Some("Done."), None, &c), "Done. It changed two files: a.txt and b.txt.");
        t.state = TaskState::Cancelled;
        t.reason = Some("cancelled".into());
        assert_eq!(
            summarize(&t, None, None, &c),
            "cancelled Before it was stopped it had changed two files: a.txt and b.txt."
        );
        assert_eq!(summarize(&t, None, None, &Changes::default()), "cancelled");
    }

    #[test]
    fn our_stops_win() {
        let ok = ResultInfo::default();
        assert_eq!(
            judge(Some(StopReason::Cancel), &finished(Some(ok.clone()), Some(0)), 30.0, 0.0).0,
            TaskState::Cancelled
        );
        assert_eq!(judge(Some(StopReason::Timeout), &finished(None, None), 30.0, 0.0).0, TaskState::TimedOut);
        assert_eq!(judge(Some(StopReason::Shutdown), &finished(None, Some(143)), 30.0, 0.0).0, TaskState::Interrupted);
    }

    #[test]
    fn names_from_text() {
        assert_eq!(
            derive_name("Please refactor the auth module in the website project"),
            "refactor auth module website"
        );
        assert_eq!(derive_name("!!!"), "task");
    }
}
