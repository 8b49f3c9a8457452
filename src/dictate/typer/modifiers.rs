//! Waiting until the user has let go of every modifier key (X11: `XQueryKeymap`).

use std::ffi::CString;
use std::time::{Duration, Instant};

/// Waits until no modifier key is held – Shift, Control, Alt, Super, AltGr, ...: any keycode in the server's
/// modifier mapping (`XGetModifierMapping`) – by polling `XQueryKeymap` every 5 ms, up to `max_wait`.
///
/// Returns how long it waited; a result of `max_wait` or more means a modifier was still held when it gave up (a
/// warning is logged and the caller types anyway). `Err` when the display cannot be opened. X11 only: with no
/// display (Wayland, where the daemon knows its own binding state, or the console; see
/// [`SessionInfo::x11_display`]) it returns `Ok(Duration::ZERO)` at once. Opens its own connection with
/// `XOpenDisplay(display)` and always closes it; installs no Xlib error handler (the daemon has one, and
/// `XQueryKeymap` raises no errors).
pub(crate) fn wait_for_modifiers_up(display: Option<&str>, max_wait: Duration) -> Result<Duration, String> {
    let Some(name) = display.filter(|d| !d.is_empty()) else {
        return Ok(Duration::ZERO);
    };
    let c_name = CString::new(name).map_err(|_| format!("invalid DISPLAY value {name:?}"))?;
    let started = Instant::now();

    struct Connection(*mut x11::xlib::Display);
    impl Drop for Connection {
        fn drop(&mut self) {
            // SAFETY: the pointer came from a successful XOpenDisplay and is closed exactly once, here.
            unsafe {
                x11::xlib::XCloseDisplay(self.0);
            }
        }
    }

    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
    let dpy = unsafe { x11::xlib::XOpenDisplay(c_name.as_ptr()) };
    if dpy.is_null() {
        return Err(format!("cannot open X display {name}"));
    }
    let conn = Connection(dpy);

    // SAFETY: `conn.0` is an open display. The returned map is read within its bounds (8 modifiers ×
    // max_keypermod keycodes) and freed exactly once.
    let modifier_keycodes: Vec<u8> = unsafe {
        let map = x11::xlib::XGetModifierMapping(conn.0);
        if map.is_null() {
            return Err(format!("cannot read the modifier mapping of X display {name}"));
        }
        let len = usize::try_from((*map).max_keypermod).unwrap_or(0) * 8;
        let codes = if len == 0 || (*map).modifiermap.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts((*map).modifiermap, len).iter().copied().filter(|&kc| kc != 0).collect()
        };
        x11::xlib::XFreeModifiermap(map);
        codes
    };

    loop {
        let mut keys: [libc::c_char; 32] = [0; 32];
        // SAFETY: `conn.0` is open; XQueryKeymap writes exactly 32 bytes.
        unsafe {
            x11::xlib::XQueryKeymap(conn.0, keys.as_mut_ptr());
        }
        let held = modifier_keycodes.iter().any(|&kc| (keys[usize::from(kc / 8)] as u8) & (1u8 << (kc % 8)) != 0);
        let waited = started.elapsed();
        if !held {
            return Ok(waited);
        }
        if waited >= max_wait {
            log::warn!("a modifier key is still held after {waited:?}; typing anyway");
            return Ok(waited);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
