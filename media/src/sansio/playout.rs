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
//! no audio at all as a silent frame. The ring is allocated for 0.25 s of audio
//! up front (a ring touches all of its memory as it turns, so what is
//! allocated is resident for every call) and grows, doubling, at most to the
//! cap when a bot sends more ahead; taking a frame never allocates.
//!
//! Start cushion (a jitter buffer for the bot's side): bots send audio on
//! their own clock (pipecat: 40 ms chunks 27-54 ms apart), so an utterance
//! that starts playing the moment its first chunk arrives runs dry whenever
//! a later chunk is a little late, and 20-40 ms of silence lands in the
//! middle of speech. So the first frame of an utterance waits until the
//! cushion's time has passed since its audio arrived, or until more than
//! the cushion plus [`BURST_MS`] is queued (a bot far ahead of real time
//! needs no wait). A dry spell of at most [`GAP_FRAMES`] frames followed by
//! more audio is silence inserted inside an utterance: counted
//! ([`PlayoutStats::gap_frames`]), and the cushion grows by the time it
//! lasted (up to [`MAX_CUSHION_MS`]); the resumed audio waits out only what
//! the dry spell has not already covered. An utterance that played through
//! with more than 20 ms to spare all along gives 20 ms of cushion back.
//! Barge-in ([`Playout::clear`]) silences at once and never waits.

use std::collections::VecDeque;

/// Default cap on buffered bot audio.
pub const DEFAULT_CAPACITY_MS: u32 = 60_000;
/// Default start cushion for a new call, ms (a route's `bot_cushion_ms`).
pub const DEFAULT_CUSHION_MS: u32 = 40;
/// Most the cushion grows to, ms.
pub const MAX_CUSHION_MS: u32 = 200;
/// Queued audio beyond the cushion that starts an utterance at once, ms.
pub const BURST_MS: u64 = 60;
/// A dry spell longer than this many frames ends the utterance (a pause,
/// not a late chunk).
pub const GAP_FRAMES: u32 = 5;

/// Where the buffer is in the bot's speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between utterances.
    Idle,
    /// Audio queued, waiting out the cushion (`waited_ms` so far);
    /// `after_gap` when resuming after silence inserted mid-utterance.
    Priming { waited_ms: u32, after_gap: bool },
    /// Playing; the last `dry` frames ran dry, `gapped` once silence was
    /// inserted in this utterance, `played` frames of it so far.
    Playing { dry: u32, gapped: bool, played: u32 },
}

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
    /// Frames of silence inserted inside an utterance (the bot's audio ran
    /// dry and came back within [`GAP_FRAMES`]).
    pub gap_frames: u64,
    /// Frames of silence waited out as start cushion.
    pub cushion_frames: u64,
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
    phase: Phase,
    /// The start cushion now, ms (adapts; see the module docs).
    cushion_ms: u32,
    /// Least audio left after a frame since the bot's last push, ms.
    slack_pending: u64,
    /// Least audio left after a frame that more audio followed, this
    /// utterance, ms (the drain at an utterance's end does not count).
    slack: u64,
}

impl Playout {
    /// A buffer for audio at `rate` Hz, capped at `capacity_ms` of audio.
    pub fn new(rate: u32, capacity_ms: u32) -> Self {
        let capacity = (rate as u64 * capacity_ms as u64 / 1000) as usize;
        Playout {
            rate,
            frame: (rate / 50) as usize,
            capacity,
            samples: VecDeque::with_capacity(capacity.min(rate as usize / 4)),
            pushed: 0,
            consumed: 0,
            marks: VecDeque::new(),
            due: VecDeque::new(),
            stats: PlayoutStats::default(),
            phase: Phase::Idle,
            cushion_ms: 0,
            slack_pending: u64::MAX,
            slack: u64::MAX,
        }
    }

    /// Sets the start cushion (0: play the first chunk at once; it still
    /// grows when the bot's audio runs dry inside an utterance).
    pub fn with_cushion(mut self, ms: u32) -> Self {
        self.set_cushion(ms);
        self
    }

    /// As [`Playout::with_cushion`], in place.
    pub fn set_cushion(&mut self, ms: u32) {
        self.cushion_ms = ms.min(MAX_CUSHION_MS);
    }

    /// The start cushion now, ms.
    pub fn cushion_ms(&self) -> u32 {
        self.cushion_ms
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
        if take > 0 {
            self.slack = self.slack.min(self.slack_pending);
            self.slack_pending = u64::MAX;
        }
        self.stats.overflow_samples += (pcm.len() - take) as u64;
        take
    }

    /// Places a mark after the audio queued so far; it comes out of
    /// [`Playout::poll_mark`] once that audio has been played.
    pub fn mark(&mut self, name: impl Into<String>) {
        self.mark_after(name, 0);
    }

    /// Places a mark `later` samples after the audio queued so far (audio
    /// still on its way in: a resampler's delay).
    pub fn mark_after(&mut self, name: impl Into<String>, later: u64) {
        if later == 0 && self.pushed == self.consumed {
            self.due.push_back(name.into());
        } else {
            self.marks.push_back((self.pushed + later, name.into()));
        }
    }

    /// Fills `out` (one frame at the caller's rate) for the current tick.
    pub fn next_frame(&mut self, out: &mut [i16]) -> FrameFill {
        let frame_ms = (1000 * out.len() as u64 / self.rate.max(1) as u64) as u32;
        let queued = !self.samples.is_empty();
        match self.phase {
            Phase::Idle if queued => {
                self.phase = Phase::Priming {
                    waited_ms: 0,
                    after_gap: false,
                };
                self.slack = u64::MAX;
                self.slack_pending = u64::MAX;
            }
            Phase::Playing { dry, .. } if dry > 0 && queued => {
                // Audio again after a short dry spell: silence was inserted
                // inside the utterance. The cushion grows by what it lasted,
                // and the resumed audio waits out only the rest of it.
                // One frame more than the spell, as margin.
                self.stats.gap_frames += dry as u64;
                self.cushion_ms = (self.cushion_ms + (dry + 1) * frame_ms).min(MAX_CUSHION_MS);
                self.phase = Phase::Priming {
                    waited_ms: dry * frame_ms,
                    after_gap: true,
                };
            }
            _ => {}
        }
        if let Phase::Priming { waited_ms, after_gap } = self.phase {
            let cushion = self.cushion_ms as u64;
            if (waited_ms as u64) < cushion && self.buffered_ms() < cushion + BURST_MS {
                self.phase = Phase::Priming {
                    waited_ms: waited_ms + frame_ms,
                    after_gap,
                };
                self.stats.cushion_frames += 1;
                out.fill(0);
                return FrameFill::Silence;
            }
            self.phase = Phase::Playing {
                dry: 0,
                gapped: after_gap,
                played: 0,
            };
        }
        let n = out.len().min(self.samples.len());
        for (o, s) in out.iter_mut().zip(self.samples.drain(..n)) {
            *o = s;
        }
        out[n..].fill(0);
        self.consumed += n as u64;
        self.release_marks();
        if let Phase::Playing { dry, gapped, played } = self.phase {
            self.phase = if n == out.len() {
                self.slack_pending = self.slack_pending.min(self.buffered_ms());
                Phase::Playing {
                    dry: 0,
                    gapped,
                    played: played + 1,
                }
            } else if dry < GAP_FRAMES {
                self.slack_pending = 0;
                Phase::Playing {
                    dry: dry + 1,
                    gapped,
                    played,
                }
            } else {
                // A pause, not a late chunk: the utterance is over. One of
                // some length whose audio was always ahead of the cushion by
                // a burst (or came in one piece) gives 20 ms of it back; a
                // bot on its own real-time clock never is, so its cushion
                // stays where its jitter put it.
                let ahead = self.slack == u64::MAX || self.slack >= self.cushion_ms as u64 + BURST_MS;
                if !gapped && played >= 10 && ahead {
                    self.cushion_ms = self.cushion_ms.saturating_sub(20);
                }
                Phase::Idle
            };
        }
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

    /// For a caller that paces playback itself (Asterisk's queue): the next
    /// frame straight from the queue, with no cushion and no silence. A
    /// partial frame is taken only when `partial_ok`; it fills the start of
    /// `out` and the count of samples taken is returned (0: nothing taken).
    pub fn take_ready(&mut self, out: &mut [i16], partial_ok: bool) -> usize {
        let n = out.len().min(self.samples.len());
        if n == 0 || (n < out.len() && !partial_ok) {
            return 0;
        }
        for (o, s) in out.iter_mut().zip(self.samples.drain(..n)) {
            *o = s;
        }
        self.consumed += n as u64;
        self.release_marks();
        n
    }

    /// Barge-in: drops everything queued so the next frame is silence. Pending
    /// marks are released (their audio will never play), as Twilio does on `clear`.
    pub fn clear(&mut self) {
        let dropped = self.samples.len() as u64;
        self.samples.clear();
        self.phase = Phase::Idle;
        self.consumed += dropped;
        self.stats.cleared_samples += dropped;
        // Every pending mark's audio is gone, including what a resampler
        // still held for it (`mark_after`): that never comes now.
        self.due.extend(self.marks.drain(..).map(|(_, name)| name));
    }

    /// The marks whose audio has not played yet are dropped, never to be
    /// reported (jambonz's `clearMarks`).
    pub fn forget_marks(&mut self) {
        self.marks.clear();
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

    /// A bot on its own clock, against the caller's 20 ms ticks on a virtual
    /// clock: `utterances` of 2 s sent as 40 ms chunks every 40 ms, each
    /// chunk up to `jitter_ms` early or late (seeded), 1 s apart. Returns
    /// the frames each utterance gave out, from its first audio frame to its
    /// last, and the cushion frames it waited first.
    fn simulate(p: &mut Playout, utterances: usize, jitter_ms: i64, seed: u64) -> Vec<(Vec<FrameFill>, u64)> {
        let mut state = seed | 1;
        let mut rand = move |span: i64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % (2 * span as u64 + 1)) as i64 - span
        };
        // (arrival ms, utterance) of every chunk, in arrival order.
        let mut chunks: Vec<(i64, usize)> = Vec::new();
        for u in 0..utterances {
            let start = 1000 + u as i64 * 3000;
            for i in 0..50 {
                chunks.push((start + 40 * i + rand(jitter_ms), u));
            }
        }
        chunks.sort();
        let mut out = vec![0i16; 160];
        let mut per: Vec<(Vec<FrameFill>, u64)> = vec![(Vec::new(), 0); utterances];
        let mut next = 0;
        let mut current = 0;
        // Ticks at 20 ms, 7 ms out of phase with the bot's clock.
        for tick in 0..(utterances as i64 * 150 + 100) {
            let now = 7 + tick * 20;
            while next < chunks.len() && chunks[next].0 <= now {
                current = chunks[next].1;
                p.push(&[1000; 320]);
                next += 1;
            }
            let before = p.stats().cushion_frames;
            let fill = p.next_frame(&mut out);
            per[current].1 += p.stats().cushion_frames - before;
            per[current].0.push(fill);
        }
        for (fills, _) in &mut per {
            let first = fills.iter().position(|f| *f == FrameFill::Audio).unwrap_or(0);
            let last = fills.iter().rposition(|f| *f == FrameFill::Audio).unwrap_or(0);
            *fills = fills[first..=last].to_vec();
        }
        per
    }

    #[test]
    fn a_bot_with_jitter_gets_no_silence_inside_an_utterance_and_at_most_40_ms_at_its_start() {
        for seed in 1..=20 {
            let mut p = Playout::new(8000, DEFAULT_CAPACITY_MS).with_cushion(DEFAULT_CUSHION_MS);
            for (u, (fills, cushion)) in simulate(&mut p, 10, 15, seed).into_iter().enumerate() {
                assert_eq!(
                    fills.len(),
                    100,
                    "seed {seed} utterance {u}: 2 s of audio, no gap: {fills:?}"
                );
                assert!(
                    fills.iter().all(|f| *f == FrameFill::Audio),
                    "seed {seed} utterance {u}"
                );
                assert!(
                    cushion <= 2,
                    "seed {seed} utterance {u}: {cushion} frames of cushion"
                );
            }
            assert_eq!(p.stats().gap_frames, 0, "seed {seed}");
        }
    }

    #[test]
    fn the_cushion_grows_when_a_bot_jitters_more_than_it_covers() {
        let mut p = Playout::new(8000, DEFAULT_CAPACITY_MS).with_cushion(0);
        let runs = simulate(&mut p, 10, 40, 7);
        assert!(p.stats().gap_frames > 0, "no cushion at first: the jitter shows");
        assert!(p.cushion_ms() > 40, "grown to cover it: {} ms", p.cushion_ms());
        for (u, (fills, _)) in runs.iter().enumerate().skip(5) {
            assert!(
                fills.iter().all(|f| *f == FrameFill::Audio),
                "utterance {u} after learning: {fills:?}"
            );
        }
    }

    #[test]
    fn a_bot_far_ahead_of_real_time_plays_at_once_and_gives_cushion_back() {
        let mut p = Playout::new(8000, DEFAULT_CAPACITY_MS).with_cushion(DEFAULT_CUSHION_MS);
        let mut out = [0i16; 160];
        for _ in 0..3 {
            // A whole second at once, as TTS sends it, then a pause.
            p.push(&[500; 8000]);
            for _ in 0..50 {
                assert_eq!(
                    p.next_frame(&mut out),
                    FrameFill::Audio,
                    "no wait: far more than the cushion is queued"
                );
            }
            for _ in 0..=GAP_FRAMES {
                assert_eq!(p.next_frame(&mut out), FrameFill::Silence);
            }
        }
        assert_eq!(p.stats().cushion_frames, 0);
        assert_eq!(p.cushion_ms(), 0, "three clean utterances gave the cushion back");
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
        // A mark behind audio still in a resampler is released by a clear
        // too: that audio never comes.
        p.push(&[3; 160]);
        p.mark_after("behind-the-resampler", 12);
        p.clear();
        assert_eq!(p.poll_mark().as_deref(), Some("behind-the-resampler"));
        p.mark("after-the-clear");
        assert_eq!(
            p.poll_mark().as_deref(),
            Some("after-the-clear"),
            "nothing queued"
        );
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
