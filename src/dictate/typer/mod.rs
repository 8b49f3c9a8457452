//! Typing dictated text into the focused window.
//!
//! The daemon hands this module the final transcript; this module decides *how* to get it into whatever window
//! has keyboard focus, and does it by running small external tools (xdotool, wtype, ydotool, xclip, xsel,
//! wl-clipboard). Going through tools instead of linking their libraries keeps the daemon free of Wayland and
//! uinput code and lets the user fix a broken setup with a package install instead of a rebuild.
//!
//! Why it is built the way it is:
//!
//! * **The backend is chosen at typing time, not at daemon start** ([`SessionInfo::detect`] then [`choose`]). A
//!   daemon started by systemd may come up before the graphical session, the user may log out of X11 and into
//!   Wayland, or install a missing tool after seeing the error: reading `DISPLAY`, `WAYLAND_DISPLAY` and `PATH`
//!   again on every dictation picks up all of that without a restart. For the same reason the session's variables
//!   are passed to every command explicitly ([`SessionInfo::command_env`]): a command must talk to the session the
//!   text is meant for, not to whatever the daemon's environment happened to hold when it started. The locale is
//!   part of that: xdotool and wtype decode their text argument with the C locale functions and refuse non-ASCII
//!   text under a non-UTF-8 locale, which is what a bare systemd environment has.
//! * **Typing waits for the modifier keys to be released** ([`wait_for_modifiers_up`]). The push-to-talk binding
//!   usually involves Ctrl, Alt or Super; if the user is still holding one when the text arrives, "hello" becomes
//!   Ctrl+H, Ctrl+E, ... – shortcuts that can close tabs or delete text. xdotool's `--clearmodifiers` is no cure:
//!   it releases the keys behind the user's back and presses them again afterwards, which leaves modifiers stuck
//!   when the user lets go in the meantime. Waiting (briefly, bounded) for a clean keyboard is the safe option.
//! * **The clipboard path puts back what was there.** Pasting is the alternative to typing (chosen in the
//!   config, or the fallback when no tool can type), but the clipboard belongs to the user: it is read first,
//!   replaced by the text only for the moment of the paste, and then restored – or cleared when it held nothing,
//!   so dictated text (which may be private) does not linger there.
//! * **Every command is bounded**: a per-command timeout with kill and reap, stderr kept to its first 500 bytes for
//!   the error message, and errors that never contain the typed text.
//!
//! The pure parts ([`choose`], [`pieces`], [`plan`], [`clipboard_save_step`], [`clipboard_restore_step`]) describe
//! exactly which commands run, so they are unit-tested without any session; [`type_text`] executes a plan.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub(crate) use crate::config::{PasteKeys, TyperKind};

/// The external tools this module knows how to use, as looked up on `PATH`.
pub(crate) const KNOWN_TOOLS: [&str; 7] = ["xdotool", "wtype", "ydotool", "xclip", "xsel", "wl-copy", "wl-paste"];

/// How long the clipboard keeps the dictated text after the paste keystroke before the old content is restored:
/// the target application reads the clipboard asynchronously after it sees Ctrl+V.
pub(crate) const CLIPBOARD_SETTLE: Duration = Duration::from_millis(200);

/// How long [`type_text`] waits for the clipboard to report the new text before it sends the paste keystroke
/// (xclip and wl-copy leave the selection to a background process, so their exit does not prove it is set yet).
const CLIPBOARD_SET_WAIT: Duration = Duration::from_secs(1);

/// How long every wtype command waits after creating its virtual keyboard before the first key (`wtype -s`).
/// wtype uploads a fresh keymap for each run and sends keys right after it; a client that gets the first key
/// before it has applied the keymap drops it. Measured in a headless sway with a foot terminal: plain
/// `wtype -d 5 "hello world"` typed "ello world" in 5 of 6 fresh compositors (and a 1 s wait before wtype did
/// not help, so it is per run, not per compositor); with `-s 20`, `-s 50` or `-s 100` none of 18 lost a
/// character. 100 ms leaves room for a loaded machine; `tests/wayland.rs` types into five fresh compositors.
pub(crate) const WTYPE_SETTLE_MS: u32 = 100;

/// The first bytes of a failing command's stderr that are kept for the error message.
const STDERR_KEEP: usize = 500;

/// The most clipboard content that is saved for restoring; anything larger is not restored (it is cleared).
const STDOUT_KEEP: usize = 16 << 20;

/// Extra time per typed character on top of the per-command timeout: typing tools sleep between keystrokes, so a
/// long dictation legitimately takes longer than the tool's start-up, and must not be killed halfway.
const PER_CHAR_ALLOWANCE: Duration = Duration::from_millis(30);

/// What the graphical session offers, read at typing time (not at daemon start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionInfo {
    /// `DISPLAY`, when set and not empty.
    pub(crate) display: Option<String>,
    /// `WAYLAND_DISPLAY`, when set and not empty.
    pub(crate) wayland_display: Option<String>,
    /// Which of [`KNOWN_TOOLS`] are executable files on `PATH`.
    pub(crate) available: BTreeSet<String>,
    /// Further variables every typing command gets explicitly (name → value): `XDG_RUNTIME_DIR` (where the Wayland
    /// socket lives), `YDOTOOL_SOCKET`, `XAUTHORITY`, the `PATH` the tools were found on, and the locale – the
    /// session's `LANG`/`LC_CTYPE`/`LC_ALL` when it is UTF-8, else `LC_ALL=C.UTF-8` so non-ASCII text can be typed.
    pub(crate) env: BTreeMap<String, String>,
    /// Why wtype cannot type here although it is installed (the compositor lacks the virtual-keyboard protocol,
    /// or cannot be asked), found by [`SessionInfo::probe`]. `None`: nothing against it, or not probed.
    pub(crate) wtype_blocked: Option<String>,
    /// Why ydotool cannot type here although it is installed (no ydotoold socket, `/dev/uinput` unusable), found
    /// by [`SessionInfo::probe`]. `None`: nothing against it, or not probed.
    pub(crate) ydotool_blocked: Option<String>,
}

impl SessionInfo {
    /// Reads the session. `var` looks up an environment variable (injectable for tests); `path` is the `PATH`
    /// value. Checks which of xdotool, wtype, ydotool, xclip, xsel, wl-copy, wl-paste are executable files on
    /// `path`. Empty variables count as unset.
    pub(crate) fn detect(var: impl Fn(&str) -> Option<String>, path: Option<&OsStr>) -> SessionInfo {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut available = BTreeSet::new();
        if let Some(path) = path {
            for tool in KNOWN_TOOLS {
                if crate::process::find_executable(tool, Some(path)).is_some() {
                    available.insert(tool.to_string());
                }
            }
        }

        let mut env = BTreeMap::new();
        for name in ["XDG_RUNTIME_DIR", "YDOTOOL_SOCKET", "XAUTHORITY"] {
            if let Some(value) = get(name) {
                env.insert(name.to_string(), value);
            }
        }
        if let Some(path) = path.and_then(OsStr::to_str).filter(|p| !p.is_empty()) {
            env.insert("PATH".to_string(), path.to_string());
        }
        // The effective LC_CTYPE is the first one set of LC_ALL, LC_CTYPE, LANG.
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"].iter().find_map(|name| get(name));
        let utf8 = locale.is_some_and(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("utf-8") || l.contains("utf8")
        });
        if utf8 {
            for name in ["LANG", "LC_CTYPE", "LC_ALL"] {
                if let Some(value) = get(name) {
                    env.insert(name.to_string(), value);
                }
            }
        } else {
            env.insert("LC_ALL".to_string(), "C.UTF-8".to_string());
        }

        SessionInfo {
            display: get("DISPLAY"),
            wayland_display: get("WAYLAND_DISPLAY"),
            available,
            env,
            wtype_blocked: None,
            ydotool_blocked: None,
        }
    }

    /// Asks the session what the installed tools need: whether the Wayland compositor offers the virtual-keyboard
    /// protocol (wtype), and whether ydotool's daemon socket exists and `/dev/uinput` is usable (ydotool). Talks
    /// to the compositor (one round trip, at most 1 s): call it on a worker thread, never on the daemon's loop.
    pub(crate) fn probe(mut self) -> SessionInfo {
        if let (true, Some(wd)) = (self.has("wtype"), self.wayland_display.clone()) {
            self.wtype_blocked = wtype_blocker(&wd, self.env.get("XDG_RUNTIME_DIR").map(String::as_str));
        }
        if self.has("ydotool") {
            self.ydotool_blocked = ydotool_blocker(
                self.env.get("YDOTOOL_SOCKET").map(String::as_str),
                self.env.get("XDG_RUNTIME_DIR").map(String::as_str),
                Path::new("/dev/uinput"),
            );
        }
        self
    }

    /// Environment variables a typing command needs, applied on top of the few it inherits from the daemon
    /// (`crate::process::child_may_inherit`):
    /// `(name, Some(value))` sets a variable, `(name, None)` removes it (a `DISPLAY` or `WAYLAND_DISPLAY` that the
    /// session does not have must not leak in from the daemon's start-up environment).
    pub(crate) fn command_env(&self) -> Vec<(String, Option<String>)> {
        let mut vars = vec![
            ("DISPLAY".to_string(), self.display.clone()),
            ("WAYLAND_DISPLAY".to_string(), self.wayland_display.clone()),
        ];
        vars.extend(self.env.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
        vars
    }

    /// True when this is a Wayland session (`WAYLAND_DISPLAY` set), even if XWayland also provides `DISPLAY`.
    pub(crate) fn is_wayland(&self) -> bool {
        self.wayland_display.is_some()
    }

    /// The X display to watch for held modifiers: `DISPLAY` in a pure X11 session, `None` on Wayland (XWayland
    /// only sees keys while one of its own windows has focus) and on the console. Pass it to
    /// [`wait_for_modifiers_up`].
    pub(crate) fn x11_display(&self) -> Option<&str> {
        if self.is_wayland() { None } else { self.display.as_deref() }
    }

    fn has(&self, tool: &str) -> bool {
        self.available.contains(tool)
    }

    /// wtype is installed, this is Wayland, and nothing is known against it.
    fn wtype_works(&self) -> bool {
        self.is_wayland() && self.has("wtype") && self.wtype_blocked.is_none()
    }

    /// ydotool is installed and nothing is known against it.
    fn ydotool_works(&self) -> bool {
        self.has("ydotool") && self.ydotool_blocked.is_none()
    }
}

/// Why wtype cannot type into the compositor at `wayland_display`, if it cannot.
fn wtype_blocker(wayland_display: &str, runtime_dir: Option<&str>) -> Option<String> {
    let Some(socket) = wayland::socket_path(wayland_display, runtime_dir) else {
        return Some(format!(
            "WAYLAND_DISPLAY={wayland_display} is relative but XDG_RUNTIME_DIR is not set, so the compositor \
             cannot be reached"
        ));
    };
    match wayland::globals(&socket) {
        Ok(globals) if globals.contains(wayland::VIRTUAL_KEYBOARD) => None,
        Ok(_) => Some(format!(
            "the compositor does not offer the virtual-keyboard protocol ({}) that wtype types through (GNOME \
             does not; sway and other wlroots compositors, and KDE, do)",
            wayland::VIRTUAL_KEYBOARD
        )),
        Err(e) => Some(format!("cannot ask the Wayland compositor which protocols it offers: {e}")),
    }
}

/// Why ydotool cannot type, if it cannot: ydotool 1.x hands keys to its ydotoold daemon over a socket
/// (`YDOTOOL_SOCKET`, else `$XDG_RUNTIME_DIR/.ydotool_socket` or `/tmp/.ydotool_socket`), and ydotoold needs
/// the kernel's `/dev/uinput`.
fn ydotool_blocker(socket: Option<&str>, runtime_dir: Option<&str>, uinput: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let candidates: Vec<std::path::PathBuf> = match socket {
        Some(s) => vec![s.into()],
        None => runtime_dir
            .map(|d| Path::new(d).join(".ydotool_socket"))
            .into_iter()
            .chain([std::path::PathBuf::from("/tmp/.ydotool_socket")])
            .collect(),
    };
    if candidates.iter().any(|c| std::fs::metadata(c).is_ok_and(|m| m.file_type().is_socket())) {
        return None;
    }
    let shown: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    let uinput_state = match std::fs::OpenOptions::new().write(true).open(uinput) {
        Ok(_) => format!("{} is usable, so start ydotoold (e.g. `systemctl --user start ydotool`)", uinput.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
            "and there is no {} here (the kernel lacks uinput), so ydotoold cannot run either",
            uinput.display()
        ),
        Err(e) => format!(
            "and {} cannot be opened ({e}): ydotoold needs write access to it (the input group, or a udev rule)",
            uinput.display()
        ),
    };
    Some(format!("ydotool's daemon ydotoold is not running (no socket at {}); {uinput_state}", shown.join(" or ")))
}

/// How text gets into the focused window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// `xdotool type` (X11).
    Xdotool,
    /// `wtype` (Wayland compositors with the virtual-keyboard protocol: wlroots-based, KDE; not GNOME).
    Wtype,
    /// `ydotool` 1.x (kernel uinput: works everywhere, needs the `ydotoold` daemon; types US-layout ASCII only).
    Ydotool,
    /// Put the text on the clipboard with [`Clipboard`], paste it with [`Paste`], put the old content back.
    Clipboard(Clipboard, Paste, PasteKeys),
    /// Print the text on the daemon's stdout (for testing and for piping into something else).
    Stdout,
}

/// How to read and write the clipboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clipboard {
    /// `xclip -selection clipboard` (X11).
    Xclip,
    /// `xsel --clipboard` (X11).
    Xsel,
    /// `wl-copy` / `wl-paste` (Wayland).
    WlCopy,
}

/// How the paste keystroke is sent for [`Backend::Clipboard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paste {
    /// `xdotool key ctrl+v` (X11).
    Xdotool,
    /// `wtype -M ctrl -k v -m ctrl` (Wayland).
    Wtype,
    /// `ydotool key 29:1 47:1 47:0 29:0` (anywhere, through uinput).
    Ydotool,
}

/// Picks the backend for `kind` in session `s`.
///
/// `Auto`, in order: a Wayland session whose compositor offers the virtual-keyboard protocol, with wtype → wtype;
/// an X11 session with xdotool → xdotool; ydotool with its daemon reachable → ydotool; a clipboard tool plus a
/// paste-keystroke tool that works here → clipboard; as a last resort xdotool in a Wayland session that has
/// XWayland (it reaches X11 windows only, so a warning is logged); otherwise an error that says what is missing
/// or blocked and what to install. An explicit kind whose tool is missing or cannot work here (no display server,
/// the compositor lacks the protocol, no ydotoold) is an error saying so. `Stdout` always works.
///
/// What wtype and ydotool need beyond being installed is known only after [`SessionInfo::probe`]; an unprobed
/// session (tests) assumes they work.
pub(crate) fn choose(kind: TyperKind, s: &SessionInfo) -> Result<Backend, String> {
    let wayland = s.is_wayland();
    let x11 = s.display.is_some();
    match kind {
        TyperKind::Stdout => Ok(Backend::Stdout),
        TyperKind::Xdotool => {
            if !s.has("xdotool") {
                Err("typer \"xdotool\" is configured but xdotool is not on PATH: install the xdotool package".into())
            } else if !x11 {
                Err("typer \"xdotool\" is configured but there is no X11 display (DISPLAY is not set)".into())
            } else {
                Ok(Backend::Xdotool)
            }
        }
        TyperKind::Wtype => {
            if !s.has("wtype") {
                Err("typer \"wtype\" is configured but wtype is not on PATH: install the wtype package".into())
            } else if !wayland {
                Err("typer \"wtype\" is configured but this is not a Wayland session (WAYLAND_DISPLAY is not set)"
                    .into())
            } else if let Some(why) = &s.wtype_blocked {
                Err(format!("typer \"wtype\" is configured but {why}"))
            } else {
                Ok(Backend::Wtype)
            }
        }
        TyperKind::Ydotool => {
            if !s.has("ydotool") {
                Err("typer \"ydotool\" is configured but ydotool is not on PATH: install the ydotool package \
                     (its ydotoold daemon must be running)"
                    .into())
            } else if let Some(why) = &s.ydotool_blocked {
                Err(format!("typer \"ydotool\" is configured but {why}"))
            } else {
                Ok(Backend::Ydotool)
            }
        }
        TyperKind::Clipboard => {
            let (clip, paste) = clipboard_tools(s)?;
            Ok(Backend::Clipboard(clip, paste, PasteKeys::default()))
        }
        TyperKind::Auto => {
            if s.wtype_works() {
                return Ok(Backend::Wtype);
            }
            if x11 && !wayland && s.has("xdotool") {
                return Ok(Backend::Xdotool);
            }
            if s.ydotool_works() {
                return Ok(Backend::Ydotool);
            }
            if let Ok((clip, paste)) = clipboard_tools(s) {
                return Ok(Backend::Clipboard(clip, paste, PasteKeys::default()));
            }
            if wayland && x11 && s.has("xdotool") {
                log::warn!(
                    "typing with xdotool through XWayland: only X11 windows will receive text; install wtype \
                     (or ydotool) to type into Wayland windows"
                );
                return Ok(Backend::Xdotool);
            }
            let mut why = if wayland {
                match &s.wtype_blocked {
                    Some(blocked) if s.has("wtype") => format!("cannot type into this Wayland session: {blocked}"),
                    _ => "cannot type into this Wayland session: wtype is not installed (install the wtype \
                          package; or ydotool, whose ydotoold daemon must be running)"
                        .to_string(),
                }
            } else if x11 {
                "cannot type into this X11 session: xdotool is not installed (install the xdotool package; or \
                 ydotool, whose ydotoold daemon must be running)"
                    .to_string()
            } else {
                "cannot type: there is no graphical session (neither DISPLAY nor WAYLAND_DISPLAY is set) and \
                 ydotool is not installed (install the ydotool package and run its ydotoold daemon, or set \
                 dictate.typer = \"stdout\")"
                    .to_string()
            };
            if let (true, Some(blocked)) = (s.has("ydotool"), &s.ydotool_blocked) {
                why.push_str(&format!("; ydotool cannot help: {blocked}"));
            }
            Err(why)
        }
    }
}

/// Every typer with whether it can type in session `s` and why (for `ptt doctor`): the chosen backend, or the
/// reason it cannot be used. `Stdout` is left out (it always works and types into no window).
pub(crate) fn report(s: &SessionInfo) -> Vec<(TyperKind, Result<Backend, String>)> {
    [TyperKind::Wtype, TyperKind::Xdotool, TyperKind::Ydotool, TyperKind::Clipboard]
        .into_iter()
        .map(|k| {
            let prefix = format!("typer \"{}\" is configured but ", format!("{k:?}").to_lowercase());
            (k, choose(k, s).map_err(|e| e.strip_prefix(&prefix).map(String::from).unwrap_or(e)))
        })
        .collect()
}

/// The clipboard tool and the paste-keystroke tool for the clipboard backend, or what is missing.
fn clipboard_tools(s: &SessionInfo) -> Result<(Clipboard, Paste), String> {
    let wayland = s.is_wayland();
    let x11 = s.display.is_some();
    if !wayland && !x11 {
        return Err(
            "the clipboard typer needs a graphical session, but neither DISPLAY nor WAYLAND_DISPLAY is set".to_string()
        );
    }
    let clip = if wayland && s.has("wl-copy") && s.has("wl-paste") {
        Clipboard::WlCopy
    } else if x11 && s.has("xclip") {
        Clipboard::Xclip
    } else if x11 && s.has("xsel") {
        Clipboard::Xsel
    } else if wayland {
        return Err("the clipboard typer needs wl-copy and wl-paste, which are not on PATH: install the \
                    wl-clipboard package"
            .to_string());
    } else {
        return Err(
            "the clipboard typer needs xclip or xsel, neither is on PATH: install the xclip package".to_string()
        );
    };
    let paste = if s.wtype_works() {
        Paste::Wtype
    } else if !wayland && s.has("xdotool") {
        Paste::Xdotool
    } else if s.ydotool_works() {
        Paste::Ydotool
    } else if wayland {
        let mut why = "the clipboard typer needs a tool to send the paste keystroke: ".to_string();
        match &s.wtype_blocked {
            Some(blocked) if s.has("wtype") => why.push_str(&format!("wtype cannot ({blocked})")),
            _ => why.push_str("install the wtype package"),
        }
        match &s.ydotool_blocked {
            Some(blocked) if s.has("ydotool") => why.push_str(&format!("; ydotool cannot ({blocked})")),
            _ => why.push_str(" (or ydotool, whose ydotoold daemon must be running)"),
        }
        return Err(why);
    } else {
        return Err("the clipboard typer needs a tool to send the paste keystroke: install the xdotool package (or \
                    ydotool, whose ydotoold daemon must be running)"
            .to_string());
    };
    Ok((clip, paste))
}

/// What to type: text runs and Enter presses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Enter,
}

/// Splits text on line breaks: `"a\nb"` → `[Text("a"), Enter, Text("b")]`. Empty runs are dropped, every `'\n'`
/// is one Enter, and a `"\r\n"` pair counts as one line break.
pub(crate) fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').peekable();
    let mut first = true;
    while let Some(line) = lines.next() {
        if !first {
            out.push(Piece::Enter);
        }
        first = false;
        let line = if lines.peek().is_some() { line.strip_suffix('\r').unwrap_or(line) } else { line };
        if !line.is_empty() {
            out.push(Piece::Text(line.to_string()));
        }
    }
    out
}

/// One external command (argv) with optional stdin bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) argv: Vec<String>,
    pub(crate) stdin: Option<String>,
}

impl Step {
    fn new(argv: &[&str]) -> Step {
        Step { argv: argv.iter().map(|a| a.to_string()).collect(), stdin: None }
    }

    fn with_stdin(mut self, stdin: &str) -> Step {
        self.stdin = Some(stdin.to_string());
        self
    }

    fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// Whether the command leaves a background process behind that keeps serving the clipboard (xclip -i,
    /// xsel --input, wl-copy): such a process inherits stdout and stderr, so capturing either would never see EOF.
    fn leaves_server(&self) -> bool {
        let has = |flag: &str| self.argv.iter().skip(1).any(|a| a == flag);
        match self.program() {
            "xclip" => has("-i") || has("-in"),
            "xsel" => has("--input") || has("-i"),
            "wl-copy" => !has("--clear"),
            _ => false,
        }
    }

    /// The number of characters this command types (everything after `--`), for the timeout allowance.
    fn typed_chars(&self) -> usize {
        self.argv.iter().skip_while(|a| *a != "--").skip(1).map(|a| a.chars().count()).sum()
    }
}

/// Normalizes pieces into chunks of "n Enters, then optionally one text run" – the unit that one typing command
/// can handle. Text pieces that contain line breaks are split, adjacent text pieces are joined, empty ones dropped.
fn chunks(input: &[Piece]) -> Vec<(usize, Option<String>)> {
    let mut flat: Vec<Piece> = Vec::new();
    for piece in input {
        let expanded = match piece {
            Piece::Enter => vec![Piece::Enter],
            Piece::Text(t) => pieces(t),
        };
        for p in expanded {
            match (flat.last_mut(), p) {
                (Some(Piece::Text(prev)), Piece::Text(t)) => prev.push_str(&t),
                (_, p) => flat.push(p),
            }
        }
    }
    let mut out = Vec::new();
    let mut enters = 0;
    for p in flat {
        match p {
            Piece::Enter => enters += 1,
            Piece::Text(t) => {
                out.push((enters, Some(t)));
                enters = 0;
            }
        }
    }
    if enters > 0 {
        out.push((enters, None));
    }
    out
}

/// The text with every Enter as `'\n'` (what gets pasted or printed).
fn joined_text(input: &[Piece]) -> String {
    let mut s = String::new();
    for (enters, text) in chunks(input) {
        s.extend(std::iter::repeat_n('\n', enters));
        if let Some(t) = text {
            s.push_str(&t);
        }
    }
    s
}

/// Characters ydotool can type: it maps printable ASCII through a US-layout table and indexes that table with
/// the raw byte, so anything else would be dropped at best and turn into random keys at worst.
fn ydotool_typable(c: char) -> bool {
    c == '\t' || (' '..='~').contains(&c)
}

/// The least key delay for xdotool typing text that is not ASCII (see [`plan`]).
pub(crate) const XDOTOOL_NON_ASCII_DELAY_MS: u32 = 25;

/// The exact commands `backend` runs for `pieces` (pure). `key_delay_ms` is the delay between keystrokes.
///
/// * xdotool: `xdotool type --delay MS -- TEXT`; Enters before a text run ride along in the same process through
///   xdotool's command chaining: `xdotool key Return type --delay MS -- TEXT`; trailing Enters: `xdotool key
///   Return`.
/// * wtype: `wtype -s 100 -d MS -- TEXT`, with preceding Enters as `-k Return` before the `--`; Enter alone:
///   `wtype -s 100 -k Return`. wtype rejects `-d 0`, so a zero delay omits `-d`. The `-s` is
///   [`WTYPE_SETTLE_MS`]: without it the first character is often lost.
/// * ydotool (1.x): `ydotool type --key-delay MS --escape=0 -- TEXT` (escapes off, or a backslash in the text
///   would start an escape sequence; `=` form so ydotool 1.0.0–1.0.3, which lacks the option, ignores it instead
///   of typing the "0"); Enters: `ydotool key 28:1 28:0` (KEY_ENTER down, up). Characters ydotool cannot type
///   (non-ASCII, control) are left out.
/// * Clipboard: set the whole text (Enters as `'\n'`) through stdin, then the paste keystroke; the save and
///   restore around it are [`clipboard_save_step`] and [`clipboard_restore_step`], and [`type_text`] runs all four.
/// * Stdout: no command.
pub(crate) fn plan(backend: &Backend, pieces: &[Piece], key_delay_ms: u32) -> Vec<Step> {
    let ms = key_delay_ms.to_string();
    let mut steps = Vec::new();
    match backend {
        Backend::Xdotool => {
            for (enters, text) in chunks(pieces) {
                let mut argv = vec!["xdotool"];
                if enters > 0 {
                    argv.push("key");
                    argv.extend(std::iter::repeat_n("Return", enters));
                }
                // Characters missing from the keyboard map are typed by remapping a spare keycode per
                // character; below ~25 ms xdotool sometimes loses them (measured under Xvfb: 3-5 of 20 runs
                // at 5-12 ms, none at 25 ms), so non-ASCII text goes slower.
                let delay = match &text {
                    Some(t) if !t.is_ascii() => key_delay_ms.max(XDOTOOL_NON_ASCII_DELAY_MS).to_string(),
                    _ => ms.clone(),
                };
                if let Some(t) = &text {
                    argv.extend(["type", "--delay", &delay, "--", t]);
                }
                steps.push(Step::new(&argv));
            }
        }
        Backend::Wtype => {
            let settle = WTYPE_SETTLE_MS.to_string();
            for (enters, text) in chunks(pieces) {
                let mut argv = vec!["wtype", "-s", &settle];
                if text.is_some() && key_delay_ms > 0 {
                    argv.extend(["-d", &ms]);
                }
                for _ in 0..enters {
                    argv.extend(["-k", "Return"]);
                }
                if let Some(t) = &text {
                    argv.extend(["--", t]);
                }
                steps.push(Step::new(&argv));
            }
        }
        Backend::Ydotool => {
            for (enters, text) in chunks(pieces) {
                if enters > 0 {
                    let mut argv = vec!["ydotool", "key"];
                    for _ in 0..enters {
                        argv.extend(["28:1", "28:0"]);
                    }
                    steps.push(Step::new(&argv));
                }
                let typable: Option<String> = text.map(|t| t.chars().filter(|&c| ydotool_typable(c)).collect());
                if let Some(t) = typable.filter(|t| !t.is_empty()) {
                    steps.push(Step::new(&["ydotool", "type", "--key-delay", &ms, "--escape=0", "--", &t]));
                }
            }
        }
        Backend::Clipboard(clip, paste, keys) => {
            let text = joined_text(pieces);
            if !text.is_empty() {
                steps.push(clipboard_set_step(*clip, &text));
                steps.push(paste_step(*paste, *keys));
            }
        }
        Backend::Stdout => {}
    }
    steps
}

/// The command that prints the clipboard's current text on stdout (to save it before pasting).
pub(crate) fn clipboard_save_step(clip: Clipboard) -> Step {
    match clip {
        Clipboard::Xclip => Step::new(&["xclip", "-selection", "clipboard", "-o"]),
        Clipboard::Xsel => Step::new(&["xsel", "--clipboard", "--output"]),
        Clipboard::WlCopy => Step::new(&["wl-paste", "--no-newline"]),
    }
}

/// The command that puts `saved` back on the clipboard after pasting, or clears it when `saved` is `None` (the
/// clipboard held nothing, or nothing that could be saved as text). xclip has no clear option: it is given an
/// empty text instead.
pub(crate) fn clipboard_restore_step(clip: Clipboard, saved: Option<&str>) -> Step {
    match (clip, saved) {
        (_, Some(text)) => clipboard_set_step(clip, text),
        (Clipboard::Xclip, None) => clipboard_set_step(clip, ""),
        (Clipboard::Xsel, None) => Step::new(&["xsel", "--clipboard", "--clear"]),
        (Clipboard::WlCopy, None) => Step::new(&["wl-copy", "--clear"]),
    }
}

fn clipboard_set_step(clip: Clipboard, text: &str) -> Step {
    match clip {
        Clipboard::Xclip => Step::new(&["xclip", "-selection", "clipboard", "-i"]),
        Clipboard::Xsel => Step::new(&["xsel", "--clipboard", "--input"]),
        // An explicit type: wl-copy would otherwise guess one by running xdg-mime on the text.
        Clipboard::WlCopy => Step::new(&["wl-copy", "--type", "text/plain"]),
    }
    .with_stdin(text)
}

fn paste_step(paste: Paste, keys: PasteKeys) -> Step {
    let settle = WTYPE_SETTLE_MS.to_string();
    match (paste, keys) {
        (Paste::Xdotool, PasteKeys::CtrlV) => Step::new(&["xdotool", "key", "ctrl+v"]),
        (Paste::Xdotool, PasteKeys::CtrlShiftV) => Step::new(&["xdotool", "key", "ctrl+shift+v"]),
        (Paste::Xdotool, PasteKeys::ShiftInsert) => Step::new(&["xdotool", "key", "shift+Insert"]),
        // The settle wait (see WTYPE_SETTLE_MS): a lost Ctrl would type a "v" instead of pasting.
        (Paste::Wtype, PasteKeys::CtrlV) => Step::new(&["wtype", "-s", &settle, "-M", "ctrl", "-k", "v", "-m", "ctrl"]),
        (Paste::Wtype, PasteKeys::CtrlShiftV) => {
            Step::new(&["wtype", "-s", &settle, "-M", "ctrl", "-M", "shift", "-k", "v", "-m", "shift", "-m", "ctrl"])
        }
        (Paste::Wtype, PasteKeys::ShiftInsert) => {
            Step::new(&["wtype", "-s", &settle, "-M", "shift", "-k", "Insert", "-m", "shift"])
        }
        // Linux key codes: KEY_LEFTCTRL 29, KEY_LEFTSHIFT 42, KEY_V 47, KEY_INSERT 110 (down :1, up :0).
        (Paste::Ydotool, PasteKeys::CtrlV) => Step::new(&["ydotool", "key", "29:1", "47:1", "47:0", "29:0"]),
        (Paste::Ydotool, PasteKeys::CtrlShiftV) => {
            Step::new(&["ydotool", "key", "29:1", "42:1", "47:1", "47:0", "42:0", "29:0"])
        }
        (Paste::Ydotool, PasteKeys::ShiftInsert) => Step::new(&["ydotool", "key", "42:1", "110:1", "110:0", "42:0"]),
    }
}

impl Backend {
    /// The same backend with `keys` as the paste keystroke (only the clipboard backend pastes).
    pub(crate) fn with_paste_keys(self, keys: PasteKeys) -> Backend {
        match self {
            Backend::Clipboard(clip, paste, _) => Backend::Clipboard(clip, paste, keys),
            other => other,
        }
    }
}

mod modifiers;
mod run;
#[cfg(test)]
mod tests;
pub(crate) mod wayland;

pub(crate) use modifiers::wait_for_modifiers_up;
pub(crate) use run::type_text;
#[cfg(test)]
use run::*;
