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
        // PEM private keys (RSA, EC, OPENSSH, ENCRYPTED, PGP ... BLOCK), whole block, even cut short.
        (
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\z)",
            "[redacted private key]",
        ),
        // Vendor key shapes: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), Stripe, GitLab, npm, GitHub,
        // Slack, AWS access key ids, Google, JWTs.
        (r"\bsk-[A-Za-z0-9_\-]{16,}", "[redacted]"),
        (r"\b[srp]k_(live|test)_[A-Za-z0-9]{10,}", "[redacted]"),
        (r"\bglpat-[A-Za-z0-9_\-]{16,}", "[redacted]"),
        (r"\bnpm_[A-Za-z0-9]{30,}", "[redacted]"),
        (r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}", "[redacted]"),
        (r"\bgithub_pat_[A-Za-z0-9_]{20,}", "[redacted]"),
        (r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", "[redacted]"),
        (r"\bxapp-[0-9]-[A-Za-z0-9\-]{10,}", "[redacted]"),
        (r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+", "[redacted]"),
        (r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b", "[redacted]"),
        (r"\bAIza[0-9A-Za-z_\-]{30,}", "[redacted]"),
        (r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{5,}", "[redacted]"),
        // Authorization headers.
        (r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9_\-\.=+/]{12,}", "$1 [redacted]"),
        // user:password@ in URLs.
        (r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+):[^\s@/]+@", "$1:[redacted]@"),
        // password = value, PASSWORD: 'value', "password": "with spaces", API_KEY=value: a quoted value
        // is redacted whole, spaces included.
        (
            r#"(?i)\b([A-Z0-9_\-]*(password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[A-Z0-9_\-]*)(\\?["']?\s*[:=]\s*)(\\"[^"\n]*?\\"|"[^"\n]*"|'[^'\n]*'|[^\s"',;\\]+)"#,
            "$1$3[redacted]",
        ),
        // "the secret is X", "secret key X", "password hunter2": a key word, a few words, then a token.
        (
            r"(?i)\b(password|passwd|passphrase|secret(?:[ _-]?access)?(?:[ _-]?key)?)((?:\s+(?:is|was|of|for|key|:|=|-))*\s+)([A-Za-z0-9/+=_\-.!@#$%^&*]{8,})",
            "$1$2[redacted]",
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

/// A bare 40-character AWS secret access key: base64 characters, mixed case and
/// not plain hex (a git commit id is 40 hex digits, and is no secret).
static AWS_SECRET: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(^|[^A-Za-z0-9/+=])([A-Za-z0-9/+]{40})($|[^A-Za-z0-9/+=])").ok());

fn looks_like_aws_secret(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && s.bytes().any(|b| b.is_ascii_digit() || b == b'/' || b == b'+')
        && !s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Replaces anything that looks like a secret.
pub(crate) fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (re, replacement) in SECRET_PATTERNS.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, *replacement).into_owned();
        }
    }
    if let Some(re) = AWS_SECRET.as_ref()
        && re.is_match(&out)
    {
        out = re
            .replace_all(&out, |c: &regex::Captures| {
                if looks_like_aws_secret(&c[2]) { format!("{}[redacted]{}", &c[1], &c[3]) } else { c[0].to_string() }
            })
            .into_owned();
    }
    out
}

/// A spoken-length version of `text`: whitespace folded, markdown noise
/// dropped, cut at the last sentence end before `max_chars` (or a word
/// boundary when there is none), redacted.
pub(crate) fn for_the_ear(text: &str, max_chars: usize) -> String {
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
pub(crate) fn duration_words(secs: u64) -> String {
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
pub(crate) fn clip(s: &str, max: usize) -> String {
    let mut out = String::new();
    clip_into(s, max, &mut out);
    out
}

/// [`clip`] appending to `out`, so that a caller on a hot path can reuse one buffer.
pub(crate) fn clip_into(s: &str, max: usize, out: &mut String) {
    let s = s.trim();
    // At most `max` bytes are at most `max` characters: no need to count them.
    if s.len() <= max {
        out.push_str(s);
        return;
    }
    match s.char_indices().nth(max) {
        None => out.push_str(s),
        Some((i, _)) => {
            out.push_str(s[..i].trim_end());
            out.push('…');
        }
    }
}

/// Is `c` a character a terminal would act on rather than print (C0/C1 controls,
/// DEL, and the bidirectional overrides that reorder what is shown)?
fn is_terminal_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character escaped (`\n`, `\t`, `\u{1b}`), so that text
/// from a task, a child or a client can be printed to a terminal or a log line
/// without moving the cursor, clearing the screen or forging a line.
pub(crate) fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_terminal_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_terminal_control(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `s` folded onto one line of printable text: runs of whitespace and control
/// characters become one space (for names, which show in tables and log lines).
pub(crate) fn single_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || is_terminal_control(c))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lowercase words of `text`, joined by single spaces; punctuation dropped
/// (apostrophes and hyphens inside words are kept).
pub(crate) fn normalise(text: &str) -> String {
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

    /// Every shape issue 10 lists: (input, the secret that must be gone).
    const SECRET_SHAPES: &[(&str, &str)] = &[
        ("key is sk-proj-abcdefghijklmnopqrstuvwxyz123", "abcdefghijklmnopqrstuvwxyz123"),
        ("OPENAI sk-abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
        ("ANTHROPIC_KEY sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv-wxyz", "AbCdEfGhIjKlMnOpQrStUv"),
        ("export OPENAI_API_KEY=abcd1234efgh", "abcd1234efgh"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "11ABCDEFG0123456789"),
        ("curl https://bob:hunter2@example.com/x", "hunter2"),
        ("password: hunter2", "hunter2"),
        ("PASSWORD: 'correcthorse'", "correcthorse"),
        ("PASSWORD='correct horse battery'", "correct horse"),
        (r#"{"password": "with space secret"}"#, "space secret"),
        (r#"{"db_password":"s3cr3t value"}"#, "s3cr3t"),
        ("the password is hunter2-and-more", "hunter2-and-more"),
        ("Authorization: Bearer abcdefghijklmnop1234", "abcdefghijklmnop1234"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEA"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n-----END OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjEA",
        ),
        ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBGXYZ\n-----END PGP PRIVATE KEY BLOCK-----", "lQOYBGXYZ"),
        ("cut short: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB", "MHcCAQEEIB"),
        ("aws AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP"),
        ("session ASIAABCDEFGHIJKLMNOP", "ASIAABCDEFGHIJKLMNOP"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ("the secret is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok", "wJalrXUtnFEMI"),
        ("bare wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in text", "wJalrXUtnFEMI"),
        ("gitlab glpat-AbCdEfGhIjKlMnOpQrSt", "AbCdEfGhIjKlMnOpQrSt"),
        ("stripe sk_live_51AbCdEfGhIjKlMnOp", "51AbCdEfGhIjKlMnOp"),
        ("stripe rk_live_51AbCdEfGhIjKlMnOp", "51AbCdEfGhIjKlMnOp"),
        ("stripe pk_live_51AbCdEfGhIjKlMnOp", "51AbCdEfGhIjKlMnOp"),
        ("npm npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
        ("slack xoxb-1234567890-abcdefghij", "1234567890-abcdefghij"),
        ("slack xapp-1-A0123456789-abcdef", "A0123456789-abcdef"),
        ("hook https://hooks.slack.com/services/T000/B000/XXXXXXXX", "T000/B000/XXXXXXXX"),
        ("google AIzaSyAbCdEfGhIjKlMnOpQrStUvWxYz0123456", "SyAbCdEfGhIjKlMnOpQrStUvWxYz0123456"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "dozjgNryP4J3jVmNHl0w5N",
        ),
        ("{\"api_key\": \"zzzzzzzz\"}", "zzzzzzzz"),
        ("postgres://app:pa55word@db:5432/x", "pa55word"),
        (r#"{\"password\": \"with space secret\"}"#, "space secret"),
    ];

    #[test]
    fn redacts_every_secret_shape() {
        for (case, secret) in SECRET_SHAPES {
            let r = redact(case);
            assert!(r.contains("[redacted"), "not redacted: {case:?} -> {r:?}");
            assert!(!r.contains(secret), "{secret:?} leaked: {case:?} -> {r:?}");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for text in [
            "nothing secret here: tokens are fun",
            "commit 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39 fixed the bug",
            "src/tasks/lifecycle.rs: 42 tests passed in 1.3 s",
            "The password field is now validated.",
        ] {
            assert_eq!(redact(text), text);
        }
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

    #[test]
    fn control_characters_are_escaped_and_names_folded() {
        assert_eq!(escape_controls("plain text"), "plain text");
        assert_eq!(escape_controls("a\x1b[2Jb\x07"), "a\\u{1b}[2Jb\\u{7}");
        assert_eq!(escape_controls("row\nforged\r\t"), "row\\nforged\\r\\t");
        assert_eq!(escape_controls("\u{9b}31m \u{202e}cba"), "\\u{9b}31m \\u{202e}cba");
        assert_eq!(escape_controls("émoji ✓"), "émoji ✓");
        assert_eq!(single_line("fix\nt9  running   forged\x1b[31m\x07"), "fix t9 running forged [31m");
        assert_eq!(single_line("  \n\t "), "");
    }
}
