//! The reader's and the idle daemon's benchmarks (issue 11, parts 4 and 5).
//!
//! Run with `scripts/bench stream [--quick]` or `cargo bench --bench stream -- [--quick] [flood] [idle]`.
//! Every figure comes from the real release-built `ptt` binary, run as `ptt run` in a throw-away home with
//! `PTT_LOG=info`; each benchmark gets a fresh daemon.
//!
//! 1. **Flood against the pipe limit.** N concurrent children each print M MiB of stream-json (an init line,
//!    assistant text lines, a result with a marker of their own). The child is `benches/fakes/flood-claude.c`,
//!    compiled here, so that the writer costs little next to the reader. The same children are run three
//!    times in one run, interleaved: into pipes read by `cat > /dev/null` (the limit: what merely moving the
//!    bytes costs on this machine), through `ptt` (read, logged up to `log_max_mb`, parsed), and into `cat`
//!    again; the limit is the mean of the two `cat` runs. A `cat` that also writes the first 10 MiB to a
//!    log file is printed for reference. ptt's wall time runs from the first start request to the last
//!    `task_ended` event; its RSS is sampled every 50 ms and `VmHWM` read at the end. Every task must succeed
//!    with its own marker in its summary. Targets: wall <= 2x the limit, peak RSS <= 32 MB, all attributed.
//! 2. **Idle wake-ups.** A fresh daemon runs one task to its end (so the reaper, the sweeper, the syncer and
//!    the audio actor, for the end's cue, have all been used), settles for 4 s, then every thread's
//!    `voluntary_ctxt_switches + nonvoluntary_ctxt_switches` (`/proc/PID/task/*/status`) is read before and
//!    after a window of 60 s. Each switch is a wake-up of that thread. Twice: with no sound server (the cue
//!    finds no device), and with a private PulseAudio (`scripts/pulse-test-env`, as the audio tests use), where
//!    the cues play. Targets: 0 wake-ups per second, RSS <= 12 MB.
//!
//! `--quick` is a smoke run: 20 tasks x 5 MiB and a 10 s idle window. The figures are printed one per line,
//! then as a Markdown table for `docs/benchmarks.md`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::TestHome;
use serde_json::json;
use support::{Control, Row, Subscription, check_alive, clock_hz, cpu_ticks, print_table, proc_status_kb};

/// How long the flood may take in all.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(900);
/// How long the idle benchmark's single task may take.
const TASK_TIMEOUT: Duration = Duration::from_secs(60);
/// The log cap of the daemon under test (`tasks.log_max_mb`, its default) and of the logging `cat`.
const LOG_MIB: u64 = 10;

struct Plan {
    quick: bool,
    flood_tasks: usize,
    flood_mib: u32,
    idle: Duration,
}

fn main() {
    let mut quick = false;
    let (mut flood, mut idle) = (false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--bench" => {}
            "flood" => flood = true,
            "idle" => idle = true,
            "-h" | "--help" => {
                println!("usage: cargo bench --bench stream -- [--quick] [flood] [idle]");
                return;
            }
            other => {
                eprintln!("bench: unknown argument {other:?} (usage: [--quick] [flood] [idle])");
                std::process::exit(2);
            }
        }
    }
    if !flood && !idle {
        (flood, idle) = (true, true);
    }
    let plan = if quick {
        Plan { quick, flood_tasks: 20, flood_mib: 5, idle: Duration::from_secs(10) }
    } else {
        Plan { quick, flood_tasks: 100, flood_mib: 20, idle: Duration::from_secs(60) }
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("machine: {cpus} CPU(s); mode: {}", if plan.quick { "--quick" } else { "full" });
    println!();
    let mut rows = Vec::new();
    if flood {
        rows.extend(bench_flood(&plan));
    }
    if idle {
        rows.extend(bench_idle(&plan, false));
        rows.extend(bench_idle(&plan, true));
    }
    print_table(&rows);
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn section(title: &str) {
    println!("== {title} (load average {})", load_average());
}

// ---------------------------------------------------------------------------
// 1. Flood

/// Compiles the flooding child into `dir` (statically when the C library allows it: a cheaper exec).
fn build_flooder(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fakes/flood-claude.c");
    let out = dir.join("flood-claude");
    let cc = |extra: &[&str]| {
        Command::new("cc").args(["-O2", "-o"]).arg(&out).arg(&source).args(extra).status().is_ok_and(|s| s.success())
    };
    assert!(cc(&["-static"]) || cc(&[]), "cannot compile {} with cc", source.display());
    out
}

/// The prompt that tells the flooding child what to print.
fn flood_prompt(mib: u32, marker: &str) -> String {
    format!("{mib} {marker}")
}

/// Runs `n` flooding children into pipes read by `cat` (`log`: the first [`LOG_MIB`] MiB also written to a
/// file, like ptt's log); returns the wall time from the first spawn to the last exit.
fn cat_limit(flooder: &Path, n: usize, mib: u32, log: Option<&Path>) -> Duration {
    let started = Instant::now();
    let mut children = Vec::with_capacity(2 * n);
    for i in 0..n {
        let mut producer = Command::new(flooder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the flooding child");
        let mut stdin = producer.stdin.take().expect("stdin");
        stdin.write_all(flood_prompt(mib, &format!("C{i}")).as_bytes()).expect("prompt");
        drop(stdin);
        let stdout = producer.stdout.take().expect("stdout");
        let reader = match log {
            None => Command::new("cat").stdin(stdout).stdout(Stdio::null()).spawn(),
            Some(dir) => Command::new("sh")
                .arg("-c")
                .arg(format!("head -c {} > \"$1\"; exec cat > /dev/null", LOG_MIB << 20))
                .arg("sh")
                .arg(dir.join(format!("cat-{i}.log")))
                .stdin(stdout)
                .stdout(Stdio::null())
                .spawn(),
        }
        .expect("spawn cat");
        children.push(producer);
        children.push(reader);
    }
    for mut c in children {
        let status = c.wait().expect("wait");
        assert!(status.success(), "a child of the cat run failed: {status}");
    }
    started.elapsed()
}

struct PttFlood {
    wall: Duration,
    peak_mb: f64,
    hwm_mb: f64,
    samples: u64,
    succeeded: usize,
    attributed: usize,
    output_mib: f64,
    cpu_s: f64,
}

fn ptt_flood(flooder: &Path, n: usize, mib: u32) -> PttFlood {
    let mut home = TestHome::empty();
    home.env.push(("PTT_LOG".into(), "info".into()));
    home.write_config(&format!(
        "[tasks]\nclaude = \"{}\"\nkill_grace_s = 1\nmax_concurrent = {n}\nshare_dirs = true\nbudget_usd = 0\n\
         timeout_min = 60\nlog_max_mb = {LOG_MIB}\n",
        flooder.display()
    ));
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
    let ticks_before = cpu_ticks(pid);
    let started = Instant::now();
    let mut markers = HashMap::new();
    for i in 0..n {
        let marker = format!("M{i:03}X{}", uuid::Uuid::new_v4().simple());
        let reply = ctl.request(
            &json!({"cmd": "start", "text": flood_prompt(mib, &marker), "name": format!("flood {i}"), "dir": dir}),
        );
        assert_eq!(reply["status"], "started", "flood task {i} refused: {reply}");
        markers.insert(reply["task_id"].as_str().expect("task_id").to_string(), marker);
    }
    let ended = events.wait_all_ended(&mut ctl, markers.keys().cloned().collect(), FLOOD_TIMEOUT);
    let wall = ended.values().map(|e| e.at).max().unwrap_or(started).saturating_duration_since(started);
    let cpu_s = (cpu_ticks(pid) - ticks_before) as f64 / clock_hz();
    let hwm_kb = proc_status_kb(pid, "VmHWM");
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    check_alive(&daemon);
    let succeeded = ended.values().filter(|e| e.task["state"] == "succeeded").count();
    let attributed = ended
        .iter()
        .filter(|(id, e)| e.task["summary"].as_str().is_some_and(|s| s.contains(markers[id.as_str()].as_str())))
        .count();
    let output_mib = ended.values().filter_map(|e| e.task["output_bytes"].as_u64()).sum::<u64>() as f64 / 1048576.0;
    PttFlood {
        wall,
        peak_mb: sampled_peak.load(Ordering::Relaxed) as f64 / 1024.0,
        hwm_mb: hwm_kb as f64 / 1024.0,
        samples,
        succeeded,
        attributed,
        output_mib,
        cpu_s,
    }
}

fn bench_flood(plan: &Plan) -> Vec<Row> {
    let (n, mib) = (plan.flood_tasks, plan.flood_mib);
    section(&format!("flood: {n} concurrent tasks x {mib} MiB, ptt against cat"));
    let scratch = tempfile::Builder::new().prefix("ptt-bench-flood-").tempdir().expect("tempdir");
    let flooder = build_flooder(scratch.path());
    let cat1 = cat_limit(&flooder, n, mib, None);
    println!("cat > /dev/null, first: {:.3} s", cat1.as_secs_f64());
    let ptt = ptt_flood(&flooder, n, mib);
    println!("ptt: {:.3} s (load average {})", ptt.wall.as_secs_f64(), load_average());
    let cat2 = cat_limit(&flooder, n, mib, None);
    println!("cat > /dev/null, second: {:.3} s", cat2.as_secs_f64());
    let cat_log = cat_limit(&flooder, n, mib, Some(scratch.path()));
    println!("cat, first {LOG_MIB} MiB also to a log file: {:.3} s", cat_log.as_secs_f64());
    let limit = (cat1 + cat2) / 2;
    let ratio = ptt.wall.as_secs_f64() / limit.as_secs_f64();
    let peak = ptt.peak_mb.max(ptt.hwm_mb);
    println!(
        "flood wall: ptt {:.3} s = {ratio:.2}x the cat limit {:.3} s ({:.2}x the logging cat); {:.0} MiB read",
        ptt.wall.as_secs_f64(),
        limit.as_secs_f64(),
        ptt.wall.as_secs_f64() / cat_log.as_secs_f64(),
        ptt.output_mib
    );
    println!("flood daemon CPU: {:.2} s (user + system, all threads)", ptt.cpu_s);
    println!(
        "flood peak RSS: {:.2} MB sampled every 50 ms ({} samples), VmHWM {:.2} MB",
        ptt.peak_mb, ptt.samples, ptt.hwm_mb
    );
    println!("flood results: {}/{n} succeeded, {}/{n} attributed to their own task", ptt.succeeded, ptt.attributed);
    println!();
    vec![
        Row {
            metric: format!("Flood wall, {n} x {mib} MiB: ptt / `cat` limit"),
            result: format!(
                "{ratio:.2}x ({:.2} s / {:.2} s; logging cat {:.2} s; daemon CPU {:.2} s)",
                ptt.wall.as_secs_f64(),
                limit.as_secs_f64(),
                cat_log.as_secs_f64(),
                ptt.cpu_s
            ),
            target: "<= 2x",
            pass: Some(ratio <= 2.0),
        },
        Row {
            metric: format!("Flood peak RSS, {n} x {mib} MiB"),
            result: format!(
                "{peak:.2} MB (sampled {:.2}, VmHWM {:.2}); {}/{n} attributed",
                ptt.peak_mb, ptt.hwm_mb, ptt.attributed
            ),
            target: "<= 32 MB, all attributed",
            pass: Some(peak <= 32.0 && ptt.attributed == n && ptt.succeeded == n),
        },
    ]
}

// ---------------------------------------------------------------------------
// 2. Idle wake-ups

/// One thread's name and context switches so far.
fn thread_switches(pid: i32) -> BTreeMap<i32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let name = status.lines().find_map(|l| l.strip_prefix("Name:")).unwrap_or("?").trim().to_string();
        out.insert(tid, (name, field("voluntary_ctxt_switches") + field("nonvoluntary_ctxt_switches")));
    }
    out
}

fn bench_idle(plan: &Plan, sound: bool) -> Vec<Row> {
    let with = if sound { "a private PulseAudio" } else { "no sound server" };
    section(&format!("idle, {with}: every thread's wake-ups over {} s after a task has run", plan.idle.as_secs()));
    let mut home = TestHome::with_fake("share_dirs = true\nbudget_usd = 0");
    home.env.push(("PTT_LOG".into(), "info".into()));
    let pulse_dir = home.dir.path().join("pulse");
    if sound {
        // Only the server's address: the script's XDG_RUNTIME_DIR and HOME are its own.
        let env = common::pulse::pulse_script("start", &pulse_dir);
        home.env.extend(env.into_iter().filter(|(k, _)| k == "PULSE_SERVER"));
    } else {
        // No server to find: the cue's open fails like on a box without sound.
        home.env.push(("PULSE_SERVER".into(), format!("unix:{}", home.dir.path().join("no-pulse").display())));
    }
    let rows = idle_window(plan, &home, with);
    if sound {
        common::pulse::pulse_script("stop", &pulse_dir);
    }
    rows
}

fn idle_window(plan: &Plan, home: &TestHome, with: &str) -> Vec<Row> {
    let daemon = home.start_daemon();
    let pid = daemon.pid();
    {
        let events = Subscription::open(home);
        let mut ctl = Control::connect(home);
        let dir = home.work("idle");
        let reply = ctl.request(&json!({"cmd": "start", "text": "say hello", "name": "idle bench", "dir": dir}));
        assert_eq!(reply["status"], "started", "start refused: {reply}");
        let id = reply["task_id"].as_str().expect("task_id").to_string();
        let ended = events.wait_all_ended(&mut ctl, vec![id], TASK_TIMEOUT);
        assert!(ended.values().all(|e| e.task["state"] == "succeeded"), "the task failed");
    }
    // Settle: the sweeper's batching (500 ms), the registry's sync, the cue's playback, the connection threads
    // of the two clients above and the loop's one-shot `malloc_trim` 2 s after the last task all end within this.
    std::thread::sleep(Duration::from_secs(4));
    let before = thread_switches(pid);
    let ticks_before = cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(plan.idle);
    let after = thread_switches(pid);
    let window = t0.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - ticks_before;
    let rss_mb = proc_status_kb(pid, "VmRSS") as f64 / 1024.0;
    check_alive(&daemon);
    let audio = Control::connect(home).request(&json!({"cmd": "status"}))["audio"].clone();
    println!("audio status: {audio}");
    let mut total = 0u64;
    let mut lines = Vec::new();
    for (tid, (name, end)) in &after {
        let start = before.get(tid).map(|(_, s)| *s);
        let woke = end - start.unwrap_or(0);
        if start.is_some() {
            total += woke;
        }
        let note = if start.is_none() { " (started during the window)" } else { "" };
        lines.push(format!("  {name:<16} tid {tid:>7}: {woke:>5} wake-ups ({:.2}/s){note}", woke as f64 / window));
    }
    for (tid, (name, _)) in &before {
        if !after.contains_key(tid) {
            lines.push(format!("  {name:<16} tid {tid:>7}: ended during the window"));
        }
    }
    println!("threads ({} at the start, {} at the end):", before.len(), after.len());
    for l in &lines {
        println!("{l}");
    }
    let rate = total as f64 / window;
    println!(
        "idle: {total} wake-ups in {window:.1} s ({rate:.2}/s), {ticks} CPU ticks, RSS {rss_mb:.2} MB (load average {})",
        load_average()
    );
    println!();
    vec![
        Row {
            metric: format!("Idle wake-ups, all threads, {} s after a task, {with}", plan.idle.as_secs()),
            result: format!("{rate:.2}/s ({total} in {window:.1} s, {} threads)", after.len()),
            target: "0/s",
            pass: Some(total == 0),
        },
        Row {
            metric: format!("Idle RSS after a task, {with}"),
            result: format!("{rss_mb:.2} MB"),
            target: "<= 12 MB",
            pass: Some(rss_mb <= 12.0),
        },
    ]
}
