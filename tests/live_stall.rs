//! A Realtime link that stalls in the middle of a conversation (TCP open,
//! nothing answered, no pongs) is noticed about one `pong_timeout_s` after the
//! daemon starts waiting for a reply, not at the next scheduled ping: the
//! keepalive pings at once after `response.create`. The fake server is
//! `tests/common/fake_realtime.rs`.

mod common;

use std::time::{Duration, Instant};

use common::fake_realtime::FakeRealtime;
use common::{TestHome, describe, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

#[test]
fn a_stall_mid_conversation_is_noticed_within_one_pong_timeout() {
    let fake = FakeRealtime::start();
    // Scheduled pings every 60 s: before the fix, this stall was noticed after 60 + 3 s.
    let mut home = TestHome::with_fake(&format!(
        "share_dirs = true\n[live]\nurl = \"{}\"\nping_interval_s = 60.0\npong_timeout_s = 3.0\n",
        fake.url
    ));
    home.env.push(("OPENAI_API_KEY".into(), "sk-test-live-key-0123456789".into()));
    let _d = home.start_daemon();
    let out = home.run(&["key", "toggle", "live"]);
    assert!(out.status.success(), "{}", describe(&out));
    fake.wait_for(T, "session.update", |r| r.ty() == "session.update");
    wait_until(T, "live ready", || home.json(&["status", "--json"])["live"]["state"] == "ready");

    // The server stalls; then a task ends, and the daemon tells the model (item + response.create).
    fake.stall();
    let id = home.start_task(&json!({"result": {"result": "Stalled link test."}}), "stall", &home.work("a"));
    home.wait_ended(&id, T);
    let ended = Instant::now();
    fake.wait_connections(2, T);
    let noticed = ended.elapsed();
    eprintln!("stall noticed and a new connection opened {noticed:?} after the task ended");
    // pong_timeout_s (3 s) + the reconnect backoff (0.5 s, jittered) + a loaded machine's slack.
    assert!(noticed < Duration::from_secs(10), "took {noticed:?}, not about pong_timeout_s:\n{}", fake.dump());
    // And nothing is lost: the result is announced on the new connection.
    fake.wait_for(T, "the notification on the new connection", |r| {
        r.conn >= 1
            && r.ty() == "conversation.item.create"
            && r.event["item"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with(&format!("[task {id} ")))
    });
}
