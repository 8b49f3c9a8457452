//! One reaper thread per Claude child: reads its output, keeps the log,
//! parses stream-json, and reports the exit.
//!
//! The thread owns the child handle and the read end of its output pipe and
//! nothing else; it tells the main loop what happened through messages. It
//! waits with `poll` on the pipe so that it also notices the child's exit
//! when a grandchild (a Bash tool command in its own session) keeps the pipe
//! open: after the exit it drains for a short while, then reports anyway.
//!
//! Memory is bounded whatever the child prints: lines longer than
//! [`MAX_LINE`] are cut (the log keeps the bytes up to its own cap), the tail
//! is a small ring, and progress messages are rate-limited.
//!
//! It is also the hot path of a flood (100 children printing 20 MiB each): a
//! line that arrived whole in the read buffer is parsed where it lies, the
//! parse borrows from it ([`LineReader`]), and the tail ring, the last text and
//! the last plain line reuse their buffers, so a text line allocates nothing
//! once the ring is full.

use crate::process::vfork_spawn::Child;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::changes::{self, Changes};
use super::stream_json::{LineKind, LineReader, ResultInfo, StreamFact};
use crate::text::clip_into;

/// Longest line parsed; longer lines are cut (and then kept as text).
pub(crate) const MAX_LINE: usize = 1 << 20;
/// Lines kept in the in-memory tail.
pub(crate) const TAIL_LINES: usize = 30;
/// Characters kept per tail line.
pub(crate) const TAIL_LINE_CHARS: usize = 300;
const POLL_MS: u16 = 200;
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How long to keep reading after the child exited while a descendant holds the pipe.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(1500);

/// A message from a reaper (or a sweep thread) about task `id`.
#[derive(Debug)]
pub(crate) struct TaskEvent {
    pub(crate) id: String,
    pub(crate) msg: ReaperMsg,
}

#[derive(Debug)]
pub(crate) enum ReaperMsg {
    /// `system/init` arrived.
    Init { session_id: Option<String>, model: Option<String> },
    /// A `rate_limit_event`: `until` is set while requests are refused.
    RateLimit { until: Option<u64> },
    /// Rate-limited progress: the latest activity and output counter.
    Progress { activity: Option<String>, output_bytes: u64 },
    /// The child exited (and its output was drained).
    Finished(Box<Finished>),
    /// A background kill of leftover processes finished.
    Swept { killed: usize },
}

/// Everything the loop needs to judge the outcome.
#[derive(Debug, Default)]
pub(crate) struct Finished {
    pub(crate) result: Option<ResultInfo>,
    /// Last assistant text block (a fallback summary when there is no result).
    pub(crate) last_text: Option<String>,
    /// Last line that was not JSON (stderr, a crash): a failure reason.
    pub(crate) last_plain: Option<String>,
    pub(crate) exit_code: Option<i32>,
    pub(crate) exit_signal: Option<i32>,
    pub(crate) tail: Vec<String>,
    pub(crate) output_bytes: u64,
    pub(crate) log_error: Option<String>,
    /// Files written and, in a git repository, the diff stat since the start.
    pub(crate) changes: Changes,
}

/// Where the reaper writes the full log.
pub(crate) struct LogSpec {
    pub(crate) path: PathBuf,
    pub(crate) cap_bytes: u64,
}

/// Where the task's changes are looked for: `dir` is where Claude runs,
/// `base` where the start commit is read (the repository itself for a
/// worktree the child has yet to create).
pub(crate) struct ChangeSpec {
    pub(crate) dir: PathBuf,
    pub(crate) base: PathBuf,
}

/// Starts the reaper thread for a spawned child.
pub(crate) fn start(
    id: String,
    child: Child,
    output: std::io::PipeReader,
    log: LogSpec,
    changes: ChangeSpec,
    tx: Sender<TaskEvent>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("reaper-{id}"))
        .stack_size(512 * 1024)
        .spawn(move || Reaper::new(id, log, changes, tx).run(child, output))
}

struct Reaper {
    id: String,
    tx: Sender<TaskEvent>,
    log: Option<std::fs::File>,
    log_cap: u64,
    log_written: u64,
    log_error: Option<String>,
    line: Vec<u8>,
    line_cut: bool,
    reader: LineReader,
    digest: Digest,
    output_bytes: u64,
    reported_bytes: u64,
    last_progress: Instant,
    change_spec: ChangeSpec,
}

/// What the reaper keeps of the output, fed one fact or plain line at a time.
struct Digest {
    tail: VecDeque<String>,
    result: Option<ResultInfo>,
    last_text: Option<String>,
    last_plain: Option<String>,
    activity: Option<String>,
    activity_dirty: bool,
    changes: Changes,
}

/// Opens a task's log (0600, appending, never through a symlink); a logs
/// directory someone deleted is made again (0700).
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                crate::paths::create_private_dir_all(dir).map_err(std::io::Error::other)?;
            }
            open()
        }
        other => other,
    }
}

impl Reaper {
    fn new(id: String, log: LogSpec, change_spec: ChangeSpec, tx: Sender<TaskEvent>) -> Reaper {
        let (file, log_error) = match open_log(&log.path) {
            Ok(f) => (Some(f), None),
            Err(e) => {
                log::warn!("task {id}: cannot open log {}: {e}", log.path.display());
                (None, Some(format!("cannot open {}: {e}", log.path.display())))
            }
        };
        Reaper {
            id,
            tx,
            log: file,
            log_cap: log.cap_bytes,
            log_written: 0,
            log_error,
            line: Vec::new(),
            line_cut: false,
            reader: LineReader::new(),
            digest: Digest {
                tail: VecDeque::with_capacity(TAIL_LINES),
                result: None,
                last_text: None,
                last_plain: None,
                activity: None,
                activity_dirty: false,
                changes: Changes::default(),
            },
            output_bytes: 0,
            reported_bytes: 0,
            last_progress: Instant::now(),
            change_spec,
        }
    }

    fn send(&self, msg: ReaperMsg) {
        // The loop may be gone during shutdown; nothing to do then.
        let _ = self.tx.send(TaskEvent { id: self.id.clone(), msg });
    }

    fn run(mut self, mut child: Child, mut output: std::io::PipeReader) {
        // The commit the task starts from, read before the CLI (still loading) makes its first tool call;
        // what it prints meanwhile waits in the pipe.
        let base = changes::start_commit(&self.change_spec.base);
        let mut buf = vec![0u8; 32 * 1024];
        let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
        loop {
            let timeout = match exited {
                Some((_, at)) => {
                    let left = DRAIN_AFTER_EXIT.saturating_sub(at.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    left.as_millis().min(u128::from(POLL_MS)) as u16
                }
                None => POLL_MS,
            };
            let readable = {
                let mut fds = [nix::poll::PollFd::new(output.as_fd(), nix::poll::PollFlags::POLLIN)];
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(0) => false,
                    Ok(_) => true,
                    Err(nix::errno::Errno::EINTR) => false,
                    Err(e) => {
                        log::warn!("task {}: poll failed: {e}", self.id);
                        break;
                    }
                }
            };
            if readable {
                match output.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.consume(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::warn!("task {}: reading output failed: {e}", self.id);
                        break;
                    }
                }
            } else if exited.is_none()
                && let Ok(Some(status)) = child.try_wait()
            {
                exited = Some((status, Instant::now()));
            }
            self.maybe_progress();
        }
        drop(output);
        let status = match exited {
            Some((s, _)) => Some(s),
            None => child.wait().ok(),
        };
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.handle_line(&line);
        }
        // No last progress message: `Finished` carries the output counter, and an ended task has no activity.
        // One message per end is one wake-up of the loop, on the path to the task-ended event.
        if let Some(base) = base {
            self.digest.changes.diff = changes::diff_stat(&self.change_spec.dir, &base);
        }
        let tail = self.digest.tail.drain(..).map(|l| crate::text::redact(&l)).collect();
        let finished = Finished {
            result: self.digest.result.take(),
            last_text: self.digest.last_text.take(),
            last_plain: self.digest.last_plain.take(),
            exit_code: status.and_then(|s| s.code()),
            exit_signal: status.and_then(|s| s.signal()),
            tail,
            output_bytes: self.output_bytes,
            log_error: self.log_error.take(),
            changes: std::mem::take(&mut self.digest.changes),
        };
        self.send(ReaperMsg::Finished(Box::new(finished)));
    }

    fn consume(&mut self, mut bytes: &[u8]) {
        self.output_bytes += bytes.len() as u64;
        self.write_log(bytes);
        while !bytes.is_empty() {
            match memchr::memchr(b'\n', bytes) {
                Some(nl) if self.line.is_empty() => {
                    // The whole line is in the read buffer: parse it where it lies.
                    let whole = &bytes[..nl];
                    self.line_cut = whole.len() > MAX_LINE;
                    self.handle_line(&whole[..whole.len().min(MAX_LINE)]);
                    self.line_cut = false;
                    bytes = &bytes[nl + 1..];
                }
                Some(nl) => {
                    self.push_partial(&bytes[..nl]);
                    let line = std::mem::take(&mut self.line);
                    self.handle_line(&line);
                    self.line = line;
                    self.line.clear();
                    if self.line.capacity() > 64 * 1024 {
                        self.line.shrink_to(64 * 1024);
                    }
                    self.line_cut = false;
                    bytes = &bytes[nl + 1..];
                }
                None => {
                    self.push_partial(bytes);
                    break;
                }
            }
        }
    }

    fn push_partial(&mut self, part: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        if part.len() > room {
            self.line.extend_from_slice(&part[..room]);
            self.line_cut = true;
        } else {
            self.line.extend_from_slice(part);
        }
    }

    fn handle_line(&mut self, line: &[u8]) {
        if line.trim_ascii().is_empty() {
            return;
        }
        let (tx, id, dir) = (&self.tx, &self.id, &self.change_spec.dir);
        let digest = &mut self.digest;
        let kind = self.reader.read(line, |fact| {
            if let Some(msg) = digest.on_fact(fact, dir) {
                // The loop may be gone during shutdown; nothing to do then.
                let _ = tx.send(TaskEvent { id: id.clone(), msg });
            }
        });
        if kind == LineKind::Text {
            self.digest.on_plain(line, self.line_cut);
        }
    }

    fn maybe_progress(&mut self) {
        let changed = self.digest.activity_dirty || self.output_bytes != self.reported_bytes;
        if !changed || self.last_progress.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_progress = Instant::now();
        self.reported_bytes = self.output_bytes;
        let activity = if self.digest.activity_dirty { self.digest.activity.clone() } else { None };
        self.digest.activity_dirty = false;
        self.send(ReaperMsg::Progress { activity, output_bytes: self.output_bytes });
    }

    fn write_log(&mut self, bytes: &[u8]) {
        let Some(file) = self.log.as_mut() else { return };
        let room = self.log_cap.saturating_sub(self.log_written) as usize;
        let part = &bytes[..bytes.len().min(room)];
        let mut result = file.write_all(part);
        self.log_written += part.len() as u64;
        if result.is_ok() && part.len() < bytes.len() {
            let note = format!("\n[ptt: log cut at {} bytes; later output was not kept]\n", self.log_cap);
            result = file.write_all(note.as_bytes());
            self.log = None;
        }
        if let Err(e) = result {
            log::warn!("task {}: writing its log failed ({e}); output is still parsed", self.id);
            self.log_error = Some(format!("log write failed: {e}"));
            self.log = None;
        }
    }
}

impl Digest {
    /// Takes in one fact of a JSON line; returns the message for the loop it calls for, if any.
    fn on_fact(&mut self, fact: StreamFact<'_>, dir: &std::path::Path) -> Option<ReaperMsg> {
        match fact {
            StreamFact::Init { session_id, model } => {
                return Some(ReaperMsg::Init {
                    session_id: session_id.map(|s| s.into_owned()),
                    model: model.map(|m| m.into_owned()),
                });
            }
            StreamFact::Activity(a) => {
                self.push_tail(&format!("→ {a}"));
                self.activity = Some(a);
                self.activity_dirty = true;
            }
            StreamFact::FileWritten(path) => self.changes.note_file(&path, dir),
            StreamFact::RateLimit { status, resets_at, .. } => {
                let until = resets_at.filter(|_| status == "rejected");
                if let Some(at) = until {
                    self.push_tail(&format!("rate-limited until {at} (unix time)"));
                }
                return Some(ReaperMsg::RateLimit { until });
            }
            StreamFact::ApiRetry(r) => {
                self.push_tail(&r);
                self.activity = Some(r);
                self.activity_dirty = true;
            }
            StreamFact::Text(t) => {
                self.push_tail(&t);
                let last = self.last_text.get_or_insert_with(String::new);
                last.clear();
                clip_into(&t, 4000, last);
            }
            StreamFact::Result(r) => {
                if let Some(text) = &r.result {
                    self.push_tail(&format!("result: {text}"));
                }
                self.result = Some(*r);
            }
        }
        None
    }

    /// Takes in a line that is not JSON (stderr, a crash, garbage); `cut`: it was longer than [`MAX_LINE`].
    fn on_plain(&mut self, line: &[u8], cut: bool) {
        let text = String::from_utf8_lossy(line);
        let shown = self.last_plain.get_or_insert_with(String::new);
        shown.clear();
        clip_into(&text, TAIL_LINE_CHARS, shown);
        if cut {
            shown.push_str(" [line cut]");
        }
        push_tail(&mut self.tail, shown);
    }

    fn push_tail(&mut self, line: &str) {
        push_tail(&mut self.tail, line);
    }
}

/// Appends a line to the tail ring, reusing the buffer of the line it drops.
fn push_tail(tail: &mut VecDeque<String>, line: &str) {
    let mut slot = if tail.len() == TAIL_LINES { tail.pop_front().unwrap_or_default() } else { String::new() };
    slot.clear();
    // Room for a " [line cut]" marker after a clipped line.
    clip_into(line, TAIL_LINE_CHARS + 16, &mut slot);
    tail.push_back(slot);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::vfork_spawn;
    use std::os::fd::AsFd;

    fn run_script(script: &str, cap: u64) -> (Vec<ReaperMsg>, PathBuf) {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        let env: Vec<_> = std::env::vars_os().collect();
        let child = vfork_spawn::spawn(&vfork_spawn::Request {
            program: "/bin/sh".as_ref(),
            args: &["-c".into(), script.into()],
            env: &env,
            cwd: &std::env::temp_dir(),
            stdin: Some(null.as_fd()),
            stdout: Some(writer.as_fd()),
            stderr: Some(writer.as_fd()),
            umask: 0o022,
            own_group: false,
            death_signal: None,
        })
        .expect("spawn");
        drop(writer);
        let log = std::env::temp_dir().join(format!("ptt-reaper-{}.log", uuid::Uuid::new_v4()));
        let (tx, rx) = crossbeam_channel::unbounded();
        let changes = ChangeSpec { dir: std::env::temp_dir(), base: std::env::temp_dir() };
        let h = start("t1".into(), child, reader, LogSpec { path: log.clone(), cap_bytes: cap }, changes, tx)
            .expect("start");
        h.join().expect("join");
        (rx.try_iter().map(|e| e.msg).collect(), log)
    }

    fn finished(msgs: &[ReaperMsg]) -> &Finished {
        match msgs.last() {
            Some(ReaperMsg::Finished(f)) => f,
            other => panic!("last message is not Finished: {other:?}"),
        }
    }

    #[test]
    fn parses_init_activity_result_and_exit() {
        let script = r#"
echo '{"type":"system","subtype":"init","session_id":"s1","model":"m"}'
echo '{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Write","input":{"file_path":"a/b/c.txt"}}]}}'
echo 'plain stderr line' >&2
echo '{"type":"result","subtype":"success","is_error":false,"result":"Done.","total_cost_usd":0.5}'
exit 3"#;
        let (msgs, log) = run_script(script, 1 << 20);
        assert!(matches!(&msgs[0], ReaperMsg::Init { session_id: Some(s), .. } if s == "s1"));
        let f = finished(&msgs);
        assert!(f.tail.iter().any(|l| l == "→ writing b/c.txt"), "{:?}", f.tail);
        assert_eq!(f.exit_code, Some(3));
        assert_eq!(f.result.as_ref().and_then(|r| r.total_cost_usd), Some(0.5));
        assert_eq!(f.last_plain.as_deref(), Some("plain stderr line"));
        assert!(f.tail.iter().any(|l| l == "result: Done."), "{:?}", f.tail);
        let logged = std::fs::read_to_string(&log).expect("log");
        assert!(logged.contains("plain stderr line") && logged.contains("\"result\""));
    }

    #[test]
    fn the_tail_keeps_the_last_lines_whole_or_split_across_reads() {
        // 100 text lines (the tail ring turns over three times, reusing its buffers), then one line written
        // in two pieces with a pause between (parsed from the partial-line buffer), then a plain line.
        let script = r#"
i=1
while [ $i -le 100 ]; do
  echo "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"line $i\"}]}}"
  i=$((i+1))
done
printf '{"type":"assistant","message":{"content":[{"type":"text",'
sleep 0.2
printf '"text":"  split line  "}]}}\n'
echo 'a plain line'"#;
        let (msgs, _) = run_script(script, 1 << 20);
        let f = finished(&msgs);
        assert_eq!(f.tail.len(), TAIL_LINES);
        let expected: Vec<String> =
            (73..=100).map(|i| format!("line {i}")).chain(["split line".into(), "a plain line".into()]).collect();
        assert_eq!(f.tail, expected);
        assert_eq!(f.last_text.as_deref(), Some("split line"));
        assert_eq!(f.last_plain.as_deref(), Some("a plain line"));
    }

    #[test]
    fn log_is_capped_with_a_note_and_long_lines_are_cut() {
        let (msgs, log) = run_script("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo tail-line", 100_000);
        let f = finished(&msgs);
        assert_eq!(f.output_bytes, 3_000_000 + 1 + 10);
        let logged = std::fs::read(&log).expect("log");
        assert!(logged.len() < 100_200, "{}", logged.len());
        assert!(String::from_utf8_lossy(&logged).contains("[ptt: log cut at 100000 bytes"));
        assert_eq!(f.last_plain.as_deref(), Some("tail-line"));
        assert!(f.tail.iter().any(|l| l.ends_with("[line cut]")), "{:?}", f.tail);
    }

    #[test]
    fn exit_is_reported_while_a_grandchild_holds_the_pipe() {
        let started = Instant::now();
        let (msgs, _) = run_script("setsid sleep 20 & echo \"grandchild $!\"; exit 0", 1 << 20);
        let f = finished(&msgs);
        assert_eq!(f.exit_code, Some(0));
        assert!(started.elapsed() < Duration::from_secs(10), "did not wait for the grandchild");
        let pid: i32 = f
            .last_plain
            .as_deref()
            .and_then(|l| l.strip_prefix("grandchild "))
            .and_then(|p| p.parse().ok())
            .expect("grandchild pid");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }

    #[test]
    fn killed_by_signal() {
        let (msgs, _) = run_script("kill -9 $$", 1 << 20);
        assert_eq!(finished(&msgs).exit_signal, Some(9));
    }
}
