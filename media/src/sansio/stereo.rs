//! A call recording's audio, sans-IO: the two tapped directions of a call
//! (see [`crate::sansio::tap`]) laid side by side as one stereo stream,
//! caller left, what the caller heard right, at one rate.
//!
//! Each chunk is placed by its time in the call (`start_ms`), not by when
//! it arrived: a gap (audio dropped because the writer was behind) becomes
//! silence of the same length, so the two channels stay aligned to the
//! sample for as long as the call lasts. A chunk at another rate than the
//! file's (the `out` direction runs at the caller's rate; a codec change
//! moves it) goes through the codec crate's resampler, 20 ms at a time; a
//! chunk that is not whole frames (the last before a rate change or the
//! end) is padded with silence to the next frame. One channel may run up to
//! [`MAX_SKEW_MS`] ahead of the other; beyond that the late one is filled
//! with silence (and what it brings later for that time is dropped), so
//! what the mixer holds is bounded.

use super::tap::{Chunk, TapDirection};
use std::collections::VecDeque;
use voxbridge_codecs::resample::{Resampler, MAX_RATE};

/// The longest 20 ms frame the resampler takes.
const MAX_FRAME: usize = (MAX_RATE / 50) as usize;

/// How far one channel may run ahead of the other, ms.
pub const MAX_SKEW_MS: u64 = 2000;

/// Placement slack: a chunk that starts within this of where its channel
/// ends continues it (the chunk times are whole milliseconds).
const SLACK_MS: u64 = 5;

#[derive(Debug, Default)]
struct Channel {
    /// Samples at the file rate not yet written, the first at the mixer's
    /// `written`.
    pending: VecDeque<i16>,
    /// From the chunks' rate to the file's, when they differ.
    resampler: Option<Resampler>,
    /// Samples dropped (an overlap, a rate the resampler cannot take).
    dropped: u64,
}

/// The stereo stream of one recording (see the module docs).
#[derive(Debug)]
pub struct StereoMixer {
    rate: u32,
    channels: [Channel; 2],
    /// Stereo frames handed out so far.
    written: u64,
    input: Vec<i16>,
    resampled: Vec<i16>,
}

impl StereoMixer {
    /// A mixer writing at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        StereoMixer {
            rate,
            channels: Default::default(),
            written: 0,
            input: Vec::new(),
            resampled: Vec::new(),
        }
    }

    /// The file's rate, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Stereo frames (one sample per channel) handed out so far.
    pub fn frames(&self) -> u64 {
        self.written
    }

    /// Samples of either channel that could not be placed (overlaps, a
    /// rate the resampler cannot convert).
    pub fn dropped_samples(&self) -> u64 {
        self.channels.iter().map(|c| c.dropped).sum()
    }

    /// Places one tapped chunk and appends what both channels now have as
    /// interleaved little-endian stereo PCM16 to `out`.
    pub fn push(&mut self, chunk: &Chunk<'_>, out: &mut Vec<u8>) {
        let side = match chunk.direction {
            TapDirection::In => 0,
            TapDirection::Out => 1,
        };
        self.input.resize(chunk.pcm_le.len() / 2, 0);
        voxbridge_codecs::frame::read_le(chunk.pcm_le, &mut self.input);
        if !self.convert(side, chunk.rate) {
            self.channels[side].dropped += self.input.len() as u64;
            return;
        }
        let at = chunk.start_ms * self.rate as u64 / 1000;
        let slack = SLACK_MS * self.rate as u64 / 1000;
        let ch = &mut self.channels[side];
        let end = self.written + ch.pending.len() as u64;
        let mut samples = &self.resampled[..];
        if at > end + slack {
            // Audio that never came (dropped, or a pause in a direction):
            // silence in its place.
            ch.pending.extend(std::iter::repeat_n(0, (at - end) as usize));
        } else if at + slack < end {
            // Time this channel already has (filled in for the other's
            // sake): the overlap goes.
            let overlap = ((end - at) as usize).min(samples.len());
            ch.dropped += overlap as u64;
            samples = &samples[overlap..];
        }
        ch.pending.extend(samples.iter().copied());
        self.bound_skew();
        self.emit(out);
    }

    /// The end: the shorter channel is filled with silence to the longer
    /// one's length, and the rest goes to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let longest = self.channels.iter().map(|c| c.pending.len()).max().unwrap_or(0);
        for ch in &mut self.channels {
            let short = longest - ch.pending.len();
            ch.pending.extend(std::iter::repeat_n(0, short));
        }
        self.emit(out);
    }

    /// `self.input` at `rate` into `self.resampled` at the file rate;
    /// `false` when the resampler cannot convert `rate`.
    fn convert(&mut self, side: usize, rate: u32) -> bool {
        self.resampled.clear();
        if rate == self.rate {
            self.resampled.extend_from_slice(&self.input);
            return true;
        }
        let ch = &mut self.channels[side];
        if ch.resampler.as_ref().is_none_or(|r| r.from_rate() != rate) {
            match Resampler::new(rate, self.rate) {
                Ok(r) => ch.resampler = Some(r),
                Err(_) => return false,
            }
        }
        let Some(r) = ch.resampler.as_mut() else {
            return false;
        };
        let mut from = 0;
        while from < self.input.len() {
            let (n_in, n_out) = (r.input_len(), r.output_len());
            let mut frame = [0i16; MAX_FRAME];
            let take = n_in.min(self.input.len() - from);
            // A part frame (the last before a rate change or the end) is
            // padded with silence.
            frame[..take].copy_from_slice(&self.input[from..from + take]);
            let at = self.resampled.len();
            self.resampled.resize(at + n_out, 0);
            if r.process(&frame[..n_in], &mut self.resampled[at..]).is_err() {
                self.resampled.truncate(at);
                return false;
            }
            from += take;
        }
        true
    }

    /// A channel more than [`MAX_SKEW_MS`] ahead: the other is filled with
    /// silence up to that bound.
    fn bound_skew(&mut self) {
        let skew = (MAX_SKEW_MS * self.rate as u64 / 1000) as usize;
        let [a, b] = &mut self.channels;
        let (long, short) = if a.pending.len() > b.pending.len() {
            (a, b)
        } else {
            (b, a)
        };
        let behind = long.pending.len() - short.pending.len();
        if behind > skew {
            short.pending.extend(std::iter::repeat_n(0, behind - skew));
        }
    }

    /// Writes every frame both channels have.
    fn emit(&mut self, out: &mut Vec<u8>) {
        let [a, b] = &mut self.channels;
        let n = a.pending.len().min(b.pending.len());
        out.reserve(n * 4);
        for (l, r) in a.pending.drain(..n).zip(b.pending.drain(..n)) {
            out.extend_from_slice(&l.to_le_bytes());
            out.extend_from_slice(&r.to_le_bytes());
        }
        self.written += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn chunk(direction: TapDirection, rate: u32, pcm: &[u8], start_ms: u64) -> Chunk<'_> {
        Chunk {
            direction,
            rate,
            pcm_le: pcm,
            start_ms,
        }
    }

    fn frames(out: &[u8]) -> Vec<(i16, i16)> {
        out.chunks_exact(4)
            .map(|f| (i16::from_le_bytes([f[0], f[1]]), i16::from_le_bytes([f[2], f[3]])))
            .collect()
    }

    #[test]
    fn both_directions_side_by_side_by_their_time() {
        let mut m = StereoMixer::new(8000);
        let mut out = Vec::new();
        let caller = le(&[1; 800]);
        let heard = le(&[2; 800]);
        m.push(&chunk(TapDirection::In, 8000, &caller, 0), &mut out);
        assert!(out.is_empty(), "the right channel has nothing yet");
        m.push(&chunk(TapDirection::Out, 8000, &heard, 0), &mut out);
        assert_eq!(frames(&out), vec![(1, 2); 800]);
        assert_eq!(m.frames(), 800);
    }

    #[test]
    fn a_gap_is_silence_of_its_length() {
        let mut m = StereoMixer::new(8000);
        let mut out = Vec::new();
        let a = le(&[3; 800]);
        m.push(&chunk(TapDirection::In, 8000, &a, 0), &mut out);
        // 100-200 ms of the caller's audio was dropped.
        m.push(&chunk(TapDirection::In, 8000, &a, 200), &mut out);
        let b = le(&[4; 2400]);
        m.push(&chunk(TapDirection::Out, 8000, &b, 0), &mut out);
        let f = frames(&out);
        assert_eq!(f.len(), 2400);
        assert!(f[..800].iter().all(|&x| x == (3, 4)));
        assert!(f[800..1600].iter().all(|&x| x == (0, 4)), "the gap");
        assert!(f[1600..].iter().all(|&x| x == (3, 4)));
    }

    #[test]
    fn the_callers_rate_is_resampled_to_the_files() {
        let mut m = StereoMixer::new(16000);
        let mut out = Vec::new();
        let wide = le(&[0; 1600]); // 100 ms at 16 kHz
        let narrow = le(&[0; 800]); // 100 ms at 8 kHz
        for i in 0..10 {
            m.push(&chunk(TapDirection::In, 16000, &wide, i * 100), &mut out);
            m.push(&chunk(TapDirection::Out, 8000, &narrow, i * 100), &mut out);
        }
        assert_eq!(m.frames(), 16000, "one second of stereo at 16 kHz");
        assert_eq!(m.dropped_samples(), 0);
    }

    #[test]
    fn one_silent_direction_is_filled_past_the_skew_bound_and_the_end_pads() {
        let mut m = StereoMixer::new(8000);
        let mut out = Vec::new();
        let a = le(&[5; 800]);
        for i in 0..30 {
            m.push(&chunk(TapDirection::In, 8000, &a, i * 100), &mut out);
        }
        // 3 s of caller audio, nothing heard: all but the skew is out.
        assert_eq!(m.frames(), 8000 * (3000 - MAX_SKEW_MS) / 1000);
        m.finish(&mut out);
        assert_eq!(m.frames(), 24000);
        let f = frames(&out);
        assert!(f.iter().all(|&x| x == (5, 0)));
        // What the late channel brings for time already written is dropped.
        let late = le(&[6; 800]);
        m.push(&chunk(TapDirection::Out, 8000, &late, 0), &mut out);
        assert_eq!(m.dropped_samples(), 800);
    }
}
