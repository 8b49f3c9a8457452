//! The model lifecycle check: `GET {api_base}/models/{model}` for each configured model.
//!
//! Why ask the API when [`super::RETIRED`] already lists the known shutdowns: the table only knows what was
//! announced when this build was made. The Model object carries an optional `shutdown_date`
//! (`YYYY-MM-DD` or `null`, added to the spec in August 2026), and a model that is gone answers 404 with
//! `model_not_found`. Asking at daemon start (then once a day) and in `ptt doctor` turns a future outage
//! into a dated warning.
//!
//! Shape: [`interpret`] is pure (status + body + today → [`Outcome`]); [`check_one`] does one blocking
//! ureq GET; [`spawn`] runs every check on a short-lived thread of its own and sends the results to the
//! loop, which keeps the daily deadline (timers are data). A failed check (no network, 5xx, 401) is
//! reported as `Unknown` and never blocks anything: the check only informs.

use std::time::Duration;

use crossbeam_channel::Sender;

use super::{Date, replacement_for};

/// A shutdown this close (or closer) is a warning.
pub(crate) const WARN_WITHIN_DAYS: i64 = 30;
/// How long one request may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// What to check: a config key, the model it names, and the API base it is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) key: &'static str,
    pub(crate) model: String,
    pub(crate) api_base: String,
}

/// What the API said about one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Served, no shutdown announced (or one more than [`WARN_WITHIN_DAYS`] away).
    Current { shutdown: Option<Date> },
    /// Served, but shuts down within [`WARN_WITHIN_DAYS`] days (or already past its date).
    ShutdownSoon { shutdown: Date, days: i64 },
    /// 404 / `model_not_found`: the model is gone (or the key cannot see it).
    NotFound { message: String },
    /// The check could not tell (network, 401, 5xx, an answer that is not a Model object).
    Unknown { reason: String },
}

/// One model's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) key: &'static str,
    pub(crate) model: String,
    pub(crate) outcome: Outcome,
}

impl Report {
    /// The warning or error line for the journal, `ptt status` and `ptt doctor`; `None` when all is well
    /// or the check could not tell.
    pub(crate) fn problem(&self) -> Option<String> {
        let (key, model) = (self.key, &self.model);
        match &self.outcome {
            Outcome::Current { .. } | Outcome::Unknown { .. } => None,
            Outcome::ShutdownSoon { shutdown, days } if *days < 0 => Some(format!(
                "{key} = \"{model}\": OpenAI lists its shutdown date as {shutdown}; set {key} = \"{}\"",
                replacement_for(key, model)
            )),
            Outcome::ShutdownSoon { shutdown, days } => Some(format!(
                "{key} = \"{model}\" shuts down on {shutdown} (in {days} days); set {key} = \"{}\"",
                replacement_for(key, model)
            )),
            Outcome::NotFound { message } => Some(format!(
                "{key} = \"{model}\" is not available from the API ({message}); set {key} = \"{}\"",
                replacement_for(key, model)
            )),
        }
    }

    /// Whether this is an error (the model is gone) rather than a warning.
    pub(crate) fn is_error(&self) -> bool {
        matches!(self.outcome, Outcome::NotFound { .. })
    }

    /// A short status word for JSON output.
    pub(crate) fn state(&self) -> &'static str {
        match self.outcome {
            Outcome::Current { .. } => "current",
            Outcome::ShutdownSoon { .. } => "shutdown_soon",
            Outcome::NotFound { .. } => "not_found",
            Outcome::Unknown { .. } => "unknown",
        }
    }
}

/// Reads one answer of `GET /models/{model}`.
pub(crate) fn interpret(status: u16, body: &str, today: Date) -> Outcome {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let code = json.as_ref().and_then(|v| v.pointer("/error/code")).and_then(|c| c.as_str()).unwrap_or("");
    let message = json
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(|m| m.as_str())
        .map(|m| crate::text::redact(m.trim()))
        .unwrap_or_default();
    if status == 404 || code == "model_not_found" {
        let what = if code.is_empty() { format!("HTTP {status}") } else { code.to_owned() };
        let message = if message.is_empty() { what } else { format!("{what}: {message}") };
        return Outcome::NotFound { message };
    }
    if !(200..300).contains(&status) {
        let reason = if message.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {message}") };
        return Outcome::Unknown { reason };
    }
    let Some(obj) = json.as_ref().and_then(|v| v.as_object()) else {
        return Outcome::Unknown { reason: "the answer is not a JSON object".into() };
    };
    if obj.get("id").and_then(|i| i.as_str()).is_none() {
        return Outcome::Unknown { reason: "the answer is not a Model object (no id)".into() };
    }
    // Optional, `YYYY-MM-DD` or null; anything unreadable counts as "not announced".
    let shutdown = obj.get("shutdown_date").and_then(|d| d.as_str()).and_then(Date::parse);
    match shutdown {
        Some(date) => {
            let days = today.days_until(date);
            if days <= WARN_WITHIN_DAYS {
                Outcome::ShutdownSoon { shutdown: date, days }
            } else {
                Outcome::Current { shutdown: Some(date) }
            }
        }
        None => Outcome::Current { shutdown: None },
    }
}

/// `{api_base}/models/{model}` (the model id is path-escaped).
pub(crate) fn url(api_base: &str, model: &str) -> String {
    let mut escaped = String::with_capacity(model.len());
    for b in model.trim().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/models/{escaped}", api_base.trim_end_matches('/'))
}

/// One blocking GET (run it off the loop).
pub(crate) fn check_one(target: &Target, key: &str, today: Date) -> Report {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("ptt/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let outcome = match agent
        .get(&url(&target.api_base, &target.model))
        .header("Authorization", format!("Bearer {key}"))
        .call()
    {
        Ok(mut response) => {
            let status = response.status().as_u16();
            match response.body_mut().with_config().limit(1 << 20).read_to_string() {
                Ok(body) => interpret(status, &body, today),
                Err(e) => Outcome::Unknown { reason: format!("the answer was cut off: {e}") },
            }
        }
        Err(e) => Outcome::Unknown {
            reason: format!("cannot reach {}: {}", target.api_base, crate::text::redact(&e.to_string())),
        },
    };
    Report { key: target.key, model: target.model.clone(), outcome }
}

/// Checks every target in turn (blocking).
pub(crate) fn check_all(targets: &[Target], key: &str, today: Date) -> Vec<Report> {
    targets.iter().map(|t| check_one(t, key, today)).collect()
}

/// Runs [`check_all`] on a thread named `model-check` and sends the reports (once). The key never leaves
/// this thread except in the Authorization header.
pub(crate) fn spawn(targets: Vec<Target>, key: String, today: Date, tx: Sender<Vec<Report>>) -> std::io::Result<()> {
    std::thread::Builder::new().name("model-check".into()).spawn(move || {
        let reports = check_all(&targets, &key, today);
        let _ = tx.send(reports);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Date = Date::new(2026, 12, 21);

    #[test]
    fn shutdown_dates_within_thirty_days_warn() {
        let body =
            r#"{"id":"gpt-realtime","object":"model","created":1,"owned_by":"system","shutdown_date":"2027-01-20"}"#;
        assert_eq!(interpret(200, body, TODAY), Outcome::ShutdownSoon { shutdown: Date::new(2027, 1, 20), days: 30 });
        assert_eq!(
            interpret(200, body, Date::new(2026, 12, 20)),
            Outcome::Current { shutdown: Some(Date::new(2027, 1, 20)) }
        );
        let r = Report { key: "live.model", model: "gpt-realtime".into(), outcome: interpret(200, body, TODAY) };
        let p = r.problem().expect("warning");
        assert!(p.contains("2027-01-20") && p.contains("in 30 days") && p.contains("gpt-realtime-2.1"), "{p}");
        assert!(!r.is_error());
    }

    #[test]
    fn null_missing_or_odd_shutdown_dates_are_current() {
        for body in [
            r#"{"id":"m","object":"model","shutdown_date":null}"#,
            r#"{"id":"m","object":"model"}"#,
            r#"{"id":"m","shutdown_date":"soon"}"#,
            r#"{"id":"m","shutdown_date":20270120}"#,
        ] {
            assert_eq!(interpret(200, body, TODAY), Outcome::Current { shutdown: None }, "{body}");
        }
    }

    #[test]
    fn not_found_is_an_error_naming_the_replacement() {
        let body = r#"{"error":{"message":"The model 'gpt-realtime' does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;
        let o = interpret(404, body, TODAY);
        assert!(
            matches!(&o, Outcome::NotFound { message } if message.starts_with("model_not_found: The model")),
            "{o:?}"
        );
        let r = Report { key: "live.model", model: "gpt-realtime".into(), outcome: o };
        assert!(r.is_error());
        assert!(r.problem().expect("error").contains("set live.model = \"gpt-realtime-2.1\""));
        // The code alone (a 400 from some proxy) counts too; a bare 404 too.
        assert!(matches!(interpret(400, body, TODAY), Outcome::NotFound { .. }));
        assert!(matches!(interpret(404, "", TODAY), Outcome::NotFound { message } if message == "HTTP 404"));
    }

    #[test]
    fn other_answers_are_unknown_and_quiet() {
        for (status, body) in
            [(401, r#"{"error":{"code":"invalid_api_key","message":"no"}}"#), (500, ""), (200, "[]"), (200, "{}")]
        {
            let o = interpret(status, body, TODAY);
            assert!(matches!(o, Outcome::Unknown { .. }), "{status} {body}: {o:?}");
            assert_eq!(Report { key: "dictate.model", model: "m".into(), outcome: o }.problem(), None);
        }
    }

    #[test]
    fn urls_escape_the_model() {
        assert_eq!(
            url("https://api.openai.com/v1/", "gpt-realtime-2.1"),
            "https://api.openai.com/v1/models/gpt-realtime-2.1"
        );
        assert_eq!(url("http://h/v1", "a/b c"), "http://h/v1/models/a%2Fb%20c");
    }

    #[test]
    fn check_against_a_local_server() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).expect("read");
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = r#"{"id":"gpt-transcribe","object":"model","shutdown_date":"2027-01-01"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            head
        });
        let target =
            Target { key: "dictate.model", model: "gpt-transcribe".into(), api_base: format!("http://{addr}/v1") };
        let r = check_one(&target, "sk-test", TODAY);
        let head = server.join().expect("server");
        assert!(head.starts_with("GET /v1/models/gpt-transcribe HTTP/1.1"), "{head}");
        assert!(head.to_ascii_lowercase().contains("authorization: bearer sk-test"), "{head}");
        assert_eq!(r.outcome, Outcome::ShutdownSoon { shutdown: Date::new(2027, 1, 1), days: 11 });
    }
}
