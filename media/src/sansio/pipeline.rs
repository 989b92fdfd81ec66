//! The DSP of one call, both directions, sans-IO.
//!
//! Up: caller PCM (any chunking, the caller's rate) is cut into 20 ms frames
//! and resampled to the bot's rate, one bot frame out per caller frame in, so
//! nothing waits for a tick. Down: bot PCM (any chunking, any of the standard
//! rates from 8 to 48 kHz, 11,025 and 22,050 Hz included; the rate may change
//! between messages) is cut into 20 ms frames at its own
//! rate, resampled to the caller's rate and queued in the [`Playout`] buffer;
//! each pacer tick takes exactly one caller frame out. All buffers are sized at
//! construction (or on a rate change); per-frame work never allocates. The
//! driver owns sockets and clocks, this struct only samples.

use crate::error::MediaError;
use crate::sansio::playout::{FrameFill, Playout};
use voxbridge_codecs::denoise::NoiseSuppressor;
use voxbridge_codecs::{frame, frame_len, max_frame_len, Resampler, STANDARD_RATES};

/// The caller's side ticks one frame per 20 ms of the same length, so its rate
/// must give whole-sample frames (every telephony rate does; 11,025 Hz does
/// not, and is a bot-side rate only).
fn check_caller_rate(rate: u32) -> Result<(), MediaError> {
    if rate % 50 == 0 && voxbridge_codecs::is_supported_rate(rate) {
        Ok(())
    } else {
        Err(MediaError::Codec(voxbridge_codecs::CodecError::UnsupportedRate {
            rate,
        }))
    }
}

/// One direction's "cut into 20 ms frames, then resample" stage.
#[derive(Debug)]
struct Framer {
    resampler: Resampler,
    acc: Vec<i16>,
    fill: usize,
    out: Vec<i16>,
    /// The caller's side with noise suppression on: each frame is filtered
    /// at the input rate before it is resampled.
    denoise: Option<Box<NoiseSuppressor>>,
}

impl Framer {
    fn new(from: u32, to: u32) -> Result<Self, MediaError> {
        Ok(Framer {
            acc: vec![0; max_frame_len(from)],
            fill: 0,
            out: vec![0; max_frame_len(to)],
            resampler: Resampler::new(from, to)?,
            denoise: None,
        })
    }

    /// The same stage with its input noise-suppressed.
    fn denoised(mut self) -> Result<Self, MediaError> {
        self.denoise = Some(Box::new(NoiseSuppressor::new(self.input_rate())?));
        Ok(self)
    }

    fn input_rate(&self) -> u32 {
        self.resampler.from_rate()
    }

    /// Feeds little-endian PCM16; calls `emit` with each finished output frame.
    fn push_le(&mut self, le: &[u8], mut emit: impl FnMut(&[i16])) -> usize {
        let mut frames = 0;
        let mut rest = le;
        while rest.len() >= 2 {
            let take = (rest.len() / 2).min(self.resampler.input_len() - self.fill);
            frame::read_le(&rest[..take * 2], &mut self.acc[self.fill..self.fill + take]);
            self.fill += take;
            rest = &rest[take * 2..];
            if self.fill == self.resampler.input_len() {
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
            let take = rest.len().min(self.resampler.input_len() - self.fill);
            self.acc[self.fill..self.fill + take].copy_from_slice(&rest[..take]);
            self.fill += take;
            rest = &rest[take..];
            if self.fill == self.resampler.input_len() {
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
        let len = self.resampler.input_len();
        self.acc[self.fill..len].fill(0);
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
        // Lengths come from the resampler itself, so process() cannot fail here.
        let (i, o) = (self.resampler.input_len(), self.resampler.output_len());
        let input = match self.denoise.as_mut() {
            Some(ns) => ns.process(&self.acc[..i]),
            None => &self.acc[..i],
        };
        if self.resampler.process(input, &mut self.out[..o]).is_err() {
            return 0;
        }
        emit(&self.out[..o]);
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
    /// Bot audio arrived since the last tick (the bot is mid-utterance).
    bot_active: bool,
    egress: Vec<i16>,
    stats: PipelineStats,
}

impl Pipeline {
    /// A call whose caller speaks PCM at `caller_rate` and whose bot at
    /// `bot_rate`; at most `playout_cap_ms` of bot audio is queued.
    pub fn new(caller_rate: u32, bot_rate: u32, playout_cap_ms: u32) -> Result<Self, MediaError> {
        check_caller_rate(caller_rate)?;
        Ok(Pipeline {
            caller_rate,
            bot_rate,
            up: Framer::new(caller_rate, bot_rate)?,
            down: Framer::new(bot_rate, caller_rate)?,
            playout: Playout::new(caller_rate, playout_cap_ms),
            down_dirty: false,
            bot_active: false,
            egress: vec![0; frame_len(caller_rate)],
            stats: PipelineStats::default(),
        })
    }

    /// Sets the bot audio's start cushion (see [`crate::sansio::playout`]; 0 by
    /// default here, a route's `bot_cushion_ms` in the daemon).
    pub fn with_bot_cushion(mut self, ms: u32) -> Self {
        self.playout.set_cushion(ms);
        self
    }

    /// Turns noise suppression on for the caller's audio (a route's
    /// `noise_suppression`): filtered at the caller's rate, 10 ms later.
    pub fn with_noise_suppression(mut self) -> Result<Self, MediaError> {
        self.up = self.up.denoised()?;
        Ok(self)
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
        check_caller_rate(rate)?;
        let cap = self.playout.capacity_ms() as u32;
        let up = Framer::new(rate, self.bot_rate)?;
        self.up = if self.up.denoise.is_some() {
            up.denoised()?
        } else {
            up
        };
        self.down = Framer::new(self.down.input_rate(), rate)?;
        let cushion = self.playout.cushion_ms();
        self.playout = Playout::new(rate, cap);
        self.playout.set_cushion(cushion);
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

    /// The end of the caller's audio: a partial 20 ms frame still in the
    /// framer (Asterisk ends a file with a short frame) is padded with
    /// silence and emitted, so the bot hears the last milliseconds too.
    pub fn flush_caller(&mut self, emit: impl FnMut(&[i16])) -> usize {
        let n = self.up.flush(emit);
        self.stats.frames_up += n as u64;
        n
    }

    /// Bot audio at `rate` (PCM16 samples, any length): queued for playout.
    /// A new rate rebuilds the down stage (allocates once per change).
    pub fn bot_audio(&mut self, pcm: &[i16], rate: u32) -> Result<(), MediaError> {
        if rate != self.down.input_rate() {
            if !STANDARD_RATES.contains(&rate) {
                // Only the standard rates: their filters are designed once per
                // process, where another rate would cost a design per call.
                self.stats.bad_bot_audio += 1;
                return Err(MediaError::BotProtocol(format!(
                    "bot audio at {rate} Hz: use one of {STANDARD_RATES:?}"
                )));
            }
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
        self.bot_active |= !pcm.is_empty();
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
        scratch.resize(le.len() / 2, 0);
        frame::read_le(le, scratch);
        self.bot_audio(scratch, rate)
    }

    /// One pacer tick: the next 20 ms frame for the caller (silence when the
    /// bot has nothing queued) and what it contained.
    pub fn tick(&mut self) -> (&[i16], FrameFill) {
        self.end_tick();
        let fill = self.playout.next_frame(&mut self.egress);
        (&self.egress, fill)
    }

    /// The frame the last [`Pipeline::tick`] gave, again.
    pub fn last_tick(&self) -> &[i16] {
        &self.egress
    }

    /// For a caller that paces playback itself (Asterisk's queue, see
    /// [`crate::sansio::chanws`]): the next whole frame of bot audio queued,
    /// never silence. `at_tick` once per pacer tick: a bot that sent
    /// nothing since the last tick has its last partial frame played too
    /// (only the samples it has: the slice may be shorter than a frame).
    pub fn ready_frame(&mut self, at_tick: bool) -> Option<&[i16]> {
        let paused = at_tick && self.end_tick();
        let n = self.playout.take_ready(&mut self.egress, paused);
        (n > 0).then(|| &self.egress[..n])
    }

    /// Whether bot audio is still on its way to the caller: queued, half a
    /// frame in the framer, or a resampler tail not yet flushed.
    pub fn has_pending_audio(&self) -> bool {
        self.playout.buffered_ms() > 0
            || self.down.fill > 0
            || (self.down_dirty && self.down.resampler.from_rate() != self.down.resampler.to_rate())
    }

    /// A tick's bookkeeping: whether the bot paused (nothing came since the
    /// last tick), in which case its last partial frame is pushed out.
    fn end_tick(&mut self) -> bool {
        // The bot paused (nothing came for a whole tick) and less than a
        // frame is queued: play what it sent instead of holding it back.
        // First the half frame waiting in the framer, then (on the next dry
        // tick) the resampler's tail, as if the bot had sent silence. While
        // audio keeps coming, a half frame waits for the rest (a bot sending
        // 10 ms chunks would otherwise get silence padded into its speech).
        let paused = !self.bot_active;
        if self.playout.buffered_ms() < 20 && paused {
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
        self.bot_active = false;
        paused
    }

    /// Barge-in: everything queued for the caller is dropped; the next tick is silence.
    pub fn clear(&mut self) {
        self.playout.clear();
        self.down.reset();
        self.down_dirty = false;
        self.bot_active = false;
    }

    /// The marks not yet due are dropped, never to be reported.
    pub fn forget_marks(&mut self) {
        self.playout.forget_marks();
    }

    /// A mark placed after the bot audio queued so far.
    pub fn mark(&mut self, name: impl Into<String>) {
        // Half a frame still in the framer is part of "the audio before the mark".
        let playout = &mut self.playout;
        self.down.flush(|f| {
            playout.push(f);
        });
        // So is what the resampler still holds back (its delay): it plays
        // with the next audio, or as the tail once the bot pauses.
        let later = if self.down_dirty && self.down.resampler.from_rate() != self.down.resampler.to_rate() {
            (self.down.resampler.delay_seconds() * self.caller_rate as f64).round() as u64
        } else {
            0
        };
        self.playout.mark_after(name, later);
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
    pub fn playout_stats(&self) -> crate::sansio::playout::PlayoutStats {
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
    fn with_noise_suppression_the_bot_hears_the_lines_noise_turned_down_also_after_a_rate_change() {
        let noise = |seed: &mut u32, len: usize| -> Vec<i16> {
            (0..len)
                .map(|_| {
                    *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (2000.0 * ((*seed >> 16) as f32 / 32768.0 - 1.0)) as i16
                })
                .collect()
        };
        let to_bot_power = |p: &mut Pipeline, rate: u32| {
            let mut seed = 5;
            let (mut sum, mut n) = (0f64, 0usize);
            for k in 0..150 {
                let frame = noise(&mut seed, rate as usize / 50);
                p.caller_pcm(&frame, |f| {
                    if k >= 100 {
                        sum += f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
                        n += f.len();
                    }
                });
            }
            sum / n.max(1) as f64
        };
        let mut plain = Pipeline::new(8000, 16_000, 1000).expect("valid");
        let mut quiet = Pipeline::new(8000, 16_000, 1000)
            .expect("valid")
            .with_noise_suppression()
            .expect("8 kHz");
        let down_db = 10.0 * (to_bot_power(&mut plain, 8000) / to_bot_power(&mut quiet, 8000)).log10();
        assert!(down_db > 7.0, "noise down {down_db:.1} dB");
        quiet.set_caller_rate(16_000).expect("16 kHz");
        plain.set_caller_rate(16_000).expect("16 kHz");
        let down_db = 10.0 * (to_bot_power(&mut plain, 16_000) / to_bot_power(&mut quiet, 16_000)).log10();
        assert!(down_db > 7.0, "still on at the new rate: {down_db:.1} dB");
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

    /// A tone's frequency, estimated from its zero crossings.
    fn frequency(pcm: &[i16], rate: u32) -> f64 {
        let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f64 / 2.0 / (pcm.len() as f64 / rate as f64)
    }

    fn tone(rate: u32, hz: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i16)
            .collect()
    }

    #[test]
    fn bot_audio_at_tts_rates_plays_at_the_right_pitch_and_length() {
        for bot_rate in [11025u32, 22050, 44100] {
            let mut p = Pipeline::new(8000, 16000, 5000).expect("pipeline");
            // One second of 440 Hz from the bot, in odd-sized messages.
            let pcm = tone(bot_rate, 440.0, bot_rate as usize);
            for chunk in pcm.chunks(1234) {
                p.bot_audio(chunk, bot_rate).expect("standard rate");
            }
            let mut heard = Vec::new();
            while let (frame, FrameFill::Audio) = p.tick() {
                heard.extend_from_slice(frame);
            }
            // A second of audio and the filter's tail: 50 frames and one more.
            assert_eq!(heard.len(), 51 * 160, "{bot_rate} Hz");
            let f = frequency(&heard[400..7600], 8000);
            assert!(
                (f - 440.0).abs() < 3.0,
                "{bot_rate} Hz bot audio played at {f} Hz"
            );
        }
    }

    #[test]
    fn a_bot_at_11025_gets_frames_of_220_and_221_samples() {
        let mut p = Pipeline::new(8000, 11025, 1000).expect("pipeline");
        let mut lens = Vec::new();
        let caller = le(&tone(8000, 300.0, 8000));
        p.caller_audio(&caller, |f| lens.push(f.len()));
        assert_eq!(lens.len(), 50);
        assert!(lens.iter().step_by(2).all(|&n| n == 220), "{lens:?}");
        assert!(lens.iter().skip(1).step_by(2).all(|&n| n == 221), "{lens:?}");
        assert_eq!(lens.iter().sum::<usize>(), 11025, "one second is 11,025 samples");
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
        // The bot sent audio during this tick: the half frame waits for more.
        assert_eq!(p.tick().1, FrameFill::Silence);
        // Nothing came for a whole tick: the tail is padded to a whole frame
        // rather than held back.
        let (frame, fill) = p.tick();
        assert_eq!(fill, FrameFill::Audio);
        assert_eq!(&frame[..100], &[1000i16; 100][..]);
        assert!(frame[100..].iter().all(|&s| s == 0));
    }

    #[test]
    fn a_bot_sending_10_ms_chunks_gets_no_silence_padded_into_its_speech() {
        let mut p = Pipeline::new(8000, 8000, 1000).expect("pipeline");
        let mut heard = Vec::new();
        // 10 ms chunks on the bot's clock, two per tick, the first at mid-tick.
        for k in 0..100i16 {
            p.bot_audio(&[1000 + k; 80], 8000).expect("queued");
            if k % 2 == 0 {
                let (frame, fill) = p.tick();
                if fill != FrameFill::Silence {
                    heard.extend_from_slice(frame);
                }
            }
        }
        assert!(heard.iter().all(|&s| s >= 1000), "zeros padded into the speech");
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
        let e = p
            .bot_audio(&[0i16; 10], 9000)
            .expect_err("9 kHz is not a standard rate");
        assert!(e.to_string().contains("9000 Hz"), "{e}");
        assert!(
            Pipeline::new(11025, 16000, 1000).is_err(),
            "the caller side ticks whole frames"
        );
        let mut scratch = Vec::new();
        assert!(p.bot_audio_le(&[0u8; 3], 16000, &mut scratch).is_err());
        assert_eq!(p.stats().bad_bot_audio, 2);
        // The call goes on at the old rate.
        p.bot_audio(&[5i16; 320], 16000).expect("queued");
        assert_eq!(p.tick().1, FrameFill::Audio);
    }
}
