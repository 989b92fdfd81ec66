//! A recording's file format, sans-IO: the stereo stream of
//! [`crate::sansio::stereo`] (interleaved little-endian PCM16) in, the
//! bytes of the file out.
//!
//! WAV is the samples behind a 44-byte header whose lengths the writer
//! patches at the end (they say "to the end of the file" meanwhile). Ogg
//! Opus (RFC 7845) encodes each 20 ms of stereo with libopus (48 kbit/s,
//! complexity 5: about a twelfth of WAV's size at 16 kHz) and pages it
//! through `voxbridge_proto::ogg_opus`; its pages reach the file at least
//! once a second, and its end trims the last frame's padding, so a player
//! plays exactly the recorded length.

use voxbridge_codecs::opus::{OpusEncoder, OpusSettings, MAX_PACKET};
use voxbridge_proto::ogg_opus::{OggOpusWriter, OpusHead, GRANULE_RATE};
use voxbridge_proto::wav::{write_header_channels, WavEncoding};

/// The format of a recording's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingFormat {
    /// Stereo PCM16 WAV (`.wav`).
    #[default]
    Wav,
    /// Stereo Ogg Opus (`.opus`).
    Ogg,
}

impl RecordingFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            RecordingFormat::Wav => "wav",
            RecordingFormat::Ogg => "opus",
        }
    }
}

/// Bytes of a WAV header.
pub const WAV_HEADER: u64 = 44;

/// Turns a stereo stream into a file's bytes (see the module docs).
pub enum FileEncoder {
    /// WAV: samples as they are.
    Wav,
    /// Ogg Opus.
    Ogg(Box<OggEncoder>),
}

impl std::fmt::Debug for FileEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileEncoder::Wav => "FileEncoder::Wav",
            FileEncoder::Ogg(_) => "FileEncoder::Ogg",
        })
    }
}

/// The Ogg Opus state: the encoder, the pager, and the samples of the
/// frame being gathered.
pub struct OggEncoder {
    encoder: OpusEncoder,
    pages: OggOpusWriter,
    rate: u32,
    pre_skip: u64,
    /// Stereo frames taken (per channel samples at `rate`).
    taken: u64,
    pending: Vec<i16>,
    packet: Vec<u8>,
}

impl FileEncoder {
    /// An encoder of `format` at `rate` Hz, and the file's first bytes
    /// (the WAV header, or Ogg Opus's two header pages). `serial` names the
    /// Ogg stream. Fails only for a rate Opus does not take (the bot rates
    /// all are).
    pub fn new(format: RecordingFormat, rate: u32, serial: u32) -> Result<(Self, Vec<u8>), String> {
        match format {
            RecordingFormat::Wav => Ok((
                FileEncoder::Wav,
                write_header_channels(WavEncoding::Pcm16, rate, 2, u32::MAX).to_vec(),
            )),
            RecordingFormat::Ogg => {
                let settings = OpusSettings {
                    rate,
                    bitrate: Some(48_000),
                    complexity: 5,
                    fec: false,
                    expected_loss_percent: 0,
                };
                let mut encoder = OpusEncoder::with_channels(settings, true).map_err(|e| e.to_string())?;
                let lookahead = encoder.lookahead().map_err(|e| e.to_string())?;
                let head = OpusHead {
                    channels: 2,
                    pre_skip: u16::try_from(u64::from(lookahead) * u64::from(GRANULE_RATE) / u64::from(rate))
                        .unwrap_or(u16::MAX),
                    input_rate: rate,
                    gain: 0,
                };
                let pre_skip = u64::from(head.pre_skip);
                let mut pages = OggOpusWriter::new(head, "voxbridge", serial).map_err(|e| e.to_string())?;
                let first = pages.take();
                let frame = encoder.frame_len() * 2;
                Ok((
                    FileEncoder::Ogg(Box::new(OggEncoder {
                        encoder,
                        pages,
                        rate,
                        pre_skip,
                        taken: 0,
                        pending: Vec::with_capacity(frame),
                        packet: vec![0; MAX_PACKET],
                    })),
                    first,
                ))
            }
        }
    }

    /// Interleaved little-endian stereo in, the file's next bytes appended
    /// to `out`.
    pub fn audio(&mut self, le: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            FileEncoder::Wav => {
                out.extend_from_slice(le);
                Ok(())
            }
            FileEncoder::Ogg(o) => {
                let frame = o.encoder.frame_len() * 2;
                o.taken += (le.len() / 4) as u64;
                for s in le.chunks_exact(2) {
                    o.pending.push(i16::from_le_bytes([s[0], s[1]]));
                    if o.pending.len() == frame {
                        o.encode()?;
                    }
                }
                o.pages.drain_into(out);
                Ok(())
            }
        }
    }

    /// The end of the stream: the last bytes appended to `out` (Ogg Opus:
    /// silence encoded until the packets cover the pre-skip and all that
    /// was taken, and a last granule that trims them to it).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            FileEncoder::Wav => Ok(()),
            FileEncoder::Ogg(o) => {
                let frame = o.encoder.frame_len() * 2;
                let length_48k = o.taken * u64::from(GRANULE_RATE) / u64::from(o.rate);
                while !o.pending.is_empty() || o.pages.pushed() < o.pre_skip + length_48k {
                    o.pending.resize(frame, 0);
                    o.encode()?;
                }
                o.pages.finish(length_48k).map_err(|e| e.to_string())?;
                o.pages.drain_into(out);
                Ok(())
            }
        }
    }
}

impl OggEncoder {
    fn encode(&mut self) -> Result<(), String> {
        let n = self
            .encoder
            .encode(&self.pending, &mut self.packet)
            .map_err(|e| e.to_string())?;
        self.pending.clear();
        // 20 ms at 48 kHz.
        self.pages
            .push(&self.packet[..n], u64::from(GRANULE_RATE) / 50)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxbridge_codecs::opus::OpusDecoder;
    use voxbridge_proto::ogg_opus::OggOpusReader;

    #[test]
    fn wav_is_the_header_and_the_samples() {
        let (mut e, head) = FileEncoder::new(RecordingFormat::Wav, 16000, 1).expect("wav");
        assert_eq!(head.len() as u64, WAV_HEADER);
        let mut out = Vec::new();
        e.audio(&[1, 2, 3, 4], &mut out).expect("audio");
        e.finish(&mut out).expect("finish");
        assert_eq!(out, [1, 2, 3, 4]);
    }

    #[test]
    fn ogg_opus_decodes_to_the_recorded_length_and_tone() {
        let (mut e, mut file) = FileEncoder::new(RecordingFormat::Ogg, 16000, 9).expect("ogg");
        // 1.01 s of a 500 Hz tone on the left, silence on the right.
        let n = 16160;
        let mut le = Vec::new();
        for i in 0..n {
            let l = (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 16000.0).sin()) as i16;
            le.extend_from_slice(&l.to_le_bytes());
            le.extend_from_slice(&0i16.to_le_bytes());
        }
        e.audio(&le, &mut file).expect("audio");
        e.finish(&mut file).expect("finish");
        let mut r = OggOpusReader::new(std::io::Cursor::new(file)).expect("ogg opus");
        let head = r.head();
        assert_eq!((head.channels, head.input_rate), (2, 16000));
        let mut dec = OpusDecoder::new(48000).expect("decoder");
        let mut pcm = vec![0i16; 960];
        let (mut decoded, mut last_granule) = (0u64, 0);
        while let Some(p) = r.next_packet().expect("packet") {
            decoded += dec.decode(&p.data, &mut pcm).expect("decodes") as u64;
            last_granule = p.granule;
        }
        let pre_skip = u64::from(head.pre_skip);
        assert!(
            decoded >= pre_skip + n * 3,
            "{decoded} samples cover the pre-skip and the input"
        );
        assert_eq!(last_granule - pre_skip, n * 3, "the end is trimmed to the input");
    }
}
