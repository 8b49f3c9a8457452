//! Dictation end to end: the real X11 key (Xvfb + xdotool), espeak-ng speech
//! played into the PulseAudio virtual microphone, a stub of the transcription
//! endpoint (checks the multipart upload), and an xterm under Xvfb whose
//! received keystrokes are read back. Fails loudly when Xvfb, xterm,
//! PulseAudio or espeak-ng are missing; never skips.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fake_realtime::FakeRealtime;
use common::pulse::{decode, play_into_mic, pulse_env, require, serial};
use common::transcribe_stub::{self, Reply, TranscribeStub};
use common::xterm::Xterm;
use common::xvfb::{Xvfb, xdotool};
use common::{TestHome, describe, wait_until};
use ptt::audio::analysis::{active_span, rms};
use serde_json::json;

const T: Duration = Duration::from_secs(20);
/// Tests in this binary that use PulseAudio (pulse_env stops the server after the last one).
const TESTS: usize = 9;
const SAID: &str = "hello world from ptt";

fn dictation_home(stub: &TranscribeStub, xvfb: &Xvfb, extra: &str) -> TestHome {
    transcribe_stub::dictation_home(stub, &format!("retries = 2\n{extra}"), ("DISPLAY", xvfb.display.clone()))
}

/// A clip of speech: espeak-ng into a WAV; returns the path and the speech's length in ms.
fn speech(home: &TestHome, text: &str) -> (std::path::PathBuf, f32) {
    require("espeak-ng", "espeak-ng");
    let wav = home.scratch("speech.wav");
    let ok = Command::new("espeak-ng").arg("-w").arg(&wav).arg(text).status();
    assert!(ok.is_ok_and(|s| s.success()), "espeak-ng failed");
    let clip = decode(&wav, 24_000);
    let (c0, c1) = active_span(&clip, 24_000, 0.01).unwrap_or_else(|| panic!("the clip is silent"));
    (wav, (c1 - c0) as f32 / 24.0)
}

/// Holds the push-to-talk key over the socket for `ms` (the microphone hears the null source's silence).
fn dictate_by_socket(home: &TestHome, ms: u64) {
    let out = home.run(&["key", "press", "ptt"]);
    assert!(out.status.success(), "{}", describe(&out));
    std::thread::sleep(Duration::from_millis(ms));
    let out = home.run(&["key", "release", "ptt"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// Waits until no clip is uploading and the typing thread has reported on every text it was given, then until
/// the daemon has handled everything before: what was going to be typed, was.
fn settled(home: &TestHome) {
    wait_until(T, "uploads and typing settled", || {
        let s = dictation_status(home);
        s["in_flight"] == 0 && s["typing"] == 0
    });
    home.sync();
}

fn dictation_status(home: &TestHome) -> serde_json::Value {
    home.json(&["status", "--json"])["dictation"].clone()
}

#[test]
fn hold_speak_release_types_the_text_into_the_focused_window() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    let xvfb = Xvfb::start();
    let home = dictation_home(&stub, &xvfb, "");
    std::fs::create_dir_all(home.state_dir()).expect("state dir");
    std::fs::write(home.state_dir().join("vocabulary.txt"), "Kubernetes\nPostgreSQL\n").expect("vocabulary");
    let term = Xterm::start(&xvfb.display);
    let _d = home.start_daemon();
    assert_eq!(home.json(&["status", "--json"])["hotkeys"]["source"], "x11");
    let (wav, spoken_ms) = speech(&home, "hello world");

    xdotool(&xvfb.display, &["keydown", "105"]);
    wait_until(T, "the microphone open", || home.json(&["status", "--json"])["audio"]["input"]["ok"].is_string());
    play_into_mic(&wav);
    xdotool(&xvfb.display, &["keyup", "105"]);

    let uploads = stub.wait_uploads(1, T);
    let up = &uploads[0];
    assert!(up.problems.is_empty(), "a valid multipart upload: {:?}", up.problems);
    assert_eq!((up.method.as_str(), up.path.as_str()), ("POST", "/v1/audio/transcriptions"));
    assert_eq!(up.authorization.as_deref(), Some("Bearer sk-test-dictation"));
    assert_eq!(up.fields.get("model").map(String::as_str), Some("gpt-transcribe"));
    assert_eq!(up.fields.get("response_format").map(String::as_str), Some("json"));
    assert_eq!(
        up.lists.get("keywords").map(Vec::as_slice),
        Some(&["Kubernetes".to_string(), "PostgreSQL".to_string()][..]),
        "the vocabulary goes as keywords[]: {:?}",
        up.lists
    );
    assert_eq!(up.file_name.as_deref(), Some("audio.wav"));
    let clip = up.wav.as_ref().unwrap_or_else(|e| panic!("the WAV does not decode: {e}"));
    assert_eq!((clip.rate, clip.channels, clip.bits), (24_000, 1, 16));
    let pcm: Vec<f32> = clip.samples.iter().map(|s| f32::from(*s) / 32768.0).collect();
    assert!(rms(&pcm) > 0.01, "the clip is not silent (rms {})", rms(&pcm));
    let (a0, a1) = active_span(&pcm, 24_000, 0.01).unwrap_or_else(|| panic!("no speech in the upload"));
    let sent_ms = (a1 - a0) as f32 / 24.0;
    assert!((sent_ms - spoken_ms).abs() <= 0.15 * spoken_ms, "sent {sent_ms} ms of speech, spoke {spoken_ms} ms");

    let got = term.wait_for(SAID, T);
    assert_eq!(got.matches(SAID).count(), 1, "typed once: {got:?}");
    wait_until(T, "typed in status", || dictation_status(&home)["typed"] == 1);
    assert_eq!(dictation_status(&home)["kept_clips"], 0, "a typed clip is not kept");
    let pending = home.state_dir().join("dictation/pending");
    assert_eq!(std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0), 0, "the clip is deleted once typed");
}

#[test]
fn a_server_error_is_retried_and_the_text_typed_once_and_short_taps_are_dropped() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.push(Reply::error(500, "The server had an error while processing your request."));
    stub.set_default(Reply::text(SAID));
    let xvfb = Xvfb::start();
    let home = dictation_home(&stub, &xvfb, "");
    let term = Xterm::start(&xvfb.display);
    let _d = home.start_daemon();

    // A tap shorter than dictate.min_ms: dropped, nothing sent.
    dictate_by_socket(&home, 50);
    wait_until(T, "the tap dropped", || dictation_status(&home)["dropped"] == 1);
    assert!(stub.uploads().is_empty(), "a tap is not uploaded");

    dictate_by_socket(&home, 800);
    let uploads = stub.wait_uploads(2, T);
    let backoff = uploads[1].at.duration_since(uploads[0].at);
    assert!(backoff >= Duration::from_millis(400), "the retry waits (backoff): {backoff:?}");
    assert!(
        uploads.iter().all(|u| u.problems.is_empty()),
        "{:?}",
        uploads.iter().map(|u| &u.problems).collect::<Vec<_>>()
    );
    term.wait_for(SAID, T);
    settled(&home);
    assert_eq!(dictation_status(&home)["typed"], 1, "typed exactly once");
    assert_eq!(term.received().matches(SAID).count(), 1, "typed exactly once: {:?}", term.received());
    assert_eq!(stub.uploads().len(), 2);
}

#[test]
fn gpt_transcribe_gets_keywords_languages_and_recent_text_and_bad_words_are_skipped() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.push(Reply::transcribed("first sentence here", &["en"]));
    stub.push(Reply::transcribed("second one", &[]));
    let xvfb = Xvfb::start();
    let home = dictation_home(&stub, &xvfb, "language = \"en, fr\"\n");
    std::fs::create_dir_all(home.state_dir()).expect("state dir");
    std::fs::write(home.state_dir().join("vocabulary.txt"), "Kubernetes\n<div> tag\nPostgreSQL\n").expect("vocabulary");
    let term = Xterm::start(&xvfb.display);
    let d = home.start_daemon();
    dictate_by_socket(&home, 500);
    term.wait_for("first sentence here", T);
    dictate_by_socket(&home, 500);
    let uploads = stub.wait_uploads(2, T);
    for up in &uploads {
        assert!(up.problems.is_empty(), "the API's rules hold: {:?}", up.problems);
        assert_eq!(up.fields.get("model").map(String::as_str), Some("gpt-transcribe"));
        assert_eq!(
            up.lists.get("keywords").cloned().unwrap_or_default(),
            ["Kubernetes", "PostgreSQL"],
            "the word with <> is skipped, not sent"
        );
        assert_eq!(up.lists.get("languages").cloned().unwrap_or_default(), ["en", "fr"]);
        assert!(!up.fields.contains_key("language"), "never language next to languages[]");
    }
    assert_eq!(uploads[0].fields.get("prompt"), None, "nothing said yet");
    assert_eq!(uploads[1].fields.get("prompt").map(String::as_str), Some("first sentence here"));
    term.wait_for("second one", T);
    let log = d.log_text();
    assert_eq!(log.matches("skipped as keywords").count(), 2, "one warning per upload:\n{log}");
}

#[test]
fn a_refused_key_keeps_the_clip_until_retry_types_it() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.push(Reply::error(401, "Incorrect API key provided: sk-test-di**********tion."));
    stub.set_default(Reply::text(SAID));
    let xvfb = Xvfb::start();
    let home = dictation_home(&stub, &xvfb, "");
    let term = Xterm::start(&xvfb.display);
    let d = home.start_daemon();

    dictate_by_socket(&home, 700);
    wait_until(T, "the clip kept", || dictation_status(&home)["kept_clips"] == 1);
    assert_eq!(stub.uploads().len(), 1, "a 401 is not retried");
    let status = dictation_status(&home);
    let error = status["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("refused the key (HTTP 401)"), "a clear error: {error}");
    let kept: Vec<_> = std::fs::read_dir(home.state_dir().join("dictation/failed"))
        .expect("failed dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wav"))
        .collect();
    assert_eq!(kept.len(), 1, "the clip is on disk");
    let listed = home.run(&["dictate", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("HTTP 401"), "{}", describe(&listed));
    assert!(d.log_text().contains("dictate retry"), "the journal says how to recover");
    let human = home.run(&["status"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("1 clip(s) kept"), "{}", describe(&human));
    assert!(!term.received().contains(SAID));

    // Typing waits while a modifier is held (Shift would turn the text into capitals).
    let events = home.subscribe();
    xdotool(&xvfb.display, &["keydown", "50"]);
    let out = home.run(&["dictate", "retry"]);
    assert!(out.status.success(), "{}", describe(&out));
    stub.wait_uploads(2, T);
    wait_until(T, "the text handed to the typing thread", || {
        let s = dictation_status(&home);
        s["in_flight"] == 0 && s["typing"] == 1
    });
    assert_eq!(term.received(), "", "nothing typed while Shift is held");
    xdotool(&xvfb.display, &["keyup", "50"]);
    term.wait_for(SAID, T);
    let typed = events.wait_for(T, "dictation_typed", |e| e["event"] == "dictation_typed");
    assert!(typed["waited_for_modifiers_ms"].as_u64() > Some(0), "typing waited for Shift: {typed}");
    wait_until(T, "no clip kept", || dictation_status(&home)["kept_clips"] == 0);
    settled(&home);
    assert_eq!(term.received().matches(SAID).count(), 1, "typed once: {:?}", term.received());
    assert_eq!(stub.uploads().len(), 2);
    assert!(!d.log_text().contains("sk-test-dictation"), "the key is never logged");
}

#[test]
fn voice_commands_add_words_press_enter_and_switch_modes() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    let fake = FakeRealtime::start();
    fake.set_auto_respond(false);
    let xvfb = Xvfb::start();
    let home = dictation_home(&stub, &xvfb, &format!("[live]\nurl = \"{}\"\n", fake.url));
    let term = Xterm::start(&xvfb.display);
    let _d = home.start_daemon();
    let vocab = home.state_dir().join("vocabulary.txt");

    stub.push(Reply::text("Add word Kubernetes."));
    dictate_by_socket(&home, 500);
    wait_until(T, "the word added", || std::fs::read_to_string(&vocab).unwrap_or_default().contains("Kubernetes"));

    stub.push(Reply::text("New line."));
    dictate_by_socket(&home, 500);
    term.wait_for("\r", T);
    assert_eq!(term.received(), "\r", "only Enter was typed (commands are not text)");

    // "Quiet mode" in dictation turns quiet mode on (nothing is typed).
    stub.push(Reply::text("Quiet mode."));
    dictate_by_socket(&home, 500);
    wait_until(T, "quiet mode on", || home.json(&["status", "--json"])["live"]["quiet"] == true);

    // The next upload's prompt carries the new word.
    stub.push(Reply::text("Live mode."));
    dictate_by_socket(&home, 500);
    let uploads = stub.wait_uploads(4, T);
    let keywords = uploads[3].lists.get("keywords").cloned().unwrap_or_default();
    assert!(keywords.contains(&"Kubernetes".to_string()), "{:?}", uploads[3].lists);
    fake.wait_for(T, "a live session", |r| r.ty() == "session.update");
    wait_until(T, "live on", || home.json(&["status", "--json"])["live"]["state"] == "ready");

    // "You can talk again" said in the conversation ends quiet mode.
    fake.send(json!({"type": "conversation.item.input_audio_transcription.completed", "event_id": "ev_u0",
        "item_id": "u0", "content_index": 0, "transcript": "You can talk again.", "usage": null}));
    wait_until(T, "quiet mode off", || home.json(&["status", "--json"])["live"]["quiet"] == false);

    // "Dictate mode" said in the conversation ends it.
    fake.send(json!({"type": "conversation.item.input_audio_transcription.completed", "event_id": "ev_u1",
        "item_id": "u1", "content_index": 0, "transcript": "Dictate mode.", "usage": null}));
    wait_until(T, "live off", || home.json(&["status", "--json"])["live"]["state"] != "ready");

    stub.push(Reply::text("back to typing"));
    dictate_by_socket(&home, 500);
    term.wait_for("back to typing", T);
    assert!(!term.received().contains("mode"), "no command was typed: {:?}", term.received());
}

#[test]
fn dictate_once_prints_the_text_for_scripts() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.set_default(Reply::text(SAID));
    let xvfb = Xvfb::start();
    let home = dictation_home(&stub, &xvfb, "");
    let (wav, _) = speech(&home, "hello world");
    let mut once = home.dictate_once(T);
    play_into_mic(&wav);
    let started = Instant::now();
    once.enter();
    let out = once.finish();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SAID);
    assert!(started.elapsed() < T);
    let up = &stub.wait_uploads(1, T)[0];
    let clip = up.wav.as_ref().unwrap_or_else(|e| panic!("bad WAV: {e}"));
    let pcm: Vec<f32> = clip.samples.iter().map(|s| f32::from(*s) / 32768.0).collect();
    assert!(rms(&pcm) > 0.01, "the recording has the speech");
}

#[test]
fn dictate_once_stops_when_the_push_to_talk_key_is_released() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.set_default(Reply::text(SAID));
    let xvfb = Xvfb::start();
    let home = dictation_home(&stub, &xvfb, "");
    let (wav, _) = speech(&home, "hello world");
    // A compositor binding runs the command on key press: the key is already down.
    xdotool(&xvfb.display, &["keydown", "105"]);
    let mut once = home.dictate_once(T);
    play_into_mic(&wav);
    xdotool(&xvfb.display, &["keyup", "105"]);
    // stdin stays open: only the release can end the recording.
    let deadline = Instant::now() + T;
    while once.child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "ptt dictate --once did not stop on the key release");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = once.finish();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SAID);
    let up = &stub.wait_uploads(1, T)[0];
    let pcm: Vec<f32> = up.wav.as_ref().expect("WAV").samples.iter().map(|s| f32::from(*s) / 32768.0).collect();
    assert!(rms(&pcm) > 0.01, "the recording has the speech");
}

#[test]
fn typing_tools_never_see_the_api_key() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.set_default(Reply::text(SAID));
    let xvfb = Xvfb::start();
    let mut home = dictation_home(&stub, &xvfb, "typer = \"xdotool\"");
    // A stand-in xdotool, first on PATH, that records what it was given.
    let bin = home.scratch("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let seen = home.scratch("xdotool-saw.txt");
    let script = bin.join("xdotool");
    std::fs::write(&script, format!("#!/bin/sh\nenv > '{}'\necho \"$@\" >> '{}'\n", seen.display(), seen.display()))
        .expect("fake xdotool");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    home.env.push(("PATH".into(), path));
    let _d = home.start_daemon();
    dictate_by_socket(&home, 500);
    wait_until(T, "the fake xdotool ran", || std::fs::read_to_string(&seen).is_ok_and(|t| t.contains(SAID)));
    let saw = std::fs::read_to_string(&seen).expect("read");
    assert!(!saw.contains("OPENAI_API_KEY") && !saw.contains("sk-test-dictation"), "the key leaked: {saw}");
    assert!(saw.contains(&format!("DISPLAY={}", xvfb.display)), "the session's display is passed: {saw}");
}

#[test]
fn kept_clips_are_printed_by_retry_when_no_daemon_runs() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.push(Reply::error(401, "Incorrect API key provided."));
    stub.set_default(Reply::text(SAID));
    let xvfb = Xvfb::start();
    let home = dictation_home(&stub, &xvfb, "");
    let (wav, _) = speech(&home, "hello world");
    let mut once = home.dictate_once(T);
    // A clip longer than dictate.min_ms, recorded once the microphone is open.
    play_into_mic(&wav);
    once.enter();
    let out = once.finish();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 401") && err.contains("ptt dictate retry"), "{err}");
    let listed = home.run(&["dictate", "list"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1, "{}", describe(&listed));
    let out = home.run(&["dictate", "retry"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SAID);
    let listed = home.run(&["dictate", "list"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "no kept clips");
}

#[test]
fn the_python_apps_settings_are_imported_on_first_run() {
    let home = TestHome::empty();
    let old = home.home().join(".local/share/push-to-talk");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(
        old.join("config.json"),
        r#"{"ptt_key": "KEY_F9", "ai_key": "shift_r+ctrl_r", "dictation_mode": "live", "ai_mode": "realtime",
            "openai_voice": "coral", "overlay": true}"#,
    )
    .expect("legacy config");
    std::fs::write(old.join("vocabulary.txt"), "Kubernetes\nTokio\n").expect("legacy vocabulary");
    let d = home.start_daemon();
    let cfg = std::fs::read_to_string(home.config_path()).expect("a config was written");
    assert!(cfg.contains("ptt = \"f9\""), "{cfg}");
    assert!(cfg.contains("voice = \"coral\""), "{cfg}");
    let words = std::fs::read_to_string(home.state_dir().join("vocabulary.txt")).expect("vocabulary copied");
    assert_eq!(words, "Kubernetes\nTokio\n");
    let log = d.log_text();
    assert!(log.contains("imported settings from"), "the user is told: {log}");
    assert!(log.contains("dictation_mode \"live\" → dictation"), "{log}");
    assert!(log.contains("not carried over (no equivalent): overlay"), "{log}");
    let check = home.run(&["config", "check"]);
    assert!(check.status.success(), "{}", describe(&check));
}
