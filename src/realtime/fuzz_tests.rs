//! Robustness: garbage and hostile-but-valid traffic neither panics the parser nor wedges the machine.
//!
//! Why a seeded PRNG and not a fuzzer: this must run in CI, deterministically, in seconds, without a
//! nightly toolchain. 10 000 frames mix raw garbage, truncated and mutated real frames, wrong JSON types,
//! huge strings, unknown types and valid events in nonsensical orders, interleaved with random local facts
//! and tool results. Every output is checked as it comes ([`Invariants`]): never a second `response.create`
//! while ours is in flight, each `call_id` dispatched once, only pushed notifications delivered. Afterwards
//! the machine must still deliver a fresh notification. A proptest covers arbitrary strings for the parser
//! alone.

use crate::realtime::events::server::TYPED_NAMES;
use crate::realtime::events::{ClientEvent, ServerEvent};
use crate::realtime::session::responses::STALL;
use crate::realtime::session::{Output, Session, SessionConfig};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// xorshift64*: tiny, seeded, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Beta names and other types the client does not model, beside the typed ones.
const EXTRA_TYPES: &[&str] = &["response.content_part.added", "response.audio.delta", "made.up.event"];

const CODES: &[&str] = &[
    "conversation_already_has_active_response",
    "response_cancel_not_active",
    "session_expired",
    "invalid_api_key",
    "model_not_found",
    "beta_api_shape_disabled",
    "rate_limit_exceeded",
    "input_audio_buffer_commit_empty",
];

fn odd_value(r: &mut Rng) -> Value {
    match r.below(9) {
        0 => Value::Null,
        1 => json!(r.next() as i64),
        2 => json!(-1),
        3 => json!(1.5),
        4 => json!(true),
        5 => json!([1, "a", null]),
        6 => json!({"nested": {"deep": [null]}}),
        7 => json!("x".repeat(r.below(70_000))),
        _ => json!("ok"),
    }
}

fn ids(r: &mut Rng, prefix: &str) -> String {
    format!("{prefix}{}", r.below(6))
}

/// A well-formed event of a random type with plausible values.
fn valid_event(r: &mut Rng) -> Value {
    let ty = if r.chance(90) { *r.pick(TYPED_NAMES) } else { *r.pick(EXTRA_TYPES) };
    let status = *r.pick(&["completed", "cancelled", "failed", "incomplete", "in_progress", ""]);
    match ty {
        "session.created" | "session.updated" => {
            json!({"type":ty,"session":{"id":ids(r,"sess_"),"expires_at":1_800_000_000u64 + r.next() % 7200}})
        }
        "error" => {
            json!({"type":ty,"error":{"type":"invalid_request_error","code":*r.pick(CODES),
            "message":"m","event_id": if r.chance(50) { Value::Null } else { json!(format!("ptt_rc_{}", r.below(50))) }}})
        }
        "response.created" | "response.done" => {
            json!({"type":ty,"response":{"id":ids(r,"resp_"),"status":status,
            "output":[{"type":"function_call","call_id":ids(r,"call_"),"name":"list_tasks","arguments":"{}"}]}})
        }
        "response.function_call_arguments.done" => {
            // Half repeat a small pool (duplicates), half are fresh calls.
            let call_id = if r.chance(50) { ids(r, "call_") } else { format!("call_x{}", r.next()) };
            json!({"type":ty,"call_id":call_id,"name":*r.pick(&["start_task","list_tasks","bogus"]),
            "arguments":"{\"task\":\"x\"}"})
        }
        "response.output_audio.delta" => {
            json!({"type":ty,"item_id":ids(r,"item_"),"delta":*r.pick(&["AAAA","!!","AQD+/w==",""])})
        }
        "conversation.item.added" | "conversation.item.done" | "conversation.item.created" => {
            json!({"type":ty,"item":{"type":*r.pick(&["message","function_call_output","function_call"]),
            "role":*r.pick(&["user","system","assistant"]),"call_id":ids(r,"call_"),
            "content":[{"type":"input_text","text":"done"}]}})
        }
        _ => json!({"type":ty,"item_id":ids(r,"item_"),"delta":"d","text":"t","transcript":"tr",
            "audio_end_ms":r.below(10_000)}),
    }
}

fn frame(r: &mut Rng) -> String {
    match r.below(8) {
        // Raw garbage.
        0 => {
            let n = r.below(64);
            let bytes: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        // A truncated real frame.
        1 => {
            let s = valid_event(r).to_string();
            let cut = r.below(s.len().max(1));
            s.chars().take(cut).collect()
        }
        // A known type with a field of the wrong JSON type.
        2 => {
            let mut v = valid_event(r);
            let key = *r.pick(&[
                "session",
                "error",
                "response",
                "item",
                "call_id",
                "delta",
                "item_id",
                "audio_end_ms",
                "rate_limits",
                "type",
            ]);
            v[key] = odd_value(r);
            v.to_string()
        }
        // Not an object, or no type.
        3 => r.pick(&["[]", "null", "42", "\"s\"", "{}", r#"{"type":null}"#]).to_string(),
        // Deep nesting.
        4 => format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200)),
        // Valid events, in whatever order the dice say.
        _ => valid_event(r).to_string(),
    }
}

/// The machine's promises, checked on every output and told about every input that can release them.
#[derive(Default)]
struct Invariants {
    /// Our `response.create` that nothing has ended yet: its `event_id` and when it was sent.
    in_flight: Option<(Option<String>, Instant)>,
    dispatched: HashSet<String>,
    pushed: HashSet<String>,
    creates: usize,
    dispatches: usize,
    deliveries: usize,
    sends: usize,
}

impl Invariants {
    /// A frame the machine accepted. Any `response.done` ends the active response; an error naming our
    /// create may have failed it. (Leniently: the machine may keep the floor longer, never shorter.)
    fn server(&mut self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else { return };
        let ended = match v["type"].as_str() {
            Some("response.done") => true,
            Some("error") => {
                let named = v["error"]["event_id"].as_str();
                self.in_flight.as_ref().is_some_and(|(mine, _)| mine.is_some() && mine.as_deref() == named)
            }
            _ => false,
        };
        if ended {
            self.in_flight = None;
        }
    }

    /// The connection went away or a new one started: the conversation, and every response with it, is gone.
    fn reset_link(&mut self) {
        self.in_flight = None;
    }

    fn pushed(&mut self, id: &str) {
        self.pushed.insert(id.to_owned());
    }

    /// Checks every output; `at` names the step for the failure message.
    fn check(&mut self, outs: &[Output], now: Instant, at: &str) {
        for o in outs {
            match o {
                Output::Send(ev) => {
                    self.sends += 1;
                    // Out-of-band responses (`conversation: "none"`, the transcription fallback) write nothing
                    // into the conversation and may run beside its response.
                    let out_of_band = matches!(ev, ClientEvent::ResponseCreate { response: Some(r), .. }
                        if r.conversation.as_deref() == Some("none"));
                    if let ClientEvent::ResponseCreate { event_id, .. } = ev
                        && !out_of_band
                    {
                        if let Some((prev, sent)) = &self.in_flight {
                            // The watchdog may release a response silent for STALL (measured from its creation
                            // at the earliest).
                            assert!(
                                now.duration_since(*sent) >= STALL,
                                "{at}: response.create {event_id:?} while {prev:?} is in flight"
                            );
                        }
                        self.creates += 1;
                        self.in_flight = Some((event_id.clone(), now));
                    }
                }
                Output::DispatchTool { call_id, .. } => {
                    self.dispatches += 1;
                    assert!(self.dispatched.insert(call_id.clone()), "{at}: {call_id} dispatched twice");
                }
                Output::NotificationDelivered { id } => {
                    self.deliveries += 1;
                    assert!(self.pushed.contains(id), "{at}: delivered {id}, which was never pushed");
                }
                _ => {}
            }
        }
    }
}

#[test]
fn ten_thousand_hostile_frames_then_a_notification_still_arrives() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut now = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    s.on_connected(now, 1_800_000_000);
    let mut inv = Invariants::default();
    let mut calls: Vec<String> = Vec::new();
    let mut parsed = 0;
    for i in 0..10_000 {
        let at = format!("frame {i}");
        // The daemon's loop: wake at every deadline that passes before the next frame.
        let next = now + Duration::from_millis(r.below(200) as u64);
        while let Some(d) = s.next_deadline().filter(|d| *d <= next) {
            assert!(d > now, "deadline in the past at frame {i}");
            now = d;
            let outs = s.poll(now);
            inv.check(&outs, now, &at);
            remember_calls(&outs, &mut calls);
        }
        now = next;
        let text = frame(&mut r);
        let mut outs = match ServerEvent::parse(&text) {
            Ok(ev) => {
                parsed += 1;
                inv.server(&text);
                s.on_server_event(ev, now)
            }
            Err(_) => Vec::new(),
        };
        inv.check(&outs, now, &at);
        remember_calls(&outs, &mut calls);
        let mut reconnect =
            outs.iter().any(|o| matches!(o, Output::Reconnect { .. } | Output::Fatal { .. } | Output::Renew));
        outs = match r.below(12) {
            0 => s.set_key_held(r.chance(50), now),
            1 => s.set_audio_playing(r.chance(50), now),
            2 => {
                let id = format!("n{}", r.below(20));
                inv.pushed(&id);
                s.push_notification(&id, "task ended", now)
            }
            3 => match calls.pop() {
                Some(c) => s.on_tool_result(&c, "{}", now),
                None => Vec::new(),
            },
            4 => s.poll(now),
            5 => s.set_task_table(&format!("t{i}"), now),
            6 => s.barge_in(Some((format!("a{}", r.below(3)), r.below(5000) as u64)), now),
            7 if r.chance(5) => {
                inv.reset_link();
                s.on_closed(now)
            }
            _ => Vec::new(),
        };
        inv.check(&outs, now, &at);
        remember_calls(&outs, &mut calls);
        reconnect |= outs.iter().any(|o| matches!(o, Output::Reconnect { .. } | Output::Fatal { .. } | Output::Renew));
        if reconnect || (!s.is_ready() && r.chance(20)) {
            inv.reset_link();
            let outs = s.on_connected(now, 1_800_000_000);
            inv.check(&outs, now, &at);
            remember_calls(&outs, &mut calls);
        }
        let outs = s.poll(now);
        inv.check(&outs, now, &at);
        remember_calls(&outs, &mut calls);
        if let Some(d) = s.next_deadline() {
            assert!(d > now, "deadline in the past at frame {i}");
        }
    }
    // The mix exercised the machine, not just the parser.
    let (dispatches, deliveries, sends, creates) = (inv.dispatches, inv.deliveries, inv.sends, inv.creates);
    assert!(parsed > 3000, "{parsed} frames parsed");
    assert!(
        dispatches > 10 && deliveries > 0 && sends > 100 && creates > 10,
        "{dispatches} {deliveries} {sends} {creates}"
    );

    // Calm down: the user is quiet, audio stopped, tools answered, a fresh connection.
    now += Duration::from_secs(120);
    for c in calls.drain(..) {
        let outs = s.on_tool_result(&c, "{}", now);
        inv.check(&outs, now, "calm");
    }
    let outs = s.set_key_held(false, now);
    inv.check(&outs, now, "calm");
    let outs = s.set_audio_playing(false, now);
    inv.check(&outs, now, "calm");
    inv.reset_link();
    let outs = s.on_connected(now, 1_800_000_000);
    inv.check(&outs, now, "calm");
    let created_text = r#"{"type":"session.created","session":{"id":"calm"}}"#;
    inv.server(created_text);
    let mut out = s.on_server_event(ServerEvent::parse(created_text).expect("session.created"), now);
    inv.pushed("final");
    out.extend(s.push_notification("final", "the final notification", now));
    inv.check(&out, now, "calm");
    // Play the server: answer each response.create with created + done until "final" is confirmed.
    for round in 0..50 {
        let asked = out.iter().any(|o| matches!(o, Output::Send(e) if e.type_name() == "response.create"));
        if out.iter().any(|o| matches!(o, Output::NotificationDelivered { id } if id == "final")) {
            return;
        }
        now += Duration::from_secs(1);
        out = if asked {
            let id = format!("calm_{round}");
            let c = format!(r#"{{"type":"response.created","response":{{"id":"{id}"}}}}"#);
            let d = format!(r#"{{"type":"response.done","response":{{"id":"{id}","status":"completed"}}}}"#);
            inv.server(&c);
            let mut o = s.on_server_event(ServerEvent::parse(&c).expect("response.created"), now);
            inv.check(&o, now, "calm");
            inv.server(&d);
            let done = s.on_server_event(ServerEvent::parse(&d).expect("response.done"), now);
            inv.check(&done, now, "calm");
            o.extend(done);
            o
        } else {
            let o = s.poll(now);
            inv.check(&o, now, "calm");
            o
        };
    }
    panic!("the final notification was never delivered");
}

/// Calls to answer later, as the daemon would.
fn remember_calls(outs: &[Output], calls: &mut Vec<String>) {
    for o in outs {
        if let Output::DispatchTool { call_id, .. } = o {
            calls.push(call_id.clone());
        }
    }
}

proptest! {
    #[test]
    fn parse_never_panics_on_any_string(s in ".{0,300}") {
        let _ = ServerEvent::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_mutated_frames(
        ty in proptest::sample::select([TYPED_NAMES, EXTRA_TYPES].concat()),
        key in "[a-z_]{1,12}",
        val in prop_oneof![
            Just(Value::Null), any::<i64>().prop_map(Value::from), any::<f64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::from), Just(json!([])), Just(json!({}))
        ],
    ) {
        let mut v = json!({"type": ty});
        v[key.as_str()] = val;
        let _ = ServerEvent::parse(&v.to_string());
    }
}
