//! ptt side by side with a reference supervisor, on the two latencies a user feels.
//!
//! Run with `scripts/bench --side-by-side` (or `cargo bench --bench side_by_side -- [--quick]`). One static C fake
//! child (`benches/side_by_side/fake_child.c`, built here with `cc -O2 -static`) is started through three peers,
//! interleaved task by task (the order alternates), so that load from elsewhere on the machine hits all alike:
//!
//! - **ptt**: the release-built `ptt run` in a throw-away home (`PTT_LOG=info`, default config apart from the
//!   child and `share_dirs`), driven over its control socket, with a `subscribe` connection for events;
//! - **reference**: `benches/side_by_side/reference.py`, a minimal asyncio loop doing what the Python app's
//!   TaskManager did (spawn, read lines, await the exit, call back), speaking the same JSON lines;
//! - **floor**: this process itself spawning the child with `std::process::Command` (no `pre_exec`), writing the
//!   prompt, reading to end of file and waiting: what the kernel and the exec cost, with no supervisor.
//!
//! Per task: **start** is from the wall-clock time the request is written to the child's first instruction (the
//! child stamps `CLOCK_REALTIME` first thing in `main`); **reply** is from the write of the request to the read of
//! the reply line; **exit → event** is from the child's last act before `_exit` (it stamps the time) to the read of
//! the `task_ended` line by the subscriber thread. Tasks run one at a time, back to back: each supervisor's work
//! after an event (registry writes, sweeps, cues) overlaps the next start, as it would in a burst.
//!
//! With `PTT_BASELINE=/path/to/an/older/ptt` a fourth peer, **baseline**, runs that binary the same way, for
//! before/after figures taken in one interleaved run (a shared machine's load then hits both alike).
//!
//! Full mode: 5 rounds of 200 tasks per peer (ptt's registry is full, `keep_ended = 200`, from the second round on);
//! `--quick`: 1 round of 200. Prints p50/p99 per peer, ptt/reference ratios, and the targets of issue 11.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::TestHome;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{Value, json};

const TASK_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let mut quick = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--bench" => {}
            "-h" | "--help" => {
                println!("usage: cargo bench --bench side_by_side -- [--quick]");
                return;
            }
            other => {
                eprintln!("side_by_side: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let (rounds, per_round) = if quick { (1, 200) } else { (5, 200) };
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("== side by side: ptt, the reference asyncio supervisor and the bare spawn floor");
    println!("machine: {cpus} CPU(s); {rounds} round(s) x {per_round} tasks per peer, interleaved");
    println!("load average at the start: {}", load());

    let scratch = tempfile::Builder::new().prefix("ptt-sbs-").tempdir().expect("tempdir");
    let child = build_child(scratch.path());
    let mut peers: Vec<Box<dyn Peer>> = vec![
        Box::new(Ptt::start(&child, None)),
        Box::new(Reference::start(&child, scratch.path())),
        Box::new(Floor::new(&child)),
    ];
    if let Some(baseline) = std::env::var_os("PTT_BASELINE") {
        println!("baseline: {}", PathBuf::from(&baseline).display());
        peers.push(Box::new(Ptt::start(&child, Some(PathBuf::from(baseline)))));
    }
    let dir = scratch.path().join("work");
    std::fs::create_dir_all(&dir).expect("mkdir work");

    let mut samples: Vec<Samples> = peers.iter().map(|_| Samples::default()).collect();
    let mut n = 0usize;
    for round in 0..rounds {
        let mut round_samples: Vec<Samples> = peers.iter().map(|_| Samples::default()).collect();
        for _ in 0..per_round {
            // Alternate the order, so that neither peer always runs right after the other.
            let order: Vec<usize> =
                if n.is_multiple_of(2) { (0..peers.len()).collect() } else { (0..peers.len()).rev().collect() };
            for p in order {
                let stamp = scratch.path().join(format!("stamp-{p}-{n}"));
                let one = peers[p].run_one(&stamp, &dir, n);
                round_samples[p].push(&one);
                samples[p].push(&one);
            }
            n += 1;
        }
        let medians: Vec<String> = peers
            .iter()
            .zip(&mut round_samples)
            .map(|(peer, s)| {
                format!(
                    "{} start {:.3} / exit->event {:.3}",
                    peer.name(),
                    pct(&mut s.start, 50.0),
                    pct(&mut s.exit, 50.0)
                )
            })
            .collect();
        println!("round {}: p50 ms: {} (load {})", round + 1, medians.join("; "), load());
    }
    for p in &mut peers {
        p.check();
    }
    println!("load average at the end: {}", load());
    println!();
    report(&peers, &mut samples);
}

/// Builds the fake child, static, into `dir`. Fails loudly without a C compiler or a static libc.
fn build_child(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/side_by_side/fake_child.c");
    let out = dir.join("fake-claude");
    let built = Command::new("cc").args(["-O2", "-static", "-o"]).arg(&out).arg(&src).output();
    match built {
        Ok(o) if o.status.success() => out,
        Ok(o) => panic!("cc -static failed (install gcc and libc6-dev): {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("cannot run cc ({e}): install gcc and libc6-dev"),
    }
}

/// One task's figures, in milliseconds.
struct One {
    start: f64,
    reply: f64,
    exit: f64,
}

#[derive(Default)]
struct Samples {
    start: Vec<f64>,
    reply: Vec<f64>,
    exit: Vec<f64>,
}

impl Samples {
    fn push(&mut self, one: &One) {
        self.start.push(one.start);
        self.reply.push(one.reply);
        self.exit.push(one.exit);
    }
}

/// Nearest-rank percentile.
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

fn wall_ns(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH).expect("clock").as_nanos() as i128
}

/// The child's stamps: (first instruction, exit), in ns since the epoch.
fn read_stamp(path: &Path) -> (i128, i128) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no stamp at {}: {e}", path.display()));
    let mut it = text.split_whitespace().map(|s| s.parse::<i128>().expect("stamp"));
    let (Some(first), Some(exit)) = (it.next(), it.next()) else { panic!("bad stamp {text:?}") };
    let _ = std::fs::remove_file(path);
    (first, exit)
}

fn ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

trait Peer {
    fn name(&self) -> &'static str;
    fn run_one(&mut self, stamp: &Path, dir: &Path, n: usize) -> One;
    /// Panics if the peer died or a task failed.
    fn check(&mut self) {}
}

/// A JSON-lines connection (ptt's control socket, or the reference's) plus a subscription reader thread.
struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    events: Receiver<(Value, SystemTime)>,
    failed: usize,
}

impl Client {
    fn connect(socket: &Path) -> Client {
        let mut sub = UnixStream::connect(socket).expect("connect (subscribe)");
        sub.write_all(b"{\"cmd\":\"subscribe\"}\n").expect("subscribe");
        let mut sub_reader = BufReader::new(sub);
        let mut first = String::new();
        sub_reader.read_line(&mut first).expect("subscribe reply");
        assert!(first.contains("\"subscribed\""), "subscribe refused: {first}");
        let (tx, events) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match sub_reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let wall = SystemTime::now();
                let Ok(mut v) = serde_json::from_str::<Value>(&line) else { continue };
                if v["event"] == "task_ended" && tx.send((v["task"].take(), wall)).is_err() {
                    return;
                }
            }
        });
        let writer = UnixStream::connect(socket).expect("connect");
        writer.set_read_timeout(Some(TASK_TIMEOUT)).expect("timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone"));
        Client { writer, reader, events, failed: 0 }
    }

    fn run_one(&mut self, stamp: &Path, dir: &Path, n: usize) -> One {
        let request = json!({"cmd": "start", "text": stamp, "name": format!("sbs {n}"), "dir": dir});
        let mut line = serde_json::to_vec(&request).expect("json");
        line.push(b'\n');
        let mut reply = String::new();
        let sent = SystemTime::now();
        let t0 = Instant::now();
        self.writer.write_all(&line).expect("send");
        self.reader.read_line(&mut reply).expect("reply");
        let reply_ms = t0.elapsed().as_secs_f64() * 1e3;
        let v: Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply ({e}): {reply:?}"));
        assert_eq!(v["status"], "started", "start refused: {v}");
        let id = v["task_id"].as_str().expect("task_id").to_string();
        let deadline = Instant::now() + TASK_TIMEOUT;
        let (task, at) = loop {
            match self.events.recv_deadline(deadline) {
                Ok((t, at)) if t["id"] == id.as_str() => break (t, at),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("task {id} did not end within {TASK_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the event subscription was dropped"),
            }
        };
        if task["state"] != "succeeded" {
            self.failed += 1;
        }
        let (first, exit) = read_stamp(stamp);
        One { start: ms(first - wall_ns(sent)), reply: reply_ms, exit: ms(wall_ns(at) - exit) }
    }
}

struct Ptt {
    home: TestHome,
    daemon: common::Daemon,
    client: Client,
    baseline: bool,
}

impl Ptt {
    /// This build's `ptt run`, or (`baseline`) another binary run the same way.
    fn start(child: &Path, baseline: Option<PathBuf>) -> Ptt {
        let mut home = TestHome::empty();
        home.env.push(("PTT_LOG".into(), "info".into()));
        home.write_config(&format!(
            "[tasks]\nclaude = \"{}\"\nshare_dirs = true\nbudget_usd = 0\nkill_grace_s = 1\n",
            child.display()
        ));
        let is_baseline = baseline.is_some();
        let daemon = match baseline {
            None => home.start_daemon(),
            Some(bin) => start_other(&home, &bin),
        };
        let client = Client::connect(&home.runtime_dir().join("control.sock"));
        Ptt { home, daemon, client, baseline: is_baseline }
    }
}

/// `bin run` with the environment `TestHome::cmd` gives, ready once it answers `status`.
fn start_other(home: &TestHome, bin: &Path) -> common::Daemon {
    let log = home.dir.path().join("baseline-daemon.log");
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("HOME", home.home())
        .env("XDG_RUNTIME_DIR", home.dir.path().join("run"))
        .env("LANG", "C.UTF-8")
        .current_dir(home.home())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    for (k, v) in &home.env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn the baseline daemon");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !home.run(&["status", "--json"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "baseline daemon not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    common::Daemon { child: Some(child), log }
}

impl Peer for Ptt {
    fn name(&self) -> &'static str {
        if self.baseline { "baseline" } else { "ptt" }
    }
    fn run_one(&mut self, stamp: &Path, _dir: &Path, n: usize) -> One {
        // ptt only runs tasks under its allowed roots (the home by default).
        let dir = self.home.work("sbs");
        self.client.run_one(stamp, &dir, n)
    }
    fn check(&mut self) {
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.daemon.pid()), None).is_ok();
        assert!(alive, "ptt died: {}", self.daemon.log_text());
        assert_eq!(self.client.failed, 0, "ptt: tasks failed: {}", self.daemon.log_text());
    }
}

struct Reference {
    process: Child,
    client: Client,
}

impl Reference {
    fn start(child: &Path, scratch: &Path) -> Reference {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/side_by_side/reference.py");
        let socket = scratch.join("reference.sock");
        let mut process = Command::new("python3")
            .arg(&script)
            .arg(&socket)
            .arg(child)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (the reference supervisor)");
        let mut ready = String::new();
        BufReader::new(process.stdout.take().expect("stdout")).read_line(&mut ready).expect("reference ready line");
        assert_eq!(ready.trim(), "ready", "the reference supervisor did not start");
        let client = Client::connect(&socket);
        Reference { process, client }
    }
}

impl Peer for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }
    fn run_one(&mut self, stamp: &Path, dir: &Path, n: usize) -> One {
        self.client.run_one(stamp, dir, n)
    }
    fn check(&mut self) {
        assert!(matches!(self.process.try_wait(), Ok(None)), "the reference supervisor died");
        assert_eq!(self.client.failed, 0, "reference: tasks failed");
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// No supervisor: spawn, feed, read to end of file, wait, in this thread.
struct Floor {
    child: PathBuf,
}

impl Floor {
    fn new(child: &Path) -> Floor {
        Floor { child: child.to_path_buf() }
    }
}

impl Peer for Floor {
    fn name(&self) -> &'static str {
        "floor"
    }
    fn run_one(&mut self, stamp: &Path, dir: &Path, _n: usize) -> One {
        let sent = SystemTime::now();
        let t0 = Instant::now();
        let mut c = Command::new(&self.child)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn the fake child");
        let reply_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut stdin = c.stdin.take().expect("stdin");
        stdin.write_all(stamp.as_os_str().as_encoded_bytes()).expect("prompt");
        drop(stdin);
        let mut out = Vec::new();
        c.stdout.take().expect("stdout").read_to_end(&mut out).expect("read");
        let status = c.wait().expect("wait");
        let at = SystemTime::now();
        assert!(status.success(), "the fake child failed: {status}");
        let (first, exit) = read_stamp(stamp);
        One { start: ms(first - wall_ns(sent)), reply: reply_ms, exit: ms(wall_ns(at) - exit) }
    }
}

fn report(peers: &[Box<dyn Peer>], samples: &mut [Samples]) {
    let idx = |name: &str| peers.iter().position(|p| p.name() == name).expect("peer");
    let (ptt, refr) = (idx("ptt"), idx("reference"));
    let baseline = peers.iter().position(|p| p.name() == "baseline");
    let extra = if baseline.is_some() { " baseline ptt |" } else { "" };
    let extra_rule = if baseline.is_some() { "---|" } else { "" };
    println!("| figure | floor (no supervisor) | reference (asyncio) |{extra} ptt | ptt / reference | target |");
    println!("|---|---|---|---|---|---|{extra_rule}");
    type Pick = fn(&mut Samples) -> &mut Vec<f64>;
    let figures: [(&str, Pick, [Option<f64>; 2]); 3] = [
        ("child exit → task-ended event", |s| &mut s.exit, [Some(0.5), Some(1.0)]),
        ("start request → child's first instruction", |s| &mut s.start, [Some(0.8), Some(1.5)]),
        ("start request → reply", |s| &mut s.reply, [None, Some(2.0)]),
    ];
    for (label, pick, target) in figures {
        let mut cells = Vec::new();
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for s in samples.iter_mut() {
            let v = pick(s);
            let (a, b) = (pct(v, 50.0), pct(v, 99.0));
            cells.push(format!("{a:.3} / {b:.3} ms"));
            p50s.push(a);
            p99s.push(b);
        }
        let ratio = format!("{:.2}× / {:.2}×", p50s[ptt] / p50s[refr], p99s[ptt] / p99s[refr]);
        let met = |t: Option<f64>, v: f64| t.map(|t| if v <= t { "met" } else { "**missed**" });
        let target_text = match target {
            [Some(a), Some(b)] => format!(
                "p50 ≤ {a} ms ({}), p99 ≤ {b} ms ({})",
                met(Some(a), p50s[ptt]).unwrap_or(""),
                met(Some(b), p99s[ptt]).unwrap_or("")
            ),
            [None, Some(b)] => format!("p99 ≤ {b} ms ({})", met(Some(b), p99s[ptt]).unwrap_or("")),
            _ => "reported".into(),
        };
        let base_cell = baseline.map(|b| format!(" {} |", cells[b])).unwrap_or_default();
        println!(
            "| {label}, p50 / p99 (n = {}) | {} | {} |{base_cell} {} | {ratio} | {target_text} |",
            pick(&mut samples[ptt]).len(),
            cells[idx("floor")],
            cells[refr],
            cells[ptt]
        );
    }
}
