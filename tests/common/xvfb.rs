//! A private X display for tests: Xvfb on a display number it picks itself,
//! and `xdotool` against it. Both fail loudly when missing: tests never skip.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Our own Xvfb on a display it picks itself (`-displayfd`), killed when dropped.
pub struct Xvfb {
    child: Child,
    pub display: String,
    /// Kept open: Xvfb may write to it again, and a closed pipe would kill it with SIGPIPE.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        let mut child = Command::new("Xvfb")
            // -noreset: without it the server resets when its last client leaves (our probe), and refuses
            // connections while it does.
            .args(["-displayfd", "1", "-noreset", "-nolisten", "tcp", "-screen", "0", "640x480x24"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run Xvfb ({e}): install it with `apt-get install -y xvfb xdotool`"));
        let mut line = String::new();
        let mut stdout = child.stdout.take().map(BufReader::new);
        let read = stdout.as_mut().map(|out| out.read_line(&mut line));
        let number = line.trim().to_string();
        if !matches!(read, Some(Ok(n)) if n > 0) || number.parse::<u32>().is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("Xvfb started but did not report a display number (got {line:?}, {read:?})");
        }
        Xvfb { child, display: format!(":{number}"), _stdout: stdout }
    }

    /// SIGTERM (so it removes its socket and lock file), SIGKILL after 2 s.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(2);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `xdotool ARGS` against `display`.
pub fn xdotool(display: &str, args: &[&str]) {
    let status = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .status()
        .unwrap_or_else(|e| panic!("cannot run xdotool ({e}): install it with `apt-get install -y xvfb xdotool`"));
    assert!(status.success(), "xdotool {args:?} failed: {status}");
}
