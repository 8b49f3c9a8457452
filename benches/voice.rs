//! Benchmarks of the voice path, on PulseAudio null sinks (a private server
//! started by `scripts/pulse-test-env`) and the fake Realtime server.
//!
//! Run with `scripts/bench` or `cargo bench --bench voice -- [--quick]`.
//!
//! 1. **Key press → first `input_audio_buffer.append` on the wire** (push-to-talk
//!    turns): the time from writing `{"cmd":"key","action":"press","binding":"ptt"}`
//!    on the control socket to the fake server reading the first append after
//!    it. The microphone stream stays open between turns and a 300 ms pre-roll
//!    goes out when the gate opens. N = 30 (10 quick). Target: ≤ 60 ms.
//! 2. **Audio pipeline CPU per second of audio**: a voice session with server
//!    VAD streams the (silent) microphone for 20 s (8 quick): the daemon's
//!    utime+stime over that window divided by its length. Target: ≤ 2 % of one core. Each of the daemon's
//!    threads is listed with its share of a core over the window (utime+stime ticks, and the run time of
//!    `/proc/…/schedstat`, which is not rounded to ticks) and its context switches per second, to say where
//!    the time goes (cpal's and our audio threads, libpulse's `threaded-ml` behind the ALSA pulse plugin).
//! 3. **Daemon RSS with both streams open**, at the end of (2). Target: ≤ 20 MB.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::TestHome;
use common::fake_realtime::FakeRealtime;
use common::pulse::pulse_env;

const T: Duration = Duration::from_secs(30);

fn proc_field(pid: i32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().unwrap_or(0.0)))
        .unwrap_or(0.0)
}

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Per thread: (tid, name, utime+stime ticks, on-CPU nanoseconds from `schedstat`, context switches).
type ThreadTimes = Vec<(String, String, u64, u64, u64)>;

fn thread_times(pid: i32) -> ThreadTimes {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for e in dir.flatten() {
        let tid = e.file_name().to_string_lossy().into_owned();
        let base = e.path();
        let stat = std::fs::read_to_string(base.join("stat")).unwrap_or_default();
        let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map(|(n, _)| n.to_string());
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ns = std::fs::read_to_string(base.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(0);
        let switches: u64 = std::fs::read_to_string(base.join("status"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        out.push((tid, name.unwrap_or_default(), field(11) + field(12), ns, switches));
    }
    out
}

/// Prints what each thread of the daemon cost between two [`thread_times`] snapshots, costliest first.
fn print_threads(before: &ThreadTimes, after: &ThreadTimes, secs: f64, tck: f64) {
    let mut rows: Vec<(String, String, f64, f64, f64)> = after
        .iter()
        .map(|(tid, name, ticks, ns, sw)| {
            let (t0, n0, s0) = before.iter().find(|b| &b.0 == tid).map_or((0, 0, 0), |b| (b.2, b.3, b.4));
            let ticks_pct = ticks.saturating_sub(t0) as f64 / tck / secs * 100.0;
            let ns_pct = ns.saturating_sub(n0) as f64 / 1e9 / secs * 100.0;
            let per_s = sw.saturating_sub(s0) as f64 / secs;
            (tid.clone(), name.clone(), ticks_pct, ns_pct, per_s)
        })
        .collect();
    rows.sort_by(|a, b| b.3.total_cmp(&a.3));
    println!(
        "per thread over the window (% of one core by utime+stime ticks / by schedstat run time; context switches/s):"
    );
    for (tid, name, ticks_pct, ns_pct, per_s) in rows {
        println!("  {tid:>8} {name:<16} {ticks_pct:6.2} % / {ns_pct:6.2} %  {per_s:7.1}/s");
    }
}

fn home_for(fake: &FakeRealtime, turn: &str) -> TestHome {
    let mut home =
        TestHome::with_fake(&format!("[live]\nurl = \"{}\"\nturn = \"{turn}\"\n[audio]\ncues = false\n", fake.url));
    home.env.push(("OPENAI_API_KEY".into(), "sk-bench".into()));
    home.env.push(("PTT_LOG".into(), "info".into()));
    home.use_pulse();
    home
}

fn live_on(home: &TestHome, fake: &FakeRealtime) {
    assert!(home.run(&["key", "toggle", "live"]).status.success());
    fake.wait_for(T, "session.update", |r| r.ty() == "session.update");
    let deadline = Instant::now() + T;
    while home.json(&["status", "--json"])["audio"]["voice"] != true {
        assert!(Instant::now() < deadline, "no voice session");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn key(sock: &std::path::Path, action: &str) {
    let mut s = UnixStream::connect(sock).expect("socket");
    writeln!(s, "{{\"cmd\":\"key\",\"action\":\"{action}\",\"binding\":\"ptt\"}}").expect("write");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("reply");
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (turns, window) = if quick { (10, 8) } else { (30, 20) };
    let _pulse = pulse_env(1);
    println!("ptt {} voice benchmarks ({})", env!("CARGO_PKG_VERSION"), if quick { "quick" } else { "full" });

    // 1. Key press -> first append on the wire.
    let fake = FakeRealtime::start();
    let home = home_for(&fake, "ptt");
    let d = home.start_daemon();
    live_on(&home, &fake);
    std::thread::sleep(Duration::from_millis(800));
    let sock = home.runtime_dir().join("control.sock");
    let mut lat = Vec::new();
    for _ in 0..turns {
        let t0 = Instant::now();
        key(&sock, "press");
        let first = fake.wait_for(T, "append after the press", |r| r.ty() == "input_audio_buffer.append" && r.at >= t0);
        lat.push(first.at.duration_since(t0).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(300));
        key(&sock, "release");
        let released = Instant::now();
        fake.wait_for(T, "commit", |r| r.ty() == "input_audio_buffer.commit" && r.at >= released);
        std::thread::sleep(Duration::from_millis(400));
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let p50 = lat[lat.len() / 2];
    let max = lat[lat.len() - 1];
    println!("key press -> first append on the wire, n={turns}: p50 {p50:.2} ms, max {max:.2} ms");
    drop(d);

    // 2 + 3. CPU per second of audio and RSS, both streams open, VAD streaming.
    let fake = FakeRealtime::start();
    let home = home_for(&fake, "vad");
    let d = home.start_daemon();
    live_on(&home, &fake);
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.pid();
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let appends_before = fake.received_of("input_audio_buffer.append").len();
    let (t0, c0, th0) = (Instant::now(), cpu_ticks(pid), thread_times(pid));
    std::thread::sleep(Duration::from_secs(window));
    let (secs, ticks, th1) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid) - c0, thread_times(pid));
    let appends = fake.received_of("input_audio_buffer.append").len() - appends_before;
    let audio_s = appends as f64 * 0.020;
    let cpu_pct = ticks as f64 / tck / secs * 100.0;
    let per_audio = ticks as f64 / tck / audio_s.max(1e-9) * 100.0;
    let rss = proc_field(pid, "VmRSS:") / 1024.0;
    println!(
        "audio pipeline: {cpu_pct:.2} % of one core over {secs:.1} s ({audio_s:.1} s of audio sent, {per_audio:.2} % per second of audio)"
    );
    println!("daemon RSS with both streams open: {rss:.2} MB");
    print_threads(&th0, &th1, secs, tck);
    drop(d);

    println!();
    println!("| voice benchmark | result | target | ok |");
    println!("|---|---|---|---|");
    println!(
        "| key press -> first append on the wire (n={turns}) | p50 {p50:.2} ms, max {max:.2} ms | <= 60 ms | {} |",
        if max <= 60.0 { "yes" } else { "NO" }
    );
    println!(
        "| audio pipeline CPU, both streams open, {window} s | {per_audio:.2} % of one core per second of audio | <= 2 % | {} |",
        if per_audio <= 2.0 { "yes" } else { "NO" }
    );
    println!(
        "| daemon RSS with both streams open | {rss:.2} MB | <= 20 MB | {} |",
        if rss <= 20.0 { "yes" } else { "NO" }
    );
}
