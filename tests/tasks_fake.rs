//! The task supervisor end to end: the real `ptt` daemon and CLI, driving the
//! scriptable fake Claude CLI in `tests/fake-claude/claude`.

mod common;

use std::time::Duration;

use common::{TestHome, describe, processes_of_task, read_json_file, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[test]
fn success_reports_cost_summary_and_log() {
    let home = TestHome::with_fake("");
    let _d = home.start_daemon();
    let script = json!({"lines": [
        {"type":"assistant","message":{"content":[{"type":"tool_use","name":"Edit","input":{"file_path":"/x/src/auth.rs"}}]}}
    ], "result": {"result": "I refactored the auth module. All tests pass.", "total_cost_usd": 0.42, "num_turns": 3}});
    let id = home.start_task(&script, "auth refactor", &home.work("a"));
    assert_eq!(id, "t1");
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert_eq!(t["cost_usd"], 0.42);
    assert_eq!(t["num_turns"], 3);
    // The summary ends with what it changed (the file its Edit call named).
    assert_eq!(t["summary"], "I refactored the auth module. All tests pass. It changed one file: /x/src/auth.rs.");
    assert_eq!(t["changes"]["files"], json!(["/x/src/auth.rs"]));
    assert_eq!(t["model"], "fake-model");
    assert!(t["session_id"].as_str().unwrap_or("").starts_with("sess-"), "{t:#}");
    let log = std::fs::read_to_string(t["log_path"].as_str().expect("log path")).expect("log");
    assert!(log.contains("\"type\": \"result\"") || log.contains("\"type\":\"result\""), "{log}");
    // The human view names the summary too.
    let out = home.run(&["task", "show", "auth"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("All tests pass."), "{}", describe(&out));
}

#[test]
fn is_error_with_subtype_success_is_a_failure_with_the_reason() {
    let home = TestHome::with_fake("");
    let _d = home.start_daemon();
    let script = json!({"result": {"subtype": "success", "is_error": true, "result": "Not logged in · Please run /login"}, "exit": 1});
    let id = home.start_task(&script, "login", &home.work("a"));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "failed");
    assert_eq!(t["reason"], "Not logged in · Please run /login");
}

#[test]
fn garbage_and_very_long_lines_are_kept_as_text() {
    let home = TestHome::with_fake("log_max_mb = 1");
    let _d = home.start_daemon();
    let script = json!({"garbage": true, "long_line_kb": 3072, "result": {"result": "fine"}});
    let id = home.start_task(&script, "garbage", &home.work("a"));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert!(t["output_bytes"].as_u64().unwrap_or(0) > 3 * 1024 * 1024, "{t:#}");
    let tail: Vec<String> =
        t["tail"].as_array().expect("tail").iter().map(|l| l.as_str().unwrap_or("").to_string()).collect();
    assert!(tail.iter().any(|l| l.contains("garbage")), "{tail:?}");
    assert!(tail.iter().any(|l| l.ends_with("[line cut]")), "{tail:?}");
    let log = std::fs::read(t["log_path"].as_str().expect("log")).expect("log");
    assert!(log.len() < (1 << 20) + 200, "log capped: {}", log.len());
    assert!(String::from_utf8_lossy(&log).contains("[ptt: log cut at"));
}

#[test]
fn exit_without_a_result_is_a_failure_naming_the_last_words() {
    let home = TestHome::with_fake("");
    let _d = home.start_daemon();
    let script = json!({"lines": ["Error: the frobnicator broke"], "result": false, "exit": 2});
    let id = home.start_task(&script, "broken", &home.work("a"));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "failed");
    let reason = t["reason"].as_str().unwrap_or("");
    assert!(reason.contains("status 2") && reason.contains("the frobnicator broke"), "{reason}");
}

/// A 5 s timeout: long enough for a loaded machine to start the fake and let it write its environment.
#[test]
fn timeout_stops_even_a_child_that_ignores_sigterm() {
    let home = TestHome::with_fake("timeout_min = 0.08");
    let _d = home.start_daemon();
    let env_file = home.scratch("env.json");
    let script = json!({"hang": true, "ignore_term": true, "grandchild": 300, "env_file": env_file});
    let id = home.start_task(&script, "forever", &home.work("a"));
    let env = read_json_file(&env_file, T);
    let uuid = env["PTT_TASK_ID"].as_str().expect("PTT_TASK_ID").to_string();
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "timed_out", "{t:#}");
    wait_until(T, "no process of the task left", || processes_of_task(&uuid).is_empty());
}

#[test]
fn cancel_by_words_of_the_name_kills_the_whole_tree() {
    let home = TestHome::with_fake("");
    let d = home.start_daemon();
    let env_file = home.scratch("env.json");
    let gc_file = home.scratch("gc.pid");
    let script = json!({"hang": true, "ignore_term": true, "grandchild": 300, "grandchild_pid_file": gc_file, "env_file": env_file});
    let id = home.start_task(&script, "auth refactor", &home.work("a"));
    let env = read_json_file(&env_file, T);
    let uuid = env["PTT_TASK_ID"].as_str().expect("uuid").to_string();
    wait_until(T, "grandchild pid", || gc_file.exists());
    assert!(processes_of_task(&uuid).len() >= 2, "child and grandchild carry the id");
    let out = home.run(&["task", "cancel", "the", "refactor"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "cancelled");
    wait_until(T, "no process of the task left", || processes_of_task(&uuid).is_empty());
    // Cancelling again says it is not running.
    let out = home.run(&["task", "cancel", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    assert!(d.log_text().contains("SIGTERM to process group"), "{}", d.log_text());
}

#[test]
fn ambiguous_reference_lists_candidates_and_guesses_nothing() {
    let home = TestHome::with_fake("share_dirs = true");
    let _d = home.start_daemon();
    let hang = json!({"hang": true});
    let a = home.start_task(&hang, "auth tests", &home.work("a"));
    let b = home.start_task(&hang, "auth refactor", &home.work("a"));
    for args in [vec!["task", "cancel", "auth"], vec!["task", "show", "auth"]] {
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&a) && err.contains(&b) && err.contains("which one"), "{err}");
    }
    assert_eq!(home.task(&a)["state"], "running", "nothing was cancelled");
    assert_eq!(home.task(&b)["state"], "running");
    let out = home.run(&["task", "show", "kubernetes"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
}

#[test]
fn max_concurrent_refuses_the_next_task() {
    let home = TestHome::with_fake("max_concurrent = 2\nshare_dirs = true");
    let _d = home.start_daemon();
    let hang = json!({"hang": true});
    home.start_task(&hang, "one", &home.work("a"));
    home.start_task(&hang, "two", &home.work("a"));
    let out = home.run(&["task", "start", "third", "--dir", home.work("a").to_str().expect("utf8"), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["reason"], "limit_reached");
    assert!(v["message"].as_str().unwrap_or("").contains("2 tasks are already running"), "{v}");
}

#[test]
fn one_task_per_directory_unless_shared() {
    let home = TestHome::with_fake("");
    let _d = home.start_daemon();
    home.start_task(&json!({"hang": true}), "one", &home.work("a"));
    let out = home.run(&["task", "start", "x", "--dir", home.work("a").to_str().expect("utf8"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["reason"], "directory_busy", "{v}");
}

#[test]
fn daily_budget_refuses_once_spent() {
    let home = TestHome::with_fake("budget_usd = 0.5");
    let _d = home.start_daemon();
    let id = home.start_task(&json!({"result": {"total_cost_usd": 0.6}}), "costly", &home.work("a"));
    assert_eq!(home.wait_ended(&id, T)["state"], "succeeded");
    let out = home.run(&["task", "start", "{}", "--dir", home.work("a").to_str().expect("utf8"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["reason"], "budget_exceeded", "{v}");
    let status = home.json(&["status", "--json"]);
    assert_eq!(status["tasks"]["spent_today_usd"], 0.6);
}

#[test]
fn spending_80_percent_of_the_budget_is_announced_once() {
    let home = TestHome::with_fake("budget_usd = 1.0");
    let _d = home.start_daemon();
    let events = home.subscribe();
    let id = home.start_task(&json!({"result": {"total_cost_usd": 0.85}}), "costly", &home.work("a"));
    assert_eq!(home.wait_ended(&id, T)["state"], "succeeded");
    let warning = events.wait_for(T, "budget_warning", |v| v["event"] == "budget_warning");
    assert_eq!(warning["message"], "$0.85 of today's $1.00 budget is spent", "{warning}");
    // Every start says so; the event comes once a day.
    let out = home.run(&["task", "start", "{}", "--dir", home.work("b").to_str().expect("utf8"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "started", "{v}");
    assert_eq!(v["warning"], "$0.85 of today's $1.00 budget is spent", "{v}");
    let second = v["task_id"].as_str().expect("task_id").to_string();
    events.wait_for(T, "the second task's end", |e| e["event"] == "task_ended" && e["task"]["id"] == second);
    // A warning for the second end would follow its task_ended; events arrive in order, so once a third
    // task's start is seen, everything the second end caused has been seen too.
    let third = home.start_task(&json!({}), "third", &home.work("c"));
    events.wait_for(T, "the third task's start", |e| e["event"] == "task_started" && e["task"]["id"] == third);
    let seen = events.seen();
    assert_eq!(seen.iter().filter(|e| e["event"] == "budget_warning").count(), 1, "{seen:#?}");
}

#[test]
fn child_environment_and_command_line() {
    let home = TestHome {
        env: vec![
            ("OPENAI_API_KEY".into(), "sk-test-must-not-leak-0123456789".into()),
            ("CLAUDECODE".into(), "1".into()),
            ("CLAUDE_CODE_ENTRYPOINT".into(), "cli".into()),
            ("ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:9".into()),
            ("MY_EXTRA".into(), "yes".into()),
            ("NOT_ALLOWED".into(), "no".into()),
        ],
        ..TestHome::with_fake("env_allow = [\"MY_EXTRA\"]\nmax_turns = 7\nmodel = \"opus\"")
    };
    let _d = home.start_daemon();
    let env_file = home.scratch("env.json");
    let argv_file = home.scratch("argv.json");
    let script = json!({"env_file": env_file, "argv_file": argv_file});
    let id = home.start_task(&script, "env", &home.work("a"));
    home.wait_ended(&id, T);
    let env = read_json_file(&env_file, T);
    assert!(env["PTT_TASK_ID"].as_str().is_some_and(|u| u.len() == 36), "{env:#}");
    for gone in ["OPENAI_API_KEY", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "NOT_ALLOWED"] {
        assert!(env.get(gone).is_none(), "{gone} leaked into the child");
    }
    assert_eq!(env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:9");
    assert_eq!(env["MY_EXTRA"], "yes");
    let argv: Vec<String> = serde_json::from_value(read_json_file(&argv_file, T)).expect("argv");
    assert_eq!(argv[0], "-p");
    assert!(!argv.iter().any(|a| a.contains("argv_file")), "the prompt is on stdin, not in argv: {argv:?}");
    let joined = argv.join(" ");
    for part in
        ["--output-format stream-json", "--verbose", "--permission-mode acceptEdits", "--max-turns 7", "--model opus"]
    {
        assert!(joined.contains(part), "{part} missing in {joined}");
    }
    assert!(argv.iter().any(|a| a == "--append-system-prompt"));
    // The secret never reaches the daemon's own log either.
    let log = std::fs::read_to_string(home.state_dir().join("tasks.json")).expect("registry");
    assert!(!log.contains("sk-test-must-not-leak"));
}

#[test]
fn continue_resumes_the_session_in_the_same_directory() {
    let home = TestHome::with_fake("");
    let _d = home.start_daemon();
    let id = home.start_task(&json!({}), "site fix", &home.work("a"));
    let first = home.wait_ended(&id, T);
    let session = first["session_id"].as_str().expect("session").to_string();
    let argv_file = home.scratch("argv2.json");
    let out = home.run(&["task", "continue", "site fix", &json!({"argv_file": argv_file}).to_string()]);
    assert!(out.status.success(), "{}", describe(&out));
    let argv: Vec<String> = serde_json::from_value(read_json_file(&argv_file, T)).expect("argv");
    let i = argv.iter().position(|a| a == "--resume").expect("--resume");
    assert_eq!(argv[i + 1], session);
    let t2 = home.wait_ended("t2", T);
    assert_eq!(t2["continues"], id.as_str());
    assert_eq!(t2["dir"], first["dir"]);
    assert_eq!(t2["session_id"], session.as_str());
}

#[test]
fn worktree_isolation_runs_on_a_branch_of_its_own() {
    let home = TestHome::with_fake("isolation = \"worktree\"");
    let repo = home.work("repo");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(&repo).output().expect("git");
        assert!(out.status.success(), "git {args:?}: {}", describe(&out));
        out
    };
    git(&["init", "-q"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"]);
    let _d = home.start_daemon();
    let env_file = home.scratch("env.json");
    let id = home.start_task(&json!({"env_file": env_file}), "wt", &repo);
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "{t:#}");
    assert_eq!(t["branch"], format!("ptt/{id}"));
    let dir = t["dir"].as_str().expect("dir");
    assert!(dir.ends_with(&format!("worktrees/{id}")), "{dir}");
    let env = read_json_file(&env_file, T);
    assert_eq!(env["PWD"].as_str().unwrap_or(dir), dir, "ran inside the worktree");
    let branches = String::from_utf8_lossy(&git(&["branch", "--list", "ptt/*"]).stdout).to_string();
    assert!(branches.contains(&format!("ptt/{id}")), "{branches}");
}

#[test]
fn stalled_tasks_are_flagged_and_unflagged() {
    let home = TestHome::with_fake("stall_min = 0.01");
    let _d = home.start_daemon();
    let id = home.start_task(&json!({"sleep": 2.5, "result": {"result": "woke up"}}), "sleepy", &home.work("a"));
    wait_until(T, "stalled flag", || home.task(&id)["stalled"] == true);
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded");
    assert_eq!(t["stalled"], false);
}

#[test]
fn restart_keeps_ended_tasks_and_the_id_counter() {
    let home = TestHome::with_fake("");
    let mut d = home.start_daemon();
    let id = home.start_task(&json!({"result": {"result": "first"}}), "first", &home.work("a"));
    home.wait_ended(&id, T);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0));
    let _d2 = home.start_daemon();
    let t1 = home.task("t1");
    assert_eq!(t1["state"], "succeeded");
    assert_eq!(t1["summary"], "first");
    let id2 = home.start_task(&json!({}), "second", &home.work("a"));
    assert_eq!(id2, "t2");
}

#[test]
fn corrupt_registry_is_moved_aside_and_ids_continue() {
    let home = TestHome::with_fake("");
    std::fs::create_dir_all(home.state_dir().join("logs")).expect("mkdir");
    std::fs::write(home.state_dir().join("tasks.json"), b"{\"version\":1,\"tasks\":[{\"id\":").expect("write");
    std::fs::write(home.state_dir().join("logs/t5.log"), b"old").expect("write");
    let d = home.start_daemon();
    assert!(d.log_text().contains("registry was corrupt"), "{}", d.log_text());
    let aside: Vec<_> = std::fs::read_dir(home.state_dir())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tasks.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(home.start_task(&json!({}), "after", &home.work("a")), "t6");
}

#[test]
fn bad_config_names_file_line_and_key() {
    let home = TestHome::empty();
    home.write_config("[tasks]\nmax_concurrent = \"four\"\n");
    let out = home.run(&["run"]);
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:2: key `tasks.max_concurrent`", home.config_path().display());
    assert!(err.contains(&expected), "{err}");
    let out = home.run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&expected));
    home.write_config(&String::from_utf8(home.run(&["config", "default"]).stdout).expect("utf8"));
    let out = home.run(&["config", "check"]);
    assert!(out.status.success(), "the default config checks clean: {}", describe(&out));
}

#[test]
fn a_second_daemon_is_refused() {
    let home = TestHome::with_fake("");
    let d = home.start_daemon();
    let out = home.run(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running") && err.contains(&d.pid().to_string()), "{err}");
}

#[test]
fn clients_explain_when_no_daemon_runs() {
    let home = TestHome::with_fake("");
    for args in [vec!["status"], vec!["tasks"], vec!["task", "show", "t1"]] {
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(69), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not running") && err.contains("ptt run"), "{err}");
    }
}

#[test]
fn missing_claude_is_a_clear_refusal() {
    let home = TestHome::empty();
    home.write_config("[tasks]\nclaude = \"/nonexistent/claude\"\n");
    let _d = home.start_daemon();
    let out = home.run(&["task", "start", "hi", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["reason"], "claude_not_found", "{v}");
    let out = home.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] claude"), "{}", describe(&out));
}

#[test]
fn directories_outside_allowed_roots_and_unknown_projects_are_refused() {
    let home = TestHome::with_fake("[projects]\nwebsite = \"~/work/site\"\n");
    home.work("site");
    let _d = home.start_daemon();
    let outside = home.scratch("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let out = home.run(&["task", "start", "x", "--dir", outside.to_str().expect("utf8"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["reason"], "not_allowed", "{v}");
    let out = home.run(&["task", "start", "x", "--project", "blog", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["reason"], "unknown_project");
    assert!(v["message"].as_str().unwrap_or("").contains("website"), "{v}");
    let out = home.run(&["task", "start", "{}", "--project", "Website", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "started", "{v}");
    assert!(v["dir"].as_str().unwrap_or("").ends_with("work/site"));
}

#[test]
fn sigterm_to_the_daemon_ends_every_task_and_records_it() {
    let home = TestHome::with_fake("");
    let mut d = home.start_daemon();
    let env_file = home.scratch("env.json");
    let script = json!({"hang": true, "ignore_term": true, "grandchild": 300, "env_file": env_file});
    let id = home.start_task(&script, "stubborn", &home.work("a"));
    let uuid = read_json_file(&env_file, T)["PTT_TASK_ID"].as_str().expect("uuid").to_string();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0), "exit 0 after SIGTERM");
    assert!(processes_of_task(&uuid).is_empty(), "nothing of the task survives the daemon");
    let registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.state_dir().join("tasks.json")).expect("registry")).expect("json");
    let t = registry["tasks"].as_array().expect("tasks").iter().find(|t| t["id"] == id.as_str()).expect("task").clone();
    assert_eq!(t["state"], "interrupted", "{t:#}");
}

#[test]
fn sigkill_to_the_daemon_then_restart_sweeps_and_records() {
    let home = TestHome::with_fake("");
    let mut d = home.start_daemon();
    let env_file = home.scratch("env.json");
    let script = json!({"hang": true, "ignore_term": true, "grandchild": 300, "env_file": env_file});
    let id = home.start_task(&script, "orphan", &home.work("a"));
    let uuid = read_json_file(&env_file, T)["PTT_TASK_ID"].as_str().expect("uuid").to_string();
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(T);
    // The child ignores the SIGTERM its death signal sends; the grandchild never got one.
    assert!(!processes_of_task(&uuid).is_empty(), "without a sweep the task's processes outlive a SIGKILLed daemon");
    let _d2 = home.start_daemon();
    assert!(processes_of_task(&uuid).is_empty(), "swept before the new daemon is ready");
    let t = home.task(&id);
    assert_eq!(t["state"], "interrupted", "{t:#}");
}

#[test]
fn a_sigkilled_daemons_children_get_their_death_signal_from_the_kernel() {
    let home = TestHome::with_fake("");
    let mut d = home.start_daemon();
    let env_file = home.scratch("env.json");
    let script = json!({"hang": true, "env_file": env_file});
    home.start_task(&script, "bereaved", &home.work("a"));
    let uuid = read_json_file(&env_file, T)["PTT_TASK_ID"].as_str().expect("uuid").to_string();
    assert!(!processes_of_task(&uuid).is_empty(), "the task runs");
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(T);
    // No sweep and no restart: PR_SET_PDEATHSIG alone ends a child that keeps SIGTERM's default action.
    wait_until(T, "the task's child to die with the daemon", || processes_of_task(&uuid).is_empty());
}

#[test]
fn twenty_concurrent_tasks_each_get_their_own_result() {
    let home = TestHome::with_fake("max_concurrent = 20\nisolation = \"scratch\"");
    let _d = home.start_daemon();
    let ids: Vec<(String, String)> = (0..20)
        .map(|i| {
            let marker = format!("M{i:02}X{}", uuid::Uuid::new_v4().simple());
            let script = json!({"flood_mb": 2, "marker": marker, "result": {"result": "Flooded."}});
            (home.start_task(&script, &format!("flood {i}"), &home.work("a")), marker)
        })
        .collect();
    for (id, marker) in &ids {
        let t = home.wait_ended(id, Duration::from_secs(60));
        assert_eq!(t["state"], "succeeded", "{t:#}");
        assert!(t["summary"].as_str().unwrap_or("").contains(marker.as_str()), "{id} got someone else's result: {t:#}");
        assert!(t["output_bytes"].as_u64().unwrap_or(0) >= 2 << 20);
    }
}

#[test]
fn watch_streams_task_events() {
    use std::io::{BufRead, BufReader, Write};
    let home = TestHome::with_fake("");
    let _d = home.start_daemon();
    // The subscriber speaks the protocol itself (as `ptt watch` does): the `{"subscribed":true}` line, which
    // `ptt watch` does not print, says the daemon has queued the subscription ahead of any later request.
    let mut stream = std::os::unix::net::UnixStream::connect(home.runtime_dir().join("control.sock")).expect("connect");
    stream.set_read_timeout(Some(T)).expect("read timeout");
    stream.write_all(b"{\"cmd\":\"subscribe\"}\n").expect("subscribe");
    let mut lines = BufReader::new(stream).lines();
    let first = lines.next().expect("a first line").expect("read");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&first).ok(), Some(json!({"subscribed": true})), "{first}");
    let id = home.start_task(&json!({}), "watched", &home.work("a"));
    let mut text = String::new();
    for line in lines {
        let line = line.unwrap_or_else(|e| panic!("no task_ended within {T:?} ({e}); got:\n{text}"));
        text.push_str(&line);
        text.push('\n');
        if line.contains("\"task_ended\"") && line.contains(&id) {
            break;
        }
    }
    assert!(text.contains("\"task_started\"") && text.contains("\"task_ended\""), "{text}");
}

#[test]
fn systemd_notify_ready_watchdog_and_stopping() {
    let mut home = TestHome::with_fake("");
    let notify_path = home.scratch("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    home.env.push(("NOTIFY_SOCKET".into(), notify_path.display().to_string()));
    home.env.push(("WATCHDOG_USEC".into(), "300000".into()));
    let mut d = home.start_daemon();
    let recv = || {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notify datagram");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(recv(), "READY=1");
    assert_eq!(recv(), "WATCHDOG=1", "pings every half watchdog interval");
    assert_eq!(recv(), "WATCHDOG=1");
    // The child never sees the notify socket.
    let env_file = home.scratch("env.json");
    let id = home.start_task(&json!({"env_file": env_file}), "env", &home.work("a"));
    home.wait_ended(&id, T);
    assert!(read_json_file(&env_file, T).get("NOTIFY_SOCKET").is_none());
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let mut stopping = false;
    for _ in 0..20 {
        if recv() == "STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on the way out");
    assert_eq!(d.wait_exit(T), Some(0));
}

#[test]
fn sighup_reloads_the_config_and_keeps_the_old_one_when_bad() {
    let home = TestHome::with_fake("max_concurrent = 2");
    let d = home.start_daemon();
    let config = std::fs::read_to_string(home.config_path()).expect("config");
    home.write_config(&config.replace("max_concurrent = 2", "max_concurrent = 9"));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(T, "the new limit", || home.json(&["status", "--json"])["tasks"]["max_concurrent"] == 9);
    home.write_config("[tasks]\nmax_concurrent = \"many\"\n");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(T, "the rejection in the log", || d.log_text().contains("config not reloaded"));
    assert_eq!(home.json(&["status", "--json"])["tasks"]["max_concurrent"], 9, "the old config stays");
}

#[test]
fn without_a_sound_server_tasks_run_and_status_says_why_there_is_no_sound() {
    // This home's XDG_RUNTIME_DIR has no PulseAudio socket: ALSA's default device cannot open.
    let home = TestHome::with_fake("");
    let d = home.start_daemon();
    let id = home.start_task(&json!({"result": {"result": "silent but done"}}), "silent", &home.work("a"));
    assert_eq!(home.wait_ended(&id, T)["state"], "succeeded");
    wait_until(T, "the audio error in status", || {
        home.json(&["status", "--json"])["audio"]["output"]["error"].is_string()
    });
    let error = home.json(&["status", "--json"])["audio"]["output"]["error"].as_str().unwrap_or("").to_string();
    assert!(error.contains("no audio device"), "{error}");
    assert!(d.log_text().contains("tasks and text mode keep working"), "{}", d.log_text());
    assert!(home.run(&["status"]).status.success(), "the daemon is still up");
    let doctor = home.run(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("[warn] audio: voice is off: no audio device"), "{text}");
}

/// A loop that spins (a channel whose producer is gone is always ready) burns a
/// core. Not a performance figure (those are in scripts/bench): a guard with a
/// huge margin against a busy loop.
#[test]
fn an_idle_daemon_does_not_spin() {
    let home = TestHome::with_fake("");
    let d = home.start_daemon();
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid())).expect("stat");
        let after = stat.rsplit_once(')').map(|(_, a)| a.to_string()).unwrap_or_default();
        // utime and stime are fields 14 and 15 of /proc/PID/stat: 11 and 12 after the command name.
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
    };
    let before = ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = ticks() - before;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(used < hz / 2, "an idle daemon used {used} ticks ({hz}/s) in 2 s: a busy loop");
}
