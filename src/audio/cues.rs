//! Sound cues, synthesized in code: no files to install, find or lose.
//!
//! A cue must be recognisable without looking at the screen and must not be mistaken for speech, so each is
//! a few pure tones with a soft envelope (5 ms raised-cosine ramps: no clicks), and the five differ by
//! direction and register:
//!
//! | cue | sound | meaning |
//! |---|---|---|
//! | task started | 660 Hz then 880 Hz, short (rising fourth) | "on it" |
//! | task succeeded | C5 then E5, longer (major third) | pleasant, done |
//! | task failed | 330 Hz then 247 Hz (low, descending) | something went wrong |
//! | live on | glide 600 → 1200 Hz | the assistant is listening |
//! | live off | glide 1200 → 600 Hz | it stopped listening |
//!
//! Output is 24 kHz mono i16, the format the playback path takes, so a cue is queued like any speech.
//! `audio.cue_volume` (0.0-1.0) scales a peak of -6 dBFS: full volume is clear, never harsh.

use crate::audio::resample::API_RATE;
use std::f32::consts::{PI, TAU};
use std::time::Duration;

/// Peak amplitude at `cue_volume = 1.0`.
const FULL_SCALE: f32 = 0.5;
const RAMP_MS: f32 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cue {
    TaskStarted,
    TaskSucceeded,
    TaskFailed,
    LiveOn,
    LiveOff,
    /// A dictation too short to send (a tap of the key).
    TooShort,
    /// A dictation could not be transcribed or typed (the clip is kept).
    DictationFailed,
    /// A voice command was carried out ("add word X").
    Done,
    /// A task asks for permission and waits for an answer.
    Question,
}

/// One tone: a frequency glide from `from_hz` to `to_hz` (equal for a steady note), then a silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone {
    pub from_hz: f32,
    pub(crate) to_hz: f32,
    pub(crate) ms: u32,
    pub(crate) gap_ms: u32,
}

const fn note(hz: f32, ms: u32, gap_ms: u32) -> Tone {
    Tone { from_hz: hz, to_hz: hz, ms, gap_ms }
}

impl Cue {
    #[cfg(test)]
    pub(crate) const ALL: [Cue; 9] = [
        Cue::TaskStarted,
        Cue::TaskSucceeded,
        Cue::TaskFailed,
        Cue::LiveOn,
        Cue::LiveOff,
        Cue::TooShort,
        Cue::DictationFailed,
        Cue::Done,
        Cue::Question,
    ];

    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Cue::TaskStarted => "task_started",
            Cue::TaskSucceeded => "task_succeeded",
            Cue::TaskFailed => "task_failed",
            Cue::LiveOn => "live_on",
            Cue::LiveOff => "live_off",
            Cue::TooShort => "too_short",
            Cue::DictationFailed => "dictation_failed",
            Cue::Done => "done",
            Cue::Question => "question",
        }
    }

    pub fn tones(self) -> &'static [Tone] {
        const STARTED: [Tone; 2] = [note(660.0, 70, 20), note(880.0, 90, 0)];
        const SUCCEEDED: [Tone; 2] = [note(523.25, 120, 20), note(659.25, 220, 0)];
        const FAILED: [Tone; 2] = [note(330.0, 160, 30), note(246.94, 260, 0)];
        const ON: [Tone; 1] = [Tone { from_hz: 600.0, to_hz: 1200.0, ms: 150, gap_ms: 0 }];
        const OFF: [Tone; 1] = [Tone { from_hz: 1200.0, to_hz: 600.0, ms: 150, gap_ms: 0 }];
        const SHORT: [Tone; 2] = [note(440.0, 50, 30), note(440.0, 50, 0)];
        const DICTATION_FAILED: [Tone; 3] = [note(330.0, 110, 25), note(330.0, 110, 25), note(246.94, 200, 0)];
        const DONE: [Tone; 1] = [note(987.77, 110, 0)];
        // Two notes going up, the second held: a question.
        const QUESTION: [Tone; 2] = [note(660.0, 110, 40), note(1000.0, 180, 0)];
        match self {
            Cue::TaskStarted => &STARTED,
            Cue::TaskSucceeded => &SUCCEEDED,
            Cue::TaskFailed => &FAILED,
            Cue::LiveOn => &ON,
            Cue::LiveOff => &OFF,
            Cue::TooShort => &SHORT,
            Cue::DictationFailed => &DICTATION_FAILED,
            Cue::Done => &DONE,
            Cue::Question => &QUESTION,
        }
    }

    pub(crate) fn duration(self) -> Duration {
        Duration::from_millis(self.tones().iter().map(|t| u64::from(t.ms + t.gap_ms)).sum())
    }

    /// The cue as 24 kHz mono PCM16 at `volume` (0.0-1.0; out of range is clamped, NaN is silence).
    pub(crate) fn render(self, volume: f32) -> Vec<i16> {
        let volume = if volume.is_finite() { volume.clamp(0.0, 1.0) } else { 0.0 };
        let amp = FULL_SCALE * volume;
        let rate = API_RATE as f32;
        let mut out = Vec::with_capacity((self.duration().as_secs_f32() * rate) as usize + 1);
        for tone in self.tones() {
            let n = (tone.ms as f32 * rate / 1000.0) as usize;
            let ramp = ((RAMP_MS * rate / 1000.0) as usize).min(n / 2).max(1);
            let mut phase = 0f32;
            for i in 0..n {
                let t = i as f32 / n as f32;
                let hz = tone.from_hz + (tone.to_hz - tone.from_hz) * t;
                phase = (phase + TAU * hz / rate) % TAU;
                let edge = i.min(n - 1 - i);
                let env = if edge < ramp { 0.5 - 0.5 * (PI * edge as f32 / ramp as f32).cos() } else { 1.0 };
                out.push((amp * env * phase.sin() * 32767.0).round() as i16);
            }
            out.resize(out.len() + (tone.gap_ms as f32 * rate / 1000.0) as usize, 0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::analysis::{dominant_hz, i16_to_f32, rms};

    const CANDIDATES: [f32; 10] = [246.94, 330.0, 523.25, 600.0, 659.25, 660.0, 880.0, 1000.0, 1200.0, 440.0];

    fn segment(pcm: &[f32], from_ms: u32, to_ms: u32) -> &[f32] {
        let r = API_RATE as usize / 1000;
        &pcm[from_ms as usize * r..to_ms as usize * r]
    }

    #[test]
    fn durations_match_the_table() {
        for cue in Cue::ALL {
            let pcm = cue.render(1.0);
            let expected = cue.duration().as_millis() as usize * 24;
            assert!(pcm.len().abs_diff(expected) <= 2, "{}: {} samples", cue.name(), pcm.len());
            assert!(cue.duration() >= Duration::from_millis(100) && cue.duration() <= Duration::from_millis(500));
        }
    }

    #[test]
    fn each_note_has_its_pitch() {
        for cue in [Cue::TaskStarted, Cue::TaskSucceeded, Cue::TaskFailed] {
            let pcm = i16_to_f32(&cue.render(1.0));
            let mut at = 0;
            for tone in cue.tones() {
                // The middle of the note, away from the ramps.
                let seg = segment(&pcm, at + 10, at + tone.ms - 10);
                let hz = dominant_hz(seg, API_RATE, &CANDIDATES);
                assert!((hz - tone.from_hz).abs() < 1.0, "{}: {hz} Hz, expected {}", cue.name(), tone.from_hz);
                at += tone.ms + tone.gap_ms;
            }
        }
    }

    #[test]
    fn directions() {
        let rising = |cue: Cue| {
            let pcm = i16_to_f32(&cue.render(1.0));
            let n = pcm.len();
            let first = dominant_hz(&pcm[..n / 3], API_RATE, &[600.0, 700.0, 800.0, 1000.0, 1100.0, 1200.0]);
            let last = dominant_hz(&pcm[2 * n / 3..], API_RATE, &[600.0, 700.0, 800.0, 1000.0, 1100.0, 1200.0]);
            last > first
        };
        assert!(rising(Cue::LiveOn));
        assert!(!rising(Cue::LiveOff));
        assert!(Cue::TaskStarted.tones()[1].from_hz > Cue::TaskStarted.tones()[0].from_hz);
        assert!(Cue::TaskFailed.tones()[1].from_hz < Cue::TaskFailed.tones()[0].from_hz);
        let third = Cue::TaskSucceeded.tones()[1].from_hz / Cue::TaskSucceeded.tones()[0].from_hz;
        assert!((third - 2f32.powf(4.0 / 12.0)).abs() < 0.001, "a major third");
    }

    #[test]
    fn volume_scales_and_clamps() {
        let loud = rms(&i16_to_f32(&Cue::TaskSucceeded.render(1.0)));
        let soft = rms(&i16_to_f32(&Cue::TaskSucceeded.render(0.25)));
        assert!((soft / loud - 0.25).abs() < 0.01);
        assert_eq!(Cue::TaskSucceeded.render(7.0), Cue::TaskSucceeded.render(1.0));
        assert!(Cue::LiveOn.render(0.0).iter().all(|s| *s == 0));
        assert!(Cue::LiveOn.render(f32::NAN).iter().all(|s| *s == 0));
        let peak = Cue::TaskFailed.render(1.0).iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 16_000 && peak <= 16_384, "peak {peak}");
    }

    #[test]
    fn no_clicks_at_the_edges() {
        for cue in Cue::ALL {
            let pcm = cue.render(1.0);
            assert!(pcm.first().is_some_and(|s| s.unsigned_abs() < 200), "{}", cue.name());
            assert!(pcm.last().is_some_and(|s| s.unsigned_abs() < 200), "{}", cue.name());
        }
    }
}
