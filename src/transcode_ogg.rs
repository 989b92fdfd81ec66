//! Ogg Opus for `voxbridge transcode`: decoding a file to raw PCM16 and
//! encoding raw PCM16 to a file, on either side of the frame chain.
//!
//! Decoding plays the stream as a player does: the pre-skip is dropped,
//! the last page's granule position trims the end, and a stereo stream is
//! mixed down to mono by libopus (telephony audio is mono). Encoding writes
//! mono Opus in 20 ms packets at 32 kbit/s with a pre-skip of the
//! encoder's look-ahead and an end trimmed to the input's length, so
//! ffmpeg and opusdec play back exactly the input's duration.

use crate::transcode::read_full;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use voxbridge_codecs::frame::{read_le, write_le};
use voxbridge_codecs::opus::{OpusDecoder, OpusEncoder, OpusSettings, MAX_PACKET};
use voxbridge_proto::ogg_opus::{OggOpusReader, OggOpusWriter, OpusHead, GRANULE_RATE};

/// The rates an Opus encoder takes and a decoder gives.
pub fn is_opus_rate(rate: u32) -> bool {
    matches!(rate, 8000 | 12000 | 16000 | 24000 | 48000)
}

/// Whether `file` starts with an Ogg page (`OggS`).
pub fn starts_with_ogg(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = read_full(&mut f, &mut magic).context("reading input")?;
    Ok(n == 4 && &magic == b"OggS")
}

/// Decodes the Ogg Opus file `input` to raw PCM16 at `rate` Hz in `out`;
/// returns the samples written.
pub fn decode(input: &Path, out: File, rate: u32) -> Result<u64> {
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut reader = OggOpusReader::new(BufReader::new(file))
        .with_context(|| format!("{} is not an Ogg Opus file voxbridge reads", input.display()))?;
    let head = reader.head();
    let mut decoder = OpusDecoder::new(rate).context("setting up the Opus decoder")?;
    let to_rate = |samples_48k: u64| samples_48k * u64::from(rate) / u64::from(GRANULE_RATE);
    let mut skip = to_rate(u64::from(head.pre_skip));
    // At most 120 ms a packet.
    let mut pcm = vec![0i16; rate as usize * 120 / 1000];
    let mut bytes = vec![0u8; pcm.len() * 2];
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let (mut written, mut index) = (0u64, 0u64);
    let mut end: Option<u64> = None;
    while let Some(packet) = reader
        .next_packet()
        .with_context(|| format!("{}: after packet {index}", input.display()))?
    {
        index += 1;
        let n = decoder
            .decode(&packet.data, &mut pcm)
            .with_context(|| format!("{}: packet {index} does not decode", input.display()))?;
        if packet.last {
            // The stream's length is its last granule past the pre-skip.
            end = Some(to_rate(packet.granule.saturating_sub(u64::from(head.pre_skip))));
        }
        let drop = (skip as usize).min(n);
        skip -= drop as u64;
        let mut keep = &pcm[drop..n];
        if let Some(end) = end {
            let room = end.saturating_sub(written) as usize;
            keep = &keep[..keep.len().min(room)];
        }
        let n = write_le(keep, &mut bytes);
        writer.write_all(&bytes[..n]).context("writing decoded audio")?;
        written += keep.len() as u64;
    }
    if index == 0 {
        bail!("{} holds no Opus audio", input.display());
    }
    writer.flush().context("writing decoded audio")?;
    Ok(written)
}

/// Encodes raw mono PCM16 at `rate` Hz from `input` into the Ogg Opus file
/// `out`.
pub fn encode(input: &Path, rate: u32, out: File) -> Result<()> {
    let settings = OpusSettings {
        rate,
        bitrate: Some(32_000),
        complexity: 10,
        fec: false,
        expected_loss_percent: 0,
    };
    let mut encoder = OpusEncoder::new(settings).context("setting up the Opus encoder")?;
    let lookahead = encoder.lookahead().context("the encoder's look-ahead")?;
    let head = OpusHead {
        channels: 1,
        pre_skip: u16::try_from(u64::from(lookahead) * u64::from(GRANULE_RATE) / u64::from(rate))
            .context("pre-skip")?,
        input_rate: rate,
        gain: 0,
    };
    let serial = std::process::id();
    let mut pages = OggOpusWriter::new(head, "voxbridge", serial).context("Ogg headers")?;
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let mut reader =
        BufReader::new(File::open(input).with_context(|| format!("opening {}", input.display()))?);
    let frame = encoder.frame_len();
    let mut raw = vec![0u8; frame * 2];
    let mut pcm = vec![0i16; frame];
    let mut packet = vec![0u8; MAX_PACKET];
    let mut taken = 0u64;
    loop {
        let got = read_full(&mut reader, &mut raw).context("reading audio")?;
        if got == 0 {
            break;
        }
        let samples = read_le(&raw[..got], &mut pcm);
        pcm[samples..].fill(0);
        taken += samples as u64;
        let n = encoder.encode(&pcm, &mut packet).context("encoding a frame")?;
        pages
            .push(&packet[..n], u64::from(GRANULE_RATE) / 50)
            .context("paging")?;
        writer.write_all(&pages.take()).context("writing output")?;
        if samples < frame {
            break;
        }
    }
    // The look-ahead delays the encoder's output by the pre-skip: silence
    // until the packets cover it and the input, the end trimmed to the input.
    let length_48k = taken * u64::from(GRANULE_RATE) / u64::from(rate);
    pcm.fill(0);
    while pages.pushed() < u64::from(head.pre_skip) + length_48k {
        let n = encoder.encode(&pcm, &mut packet).context("encoding a frame")?;
        pages
            .push(&packet[..n], u64::from(GRANULE_RATE) / 50)
            .context("paging")?;
    }
    pages.finish(length_48k).context("ending the stream")?;
    writer.write_all(&pages.take()).context("writing output")?;
    writer.flush().context("writing output")?;
    writer.get_ref().sync_all().context("writing output to disk")?;
    Ok(())
}
