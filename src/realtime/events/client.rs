//! Client events: what `ptt` sends to the Realtime API, in the GA wire shape.
//!
//! Why typed structs instead of `json!` literals: every client event must validate against the official GA
//! schema (`tests/data/realtime-ga-events.schema.json`), and the beta shape (flat `modalities`, `voice`,
//! `input_audio_format`, top-level `turn_detection`) is rejected by the live server with
//! `beta_api_shape_disabled`. With one enum holding every event we can produce, the schema test can walk all
//! of them, and a beta field name cannot be typed by accident: there is no field for it.
//!
//! Optional fields are skipped when `None` (the API treats an absent field as "leave unchanged"), except
//! `audio.input.turn_detection`, which is tri-state: absent, `null` (push-to-talk) or a VAD object.

use base64::Engine as _;
use serde::Serialize;
use std::collections::BTreeMap;

/// Sample rate of every PCM stream on the wire (the GA API supports only 24 kHz for `audio/pcm`).
pub(crate) const PCM_RATE: u32 = 24_000;

/// One event sent to the server. Serialises to a JSON object with a `type` field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub(crate) enum ClientEvent {
    /// `session.update`: only the fields present are changed. `event_id` lets an `error` about the
    /// update (a refused transcription model) be matched to it.
    #[serde(rename = "session.update")]
    SessionUpdate {
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Boxed: it is by far the largest event, and `ClientEvent`s travel in every `Output`.
        session: Box<SessionParams>,
    },
    /// `input_audio_buffer.append`: base64 PCM16 little-endian, 24 kHz mono.
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend { audio: String },
    /// `input_audio_buffer.commit`: turns the buffer into a user item (push-to-talk release).
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioBufferCommit,
    /// `conversation.item.create`.
    #[serde(rename = "conversation.item.create")]
    ConversationItemCreate {
        item: Item,
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_item_id: Option<String>,
    },
    /// `conversation.item.truncate`: forget assistant audio the user never heard.
    #[serde(rename = "conversation.item.truncate")]
    ConversationItemTruncate { item_id: String, content_index: u32, audio_end_ms: u64 },
    /// `response.create`. `event_id` lets an `error` event be matched to the create that failed.
    #[serde(rename = "response.create")]
    ResponseCreate {
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<ResponseParams>,
    },
    /// `response.cancel`: without `response_id` cancels the in-progress default-conversation response.
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        #[serde(skip_serializing_if = "Option::is_none")]
        response_id: Option<String>,
    },
}

impl ClientEvent {
    /// The wire `type` string, for logs.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            ClientEvent::SessionUpdate { .. } => "session.update",
            ClientEvent::InputAudioBufferAppend { .. } => "input_audio_buffer.append",
            ClientEvent::InputAudioBufferCommit => "input_audio_buffer.commit",
            ClientEvent::ConversationItemCreate { .. } => "conversation.item.create",
            ClientEvent::ConversationItemTruncate { .. } => "conversation.item.truncate",
            ClientEvent::ResponseCreate { .. } => "response.create",
            ClientEvent::ResponseCancel { .. } => "response.cancel",
        }
    }

    /// The text frame to put on the socket.
    pub(crate) fn to_json(&self) -> String {
        // Serialising these types cannot fail (string keys only, no floats that could be NaN); the
        // fallback keeps even an impossible failure from panicking the daemon's loop.
        serde_json::to_string(self).unwrap_or_else(|e| {
            log::error!("cannot serialise {}: {e}", self.type_name());
            String::from("{}")
        })
    }

    /// `input_audio_buffer.append` from PCM16 samples (little-endian on the wire, whatever the host).
    pub(crate) fn append_pcm(samples: &[i16]) -> Self {
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        ClientEvent::InputAudioBufferAppend { audio: base64::engine::general_purpose::STANDARD.encode(bytes) }
    }

    /// A user text message (text mode).
    pub(crate) fn user_text(text: &str) -> Self {
        Self::message(Role::User, text)
    }

    /// A system message: notifications, the reconnect summary.
    pub(crate) fn system_text(text: &str) -> Self {
        Self::message(Role::System, text)
    }

    fn message(role: Role, text: &str) -> Self {
        ClientEvent::ConversationItemCreate {
            item: Item::Message { role, content: vec![ContentPart::InputText { text: text.to_owned() }] },
            previous_item_id: None,
        }
    }

    /// The answer to a function call.
    pub(crate) fn function_call_output(call_id: &str, output: &str) -> Self {
        ClientEvent::ConversationItemCreate {
            item: Item::FunctionCallOutput { call_id: call_id.to_owned(), output: output.to_owned() },
            previous_item_id: None,
        }
    }
}

/// Body of `session.update` (`RealtimeSessionCreateRequestGA`). `kind` is always `"realtime"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SessionParams {
    #[serde(rename = "type")]
    pub(crate) kind: SessionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output_modalities: Option<Vec<Modality>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instructions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) audio: Option<AudioConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tools: Option<Vec<FunctionTool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_choice: Option<String>,
    /// 2.x models only: a reasoning field sent to an older model gets the whole update refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reasoning: Option<Reasoning>,
    /// 2.x models only ("only supported by reasoning Realtime models").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) truncation: Option<Truncation>,
}

impl SessionParams {
    /// A params object that changes nothing but is valid (`type` is required).
    pub(crate) fn empty() -> Self {
        SessionParams {
            kind: SessionKind::Realtime,
            output_modalities: None,
            instructions: None,
            audio: None,
            tools: None,
            tool_choice: None,
            reasoning: None,
            parallel_tool_calls: None,
            truncation: None,
        }
    }
}

/// `session.reasoning` / `response.reasoning`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Reasoning {
    /// `minimal`, `low`, `medium`, `high` or `xhigh`.
    pub(crate) effort: String,
}

/// `session.truncation`: what the server drops when the context overflows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Truncation {
    /// `"auto"` (the server's default) or `"disabled"`.
    Mode(&'static str),
    /// `{"type":"retention_ratio","retention_ratio":r}`: keep this fraction of the conversation, so the
    /// next turns reuse the cached prefix instead of re-truncating every turn.
    RetentionRatio {
        #[serde(rename = "type")]
        kind: &'static str,
        retention_ratio: f64,
    },
}

impl Truncation {
    /// `retention_ratio` in (0, 1], else `"auto"`.
    pub(crate) fn from_ratio(ratio: f64) -> Truncation {
        if ratio > 0.0 && ratio <= 1.0 {
            Truncation::RetentionRatio { kind: "retention_ratio", retention_ratio: ratio }
        } else {
            Truncation::Mode("auto")
        }
    }
}

/// `session.type`. Only the speech-to-speech session is used; the transcription variant is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SessionKind {
    Realtime,
}

/// `output_modalities` entries. The API rejects both at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Modality {
    Text,
    Audio,
}

/// `session.audio`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AudioConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) input: Option<AudioInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<AudioOutput>,
}

/// `session.audio.input`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AudioInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<AudioFormat>,
    /// `None`: leave unchanged; `Some(None)`: `null` = push-to-talk; `Some(Some(_))`: VAD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) turn_detection: Option<Option<TurnDetection>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) transcription: Option<Transcription>,
}

/// `session.audio.output`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AudioOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<AudioFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) voice: Option<String>,
}

/// `RealtimeAudioFormats`; `ptt` only speaks PCM16 24 kHz.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AudioFormat {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) rate: u32,
}

impl AudioFormat {
    /// `{"type":"audio/pcm","rate":24000}`.
    pub(crate) fn pcm24k() -> Self {
        AudioFormat { kind: "audio/pcm".into(), rate: PCM_RATE }
    }
}

/// `audio.input.turn_detection` (non-null branch).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum TurnDetection {
    ServerVad {
        #[serde(skip_serializing_if = "Option::is_none")]
        threshold: Option<f32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        prefix_padding_ms: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        silence_duration_ms: Option<u32>,
        create_response: bool,
        interrupt_response: bool,
    },
    /// The model judges when the user has finished; `eagerness` `low|medium|high|auto`.
    SemanticVad { eagerness: String, create_response: bool, interrupt_response: bool },
}

impl TurnDetection {
    /// Server VAD with the server's defaults; it creates and interrupts responses itself.
    pub(crate) fn server_vad() -> Self {
        TurnDetection::ServerVad {
            threshold: None,
            prefix_padding_ms: None,
            silence_duration_ms: None,
            create_response: true,
            interrupt_response: true,
        }
    }

    /// Semantic VAD with this eagerness; it creates and interrupts responses itself.
    pub(crate) fn semantic_vad(eagerness: &str) -> Self {
        TurnDetection::SemanticVad { eagerness: eagerness.to_owned(), create_response: true, interrupt_response: true }
    }
}

/// `audio.input.transcription`: how user audio is transcribed (feeds the transcript ring).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Transcription {
    pub(crate) model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) language: Option<String>,
}

/// `RealtimeFunctionTool`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FunctionTool {
    #[serde(rename = "type")]
    pub(crate) kind: ToolKind,
    pub(crate) name: String,
    pub(crate) description: String,
    /// A JSON Schema object.
    pub(crate) parameters: serde_json::Value,
}

/// Tool `type`; only `"function"` (MCP tools are not used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ToolKind {
    Function,
}

/// Body of `response.create` (`RealtimeResponseCreateParams`): per-response overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub(crate) struct ResponseParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output_modalities: Option<Vec<Modality>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instructions: Option<String>,
    /// `"auto"` (default) or `"none"` (out-of-band).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) conversation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<BTreeMap<String, String>>,
    /// `"auto"`, `"none"` or `"required"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_choice: Option<String>,
    /// The context of an out-of-band response (instead of the default conversation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) input: Option<Vec<InputRef>>,
}

/// An entry of `response.input`: an item already in the conversation, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum InputRef {
    ItemReference { id: String },
}

/// An item for `conversation.item.create`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Item {
    Message { role: Role, content: Vec<ContentPart> },
    FunctionCallOutput { call_id: String, output: String },
}

/// Message role. Assistant messages are never injected (assistant audio cannot be, and text history goes
/// into the summary item instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    User,
    System,
}

/// Message content; user and system messages both use `input_text`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentPart {
    InputText { text: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn v(ev: &ClientEvent) -> Value {
        serde_json::from_str(&ev.to_json()).unwrap()
    }

    #[test]
    fn unit_events_are_bare_type_objects() {
        assert_eq!(v(&ClientEvent::InputAudioBufferCommit), json!({"type":"input_audio_buffer.commit"}));
        assert_eq!(v(&ClientEvent::ResponseCancel { response_id: None }), json!({"type":"response.cancel"}));
    }

    #[test]
    fn items_have_ga_shape() {
        assert_eq!(
            v(&ClientEvent::system_text("done")),
            json!({"type":"conversation.item.create","item":{"type":"message","role":"system",
                "content":[{"type":"input_text","text":"done"}]}})
        );
        assert_eq!(
            v(&ClientEvent::function_call_output("call_1", "{}")),
            json!({"type":"conversation.item.create","item":{"type":"function_call_output",
                "call_id":"call_1","output":"{}"}})
        );
    }

    #[test]
    fn turn_detection_is_tristate() {
        let mut input = AudioInput { format: None, turn_detection: None, transcription: None };
        assert_eq!(serde_json::to_value(&input).unwrap(), json!({}));
        input.turn_detection = Some(None);
        assert_eq!(serde_json::to_value(&input).unwrap(), json!({"turn_detection": null}));
        input.turn_detection = Some(Some(TurnDetection::server_vad()));
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"turn_detection": {"type":"server_vad","create_response":true,"interrupt_response":true}})
        );
    }

    #[test]
    fn append_pcm_is_little_endian_base64() {
        let ev = ClientEvent::append_pcm(&[1, -2]);
        assert_eq!(v(&ev), json!({"type":"input_audio_buffer.append","audio":"AQD+/w=="}));
    }
}
