//! Answering-machine detection: from the first seconds of what the callee
//! of an outbound call says, a person, a machine, or not sure.
//!
//! A person picks up and says a word or two ("Hello?") and waits; a
//! voicemail greets at length. [`Amd`] takes the callee's 20 ms frames from
//! the answer on, decides each frame speech or silence with the stream's
//! learnt noise (as [`super::VoiceActivity`] does, without its hangover),
//! and follows the rules operators know from Asterisk's AMD, with its
//! default settings ([`AmdConfig::default`]):
//! - silence for `initial_silence_ms` before any word: a machine waiting
//!   to record (`initial_silence`);
//! - a word longer than `max_word_ms`, `max_words` words, or more than
//!   `greeting_ms` of speech in all: a machine's greeting (`max_word_length`,
//!   `max_words`, `long_greeting`);
//! - speech, then `after_greeting_silence_ms` of silence: a person who said
//!   hello and waits (`human`);
//! - a voicemail's beep ([`super::BeepDetector`]) before any of these:
//!   a machine (`beep`); Asterisk's AMD has no such rule;
//! - nothing decided within `total_analysis_ms`: not sure (`too_long`).
//!
//! A word is `min_word_ms` of speech; words are apart after
//! `between_words_silence_ms` of silence. Pure computation, no clock, no
//! allocation.

use super::{BeepDetector, NoiseLevel};
use crate::error::CodecError;

/// The rules' settings, in ms (Asterisk's `amd.conf` names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmdConfig {
    /// Silence before the first word that means a machine.
    pub initial_silence_ms: u32,
    /// Speech in all that means a machine's greeting.
    pub greeting_ms: u32,
    /// Silence after speech that means a person waiting.
    pub after_greeting_silence_ms: u32,
    /// Longest analysis: then not sure.
    pub total_analysis_ms: u32,
    /// Shortest speech that is a word.
    pub min_word_ms: u32,
    /// Silence that separates words.
    pub between_words_silence_ms: u32,
    /// Words that mean a machine.
    pub max_words: u32,
    /// A word this long means a machine.
    pub max_word_ms: u32,
}

impl Default for AmdConfig {
    fn default() -> AmdConfig {
        AmdConfig {
            initial_silence_ms: 2500,
            greeting_ms: 1500,
            after_greeting_silence_ms: 800,
            total_analysis_ms: 5000,
            min_word_ms: 100,
            between_words_silence_ms: 50,
            max_words: 3,
            max_word_ms: 5000,
        }
    }
}

impl AmdConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), CodecError> {
        let bad = |name: &'static str, detail: String| Err(CodecError::InvalidSetting { name, detail });
        if !(1000..=30_000).contains(&self.total_analysis_ms) {
            return bad(
                "amd.total_analysis_ms",
                format!("{} ms is not between 1000 and 30000", self.total_analysis_ms),
            );
        }
        for (name, v) in [
            ("amd.initial_silence_ms", self.initial_silence_ms),
            ("amd.greeting_ms", self.greeting_ms),
            ("amd.after_greeting_silence_ms", self.after_greeting_silence_ms),
            ("amd.min_word_ms", self.min_word_ms),
            ("amd.between_words_silence_ms", self.between_words_silence_ms),
            ("amd.max_word_ms", self.max_word_ms),
        ] {
            if !(20..=self.total_analysis_ms).contains(&v) {
                return bad(name, format!("{v} ms is not between 20 and total_analysis_ms"));
            }
        }
        if self.max_words == 0 {
            return bad("amd.max_words", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdVerdict {
    /// A person.
    Human,
    /// A voicemail or other machine.
    Machine,
    /// Not decided within the analysis time.
    NotSure,
}

impl AmdVerdict {
    /// `human`, `machine` or `not_sure`.
    pub fn as_str(self) -> &'static str {
        match self {
            AmdVerdict::Human => "human",
            AmdVerdict::Machine => "machine",
            AmdVerdict::NotSure => "not_sure",
        }
    }
}

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdCause {
    /// Silence before any word.
    InitialSilence,
    /// Too much speech in all.
    LongGreeting,
    /// Too many words.
    MaxWords,
    /// One word too long.
    MaxWordLength,
    /// Speech, then the silence of someone waiting.
    Human,
    /// A voicemail's beep.
    Beep,
    /// Nothing decided in time.
    TooLong,
}

impl AmdCause {
    /// The cause's name (`initial_silence`, `long_greeting`, `max_words`,
    /// `max_word_length`, `human`, `beep`, `too_long`).
    pub fn as_str(self) -> &'static str {
        match self {
            AmdCause::InitialSilence => "initial_silence",
            AmdCause::LongGreeting => "long_greeting",
            AmdCause::MaxWords => "max_words",
            AmdCause::MaxWordLength => "max_word_length",
            AmdCause::Human => "human",
            AmdCause::Beep => "beep",
            AmdCause::TooLong => "too_long",
        }
    }
}

/// The decision, with the time from the answer it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdDecision {
    /// Who answered.
    pub verdict: AmdVerdict,
    /// Why.
    pub cause: AmdCause,
    /// From the first frame to the one that decided, ms.
    pub after_ms: u32,
}

/// One outbound call's answering-machine detection.
#[derive(Debug, Clone)]
pub struct Amd {
    config: AmdConfig,
    noise: NoiseLevel,
    beep: BeepDetector,
    elapsed_ms: u32,
    silence_ms: u32,
    voice_run_ms: u32,
    voice_ms: u32,
    words: u32,
    in_word: bool,
    greeting_started: bool,
    decided: Option<AmdDecision>,
}

impl Amd {
    /// Detection with `config` (validated) on frames at `rate` Hz.
    pub fn new(config: AmdConfig, rate: u32) -> Result<Amd, CodecError> {
        config.validate()?;
        Ok(Amd {
            config,
            noise: NoiseLevel::default(),
            beep: BeepDetector::new(rate),
            elapsed_ms: 0,
            silence_ms: 0,
            voice_run_ms: 0,
            voice_ms: 0,
            words: 0,
            in_word: false,
            greeting_started: false,
            decided: None,
        })
    }

    /// The decision, once made.
    pub fn decision(&self) -> Option<AmdDecision> {
        self.decided
    }

    /// The callee's next 20 ms frame; the decision when this frame makes
    /// it (once; later frames change nothing).
    pub fn push(&mut self, frame: &[i16]) -> Option<AmdDecision> {
        if self.decided.is_some() {
            return None;
        }
        self.noise.update(frame);
        let beeped = self.beep.push(frame).is_some();
        let speech = !frame.is_empty() && self.noise.is_speech();
        self.elapsed_ms += 20;
        let c = &self.config;
        let rule = if beeped {
            Some((AmdVerdict::Machine, AmdCause::Beep))
        } else if speech {
            self.voice_run_ms += 20;
            self.voice_ms += 20;
            if self.voice_run_ms >= c.min_word_ms {
                self.silence_ms = 0;
                self.greeting_started = true;
                if !self.in_word {
                    self.in_word = true;
                    self.words += 1;
                }
            }
            if self.voice_run_ms >= c.max_word_ms {
                Some((AmdVerdict::Machine, AmdCause::MaxWordLength))
            } else if self.words >= c.max_words {
                Some((AmdVerdict::Machine, AmdCause::MaxWords))
            } else if self.greeting_started && self.voice_ms >= c.greeting_ms {
                Some((AmdVerdict::Machine, AmdCause::LongGreeting))
            } else {
                None
            }
        } else {
            self.silence_ms += 20;
            if self.silence_ms >= c.between_words_silence_ms {
                self.in_word = false;
                self.voice_run_ms = 0;
            }
            if !self.greeting_started && self.silence_ms >= c.initial_silence_ms {
                Some((AmdVerdict::Machine, AmdCause::InitialSilence))
            } else if self.greeting_started && self.silence_ms >= c.after_greeting_silence_ms {
                Some((AmdVerdict::Human, AmdCause::Human))
            } else {
                None
            }
        };
        let rule = rule.or_else(|| {
            (self.elapsed_ms >= self.config.total_analysis_ms)
                .then_some((AmdVerdict::NotSure, AmdCause::TooLong))
        });
        self.decided = rule.map(|(verdict, cause)| AmdDecision {
            verdict,
            cause,
            after_ms: self.elapsed_ms,
        });
        self.decided
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loud noise: speech to the detector, and no beep (a tone would be).
    fn voice(ms: u32) -> Vec<Vec<i16>> {
        let mut seed = ms;
        (0..ms / 20)
            .map(|_| crate::test_signal::noise(&mut seed, 8000.0, 160))
            .collect()
    }

    fn beep(ms: u32) -> Vec<Vec<i16>> {
        (0..ms / 20)
            .map(|k| {
                (0..160)
                    .map(|i| (8000.0 * ((k * 160 + i) as f32 * 0.785).sin()) as i16)
                    .collect()
            })
            .collect()
    }

    fn run(amd: &mut Amd, parts: &[(bool, u32)]) -> Option<AmdDecision> {
        run_with(amd, parts, voice)
    }

    fn run_with(amd: &mut Amd, parts: &[(bool, u32)], loud: fn(u32) -> Vec<Vec<i16>>) -> Option<AmdDecision> {
        let quiet = vec![3i16; 160];
        let mut decided = None;
        for (sound, ms) in parts {
            let frames = if *sound {
                loud(*ms)
            } else {
                vec![quiet.clone(); (*ms / 20) as usize]
            };
            for f in frames {
                if let Some(d) = amd.push(&f) {
                    decided = Some(d);
                }
            }
        }
        decided
    }

    #[test]
    fn a_hello_and_a_wait_is_a_person() {
        let mut amd = Amd::new(AmdConfig::default(), 8000).expect("valid");
        let d = run(&mut amd, &[(false, 400), (true, 500), (false, 1000)]).expect("decided");
        assert_eq!((d.verdict, d.cause), (AmdVerdict::Human, AmdCause::Human));
        assert_eq!(d.after_ms, 400 + 500 + 800);
    }

    #[test]
    fn a_long_greeting_is_a_machine_before_it_ends() {
        let mut amd = Amd::new(AmdConfig::default(), 8000).expect("valid");
        let d = run(
            &mut amd,
            &[(false, 400), (true, 1000), (false, 200), (true, 3000)],
        )
        .expect("decided");
        assert_eq!(
            (d.verdict, d.cause),
            (AmdVerdict::Machine, AmdCause::LongGreeting)
        );
        assert_eq!(d.after_ms, 400 + 1000 + 200 + 500);
        assert_eq!(amd.push(&[0; 160]), None, "decided once");
    }

    #[test]
    fn many_short_words_are_a_machine_and_silence_is_one_too() {
        let mut amd = Amd::new(AmdConfig::default(), 8000).expect("valid");
        let words = [
            (false, 300),
            (true, 200),
            (false, 200),
            (true, 200),
            (false, 200),
            (true, 200),
        ];
        let d = run(&mut amd, &words).expect("decided");
        assert_eq!((d.verdict, d.cause), (AmdVerdict::Machine, AmdCause::MaxWords));
        let mut amd = Amd::new(AmdConfig::default(), 8000).expect("valid");
        let d = run(&mut amd, &[(false, 3000)]).expect("decided");
        assert_eq!(
            (d.verdict, d.cause, d.after_ms),
            (AmdVerdict::Machine, AmdCause::InitialSilence, 2500)
        );
    }

    #[test]
    fn a_beep_after_a_short_greeting_is_a_machine() {
        // "Leave a message." (one word to the rules) and a beep: without
        // the beep, the silence after it would make a person.
        let mut amd = Amd::new(AmdConfig::default(), 8000).expect("valid");
        let d = run(&mut amd, &[(false, 400), (true, 600), (false, 300)]);
        assert_eq!(d, None);
        let d = run_with(&mut amd, &[(true, 400), (false, 100)], beep).expect("decided");
        assert_eq!(
            (d.verdict, d.cause, d.after_ms),
            (AmdVerdict::Machine, AmdCause::Beep, 400 + 600 + 300 + 400 + 20)
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        for c in [
            AmdConfig {
                total_analysis_ms: 100,
                ..AmdConfig::default()
            },
            AmdConfig {
                greeting_ms: 9000,
                ..AmdConfig::default()
            },
            AmdConfig {
                max_words: 0,
                ..AmdConfig::default()
            },
        ] {
            assert!(matches!(
                Amd::new(c, 8000),
                Err(CodecError::InvalidSetting { .. })
            ));
        }
    }
}
