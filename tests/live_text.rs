//! The live session end to end, in text mode: the real daemon (or `ptt live
//! --text` owning one), a scripted fake Realtime server
//! (`tests/common/fake_realtime.rs`) and the fake Claude CLI. Every test ends
//! by checking that every client event the daemon sent validates against the
//! official GA schema.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fake_realtime::{
    FakeRealtime, LIVE_KEY as KEY, Received, assert_schema_clean, is_notification, live_home, no_duplicate_creates,
    tool_output,
};
use common::{TestHome, describe, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

fn ty(t: &'static str) -> impl Fn(&Received) -> bool {
    move |r| r.ty() == t
}

/// `ptt key toggle live`, then waits for the session to be configured.
fn live_on(home: &TestHome, fake: &FakeRealtime) {
    let out = home.run(&["key", "toggle", "live"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "live: on");
    fake.wait_for(T, "session.update", ty("session.update"));
    wait_until(T, "live ready", || home.json(&["status", "--json"])["live"]["state"] == "ready");
}

#[test]
fn handshake_is_ga_with_a_bearer_key_and_the_eight_tools() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    assert_eq!(fake.header(0, "authorization").as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert!(fake.header(0, "openai-beta").is_none(), "no beta header");
    assert!(fake.uri(0).ends_with("/v1/realtime?model=gpt-realtime-2.1"), "{}", fake.uri(0));
    let update = fake.wait_for(T, "session.update", ty("session.update")).event;
    assert_eq!(update["session"]["type"], "realtime");
    assert_eq!(update["session"]["reasoning"], json!({"effort": "low"}), "2.1 takes a reasoning effort");
    assert_eq!(update["session"]["parallel_tool_calls"], true);
    assert_eq!(update["session"]["truncation"], json!({"type": "retention_ratio", "retention_ratio": 0.8}));
    assert!(update["session"].get("temperature").is_none());
    assert_eq!(update["session"]["output_modalities"], json!(["text"]));
    let mut tools: Vec<&str> =
        update["session"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "answer_permission",
            "cancel_task",
            "catch_up",
            "continue_task",
            "get_task_result",
            "list_tasks",
            "set_quiet",
            "start_task"
        ]
    );
    let status = home.json(&["status", "--json"]);
    assert_eq!(status["live"]["session_id"], "sess_1");
    let human = home.run(&["status"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("live: ready"), "{}", describe(&human));
    // The key never shows in status or in the daemon's log.
    assert!(!status.to_string().contains(KEY));
    let out = home.run(&["key", "toggle", "live"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "live: off");
    wait_until(T, "connection closed", || fake.live_connections() == 0);
    assert_schema_clean(&fake);
}

#[test]
fn start_task_is_answered_before_claude_prints_anything() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let d = home.start_daemon();
    live_on(&home, &fake);
    let first_output = home.scratch("first-output");
    let script = json!({"start_delay": 2, "first_output_file": first_output});
    let call = fake.call_tool("start_task", json!({"task": script.to_string(), "name": "slow start"}));
    let (r, out) = tool_output(&fake, &call);
    assert!(!first_output.exists(), "the answer waited for Claude's output");
    assert_eq!(out["status"], "started", "{out}");
    assert_eq!(out["task_id"], "t1");
    assert_eq!(out["name"], "slow start");
    // Then one response.create so the model can say so.
    fake.wait_for(T, "response.create after the output", |x| x.ty() == "response.create" && x.at >= r.at);
    assert_eq!(home.task("t1")["state"], "running");
    assert!(!d.log_text().contains(KEY));
    assert_schema_clean(&fake);
    no_duplicate_creates(&fake);
}

#[test]
fn list_result_cancel_continue_and_ambiguity_round_trips() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    let hang = home.start_task(&json!({"hang": true}), "auth tests", &home.work("a"));
    let quick = home.start_task(&json!({"result": {"result": "Refactored auth."}}), "auth refactor", &home.work("a"));
    home.wait_ended(&quick, T);
    live_on(&home, &fake);

    let (_, list) = tool_output(&fake, &fake.call_tool("list_tasks", json!({})));
    let names: Vec<&str> = list["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"auth tests") && names.contains(&"auth refactor"), "{list}");

    let (_, result) = tool_output(&fake, &fake.call_tool("get_task_result", json!({"task": "the refactor"})));
    assert_eq!(result["status"], "found", "{result}");
    assert_eq!(result["summary"], "Refactored auth.");
    assert!(result["log_path"].as_str().is_some_and(|p| p.ends_with("t2.log")));

    let (_, amb) = tool_output(&fake, &fake.call_tool("get_task_result", json!({"task": "auth"})));
    assert_eq!(amb["status"], "ambiguous", "{amb}");
    assert_eq!(amb["candidates"].as_array().map(Vec::len), Some(2));

    let (_, cancel) = tool_output(&fake, &fake.call_tool("cancel_task", json!({"task": "auth tests"})));
    assert_eq!(cancel["status"], "cancelling", "{cancel}");
    assert_eq!(home.wait_ended(&hang, T)["state"], "cancelled");

    let (_, cont) =
        tool_output(&fake, &fake.call_tool("continue_task", json!({"task": "t2", "instruction": "{\"result\":{}}"})));
    assert_eq!(cont["status"], "started", "{cont}");
    let t = home.wait_ended(cont["task_id"].as_str().expect("id"), T);
    assert_eq!(t["continues"], "t2");

    // The instructions carry the task table, refreshed as tasks change.
    fake.wait_for(T, "a task-table update naming the continued task", |r| {
        r.ty() == "session.update"
            && r.event["session"]["instructions"].as_str().is_some_and(|i| {
                i.contains("'auth refactor (continued)' succeeded") && i.contains("t1 'auth tests' cancelled")
            })
    });

    let (_, bad) = tool_output(&fake, &fake.call_tool("start_task", json!({"name": "no task"})));
    assert_eq!(bad["status"], "error", "{bad}");
    assert_schema_clean(&fake);
    no_duplicate_creates(&fake);
}

#[test]
fn a_notification_waits_while_a_response_is_active() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    fake.set_hold_responses(true);
    fake.respond_now(); // the server is busy answering something
    let id = home.start_task(&json!({"result": {"result": "Built the docs."}}), "docs", &home.work("a"));
    home.wait_ended(&id, T);
    home.sync();
    fake.barrier(T);
    assert_eq!(fake.count(is_notification(&id)), 0, "spoken over an active response:\n{}", fake.dump());
    fake.set_hold_responses(false);
    fake.finish_held_response();
    let note = fake.wait_for(T, "the notification", is_notification(&id));
    let text = note.event["item"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("'docs' finished") && text.contains("Built the docs."), "{text}");
    fake.wait_for(T, "response.create for it", |r| r.ty() == "response.create" && r.at >= note.at);
    assert_schema_clean(&fake);
    no_duplicate_creates(&fake);
}

#[test]
fn two_tasks_ending_together_give_two_notifications_one_response_at_a_time() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    fake.set_hold_responses(true);
    let a = home.start_task(&json!({"sleep": 0.5}), "alpha", &home.work("a"));
    let b = home.start_task(&json!({"sleep": 0.5}), "beta", &home.work("a"));
    home.wait_ended(&a, T);
    home.wait_ended(&b, T);
    let first = fake.wait_for(T, "a first notification", |r| is_notification(&a)(r) || is_notification(&b)(r));
    fake.wait_for(T, "its response.create", |r| r.ty() == "response.create" && r.at >= first.at);
    home.sync();
    fake.barrier(T);
    let both = fake.count(|r| is_notification(&a)(r) || is_notification(&b)(r));
    assert_eq!(both, 1, "the second waits for the first response to finish:\n{}", fake.dump());
    fake.set_hold_responses(false);
    fake.finish_held_response();
    fake.wait_for(T, "the second notification", |r| {
        (is_notification(&a)(r) || is_notification(&b)(r)) && r.event != first.event
    });
    wait_until(T, "both delivered", || home.json(&["status", "--json"])["live"]["pending_notifications"] == 0);
    assert_eq!(fake.count(is_notification(&a)), 1);
    assert_eq!(fake.count(is_notification(&b)), 1);
    no_duplicate_creates(&fake);
    assert_schema_clean(&fake);
}

/// Breaks the link while a task runs; the task's notification must arrive
/// exactly once, on a new connection that was set up again.
fn survives_a_broken_link(break_it: impl FnOnce(&FakeRealtime)) {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    let id = home.start_task(&json!({"sleep": 1.5, "result": {"result": "Survived."}}), "survivor", &home.work("a"));
    break_it(&fake);
    home.wait_ended(&id, T);
    fake.wait_connections(2, T);
    let note = fake.wait_for(T, "the notification", is_notification(&id));
    assert!(note.conn >= 1, "delivered on the new connection");
    let update =
        fake.wait_for(T, "session.update on the new connection", |r| r.conn == note.conn && r.ty() == "session.update");
    assert!(update.at <= note.at, "session set up before the replay");
    wait_until(T, "delivered", || home.json(&["status", "--json"])["live"]["pending_notifications"] == 0);
    home.sync();
    fake.barrier(T);
    assert_eq!(fake.count(is_notification(&id)), 1, "exactly once:\n{}", fake.dump());
    assert_schema_clean(&fake);
    no_duplicate_creates(&fake);
}

#[test]
fn reconnects_after_a_clean_close() {
    survives_a_broken_link(|f| f.close_clean());
}

#[test]
fn reconnects_after_an_abrupt_tcp_close() {
    survives_a_broken_link(|f| f.close_abrupt());
}

#[test]
fn reconnects_after_a_stall_without_pongs() {
    survives_a_broken_link(|f| f.stall());
}

#[test]
fn session_expired_opens_a_new_session_and_loses_nothing() {
    survives_a_broken_link(|f| f.expire_session());
}

#[test]
fn renews_before_expiry_while_a_task_runs() {
    let fake = FakeRealtime::start();
    fake.set_expires_in(62);
    let home = live_home(&fake, "renew_before_s = 60.0");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    let id = home.start_task(&json!({"sleep": 3, "result": {"result": "Renewed."}}), "renewal", &home.work("a"));
    fake.wait_connections(2, T);
    home.wait_ended(&id, T);
    fake.wait_for(T, "the notification", is_notification(&id));
    wait_until(T, "delivered", || home.json(&["status", "--json"])["live"]["pending_notifications"] == 0);
    home.sync();
    fake.barrier(T);
    assert_eq!(fake.count(is_notification(&id)), 1, "not lost, not doubled:\n{}", fake.dump());
    // The old connection was closed by us after the new one opened.
    assert!(fake.live_connections() <= 1, "{}", fake.live_connections());
    assert_schema_clean(&fake);
}

#[test]
fn a_fatal_auth_error_stops_retrying_and_is_reported() {
    let fake = FakeRealtime::start();
    fake.reject_next_upgrades(Some(401));
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    assert!(home.run(&["key", "toggle", "live"]).status.success());
    wait_until(T, "failed state", || home.json(&["status", "--json"])["live"]["state"] == "failed");
    home.sync();
    let live = home.json(&["status", "--json"])["live"].clone();
    // No retry is planned (the backoff's first would be due in 0.5 s), and none was made.
    assert_eq!(live["reconnect_in_ms"], Value::Null, "no retry storm after a 401: {live}");
    assert_eq!(fake.attempts(), 1, "no retry storm after a 401");
    let error = live["error"].as_str().unwrap_or("");
    assert!(error.contains("401") && error.contains("invalid_api_key"), "{live}");
    let doctor = home.run(&["doctor"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", describe(&doctor));
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("[FAIL] live: stopped:") && text.contains("401"), "{text}");
    assert!(text.contains("[ok  ] openai key"), "{text}");
}

#[test]
fn hostile_frames_do_not_break_the_session() {
    let fake = FakeRealtime::start();
    // The fake writes ~20 MB below without reading, so it answers no ping meanwhile:
    // give the keepalive a production-like timeout.
    let home = live_home(&fake, "ping_interval_s = 15.0\npong_timeout_s = 10.0");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    let huge = "x".repeat(200_000);
    let frames = [
        json!({"type": "response.done", "response": "not an object"}),
        json!({"type": "response.function_call_arguments.done", "call_id": 5, "name": null}),
        json!({"type": "no.such.event", "payload": [1, 2, 3]}),
        json!({"type": "error", "error": {"code": 42}}),
        json!({"type": "response.output_text.delta", "delta": huge}),
        json!({"no_type": true}),
        json!([1, 2, 3]),
        json!("a string"),
        json!({"type": "session.created", "session": {"expires_at": "soon"}}),
    ];
    for i in 0..1000 {
        fake.send(frames[i % frames.len()].clone());
    }
    let (_, out) = tool_output(&fake, &fake.call_tool("list_tasks", json!({})));
    assert_eq!(out["status"], "ok", "{out}");
    assert_eq!(home.json(&["status", "--json"])["live"]["state"], "ready");
    assert_eq!(fake.connections(), 1, "the session survived on its first connection");
    assert!(
        home.json(&["status", "--json"])["live"]["bad_frames"].as_u64().unwrap_or(0) > 0,
        "bad frames were counted"
    );
    assert_schema_clean(&fake);
}

#[test]
fn announce_when_idle_opens_a_session_just_to_speak_and_closes_it() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "announce_when_idle = true");
    let _d = home.start_daemon();
    let id = home.start_task(&json!({"result": {"result": "Idle news."}}), "idle", &home.work("a"));
    home.wait_ended(&id, T);
    let note = fake.wait_for(T, "the announcement", is_notification(&id));
    fake.wait_for(T, "its response.create", |r| r.ty() == "response.create" && r.at >= note.at);
    wait_until(T, "the session closed again", || fake.live_connections() == 0);
    assert_eq!(home.json(&["status", "--json"])["live"]["state"], "off");
    assert_schema_clean(&fake);
}

/// Spawns `ptt live --text` with piped stdin/stdout; returns the child and a
/// channel of its stdout lines.
fn live_text(home: &TestHome) -> (std::process::Child, crossbeam_channel::Receiver<String>) {
    let mut child = home
        .cmd(&["live", "--text"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn expect_line(rx: &crossbeam_channel::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains(what) {
                return line;
            }
            seen.push(line);
        }
    }
    panic!("no line with {what:?}; saw {seen:#?}");
}

fn converse(home: &TestHome, fake: &FakeRealtime) {
    let (mut child, rx) = live_text(home);
    fake.wait_for(T, "session.update", ty("session.update"));
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "hello there").expect("write");
    let user = fake
        .wait_for(T, "the typed line", |r| r.ty() == "conversation.item.create" && r.event["item"]["role"] == "user");
    assert_eq!(user.event["item"]["content"][0]["type"], "input_text");
    assert_eq!(user.event["item"]["content"][0]["text"], "hello there");
    fake.wait_for(T, "response.create", |r| r.ty() == "response.create" && r.at >= user.at);
    expect_line(&rx, "assistant: Noted.");
    // A task started by the model is visible from the shell while we talk.
    let call = fake.call_tool("start_task", json!({"task": "{}", "name": "from text"}));
    tool_output(fake, &call);
    expect_line(&rx, "(tool start_task: started t1)");
    home.wait_ended("t1", T);
    expect_line(&rx, "[task t1 'from text' finished");
    drop(stdin);
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "ptt live --text did not exit after end of input");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    wait_until(T, "the session closed", || fake.live_connections() == 0);
    assert_schema_clean(fake);
}

#[test]
fn text_mode_attached_to_a_running_daemon() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    converse(&home, &fake);
    // The daemon keeps running after the client leaves.
    assert!(home.run(&["status"]).status.success());
}

#[test]
fn text_mode_without_a_daemon_owns_the_tasks() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    converse(&home, &fake);
    // It was the daemon: nothing listens any more.
    assert_eq!(home.run(&["status"]).status.code(), Some(69));
}

#[test]
fn text_mode_without_a_key_says_what_is_missing() {
    let fake = FakeRealtime::start();
    let mut home = live_home(&fake, "");
    home.env.retain(|(k, _)| k != "OPENAI_API_KEY");
    let out = home.cmd(&["live", "--text"]).stdin(Stdio::null()).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OPENAI_API_KEY"), "{}", describe(&out));
    assert_eq!(fake.attempts(), 0);
}

#[test]
fn a_2x_response_with_a_preamble_two_calls_and_a_final_message_gets_one_response_create() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    let (mut child, lines) = live_text(&home);
    fake.wait_for(T, "session.update", ty("session.update"));
    wait_until(T, "live ready", || home.json(&["status", "--json"])["live"]["state"] == "ready");
    let calls = fake.respond_multi(
        "Let me look at your tasks and start that.",
        &[("list_tasks", json!({})), ("start_task", json!({"task": "{}", "name": "docs pass"}))],
        "Done, both handled.",
    );
    // Each call dispatched once and answered with its own output.
    let (_, listed) = tool_output(&fake, &calls[0]);
    assert!(listed.get("tasks").is_some() || listed.is_array() || listed.is_object(), "{listed}");
    let (_, started) = tool_output(&fake, &calls[1]);
    assert_eq!(started["status"], "started", "{started}");
    // The preamble is printed once, with its phase, and so is the final message.
    expect_line(&lines, "assistant (preamble): Let me look at your tasks and start that.");
    expect_line(&lines, "assistant: Done, both handled.");
    // Exactly one response.create after that response's done and both outputs.
    let create = fake.wait_for(T, "response.create after the calls", ty("response.create"));
    home.sync();
    fake.barrier(T);
    for call in &calls {
        let outputs = fake.count(|r| r.event["item"]["call_id"] == call.as_str());
        assert_eq!(outputs, 1, "{call} answered once:\n{}", fake.dump());
    }
    let done_at = fake
        .sent()
        .into_iter()
        .find(|s| s.ty() == "response.done" && s.event["response"]["output"].as_array().is_some_and(|o| o.len() == 4))
        .map(|s| s.at)
        .expect("the multi-item response.done");
    assert!(create.at >= done_at, "response.create only after response.done");
    // The auto reply to our create is a normal text response; no second create for the calls (the
    // started task's end later gets its own notification and create).
    let first_note = fake.received().into_iter().find(|r| r.event["item"]["role"] == "system").map(|r| r.at);
    let creates = fake.count(|r| r.ty() == "response.create" && first_note.is_none_or(|n| r.at < n));
    assert_eq!(creates, 1, "one response.create for the whole response:\n{}", fake.dump());
    no_duplicate_creates(&fake);
    assert_schema_clean(&fake);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_gone_model_stops_retrying_and_says_what_to_set() {
    let fake = FakeRealtime::start();
    fake.set_gone_models(&["gpt-realtime-mini"]);
    let home = live_home(&fake, "model = \"gpt-realtime-mini\"\n");
    let _d = home.start_daemon();
    assert!(home.run(&["key", "toggle", "live"]).status.success());
    wait_until(T, "failed state", || home.json(&["status", "--json"])["live"]["state"] == "failed");
    home.sync();
    let live = home.json(&["status", "--json"])["live"].clone();
    let error = live["error"].as_str().unwrap_or("");
    assert!(
        error.contains("\"gpt-realtime-mini\" is not available")
            && error.contains("set live.model = \"gpt-realtime-2.1-mini\""),
        "{live}"
    );
    assert_eq!(live["reconnect_in_ms"], Value::Null, "no retry planned after model_not_found: {live}");
    assert_eq!(fake.attempts(), 1, "no retries after model_not_found");
    // A 404 on the upgrade says the same.
    let fake = FakeRealtime::start();
    fake.reject_next_upgrades(Some(404));
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    assert!(home.run(&["key", "toggle", "live"]).status.success());
    wait_until(T, "failed state", || home.json(&["status", "--json"])["live"]["state"] == "failed");
    let error = home.json(&["status", "--json"])["live"]["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("live.model = \"gpt-realtime-2.1\" is not available") && error.contains("404"), "{error}");
}

/// A home with yesterday's models whose lifecycle check goes to `fake` (live and dictation APIs).
fn old_models_home(fake: &FakeRealtime) -> TestHome {
    let base = fake.url.replace("ws://", "http://").replace("/realtime", "");
    let mut home = live_home(
        fake,
        &format!(
            "model = \"gpt-realtime\"\ntranscription_model = \"gpt-4o-mini-transcribe\"\n\
             [dictate]\napi_base = \"{base}\"\nmodel = \"whisper-1\"\n"
        ),
    );
    home.env.retain(|(k, _)| k != "PTT_MODEL_CHECK");
    home
}

#[test]
fn yesterdays_config_is_warned_at_start_in_status_and_doctor_with_what_the_api_says() {
    let fake = FakeRealtime::start();
    let today = ptt::models::Date::today();
    let soon = ptt::models::Date::from_days(today.days() + 10).to_string();
    fake.set_model_shutdown("gpt-realtime", &soon);
    fake.set_gone_models(&["gpt-4o-mini-transcribe"]);
    let home = old_models_home(&fake);
    let d = home.start_daemon();
    wait_until(T, "the model check", || home.json(&["status", "--json"])["models"]["checked_on"].is_string());
    let models = home.json(&["status", "--json"])["models"].clone();
    let warnings: Vec<String> =
        models["warnings"].as_array().into_iter().flatten().filter_map(|w| w.as_str().map(str::to_owned)).collect();
    let all = warnings.join("\n");
    if today < ptt::models::Date::new(2027, 1, 20) {
        assert!(
            all.contains(
                "live.model = \"gpt-realtime\" shuts down on 2027-01-20; set live.model = \"gpt-realtime-2.1\""
            ),
            "{all}"
        );
        assert!(
            all.contains(
                "dictate.model = \"whisper-1\" shuts down on 2027-02-26; set dictate.model = \"gpt-transcribe\""
            ),
            "{all}"
        );
        assert!(all.contains(&format!("shuts down on {soon} (in 10 days)")), "the API's shutdown_date: {all}");
    }
    let errors = models["errors"].to_string();
    assert!(
        errors.contains("gpt-4o-mini-transcribe")
            && errors.contains("model_not_found")
            && errors.contains("gpt-transcribe"),
        "{errors}"
    );
    // Every configured model was asked for, with the key.
    let asked: Vec<String> = fake
        .model_requests()
        .into_iter()
        .map(|(p, a)| {
            assert_eq!(a, format!("Bearer {KEY}"));
            p
        })
        .collect();
    for m in ["gpt-realtime", "gpt-4o-mini-transcribe", "whisper-1"] {
        assert!(asked.contains(&format!("/v1/models/{m}")), "{asked:?}");
    }
    // The journal said it at start; `ptt status` and `ptt doctor` say it too.
    let log = d.log_text();
    assert!(log.contains("shuts down on 2027-01-20") || today >= ptt::models::Date::new(2027, 1, 20), "{log}");
    assert!(log.contains("is not available from the API"), "{log}");
    let human = String::from_utf8_lossy(&home.run(&["status"]).stdout).to_string();
    assert!(human.contains("models: warning: live.model = \"gpt-realtime\""), "{human}");
    assert!(human.contains("models: ERROR: live.transcription_model = \"gpt-4o-mini-transcribe\""), "{human}");
    let doctor = home.run(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("[warn] model: live.model = \"gpt-realtime\""), "{text}");
    assert!(text.contains("[FAIL] live.transcription_model at the API"), "{text}");
    assert!(!text.contains(KEY) && !human.contains(KEY) && !log.contains(KEY), "the key never shows");
    assert_eq!(doctor.status.code(), Some(1));
}

#[test]
fn after_the_shutdown_date_the_replacement_is_used_and_said() {
    let fake = FakeRealtime::start();
    let mut home = old_models_home(&fake);
    home.env.push(("PTT_TODAY".into(), "2027-02-01".into()));
    let _d = home.start_daemon();
    live_on(&home, &fake);
    assert!(fake.uri(0).ends_with("?model=gpt-realtime-2.1"), "{}", fake.uri(0));
    let update = fake.wait_for(T, "session.update", ty("session.update")).event;
    assert_eq!(update["session"]["reasoning"]["effort"], "low", "the 2.1 model gets its reasoning effort");
    let status = home.json(&["status", "--json"]);
    let warnings = status["models"]["warnings"].to_string();
    assert!(warnings.contains("was shut down on 2027-01-20; using \\\"gpt-realtime-2.1\\\" instead"), "{warnings}");
    assert!(
        !warnings.contains("dictate.model = \\\"whisper-1\\\" was shut down"),
        "whisper-1 lasts until 2027-02-26: {warnings}"
    );
    assert_eq!(status["models"]["used"][0]["model"], "gpt-realtime-2.1");
    assert_schema_clean(&fake);
}
