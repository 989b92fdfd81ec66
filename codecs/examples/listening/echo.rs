//! The barge-in part of the listening benchmark: the bot talks (half the
//! set's utterances, with pauses), its voice comes back in the caller's
//! audio at -6 to -25 dB and 30 to 300 ms late, over a faint line hiss, and
//! during every other bot utterance the caller interrupts (an utterance of
//! the other half, starting 40 % into the bot's). The caller's direction
//! goes through voxbridge's detector, with the echo gate fed what the bot
//! played and without it.
//!
//! A barge-in is a `speech started` while the bot's utterance (or its
//! 300 ms echo tail) lasts. It is right when it falls within an
//! interruption while the bot still talks (from 100 ms before the caller's
//! first sample to the end of the bot's utterance), false otherwise; an
//! interruption without one is missed.
//! `false_bargein_pct` is false barge-ins per bot utterance, in percent;
//! `missed_bargein_pct` missed interruptions per interruption.

use super::{FRAME, RATE};
use voxbridge_codecs::vad::{EchoGate, VadConfig, VoiceActivity};

/// The bot's track, the caller's, where each speaks (sample spans), and
/// which bot utterances the caller interrupts.
pub struct Dialogue {
    bot: Vec<i16>,
    caller: Vec<i16>,
    bot_spans: Vec<(usize, usize)>,
    /// The caller's first sample, its last, and the end of the bot
    /// utterance it interrupts.
    interruptions: Vec<(usize, usize, usize)>,
}

impl Dialogue {
    /// Bot utterances from the first half of `utterances`, the caller's
    /// from the second, pauses of 0.8 to 2.8 s (fixed pseudo-random).
    pub fn build(utterances: &[Vec<i16>]) -> Dialogue {
        let half = utterances.len() / 2;
        let mut rng = 0xec40_u64;
        let mut pause = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (800 + (rng >> 33) as usize % 2000) * RATE / 1000
        };
        let mut bot = Vec::new();
        let mut bot_spans = Vec::new();
        for u in &utterances[..half] {
            bot.extend(std::iter::repeat_n(0i16, pause()));
            bot_spans.push((bot.len(), bot.len() + u.len()));
            bot.extend_from_slice(u);
        }
        bot.extend(std::iter::repeat_n(0i16, 3 * RATE));
        let mut caller = vec![0i16; bot.len()];
        let mut interruptions = Vec::new();
        for (k, (start, end)) in bot_spans.iter().enumerate().filter(|(k, _)| k % 2 == 1) {
            let u = &utterances[half + k % (utterances.len() - half)];
            let at = start + (end - start) * 2 / 5;
            let stop = (at + u.len()).min(caller.len());
            caller[at..stop].copy_from_slice(&u[..stop - at]);
            interruptions.push((at, stop, *end));
        }
        Dialogue {
            bot,
            caller,
            bot_spans,
            interruptions,
        }
    }

    /// The caller's direction: the caller `caller_db` from the bot's level,
    /// the bot's echo `erl_db` down and `delay_ms` late, and `hiss` (looped)
    /// at -60 dBFS.
    fn heard(&self, caller_db: f64, erl_db: f64, delay_ms: usize, hiss: &[i16]) -> Vec<i16> {
        let delay = delay_ms * RATE / 1000;
        let gain = 10f64.powf(-erl_db / 20.0);
        let caller_gain = 10f64.powf(caller_db / 20.0);
        let hiss_rms = (super::power(hiss)).sqrt().max(1.0);
        let hiss_gain = 32768.0 * 10f64.powf(-60.0 / 20.0) / hiss_rms;
        (0..self.caller.len())
            .map(|i| {
                let echo = if i >= delay {
                    self.bot[i - delay] as f64 * gain
                } else {
                    0.0
                };
                let h = hiss[i % hiss.len()] as f64 * hiss_gain;
                (self.caller[i] as f64 * caller_gain + echo + h)
                    .round()
                    .clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }
}

/// False and missed barge-ins, percent.
#[derive(Debug, Clone, Copy)]
pub struct BargeIns {
    pub false_pct: f64,
    pub missed_pct: f64,
}

/// Runs the caller's direction (the caller `caller_db` from the bot's
/// level) through the detector, with the echo gate (assuming
/// `gate_erl_db`) or without (`None`).
pub fn barge_ins(
    d: &Dialogue,
    caller_db: f64,
    erl_db: f64,
    delay_ms: usize,
    hiss: &[i16],
    gate_erl_db: Option<f32>,
) -> BargeIns {
    let heard = d.heard(caller_db, erl_db, delay_ms, hiss);
    let mut vad = VoiceActivity::new(&VadConfig::default(), RATE as u32).expect("8 kHz");
    let mut gate = gate_erl_db.map(EchoGate::new);
    let mut starts = Vec::new();
    for (i, (frame, played)) in heard
        .chunks_exact(FRAME)
        .zip(d.bot.chunks_exact(FRAME))
        .enumerate()
    {
        let change = match gate.as_mut() {
            Some(g) => {
                g.played(played);
                vad.push_gated(frame, g)
            }
            None => vad.push(frame),
        };
        if change == Some(true) {
            starts.push(i * FRAME);
        }
    }
    let tail = 300 * RATE / 1000;
    let during_bot = |s: usize| d.bot_spans.iter().any(|(a, b)| s >= *a && s < b + tail);
    let early = 100 * RATE / 1000;
    // The caller's own speech: not a false barge-in, even once the bot is done.
    let in_interruption = |s: usize| d.interruptions.iter().any(|(a, b, _)| s + early >= *a && s < *b);
    let false_starts = starts
        .iter()
        .filter(|s| during_bot(**s) && !in_interruption(**s))
        .count();
    // A barge-in only counts while the bot still talks.
    let missed = d
        .interruptions
        .iter()
        .filter(|(a, _, bot_end)| !starts.iter().any(|s| s + early >= *a && s < bot_end))
        .count();
    BargeIns {
        false_pct: 100.0 * false_starts as f64 / d.bot_spans.len() as f64,
        missed_pct: 100.0 * missed as f64 / d.interruptions.len().max(1) as f64,
    }
}

/// The barge-in table, gate on and off, for every echo level and delay;
/// returns the gated figures at -10 dB averaged over the delays.
pub fn report(d: &Dialogue, hiss: &[i16]) -> BargeIns {
    println!(
        "barge-in: {} bot utterances, {} interruptions; echo return loss x delay; false / missed barge-ins in %;",
        d.bot_spans.len(),
        d.interruptions.len()
    );
    println!("  the caller's level against the bot's; the gate assumes 6 dB of echo return loss; the last column has no gate (caller at 0 dB)");
    println!(
        "{:<10} {:>8} {:>14} {:>14} {:>14} {:>14}",
        "echo", "delay", "caller 0 dB", "caller -6 dB", "caller -12 dB", "no gate"
    );
    let (mut false_at_10, mut missed_at_10, mut n) = (0.0, 0.0, 0.0);
    for erl in [6.0, 10.0, 15.0, 20.0, 25.0] {
        for delay in [30, 100, 200, 300] {
            let gated = barge_ins(d, 0.0, erl, delay, hiss, Some(6.0));
            let quieter = barge_ins(d, -6.0, erl, delay, hiss, Some(6.0));
            let quiet = barge_ins(d, -12.0, erl, delay, hiss, Some(6.0));
            let open = barge_ins(d, 0.0, erl, delay, hiss, None);
            let cell = |b: BargeIns| format!("{:.1} / {:.1}", b.false_pct, b.missed_pct);
            println!(
                "{:<10} {:>6}ms {:>14} {:>14} {:>14} {:>14}",
                format!("-{erl:.0} dB"),
                delay,
                cell(gated),
                cell(quieter),
                cell(quiet),
                cell(open)
            );
            if erl == 10.0 {
                false_at_10 += gated.false_pct;
                missed_at_10 += gated.missed_pct;
                n += 1.0;
            }
        }
    }
    BargeIns {
        false_pct: false_at_10 / n,
        missed_pct: missed_at_10 / n,
    }
}
