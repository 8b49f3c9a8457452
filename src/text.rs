//! Text helpers shared by every front end: cutting, redacting, and saying things
//! at the length of an ear.
//!
//! This is a leaf module (it knows no other module of the crate), so that the
//! task supervisor, the Realtime driver, dictation and the CLI can all use the
//! same cut and the same redaction without importing each other.
//!
//! Whatever leaves the daemon towards a model, a speaker or a status bar goes
//! through [`redact`] first: API keys, tokens, private keys, passwords in URLs
//! and in `password=...` assignments are replaced by `[redacted]`. The spoken
//! summary ([`for_the_ear`]) is the result's own text, cut at a sentence
//! boundary, never the raw tail of a log.

use std::sync::LazyLock;

use regex::Regex;

static SECRET_PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let rules: &[(&str, &str)] = &[
        // PEM private keys, whole block.
        (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|\z)", "[redacted private key]"),
        // Vendor key shapes.
        (r"\bsk-[A-Za-z0-9_\-]{16,}", "[redacted]"),
        (r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}", "[redacted]"),
        (r"\bgithub_pat_[A-Za-z0-9_]{20,}", "[redacted]"),
        (r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", "[redacted]"),
        (r"\bAKIA[0-9A-Z]{16}\b", "[redacted]"),
        (r"\bAIza[0-9A-Za-z_\-]{30,}", "[redacted]"),
        (r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{5,}", "[redacted]"),
        // Authorization headers.
        (r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9_\-\.=+/]{12,}", "$1 [redacted]"),
        // user:password@ in URLs.
        (r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+):[^\s@/]+@", "$1:[redacted]@"),
        // password = value, API_KEY: value, "secret": "value".
        (
            r#"(?i)\b([A-Z0-9_]*(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[A-Z0-9_]*)("?\s*[:=]\s*"?)[^\s"',;]+"#,
            "$1$3[redacted]",
        ),
    ];
    rules
        .iter()
        .filter_map(|(pattern, replacement)| match Regex::new(pattern) {
            Ok(re) => Some((re, *replacement)),
            Err(e) => {
                log::error!("internal: bad redaction pattern {pattern:?}: {e}");
                None
            }
        })
        .collect()
});

/// Replaces anything that looks like a secret.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (re, replacement) in SECRET_PATTERNS.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, *replacement).into_owned();
        }
    }
    out
}

/// A spoken-length version of `text`: whitespace folded, markdown noise
/// dropped, cut at the last sentence end before `max_chars` (or a word
/// boundary when there is none), redacted.
pub fn for_the_ear(text: &str, max_chars: usize) -> String {
    let folded: String = text
        .lines()
        .map(|l| l.trim().trim_start_matches(['#', '*', '-', '>']).trim())
        .filter(|l| !l.is_empty() && !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join(" ")
        .replace("**", "")
        .replace('`', "");
    let clean = redact(&folded);
    if clean.chars().count() <= max_chars {
        return clean;
    }
    let cut: String = clean.chars().take(max_chars).collect();
    let sentence_end = cut
        .char_indices()
        .filter(|(i, c)| matches!(c, '.' | '!' | '?') && cut[i + c.len_utf8()..].starts_with(char::is_whitespace))
        .map(|(i, c)| i + c.len_utf8())
        .next_back();
    match sentence_end {
        Some(end) if end >= max_chars / 3 => cut[..end].to_string(),
        _ => {
            let word_end = cut.rfind(char::is_whitespace).unwrap_or(cut.len());
            format!("{}…", cut[..word_end].trim_end())
        }
    }
}

/// "4 minutes 12 seconds": a duration as it is spoken.
pub fn duration_words(secs: u64) -> String {
    let plural = |n: u64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    match secs {
        s if s < 60 => plural(s, "second"),
        s if s < 3600 => {
            let rest = if s % 60 == 0 { String::new() } else { format!(" {}", plural(s % 60, "second")) };
            format!("{}{rest}", plural(s / 60, "minute"))
        }
        s => {
            let rest =
                if (s % 3600) / 60 == 0 { String::new() } else { format!(" {}", plural((s % 3600) / 60, "minute")) };
            format!("{}{rest}", plural(s / 3600, "hour"))
        }
    }
}

/// Cuts `s` to at most `max` characters, adding an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", s[..i].trim_end()),
    }
}

/// Lowercase words of `text`, joined by single spaces; punctuation dropped
/// (apostrophes and hyphens inside words are kept).
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let cleaned: String = word
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'' || *c == '-')
            .flat_map(char::to_lowercase)
            .collect();
        let cleaned = cleaned.trim_matches(|c| c == '\'' || c == '-');
        if !cleaned.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(cleaned);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_spoken() {
        assert_eq!(duration_words(1), "1 second");
        assert_eq!(duration_words(252), "4 minutes 12 seconds");
        assert_eq!(duration_words(3600), "1 hour");
        assert_eq!(duration_words(3720), "1 hour 2 minutes");
    }

    #[test]
    fn redacts_common_secrets() {
        let cases = [
            "key is sk-proj-abcdefghijklmnopqrstuvwxyz123",
            "export OPENAI_API_KEY=abcd1234efgh",
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "curl https://bob:hunter2@example.com/x",
            "password: hunter2",
            "Authorization: Bearer abcdefghijklmnop1234",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
            "aws AKIAABCDEFGHIJKLMNOP",
            "{\"api_key\": \"zzzzzzzz\"}",
        ];
        for case in cases {
            let r = redact(case);
            assert!(r.contains("[redacted"), "not redacted: {case} -> {r}");
            for secret in ["abcdefghijklmnopqrstuvwxyz123", "abcd1234efgh", "hunter2", "MIIEow", "zzzzzzzz"] {
                assert!(!r.contains(secret), "{secret} leaked in {r}");
            }
        }
        assert_eq!(redact("nothing secret here: tokens are fun"), "nothing secret here: tokens are fun");
    }

    #[test]
    fn cuts_at_a_sentence_boundary() {
        let text = "I refactored the auth module. All 42 tests pass. I also updated the README and fixed a typo in the changelog that nobody will ever read.";
        assert_eq!(for_the_ear(text, 60), "I refactored the auth module. All 42 tests pass.");
        assert_eq!(for_the_ear("short.", 60), "short.");
    }

    #[test]
    fn falls_back_to_a_word_boundary_and_strips_markdown() {
        let s = for_the_ear(
            "## Summary\n- **Changed** `src/a.rs` and many many other files without any full stop at all",
            40,
        );
        assert!(s.ends_with('…'), "{s}");
        assert!(!s.contains('#') && !s.contains("**") && !s.contains('`'), "{s}");
        assert!(s.chars().count() <= 41, "{s}");
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo wörld", 4), "héll…");
        assert_eq!(clip("short", 10), "short");
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("  Live   Mode. "), "live mode");
        assert_eq!(normalise("New line!"), "new line");
        assert_eq!(normalise("Don't stop — ok?"), "don't stop ok");
        assert_eq!(normalise("...!"), "");
        assert_eq!(normalise("Ünïcode Wörds"), "ünïcode wörds");
    }
}
