//! Voice activity: whether a stream of 20 ms frames carries speech, and
//! when speech starts and stops (issue 28).
//!
//! [`VoiceActivity`] takes one direction of one call, a frame at a time at
//! the stream's rate, and says per frame whether it is speech (with a
//! 160 ms hangover across the gaps between words) and, through its
//! hysteresis, when the stream *started* speaking (speech in
//! [`VadConfig::start_ms`] of the last few frames) and when it *stopped*
//! (no speech for [`VadConfig::stop_ms`]). Pure computation: no clock (the
//! caller counts frames), no allocation per frame, about 15-35 us of CPU
//! per stream-second.
//!
//! The detector learns the stream's noise: its floor by minimum statistics
//! (the quietest frame of the last 2 s) and, over the frames near that
//! floor, the noise's mean level and how much it deviates. A frame is
//! speech when it stands out of that noise (3 deviations and at least 4 dB
//! over its mean) and is louder than -50 dBFS: steady noise deviates
//! little, so speech 4 dB over it counts; babble deviates several dB, so
//! only a nearer talker does.
//!
//! `benches/listening.sh` chose it: on its labelled set (espeak-ng speech in
//! white, pink and babble noise at 20, 10 and 5 dB SNR) earshot's neural
//! network (pure Rust) heard babble as speech, and with this test in front
//! of it added no accuracy for 35 times the CPU; the WebRTC detector
//! (libfvad) lost in babble too (benches/RESULTS.md, "Listening").
//! [`VoiceActivity::push_with`] lets such a classifier vote beside the test.
//!
//! Built on the same test: [`EchoGate`] keeps the bot's echo on a phone
//! line from counting as the caller, and [`Amd`] tells a person from an
//! answering machine by how the callee of an outbound call answers and by
//! the voicemail's beep ([`BeepDetector`]).

mod amd;
mod beep;
mod echo;

pub use amd::{Amd, AmdCause, AmdConfig, AmdDecision, AmdVerdict};
pub use beep::{tone_hz, Beep, BeepDetector, BEEP_MAX_MS, BEEP_MIN_MS};
pub use echo::EchoGate;

use crate::{error::CodecError, frame_len, is_supported_rate};

/// How quickly starts and stops are raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VadConfig {
    /// Speech in this many ms of the last `start_ms + 40` ms raises
    /// `started` (so one stray loud frame does not).
    pub start_ms: u32,
    /// This many ms without speech raise `stopped`.
    pub stop_ms: u32,
}

impl Default for VadConfig {
    fn default() -> VadConfig {
        VadConfig {
            start_ms: 60,
            stop_ms: 600,
        }
    }
}

impl VadConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), CodecError> {
        if !(20..=1000).contains(&self.start_ms) {
            return Err(CodecError::InvalidSetting {
                name: "vad.start_ms",
                detail: format!("{} ms is not between 20 and 1000", self.start_ms),
            });
        }
        if !(20..=10_000).contains(&self.stop_ms) {
            return Err(CodecError::InvalidSetting {
                name: "vad.stop_ms",
                detail: format!("{} ms is not between 20 and 10000", self.stop_ms),
            });
        }
        Ok(())
    }
}

/// Frames after the last one the classifier heard as speech that
/// [`VoiceActivity::frame_is_speech`] still calls speech: 160 ms, about the
/// longest pause between words.
pub const HANGOVER_FRAMES: u32 = 8;

/// One direction of one call's voice activity.
pub struct VoiceActivity {
    noise: NoiseLevel,
    hysteresis: Hysteresis,
    /// Frames since the classifier last heard speech (saturating).
    since_speech: u32,
    frame_len: usize,
}

impl std::fmt::Debug for VoiceActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceActivity")
            .field("speaking", &self.hysteresis.speaking)
            .field("frame_len", &self.frame_len)
            .finish_non_exhaustive()
    }
}

impl VoiceActivity {
    /// Voice activity for 20 ms frames at `rate` Hz (a multiple of 50 Hz
    /// from 8 to 48 kHz).
    pub fn new(config: &VadConfig, rate: u32) -> Result<VoiceActivity, CodecError> {
        config.validate()?;
        // Whole 20 ms frames of the same length (all the bridge's rates).
        if !is_supported_rate(rate) || rate % 50 != 0 {
            return Err(CodecError::UnsupportedRate { rate });
        }
        let frame_len = frame_len(rate);
        Ok(VoiceActivity {
            noise: NoiseLevel::default(),
            hysteresis: Hysteresis::new(config.start_ms, config.stop_ms),
            since_speech: u32::MAX,
            frame_len,
        })
    }

    /// Samples one frame must have.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Takes the next 20 ms frame: `Some(true)` when speech started with
    /// it, `Some(false)` when speech stopped, `None` otherwise. A frame of
    /// the wrong length counts as silence (a lost frame).
    pub fn push(&mut self, frame: &[i16]) -> Option<bool> {
        self.push_with(frame, true)
    }

    /// As [`VoiceActivity::push`], with another classifier's opinion of the
    /// same frame: the frame is speech only if both say so.
    pub fn push_with(&mut self, frame: &[i16], also_speech: bool) -> Option<bool> {
        self.push_judged(frame, |_| also_speech)
    }

    /// As [`VoiceActivity::push`], with the caller's side of a call held
    /// back where `gate` says the frame may be the bot's echo (the frame's
    /// level is taken once for both).
    pub fn push_gated(&mut self, frame: &[i16], gate: &EchoGate) -> Option<bool> {
        self.push_judged(frame, |level| gate.allows(level))
    }

    /// The frame is speech when the noise test and `judge` (given the
    /// frame's level) both say so.
    fn push_judged(&mut self, frame: &[i16], judge: impl FnOnce(f32) -> bool) -> Option<bool> {
        let speech = frame.len() == self.frame_len && {
            self.noise.update(frame);
            self.noise.is_speech() && judge(self.noise.level_db)
        };
        self.since_speech = if speech {
            0
        } else {
            self.since_speech.saturating_add(1)
        };
        self.hysteresis.update(speech)
    }

    /// Whether the last frame is speech: the classifier heard speech in
    /// it or in the [`HANGOVER_FRAMES`] before it (the gaps between words
    /// are speech; no start or stop delay).
    pub fn frame_is_speech(&self) -> bool {
        self.since_speech <= HANGOVER_FRAMES
    }

    /// Between a `started` and the `stopped` that follows it.
    pub fn speaking(&self) -> bool {
        self.hysteresis.speaking
    }

    /// The last frame's level, dBFS (-100 before the first).
    pub fn last_level_db(&self) -> f32 {
        self.noise.level_db
    }
}

/// A frame's level: its mean power in dB relative to full scale (-100
/// for digital silence or an empty frame).
pub fn level_db(frame: &[i16]) -> f32 {
    let power = frame.iter().map(|s| (*s as f32) * (*s as f32)).sum::<f32>() / frame.len().max(1) as f32;
    10.0 * (power / (32768.0 * 32768.0) + 1e-10).log10()
}

/// Turns per-frame decisions into started/stopped: started when at least
/// `start` of the last `start + 2` frames were speech, stopped after `stop`
/// frames in a row without.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    start: u32,
    window: u32,
    stop: u32,
    /// The last `window` decisions, newest in bit 0.
    recent: u64,
    silent_run: u32,
    speaking: bool,
}

impl Hysteresis {
    /// From milliseconds (20 ms frames; each at least one frame).
    pub fn new(start_ms: u32, stop_ms: u32) -> Hysteresis {
        let start = start_ms.div_ceil(20).clamp(1, 50);
        Hysteresis {
            start,
            window: start + 2,
            stop: stop_ms.div_ceil(20).max(1),
            recent: 0,
            silent_run: 0,
            speaking: false,
        }
    }

    /// The next frame's decision: `Some(true)` at a start, `Some(false)` at a stop.
    pub fn update(&mut self, speech: bool) -> Option<bool> {
        let mask = (1u64 << self.window) - 1;
        self.recent = ((self.recent << 1) | speech as u64) & mask;
        if speech {
            self.silent_run = 0;
        } else {
            self.silent_run = self.silent_run.saturating_add(1);
        }
        if !self.speaking && self.recent.count_ones() >= self.start {
            self.speaking = true;
            return Some(true);
        }
        if self.speaking && self.silent_run >= self.stop {
            self.speaking = false;
            self.recent = 0;
            return Some(false);
        }
        None
    }
}

/// Speech is louder than this (dBFS).
const MIN_SPEECH_DB: f32 = -50.0;
/// A frame stands out of the noise at this many mean absolute deviations
/// over the noise's mean level...
const STAND_OUT_DEVIATIONS: f32 = 3.0;
/// ...and at least this many dB over it. Both chosen on the listening set
/// (benches/RESULTS.md, "Listening").
const STAND_OUT_MIN_DB: f32 = 4.0;

/// Frames in one piece of the noise floor's window.
const FLOOR_PIECE: u32 = 20;
/// Pieces in the window: 5 x 20 frames = 2 s.
const FLOOR_PIECES: usize = 5;

/// A stream's noise floor by minimum statistics: the level of its quietest
/// frame in the last 1.6 to 2 s (speech pauses that often; steady noise
/// does not). The window is kept as the minima of five 400 ms pieces.
#[derive(Debug, Clone)]
pub(crate) struct NoiseLevel {
    /// Minima of the last complete pieces, dBFS.
    pieces: [f32; FLOOR_PIECES],
    next_piece: usize,
    /// The piece being filled: its minimum and frame count.
    current_min: f32,
    current_frames: u32,
    /// The last frame's level, dBFS.
    level_db: f32,
    /// The noise's mean level (dB) and mean absolute deviation (dB), over
    /// the frames within 10 dB of the floor (about a second's memory).
    noise_mean: f32,
    noise_dev: f32,
}

impl Default for NoiseLevel {
    fn default() -> NoiseLevel {
        NoiseLevel {
            pieces: [f32::INFINITY; FLOOR_PIECES],
            next_piece: 0,
            current_min: f32::INFINITY,
            current_frames: 0,
            level_db: -100.0,
            noise_mean: -100.0,
            noise_dev: 1.0,
        }
    }
}

impl NoiseLevel {
    /// Takes a frame.
    pub(crate) fn update(&mut self, frame: &[i16]) {
        let db = level_db(frame);
        self.level_db = db;
        self.current_min = self.current_min.min(db);
        self.current_frames += 1;
        if self.current_frames == FLOOR_PIECE {
            self.pieces[self.next_piece] = self.current_min;
            self.next_piece = (self.next_piece + 1) % FLOOR_PIECES;
            self.current_min = f32::INFINITY;
            self.current_frames = 0;
        }
        let floor = self.pieces.iter().fold(self.current_min, |m, p| m.min(*p));
        if db < floor + 10.0 {
            if self.noise_mean <= -99.0 {
                // The first frame is taken for the noise: a line opens with
                // its hiss, a bot's stream with silence; a stream that
                // opens with speech is heard once it pauses.
                self.noise_mean = db;
            }
            self.noise_mean += 0.02 * (db - self.noise_mean);
            self.noise_dev += 0.02 * ((db - self.noise_mean).abs() - self.noise_dev);
        }
    }

    /// The last frame stands out of the noise: [`STAND_OUT_DEVIATIONS`]
    /// deviations and at least [`STAND_OUT_MIN_DB`] over its mean level.
    /// Steady noise deviates little, so speech 4 dB over it stands out;
    /// babble deviates several dB, so only a nearer talker does.
    /// The last frame is speech: it stands out and is louder than
    /// [`MIN_SPEECH_DB`].
    pub(crate) fn is_speech(&self) -> bool {
        self.stands_out() && self.level_db > MIN_SPEECH_DB
    }

    fn stands_out(&self) -> bool {
        self.level_db > self.noise_mean + (STAND_OUT_DEVIATIONS * self.noise_dev).max(STAND_OUT_MIN_DB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, ms: u32, amp: f32) -> Vec<i16> {
        (0..rate * ms / 1000)
            .map(|i| (amp * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / rate as f32).sin()) as i16)
            .collect()
    }

    #[test]
    fn hysteresis_needs_start_frames_and_stops_after_the_silence() {
        let mut h = Hysteresis::new(60, 100);
        assert_eq!(h.update(true), None);
        assert_eq!(h.update(false), None);
        assert_eq!(h.update(true), None);
        assert_eq!(h.update(true), Some(true), "3 of the last 5 frames");
        for _ in 0..4 {
            assert_eq!(h.update(false), None);
        }
        assert_eq!(h.update(false), Some(false), "5 frames = 100 ms of silence");
        assert!(!h.speaking);
    }

    #[test]
    fn a_stray_frame_does_not_start_speech() {
        let mut h = Hysteresis::new(60, 600);
        for i in 0..100 {
            assert_eq!(h.update(i % 4 == 0), None, "frame {i}");
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        for c in [
            VadConfig {
                start_ms: 0,
                ..VadConfig::default()
            },
            VadConfig {
                stop_ms: 20_000,
                ..VadConfig::default()
            },
        ] {
            assert!(matches!(
                VoiceActivity::new(&c, 8000),
                Err(CodecError::InvalidSetting { .. })
            ));
        }
        assert!(VoiceActivity::new(&VadConfig::default(), 7).is_err());
    }

    #[test]
    fn a_tone_after_silence_starts_and_stops_once() {
        let mut vad = VoiceActivity::new(&VadConfig::default(), 8000).expect("a supported rate");
        let silence = vec![0i16; 160];
        for _ in 0..50 {
            assert_eq!(vad.push(&silence), None);
        }
        let loud = tone(8000, 200, 8000.0);
        let events: Vec<_> = loud.chunks(160).filter_map(|f| vad.push(f)).collect();
        assert_eq!(events, vec![true]);
        let stopped: Vec<_> = (0..40).filter_map(|_| vad.push(&silence)).collect();
        assert_eq!(stopped, vec![false]);
    }

    #[test]
    fn a_wrong_length_frame_is_silence() {
        let mut vad = VoiceActivity::new(&VadConfig::default(), 16_000).expect("a supported rate");
        assert_eq!(vad.frame_len(), 320);
        assert_eq!(vad.push(&[1000; 100]), None);
        assert!(!vad.frame_is_speech());
    }

    #[test]
    fn steady_noise_is_learnt_and_speech_over_it_is_heard_at_every_rate() {
        for rate in [8000, 16_000, 24_000, 48_000] {
            let mut vad = VoiceActivity::new(&VadConfig::default(), rate).expect("a supported rate");
            let n = vad.frame_len();
            // A deterministic hiss at about -30 dBFS: loud, but steady.
            let mut seed = 12345u32;
            let mut hiss = || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 16) as i16 as i32 * 1000 / 32768 * 3) as i16
            };
            for i in 0..250 {
                let frame: Vec<i16> = (0..n).map(|_| hiss()).collect();
                assert_eq!(vad.push(&frame), None, "{rate} Hz: hiss alone, frame {i}");
            }
            // A tone 12 dB over it stands out.
            let loud = tone(rate, 200, 12_000.0);
            let events: Vec<_> = loud
                .chunks(n)
                .map(|f| f.iter().map(|s| s.saturating_add(hiss())).collect::<Vec<_>>())
                .filter_map(|f| vad.push(&f))
                .collect();
            assert_eq!(events, vec![true], "{rate} Hz");
        }
    }

    #[test]
    fn another_classifier_can_veto_a_frame() {
        let mut vad = VoiceActivity::new(&VadConfig::default(), 8000).expect("a supported rate");
        for _ in 0..50 {
            assert_eq!(vad.push(&[0; 160]), None);
        }
        let loud = tone(8000, 400, 8000.0);
        for f in loud.chunks(160) {
            assert_eq!(vad.push_with(f, false), None);
            assert!(!vad.frame_is_speech());
        }
        let started: Vec<_> = loud.chunks(160).filter_map(|f| vad.push_with(f, true)).collect();
        assert_eq!(started, vec![true]);
    }
}
