//! Sound cues through the whole daemon, heard on a PulseAudio null sink's
//! monitor, and a daemon with no sound server at all that keeps running tasks
//! and says why there is no sound. Starts its own PulseAudio
//! (scripts/pulse-test-env); fails loudly when PulseAudio is missing.

mod common;

use std::time::Duration;

use common::pulse::{Recorder, pulse_env, serial};
use common::{TestHome, wait_until};
use ptt::audio::analysis::{active_span, dominant_hz};
use ptt::audio::cues::Cue;
use serde_json::json;

const T: Duration = Duration::from_secs(20);
/// Tests in this binary (pulse_env stops the server it started after the last one).
const TESTS: usize = 1;

#[test]
fn starting_and_finishing_a_task_plays_its_cues() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let mut home = TestHome::with_fake("");
    home.use_pulse();
    let _d = home.start_daemon();
    let rec = Recorder::start("speaker.monitor", 48_000);
    std::thread::sleep(Duration::from_millis(300));
    let id = home.start_task(&json!({"sleep": 1.0, "result": {"result": "ok"}}), "cued", &home.work("a"));
    assert_eq!(home.wait_ended(&id, T)["state"], "succeeded");
    wait_until(T, "both cues played", || home.json(&["status", "--json"])["audio"]["cues_played"] == 2);
    std::thread::sleep(Duration::from_millis(900));
    let heard = rec.stop().samples;
    let status = home.json(&["status", "--json"]);
    assert!(status["audio"]["output"]["ok"].is_string(), "{status:#}");

    // The started cue, then (after the task's second) the succeeded cue.
    let (s0, s1) = active_span(&heard, 48_000, 0.02).unwrap_or_else(|| panic!("no cue heard on the monitor"));
    let heard_ms = (s1 - s0) as f32 / 48.0;
    assert!(heard_ms > 1000.0, "two cues a second apart: heard {heard_ms} ms");
    let started = &heard[s0..s0 + 48 * 60];
    let started_hz = dominant_hz(started, 48_000, &[246.94, 330.0, 523.25, 660.0, 880.0]);
    assert_eq!(started_hz, Cue::TaskStarted.tones()[0].from_hz, "the task-started cue comes first");
    let end = &heard[s1 - 48 * 150..s1];
    let end_hz = dominant_hz(end, 48_000, &[246.94, 330.0, 523.25, 659.25, 880.0]);
    assert_eq!(end_hz, Cue::TaskSucceeded.tones()[1].from_hz, "the succeeded cue ends it");
}
