//! A call's voice activity (a route's `[routes.<name>.vad]`): the caller's
//! speech as it goes to the bot and the bot's as the caller hears it, each
//! through a `voxbridge_codecs::vad::VoiceActivity`, with every start and
//! stop kept (with its time in the call) until [`super::call::Call`] tells
//! the bot and control. The caller's side is echo-safe: an
//! `EchoGate` fed what the caller heard holds back frames no louder than
//! the bot's echo could be, so the bot's own voice coming back on the line
//! is never taken for the caller interrupting it. No allocation per frame:
//! the queue of changes is made once and a change is a few bytes.
//! [`CallAmd`] runs answering-machine detection on the callee of a call
//! voxbridge placed, and says what the route does with a machine.

use super::voicemail::{Prompt, Voicemail};
use crate::config::{AnsweringMachine, OnMachine, Vad};
use crate::error::MediaError;
use crate::events::Speaker;
use std::collections::VecDeque;
use voxbridge_codecs::vad::{Amd, AmdCause, AmdDecision, AmdVerdict, EchoGate, VadConfig, VoiceActivity};

/// Changes a call holds before [`CallVad::take_change`] drains them (a
/// frame gives at most one per direction; this is many frames' worth).
const CHANGES_MAX: usize = 16;

/// A start or stop of speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechChange {
    /// The caller's speech (`in`) or the bot's as the caller heard it (`out`).
    pub speaker: Speaker,
    /// Started (`true`) or stopped.
    pub started: bool,
    /// Time in the call, ms.
    pub offset_ms: u64,
}

/// Both directions' voice activity of one call.
#[derive(Debug)]
pub struct CallVad {
    config: VadConfig,
    /// The caller's speech, at the bot's rate (as it goes to the bot).
    inbound: Option<VoiceActivity>,
    /// Holds back the caller's frames that may be the bot's echo.
    echo: Option<EchoGate>,
    /// What the caller hears, at the caller's rate, and that rate.
    outbound: Option<(u32, VoiceActivity)>,
    /// Tell the bot.
    pub to_bot: bool,
    /// Tell control.
    pub to_control: bool,
    changes: VecDeque<SpeechChange>,
}

impl CallVad {
    /// For a call whose bot side runs at `bot_rate` and caller side at
    /// `caller_rate`, watching the directions `route` names.
    pub fn new(route: &Vad, bot_rate: u32, caller_rate: u32) -> Result<CallVad, MediaError> {
        use crate::config::TranscribeDirection::{In, Out};
        let config = route
            .detector_config()
            .map_err(|e| MediaError::Config(crate::error::ConfigError(format!("vad.{e}"))))?;
        let inbound = if route.wants(In) {
            Some(VoiceActivity::new(&config, bot_rate)?)
        } else {
            None
        };
        let echo = (inbound.is_some() && route.echo_gate).then(|| EchoGate::new(route.echo_return_loss_db));
        let outbound = if route.wants(Out) {
            Some((caller_rate, VoiceActivity::new(&config, caller_rate)?))
        } else {
            None
        };
        Ok(CallVad {
            config,
            inbound,
            echo,
            outbound,
            to_bot: route.to_bot,
            to_control: route.to_control,
            changes: VecDeque::with_capacity(CHANGES_MAX),
        })
    }

    /// A frame of the caller's audio at the bot's rate, `offset_ms` into the call.
    pub fn inbound(&mut self, frame: &[i16], offset_ms: u64) {
        let Some(vad) = self.inbound.as_mut() else { return };
        let change = match &self.echo {
            Some(gate) => vad.push_gated(frame, gate),
            None => vad.push(frame),
        };
        if let Some(started) = change {
            self.keep(Speaker::Caller, started, offset_ms);
        }
    }

    /// A frame the caller hears, at `rate` (a new rate, after the caller's
    /// leg changed codec, starts that direction afresh); a frame shorter
    /// than 20 ms (a paused bot's last piece) counts as silence.
    pub fn outbound(&mut self, rate: u32, frame: &[i16], offset_ms: u64) {
        let level = self.watch_outbound(rate, frame, offset_ms);
        if let Some(gate) = self.echo.as_mut() {
            match level {
                Some(db) => gate.played_level(db),
                None => gate.played(frame),
            }
        }
    }

    /// The `out` direction's detector takes the frame; the frame's level
    /// when it did (so the echo gate need not take it again).
    fn watch_outbound(&mut self, rate: u32, frame: &[i16], offset_ms: u64) -> Option<f32> {
        let (at_rate, vad) = self.outbound.as_mut()?;
        if *at_rate != rate {
            match VoiceActivity::new(&self.config, rate) {
                Ok(v) => (*at_rate, *vad) = (rate, v),
                Err(_) => {
                    // A rate the call could take but the detector cannot:
                    // this direction goes unwatched rather than wrong.
                    self.outbound = None;
                    return None;
                }
            }
        }
        let change = vad.push(frame);
        let level = (frame.len() == vad.frame_len()).then(|| vad.last_level_db());
        if let Some(started) = change {
            self.keep(Speaker::Bot, started, offset_ms);
        }
        level
    }

    fn keep(&mut self, speaker: Speaker, started: bool, offset_ms: u64) {
        if self.changes.len() == CHANGES_MAX {
            // Not drained (cannot happen with a driver that polls the
            // call): the oldest goes, the queue never grows.
            self.changes.pop_front();
        }
        self.changes.push_back(SpeechChange {
            speaker,
            started,
            offset_ms,
        });
    }

    /// The oldest start or stop not yet taken.
    pub fn take_change(&mut self) -> Option<SpeechChange> {
        self.changes.pop_front()
    }
}

/// Answering-machine detection on a call voxbridge placed (a route's
/// `amd`): the callee's frames from the answer on, one decision.
#[derive(Debug)]
pub struct CallAmd {
    amd: Amd,
    /// Tell the bot.
    pub to_bot: bool,
    /// Tell control.
    pub to_control: bool,
    decided: Option<AmdDecision>,
    on_machine: OnMachine,
    message: Option<(Prompt, u32)>,
    rate: u32,
}

/// What the call does once answering-machine detection has decided.
#[derive(Debug)]
pub enum AfterVerdict {
    /// Goes on.
    Continue,
    /// Hangs up on the machine.
    HangUp,
    /// Leaves the route's message on the machine.
    LeaveMessage(Box<Voicemail>),
}

impl CallAmd {
    /// Detection as `route` sets it, on the callee's frames at `rate`.
    pub fn new(route: &AnsweringMachine, rate: u32) -> Result<CallAmd, MediaError> {
        Ok(CallAmd {
            amd: Amd::new(route.detector_config(), rate)?,
            to_bot: route.to_bot,
            to_control: route.to_control,
            decided: None,
            on_machine: route.on_machine,
            message: route.message_audio.clone().map(|p| (p, route.beep_wait_ms)),
            rate,
        })
    }

    /// What the route does after `decision` (a machine: go on, hang up, or
    /// leave its message; a `leave_message` route whose message was never
    /// read, as in a test that builds the route by hand, hangs up).
    pub fn after(&self, decision: &AmdDecision) -> AfterVerdict {
        if decision.verdict != AmdVerdict::Machine {
            return AfterVerdict::Continue;
        }
        match (self.on_machine, &self.message) {
            (OnMachine::Continue, _) => AfterVerdict::Continue,
            (OnMachine::LeaveMessage, Some((prompt, wait))) => AfterVerdict::LeaveMessage(Box::new(
                Voicemail::new(prompt.clone(), *wait, self.rate, decision.cause == AmdCause::Beep),
            )),
            (OnMachine::Hangup | OnMachine::LeaveMessage, _) => AfterVerdict::HangUp,
        }
    }

    /// The callee's next 20 ms frame.
    pub fn inbound(&mut self, frame: &[i16]) {
        if let Some(d) = self.amd.push(frame) {
            self.decided = Some(d);
        }
    }

    /// The decision, once, when it has been made.
    pub fn take_decision(&mut self) -> Option<AmdDecision> {
        self.decided.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TranscribeDirection;

    fn tone(len: usize, amp: f32) -> Vec<i16> {
        (0..len).map(|i| (amp * (i as f32 * 0.3).sin()) as i16).collect()
    }

    #[test]
    fn each_direction_reports_its_own_starts_and_stops() {
        let route = Vad::default();
        let mut v = CallVad::new(&route, 16_000, 8000).expect("valid");
        let (quiet_in, quiet_out) = (vec![0i16; 320], vec![0i16; 160]);
        let (loud_in, loud_out) = (tone(320, 8000.0), tone(160, 8000.0));
        let mut ms = 0;
        for _ in 0..50 {
            v.inbound(&quiet_in, ms);
            v.outbound(8000, &quiet_out, ms);
            ms += 20;
        }
        assert_eq!(v.take_change(), None);
        for _ in 0..10 {
            v.inbound(&loud_in, ms);
            v.outbound(8000, &quiet_out, ms);
            ms += 20;
        }
        let c = v.take_change().expect("the caller started");
        assert_eq!((c.speaker, c.started), (Speaker::Caller, true));
        assert_eq!(c.offset_ms, 1040, "the third loud frame decides");
        for _ in 0..40 {
            v.inbound(&quiet_in, ms);
            v.outbound(8000, &loud_out, ms);
            ms += 20;
        }
        let order: Vec<(Speaker, bool)> = std::iter::from_fn(|| v.take_change())
            .map(|c| (c.speaker, c.started))
            .collect();
        assert_eq!(order, vec![(Speaker::Bot, true), (Speaker::Caller, false)]);
    }

    #[test]
    fn a_direction_not_named_is_not_watched_and_a_new_rate_starts_afresh() {
        let route = Vad {
            directions: vec![TranscribeDirection::Out],
            ..Vad::default()
        };
        let mut v = CallVad::new(&route, 16_000, 8000).expect("valid");
        for ms in 0..40 {
            let frame = if ms < 10 {
                vec![0i16; 320]
            } else {
                tone(320, 8000.0)
            };
            v.inbound(&frame, ms * 20);
        }
        assert_eq!(v.take_change(), None, "in is not watched");
        for ms in 0..20 {
            let frame = if ms < 10 {
                vec![0i16; 320]
            } else {
                tone(320, 8000.0)
            };
            v.outbound(16_000, &frame, ms * 20);
        }
        assert_eq!(
            v.take_change().map(|c| (c.speaker, c.started)),
            Some((Speaker::Bot, true)),
            "at the new rate"
        );
    }

    #[test]
    fn the_bots_echo_on_the_callers_side_is_not_the_caller_speaking() {
        let mut v = CallVad::new(&Vad::default(), 8000, 8000).expect("valid");
        let (quiet, bot) = (vec![0i16; 160], tone(160, 8000.0));
        // The bot talks for a second; its echo comes back 10 dB down
        // (amplitude / 3.16) 100 ms later.
        let echo = tone(160, 8000.0 / 3.16);
        let mut ms = 0;
        for i in 0..100 {
            v.outbound(8000, if i >= 50 { &bot } else { &quiet }, ms);
            v.inbound(if i >= 55 { &echo } else { &quiet }, ms);
            ms += 20;
        }
        let heard: Vec<_> = std::iter::from_fn(|| v.take_change())
            .map(|c| c.speaker)
            .collect();
        assert_eq!(heard, vec![Speaker::Bot], "the echo is not the caller");
        // The caller talks over the bot at the bot's level: that is heard.
        for _ in 0..10 {
            v.outbound(8000, &bot, ms);
            v.inbound(&bot, ms);
            ms += 20;
        }
        assert_eq!(
            v.take_change().map(|c| (c.speaker, c.started)),
            Some((Speaker::Caller, true))
        );
        // Without the gate the echo would have started the caller's speech.
        let mut open = CallVad::new(
            &Vad {
                echo_gate: false,
                ..Vad::default()
            },
            8000,
            8000,
        )
        .expect("valid");
        for i in 0..100 {
            open.outbound(8000, if i >= 50 { &bot } else { &quiet }, i * 20);
            open.inbound(if i >= 55 { &echo } else { &quiet }, i * 20);
        }
        assert!(std::iter::from_fn(|| open.take_change()).any(|c| c.speaker == Speaker::Caller));
    }

    #[test]
    fn a_callee_who_says_hello_and_waits_is_a_person_decided_once() {
        let mut a = CallAmd::new(&AnsweringMachine::default(), 16_000).expect("valid");
        let quiet = vec![0i16; 320];
        // Noise, not a tone: a steady tone is a voicemail's beep.
        let mut seed = 1u32;
        let hello: Vec<i16> = (0..320)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (8000.0 * ((seed >> 16) as f32 / 32768.0 - 1.0)) as i16
            })
            .collect();
        let mut decided = Vec::new();
        for i in 0..150 {
            a.inbound(if (20..45).contains(&i) { &hello } else { &quiet });
            decided.extend(a.take_decision());
        }
        assert_eq!(decided.len(), 1);
        assert_eq!(decided[0].verdict.as_str(), "human");
        assert_eq!(decided[0].after_ms, 45 * 20 + 800);
    }

    #[test]
    fn an_undrained_queue_keeps_the_newest_changes_only() {
        let mut v = CallVad::new(&Vad::default(), 8000, 8000).expect("valid");
        for i in 0..(CHANGES_MAX as u64 + 4) {
            v.keep(Speaker::Caller, i % 2 == 0, i);
        }
        assert_eq!(v.take_change().map(|c| c.offset_ms), Some(4));
    }
}
