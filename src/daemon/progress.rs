//! Progress in the pauses: when a running task is due for a spoken update.
//!
//! Why here and not in the session machine: what a task is doing lives in the supervisor, and the session is
//! told about tasks only as data. This tracker keeps, for every running task, when its last update was said
//! (or when it started) and whether its stall was said; the daemon asks it which tasks are due, builds one
//! short item for all of them (several tasks due at once share one item) and hands it to the live session,
//! which speaks it only when the floor is free and nothing more important waits (results, questions). The
//! clock restarts for a task when the response that spoke its update is done, so a floor that stays busy
//! never piles updates up.
//!
//! Rules:
//! - `live.progress_min` (0: off): a task is due that long after it started or after its last update.
//! - A stalled task (no output for `tasks.stall_min`, the supervisor's `Stalled` notice) is due at once, said
//!   once as stalled, and gets no further updates until it prints again.
//! - A task that ends is forgotten: an update not yet said is taken back, so it gets only its result.
//! - Nothing is due while an update is being said; a queued one not yet said is replaced by one naming every
//!   due task. With no session, or in quiet mode, a due update is skipped (its clock restarts).
//!
//! Timers as data: [`Progress::next_deadline`] says when the loop must look again; nothing sleeps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Track {
    /// When it started or its last update was said.
    since: Instant,
    /// The supervisor flagged it stalled (cleared when the task's record is no longer stalled).
    stalled: bool,
    /// Its stall was said: no more updates until it prints again.
    stall_said: bool,
}

/// The live session's progress item, as far as the tracker cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Pending {
    /// None queued.
    #[default]
    None,
    /// Queued for these tasks, not said yet (it may be replaced).
    Queued(Vec<String>),
    /// Being said.
    Speaking,
}

/// What a due task is to be said as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Running,
    Stalled,
    /// Its stall was said: only look whether it printed again (say nothing).
    Check,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    every: Option<Duration>,
    tracks: BTreeMap<String, Track>,
}

impl Progress {
    /// `progress_min` minutes between updates; 0 turns them off.
    pub(crate) fn new(progress_min: f64) -> Progress {
        let mut p = Progress::default();
        p.set_period(progress_min);
        p
    }

    pub(crate) fn set_period(&mut self, progress_min: f64) {
        self.every =
            (progress_min > 0.0 && progress_min.is_finite()).then(|| Duration::from_secs_f64(progress_min * 60.0));
    }

    #[cfg(test)]
    pub(crate) fn is_on(&self) -> bool {
        self.every.is_some()
    }

    /// A task started (or a continued one): its first update is due a period from now.
    pub(crate) fn started(&mut self, id: &str, now: Instant) {
        self.tracks.insert(id.to_owned(), Track { since: now, stalled: false, stall_said: false });
    }

    /// A task ended: no more updates for it.
    pub(crate) fn ended(&mut self, id: &str) {
        self.tracks.remove(id);
    }

    /// The supervisor flagged it stalled: due at once, said once.
    pub(crate) fn stalled(&mut self, id: &str) {
        if let Some(t) = self.tracks.get_mut(id) {
            t.stalled = true;
        }
    }

    /// The task's record says whether it is stalled now (it printed again: updates resume).
    pub(crate) fn observe(&mut self, id: &str, stalled: bool) {
        if let Some(t) = self.tracks.get_mut(id)
            && !stalled
        {
            t.stalled = false;
            t.stall_said = false;
        }
    }

    /// These tasks' update was said (or skipped): the next is a period from now.
    pub(crate) fn said(&mut self, ids: &[String], now: Instant) {
        for id in ids {
            if let Some(t) = self.tracks.get_mut(id) {
                t.since = now;
                if t.stalled {
                    t.stall_said = true;
                }
            }
        }
    }

    fn due_at(&self, t: &Track) -> Option<Instant> {
        let every = self.every?;
        if t.stalled && !t.stall_said {
            return Some(t.since);
        }
        t.since.checked_add(every)
    }

    /// Tasks due at `now`, with what to say of each.
    pub(crate) fn due(&self, now: Instant) -> Vec<(String, Due)> {
        self.tracks
            .iter()
            .filter(|(_, t)| self.due_at(t).is_some_and(|at| at <= now))
            .map(|(id, t)| {
                let due = match (t.stalled, t.stall_said) {
                    (false, _) => Due::Running,
                    (true, false) => Due::Stalled,
                    (true, true) => Due::Check,
                };
                (id.clone(), due)
            })
            .collect()
    }

    /// When the loop must look again, given the session's progress item: never while one is being said,
    /// and not for tasks a queued one already names.
    pub(crate) fn next_deadline(&self, pending: &Pending) -> Option<Instant> {
        let covered: &[String] = match pending {
            Pending::Speaking => return None,
            Pending::Queued(ids) => ids,
            Pending::None => &[],
        };
        self.tracks.iter().filter(|(id, _)| !covered.contains(id)).filter_map(|(_, t)| self.due_at(t)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_task_is_due_a_period_after_it_started_and_after_each_update() {
        let t0 = Instant::now();
        let mut p = Progress::new(5.0);
        p.started("t1", t0);
        assert_eq!(p.next_deadline(&Pending::None), Some(t0 + 5 * MIN));
        assert!(p.due(t0 + 4 * MIN).is_empty());
        assert_eq!(p.due(t0 + 5 * MIN), [("t1".to_string(), Due::Running)]);
        // Queued: no deadline for it (the loop does not spin); being said: none at all.
        assert_eq!(p.next_deadline(&Pending::Queued(vec!["t1".into()])), None);
        p.started("t2", t0 + MIN);
        assert_eq!(p.next_deadline(&Pending::Queued(vec!["t1".into()])), Some(t0 + 6 * MIN));
        assert_eq!(p.next_deadline(&Pending::Speaking), None);
        p.said(&["t1".into()], t0 + 7 * MIN);
        assert_eq!(p.next_deadline(&Pending::None), Some(t0 + 6 * MIN), "t2 is due first now");
        p.ended("t2");
        assert_eq!(p.next_deadline(&Pending::None), Some(t0 + 12 * MIN));
    }

    #[test]
    fn two_tasks_due_together_are_due_in_one_look() {
        let t0 = Instant::now();
        let mut p = Progress::new(1.0);
        p.started("t1", t0);
        p.started("t2", t0 + Duration::from_secs(1));
        let due: Vec<String> = p.due(t0 + 2 * MIN).into_iter().map(|(id, _)| id).collect();
        assert_eq!(due, ["t1", "t2"]);
    }

    #[test]
    fn a_stall_is_due_at_once_and_said_once_until_the_task_prints_again() {
        let t0 = Instant::now();
        let mut p = Progress::new(5.0);
        p.started("t1", t0);
        p.stalled("t1");
        assert_eq!(p.due(t0 + MIN), [("t1".to_string(), Due::Stalled)]);
        p.said(&["t1".into()], t0 + MIN);
        assert_eq!(p.due(t0 + 6 * MIN), [("t1".to_string(), Due::Check)], "said once; then only looked at");
        p.observe("t1", true);
        p.said(&["t1".into()], t0 + 6 * MIN);
        assert_eq!(p.due(t0 + 11 * MIN), [("t1".to_string(), Due::Check)], "still stalled: nothing to say");
        p.observe("t1", false);
        assert_eq!(p.due(t0 + 11 * MIN), [("t1".to_string(), Due::Running)], "it printed again: updates resume");
    }

    #[test]
    fn zero_turns_it_off() {
        let t0 = Instant::now();
        let mut p = Progress::new(0.0);
        p.started("t1", t0);
        p.stalled("t1");
        assert!(!p.is_on());
        assert_eq!(p.next_deadline(&Pending::None), None);
        assert!(p.due(t0 + 100 * MIN).is_empty());
    }
}
