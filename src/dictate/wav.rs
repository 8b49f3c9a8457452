//! A clip as a WAV file: the 44-byte RIFF/WAVE header in front of the PCM16
//! samples, which is what the transcription endpoint accepts without
//! re-encoding and what `ptt dictate retry` reads back from disk.

/// Mono 16-bit PCM at `rate` Hz as a complete WAV file.
pub fn encode(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The duration of a WAV file written by [`encode`], from its header (for
/// listing kept clips without decoding them).
pub fn duration_ms(wav: &[u8]) -> Option<u64> {
    if wav.len() < 44 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return None;
    }
    let rate = u32::from_le_bytes(wav[24..28].try_into().ok()?);
    let data_len = u32::from_le_bytes(wav[40..44].try_into().ok()?);
    if rate == 0 {
        return None;
    }
    Some(u64::from(data_len) / 2 * 1000 / u64::from(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_describes_the_samples() {
        let samples: Vec<i16> = (0..2400).map(|i| (i * 7) as i16).collect();
        let wav = encode(&samples, 24_000);
        assert_eq!(wav.len(), 44 + 4800);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[4..8].try_into().unwrap()), 36 + 4800);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 1, "PCM");
        assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 24_000);
        assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
        assert_eq!(&wav[36..40], b"data");
        assert_eq!(i16::from_le_bytes([wav[44 + 2 * 100], wav[45 + 2 * 100]]), 700);
        assert_eq!(duration_ms(&wav), Some(100));
        assert_eq!(duration_ms(b"not a wav file at all, definitely not one ok"), None);
    }
}
