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
//!
//! A progress item ("t3 has run 12 minutes; it is running cargo test") goes behind everything else and there is
//! at most one waiting: a newer one replaces it ([`Notifications::push_progress`]). A result is news, an update
//! on a running task only fills a pause.
//!
//! Quiet mode ([`Notifications::set_quiet`]) holds everything: results and questions stay queued, marked
//! held, and nothing starts; progress is dropped (it would be stale by the time anyone hears it). Leaving quiet
//! mode asks the held questions at once (a task is blocked on each) but keeps the held results for
//! `catch_up` ([`Notifications::catch_up`]), which hands every result and question not yet said, oldest
//! first, to one tool output; they count as heard when the response that speaks that output is done, exactly
//! like a notification's own response.

use super::recent::RecentSet;
use std::collections::VecDeque;

/// Failed responses tolerated per notification before it is dropped.
pub(crate) const MAX_FAILURES: u8 = 3;

const DELIVERED_CAPACITY: usize = 1024;

/// What a queued item is, which decides its place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A task waits for the user's answer: ahead of everything not yet sent.
    Question,
    /// A task's end.
    Result,
    /// Leaving quiet mode: "three tasks finished while you were away; shall I go through them?"
    Offer,
    /// How running tasks are doing: only when nothing else waits; one at a time.
    Progress,
}

impl Kind {
    fn rank(self) -> u8 {
        match self {
            Kind::Question => 0,
            Kind::Result | Kind::Offer => 1,
            Kind::Progress => 2,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    text: String,
    in_flight: bool,
    failures: u8,
    kind: Kind,
    /// Queued while quiet: not said until quiet mode ends (questions) or `catch_up` (results).
    held: bool,
    /// Arrival order (`catch_up` answers oldest first).
    seq: u64,
}

/// One item handed to `catch_up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missed {
    pub(crate) id: String,
    pub(crate) text: String,
    pub(crate) question: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Notifications {
    queue: VecDeque<Entry>,
    delivered: RecentSet,
    quiet: bool,
    seq: u64,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications { queue: VecDeque::new(), delivered: RecentSet::new(DELIVERED_CAPACITY), quiet: false, seq: 0 }
    }
}

impl Notifications {
    fn known(&self, id: &str) -> bool {
        self.delivered.contains(id) || self.queue.iter().any(|e| e.id == id)
    }

    /// Inserts before the first entry not yet sent that ranks lower.
    fn insert(&mut self, id: &str, text: &str, kind: Kind) {
        self.seq += 1;
        let held = self.quiet;
        let entry = Entry {
            id: id.to_owned(),
            text: text.to_owned(),
            in_flight: false,
            failures: 0,
            kind,
            held,
            seq: self.seq,
        };
        let at =
            self.queue.iter().position(|e| !e.in_flight && e.kind.rank() > kind.rank()).unwrap_or(self.queue.len());
        self.queue.insert(at, entry);
    }

    /// Queues a task's end; `false` (ignored) when the id is queued or was delivered recently.
    pub(crate) fn push(&mut self, id: &str, text: &str) -> bool {
        if self.known(id) {
            return false;
        }
        self.insert(id, text, Kind::Result);
        true
    }

    /// Queues a question ahead of every ordinary one not yet sent (after earlier questions);
    /// `false` when the id is queued or was delivered recently.
    pub(crate) fn push_urgent(&mut self, id: &str, text: &str) -> bool {
        if self.known(id) {
            return false;
        }
        self.insert(id, text, Kind::Question);
        true
    }

    /// Queues the offer made on leaving quiet mode.
    fn push_offer(&mut self, id: &str, text: &str) {
        self.queue.retain(|e| e.kind != Kind::Offer || e.in_flight);
        self.insert(id, text, Kind::Offer);
        if let Some(e) = self.queue.iter_mut().find(|e| e.id == id) {
            e.held = false;
        }
    }

    /// Queues a progress item behind everything, replacing one not yet sent. `false` (ignored) while quiet
    /// or when the id was seen.
    pub(crate) fn push_progress(&mut self, id: &str, text: &str) -> bool {
        if self.quiet || self.known(id) {
            return false;
        }
        self.queue.retain(|e| e.kind != Kind::Progress || e.in_flight);
        self.insert(id, text, Kind::Progress);
        true
    }

    /// The progress item queued: `(id, in flight)`; the one being said first.
    pub(crate) fn progress(&self) -> Option<(String, bool)> {
        let mut p = self.queue.iter().filter(|e| e.kind == Kind::Progress).collect::<Vec<_>>();
        p.sort_by_key(|e| !e.in_flight);
        p.first().map(|e| (e.id.clone(), e.in_flight))
    }

    /// Takes back a notification not yet sent; `false` when it is in flight (or unknown).
    pub(crate) fn withdraw(&mut self, id: &str) -> bool {
        match self.queue.iter().position(|e| e.id == id && !e.in_flight) {
            Some(i) => {
                self.queue.remove(i);
                true
            }
            None => false,
        }
    }

    /// Quiet mode on or off. On: what waits is held, progress not yet sent is dropped. Off: held questions
    /// are released; returns how many held results wait for `catch_up` (the caller offers them).
    pub(crate) fn set_quiet(&mut self, quiet: bool) -> usize {
        if quiet == self.quiet {
            return 0;
        }
        self.quiet = quiet;
        if quiet {
            self.queue.retain(|e| e.kind != Kind::Progress || e.in_flight);
            for e in self.queue.iter_mut().filter(|e| !e.in_flight && e.kind != Kind::Offer) {
                e.held = true;
            }
            self.queue.retain(|e| e.kind != Kind::Offer || e.in_flight);
            return 0;
        }
        for e in self.queue.iter_mut().filter(|e| e.kind == Kind::Question) {
            e.held = false;
        }
        self.queue.iter().filter(|e| e.held && e.kind == Kind::Result).count()
    }

    /// Queues the offer of held results (after [`set_quiet`](Self::set_quiet) returned a count).
    pub(crate) fn offer(&mut self, id: &str, text: &str) {
        if !self.quiet {
            self.push_offer(id, text);
        }
    }

    /// Results and questions not yet said (held or waiting for the floor), not counting one being said.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.queue.iter().filter(|e| !e.in_flight && matches!(e.kind, Kind::Result | Kind::Question)).count()
    }

    /// Every result and question not yet said, oldest first, now in flight with the `catch_up` output that
    /// carries them (a pending offer is dropped: this is its answer).
    pub(crate) fn catch_up(&mut self) -> Vec<Missed> {
        self.queue.retain(|e| e.kind != Kind::Offer || e.in_flight);
        let mut taken: Vec<&mut Entry> =
            self.queue.iter_mut().filter(|e| !e.in_flight && matches!(e.kind, Kind::Result | Kind::Question)).collect();
        taken.sort_by_key(|e| e.seq);
        taken
            .into_iter()
            .map(|e| {
                e.in_flight = true;
                // Asked for: after a reconnect it is said like any notification.
                e.held = false;
                Missed { id: e.id.clone(), text: e.text.clone(), question: e.kind == Kind::Question }
            })
            .collect()
    }

    /// Whether one is being delivered (sent, not yet confirmed).
    pub(crate) fn any_in_flight(&self) -> bool {
        self.queue.iter().any(|e| e.in_flight)
    }

    /// The next one to send, marking it in flight: `(id, text)`. `None` when one is already in flight, or
    /// quiet mode holds the rest.
    pub(crate) fn start_next(&mut self) -> Option<(String, String)> {
        if self.quiet || self.any_in_flight() {
            return None;
        }
        let head = self.queue.iter_mut().find(|e| !e.held)?;
        head.in_flight = true;
        Some((head.id.clone(), head.text.clone()))
    }

    /// The server confirmed it: remove it. Returns its text, `None` if the id was not in flight.
    pub(crate) fn delivered(&mut self, id: &str) -> Option<String> {
        let i = self.queue.iter().position(|e| e.id == id && e.in_flight)?;
        let e = self.queue.remove(i)?;
        self.delivered.insert(&e.id);
        Some(e.text)
    }

    /// Its response failed; it stays in flight (the item is already in the conversation; only a new
    /// response is needed). Returns the failure count.
    pub(crate) fn failed(&mut self, id: &str) -> u8 {
        match self.queue.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                e.failures = e.failures.saturating_add(1);
                e.failures
            }
            None => 0,
        }
    }

    /// Gives up on it.
    pub(crate) fn remove(&mut self, id: &str) {
        self.queue.retain(|e| e.id != id);
    }

    /// The connection closed: nothing is in flight any more; all will be sent again (a progress item
    /// only if it is still news: the caller offers a fresh one).
    pub(crate) fn requeue_all(&mut self) {
        for e in &mut self.queue {
            e.in_flight = false;
        }
    }

    /// Ids not yet confirmed, oldest first.
    pub(crate) fn pending_ids(&self) -> Vec<String> {
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
    fn progress_goes_last_and_a_newer_one_replaces_the_waiting_one() {
        let mut n = Notifications::default();
        assert!(n.push_progress("p1", "t1 runs"));
        n.push("t2", "t2 ended");
        assert!(n.push_progress("p2", "t1 and t3 run"));
        assert_eq!(n.pending_ids(), ["t2", "p2"], "p1 replaced; the result first");
        assert_eq!(n.start_next().map(|(id, _)| id).as_deref(), Some("t2"));
        n.delivered("t2");
        assert_eq!(n.start_next().map(|(id, _)| id).as_deref(), Some("p2"));
        assert_eq!(n.progress(), Some(("p2".into(), true)));
        assert!(n.push_progress("p3", "later"), "queued behind the one being said");
        assert_eq!(n.pending_ids(), ["p2", "p3"]);
        assert_eq!(n.progress(), Some(("p2".into(), true)));
    }

    #[test]
    fn quiet_holds_everything_and_catch_up_takes_it_oldest_first() {
        let mut n = Notifications::default();
        n.push_progress("p1", "t9 runs");
        assert_eq!(n.set_quiet(true), 0);
        assert_eq!(n.pending_ids(), Vec::<String>::new(), "progress is dropped");
        assert!(!n.push_progress("p2", "t9 runs"), "no progress while quiet");
        n.push("t1", "t1 ended");
        n.push_urgent("ask:t2:0", "t2 asks");
        n.push("t3", "t3 ended");
        assert_eq!(n.start_next(), None, "quiet");
        assert_eq!(n.waiting(), 3);
        assert_eq!(n.set_quiet(false), 2, "two results wait for catch_up");
        n.offer("offer:1", "two results");
        assert_eq!(n.start_next().map(|(id, _)| id).as_deref(), Some("ask:t2:0"), "the question is asked at once");
        n.delivered("ask:t2:0");
        assert_eq!(n.start_next().map(|(id, _)| id).as_deref(), Some("offer:1"), "then the offer, not the results");
        n.delivered("offer:1");
        assert_eq!(n.start_next(), None, "held results wait for catch_up");
        let missed = n.catch_up();
        let ids: Vec<&str> = missed.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["t1", "t3"], "oldest first");
        assert!(n.any_in_flight());
        assert_eq!(n.waiting(), 0);
        assert!(n.catch_up().is_empty(), "nothing twice");
        // A reconnect before the response was done: said again, like any notification.
        n.requeue_all();
        assert_eq!(n.start_next().map(|(id, _)| id).as_deref(), Some("t1"));
        assert_eq!(n.delivered("t1"), Some("t1 ended".into()));
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
