//! The vocabulary: words the transcriber should spell right, one per line in
//! a plain file the user can edit, and the prompt built from it.
//!
//! The prompt is the vocabulary followed by the most recent dictations: the
//! transcription models take `prompt` as preceding context, so names and
//! jargon are spelled as listed and a sentence continues the style of the
//! last one. It is bounded so a long list cannot blow up every request.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;

/// Characters of prompt at most (the API's prompt limit is far larger; this keeps uploads small).
pub(crate) const PROMPT_MAX_CHARS: usize = 1500;

/// The words in the file (blank lines and `#` comments skipped); a missing file is empty.
pub(crate) fn load(path: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Appends a word unless it is already there (case-insensitively). Returns
/// whether it was added. The file and its directory are created as needed.
pub(crate) fn add(path: &Path, word: &str) -> std::io::Result<bool> {
    let word = word.trim();
    if word.is_empty() || word.contains('\n') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a word"));
    }
    let words = load(path)?;
    if words.iter().any(|w| w.eq_ignore_ascii_case(word) || w.to_lowercase() == word.to_lowercase()) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let existing = std::fs::read(path).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    if !existing.is_empty() && !existing.ends_with(b"\n") {
        f.write_all(b"\n")?;
    }
    // No fsync: this runs on the daemon's loop, and a word lost to a power cut is said again.
    f.write_all(format!("{word}\n").as_bytes())?;
    Ok(true)
}

/// The prompt: the vocabulary, then recent dictations (oldest first), cut to
/// [`PROMPT_MAX_CHARS`] keeping the most recent text whole where it can.
pub(crate) fn prompt(words: &[String], recent: &VecDeque<String>) -> Option<String> {
    let mut parts = Vec::new();
    if !words.is_empty() {
        let mut list = String::new();
        for w in words {
            if list.len() + w.len() + 2 > PROMPT_MAX_CHARS / 2 {
                break;
            }
            if !list.is_empty() {
                list.push_str(", ");
            }
            list.push_str(w);
        }
        parts.push(format!("{list}."));
    }
    let mut context: Vec<&str> = Vec::new();
    let budget = PROMPT_MAX_CHARS.saturating_sub(parts.first().map_or(0, String::len) + 1);
    let mut used = 0;
    for text in recent.iter().rev() {
        if used + text.len() + 1 > budget {
            break;
        }
        used += text.len() + 1;
        context.push(text);
    }
    context.reverse();
    if !context.is_empty() {
        parts.push(context.join(" "));
    }
    if parts.is_empty() { None } else { Some(parts.join(" ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/vocabulary.txt");
        assert_eq!(load(&path).expect("missing is empty"), Vec::<String>::new());
        assert!(add(&path, "Kubernetes").expect("add"));
        assert!(!add(&path, "kubernetes").expect("dup"), "case-insensitive duplicate");
        std::fs::write(&path, "# my words\nKubernetes\n\nPostgreSQL").expect("write");
        assert!(add(&path, " Tokio ").expect("add"));
        assert_eq!(load(&path).expect("load"), vec!["Kubernetes", "PostgreSQL", "Tokio"]);
        assert!(add(&path, "a\nb").is_err());
    }

    #[test]
    fn prompt_is_vocabulary_then_recent_text() {
        let words = vec!["Kubernetes".to_string(), "ptt".to_string()];
        let recent: VecDeque<String> = ["First one.".to_string(), "Second one.".to_string()].into();
        assert_eq!(prompt(&words, &recent).as_deref(), Some("Kubernetes, ptt. First one. Second one."));
        assert_eq!(prompt(&[], &recent).as_deref(), Some("First one. Second one."));
        assert_eq!(prompt(&words, &VecDeque::new()).as_deref(), Some("Kubernetes, ptt."));
        assert_eq!(prompt(&[], &VecDeque::new()), None);
    }

    #[test]
    fn prompt_is_bounded_and_keeps_the_latest() {
        let words: Vec<String> = (0..1000).map(|i| format!("word{i}")).collect();
        let recent: VecDeque<String> = (0..100).map(|i| format!("sentence number {i} {}", "x".repeat(50))).collect();
        let p = prompt(&words, &recent).expect("prompt");
        assert!(p.len() <= PROMPT_MAX_CHARS, "{}", p.len());
        assert!(p.starts_with("word0, word1"));
        assert!(p.contains("sentence number 99"), "the latest dictation is kept");
        assert!(!p.contains("sentence number 0 "), "the oldest is dropped");
    }
}
