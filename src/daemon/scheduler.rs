//! Timers as data: the daemon's own deadlines, as in Alacritty's scheduler.
//!
//! Nothing sleeps. The loop asks for the earliest deadline (together with the
//! supervisor's) and uses it as its `select!` timeout; when it fires, the due
//! timers are taken out and handled like any other event.

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Send `WATCHDOG=1` to systemd.
    Watchdog,
    /// Give up waiting for tasks to exit during shutdown.
    ShutdownDeadline,
}

#[derive(Debug, Default)]
pub(crate) struct Scheduler {
    timers: Vec<(Instant, TimerKind)>,
}

impl Scheduler {
    /// Sets (or moves) the timer of this kind.
    pub(crate) fn schedule(&mut self, kind: TimerKind, at: Instant) {
        self.cancel(kind);
        self.timers.push((at, kind));
    }

    pub(crate) fn cancel(&mut self, kind: TimerKind) {
        self.timers.retain(|(_, k)| *k != kind);
    }

    pub(crate) fn is_scheduled(&self, kind: TimerKind) -> bool {
        self.timers.iter().any(|(_, k)| *k == kind)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().map(|(at, _)| *at).min()
    }

    /// Removes and returns the timers due at `now`, earliest first.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<TimerKind> {
        let mut due: Vec<(Instant, TimerKind)> = self.timers.iter().copied().filter(|(at, _)| *at <= now).collect();
        due.sort_by_key(|(at, _)| *at);
        self.timers.retain(|(at, _)| *at > now);
        due.into_iter().map(|(_, k)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_timers_come_out_in_order_and_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::default();
        s.schedule(TimerKind::ShutdownDeadline, t0 + Duration::from_secs(2));
        s.schedule(TimerKind::Watchdog, t0 + Duration::from_secs(1));
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(s.take_due(t0).is_empty());
        assert_eq!(s.take_due(t0 + Duration::from_secs(5)), vec![TimerKind::Watchdog, TimerKind::ShutdownDeadline]);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn rescheduling_replaces() {
        let t0 = Instant::now();
        let mut s = Scheduler::default();
        s.schedule(TimerKind::Watchdog, t0);
        s.schedule(TimerKind::Watchdog, t0 + Duration::from_secs(9));
        assert_eq!(s.take_due(t0 + Duration::from_secs(1)), vec![]);
        assert!(s.is_scheduled(TimerKind::Watchdog));
    }
}
