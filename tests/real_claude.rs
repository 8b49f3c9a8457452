//! The supervisor against the REAL Claude Code CLI (npm
//! `@anthropic-ai/claude-code`, installed by `scripts/setup` into
//! `.tools/bin/claude`), talking to the local Anthropic API stub in
//! `tests/common/anthropic_stub.rs`: real stream-json, real tool calls, real
//! process trees (the Bash tool's shell runs in a session of its own).
//!
//! These tests never skip: without the CLI they fail and say how to get it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::anthropic_stub::AnthropicStub;
use common::{TestHome, describe, processes_of_task, wait_until};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn claude_cli() -> PathBuf {
    let path = std::env::var_os("PTT_TEST_CLAUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/claude"));
    assert!(
        path.exists(),
        "the real Claude Code CLI is missing at {} (run scripts/setup, or set PTT_TEST_CLAUDE)",
        path.display()
    );
    path
}

/// A home whose daemon runs the real CLI against `stub` (or with no
/// credentials at all when `stub` is None).
fn real_home(stub: Option<&AnthropicStub>) -> TestHome {
    let mut home = TestHome::empty();
    home.write_config(&format!(
        "[tasks]\nclaude = \"{}\"\nkill_grace_s = 3\nmax_turns = 5\nshare_dirs = true\n\
         env_allow = [\"DISABLE_TELEMETRY\", \"DISABLE_AUTOUPDATER\", \"DISABLE_ERROR_REPORTING\"]\n",
        claude_cli().display()
    ));
    let tmp = home.scratch("tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir tmp");
    home.env = vec![
        ("TMPDIR".into(), tmp.display().to_string()),
        ("DISABLE_TELEMETRY".into(), "1".into()),
        ("DISABLE_AUTOUPDATER".into(), "1".into()),
        ("DISABLE_ERROR_REPORTING".into(), "1".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(), "1".into()),
    ];
    if let Some(stub) = stub {
        home.env.push(("ANTHROPIC_BASE_URL".into(), stub.base_url.clone()));
        home.env.push(("ANTHROPIC_API_KEY".into(), "sk-ant-test-dummy".into()));
    }
    home
}

fn start(home: &TestHome, prompt: &str, name: &str, dir: &std::path::Path) -> String {
    let out = home.run(&["task", "start", prompt, "--name", name, "--dir", dir.to_str().expect("utf8"), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", describe(&out)));
    assert_eq!(v["status"], "started", "{v}");
    v["task_id"].as_str().expect("id").to_string()
}

/// Waits until the task's Bash tool is running `sleep` (a process carrying the
/// task's id in a session other than the CLI's); returns the task's uuid.
fn wait_for_bash_sleep(home: &TestHome, id: &str) -> String {
    let uuid = home.task(id)["uuid"].as_str().expect("uuid").to_string();
    wait_until(T, "the Bash tool's sleep to run", || {
        processes_of_task(&uuid).iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).starts_with("sleep"))
                .unwrap_or(false)
        })
    });
    uuid
}

#[test]
fn real_cli_task_writes_a_file_and_succeeds_with_cost_and_summary() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let _d = home.start_daemon();
    let dir = home.work("proj");
    let id = start(&home, "SCENARIO_WRITE_FILE notes/out.txt hello", "write notes", &dir);
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert!(t["cost_usd"].as_f64().unwrap_or(0.0) > 0.0, "the CLI's cost: {t:#}");
    assert_eq!(t["num_turns"], 2);
    assert!(t["summary"].as_str().unwrap_or("").contains("All done."), "{t:#}");
    assert!(t["session_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(std::fs::read_to_string(dir.join("notes/out.txt")).expect("file written"), "hello\n");
    assert!(stub.requests() >= 2);
}

#[test]
fn real_cli_cancel_during_a_bash_sleep_leaves_nothing() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let _d = home.start_daemon();
    let id = start(&home, "SCENARIO_BASH_SLEEP 120", "sleeper", &home.work("p"));
    let uuid = wait_for_bash_sleep(&home, &id);
    // The CLI got its prompt on stdin: no command line of the task shows it to `ps`.
    for pid in processes_of_task(&uuid) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains("SCENARIO"), "pid {pid}: {cmdline:?}");
    }
    let out = home.run(&["task", "cancel", "sleeper"]);
    assert!(out.status.success(), "{}", describe(&out));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "cancelled", "{t:#}");
    wait_until(Duration::from_secs(10), "every process of the task to be gone", || processes_of_task(&uuid).is_empty());
}

#[test]
fn real_cli_daemon_sigterm_during_a_bash_sleep_leaves_nothing() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let mut d = home.start_daemon();
    let id = start(&home, "SCENARIO_BASH_SLEEP 120", "sleeper", &home.work("p"));
    let uuid = wait_for_bash_sleep(&home, &id);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0));
    assert!(processes_of_task(&uuid).is_empty(), "left: {:?}", processes_of_task(&uuid));
    let _d2 = home.start_daemon();
    assert_eq!(home.task(&id)["state"], "interrupted");
}

#[test]
fn real_cli_daemon_sigkill_then_restart_sweeps_within_5s() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let mut d = home.start_daemon();
    let id = start(&home, "SCENARIO_BASH_SLEEP 120", "sleeper", &home.work("p"));
    let uuid = wait_for_bash_sleep(&home, &id);
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(T);
    let _d2 = home.start_daemon();
    let ready = Instant::now();
    wait_until(Duration::from_secs(5), "no process of the task within 5 s of the new daemon being ready", || {
        processes_of_task(&uuid).is_empty()
    });
    eprintln!("task processes gone {:?} after the new daemon was ready", ready.elapsed());
    let t = home.task(&id);
    assert_eq!(t["state"], "interrupted", "{t:#}");
}

#[test]
fn real_cli_without_credentials_fails_with_not_logged_in() {
    let home = real_home(None);
    let _d = home.start_daemon();
    let id = start(&home, "say hi", "no creds", &home.work("p"));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "failed", "{t:#}");
    let reason = t["reason"].as_str().unwrap_or("");
    assert!(reason.contains("Not logged in"), "reason: {reason}");
}
