//! `Transcoder`: decode -> resample -> encode for one 20 ms frame at a time.
//!
//! The same chain a call leg runs in the daemon, and what `voxbridge
//! transcode` drives over a file. Buffers are sized at construction; a frame
//! allocates nothing.

use crate::codec::{Codec, FrameDecoder, FrameEncoder};
use crate::error::CodecError;
use crate::resample::Resampler;

/// Converts frames of one codec/rate into another.
#[derive(Debug)]
pub struct Transcoder {
    from: Codec,
    to: Codec,
    decoder: FrameDecoder,
    resampler: Resampler,
    encoder: FrameEncoder,
    pcm_in: Box<[i16]>,
    pcm_out: Box<[i16]>,
}

impl Transcoder {
    /// A chain from `from` to `to`.
    pub fn new(from: Codec, to: Codec) -> Result<Self, CodecError> {
        let decoder = FrameDecoder::new(from)?;
        let encoder = FrameEncoder::new(to)?;
        let resampler = Resampler::new(from.pcm_rate(), to.pcm_rate())?;
        Ok(Transcoder {
            from,
            to,
            decoder,
            resampler,
            encoder,
            pcm_in: vec![0; from.frame_samples()].into_boxed_slice(),
            pcm_out: vec![0; to.frame_samples()].into_boxed_slice(),
        })
    }

    /// Input codec.
    pub fn from_codec(&self) -> Codec {
        self.from
    }

    /// Output codec.
    pub fn to_codec(&self) -> Codec {
        self.to
    }

    /// Delay the chain adds (the resampler's; the codecs add their own fixed delay).
    pub fn delay_seconds(&self) -> f64 {
        self.resampler.delay_seconds()
    }

    /// Encoded bytes the next input frame holds, for fixed-rate codecs
    /// (`None` for Opus). Constant, except for L16 at a rate that is not a
    /// multiple of 50 Hz (11,025 Hz: 440 and 442 bytes in turn).
    pub fn next_input_bytes(&self) -> Option<usize> {
        match self.from {
            Codec::L16 { .. } => Some(self.resampler.input_len() * 2),
            other => other.frame_bytes(),
        }
    }

    /// Converts one 20 ms input payload into `out`; returns bytes written.
    ///
    /// A payload that decodes to fewer samples than a frame (a truncated last
    /// frame) is padded with silence.
    pub fn process(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, CodecError> {
        let len = self.resampler.input_len();
        let pcm = &mut self.pcm_in[..len];
        let n = self.decoder.decode(payload, pcm)?;
        pcm[n..].fill(0);
        self.finish(out)
    }

    /// Produces the output frame for a lost input frame (concealment).
    pub fn conceal(&mut self, out: &mut [u8]) -> Result<usize, CodecError> {
        let len = self.resampler.input_len();
        self.decoder.conceal(&mut self.pcm_in[..len])?;
        self.finish(out)
    }

    /// Feeds one frame of digital silence past the decoder (to push the
    /// resampler's delay out at the end of a stream); returns bytes written.
    pub fn flush(&mut self, out: &mut [u8]) -> Result<usize, CodecError> {
        self.pcm_in.fill(0);
        self.finish(out)
    }

    fn finish(&mut self, out: &mut [u8]) -> Result<usize, CodecError> {
        let (i, o) = (self.resampler.input_len(), self.resampler.output_len());
        self.resampler
            .process(&self.pcm_in[..i], &mut self.pcm_out[..o])?;
        self.encoder.encode(&self.pcm_out[..o], out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_frame_repeats_the_voice_instead_of_going_silent() {
        // 125 Hz voice-like tone as 8 kHz u-law, straight through to PCM16 at 8 kHz.
        let mut t = Transcoder::new(Codec::Pcmu, Codec::L16 { rate: 8000 }).expect("chain");
        let mut out = [0u8; 320];
        for f in 0..10 {
            let payload: Vec<u8> = (0..160)
                .map(|i| {
                    let x = ((f * 160 + i) as f32 * 2.0 * std::f32::consts::PI * 125.0 / 8000.0).sin();
                    crate::g711::linear_to_ulaw((x * 8000.0) as i16)
                })
                .collect();
            t.process(&payload, &mut out).expect("frame");
        }
        t.conceal(&mut out).expect("plc");
        let peak = out
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!(
            peak > 4000,
            "concealed frame peak {peak}: the loss was not concealed"
        );
    }
}
