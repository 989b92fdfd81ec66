//! The call's audio taps for transcription, sans-IO.
//!
//! A tap copies one direction of a call's audio off the pipeline into a
//! staging buffer of little-endian PCM16: `in` is what the caller said, at
//! the bot's rate (the frames the bot gets), `out` is what the caller heard,
//! at the caller's rate (the paced frames, silence included, so its time
//! runs with the call's). Every [`CHUNK_MS`] of audio becomes a chunk the
//! driver takes ([`Tap::take`]) and hands to the recognizer's task through a
//! bounded queue. The call never waits: a chunk the driver has not taken
//! when the next one is due is dropped and counted. A rate change (a codec
//! change mid-call) ends the chunk in progress, so every chunk is at one
//! rate. A paused tap (a recording paused while a caller reads out a card
//! number) writes silence in place of the audio: its time runs on, and
//! what was said never leaves the call.

/// Audio per chunk, ms.
pub const CHUNK_MS: u32 = 100;

/// Which way the audio went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TapDirection {
    /// The caller's speech (`in`).
    In,
    /// What the caller heard: the bot (`out`).
    Out,
}

impl TapDirection {
    /// `in` or `out`, as the transcript's direction.
    pub fn as_str(self) -> &'static str {
        match self {
            TapDirection::In => "in",
            TapDirection::Out => "out",
        }
    }

    fn index(self) -> usize {
        match self {
            TapDirection::In => 0,
            TapDirection::Out => 1,
        }
    }
}

/// Whole chunks a direction holds for the driver at most: input comes in
/// bursts (an AudioSocket read of many frames, a jitter buffer releasing
/// what waited behind a gap), taken between them.
pub const MAX_CHUNKS: usize = 16;

/// One direction's chunks: the filled ones in order, the one being filled,
/// and emptied buffers kept for reuse (nothing is allocated once each has
/// been made).
#[derive(Debug, Default)]
struct Stream {
    rate: u32,
    /// Filled chunks, oldest first, each with its rate and first sample.
    ready: std::collections::VecDeque<(Vec<u8>, u32, u64)>,
    /// The chunk being filled.
    staged: Vec<u8>,
    spare: Vec<Vec<u8>>,
    /// Samples since the stream started (the call's time in this direction),
    /// at `rate`.
    samples: u64,
}

impl Stream {
    /// The staged chunk joins the ready ones (the driver has room for it,
    /// checked by the caller).
    fn seal(&mut self) {
        let start = self.samples - (self.staged.len() / 2) as u64;
        let next = self.spare.pop().unwrap_or_default();
        let full = std::mem::replace(&mut self.staged, next);
        self.ready.push_back((full, self.rate, start));
    }
}

/// The taps of one call (see the module docs).
#[derive(Debug)]
pub struct Tap {
    streams: [Option<Stream>; 2],
    dropped_ms: u64,
    paused: bool,
}

/// A chunk taken from a tap.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Its direction.
    pub direction: TapDirection,
    /// Sample rate of `pcm_le`.
    pub rate: u32,
    /// Little-endian PCM16 mono.
    pub pcm_le: &'a [u8],
    /// Where it starts in its direction's audio, ms since the tap began
    /// (dropped audio counts: later chunks keep their place in time).
    pub start_ms: u64,
}

impl Tap {
    /// Taps for the directions asked for.
    pub fn new(inbound: bool, outbound: bool) -> Self {
        let make = |on: bool| {
            on.then(|| Stream {
                ready: std::collections::VecDeque::with_capacity(MAX_CHUNKS),
                spare: Vec::with_capacity(MAX_CHUNKS + 1),
                ..Stream::default()
            })
        };
        Tap {
            streams: [make(inbound), make(outbound)],
            dropped_ms: 0,
            paused: false,
        }
    }

    /// Pauses (silence in place of the audio, time kept) or resumes.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether the tap is paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Whether `direction` is tapped.
    pub fn taps(&self, direction: TapDirection) -> bool {
        self.streams[direction.index()].is_some()
    }

    /// One frame of `direction`'s audio at `rate`.
    pub fn push(&mut self, direction: TapDirection, rate: u32, pcm: &[i16]) {
        let Some(s) = self.streams[direction.index()].as_mut() else {
            return;
        };
        if rate == 0 {
            return;
        }
        if rate != s.rate {
            if !s.staged.is_empty() {
                // The chunk in progress ends at the old rate.
                if s.ready.len() < MAX_CHUNKS {
                    s.seal();
                } else {
                    self.dropped_ms += (s.staged.len() / 2) as u64 * 1000 / s.rate.max(1) as u64;
                    s.staged.clear();
                }
            }
            if s.rate != 0 {
                s.samples = s.samples * rate as u64 / s.rate as u64;
            }
            s.rate = rate;
        }
        if s.ready.len() >= MAX_CHUNKS {
            // The driver has not taken what is there: this frame is
            // dropped, its time kept.
            s.samples += pcm.len() as u64;
            self.dropped_ms += pcm.len() as u64 * 1000 / rate as u64;
            return;
        }
        if s.staged.capacity() == 0 {
            // Room for a chunk and an odd-sized frame over it, made once per buffer.
            s.staged.reserve_exact(2 * chunk_bytes(rate));
        }
        let at = s.staged.len();
        s.staged.resize(at + 2 * pcm.len(), 0);
        if !self.paused {
            voxbridge_codecs::frame::write_le(pcm, &mut s.staged[at..]);
        }
        s.samples += pcm.len() as u64;
        if s.staged.len() >= chunk_bytes(rate) {
            s.seal();
        }
    }

    /// The oldest whole chunk waiting, if any; [`Tap::taken`] releases it.
    pub fn take(&self) -> Option<Chunk<'_>> {
        for (i, s) in self.streams.iter().enumerate() {
            let Some((pcm, rate, start)) = s.as_ref().and_then(|s| s.ready.front()) else {
                continue;
            };
            return Some(Chunk {
                direction: if i == 0 {
                    TapDirection::In
                } else {
                    TapDirection::Out
                },
                rate: *rate,
                pcm_le: pcm,
                start_ms: start * 1000 / (*rate).max(1) as u64,
            });
        }
        None
    }

    /// The chunk from [`Tap::take`] was handed on (or dropped by the driver).
    pub fn taken(&mut self, direction: TapDirection) {
        if let Some(s) = self.streams[direction.index()].as_mut() {
            if let Some((mut buf, ..)) = s.ready.pop_front() {
                buf.clear();
                s.spare.push(buf);
            }
        }
    }

    /// The end of the call: what is staged becomes a (short) chunk.
    pub fn flush(&mut self) {
        for s in self.streams.iter_mut().flatten() {
            if !s.staged.is_empty() && s.ready.len() < MAX_CHUNKS {
                s.seal();
            }
        }
    }

    /// Audio dropped because chunks were not taken in time, ms.
    pub fn dropped_ms(&self) -> u64 {
        self.dropped_ms
    }
}

fn chunk_bytes(rate: u32) -> usize {
    (rate as usize * CHUNK_MS as usize / 1000) * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_100_ms_chunks_with_their_place_in_time() {
        let mut tap = Tap::new(true, true);
        let frame = [7i16; 320]; // 20 ms at 16 kHz
        for _ in 0..4 {
            tap.push(TapDirection::In, 16000, &frame);
        }
        assert_eq!(tap.take(), None, "80 ms is not a chunk yet");
        tap.push(TapDirection::In, 16000, &frame);
        let c = tap.take().expect("a chunk");
        assert_eq!(
            (c.direction, c.rate, c.pcm_le.len(), c.start_ms),
            (TapDirection::In, 16000, 3200, 0)
        );
        assert_eq!(&c.pcm_le[..2], &7i16.to_le_bytes());
        tap.taken(TapDirection::In);
        for _ in 0..5 {
            tap.push(TapDirection::In, 16000, &frame);
        }
        assert_eq!(tap.take().expect("second").start_ms, 100);
    }

    #[test]
    fn a_burst_is_held_and_beyond_the_bound_dropped_with_time_kept() {
        let mut tap = Tap::new(false, true);
        let frame = [1i16; 160]; // 20 ms at 8 kHz
                                 // A burst of 2 s arrives before the driver takes anything.
        for _ in 0..100 {
            tap.push(TapDirection::Out, 8000, &frame);
        }
        let held = MAX_CHUNKS as u64 * CHUNK_MS as u64;
        assert_eq!(tap.dropped_ms(), 2000 - held);
        for i in 0..MAX_CHUNKS as u64 {
            assert_eq!(tap.take().expect("held").start_ms, i * 100);
            tap.taken(TapDirection::Out);
        }
        assert_eq!(tap.take(), None);
        for _ in 0..5 {
            tap.push(TapDirection::Out, 8000, &frame);
        }
        assert_eq!(tap.take().expect("chunk").start_ms, 2000, "still in place");
        tap.push(TapDirection::In, 8000, &frame);
        assert!(!tap.taps(TapDirection::In));
    }

    #[test]
    fn a_rate_change_ends_the_chunk_and_the_end_flushes_a_short_one() {
        let mut tap = Tap::new(false, true);
        tap.push(TapDirection::Out, 8000, &[1; 160]);
        tap.push(TapDirection::Out, 16000, &[2; 320]);
        let c = tap.take().expect("the 8 kHz part");
        assert_eq!((c.rate, c.pcm_le.len(), c.start_ms), (8000, 320, 0));
        tap.taken(TapDirection::Out);
        assert_eq!(tap.take(), None);
        tap.flush();
        let c = tap.take().expect("flushed");
        assert_eq!((c.rate, c.pcm_le.len(), c.start_ms), (16000, 640, 20));
    }

    #[test]
    fn a_paused_tap_gives_silence_in_the_audio_s_place() {
        let mut tap = Tap::new(true, false);
        tap.push(TapDirection::In, 8000, &[5; 160]);
        tap.set_paused(true);
        tap.push(TapDirection::In, 8000, &[5; 160]);
        tap.set_paused(false);
        for _ in 0..3 {
            tap.push(TapDirection::In, 8000, &[5; 160]);
        }
        let c = tap.take().expect("a chunk of 100 ms");
        let samples: Vec<i16> = c
            .pcm_le
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(samples.len(), 800);
        assert!(samples[..160].iter().all(|&x| x == 5));
        assert!(samples[160..320].iter().all(|&x| x == 0), "paused: silence");
        assert!(samples[320..].iter().all(|&x| x == 5));
    }

    #[test]
    fn buffers_are_reused_once_made() {
        let mut tap = Tap::new(true, false);
        let frame = [3i16; 160];
        for _ in 0..50 {
            for _ in 0..5 {
                tap.push(TapDirection::In, 8000, &frame);
            }
            tap.taken(TapDirection::In);
        }
        let s = tap.streams[0].as_ref().expect("in");
        assert!(s.spare.len() <= 2, "{} spare buffers", s.spare.len());
    }
}
