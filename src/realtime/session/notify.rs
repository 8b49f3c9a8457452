//! The queue of task notifications waiting to be spoken.
//!
//! Why a queue with an explicit "in flight" head: two tasks ending together must both be heard, one
//! response at a time, and neither may be lost on a reconnect nor spoken twice. A notification stays in the
//! queue until the server confirms the response that carried it (`response.done`); a close puts the head
//! back to "not sent" so the next session says it once. Ids already delivered are remembered for a while so
//! a daemon re-pushing its persisted queue cannot cause a repeat.
//!
//! A task's question ("t4 wants to run rm -rf build: allow?") goes ahead of results ([`Notifications::push_urgent`]):
//! the task is blocked until it is answered, a result is not. A question answered elsewhere (`ptt task allow`)
//! before it was said is taken back ([`Notifications::withdraw`]).

use super::recent::RecentSet;
use std::collections::VecDeque;

/// Failed responses tolerated per notification before it is dropped.
pub const MAX_FAILURES: u8 = 3;

const DELIVERED_CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    text: String,
    in_flight: bool,
    failures: u8,
    urgent: bool,
}

#[derive(Debug, Clone)]
pub struct Notifications {
    queue: VecDeque<Entry>,
    delivered: RecentSet,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications { queue: VecDeque::new(), delivered: RecentSet::new(DELIVERED_CAPACITY) }
    }
}

impl Notifications {
    /// Queues a notification; `false` (ignored) when the id is queued or was delivered recently.
    pub fn push(&mut self, id: &str, text: &str) -> bool {
        if self.delivered.contains(id) || self.queue.iter().any(|e| e.id == id) {
            return false;
        }
        self.queue.push_back(Entry {
            id: id.to_owned(),
            text: text.to_owned(),
            in_flight: false,
            failures: 0,
            urgent: false,
        });
        true
    }

    /// Queues a notification ahead of every ordinary one not yet sent (after earlier urgent ones);
    /// `false` when the id is queued or was delivered recently.
    pub fn push_urgent(&mut self, id: &str, text: &str) -> bool {
        if self.delivered.contains(id) || self.queue.iter().any(|e| e.id == id) {
            return false;
        }
        let at = self.queue.iter().position(|e| !e.in_flight && !e.urgent).unwrap_or(self.queue.len());
        let entry = Entry { id: id.to_owned(), text: text.to_owned(), in_flight: false, failures: 0, urgent: true };
        self.queue.insert(at, entry);
        true
    }

    /// Takes back a notification not yet sent; `false` when it is in flight (or unknown).
    pub fn withdraw(&mut self, id: &str) -> bool {
        match self.queue.iter().position(|e| e.id == id && !e.in_flight) {
            Some(i) => {
                self.queue.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether one is being delivered (sent, not yet confirmed).
    pub fn any_in_flight(&self) -> bool {
        self.queue.iter().any(|e| e.in_flight)
    }

    /// The next one to send, marking it in flight: `(id, text)`. `None` when one is already in flight.
    pub fn start_next(&mut self) -> Option<(String, String)> {
        if self.any_in_flight() {
            return None;
        }
        let head = self.queue.front_mut()?;
        head.in_flight = true;
        Some((head.id.clone(), head.text.clone()))
    }

    /// The server confirmed it: remove it. Returns its text, `None` if the id was not in flight.
    pub fn delivered(&mut self, id: &str) -> Option<String> {
        let i = self.queue.iter().position(|e| e.id == id && e.in_flight)?;
        let e = self.queue.remove(i)?;
        self.delivered.insert(&e.id);
        Some(e.text)
    }

    /// Its response failed; it stays in flight (the item is already in the conversation; only a new
    /// response is needed). Returns the failure count.
    pub fn failed(&mut self, id: &str) -> u8 {
        match self.queue.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                e.failures = e.failures.saturating_add(1);
                e.failures
            }
            None => 0,
        }
    }

    /// Gives up on it.
    pub fn remove(&mut self, id: &str) {
        self.queue.retain(|e| e.id != id);
    }

    /// The connection closed: nothing is in flight any more; all will be sent again.
    pub fn requeue_all(&mut self) {
        for e in &mut self.queue {
            e.in_flight = false;
        }
    }

    /// Ids not yet confirmed, oldest first.
    pub fn pending_ids(&self) -> Vec<String> {
        self.queue.iter().map(|e| e.id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_flight_at_a_time_and_no_repeats() {
        let mut n = Notifications::default();
        assert!(n.push("a", "A"));
        assert!(n.push("b", "B"));
        assert!(!n.push("a", "A again"));
        assert_eq!(n.start_next(), Some(("a".into(), "A".into())));
        assert_eq!(n.start_next(), None);
        assert_eq!(n.delivered("b"), None, "b was never sent");
        assert_eq!(n.delivered("a"), Some("A".into()));
        assert!(!n.push("a", "A"), "delivered ids are remembered");
        assert_eq!(n.start_next(), Some(("b".into(), "B".into())));
        n.requeue_all();
        assert!(!n.any_in_flight());
        assert_eq!(n.pending_ids(), ["b"]);
        assert_eq!(n.failed("b"), 1);
        n.remove("b");
        assert!(n.pending_ids().is_empty());
    }

    #[test]
    fn questions_go_ahead_of_results_but_not_of_what_is_being_said() {
        let mut n = Notifications::default();
        n.push("t1", "t1 ended");
        n.push("t2", "t2 ended");
        assert_eq!(n.start_next().map(|(id, _)| id).as_deref(), Some("t1"));
        assert!(n.push_urgent("ask:t3:0", "t3 asks"));
        assert!(n.push_urgent("ask:t4:0", "t4 asks"));
        assert!(!n.push_urgent("ask:t3:0", "again"), "no duplicates");
        assert_eq!(n.pending_ids(), ["t1", "ask:t3:0", "ask:t4:0", "t2"]);
        assert!(!n.withdraw("t1"), "in flight: it is being said");
        assert!(n.withdraw("ask:t4:0"), "answered elsewhere before it was said");
        assert!(!n.withdraw("ask:t4:0"));
        n.delivered("t1");
        assert_eq!(n.start_next().map(|(id, _)| id).as_deref(), Some("ask:t3:0"));
        assert_eq!(n.pending_ids(), ["ask:t3:0", "t2"]);
    }
}
