//! The transcription client: one clip, one multipart POST to
//! `{api_base}/audio/transcriptions`, retried when retrying can help.
//!
//! Why it is shaped like this:
//! - **Blocking ureq on a worker thread**, never on the loop: an upload can take
//!   seconds on a slow link, and the loop must keep answering keys and tasks.
//! - **The multipart body is built by hand** ([`multipart_body`]): four small
//!   parts, a fixed boundary checked against the payload, no extra crate.
//! - **Retry policy as pure functions** ([`classify`], [`retry_delay`]): 429,
//!   408, 5xx and network errors are retried with backoff, honouring
//!   `Retry-After` (seconds, capped); 4xx such as 401 are final at once, since
//!   sending the same clip with the same key cannot succeed. A final failure
//!   carries a message for the journal and `ptt status`; the caller keeps the
//!   clip on disk, so nothing said is lost.
//! - **Two request shapes, chosen by model** ([`form_fields`]): `gpt-transcribe` and
//!   `gpt-live-transcribe` get the vocabulary as `keywords[]` (one part per word; a word with a line break,
//!   `<` or `>` makes the API reject the *whole* request, so such words are skipped with one warning), the
//!   recent dictations as `prompt`, and the languages as `languages[]` (never together with `language`,
//!   which those models refuse). Older models (`whisper-1`, `gpt-4o*-transcribe`, until they shut down on
//!   2027-02-26) get the vocabulary and recent text as one `prompt` and a single `language`. Both ask for
//!   `response_format=json`, and [`parse_answer`] reads `languages` (possibly empty) and both `usage`
//!   shapes (`tokens` and `duration`).
//! - **No secret in any message**: the key is only ever in the Authorization
//!   header; error bodies from the server pass through `redact` before they are
//!   logged.

use std::time::{Duration, Instant};

use crate::config::DictateConfig;

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub(crate) wav: &'a [u8],
    pub(crate) model: &'a str,
    pub(crate) hints: &'a Hints,
}

/// What steers a transcription: the vocabulary, the recent dictations and the expected languages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Hints {
    /// The vocabulary, one word or phrase each.
    pub(crate) words: Vec<String>,
    /// Recent dictations, oldest first.
    pub(crate) recent: Vec<String>,
    /// ISO-639-1 codes; empty lets the model detect the language.
    pub(crate) languages: Vec<String>,
}

impl Hints {
    /// The one-string prompt of the older models: vocabulary, then recent text, bounded.
    pub(crate) fn legacy_prompt(&self) -> Option<String> {
        super::vocabulary::prompt(&self.words, &self.recent.iter().cloned().collect())
    }

    /// The vocabulary alone, for the local model: whisper.cpp given its own previous transcript as the
    /// initial prompt repeats it ("Send the report on Friday." fourteen times when the same sentence was
    /// dictated twice), so recent text stays out of a local prompt.
    pub(crate) fn vocabulary_prompt(&self) -> Option<String> {
        super::vocabulary::prompt(&self.words, &std::collections::VecDeque::new())
    }

    /// The recent dictations as context text (bounded, latest kept), for `gpt-transcribe`'s `prompt`.
    pub(crate) fn context_prompt(&self) -> Option<String> {
        super::vocabulary::prompt(&[], &self.recent.iter().cloned().collect())
    }
}

/// A keyword `gpt-transcribe` accepts: one line, no `<` or `>`, not blank.
pub(crate) fn valid_keyword(word: &str) -> bool {
    !word.trim().is_empty() && !word.contains(['<', '>', '\r', '\n'])
}

/// The form fields (before the file) for `req`, in order; repeated names (`keywords[]`) are repeated
/// parts. Also returns the vocabulary words that were skipped as invalid keywords.
pub(crate) fn form_fields(req: &Request) -> (Vec<(&'static str, String)>, Vec<String>) {
    let mut fields = vec![("model", req.model.to_owned()), ("response_format", "json".to_owned())];
    let mut skipped = Vec::new();
    let languages: Vec<String> =
        req.hints.languages.iter().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
    if crate::models::is_keyword_transcriber(req.model) {
        if let Some(p) = req.hints.context_prompt() {
            fields.push(("prompt", p));
        }
        for w in &req.hints.words {
            if valid_keyword(w) {
                fields.push(("keywords[]", w.trim().to_owned()));
            } else {
                skipped.push(w.clone());
            }
        }
        for l in languages {
            fields.push(("languages[]", l));
        }
    } else {
        if let Some(p) = req.hints.legacy_prompt().filter(|p| !p.trim().is_empty()) {
            fields.push(("prompt", p));
        }
        // The older models take one language; with several, let them detect it.
        if let [only] = languages.as_slice() {
            fields.push(("language", only.clone()));
        }
    }
    (fields, skipped)
}

/// Where and how to send it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `{api_base}` without the trailing `/audio/transcriptions`.
    pub(crate) api_base: String,
    pub(crate) key: String,
    /// For one attempt, answer included.
    pub(crate) timeout: Duration,
    /// Further attempts after a retryable failure.
    pub(crate) retries: u32,
}

impl Endpoint {
    /// Where and how clips are sent for `[dictate]`, with this key.
    pub(crate) fn new(cfg: &DictateConfig, key: String) -> Endpoint {
        Endpoint {
            api_base: cfg.api_base.clone(),
            key,
            timeout: Duration::from_secs_f64(cfg.timeout_s),
            retries: cfg.retries,
        }
    }
}

/// A transcription that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) message: String,
    /// The last HTTP status, if the server answered.
    pub(crate) status: Option<u16>,
    pub(crate) attempts: u32,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

/// What a status code means for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Success,
    /// Worth another try (rate limit, timeout, server trouble).
    Retry,
    /// The same request cannot succeed (bad key, bad model, bad audio).
    Final,
}

pub(crate) fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Success,
        408 | 409 | 429 | 500..=599 => Class::Retry,
        _ => Class::Final,
    }
}

/// The longest wait a `Retry-After` may impose; a longer one is cut to this.
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// How long to wait before attempt `attempt + 1` (`attempt` counts from 1):
/// the server's `Retry-After` seconds when it gives them, else 0.5 s doubling
/// to 8 s.
pub(crate) fn retry_delay(attempt: u32, retry_after: Option<&str>) -> Duration {
    if let Some(secs) = retry_after.and_then(|v| v.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0) {
        return Duration::from_secs_f64(secs).min(RETRY_AFTER_MAX);
    }
    let step = Duration::from_millis(500) * 2u32.saturating_pow(attempt.saturating_sub(1).min(4));
    step.min(Duration::from_secs(8))
}

/// A boundary that does not occur in the payload.
fn boundary_for(wav: &[u8], fields: &[(&str, String)]) -> String {
    let mut n = 0u32;
    loop {
        let b = format!("ptt-boundary-{:016x}{n}", 0x5eed_u64.wrapping_mul(u64::from(n) + 0x9e37_79b9));
        let needle = b.as_bytes();
        let clash = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        if !clash(wav) && !fields.iter().any(|(_, v)| clash(v.as_bytes())) {
            return b;
        }
        n += 1;
    }
}

/// The multipart/form-data body and its boundary. Invalid keywords are skipped with one warning.
pub(crate) fn multipart_body(req: &Request) -> (String, Vec<u8>) {
    let (fields, skipped) = form_fields(req);
    if !skipped.is_empty() {
        log::warn!(
            "dictation: {} vocabulary entr{} skipped as keywords (a keyword must be one line without < or >): {}",
            skipped.len(),
            if skipped.len() == 1 { "y" } else { "ies" },
            skipped
                .iter()
                .map(|w| format!("{:?}", w.chars().take(40).collect::<String>()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let boundary = boundary_for(req.wav, &fields);
    let mut body = Vec::with_capacity(req.wav.len() + 1024);
    for (name, value) in &fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.wav\"\r\n\
             Content-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(req.wav);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

/// A successful transcription.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transcript {
    pub(crate) text: String,
    /// Detected languages (`gpt-transcribe`); empty when the model made no reliable guess or does not say.
    pub(crate) languages: Vec<String>,
    pub(crate) usage: Option<Usage>,
}

/// `usage` of a transcription: token counts (`gpt-4o*-transcribe`, `gpt-transcribe`) or seconds of audio
/// (`whisper-1`). Which one `gpt-transcribe` reports is unconfirmed, so both are read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Usage {
    Tokens { input: u64, output: u64, total: u64 },
    Duration { seconds: f64 },
}

/// Reads a successful answer: `{"text", "languages"?: [{"code"}], "usage"?}`.
pub(crate) fn parse_answer(body: &str) -> Result<Transcript, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the transcription answer is not JSON ({e})"))?;
    let text = v
        .get("text")
        .and_then(|t| t.as_str())
        .map(|t| t.trim().to_string())
        .ok_or_else(|| "the transcription answer has no \"text\"".to_string())?;
    let languages = v
        .get("languages")
        .and_then(|l| l.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|l| l.get("code").and_then(|c| c.as_str()).or_else(|| l.as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let usage = v.get("usage").and_then(|u| {
        let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        match u.get("type").and_then(|t| t.as_str()) {
            Some("tokens") => {
                Some(Usage::Tokens { input: n("input_tokens"), output: n("output_tokens"), total: n("total_tokens") })
            }
            Some("duration") => {
                u.get("seconds").and_then(serde_json::Value::as_f64).map(|seconds| Usage::Duration { seconds })
            }
            _ => None,
        }
    });
    Ok(Transcript { text, languages, usage })
}

/// A one-line description of an error answer, from OpenAI's `{"error": {"message"}}` when present.
pub(crate) fn describe_error(status: u16, body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    let message = crate::text::redact(message.trim());
    let what = match status {
        401 => "the transcription API refused the key (HTTP 401)".to_string(),
        403 => "the transcription API denied access (HTTP 403)".to_string(),
        404 => "the transcription endpoint or model was not found (HTTP 404)".to_string(),
        413 => "the clip is too large for the transcription API (HTTP 413)".to_string(),
        429 => "the transcription API is rate limiting (HTTP 429)".to_string(),
        s => format!("the transcription API answered HTTP {s}"),
    };
    if message.is_empty() { what } else { format!("{what}: {message}") }
}

/// The outcome of one attempt.
enum Attempt {
    Text(Transcript),
    Retry { message: String, status: Option<u16>, retry_after: Option<String> },
    Final { message: String, status: Option<u16> },
}

/// Sends the clip, retrying as [`classify`] says; blocks (run it off the loop).
pub(crate) fn transcribe(endpoint: &Endpoint, req: &Request) -> Result<Transcript, Failure> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(endpoint.timeout))
        .http_status_as_error(false)
        .user_agent(concat!("ptt/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let url = format!("{}/audio/transcriptions", endpoint.api_base.trim_end_matches('/'));
    let (boundary, body) = multipart_body(req);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = Instant::now();
        let outcome = send_once(&agent, &url, &endpoint.key, &boundary, &body);
        match outcome {
            Attempt::Text(t) => {
                log::debug!(
                    "transcribed in {} ms (attempt {attempt}); languages {:?}, usage {:?}",
                    started.elapsed().as_millis(),
                    t.languages,
                    t.usage
                );
                return Ok(t);
            }
            Attempt::Final { message, status } => return Err(Failure { message, status, attempts: attempt }),
            Attempt::Retry { message, status, retry_after } => {
                if attempt > endpoint.retries {
                    return Err(Failure { message, status, attempts: attempt });
                }
                let wait = retry_delay(attempt, retry_after.as_deref());
                log::warn!("dictation: {message}; retrying in {:.1} s", wait.as_secs_f64());
                std::thread::sleep(wait);
            }
        }
    }
}

fn send_once(agent: &ureq::Agent, url: &str, key: &str, boundary: &str, body: &[u8]) -> Attempt {
    let response = agent
        .post(url)
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .send(body);
    let mut response = match response {
        Ok(r) => r,
        Err(e) => {
            let message = format!("cannot reach the transcription API: {}", crate::text::redact(&e.to_string()));
            return Attempt::Retry { message, status: None, retry_after: None };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = match response.body_mut().with_config().limit(1 << 20).read_to_string() {
        Ok(t) => t,
        Err(e) => {
            let message = format!("the transcription answer was cut off: {e}");
            return Attempt::Retry { message, status: Some(status), retry_after };
        }
    };
    match classify(status) {
        Class::Success => match parse_answer(&text) {
            Ok(t) => Attempt::Text(t),
            Err(message) => Attempt::Final { message, status: Some(status) },
        },
        Class::Retry => Attempt::Retry { message: describe_error(status, &text), status: Some(status), retry_after },
        Class::Final => Attempt::Final { message: describe_error(status, &text), status: Some(status) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(words: &[&str], recent: &[&str], languages: &[&str]) -> Hints {
        let v = |s: &[&str]| s.iter().map(|w| (*w).to_owned()).collect();
        Hints { words: v(words), recent: v(recent), languages: v(languages) }
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200), Class::Success);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify(s), Class::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 413, 415] {
            assert_eq!(classify(s), Class::Final, "{s}");
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert_eq!(retry_delay(1, Some("2")), Duration::from_secs(2));
        assert_eq!(retry_delay(1, Some(" 0.25 ")), Duration::from_millis(250));
        assert_eq!(retry_delay(1, Some("3600")), RETRY_AFTER_MAX);
        // An HTTP date or garbage falls back to the backoff.
        assert_eq!(retry_delay(1, Some("Wed, 21 Oct 2015 07:28:00 GMT")), Duration::from_millis(500));
        assert_eq!(retry_delay(1, None), Duration::from_millis(500));
        assert_eq!(retry_delay(2, None), Duration::from_secs(1));
        assert_eq!(retry_delay(3, None), Duration::from_secs(2));
        assert_eq!(retry_delay(30, None), Duration::from_secs(8));
        assert_eq!(retry_delay(1, Some("-1")), Duration::from_millis(500));
    }

    #[test]
    fn legacy_models_get_one_prompt_and_one_language() {
        let wav = crate::dictate::wav::encode(&[1, 2, 3], 24_000);
        let h = hints(&["Kubernetes", "ptt"], &["Last one."], &["en"]);
        let (b, body) = multipart_body(&Request { wav: &wav, model: "gpt-4o-mini-transcribe", hints: &h });
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-mini-transcribe\r\n"
        )));
        assert!(text.contains("name=\"response_format\"\r\n\r\njson\r\n"));
        assert!(text.contains("name=\"prompt\"\r\n\r\nKubernetes, ptt. Last one.\r\n"));
        assert!(text.contains("name=\"language\"\r\n\r\nen\r\n"));
        assert!(!text.contains("keywords[]") && !text.contains("languages[]"));
        assert!(text.contains("name=\"file\"; filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF"));
        assert!(text.ends_with(&format!("\r\n--{b}--\r\n")));
        let start = body.windows(4).position(|w| w == b"RIFF").expect("wav");
        assert_eq!(&body[start..start + wav.len()], &wav[..], "the file part is the WAV, byte for byte");
        // No empty prompt or language part; two languages are left to detection.
        let h = hints(&[], &[], &["en", "de"]);
        let (_, body) = multipart_body(&Request { wav: &wav, model: "whisper-1", hints: &h });
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("name=\"prompt\"") && !text.contains("name=\"language\""));
    }

    #[test]
    fn gpt_transcribe_gets_keywords_languages_and_recent_text() {
        let h = hints(&["Kubernetes", "bad<tag>", "two\nlines", "PostgreSQL"], &["First.", "Second."], &["en", "fr"]);
        let (fields, skipped) = form_fields(&Request { wav: b"", model: "gpt-transcribe", hints: &h });
        let got: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("model", "gpt-transcribe"),
                ("response_format", "json"),
                ("prompt", "First. Second."),
                ("keywords[]", "Kubernetes"),
                ("keywords[]", "PostgreSQL"),
                ("languages[]", "en"),
                ("languages[]", "fr"),
            ]
        );
        assert_eq!(skipped, ["bad<tag>", "two\nlines"]);
        assert!(!got.iter().any(|(k, _)| *k == "language"), "never language next to languages[]");
        // The body carries the repeated parts.
        let (_, body) = multipart_body(&Request { wav: b"RIFF", model: "gpt-transcribe", hints: &h });
        let text = String::from_utf8_lossy(&body);
        assert_eq!(text.matches("name=\"keywords[]\"").count(), 2);
        assert!(!text.contains("bad<tag>"));
    }

    #[test]
    fn boundary_never_occurs_in_the_payload() {
        let wav = crate::dictate::wav::encode(&[0; 10], 24_000);
        let h = hints(&[], &[], &["en"]);
        let (first, _) = multipart_body(&Request { wav: &wav, model: "gpt-4o-mini-transcribe", hints: &h });
        // A prompt that contains the first choice forces another one.
        let h = hints(&[], &[&first], &["en"]);
        let (second, body) = multipart_body(&Request { wav: &wav, model: "gpt-4o-mini-transcribe", hints: &h });
        assert_ne!(first, second);
        let count = String::from_utf8_lossy(&body).matches(&format!("--{second}")).count();
        assert_eq!(count, 6, "5 delimiters + the closing one");
    }

    #[test]
    fn answers_and_errors_are_read() {
        let t = parse_answer(r#"{"text":" hello world ","usage":{"type":"tokens","input_tokens":14,"output_tokens":3,"total_tokens":17}}"#)
            .expect("answer");
        assert_eq!(t.text, "hello world");
        assert_eq!(t.usage, Some(Usage::Tokens { input: 14, output: 3, total: 17 }));
        assert!(t.languages.is_empty());
        let t =
            parse_answer(r#"{"text":"Bonjour","languages":[{"code":"fr"}],"usage":{"type":"duration","seconds":2.5}}"#)
                .expect("answer");
        assert_eq!((t.languages, t.usage), (vec!["fr".to_string()], Some(Usage::Duration { seconds: 2.5 })));
        let t = parse_answer(r#"{"text":"x","languages":[],"usage":null}"#).expect("empty languages are fine");
        assert_eq!((t.languages.len(), t.usage), (0, None));
        assert!(parse_answer("<html>").unwrap_err().contains("not JSON"));
        assert!(parse_answer("{}").unwrap_err().contains("no \"text\""));
        let e = describe_error(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz123456","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        );
        assert!(e.starts_with("the transcription API refused the key (HTTP 401): Incorrect API key"), "{e}");
        assert!(!e.contains("abcdefghijklmnop"), "a key in the answer is redacted: {e}");
        assert_eq!(describe_error(502, ""), "the transcription API answered HTTP 502");
    }
}
