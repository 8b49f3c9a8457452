//! Importing the Python app's settings (`~/.local/share/push-to-talk/config.json`)
//! on first run, so a user switching over keeps their keys, voice and words.
//!
//! "First run" means: no `config.toml` yet and no record of an earlier import.
//! The import writes a small `config.toml` holding only what it carried over
//! (everything else stays at its default, see `ptt config default`), copies the
//! vocabulary, and leaves `legacy-import.txt` in the state directory saying
//! what it did; the daemon logs the same lines and `ptt doctor` shows them.
//! Meanings changed on the way: the old `dictation_mode: "live"` was
//! type-as-you-speak dictation (now: dictation on the push-to-talk key), and
//! `ai_mode: "realtime"` was the voice conversation (now: live mode).
//! An API key found in the file goes to a 0600 key file, never into the config.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::hotkey::bindings::Key;
use crate::paths::Paths;

/// What [`convert`] made of the old file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Imported {
    /// The new config file's text.
    pub(crate) config_toml: String,
    /// One line per setting carried over.
    pub(crate) imported: Vec<String>,
    /// One line per setting left behind, and why.
    pub(crate) skipped: Vec<String>,
    /// Vocabulary words found.
    pub(crate) vocabulary: Vec<String>,
    /// An OpenAI key found in the file (written to a key file, never logged).
    pub(crate) api_key: Option<String>,
}

/// Where the Python app kept its settings.
pub(crate) fn legacy_file(home: &Path) -> PathBuf {
    home.join(".local/share/push-to-talk/config.json")
}

/// The record of an import, in the state directory.
pub(crate) fn record_file(paths: &Paths) -> PathBuf {
    paths.state_dir.join("legacy-import.txt")
}

/// An old key name (pynput `ctrl_r`/`Key.ctrl_r`, evdev `KEY_RIGHTCTRL`, ours) as a binding, chords with `+`.
pub(crate) fn translate_key(old: &str) -> Option<String> {
    let mut names = Vec::new();
    for part in old.split('+') {
        let p = part.trim().to_ascii_lowercase();
        let p = p.strip_prefix("key.").or_else(|| p.strip_prefix("key_")).unwrap_or(&p);
        let p = match p {
            "rightctrl" => "right_ctrl",
            "leftctrl" | "ctrl" | "control" => "left_ctrl",
            "rightshift" => "right_shift",
            "leftshift" | "shift" => "left_shift",
            "rightalt" => "right_alt",
            "leftalt" | "alt" => "left_alt",
            "rightmeta" | "cmd_r" => "right_super",
            "leftmeta" | "cmd" | "cmd_l" => "left_super",
            other => other,
        };
        names.push(Key::from_name(p)?.name());
    }
    (!names.is_empty()).then(|| names.join("+"))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Converts the old JSON. `legacy_dir` is where a relative vocabulary file is looked up.
pub(crate) fn convert(json: &str, legacy_dir: &Path) -> Result<Imported, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let mut out = Imported::default();
    let (mut keys, mut live, mut dictate) = (Vec::new(), Vec::new(), Vec::new());
    let str_of = |k: &str| obj.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());

    for (old, new) in [("ptt_key", "ptt"), ("ai_key", "live")] {
        if let Some(raw) = str_of(old) {
            match translate_key(raw) {
                Some(binding) => {
                    keys.push(format!("{new} = {}", toml_string(&binding)));
                    out.imported.push(format!("{old} \"{raw}\" → keys.{new} = \"{binding}\""));
                }
                None => out.skipped.push(format!("{old} \"{raw}\": not a key ptt knows; keys.{new} keeps its default")),
            }
        }
    }
    match str_of("dictation_mode") {
        Some(m @ ("live" | "dictate")) => {
            dictate.push("enabled = true".to_string());
            out.imported
                .push(format!("dictation_mode \"{m}\" → dictation on the push-to-talk key (dictate.enabled = true)"));
        }
        Some(other) => out.skipped.push(format!(
            "dictation_mode \"{other}\": ptt has no such mode; the push-to-talk key dictates (type as you speak)"
        )),
        None => {}
    }
    match str_of("ai_mode") {
        Some("realtime") => out.imported.push(
            "ai_mode \"realtime\" → live mode: the keys.live chord starts a voice conversation (OpenAI Realtime)"
                .into(),
        ),
        Some(other) => out.skipped.push(format!(
            "ai_mode \"{other}\": ptt's assistant is live mode (OpenAI Realtime) with Claude Code tasks"
        )),
        None => {}
    }
    if let Some(voice) = str_of("openai_voice") {
        live.push(format!("voice = {}", toml_string(voice)));
        out.imported.push(format!("openai_voice \"{voice}\" → live.voice"));
    }
    // The vocabulary: a list in the file, a file it names, or vocabulary.txt beside it.
    let mut vocab_source = None;
    if let Some(list) = obj.get("vocabulary").and_then(Value::as_array) {
        out.vocabulary = list.iter().filter_map(Value::as_str).map(|s| s.trim().to_string()).collect();
        vocab_source = Some("vocabulary (list)".to_string());
    } else {
        let named = str_of("vocabulary_file").map(|f| {
            let p = PathBuf::from(f);
            if p.is_absolute() { p } else { legacy_dir.join(p) }
        });
        let file = named.clone().unwrap_or_else(|| legacy_dir.join("vocabulary.txt"));
        match crate::dictate::vocabulary::load(&file) {
            Ok(_) if !file.exists() => {
                if named.is_some() {
                    out.skipped.push(format!("vocabulary file {}: not found", file.display()));
                }
            }
            Ok(words) => {
                out.vocabulary = words;
                vocab_source = Some(file.display().to_string());
            }
            Err(e) => out.skipped.push(format!("vocabulary file {}: {e}", file.display())),
        }
    }
    out.vocabulary.retain(|w| !w.is_empty() && !w.contains('\n'));
    if let Some(source) = vocab_source {
        out.imported.push(format!("{} vocabulary word(s) from {source}", out.vocabulary.len()));
    }
    for k in ["openai_api_key", "api_key"] {
        if let Some(key) = str_of(k) {
            out.api_key = Some(key.to_string());
            out.imported.push(format!("{k} → a key file (mode 0600), named by live.key_file"));
        }
    }
    let known = [
        "ptt_key",
        "ai_key",
        "dictation_mode",
        "ai_mode",
        "openai_voice",
        "vocabulary",
        "vocabulary_file",
        "openai_api_key",
        "api_key",
    ];
    let mut others: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
    others.sort_unstable();
    if !others.is_empty() {
        out.skipped.push(format!("not carried over (no equivalent): {}", others.join(", ")));
    }

    let mut text = String::from(
        "# Imported from the Python push-to-talk app's config.json on first run.\n\
         # Only the imported settings are here; `ptt config default` shows every key.\n",
    );
    for (name, lines) in [("keys", &keys), ("live", &live), ("dictate", &dictate)] {
        if !lines.is_empty() {
            text.push_str(&format!("\n[{name}]\n{}\n", lines.join("\n")));
        }
    }
    out.config_toml = text;
    Ok(out)
}

/// The import, done once. Returns the lines to tell the user, or `None` when
/// there was nothing to do (a config exists, it was done before, no old file).
pub(crate) fn import_on_first_run(paths: &Paths) -> Result<Option<Vec<String>>, String> {
    let old = legacy_file(&paths.home);
    if paths.config_file.exists() || record_file(paths).exists() || !old.exists() {
        return Ok(None);
    }
    let json = std::fs::read_to_string(&old).map_err(|e| format!("cannot read {}: {e}", old.display()))?;
    let legacy_dir = old.parent().unwrap_or(Path::new("."));
    let mut imported = convert(&json, legacy_dir).map_err(|e| format!("{}: {e}", old.display()))?;
    let config_dir = paths.config_file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(config_dir).map_err(|e| format!("cannot create {}: {e}", config_dir.display()))?;
    if let Some(key) = imported.api_key.take() {
        let key_file = config_dir.join("openai.key");
        write_private(&key_file, &format!("{key}\n"))
            .map_err(|e| format!("cannot write {}: {e}", key_file.display()))?;
        imported.config_toml = insert_live_key_file(&imported.config_toml, &key_file);
    }
    // Check what we are about to write parses (a bad old value must not leave a daemon that will not start).
    crate::config::Config::parse(&imported.config_toml, &paths.config_file)
        .map_err(|e| format!("the imported settings do not make a valid config ({e}); nothing imported"))?;
    std::fs::write(&paths.config_file, &imported.config_toml)
        .map_err(|e| format!("cannot write {}: {e}", paths.config_file.display()))?;
    if !imported.vocabulary.is_empty() {
        let vocab = paths.state_dir.join("vocabulary.txt");
        for word in &imported.vocabulary {
            crate::dictate::vocabulary::add(&vocab, word)
                .map_err(|e| format!("cannot write {}: {e}", vocab.display()))?;
        }
    }
    let mut lines = vec![format!("imported settings from {} into {}", old.display(), paths.config_file.display())];
    lines.extend(imported.imported.iter().map(|l| format!("  imported: {l}")));
    lines.extend(imported.skipped.iter().map(|l| format!("  skipped: {l}")));
    std::fs::create_dir_all(&paths.state_dir)
        .map_err(|e| format!("cannot create {}: {e}", paths.state_dir.display()))?;
    std::fs::write(record_file(paths), lines.join("\n") + "\n")
        .map_err(|e| format!("cannot write {}: {e}", record_file(paths).display()))?;
    Ok(Some(lines))
}

fn insert_live_key_file(text: &str, key_file: &Path) -> String {
    let line = format!("key_file = {}", toml_string(&key_file.display().to_string()));
    if text.contains("\n[live]\n") {
        text.replacen("\n[live]\n", &format!("\n[live]\n{line}\n"), 1)
    } else {
        format!("{text}\n[live]\n{line}\n")
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_every_old_spelling() {
        assert_eq!(translate_key("ctrl_r").as_deref(), Some("right_ctrl"));
        assert_eq!(translate_key("Key.ctrl_r").as_deref(), Some("right_ctrl"));
        assert_eq!(translate_key("KEY_RIGHTCTRL").as_deref(), Some("right_ctrl"));
        assert_eq!(translate_key("shift_r+ctrl_r").as_deref(), Some("right_shift+right_ctrl"));
        assert_eq!(translate_key("KEY_F12").as_deref(), Some("f12"));
        assert_eq!(translate_key("right_alt").as_deref(), Some("right_alt"));
        assert_eq!(translate_key("KEY_SCROLLLOCK"), None);
    }

    #[test]
    fn a_full_old_config_converts() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("vocabulary.txt"), "Kubernetes\n# comment\n\nPostgreSQL\n").expect("vocab");
        let json = r#"{"ptt_key":"ctrl_r","ai_key":"shift_r+ctrl_r","dictation_mode":"live","ai_mode":"realtime",
                       "openai_voice":"ash","indicator_position":"top","theme":"dark"}"#;
        let i = convert(json, dir.path()).expect("convert");
        let cfg = crate::config::Config::parse(&i.config_toml, Path::new("imported.toml")).expect("valid toml");
        assert_eq!(cfg.keys.ptt, "right_ctrl");
        assert_eq!(cfg.keys.live, "right_shift+right_ctrl");
        assert_eq!(cfg.live.voice, "ash");
        assert!(cfg.dictate.enabled);
        assert_eq!(i.vocabulary, vec!["Kubernetes", "PostgreSQL"]);
        let all = i.imported.join("\n");
        assert!(all.contains("dictation_mode \"live\" → dictation"), "{all}");
        assert!(all.contains("ai_mode \"realtime\" → live mode"), "{all}");
        assert!(i.skipped.iter().any(|s| s.contains("indicator_position, theme")), "{:?}", i.skipped);
    }

    #[test]
    fn odd_values_are_reported_not_imported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let i = convert(r#"{"ptt_key":"KEY_SCROLLLOCK","dictation_mode":"prompt","ai_mode":"claude"}"#, dir.path())
            .expect("convert");
        assert_eq!(i.imported, Vec::<String>::new());
        assert_eq!(i.skipped.len(), 3, "{:?}", i.skipped);
        let cfg = crate::config::Config::parse(&i.config_toml, Path::new("x")).expect("valid");
        assert_eq!(cfg, crate::config::Config::default());
        assert!(convert("[1,2]", dir.path()).is_err());
        assert!(convert("{not json", dir.path()).unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn import_happens_once_and_keeps_the_key_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths::under(dir.path());
        assert_eq!(import_on_first_run(&paths), Ok(None), "no old file: nothing");
        let old = legacy_file(&paths.home);
        std::fs::create_dir_all(old.parent().expect("parent")).expect("mkdir");
        std::fs::write(&old, r#"{"ptt_key":"KEY_F9","openai_voice":"coral","openai_api_key":"sk-legacy-secret-123","vocabulary":["Tokio"]}"#)
            .expect("write");
        let lines = import_on_first_run(&paths).expect("import").expect("done");
        let told = lines.join("\n");
        assert!(told.contains("keys.ptt = \"f9\""), "{told}");
        assert!(!told.contains("sk-legacy-secret"), "the key is never shown: {told}");
        let cfg = crate::config::Config::load(&paths.config_file).expect("valid config");
        assert_eq!(cfg.keys.ptt, "f9");
        assert_eq!(cfg.live.voice, "coral");
        let key_file = cfg.live.key_file.expect("key file set");
        let meta = std::fs::metadata(&key_file).expect("key file");
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&key_file).expect("read").trim(), "sk-legacy-secret-123");
        assert!(!std::fs::read_to_string(&paths.config_file).expect("read").contains("sk-legacy"));
        assert_eq!(
            crate::dictate::vocabulary::load(&paths.state_dir.join("vocabulary.txt")).expect("vocab"),
            vec!["Tokio"]
        );
        assert!(record_file(&paths).exists());
        // Second run: the config exists → nothing; even without it, the record stops a re-import.
        assert_eq!(import_on_first_run(&paths), Ok(None));
        std::fs::remove_file(&paths.config_file).expect("rm");
        assert_eq!(import_on_first_run(&paths), Ok(None));
    }
}
