//! Which response is active, and which of our conversation items still need one.
//!
//! Why this is more than an "active" flag. Only one response may write to the default conversation at a
//! time; a second `response.create` fails with `conversation_already_has_active_response` and, handled
//! naively, leaves the model silent (openai-agents-python #3405) or makes it answer twice. The server also
//! starts responses by itself: server VAD after the user stops speaking, and sometimes right after a
//! `function_call_output` (pipecat #3960). So the tracker keeps, for every item we add that wants an answer
//! (a tool output, a user text or audio turn, a notification), a *cover*: the item is covered once a response
//! was created after the server had the item. Rules:
//!
//! - We send `response.create` only when no response is active, and it claims every uncovered item (it was
//!   sent after them, and the server handles client events in order). At most one of ours is in flight.
//! - A response the server starts by itself covers the items whose echo (`conversation.item.added/created/
//!   done`, `input_audio_buffer.committed`) arrived before its `response.created`: server events are ordered,
//!   so such a response saw them. Items not echoed yet stay uncovered. Notifications are the exception:
//!   a response to something else (the user's VAD turn) may well ignore a system note, so a notification
//!   is covered only by the `response.create` we sent for it.
//! - `conversation_already_has_active_response` for our create: the server has its own response active. We
//!   keep it as the active response (the floor stays taken) and put back every claimed item that response
//!   did not demonstrably see; they get exactly one new `response.create` after its `response.done`.
//!   A server that never echoes items degrades to exactly that: one more response after the next done.
//! - Any `response.done` ends the active response. `failed` puts its items back (with backoff); a
//!   `cancelled` one with no output (barge-in before it said anything) puts them back silently; every other
//!   outcome (`completed`, `incomplete`, `cancelled` after some output) covers them.
//! - A response that shows no sign of life for [`STALL`] is treated as failed, so a lost `response.done`
//!   cannot hold the floor forever.

use crate::realtime::events::ClientEvent;
use std::time::{Duration, Instant};

/// An active response with no event for this long is considered lost.
pub(crate) const STALL: Duration = Duration::from_secs(30);

/// Why an item wants a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    Tool,
    UserText,
    UserAudio,
    Notification(String),
    /// A `catch_up` tool output carrying these notifications (answered like any tool output; the
    /// notifications count as heard when its response is done).
    CatchUp(Vec<String>),
}

impl Purpose {
    /// The notification ids an item carries: a notification's own, or those of a `catch_up` output.
    pub(crate) fn into_notifications(self) -> Vec<String> {
        match self {
            Purpose::Notification(id) => vec![id],
            Purpose::CatchUp(ids) => ids,
            _ => vec![],
        }
    }
}

/// How the server's echo of an item is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Echo {
    /// A `function_call_output` with this `call_id`.
    Call(String),
    /// A message with this role (`user`/`system`) and first `input_text`.
    Message { role: String, text: String },
    /// `input_audio_buffer.committed`.
    Commit,
}

#[derive(Debug, Clone)]
struct Cover {
    purpose: Purpose,
    echo: Echo,
    echoed: bool,
    /// Whether it was echoed when the carrying response's `response.created` arrived (`None`: not yet).
    echoed_at_created: Option<bool>,
}

impl Cover {
    /// Whether a response the server started for its own reasons counts as answering this item.
    fn seen_by_any_response(&self) -> bool {
        self.echoed && !matches!(self.purpose, Purpose::Notification(_))
    }
}

#[derive(Debug, Clone)]
struct Active {
    id: Option<String>,
    /// `event_id` of our `response.create`, while it may still fail.
    ours: Option<String>,
    carried: Vec<Cover>,
    last_activity: Instant,
}

/// What ended with a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Finished {
    /// Items answered.
    pub(crate) covered: Vec<Purpose>,
    /// Items put back because the response failed.
    pub(crate) retried: Vec<Purpose>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Responses {
    active: Option<Active>,
    uncovered: Vec<Cover>,
    seq: u64,
    failures: u32,
    not_before: Option<Instant>,
}

impl Responses {
    pub(crate) fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub(crate) fn has_uncovered(&self) -> bool {
        !self.uncovered.is_empty()
    }

    /// Whether an uncovered item is a notification (which needs the whole floor, not just no response).
    pub(crate) fn uncovered_has_notification(&self) -> bool {
        self.uncovered.iter().any(|c| matches!(c.purpose, Purpose::Notification(_)))
    }

    /// Records an item we just sent that wants a response.
    pub(crate) fn add(&mut self, purpose: Purpose, echo: Echo) {
        self.uncovered.push(Cover { purpose, echo, echoed: false, echoed_at_created: None });
    }

    /// No response active and no failure backoff running.
    pub(crate) fn can_create(&self, now: Instant) -> bool {
        self.active.is_none() && self.not_before.is_none_or(|t| now >= t)
    }

    /// Our `response.create`, claiming every uncovered item. Call only when [`can_create`](Self::can_create).
    pub(crate) fn create(&mut self, now: Instant) -> ClientEvent {
        self.seq += 1;
        let event_id = format!("ptt_rc_{}", self.seq);
        let carried = std::mem::take(&mut self.uncovered);
        self.active = Some(Active { id: None, ours: Some(event_id.clone()), carried, last_activity: now });
        ClientEvent::ResponseCreate { event_id: Some(event_id), response: None }
    }

    /// The server echoed an item.
    pub(crate) fn on_echo(&mut self, echo: &Echo) {
        let carried = self.active.iter_mut().flat_map(|a| a.carried.iter_mut());
        if let Some(c) = self.uncovered.iter_mut().chain(carried).find(|c| !c.echoed && c.echo == *echo) {
            c.echoed = true;
        }
    }

    /// Any sign of life of the active response.
    pub(crate) fn touch(&mut self, now: Instant) {
        if let Some(a) = &mut self.active {
            a.last_activity = now;
        }
    }

    /// `response.created`.
    pub(crate) fn on_created(&mut self, id: &str, now: Instant) {
        match &mut self.active {
            None => {
                // Started by the server: it covers what it had seen.
                let (seen, unseen) =
                    std::mem::take(&mut self.uncovered).into_iter().partition(Cover::seen_by_any_response);
                self.uncovered = unseen;
                let mut carried: Vec<Cover> = seen;
                for c in &mut carried {
                    c.echoed_at_created = Some(true);
                }
                self.active = Some(Active { id: Some(id.to_owned()), ours: None, carried, last_activity: now });
            }
            Some(a) => {
                match &a.id {
                    Some(old) if old != id => {
                        log::warn!("response {id} created while {old} is active")
                    }
                    _ => {}
                }
                a.id = Some(id.to_owned());
                a.last_activity = now;
                for c in &mut a.carried {
                    c.echoed_at_created.get_or_insert(c.echoed);
                }
            }
        }
    }

    /// `response.done`: ends the active response, whatever its id. `produced_output` is whether its
    /// `output` list was non-empty: a response cancelled before it said anything (the user started talking)
    /// covers nothing, and its items quietly wait for the next response.
    pub(crate) fn on_done(&mut self, id: &str, status: &str, produced_output: bool, now: Instant) -> Finished {
        let Some(a) = self.active.take() else {
            log::debug!("response.done for {id} with no active response");
            return Finished::default();
        };
        if a.id.as_deref().is_some_and(|known| known != id) {
            log::debug!("response.done for {id}, tracked {:?}", a.id);
        }
        match status {
            "failed" => {
                self.failures = self.failures.saturating_add(1);
                self.not_before = now.checked_add(self.backoff());
                self.finish(a.carried, true)
            }
            "cancelled" if !produced_output => {
                for c in a.carried {
                    self.put_back(c);
                }
                Finished::default()
            }
            _ => self.finish(a.carried, false),
        }
    }

    /// Ends a response's items: put back when it failed, covered otherwise.
    fn finish(&mut self, carried: Vec<Cover>, failed: bool) -> Finished {
        let mut fin = Finished::default();
        if failed {
            for c in carried {
                fin.retried.push(c.purpose.clone());
                self.put_back(c);
            }
        } else {
            self.failures = 0;
            self.not_before = None;
            fin.covered = carried.into_iter().map(|c| c.purpose).collect();
        }
        fin
    }

    fn backoff(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(5);
        Duration::from_secs(1u64 << exp).min(Duration::from_secs(30))
    }

    fn put_back(&mut self, mut c: Cover) {
        c.echoed_at_created = None;
        self.uncovered.push(c);
    }

    /// `conversation_already_has_active_response`. `event_id` is the failed event's id when the server
    /// echoed it.
    pub(crate) fn on_already_active(&mut self, event_id: Option<&str>, now: Instant) {
        let Some(a) = &mut self.active else {
            // The server has a response we never heard of: hold the floor until its done.
            self.active = Some(Active { id: None, ours: None, carried: Vec::new(), last_activity: now });
            return;
        };
        let ours = match (&a.ours, event_id) {
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !ours {
            return;
        }
        a.ours = None;
        a.last_activity = now;
        let (kept, back): (Vec<Cover>, Vec<Cover>) = std::mem::take(&mut a.carried)
            .into_iter()
            .partition(|c| c.echoed_at_created == Some(true) && c.seen_by_any_response());
        a.carried = kept;
        for c in back {
            self.put_back(c);
        }
    }

    /// Another error naming our `response.create`: it failed outright. Returns whether it was ours.
    pub(crate) fn on_create_failed(&mut self, event_id: &str, now: Instant) -> bool {
        let Some(a) = &mut self.active else {
            return false;
        };
        if a.ours.as_deref() != Some(event_id) {
            return false;
        }
        a.ours = None;
        let back: Vec<Cover> = if a.id.is_none() {
            // No response exists at all.
            let carried = std::mem::take(&mut a.carried);
            self.active = None;
            carried
        } else {
            let (kept, back) = std::mem::take(&mut a.carried)
                .into_iter()
                .partition(|c| c.echoed_at_created == Some(true) && c.seen_by_any_response());
            a.carried = kept;
            back
        };
        self.failures = self.failures.saturating_add(1);
        self.not_before = now.checked_add(self.backoff());
        for c in back {
            self.put_back(c);
        }
        true
    }

    /// Ends an active response that showed no sign of life for [`STALL`], as failed.
    pub(crate) fn watchdog(&mut self, now: Instant) -> Option<Finished> {
        let stalled =
            self.active.as_ref().is_some_and(|a| a.last_activity.checked_add(STALL).is_some_and(|t| now >= t));
        if !stalled {
            return None;
        }
        let a = self.active.take()?;
        log::warn!("response {:?} stalled; releasing the floor", a.id);
        // A lost `response.done` is not a failing server: no backoff.
        Some(self.finish(a.carried, true))
    }

    /// Forgets a notification's item (it is being dropped).
    pub(crate) fn forget_notification(&mut self, id: &str) {
        let is_it = |c: &Cover| matches!(&c.purpose, Purpose::Notification(n) if n == id);
        self.uncovered.retain(|c| !is_it(c));
        if let Some(a) = &mut self.active {
            a.carried.retain(|c| !is_it(c));
        }
        let carried = self.active.iter_mut().flat_map(|a| a.carried.iter_mut());
        for c in self.uncovered.iter_mut().chain(carried) {
            if let Purpose::CatchUp(ids) = &mut c.purpose {
                ids.retain(|n| n != id);
            }
        }
    }

    /// The connection closed: the conversation is gone, and with it every item and response.
    pub(crate) fn close(&mut self) {
        *self = Responses { seq: self.seq, ..Responses::default() };
    }

    /// Watchdog and backoff deadlines.
    pub(crate) fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        let stall = self.active.as_ref().and_then(|a| a.last_activity.checked_add(STALL));
        stall.into_iter().chain(self.not_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> Echo {
        Echo::Call(id.into())
    }

    #[test]
    fn our_create_claims_and_covers() {
        let t = Instant::now();
        let mut r = Responses::default();
        r.add(Purpose::Tool, call("c1"));
        assert!(r.can_create(t));
        let ev = r.create(t);
        assert!(matches!(ev, ClientEvent::ResponseCreate { event_id: Some(_), .. }));
        assert!(!r.can_create(t) && !r.has_uncovered());
        r.on_echo(&call("c1"));
        r.on_created("resp_1", t);
        let fin = r.on_done("resp_1", "completed", true, t);
        assert_eq!(fin.covered, [Purpose::Tool]);
        assert!(r.can_create(t) && !r.has_uncovered());
    }

    #[test]
    fn server_response_covers_only_echoed_items() {
        let t = Instant::now();
        let mut r = Responses::default();
        r.add(Purpose::Tool, call("c1"));
        r.add(Purpose::Tool, call("c2"));
        r.on_echo(&call("c1"));
        r.on_created("resp_s", t);
        assert!(r.is_active());
        assert_eq!(r.uncovered.len(), 1);
        let fin = r.on_done("resp_s", "completed", true, t);
        assert_eq!(fin.covered, [Purpose::Tool]);
        assert!(r.has_uncovered());
    }

    #[test]
    fn already_active_after_server_saw_items_needs_no_second_create() {
        let t = Instant::now();
        let mut r = Responses::default();
        r.add(Purpose::Tool, call("c1"));
        let ClientEvent::ResponseCreate { event_id, .. } = r.create(t) else { panic!() };
        // Server: echo, its own response.created, then our create fails.
        r.on_echo(&call("c1"));
        r.on_created("resp_s", t);
        r.on_already_active(event_id.as_deref(), t);
        assert!(r.is_active() && !r.has_uncovered());
        assert_eq!(r.on_done("resp_s", "completed", true, t).covered.len(), 1);
        assert!(!r.has_uncovered());
    }

    #[test]
    fn already_active_before_server_saw_items_keeps_pending() {
        let t = Instant::now();
        let mut r = Responses::default();
        r.add(Purpose::Tool, call("c1"));
        let _ = r.create(t);
        // Server: its response.created came first, then the echo, then our error (no event_id).
        r.on_created("resp_s", t);
        r.on_echo(&call("c1"));
        r.on_already_active(None, t);
        assert!(r.is_active() && r.has_uncovered());
        assert!(r.on_done("resp_s", "completed", true, t).covered.is_empty());
        assert!(r.has_uncovered() && r.can_create(t));
    }

    #[test]
    fn failures_back_off_and_put_items_back() {
        let t = Instant::now();
        let mut r = Responses::default();
        r.add(Purpose::UserText, Echo::Commit);
        let ClientEvent::ResponseCreate { event_id, .. } = r.create(t) else { panic!() };
        assert!(r.on_create_failed(event_id.as_deref().unwrap(), t));
        assert!(!r.is_active() && r.has_uncovered());
        assert!(!r.can_create(t));
        assert!(r.can_create(t + Duration::from_secs(1)));
        let _ = r.create(t);
        r.on_created("x", t);
        assert_eq!(r.on_done("x", "failed", true, t).retried, [Purpose::UserText]);
        assert!(!r.can_create(t + Duration::from_secs(1)));
        assert!(r.can_create(t + Duration::from_secs(2)));
    }

    #[test]
    fn stalled_response_releases_the_floor() {
        let t = Instant::now();
        let mut r = Responses::default();
        r.on_already_active(None, t);
        assert!(r.is_active());
        assert!(r.watchdog(t + STALL / 2).is_none());
        assert!(r.watchdog(t + STALL).is_some());
        assert!(!r.is_active());
    }
}
