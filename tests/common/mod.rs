//! Shared harness for the integration tests: a throw-away home with its own
//! XDG directories, the real `ptt` binary, a daemon that is stopped when the
//! test ends, and polling helpers.
#![allow(dead_code)]

pub mod anthropic_stub;
pub mod fake_realtime;
pub mod http;
pub mod model;
pub mod model_server;
pub mod pulse;
pub mod sway;
pub mod transcribe_stub;
pub mod xterm;
pub mod xvfb;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PTT: &str = env!("CARGO_BIN_EXE_ptt");

/// The scriptable fake Claude CLI.
pub fn fake_claude() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-claude/claude")
}

/// A temporary home: config, state and runtime directories of its own.
pub struct TestHome {
    pub dir: tempfile::TempDir,
    /// Extra variables for the daemon and clients.
    pub env: Vec<(String, String)>,
}

impl TestHome {
    /// A home whose config is `[tasks] claude = <fake>` plus `extra` (TOML
    /// appended inside `[tasks]` unless it opens its own tables).
    pub fn with_fake(extra_tasks: &str) -> TestHome {
        let home = TestHome::empty();
        home.write_config(&format!(
            "[tasks]\nclaude = \"{}\"\nkill_grace_s = 1\n{extra_tasks}\n",
            fake_claude().display()
        ));
        home
    }

    pub fn empty() -> TestHome {
        let dir = tempfile::Builder::new().prefix("ptt-test-").tempdir().expect("tempdir");
        for sub in ["home", "run", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::set_permissions(dir.path().join("run"), std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        // The daemon's model lifecycle check would reach api.openai.com from homes that do not point
        // `live.url` at a fake; tests that check it remove this.
        TestHome { dir, env: vec![("PTT_MODEL_CHECK".into(), "off".into())] }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    /// A directory under the home (an allowed root by default) for tasks to run in.
    pub fn work(&self, name: &str) -> PathBuf {
        let d = self.home().join("work").join(name);
        std::fs::create_dir_all(&d).expect("mkdir work");
        d
    }
    pub fn config_path(&self) -> PathBuf {
        self.home().join(".config/ptt/config.toml")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.home().join(".local/state/ptt")
    }
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run/ptt")
    }
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join("work").join(name)
    }

    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.config_path().parent().expect("parent")).expect("mkdir");
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// A `ptt` command with a clean environment pointing at this home.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(PTT);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
            .env("HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("LANG", "C.UTF-8")
            .env("PTT_LOG", "debug")
            .current_dir(self.home());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Sends the daemon a `sync` request and waits for its answer, which comes once everything the daemon had
    /// received before it (key edges, task ends, frames, control requests) has been handled. Tests wait for this
    /// fact instead of sleeping before they assert that something did not happen.
    pub fn sync(&self) {
        use std::io::{BufRead, BufReader, Write};
        let sock = self.runtime_dir().join("control.sock");
        let mut stream = std::os::unix::net::UnixStream::connect(&sock)
            .unwrap_or_else(|e| panic!("sync: cannot connect to {}: {e}", sock.display()));
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("sync: read timeout");
        stream.write_all(b"{\"cmd\":\"sync\"}\n").expect("sync: send");
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("sync: no answer within 20 s");
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("sync: bad answer {line:?}: {e}"));
        assert_eq!(answer["synced"], true, "sync: {answer}");
    }

    /// Subscribes to the daemon's events the way `ptt watch` does, and returns once the daemon has confirmed
    /// (`{"subscribed":true}`): every event after that moment arrives.
    pub fn subscribe(&self) -> Events {
        let lines = self.subscribed();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Events { rx, seen: std::cell::RefCell::new(Vec::new()) }
    }

    /// The daemon's `event` events, each with the instant it arrived (for benches: the latency a client sees).
    pub fn timed_events(&self, event: &'static str) -> crossbeam_channel::Receiver<(Instant, Value)> {
        let lines = self.subscribed();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["event"] == event
                    && tx.send((Instant::now(), v)).is_err()
                {
                    return;
                }
            }
        });
        rx
    }

    /// A subscription's lines once the daemon has confirmed it (`{"subscribed":true}`).
    fn subscribed(&self) -> std::io::Lines<std::io::BufReader<std::os::unix::net::UnixStream>> {
        use std::io::{BufRead, BufReader, Write};
        let sock = self.runtime_dir().join("control.sock");
        let mut stream = std::os::unix::net::UnixStream::connect(&sock)
            .unwrap_or_else(|e| panic!("subscribe: cannot connect to {}: {e}", sock.display()));
        stream.write_all(b"{\"cmd\":\"subscribe\"}\n").expect("subscribe: send");
        let mut lines = BufReader::new(stream).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<Value>(&first).ok(),
            Some(serde_json::json!({"subscribed": true})),
            "{first}"
        );
        lines
    }

    /// Runs a client command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().expect("run ptt")
    }

    /// Runs a client command and parses its stdout as JSON (panics with the
    /// command's output when it fails).
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "ptt {args:?} failed: {}", describe(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ptt {args:?}: bad JSON ({e}): {}", describe(&out)))
    }

    /// Starts `ptt run` and waits until it answers on its socket.
    pub fn start_daemon(&self) -> Daemon {
        let log = self.dir.path().join(format!("daemon-{}.log", uuid::Uuid::new_v4()));
        let stderr = std::fs::File::create(&log).expect("log");
        let mut child =
            self.cmd(&["run"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn().expect("spawn daemon");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("daemon exited early ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            let out = self.run(&["status", "--json"]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child: Some(child), log }
    }

    /// Starts `ptt dictate --once` and returns once it says the microphone is open (what is played into
    /// it from then on is recorded).
    pub fn dictate_once(&self, timeout: Duration) -> DictateOnce {
        let mut child = self
            .cmd(&["dictate", "--once"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ptt dictate --once");
        let stderr = wait_stderr(&mut child, "recording…", timeout);
        DictateOnce { child, stderr }
    }

    /// The sound server `pulse_env` started (`PULSE_SERVER`), for the daemon and the CLI.
    pub fn use_pulse(&mut self) {
        let server = std::env::var("PULSE_SERVER").unwrap_or_else(|_| panic!("pulse_env exports PULSE_SERVER"));
        self.env.push(("PULSE_SERVER".into(), server));
    }

    /// Starts a task and returns its id (panics with the reply on refusal).
    pub fn start_task(&self, script: &Value, name: &str, dir: &Path) -> String {
        let v = self.start_task_json(script, name, dir);
        assert_eq!(v["status"], "started", "start refused: {v}");
        v["task_id"].as_str().expect("task_id").to_string()
    }

    /// `ptt task start --json`: the daemon's reply, whatever it says.
    pub fn start_task_json(&self, script: &Value, name: &str, dir: &Path) -> Value {
        let out = self.run(&[
            "task",
            "start",
            &script.to_string(),
            "--name",
            name,
            "--dir",
            dir.to_str().expect("utf8"),
            "--json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("start: {}", describe(&out)))
    }

    pub fn task(&self, id: &str) -> Value {
        self.json(&["task", "show", id, "--json"])
    }

    /// Waits until task `id` is no longer running (nor waiting for an answer); returns its view.
    pub fn wait_ended(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.task(id);
            if t["state"] != "running" && t["state"] != "waiting" {
                return t;
            }
            assert!(Instant::now() < deadline, "task {id} still running after {timeout:?}: {t:#}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl TestHome {
    /// Waits until task `id` waits for a permission answer; returns its view.
    pub fn wait_waiting(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.task(id);
            if t["state"] == "waiting" {
                return t;
            }
            assert!(t["state"] == "running", "task {id} ended instead of asking: {t:#}");
            assert!(Instant::now() < deadline, "task {id} did not ask within {timeout:?}: {t:#}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// A running daemon; SIGTERMed (then SIGKILLed) when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill daemon");
    }

    /// Waits for the daemon to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("daemon child");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon did not exit within {timeout:?}: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (up to `timeout`) until `child` writes a line containing `needle` on its (piped) stderr: a fact
/// the program states, instead of a sleep. The handle returns everything the child wrote there.
pub fn wait_stderr(child: &mut Child, needle: &str, timeout: Duration) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr must be piped");
    let (tx, rx) = crossbeam_channel::bounded(1);
    let wanted = needle.to_string();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut lines = std::io::BufReader::new(stderr);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if String::from_utf8_lossy(&line).contains(&wanted) {
                let _ = tx.try_send(());
            }
            all.append(&mut line);
        }
        all
    });
    if rx.recv_timeout(timeout).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        let said = reader.join().unwrap_or_default();
        panic!("no {needle:?} on stderr within {timeout:?}; it said: {}", String::from_utf8_lossy(&said));
    }
    reader
}

/// `ptt dictate --once` with piped stdio, started by [`TestHome::dictate_once`].
pub struct DictateOnce {
    pub child: Child,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl DictateOnce {
    /// Presses Enter: the recording ends.
    pub fn enter(&mut self) {
        use std::io::Write;
        self.child.stdin.take().expect("stdin").write_all(b"\n").expect("enter");
    }

    /// Waits for the end: the output, with everything the command wrote on stderr.
    pub fn finish(self) -> Output {
        let mut out = self.child.wait_with_output().expect("wait");
        out.stderr = self.stderr.join().unwrap_or_default();
        out
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pids of live processes (of any uid we can read) whose environment carries
/// `PTT_TASK_ID=uuid`.
pub fn processes_of_task(uuid: &str) -> Vec<i32> {
    let uid = nix::unistd::geteuid().as_raw();
    ptt::tasks::sweep::scan(uid).into_iter().filter(|p| p.task_uuid == uuid).map(|p| p.pid).collect()
}

/// The daemon's events, from [`TestHome::subscribe`].
pub struct Events {
    rx: std::sync::mpsc::Receiver<Value>,
    seen: std::cell::RefCell<Vec<Value>>,
}

impl Events {
    /// Every event received so far by [`Events::wait_for`] calls, in order.
    pub fn seen(&self) -> Vec<Value> {
        self.seen.borrow().clone()
    }

    /// The first event (from the start of the subscription) that `pred` accepts; panics after `timeout`,
    /// listing the events seen.
    pub fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.borrow().iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.seen.borrow_mut().push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("no event {what} within {timeout:?}; seen: {:#?}", self.seen.borrow()),
            }
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a file that a child writes, waiting for it to appear and be complete JSON.
pub fn read_json_file(path: &Path, timeout: Duration) -> Value {
    let mut value = Value::Null;
    wait_until(timeout, &format!("{}", path.display()), || {
        match std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
            Some(v) => {
                value = v;
                true
            }
            None => false,
        }
    });
    value
}
