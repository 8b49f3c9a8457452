//! Scenario tests for the session machine: one per invariant in the module docs, plus the paths around
//! them. A scripted "server" is just JSON frames fed through the real parser.

use super::*;
use crate::realtime::events::{Item, Role};
use serde_json::{Value, json};

const UNIX0: u64 = 1_800_000_000;

fn ev(v: Value) -> ServerEvent {
    ServerEvent::parse(&v.to_string()).expect("test frame parses")
}

fn created(id: &str, expires_in: i64) -> ServerEvent {
    ev(json!({"type":"session.created","event_id":"e","session":{"type":"realtime",
        "object":"realtime.session","id":id,"expires_at": UNIX0 as i64 + expires_in,
        "audio":{"input":{"transcription":null}}}}))
}

fn resp_created(id: &str) -> ServerEvent {
    ev(json!({"type":"response.created","response":{"id":id,"status":"in_progress","usage":null,"output":[]}}))
}

fn resp_done(id: &str, status: &str) -> ServerEvent {
    ev(json!({"type":"response.done","response":{"id":id,"status":status,"status_details":null,"output":[]}}))
}

fn args_done(call_id: &str, name: &str) -> ServerEvent {
    ev(json!({"type":"response.function_call_arguments.done","response_id":"r","item_id":"i",
        "output_index":0,"call_id":call_id,"name":name,"arguments":"{}"}))
}

fn item_done_call(call_id: &str) -> ServerEvent {
    ev(json!({"type":"response.output_item.done","response_id":"r","output_index":0,
        "item":{"id":"i","type":"function_call","call_id":call_id,"name":"list_tasks","arguments":"{}"}}))
}

fn echo_call_output(call_id: &str) -> ServerEvent {
    ev(json!({"type":"conversation.item.added","previous_item_id":null,
        "item":{"id":"x","type":"function_call_output","call_id":call_id,"output":"{}"}}))
}

fn error(code: &str, event_id: Option<&str>) -> ServerEvent {
    ev(json!({"type":"error","event_id":"e","error":{"type":"invalid_request_error","code":code,
        "message":format!("msg {code}"),"param":null,"event_id":event_id}}))
}

fn simple(t: &str) -> ServerEvent {
    ev(json!({ "type": t }))
}

fn sends(out: &[Output]) -> Vec<&ClientEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn creates(out: &[Output]) -> usize {
    sends(out).iter().filter(|e| matches!(e, ClientEvent::ResponseCreate { .. })).count()
}

fn system_texts(out: &[Output]) -> Vec<String> {
    sends(out)
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ConversationItemCreate { item: Item::Message { role: Role::System, content }, .. } => {
                content.first().map(|c| match c {
                    crate::realtime::events::ContentPart::InputText { text } => text.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

fn delivered(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::NotificationDelivered { id } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn dispatched(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::DispatchTool { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect()
}

fn create_event_id(out: &[Output]) -> Option<String> {
    sends(out).iter().find_map(|e| match e {
        ClientEvent::ResponseCreate { event_id, .. } => event_id.clone(),
        _ => None,
    })
}

/// A session that has seen `session.created`, expiring in an hour.
fn ready_with(cfg: SessionConfig) -> (Session, Instant) {
    let t = Instant::now();
    let mut s = Session::new(cfg);
    assert!(s.on_connected(t, UNIX0).is_empty());
    let out = s.on_server_event(created("sess_1", 3600), t);
    assert_eq!(sends(&out).len(), 1);
    (s, t)
}

fn ready() -> (Session, Instant) {
    ready_with(SessionConfig::default())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---- connection ----

#[test]
fn handshake_sends_one_ga_session_update_after_created() {
    let t = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    assert!(s.on_connected(t, UNIX0).is_empty());
    assert!(!s.is_ready());
    // Events before session.created are ignored.
    assert!(s.on_server_event(args_done("c0", "list_tasks"), t).is_empty());
    let out = s.on_server_event(created("sess_1", 3600), t);
    let sent = sends(&out);
    assert_eq!(sent.len(), 1, "no summary on a first connect: {out:?}");
    let j: Value = serde_json::from_str(&sent[0].to_json()).unwrap();
    assert_eq!(j["type"], "session.update");
    assert_eq!(j["session"]["type"], "realtime");
    assert_eq!(j["session"]["tools"].as_array().unwrap().len(), crate::realtime::tools::NAMES.len());
    assert!(s.is_ready());
    assert_eq!(s.session_id(), Some("sess_1"));
    assert_eq!(s.expires_at(), Some(t + secs(3600)));
    // A duplicate session.created changes nothing.
    assert!(s.on_server_event(created("sess_1", 3600), t).is_empty());
}

#[test]
fn nothing_is_sent_while_closed() {
    let t = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    assert!(s.push_notification("n1", "task done", t).is_empty());
    assert!(s.send_user_text("hello", t).is_empty());
    assert!(s.append_audio(&[0; 480]).is_none());
    assert!(s.on_server_event(created("x", 10), t).is_empty());
    assert!(s.poll(t).is_empty());
    assert_eq!(s.next_deadline(), None);
    assert_eq!(s.pending_notifications(), ["n1"]);
}

// ---- notifications ----

#[test]
fn two_notifications_are_delivered_one_at_a_time() {
    let (mut s, t) = ready();
    let mut out = s.push_notification("n1", "[task t1 finished]", t);
    out.extend(s.push_notification("n2", "[task t2 failed]", t));
    assert_eq!(system_texts(&out), ["[task t1 finished]"]);
    assert_eq!(creates(&out), 1);
    // Everything in between keeps the second one back.
    for e in [echo_system("[task t1 finished]"), resp_created("r1"), simple("response.output_audio_transcript.delta")] {
        assert_eq!(creates(&s.on_server_event(e, t)), 0);
    }
    let out = s.on_server_event(resp_done("r1", "completed"), t);
    assert_eq!(delivered(&out), ["n1"]);
    assert_eq!(system_texts(&out), ["[task t2 failed]"]);
    assert_eq!(creates(&out), 1);
    s.on_server_event(resp_created("r2"), t);
    let out = s.on_server_event(resp_done("r2", "completed"), t);
    assert_eq!(delivered(&out), ["n2"]);
    assert_eq!(creates(&out), 0);
    assert!(s.pending_notifications().is_empty());
}

fn echo_system(text: &str) -> ServerEvent {
    ev(json!({"type":"conversation.item.added","item":{"type":"message","role":"system",
        "content":[{"type":"input_text","text":text}]}}))
}

#[test]
fn notification_waits_for_an_active_response_then_goes_right_after_done() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r_user"), t);
    let out = s.push_notification("n1", "done", t);
    assert!(sends(&out).is_empty());
    let out = s.on_server_event(resp_done("r_user", "completed"), t);
    assert_eq!(system_texts(&out), ["done"]);
    assert_eq!(creates(&out), 1);
}

#[test]
fn notification_waits_for_key_audio_and_speech() {
    let (mut s, t) = ready();
    s.set_key_held(true, t);
    assert!(sends(&s.push_notification("n1", "done", t)).is_empty());
    s.set_audio_playing(true, t);
    assert!(sends(&s.set_key_held(false, t)).is_empty(), "audio still playing");
    s.on_server_event(simple("input_audio_buffer.speech_started"), t);
    assert!(sends(&s.set_audio_playing(false, t)).is_empty(), "user speaking");
    assert!(!s.floor_free(t));
    // Speech stopped: the server is about to answer the turn; wait for that (or the settle time).
    assert!(sends(&s.on_server_event(simple("input_audio_buffer.speech_stopped"), t)).is_empty());
    assert_eq!(s.next_deadline(), Some(t + VAD_SETTLE));
    let out = s.poll(t + VAD_SETTLE);
    assert_eq!(system_texts(&out), ["done"]);
    assert_eq!(creates(&out), 1);
}

#[test]
fn after_a_vad_turn_the_servers_own_response_goes_first() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "list_tasks"), t);
    s.on_server_event(simple("input_audio_buffer.speech_started"), t);
    s.on_server_event(resp_done("r1", "cancelled"), t);
    s.push_notification("n1", "done", t);
    let out = s.on_tool_result("c1", "[]", t);
    assert_eq!((sends(&out).len(), creates(&out)), (1, 0), "user speaking");
    s.on_server_event(echo_call_output("c1"), t);
    assert_eq!(creates(&s.on_server_event(simple("input_audio_buffer.speech_stopped"), t)), 0);
    // The server answers the turn, having seen the tool output: no create of ours for it.
    s.on_server_event(resp_created("r_vad"), t);
    assert!(!s.response_pending());
    let out = s.on_server_event(resp_done_with_output("r_vad", "completed"), t);
    // Then the floor is free for the notification.
    assert_eq!(system_texts(&out), ["done"]);
    assert_eq!(creates(&out), 1);
}

#[test]
fn notification_waits_for_unanswered_tool_calls() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "list_tasks"), t);
    s.on_server_event(resp_done("r1", "completed"), t);
    assert!(sends(&s.push_notification("n1", "done", t)).is_empty());
    let out = s.on_tool_result("c1", "{}", t);
    // The tool's answer comes first; the notification after that response.
    assert_eq!(creates(&out), 1);
    assert!(system_texts(&out).is_empty());
    s.on_server_event(resp_created("r2"), t);
    let out = s.on_server_event(resp_done("r2", "completed"), t);
    assert_eq!(system_texts(&out), ["done"]);
}

#[test]
fn duplicate_notification_ids_are_spoken_once() {
    let (mut s, t) = ready();
    s.push_notification("n1", "done", t);
    assert!(sends(&s.push_notification("n1", "done", t)).is_empty());
    s.on_server_event(resp_created("r1"), t);
    assert_eq!(delivered(&s.on_server_event(resp_done("r1", "completed"), t)), ["n1"]);
    assert!(sends(&s.push_notification("n1", "done", t)).is_empty());
}

fn resp_done_with_output(id: &str, status: &str) -> ServerEvent {
    ev(json!({"type":"response.done","response":{"id":id,"status":status,
        "output":[{"type":"message","role":"assistant","content":[{"type":"output_audio","transcript":"Task t1"}]}]}}))
}

#[test]
fn cancelled_notification_counts_only_if_something_was_said() {
    let (mut s, t) = ready();
    s.push_notification("n1", "done", t);
    s.on_server_event(resp_created("r1"), t);
    // The user starts talking before the model says anything; VAD cancels the response.
    s.on_server_event(simple("input_audio_buffer.speech_started"), t);
    let out = s.on_server_event(resp_done("r1", "cancelled"), t);
    assert!(delivered(&out).is_empty());
    assert_eq!(creates(&out), 0, "the user is speaking");
    assert_eq!(s.pending_notifications(), ["n1"]);
    s.on_server_event(echo_system("done"), t);
    assert_eq!(creates(&s.on_server_event(simple("input_audio_buffer.speech_stopped"), t)), 0);
    // The server answers the user's turn. The note is in its context, but an answer to something else
    // does not count as speaking it.
    s.on_server_event(resp_created("r_vad"), t);
    let out = s.on_server_event(resp_done_with_output("r_vad", "completed"), t);
    assert!(delivered(&out).is_empty());
    // So it is asked for again, without a second item.
    assert_eq!((creates(&out), system_texts(&out).len()), (1, 0));
    s.on_server_event(resp_created("r2"), t);
    // This time it starts speaking and is interrupted: that counts.
    let out = s.on_server_event(resp_done_with_output("r2", "cancelled"), t);
    assert_eq!(delivered(&out), ["n1"]);
}

#[test]
fn failed_notification_response_is_retried_then_dropped() {
    let (mut s, t) = ready();
    let out = s.push_notification("n1", "done", t);
    assert_eq!(system_texts(&out).len(), 1);
    let mut now = t;
    for attempt in 1..=notify::MAX_FAILURES {
        s.on_server_event(resp_created("r"), now);
        let out = s.on_server_event(resp_done("r", "failed"), now);
        assert!(delivered(&out).is_empty());
        if attempt == notify::MAX_FAILURES {
            assert!(out.iter().any(|o| matches!(o, Output::NotificationDropped { id, .. } if id == "n1")));
            assert!(s.pending_notifications().is_empty());
            break;
        }
        assert_eq!(creates(&out), 0, "backoff first");
        now += secs(60);
        let out = s.poll(now);
        assert_eq!(creates(&out), 1, "retry attempt {attempt}");
        assert!(system_texts(&out).is_empty(), "the item is not sent twice");
    }
    now += secs(60);
    assert!(sends(&s.poll(now)).is_empty());
}

// ---- tools ----

#[test]
fn a_call_id_is_dispatched_once() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    let out = s.on_server_event(args_done("c1", "start_task"), t);
    assert_eq!(dispatched(&out), ["c1"]);
    assert!(dispatched(&s.on_server_event(item_done_call("c1"), t)).is_empty());
    assert!(dispatched(&s.on_server_event(args_done("c1", "start_task"), t)).is_empty());
    let done = ev(json!({"type":"response.done","response":{"id":"r1","status":"completed",
        "output":[{"type":"function_call","call_id":"c1","name":"start_task","arguments":"{}"}]}}));
    assert!(dispatched(&s.on_server_event(done, t)).is_empty());
    // output_item.done alone never dispatches.
    assert!(dispatched(&s.on_server_event(item_done_call("c2"), t)).is_empty());
    // A call without call_id is ignored.
    assert!(dispatched(&s.on_server_event(args_done("", "list_tasks"), t)).is_empty());
}

#[test]
fn tool_outputs_get_exactly_one_response_create() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "start_task"), t);
    s.on_server_event(args_done("c2", "list_tasks"), t);
    let mut total = 0;
    let out = s.on_tool_result("c1", r#"{"status":"started","task_id":"t7"}"#, t);
    assert_eq!(sends(&out).len(), 1, "the output goes at once");
    total += creates(&out);
    total += creates(&s.on_tool_result("c2", "[]", t));
    total += creates(&s.on_server_event(echo_call_output("c1"), t));
    total += creates(&s.on_server_event(resp_done("r1", "completed"), t));
    assert_eq!(total, 1);
    assert!(s.response_active());
    // Our response runs and ends: nothing more is asked.
    s.on_server_event(echo_call_output("c2"), t);
    s.on_server_event(resp_created("r2"), t);
    assert_eq!(creates(&s.on_server_event(resp_done("r2", "completed"), t)), 0);
    assert_eq!(creates(&s.poll(t + secs(60))), 0);
    // A second answer to the same call is ignored.
    assert!(sends(&s.on_tool_result("c1", "{}", t)).is_empty());
}

#[test]
fn results_after_done_wait_for_the_last_call() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "start_task"), t);
    s.on_server_event(args_done("c2", "start_task"), t);
    s.on_server_event(resp_done("r1", "completed"), t);
    let out = s.on_tool_result("c1", "{}", t);
    assert_eq!((sends(&out).len(), creates(&out)), (1, 0));
    let out = s.on_tool_result("c2", "{}", t);
    assert_eq!((sends(&out).len(), creates(&out)), (2, 1));
}

#[test]
fn a_lost_tool_result_stops_blocking_after_the_grace_period() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "start_task"), t);
    s.on_server_event(args_done("c2", "start_task"), t);
    s.on_server_event(resp_done("r1", "completed"), t);
    assert_eq!(creates(&s.on_tool_result("c1", "{}", t)), 0);
    assert_eq!(s.next_deadline(), Some(t + calls::TOOL_GRACE));
    assert_eq!(creates(&s.poll(t + calls::TOOL_GRACE)), 1);
}

#[test]
fn server_started_response_that_saw_the_output_needs_no_create() {
    let (mut s, t) = ready();
    s.set_key_held(true, t);
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "list_tasks"), t);
    s.on_server_event(resp_done("r1", "completed"), t);
    // Key held: the output goes, the response waits.
    let out = s.on_tool_result("c1", "[]", t);
    assert_eq!((sends(&out).len(), creates(&out)), (1, 0));
    assert!(s.response_pending());
    s.on_server_event(echo_call_output("c1"), t);
    // The server answers by itself (e.g. VAD turn) after it had the output.
    s.on_server_event(resp_created("r_auto"), t);
    assert!(!s.response_pending());
    s.on_server_event(resp_done("r_auto", "completed"), t);
    assert_eq!(creates(&s.set_key_held(false, t)), 0);
}

#[test]
fn already_active_is_benign_and_keeps_one_pending_create() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "list_tasks"), t);
    s.on_server_event(resp_done("r1", "completed"), t);
    let out = s.on_tool_result("c1", "[]", t);
    let id = create_event_id(&out).expect("create sent");
    // The server had started a response before it saw our output; our create fails.
    s.on_server_event(resp_created("r_auto"), t);
    s.on_server_event(echo_call_output("c1"), t);
    let out = s.on_server_event(error("conversation_already_has_active_response", Some(&id)), t);
    assert!(out.is_empty(), "{out:?}");
    assert!(s.is_ready() && s.response_active() && s.response_pending());
    // Exactly one create after that response's done, none more later.
    assert_eq!(creates(&s.on_server_event(resp_done("r_auto", "completed"), t)), 1);
    s.on_server_event(resp_created("r2"), t);
    assert_eq!(creates(&s.on_server_event(resp_done("r2", "completed"), t)), 0);
}

#[test]
fn already_active_after_the_server_saw_the_output_asks_nothing_more() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "list_tasks"), t);
    s.on_server_event(resp_done("r1", "completed"), t);
    let out = s.on_tool_result("c1", "[]", t);
    assert_eq!(creates(&out), 1);
    // Server: echo, then its own response, then our create fails (no event_id echoed).
    s.on_server_event(echo_call_output("c1"), t);
    s.on_server_event(resp_created("r_auto"), t);
    s.on_server_event(error("conversation_already_has_active_response", None), t);
    assert!(!s.response_pending());
    assert_eq!(creates(&s.on_server_event(resp_done("r_auto", "completed"), t)), 0);
}

#[test]
fn already_active_for_a_notification_keeps_it_until_its_response() {
    let (mut s, t) = ready();
    let out = s.push_notification("n1", "done", t);
    let id = create_event_id(&out).unwrap();
    // A VAD response started just before.
    s.on_server_event(resp_created("r_vad"), t);
    s.on_server_event(echo_system("done"), t);
    s.on_server_event(error("conversation_already_has_active_response", Some(&id)), t);
    let out = s.on_server_event(resp_done("r_vad", "completed"), t);
    assert!(delivered(&out).is_empty(), "that response never saw it");
    assert_eq!(creates(&out), 1);
    assert!(system_texts(&out).is_empty(), "item not sent twice");
    s.on_server_event(resp_created("r2"), t);
    assert_eq!(delivered(&s.on_server_event(resp_done("r2", "completed"), t)), ["n1"]);
}

#[test]
fn cancel_not_active_is_ignored() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    let out = s.on_server_event(error("response_cancel_not_active", None), t);
    assert!(out.is_empty());
    assert!(s.is_ready() && s.response_active());
}

#[test]
fn other_errors_on_our_create_retry_with_backoff() {
    let (mut s, t) = ready();
    let out = s.send_user_text("hi", t);
    let id = create_event_id(&out).unwrap();
    let out = s.on_server_event(error("rate_limit_exceeded", Some(&id)), t);
    assert!(out.is_empty());
    assert!(s.is_ready() && !s.response_active() && s.response_pending());
    assert_eq!(s.next_deadline(), Some(t + secs(1)));
    assert_eq!(creates(&s.poll(t + secs(1))), 1);
    // An error about something else changes nothing.
    assert!(s.on_server_event(error("invalid_value", Some("other")), t).is_empty());
    assert!(s.response_active());
}

#[test]
fn fatal_errors_stop_the_session() {
    for code in FATAL_CODES {
        let (mut s, t) = ready();
        s.push_notification("n1", "done", t);
        let out = s.on_server_event(error(code, None), t);
        let message = match code {
            "model_not_found" | "invalid_model" => format!(
                "live.model = \"gpt-realtime-2.1\" is not available (msg {code}); set live.model = \"gpt-realtime-2.1\" in config.toml"
            ),
            _ => format!("msg {code}"),
        };
        assert_eq!(out, [Output::Fatal { code: code.into(), message }]);
        assert!(s.is_failed() && !s.is_ready());
        assert!(sends(&s.push_notification("n2", "x", t)).is_empty());
        assert!(s.on_server_event(resp_done("r", "completed"), t).is_empty());
        assert_eq!(s.pending_notifications(), ["n1", "n2"]);
        // The user fixes the key and starts again: everything is still there.
        s.on_connected(t, UNIX0);
        let out = s.on_server_event(created("sess_2", 3600), t);
        assert_eq!(system_texts(&out).last().map(String::as_str), Some("done"));
    }
    // A fatal error during the handshake too.
    let t = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    s.on_connected(t, UNIX0);
    let out = s.on_server_event(error("beta_api_shape_disabled", None), t);
    assert!(matches!(&out[..], [Output::Fatal { .. }]));
    // An old model that is gone names itself and its replacement.
    let mut s = Session::new(SessionConfig { model: "gpt-realtime-mini".into(), ..SessionConfig::default() });
    s.on_connected(t, UNIX0);
    let out = s.on_server_event(error("model_not_found", None), t);
    assert!(
        matches!(&out[..], [Output::Fatal { message, .. }] if message.contains("\"gpt-realtime-mini\" is not available")
            && message.contains("set live.model = \"gpt-realtime-2.1-mini\"")),
        "{out:?}"
    );
}

// ---- reconnect and renewal ----

#[test]
fn reconnect_replays_pending_notifications_exactly_once() {
    let (mut s, t) = ready();
    s.send_user_text("refactor the auth module", t);
    s.on_server_event(resp_created("r0"), t);
    s.on_server_event(ev(json!({"type":"response.output_text.done","item_id":"a1","text":"Started t1."})), t);
    s.on_server_event(resp_done("r0", "completed"), t);
    // n0 is delivered before the drop; n1 is in flight; n2 waits.
    s.push_notification("n0", "t0 finished", t);
    s.on_server_event(resp_created("r1"), t);
    assert_eq!(delivered(&s.on_server_event(resp_done("r1", "completed"), t)), ["n0"]);
    let out = s.push_notification("n1", "t1 finished", t);
    assert_eq!(system_texts(&out), ["t1 finished"]);
    s.push_notification("n2", "t2 failed", t);
    s.on_server_event(resp_created("r2"), t);
    // The link dies before response.done.
    assert!(s.on_closed(t).is_empty());
    assert!(!s.is_ready() && !s.response_active());
    assert_eq!(s.pending_notifications(), ["n1", "n2"]);
    // Reconnect: session.update, one summary item, then n1 once.
    let t2 = t + secs(5);
    assert!(s.on_connected(t2, UNIX0 + 5).is_empty());
    let out = s.on_server_event(created("sess_2", 3600), t2);
    let sent = sends(&out);
    assert!(matches!(sent[0], ClientEvent::SessionUpdate { .. }));
    let texts = system_texts(&out);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].contains("User: refactor the auth module"));
    assert!(texts[0].contains("Assistant: Started t1."));
    assert!(texts[0].contains("t0 finished"));
    assert_eq!(texts[1], "t1 finished");
    assert_eq!(creates(&out), 1);
    s.on_server_event(resp_created("r3"), t2);
    let out = s.on_server_event(resp_done("r3", "completed"), t2);
    assert_eq!(delivered(&out), ["n1"]);
    assert_eq!(system_texts(&out), ["t2 failed"]);
    s.on_server_event(resp_created("r4"), t2);
    assert_eq!(delivered(&s.on_server_event(resp_done("r4", "completed"), t2)), ["n2"]);
    assert!(s.pending_notifications().is_empty());
}

#[test]
fn events_of_the_old_connection_are_not_answered_after_a_reconnect() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "start_task"), t);
    s.on_closed(t);
    s.on_connected(t, UNIX0);
    s.on_server_event(created("sess_2", 3600), t);
    // The old call's result cannot go to the new session; it is only remembered.
    assert!(sends(&s.on_tool_result("c1", r#"{"status":"started"}"#, t)).is_empty());
    assert!(sends(&s.on_tool_result("nope", "{}", t)).is_empty());
    s.on_closed(t);
    s.on_connected(t, UNIX0);
    let out = s.on_server_event(created("sess_3", 3600), t);
    assert!(system_texts(&out)[0].contains("start_task returned"));
}

#[test]
fn session_expired_is_handled_as_a_close() {
    let (mut s, t) = ready();
    s.push_notification("n1", "done", t);
    let out = s.on_server_event(error("session_expired", None), t);
    assert!(matches!(&out[..], [Output::Reconnect { .. }]));
    assert!(!s.is_ready() && !s.is_failed());
    assert!(s.on_closed(t).is_empty());
    s.on_connected(t, UNIX0 + 3600);
    let out = s.on_server_event(created("sess_2", 3600), t);
    assert_eq!(system_texts(&out).last().map(String::as_str), Some("done"));
}

#[test]
fn renewal_happens_only_when_the_floor_is_free() {
    let (mut s, t) = ready();
    let due = t + secs(3600) - s.config().renew_margin;
    assert_eq!(s.next_deadline(), Some(due));
    assert!(!s.needs_renewal(due - secs(1)));
    assert!(s.poll(due - secs(1)).is_empty());
    // Busy at the due time: a response is active, then the key is held.
    s.on_server_event(resp_created("r1"), due);
    assert!(!s.needs_renewal(due));
    assert!(s.poll(due).is_empty());
    assert_ne!(s.next_deadline(), Some(due), "no spinning on a due renewal");
    s.set_key_held(true, due);
    assert!(s.on_server_event(resp_done("r1", "completed"), due).is_empty());
    // The key goes up: the floor is free, renew once.
    let out = s.set_key_held(false, due);
    assert_eq!(out, [Output::Renew]);
    assert!(s.poll(due).is_empty());
    // While renewing, notifications wait for the new session.
    assert!(sends(&s.push_notification("n1", "done", due)).is_empty());
    s.on_connected(due, UNIX0 + 3300);
    let out = s.on_server_event(created("sess_2", 3600), due);
    assert_eq!(system_texts(&out), ["done"]);
    assert_eq!(s.session_id(), Some("sess_2"));
}

#[test]
fn failed_renewal_retries_later() {
    let (mut s, t) = ready();
    let due = t + secs(3600) - s.config().renew_margin;
    assert_eq!(s.poll(due), [Output::Renew]);
    assert!(s.renewal_failed(due).is_empty());
    assert_eq!(s.next_deadline(), Some(due + RENEW_RETRY));
    assert!(s.poll(due + secs(1)).is_empty());
    assert_eq!(s.poll(due + RENEW_RETRY), [Output::Renew]);
}

// ---- awareness ----

#[test]
fn task_table_updates_are_debounced() {
    let (mut s, t) = ready();
    // session.created just sent the full update: the next one waits for the debounce.
    assert!(s.set_task_table("t1 auth refactor: running", t).is_empty());
    assert_eq!(s.next_deadline(), Some(t + secs(2)));
    assert!(s.set_task_table("t1 auth refactor: editing", t + secs(1)).is_empty());
    let out = s.poll(t + secs(2));
    assert_eq!(out.len(), 1);
    let j: Value = serde_json::from_str(&sends(&out)[0].to_json()).unwrap();
    assert!(j["session"]["instructions"].as_str().unwrap().ends_with("t1 auth refactor: editing"));
    assert!(s.poll(t + secs(3)).is_empty());
    // After a quiet period, a change goes at once.
    assert_eq!(s.set_task_table("t1 done", t + secs(10)).len(), 1);
    // An unchanged table sends nothing.
    assert!(s.set_task_table("t1 done", t + secs(20)).is_empty());
}

#[test]
fn table_set_while_closed_goes_in_the_first_update() {
    let t = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    assert!(s.set_task_table("t1 x: running", t).is_empty());
    s.on_connected(t, UNIX0);
    let out = s.on_server_event(created("s", 3600), t);
    let j: Value = serde_json::from_str(&sends(&out)[0].to_json()).unwrap();
    assert!(j["session"]["instructions"].as_str().unwrap().contains("t1 x: running"));
    assert!(s.poll(t + secs(5)).is_empty());
}

// ---- turns, text, audio ----

#[test]
fn push_to_talk_release_commits_and_asks_once() {
    let cfg = SessionConfig { turn: Turn::Ptt, ..SessionConfig::default() };
    let (mut s, t) = ready_with(cfg);
    s.set_key_held(true, t);
    assert!(s.append_audio(&[0; 480]).is_some());
    let out = s.commit_user_audio(t);
    let sent = sends(&out);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], &ClientEvent::InputAudioBufferCommit);
    assert_eq!(creates(&out), 1);
    s.on_server_event(simple("input_audio_buffer.committed"), t);
    s.on_server_event(resp_created("r1"), t);
    assert_eq!(creates(&s.on_server_event(resp_done("r1", "completed"), t)), 0);
    // With server VAD, commit is the server's job.
    let (mut v, t) = ready();
    assert!(v.commit_user_audio(t).is_empty());
}

#[test]
fn tool_answer_waits_while_the_key_is_held() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "list_tasks"), t);
    s.on_server_event(resp_done("r1", "completed"), t);
    s.set_key_held(true, t);
    assert_eq!(creates(&s.on_tool_result("c1", "[]", t)), 0);
    assert_eq!(creates(&s.set_key_held(false, t)), 1);
}

#[test]
fn text_mode_round_trip() {
    let cfg = SessionConfig { text_mode: true, turn: Turn::Ptt, ..SessionConfig::default() };
    let (mut s, t) = ready_with(cfg);
    let out = s.send_user_text("what are my tasks doing?", t);
    assert_eq!(sends(&out).len(), 2);
    assert_eq!(creates(&out), 1);
    s.on_server_event(resp_created("r1"), t);
    let out = s.on_server_event(ev(json!({"type":"response.output_text.delta","item_id":"a","delta":"No"})), t);
    assert_eq!(out, [Output::AssistantDelta { item_id: "a".into(), delta: "No".into() }]);
    let out = s.on_server_event(ev(json!({"type":"response.output_text.done","item_id":"a","text":"No tasks."})), t);
    assert_eq!(out, [Output::AssistantText { item_id: "a".into(), text: "No tasks.".into(), phase: None }]);
    // A second line while the answer runs waits for it.
    assert_eq!(creates(&s.send_user_text("thanks", t)), 0);
    assert_eq!(creates(&s.on_server_event(resp_done("r1", "completed"), t)), 1);
}

#[test]
fn barge_in_stops_playback_cancels_and_truncates() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    let out = s.on_server_event(
        ev(json!({"type":"response.output_audio.delta","response_id":"r1","item_id":"a1",
            "delta":"AQD+/w=="})),
        t,
    );
    assert_eq!(out, [Output::Audio { item_id: "a1".into(), pcm: vec![1, -2] }]);
    s.set_audio_playing(true, t);
    let out = s.on_server_event(simple("input_audio_buffer.speech_started"), t);
    assert_eq!(out, [Output::StopPlayback]);
    let out = s.barge_in(Some(("a1".into(), 640)), t);
    assert_eq!(
        sends(&out),
        [
            &ClientEvent::ResponseCancel { response_id: None },
            &ClientEvent::ConversationItemTruncate { item_id: "a1".into(), content_index: 0, audio_end_ms: 640 }
        ]
    );
    // An item this connection never played is not truncated; the cancelled response ends normally.
    assert!(sends(&s.barge_in(Some(("zz".into(), 700)), t)).len() == 1);
    s.on_server_event(resp_done("r1", "cancelled"), t);
    assert!(!s.response_active());
    // A key press during playback also asks to stop it.
    s.set_audio_playing(true, t);
    assert_eq!(s.set_key_held(true, t), [Output::StopPlayback]);
}

#[test]
fn user_transcripts_are_reported_and_remembered() {
    let (mut s, t) = ready();
    let out = s.on_server_event(
        ev(json!({"type":"conversation.item.input_audio_transcription.completed","item_id":"u1",
            "content_index":0,"transcript":"cancel the auth task","usage":null})),
        t,
    );
    assert_eq!(out, [Output::UserTranscript { item_id: "u1".into(), text: "cancel the auth task".into() }]);
    s.on_closed(t);
    s.on_connected(t, UNIX0);
    let out = s.on_server_event(created("s2", 3600), t);
    assert!(system_texts(&out)[0].contains("User: cancel the auth task"));
}

// ---- timers ----

#[test]
fn a_lost_response_done_does_not_hold_the_floor_forever() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    assert!(sends(&s.push_notification("n1", "done", t)).is_empty());
    assert_eq!(s.next_deadline(), Some(t + responses::STALL));
    let out = s.poll(t + responses::STALL);
    assert_eq!(system_texts(&out), ["done"]);
}

#[test]
fn deadlines_are_never_in_the_past() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    s.set_task_table("x", t);
    s.set_key_held(true, t);
    let mut now = t;
    for _ in 0..200 {
        match s.next_deadline() {
            Some(d) => {
                assert!(d > now);
                now = d;
                s.poll(now);
            }
            None => break,
        }
    }
    assert!(now < t + secs(4000), "deadlines converge");
}

#[test]
fn unknown_events_change_nothing() {
    let (mut s, t) = ready();
    for ty in ["response.content_part.added", "rate_limits.updated", "conversation.created", "response.audio.delta"] {
        assert!(s.on_server_event(simple(ty), t).is_empty());
    }
    assert!(s.floor_free(t));
}

// ---- 2.x models: several items per response, refused transcription ----

fn item_added(response_id: &str, item: Value) -> ServerEvent {
    ev(json!({"type":"response.output_item.added","response_id":response_id,"output_index":0,"item":item}))
}

fn args_done_in(response_id: &str, call_id: &str, name: &str) -> ServerEvent {
    ev(json!({"type":"response.function_call_arguments.done","response_id":response_id,"item_id":call_id,
        "output_index":1,"call_id":call_id,"name":name,"arguments":"{}"}))
}

#[test]
fn preamble_two_calls_and_a_final_message_get_one_response_create() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    // The preamble, spoken before the calls.
    s.on_server_event(
        item_added("r1", json!({"id":"m1","type":"message","role":"assistant","phase":"commentary","content":[]})),
        t,
    );
    let out = s.on_server_event(
        ev(json!({"type":"response.output_audio_transcript.done","response_id":"r1","item_id":"m1",
            "transcript":"Let me check both."})),
        t,
    );
    assert_eq!(
        out,
        [Output::AssistantText {
            item_id: "m1".into(),
            text: "Let me check both.".into(),
            phase: Some("commentary".into())
        }]
    );
    // Two calls, each dispatched once (the item.done describing them again dispatches nothing).
    let mut calls = dispatched(&s.on_server_event(args_done_in("r1", "c1", "list_tasks"), t));
    calls.extend(dispatched(&s.on_server_event(args_done_in("r1", "c2", "get_task_result"), t)));
    assert_eq!(calls, ["c1", "c2"]);
    assert!(dispatched(&s.on_server_event(item_done_call("c1"), t)).is_empty());
    assert!(dispatched(&s.on_server_event(args_done_in("r1", "c2", "get_task_result"), t)).is_empty());
    // Each answered with its own output; no response.create while the response is active.
    let out = s.on_tool_result("c1", r#"{"tasks":[]}"#, t);
    assert_eq!((sends(&out).len(), creates(&out)), (1, 0));
    // The final message of the same response.
    s.on_server_event(
        item_added("r1", json!({"id":"m2","type":"message","role":"assistant","phase":"final_answer","content":[]})),
        t,
    );
    let out = s.on_server_event(
        ev(json!({"type":"response.output_audio_transcript.done","response_id":"r1","item_id":"m2","transcript":"One moment."})),
        t,
    );
    assert!(matches!(&out[..], [Output::AssistantText { phase: Some(p), .. }] if p == "final_answer"));
    // response.done while c2 is still unanswered: still no create.
    assert_eq!(creates(&s.on_server_event(resp_done("r1", "completed"), t)), 0);
    // The last answer brings exactly one.
    let out = s.on_tool_result("c2", r#"{"status":"ok"}"#, t);
    assert_eq!(creates(&out), 1);
    let fco: Vec<_> = sends(&out)
        .into_iter()
        .filter(|e| matches!(e, ClientEvent::ConversationItemCreate { item: Item::FunctionCallOutput { .. }, .. }))
        .collect();
    assert_eq!(fco.len(), 1, "c2's own output");
    assert_eq!(creates(&s.poll(t + secs(10))), 0, "and never a second");
}

#[test]
fn calls_answered_before_done_get_one_create_after_done() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    for c in ["c1", "c2", "c3"] {
        let d = dispatched(&s.on_server_event(args_done_in("r1", c, "list_tasks"), t));
        assert_eq!(d, [c]);
        assert_eq!(creates(&s.on_tool_result(c, "{}", t)), 0);
    }
    assert_eq!(creates(&s.on_server_event(resp_done("r1", "completed"), t)), 1);
}

#[test]
fn barge_in_truncates_the_item_being_heard() {
    let (mut s, t) = ready();
    s.on_server_event(resp_created("r1"), t);
    for item in ["pre", "final"] {
        s.on_server_event(
            ev(json!({"type":"response.output_audio.delta","response_id":"r1","item_id":item,"delta":"AQD+/w=="})),
            t,
        );
    }
    s.set_audio_playing(true, t);
    // The player was still in the preamble, 350 ms into it.
    let out = s.barge_in(Some(("pre".into(), 350)), t);
    assert!(sends(&out).contains(&&ClientEvent::ConversationItemTruncate {
        item_id: "pre".into(),
        content_index: 0,
        audio_end_ms: 350
    }));
}

fn refusal() -> ServerEvent {
    ev(json!({"type":"error","event_id":"e","error":{"type":"invalid_request_error","code":"invalid_value",
        "message":"Model 'gpt-transcribe' is not supported for input transcription in realtime sessions.",
        "param":"session.audio.input.transcription.model","event_id":"ptt_su_1"}}))
}

#[test]
fn a_refused_transcription_model_keeps_the_session_and_transcribes_out_of_band() {
    let (mut s, t) = ready();
    let out = s.on_server_event(refusal(), t);
    assert!(s.is_ready(), "the session stays up");
    assert!(s.transcription_refused_by_server());
    let update = sends(&out);
    assert_eq!(update.len(), 1);
    let j: Value = serde_json::from_str(&update[0].to_json()).expect("json");
    assert_eq!(j["type"], "session.update");
    assert!(j["session"]["audio"]["input"].get("transcription").is_none(), "{j}");
    assert_eq!(
        j["session"]["tools"].as_array().map(Vec::len),
        Some(crate::realtime::tools::NAMES.len()),
        "the whole update again"
    );
    assert!(out.iter().any(|o| matches!(o, Output::TranscriptionRefused { model, .. } if model == "gpt-transcribe")));
    // A second refusal (of the same update, echoed late) does not loop.
    assert!(sends(&s.on_server_event(refusal(), t)).is_empty());
    // The user's turn is committed: an out-of-band transcription of it, which conflicts with nothing.
    s.on_server_event(resp_created("r_conv"), t);
    let out = s.on_server_event(ev(json!({"type":"input_audio_buffer.committed","item_id":"u1"})), t);
    let req: Value = serde_json::from_str(&sends(&out)[0].to_json()).expect("json");
    assert_eq!(req["response"]["conversation"], "none");
    assert_eq!(req["response"]["input"][0]["id"], "u1");
    // Its events are not the conversation's: no assistant text, and its done does not end r_conv.
    let oob = |t: &str, extra: Value| {
        let mut v = json!({"type": t, "response_id": "r_tr"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        ev(v)
    };
    s.on_server_event(
        ev(json!({"type":"response.created","response":{"id":"r_tr","conversation_id":null,
            "metadata":{"ptt":"transcribe","item_id":"u1"}}})),
        t,
    );
    assert!(s.on_server_event(oob("response.output_text.delta", json!({"item_id":"x","delta":"start"})), t).is_empty());
    assert!(
        s.on_server_event(oob("response.output_text.done", json!({"item_id":"x","text":"start a task"})), t).is_empty()
    );
    let out = s.on_server_event(
        ev(json!({"type":"response.done","response":{"id":"r_tr","status":"completed",
            "metadata":{"ptt":"transcribe","item_id":"u1"},
            "output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"start a task"}]}]}})),
        t,
    );
    assert_eq!(out, [Output::UserTranscript { item_id: "u1".into(), text: "start a task".into() }]);
    assert!(s.response_active(), "the conversation's response is still active");
    // The ring has the user's turn: it re-seeds the next session.
    s.on_closed(t);
    s.on_connected(t, UNIX0);
    let out = s.on_server_event(created("sess_2", 3600), t);
    let sent = sends(&out);
    let j: Value = serde_json::from_str(&sent[0].to_json()).expect("json");
    assert!(j["session"]["audio"]["input"].get("transcription").is_none(), "still off after a reconnect");
    assert!(system_texts(&out).iter().any(|t| t.contains("start a task")), "{out:?}");
}

#[test]
fn a_transcription_failure_naming_the_model_switches_to_the_fallback() {
    let (mut s, t) = ready();
    let out = s.on_server_event(
        ev(json!({"type":"conversation.item.input_audio_transcription.failed","item_id":"u7","content_index":0,
            "error":{"type":"invalid_request_error","code":"model_not_found","message":"The model gpt-transcribe does not exist"}})),
        t,
    );
    assert!(s.is_ready() && s.transcription_refused_by_server());
    let texts: Vec<String> = sends(&out).iter().map(|e| e.to_json()).collect();
    assert!(texts[0].contains("session.update"));
    assert!(texts[1].contains(r#""id":"u7""#), "the failed turn is transcribed out of band: {texts:?}");
    // Other failures (noise, a short clip) change nothing.
    let (mut s, t) = ready();
    let out = s.on_server_event(
        ev(json!({"type":"conversation.item.input_audio_transcription.failed","item_id":"u8",
            "error":{"type":"server_error","code":null,"message":"Audio too short"}})),
        t,
    );
    assert!(out.is_empty() && !s.transcription_refused_by_server());
}

#[test]
fn other_errors_and_text_mode_do_not_turn_transcription_off() {
    let (mut s, t) = ready();
    s.on_server_event(error("invalid_value", Some("ptt_rc_9")), t);
    assert!(!s.transcription_refused_by_server());
    let cfg = SessionConfig { text_mode: true, ..SessionConfig::default() };
    let (mut s, t) = ready_with(cfg);
    assert!(sends(&s.on_server_event(refusal(), t)).is_empty());
    assert!(!s.transcription_refused_by_server());
}

// ---- conversation manners: quiet mode, catch_up, progress ----

fn function_outputs(out: &[Output]) -> Vec<(String, Value)> {
    sends(out)
        .iter()
        .filter_map(|e| {
            let v = serde_json::to_value(e).ok()?;
            (v["item"]["type"] == "function_call_output").then(|| {
                let output = serde_json::from_str(v["item"]["output"].as_str().unwrap_or("")).unwrap_or(Value::Null);
                (v["item"]["call_id"].as_str().unwrap_or("").to_owned(), output)
            })
        })
        .collect()
}

#[test]
fn quiet_mode_holds_results_and_questions_and_offers_them_when_it_ends() {
    let (mut s, t) = ready();
    assert!(s.set_quiet(true, t).is_empty());
    let out = s.push_notification("t1", "[task t1 'a' finished after 1 second: ok]", t);
    assert!(sends(&out).is_empty(), "quiet: nothing is said");
    let out = s.push_question("ask:t2:0", "[task t2 wants to run: ls]", t);
    assert!(sends(&out).is_empty());
    assert!(sends(&s.push_progress("progress:1:t3", "[progress: t3]", t)).is_empty());
    assert_eq!(s.waiting(), 2);
    assert!(s.pending_notifications().iter().all(|id| !id.starts_with("progress")), "no progress while quiet");
    // Off: the question is asked at once; the result is offered, not said.
    let out = s.set_quiet(false, t);
    assert_eq!(system_texts(&out), ["[task t2 wants to run: ls]"]);
    assert_eq!(creates(&out), 1);
    s.on_server_event(resp_created("r1"), t);
    let out = s.on_server_event(resp_done("r1", "completed"), t);
    assert_eq!(delivered(&out), ["ask:t2:0"]);
    let offer = system_texts(&out);
    assert_eq!(offer.len(), 1, "{out:?}");
    assert!(offer[0].contains("1 task result") && offer[0].contains("catch_up"), "{}", offer[0]);
    s.on_server_event(resp_created("r2"), t);
    let out = s.on_server_event(resp_done("r2", "completed"), t);
    assert_eq!(delivered(&out), ["offer:1"], "the offer (`Live` marks nothing announced by it)");
    assert!(system_texts(&out).is_empty(), "the result waits for catch_up");
    assert_eq!(s.waiting(), 1);
}

#[test]
fn catch_up_answers_at_once_oldest_first_and_marks_heard_only_when_its_response_is_done() {
    let (mut s, t) = ready();
    s.set_quiet(true, t);
    s.push_notification("t1", "[task t1 ended]", t);
    s.push_question("ask:t2:0", "[task t2 asks]", t);
    s.push_notification("t3", "[task t3 ended]", t);
    s.on_server_event(resp_created("r1"), t);
    assert_eq!(dispatched(&s.on_server_event(args_done("c1", "catch_up"), t)), ["c1"]);
    let (output, out) = s.catch_up("c1", t);
    let outputs = function_outputs(&out);
    assert_eq!(outputs.len(), 1, "answered at once");
    let value: Value = serde_json::from_str(&output.expect("current call")).expect("JSON");
    assert_eq!(outputs[0].1, value);
    let texts: Vec<&str> =
        value["items"].as_array().expect("items").iter().filter_map(|i| i["text"].as_str()).collect();
    assert_eq!(texts, ["[task t1 ended]", "[task t2 asks]", "[task t3 ended]"], "oldest first");
    assert_eq!(value["items"][1]["kind"], "question");
    assert_eq!(s.waiting(), 0);
    // The response carrying the call ends; ours speaks the output; only its done marks them heard.
    let out = s.on_server_event(resp_done("r1", "completed"), t);
    assert_eq!(creates(&out), 1);
    assert!(delivered(&out).is_empty());
    s.on_server_event(resp_created("r2"), t);
    let out = s.on_server_event(resp_done("r2", "completed"), t);
    assert_eq!(delivered(&out), ["t1", "ask:t2:0", "t3"]);
    // Asked again: nothing was missed.
    s.on_server_event(resp_created("r3"), t);
    s.on_server_event(args_done("c2", "catch_up"), t);
    let (output, _) = s.catch_up("c2", t);
    let value: Value = serde_json::from_str(&output.expect("current")).expect("JSON");
    assert_eq!(value["items"], json!([]));
}

#[test]
fn a_close_before_the_catch_up_response_is_done_says_them_again_once() {
    let (mut s, t) = ready();
    s.set_quiet(true, t);
    s.push_notification("t1", "[task t1 ended]", t);
    s.on_server_event(resp_created("r1"), t);
    s.on_server_event(args_done("c1", "catch_up"), t);
    let (output, _) = s.catch_up("c1", t);
    assert!(output.is_some_and(|o| o.contains("[task t1 ended]")));
    s.on_closed(t);
    s.on_connected(t, UNIX0);
    let out = s.on_server_event(created("sess_2", 3600), t);
    let said: Vec<String> = system_texts(&out).into_iter().filter(|t| t.starts_with("[task")).collect();
    assert_eq!(said, Vec::<String>::new(), "still quiet: not said on its own");
    let out = s.set_quiet(false, t);
    assert_eq!(system_texts(&out), ["[task t1 ended]"], "asked for once: said like any notification");
    s.on_server_event(resp_created("r2"), t);
    assert_eq!(delivered(&s.on_server_event(resp_done("r2", "completed"), t)), ["t1"]);
}

#[test]
fn progress_waits_for_results_and_the_floor_and_is_replaced_not_doubled() {
    let (mut s, t) = ready();
    s.set_key_held(true, t);
    assert!(sends(&s.push_progress("progress:1:t1", "[progress: t1 runs]", t)).is_empty(), "key held");
    s.push_notification("t2", "[task t2 ended]", t);
    s.push_progress("progress:2:t1,t3", "[progress: t1 and t3 run]", t);
    assert_eq!(s.progress_item(), Some(("progress:2:t1,t3".into(), false)));
    let out = s.set_key_held(false, t);
    assert_eq!(system_texts(&out), ["[task t2 ended]"], "the result first");
    s.on_server_event(resp_created("r1"), t);
    let out = s.on_server_event(resp_done("r1", "completed"), t);
    assert_eq!(system_texts(&out), ["[progress: t1 and t3 run]"], "one item for both, once");
    assert_eq!(s.progress_item(), Some(("progress:2:t1,t3".into(), true)));
    s.on_server_event(resp_created("r2"), t);
    assert_eq!(delivered(&s.on_server_event(resp_done("r2", "completed"), t)), ["progress:2:t1,t3"]);
    assert_eq!(s.progress_item(), None);
}

#[test]
fn a_reply_is_awaited_from_a_create_or_a_commit_until_the_server_is_heard_from() {
    let (mut s, t) = ready();
    assert_eq!(s.reply_awaited_since(), None, "session.update owes us nothing");
    s.send_user_text("hello", t + secs(1));
    assert_eq!(s.reply_awaited_since(), Some(t + secs(1)), "the text's response.create");
    s.on_server_event(resp_created("r1"), t + secs(2));
    assert_eq!(s.reply_awaited_since(), None, "the server answered");
    s.on_server_event(resp_done("r1", "completed"), t + secs(3));
    assert_eq!(s.reply_awaited_since(), None);
    // A committed push-to-talk turn.
    let mut s = ready_with(SessionConfig { turn: Turn::Ptt, ..SessionConfig::default() }).0;
    s.commit_user_audio(t + secs(4));
    assert_eq!(s.reply_awaited_since(), Some(t + secs(4)));
    s.on_closed(t + secs(5));
    assert_eq!(s.reply_awaited_since(), None, "a close forgets it");
}
