//! Running a typing plan: each command bounded (timeout, kill and reap), stderr kept short and free of the
//! typed text, and the clipboard path with its save and restore.

use super::*;

/// Why typing failed. The messages never contain the typed text.
#[derive(Debug)]
pub(crate) enum TypeError {
    /// The named tool is not installed (or not on `PATH`).
    Missing(String),
    /// The tool ran and failed.
    Failed { argv0: String, status: String, stderr: String },
    /// The named tool did not finish within its timeout and was killed.
    TimedOut(String),
    /// Anything else (could not start a process, could not write to stdout, ...).
    Io(String),
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeError::Missing(tool) => write!(f, "{tool} is not installed (not found on PATH)"),
            TypeError::Failed { argv0, status, stderr } if stderr.is_empty() => write!(f, "{argv0} failed ({status})"),
            TypeError::Failed { argv0, status, stderr } => {
                write!(f, "{argv0} failed ({status}): {}", one_line(stderr))
            }
            TypeError::TimedOut(tool) => write!(f, "{tool} did not finish in time and was killed"),
            TypeError::Io(msg) => write!(f, "{}", one_line(msg)),
        }
    }
}

impl std::error::Error for TypeError {}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// Types `pieces` into the focused window with `backend`.
///
/// Each command runs with the session's variables ([`SessionInfo::command_env`]), stdin null unless the step has
/// input, stdout null, stderr captured (first 500 bytes; not for the clipboard-serving xclip/xsel/wl-copy, which
/// fork a process that keeps the pipe open), and a timeout (`timeout`, plus an allowance per typed character)
/// after which the command's process group is killed and reaped. Commands run one after the other; the first
/// failure stops the rest.
///
/// Clipboard: save the clipboard, set the text, wait until the clipboard reads back as the text (up to 1 s; the
/// tools hand the selection to a background process), paste, wait [`CLIPBOARD_SETTLE`] for the application to
/// fetch it, restore the old text (or clear), and wait until that reads back too. When setting or pasting fails
/// the restore still runs; a failing restore is logged with `log::warn!`, not returned.
///
/// Call [`wait_for_modifiers_up`] first: this function does not look at the keyboard.
pub(crate) fn type_text(
    backend: &Backend,
    pieces: &[Piece],
    session: &SessionInfo,
    key_delay_ms: u32,
    timeout: Duration,
) -> Result<(), TypeError> {
    let env = session.command_env();
    match backend {
        Backend::Stdout => {
            let text = joined_text(pieces);
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| TypeError::Io(format!("cannot write the text to stdout: {e}")))
        }
        Backend::Clipboard(clip, paste, keys) => {
            type_via_clipboard((*clip, *paste, *keys), pieces, &env, timeout, &mut |_| {})
        }
        Backend::Xdotool | Backend::Wtype | Backend::Ydotool => {
            if *backend == Backend::Ydotool {
                let dropped = joined_text(pieces).chars().filter(|&c| c != '\n' && !ydotool_typable(c)).count();
                if dropped > 0 {
                    log::warn!("ydotool can only type ASCII: {dropped} character(s) left out");
                }
            }
            let steps = plan(backend, pieces, key_delay_ms);
            let secrets = secrets_of(pieces);
            for step in &steps {
                run_checked(step, &env, typing_timeout(step, timeout, key_delay_ms), &secrets)?;
            }
            Ok(())
        }
    }
}

/// Stages of the clipboard path, reported to an observer (tests look at the clipboard between the steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClipStage {
    /// The clipboard holds the text.
    Set,
    /// The paste keystroke was sent; the old content has not been restored yet.
    Pasted,
}

/// What the clipboard held before typing.
enum Saved {
    Text(String),
    /// Empty, or nothing that can be restored as text: cleared afterwards.
    Nothing,
}

pub(super) fn type_via_clipboard(
    (clip, paste, keys): (Clipboard, Paste, PasteKeys),
    pieces: &[Piece],
    env: &[(String, Option<String>)],
    timeout: Duration,
    observe: &mut dyn FnMut(ClipStage),
) -> Result<(), TypeError> {
    let steps = plan(&Backend::Clipboard(clip, paste, keys), pieces, 0);
    let (Some(set), Some(paste_cmd)) = (steps.first(), steps.get(1)) else {
        return Ok(()); // nothing to type
    };
    let text = set.stdin.as_deref().unwrap_or_default();
    let secrets = secrets_of(pieces);

    let saved = save_clipboard(clip, env, timeout)?;
    let result = set_and_paste(clip, set, paste_cmd, text, env, timeout, &secrets, observe);
    if result.is_ok() {
        std::thread::sleep(CLIPBOARD_SETTLE);
    }
    let restore = match &saved {
        Saved::Text(old) => clipboard_restore_step(clip, Some(old)),
        Saved::Nothing => clipboard_restore_step(clip, None),
    };
    let want = match &saved {
        Saved::Text(old) => Some(old.as_str()),
        Saved::Nothing => None,
    };
    // Waiting for the restore to take effect keeps a quick next dictation from saving this one's text as "the
    // user's clipboard".
    match run_checked(&restore, env, timeout, &secrets).and_then(|_| clipboard_settles(clip, want, env, timeout)) {
        Ok(true) => {}
        Ok(false) => log::warn!("the clipboard did not take back its old content in time"),
        Err(e) => log::warn!("could not restore the clipboard after pasting: {e}"),
    }
    result
}

/// Polls the clipboard until it holds `want` (`None`: nothing, or an empty text) or [`CLIPBOARD_SET_WAIT`] has
/// passed; returns whether it got there.
fn clipboard_settles(
    clip: Clipboard,
    want: Option<&str>,
    env: &[(String, Option<String>)],
    timeout: Duration,
) -> Result<bool, TypeError> {
    let read = clipboard_save_step(clip);
    let started = Instant::now();
    loop {
        let out = run_step(&read, env, timeout, true)?;
        let holds = match want {
            Some(text) => out.status.success() && out.stdout == text.as_bytes(),
            None => !out.status.success() || out.stdout.is_empty(),
        };
        if holds {
            return Ok(true);
        }
        if started.elapsed() >= CLIPBOARD_SET_WAIT {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn save_clipboard(clip: Clipboard, env: &[(String, Option<String>)], timeout: Duration) -> Result<Saved, TypeError> {
    let save = clipboard_save_step(clip);
    let mut out = run_step(&save, env, timeout, true)?;
    if !out.status.success() {
        // A read also fails while the selection changes hands (the old owner exits as it is asked): one more try
        // before concluding that the clipboard is empty, which would get it cleared afterwards.
        std::thread::sleep(Duration::from_millis(20));
        out = run_step(&save, env, timeout, true)?;
    }
    if !out.status.success() {
        // xclip ("target STRING not available") and wl-paste ("Nothing is copied") fail on an empty clipboard.
        return Ok(Saved::Nothing);
    }
    if out.stdout_truncated {
        log::warn!("the clipboard holds more than {STDOUT_KEEP} bytes: it will be cleared, not restored");
        return Ok(Saved::Nothing);
    }
    match String::from_utf8(out.stdout) {
        Ok(s) if s.is_empty() => Ok(Saved::Nothing),
        Ok(s) => Ok(Saved::Text(s)),
        Err(_) => {
            log::warn!("the clipboard holds something other than text: it will be cleared, not restored");
            Ok(Saved::Nothing)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn set_and_paste(
    clip: Clipboard,
    set: &Step,
    paste: &Step,
    text: &str,
    env: &[(String, Option<String>)],
    timeout: Duration,
    secrets: &[String],
    observe: &mut dyn FnMut(ClipStage),
) -> Result<(), TypeError> {
    run_checked(set, env, timeout, secrets)?;
    // Pasting before the clipboard holds the text would paste the old content into the window.
    if !clipboard_settles(clip, Some(text), env, timeout)? {
        return Err(TypeError::Failed {
            argv0: set.program().to_string(),
            status: "the clipboard did not take the new text".to_string(),
            stderr: String::new(),
        });
    }
    observe(ClipStage::Set);
    run_checked(paste, env, timeout, secrets)?;
    observe(ClipStage::Pasted);
    Ok(())
}

/// The typed text runs worth scrubbing from error output (short ones would blank out ordinary words).
pub(super) fn secrets_of(pieces: &[Piece]) -> Vec<String> {
    chunks(pieces).into_iter().filter_map(|(_, t)| t).filter(|t| t.chars().count() >= 4).collect()
}

pub(super) fn typing_timeout(step: &Step, base: Duration, key_delay_ms: u32) -> Duration {
    let per_char = PER_CHAR_ALLOWANCE + Duration::from_millis(u64::from(key_delay_ms));
    let chars = u32::try_from(step.typed_chars()).unwrap_or(u32::MAX);
    base.saturating_add(per_char.saturating_mul(chars))
}

/// What a finished command left behind.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) status: ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stdout_truncated: bool,
    pub(super) stderr: Vec<u8>,
}

/// Runs `step` and turns a failing exit status into [`TypeError::Failed`] (with `secrets` scrubbed from stderr).
pub(super) fn run_checked(
    step: &Step,
    env: &[(String, Option<String>)],
    timeout: Duration,
    secrets: &[String],
) -> Result<Finished, TypeError> {
    let out = run_step(step, env, timeout, false)?;
    if out.status.success() {
        return Ok(out);
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for secret in secrets {
        stderr = stderr.replace(secret.as_str(), "<text>");
    }
    Err(TypeError::Failed {
        argv0: step.program().to_string(),
        status: out.status.to_string(),
        stderr: one_line(&stderr),
    })
}

/// Kills (the whole process group) and reaps a child that has not been waited for, whatever way the caller
/// leaves – including a panic – so no process or zombie is left behind.
struct Reaper {
    child: Child,
    reaped: bool,
}

impl Reaper {
    fn kill_and_reap(&mut self) {
        if self.reaped {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: plain syscall. The child has not been reaped, so its pid (= its process group id, see
            // `process_group(0)`) still belongs to it and cannot have been reused.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Reads what is available without blocking into `buf` (keeping at most `keep` bytes, flagging the rest in
/// `truncated`); closes the handle on EOF or error. Reads at most 1 MiB per call so a flood cannot starve the
/// timeout check.
fn pump_read<R: Read>(handle: &mut Option<R>, buf: &mut Vec<u8>, keep: usize, truncated: &mut bool) {
    let Some(r) = handle.as_mut() else { return };
    let mut chunk = [0u8; 8192];
    let mut budget: usize = 1 << 20;
    while budget > 0 {
        match r.read(&mut chunk) {
            Ok(0) => {
                *handle = None;
                return;
            }
            Ok(n) => {
                budget = budget.saturating_sub(n);
                let room = keep.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                if n > room {
                    *truncated = true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                *handle = None;
                return;
            }
        }
    }
}

/// Writes what the pipe takes without blocking; closes the handle once everything is written or the reader is
/// gone.
fn pump_write<W: Write>(handle: &mut Option<W>, data: &[u8], written: &mut usize) {
    let Some(w) = handle.as_mut() else { return };
    loop {
        if *written >= data.len() {
            *handle = None; // EOF for the child
            return;
        }
        match w.write(&data[*written..]) {
            Ok(0) => {
                *handle = None;
                return;
            }
            Ok(n) => *written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                *handle = None; // EPIPE: the child does not read its input
                return;
            }
        }
    }
}

/// Runs one command to completion or timeout. Never blocks past the timeout: stdin, stdout and stderr are
/// non-blocking pipes serviced with poll(2) while the child is polled for exit; once it has exited, what is left
/// in the pipes is drained without waiting for EOF (a grandchild may hold them open forever).
pub(super) fn run_step(
    step: &Step,
    env: &[(String, Option<String>)],
    timeout: Duration,
    capture_stdout: bool,
) -> Result<Finished, TypeError> {
    let program = step.program();
    if program.is_empty() {
        return Err(TypeError::Io("empty command".to_string()));
    }
    let capture_stderr = !step.leaves_server();
    let mut cmd = Command::new(program);
    cmd.args(&step.argv[1..]);
    // A typing tool gets what it needs to reach the session and nothing else: never OPENAI_API_KEY or any
    // other secret of the daemon's environment.
    cmd.env_clear();
    cmd.envs(crate::process::inherited_env(std::env::vars_os()));
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    cmd.stdin(if step.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(if capture_stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(if capture_stderr { Stdio::piped() } else { Stdio::null() })
        // Its own process group: a timeout kills everything the command started, and the terminal's Ctrl+C
        // aimed at the daemon does not hit a half-typed command.
        .process_group(0);
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TypeError::Missing(program.to_string()),
        _ => TypeError::Io(format!("cannot start {program}: {e}")),
    })?;
    let mut reaper = Reaper { child, reaped: false };

    let mut stdin = reaper.child.stdin.take();
    let mut stdout = reaper.child.stdout.take();
    let mut stderr = reaper.child.stderr.take();
    let input = step.stdin.as_deref().unwrap_or_default().as_bytes();
    use std::os::fd::AsFd;
    let fds = [stdin.as_ref().map(AsFd::as_fd), stdout.as_ref().map(AsFd::as_fd)];
    for fd in fds.into_iter().chain([stderr.as_ref().map(AsFd::as_fd)]).flatten() {
        crate::process::set_nonblocking(fd, true)
            .map_err(|e| TypeError::Io(format!("cannot set up pipes for {program}: {e}")))?;
    }

    let mut written = 0;
    let (mut out_buf, mut out_truncated) = (Vec::new(), false);
    let (mut err_buf, mut err_truncated) = (Vec::new(), false);
    // A timeout too large to add (Duration::MAX) means "a year": effectively none, without overflowing.
    let deadline =
        Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
    let status = loop {
        pump_write(&mut stdin, input, &mut written);
        pump_read(&mut stdout, &mut out_buf, STDOUT_KEEP, &mut out_truncated);
        pump_read(&mut stderr, &mut err_buf, STDERR_KEEP, &mut err_truncated);
        match reaper.child.try_wait() {
            Ok(Some(status)) => {
                reaper.reaped = true;
                break status;
            }
            Ok(None) => {}
            Err(e) => return Err(TypeError::Io(format!("cannot wait for {program}: {e}"))),
        }
        let now = Instant::now();
        if now >= deadline {
            reaper.kill_and_reap();
            return Err(TypeError::TimedOut(program.to_string()));
        }
        let slice = (deadline - now).min(Duration::from_millis(10));
        let mut pollfds: Vec<libc::pollfd> = Vec::with_capacity(3);
        if let Some(s) = &stdin {
            pollfds.push(libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
        }
        let readers = [stdout.as_ref().map(AsRawFd::as_raw_fd), stderr.as_ref().map(AsRawFd::as_raw_fd)];
        for fd in readers.into_iter().flatten() {
            pollfds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
        }
        if pollfds.is_empty() {
            // All pipes are closed: only the exit is left to wait for.
            std::thread::sleep(slice.min(Duration::from_millis(2)));
        } else {
            let ms = libc::c_int::try_from(slice.as_millis()).unwrap_or(10).max(1);
            // SAFETY: `pollfds` is a valid array of `pollfds.len()` entries for the duration of the call. Errors
            // (EINTR) just mean another round.
            unsafe {
                libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms);
            }
        }
    };
    pump_read(&mut stdout, &mut out_buf, STDOUT_KEEP, &mut out_truncated);
    pump_read(&mut stderr, &mut err_buf, STDERR_KEEP, &mut err_truncated);
    Ok(Finished { status, stdout: out_buf, stdout_truncated: out_truncated, stderr: err_buf })
}
