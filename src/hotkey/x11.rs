//! Keys from the X server through rdev's `listen` (the XRecord extension): sees every key press on the
//! display without grabbing anything, so the keys still reach the focused window.
//!
//! Three things about rdev 0.5 shape this file:
//! - `listen` blocks its thread for good (it sits in `XRecordEnableContext`) and keeps its callback in
//!   process-wide statics, so it runs on a thread of its own and may be started once per process
//!   ([`spawn`] refuses a second start).
//! - It opens the display named by `$DISPLAY`; there is no way to pass another one.
//! - When the X server goes away, Xlib's default I/O error handler prints "X connection to :0 broken" and
//!   calls `exit(1)`: the whole daemon would die with the X session. [`spawn`] installs an I/O error handler
//!   that, on the listener thread, reports [`SourceEvent::Stopped`] and parks that thread forever instead
//!   (Xlib exits if the handler returns). On any other thread it returns and Xlib exits as before.

use crate::hotkey::bindings::Key;
use crate::hotkey::evdev;
use crate::hotkey::machine::KeyState;
use crate::hotkey::{KeyEvent, Source, SourceEvent};
use crossbeam_channel::Sender;
use std::fmt;
use std::os::raw::c_int;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

const THREAD: &str = "hotkey-x11";

static STARTED: AtomicBool = AtomicBool::new(false);
/// Where the I/O error handler reports a lost X connection.
static LOST: Mutex<Option<Sender<SourceEvent>>> = Mutex::new(None);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X11Error {
    /// `$DISPLAY` is unset or empty.
    NoDisplay,
    /// `$DISPLAY` is set but the server does not answer (not running, or not authorised).
    CannotOpen(String),
    /// [`spawn`] was already called in this process.
    AlreadyStarted,
    Thread(String),
}

impl fmt::Display for X11Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            X11Error::NoDisplay => f.write_str("DISPLAY is unset: no X11 session"),
            X11Error::CannotOpen(d) => {
                write!(f, "cannot open X display `{d}` (no X server there, or this user is not authorised)")
            }
            X11Error::AlreadyStarted => f.write_str("the X11 key listener is already running in this process"),
            X11Error::Thread(e) => write!(f, "cannot start the X11 listener thread: {e}"),
        }
    }
}

impl std::error::Error for X11Error {}

/// `$DISPLAY`, if set and not empty.
pub(crate) fn display() -> Option<String> {
    std::env::var("DISPLAY").ok().filter(|d| !d.trim().is_empty())
}

/// Whether the X server named by `$DISPLAY` accepts a connection (opens and closes one).
pub fn probe() -> Result<(), X11Error> {
    let d = display().ok_or(X11Error::NoDisplay)?;
    rdev::display_size().map(|_| ()).map_err(|_| X11Error::CannotOpen(d))
}

/// Our key for an rdev key, if it is in the vocabulary. rdev 0.5 names no right Super key on Linux (it
/// arrives as `Unknown(134)`): unknown X keycodes are looked up as evdev codes, which they are plus 8.
pub(crate) fn key_from_rdev(key: rdev::Key) -> Option<Key> {
    use rdev::Key as R;
    Some(match key {
        R::ControlLeft => Key::LeftCtrl,
        R::ControlRight => Key::RightCtrl,
        R::ShiftLeft => Key::LeftShift,
        R::ShiftRight => Key::RightShift,
        R::Alt => Key::LeftAlt,
        R::AltGr => Key::RightAlt,
        R::MetaLeft => Key::LeftSuper,
        R::MetaRight => Key::RightSuper,
        R::Escape => Key::Escape,
        R::Space => Key::Space,
        R::F1 => Key::F1,
        R::F2 => Key::F2,
        R::F3 => Key::F3,
        R::F4 => Key::F4,
        R::F5 => Key::F5,
        R::F6 => Key::F6,
        R::F7 => Key::F7,
        R::F8 => Key::F8,
        R::F9 => Key::F9,
        R::F10 => Key::F10,
        R::F11 => Key::F11,
        R::F12 => Key::F12,
        R::KeyA => Key::A,
        R::KeyB => Key::B,
        R::KeyC => Key::C,
        R::KeyD => Key::D,
        R::KeyE => Key::E,
        R::KeyF => Key::F,
        R::KeyG => Key::G,
        R::KeyH => Key::H,
        R::KeyI => Key::I,
        R::KeyJ => Key::J,
        R::KeyK => Key::K,
        R::KeyL => Key::L,
        R::KeyM => Key::M,
        R::KeyN => Key::N,
        R::KeyO => Key::O,
        R::KeyP => Key::P,
        R::KeyQ => Key::Q,
        R::KeyR => Key::R,
        R::KeyS => Key::S,
        R::KeyT => Key::T,
        R::KeyU => Key::U,
        R::KeyV => Key::V,
        R::KeyW => Key::W,
        R::KeyX => Key::X,
        R::KeyY => Key::Y,
        R::KeyZ => Key::Z,
        R::Num0 => Key::Digit0,
        R::Num1 => Key::Digit1,
        R::Num2 => Key::Digit2,
        R::Num3 => Key::Digit3,
        R::Num4 => Key::Digit4,
        R::Num5 => Key::Digit5,
        R::Num6 => Key::Digit6,
        R::Num7 => Key::Digit7,
        R::Num8 => Key::Digit8,
        R::Num9 => Key::Digit9,
        R::Unknown(code) => return u16::try_from(code).ok()?.checked_sub(8).and_then(evdev::key_from_code),
        _ => return None,
    })
}

/// Our key edge for an rdev event, stamped `at`.
pub(crate) fn key_event(event: &rdev::EventType, at: Instant) -> Option<KeyEvent> {
    let (key, state) = match event {
        rdev::EventType::KeyPress(k) => (*k, KeyState::Pressed),
        rdev::EventType::KeyRelease(k) => (*k, KeyState::Released),
        _ => return None,
    };
    Some(KeyEvent { key: key_from_rdev(key)?, state, at })
}

/// Starts the `hotkey-x11` thread: rdev `listen` on `$DISPLAY`, each key edge of the vocabulary sent as
/// [`SourceEvent::Key`]. Checks the display first; if `listen` fails later (no RECORD extension) or the X
/// server goes away, [`SourceEvent::Stopped`] is sent. The thread never ends on its own.
pub fn spawn(tx: Sender<SourceEvent>) -> Result<JoinHandle<()>, X11Error> {
    probe()?;
    if STARTED.swap(true, Ordering::SeqCst) {
        return Err(X11Error::AlreadyStarted);
    }
    if let Ok(mut lost) = LOST.lock() {
        *lost = Some(tx.clone());
    }
    // SAFETY: installs a C callback; it only touches a Mutex and parks (no unwinding across the boundary).
    unsafe {
        x11::xlib::XSetIOErrorHandler(Some(on_io_error));
    }
    let spawned = std::thread::Builder::new().name(THREAD.into()).spawn(move || {
        let keys = tx.clone();
        let result = rdev::listen(move |e| {
            if let Some(k) = key_event(&e.event_type, Instant::now()) {
                // A closed receiver means the daemon is going away; listen cannot be stopped anyway.
                let _ = keys.send(SourceEvent::Key(k));
            }
        });
        let error = match result {
            Ok(()) => "the X11 listener stopped".to_string(),
            Err(e) => format!("rdev listen failed: {e:?}"),
        };
        log::error!("hotkey: {error}");
        let _ = tx.send(SourceEvent::Stopped { source: Source::X11, error });
    });
    spawned.map_err(|e| {
        STARTED.store(false, Ordering::SeqCst);
        X11Error::Thread(e.to_string())
    })
}

unsafe extern "C" fn on_io_error(_display: *mut x11::xlib::Display) -> c_int {
    if std::thread::current().name() != Some(THREAD) {
        return 0;
    }
    let error = "lost the connection to the X server".to_string();
    log::error!("hotkey: {error}");
    if let Ok(lost) = LOST.lock()
        && let Some(tx) = lost.as_ref()
    {
        let _ = tx.send(SourceEvent::Stopped { source: Source::X11, error });
    }
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_vocabulary() {
        assert_eq!(key_from_rdev(rdev::Key::ControlRight), Some(Key::RightCtrl));
        assert_eq!(key_from_rdev(rdev::Key::ShiftRight), Some(Key::RightShift));
        assert_eq!(key_from_rdev(rdev::Key::Escape), Some(Key::Escape));
        assert_eq!(key_from_rdev(rdev::Key::AltGr), Some(Key::RightAlt));
        assert_eq!(key_from_rdev(rdev::Key::Num0), Some(Key::Digit0));
        assert_eq!(key_from_rdev(rdev::Key::Unknown(134)), Some(Key::RightSuper), "X keycode of right super");
        assert_eq!(key_from_rdev(rdev::Key::Unknown(3)), None);
        assert_eq!(key_from_rdev(rdev::Key::Unknown(u32::MAX)), None);
        assert_eq!(key_from_rdev(rdev::Key::KpReturn), None);
        let mapped: std::collections::BTreeSet<Key> = [
            rdev::Key::ControlLeft,
            rdev::Key::ShiftLeft,
            rdev::Key::Alt,
            rdev::Key::MetaLeft,
            rdev::Key::Space,
            rdev::Key::F1,
            rdev::Key::F12,
            rdev::Key::KeyA,
            rdev::Key::KeyZ,
            rdev::Key::Num9,
        ]
        .into_iter()
        .filter_map(key_from_rdev)
        .collect();
        assert_eq!(mapped.len(), 10);
    }

    #[test]
    fn key_events_from_rdev_events() {
        let at = Instant::now();
        let press = key_event(&rdev::EventType::KeyPress(rdev::Key::ControlRight), at);
        assert_eq!(press, Some(KeyEvent { key: Key::RightCtrl, state: KeyState::Pressed, at }));
        let release = key_event(&rdev::EventType::KeyRelease(rdev::Key::Escape), at);
        assert_eq!(release.map(|k| k.state), Some(KeyState::Released));
        assert_eq!(key_event(&rdev::EventType::MouseMove { x: 1.0, y: 2.0 }, at), None);
        assert_eq!(key_event(&rdev::EventType::KeyPress(rdev::Key::Tab), at), None);
    }
}
