//! Shared helpers for the real-device tests: a private PulseAudio (scripts/pulse-test-env), recording the
//! speaker's monitor with wall-clock timestamps, and tools that must exist. Every missing piece fails the
//! test with a message that says what to install: these tests never skip.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Plays a WAV file into the virtual microphone (`micfeed`); returns when it has been played.
pub fn play_into_mic(wav: &std::path::Path) {
    require("paplay", "pulseaudio-utils");
    let played = Command::new("paplay").args(["-d", "micfeed"]).arg(wav).status();
    assert!(played.is_ok_and(|s| s.success()), "paplay into the virtual microphone failed");
}

/// Fails loudly when a tool is missing.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "`{tool}` is missing: these tests need it (apt-get install -y {package}); they never skip");
}

/// The sound server the audio tests run on: `PTT_SOUND_SERVER` (`pulseaudio`, the default, or `pipewire`; both
/// speak the PulseAudio protocol, which is what the tests and the daemon's ALSA `default` device use).
pub fn sound_server() -> String {
    std::env::var("PTT_SOUND_SERVER").unwrap_or_else(|_| "pulseaudio".into())
}

/// Runs `scripts/pulse-test-env <verb>` with the given state dir and returns its `export` lines as pairs.
pub fn pulse_script(verb: &str, dir: &Path) -> Vec<(String, String)> {
    if sound_server() == "pipewire" {
        require("pipewire", "pipewire");
        require("wireplumber", "wireplumber");
        require("pipewire-pulse", "pipewire-pulse");
    } else {
        require("pulseaudio", "pulseaudio");
    }
    require("pactl", "pulseaudio-utils");
    let out = Command::new(root().join("scripts/pulse-test-env"))
        .arg(verb)
        .env("PTT_PULSE_DIR", dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("scripts/pulse-test-env {verb}: {e}"));
    assert!(
        out.status.success(),
        "scripts/pulse-test-env {verb} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Tests in one binary share the server and the sinks: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct PulseSession {
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// A server that ran before this test binary started is left running.
    was_running: bool,
}

static SESSION: OnceLock<PulseSession> = OnceLock::new();
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// Starts (or finds) the shared test server and points this process at it. Call with [`serial`] held,
/// before any audio call. The returned guard counts the test as finished when dropped (even by a panic);
/// when all `tests_in_binary` have finished, a server this binary started is stopped (by pid).
pub fn pulse_env(tests_in_binary: usize) -> Finished {
    let session = SESSION.get_or_init(|| {
        let dir = std::env::var_os("PTT_PULSE_DIR")
            .map(PathBuf::from)
            // One server per test process: concurrent runs (two checkouts, a developer and CI)
            // must not stop each other's server.
            .unwrap_or_else(|| std::env::temp_dir().join(format!("ptt-pulse-test-{}", std::process::id())));
        let was_running = Command::new(root().join("scripts/pulse-test-env"))
            .arg("env")
            .env("PTT_PULSE_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let env = pulse_script("start", &dir);
        // A filtered run (`cargo test --test x name`) never finishes every test of the binary: stop the server
        // at exit then.
        // SAFETY: registers a plain `extern "C" fn` with no arguments.
        unsafe { libc::atexit(stop_at_exit) };
        assert!(env.iter().any(|(k, _)| k == "PULSE_SERVER"), "pulse-test-env printed no PULSE_SERVER");
        for (k, v) in &env {
            // SAFETY: set once, under `serial()`, before this test binary makes any audio call.
            unsafe { std::env::set_var(k, v) };
        }
        PulseSession { dir, env, was_running }
    });
    assert!(!session.env.is_empty());
    Finished { total: tests_in_binary }
}

pub struct Finished {
    total: usize,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let done = FINISHED.fetch_add(1, Ordering::SeqCst) + 1;
        if done == self.total {
            stop_server();
        }
    }
}

static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops the server this binary started (once).
fn stop_server() {
    if let Some(s) = SESSION.get()
        && !s.was_running
        && !STOPPED.swap(true, Ordering::SeqCst)
    {
        pulse_script("stop", &s.dir);
        let _ = std::fs::remove_dir_all(&s.dir);
    }
}

extern "C" fn stop_at_exit() {
    stop_server();
}

/// What the reader thread collected: each read with the time it returned.
type Reads = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// `parec` on a source, mono s16le at `rate`, each read timestamped.
pub struct Recorder {
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
    data: Reads,
    pub rate: u32,
}

impl Recorder {
    pub fn start(source: &str, rate: u32) -> Recorder {
        require("parec", "pulseaudio-utils");
        let mut child = Command::new("parec")
            .args(["-d", source, "--latency-msec=20", "--format=s16le", "--channels=1", "--raw"])
            .arg(format!("--rate={rate}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("parec: {e}"));
        let mut out = child.stdout.take().unwrap_or_else(|| panic!("parec has no stdout"));
        let data: Reads = Arc::new(Mutex::new(Vec::new()));
        let sink = data.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), buf[..n].to_vec()));
            }
        });
        Recorder { child, reader: Some(reader), data, rate }
    }

    /// Stops parec (by its pid) and returns the samples with the wall-clock time of each.
    pub fn stop(mut self) -> Recording {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let chunks = std::mem::take(&mut *self.data.lock().unwrap_or_else(|e| e.into_inner()));
        let mut bytes = Vec::new();
        let mut marks = Vec::new();
        for (t, b) in chunks {
            bytes.extend_from_slice(&b);
            marks.push((bytes.len() / 2, t));
        }
        let samples: Vec<f32> =
            bytes.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect();
        Recording { samples, marks, rate: self.rate }
    }
}

pub struct Recording {
    pub samples: Vec<f32>,
    /// (number of samples read so far, when that read returned)
    marks: Vec<(usize, Instant)>,
    pub rate: u32,
}

impl Recording {
    /// Upper bound of the wall-clock time at which sample `i` was captured: the time its read returned,
    /// minus the samples after it in that read.
    pub fn time_of(&self, i: usize) -> Option<Instant> {
        let (end, t) = self.marks.iter().find(|(end, _)| *end > i)?;
        let after = Duration::from_secs_f64((end - 1 - i) as f64 / f64::from(self.rate));
        t.checked_sub(after)
    }
}

/// Decodes any audio file to mono s16 at `rate` with sox.
pub fn decode(path: &Path, rate: u32) -> Vec<f32> {
    require("sox", "sox");
    let out = Command::new("sox")
        .arg(path)
        .args(["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-r"])
        .arg(rate.to_string())
        .arg("-")
        .output()
        .unwrap_or_else(|e| panic!("sox: {e}"));
    assert!(out.status.success(), "sox failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect()
}
