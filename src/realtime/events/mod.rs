//! The Realtime API's GA wire protocol as Rust types: [`client`] events we send, [`server`] events we read.
//!
//! Only GA names exist here. The beta interface is retired (the server answers an `OpenAI-Beta` header with
//! `beta_api_shape_disabled` and closes with 4000), so beta names such as `response.audio.delta` are not
//! typed: if one ever arrives it parses as `ServerEvent::Unknown` and is logged, never acted on.

pub(crate) mod client;
pub(crate) mod server;

pub(crate) use client::{
    AudioConfig, AudioFormat, AudioInput, AudioOutput, ClientEvent, FunctionTool, InputRef, Modality, Reasoning,
    ResponseParams, SessionParams, ToolKind, Transcription, Truncation, TurnDetection,
};
#[cfg(test)]
pub(crate) use client::{ContentPart, Item, Role};
pub(crate) use server::ServerEvent;
