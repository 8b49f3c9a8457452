//! Benchmarks of the `ptt` daemon against its performance targets.
//!
//! Run with `scripts/bench` (or `cargo bench --bench daemon -- [--quick]`). Every
//! figure comes from the real release-built `ptt` binary, run as `ptt run` in a
//! throw-away home (the integration tests' [`common::TestHome`]) with
//! `PTT_LOG=info`, the production log level; each benchmark gets a fresh daemon.
//!
//! 1. **Task start round trip.** One connection to the control socket sends
//!    `{"cmd":"start",...}` lines back to back; each is timed from the write of
//!    the request to the read of its reply line, which includes the fork/exec
//!    of the child. The child is a `#!/bin/sh` fake Claude that prints an init
//!    and a result line and exits. `status` is polled every few starts to stay
//!    well below `max_concurrent = 64`; refusals are counted. Target: p99 <= 5 ms.
//! 2. **Child exit to `task_ended` event.** A subscriber connection timestamps
//!    every event line with `SystemTime::now()` as it is read. Tasks run one at a
//!    time; the fake child (Python) prints its result, writes `time.time_ns()`
//!    to a file as its last act and `os._exit(0)`s. The delta between the two
//!    wall-clock times is the latency the daemon adds. Reported, no target.
//! 3. **Idle RSS and CPU.** A fresh daemon, 1 s to settle, then `VmRSS` from
//!    `/proc/PID/status` and utime+stime from `/proc/PID/stat` before and after
//!    an idle window of 60 s. Targets: RSS <= 12 MB, CPU <= 0.1 %.
//! 4. **Flood.** 100 concurrent tasks of the scriptable fake
//!    (`tests/fake-claude/claude`), each printing 20 MiB of stream-json and a
//!    result carrying a marker of its own. The daemon's `VmRSS` is sampled every
//!    50 ms and `VmHWM` read at the end; wall time runs from the first start
//!    request to the last `task_ended` event. Every task must succeed with its
//!    own marker in its summary. Target: peak RSS <= 64 MB, every result
//!    attributed.
//!
//! `--quick` is a smoke run: 100 starts, 30 exits, a 10 s idle window and
//! 20 tasks x 5 MiB. The figures are printed one per line, then as a Markdown
//! table for `docs/benchmarks.md`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::TestHome;
use serde_json::json;
use support::{Control, Row, Subscription, check_alive, cpu_ticks, print_table, proc_status_kb};

/// How long any single task may take before the benchmark gives up.
const TASK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the flood may take in all.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(900);

/// The sizes of one run.
struct Plan {
    quick: bool,
    starts: usize,
    exits: usize,
    idle: Duration,
    flood_tasks: usize,
    flood_mb: u32,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan { quick, starts: 100, exits: 30, idle: Duration::from_secs(10), flood_tasks: 20, flood_mb: 5 }
        } else {
            Plan { quick, starts: 500, exits: 100, idle: Duration::from_secs(60), flood_tasks: 100, flood_mb: 20 }
        }
    }
}

fn main() {
    let mut quick = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            "-h" | "--help" => {
                println!("usage: scripts/bench [--quick]");
                return;
            }
            other => {
                eprintln!("bench: unknown argument {other:?} (usage: scripts/bench [--quick])");
                std::process::exit(2);
            }
        }
    }
    let plan = Plan::new(quick);
    print_machine(&plan);
    let mut rows = Vec::new();
    rows.extend(bench_start_round_trip(&plan));
    rows.extend(bench_exit_to_event(&plan));
    rows.extend(bench_idle(&plan));
    rows.extend(bench_flood(&plan));
    print_table(&rows);
}

/// Prints a section title with the machine's load average: other work on the
/// machine shows in the latencies.
fn section(title: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("== {title} (load average {})", load.join(" "));
}

fn print_machine(plan: &Plan) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown".into());
    let version = std::process::Command::new(common::PTT)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    println!("machine: {cpus} CPU(s), {model}");
    println!("version: {version} (release build)");
    println!("mode:    {}", if plan.quick { "--quick (smoke run, reduced sizes)" } else { "full" });
    println!();
}

// ---------------------------------------------------------------------------
// 1. Task start round trip

/// A fake Claude that answers at once.
const QUICK_CLAUDE: &str = r#"#!/bin/sh
echo '{"type":"system","subtype":"init","session_id":"bench","model":"fake"}'
echo '{"type":"result","subtype":"success","is_error":false,"result":"Done.","total_cost_usd":0,"num_turns":1}'
"#;

fn bench_start_round_trip(plan: &Plan) -> Vec<Row> {
    section(&format!("1. task start round trip over the control socket ({} starts)", plan.starts));
    let home = bench_home();
    let claude = write_script(&home, "quick-claude", QUICK_CLAUDE);
    home.write_config(&format!(
        "[tasks]\nclaude = \"{}\"\nmax_concurrent = 64\nshare_dirs = true\nbudget_usd = 0\nkill_grace_s = 1\n",
        claude.display()
    ));
    let daemon = home.start_daemon();
    let mut ctl = Control::connect(&home);
    let dir = home.work("shared");
    let mut times = Vec::with_capacity(plan.starts);
    let mut refusals: HashMap<String, usize> = HashMap::new();
    for i in 0..plan.starts {
        // At most 16 starts between checks: never more than 56 running.
        if i % 16 == 0 {
            wait_running_at_most(&mut ctl, 40, 16);
        }
        let request =
            json!({"cmd": "start", "text": format!("benchmark start {i}"), "name": format!("bench {i}"), "dir": dir});
        let (reply, took) = ctl.timed(&request);
        times.push(took);
        if reply["status"] != "started" {
            let why = reply["reason"].as_str().or(reply["error"].as_str()).unwrap_or("unknown").to_string();
            *refusals.entry(why).or_default() += 1;
        }
    }
    wait_running_at_most(&mut ctl, 0, 0);
    check_alive(&daemon);
    let refused: usize = refusals.values().sum();
    let blocks: Vec<String> = times.chunks(100).map(|c| format!("{:.2}", Stats::of(&mut c.to_vec()).p50)).collect();
    let registry_kb = std::fs::metadata(home.state_dir().join("tasks.json")).map(|m| m.len() / 1024).unwrap_or(0);
    let s = Stats::of(&mut times);
    println!(
        "start round trip: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n = {}); refusals: {refused}{}",
        s.p50,
        s.p99,
        s.max,
        s.n,
        if refusals.is_empty() { String::new() } else { format!(" {refusals:?}") }
    );
    println!(
        "start round trip p50 per 100 starts, in order: {} ms (registry file now {registry_kb} KiB)",
        blocks.join(", ")
    );
    println!();
    vec![Row {
        metric: format!("Task start round trip, p99 (n = {})", s.n),
        result: format!("{:.2} ms (p50 {:.2}, max {:.2}; {refused} refused)", s.p99, s.p50, s.max),
        target: "<= 5 ms, 0 refused",
        pass: Some(s.p99 <= 5.0 && refused == 0),
    }]
}

/// Polls `status` until at most `low` tasks run, when more than `high` do.
fn wait_running_at_most(ctl: &mut Control, high: u64, low: u64) {
    let running = |ctl: &mut Control| ctl.request(&json!({"cmd": "status"}))["tasks"]["running"].as_u64().unwrap_or(0);
    if running(ctl) <= high {
        return;
    }
    let deadline = Instant::now() + TASK_TIMEOUT;
    while running(ctl) > low {
        assert!(Instant::now() < deadline, "tasks did not end within {TASK_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// 2. Child exit to task_ended event

/// A fake Claude whose prompt (on stdin) is the file that receives its exit time.
const STAMPING_CLAUDE: &str = r#"#!/usr/bin/env python3
import os, sys, time
stamp = os.open(sys.stdin.read(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(1, b'{"type":"system","subtype":"init","session_id":"bench","model":"fake"}\n'
            b'{"type":"result","subtype":"success","is_error":false,"result":"Done.","total_cost_usd":0,"num_turns":1}\n')
os.write(stamp, str(time.time_ns()).encode())
os._exit(0)
"#;

fn bench_exit_to_event(plan: &Plan) -> Vec<Row> {
    section(&format!("2. child exit -> task_ended event ({} tasks, one at a time)", plan.exits));
    let home = bench_home();
    let claude = write_script(&home, "stamping-claude", STAMPING_CLAUDE);
    home.write_config(&format!(
        "[tasks]\nclaude = \"{}\"\nshare_dirs = true\nbudget_usd = 0\nkill_grace_s = 1\n",
        claude.display()
    ));
    let daemon = home.start_daemon();
    let events = Subscription::open(&home);
    let mut ctl = Control::connect(&home);
    let dir = home.work("shared");
    let mut deltas = Vec::with_capacity(plan.exits);
    let mut failed = 0;
    for i in 0..plan.exits {
        let stamp = home.scratch(&format!("exit-{i}.ns"));
        let reply = ctl.request(&json!({"cmd": "start", "text": stamp, "name": format!("exit {i}"), "dir": dir}));
        assert_eq!(reply["status"], "started", "start refused: {reply}");
        let id = reply["task_id"].as_str().expect("task_id");
        let ended = events.wait_ended(id, TASK_TIMEOUT);
        if ended.task["state"] != "succeeded" {
            failed += 1;
        }
        let child_ns: u128 = std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no exit time in {}", stamp.display()));
        let event_ns = ended.wall.duration_since(UNIX_EPOCH).expect("clock").as_nanos();
        deltas.push(Duration::from_nanos(u64::try_from(event_ns.saturating_sub(child_ns)).unwrap_or(u64::MAX)));
    }
    check_alive(&daemon);
    let s = Stats::of(&mut deltas);
    println!(
        "exit -> task_ended: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n = {}); failed tasks: {failed}",
        s.p50, s.p99, s.max, s.n
    );
    println!();
    vec![Row {
        metric: format!("Child exit -> `task_ended` event, p99 (n = {})", s.n),
        result: format!("{:.2} ms (p50 {:.2}, max {:.2})", s.p99, s.p50, s.max),
        target: "none (reported)",
        pass: None,
    }]
}

// ---------------------------------------------------------------------------
// 3. Idle RSS and CPU

fn bench_idle(plan: &Plan) -> Vec<Row> {
    section(&format!("3. idle daemon ({} s window)", plan.idle.as_secs()));
    let mut home = TestHome::with_fake("");
    home.env.push(("PTT_LOG".into(), "info".into()));
    let daemon = home.start_daemon();
    let pid = daemon.pid();
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = proc_status_kb(pid, "VmRSS");
    let ticks_before = cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(plan.idle);
    let ticks_after = cpu_ticks(pid);
    let window = t0.elapsed();
    let rss_after = proc_status_kb(pid, "VmRSS");
    check_alive(&daemon);
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_pct = (ticks_after - ticks_before) as f64 / hz / window.as_secs_f64() * 100.0;
    let rss_mb = rss_before.max(rss_after) as f64 / 1024.0;
    println!(
        "idle RSS: {:.2} MB before, {:.2} MB after the window",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!(
        "idle CPU: {:.3} % ({} ticks at {hz} Hz in {:.1} s)",
        cpu_pct,
        ticks_after - ticks_before,
        window.as_secs_f64()
    );
    println!();
    vec![
        Row {
            metric: "Idle RSS".into(),
            result: format!("{rss_mb:.2} MB"),
            target: "<= 12 MB",
            pass: Some(rss_mb <= 12.0),
        },
        Row {
            metric: format!("Idle CPU ({} s window)", plan.idle.as_secs()),
            result: format!("{cpu_pct:.3} %"),
            target: "<= 0.1 %",
            pass: Some(cpu_pct <= 0.1),
        },
    ]
}

// ---------------------------------------------------------------------------
// 4. Flood

fn bench_flood(plan: &Plan) -> Vec<Row> {
    let (n, mb) = (plan.flood_tasks, plan.flood_mb);
    section(&format!("4. {n} concurrent tasks x {mb} MiB of output each"));
    let mut home =
        TestHome::with_fake(&format!("max_concurrent = {n}\nshare_dirs = true\nbudget_usd = 0\ntimeout_min = 60"));
    home.env.push(("PTT_LOG".into(), "info".into()));
    let daemon = home.start_daemon();
    let pid = daemon.pid();
    let events = Subscription::open(&home);
    let mut ctl = Control::connect(&home);
    let dir = home.work("shared");

    let stop = Arc::new(AtomicBool::new(false));
    let sampled_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&sampled_peak));
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(proc_status_kb(pid, "VmRSS"), Ordering::Relaxed);
                samples += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };

    let started = Instant::now();
    let mut markers = HashMap::new();
    for i in 0..n {
        let marker = format!("M{i:03}X{}", uuid::Uuid::new_v4().simple());
        let script = json!({"flood_mb": mb, "marker": marker, "result": {"result": "Flooded."}});
        let reply =
            ctl.request(&json!({"cmd": "start", "text": script.to_string(), "name": format!("flood {i}"), "dir": dir}));
        assert_eq!(reply["status"], "started", "flood task {i} refused: {reply}");
        markers.insert(reply["task_id"].as_str().expect("task_id").to_string(), marker);
    }
    let ended = events.wait_all_ended(&mut ctl, markers.keys().cloned().collect(), FLOOD_TIMEOUT);
    let wall = ended.values().map(|e| e.at).max().unwrap_or(started).saturating_duration_since(started);
    let hwm_kb = proc_status_kb(pid, "VmHWM");
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    check_alive(&daemon);

    let succeeded = ended.values().filter(|e| e.task["state"] == "succeeded").count();
    let attributed = ended
        .iter()
        .filter(|(id, e)| e.task["summary"].as_str().is_some_and(|s| s.contains(markers[id.as_str()].as_str())))
        .count();
    let output_mb: f64 = ended.values().filter_map(|e| e.task["output_bytes"].as_u64()).sum::<u64>() as f64 / 1048576.0;
    let peak_mb = sampled_peak.load(Ordering::Relaxed) as f64 / 1024.0;
    let hwm_mb = hwm_kb as f64 / 1024.0;
    println!(
        "flood wall time: {:.2} s from the first start to the last task_ended ({output_mb:.0} MiB read)",
        wall.as_secs_f64()
    );
    println!("flood peak RSS: {peak_mb:.2} MB sampled every 50 ms ({samples} samples), VmHWM {hwm_mb:.2} MB");
    println!("flood results: {succeeded}/{n} succeeded, {attributed}/{n} attributed to their own task");
    println!();
    let peak = peak_mb.max(hwm_mb);
    vec![
        Row {
            metric: format!("Peak RSS, {n} concurrent tasks x {mb} MiB"),
            result: format!("{peak:.2} MB (sampled {peak_mb:.2}, VmHWM {hwm_mb:.2}); {attributed}/{n} attributed"),
            target: "<= 64 MB, all attributed",
            pass: Some(peak <= 64.0 && attributed == n && succeeded == n),
        },
        Row {
            metric: format!("Flood wall time, {n} x {mb} MiB"),
            result: format!("{:.2} s", wall.as_secs_f64()),
            target: "none (reported)",
            pass: None,
        },
    ]
}

// ---------------------------------------------------------------------------
// Helpers

/// A home whose daemon logs at the production level.
fn bench_home() -> TestHome {
    let mut home = TestHome::empty();
    home.env.push(("PTT_LOG".into(), "info".into()));
    home
}

/// Writes an executable script into the home.
fn write_script(home: &TestHome, name: &str, text: &str) -> PathBuf {
    let path = home.dir.path().join(name);
    std::fs::write(&path, text).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

/// Percentiles of a sample, in milliseconds.
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        // Nearest rank: the smallest sample with at least p % of them at or below it.
        let rank = |p: f64| {
            let i = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[i.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
        };
        Stats { n: samples.len(), p50: rank(50.0), p99: rank(99.0), max: rank(100.0) }
    }
}
