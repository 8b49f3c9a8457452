//! The live session with a voice: the daemon's microphone and speaker on
//! PulseAudio null sinks (started by `scripts/pulse-test-env`), the scripted
//! fake Realtime server, and what the user would hear and say. Fails loudly
//! when PulseAudio, espeak-ng or sox are missing; never skips.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::fake_realtime::{FakeRealtime, Received};
use common::pulse::{Recorder, decode, pulse_env, require, serial};
use common::xvfb::{Xvfb, xdotool};
use common::{TestHome, describe, wait_until};
use ptt::audio::analysis::{active_span, dominant_hz, rms, zero_crossing_hz};
use ptt::audio::cues::Cue;
use serde_json::json;

const T: Duration = Duration::from_secs(20);
/// Tests in this binary (pulse_env stops the server it started after the last one).
const TESTS: usize = 6;

fn voice_home(fake: &FakeRealtime, extra: &str) -> TestHome {
    let mut home = TestHome::with_fake(&format!(
        "share_dirs = true\n[live]\nurl = \"{}\"\n{extra}\n[audio]\ncues = false\n",
        fake.url
    ));
    home.env.push(("OPENAI_API_KEY".into(), "sk-test-voice".into()));
    home.use_pulse();
    home
}

fn live_on(home: &TestHome, fake: &FakeRealtime) {
    let out = home.run(&["key", "toggle", "live"]);
    assert!(out.status.success(), "{}", describe(&out));
    let update = fake.wait_for(T, "session.update", |r| r.ty() == "session.update");
    assert_eq!(update.event["session"]["output_modalities"], json!(["audio"]), "a voice session");
    wait_until(T, "live ready", || home.json(&["status", "--json"])["live"]["state"] == "ready");
    assert_eq!(home.json(&["status", "--json"])["audio"]["voice"], true);
}

/// A 24 kHz PCM16 sine.
fn tone(hz: f32, ms: u32) -> Vec<i16> {
    let n = 24 * ms as usize;
    (0..n).map(|i| ((i as f32 * hz * std::f32::consts::TAU / 24_000.0).sin() * 12_000.0) as i16).collect()
}

/// Sends a response whose audio is `pcm`, in 100 ms deltas; `done` ends the response.
fn speak(fake: &FakeRealtime, resp: &str, item: &str, pcm: &[i16], done: bool) {
    fake.send(json!({"type": "response.created", "event_id": format!("ev_{resp}_c"), "response": {"id": resp, "object": "realtime.response", "status": "in_progress", "output": []}}));
    fake.send(json!({"type": "response.output_item.added", "event_id": format!("ev_{resp}_a"), "response_id": resp, "output_index": 0,
        "item": {"id": item, "type": "message", "role": "assistant", "status": "in_progress", "content": []}}));
    for (i, chunk) in pcm.chunks(2400).enumerate() {
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        fake.send(json!({"type": "response.output_audio.delta", "event_id": format!("ev_{resp}_{i}"), "response_id": resp, "item_id": item,
            "output_index": 0, "content_index": 0, "delta": base64::engine::general_purpose::STANDARD.encode(bytes)}));
    }
    fake.send(json!({"type": "response.output_audio.done", "event_id": format!("ev_{resp}_d"), "response_id": resp, "item_id": item, "output_index": 0, "content_index": 0}));
    if done {
        fake.send(json!({"type": "response.done", "event_id": format!("ev_{resp}_e"), "response": {"id": resp, "object": "realtime.response", "status": "completed", "output": []}}));
    }
}

#[test]
fn the_assistants_audio_is_heard_on_the_speaker() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let fake = FakeRealtime::start();
    fake.set_auto_respond(false);
    let home = voice_home(&fake, "");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    let rec = Recorder::start("speaker.monitor", 48_000);
    std::thread::sleep(Duration::from_millis(300));
    speak(&fake, "resp_t", "item_t", &tone(1000.0, 500), true);
    std::thread::sleep(Duration::from_millis(1500));
    let heard = rec.stop().samples;
    let (s0, s1) = active_span(&heard, 48_000, 0.05).unwrap_or_else(|| panic!("nothing heard on the monitor"));
    let ms = (s1 - s0) as f32 / 48.0;
    assert!((ms - 500.0).abs() <= 40.0, "heard {ms} ms of a 500 ms tone");
    let hz = zero_crossing_hz(&heard[s0..s1], 48_000);
    assert!((hz - 1000.0).abs() <= 20.0, "heard {hz} Hz, played 1000 Hz");
    assert!(fake.schema_errors().is_empty(), "{:?}", fake.schema_errors());
}

/// Plays a long tone, interrupts it after ~1 s with `interrupt`, and checks the
/// tone stopped at once and the truncate says what was heard.
fn barge_in(interrupt: impl FnOnce(&TestHome, &FakeRealtime), vad: bool) {
    let fake = FakeRealtime::start();
    fake.set_auto_respond(false);
    let home = voice_home(&fake, if vad { "turn = \"vad\"" } else { "turn = \"ptt\"" });
    let _d = home.start_daemon();
    live_on(&home, &fake);
    let rec = Recorder::start("speaker.monitor", 48_000);
    std::thread::sleep(Duration::from_millis(300));
    speak(&fake, "resp_b", "item_b", &tone(800.0, 4000), false);
    wait_until(T, "playback", || home.json(&["status", "--json"])["audio"]["playing"] == true);
    std::thread::sleep(Duration::from_millis(1000));
    let pressed = Instant::now();
    interrupt(&home, &fake);
    let truncate = fake.wait_for(T, "conversation.item.truncate", |r| r.ty() == "conversation.item.truncate");
    std::thread::sleep(Duration::from_millis(700));
    let recording = rec.stop();
    let heard = &recording.samples;
    let (s0, s1) = active_span(heard, 48_000, 0.05).unwrap_or_else(|| panic!("nothing heard"));
    let stopped_at = recording.time_of(s1).unwrap_or_else(|| panic!("no time for the last loud sample"));
    let late = stopped_at.saturating_duration_since(pressed);
    assert!(late <= Duration::from_millis(100), "the tone went on {late:?} after the barge-in");
    let heard_ms = (s1 - s0) as u64 / 48;
    assert!(heard_ms >= 900, "the tone played about a second before the cut: {heard_ms} ms");
    let end_ms = truncate.event["audio_end_ms"].as_u64().expect("audio_end_ms");
    assert_eq!(truncate.event["item_id"], "item_b");
    assert!(end_ms.abs_diff(heard_ms) <= 150, "truncate at {end_ms} ms, heard {heard_ms} ms");
    assert!(fake.count(|r| r.ty() == "response.cancel") >= 1, "the active response is cancelled");
    assert_eq!(home.json(&["status", "--json"])["audio"]["playing"], false);
    assert!(fake.schema_errors().is_empty(), "{:?}", fake.schema_errors());
}

#[test]
fn a_key_press_cuts_the_assistant_off() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    barge_in(|home, _| assert!(home.run(&["key", "press", "interrupt"]).status.success()), false);
}

#[test]
fn speech_started_during_playback_cuts_the_assistant_off() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    barge_in(
        |_, fake| {
            fake.send(json!({"type": "input_audio_buffer.speech_started", "event_id": "ev_vad", "audio_start_ms": 1000, "item_id": "item_user"}))
        },
        true,
    );
}

#[test]
fn a_push_to_talk_turn_sends_what_was_said() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    require("espeak-ng", "espeak-ng");
    require("paplay", "pulseaudio-utils");
    let fake = FakeRealtime::start();
    // The real key path: Xvfb, xdotool, the daemon's X11 listener.
    let xvfb = Xvfb::start();
    let mut home = voice_home(&fake, "turn = \"ptt\"");
    home.env.push(("DISPLAY".into(), xvfb.display.clone()));
    let _d = home.start_daemon();
    assert_eq!(home.json(&["status", "--json"])["hotkeys"]["source"], "x11");
    live_on(&home, &fake);
    let update = fake.wait_for(T, "session.update", |r| r.ty() == "session.update");
    assert!(update.event["session"]["audio"]["input"]["turn_detection"].is_null(), "push-to-talk: no server VAD");
    let wav = home.scratch("speech.wav");
    let ok = Command::new("espeak-ng").arg("-w").arg(&wav).arg("start a task that fixes the tests").status();
    assert!(ok.is_ok_and(|s| s.success()), "espeak-ng failed");
    let clip = decode(&wav, 24_000);
    let (c0, c1) = active_span(&clip, 24_000, 0.01).unwrap_or_else(|| panic!("the clip is silent"));
    let spoken_ms = (c1 - c0) as f32 / 24.0;

    xdotool(&xvfb.display, &["keydown", "105"]);
    let played = Command::new("paplay").args(["-d", "micfeed"]).arg(&wav).status();
    assert!(played.is_ok_and(|s| s.success()), "paplay into the virtual microphone failed");
    xdotool(&xvfb.display, &["keyup", "105"]);

    let commit = fake.wait_for(T, "input_audio_buffer.commit", |r| r.ty() == "input_audio_buffer.commit");
    fake.wait_for(T, "response.create after the commit", |r| r.ty() == "response.create" && r.at >= commit.at);
    let appends: Vec<Received> = fake.received_of("input_audio_buffer.append");
    assert!(appends.iter().all(|a| a.at <= commit.at), "every append before the commit");
    let mut pcm: Vec<f32> = Vec::new();
    for a in &appends {
        let b64 = a.event["audio"].as_str().expect("audio");
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        assert_eq!(bytes.len() % 2, 0);
        pcm.extend(bytes.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0));
    }
    assert!(rms(&pcm) > 0.01, "the microphone audio is not silent (rms {})", rms(&pcm));
    let (a0, a1) = active_span(&pcm, 24_000, 0.01).unwrap_or_else(|| panic!("no speech in the appended audio"));
    let sent_ms = (a1 - a0) as f32 / 24.0;
    assert!((sent_ms - spoken_ms).abs() <= 0.15 * spoken_ms, "sent {sent_ms} ms of speech, spoke {spoken_ms} ms");
    let total_ms = pcm.len() as f32 / 24.0;
    assert!(total_ms >= spoken_ms, "24 kHz: {total_ms} ms of audio for {spoken_ms} ms of speech");
    assert!(fake.schema_errors().is_empty(), "{:?}", fake.schema_errors());
}

#[test]
fn a_refused_transcription_model_keeps_the_session_and_the_users_turns() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let fake = FakeRealtime::start();
    fake.refuse_transcription("gpt-transcribe");
    // What the out-of-band transcription "hears": a voice command, so its effect shows the turn arrived.
    fake.set_transcript_text("Dictate mode.");
    let home = voice_home(&fake, "turn = \"ptt\"");
    let _d = home.start_daemon();
    live_on(&home, &fake);
    // The refused update, then the whole update again without transcription; the session stays up.
    let first = fake.wait_for(T, "the first session.update", |r| r.ty() == "session.update");
    assert_eq!(first.event["session"]["audio"]["input"]["transcription"]["model"], "gpt-transcribe");
    let again = fake.wait_for_nth(T, "the update again", 1, |r| r.ty() == "session.update");
    assert!(again.event["session"]["audio"]["input"].get("transcription").is_none(), "{}", again.event);
    assert_eq!(again.event["session"]["tools"], first.event["session"]["tools"], "the whole update again");
    wait_until(T, "the refusal in status", || {
        home.json(&["status", "--json"])["live"]["transcription"].as_str().is_some_and(|t| t.contains("gpt-transcribe"))
    });
    assert_eq!(home.json(&["status", "--json"])["live"]["state"], "ready");
    // A push-to-talk turn: committed, then transcribed by an out-of-band text response about that item.
    assert!(home.run(&["key", "press", "ptt"]).status.success());
    std::thread::sleep(Duration::from_millis(400));
    assert!(home.run(&["key", "release", "ptt"]).status.success());
    fake.wait_for(T, "input_audio_buffer.commit", |r| r.ty() == "input_audio_buffer.commit");
    // The daemon asks for the out-of-band transcription only after the server's `committed` reached it,
    // so once that request arrived, the fake's record of what it sent holds the committed item.
    let oob = fake.wait_for(T, "the out-of-band transcription", |r| {
        r.ty() == "response.create" && r.event["response"]["conversation"] == "none"
    });
    let committed = fake
        .sent()
        .into_iter()
        .find(|s| s.ty() == "input_audio_buffer.committed")
        .and_then(|s| s.event["item_id"].as_str().map(str::to_owned))
        .expect("committed");
    assert_eq!(oob.event["response"]["input"], json!([{"type": "item_reference", "id": committed}]));
    assert_eq!(oob.event["response"]["output_modalities"], json!(["text"]));
    // The user's words came back: "dictate mode" ends the live session.
    wait_until(T, "live off by the heard command", || home.json(&["status", "--json"])["live"]["state"] == "off");
    assert!(fake.schema_errors().is_empty(), "{:?}", fake.schema_errors());
}

#[test]
fn quiet_mode_said_in_the_conversation_holds_a_result_with_only_a_cue_until_catch_up() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let fake = FakeRealtime::start();
    // Cues on (the other voice tests turn them off): the held result is marked by one.
    let mut home = TestHome::with_fake(&format!(
        "share_dirs = true\n[live]\nurl = \"{}\"\nping_interval_s = 0.5\npong_timeout_s = 5.0\n",
        fake.url
    ));
    home.env.push(("OPENAI_API_KEY".into(), "sk-test-voice".into()));
    home.use_pulse();
    let _d = home.start_daemon();
    live_on(&home, &fake);
    let cues = || home.json(&["status", "--json"])["audio"]["cues_played"].as_u64().unwrap_or(0);
    wait_until(T, "the live-on cue", || cues() == 1);
    // The user says "quiet mode" in the conversation (the server's transcript of the turn).
    fake.send(json!({"type": "conversation.item.input_audio_transcription.completed", "event_id": "ev_q",
        "item_id": "u_q", "content_index": 0, "transcript": "Quiet mode.", "usage": null}));
    wait_until(T, "quiet mode on", || home.json(&["status", "--json"])["live"]["quiet"] == true);
    let done = home.scratch("done");
    let id =
        home.start_task(&json!({"wait_file": done, "result": {"result": "Held for later."}}), "held", &home.work("a"));
    wait_until(T, "the confirmation and task-started cues", || cues() == 3);
    home.sync();
    fake.barrier(T);
    let creates_before = fake.count(|r| r.ty() == "response.create");

    let rec = Recorder::start("speaker.monitor", 48_000);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&done, "").expect("end the task");
    home.wait_ended(&id, T);
    wait_until(T, "the task's cue", || cues() == 4);
    std::thread::sleep(Duration::from_millis(900));
    let heard = rec.stop().samples;
    let (s0, s1) = active_span(&heard, 48_000, 0.02).unwrap_or_else(|| panic!("no cue heard on the monitor"));
    let end_hz =
        dominant_hz(&heard[s1.saturating_sub(48 * 150).max(s0)..s1], 48_000, &[246.94, 330.0, 523.25, 659.25, 880.0]);
    assert_eq!(end_hz, Cue::TaskSucceeded.tones()[1].from_hz, "the succeeded cue marks the held result");
    home.sync();
    fake.barrier(T);
    let note = |r: &Received| {
        r.ty() == "conversation.item.create"
            && r.event["item"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with(&format!("[task {id} ")))
    };
    assert_eq!(fake.count(note), 0, "quiet: not spoken\n{}", fake.dump());
    assert_eq!(fake.count(|r| r.ty() == "response.create"), creates_before, "quiet: no response.create");
    assert_eq!(home.json(&["status", "--json"])["live"]["waiting"], 1);

    // "What did I miss?"
    let call = fake.call_tool("catch_up", json!({}));
    let out = fake.wait_for(T, "catch_up's output", |r| r.event["item"]["call_id"] == call.as_str());
    assert!(out.event["item"]["output"].as_str().is_some_and(|o| o.contains("Held for later.")), "{}", out.event);
    wait_until(T, "heard", || home.json(&["status", "--json"])["live"]["pending_notifications"] == 0);
    assert_eq!(fake.count(note), 0, "said once, through catch_up");
    assert!(fake.schema_errors().is_empty(), "{:?}", fake.schema_errors());
}
