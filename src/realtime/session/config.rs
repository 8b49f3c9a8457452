//! What a live session is asked to be, and the `session.update` events built from it.
//!
//! Why the task table is separate from the instructions: the instructions are fixed for the run (config
//! file), the table changes whenever a task starts, progresses or ends. Refreshing it sends an
//! instructions-only `session.update` (only present fields change), so the voice and turn settings are never
//! re-sent mid-session (the API refuses a voice change after the first audio output).
//!
//! Why the 2.x fields depend on the model: `reasoning` and `parallel_tool_calls` exist only for the
//! reasoning models (`gpt-realtime-2`, `-2.1`, `-2.1-mini`); sent to `gpt-realtime`, the server refuses the
//! whole update and ends the session. [`crate::models::takes_reasoning`] decides. `temperature` is never
//! sent (the GA API removed it). `truncation` is the retention-ratio form, so a long session drops a
//! slice of old turns at once and keeps its cached prefix for the turns after.

use crate::realtime::events::{
    AudioConfig, AudioFormat, AudioInput, AudioOutput, ClientEvent, FunctionTool, Modality, Reasoning, SessionParams,
    Transcription, Truncation, TurnDetection,
};
use std::time::Duration;

/// How the user's turns end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Server VAD: the mic streams; the server detects turns and creates responses itself.
    Vad,
    /// Push-to-talk: `turn_detection: null`; key release commits and asks for a response.
    Ptt,
    /// Semantic VAD (`low`, `medium`, `high` or `auto` eagerness): like `Vad`, but the model judges
    /// when the user has finished.
    SemanticVad { eagerness: &'static str },
}

impl Turn {
    /// The server detects turns and answers them by itself.
    pub(crate) fn is_vad(self) -> bool {
        matches!(self, Turn::Vad | Turn::SemanticVad { .. })
    }
}

/// Input to [`Session::new`](super::Session::new).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionConfig {
    /// The model. Chosen by the connection URL (`?model=`); not sent in `session.update`.
    pub(crate) model: String,
    /// The fixed system prompt; the task table is appended to it.
    pub(crate) instructions: String,
    /// `audio.output.voice` (ignored in text mode).
    pub(crate) voice: String,
    /// `output_modalities: ["text"]` instead of `["audio"]`.
    pub(crate) text_mode: bool,
    pub(crate) turn: Turn,
    pub(crate) tools: Vec<FunctionTool>,
    /// `audio.input.transcription.model`; `None` leaves transcription off (the ring then lacks user turns).
    pub(crate) transcription_model: Option<String>,
    /// Renew this long before `expires_at`.
    pub(crate) renew_margin: Duration,
    /// At most one task-table `session.update` per this interval.
    pub(crate) table_debounce: Duration,
    /// Turns kept for the reconnect summary.
    pub(crate) transcript_turns: usize,
    /// `session.reasoning.effort`, sent only when the model takes it.
    pub(crate) reasoning_effort: String,
    /// `parallel_tool_calls`, sent only when the model takes it.
    pub(crate) parallel_tool_calls: bool,
    /// `truncation`: a retention ratio in (0, 1], or 0 for `"auto"`.
    pub(crate) retention_ratio: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            model: crate::models::DEFAULT_LIVE_MODEL.into(),
            instructions: DEFAULT_INSTRUCTIONS.into(),
            voice: "marin".into(),
            text_mode: false,
            turn: Turn::Vad,
            tools: crate::realtime::tools::all(),
            transcription_model: Some(crate::models::DEFAULT_TRANSCRIBE_MODEL.into()),
            renew_margin: Duration::from_secs(5 * 60),
            table_debounce: Duration::from_secs(2),
            transcript_turns: 16,
            reasoning_effort: "low".into(),
            parallel_tool_calls: true,
            retention_ratio: 0.8,
        }
    }
}

/// Used when the config names no instructions file.
pub(crate) const DEFAULT_INSTRUCTIONS: &str = "You are a concise voice assistant that runs Claude Code tasks in \
the background for a developer. Start, list, inspect, cancel and continue tasks with your tools. A started \
task has done nothing yet: confirm the start in a few words and never invent results. When a system message \
reports that a task ended, tell the user its outcome in one or two sentences. A system message marked as \
progress says how a running task is doing: say it in one short sentence, and never describe the progress of a \
task beyond what such a message or list_tasks says. When the user wants quiet (\"quiet mode\", \"not now\"), \
call set_quiet with on true, confirm in a few words and stay silent; with on false when they say you can talk \
again. When they ask what they missed, call catch_up and tell them what it returns. Keep answers short.";

impl SessionConfig {
    /// The instructions with the task table appended (when there is one).
    pub(crate) fn instructions_with(&self, task_table: &str) -> String {
        let table = task_table.trim();
        if table.is_empty() {
            self.instructions.clone()
        } else {
            format!(
                "{}\n\nCurrent background tasks (kept up to date for you; use list_tasks for more):\n{}",
                self.instructions, table
            )
        }
    }

    /// The full `session.update` sent once per connection, after `session.created`. `transcribe` is
    /// false once the server refused the transcription model (the update is then sent again without it).
    pub(crate) fn session_update(&self, task_table: &str, transcribe: bool, event_id: Option<String>) -> ClientEvent {
        let modality = if self.text_mode { Modality::Text } else { Modality::Audio };
        let turn_detection = match self.turn {
            Turn::Vad => Some(TurnDetection::server_vad()),
            Turn::SemanticVad { eagerness } => Some(TurnDetection::semantic_vad(eagerness)),
            Turn::Ptt => None,
        };
        let transcription = if self.text_mode || !transcribe {
            None
        } else {
            self.transcription_model.as_ref().map(|model| Transcription { model: model.clone(), language: None })
        };
        let output = (!self.text_mode)
            .then(|| AudioOutput { format: Some(AudioFormat::pcm24k()), voice: Some(self.voice.clone()) });
        let mut session = SessionParams::empty();
        session.output_modalities = Some(vec![modality]);
        session.instructions = Some(self.instructions_with(task_table));
        session.audio = Some(AudioConfig {
            input: Some(AudioInput {
                format: Some(AudioFormat::pcm24k()),
                turn_detection: Some(turn_detection),
                transcription,
            }),
            output,
        });
        session.tools = Some(self.tools.clone());
        session.tool_choice = Some("auto".into());
        if crate::models::takes_reasoning(&self.model) {
            session.reasoning = Some(Reasoning { effort: self.reasoning_effort.clone() });
            session.parallel_tool_calls = Some(self.parallel_tool_calls);
        }
        session.truncation = Some(Truncation::from_ratio(self.retention_ratio));
        ClientEvent::SessionUpdate { event_id, session: Box::new(session) }
    }

    /// Whether user turns are transcribed by the session (voice mode with a transcription model).
    pub(crate) fn transcribes(&self) -> bool {
        !self.text_mode && self.transcription_model.is_some()
    }

    /// The instructions-only `session.update` that refreshes the task table.
    pub(crate) fn instructions_update(&self, task_table: &str) -> ClientEvent {
        let mut session = SessionParams::empty();
        session.instructions = Some(self.instructions_with(task_table));
        ClientEvent::SessionUpdate { event_id: None, session: Box::new(session) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn v(ev: &ClientEvent) -> Value {
        serde_json::from_str(&ev.to_json()).unwrap()
    }

    #[test]
    fn full_update_is_ga_shaped() {
        let cfg = SessionConfig::default();
        let j = v(&cfg.session_update("t1 auth refactor running", true, Some("ptt_su_1".into())));
        let s = &j["session"];
        assert_eq!(j["type"], "session.update");
        assert_eq!(s["type"], "realtime");
        assert_eq!(s["output_modalities"], json!(["audio"]));
        assert_eq!(s["audio"]["input"]["format"], json!({"type":"audio/pcm","rate":24000}));
        assert_eq!(s["audio"]["output"]["format"], json!({"type":"audio/pcm","rate":24000}));
        assert_eq!(s["audio"]["output"]["voice"], "marin");
        assert_eq!(s["audio"]["input"]["turn_detection"]["type"], "server_vad");
        assert_eq!(s["audio"]["input"]["transcription"]["model"], "gpt-transcribe");
        assert_eq!(j["event_id"], "ptt_su_1");
        assert_eq!(s["reasoning"], json!({"effort": "low"}));
        assert_eq!(s["parallel_tool_calls"], true);
        assert_eq!(s["truncation"], json!({"type": "retention_ratio", "retention_ratio": 0.8}));
        assert_eq!(s["tools"].as_array().map(Vec::len), Some(crate::realtime::tools::NAMES.len()));
        assert!(s["instructions"].as_str().unwrap().ends_with("t1 auth refactor running"));
        assert!(s.get("model").is_none());
        for beta in [
            "modalities",
            "voice",
            "input_audio_format",
            "output_audio_format",
            "turn_detection",
            "input_audio_transcription",
            "temperature",
        ] {
            assert!(s.get(beta).is_none(), "beta field {beta}");
        }
    }

    #[test]
    fn ptt_text_mode_update() {
        let cfg = SessionConfig { text_mode: true, turn: Turn::Ptt, ..SessionConfig::default() };
        let j = v(&cfg.session_update("", true, None));
        let s = &j["session"];
        assert!(j.get("event_id").is_none());
        assert_eq!(s["output_modalities"], json!(["text"]));
        assert!(s["audio"]["input"].get("transcription").is_none(), "text mode transcribes nothing");
        assert_eq!(s["audio"]["input"]["turn_detection"], Value::Null);
        assert!(s["audio"]["input"].get("turn_detection").is_some());
        assert!(s["audio"].get("output").is_none());
        assert_eq!(s["instructions"], cfg.instructions);
    }

    #[test]
    fn old_models_get_no_reasoning_fields_and_zero_ratio_is_auto() {
        let cfg = SessionConfig {
            model: "gpt-realtime".into(),
            retention_ratio: 0.0,
            parallel_tool_calls: false,
            ..SessionConfig::default()
        };
        let j = v(&cfg.session_update("", true, None));
        let s = &j["session"];
        assert!(s.get("reasoning").is_none() && s.get("parallel_tool_calls").is_none(), "{s}");
        assert_eq!(s["truncation"], "auto");
        let cfg = SessionConfig { parallel_tool_calls: false, reasoning_effort: "xhigh".into(), ..cfg };
        let cfg = SessionConfig { model: "gpt-realtime-2.1-mini".into(), ..cfg };
        let s = v(&cfg.session_update("", true, None))["session"].clone();
        assert_eq!(
            (s["reasoning"]["effort"].as_str(), s["parallel_tool_calls"].as_bool()),
            (Some("xhigh"), Some(false))
        );
    }

    #[test]
    fn semantic_vad_and_refused_transcription() {
        let cfg = SessionConfig { turn: Turn::SemanticVad { eagerness: "high" }, ..SessionConfig::default() };
        let s = v(&cfg.session_update("", false, None))["session"].clone();
        assert_eq!(
            s["audio"]["input"]["turn_detection"],
            json!({"type":"semantic_vad","eagerness":"high","create_response":true,"interrupt_response":true})
        );
        assert!(s["audio"]["input"].get("transcription").is_none(), "transcription left out once refused");
    }

    #[test]
    fn instructions_update_changes_only_instructions() {
        let cfg = SessionConfig::default();
        let j = v(&cfg.instructions_update("t2 docs done"));
        let keys: Vec<&String> = j["session"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["instructions", "type"]);
    }
}
