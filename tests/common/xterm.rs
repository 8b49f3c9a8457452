//! A real xterm on a test X display whose received keystrokes can be read back.
//!
//! The xterm runs a small python3 program that puts its tty in raw mode and
//! appends every byte it reads to a file, so a test sees exactly what a
//! terminal application would get: no echo, no line editing, Enter as `"\r"`,
//! Ctrl+C as `"\x03"`, non-ASCII text as UTF-8 (the xterm runs in a UTF-8 locale).
//!
//! xterm keeps its defaults, in particular `allowSendEvents: false`: like a
//! user's xterm it ignores synthetic (`XSendEvent`) key events, so text only
//! arrives when it is typed the way real keyboards do (XTEST, as `xdotool type`
//! without `--window` does).
//!
//! Needs `xterm`, `xdotool` and `python3`; fails loudly when any is missing:
//! tests never skip.
#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long `start` waits for the xterm, its reader and its window.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for one xdotool call.
const XDOTOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The reader: raw mode first, then the ready marker (pid and xterm's `WINDOWID`, written
/// atomically), then every byte appended to the output file as it arrives.
const READER: &str = r#"
import os, sys, tty
out_path, ready_path = sys.argv[1], sys.argv[2]
fd = sys.stdin.fileno()
tty.setraw(fd)
with open(out_path, "ab", buffering=0) as out:
    with open(ready_path + ".tmp", "w") as ready:
        ready.write("%d %s\n" % (os.getpid(), os.environ.get("WINDOWID", "")))
    os.rename(ready_path + ".tmp", ready_path)
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out.write(data)
        out.flush()
"#;

/// An xterm on a test display; killed (with its reader) and reaped when dropped.
pub struct Xterm {
    child: Child,
    display: String,
    dir: tempfile::TempDir,
    output: PathBuf,
    /// The reader's pid, once it reported ready.
    reader_pid: Option<i32>,
    /// The xterm's top-level window id (decimal, as xdotool prints it).
    window: String,
}

impl Xterm {
    /// Starts `xterm` on `display` running the raw-mode reader, waits until the reader is ready
    /// and the window is viewable, and gives it the keyboard focus (there is no window manager
    /// under Xvfb to do that).
    pub fn start(display: &str) -> Xterm {
        require("xterm", &["-version"], "xterm");
        require("xdotool", &["version"], "xdotool");
        require("python3", &["--version"], "python3");

        let dir = tempfile::Builder::new().prefix("ptt-xterm-").tempdir().expect("xterm: temp dir");
        let script = dir.path().join("reader.py");
        let output = dir.path().join("received");
        let ready = dir.path().join("ready");
        let log = dir.path().join("xterm.log");
        fs::write(&script, READER).expect("xterm: write reader script");
        fs::write(&output, b"").expect("xterm: create output file");
        let stderr = fs::File::create(&log).expect("xterm: create log file");

        let child = Command::new("xterm")
            .args(["-ut", "-u8", "+sb", "-geometry", "80x24+0+0", "-title", "ptt-test-xterm", "-e", "python3", "-I"])
            .arg(&script)
            .arg(&output)
            .arg(&ready)
            .env("DISPLAY", display)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run xterm ({e}): install it with `apt-get install -y xterm`"));
        // From here on a panic drops `term`, which kills and reaps what was started.
        let mut term =
            Xterm { child, display: display.to_string(), dir, output, reader_pid: None, window: String::new() };
        let deadline = Instant::now() + START_TIMEOUT;

        // 1. The reader's tty is raw and it is reading.
        let window_env = loop {
            if let Some((pid, window)) = fs::read_to_string(&ready).ok().as_deref().and_then(parse_ready) {
                term.reader_pid = Some(pid);
                break window;
            }
            term.fail_if_exited(&log, "before its reader was ready");
            assert!(
                Instant::now() < deadline,
                "xterm on {display}: reader not ready after {START_TIMEOUT:?}; xterm said: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };

        // 2. Its window is mapped (focus can only go to a viewable window).
        let pid = term.child.id().to_string();
        term.window = loop {
            let out = xdotool_output(display, &["search", "--onlyvisible", "--pid", &pid]);
            let visible: Vec<String> =
                String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            let found = match &window_env {
                Some(w) => visible.iter().find(|v| *v == w).cloned(),
                None => visible.first().cloned(),
            };
            if let Some(window) = found {
                break window;
            }
            term.fail_if_exited(&log, "before its window was visible");
            assert!(
                Instant::now() < deadline,
                "xterm on {display}: window (WINDOWID {window_env:?}) not visible after {START_TIMEOUT:?} \
                 (visible windows of pid {pid}: {visible:?}); xterm said: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };

        // 3. Keyboard focus.
        term.focus();
        term
    }

    /// Gives the xterm the keyboard focus again (after something else took it), and checks it has it.
    pub fn focus(&self) {
        let deadline = Instant::now() + XDOTOOL_TIMEOUT;
        loop {
            let out = xdotool_output(&self.display, &["windowfocus", "--sync", &self.window]);
            let focused = xdotool_output(&self.display, &["getwindowfocus", "-f"]);
            let focused = String::from_utf8_lossy(&focused.stdout).trim().to_string();
            if out.status.success() && focused == self.window {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "xterm on {}: cannot focus window {} (focus is on {focused:?}; xdotool: {} {})",
                self.display,
                self.window,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The xterm's top-level window id, as xdotool prints it.
    pub fn window(&self) -> &str {
        &self.window
    }

    /// Everything the reader received so far (raw mode: Enter is `"\r"`), invalid UTF-8 replaced.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.output).unwrap_or_default()).into_owned()
    }

    /// Polls until `received()` contains `expected`, and returns it; panics showing what arrived
    /// after `timeout`.
    pub fn wait_for(&self, expected: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.contains(expected) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "xterm on {}: waited {timeout:?} for {expected:?}, received {got:?}",
                self.display
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics with the xterm's own words if it has already exited.
    fn fail_if_exited(&mut self, log: &std::path::Path, when: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "xterm on {} exited {when} ({status}): {}",
                self.display,
                fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Xterm {
    fn drop(&mut self) {
        // Ending the reader makes xterm reap it and exit by itself; SIGKILL if it does not.
        if let Some(pid) = self.reader_pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(2);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            // xterm's death hangs up the tty, which ends a reader that is still there.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `"<pid> <WINDOWID>\n"` from the ready marker; the window may be missing.
fn parse_ready(text: &str) -> Option<(i32, Option<String>)> {
    if !text.ends_with('\n') {
        return None;
    }
    let mut words = text.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    Some((pid, words.next().map(String::from)))
}

/// Panics with an install hint if `program` cannot be run.
fn require(program: &str, args: &[&str], package: &str) {
    let result =
        Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    match result {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("{program} is missing: install it with `apt-get install -y {package}`")
        }
        Err(e) => panic!("cannot run {program} ({e}): install it with `apt-get install -y {package}`"),
    }
}

/// Runs `xdotool ARGS` against `display`, killing it after `XDOTOOL_TIMEOUT` (its `--sync` options
/// otherwise wait forever).
fn xdotool_output(display: &str, args: &[&str]) -> Output {
    let mut child = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run xdotool ({e}): install it with `apt-get install -y xdotool`"));
    let deadline = Instant::now() + XDOTOOL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                panic!("xdotool {args:?} on {display} did not finish within {XDOTOOL_TIMEOUT:?}: {stderr}");
            }
        }
    }
    child.wait_with_output().expect("xdotool: collect output")
}
