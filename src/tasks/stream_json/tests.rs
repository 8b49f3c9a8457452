//! The stream-json reader held to the `serde_json::Value` parse it replaced: on the real CLI's lines, on
//! lines built to tell the two apart, and on random mutations of both; and the facts of each kind of line.

use super::*;
use proptest::prelude::*;

/// Real lines of Claude Code 2.1.329 against the API stub (`tests/common/anthropic_stub.rs`): writing one and two
/// files, a Bash call refused by the permission mode, plain text, a budget stop, a Bash sleep, and no login.
const CORPUS: &str = include_str!("../../../tests/data/claude-2.1.329-stream.jsonl");

/// The parse as it was before the typed reader: the whole line as a `serde_json::Value`, read leniently.
fn reference(line: &[u8]) -> ParsedLine<'static> {
    let trimmed = line.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return ParsedLine::Text;
    }
    match serde_json::from_slice::<Value>(trimmed) {
        Ok(v) => ParsedLine::Json(value_facts(&v)),
        Err(_) => ParsedLine::Text,
    }
}

fn facts(line: &str) -> Vec<StreamFact<'_>> {
    match parse_line(line.as_bytes()) {
        ParsedLine::Json(f) => f,
        ParsedLine::Text => panic!("not json: {line}"),
    }
}

fn same_as_reference(line: &[u8]) {
    assert_eq!(parse_line(line), reference(line), "line: {}", String::from_utf8_lossy(line));
}

#[test]
fn real_cli_lines_read_as_before_and_without_the_fallback() {
    let lines: Vec<&str> = CORPUS.lines().collect();
    assert!(lines.len() >= 30, "{} lines", lines.len());
    let mut seen = std::collections::BTreeSet::new();
    for line in &lines {
        same_as_reference(line.as_bytes());
        // The typed structs take every real line (none needs the `Value` fallback).
        assert!(serde_json::from_str::<Line>(line).is_ok(), "typed parse refused: {line}");
        for f in facts(line) {
            seen.insert(match f {
                StreamFact::Init { .. } => "init",
                StreamFact::Activity(_) => "activity",
                StreamFact::Text(_) => "text",
                StreamFact::FileWritten(_) => "file",
                StreamFact::ApiRetry(_) => "retry",
                StreamFact::RateLimit { .. } => "rate",
                StreamFact::Result(_) => "result",
            });
        }
    }
    for kind in ["init", "activity", "text", "file", "result"] {
        assert!(seen.contains(kind), "the corpus yields no {kind} fact: {seen:?}");
    }
}

/// Lines built to tell a lenient typed parse from a `Value` parse.
const HOSTILE: &[&str] = &[
    // What a `Value` parse refuses in a field nobody reads (serde_json's `IgnoredAny` would accept them).
    r#"{"type":"assistant","x":"\ud800","message":{"content":[{"type":"text","text":"hi"}]}}"#,
    r#"{"type":"assistant","x":1e400,"message":{"content":[{"type":"text","text":"hi"}]}}"#,
    r#"{"type":"user","x":-1e999}"#,
    r#"{"type":"assistant","x":"\uZZZZ"}"#,
    r#"{"type":"assistant","x":"tab	inside"}"#,
    // Duplicate keys: the last wins.
    r#"{"type":"assistant","type":"user","message":{"content":[{"type":"text","text":"hi"}]}}"#,
    r#"{"type":"user","type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}}"#,
    r#"{"type":"assistant","message":{"content":[{"type":"text","text":"a","text":"b"}]}}"#,
    r#"{"type":5,"type":"result","result":"r"}"#,
    // Escaped type names and keys.
    r#"{"type":"\u0061ssistant","message":{"content":[{"type":"text","text":"hi"}]}}"#,
    r#"{"\u0074ype":"result","is_error":true}"#,
    r#"{"type":"assistant","message":{"content":[{"type":"text","text":"caf\u00e9 \"quoted\"\n"}]}}"#,
    // Oddly typed fields: absent, not a failure.
    r#"{"type":"result","is_error":"yes","total_cost_usd":"3","duration_ms":1.5,"num_turns":-2}"#,
    r#"{"type":"result","errors":["a",1,null,"b"],"session_id":7}"#,
    r#"{"type":"result","errors":"none","result":null,"subtype":null}"#,
    r#"{"type":"assistant","message":{"content":[{"type":"text","text":5},{"type":"tool_use","name":7}]}}"#,
    r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Edit","input":"x"}]}}"#,
    r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Edit","input":{"file_path":42}}]}}"#,
    r#"{"type":"assistant","message":{"content":"a string"}}"#,
    r#"{"type":"assistant","message":{"content":{"an":"object"}}}"#,
    r#"{"type":"assistant","message":"text"}"#,
    r#"{"type":"assistant","message":[1,2]}"#,
    r#"{"type":"assistant","message":{"content":[1,"two",null]}}"#,
    r#"{"type":"assistant","message":{"content":[{"type":"text","text":"   "}]}}"#,
    r#"{"type":"system","subtype":"init","session_id":null,"model":["m"]}"#,
    r#"{"type":"system","subtype":"api_retry","attempt":3,"error_status":529}"#,
    r#"{"type":"system","subtype":"api_retry","error":{"message":"overloaded"}}"#,
    r#"{"type":"system","subtype":"api_retry","error_status":null}"#,
    r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1.5}}"#,
    r#"{"type":"rate_limit_event","rate_limit_info":"x"}"#,
    r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":-1,"rateLimitType":null}}"#,
    // Not JSON, or not only JSON.
    r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}} trailing"#,
    r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}"#,
    r#"{"type":"assistant",}"#,
    r#"{"type":"user"} {"type":"user"}"#,
    "  {\"type\":\"result\"}  \t",
    "{}",
    "{",
    "not json at all",
    "",
    "null",
    "[1,2]",
];

#[test]
fn hostile_lines_read_as_before() {
    for line in HOSTILE {
        same_as_reference(line.as_bytes());
    }
    // Nesting: 127 levels in a field nobody reads are JSON, 128 are not (serde_json's limit), either way.
    for depth in [126, 127, 128, 200] {
        for marker in ["assistant", "user"] {
            let line = format!(r#"{{"type":"{marker}","x":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
            same_as_reference(line.as_bytes());
        }
    }
    // Invalid UTF-8 inside a string and outside one.
    same_as_reference(b"{\"type\":\"assistant\",\"x\":\"\xff\"}");
    same_as_reference(b"{\"type\":\"user\"\xfe}");
    same_as_reference(&[0xff, 0xfe, b'{']);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Mutations of real and hostile lines (a byte replaced, inserted or removed, the line cut, a snippet
    /// spliced in) parse as the `Value` reference parses them.
    #[test]
    fn mutated_lines_read_as_before(
        pick in 0usize..1000,
        at in 0usize..10_000,
        op in 0u8..5,
        byte in any::<u8>(),
        snippet in prop::sample::select(vec![
            "\"", "\\", "\\u", "\\ud800", "\\u0041", "1e400", "-", "null", "[", "]", "{", "}", ",", ":",
            "\"type\":\"assistant\",", "\"type\":\"result\",", "\"text\":5,", "\"message\":{},", "\u{e9}",
            "\"content\":\"s\",", "\"type\":\"tool_use\",\"name\":\"Write\",\"input\":{\"file_path\":\"/a\"},",
        ]),
    ) {
        let corpus: Vec<&str> = CORPUS.lines().chain(HOSTILE.iter().copied()).collect();
        let mut line = corpus[pick % corpus.len()].as_bytes().to_vec();
        let i = if line.is_empty() { 0 } else { at % (line.len() + 1) };
        match op {
            0 if i < line.len() => line[i] = byte,
            1 => line.insert(i, byte),
            2 if i < line.len() => { line.remove(i); }
            3 => line.truncate(i),
            _ => { line.splice(i..i, snippet.bytes()); }
        }
        prop_assert_eq!(parse_line(&line), reference(&line), "line: {}", String::from_utf8_lossy(&line));
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
fn text_borrows_from_the_line_unless_escaped() {
    let line =
        r#"{"type":"assistant","message":{"content":[{"type":"text","text":"plain"},{"type":"text","text":"a\nb"}]}}"#;
    let f = facts(line);
    assert!(matches!(&f[0], StreamFact::Text(Cow::Borrowed("plain"))), "{f:?}");
    assert!(matches!(&f[1], StreamFact::Text(Cow::Owned(t)) if t == "a\nb"), "{f:?}");
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
    assert_eq!(parse_line(br#"{"type":"rate_limit_event","rate_limit_info":{"status":7}}"#), ParsedLine::Json(vec![]));
    assert_eq!(parse_line(br#"{"type":"assistant","message":{"content":"str"}}"#), ParsedLine::Json(vec![]));
    assert_eq!(
        parse_line(br#"{"type":"user","message":{"content":[{"type":"tool_result"}]}}"#),
        ParsedLine::Json(vec![])
    );
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
            StreamFact::FileWritten(p) => Some(p.as_ref()),
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
    let input = serde_json::json!({"command": "curl -H 'Authorization: Bearer sk-abcdefghijklmnopqrstuvwx' x"});
    let a = describe_tool_use("Bash", |k| input.get(k).and_then(Value::as_str));
    assert!(!a.contains("sk-abcdefghijklmnop"), "{a}");
    assert_eq!(describe_tool_use("Frobnicate", |_| None), "using Frobnicate");
}
