//! Cuts a stream of 24 kHz samples into the 20 ms frames sent to the Realtime API.
//!
//! cpal hands the input callback whatever its backend chose (441 frames, 1024, sometimes a few), and the
//! resampler turns that into a varying number of 24 kHz samples. The wire wants steady 20 ms
//! `input_audio_buffer.append` frames: small enough for a quick first frame, large enough not to flood the
//! socket. A chunk is a fixed-size array so that it travels through the bounded channel by value: the
//! callback never allocates for it.

/// 20 ms at 24 kHz.
pub const CHUNK_SAMPLES: usize = 480;
/// Duration of one chunk.
pub(crate) const CHUNK_MS: u64 = 20;

/// One 20 ms frame of 24 kHz mono PCM16.
pub(crate) type Chunk = [i16; CHUNK_SAMPLES];

/// Accumulates samples and emits whole chunks; keeps the remainder for the next call.
#[derive(Debug, Clone)]
pub(crate) struct Chunker {
    buf: Chunk,
    len: usize,
}

impl Default for Chunker {
    fn default() -> Self {
        Self { buf: [0; CHUNK_SAMPLES], len: 0 }
    }
}

impl Chunker {
    /// Adds samples; calls `emit` once per completed chunk, in order.
    pub(crate) fn push(&mut self, mut samples: &[i16], mut emit: impl FnMut(Chunk)) {
        while !samples.is_empty() {
            let n = (CHUNK_SAMPLES - self.len).min(samples.len());
            self.buf[self.len..self.len + n].copy_from_slice(&samples[..n]);
            self.len += n;
            samples = &samples[n..];
            if self.len == CHUNK_SAMPLES {
                emit(self.buf);
                self.len = 0;
            }
        }
    }

    /// Samples waiting for the next chunk (always less than [`CHUNK_SAMPLES`]).
    pub(crate) fn pending(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_sizes_make_whole_ordered_chunks() {
        let input: Vec<i16> = (0..10_000).map(|i| (i % 30_000) as i16).collect();
        let mut c = Chunker::default();
        let mut out: Vec<Chunk> = Vec::new();
        let mut pos = 0;
        for size in [1usize, 479, 480, 481, 7, 1024, 2000, 3].iter().cycle() {
            if pos >= input.len() {
                break;
            }
            let end = (pos + size).min(input.len());
            c.push(&input[pos..end], |ch| out.push(ch));
            pos = end;
        }
        assert_eq!(out.len(), 10_000 / CHUNK_SAMPLES);
        assert_eq!(c.pending(), 10_000 % CHUNK_SAMPLES);
        let flat: Vec<i16> = out.iter().flatten().copied().collect();
        assert_eq!(flat, input[..flat.len()]);
    }
}
