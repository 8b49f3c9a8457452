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
    real_home_with(stub, "")
}

/// The same, with more `[tasks]` settings.
fn real_home_with(stub: Option<&AnthropicStub>, extra_tasks: &str) -> TestHome {
    let mut home = TestHome::empty();
    home.write_config(&format!(
        "[tasks]\nclaude = \"{}\"\nkill_grace_s = 3\nmax_turns = 5\nshare_dirs = true\n\
         env_allow = [\"DISABLE_TELEMETRY\", \"DISABLE_AUTOUPDATER\", \"DISABLE_ERROR_REPORTING\"]\n{extra_tasks}\n",
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

/// A command `acceptEdits` does not allow: it creates `made.txt` in the task's directory.
const ASKING: &str = r#"SCENARIO_BASH_ASK python3 -c "open('made.txt','w').write('x')""#;

/// The task's permission requests as (what, answer, by).
fn requests(t: &Value) -> Vec<(String, String, String)> {
    let field = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_string();
    t["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (field(e, "what"), field(e, "answer"), field(e, "by")))
        .collect()
}

#[test]
fn real_cli_asks_and_ptt_task_allow_lets_the_command_run() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let _d = home.start_daemon();
    let dir = home.work("p");
    let id = start(&home, ASKING, "asker", &dir);
    let t = home.wait_waiting(&id, T);
    let what = t["waiting_for"].as_str().unwrap_or("");
    assert!(what.starts_with("run: python3 -c"), "{t:#}");
    assert!(!dir.join("made.txt").exists(), "nothing runs before the answer");
    // Everyone sees it: the table and the status.
    let status = home.json(&["status", "--json"]);
    assert_eq!(status["tasks"]["waiting"][0]["task_id"], id.as_str(), "{status:#}");
    let table = home.run(&["tasks"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("wants to run: python3"), "{}", describe(&table));
    let out = home.run(&["task", "allow", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert_eq!(std::fs::read_to_string(dir.join("made.txt")).expect("the command ran"), "x");
    assert_eq!(requests(&t), [(what.to_string(), "allowed".to_string(), "shell".to_string())]);
    let log = std::fs::read_to_string(t["log_path"].as_str().expect("log")).expect("log");
    assert!(log.contains("permission asked: run: python3") && log.contains("permission allowed (by shell)"), "{log}");
    let shown = home.run(&["task", "show", &id]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("allowed (by shell)"), "{}", describe(&shown));
    let out = home.run(&["task", "allow", &id]);
    assert!(!out.status.success(), "nothing left to allow: {}", describe(&out));
}

#[test]
fn real_cli_asks_and_ptt_task_deny_reaches_the_model() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let _d = home.start_daemon();
    let dir = home.work("p");
    let id = start(&home, ASKING, "asker", &dir);
    home.wait_waiting(&id, T);
    let out = home.run(&["task", "deny", &id, "--reason", "not on a Friday"]);
    assert!(out.status.success(), "{}", describe(&out));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "the run itself goes on: {t:#}");
    assert!(!dir.join("made.txt").exists(), "a denied command never ran");
    // The stub's last turn repeats the tool result the model got.
    let summary = t["summary"].as_str().unwrap_or("");
    assert!(summary.contains("not on a Friday"), "the model heard why: {t:#}");
    let (_, answer, by) = requests(&t).pop().expect("a request");
    assert!(answer.starts_with("denied: The user denied this: not on a Friday"), "{answer}");
    assert_eq!(by, "shell");
}

#[test]
fn real_cli_unanswered_request_is_denied_after_the_timeout() {
    let stub = AnthropicStub::start();
    // 0.05 min = 3 s.
    let home = real_home_with(Some(&stub), "permission_timeout_min = 0.05");
    let _d = home.start_daemon();
    let dir = home.work("p");
    let id = start(&home, ASKING, "asker", &dir);
    home.wait_waiting(&id, T);
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert!(!dir.join("made.txt").exists());
    let (_, answer, by) = requests(&t).pop().expect("a request");
    assert_eq!((answer.as_str(), by.as_str()), ("denied: no answer within 0.05 min, so ptt denied it", "timeout"));
}

#[test]
fn real_cli_cancel_while_waiting_leaves_nothing() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let _d = home.start_daemon();
    let dir = home.work("p");
    let id = start(&home, ASKING, "asker", &dir);
    let uuid = home.wait_waiting(&id, T)["uuid"].as_str().expect("uuid").to_string();
    assert!(processes_of_task(&uuid).len() >= 2, "the CLI and its permission server");
    let out = home.run(&["task", "cancel", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "cancelled", "{t:#}");
    assert!(t.get("waiting_for").is_none(), "{t:#}");
    let (_, answer, by) = requests(&t).pop().expect("a request");
    assert_eq!((answer.as_str(), by.as_str()), ("denied: the task was cancelled", "cancel"));
    wait_until(Duration::from_secs(10), "every process of the task to be gone", || processes_of_task(&uuid).is_empty());
    assert!(!dir.join("made.txt").exists());
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", describe(&out));
}

#[test]
fn real_cli_task_reports_what_it_changed_in_a_git_repository() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let _d = home.start_daemon();
    let dir = home.work("repo");
    git(&dir, &["init", "-q", "."]);
    std::fs::write(dir.join("kept.txt"), "old\nlines\n").expect("write");
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-qm", "start"]);
    let id = start(&home, "SCENARIO_WRITE_TWO kept.txt docs/new.txt", "writer", &dir);
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    let changes = &t["changes"];
    assert_eq!(changes["files"], serde_json::json!(["kept.txt", "docs/new.txt"]), "{t:#}");
    let diff = &changes["diff"];
    assert_eq!(diff["summary"], "2 files changed, 2 insertions(+), 2 deletions(-)", "{diff:#}");
    let new = diff["files"].as_array().expect("files").iter().find(|f| f["path"] == "docs/new.txt").cloned();
    assert_eq!(new.map(|f| f["untracked"].clone()), Some(Value::Bool(true)), "{diff:#}");
    let summary = t["summary"].as_str().unwrap_or("");
    assert!(summary.ends_with("It changed two files: kept.txt and docs/new.txt."), "{summary}");
    let shown = home.run(&["task", "show", &id]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("docs/new.txt (new)"), "{}", describe(&shown));
}

#[test]
fn real_cli_cancelled_task_reports_what_it_had_written() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let _d = home.start_daemon();
    let dir = home.work("p");
    let id = start(&home, "SCENARIO_WRITE_THEN_SLEEP first.txt 120", "writer", &dir);
    wait_for_bash_sleep(&home, &id);
    let out = home.run(&["task", "cancel", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "cancelled", "{t:#}");
    assert_eq!(t["changes"]["files"], serde_json::json!(["first.txt"]), "{t:#}");
    let summary = t["summary"].as_str().unwrap_or("");
    assert!(summary.contains("Before it was stopped it had changed one file: first.txt."), "{summary}");
}

#[test]
fn real_cli_task_stops_at_its_budget() {
    let stub = AnthropicStub::start();
    // The stub's usage makes one turn cost about $0.05.
    let home = real_home_with(Some(&stub), "max_task_usd = 0.01");
    let _d = home.start_daemon();
    let id = start(&home, "SCENARIO_WRITE_FILE out.txt hello", "spender", &home.work("p"));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(t["reason"], "stopped at its budget of $0.01", "{t:#}");
}

#[test]
fn real_cli_first_run_has_the_session_id_ptt_gave_it() {
    let stub = AnthropicStub::start();
    let home = real_home(Some(&stub));
    let _d = home.start_daemon();
    let id = start(&home, "SCENARIO_TEXT hello", "talker", &home.work("p"));
    let early = home.task(&id)["session_id"].as_str().map(str::to_owned);
    assert!(early.as_deref().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()), "known at start: {early:?}");
    let t = home.wait_ended(&id, T);
    assert_eq!(t["session_id"].as_str().map(str::to_owned), early, "the CLI used it: {t:#}");
}

#[test]
fn real_cli_question_is_spoken_when_the_floor_is_free_and_answer_permission_allows_it() {
    use common::fake_realtime::{FakeRealtime, Received};
    let stub = AnthropicStub::start();
    let fake = FakeRealtime::start();
    let live = format!("\n[live]\nurl = \"{}\"\nping_interval_s = 0.5\npong_timeout_s = 2.0\n", fake.url);
    let mut home = real_home_with(Some(&stub), &live);
    home.env.push(("OPENAI_API_KEY".into(), "sk-test-live-key-0123456789".into()));
    let _d = home.start_daemon();
    let out = home.run(&["key", "toggle", "live"]);
    assert!(out.status.success(), "{}", describe(&out));
    wait_until(T, "live ready", || home.json(&["status", "--json"])["live"]["state"] == "ready");
    // The floor is taken: the assistant is busy answering something.
    fake.set_hold_responses(true);
    fake.respond_now();
    let dir = home.work("p");
    let id = start(&home, ASKING, "asker", &dir);
    home.wait_waiting(&id, T);
    let is_question = |r: &Received| {
        r.ty() == "conversation.item.create"
            && r.event["item"]["role"] == "system"
            && r.event["item"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("[task {id} 'asker' is waiting for permission")))
    };
    home.sync();
    fake.barrier(T);
    assert_eq!(fake.count(is_question), 0, "asked over an active response:\n{}", fake.dump());
    fake.set_hold_responses(false);
    fake.finish_held_response();
    let question = fake.wait_for(T, "the question", is_question);
    let text = question.event["item"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("it wants to run: python3 -c") && text.contains("answer_permission"), "{text}");
    fake.wait_for(T, "a response.create to ask it", |r| r.ty() == "response.create" && r.at >= question.at);
    assert!(!dir.join("made.txt").exists());
    // The user said yes; the model passes it on.
    let call = fake.call_tool("answer_permission", serde_json::json!({"task": id, "allow": true}));
    let output = fake.wait_for(T, "answer_permission's output", |r| {
        r.ty() == "conversation.item.create" && r.event["item"]["call_id"] == call.as_str()
    });
    let answer: Value = serde_json::from_str(output.event["item"]["output"].as_str().unwrap_or("")).expect("JSON");
    assert_eq!(answer["status"], "answered", "{answer}");
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert_eq!(std::fs::read_to_string(dir.join("made.txt")).expect("the command ran"), "x");
    assert_eq!(requests(&t).pop().map(|(_, a, by)| (a, by)), Some(("allowed".into(), "voice".into())));
    assert_eq!(fake.count(is_question), 1, "asked once");
    assert!(fake.schema_errors().is_empty(), "{:#?}", fake.schema_errors());
}
