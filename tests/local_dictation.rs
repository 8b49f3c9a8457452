//! Local dictation end to end, with a real Whisper model (tiny.en, from PyPI through `scripts/setup --test`),
//! no `OPENAI_API_KEY` and an unreachable `dictate.api_base`: the real X11 key (Xvfb + xdotool), espeak-ng
//! speech played into the PulseAudio virtual microphone, and an xterm whose received keystrokes are read back.
//! Keywords are asserted, never exact text (espeak's voice costs tiny.en some words). Fails loudly when Xvfb,
//! xterm, PulseAudio, espeak-ng or the model are missing; never skips.

mod common;

use std::time::Duration;

use common::model::{keywords_heard, speech_wav, tiny_en};
use common::pulse::{play_into_mic, pulse_env, serial};
use common::xterm::Xterm;
use common::xvfb::{Xvfb, xdotool};
use common::{TestHome, describe, wait_until};

const T: Duration = Duration::from_secs(60);
/// Tests in this binary that use PulseAudio (pulse_env stops the server after the last one).
const TESTS: usize = 3;
const SENTENCE: &str = "please send the quarterly report before friday afternoon";
const KEYWORDS: &[&str] = &["please", "send", "quarterly", "report", "friday", "afternoon"];

/// A home whose dictation can only be local: no key, an API nobody answers, and `dictate.model_path` at a file
/// in the home (returned; the test writes the model there, whole or damaged).
fn local_home(xvfb: &Xvfb, extra: &str) -> (TestHome, std::path::PathBuf) {
    let mut home = TestHome::empty();
    let model = home.scratch("ggml-mine.bin");
    home.write_config(&format!(
        "[dictate]\napi_base = \"http://127.0.0.1:9/v1\"\nmodel_path = \"{}\"\n{extra}\n[audio]\ncues = false\n",
        model.display()
    ));
    home.use_pulse();
    home.env.push(("DISPLAY".into(), xvfb.display.clone()));
    (home, model)
}

/// The sentence as a WAV file for paplay.
fn sentence_file(home: &TestHome) -> std::path::PathBuf {
    let path = home.scratch("sentence.wav");
    std::fs::write(&path, speech_wav(&home.dir.path().join("work"), SENTENCE)).expect("write the speech");
    path
}

fn dictation_status(home: &TestHome) -> serde_json::Value {
    home.json(&["status", "--json"])["dictation"].clone()
}

/// Holds Right Ctrl (X11) while the sentence plays into the microphone.
fn speak_with_the_key(home: &TestHome, xvfb: &Xvfb, wav: &std::path::Path) {
    xdotool(&xvfb.display, &["keydown", "105"]);
    wait_until(T, "the microphone open", || home.json(&["status", "--json"])["audio"]["input"]["ok"].is_string());
    play_into_mic(wav);
    xdotool(&xvfb.display, &["keyup", "105"]);
}

#[test]
fn hold_speak_release_types_the_local_transcription_once_and_the_model_is_unloaded_when_idle() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let xvfb = Xvfb::start();
    // Preloaded at start; unloaded after 0.05 idle minutes (3 s).
    let (home, model) = local_home(&xvfb, "preload = true\nmodel_idle_min = 0.05");
    std::fs::copy(tiny_en(), &model).expect("the model");
    std::fs::create_dir_all(home.state_dir()).expect("state dir");
    std::fs::write(home.state_dir().join("vocabulary.txt"), "Kubernetes\nPostgreSQL\n").expect("vocabulary");
    let wav = sentence_file(&home);
    let term = Xterm::start(&xvfb.display);
    let d = home.start_daemon();
    wait_until(T, "the model preloaded", || dictation_status(&home)["model"]["state"] == "loaded");
    let status = dictation_status(&home);
    assert_eq!(status["engine"], "auto");
    assert_eq!(status["local_model"], model.display().to_string());

    speak_with_the_key(&home, &xvfb, &wav);
    wait_until(T, "typed", || dictation_status(&home)["typed"] == 1);
    let got = term.received();
    assert!(keywords_heard(&got, KEYWORDS) >= 4, "most keywords typed: {got:?}");
    assert_eq!(got.to_lowercase().matches("report").count(), 1, "typed once: {got:?}");
    let status = dictation_status(&home);
    assert_eq!(status["kept_clips"], 0, "{status}");
    assert_eq!(status["failed"], 0, "{status}");
    let pending = home.state_dir().join("dictation/pending");
    assert_eq!(std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0), 0, "the clip is deleted once typed");
    let log = d.log_text();
    assert!(log.contains("transcribed locally in"), "{log}");
    let prompt_line = log.lines().find(|l| l.contains("local transcription, prompt")).unwrap_or_default();
    assert!(
        prompt_line.contains("Kubernetes") && prompt_line.contains("PostgreSQL"),
        "the vocabulary is the prompt: {log}"
    );
    assert!(!log.contains("127.0.0.1:9"), "the unreachable API was never tried: {log}");
    // The release → typed breakdown: every stage from the key release to the typing tool's exit.
    let typed_line = log.lines().find(|l| l.contains("after the key was released (")).unwrap_or_default();
    for stage in ["capture ", "spool ", "prepare ", "engine ", "after_engine ", "to_typer ", "typer_setup ", "typing "]
    {
        assert!(typed_line.contains(stage), "{stage:?} in the breakdown: {typed_line}");
    }

    // The same sentence again: typed once more, not looped (whisper.cpp repeated it when the previous
    // dictation was in its prompt), and the prompt is still the vocabulary alone.
    speak_with_the_key(&home, &xvfb, &wav);
    wait_until(T, "typed again", || dictation_status(&home)["typed"] == 2);
    let got = term.received();
    assert_eq!(got.to_lowercase().matches("report").count(), 2, "typed once more, not repeated: {got:?}");
    let log = d.log_text();
    let prompts: Vec<&str> = log.lines().filter(|l| l.contains("local transcription, prompt")).collect();
    assert_eq!(prompts.len(), 2, "{log}");
    assert!(!prompts[1].to_lowercase().contains("report"), "no recent text in a local prompt: {}", prompts[1]);

    wait_until(T, "the idle model unloaded", || dictation_status(&home)["model"]["state"] == "unloaded");
    assert!(d.log_text().contains("local model unloaded after"), "{}", d.log_text());
}

#[test]
fn a_corrupt_model_keeps_the_clip_and_retry_types_it_once_the_model_is_fixed() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let xvfb = Xvfb::start();
    let good = std::fs::read(tiny_en()).expect("read the model");
    let (home, model) = local_home(&xvfb, "");
    std::fs::write(&model, &good[..good.len() / 2]).expect("a truncated model");
    let wav = sentence_file(&home);
    let term = Xterm::start(&xvfb.display);
    let d = home.start_daemon();

    speak_with_the_key(&home, &xvfb, &wav);
    wait_until(T, "the clip kept", || dictation_status(&home)["kept_clips"] == 1);
    let status = dictation_status(&home);
    let error = status["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("is truncated") && error.contains("download it again"), "a clear error: {error}");
    assert_eq!(status["model"]["state"], "failed", "{status}");
    let listed = home.run(&["dictate", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("truncated"), "{}", describe(&listed));
    assert_eq!(term.received(), "", "nothing typed");

    std::fs::write(&model, &good).expect("the model fixed");
    let out = home.run(&["dictate", "retry"]);
    assert!(out.status.success(), "{}", describe(&out));
    wait_until(T, "typed", || dictation_status(&home)["typed"] == 1);
    wait_until(T, "no clip kept", || dictation_status(&home)["kept_clips"] == 0);
    let got = term.received();
    assert!(keywords_heard(&got, KEYWORDS) >= 4, "most keywords typed: {got:?}");
    assert_eq!(got.to_lowercase().matches("report").count(), 1, "typed once: {got:?}");
    assert!(d.log_text().contains("loaded in"), "the fixed model was loaded: {}", d.log_text());
}

#[test]
fn dictate_once_and_retry_work_locally_without_a_daemon() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let xvfb = Xvfb::start();
    let good = std::fs::read(tiny_en()).expect("read the model");
    let (home, model) = local_home(&xvfb, "");
    std::fs::write(&model, &good).expect("model");
    let wav = sentence_file(&home);

    let dictate = |home: &TestHome| {
        let mut once = home.dictate_once(T);
        play_into_mic(&wav);
        once.enter();
        once.finish()
    };
    let out = dictate(&home);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(keywords_heard(&text, KEYWORDS) >= 4, "most keywords printed: {text:?}");

    // A damaged model: the clip is kept, with the reason; retry (no daemon) prints it once the model is back.
    let mut damaged = good.clone();
    damaged[4..48].fill(0xff);
    std::fs::write(&model, &damaged).expect("damage the model");
    let out = dictate(&home);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is damaged") && err.contains("ptt dictate retry"), "{err}");
    std::fs::write(&model, &good).expect("fix the model");
    let out = home.run(&["dictate", "retry"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(keywords_heard(&text, KEYWORDS) >= 4, "the kept clip's text: {text:?}");
    let listed = home.run(&["dictate", "list"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "no kept clips");

    // doctor: the engine, the model file and its size, a measured transcription of silence.
    let doc = home.run(&["doctor"]);
    let text = String::from_utf8_lossy(&doc.stdout);
    assert!(text.contains("dictation engine: local whisper.cpp"), "{text}");
    assert!(text.contains(&format!("local model: {} (74.1 MiB, tiny, English-only)", model.display())), "{text}");
    assert!(text.contains("1 s of silence transcribed in"), "{text}");
}
