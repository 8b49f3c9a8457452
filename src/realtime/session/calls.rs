//! The ledger of function calls: which were dispatched, which still wait for their result.
//!
//! Why: the server describes one call several times (`response.function_call_arguments.done`,
//! `response.output_item.done`, the `output` of `response.done`), and a frame can arrive twice. Running
//! `start_task` twice starts two Claude processes, so a call is dispatched once, from `arguments.done`
//! only, and remembered. Results are matched to calls of the *current* connection: a result for a call made
//! on a connection that has since closed cannot be sent (the new session never heard of that `call_id`),
//! so it becomes an "orphan" that only goes into the transcript.

use super::recent::RecentSet;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long an unanswered call holds back the next `response.create` and notifications. The daemon
/// answers every tool at once, so this only matters if a dispatch is lost.
pub(crate) const TOOL_GRACE: Duration = Duration::from_secs(5);

const SEEN_CAPACITY: usize = 4096;
const ORPHAN_CAPACITY: usize = 64;

#[derive(Debug, Clone)]
struct Outstanding {
    call_id: String,
    name: String,
    since: Instant,
}

/// What [`Calls::answer`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A call of the current connection, waiting: send its output. Carries the tool name.
    Current(String),
    /// A call of a closed connection: record only. Carries the tool name.
    Orphaned(String),
    /// Never dispatched, or already answered.
    Unknown,
}

#[derive(Debug, Clone)]
pub(crate) struct Calls {
    seen: RecentSet,
    outstanding: Vec<Outstanding>,
    orphaned: VecDeque<(String, String)>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls { seen: RecentSet::new(SEEN_CAPACITY), outstanding: Vec::new(), orphaned: VecDeque::new() }
    }
}

impl Calls {
    /// Records a call; `true` when it is new and must be dispatched.
    pub(crate) fn dispatch(&mut self, call_id: &str, name: &str, now: Instant) -> bool {
        if !self.seen.insert(call_id) {
            return false;
        }
        self.outstanding.push(Outstanding { call_id: call_id.to_owned(), name: name.to_owned(), since: now });
        true
    }

    /// Takes the call a result belongs to.
    pub(crate) fn answer(&mut self, call_id: &str) -> Answer {
        if let Some(i) = self.outstanding.iter().position(|c| c.call_id == call_id) {
            return Answer::Current(self.outstanding.remove(i).name);
        }
        let orphan = self.orphaned.iter().position(|(id, _)| id == call_id).and_then(|i| self.orphaned.remove(i));
        match orphan {
            Some((_, name)) => Answer::Orphaned(name),
            None => Answer::Unknown,
        }
    }

    /// The connection closed: waiting calls become orphans.
    pub(crate) fn on_close(&mut self) {
        for c in self.outstanding.drain(..) {
            if self.orphaned.len() == ORPHAN_CAPACITY {
                self.orphaned.pop_front();
            }
            self.orphaned.push_back((c.call_id, c.name));
        }
    }

    /// Whether a call still within its grace period waits for a result.
    pub(crate) fn blocking(&self, now: Instant) -> bool {
        self.outstanding.iter().any(|c| c.since.checked_add(TOOL_GRACE).is_some_and(|t| now < t))
    }

    /// When the oldest waiting call stops blocking.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.outstanding.iter().filter_map(|c| c.since.checked_add(TOOL_GRACE)).min()
    }

    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_once_answer_once() {
        let t = Instant::now();
        let mut c = Calls::default();
        assert!(c.dispatch("call_1", "list_tasks", t));
        assert!(!c.dispatch("call_1", "list_tasks", t));
        assert!(c.blocking(t));
        assert!(!c.blocking(t + TOOL_GRACE));
        assert_eq!(c.answer("call_1"), Answer::Current("list_tasks".into()));
        assert_eq!(c.answer("call_1"), Answer::Unknown);
        assert!(!c.blocking(t));
        assert!(!c.dispatch("call_1", "list_tasks", t), "answered calls stay seen");
    }

    #[test]
    fn close_orphans_waiting_calls() {
        let t = Instant::now();
        let mut c = Calls::default();
        c.dispatch("call_1", "start_task", t);
        c.on_close();
        assert_eq!(c.outstanding(), 0);
        assert_eq!(c.answer("call_1"), Answer::Orphaned("start_task".into()));
        assert_eq!(c.answer("call_1"), Answer::Unknown);
    }
}
