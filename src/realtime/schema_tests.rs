//! Every client event `ptt` can produce validates against the official GA schema.
//!
//! Why a schema test on top of the shape tests: the live server rejects anything off-spec with an `error`
//! event that is easy to miss in a log, and a beta-shaped `session.update` gets the whole session refused.
//! The bundle in `tests/data/` was extracted from openai/openai-openapi (JSON Schema 2020-12, 109 `$defs`,
//! no root schema: the roots are `$defs/RealtimeClientEvent` and `$defs/RealtimeServerEvent`, both `anyOf`).
//! Each event is validated against the client union *and* against its own `$defs` entry (named in
//! `realtime-ga-event-types.json`), so an event cannot pass by matching another event's branch.
//!
//! Caveat recorded here because it matters for reviewers: the spec's objects do not forbid extra
//! properties, so the schema alone cannot catch a beta field added *next to* GA ones; `config.rs` tests that
//! no beta field name is ever serialised.

use crate::realtime::events::{ClientEvent, Modality, ResponseParams};
use crate::realtime::session::{Output, Session, SessionConfig, Turn};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn load(name: &str) -> Value {
    let path = format!("{DATA}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A validator for one `$defs` entry of the bundle.
fn validator_for_def(bundle: &Value, def: &str) -> jsonschema::Validator {
    let mut root = bundle.clone();
    assert!(root["$defs"].get(def).is_some(), "no $defs/{def}");
    root["$ref"] = json!(format!("#/$defs/{def}"));
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("schema {def}: {e}"))
}

struct Schemas {
    union: jsonschema::Validator,
    per_type: BTreeMap<String, jsonschema::Validator>,
}

impl Schemas {
    fn load() -> Self {
        let bundle = load("realtime-ga-events.schema.json");
        assert_eq!(bundle["$schema"], "https://json-schema.org/draft/2020-12/schema");
        let types = load("realtime-ga-event-types.json");
        let per_type = types
            .as_object()
            .expect("type map")
            .iter()
            .filter_map(|(ty, def)| {
                let def = def.as_str()?;
                def.starts_with("RealtimeClientEvent").then(|| (ty.clone(), validator_for_def(&bundle, def)))
            })
            .collect();
        Schemas { union: validator_for_def(&bundle, "RealtimeClientEvent"), per_type }
    }

    fn errors(&self, ev: &Value) -> Vec<String> {
        let mut errs: Vec<String> = self.union.iter_errors(ev).map(|e| e.to_string()).collect();
        match ev["type"].as_str().and_then(|t| self.per_type.get(t)) {
            Some(v) => errs.extend(v.iter_errors(ev).map(|e| format!("{}: {e}", e.instance_path()))),
            None => errs.push(format!("not a GA client event type: {}", ev["type"])),
        }
        errs
    }
}

fn collect(out: Vec<Output>, into: &mut Vec<ClientEvent>) {
    into.extend(out.into_iter().filter_map(|o| match o {
        Output::Send(e) => Some(e),
        _ => None,
    }));
}

fn frame(v: Value) -> crate::realtime::events::ServerEvent {
    crate::realtime::events::ServerEvent::parse(&v.to_string()).expect("frame")
}

/// Drives the machine through every path that sends something, in each configuration.
fn everything_the_machine_sends() -> Vec<ClientEvent> {
    let mut sent = Vec::new();
    let configs = [
        SessionConfig::default(),
        SessionConfig { turn: Turn::Ptt, ..SessionConfig::default() },
        SessionConfig { text_mode: true, turn: Turn::Ptt, transcription_model: None, ..SessionConfig::default() },
        SessionConfig { text_mode: true, turn: Turn::Vad, ..SessionConfig::default() },
        SessionConfig { turn: Turn::SemanticVad { eagerness: "low" }, ..SessionConfig::default() },
        SessionConfig { model: "gpt-realtime".into(), retention_ratio: 0.0, ..SessionConfig::default() },
    ];
    for cfg in configs {
        let t = Instant::now();
        let mut s = Session::new(cfg);
        s.set_task_table("t1  auth refactor  running  2m  editing src/auth.rs", t);
        s.on_connected(t, 1_800_000_000);
        collect(
            s.on_server_event(
                frame(json!({"type":"session.created","session":{"id":"s1","expires_at":1_800_003_600}})),
                t,
            ),
            &mut sent,
        );
        sent.extend(s.append_audio(&[0, 1, -1, i16::MAX, i16::MIN]));
        collect(s.set_task_table("t1 auth refactor done", t + Duration::from_secs(3)), &mut sent);
        collect(s.send_user_text("start a task \"quoted\" ünïcode", t), &mut sent);
        collect(s.on_server_event(frame(json!({"type":"response.created","response":{"id":"r1"}})), t), &mut sent);
        collect(
            s.on_server_event(
                frame(json!({"type":"response.function_call_arguments.done","call_id":"call_1",
                    "name":"start_task","arguments":"{\"task\":\"x\",\"name\":\"y\"}"})),
                t,
            ),
            &mut sent,
        );
        collect(s.on_tool_result("call_1", r#"{"status":"started","task_id":"t7","name":"y"}"#, t), &mut sent);
        collect(
            s.on_server_event(frame(json!({"type":"response.output_audio.delta","item_id":"a1","delta":"AAA="})), t),
            &mut sent,
        );
        collect(s.barge_in(Some(("a1".into(), 120)), t), &mut sent);
        collect(
            s.on_server_event(frame(json!({"type":"response.done","response":{"id":"r1","status":"cancelled"}})), t),
            &mut sent,
        );
        collect(s.set_key_held(true, t), &mut sent);
        collect(s.commit_user_audio(t), &mut sent);
        collect(s.on_server_event(frame(json!({"type":"response.done","response":{"id":"r2"}})), t), &mut sent);
        collect(s.push_notification("n1", "[task t7 'y' finished in 4m12s, $0.31: done]", t), &mut sent);
        // The server refuses the transcription model: the update again, then out-of-band transcriptions.
        collect(
            s.on_server_event(
                frame(json!({"type":"error","error":{"type":"invalid_request_error","code":"invalid_value",
                    "message":"Transcription model not supported in realtime sessions",
                    "param":"session.audio.input.transcription.model","event_id":null}})),
                t,
            ),
            &mut sent,
        );
        collect(
            s.on_server_event(frame(json!({"type":"input_audio_buffer.committed","item_id":"item_u1"})), t),
            &mut sent,
        );
        collect(s.on_closed(t), &mut sent);
        s.on_connected(t, 1_800_000_000);
        collect(s.on_server_event(frame(json!({"type":"session.created","session":{"id":"s2"}})), t), &mut sent);
    }
    // Constructors the daemon may use directly.
    sent.push(ClientEvent::ResponseCancel { response_id: Some("resp_1".into()) });
    sent.push(ClientEvent::ResponseCreate {
        event_id: None,
        response: Some(ResponseParams {
            output_modalities: Some(vec![Modality::Text]),
            instructions: Some("Say it in one sentence.".into()),
            conversation: Some("auto".into()),
            metadata: Some(BTreeMap::from([("purpose".into(), "notification".into())])),
            tool_choice: Some("none".into()),
            input: None,
        }),
    });
    sent
}

#[test]
fn every_client_event_validates_against_the_ga_schema() {
    let schemas = Schemas::load();
    assert_eq!(schemas.per_type.len(), 11, "11 GA client events");
    let sent = everything_the_machine_sends();
    let mut seen = BTreeSet::new();
    for ev in &sent {
        let v: Value = serde_json::from_str(&ev.to_json()).expect("valid JSON");
        let errs = schemas.errors(&v);
        assert!(errs.is_empty(), "{v}\n{errs:#?}");
        seen.insert(ev.type_name());
    }
    // Every event kind the client can build was exercised.
    let all = [
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "conversation.item.create",
        "conversation.item.truncate",
        "response.create",
        "response.cancel",
    ];
    assert_eq!(seen, BTreeSet::from(all));
    // And the item kinds: system, user, function_call_output.
    let json = sent.iter().map(ClientEvent::to_json).collect::<Vec<_>>().join("\n");
    for needle in [
        r#""role":"system""#,
        r#""role":"user""#,
        r#""type":"function_call_output""#,
        r#""turn_detection":null"#,
        r#""turn_detection":{"type":"server_vad""#,
        r#""turn_detection":{"type":"semantic_vad","eagerness":"low""#,
        r#""reasoning":{"effort":"low"}"#,
        r#""parallel_tool_calls":true"#,
        r#""truncation":{"type":"retention_ratio","retention_ratio":0.8}"#,
        r#""truncation":"auto""#,
        r#""input":[{"type":"item_reference","id":"item_u1"}]"#,
        r#""output_modalities":["text"]"#,
        r#""output_modalities":["audio"]"#,
    ] {
        assert!(json.contains(needle), "no event with {needle}");
    }
}

#[test]
fn beta_shaped_events_are_rejected() {
    let schemas = Schemas::load();
    let beta_update = json!({"type":"session.update","session":{
        "modalities":["text","audio"],"voice":"alloy","instructions":"hi",
        "input_audio_format":"pcm16","output_audio_format":"pcm16",
        "input_audio_transcription":{"model":"whisper-1"},
        "turn_detection":{"type":"server_vad"}}});
    assert!(!schemas.errors(&beta_update).is_empty());
    let beta_only_type = json!({"type":"transcription_session.update","session":{}});
    assert!(!schemas.errors(&beta_only_type).is_empty());
    // Sanity: the checker accepts the minimal GA update, so the rejections above mean something.
    let ga = json!({"type":"session.update","session":{"type":"realtime"}});
    assert!(schemas.errors(&ga).is_empty());
    let wrong_format = json!({"type":"session.update","session":{"type":"realtime",
        "audio":{"input":{"format":{"type":"audio/pcm","rate":16000}}}}});
    assert!(!schemas.errors(&wrong_format).is_empty());
}
