//! Server events: what the Realtime API sends, parsed totally.
//!
//! Why parsing is "total" and lenient: the socket is input from the outside world. The live server sends
//! fields the spec does not list (`obfuscation` on every delta), `null` where the spec says object or string
//! (`status_details`, `usage`, `transcription`, `transcript`), and new event types appear over time. None of
//! that may crash or wedge the daemon's loop, so:
//!
//! - [`ServerEvent::parse`] never panics. Bad JSON, a non-object, or a missing/non-string `type` is an `Err`.
//! - An unknown `type` is `Ok(ServerEvent::Unknown { type_ })`, not an error: the caller logs it at debug.
//! - Unknown fields are ignored; missing fields and `null` take their default (empty string, empty list,
//!   `None`). The session machine decides what an empty `call_id` means (it ignores such a call).
//! - A field of the wrong JSON type (a number where a string belongs) is an `Err` for that frame only.
//!   The exception is `error.code`, read leniently: missing a fatal code would mean a retry storm.
//!
//! Only the events the client acts on are typed; everything else (content parts, argument deltas, MCP,
//! WebRTC buffers, …) lands in `Unknown` on purpose, so a shape change there cannot break a frame we ignore.

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value;
use std::fmt;

/// Why a frame could not be turned into a [`ServerEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not JSON at all (or nested deeper than serde_json's recursion limit).
    Json(String),
    /// JSON, but not an object.
    NotAnObject,
    /// An object without a string `type`.
    MissingType,
    /// A known `type` whose fields have the wrong JSON types.
    Shape { type_: String, message: String },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Json(m) => write!(f, "not JSON: {m}"),
            ParseError::NotAnObject => f.write_str("not a JSON object"),
            ParseError::MissingType => f.write_str("no string \"type\" field"),
            ParseError::Shape { type_, message } => write!(f, "bad {type_} event: {message}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A server event the client understands, or `Unknown`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServerEvent {
    SessionCreated(SessionInfo),
    SessionUpdated(SessionInfo),
    Error(ErrorInfo),
    ResponseCreated(ResponseInfo),
    ResponseDone(ResponseInfo),
    OutputItemAdded(OutputItemEvent),
    OutputItemDone(OutputItemEvent),
    FunctionCallArgumentsDone(FunctionCallArgumentsDone),
    OutputTextDelta(TextDelta),
    OutputTextDone(TextDone),
    OutputAudioDelta(AudioDelta),
    OutputAudioDone(AudioDone),
    OutputAudioTranscriptDelta(TextDelta),
    OutputAudioTranscriptDone(TranscriptDone),
    SpeechStarted(SpeechStarted),
    SpeechStopped(SpeechStopped),
    InputAudioBufferCommitted(Committed),
    InputAudioBufferCleared,
    ConversationItemAdded(ConversationItemEvent),
    ConversationItemDone(ConversationItemEvent),
    /// Legacy name, still documented; handled like `ConversationItemAdded`.
    ConversationItemCreated(ConversationItemEvent),
    ConversationItemTruncated(ItemTruncated),
    InputAudioTranscriptionCompleted(InputTranscription),
    InputAudioTranscriptionFailed(InputTranscriptionFailed),
    RateLimitsUpdated(RateLimits),
    /// Any other `type`; kept so the caller can log it.
    Unknown {
        type_: String,
    },
}

impl ServerEvent {
    /// Parses one text frame. Never panics; see the module docs for what is tolerated.
    pub(crate) fn parse(text: &str) -> Result<ServerEvent, ParseError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(ParseError::NotAnObject);
        };
        let type_ = match map.get("type") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ParseError::MissingType),
        };
        let v = Value::Object(map);
        let t = type_.as_str();
        Ok(match t {
            "session.created" => ServerEvent::SessionCreated(de::<SessionEvent>(v, t)?.session),
            "session.updated" => ServerEvent::SessionUpdated(de::<SessionEvent>(v, t)?.session),
            "error" => ServerEvent::Error(de::<ErrorEvent>(v, t)?.error),
            "response.created" => ServerEvent::ResponseCreated(de::<ResponseEvent>(v, t)?.response),
            "response.done" => ServerEvent::ResponseDone(de::<ResponseEvent>(v, t)?.response),
            "response.output_item.added" => ServerEvent::OutputItemAdded(de(v, t)?),
            "response.output_item.done" => ServerEvent::OutputItemDone(de(v, t)?),
            "response.function_call_arguments.done" => ServerEvent::FunctionCallArgumentsDone(de(v, t)?),
            "response.output_text.delta" => ServerEvent::OutputTextDelta(de(v, t)?),
            "response.output_text.done" => ServerEvent::OutputTextDone(de(v, t)?),
            "response.output_audio.delta" => ServerEvent::OutputAudioDelta(de(v, t)?),
            "response.output_audio.done" => ServerEvent::OutputAudioDone(de(v, t)?),
            "response.output_audio_transcript.delta" => ServerEvent::OutputAudioTranscriptDelta(de(v, t)?),
            "response.output_audio_transcript.done" => ServerEvent::OutputAudioTranscriptDone(de(v, t)?),
            "input_audio_buffer.speech_started" => ServerEvent::SpeechStarted(de(v, t)?),
            "input_audio_buffer.speech_stopped" => ServerEvent::SpeechStopped(de(v, t)?),
            "input_audio_buffer.committed" => ServerEvent::InputAudioBufferCommitted(de(v, t)?),
            "input_audio_buffer.cleared" => ServerEvent::InputAudioBufferCleared,
            "conversation.item.added" => ServerEvent::ConversationItemAdded(de(v, t)?),
            "conversation.item.done" => ServerEvent::ConversationItemDone(de(v, t)?),
            "conversation.item.created" => ServerEvent::ConversationItemCreated(de(v, t)?),
            "conversation.item.truncated" => ServerEvent::ConversationItemTruncated(de(v, t)?),
            "conversation.item.input_audio_transcription.completed" => {
                ServerEvent::InputAudioTranscriptionCompleted(de(v, t)?)
            }
            "conversation.item.input_audio_transcription.failed" => {
                ServerEvent::InputAudioTranscriptionFailed(de(v, t)?)
            }
            "rate_limits.updated" => ServerEvent::RateLimitsUpdated(de(v, t)?),
            _ => ServerEvent::Unknown { type_ },
        })
    }

    /// The wire `type` string, for logs.
    pub(crate) fn type_name(&self) -> &str {
        match self {
            ServerEvent::SessionCreated(_) => "session.created",
            ServerEvent::SessionUpdated(_) => "session.updated",
            ServerEvent::Error(_) => "error",
            ServerEvent::ResponseCreated(_) => "response.created",
            ServerEvent::ResponseDone(_) => "response.done",
            ServerEvent::OutputItemAdded(_) => "response.output_item.added",
            ServerEvent::OutputItemDone(_) => "response.output_item.done",
            ServerEvent::FunctionCallArgumentsDone(_) => "response.function_call_arguments.done",
            ServerEvent::OutputTextDelta(_) => "response.output_text.delta",
            ServerEvent::OutputTextDone(_) => "response.output_text.done",
            ServerEvent::OutputAudioDelta(_) => "response.output_audio.delta",
            ServerEvent::OutputAudioDone(_) => "response.output_audio.done",
            ServerEvent::OutputAudioTranscriptDelta(_) => "response.output_audio_transcript.delta",
            ServerEvent::OutputAudioTranscriptDone(_) => "response.output_audio_transcript.done",
            ServerEvent::SpeechStarted(_) => "input_audio_buffer.speech_started",
            ServerEvent::SpeechStopped(_) => "input_audio_buffer.speech_stopped",
            ServerEvent::InputAudioBufferCommitted(_) => "input_audio_buffer.committed",
            ServerEvent::InputAudioBufferCleared => "input_audio_buffer.cleared",
            ServerEvent::ConversationItemAdded(_) => "conversation.item.added",
            ServerEvent::ConversationItemDone(_) => "conversation.item.done",
            ServerEvent::ConversationItemCreated(_) => "conversation.item.created",
            ServerEvent::ConversationItemTruncated(_) => "conversation.item.truncated",
            ServerEvent::InputAudioTranscriptionCompleted(_) => "conversation.item.input_audio_transcription.completed",
            ServerEvent::InputAudioTranscriptionFailed(_) => "conversation.item.input_audio_transcription.failed",
            ServerEvent::RateLimitsUpdated(_) => "rate_limits.updated",
            ServerEvent::Unknown { type_ } => type_,
        }
    }
}

fn de<T: DeserializeOwned>(v: Value, type_: &str) -> Result<T, ParseError> {
    serde_json::from_value(v).map_err(|e| ParseError::Shape { type_: type_.to_owned(), message: e.to_string() })
}

/// `null` (or absent, with `#[serde(default)]`) becomes `T::default()`; any other wrong type is an error.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// For `error.code`: a string, or any scalar rendered as text; objects and arrays read as absent.
fn lenient_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// An object, or empty for anything else.
fn lenient_object<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Map<String, Value>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    })
}

#[derive(Deserialize)]
struct SessionEvent {
    #[serde(default, deserialize_with = "nullable")]
    session: SessionInfo,
}

/// The parts of the session object (`session.created/updated`) the client uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SessionInfo {
    #[serde(deserialize_with = "nullable")]
    pub(crate) id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) model: String,
    /// Unix seconds.
    pub(crate) expires_at: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub(crate) output_modalities: Vec<String>,
}

#[derive(Deserialize)]
struct ErrorEvent {
    #[serde(default, deserialize_with = "nullable")]
    error: ErrorInfo,
}

/// `error.error`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorInfo {
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub(crate) type_: String,
    #[serde(deserialize_with = "lenient_code")]
    pub(crate) code: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    /// The client `event_id` of the event that caused the error, when it had one.
    pub(crate) event_id: Option<String>,
}

#[derive(Deserialize)]
struct ResponseEvent {
    #[serde(default, deserialize_with = "nullable")]
    response: ResponseInfo,
}

/// `response.created.response` / `response.done.response`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ResponseInfo {
    #[serde(deserialize_with = "nullable")]
    pub(crate) id: String,
    /// `in_progress`, `completed`, `cancelled`, `failed` or `incomplete`.
    #[serde(deserialize_with = "nullable")]
    pub(crate) status: String,
    pub(crate) status_details: Option<StatusDetails>,
    #[serde(deserialize_with = "nullable")]
    pub(crate) output: Vec<Item>,
    /// The client's `metadata` of `response.create`, echoed (out-of-band responses are tagged with it).
    /// Read leniently: a malformed `metadata` must not cost the frame (a lost `response.done` holds the
    /// floor until the stall watchdog).
    #[serde(deserialize_with = "lenient_object")]
    pub(crate) metadata: serde_json::Map<String, Value>,
}

impl ResponseInfo {
    /// A string value of `metadata`.
    pub(crate) fn tag(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    /// The first text of the response's output (an out-of-band text response's answer).
    pub(crate) fn first_text(&self) -> Option<&str> {
        self.output.iter().find_map(Item::first_text)
    }
}

/// `response.status_details` (null when completed).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatusDetails {
    #[serde(rename = "type")]
    pub(crate) type_: Option<String>,
    /// `turn_detected`, `client_cancelled`, `max_output_tokens`, `content_filter`.
    pub(crate) reason: Option<String>,
    pub(crate) error: Option<Value>,
}

/// A conversation item as the server reports it. Flat and lenient on purpose: one struct reads messages,
/// function calls, function call outputs and item kinds the client does not know.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Item {
    #[serde(deserialize_with = "nullable")]
    pub(crate) id: String,
    /// `message`, `function_call`, `function_call_output`, …
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub(crate) type_: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) role: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) status: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) call_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) name: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) arguments: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) output: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) content: Vec<ItemContent>,
    /// 2.x assistant messages: `commentary` (a preamble before tool calls) or `final_answer`. Not in
    /// OpenAI's spec yet (documented by Azure), so optional and never required.
    pub(crate) phase: Option<String>,
}

impl Item {
    /// The first text of the item (`text`, else `transcript`), if any.
    pub(crate) fn first_text(&self) -> Option<&str> {
        self.content.iter().find_map(|c| c.text.as_deref().or(c.transcript.as_deref()))
    }
}

/// One content part of an item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ItemContent {
    /// `input_text`, `input_audio`, `output_text`, `output_audio`, …
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub(crate) type_: String,
    pub(crate) text: Option<String>,
    pub(crate) transcript: Option<String>,
}

/// `response.output_item.added/done`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OutputItemEvent {
    #[serde(deserialize_with = "nullable")]
    pub(crate) response_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) output_index: u64,
    #[serde(deserialize_with = "nullable")]
    pub(crate) item: Item,
}

/// `response.function_call_arguments.done`: the one place a tool call is dispatched from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FunctionCallArgumentsDone {
    #[serde(deserialize_with = "nullable")]
    pub(crate) response_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) output_index: u64,
    #[serde(deserialize_with = "nullable")]
    pub(crate) call_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) name: String,
    /// A JSON document as a string, exactly as the model wrote it (may be invalid JSON).
    #[serde(deserialize_with = "nullable")]
    pub(crate) arguments: String,
}

/// `response.output_text.delta` and `response.output_audio_transcript.delta`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TextDelta {
    #[serde(deserialize_with = "nullable")]
    pub(crate) response_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) delta: String,
}

/// `response.output_text.done`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TextDone {
    #[serde(deserialize_with = "nullable")]
    pub(crate) response_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) text: String,
}

/// `response.output_audio_transcript.done`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TranscriptDone {
    #[serde(deserialize_with = "nullable")]
    pub(crate) response_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) transcript: String,
}

/// `response.output_audio.delta`: base64 PCM16 little-endian, 24 kHz mono.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AudioDelta {
    #[serde(deserialize_with = "nullable")]
    pub(crate) response_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) delta: String,
}

impl AudioDelta {
    /// Decodes the samples. A trailing odd byte is dropped; bad base64 is an error message.
    pub(crate) fn decode_pcm(&self) -> Result<Vec<i16>, String> {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(self.delta.as_bytes()).map_err(|e| e.to_string())?;
        Ok(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
    }
}

/// `response.output_audio.done`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AudioDone {
    #[serde(deserialize_with = "nullable")]
    pub(crate) response_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
}

/// `input_audio_buffer.speech_started`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SpeechStarted {
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) audio_start_ms: u64,
}

/// `input_audio_buffer.speech_stopped`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SpeechStopped {
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) audio_end_ms: u64,
}

/// `input_audio_buffer.committed`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Committed {
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    pub(crate) previous_item_id: Option<String>,
}

/// `conversation.item.added/done/created`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConversationItemEvent {
    pub(crate) previous_item_id: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub(crate) item: Item,
}

/// `conversation.item.truncated`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ItemTruncated {
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) content_index: u64,
    #[serde(deserialize_with = "nullable")]
    pub(crate) audio_end_ms: u64,
}

/// `conversation.item.input_audio_transcription.completed` (may arrive after the response events).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InputTranscription {
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) content_index: u64,
    #[serde(deserialize_with = "nullable")]
    pub(crate) transcript: String,
    /// `gpt-transcribe` only: `[{"code":"en"}]`, possibly empty.
    #[serde(deserialize_with = "nullable")]
    pub(crate) languages: Vec<Language>,
}

/// One entry of `languages`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Language {
    #[serde(deserialize_with = "nullable")]
    pub(crate) code: String,
}

/// `conversation.item.input_audio_transcription.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InputTranscriptionFailed {
    #[serde(deserialize_with = "nullable")]
    pub(crate) item_id: String,
    #[serde(deserialize_with = "nullable")]
    pub(crate) error: ErrorInfo,
}

/// `rate_limits.updated`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RateLimits {
    #[serde(deserialize_with = "nullable")]
    pub(crate) rate_limits: Vec<RateLimit>,
}

/// One entry of `rate_limits`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RateLimit {
    #[serde(deserialize_with = "nullable")]
    pub(crate) name: String,
    pub(crate) limit: Option<u64>,
    pub(crate) remaining: Option<u64>,
    pub(crate) reset_seconds: Option<f64>,
}

/// Every server event type [`ServerEvent`] models (the rest parse as `Unknown`).
#[cfg(test)]
pub(crate) const TYPED_NAMES: &[&str] = &[
    "session.created",
    "session.updated",
    "error",
    "response.created",
    "response.done",
    "response.output_item.added",
    "response.output_item.done",
    "response.function_call_arguments.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "input_audio_buffer.cleared",
    "conversation.item.added",
    "conversation.item.done",
    "conversation.item.created",
    "conversation.item.truncated",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "rate_limits.updated",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> ServerEvent {
        ServerEvent::parse(s).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    #[test]
    fn session_created_reads_id_and_expiry() {
        let ev = ok(r#"{"type":"session.created","event_id":"e1","session":{"type":"realtime",
            "object":"realtime.session","id":"sess_1","model":"gpt-realtime","expires_at":1756324625,
            "audio":{"input":{"transcription":null,"noise_reduction":null}},"include":null}}"#);
        let ServerEvent::SessionCreated(s) = ev else { panic!("{ev:?}") };
        assert_eq!(s.id, "sess_1");
        assert_eq!(s.expires_at, Some(1_756_324_625));
    }

    #[test]
    fn error_event_fields() {
        let ev = ok(r#"{"type":"error","event_id":"e","error":{"type":"invalid_request_error",
            "code":"session_expired","message":"bye","param":null,"event_id":null}}"#);
        assert_eq!(
            ev,
            ServerEvent::Error(ErrorInfo {
                type_: "invalid_request_error".into(),
                code: Some("session_expired".into()),
                message: "bye".into(),
                param: None,
                event_id: None,
            })
        );
        // A numeric code still reads.
        let ev = ok(r#"{"type":"error","error":{"type":"x","code":401,"message":"m"}}"#);
        let ServerEvent::Error(e) = ev else { panic!() };
        assert_eq!(e.code.as_deref(), Some("401"));
    }

    #[test]
    fn response_done_with_function_call_and_nulls() {
        let ev = ok(r#"{"type":"response.done","event_id":"e","response":{"object":"realtime.response",
            "id":"resp_1","status":"completed","status_details":null,"usage":null,"metadata":null,
            "output":[{"id":"item_1","type":"function_call","status":"completed","name":"list_tasks",
            "call_id":"call_1","arguments":"{}"},{"id":"item_2","type":"message","role":"assistant",
            "content":[{"type":"output_audio","transcript":null}]}]}}"#);
        let ServerEvent::ResponseDone(r) = ev else { panic!() };
        assert_eq!(r.id, "resp_1");
        assert_eq!(r.status, "completed");
        assert_eq!(r.output.len(), 2);
        assert_eq!(r.output[0].call_id, "call_1");
        assert_eq!(r.output[1].first_text(), None);
    }

    #[test]
    fn phases_metadata_and_languages_are_read() {
        let ev = ok(r#"{"type":"response.output_item.added","response_id":"r","output_index":0,
            "item":{"id":"i1","type":"message","role":"assistant","phase":"commentary","content":[]}}"#);
        let ServerEvent::OutputItemAdded(o) = ev else { panic!() };
        assert_eq!(o.item.phase.as_deref(), Some("commentary"));
        let ev = ok(r#"{"type":"response.done","response":{"id":"r","status":"completed","conversation_id":null,
            "metadata":{"ptt":"transcribe","item_id":"item_7"},"output":[{"type":"message","role":"assistant",
            "content":[{"type":"output_text","text":"hello there"}]}]}}"#);
        let ServerEvent::ResponseDone(r) = ev else { panic!() };
        assert_eq!(
            (r.tag("ptt"), r.tag("item_id"), r.first_text()),
            (Some("transcribe"), Some("item_7"), Some("hello there"))
        );
        let ev =
            ok(r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","content_index":0,
            "transcript":"hi","languages":[{"code":"en"}],"usage":{"type":"duration","seconds":1.5}}"#);
        let ServerEvent::InputAudioTranscriptionCompleted(t) = ev else { panic!() };
        assert_eq!(t.languages, [Language { code: "en".into() }]);
        let ev = ok(r#"{"type":"conversation.item.input_audio_transcription.failed","item_id":"i","content_index":0,
            "error":{"type":"invalid_request_error","code":"model_not_found","message":"no such model","param":null}}"#);
        let ServerEvent::InputAudioTranscriptionFailed(f) = ev else { panic!() };
        assert_eq!((f.item_id.as_str(), f.error.code.as_deref()), ("i", Some("model_not_found")));
    }

    #[test]
    fn function_call_arguments_done() {
        let ev = ok(r#"{"type":"response.function_call_arguments.done","event_id":"e","response_id":"r",
            "item_id":"i","output_index":0,"call_id":"call_9","name":"start_task",
            "arguments":"{\"task\":\"x\"}","obfuscation":"zz"}"#);
        let ServerEvent::FunctionCallArgumentsDone(c) = ev else { panic!() };
        assert_eq!((c.call_id.as_str(), c.name.as_str()), ("call_9", "start_task"));
        assert_eq!(c.arguments, r#"{"task":"x"}"#);
    }

    #[test]
    fn audio_delta_decodes() {
        let ev = ok(r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"AQD+/w=="}"#);
        let ServerEvent::OutputAudioDelta(a) = ev else { panic!() };
        assert_eq!(a.decode_pcm().unwrap(), vec![1, -2]);
        let bad = AudioDelta { delta: "!!!".into(), ..Default::default() };
        assert!(bad.decode_pcm().is_err());
    }

    #[test]
    fn every_typed_name_round_trips() {
        for &t in TYPED_NAMES {
            // Only the type: every field defaults.
            let ev = ok(&format!(r#"{{"type":"{t}"}}"#));
            assert_eq!(ev.type_name(), t);
            assert!(!matches!(ev, ServerEvent::Unknown { .. }), "{t}");
            // Every field null: still fine.
            let ev = ok(&format!(
                r#"{{"type":"{t}","session":null,"error":null,"response":null,"item":null,"call_id":null,
                "delta":null,"rate_limits":null,"item_id":null,"audio_end_ms":null}}"#
            ));
            assert_eq!(ev.type_name(), t);
        }
    }

    #[test]
    fn unknown_types_and_fields_are_tolerated() {
        assert_eq!(
            ok(r#"{"type":"response.content_part.added","part":{"type":"audio"}}"#),
            ServerEvent::Unknown { type_: "response.content_part.added".into() }
        );
        // Beta names are unknown to a GA client, not mistaken for GA events.
        assert!(matches!(ok(r#"{"type":"response.audio.delta","delta":"AA=="}"#), ServerEvent::Unknown { .. }));
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(matches!(ServerEvent::parse("{not json"), Err(ParseError::Json(_))));
        assert_eq!(ServerEvent::parse("[1,2]"), Err(ParseError::NotAnObject));
        assert_eq!(ServerEvent::parse(r#"{"a":1}"#), Err(ParseError::MissingType));
        assert_eq!(ServerEvent::parse(r#"{"type":7}"#), Err(ParseError::MissingType));
        assert!(matches!(
            ServerEvent::parse(r#"{"type":"response.function_call_arguments.done","call_id":5}"#),
            Err(ParseError::Shape { .. })
        ));
        assert!(matches!(
            ServerEvent::parse(r#"{"type":"response.done","response":"nope"}"#),
            Err(ParseError::Shape { .. })
        ));
        assert!(matches!(
            ServerEvent::parse(r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":-1}"#),
            Err(ParseError::Shape { .. })
        ));
        let deep = "[".repeat(100_000);
        assert!(ServerEvent::parse(&deep).is_err());
    }
}
