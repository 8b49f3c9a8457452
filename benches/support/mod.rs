//! What the daemon benchmarks (`benches/daemon.rs`, `benches/stream.rs`) share: a request/reply connection
//! to the control socket, an event subscription that timestamps each `task_ended` line as it arrives, the
//! `/proc` readings, and the result table. Not a bench target of its own (Cargo only builds `benches/*.rs`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{Value, json};

use crate::common::{Daemon, TestHome};

/// How long one request may wait for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// One figure of the result table.
pub struct Row {
    pub metric: String,
    pub result: String,
    pub target: &'static str,
    /// `None` when the figure has no target.
    pub pass: Option<bool>,
}

/// Prints the rows as the Markdown table `docs/benchmarks.md` takes.
pub fn print_table(rows: &[Row]) {
    println!("| Metric | Result | Target | Pass |");
    println!("|---|---|---|---|");
    for r in rows {
        let pass = match r.pass {
            Some(true) => "pass",
            Some(false) => "**FAIL**",
            None => "—",
        };
        println!("| {} | {} | {} | {pass} |", r.metric, r.result, r.target);
    }
}

pub fn socket(home: &TestHome) -> PathBuf {
    home.runtime_dir().join("control.sock")
}

/// Panics with the daemon's log if it died during a benchmark.
pub fn check_alive(daemon: &Daemon) {
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid()), None).is_ok();
    assert!(alive, "the daemon died during the benchmark: {}", daemon.log_text());
}

/// A request/reply connection to the control socket.
pub struct Control {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Control {
    pub fn connect(home: &TestHome) -> Control {
        let writer = UnixStream::connect(socket(home)).expect("connect to the control socket");
        writer.set_read_timeout(Some(REPLY_TIMEOUT)).expect("read timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone stream"));
        Control { writer, reader }
    }

    /// Sends one request; returns the reply and the time from write to reply.
    pub fn timed(&mut self, request: &Value) -> (Value, Duration) {
        let mut line = serde_json::to_vec(request).expect("serialize");
        line.push(b'\n');
        let mut reply = String::new();
        let t0 = Instant::now();
        self.writer.write_all(&line).expect("send request");
        self.reader.read_line(&mut reply).expect("read reply");
        let took = t0.elapsed();
        let value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply ({e}): {reply:?}"));
        (value, took)
    }

    pub fn request(&mut self, request: &Value) -> Value {
        self.timed(request).0
    }
}

/// A `task_ended` event and when it was read.
pub struct Ended {
    pub task: Value,
    pub wall: SystemTime,
    pub at: Instant,
}

/// An event stream, read by a thread that timestamps each `task_ended` line as it arrives.
pub struct Subscription {
    stream: UnixStream,
    rx: Receiver<Ended>,
}

impl Subscription {
    pub fn open(home: &TestHome) -> Subscription {
        let mut stream = UnixStream::connect(socket(home)).expect("connect to the control socket");
        stream.write_all(b"{\"cmd\":\"subscribe\"}\n").expect("subscribe");
        let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
        let mut first = String::new();
        reader.read_line(&mut first).expect("subscribe reply");
        assert!(first.contains("\"subscribed\""), "subscribe refused: {first}");
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let (wall, at) = (SystemTime::now(), Instant::now());
                let Ok(mut event) = serde_json::from_str::<Value>(&line) else { continue };
                if event["event"] == "task_ended" && tx.send(Ended { task: event["task"].take(), wall, at }).is_err() {
                    return;
                }
            }
        });
        Subscription { stream, rx }
    }

    /// The `task_ended` event of task `id` (earlier ends of other tasks are dropped).
    pub fn wait_ended(&self, id: &str, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(e) if e.task["id"] == id => return e,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("task {id} did not end within {timeout:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the daemon dropped the event subscription"),
            }
        }
    }

    /// The `task_ended` events of all of `ids`. Should the daemon drop this
    /// subscriber (it drops those that fall behind), the remaining tasks are
    /// polled with `show` instead, and their end times are the poll times.
    pub fn wait_all_ended(&self, ctl: &mut Control, mut ids: Vec<String>, timeout: Duration) -> HashMap<String, Ended> {
        let deadline = Instant::now() + timeout;
        let mut ended = HashMap::new();
        while !ids.is_empty() {
            match self.rx.recv_deadline(deadline) {
                Ok(e) => {
                    if let Some(i) = ids.iter().position(|id| e.task["id"] == id.as_str()) {
                        ended.insert(ids.swap_remove(i), e);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("{} task(s) did not end within {timeout:?}", ids.len()),
                Err(RecvTimeoutError::Disconnected) => {
                    println!("(the daemon dropped the event subscriber; polling the remaining {} task(s))", ids.len());
                    while !ids.is_empty() {
                        assert!(Instant::now() < deadline, "{} task(s) did not end within {timeout:?}", ids.len());
                        ids.retain(|id| {
                            let reply = ctl.request(&json!({"cmd": "show", "reference": id}));
                            if reply["task"]["state"] == "running" {
                                return true;
                            }
                            let (wall, at) = (SystemTime::now(), Instant::now());
                            ended.insert(id.clone(), Ended { task: reply["task"].clone(), wall, at });
                            false
                        });
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
        ended
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A field of `/proc/PID/status` in kB (0 when unreadable).
pub fn proc_status_kb(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Clock ticks per second (`/proc/PID/stat`'s unit).
pub fn clock_hz() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces:
    // the first one is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).expect("utime/stime");
    field(11) + field(12)
}
