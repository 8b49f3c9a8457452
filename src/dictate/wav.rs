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
pub(crate) fn duration_ms(wav: &[u8]) -> Option<u64> {
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

/// The samples and rate of a mono 16-bit PCM WAV (ours, or any with a `data` chunk after `fmt `).
pub(crate) fn decode(wav: &[u8]) -> Result<(Vec<i16>, u32), String> {
    if wav.len() < 12 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err("not a WAV file".into());
    }
    let mut at = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= wav.len() {
        let id = &wav[at..at + 4];
        let len = u32::from_le_bytes([wav[at + 4], wav[at + 5], wav[at + 6], wav[at + 7]]) as usize;
        let body = &wav[at + 8..(at + 8).saturating_add(len).min(wav.len())];
        if id == b"fmt " && body.len() >= 16 {
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            format = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
        } else if id == b"data" {
            let Some((kind, channels, rate, bits)) = format else { return Err("the WAV has no format chunk".into()) };
            if (kind, channels, bits) != (1, 1, 16) || rate == 0 {
                return Err(format!(
                    "the WAV is not mono 16-bit PCM (format {kind}, {channels} channels, {bits} bits)"
                ));
            }
            let samples = body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
            return Ok((samples, rate));
        }
        at = at.saturating_add(8).saturating_add(len + (len & 1));
    }
    Err("the WAV has no data chunk".into())
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
        assert_eq!(decode(&wav), Ok((samples, 24_000)));
    }

    #[test]
    fn bad_wavs_are_refused_not_misread() {
        assert!(decode(b"RIFF").is_err());
        assert!(decode(b"not a wav file at all, definitely not one ok").is_err());
        let mut stereo = encode(&[1, 2, 3, 4], 16_000);
        stereo[22] = 2;
        assert!(decode(&stereo).unwrap_err().contains("2 channels"));
        let truncated = &encode(&[5; 100], 16_000)[..44 + 11];
        assert_eq!(decode(truncated).map(|(s, _)| s.len()), Ok(5), "a cut clip gives what it has");
    }
}
