//! Conversation manners end to end (issue 16), in text mode: the real daemon, the scripted fake Realtime
//! server (`tests/common/fake_realtime.rs`) and the fake Claude CLI. Progress is said in the pauses, never
//! over the user or a response; quiet mode holds results (across a reconnect) until `catch_up` or the
//! offer made when it ends; every result is heard exactly once. Every test ends by checking the client
//! events against the official GA schema. Tests wait for facts (`sync`, the fake's barrier, status fields),
//! and tasks end when the test says so (the fake CLI's `wait_file`).

mod common;

use std::time::Duration;

use common::fake_realtime::{
    FakeRealtime, LIVE_KEY, Received, assert_schema_clean, is_notification, live_home, no_duplicate_creates,
    system_text, tool_output,
};
use common::{TestHome, describe, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

fn live(home: &TestHome) -> Value {
    home.json(&["status", "--json"])["live"].clone()
}

fn live_on(home: &TestHome, fake: &FakeRealtime) {
    let out = home.run(&["key", "toggle", "live"]);
    assert!(out.status.success(), "{}", describe(&out));
    fake.wait_for(T, "session.update", |r| r.ty() == "session.update");
    wait_until(T, "live ready", || live(home)["state"] == "ready");
}

fn key(home: &TestHome, args: &[&str]) -> String {
    let mut all = vec!["key"];
    all.extend_from_slice(args);
    let out = home.run(&all);
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn is_progress(r: &Received) -> bool {
    system_text(r).is_some_and(|t| t.starts_with("[progress"))
}

fn is_offer(r: &Received) -> bool {
    system_text(r).is_some_and(|t| t.starts_with("[Quiet mode is off"))
}

/// How many `function_call_output`s carried `text`.
fn outputs_with(fake: &FakeRealtime, text: &str) -> usize {
    fake.count(|r| {
        r.event["item"]["type"] == "function_call_output"
            && r.event["item"]["output"].as_str().is_some_and(|o| o.contains(text))
    })
}

fn settle(home: &TestHome, fake: &FakeRealtime) {
    home.sync();
    fake.barrier(T);
}

fn assert_clean(fake: &FakeRealtime) {
    assert_schema_clean(fake);
    no_duplicate_creates(fake);
}

/// A task that runs `cargo test` (its activity) until `done` exists.
fn long_task(home: &TestHome, name: &str, done: &std::path::Path) -> String {
    let bash = json!({"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": "u1", "name": "Bash", "input": {"command": "cargo test"}}]}});
    let script = json!({"lines": [bash], "wait_file": done, "result": {"result": format!("{name}: all tests pass.")}});
    home.start_task(&script, name, &home.work(name))
}

#[test]
fn progress_is_said_once_in_a_pause_never_over_the_key_or_a_response_then_the_result() {
    let fake = FakeRealtime::start();
    // 0.03 min: an update is due about 1.8 s after the start.
    let home = live_home(&fake, "progress_min = 0.03\n");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    key(&home, &["press", "ptt"]);
    let done = home.scratch("done");
    let id = long_task(&home, "auth refactor", &done);
    wait_until(T, "an update due and queued", || live(&home)["progress"]["tasks"] == json!([id]));
    settle(&home, &fake);
    assert_eq!(fake.count(is_progress), 0, "said while the key was held:\n{}", fake.dump());

    // The server is busy with a response of its own when the key goes up: still nothing.
    fake.set_hold_responses(true);
    fake.respond_now();
    wait_until(T, "the server's response is active", || live(&home)["responding"] == true);
    key(&home, &["release", "ptt"]);
    settle(&home, &fake);
    assert_eq!(fake.count(is_progress), 0, "said over an active response:\n{}", fake.dump());

    // The response ends: the update goes out once, with what the task is doing.
    fake.finish_held_response();
    let update = fake.wait_for(T, "the progress update", is_progress);
    let text = system_text(&update).unwrap_or("");
    assert!(
        text.contains(&format!("{id} 'auth refactor' has run")) && text.contains("it is running cargo test"),
        "{text}"
    );
    fake.wait_for(T, "its response.create", |r| r.ty() == "response.create" && r.at >= update.at);

    // The task ends while its update is being said: the result waits for the floor, then comes once.
    std::fs::write(&done, "").expect("end the task");
    home.wait_ended(&id, T);
    settle(&home, &fake);
    assert_eq!(fake.count(is_notification(&id)), 0, "spoken over the update:\n{}", fake.dump());
    fake.set_hold_responses(false);
    fake.finish_held_response();
    let note = fake.wait_for(T, "the result", is_notification(&id));
    assert!(note.at >= update.at);
    wait_until(T, "the result heard", || live(&home)["pending_notifications"] == 0);
    settle(&home, &fake);
    assert_eq!(fake.count(is_progress), 1, "exactly one update while it ran:\n{}", fake.dump());
    assert_eq!(fake.count(is_notification(&id)), 1);
    assert_eq!(live(&home)["progress"], Value::Null, "nothing more about an ended task");
    assert_clean(&fake);
}

#[test]
fn two_tasks_due_together_share_one_update() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "progress_min = 0.03\n");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    key(&home, &["press", "ptt"]);
    let (done_a, done_b) = (home.scratch("done-a"), home.scratch("done-b"));
    let a = long_task(&home, "alpha", &done_a);
    let b = long_task(&home, "beta", &done_b);
    wait_until(T, "one update naming both", || live(&home)["progress"]["tasks"] == json!([a, b]));
    settle(&home, &fake);
    assert_eq!(fake.count(is_progress), 0, "the key is held");
    fake.set_hold_responses(true);
    key(&home, &["release", "ptt"]);
    let update = fake.wait_for(T, "the shared update", is_progress);
    let text = system_text(&update).unwrap_or("");
    assert!(text.contains(&format!("{a} 'alpha' has run")) && text.contains(&format!("{b} 'beta' has run")), "{text}");
    std::fs::write(&done_a, "").expect("end a");
    std::fs::write(&done_b, "").expect("end b");
    home.wait_ended(&a, T);
    home.wait_ended(&b, T);
    fake.set_hold_responses(false);
    fake.finish_held_response();
    wait_until(T, "both results heard", || live(&home)["pending_notifications"] == 0);
    settle(&home, &fake);
    assert_eq!(fake.count(is_progress), 1, "one item for both:\n{}", fake.dump());
    assert_eq!(fake.count(is_notification(&a)), 1);
    assert_eq!(fake.count(is_notification(&b)), 1);
    assert_clean(&fake);
}

#[test]
fn quiet_mode_holds_a_result_across_a_reconnect_and_catch_up_delivers_it_once() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    assert_eq!(key(&home, &["toggle", "quiet"]), "quiet: on");
    assert_eq!(live(&home)["quiet"], true);
    let id = home.start_task(&json!({"result": {"result": "Built while you were away."}}), "docs", &home.work("a"));
    home.wait_ended(&id, T);
    settle(&home, &fake);
    assert_eq!(fake.count(is_notification(&id)), 0, "quiet:\n{}", fake.dump());
    assert_eq!(fake.count(|r| r.ty() == "response.create"), 0, "quiet: no response.create\n{}", fake.dump());
    assert_eq!(live(&home)["waiting"], 1);
    let human = String::from_utf8_lossy(&home.run(&["status"]).stdout).to_string();
    assert!(human.contains("live: ready, quiet mode (1 waiting)"), "{human}");

    // The link breaks; the new session is set up, and still says nothing.
    fake.close_clean();
    fake.wait_connections(2, T);
    fake.wait_for(T, "session.update on the new connection", |r| r.conn == 1 && r.ty() == "session.update");
    wait_until(T, "ready again", || live(&home)["state"] == "ready");
    settle(&home, &fake);
    assert_eq!(fake.count(is_notification(&id)), 0, "quiet after the reconnect:\n{}", fake.dump());
    assert_eq!(fake.count(|r| r.ty() == "response.create"), 0, "{}", fake.dump());

    // "What did I miss?": answered at once, the result in it, heard once its response is done.
    let call = fake.call_tool("catch_up", json!({}));
    let (r, out) = tool_output(&fake, &call);
    assert_eq!(out["status"], "ok", "{out}");
    let items = out["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{out}");
    assert_eq!(items[0]["kind"], "result");
    assert!(items[0]["text"].as_str().is_some_and(|t| t.contains("Built while you were away.")), "{out}");
    fake.wait_for(T, "the response that says it", |x| x.ty() == "response.create" && x.at >= r.at);
    wait_until(T, "heard", || live(&home)["pending_notifications"] == 0 && live(&home)["waiting"] == 0);

    // Leaving quiet mode offers nothing more, and the result is never said again.
    assert_eq!(key(&home, &["toggle", "quiet"]), "quiet: off");
    settle(&home, &fake);
    assert_eq!(fake.count(is_offer), 0, "nothing was left to offer:\n{}", fake.dump());
    assert_eq!(fake.count(is_notification(&id)), 0, "{}", fake.dump());
    assert_eq!(outputs_with(&fake, "Built while you were away."), 1, "exactly once");
    assert_clean(&fake);
}

#[test]
fn leaving_quiet_mode_offers_what_was_missed_and_a_yes_delivers_each_once() {
    let fake = FakeRealtime::start();
    let home = live_home(&fake, "");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    // The assistant turns quiet mode on (the user said "I'm in a call").
    let (_, out) = tool_output(&fake, &fake.call_tool("set_quiet", json!({"on": true})));
    assert_eq!(out, json!({"status": "ok", "quiet": true, "waiting": 0}));
    assert_eq!(live(&home)["quiet"], true);
    // One after the other, so that "oldest first" has one right answer.
    let a = home.start_task(&json!({"result": {"result": "Alpha is done."}}), "alpha", &home.work("a"));
    home.wait_ended(&a, T);
    let b = home.start_task(&json!({"result": {"result": "Beta is done."}}), "beta", &home.work("b"));
    home.wait_ended(&b, T);
    fake.close_abrupt();
    fake.wait_connections(2, T);
    wait_until(T, "ready again", || live(&home)["state"] == "ready");
    settle(&home, &fake);
    assert_eq!(fake.count(|r| is_notification(&a)(r) || is_notification(&b)(r)), 0, "{}", fake.dump());

    // "You can talk again": one offer, not the results.
    let (_, out) = tool_output(&fake, &fake.call_tool("set_quiet", json!({"on": false})));
    assert_eq!(out, json!({"status": "ok", "quiet": false, "waiting": 2}));
    let offer = fake.wait_for(T, "the offer", is_offer);
    assert!(system_text(&offer).is_some_and(|t| t.contains("2 task results")), "{}", offer.event);
    settle(&home, &fake);
    assert_eq!(fake.count(|r| is_notification(&a)(r) || is_notification(&b)(r)), 0, "offered, not said");

    // The user says yes: both, oldest first, once.
    let (_, out) = tool_output(&fake, &fake.call_tool("catch_up", json!({})));
    let texts: Vec<&str> = out["items"].as_array().into_iter().flatten().filter_map(|i| i["text"].as_str()).collect();
    assert_eq!(texts.len(), 2, "{out}");
    assert!(texts[0].contains(&format!("[task {a} ")) && texts[1].contains(&format!("[task {b} ")), "{texts:?}");
    wait_until(T, "both heard", || live(&home)["pending_notifications"] == 0);
    settle(&home, &fake);
    assert_eq!(outputs_with(&fake, "Alpha is done."), 1);
    assert_eq!(outputs_with(&fake, "Beta is done."), 1);
    assert_eq!(fake.count(is_offer), 1);
    assert_eq!(fake.count(|r| is_notification(&a)(r) || is_notification(&b)(r)), 0, "{}", fake.dump());
    assert_clean(&fake);
}

#[test]
fn a_stalled_task_is_said_once_as_stalled() {
    let fake = FakeRealtime::start();
    // Silent for 0.02 min (1.2 s): stalled. Periodic updates are far away (10 min).
    let mut home = TestHome::with_fake(&format!(
        "share_dirs = true\nstall_min = 0.02\n[live]\nurl = \"{}\"\nping_interval_s = 0.5\npong_timeout_s = 2.0\n\
         progress_min = 10\n",
        fake.url
    ));
    home.env.push(("OPENAI_API_KEY".into(), LIVE_KEY.into()));
    let _d = home.start_daemon();
    live_on(&home, &fake);
    let done = home.scratch("done");
    let id = home.start_task(&json!({"wait_file": done, "result": {"result": "Woke up."}}), "sleepy", &home.work("a"));
    let update = fake.wait_for(T, "the stall, said", is_progress);
    let text = system_text(&update).unwrap_or("");
    assert!(
        text.contains(&format!("{id} 'sleepy' has printed nothing for")) && text.contains("may be stuck"),
        "{text}"
    );
    wait_until(T, "the update heard", || live(&home)["progress"].is_null());
    // Said once: a second one would be due at once and sent before the daemon is idle.
    settle(&home, &fake);
    assert_eq!(fake.count(is_progress), 1, "{}", fake.dump());
    std::fs::write(&done, "").expect("end the task");
    home.wait_ended(&id, T);
    fake.wait_for(T, "the result", is_notification(&id));
    settle(&home, &fake);
    assert_eq!(fake.count(is_progress), 1, "{}", fake.dump());
    assert_clean(&fake);
}
