//! The bridge-path workload: per call, 20 ms of 8 kHz u-law -> 16 kHz PCM16
//! (caller to bot) and 20 ms of 24 kHz PCM16 -> 8 kHz u-law (bot to caller).
//!
//! The same work is done with voxbridge's resampler and with each C peer; the
//! G.711 steps are voxbridge's in every variant so only the resampler differs.

use crate::peers::{SoxrStream, SpeexStream};
use voxbridge_codecs::{g711, Resampler};

/// Which resampler does the rate conversions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// voxbridge's own.
    Ours,
    /// libsoxr medium quality.
    SoxrMq,
    /// libsoxr high quality.
    SoxrHq,
    /// speexdsp quality 3.
    SpeexQ3,
}

enum Pair {
    Ours(Resampler, Resampler),
    Soxr(SoxrStream, SoxrStream),
    Speex(SpeexStream, SpeexStream),
}

/// One call's state in both directions.
pub struct CallState {
    pair: Pair,
}

impl CallState {
    /// A call using `engine`.
    pub fn new(engine: Engine) -> Self {
        let pair = match engine {
            Engine::Ours => Pair::Ours(
                Resampler::new(8000, 16000).expect("supported pair"),
                Resampler::new(24000, 8000).expect("supported pair"),
            ),
            Engine::SoxrMq | Engine::SoxrHq => {
                let q = if engine == Engine::SoxrMq {
                    crate::peers::SOXR_MQ
                } else {
                    crate::peers::SOXR_HQ
                };
                Pair::Soxr(
                    SoxrStream::new(8000, 16000, q).expect("libsoxr"),
                    SoxrStream::new(24000, 8000, q).expect("libsoxr"),
                )
            }
            Engine::SpeexQ3 => Pair::Speex(
                SpeexStream::new(8000, 16000, 3).expect("speexdsp"),
                SpeexStream::new(24000, 8000, 3).expect("speexdsp"),
            ),
        };
        CallState { pair }
    }
}

/// Caller-owned buffers for one frame pair (shared by all calls on a thread).
pub struct Scratch {
    pcm8: [i16; 160],
    pcm16: [i16; 320],
    bot8: [i16; 160],
    /// 16 kHz PCM16 bytes toward the bot.
    pub to_bot: [u8; 640],
    /// u-law bytes toward the caller.
    pub to_caller: [u8; 160],
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            pcm8: [0; 160],
            pcm16: [0; 320],
            bot8: [0; 160],
            to_bot: [0; 640],
            to_caller: [0; 160],
        }
    }
}

/// Runs one frame pair for `call`: `ulaw_in` (160 bytes) up to the bot, `bot24` (480 samples) down to the caller.
pub fn frame_pair(call: &mut CallState, ulaw_in: &[u8], bot24: &[i16], s: &mut Scratch) {
    g711::decode_ulaw(ulaw_in, &mut s.pcm8);
    match &mut call.pair {
        Pair::Ours(up, down) => {
            up.process(&s.pcm8, &mut s.pcm16).expect("exact frame");
            down.process(bot24, &mut s.bot8).expect("exact frame");
        }
        Pair::Soxr(up, down) => {
            up.process(&s.pcm8, &mut s.pcm16);
            down.process(bot24, &mut s.bot8);
        }
        Pair::Speex(up, down) => {
            up.process(&s.pcm8, &mut s.pcm16);
            down.process(bot24, &mut s.bot8);
        }
    }
    voxbridge_codecs::frame::write_le(&s.pcm16, &mut s.to_bot);
    g711::encode_ulaw(&s.bot8, &mut s.to_caller);
}

/// Deterministic speech-like test input: `frames` u-law frames and 24 kHz frames.
pub fn inputs(frames: usize) -> (Vec<u8>, Vec<i16>) {
    let mut ulaw = vec![0u8; frames * 160];
    let mut pcm24 = vec![0i16; frames * 480];
    let mut seed = 0x1234_5678u32;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed >> 16) as i32 - 32768
    };
    for (i, u) in ulaw.iter_mut().enumerate() {
        let t = i as f32 / 8000.0;
        let v = (t * 2.0 * std::f32::consts::PI * 180.0).sin() * 6000.0 + noise() as f32 / 40.0;
        *u = g711::linear_to_ulaw(v as i16);
    }
    for (i, p) in pcm24.iter_mut().enumerate() {
        let t = i as f32 / 24000.0;
        *p = ((t * 2.0 * std::f32::consts::PI * 220.0).sin() * 7000.0 + noise() as f32 / 40.0) as i16;
    }
    (ulaw, pcm24)
}
