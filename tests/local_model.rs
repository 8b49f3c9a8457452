//! The local engine with a real Whisper model (tiny.en from PyPI, converted by `scripts/setup --test`): speech
//! in, keywords out with a clip-sized context; a looping decode decoded again, wider; damaged files refused
//! with a clear error before whisper.cpp reads them. No microphone, no daemon: the engine alone (the daemon and
//! `ptt dictate` are in `local_dictation.rs`).

mod common;

use common::model::{keywords_heard, speech_wav, tiny_en};
use ptt::dictate::local::{self, Model};

const SENTENCE: &str = "please send the quarterly report before friday afternoon";
const KEYWORDS: &[&str] = &["please", "send", "quarterly", "report", "friday", "afternoon"];

#[test]
fn speech_becomes_text_with_a_clip_sized_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::load(&tiny_en()).unwrap_or_else(|e| panic!("the real model loads: {e}"));
    assert!(!model.multilingual, "tiny.en is English-only");
    let wav = speech_wav(dir.path(), SENTENCE);
    let pcm = local::prepare(&wav).expect("prepare");
    assert!(local::has_sound(&pcm));
    let t = model.transcribe(&pcm, None, None, local::threads(0)).expect("transcribe");
    eprintln!("heard {:?} in {} ms (audio_ctx {})", t.text, t.took.as_millis(), t.audio_ctx);
    assert!(keywords_heard(&t.text, KEYWORDS) >= 4, "most keywords heard: {:?}", t.text);
    let seconds = pcm.len() as i32 / 16_000;
    assert!(t.audio_ctx >= seconds * 50 && t.audio_ctx < 1500, "a clip-sized context: {} for {seconds} s", t.audio_ctx);
}

#[test]
fn a_truncated_or_damaged_model_is_a_clear_error_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read(tiny_en()).expect("read the model");

    let cut = dir.path().join("ggml-cut.bin");
    std::fs::write(&cut, &good[..good.len() * 3 / 5]).expect("write");
    let e = Model::load(&cut).err().expect("a truncated model is refused");
    assert!(e.contains("is truncated") && e.contains("download it again"), "{e}");

    let mut bad = good;
    bad[4..48].fill(0xff);
    let damaged = dir.path().join("ggml-damaged.bin");
    std::fs::write(&damaged, &bad).expect("write");
    let e = Model::load(&damaged).err().expect("a damaged header is refused");
    assert!(e.contains("is damaged"), "{e}");
}

#[test]
fn recent_dictations_in_the_prompt_do_not_make_the_model_repeat_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::load(&tiny_en()).unwrap_or_else(|e| panic!("the real model loads: {e}"));
    let pcm = local::prepare(&speech_wav(dir.path(), "send the report on friday")).expect("prepare");
    // The daemon's prompt after two dictations: the vocabulary, then the recent text.
    let prompt = Some("Kubernetes, PostgreSQL. Send the reports on Friday. Send the reports on Friday.".to_string());
    let t = model.transcribe(&pcm, prompt.as_deref(), None, local::threads(0)).expect("transcribe");
    eprintln!("heard {:?} in {} ms", t.text, t.took.as_millis());
    assert_eq!(keywords_heard(&t.text, &["send", "friday"]), 2, "{:?}", t.text);
    assert_eq!(t.text.to_lowercase().matches("friday").count(), 1, "said once, heard once: {:?}", t.text);
}

#[test]
fn a_decode_that_loops_is_decoded_again_with_a_wider_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::load(&tiny_en()).unwrap_or_else(|e| panic!("the real model loads: {e}"));
    // "forty two" made tiny.en loop ("42. 42. 42. …" to the token cap) at the 384-frame floor in every
    // measurement (benches/local.rs --ctx-table); the dictation must come back as the number, once.
    let pcm = local::prepare(&speech_wav(dir.path(), "forty two")).expect("prepare");
    let at_floor = model.transcribe_with_audio_ctx(&pcm, None, None, 1, 384).expect("transcribe");
    let t = model.transcribe(&pcm, None, None, 1).expect("transcribe");
    eprintln!(
        "at the floor {:?}; transcribed {:?} (retried: {}) in {} ms",
        at_floor.text,
        t.text,
        t.retried,
        t.took.as_millis()
    );
    if at_floor.looped(pcm.len()) {
        assert!(t.retried, "a looping decode is decoded again: {:?}", t.text);
    }
    assert!(!t.looped(pcm.len()), "no loop reaches the user: {:?}", t.text);
    assert!(t.text.contains("42") || t.text.to_lowercase().contains("forty"), "{:?}", t.text);
    assert!(t.text.matches("42").count() <= 1, "said once, heard once: {:?}", t.text);
}
