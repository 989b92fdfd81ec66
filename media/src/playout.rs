//! Bot-to-caller playout buffer: absorbs bursty bot audio, hands out exactly
//! one 20 ms frame per pacer tick, flushes on barge-in, and reports marks when
//! the audio before them has actually been played.
//!
//! Bots send audio faster than real time (pipecat about 2x, TTS whole seconds
//! at once); the buffer holds it at the bot's rate until each tick takes a
//! frame. Overflow policy: audio beyond [`Playout::capacity_ms`] is refused
//! (the newest samples are dropped and counted), so a runaway bot cannot grow
//! memory and what is already playing stays continuous. An empty buffer gives
//! silence; a frame that runs dry part-way counts as an underrun, one with
//! no audio at all as a silent frame. The ring is allocated for 10 s of audio
//! up front and grows at most to the cap; taking a frame never allocates.

use std::collections::VecDeque;

/// Default cap on buffered bot audio.
pub const DEFAULT_CAPACITY_MS: u32 = 60_000;

/// What a frame handed out contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFill {
    /// A whole frame of bot audio.
    Audio,
    /// Some bot audio, the rest silence (the buffer ran dry mid-frame).
    Partial(usize),
    /// Nothing queued: silence.
    Silence,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Samples refused because the buffer was full.
    pub overflow_samples: u64,
    /// Samples dropped by barge-in.
    pub cleared_samples: u64,
    /// Frames that ran dry part-way.
    pub underruns: u64,
    /// Frames of pure silence handed out.
    pub silent_frames: u64,
}

/// Playout buffer for one call, at the bot's sample rate.
#[derive(Debug)]
pub struct Playout {
    rate: u32,
    frame: usize,
    capacity: usize,
    samples: VecDeque<i16>,
    /// Samples ever accepted (queue position of the next pushed sample).
    pushed: u64,
    /// Samples ever played or cleared (queue position of the next sample out).
    consumed: u64,
    /// Marks waiting for playback to pass their position (position, name).
    marks: VecDeque<(u64, String)>,
    /// Marks whose audio has been played (or cleared), for the driver to echo.
    due: VecDeque<String>,
    stats: PlayoutStats,
}

impl Playout {
    /// A buffer for audio at `rate` Hz, capped at `capacity_ms` of audio.
    pub fn new(rate: u32, capacity_ms: u32) -> Self {
        let capacity = (rate as u64 * capacity_ms as u64 / 1000) as usize;
        Playout {
            rate,
            frame: (rate / 50) as usize,
            capacity,
            samples: VecDeque::with_capacity(capacity.min(rate as usize * 10)),
            pushed: 0,
            consumed: 0,
            marks: VecDeque::new(),
            due: VecDeque::new(),
            stats: PlayoutStats::default(),
        }
    }

    /// Sample rate, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The cap, in milliseconds of audio.
    pub fn capacity_ms(&self) -> u64 {
        self.capacity as u64 * 1000 / self.rate.max(1) as u64
    }

    /// Milliseconds of audio queued.
    pub fn buffered_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / self.rate.max(1) as u64
    }

    /// Queues bot audio; returns how many samples were accepted (the rest overflowed).
    pub fn push(&mut self, pcm: &[i16]) -> usize {
        let room = self.capacity.saturating_sub(self.samples.len());
        let take = pcm.len().min(room);
        self.samples.extend(&pcm[..take]);
        self.pushed += take as u64;
        self.stats.overflow_samples += (pcm.len() - take) as u64;
        take
    }

    /// Places a mark after the audio queued so far; it comes out of
    /// [`Playout::poll_mark`] once that audio has been played.
    pub fn mark(&mut self, name: impl Into<String>) {
        if self.pushed == self.consumed {
            self.due.push_back(name.into());
        } else {
            self.marks.push_back((self.pushed, name.into()));
        }
    }

    /// Fills `out` (one frame at the bot rate) for the current tick.
    pub fn next_frame(&mut self, out: &mut [i16]) -> FrameFill {
        let n = out.len().min(self.samples.len());
        for (o, s) in out.iter_mut().zip(self.samples.drain(..n)) {
            *o = s;
        }
        out[n..].fill(0);
        self.consumed += n as u64;
        self.release_marks();
        if n == out.len() {
            FrameFill::Audio
        } else if n > 0 {
            self.stats.underruns += 1;
            FrameFill::Partial(n)
        } else {
            self.stats.silent_frames += 1;
            FrameFill::Silence
        }
    }

    /// Barge-in: drops everything queued so the next frame is silence. Pending
    /// marks are released (their audio will never play), as Twilio does on `clear`.
    pub fn clear(&mut self) {
        let dropped = self.samples.len() as u64;
        self.samples.clear();
        self.consumed += dropped;
        self.stats.cleared_samples += dropped;
        self.release_marks();
    }

    /// The next mark whose audio has been played.
    pub fn poll_mark(&mut self) -> Option<String> {
        self.due.pop_front()
    }

    /// Samples in one frame.
    pub fn frame_len(&self) -> usize {
        self.frame
    }

    /// Counters so far.
    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    fn release_marks(&mut self) {
        while let Some((pos, _)) = self.marks.front() {
            if *pos > self.consumed {
                break;
            }
            if let Some((_, name)) = self.marks.pop_front() {
                self.due.push_back(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_burst_plays_out_one_frame_per_tick_then_silence() {
        let mut p = Playout::new(16000, DEFAULT_CAPACITY_MS);
        let burst: Vec<i16> = (0..16000).map(|i| (i % 1000) as i16 + 1).collect(); // 1 s at once
        assert_eq!(p.push(&burst), 16000);
        let mut out = vec![0i16; 320];
        let mut played = Vec::new();
        for _ in 0..50 {
            assert_eq!(p.next_frame(&mut out), FrameFill::Audio);
            played.extend_from_slice(&out);
        }
        assert_eq!(played, burst, "bit-exact, in order");
        assert_eq!(p.next_frame(&mut out), FrameFill::Silence);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn barge_in_silences_the_very_next_frame() {
        let mut p = Playout::new(8000, DEFAULT_CAPACITY_MS);
        p.push(&[100; 8000]);
        let mut out = [0i16; 160];
        assert_eq!(p.next_frame(&mut out), FrameFill::Audio);
        p.clear();
        assert_eq!(p.next_frame(&mut out), FrameFill::Silence);
        assert!(out.iter().all(|&s| s == 0));
        assert_eq!(p.stats().cleared_samples, 8000 - 160);
    }

    #[test]
    fn marks_come_back_when_their_audio_has_played() {
        let mut p = Playout::new(8000, DEFAULT_CAPACITY_MS);
        p.push(&[1; 400]); // 50 ms
        p.mark("after-hello");
        p.push(&[2; 160]);
        p.mark("after-world");
        let mut out = [0i16; 160];
        p.next_frame(&mut out);
        p.next_frame(&mut out);
        assert_eq!(p.poll_mark(), None, "40 ms of 50 played");
        p.next_frame(&mut out);
        assert_eq!(p.poll_mark().as_deref(), Some("after-hello"));
        assert_eq!(p.poll_mark(), None);
        p.clear();
        assert_eq!(p.poll_mark().as_deref(), Some("after-world"), "released by clear");
        p.mark("nothing-queued");
        assert_eq!(p.poll_mark().as_deref(), Some("nothing-queued"));
    }

    #[test]
    fn overflow_refuses_the_newest_and_counts_it() {
        let mut p = Playout::new(8000, 100); // 800 samples
        assert_eq!(p.push(&[1; 600]), 600);
        assert_eq!(p.push(&[2; 600]), 200);
        assert_eq!(p.stats().overflow_samples, 400);
        assert_eq!(p.buffered_ms(), 100);
    }

    proptest! {
        #[test]
        fn any_chunking_plays_back_the_same_samples(chunks in prop::collection::vec(prop::collection::vec(any::<i16>(), 0..700), 0..30)) {
            let mut p = Playout::new(16000, DEFAULT_CAPACITY_MS);
            let mut all = Vec::new();
            let mut out = vec![0i16; 320];
            let mut played = Vec::new();
            for c in &chunks {
                p.push(c);
                all.extend_from_slice(c);
                if let FrameFill::Audio = p.next_frame(&mut out) { played.extend_from_slice(&out) } else { break }
            }
            prop_assert_eq!(&all[..played.len()], &played[..]);
        }
    }
}
