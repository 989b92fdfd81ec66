//! The DSP of one call, both directions, sans-IO.
//!
//! Up: caller PCM (any chunking, the caller's rate) is cut into 20 ms frames
//! and resampled to the bot's rate, one bot frame out per caller frame in, so
//! nothing waits for a tick. Down: bot PCM (any chunking, any supported rate,
//! the rate may change between messages) is cut into 20 ms frames at its own
//! rate, resampled to the caller's rate and queued in the [`Playout`] buffer;
//! each pacer tick takes exactly one caller frame out. All buffers are sized at
//! construction (or on a rate change); per-frame work never allocates. The
//! driver owns sockets and clocks, this struct only samples.

use crate::error::MediaError;
use crate::playout::{FrameFill, Playout};
use voxbridge_codecs::{frame_len, Resampler};

/// One direction's "cut into 20 ms frames, then resample" stage.
#[derive(Debug)]
struct Framer {
    resampler: Resampler,
    acc: Vec<i16>,
    fill: usize,
    out: Vec<i16>,
}

impl Framer {
    fn new(from: u32, to: u32) -> Result<Self, MediaError> {
        Ok(Framer {
            resampler: Resampler::new(from, to)?,
            acc: vec![0; frame_len(from)],
            fill: 0,
            out: vec![0; frame_len(to)],
        })
    }

    fn input_rate(&self) -> u32 {
        self.resampler.from_rate()
    }

    /// Feeds little-endian PCM16; calls `emit` with each finished output frame.
    fn push_le(&mut self, le: &[u8], mut emit: impl FnMut(&[i16])) -> usize {
        let mut frames = 0;
        for pair in le.chunks_exact(2) {
            self.acc[self.fill] = i16::from_le_bytes([pair[0], pair[1]]);
            self.fill += 1;
            if self.fill == self.acc.len() {
                frames += self.run(&mut emit);
            }
        }
        frames
    }

    /// Feeds samples; calls `emit` with each finished output frame.
    fn push(&mut self, pcm: &[i16], mut emit: impl FnMut(&[i16])) -> usize {
        let mut frames = 0;
        let mut rest = pcm;
        while !rest.is_empty() {
            let take = rest.len().min(self.acc.len() - self.fill);
            self.acc[self.fill..self.fill + take].copy_from_slice(&rest[..take]);
            self.fill += take;
            rest = &rest[take..];
            if self.fill == self.acc.len() {
                frames += self.run(&mut emit);
            }
        }
        frames
    }

    /// Pads a partial frame with silence and emits it (end of a bot utterance).
    fn flush(&mut self, emit: impl FnMut(&[i16])) -> usize {
        if self.fill == 0 {
            return 0;
        }
        self.acc[self.fill..].fill(0);
        self.run(emit)
    }

    /// Pushes one frame of silence through, so the filter's tail (its group
    /// delay's worth of the last real samples) comes out.
    fn flush_tail(&mut self, emit: impl FnMut(&[i16])) -> usize {
        self.acc.fill(0);
        self.run(emit)
    }

    fn run(&mut self, mut emit: impl FnMut(&[i16])) -> usize {
        self.fill = 0;
        // Lengths are fixed at construction, so process() cannot fail here.
        if self.resampler.process(&self.acc, &mut self.out).is_err() {
            return 0;
        }
        emit(&self.out);
        1
    }

    fn reset(&mut self) {
        self.fill = 0;
        self.resampler.reset();
    }
}

/// Counters the pipeline keeps (the driver folds them into metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// 20 ms frames resampled toward the bot.
    pub frames_up: u64,
    /// 20 ms frames of bot audio queued for the caller.
    pub frames_down: u64,
    /// Bot audio dropped because its rate is unsupported, or an odd byte count.
    pub bad_bot_audio: u64,
}

/// The DSP state of one call.
#[derive(Debug)]
pub struct Pipeline {
    caller_rate: u32,
    bot_rate: u32,
    up: Framer,
    down: Framer,
    playout: Playout,
    /// Bot audio went into the down resampler since its tail was last flushed.
    down_dirty: bool,
    egress: Vec<i16>,
    stats: PipelineStats,
}

impl Pipeline {
    /// A call whose caller speaks PCM at `caller_rate` and whose bot at
    /// `bot_rate`; at most `playout_cap_ms` of bot audio is queued.
    pub fn new(caller_rate: u32, bot_rate: u32, playout_cap_ms: u32) -> Result<Self, MediaError> {
        Ok(Pipeline {
            caller_rate,
            bot_rate,
            up: Framer::new(caller_rate, bot_rate)?,
            down: Framer::new(bot_rate, caller_rate)?,
            playout: Playout::new(caller_rate, playout_cap_ms),
            down_dirty: false,
            egress: vec![0; frame_len(caller_rate)],
            stats: PipelineStats::default(),
        })
    }

    /// The caller's sample rate.
    pub fn caller_rate(&self) -> u32 {
        self.caller_rate
    }

    /// The bot's sample rate (what goes up).
    pub fn bot_rate(&self) -> u32 {
        self.bot_rate
    }

    /// The caller switched rates mid-call: rebuild the caller-side stages.
    /// Queued bot audio is dropped (it is at the old rate). Allocates; rare.
    pub fn set_caller_rate(&mut self, rate: u32) -> Result<(), MediaError> {
        if rate == self.caller_rate {
            return Ok(());
        }
        let cap = self.playout.capacity_ms() as u32;
        self.up = Framer::new(rate, self.bot_rate)?;
        self.down = Framer::new(self.down.input_rate(), rate)?;
        self.playout = Playout::new(rate, cap);
        self.egress = vec![0; frame_len(rate)];
        self.caller_rate = rate;
        Ok(())
    }

    /// Caller audio (PCM16 LE at the caller's rate, any length). `emit` gets
    /// each 20 ms frame at the bot's rate as soon as it is complete.
    pub fn caller_audio(&mut self, le: &[u8], emit: impl FnMut(&[i16])) -> usize {
        let n = self.up.push_le(le, emit);
        self.stats.frames_up += n as u64;
        n
    }

    /// Caller audio as samples at the caller's rate (RTP, after decoding);
    /// otherwise as [`Pipeline::caller_audio`].
    pub fn caller_pcm(&mut self, pcm: &[i16], emit: impl FnMut(&[i16])) -> usize {
        let n = self.up.push(pcm, emit);
        self.stats.frames_up += n as u64;
        n
    }

    /// Bot audio at `rate` (PCM16 samples, any length): queued for playout.
    /// A new rate rebuilds the down stage (allocates once per change).
    pub fn bot_audio(&mut self, pcm: &[i16], rate: u32) -> Result<(), MediaError> {
        if rate != self.down.input_rate() {
            match Framer::new(rate, self.caller_rate) {
                Ok(f) => {
                    // Whatever was half a frame at the old rate plays first.
                    let playout = &mut self.playout;
                    self.down.flush(|f| {
                        playout.push(f);
                    });
                    self.down = f;
                }
                Err(e) => {
                    self.stats.bad_bot_audio += 1;
                    return Err(e);
                }
            }
        }
        let playout = &mut self.playout;
        let n = self.down.push(pcm, |f| {
            playout.push(f);
        });
        self.stats.frames_down += n as u64;
        self.down_dirty |= !pcm.is_empty();
        Ok(())
    }

    /// Bot audio as PCM16 LE bytes (see [`Pipeline::bot_audio`]); an odd byte
    /// count is refused as a whole.
    pub fn bot_audio_le(&mut self, le: &[u8], rate: u32, scratch: &mut Vec<i16>) -> Result<(), MediaError> {
        if le.len() % 2 != 0 {
            self.stats.bad_bot_audio += 1;
            return Err(MediaError::BotProtocol(format!(
                "odd PCM16 byte count {}",
                le.len()
            )));
        }
        scratch.clear();
        scratch.extend(le.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])));
        self.bot_audio(scratch, rate)
    }

    /// One pacer tick: the next 20 ms frame for the caller (silence when the
    /// bot has nothing queued) and what it contained.
    pub fn tick(&mut self) -> (&[i16], FrameFill) {
        if self.playout.buffered_ms() < 20 {
            // The bot paused: play what it sent instead of holding it back.
            // First the half frame waiting in the framer, then (on the next
            // dry tick) the resampler's tail, as if the bot had sent silence.
            let playout = &mut self.playout;
            let push = |f: &[i16]| {
                playout.push(f);
            };
            let n = if self.down.fill > 0 {
                self.down.flush(push)
            } else if self.down_dirty && self.down.resampler.from_rate() != self.down.resampler.to_rate() {
                self.down_dirty = false;
                self.down.flush_tail(push)
            } else {
                0
            };
            self.stats.frames_down += n as u64;
        }
        let fill = self.playout.next_frame(&mut self.egress);
        (&self.egress, fill)
    }

    /// Barge-in: everything queued for the caller is dropped; the next tick is silence.
    pub fn clear(&mut self) {
        self.playout.clear();
        self.down.reset();
        self.down_dirty = false;
    }

    /// A mark placed after the bot audio queued so far.
    pub fn mark(&mut self, name: impl Into<String>) {
        // Half a frame still in the framer is part of "the audio before the mark".
        let playout = &mut self.playout;
        self.down.flush(|f| {
            playout.push(f);
        });
        self.playout.mark(name);
    }

    /// The next mark whose audio has been played.
    pub fn poll_mark(&mut self) -> Option<String> {
        self.playout.poll_mark()
    }

    /// Milliseconds of bot audio waiting for the caller.
    pub fn buffered_ms(&self) -> u64 {
        self.playout.buffered_ms()
    }

    /// Pipeline counters.
    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// Playout counters (overflows, barge-in drops, underruns).
    pub fn playout_stats(&self) -> crate::playout::PlayoutStats {
        self.playout.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(pcm: &[i16]) -> Vec<u8> {
        pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn a_resampled_utterance_ends_with_its_filter_tail() {
        let mut p = Pipeline::new(8000, 16000, 1000).expect("pipeline");
        p.bot_audio(&[8000i16; 320], 16000).expect("queued");
        assert_eq!(p.tick().1, FrameFill::Audio);
        // The bot stopped: the next tick carries the resampler's tail (the
        // last 2.5 ms of the utterance), then silence.
        let (tail, _) = p.tick();
        assert!(tail[..10].iter().all(|&s| s > 4000), "{:?}", &tail[..10]);
        assert!(tail[60..].iter().all(|&s| s.abs() < 50));
        assert_eq!(p.tick().1, FrameFill::Silence);
    }

    #[test]
    fn same_rate_is_bit_exact_both_ways() {
        let mut p = Pipeline::new(8000, 8000, 1000).expect("pipeline");
        let caller: Vec<i16> = (0..160).map(|i| (i * 97 - 5000) as i16).collect();
        let mut up = Vec::new();
        assert_eq!(p.caller_audio(&le(&caller), |f| up.extend_from_slice(f)), 1);
        assert_eq!(up, caller);
        p.bot_audio(&up, 8000).expect("queued");
        let (frame, fill) = p.tick();
        assert_eq!(fill, FrameFill::Audio);
        assert_eq!(frame, &caller[..]);
        assert_eq!(p.tick().1, FrameFill::Silence);
    }

    #[test]
    fn caller_frames_leave_as_soon_as_complete_in_any_chunking() {
        let mut p = Pipeline::new(8000, 16000, 1000).expect("pipeline");
        let bytes = le(&[100i16; 480]);
        let mut frames = 0;
        // 100-byte chunks: frames complete at byte 320, 640, 960.
        for chunk in bytes.chunks(100) {
            p.caller_audio(chunk, |f| {
                assert_eq!(f.len(), 320);
                frames += 1;
            });
        }
        assert_eq!(frames, 3);
    }

    #[test]
    fn bot_bursts_play_out_one_frame_per_tick_and_clear_silences_the_next_tick() {
        let mut p = Pipeline::new(8000, 16000, 60_000).expect("pipeline");
        // 1 s burst at 24 kHz (a rate other than the route's).
        p.bot_audio(&vec![3000i16; 24_000], 24000).expect("queued");
        for _ in 0..10 {
            assert_eq!(p.tick().1, FrameFill::Audio);
        }
        assert_eq!(p.buffered_ms(), 800, "1 s queued, 10 frames played");
        p.clear();
        let (frame, fill) = p.tick();
        assert_eq!(fill, FrameFill::Silence);
        assert!(frame.iter().all(|&s| s == 0));
    }

    #[test]
    fn a_tail_shorter_than_a_frame_still_plays() {
        let mut p = Pipeline::new(8000, 8000, 1000).expect("pipeline");
        p.bot_audio(&[1000i16; 100], 8000).expect("queued");
        let (frame, fill) = p.tick();
        // The tail is padded to a whole frame rather than held back.
        assert_eq!(fill, FrameFill::Audio);
        assert_eq!(&frame[..100], &[1000i16; 100][..]);
        assert!(frame[100..].iter().all(|&s| s == 0));
    }

    #[test]
    fn marks_wait_for_their_audio() {
        let mut p = Pipeline::new(8000, 8000, 1000).expect("pipeline");
        p.bot_audio(&[1i16; 320], 8000).expect("queued");
        p.mark("m1");
        assert_eq!(p.poll_mark(), None);
        p.tick();
        assert_eq!(p.poll_mark(), None);
        p.tick();
        assert_eq!(p.poll_mark().as_deref(), Some("m1"));
    }

    #[test]
    fn unsupported_bot_rate_and_odd_bytes_are_refused_and_counted() {
        let mut p = Pipeline::new(8000, 16000, 1000).expect("pipeline");
        assert!(p.bot_audio(&[0i16; 10], 11025).is_err());
        let mut scratch = Vec::new();
        assert!(p.bot_audio_le(&[0u8; 3], 16000, &mut scratch).is_err());
        assert_eq!(p.stats().bad_bot_audio, 2);
        // The call goes on at the old rate.
        p.bot_audio(&[5i16; 320], 16000).expect("queued");
        assert_eq!(p.tick().1, FrameFill::Audio);
    }
}
