//! Desktop notifications: a task ended (succeeded, failed with the reason, cancelled), a dictation failed and
//! its clip was kept.
//!
//! Why it is built this way:
//!
//! * **Through `notify-send`, not a D-Bus crate.** The freedesktop notification call is one D-Bus method
//!   (`org.freedesktop.Notifications.Notify`), and the Rust crates that make it either bring an async runtime
//!   (zbus, and notify-rust by default) – which the project rules out – or link libdbus. `notify-send` (libnotify,
//!   Debian `libnotify-bin`, a recommended package) makes the same call, prints the id the server assigned
//!   (`--print-id`) and replaces an earlier notification by id (`--replace-id`), which is all this needs.
//! * **A thread of its own.** Running a process and waiting for the bus is I/O that can stall; the loop only
//!   `try_send`s a [`Note`] and never waits. The thread runs `notify-send` with a 5 s timeout, the typing tools'
//!   environment allowlist (never `OPENAI_API_KEY`), and remembers the id of each key's last notification, so
//!   a task's later notification replaces its earlier one instead of stacking up.
//! * **Redacted, short, urgency by outcome.** Bodies go through [`crate::text::redact`] and are cut to 300
//!   characters; a failure is `critical` (stays until dismissed on most desktops), a success `normal`, a
//!   cancellation `low`.
//! * **Only where a session bus exists.** `notify.enabled` (default true) turns it off; with no
//!   `DBUS_SESSION_BUS_ADDRESS` and no `$XDG_RUNTIME_DIR/bus`, nothing is attempted (logged once).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

/// How long one `notify-send` may take before it is killed.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The longest body shown.
const MAX_BODY: usize = 300;
/// Notes waiting for the thread; more are dropped (a desktop flooded with notifications helps nobody).
const QUEUE: usize = 64;

/// How much a notification asks for attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Urgency {
    Low,
    Normal,
    Critical,
}

impl Urgency {
    fn as_str(self) -> &'static str {
        match self {
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::Critical => "critical",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    /// What it is about ("t7", "dictation"): a later note with the same key replaces the earlier one.
    pub(crate) key: String,
    pub(crate) summary: String,
    pub(crate) body: String,
    pub(crate) urgency: Urgency,
}

/// The `notify-send` command line for `note` (pure; `replaces` is the id of the key's previous notification).
pub(crate) fn argv(note: &Note, replaces: Option<u32>) -> Vec<String> {
    let mut v = vec![
        "notify-send".to_string(),
        "--app-name=ptt".to_string(),
        "--print-id".to_string(),
        format!("--urgency={}", note.urgency.as_str()),
        "--icon=audio-input-microphone".to_string(),
        format!("--hint=string:x-ptt-key:{}", note.key),
    ];
    if let Some(id) = replaces {
        v.push(format!("--replace-id={id}"));
    }
    v.push("--".to_string());
    v.push(crate::text::clip(&crate::text::redact(&note.summary), 100));
    v.push(crate::text::clip(&crate::text::redact(&note.body), MAX_BODY));
    v
}

/// Whether a session bus can be reached from an environment (`var` looks a variable up).
pub(crate) fn session_bus(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(a) = var("DBUS_SESSION_BUS_ADDRESS").filter(|a| !a.is_empty()) {
        return Some(a);
    }
    let runtime = var("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())?;
    let bus = Path::new(&runtime).join("bus");
    bus.exists().then(|| format!("unix:path={}", bus.display()))
}

/// The handle the daemon keeps: sends notes to the thread.
pub(crate) struct Notifier {
    tx: Sender<Note>,
}

impl Notifier {
    /// Starts the thread, or `None` when there is no session bus (said once in the log).
    pub(crate) fn start() -> Option<Notifier> {
        let Some(bus) = session_bus(|k| std::env::var(k).ok()) else {
            log::info!("notifications: off (no session bus: DBUS_SESSION_BUS_ADDRESS is not set)");
            return None;
        };
        let (tx, rx) = bounded(QUEUE);
        let spawned = std::thread::Builder::new().name("notify".into()).spawn(move || run(&rx, &bus));
        match spawned {
            Ok(_) => Some(Notifier { tx }),
            Err(e) => {
                log::warn!("notifications: off (cannot start the thread: {e})");
                None
            }
        }
    }

    /// Queues a note; never blocks.
    pub(crate) fn send(&self, note: Note) {
        match self.tx.try_send(note) {
            Ok(()) => {}
            Err(TrySendError::Full(n)) => log::warn!("notifications: queue full, {} dropped", n.key),
            Err(TrySendError::Disconnected(_)) => log::warn!("notifications: the thread is gone"),
        }
    }
}

fn run(rx: &Receiver<Note>, bus: &str) {
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut missing_said = false;
    for note in rx.iter() {
        let replaces = ids.get(&note.key).copied();
        match show(&argv(&note, replaces), bus) {
            Ok(Some(id)) => {
                ids.insert(note.key.clone(), id);
            }
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !missing_said {
                    log::warn!("notifications: notify-send is not installed (Debian: libnotify-bin)");
                    missing_said = true;
                }
            }
            Err(e) => log::warn!("notifications: {e}"),
        }
        // Old keys are of no use once many have piled up; a replace of a closed notification just shows a new one.
        if ids.len() > 256 {
            ids.clear();
        }
    }
}

/// Runs `notify-send`; returns the id it printed.
fn show(argv: &[String], bus: &str) -> std::io::Result<Option<u32>> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(crate::process::inherited_env(std::env::vars_os()))
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut out = String::new();
            let mut err = String::new();
            use std::io::Read;
            if let Some(mut s) = child.stdout.take() {
                let _ = s.read_to_string(&mut out);
            }
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            if !status.success() {
                return Err(std::io::Error::other(format!(
                    "notify-send failed ({status}): {}",
                    crate::text::clip(err.trim(), 200)
                )));
            }
            return Ok(out.trim().parse().ok());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("notify-send did not finish within 5 s and was killed"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_redacted_cut_and_replaces_the_keys_last_one() {
        let note = Note {
            key: "t7".into(),
            summary: "ptt: task t7 failed".into(),
            body: format!("used sk-proj-{} then {}", "a".repeat(40), "x".repeat(1000)),
            urgency: Urgency::Critical,
        };
        let first = argv(&note, None);
        assert_eq!(&first[..4], ["notify-send", "--app-name=ptt", "--print-id", "--urgency=critical"]);
        assert!(!first.iter().any(|a| a.starts_with("--replace-id")));
        let body = first.last().expect("body");
        assert!(!body.contains("aaaaaaaaaaaaaaaaaaaa"), "redacted: {body}");
        assert!(body.chars().count() <= MAX_BODY + 1, "cut (plus the ellipsis): {}", body.chars().count());
        let again = argv(&note, Some(42));
        assert!(again.contains(&"--replace-id=42".to_string()));
        let dash = Note { summary: "-rf".into(), body: "--help".into(), ..note };
        let v = argv(&dash, None);
        assert_eq!(&v[v.len() - 3..], ["--", "-rf", "--help"], "text after -- is never an option");
    }

    #[test]
    fn a_session_bus_is_found_by_address_or_socket() {
        assert_eq!(
            session_bus(|k| (k == "DBUS_SESSION_BUS_ADDRESS").then(|| "unix:path=/x".to_string())),
            Some("unix:path=/x".to_string())
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = dir.path().to_str().expect("utf8").to_string();
        let var = |k: &str| (k == "XDG_RUNTIME_DIR").then(|| runtime.clone());
        assert_eq!(session_bus(var), None, "no bus socket");
        std::fs::write(dir.path().join("bus"), b"").expect("touch");
        assert_eq!(session_bus(var), Some(format!("unix:path={runtime}/bus")));
    }
}
