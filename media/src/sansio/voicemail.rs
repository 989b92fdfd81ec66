//! Leaving a message on an answering machine (a route's `amd.on_machine =
//! "leave_message"`): once the callee of a placed call is found to be a
//! machine, [`super::call::Call`] holds the bot's audio back and this waits
//! for the machine's beep (at most the route's `beep_wait_ms`), then hands
//! the route's message to the playout a little at a time, so the playout
//! cap never cuts it; the call hangs up once the callee has heard all of
//! it. [`Prompt`] is the message, read from a WAV file when the server
//! starts. No allocation per frame.

use std::sync::Arc;
use voxbridge_codecs::vad::BeepDetector;
use voxbridge_codecs::STANDARD_RATES;
use voxbridge_proto::wav::{parse_header, WavEncoding};

/// The longest message, seconds.
pub const PROMPT_MAX_S: u32 = 60;
/// Audio queued for the callee is topped up to this, ms.
const QUEUE_AHEAD_MS: u64 = 200;
/// One top-up, ms.
const PIECE_MS: usize = 100;

/// A message to play: mono PCM at one of the standard rates.
#[derive(Clone, PartialEq, Eq)]
pub struct Prompt {
    rate: u32,
    pcm: Arc<[i16]>,
}

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prompt({} ms at {} Hz)", self.duration_ms(), self.rate)
    }
}

impl Prompt {
    /// The samples of a WAV file (PCM16, A-law or u-law, mono, at a
    /// standard rate, 20 ms to [`PROMPT_MAX_S`] long).
    pub fn from_wav(bytes: &[u8]) -> Result<Prompt, String> {
        let header = parse_header(bytes).map_err(|e| e.to_string())?;
        if !STANDARD_RATES.contains(&header.rate) {
            return Err(format!("{} Hz: use one of {STANDARD_RATES:?}", header.rate));
        }
        let data = bytes.get(header.data_offset..).unwrap_or_default();
        let data = match header.data_len {
            Some(n) => data.get(..n as usize).unwrap_or(data),
            None => data,
        };
        // The project's own sample readers: PCM16 LE, G.711 tables.
        let mut pcm = match header.encoding {
            WavEncoding::Pcm16 => vec![0i16; data.len() / 2],
            WavEncoding::Ulaw | WavEncoding::Alaw => vec![0i16; data.len()],
        };
        match header.encoding {
            WavEncoding::Pcm16 => {
                voxbridge_codecs::frame::read_le(data, &mut pcm);
            }
            WavEncoding::Ulaw => voxbridge_codecs::g711::decode_ulaw(data, &mut pcm),
            WavEncoding::Alaw => voxbridge_codecs::g711::decode_alaw(data, &mut pcm),
        }
        let prompt = Prompt {
            rate: header.rate,
            pcm: pcm.into(),
        };
        let ms = prompt.duration_ms();
        if ms < 20 {
            return Err("shorter than 20 ms".into());
        }
        if ms > u64::from(PROMPT_MAX_S) * 1000 {
            return Err(format!("{ms} ms is longer than {PROMPT_MAX_S} s"));
        }
        Ok(prompt)
    }

    /// Its sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Its length, ms.
    pub fn duration_ms(&self) -> u64 {
        self.pcm.len() as u64 * 1000 / u64::from(self.rate.max(1))
    }
}

/// Where leaving the message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Listening for the beep; ms waited so far.
    AwaitingBeep(u32),
    /// Played up to this sample.
    Playing(usize),
}

/// One call's message on a machine (see the module docs).
#[derive(Debug)]
pub struct Voicemail {
    prompt: Prompt,
    beep_wait_ms: u32,
    beep: BeepDetector,
    phase: Phase,
}

impl Voicemail {
    /// Starts at the machine verdict: the callee's audio arrives at `rate`;
    /// `beeped` when the verdict was the beep itself (the message starts
    /// at once).
    pub fn new(prompt: Prompt, beep_wait_ms: u32, rate: u32, beeped: bool) -> Voicemail {
        Voicemail {
            prompt,
            beep_wait_ms,
            beep: BeepDetector::new(rate),
            phase: if beeped {
                Phase::Playing(0)
            } else {
                Phase::AwaitingBeep(0)
            },
        }
    }

    /// The callee's next 20 ms frame.
    pub fn inbound(&mut self, frame: &[i16]) {
        if let Phase::AwaitingBeep(_) = self.phase {
            if self.beep.push(frame).is_some() {
                self.phase = Phase::Playing(0);
            }
        }
    }

    /// A 20 ms tick with `queued_ms` of audio waiting for the callee: the
    /// next piece of the message to queue (with its rate), if any is due.
    pub fn tick(&mut self, queued_ms: u64) -> Option<(&[i16], u32)> {
        match self.phase {
            Phase::AwaitingBeep(waited) => {
                // No beep in time (some machines have none): leave it now.
                self.phase = if waited + 20 >= self.beep_wait_ms {
                    Phase::Playing(0)
                } else {
                    Phase::AwaitingBeep(waited + 20)
                };
                None
            }
            Phase::Playing(at) if queued_ms < QUEUE_AHEAD_MS && at < self.prompt.pcm.len() => {
                let piece = self.prompt.rate as usize * PIECE_MS / 1000;
                let end = (at + piece).min(self.prompt.pcm.len());
                self.phase = Phase::Playing(end);
                Some((&self.prompt.pcm[at..end], self.prompt.rate))
            }
            Phase::Playing(_) => None,
        }
    }

    /// Whether the whole message has been handed to the playout.
    pub fn all_queued(&self) -> bool {
        self.phase == Phase::Playing(self.prompt.pcm.len())
    }

    /// Whether the message has started (the beep came or the wait ran out).
    pub fn started(&self) -> bool {
        matches!(self.phase, Phase::Playing(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxbridge_proto::wav::write_header;

    fn wav(rate: u32, samples: usize) -> Vec<u8> {
        let mut b = write_header(WavEncoding::Pcm16, rate, samples as u32 * 2).to_vec();
        for i in 0..samples {
            b.extend_from_slice(&((i % 100) as i16).to_le_bytes());
        }
        b
    }

    #[test]
    fn a_message_file_is_read_and_bad_ones_are_refused_with_a_reason() {
        let p = Prompt::from_wav(&wav(16_000, 16_000)).expect("a second at 16 kHz");
        assert_eq!((p.rate(), p.duration_ms()), (16_000, 1000));
        assert!(Prompt::from_wav(b"not a wav file at all").is_err());
        let e = Prompt::from_wav(&wav(7000, 7000)).expect_err("odd rate");
        assert!(e.contains("7000 Hz"), "{e}");
        let e = Prompt::from_wav(&wav(8000, 8000 * 61)).expect_err("too long");
        assert!(e.contains("longer than 60 s"), "{e}");
        assert!(Prompt::from_wav(&wav(8000, 10)).is_err(), "too short");
    }

    #[test]
    fn the_message_waits_for_the_beep_and_is_queued_a_little_ahead() {
        let prompt = Prompt::from_wav(&wav(8000, 8000)).expect("valid");
        let mut vm = Voicemail::new(prompt, 5000, 8000, false);
        let quiet = [0i16; 160];
        for _ in 0..50 {
            vm.inbound(&quiet);
            assert_eq!(vm.tick(0), None, "no beep yet");
        }
        let beep: Vec<Vec<i16>> = (0..15)
            .map(|k| {
                (0..160)
                    .map(|i| (8000.0 * ((k * 160 + i) as f32 * 0.785).sin()) as i16)
                    .collect()
            })
            .collect();
        for f in &beep {
            vm.inbound(f);
            assert_eq!(vm.tick(0), None, "the beep is still sounding");
        }
        vm.inbound(&quiet);
        assert!(vm.started(), "it starts once the beep ends");
        let (piece, rate) = vm.tick(0).expect("the first piece");
        assert_eq!((piece.len(), rate), (800, 8000));
        assert_eq!(vm.tick(QUEUE_AHEAD_MS), None, "enough is queued");
        let mut queued = 800;
        while let Some((p, _)) = vm.tick(0) {
            queued += p.len();
        }
        assert_eq!(queued, 8000);
        assert!(vm.all_queued());
    }

    #[test]
    fn without_a_beep_the_message_starts_when_the_wait_runs_out() {
        let prompt = Prompt::from_wav(&wav(8000, 800)).expect("valid");
        let mut vm = Voicemail::new(prompt, 1000, 8000, false);
        let ticks = std::iter::repeat_with(|| vm.tick(0).is_none())
            .take_while(|quiet| *quiet)
            .count();
        assert_eq!(ticks, 1000 / 20);
        let prompt = Prompt::from_wav(&wav(8000, 800)).expect("valid");
        assert!(
            Voicemail::new(prompt, 1000, 8000, true).started(),
            "the verdict was the beep"
        );
    }
}
