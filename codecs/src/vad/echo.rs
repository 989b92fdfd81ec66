//! Echo-safe voice activity. On phone lines the bot's own voice comes back
//! in the caller's audio (the line's hybrid, the handset's speaker and
//! microphone), quieter by the echo return loss (6 to 25 dB; ITU-T G.168
//! assumes at least 6) and 30 to 300 ms late; a detector that hears it as
//! the caller would have the bot interrupt itself.
//!
//! [`EchoGate`] remembers how loud what the caller heard was over the last
//! 400 ms and lets a frame of the caller's audio count as speech only when
//! it is louder than any echo of that could be: the loudest frame played in
//! the window less the echo return loss. This is the Geigel test of G.168
//! double-talk detectors on 20 ms frame levels: the caller talking over the
//! bot passes, the bot's echo does not.
//!
//! The echo return loss is assumed, not learnt: 6 dB by default (G.168's
//! minimum for a line), so a caller must be within about 6 dB of the bot's
//! level to interrupt it; a route whose lines are known to return less
//! echo may assume more. (Learning it from the frames held back was tried:
//! the estimate drifts up while the bot talks softly, and the echo's peaks
//! then pass; see benches/RESULTS.md, "Listening".)
//! No allocation, no clock: one level per frame in, a yes or no out.

use super::level_db;

/// Frames of played audio remembered: 400 ms, the longest echo delay
/// (300 ms) with room for the two directions' frames not lining up.
const WINDOW: usize = 20;
/// Lets the caller's frames through unless they may be the bot's echo.
#[derive(Debug, Clone)]
pub struct EchoGate {
    /// Levels of the last [`WINDOW`] frames played to the caller, dBFS.
    played: [f32; WINDOW],
    next: usize,
    /// The echo return loss assumed, dB.
    erl_db: f32,
}

impl EchoGate {
    /// A gate assuming the echo comes back at least `erl_db` quieter than
    /// what was played.
    pub fn new(erl_db: f32) -> EchoGate {
        EchoGate {
            played: [-100.0; WINDOW],
            next: 0,
            erl_db,
        }
    }

    /// The next 20 ms frame played to the caller (silence included).
    pub fn played(&mut self, frame: &[i16]) {
        self.played_level(level_db(frame));
    }

    /// As [`EchoGate::played`], with the frame's level already known.
    pub fn played_level(&mut self, db: f32) {
        self.played[self.next] = db;
        self.next = (self.next + 1) % WINDOW;
    }

    /// Whether a caller frame at `level_db` (dBFS) is louder than an echo
    /// of the last 400 ms of playback could be.
    pub fn allows(&self, level_db: f32) -> bool {
        let loudest = self.played.iter().copied().fold(f32::MIN, f32::max);
        level_db > loudest - self.erl_db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, amp: f32) -> Vec<i16> {
        (0..len).map(|i| (amp * (i as f32 * 0.3).sin()) as i16).collect()
    }

    #[test]
    fn an_echo_is_held_back_and_louder_speech_passes() {
        let mut gate = EchoGate::new(6.0);
        assert!(gate.allows(-60.0), "nothing played: anything passes");
        let bot = tone(160, 8000.0);
        gate.played(&bot);
        let bot_db = level_db(&bot);
        assert!(!gate.allows(bot_db - 6.5), "an echo 6.5 dB down");
        assert!(gate.allows(bot_db - 5.0), "the caller talking over the bot");
    }

    #[test]
    fn a_route_may_assume_a_quieter_echo() {
        let mut gate = EchoGate::new(15.0);
        let bot = tone(160, 8000.0);
        gate.played(&bot);
        let bot_db = level_db(&bot);
        assert!(!gate.allows(bot_db - 20.0), "an echo 20 dB down");
        assert!(gate.allows(bot_db - 12.0), "a caller 12 dB under the bot");
    }

    #[test]
    fn the_bots_level_is_remembered_for_400_ms() {
        let mut gate = EchoGate::new(6.0);
        let bot = tone(160, 8000.0);
        let echo_db = level_db(&bot) - 10.0;
        gate.played(&bot);
        for i in 0..WINDOW - 1 {
            gate.played(&[0; 160]);
            assert!(!gate.allows(echo_db), "{} ms after", (i + 1) * 20);
        }
        gate.played(&[0; 160]);
        assert!(gate.allows(echo_db), "400 ms after, it cannot be an echo");
    }
}
