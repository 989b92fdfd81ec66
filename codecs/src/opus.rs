//! Opus encode/decode, 20 ms frames, through libopus (the `opusic-c`
//! binding): mono for calls, stereo encoding for recordings.
//!
//! Binding choice: `opusic-c` over `audiopus`. audiopus has had no release
//! since a 2021 release candidate and builds libopus 1.3; opusic-c is
//! maintained, bundles libopus 1.5+ (better PLC, in-band FEC fixes) and builds
//! it with cmake so every machine runs the same codec version.
//!
//! Loss handling: [`OpusDecoder::conceal`] runs libopus PLC for a missing
//! packet; [`OpusDecoder::recover`] rebuilds it from the in-band FEC carried by
//! the packet that follows (enable FEC on the sender with [`OpusSettings::fec`]).

use crate::error::CodecError;
use opusic_c::{Application, Bitrate, Channels, Decoder, Encoder, InbandFec, SampleRate};

/// Largest packet we produce or accept (libopus' own recommended maximum).
pub const MAX_PACKET: usize = 1275;

fn rate_of(hz: u32) -> Result<SampleRate, CodecError> {
    Ok(match hz {
        8000 => SampleRate::Hz8000,
        12000 => SampleRate::Hz12000,
        16000 => SampleRate::Hz16000,
        24000 => SampleRate::Hz24000,
        48000 => SampleRate::Hz48000,
        rate => return Err(CodecError::UnsupportedRate { rate }),
    })
}

fn err(e: opusic_c::ErrorCode) -> CodecError {
    CodecError::Opus(format!("{e:?}"))
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusSettings {
    /// Sample rate of the PCM fed in: 8000, 12000, 16000, 24000 or 48000.
    pub rate: u32,
    /// Target bitrate in bit/s; `None` lets libopus choose.
    pub bitrate: Option<u32>,
    /// 0 (cheapest) ..= 10 (best).
    pub complexity: u8,
    /// Carry in-band FEC so the receiver can rebuild one lost packet.
    pub fec: bool,
    /// Expected packet loss, percent (tunes FEC strength).
    pub expected_loss_percent: u8,
}

impl Default for OpusSettings {
    fn default() -> Self {
        OpusSettings {
            rate: 48000,
            bitrate: Some(32000),
            complexity: 5,
            fec: true,
            expected_loss_percent: 5,
        }
    }
}

/// Opus encoder producing one packet per 20 ms frame (mono, or stereo with
/// interleaved samples).
pub struct OpusEncoder {
    inner: Encoder,
    frame: usize,
    channels: usize,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").field("frame", &self.frame).finish()
    }
}

impl OpusEncoder {
    /// An encoder for `settings` (VoIP application, mono).
    pub fn new(settings: OpusSettings) -> Result<Self, CodecError> {
        Self::with_channels(settings, false)
    }

    /// An encoder for `settings`, stereo when `stereo` (a call recording:
    /// caller left, what the caller heard right), taking interleaved
    /// samples.
    pub fn with_channels(settings: OpusSettings, stereo: bool) -> Result<Self, CodecError> {
        let rate = rate_of(settings.rate)?;
        if settings.complexity > 10 {
            return Err(CodecError::InvalidSetting {
                name: "complexity",
                detail: format!("{} is not in 0..=10", settings.complexity),
            });
        }
        let channels = if stereo { Channels::Stereo } else { Channels::Mono };
        let mut inner = Encoder::new(channels, rate, Application::Voip).map_err(err)?;
        inner.set_complexity(settings.complexity).map_err(err)?;
        let bitrate = settings.bitrate.map_or(Bitrate::Auto, Bitrate::Value);
        inner.set_bitrate(bitrate).map_err(err)?;
        if settings.fec {
            inner.set_inband_fec(InbandFec::Mode1).map_err(err)?;
            inner
                .set_packet_loss(settings.expected_loss_percent.min(100))
                .map_err(err)?;
        }
        Ok(OpusEncoder {
            inner,
            frame: (settings.rate / 50) as usize,
            channels: if stereo { 2 } else { 1 },
        })
    }

    /// Samples per 20 ms frame, per channel.
    pub fn frame_len(&self) -> usize {
        self.frame
    }

    /// The encoder's look-ahead, samples at its rate (an Ogg Opus file's
    /// pre-skip is this at 48 kHz).
    pub fn lookahead(&mut self) -> Result<u32, CodecError> {
        self.inner.get_look_ahead().map_err(err)
    }

    /// The packet loss the encoder plans for, percent (capped at 100). With
    /// FEC on, libopus adds in-band FEC only while this is above 0, and more
    /// of it as it grows; a sender that follows its receiver's reports pays
    /// for FEC only on a network that loses packets.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), CodecError> {
        self.inner.set_packet_loss(percent.min(100)).map_err(err)
    }

    /// Encodes one 20 ms frame (interleaved when stereo) into `out`;
    /// returns the packet length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.len() != self.frame * self.channels {
            return Err(CodecError::FrameLength {
                expected: self.frame * self.channels,
                got: pcm.len(),
            });
        }
        let samples: &[u16] = bytemuck::cast_slice(pcm);
        self.inner.encode_to_slice(samples, out).map_err(err)
    }
}

/// Mono Opus decoder producing 20 ms frames, with PLC and FEC recovery.
pub struct OpusDecoder {
    inner: Decoder,
    frame: usize,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").field("frame", &self.frame).finish()
    }
}

impl OpusDecoder {
    /// A decoder producing PCM at `rate` Hz (8000, 12000, 16000, 24000 or 48000).
    pub fn new(rate: u32) -> Result<Self, CodecError> {
        let inner = Decoder::new(Channels::Mono, rate_of(rate)?).map_err(err)?;
        Ok(OpusDecoder {
            inner,
            frame: (rate / 50) as usize,
        })
    }

    /// Samples per 20 ms frame.
    pub fn frame_len(&self) -> usize {
        self.frame
    }

    /// Samples `packet` decodes to (its frames times their duration), or
    /// `None` when its table of contents is malformed.
    pub fn samples_in(&self, packet: &[u8]) -> Option<usize> {
        if packet.is_empty() || packet.len() > MAX_PACKET {
            return None;
        }
        self.inner.get_nb_samples(packet).ok()
    }

    /// Decodes one packet into `out` (room for at least one 20 ms frame); returns samples written.
    ///
    /// A packet that is empty, malformed, or longer than `out` is an error and
    /// leaves the decoder usable for the next packet.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if packet.is_empty() {
            return Err(CodecError::Opus(
                "empty packet (use conceal for a lost one)".into(),
            ));
        }
        if packet.len() > MAX_PACKET {
            return Err(CodecError::Opus(format!(
                "packet of {} bytes exceeds {MAX_PACKET}",
                packet.len()
            )));
        }
        let samples: &mut [u16] = bytemuck::cast_slice_mut(out);
        self.inner.decode_to_slice(packet, samples, false).map_err(err)
    }

    /// Fills one 20 ms frame with libopus loss concealment.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        let n = self.frame.min(out.len());
        let samples: &mut [u16] = bytemuck::cast_slice_mut(&mut out[..n]);
        self.inner.decode_to_slice(&[], samples, false).map_err(err)
    }

    /// Rebuilds the lost frame before `next_packet` from its in-band FEC
    /// (or conceals it if the packet carries none). Decode `next_packet` itself afterwards.
    pub fn recover(&mut self, next_packet: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if next_packet.is_empty() || next_packet.len() > MAX_PACKET {
            return self.conceal(out);
        }
        let n = self.frame.min(out.len());
        let samples: &mut [u16] = bytemuck::cast_slice_mut(&mut out[..n]);
        self.inner
            .decode_to_slice(next_packet, samples, true)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speechy(n: usize, rate: u32) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
                let v = (2.0 * std::f32::consts::PI * 150.0 * t).sin()
                    + 0.5 * (2.0 * std::f32::consts::PI * 450.0 * t).sin()
                    + 0.25 * (2.0 * std::f32::consts::PI * 1200.0 * t).sin();
                (v * env * 8000.0) as i16
            })
            .collect()
    }

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64
    }

    #[test]
    fn every_rate_round_trips_with_fec_and_plc() {
        for rate in [8000, 16000, 24000, 48000] {
            let settings = OpusSettings {
                rate,
                ..OpusSettings::default()
            };
            let mut enc = OpusEncoder::new(settings).expect("encoder");
            let mut dec = OpusDecoder::new(rate).expect("decoder");
            let frame = (rate / 50) as usize;
            let pcm = speechy(frame * 50, rate);
            let mut packets = Vec::new();
            for f in pcm.chunks(frame) {
                let mut buf = [0u8; MAX_PACKET];
                let n = enc.encode(f, &mut buf).expect("encode");
                packets.push(buf[..n].to_vec());
            }
            let mut out = vec![0i16; frame];
            let mut decoded = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                if i == 20 {
                    // lost: rebuild from the next packet's FEC
                    let n = dec.recover(&packets[21], &mut out).expect("fec");
                    assert_eq!(n, frame);
                } else if i == 30 {
                    let n = dec.conceal(&mut out).expect("plc");
                    assert_eq!(n, frame);
                } else {
                    let n = dec.decode(p, &mut out).expect("decode");
                    assert_eq!(n, frame);
                }
                decoded.extend_from_slice(&out);
            }
            let lost = &decoded[20 * frame..21 * frame];
            assert!(
                energy(lost) > energy(&pcm[20 * frame..21 * frame]) * 0.1,
                "FEC frame at {rate} is near silent"
            );
        }
    }

    #[test]
    fn garbage_packets_are_errors_not_panics() {
        let mut dec = OpusDecoder::new(16000).expect("decoder");
        let mut out = vec![0i16; 320];
        assert!(dec.decode(&[], &mut out).is_err());
        assert!(dec.decode(&[0xFF; 2000], &mut out).is_err());
        // 0x7B 0xFF: code 3 packet with an impossible frame count.
        assert!(dec.decode(&[0x7B, 0xFF, 0xFF], &mut out).is_err());
        assert!(OpusEncoder::new(OpusSettings {
            rate: 44100,
            ..OpusSettings::default()
        })
        .is_err());
    }
}
