//! The user's turns in the transcript ring when the server refuses input transcription.
//!
//! Why: the default input-transcription model is `gpt-transcribe` (the older ones shut down on
//! 2027-02-26), and whether a `type: "realtime"` session accepts it is unconfirmed
//! (docs/openai-2027-models.md §3). If it refuses, the session must stay up, yet the ring still needs what
//! the user said (it re-seeds a reconnected session, and "dictate mode" is recognised from it). Of the three
//! fallbacks the reference lists, this one needs no second socket and no copy of the microphone audio:
//! after each committed user turn, an **out-of-band** text response (`conversation: "none"`, so it writes
//! nothing into the conversation and never conflicts with the active response) whose only input is a
//! reference to the user's audio item, with instructions to transcribe it verbatim. It is tagged with
//! `metadata` (`ptt: "transcribe"`, `item_id`), which the server echoes on `response.created/done`, so its
//! events are told apart from the conversation's by `response_id`. It costs a small realtime text
//! response per turn; the cookbook documents the pattern ("Transcribing User Audio with a Separate
//! Realtime Request").
//!
//! This tracker is bounded (a lost `response.done` cannot grow it) and pure.

use std::collections::{BTreeMap, VecDeque};

use crate::realtime::events::{ClientEvent, InputRef, Modality, ResponseParams};

/// The `metadata` key and value that mark our transcription responses.
pub(crate) const TAG_KEY: &str = "ptt";
pub(crate) const TAG_VALUE: &str = "transcribe";
/// The `metadata` key naming the transcribed item.
pub(crate) const ITEM_KEY: &str = "item_id";
/// Most transcriptions tracked at once.
const CAPACITY: usize = 16;

const INSTRUCTIONS: &str = "Transcribe the user's audio message verbatim, in the language it was spoken. \
Reply with the transcript only: no quotes, no commentary, no answer to what was said.";

#[derive(Debug, Clone, Default)]
pub(crate) struct Fallback {
    seq: u64,
    /// `response_id` → item id, from `response.created`.
    running: VecDeque<(String, String)>,
}

impl Fallback {
    /// The out-of-band `response.create` that transcribes `item_id`.
    pub(crate) fn request(&mut self, item_id: &str) -> ClientEvent {
        self.seq += 1;
        let metadata: BTreeMap<String, String> =
            [(TAG_KEY.to_owned(), TAG_VALUE.to_owned()), (ITEM_KEY.to_owned(), item_id.to_owned())].into();
        ClientEvent::ResponseCreate {
            event_id: Some(format!("ptt_tr_{}", self.seq)),
            response: Some(ResponseParams {
                output_modalities: Some(vec![Modality::Text]),
                instructions: Some(INSTRUCTIONS.to_owned()),
                conversation: Some("none".to_owned()),
                metadata: Some(metadata),
                tool_choice: Some("none".to_owned()),
                input: Some(vec![InputRef::ItemReference { id: item_id.to_owned() }]),
            }),
        }
    }

    /// Whether a client `event_id` is one of our transcription requests (its errors are not the
    /// conversation's).
    pub(crate) fn is_request(event_id: &str) -> bool {
        event_id.starts_with("ptt_tr_")
    }

    /// `response.created` of a tagged response: remember it.
    pub(crate) fn started(&mut self, response_id: &str, item_id: &str) {
        if self.running.len() == CAPACITY {
            self.running.pop_front();
        }
        self.running.push_back((response_id.to_owned(), item_id.to_owned()));
    }

    /// Whether a response id is one of ours.
    pub(crate) fn owns(&self, response_id: &str) -> bool {
        !response_id.is_empty() && self.running.iter().any(|(r, _)| r == response_id)
    }

    /// `response.done` of one of ours: the item it transcribed.
    pub(crate) fn finished(&mut self, response_id: &str) -> Option<String> {
        let i = self.running.iter().position(|(r, _)| r == response_id)?;
        self.running.remove(i).map(|(_, item)| item)
    }

    /// The connection closed: its responses are gone.
    pub(crate) fn close(&mut self) {
        self.running.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_out_of_band_text_about_one_item() {
        let mut f = Fallback::default();
        let ev = f.request("item_3");
        let j: serde_json::Value = serde_json::from_str(&ev.to_json()).expect("json");
        assert_eq!(j["event_id"], "ptt_tr_1");
        assert!(Fallback::is_request("ptt_tr_1"));
        let r = &j["response"];
        assert_eq!(r["conversation"], "none");
        assert_eq!(r["output_modalities"], serde_json::json!(["text"]));
        assert_eq!(r["input"], serde_json::json!([{"type":"item_reference","id":"item_3"}]));
        assert_eq!(r["metadata"], serde_json::json!({"ptt":"transcribe","item_id":"item_3"}));
        assert_eq!(r["tool_choice"], "none");
    }

    #[test]
    fn tracks_running_responses_bounded() {
        let mut f = Fallback::default();
        for i in 0..40 {
            f.started(&format!("r{i}"), &format!("item{i}"));
        }
        assert!(!f.owns("r0") && f.owns("r39") && !f.owns(""));
        assert_eq!(f.finished("r39").as_deref(), Some("item39"));
        assert_eq!(f.finished("r39"), None);
        f.close();
        assert!(!f.owns("r38"));
    }
}
