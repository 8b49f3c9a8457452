//! Hotkeys: where key presses come from, and what they mean.
//!
//! Two layers, kept apart so that each is testable alone:
//! - **Sources** are threads that own an input handle and report raw key edges ([`SourceEvent`]) over a
//!   `crossbeam-channel`: [`x11`] (rdev `listen`, for X11 sessions) and [`evdev`] (`/dev/input`, for Wayland
//!   and the console). The third source, the control socket (`ptt key press|release|toggle <binding>`), is
//!   not here: it already speaks in [`BindingEvent`]s and lets a compositor key bind drive the daemon where
//!   neither thread can see keys.
//! - **The [`machine`]** is pure: the daemon's loop feeds it the edges and gets [`BindingEvent`]s back
//!   (ptt press/release, live toggle, interrupt), debounced, with the live chord taking precedence over ptt,
//!   and with a deadline so that a lost release never leaves a key held.
//!
//! [`detect`] picks the source and says why the others cannot be used; `ptt doctor` prints its
//! [`Detection::report`]. The preference follows the session: on Wayland, evdev first (X11 through XWayland
//! only sees keys while an X window has focus); otherwise X11 first (no group membership needed).

pub(crate) mod bindings;
pub(crate) mod evdev;
pub(crate) mod machine;
pub mod x11;

pub(crate) use bindings::Chord;
pub use bindings::{Binding, Bindings, Key};
pub(crate) use machine::KeyState;
pub use machine::{Action, BindingEvent, Cause, Machine, Timing};

use crossbeam_channel::Sender;
use std::fmt;
use std::thread::JoinHandle;
use std::time::Instant;

/// Where key presses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    X11,
    Evdev,
    /// Only the control socket (`ptt key …`): no thread of ours sees keys.
    Socket,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::X11 => "x11",
            Source::Evdev => "evdev",
            Source::Socket => "socket",
        })
    }
}

/// A raw key edge, stamped when the source saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEvent {
    pub key: Key,
    pub state: KeyState,
    pub at: Instant,
}

/// What a source thread sends to the daemon's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// Feed to [`Machine::key`].
    Key(KeyEvent),
    /// Key state may have been lost (the kernel dropped events, a device went away): call [`Machine::reset`].
    Reset { source: Source, reason: String },
    /// The source is gone for good (X server lost, `listen` failed); report it in status and doctor.
    Stopped { source: Source, error: String },
}

/// What the environment offers, read from it by [`Session::from_env`] (or built by hand in tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) display: Option<String>,
    pub(crate) wayland_display: Option<String>,
}

impl Session {
    pub(crate) fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        Session { display: var("DISPLAY"), wayland_display: var("WAYLAND_DISPLAY") }
    }
}

/// Which source to use, and the state of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detection {
    pub(crate) chosen: Source,
    /// `Ok(detail)` if usable, `Err(why not)`.
    pub(crate) x11: Result<String, String>,
    pub(crate) evdev: Result<String, String>,
    pub(crate) wayland: bool,
}

impl Detection {
    /// Lines for `ptt doctor`: the active source first, then why each other one is or is not used.
    pub(crate) fn report(&self) -> Vec<String> {
        let mut lines = vec![format!("hotkeys: {} is active", self.chosen)];
        let line = |s: Source, r: &Result<String, String>| match r {
            Ok(d) if s == self.chosen => format!("  {s}: in use ({d})"),
            Ok(d) => format!("  {s}: usable but not chosen ({d})"),
            Err(e) => format!("  {s}: not usable: {e}"),
        };
        lines.push(line(Source::X11, &self.x11));
        lines.push(line(Source::Evdev, &self.evdev));
        let socket = "`ptt key press|release|toggle ptt|live|interrupt` (bind it in your compositor)";
        lines.push(if self.chosen == Source::Socket {
            format!("  socket: in use, no key listener works here: drive the daemon with {socket}")
        } else {
            format!("  socket: always available: {socket}")
        });
        lines
    }
}

/// Detects with the real environment, X server and `/dev/input`. `wanted` are the bound keys
/// ([`Bindings::keys`]). Opens (and closes) an X connection and the keyboard devices.
pub(crate) fn detect(wanted: &[Key]) -> Detection {
    let session = Session::from_env();
    let x11 = || x11::probe().map_err(|e| e.to_string());
    detect_with(&session, x11, &evdev::Roots::default(), wanted)
}

/// [`detect`] with the environment, the X probe and the device directories given.
pub(crate) fn detect_with(
    session: &Session,
    x11_probe: impl FnOnce() -> Result<(), String>,
    roots: &evdev::Roots,
    wanted: &[Key],
) -> Detection {
    let wayland = session.wayland_display.is_some();
    let x11 = match &session.display {
        None => Err("DISPLAY is unset: no X11 session".to_string()),
        Some(d) => x11_probe().map(|()| {
            if wayland {
                format!("display {d}, XWayland: sees keys only while an X window has focus")
            } else {
                format!("display {d}")
            }
        }),
    };
    let evdev = evdev::detect(roots, wanted).map_err(|e| e.to_string()).map(|devices| {
        let names: Vec<String> = devices
            .iter()
            .map(|d| {
                if d.name.is_empty() {
                    d.path.display().to_string()
                } else {
                    format!("{} ({})", d.path.display(), d.name)
                }
            })
            .collect();
        format!("{} keyboard device(s): {}", devices.len(), names.join(", "))
    });
    let order = if wayland { [Source::Evdev, Source::X11] } else { [Source::X11, Source::Evdev] };
    let usable = |s: &Source| match s {
        Source::X11 => x11.is_ok(),
        Source::Evdev => evdev.is_ok(),
        Source::Socket => true,
    };
    let chosen = order.into_iter().find(usable).unwrap_or(Source::Socket);
    Detection { chosen, x11, evdev, wayland }
}

/// Starts the listener thread of `source` for the keys of `bindings`. `Ok(None)` for [`Source::Socket`],
/// which has no thread of its own.
pub(crate) fn start(
    source: Source,
    bindings: &Bindings,
    tx: Sender<SourceEvent>,
) -> Result<Option<JoinHandle<()>>, String> {
    match source {
        Source::X11 => x11::spawn(tx).map(Some).map_err(|e| e.to_string()),
        Source::Evdev => evdev::spawn(evdev::Roots::default(), bindings.keys(), evdev::RESCAN, tx)
            .map(Some)
            .map_err(|e| e.to_string()),
        Source::Socket => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn roots(dir: &std::path::Path) -> evdev::Roots {
        evdev::Roots { sys_class_input: dir.join("sys"), dev_input: dir.join("dev") }
    }

    fn with_keyboard(dir: &std::path::Path) {
        let dev = dir.join("dev");
        std::fs::create_dir_all(&dev).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dev.join("event0"), b"").unwrap_or_else(|e| panic!("{e}"));
    }

    fn wanted() -> Vec<Key> {
        Bindings::default().keys()
    }

    #[test]
    fn nothing_available_falls_back_to_the_socket_and_says_why() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = detect_with(&Session::default(), || Ok(()), &roots(dir.path()), &wanted());
        assert_eq!(d.chosen, Source::Socket);
        let report = d.report().join("\n");
        assert!(report.starts_with("hotkeys: socket is active"), "{report}");
        assert!(report.contains("x11: not usable: DISPLAY is unset"), "{report}");
        assert!(report.contains("evdev: not usable: ") && report.contains("does not exist"), "{report}");
        assert!(report.contains("socket: in use"), "{report}");
    }

    #[test]
    fn x11_is_preferred_without_wayland() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        with_keyboard(dir.path());
        let s = Session { display: Some(":0".into()), wayland_display: None };
        let d = detect_with(&s, || Ok(()), &roots(dir.path()), &wanted());
        assert_eq!(d.chosen, Source::X11);
        assert!(d.evdev.is_ok());
        let report = d.report();
        assert_eq!(report[1], "  x11: in use (display :0)");
        assert!(report[2].starts_with("  evdev: usable but not chosen (1 keyboard device(s): "), "{report:?}");
    }

    #[test]
    fn evdev_is_preferred_on_wayland() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        with_keyboard(dir.path());
        let s = Session { display: Some(":0".into()), wayland_display: Some("wayland-0".into()) };
        let d = detect_with(&s, || Ok(()), &roots(dir.path()), &wanted());
        assert_eq!(d.chosen, Source::Evdev);
        assert!(d.x11.as_ref().is_ok_and(|x| x.contains("XWayland")));
        // Without usable devices, XWayland is better than nothing.
        let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = detect_with(&s, || Ok(()), &roots(empty.path()), &wanted());
        assert_eq!(d.chosen, Source::X11);
    }

    #[test]
    fn an_unreachable_display_is_explained() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        with_keyboard(dir.path());
        let s = Session { display: Some(":42".into()), wayland_display: None };
        let probe = || Err(x11::X11Error::CannotOpen(":42".into()).to_string());
        let d = detect_with(&s, probe, &roots(dir.path()), &wanted());
        assert_eq!(d.chosen, Source::Evdev);
        let report = d.report().join("\n");
        assert!(report.contains("x11: not usable: cannot open X display `:42`"), "{report}");
    }

    #[test]
    fn permission_denied_reaches_the_report() {
        // Root can open anything, so the denial is simulated at the summary level.
        let denied =
            vec![(PathBuf::from("/dev/input/event3"), std::io::Error::from(std::io::ErrorKind::PermissionDenied))];
        let e = evdev::summarize(0, denied, std::path::Path::new("/dev/input")).err().map(|e| e.to_string());
        let d = Detection {
            chosen: Source::Socket,
            x11: Err("DISPLAY is unset".into()),
            evdev: Err(e.unwrap_or_default()),
            wayland: true,
        };
        let report = d.report().join("\n");
        assert!(
            report
                .contains("evdev: not usable: permission denied on /dev/input/event3: add yourself to the input group"),
            "{report}"
        );
    }
}
