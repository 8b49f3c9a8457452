//! Sample-rate and layout conversion between a sound device and the Realtime API's format.
//!
//! The API speaks one format: 24 kHz, mono, signed 16-bit. Devices speak whatever they like: PulseAudio
//! usually offers 44.1 or 48 kHz stereo f32 through ALSA, a USB headset may offer 16 kHz mono i16, a
//! `hw:` device may insist on u16. This module is the one place that knows both sides:
//!
//! - [`ToApi`] (capture): interleaved device frames of any [`cpal::Sample`] type → mono (channel average)
//!   → 24 kHz → i16.
//! - [`FromApi`] (playback): 24 kHz mono i16 → device rate, mono f32; [`write_frames`] then copies it to
//!   every channel of the device's interleaved buffer in the device's sample type.
//!
//! Why rubato's synchronous `Fft` resampler: device and API rates are fixed for a stream's life, so a
//! fixed-ratio resampler fits, and the FFT one is rubato's fastest at full quality (anti-aliased: a naive
//! decimator would fold 12-24 kHz noise into speech). It is fed fixed 10 ms input chunks, which keeps its
//! delay at about 5 ms. The delay is trimmed at the start (the first output sample lines up with the first
//! input sample) and [`MonoResampler::finish`] flushes the tail, so a clip of N seconds comes out N seconds
//! long: the played-milliseconds counter and the tests rely on that.
//!
//! Everything here is pure and allocation-free after warm-up (buffers are reused), so it runs inside cpal's
//! callbacks.

use cpal::{FromSample, Sample};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// The Realtime API's sample rate.
pub(crate) const API_RATE: u32 = 24_000;

/// Why a resampler could not be built (an unusable rate: zero, or one rubato refuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResampleError(pub(crate) String);

impl std::fmt::Display for ResampleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resampler: {}", self.0)
    }
}

impl std::error::Error for ResampleError {}

/// A streaming mono f32 resampler between two fixed rates, with its delay trimmed.
///
/// Push any number of samples at any time; output comes out in blocks of the resampler's chunk (10 ms of
/// input). Equal rates pass straight through.
pub(crate) struct MonoResampler {
    inner: Option<Box<Fft<f32>>>,
    in_rate: u32,
    out_rate: u32,
    /// Input not yet resampled (less than one chunk after each `process`).
    pending: Vec<f32>,
    /// Reused output block.
    block: Vec<f32>,
    /// Output samples still to drop: the resampler's delay, at the start of a stream.
    skip: usize,
    /// Input samples pushed since the last reset, and output samples emitted (after the trim).
    total_in: u64,
    total_out: u64,
}

impl MonoResampler {
    pub(crate) fn new(in_rate: u32, out_rate: u32) -> Result<Self, ResampleError> {
        if in_rate == 0 || out_rate == 0 {
            return Err(ResampleError(format!("unusable rates {in_rate} Hz → {out_rate} Hz")));
        }
        let inner = if in_rate == out_rate {
            None
        } else {
            let chunk = (in_rate as usize / 100).max(1);
            let fft = Fft::<f32>::new(in_rate as usize, out_rate as usize, chunk, 1, FixedSync::Input)
                .map_err(|e| ResampleError(format!("{in_rate} Hz → {out_rate} Hz: {e}")))?;
            Some(Box::new(fft))
        };
        let (block, skip, pending) = match &inner {
            Some(r) => {
                (vec![0.0; r.output_frames_max()], r.output_delay(), Vec::with_capacity(2 * r.input_frames_max()))
            }
            None => (Vec::new(), 0, Vec::new()),
        };
        Ok(Self { inner, in_rate, out_rate, pending, block, skip, total_in: 0, total_out: 0 })
    }

    /// Resamples `input`, appending every output sample that is ready to `out`.
    pub(crate) fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.total_in += input.len() as u64;
        if self.inner.is_none() {
            out.extend_from_slice(input);
            self.total_out += input.len() as u64;
            return;
        }
        self.pending.extend_from_slice(input);
        self.run(out);
    }

    /// Ends the stream: flushes what the resampler still holds, so that the total output is the input's
    /// duration at the output rate, then resets for the next stream.
    pub(crate) fn finish(&mut self, out: &mut Vec<f32>) {
        if self.inner.is_some() {
            let expected = self.total_in * u64::from(self.out_rate) / u64::from(self.in_rate);
            // Feed silence until the real input has all come out (at most the delay plus one chunk).
            let mut guard = 0;
            while self.total_out < expected && guard < 8 {
                let need = self.inner.as_ref().map_or(0, |r| r.input_frames_next());
                self.pending.resize(need.max(self.pending.len()), 0.0);
                let before = out.len();
                self.run(out);
                let over = (self.total_out.saturating_sub(expected)) as usize;
                if over > 0 {
                    out.truncate(out.len() - over.min(out.len() - before));
                    self.total_out = expected;
                }
                guard += 1;
            }
        }
        self.reset();
    }

    /// Forgets everything in flight (barge-in, a new stream).
    pub(crate) fn reset(&mut self) {
        if let Some(r) = self.inner.as_mut() {
            r.reset();
            self.skip = r.output_delay();
        }
        self.pending.clear();
        self.total_in = 0;
        self.total_out = 0;
    }

    fn run(&mut self, out: &mut Vec<f32>) {
        let Some(r) = self.inner.as_mut() else { return };
        loop {
            let need = r.input_frames_next();
            if self.pending.len() < need {
                return;
            }
            let frames_out = r.output_frames_next();
            if self.block.len() < frames_out {
                self.block.resize(frames_out, 0.0);
            }
            let result = match (
                InterleavedSlice::new(&self.pending[..need], 1, need),
                InterleavedSlice::new_mut(&mut self.block[..frames_out], 1, frames_out),
            ) {
                (Ok(input), Ok(mut output)) => {
                    r.process_into_buffer(&input, &mut output, None).map_err(|e| e.to_string())
                }
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            };
            self.pending.drain(..need);
            match result {
                Ok((_, written)) => {
                    let start = self.skip.min(written);
                    self.skip -= start;
                    out.extend_from_slice(&self.block[start..written]);
                    self.total_out += (written - start) as u64;
                }
                // Only a buffer-size bug can get here; losing 10 ms beats stopping the stream.
                Err(e) => log::error!("resampler: {e}"),
            }
        }
    }
}

/// Capture side: interleaved device frames → 24 kHz mono i16.
pub(crate) struct ToApi {
    channels: usize,
    mono: Vec<f32>,
    resampled: Vec<f32>,
    rs: MonoResampler,
}

impl ToApi {
    pub(crate) fn new(device_rate: u32, channels: u16) -> Result<Self, ResampleError> {
        if channels == 0 {
            return Err(ResampleError("a device with 0 channels".into()));
        }
        Ok(Self {
            channels: usize::from(channels),
            mono: Vec::new(),
            resampled: Vec::new(),
            rs: MonoResampler::new(device_rate, API_RATE)?,
        })
    }

    /// Converts one callback's worth of interleaved samples, appending 24 kHz samples to `out`.
    /// A trailing partial frame (never sent by a sane backend) is ignored.
    pub(crate) fn push<T>(&mut self, interleaved: &[T], out: &mut Vec<i16>)
    where
        T: Sample,
        f32: FromSample<T>,
    {
        self.mono.clear();
        let scale = 1.0 / self.channels as f32;
        self.mono.extend(
            interleaved
                .chunks_exact(self.channels)
                .map(|frame| frame.iter().map(|s| f32::from_sample(*s)).sum::<f32>() * scale),
        );
        self.resampled.clear();
        self.rs.process(&self.mono, &mut self.resampled);
        out.extend(self.resampled.iter().map(|s| f32_to_i16(*s)));
    }

    #[cfg(test)]
    /// Flushes the resampler's tail (end of a recording) and resets.
    pub(crate) fn finish(&mut self, out: &mut Vec<i16>) {
        self.resampled.clear();
        self.rs.finish(&mut self.resampled);
        out.extend(self.resampled.iter().map(|s| f32_to_i16(*s)));
    }
}

/// Playback side: 24 kHz mono i16 → device rate, mono f32 (see [`write_frames`] for the channels).
pub(crate) struct FromApi {
    input: Vec<f32>,
    rs: MonoResampler,
}

impl FromApi {
    pub(crate) fn new(device_rate: u32) -> Result<Self, ResampleError> {
        Ok(Self { input: Vec::new(), rs: MonoResampler::new(API_RATE, device_rate)? })
    }

    pub(crate) fn push(&mut self, pcm: &[i16], out: &mut Vec<f32>) {
        self.input.clear();
        self.input.extend(pcm.iter().map(|s| f32::from(*s) / 32768.0));
        self.rs.process(&self.input, out);
    }

    /// End of the audio for now: flush the tail, reset for the next stream.
    pub(crate) fn finish(&mut self, out: &mut Vec<f32>) {
        self.rs.finish(out);
    }

    pub(crate) fn reset(&mut self) {
        self.rs.reset();
    }
}

/// Writes mono samples to every channel of an interleaved device buffer, in its sample type. Returns the
/// number of frames written (`min(mono.len(), out.len() / channels)`); the rest of `out` is left as is.
pub(crate) fn write_frames<T>(mono: &[f32], out: &mut [T], channels: usize) -> usize
where
    T: Sample + FromSample<f32>,
{
    let channels = channels.max(1);
    let mut frames = 0;
    for (frame, s) in out.chunks_exact_mut(channels).zip(mono) {
        let v = T::from_sample(s.clamp(-1.0, 1.0));
        frame.iter_mut().for_each(|x| *x = v);
        frames += 1;
    }
    frames
}

pub fn f32_to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::analysis::{dominant_hz, rms, zero_crossing_hz};
    use crate::audio::chunker::CHUNK_SAMPLES;
    use std::f32::consts::TAU;

    fn sine(rate: u32, hz: f32, secs: f32, amp: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize).map(|i| amp * (TAU * hz * i as f32 / rate as f32).sin()).collect()
    }

    fn interleave<T: Copy>(mono: &[T], channels: usize) -> Vec<T> {
        mono.iter().flat_map(|s| std::iter::repeat_n(*s, channels)).collect()
    }

    /// Feeds `input` in uneven callback-sized pieces, as a device would.
    fn to_api<T>(input: &[T], rate: u32, channels: u16) -> Vec<i16>
    where
        T: Sample,
        f32: FromSample<T>,
    {
        let mut conv = ToApi::new(rate, channels).expect("resampler");
        let mut out = Vec::new();
        let sizes = [441usize, 1024, 17, 960, 333];
        let mut pos = 0;
        let mut i = 0;
        while pos < input.len() {
            let n = (sizes[i % sizes.len()] * usize::from(channels)).min(input.len() - pos);
            conv.push(&input[pos..pos + n], &mut out);
            pos += n;
            i += 1;
        }
        conv.finish(&mut out);
        out
    }

    #[test]
    fn sine_48k_stereo_f32_becomes_24k_mono_same_pitch_and_length() {
        let mono = sine(48_000, 440.0, 1.0, 0.5);
        let out = to_api(&interleave(&mono, 2), 48_000, 2);
        assert!(out.len().abs_diff(24_000) <= CHUNK_SAMPLES, "length {}", out.len());
        let f: Vec<f32> = out.iter().map(|s| f32::from(*s) / 32768.0).collect();
        let zc = zero_crossing_hz(&f[1200..22_800], 24_000);
        assert!((zc - 440.0).abs() < 2.0, "zero crossings say {zc} Hz");
        assert_eq!(dominant_hz(&f, 24_000, &[220.0, 440.0, 880.0, 1000.0]), 440.0);
        let level = rms(&f[1200..22_800]);
        assert!((level - 0.5 / 2f32.sqrt()).abs() < 0.01, "rms {level}");
    }

    #[test]
    fn exact_length_and_alignment_after_trim() {
        // An impulse at sample 4800 (100 ms) must come out at about sample 2400.
        let mut x = vec![0f32; 48_000];
        x[4800] = 1.0;
        let out = to_api(&interleave(&x, 2), 48_000, 2);
        assert_eq!(out.len(), 24_000);
        let peak = out.iter().enumerate().max_by_key(|(_, s)| s.unsigned_abs()).map(|(i, _)| i);
        assert!(peak.is_some_and(|p| p.abs_diff(2400) <= 1), "peak at {peak:?}");
    }

    #[test]
    fn i16_and_u16_inputs_at_44k1() {
        let mono = sine(44_100, 1000.0, 0.5, 0.25);
        let as_i16: Vec<i16> = mono.iter().map(|s| i16::from_sample(*s)).collect();
        let as_u16: Vec<u16> = mono.iter().map(|s| u16::from_sample(*s)).collect();
        for out in [to_api(&as_i16, 44_100, 1), to_api(&interleave(&as_u16, 2), 44_100, 2)] {
            assert!(out.len().abs_diff(12_000) <= CHUNK_SAMPLES, "length {}", out.len());
            let f: Vec<f32> = out.iter().map(|s| f32::from(*s) / 32768.0).collect();
            let zc = zero_crossing_hz(&f[600..11_400], 24_000);
            assert!((zc - 1000.0).abs() < 3.0, "{zc} Hz");
            assert!((rms(&f[600..11_400]) - 0.25 / 2f32.sqrt()).abs() < 0.01);
        }
    }

    #[test]
    fn same_rate_passes_through() {
        let x: Vec<i16> = (0..4800).map(|i| (i % 200) as i16 * 100).collect();
        assert_eq!(to_api(&x, 24_000, 1), x);
    }

    #[test]
    fn downmix_averages_channels() {
        // Left carries the tone, right is silent: half the amplitude survives, nothing is lost.
        let mono = sine(24_000, 500.0, 0.1, 0.8);
        let stereo: Vec<f32> = mono.iter().flat_map(|s| [*s, 0.0]).collect();
        let out = to_api(&stereo, 24_000, 2);
        let f: Vec<f32> = out.iter().map(|s| f32::from(*s) / 32768.0).collect();
        assert!((rms(&f) - 0.4 / 2f32.sqrt()).abs() < 0.005);
    }

    #[test]
    fn playback_direction_24k_to_48k_stereo_i16() {
        let tone: Vec<i16> = sine(24_000, 1000.0, 0.5, 0.5).iter().map(|s| f32_to_i16(*s)).collect();
        let mut conv = FromApi::new(48_000).expect("resampler");
        let mut mono = Vec::new();
        for piece in tone.chunks(1234) {
            conv.push(piece, &mut mono);
        }
        conv.finish(&mut mono);
        assert_eq!(mono.len(), 24_000);
        let mut device = vec![0i16; mono.len() * 2];
        assert_eq!(write_frames(&mono, &mut device, 2), 24_000);
        assert!(device.chunks_exact(2).all(|f| f[0] == f[1]));
        let left: Vec<f32> = device.iter().step_by(2).map(|s| f32::from(*s) / 32768.0).collect();
        let zc = zero_crossing_hz(&left[2400..21_600], 48_000);
        assert!((zc - 1000.0).abs() < 3.0, "{zc} Hz");
    }

    #[test]
    fn zero_rate_is_an_error_not_a_panic() {
        assert!(ToApi::new(0, 2).is_err());
        assert!(ToApi::new(48_000, 0).is_err());
        assert!(FromApi::new(0).is_err());
    }
}
