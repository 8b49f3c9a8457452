//! Desktop notifications on a real session bus: a private `dbus-daemon --session`, a small notification server
//! (`tests/notify/server.py`, python3-dbus) that records every `Notify` call, and the daemon with its real
//! `notify-send`. Fails loudly when dbus-daemon, notify-send or python3-dbus are missing; never skips.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pulse::{pulse_env, require, serial};
use common::transcribe_stub::{Reply, TranscribeStub};
use common::{TestHome, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

/// A private session bus and the recording notification server; both killed (by pid) when dropped.
struct Bus {
    address: String,
    daemon_pid: i32,
    server: Child,
    log: std::path::PathBuf,
}

impl Bus {
    fn start(dir: &Path) -> Bus {
        require("dbus-daemon", "dbus-daemon");
        require("notify-send", "libnotify-bin");
        // Debian's python3, which has the apt-installed dbus and gi modules (a pyenv python3 on PATH may not).
        let ok = Command::new("/usr/bin/python3").args(["-c", "import dbus, gi"]).status().is_ok_and(|s| s.success());
        assert!(ok, "python3-dbus and python3-gi are missing (apt-get install -y python3-dbus python3-gi)");
        let out = Command::new("dbus-daemon")
            .args(["--session", "--fork", "--print-address=1", "--print-pid=1", "--nopidfile"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run dbus-daemon");
        assert!(out.status.success(), "dbus-daemon --session failed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let address = lines.next().expect("address").trim().to_string();
        let daemon_pid: i32 = lines.next().expect("pid").trim().parse().expect("numeric pid");
        let log = dir.join("notify-calls.jsonl");
        let ready = dir.join("notify-ready");
        let server = Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/notify/server.py"))
            .arg(&log)
            .arg(&ready)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the notification server");
        let mut bus = Bus { address, daemon_pid, server, log };
        wait_until(T, "the notification server on the bus", || {
            if let Ok(Some(status)) = bus.server.try_wait() {
                panic!("the notification server exited: {status}");
            }
            ready.exists()
        });
        bus
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.daemon_pid), nix::sys::signal::Signal::SIGTERM);
    }
}

#[test]
fn finished_failed_and_cancelled_tasks_raise_notifications_on_the_session_bus() {
    let mut home = TestHome::with_fake("");
    let bus = Bus::start(home.dir.path());
    home.env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));
    home.env.push(("OPENAI_API_KEY".into(), "sk-test-notify-key".into()));
    let _d = home.start_daemon();

    let ok = home.start_task(&json!({"result": {"result": "All 12 tests pass."}}), "auth refactor", &home.work("a"));
    home.wait_ended(&ok, T);
    wait_until(T, "the success notification", || bus.calls().len() == 1);
    let c = &bus.calls()[0];
    assert_eq!(c["app_name"], "ptt");
    assert_eq!(c["summary"], format!("ptt: task {ok} 'auth refactor' finished"));
    assert!(c["body"].as_str().unwrap_or("").contains("All 12 tests pass."), "{c}");
    assert_eq!(c["urgency"], 1, "normal urgency for a success: {c}");
    assert_eq!(c["replaces_id"], 0);

    // A failure says why, is critical, and never shows a secret the task printed.
    let secret = format!("sk-proj-{}", "Z".repeat(40));
    let failing =
        json!({"result": {"subtype": "success", "is_error": true, "result": format!("Bad key {secret}")}, "exit": 1});
    let bad = home.start_task(&failing, "deploy", &home.work("b"));
    home.wait_ended(&bad, T);
    wait_until(T, "the failure notification", || bus.calls().len() == 2);
    let c = &bus.calls()[1];
    assert_eq!(c["summary"], format!("ptt: task {bad} 'deploy' failed"));
    assert_eq!(c["urgency"], 2, "critical for a failure: {c}");
    let shown = c.to_string();
    assert!(!shown.contains(&secret) && !shown.contains("ZZZZZZZZZZ"), "redacted: {shown}");
    assert!(c["body"].as_str().unwrap_or("").contains("Bad key"), "the reason is shown: {c}");

    let hang = home.start_task(&json!({"hang": true}), "forever", &home.work("c"));
    let out = home.run(&["task", "cancel", &hang]);
    assert!(out.status.success(), "{}", common::describe(&out));
    home.wait_ended(&hang, T);
    wait_until(T, "the cancellation notification", || bus.calls().len() == 3);
    let c = &bus.calls()[2];
    assert_eq!(c["summary"], format!("ptt: task {hang} 'forever' was cancelled"));
    assert_eq!(c["urgency"], 0, "low for a cancellation: {c}");
    let all = bus.calls().iter().map(Value::to_string).collect::<String>();
    assert!(!all.contains("sk-test-notify-key"));
}

#[test]
fn a_failed_dictation_says_its_clip_is_kept() {
    let _serial = serial();
    let _done = pulse_env(1);
    let stub = TranscribeStub::start();
    stub.set_default(Reply::error(401, "Incorrect API key provided: sk-test*****tion."));
    let mut home = TestHome::with_fake(&format!(
        "[dictate]\napi_base = \"{}\"\nretries = 0\ntyper = \"stdout\"\n[audio]\ncues = false\n",
        stub.base
    ));
    let bus = Bus::start(home.dir.path());
    home.env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));
    home.env.push(("OPENAI_API_KEY".into(), "sk-test-dictation".into()));
    home.use_pulse();
    let _d = home.start_daemon();
    let out = home.run(&["key", "press", "ptt"]);
    assert!(out.status.success(), "{}", common::describe(&out));
    std::thread::sleep(Duration::from_millis(600));
    let out = home.run(&["key", "release", "ptt"]);
    assert!(out.status.success(), "{}", common::describe(&out));
    wait_until(T, "the dictation failure notification", || !bus.calls().is_empty());
    let c = &bus.calls()[0];
    assert_eq!(c["summary"], "ptt: dictation not transcribed");
    assert_eq!(c["urgency"], 2, "critical: {c}");
    let body = c["body"].as_str().unwrap_or("");
    assert!(body.contains("401") && body.contains("ptt dictate retry"), "{c}");
    assert!(!c.to_string().contains("sk-test-dictation"), "{c}");
    wait_until(T, "the clip kept", || home.json(&["status", "--json"])["dictation"]["kept_clips"] == 1);
}

#[test]
fn spending_80_percent_of_the_budget_raises_one_notification() {
    let mut home = TestHome::with_fake("budget_usd = 1.0");
    let bus = Bus::start(home.dir.path());
    home.env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));
    let _d = home.start_daemon();
    let id = home.start_task(&json!({"result": {"total_cost_usd": 0.85}}), "costly", &home.work("a"));
    home.wait_ended(&id, T);
    wait_until(T, "the task's and the budget's notifications", || bus.calls().len() == 2);
    let c = &bus.calls()[1];
    assert_eq!(c["summary"], "ptt: most of today's task budget is spent", "{c}");
    assert!(c["body"].as_str().unwrap_or("").starts_with("$0.85 of today's $1.00 budget is spent"), "{c}");
    assert_eq!(c["urgency"], 1, "{c}");
}

#[test]
fn notify_enabled_false_sends_nothing() {
    let mut home = TestHome::with_fake("\n[notify]\nenabled = false\n");
    let bus = Bus::start(home.dir.path());
    home.env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));
    let _d = home.start_daemon();
    let id = home.start_task(&json!({"result": {"result": "done"}}), "quiet", &home.work("a"));
    home.wait_ended(&id, T);
    // The success notification would be sent right after the end; a later task end proves the loop moved on.
    let id2 = home.start_task(&json!({"result": {"result": "done"}}), "quiet2", &home.work("b"));
    home.wait_ended(&id2, T);
    let probe = Command::new("notify-send")
        .args(["--app-name=probe", "probe"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .status()
        .expect("notify-send");
    assert!(probe.success());
    wait_until(T, "the probe notification", || !bus.calls().is_empty());
    let calls = bus.calls();
    assert_eq!(calls.len(), 1, "only the probe: {calls:?}");
    assert_eq!(calls[0]["app_name"], "probe");
}
