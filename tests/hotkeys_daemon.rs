//! Hotkeys through the whole daemon on a real (virtual) X display: Xvfb,
//! `xdotool keydown <keycode>`, the daemon's rdev listener, the binding
//! machine, and what the bindings do: the live chord toggles the live session,
//! and while the push-to-talk key is held no task notification is spoken.
//! Needs Xvfb and xdotool (scripts/setup --test installs them); never skips.

mod common;

use std::time::Duration;

use common::fake_realtime::{FakeRealtime, Received};
use common::xvfb::{Xvfb, xdotool};
use common::{TestHome, describe, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[test]
fn the_live_chord_and_the_ptt_key_drive_the_daemon() {
    let xvfb = Xvfb::start();
    let fake = FakeRealtime::start();
    // A ping every 0.5 s: `FakeRealtime::barrier` waits for two.
    let mut home = TestHome::with_fake(&format!(
        "share_dirs = true\n[live]\nurl = \"{}\"\nping_interval_s = 0.5\npong_timeout_s = 2.0\n",
        fake.url
    ));
    home.env.push(("OPENAI_API_KEY".into(), "sk-test-hotkeys".into()));
    home.env.push(("DISPLAY".into(), xvfb.display.clone()));
    let _d = home.start_daemon();
    let status = home.json(&["status", "--json"]);
    assert_eq!(status["hotkeys"]["source"], "x11", "{status:#}");
    let doctor = home.run(&["doctor"]);
    assert!(String::from_utf8_lossy(&doctor.stdout).contains("hotkeys: x11 is active"), "{}", describe(&doctor));

    // Right Shift + Right Ctrl: live on.
    xdotool(&xvfb.display, &["keydown", "62", "keydown", "105"]);
    xdotool(&xvfb.display, &["keyup", "105", "keyup", "62"]);
    fake.wait_for(T, "session.update", |r| r.ty() == "session.update");
    wait_until(T, "live ready", || home.json(&["status", "--json"])["live"]["state"] == "ready");

    // Hold Right Ctrl (push-to-talk) while a task ends: its notification waits for the release.
    let hotkeys = || home.json(&["status", "--json"])["hotkeys"].clone();
    wait_until(T, "the chord's release settled", || {
        let h = hotkeys();
        h["settling"] == false && h["held"] == json!([])
    });
    xdotool(&xvfb.display, &["keydown", "105"]);
    wait_until(T, "push-to-talk held", || hotkeys()["held"] == json!(["ptt"]));
    let id = home.start_task(&json!({"result": {"result": "Held back."}}), "held", &home.work("a"));
    home.wait_ended(&id, T);
    let is_note = |r: &Received| {
        r.ty() == "conversation.item.create"
            && r.event["item"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with("[task t1 "))
    };
    home.sync();
    fake.barrier(T);
    assert_eq!(fake.count(is_note), 0, "spoken while the key was held:\n{}", fake.dump());
    xdotool(&xvfb.display, &["keyup", "105"]);
    fake.wait_for(T, "the notification after the release", is_note);

    // The chord again: live off.
    xdotool(&xvfb.display, &["keydown", "105", "keydown", "62"]);
    xdotool(&xvfb.display, &["keyup", "62", "keyup", "105"]);
    wait_until(T, "live off", || home.json(&["status", "--json"])["live"]["state"] == "off");
    assert!(fake.schema_errors().is_empty(), "{:?}", fake.schema_errors());
}
