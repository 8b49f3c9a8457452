//! Real keys through the real X11 path: Xvfb, `xdotool keydown <keycode>`, rdev `listen` in our `hotkey-x11`
//! thread, then the binding machine. Needs `Xvfb` and `xdotool` (`apt-get install -y xvfb xdotool`) and fails
//! loudly without them: it never skips.
//!
//! One test function on purpose: rdev's listener can start once per process, and it reads `$DISPLAY` from the
//! environment, which this test sets before any other thread could read it.

mod common;

use common::xvfb::{Xvfb, xdotool};
use crossbeam_channel::Receiver;
use ptt::hotkey::{Action, Binding, BindingEvent, Bindings, Cause, Key, Machine, Source, SourceEvent, Timing, x11};
use std::process::Command;
use std::time::{Duration, Instant};

/// Feeds the machine everything the source sends for `window`, polling at its deadlines, and returns what it
/// emitted.
fn drive(m: &mut Machine, rx: &Receiver<SourceEvent>, window: Duration) -> Vec<BindingEvent> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    loop {
        let now = Instant::now();
        if now >= end {
            return out;
        }
        let wake = m.next_deadline().map_or(end, |d| d.min(end));
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(SourceEvent::Key(k)) => out.extend(m.key(k.key, k.state, k.at)),
            Ok(other) => panic!("unexpected source event {other:?}"),
            Err(_) => out.extend(m.poll(Instant::now())),
        }
    }
}

fn ev(binding: Binding, action: Action) -> BindingEvent {
    BindingEvent::new(binding, action)
}

#[test]
fn xdotool_keys_become_binding_events() {
    // Fail before starting anything if a tool is missing.
    let probe = Command::new("xdotool").arg("version").output();
    assert!(probe.is_ok(), "xdotool is missing: `apt-get install -y xvfb xdotool`");
    let mut xvfb = Xvfb::start();
    // SAFETY: the only test in this binary, and no thread of ours is running yet.
    unsafe { std::env::set_var("DISPLAY", &xvfb.display) };
    assert_eq!(x11::probe(), Ok(()), "Xvfb on {} does not accept connections", xvfb.display);

    let (tx, rx) = crossbeam_channel::unbounded();
    let _listener = x11::spawn(tx.clone()).unwrap_or_else(|e| panic!("x11 listener: {e}"));
    assert_eq!(x11::spawn(tx).err(), Some(x11::X11Error::AlreadyStarted));

    // The listener is up once a probe key comes through.
    let deadline = Instant::now() + Duration::from_secs(10);
    'ready: loop {
        assert!(Instant::now() < deadline, "rdev listen never reported a key on {}", xvfb.display);
        xdotool(&xvfb.display, &["key", "F12"]);
        while let Ok(m) = rx.recv_timeout(Duration::from_millis(300)) {
            if matches!(m, SourceEvent::Key(k) if k.key == Key::F12) {
                break 'ready;
            }
        }
    }
    let _ = drive(&mut Machine::new(&Bindings::default(), Timing::default()), &rx, Duration::from_millis(200));

    let mut m = Machine::new(&Bindings::default(), Timing::default());
    let settle = Duration::from_millis(300);

    // Right Ctrl (X keycode 105) is ptt.
    xdotool(&xvfb.display, &["keydown", "105"]);
    assert_eq!(drive(&mut m, &rx, settle), vec![ev(Binding::Ptt, Action::Press)]);
    assert!(m.is_held(Binding::Ptt));
    xdotool(&xvfb.display, &["keyup", "105"]);
    assert_eq!(drive(&mut m, &rx, settle), vec![ev(Binding::Ptt, Action::Release)]);

    // Right Shift (62) then Right Ctrl: the live chord toggles, ptt never presses.
    xdotool(&xvfb.display, &["keydown", "62"]);
    xdotool(&xvfb.display, &["keydown", "105"]);
    assert_eq!(drive(&mut m, &rx, settle), vec![ev(Binding::Live, Action::Toggle)]);
    xdotool(&xvfb.display, &["keyup", "105"]);
    xdotool(&xvfb.display, &["keyup", "62"]);
    assert_eq!(drive(&mut m, &rx, settle), vec![]);

    // Right Ctrl first: ptt presses, then the chord releases it and toggles.
    xdotool(&xvfb.display, &["keydown", "105"]);
    assert_eq!(drive(&mut m, &rx, settle), vec![ev(Binding::Ptt, Action::Press)]);
    xdotool(&xvfb.display, &["keydown", "62"]);
    let chord = drive(&mut m, &rx, settle);
    let released = BindingEvent { binding: Binding::Ptt, action: Action::Release, cause: Cause::Chord };
    assert_eq!(chord, vec![released, ev(Binding::Live, Action::Toggle)]);
    xdotool(&xvfb.display, &["keyup", "62"]);
    xdotool(&xvfb.display, &["keyup", "105"]);
    assert_eq!(drive(&mut m, &rx, settle), vec![]);

    // Escape interrupts, once. (By keysym: xdotool reads `9` as the digit's keysym, not keycode 9, while
    // `105` and `62` are not keysym names and fall through to keycodes.)
    xdotool(&xvfb.display, &["keydown", "Escape"]);
    xdotool(&xvfb.display, &["keyup", "Escape"]);
    assert_eq!(drive(&mut m, &rx, settle), vec![ev(Binding::Interrupt, Action::Press)]);

    // A long hold (past the X server's auto-repeat delay) is one press and one release.
    xdotool(&xvfb.display, &["keydown", "105"]);
    std::thread::sleep(Duration::from_millis(1500));
    xdotool(&xvfb.display, &["keyup", "105"]);
    let hold = drive(&mut m, &rx, settle);
    assert_eq!(hold, vec![ev(Binding::Ptt, Action::Press), ev(Binding::Ptt, Action::Release)]);

    // The X server going away stops the source but not the process (Xlib would call exit(1) by default).
    xvfb.kill();
    let stopped = rx.recv_timeout(Duration::from_secs(5));
    assert!(
        matches!(&stopped, Ok(SourceEvent::Stopped { source: Source::X11, error }) if error.contains("X server")),
        "{stopped:?}"
    );
}
