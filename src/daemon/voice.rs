//! The daemon's sound: cues now, the voice of the live session next.
//!
//! The playback actor (`audio::playback`) is started on first use, so a box
//! without a sound server pays nothing and a missing device is a status line,
//! not a dead daemon: `Unavailable` and `Lost` events are recorded for
//! `ptt status` and `ptt doctor`, and the next use tries again.

use crossbeam_channel::Receiver;
use serde_json::{Value, json};

use crate::audio::cues::Cue;
use crate::audio::playback::{Playback, PlaybackConfig};
use crate::audio::{AudioEvent, Direction};
use crate::config::AudioSection;

pub struct Voice {
    cfg: AudioSection,
    playback: Option<Playback>,
    tx: crossbeam_channel::Sender<AudioEvent>,
    /// The loop selects on this.
    pub rx: Receiver<AudioEvent>,
    output: Result<String, String>,
    cues_played: u64,
}

impl Voice {
    pub fn new(cfg: AudioSection) -> Voice {
        let (tx, rx) = crossbeam_channel::bounded(64);
        Voice { cfg, playback: None, tx, rx, output: Err("not opened yet".into()), cues_played: 0 }
    }

    pub fn set_config(&mut self, cfg: AudioSection) {
        self.cfg = cfg;
    }

    /// Plays a cue if cues are on; opens the output on first use.
    pub fn cue(&mut self, cue: Cue) {
        if !self.cfg.cues {
            return;
        }
        let pcm = cue.render(self.cfg.cue_volume);
        let Some(playback) = self.playback() else { return };
        playback.push(&pcm);
        playback.finish();
        self.cues_played += 1;
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
    pub fn on_event(&mut self, ev: AudioEvent) {
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
            other => log::debug!("audio: {other:?}"),
        }
    }

    pub fn status(&self) -> Value {
        json!({
            "cues": self.cfg.cues,
            "cues_played": self.cues_played,
            "output": match &self.output { Ok(d) => json!({"ok": d}), Err(e) => json!({"error": e}) },
        })
    }
}
