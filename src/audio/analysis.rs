//! Small signal measurements: level, pitch, tone presence.
//!
//! Used by the tests (is the captured speech really speech, is the played tone the right pitch) and by
//! `ptt doctor` (is the microphone delivering anything but silence). Plain loops over f32 samples in
//! -1.0..=1.0; no FFT crate needed for a handful of frequencies.

use std::f32::consts::TAU;

/// Root mean square level (0.0 for silence or an empty slice).
pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

pub fn i16_to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|s| f32::from(*s) / 32768.0).collect()
}

/// Power of one frequency (Goertzel), normalised so that a full-scale sine at exactly `hz` gives about 0.25
/// whatever the length.
pub(crate) fn goertzel(samples: &[f32], rate: u32, hz: f32) -> f32 {
    if samples.is_empty() || rate == 0 {
        return 0.0;
    }
    let coeff = 2.0 * (TAU * hz / rate as f32).cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    for x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f32;
    power / (n * n)
}

/// Of `candidates`, the frequency with the most power (Goertzel); the first one for silence.
pub fn dominant_hz(samples: &[f32], rate: u32, candidates: &[f32]) -> f32 {
    let mut best = (f32::MIN, candidates.first().copied().unwrap_or(0.0));
    for &hz in candidates {
        let p = goertzel(samples, rate, hz);
        if p > best.0 {
            best = (p, hz);
        }
    }
    best.1
}

/// Frequency estimated from rising zero crossings; good for a single clean tone.
pub fn zero_crossing_hz(samples: &[f32], rate: u32) -> f32 {
    let crossings: Vec<usize> =
        samples.windows(2).enumerate().filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0).map(|(i, _)| i).collect();
    match (crossings.first(), crossings.last()) {
        (Some(first), Some(last)) if crossings.len() >= 2 && last > first => {
            (crossings.len() - 1) as f32 * rate as f32 / (last - first) as f32
        }
        _ => 0.0,
    }
}

/// Start and end (sample indexes, end exclusive) of the region where the level over 5 ms windows exceeds
/// `threshold`; `None` when it never does.
pub fn active_span(samples: &[f32], rate: u32, threshold: f32) -> Option<(usize, usize)> {
    let win = (rate as usize / 200).max(1);
    let loud: Vec<usize> =
        samples.chunks(win).enumerate().filter(|(_, w)| rms(w) > threshold).map(|(i, _)| i * win).collect();
    Some((*loud.first()?, (*loud.last()? + win).min(samples.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_known_tone() {
        let x: Vec<f32> = (0..24_000).map(|i| 0.5 * (TAU * 440.0 * i as f32 / 24_000.0).sin()).collect();
        assert!((rms(&x) - 0.3536).abs() < 0.001);
        assert!((zero_crossing_hz(&x, 24_000) - 440.0).abs() < 0.5);
        assert_eq!(dominant_hz(&x, 24_000, &[330.0, 440.0, 550.0]), 440.0);
        assert!(goertzel(&x, 24_000, 440.0) > 100.0 * goertzel(&x, 24_000, 550.0));
        let mut padded = vec![0.0; 2400];
        padded.extend_from_slice(&x);
        padded.extend(vec![0.0; 2400]);
        let (a, b) = active_span(&padded, 24_000, 0.01).expect("tone found");
        assert!(a.abs_diff(2400) <= 120 && b.abs_diff(26_400) <= 120, "{a}..{b}");
        assert_eq!(active_span(&[0.0; 1000], 24_000, 0.01), None);
    }
}
