//! Parsing of `claude -p --output-format stream-json` lines.
//!
//! Pure functions only: the reaper thread feeds raw lines in and gets typed
//! facts out. The CLI adds fields often, so everything is read leniently from
//! `serde_json::Value`: a missing or oddly typed field is simply absent, and a
//! line that is not JSON at all is kept as text by the caller. Failure is
//! judged later from `is_error` and the exit status, never from `subtype` (an
//! auth failure reports `subtype: "success"` with `is_error: true`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::text::{clip, redact};

/// The `result` line: the outcome the CLI reports for the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ResultInfo {
    pub(crate) is_error: bool,
    pub(crate) subtype: Option<String>,
    pub(crate) terminal_reason: Option<String>,
    pub(crate) result: Option<String>,
    pub(crate) total_cost_usd: Option<f64>,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) num_turns: Option<u64>,
    pub(crate) session_id: Option<String>,
    /// `errors` of an error result (`["Reached maximum budget ($0.01)"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<String>,
}

impl ResultInfo {
    /// The run stopped because it reached `--max-budget-usd`.
    pub(crate) fn budget_exhausted(&self) -> bool {
        self.subtype.as_deref() == Some("error_max_budget_usd")
            || self.terminal_reason.as_deref() == Some("budget_exhausted")
    }
}

/// One fact extracted from a line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StreamFact {
    /// `system/init`: the session id (for `--resume`) and the model.
    Init { session_id: Option<String>, model: Option<String> },
    /// An `assistant` tool_use block, described for humans ("editing src/a.rs").
    Activity(String),
    /// An `assistant` text block.
    Text(String),
    /// A `Write`, `Edit`, `MultiEdit` or `NotebookEdit` tool_use: the file it
    /// writes (as given: usually absolute).
    FileWritten(String),
    /// `system/api_retry`: the CLI is retrying an API call.
    ApiRetry(String),
    /// `rate_limit_event`: `rejected` means requests are refused until
    /// `resets_at` (unix seconds); `allowed_warning` means close to the limit.
    /// The CLI emits it for subscription logins (the unified limits); with an
    /// API key it printed none, even when the API stub sent the
    /// `anthropic-ratelimit-unified-*` headers, so only the parsing is tested.
    RateLimit { status: String, resets_at: Option<u64>, kind: Option<String> },
    /// The final `result` line.
    Result(ResultInfo),
}

/// What a line was.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ParsedLine {
    /// Valid JSON; zero or more facts (an assistant line may hold several blocks).
    Json(Vec<StreamFact>),
    /// Not JSON (stderr, a crash message, garbage): the caller keeps it as text.
    Text,
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Parses one line (without its newline).
pub(crate) fn parse_line(line: &[u8]) -> ParsedLine {
    let trimmed = line.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return ParsedLine::Text;
    }
    let v: Value = match serde_json::from_slice(trimmed) {
        Ok(v) => v,
        Err(_) => return ParsedLine::Text,
    };
    let mut facts = Vec::new();
    match v.get("type").and_then(Value::as_str) {
        Some("system") => match v.get("subtype").and_then(Value::as_str) {
            Some("init") => {
                facts.push(StreamFact::Init { session_id: str_of(&v, "session_id"), model: str_of(&v, "model") })
            }
            Some("api_retry") => {
                let attempt = v.get("attempt").and_then(Value::as_u64).unwrap_or(0);
                let error = v
                    .get("error")
                    .and_then(|e| e.as_str().map(str::to_owned).or_else(|| str_of(e, "message")))
                    .or_else(|| v.get("error_status").map(|s| s.to_string()))
                    .unwrap_or_else(|| "API error".into());
                facts.push(StreamFact::ApiRetry(format!("retrying API call (attempt {attempt}): {error}")));
            }
            _ => {}
        },
        Some("assistant") => {
            let blocks = v.pointer("/message/content").and_then(Value::as_array);
            for block in blocks.into_iter().flatten() {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str)
                            && !t.trim().is_empty()
                        {
                            facts.push(StreamFact::Text(t.to_owned()));
                        }
                    }
                    Some("tool_use") => {
                        let name = block.get("name").and_then(Value::as_str).unwrap_or("a tool");
                        let input = block.get("input").unwrap_or(&Value::Null);
                        facts.push(StreamFact::Activity(describe_tool_use(name, input)));
                        if let Some(path) = written_path(name, input) {
                            facts.push(StreamFact::FileWritten(path));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some("rate_limit_event") => {
            if let Some(info) = v.get("rate_limit_info")
                && let Some(status) = str_of(info, "status")
            {
                facts.push(StreamFact::RateLimit {
                    status,
                    resets_at: info.get("resetsAt").and_then(Value::as_u64),
                    kind: str_of(info, "rateLimitType"),
                });
            }
        }
        Some("result") => facts.push(StreamFact::Result(ResultInfo {
            is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            subtype: str_of(&v, "subtype"),
            terminal_reason: str_of(&v, "terminal_reason"),
            result: str_of(&v, "result"),
            total_cost_usd: v.get("total_cost_usd").and_then(Value::as_f64).filter(|c| c.is_finite()),
            duration_ms: v.get("duration_ms").and_then(Value::as_u64),
            num_turns: v.get("num_turns").and_then(Value::as_u64),
            session_id: str_of(&v, "session_id"),
            errors: v
                .get("errors")
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        })),
        _ => {}
    }
    ParsedLine::Json(facts)
}

/// "editing src/auth.rs", "running cargo test": what a tool call is doing.
pub(crate) fn describe_tool_use(name: &str, input: &Value) -> String {
    let field = |k: &str| input.get(k).and_then(Value::as_str).map(|s| clip(s, 80));
    let path =
        || field("file_path").or_else(|| field("notebook_path")).or_else(|| field("path")).map(|p| short_path(&p));
    let described = match name {
        "Edit" | "MultiEdit" | "NotebookEdit" => path().map(|p| format!("editing {p}")),
        "Write" => path().map(|p| format!("writing {p}")),
        "Read" => path().map(|p| format!("reading {p}")),
        "Bash" => field("command").map(|c| {
            let first_line = c.lines().next().unwrap_or("").to_string();
            format!("running {}", clip(&first_line, 60))
        }),
        "Grep" => field("pattern").map(|p| format!("searching for {p}")),
        "Glob" => field("pattern").map(|p| format!("looking for files {p}")),
        "WebFetch" => field("url").map(|u| format!("fetching {u}")),
        "WebSearch" => field("query").map(|q| format!("searching the web for {q}")),
        "Task" | "Agent" => field("description").map(|d| format!("delegating: {d}")),
        "TodoWrite" => Some("updating its plan".to_string()),
        _ => None,
    };
    let text = described.unwrap_or_else(|| format!("using {name}"));
    redact(&text)
}

/// The file a writing tool call writes, if `name` is one and names it.
pub(crate) fn written_path(name: &str, input: &Value) -> Option<String> {
    let key = match name {
        "Write" | "Edit" | "MultiEdit" => "file_path",
        "NotebookEdit" => "notebook_path",
        _ => return None,
    };
    input.get(key).and_then(Value::as_str).filter(|p| !p.trim().is_empty()).map(str::to_owned)
}

/// Keeps the last two components of a path: enough to say it, short to hear.
fn short_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() <= 2 { p.trim_start_matches("./").to_string() } else { parts[parts.len() - 2..].join("/") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(line: &str) -> Vec<StreamFact> {
        match parse_line(line.as_bytes()) {
            ParsedLine::Json(f) => f,
            ParsedLine::Text => panic!("not json: {line}"),
        }
    }

    #[test]
    fn init_gives_session_and_model() {
        let f = facts(r#"{"type":"system","subtype":"init","session_id":"abc","model":"claude-x","tools":[]}"#);
        assert_eq!(f, vec![StreamFact::Init { session_id: Some("abc".into()), model: Some("claude-x".into()) }]);
    }

    #[test]
    fn assistant_blocks_become_text_and_activity() {
        let f = facts(
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Let me look."},
            {"type":"tool_use","id":"t","name":"Edit","input":{"file_path":"/home/u/site/src/auth.rs"}},
            {"type":"tool_use","id":"u","name":"Bash","input":{"command":"cargo test --all\necho hi"}}]}}"#,
        );
        assert_eq!(
            f,
            vec![
                StreamFact::Text("Let me look.".into()),
                StreamFact::Activity("editing src/auth.rs".into()),
                StreamFact::FileWritten("/home/u/site/src/auth.rs".into()),
                StreamFact::Activity("running cargo test --all".into()),
            ]
        );
    }

    #[test]
    fn result_is_read_leniently() {
        let f = facts(
            r#"{"type":"result","subtype":"success","is_error":true,"result":"Not logged in · Please run /login",
            "total_cost_usd":0,"duration_ms":12,"num_turns":1,"session_id":"s","extra":{"new":"field"}}"#,
        );
        let StreamFact::Result(r) = &f[0] else { panic!("{f:?}") };
        assert!(r.is_error);
        assert_eq!(r.subtype.as_deref(), Some("success"));
        assert_eq!(r.result.as_deref(), Some("Not logged in · Please run /login"));
        assert_eq!((r.duration_ms, r.num_turns), (Some(12), Some(1)));
        let f = facts(r#"{"type":"result","is_error":"yes","total_cost_usd":"3"}"#);
        let StreamFact::Result(r) = &f[0] else { panic!() };
        assert!(!r.is_error, "a wrongly typed field is absent, not a panic");
        assert_eq!(r.total_cost_usd, None);
    }

    #[test]
    fn garbage_is_text_and_unknown_json_is_no_fact() {
        assert_eq!(parse_line(b"Error: something broke"), ParsedLine::Text);
        assert_eq!(parse_line(b"{not json"), ParsedLine::Text);
        assert_eq!(parse_line(&[0xff, 0xfe, b'{']), ParsedLine::Text);
        assert_eq!(parse_line(br#"{"type":"rate_limit_event"}"#), ParsedLine::Json(vec![]));
        assert_eq!(
            parse_line(br#"{"type":"rate_limit_event","rate_limit_info":{"status":7}}"#),
            ParsedLine::Json(vec![])
        );
        assert_eq!(parse_line(br#"{"type":"assistant","message":{"content":"str"}}"#), ParsedLine::Json(vec![]));
    }

    #[test]
    fn writing_tools_name_their_files() {
        let f = facts(
            r#"{"type":"assistant","message":{"content":[
            {"type":"tool_use","name":"Write","input":{"file_path":"/p/a.txt","content":"x"}},
            {"type":"tool_use","name":"MultiEdit","input":{"file_path":"/p/b.rs","edits":[]}},
            {"type":"tool_use","name":"NotebookEdit","input":{"notebook_path":"/p/n.ipynb"}},
            {"type":"tool_use","name":"Read","input":{"file_path":"/p/r.txt"}},
            {"type":"tool_use","name":"Edit","input":{"file_path":42}}]}}"#,
        );
        let written: Vec<&str> = f
            .iter()
            .filter_map(|f| match f {
                StreamFact::FileWritten(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(written, ["/p/a.txt", "/p/b.rs", "/p/n.ipynb"]);
    }

    #[test]
    fn rate_limit_events_are_read() {
        let f = facts(
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1765103400,
            "rateLimitType":"five_hour","isUsingOverage":false},"uuid":"u","session_id":"s"}"#,
        );
        assert_eq!(
            f,
            vec![StreamFact::RateLimit {
                status: "rejected".into(),
                resets_at: Some(1_765_103_400),
                kind: Some("five_hour".into())
            }]
        );
    }

    #[test]
    fn a_budget_stop_is_recognised() {
        // As printed by the CLI 2.1.329 run with --max-budget-usd 0.01 against the API stub.
        let f = facts(
            r#"{"type":"result","subtype":"error_max_budget_usd","is_error":true,"num_turns":1,
            "terminal_reason":"budget_exhausted","errors":["Reached maximum budget ($0.01)"],
            "total_cost_usd":0.054756,"permission_denials":[],"session_id":"s"}"#,
        );
        let StreamFact::Result(r) = &f[0] else { panic!("{f:?}") };
        assert!(r.budget_exhausted());
        assert_eq!(r.errors, ["Reached maximum budget ($0.01)"]);
        assert!(!ResultInfo { subtype: Some("success".into()), ..Default::default() }.budget_exhausted());
    }

    #[test]
    fn api_retry_is_reported() {
        let f = facts(r#"{"type":"system","subtype":"api_retry","attempt":2,"error":"overloaded"}"#);
        assert_eq!(f, vec![StreamFact::ApiRetry("retrying API call (attempt 2): overloaded".into())]);
    }

    #[test]
    fn activity_never_carries_a_secret() {
        let a = describe_tool_use(
            "Bash",
            &serde_json::json!({"command": "curl -H 'Authorization: Bearer sk-abcdefghijklmnopqrstuvwx' x"}),
        );
        assert!(!a.contains("sk-abcdefghijklmnop"), "{a}");
        assert_eq!(describe_tool_use("Frobnicate", &Value::Null), "using Frobnicate");
    }
}
