//! The binding machine: raw key edges in, binding events out. Pure: no thread, no clock, no I/O.
//!
//! Why a machine of its own: every hotkey source (rdev on X11, evdev, whatever comes next) reports the same
//! thing, a key going down or up at some instant, and every one of them lies a little. Keyboards bounce, X11
//! and evdev repeat a held key, a release gets lost when a grab or a VT switch swallows it, a source restarts
//! while a key is down. The daemon wants none of that: it wants "ptt pressed", "ptt released", "toggle live",
//! "interrupt", each exactly once and never stuck. This module turns the first into the second, and because it
//! reads no clock (the caller passes `now`, and [`Machine::next_deadline`] says when to call [`Machine::poll`]
//! if nothing else happens first) every rule below has a unit test that runs in microseconds.
//!
//! Rules:
//! - **Modes.** `ptt` is held: `Press` when its chord completes, `Release` when one of its keys goes up.
//!   `live` (and `quiet`, when bound) toggles: one `Toggle` each time its chord completes. `interrupt` taps: one `Press` when its chord
//!   completes, nothing on release (the daemon decides whether the assistant is speaking).
//! - **Chords complete on an edge.** A binding fires when the key that goes down makes its chord complete, in
//!   whatever order the keys went down. It fires again only after one of its keys went up and the chord
//!   completed again.
//! - **The bigger chord wins.** When a chord completes, every binding whose chord is a strict subset of it is
//!   suppressed until one of its own keys goes up: with the defaults, `right_shift` then `right_ctrl` toggles
//!   live and never presses ptt; `right_ctrl` then `right_shift` presses ptt, then (on the shift) releases ptt
//!   with [`Cause::Chord`] before the `Toggle`, so nothing stays held and the daemon can discard that capture.
//! - **Auto-repeat.** A press of a key that is already down is ignored.
//! - **Debounce.** A release takes effect only after the key stayed up for `debounce` (30 ms by default); a
//!   press in that window cancels it (contact bounce, or the release+press pairs of X11 auto-repeat). The cost
//!   is that a binding's release is reported `debounce` late; presses are reported at once. A key waiting out
//!   its debounce does not count as down for completing a chord.
//! - **No stuck keys.** A key down for longer than `max_hold` (120 s by default, measured from its press) is
//!   forgotten: held bindings on it are released with [`Cause::MaxHold`]. Until that key is seen released,
//!   further presses of it closer together than `repeat_gap` are taken as auto-repeat of the same hold and
//!   ignored (so a key that is really held does not restart); a press after a longer silence is a new press.
//! - **Reset.** [`Machine::reset`] (the source restarted, or lost events) releases every held binding with
//!   [`Cause::Reset`] and forgets every key.
//! - Keys that no binding uses are ignored and cost nothing.

use crate::hotkey::bindings::{Binding, Bindings, Chord, Key};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A key edge as a source reports it. Auto-repeat may be reported as `Pressed` (it is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    Pressed,
    Released,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Press,
    Release,
    Toggle,
}

/// Why the machine emitted an event. Everything but [`Cause::Key`] is a release the user did not make with
/// that key: the daemon may want to discard what the hold captured rather than act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The user pressed or released the keys.
    Key,
    /// A bigger chord containing this binding's keys completed (ptt → live).
    Chord,
    /// The key was down longer than `max_hold`: its release was probably lost.
    MaxHold,
    /// [`Machine::reset`]: the source restarted.
    Reset,
}

/// What the daemon acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BindingEvent {
    pub binding: Binding,
    pub action: Action,
    pub cause: Cause,
}

impl BindingEvent {
    /// An event caused by the user's keys (also what the control socket's `ptt key …` builds).
    pub fn new(binding: Binding, action: Action) -> Self {
        BindingEvent { binding, action, cause: Cause::Key }
    }
}

/// The machine's timing. `Duration::ZERO` disables `debounce` or `max_hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub(crate) debounce: Duration,
    pub(crate) max_hold: Duration,
    pub(crate) repeat_gap: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            debounce: Duration::from_millis(30),
            max_hold: Duration::from_secs(120),
            repeat_gap: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Hold,
    Toggle,
    Tap,
}

fn mode(binding: Binding) -> Mode {
    match binding {
        Binding::Ptt => Mode::Hold,
        Binding::Live | Binding::Quiet => Mode::Toggle,
        Binding::Interrupt => Mode::Tap,
    }
}

#[derive(Debug, Clone, Copy)]
struct Down {
    since: Instant,
    last_seen: Instant,
    /// A release waiting out the debounce.
    release_at: Option<Instant>,
    /// Down past `max_hold`: forgotten by the bindings, kept only to swallow its auto-repeat.
    stale: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    binding: Binding,
    chord: Chord,
    /// Fired and its chord still complete (for ptt: pressed).
    active: bool,
    /// Swallowed by a bigger chord; may not fire until one of its keys goes up.
    consumed: bool,
}

/// The binding state machine. See the module docs for its rules.
#[derive(Debug, Clone)]
pub struct Machine {
    timing: Timing,
    slots: Vec<Slot>,
    watched: Vec<Key>,
    keys: BTreeMap<Key, Down>,
    /// When the key of the latest debounced release really went up (the release is reported a debounce later).
    last_up: Option<Instant>,
}

impl Machine {
    pub fn new(bindings: &Bindings, timing: Timing) -> Self {
        let slots = Binding::ALL
            .into_iter()
            .filter_map(|b| bindings.get(b).map(|c| (b, c)))
            .map(|(b, c)| Slot { binding: b, chord: c.clone(), active: false, consumed: false })
            .collect();
        Machine { timing, slots, watched: bindings.keys(), keys: BTreeMap::new(), last_up: None }
    }

    /// Feeds one key edge seen at `now`. Due timers (see [`Machine::poll`]) are handled first.
    pub fn key(&mut self, key: Key, state: KeyState, now: Instant) -> Vec<BindingEvent> {
        let mut out = self.poll(now);
        if !self.watched.contains(&key) {
            return out;
        }
        match state {
            KeyState::Pressed => self.pressed(key, now, &mut out),
            KeyState::Released => self.released(key, now, &mut out),
        }
        out
    }

    /// Handles what is due at `now`: debounced releases and keys held past `max_hold`, in time order.
    pub fn poll(&mut self, now: Instant) -> Vec<BindingEvent> {
        let mut out = Vec::new();
        while let Some((at, key)) = self.next_due() {
            if at > now {
                break;
            }
            let Some(down) = self.keys.get(&key).copied() else { break };
            if let Some(r) = down.release_at.filter(|r| *r <= at) {
                self.keys.remove(&key);
                self.last_up = Some(r.checked_sub(self.timing.debounce).unwrap_or(r));
                self.up(key, Cause::Key, &mut out);
            } else if down.release_at.is_some() {
                // Past max hold while its release waits out the debounce: it is going up anyway.
                self.keys.remove(&key);
                self.up(key, Cause::MaxHold, &mut out);
            } else {
                self.keys.insert(key, Down { stale: true, release_at: None, ..down });
                self.up(key, Cause::MaxHold, &mut out);
            }
        }
        out
    }

    /// When [`Machine::poll`] next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_due().map(|(at, _)| at)
    }

    /// Forgets every key and releases every held binding (with [`Cause::Reset`]). For a source that restarted
    /// or reported lost events: its next edges start from a clean slate.
    pub(crate) fn reset(&mut self) -> Vec<BindingEvent> {
        let mut out = Vec::new();
        for s in &mut self.slots {
            if s.active && mode(s.binding) == Mode::Hold {
                out.push(BindingEvent { binding: s.binding, action: Action::Release, cause: Cause::Reset });
            }
            s.active = false;
            s.consumed = false;
        }
        self.keys.clear();
        out
    }

    /// Whether a held binding (ptt) is currently pressed.
    pub fn is_held(&self, binding: Binding) -> bool {
        mode(binding) == Mode::Hold && self.slots.iter().any(|s| s.binding == binding && s.active)
    }

    /// When the key behind the latest [`Cause::Key`] release physically went up: the release event itself
    /// comes a debounce later. A recording that ends "at the release" ends here.
    pub(crate) fn last_key_up(&self) -> Option<Instant> {
        self.last_up
    }

    fn next_due(&self) -> Option<(Instant, Key)> {
        self.keys.iter().filter_map(|(k, d)| self.due_of(d).map(|at| (at, *k))).min()
    }

    fn due_of(&self, d: &Down) -> Option<Instant> {
        if d.stale {
            return None;
        }
        let hold = if self.timing.max_hold.is_zero() { None } else { d.since.checked_add(self.timing.max_hold) };
        match (d.release_at, hold) {
            (Some(r), Some(h)) => Some(r.min(h)),
            (r, h) => r.or(h),
        }
    }

    fn pressed(&mut self, key: Key, now: Instant, out: &mut Vec<BindingEvent>) {
        let fresh = Down { since: now, last_seen: now, release_at: None, stale: false };
        let repeat_gap = self.timing.repeat_gap;
        match self.keys.get_mut(&key) {
            None => {
                self.keys.insert(key, fresh);
                self.completed(key, out);
            }
            Some(d) if d.stale => {
                if now.saturating_duration_since(d.last_seen) < repeat_gap {
                    d.last_seen = now;
                } else {
                    *d = fresh;
                    self.completed(key, out);
                }
            }
            Some(d) if d.release_at.is_some() => {
                // A bounce (or X11's release+press auto-repeat pair): the key never went up. It counts as
                // down again, which may complete a chord that waited for it.
                d.release_at = None;
                d.last_seen = now;
                self.completed(key, out);
            }
            Some(d) => d.last_seen = now,
        }
    }

    fn released(&mut self, key: Key, now: Instant, out: &mut Vec<BindingEvent>) {
        let debounce = self.timing.debounce;
        let Some(d) = self.keys.get_mut(&key) else { return };
        if d.stale {
            self.keys.remove(&key);
            return;
        }
        if d.release_at.is_some() {
            return;
        }
        d.last_seen = now;
        match now.checked_add(debounce) {
            Some(at) if !debounce.is_zero() => d.release_at = Some(at),
            _ => {
                self.keys.remove(&key);
                self.last_up = Some(now);
                self.up(key, Cause::Key, out);
            }
        }
    }

    /// Down and counting: not stale, not waiting out a release.
    fn firm(&self, key: Key) -> bool {
        self.keys.get(&key).is_some_and(|d| !d.stale && d.release_at.is_none())
    }

    /// `key` just became firmly down: fire the bindings it completes, the biggest chords first.
    fn completed(&mut self, key: Key, out: &mut Vec<BindingEvent>) {
        let candidates: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                let s = &self.slots[i];
                s.chord.contains(key) && !s.active && !s.consumed && s.chord.keys().iter().all(|k| self.firm(*k))
            })
            .collect();
        let winners: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| !candidates.iter().any(|&j| self.slots[i].chord.is_strict_subset_of(&self.slots[j].chord)))
            .collect();
        for w in winners {
            let big = self.slots[w].chord.clone();
            for s in self.slots.iter_mut().filter(|s| s.chord.is_strict_subset_of(&big)) {
                if s.active && mode(s.binding) == Mode::Hold {
                    out.push(BindingEvent { binding: s.binding, action: Action::Release, cause: Cause::Chord });
                }
                s.active = false;
                s.consumed = true;
            }
            let s = &mut self.slots[w];
            s.active = true;
            let action = match mode(s.binding) {
                Mode::Hold | Mode::Tap => Action::Press,
                Mode::Toggle => Action::Toggle,
            };
            out.push(BindingEvent::new(s.binding, action));
        }
    }

    /// `key` is no longer down as far as the bindings are concerned.
    fn up(&mut self, key: Key, cause: Cause, out: &mut Vec<BindingEvent>) {
        for s in self.slots.iter_mut().filter(|s| s.chord.contains(key)) {
            s.consumed = false;
            if s.active && mode(s.binding) == Mode::Hold {
                out.push(BindingEvent { binding: s.binding, action: Action::Release, cause });
            }
            s.active = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Press, Release, Toggle};
    use Binding::{Interrupt, Live, Ptt};
    use Key::{Escape, LeftCtrl, RightCtrl, RightShift};
    use KeyState::{Pressed, Released};

    const DEBOUNCE: Duration = Duration::from_millis(30);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ev(binding: Binding, action: Action) -> BindingEvent {
        BindingEvent::new(binding, action)
    }

    fn caused(binding: Binding, action: Action, cause: Cause) -> BindingEvent {
        BindingEvent { binding, action, cause }
    }

    /// A machine with the default bindings and a clock that starts at `t0`.
    struct Rig {
        m: Machine,
        t0: Instant,
    }

    impl Rig {
        fn new() -> Self {
            Self::with(Bindings::default(), Timing::default())
        }

        fn with(bindings: Bindings, timing: Timing) -> Self {
            Rig { m: Machine::new(&bindings, timing), t0: Instant::now() }
        }

        fn at(&self, t: u64) -> Instant {
            self.t0 + ms(t)
        }

        fn down(&mut self, t: u64, k: Key) -> Vec<BindingEvent> {
            let now = self.at(t);
            self.m.key(k, Pressed, now)
        }

        fn up(&mut self, t: u64, k: Key) -> Vec<BindingEvent> {
            let now = self.at(t);
            self.m.key(k, Released, now)
        }

        fn poll(&mut self, t: u64) -> Vec<BindingEvent> {
            let now = self.at(t);
            self.m.poll(now)
        }

        fn deadline_ms(&self) -> Option<u128> {
            self.m.next_deadline().map(|d| d.saturating_duration_since(self.t0).as_millis())
        }
    }

    #[test]
    fn ptt_press_and_debounced_release() {
        let mut r = Rig::new();
        assert_eq!(r.deadline_ms(), None, "idle machine has no deadline");
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        assert!(r.m.is_held(Ptt));
        assert_eq!(r.deadline_ms(), Some(120_000), "max hold armed");
        assert_eq!(r.up(500, RightCtrl), vec![], "release waits out the debounce");
        assert_eq!(r.deadline_ms(), Some(530));
        assert_eq!(r.poll(529), vec![]);
        assert_eq!(r.poll(530), vec![ev(Ptt, Release)]);
        let up = r.m.last_key_up().map(|t| t.saturating_duration_since(r.t0).as_millis());
        assert_eq!(up, Some(500), "the key really went up at 500 ms, not when the debounce ended");
        assert!(!r.m.is_held(Ptt));
        assert_eq!(r.deadline_ms(), None);
        assert_eq!(r.poll(10_000), vec![]);
    }

    #[test]
    fn autorepeat_presses_are_ignored() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        for t in (600..2000).step_by(33) {
            assert_eq!(r.down(t, RightCtrl), vec![], "repeat at {t}");
        }
        assert_eq!(r.up(2000, RightCtrl), vec![]);
        assert_eq!(r.poll(2030), vec![ev(Ptt, Release)]);
    }

    #[test]
    fn bounce_within_debounce_is_one_hold() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        assert_eq!(r.up(5, RightCtrl), vec![]);
        assert_eq!(r.down(12, RightCtrl), vec![], "bounce swallowed");
        assert_eq!(r.up(14, RightCtrl), vec![]);
        assert_eq!(r.down(20, RightCtrl), vec![]);
        assert_eq!(r.poll(100), vec![], "still held");
        assert!(r.m.is_held(Ptt));
        assert_eq!(r.up(800, RightCtrl), vec![]);
        assert_eq!(r.poll(830), vec![ev(Ptt, Release)]);
    }

    #[test]
    fn x11_autorepeat_release_press_pairs_are_one_hold() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        for t in (660..1500).step_by(40) {
            assert_eq!(r.up(t, RightCtrl), vec![]);
            assert_eq!(r.down(t, RightCtrl), vec![]);
        }
        assert_eq!(r.up(1500, RightCtrl), vec![]);
        assert_eq!(r.poll(1530), vec![ev(Ptt, Release)]);
    }

    #[test]
    fn quick_tap_still_presses_and_releases() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        assert_eq!(r.up(10, RightCtrl), vec![]);
        assert_eq!(r.poll(40), vec![ev(Ptt, Release)]);
        assert_eq!(r.down(41, RightCtrl), vec![ev(Ptt, Press)], "a press after the debounce is a new press");
    }

    #[test]
    fn a_new_event_flushes_due_releases_first() {
        let mut r = Rig::new();
        r.down(0, RightCtrl);
        r.up(100, RightCtrl);
        // No poll in between: the next edge arrives after the debounce expired.
        assert_eq!(r.down(200, RightCtrl), vec![ev(Ptt, Release), ev(Ptt, Press)]);
    }

    #[test]
    fn chord_shift_first_toggles_without_ptt() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightShift), vec![]);
        assert_eq!(r.down(80, RightCtrl), vec![ev(Live, Toggle)]);
        assert!(!r.m.is_held(Ptt));
        assert_eq!(r.up(300, RightCtrl), vec![]);
        assert_eq!(r.up(310, RightShift), vec![]);
        assert_eq!(r.poll(400), vec![], "no ptt release for a ptt that never pressed");
        assert_eq!(r.deadline_ms(), None);
    }

    #[test]
    fn chord_ctrl_first_releases_ptt_then_toggles() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        assert_eq!(r.down(60, RightShift), vec![caused(Ptt, Release, Cause::Chord), ev(Live, Toggle)]);
        assert!(!r.m.is_held(Ptt));
        assert_eq!(r.up(300, RightShift), vec![]);
        assert_eq!(r.up(305, RightCtrl), vec![]);
        assert_eq!(r.poll(1000), vec![], "nothing more: ptt was already released");
    }

    #[test]
    fn chord_keys_released_in_any_order_never_press_ptt() {
        let mut r = Rig::new();
        r.down(0, RightShift);
        assert_eq!(r.down(10, RightCtrl), vec![ev(Live, Toggle)]);
        // Shift up first: ctrl alone is still down, but ptt was swallowed by the chord.
        r.up(100, RightShift);
        assert_eq!(r.poll(200), vec![]);
        assert_eq!(r.down(300, RightCtrl), vec![], "auto-repeat of the held ctrl");
        assert!(!r.m.is_held(Ptt));
        r.up(400, RightCtrl);
        assert_eq!(r.poll(500), vec![]);
        assert_eq!(r.down(600, RightCtrl), vec![ev(Ptt, Press)], "a fresh press works again");
    }

    #[test]
    fn chord_fires_once_per_completion() {
        let mut r = Rig::new();
        r.down(0, RightShift);
        assert_eq!(r.down(10, RightCtrl), vec![ev(Live, Toggle)]);
        for t in (600..1000).step_by(40) {
            assert_eq!(r.down(t, RightCtrl), vec![]);
            assert_eq!(r.down(t + 1, RightShift), vec![]);
        }
        // Ctrl still held: lift and press shift again → a second toggle (ptt stays swallowed).
        r.up(1000, RightShift);
        assert_eq!(r.poll(1100), vec![]);
        assert_eq!(r.down(1200, RightShift), vec![ev(Live, Toggle)]);
        r.up(1300, RightShift);
        r.up(1300, RightCtrl);
        assert_eq!(r.poll(1400), vec![]);
    }

    #[test]
    fn a_bounce_while_the_chord_is_held_neither_presses_ptt_nor_toggles_again() {
        let mut r = Rig::new();
        r.down(0, RightShift);
        assert_eq!(r.down(10, RightCtrl), vec![ev(Live, Toggle)]);
        assert_eq!(r.up(200, RightCtrl), vec![]);
        assert_eq!(r.down(210, RightCtrl), vec![], "ctrl bounced");
        assert_eq!(r.up(300, RightShift), vec![]);
        assert_eq!(r.down(305, RightShift), vec![], "shift bounced");
        assert_eq!(r.poll(1000), vec![]);
        assert!(!r.m.is_held(Ptt));
    }

    #[test]
    fn a_key_waiting_out_its_release_does_not_complete_a_chord() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        assert_eq!(r.up(100, RightCtrl), vec![]);
        assert_eq!(r.down(110, RightShift), vec![], "ctrl is on its way up");
        assert_eq!(r.poll(130), vec![ev(Ptt, Release)]);
    }

    #[test]
    fn a_bounce_that_ends_while_shift_is_down_completes_the_chord() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        assert_eq!(r.up(100, RightCtrl), vec![]);
        assert_eq!(r.down(105, RightShift), vec![]);
        assert_eq!(r.down(110, RightCtrl), vec![caused(Ptt, Release, Cause::Chord), ev(Live, Toggle)]);
    }

    #[test]
    fn interrupt_taps_once() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, Escape), vec![ev(Interrupt, Press)]);
        assert_eq!(r.down(700, Escape), vec![], "auto-repeat");
        assert_eq!(r.up(800, Escape), vec![]);
        assert_eq!(r.poll(900), vec![], "a tap has no release");
        assert!(!r.m.is_held(Interrupt));
        assert_eq!(r.down(1000, Escape), vec![ev(Interrupt, Press)]);
    }

    #[test]
    fn interrupt_while_ptt_held_does_not_disturb_ptt() {
        let mut r = Rig::new();
        r.down(0, RightCtrl);
        assert_eq!(r.down(50, Escape), vec![ev(Interrupt, Press)]);
        assert!(r.m.is_held(Ptt));
        r.up(60, Escape);
        assert_eq!(r.poll(200), vec![]);
        assert!(r.m.is_held(Ptt));
    }

    #[test]
    fn unbound_keys_and_stray_releases_are_ignored() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, Key::A), vec![]);
        assert_eq!(r.down(0, LeftCtrl), vec![]);
        assert_eq!(r.deadline_ms(), None, "unbound keys are not tracked");
        assert_eq!(r.up(10, RightCtrl), vec![], "release without press");
        assert_eq!(r.up(10, Escape), vec![]);
        assert_eq!(r.deadline_ms(), None);
        assert_eq!(r.down(20, RightCtrl), vec![ev(Ptt, Press)]);
    }

    #[test]
    fn lost_release_is_cut_at_max_hold_and_the_key_works_again() {
        let mut r = Rig::new();
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        // The release never arrives.
        assert_eq!(r.deadline_ms(), Some(120_000));
        assert_eq!(r.poll(119_999), vec![]);
        assert_eq!(r.poll(120_000), vec![caused(Ptt, Release, Cause::MaxHold)]);
        assert_eq!(r.deadline_ms(), None, "a forgotten key has no deadline");
        assert_eq!(r.down(125_000, RightCtrl), vec![ev(Ptt, Press)], "next real press is a press");
        r.up(126_000, RightCtrl);
        assert_eq!(r.poll(126_030), vec![ev(Ptt, Release)]);
    }

    #[test]
    fn a_really_held_key_past_max_hold_does_not_restart_from_its_repeats() {
        let mut r = Rig::new();
        r.down(0, RightCtrl);
        let mut t = 600;
        while t < 120_000 {
            r.down(t, RightCtrl);
            t += 40;
        }
        assert_eq!(r.poll(120_000), vec![caused(Ptt, Release, Cause::MaxHold)]);
        for t in (120_000..121_000).step_by(40) {
            assert_eq!(r.down(t, RightCtrl), vec![], "repeat at {t} of a forgotten hold");
        }
        assert_eq!(r.up(121_000, RightCtrl), vec![], "its release emits nothing: already released");
        assert_eq!(r.deadline_ms(), None);
        assert_eq!(r.down(121_010, RightCtrl), vec![ev(Ptt, Press)], "key is clean after its release");
    }

    #[test]
    fn a_stuck_chord_key_does_not_turn_shift_into_a_toggle() {
        let mut r = Rig::new();
        r.down(0, RightCtrl);
        r.poll(120_000);
        // Ctrl's release was lost; later shift alone must not toggle live.
        assert_eq!(r.down(200_000, RightShift), vec![]);
    }

    #[test]
    fn max_hold_during_a_pending_release_forgets_the_key_entirely() {
        let mut r = Rig::new();
        r.down(0, RightCtrl);
        assert_eq!(r.up(119_990, RightCtrl), vec![]);
        assert_eq!(r.poll(120_000), vec![caused(Ptt, Release, Cause::MaxHold)]);
        assert_eq!(r.poll(120_100), vec![]);
        assert_eq!(r.down(120_200, RightCtrl), vec![ev(Ptt, Press)], "a quick new press is not taken for a repeat");
    }

    #[test]
    fn max_hold_zero_disables_it() {
        let t = Timing { max_hold: Duration::ZERO, ..Timing::default() };
        let mut r = Rig::with(Bindings::default(), t);
        r.down(0, RightCtrl);
        assert_eq!(r.deadline_ms(), None);
        assert_eq!(r.poll(10_000_000), vec![]);
        assert!(r.m.is_held(Ptt));
    }

    #[test]
    fn debounce_zero_releases_at_once() {
        let t = Timing { debounce: Duration::ZERO, ..Timing::default() };
        let mut r = Rig::with(Bindings::default(), t);
        r.down(0, RightCtrl);
        assert_eq!(r.up(10, RightCtrl), vec![ev(Ptt, Release)]);
        assert_eq!(r.deadline_ms(), None);
    }

    #[test]
    fn huge_max_hold_does_not_overflow() {
        let t = Timing { max_hold: Duration::MAX, ..Timing::default() };
        let mut r = Rig::with(Bindings::default(), t);
        assert_eq!(r.down(0, RightCtrl), vec![ev(Ptt, Press)]);
        assert_eq!(r.deadline_ms(), None);
    }

    #[test]
    fn reset_releases_what_is_held_and_forgets_keys() {
        let mut r = Rig::new();
        r.down(0, RightCtrl);
        r.down(10, Escape);
        assert_eq!(r.m.reset(), vec![caused(Ptt, Release, Cause::Reset)]);
        assert_eq!(r.m.reset(), vec![], "idempotent");
        assert_eq!(r.deadline_ms(), None);
        assert_eq!(r.up(20, RightCtrl), vec![], "release of a key pressed before the reset");
        assert_eq!(r.poll(100), vec![]);
        assert_eq!(r.down(200, Escape), vec![ev(Interrupt, Press)]);
    }

    #[test]
    fn reset_while_swallowed_by_chord_emits_nothing_for_ptt() {
        let mut r = Rig::new();
        r.down(0, RightShift);
        r.down(10, RightCtrl);
        assert_eq!(r.m.reset(), vec![]);
        assert_eq!(r.down(100, RightCtrl), vec![ev(Ptt, Press)], "after a reset, keys start clean");
    }

    #[test]
    fn custom_chord_for_ptt() {
        let b = Bindings::parse("left_ctrl+space", "left_ctrl+space+left_shift", "f9");
        let Ok(b) = b else { panic!("{b:?}") };
        let mut r = Rig::with(b, Timing::default());
        assert_eq!(r.down(0, Key::Space), vec![]);
        assert_eq!(r.down(5, LeftCtrl), vec![ev(Ptt, Press)]);
        assert_eq!(r.down(50, Key::LeftShift), vec![caused(Ptt, Release, Cause::Chord), ev(Live, Toggle)]);
        r.up(100, Key::LeftShift);
        r.up(100, Key::Space);
        r.up(100, LeftCtrl);
        assert_eq!(r.poll(200), vec![]);
        assert_eq!(r.down(300, LeftCtrl), vec![]);
        assert_eq!(r.down(310, Key::Space), vec![ev(Ptt, Press)]);
        assert_eq!(r.up(400, LeftCtrl), vec![]);
        assert_eq!(r.poll(430), vec![ev(Ptt, Release)], "either key up ends the hold");
        assert_eq!(r.up(440, Key::Space), vec![]);
        assert_eq!(r.down(450, Key::F9), vec![ev(Interrupt, Press)]);
    }

    #[test]
    fn a_bound_quiet_chord_toggles_once_per_completion_and_an_unbound_one_costs_nothing() {
        assert!(!Rig::new().m.slots.iter().any(|s| s.binding == Binding::Quiet), "unbound by default");
        let b = Bindings::default().with_quiet("right_alt+q");
        let Ok(b) = b else { panic!("{b:?}") };
        let mut r = Rig::with(b, Timing::default());
        assert_eq!(r.down(0, Key::RightAlt), vec![]);
        assert_eq!(r.down(5, Key::Q), vec![ev(Binding::Quiet, Toggle)]);
        assert_eq!(r.down(6, Key::Q), vec![], "auto-repeat");
        r.up(50, Key::Q);
        assert_eq!(r.poll(100), vec![], "a toggle has no release");
        assert_eq!(r.down(200, Key::Q), vec![ev(Binding::Quiet, Toggle)], "again");
        assert!(!r.m.is_held(Binding::Quiet));
    }

    #[test]
    fn overlapping_chords_that_are_not_subsets_coexist() {
        let b = Bindings::parse("a+b", "b+c", "escape");
        let Ok(b) = b else { panic!("{b:?}") };
        let mut r = Rig::with(b, Timing::default());
        r.down(0, Key::A);
        assert_eq!(r.down(1, Key::B), vec![ev(Ptt, Press)]);
        assert_eq!(r.down(2, Key::C), vec![ev(Live, Toggle)]);
        assert!(r.m.is_held(Ptt));
    }

    #[test]
    fn timestamps_out_of_order_do_not_panic() {
        let mut r = Rig::new();
        r.down(1000, RightCtrl);
        r.up(500, RightCtrl);
        r.down(0, RightShift);
        r.poll(0);
        r.poll(2000);
        assert!(!r.m.is_held(Ptt));
    }

    #[test]
    fn debounce_constant_matches_default() {
        assert_eq!(Timing::default().debounce, DEBOUNCE);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = Key> {
            prop_oneof![Just(RightCtrl), Just(RightShift), Just(Escape), Just(Key::A)]
        }

        proptest! {
            /// Whatever the keys do: ptt alternates Press/Release starting with Press, and once every key is
            /// up and the timers ran, nothing is held and no deadline is left.
            #[test]
            fn ptt_alternates_and_nothing_sticks(
                steps in prop::collection::vec((key(), any::<bool>(), 0u64..200), 0..80),
                reset_at in prop::option::of(0usize..80),
            ) {
                let mut r = Rig::new();
                let mut t = 0;
                let mut events = Vec::new();
                for (i, (k, down, dt)) in steps.iter().enumerate() {
                    t += dt;
                    if reset_at == Some(i) {
                        events.extend(r.m.reset());
                    }
                    events.extend(if *down { r.down(t, *k) } else { r.up(t, *k) });
                    if i % 7 == 0 {
                        events.extend(r.poll(t));
                    }
                }
                for k in [RightCtrl, RightShift, Escape, Key::A] {
                    t += 1;
                    events.extend(r.up(t, k));
                }
                events.extend(r.poll(t + 1000));
                let mut held = false;
                for e in events.iter().filter(|e| e.binding == Ptt) {
                    match e.action {
                        Press => { prop_assert!(!held, "double press in {:?}", events); held = true; }
                        Release => { prop_assert!(held, "release without press in {:?}", events); held = false; }
                        Toggle => prop_assert!(false, "ptt toggled"),
                    }
                }
                prop_assert!(!held);
                prop_assert!(!r.m.is_held(Ptt));
                prop_assert_eq!(r.m.next_deadline(), None);
                prop_assert!(events.iter().all(|e| e.binding != Live || e.action == Toggle));
                prop_assert!(events.iter().all(|e| e.binding != Interrupt || e.action == Press));
            }
        }
    }
}
