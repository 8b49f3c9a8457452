//! The daemon's sound: cues, and the live session's voice (the microphone
//! feeding the input buffer, the assistant's audio on the speaker).
//!
//! The playback actor (`audio::playback`) is started on first use, so a box
//! without a sound server pays nothing and a missing device is a status line,
//! not a dead daemon: `Unavailable` and `Lost` events are recorded for
//! `ptt status` and `ptt doctor`, and the next use tries again. The capture
//! actor runs while a voice session is on; its gate decides which chunks reach
//! the session.
//!
//! Barge-in needs "how much of this item did the user really hear": the
//! playback position (samples handed to the device, plus flushed ones) is
//! remembered where each assistant item starts, so a flush yields the played
//! milliseconds of the current item for `conversation.item.truncate`.

use crate::control::reply::{AudioStatus, Device};
use crossbeam_channel::Receiver;

use crate::audio::capture::{Capture, CaptureConfig, Captured};
use crate::audio::cues::Cue;
use crate::audio::playback::{Playback, PlaybackConfig};
use crate::audio::{AudioEvent, Direction};
use crate::config::AudioSection;

pub(crate) struct Voice {
    cfg: AudioSection,
    playback: Option<Playback>,
    tx: crossbeam_channel::Sender<AudioEvent>,
    /// The loop selects on this.
    pub(crate) rx: Receiver<AudioEvent>,
    output: Result<String, String>,
    input: Result<String, String>,
    cues_played: u64,
    /// Cues dropped because the output was known to be missing.
    cues_skipped: u64,
    capture: Option<Capture>,
    /// Microphone chunks (a never-ready channel while no capture runs).
    pub(crate) mic_rx: Receiver<Captured>,
    /// Where each assistant item's audio sits on the playback timeline.
    items: ItemTimeline,
    /// The assistant's audio is queued or playing.
    pub(crate) playing: bool,
    probe_tx: crossbeam_channel::Sender<Result<(), String>>,
    /// Answers of [`Voice::request_voice`].
    pub(crate) probe_rx: Receiver<Result<(), String>>,
    probing: bool,
    rendered: Vec<(Cue, f32, Vec<i16>)>,
}

impl Voice {
    pub(crate) fn new(cfg: AudioSection) -> Voice {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let (probe_tx, probe_rx) = crossbeam_channel::bounded(4);
        Voice {
            cfg,
            playback: None,
            tx,
            rx,
            output: Err("not opened yet".into()),
            input: Err("not opened yet".into()),
            cues_played: 0,
            cues_skipped: 0,
            capture: None,
            mic_rx: crossbeam_channel::never(),
            items: ItemTimeline::default(),
            playing: false,
            probe_tx,
            probe_rx,
            probing: false,
            rendered: Vec::new(),
        }
    }

    /// Asks whether both devices open, on a helper thread: opening a device
    /// talks to the sound server and may stall, so it never runs on the loop.
    /// The answer arrives on [`Voice::probe_rx`]; pass it to [`Voice::on_probe`].
    pub(crate) fn request_voice(&mut self) {
        if self.probing {
            return;
        }
        let (cfg, tx) = (self.cfg.to_audio_config(), self.probe_tx.clone());
        let spawned = std::thread::Builder::new().name("audio-probe".into()).spawn(move || {
            let report = crate::audio::probe(&cfg);
            let answer = if report.voice_available() {
                Ok(())
            } else {
                Err(report.reason().unwrap_or_else(|| "no audio device".into()))
            };
            let _ = tx.send(answer);
        });
        match spawned {
            Ok(_) => self.probing = true,
            Err(e) => {
                let _ = self.probe_tx.send(Err(format!("cannot start the audio probe thread: {e}")));
                self.probing = true;
            }
        }
    }

    /// The probe's answer: on success, the microphone and speaker actors are
    /// started for a voice session; otherwise the reason is kept for status.
    pub(crate) fn on_probe(&mut self, answer: Result<(), String>) -> Result<(), String> {
        self.probing = false;
        if let Err(why) = answer {
            self.input = Err(why.clone());
            return Err(why);
        }
        self.open_voice()
    }

    /// Starts the microphone and speaker actors (they open the devices on their own threads).
    fn open_voice(&mut self) -> Result<(), String> {
        self.open_mic()?;
        let playback = self.playback().ok_or_else(|| "cannot start the playback thread".to_string())?;
        // The session keeps the speaker open between responses, and tries a device that failed before.
        playback.set_keep_open(true);
        playback.open();
        Ok(())
    }

    /// Starts the microphone actor if it is not running (it opens the device on
    /// its own thread; a failure arrives as an event and ends the turn). Used
    /// alone by dictation, which needs no speaker.
    pub(crate) fn open_mic(&mut self) -> Result<(), String> {
        if self.capture.is_none() {
            let audio = self.cfg.to_audio_config();
            let cfg = CaptureConfig { device: audio.input, keep_open: audio.keep_open, ..CaptureConfig::default() };
            let capture =
                Capture::spawn(cfg, self.tx.clone()).map_err(|e| format!("cannot start the capture thread: {e}"))?;
            capture.open();
            self.mic_rx = capture.receiver().clone();
            self.capture = Some(capture);
        }
        Ok(())
    }

    /// Why the microphone is not usable, if it is known not to be.
    pub(crate) fn input_problem(&self) -> Option<&str> {
        self.input.as_ref().err().map(String::as_str).filter(|e| *e != "not opened yet")
    }

    /// Ends a voice session: the microphone closes, anything playing stops.
    pub(crate) fn stop_voice(&mut self) {
        if let Some(c) = self.capture.take() {
            c.set_gate(false, false);
            c.close();
        }
        self.mic_rx = crossbeam_channel::never();
        self.flush();
        if let Some(p) = &self.playback {
            p.set_keep_open(false);
        }
    }

    /// Opens or closes the microphone gate (`preroll`: include the last ~300 ms).
    pub(crate) fn set_gate(&self, open: bool, preroll: bool) {
        if let Some(c) = &self.capture {
            c.set_gate(open, preroll);
        }
    }

    /// Closes (or opens) the microphone gate as of `at`.
    pub(crate) fn set_gate_at(&self, open: bool, preroll: bool, at: std::time::Instant) {
        if let Some(c) = &self.capture {
            c.set_gate_at(open, preroll, at);
        }
    }

    /// Queues assistant audio; returns true when it starts playing.
    pub(crate) fn play(&mut self, item_id: &str, pcm: &[i16]) -> bool {
        let Some(playback) = self.playback() else { return false };
        let at = playback.push(pcm);
        self.items.push(item_id, at, pcm.len() as u64);
        let started = !self.playing;
        self.playing = true;
        started
    }

    /// Stops playback at once; returns the item the user was hearing and how
    /// many milliseconds of it they heard (for the truncate).
    pub(crate) fn flush(&mut self) -> Option<(String, u64)> {
        self.playing = false;
        let playback = self.playback.as_ref()?;
        let reached = playback.flush();
        self.items.heard_at(reached)
    }

    pub(crate) fn set_config(&mut self, cfg: AudioSection) {
        self.cfg = cfg;
    }

    /// Plays a cue if cues are on; opens the output on first use. Cues are
    /// synthesized once per volume and kept.
    pub(crate) fn cue(&mut self, cue: Cue) {
        if !self.cfg.cues {
            return;
        }
        let volume = self.cfg.cue_volume;
        let pcm = match self.rendered.iter().find(|(c, v, _)| *c == cue && *v == volume) {
            Some((_, _, pcm)) => pcm.clone(),
            None => {
                let pcm = cue.render(volume);
                self.rendered.push((cue, volume, pcm.clone()));
                pcm
            }
        };
        let Some(playback) = self.playback() else { return };
        // While the output is known to be missing the cue is skipped, not retried against the device.
        if playback.push_cue(&pcm) {
            playback.finish();
            self.cues_played += 1;
        } else {
            self.cues_skipped += 1;
        }
    }

    fn playback(&mut self) -> Option<&Playback> {
        if self.playback.is_none() {
            let audio = self.cfg.to_audio_config();
            let cfg = PlaybackConfig { device: audio.output, ..PlaybackConfig::default() };
            match Playback::spawn(cfg, self.tx.clone()) {
                Ok(p) => {
                    p.open();
                    self.playback = Some(p);
                }
                Err(e) => {
                    self.output = Err(format!("cannot start the playback thread: {e}"));
                    return None;
                }
            }
        }
        self.playback.as_ref()
    }

    /// An event from the audio actors.
    pub(crate) fn on_event(&mut self, ev: AudioEvent) {
        match ev {
            AudioEvent::Opened { direction: Direction::Output, info } => {
                log::info!("audio: output {} ({} Hz, {} ch)", info.name, info.rate, info.channels);
                self.output = Ok(format!("{} ({} Hz, {} ch)", info.name, info.rate, info.channels));
            }
            AudioEvent::Unavailable { direction: Direction::Output, error } => {
                log::warn!("audio: no output: {error}; tasks and text mode keep working");
                self.output = Err(error.to_string());
            }
            AudioEvent::Lost { direction: Direction::Output, reason } => {
                log::warn!("audio: the output stream was lost ({reason}); it reopens on the next use");
                self.output = Err(format!("lost: {reason}"));
            }
            AudioEvent::Opened { direction: Direction::Input, info } => {
                log::info!("audio: input {} ({} Hz, {} ch)", info.name, info.rate, info.channels);
                self.input = Ok(format!("{} ({} Hz, {} ch)", info.name, info.rate, info.channels));
            }
            AudioEvent::Unavailable { direction: Direction::Input, error } => {
                log::warn!("audio: no microphone: {error}");
                self.input = Err(error.to_string());
            }
            AudioEvent::Lost { direction: Direction::Input, reason } => {
                log::warn!("audio: the microphone stream was lost ({reason}); it reopens on the next use");
                self.input = Err(format!("lost: {reason}"));
            }
            other => log::debug!("audio: {other:?}"),
        }
    }

    pub(crate) fn status(&self) -> AudioStatus {
        AudioStatus {
            cues: self.cfg.cues,
            cues_played: self.cues_played,
            cues_skipped: self.cues_skipped,
            output: Device::of(&self.output),
            input: Device::of(&self.input),
            voice: self.capture.is_some(),
            playing: self.playing,
            mic_dropped_chunks: self.capture.as_ref().map(|c| c.stats().chunks_dropped).unwrap_or(0),
        }
    }
}

/// Where each assistant item's audio sits on the playback timeline (24 kHz samples, played plus
/// dropped), so a barge-in can name the item being *heard*: one 2.x response streams a preamble, then
/// the final message, and the newest item received is often not the one playing.
#[derive(Debug, Default)]
struct ItemTimeline {
    /// `(item id, first sample, samples pushed)`, oldest first; bounded.
    items: std::collections::VecDeque<(String, u64, u64)>,
}

impl ItemTimeline {
    const CAPACITY: usize = 16;

    /// `len` samples of `item_id` were queued at timeline position `at`.
    fn push(&mut self, item_id: &str, at: u64, len: u64) {
        match self.items.back_mut() {
            Some((id, start, n)) if id == item_id => *n = (at + len).saturating_sub(*start),
            _ => {
                if self.items.len() == Self::CAPACITY {
                    self.items.pop_front();
                }
                self.items.push_back((item_id.to_string(), at, len));
            }
        }
    }

    /// The item playing at position `reached`, and the milliseconds of it played (never more than it
    /// has). Clears the timeline: what was queued is gone.
    fn heard_at(&mut self, reached: u64) -> Option<(String, u64)> {
        let items = std::mem::take(&mut self.items);
        let (id, start, len) = items.into_iter().rev().find(|(_, start, _)| *start <= reached)?;
        Some((id, reached.saturating_sub(start).min(len) / 24))
    }
}

#[cfg(test)]
mod timeline_tests {
    use super::ItemTimeline;

    #[test]
    fn barge_in_names_the_item_being_heard() {
        let mut t = ItemTimeline::default();
        // Preamble: 1 s in two chunks from 0; the final message queued after it.
        t.push("pre", 0, 12_000);
        t.push("pre", 12_000, 12_000);
        t.push("final", 24_000, 48_000);
        // 0.5 s in: the preamble is playing, although "final" arrived last.
        assert_eq!(t.heard_at(12_000), Some(("pre".into(), 500)));
        let mut t = ItemTimeline::default();
        t.push("pre", 0, 24_000);
        t.push("final", 24_000, 48_000);
        // 1.25 s in: 250 ms of the final message, measured from its own start.
        assert_eq!(t.heard_at(30_000), Some(("final".into(), 250)));
        assert_eq!(t.heard_at(30_000), None, "cleared by the flush");
        // A cue or a gap after the item: capped at what the item has.
        let mut t = ItemTimeline::default();
        t.push("a", 100, 2_400);
        assert_eq!(t.heard_at(10_000), Some(("a".into(), 100)));
        assert_eq!(ItemTimeline::default().heard_at(5), None);
    }
}
