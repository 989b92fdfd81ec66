//! `voxbridge transcode IN OUT`: file conversion in 20 ms frames.
//!
//! Reads and writes in large blocks; every frame goes through the daemon's
//! `FrameDecoder` -> `Resampler` -> `FrameEncoder` chain (`codecs::Transcoder`).
//! The resampler's constant delay is compensated (leading samples dropped,
//! a silent frame flushed at the end) so the output lines up with the input
//! and has the same duration, as ffmpeg's and sox's output does.
//!
//! Safety rules: the output is written to a temporary file beside it and
//! renamed over it only once complete, so a failed run leaves any earlier
//! output untouched; an output that is the input (the same path, another
//! spelling of it, a symlink or a hard link to it) is refused before
//! anything is opened for writing. An input that starts with a RIFF/WAVE
//! header is read as WAV whatever its extension, and the command says so;
//! one that starts with an Ogg page is read as Ogg Opus.
//!
//! Ogg Opus (`.opus`, `.ogg`) is decoded to PCM16 at 48 kHz before the
//! chain and encoded from PCM16 after it (`crate::transcode_ogg`), through
//! temporary files beside the output.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use voxbridge_codecs::{is_supported_rate, Codec, Transcoder, MAX_RATE, MIN_RATE};
use voxbridge_proto::wav::{self, WavEncoding};

/// Frames converted per read/write block (5.12 s of audio).
const BLOCK_FRAMES: usize = 256;
/// Show a progress bar for inputs longer than this many frames (10 minutes).
const PROGRESS_MIN_FRAMES: u64 = 30_000;

/// Formats on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Raw G.711 u-law, 8 kHz.
    Ulaw,
    /// Raw G.711 A-law, 8 kHz.
    Alaw,
    /// Raw G.722 (64 kbit/s), 16 kHz audio.
    G722,
    /// Raw PCM16 little-endian (rate from --from-rate/--to-rate).
    Pcm16,
    /// WAV with PCM16 samples (input: any mono PCM16/u-law/A-law WAV).
    Wav,
    /// WAV with u-law samples (output only).
    WavUlaw,
    /// WAV with A-law samples (output only).
    WavAlaw,
    /// Ogg Opus (input: mono or stereo, mixed down; output: mono, 32 kbit/s,
    /// at the input's rate when Opus takes it, else 48 kHz).
    OggOpus,
}

/// Arguments of `voxbridge transcode`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Input file.
    input: PathBuf,
    /// Output file.
    output: PathBuf,
    /// Input format (default: from the extension: .ul/.ulaw/.pcmu, .al/.alaw/.pcma, .g722, .wav, .opus/.ogg, .sln/.sln16/.raw/.pcm).
    #[arg(long)]
    from: Option<Format>,
    /// Input sample rate for raw PCM16 (Hz).
    #[arg(long)]
    from_rate: Option<u32>,
    /// Output format (default: from the extension).
    #[arg(long)]
    to: Option<Format>,
    /// Output sample rate for PCM16/WAV (Hz; default: the input's).
    #[arg(long)]
    to_rate: Option<u32>,
    /// Never draw a progress bar.
    #[arg(long)]
    quiet: bool,
}

fn format_from_ext(path: &Path) -> Option<(Format, Option<u32>)> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "ul" | "ulaw" | "mulaw" | "pcmu" | "u8" => (Format::Ulaw, None),
        "al" | "alaw" | "pcma" | "a8" => (Format::Alaw, None),
        "g722" => (Format::G722, None),
        "wav" => (Format::Wav, None),
        "opus" | "ogg" | "oga" => (Format::OggOpus, None),
        "sln" => (Format::Pcm16, Some(8000)),
        "sln12" => (Format::Pcm16, Some(12000)),
        "sln16" => (Format::Pcm16, Some(16000)),
        "sln24" => (Format::Pcm16, Some(24000)),
        "sln32" => (Format::Pcm16, Some(32000)),
        "sln44" => (Format::Pcm16, Some(44100)),
        "sln48" => (Format::Pcm16, Some(48000)),
        "raw" | "pcm" | "s16" | "s16le" => (Format::Pcm16, None),
        _ => return None,
    })
}

fn check_rate(rate: u32, what: &str) -> Result<u32> {
    if is_supported_rate(rate) {
        Ok(rate)
    } else {
        bail!("{what} rate {rate} Hz is not supported (use a rate from {MIN_RATE} to {MAX_RATE} Hz)")
    }
}

/// The resolved input: codec, where samples start, how many bytes of them.
struct Input {
    codec: Codec,
    offset: u64,
    len: u64,
}

/// Whether `file` starts with a RIFF/WAVE header (the position is restored).
fn starts_with_riff_wave(file: &mut File) -> Result<bool> {
    let mut magic = [0u8; 12];
    let n = read_full(file, &mut magic).context("reading input")?;
    file.seek(SeekFrom::Start(0)).context("seeking input")?;
    Ok(n == 12 && &magic[..4] == b"RIFF" && &magic[8..] == b"WAVE")
}

fn open_input(args: &Args, file: &mut File) -> Result<Input> {
    let file_len = file.metadata().context("reading input size")?.len();
    let ext = format_from_ext(&args.input);
    let declared = args.from.or(ext.map(|e| e.0));
    let fmt = if starts_with_riff_wave(file)? {
        if !matches!(declared, Some(Format::Wav | Format::WavUlaw | Format::WavAlaw)) {
            eprintln!(
                "note: {} has a RIFF/WAVE header: reading it as WAV, not as {}",
                args.input.display(),
                declared.map_or("an unknown format".to_owned(), |f| format!("{f:?}")
                    .to_lowercase())
            );
        }
        Format::Wav
    } else {
        declared.with_context(|| {
            format!(
                "cannot tell the format of {} from its extension; pass --from",
                args.input.display()
            )
        })?
    };
    let raw = |codec: Codec| Input {
        codec,
        offset: 0,
        len: file_len,
    };
    let input = match fmt {
        Format::OggOpus => bail!("an Ogg Opus input is decoded before this (a bug)"),
        Format::Ulaw => raw(Codec::Pcmu),
        Format::Alaw => raw(Codec::Pcma),
        Format::G722 => raw(Codec::G722),
        Format::Pcm16 => {
            let rate = args
                .from_rate
                .or(ext.and_then(|e| e.1))
                .context("raw PCM16 input needs --from-rate")?;
            raw(Codec::L16 {
                rate: check_rate(rate, "input")?,
            })
        }
        Format::Wav | Format::WavUlaw | Format::WavAlaw => {
            let mut head = vec![0u8; 4096.min(file_len as usize)];
            file.read_exact(&mut head).context("reading WAV header")?;
            let h = match wav::parse_header(&head) {
                Err(voxbridge_proto::ProtoError::Incomplete { needed }) => {
                    bail!("truncated WAV header: needs {needed} bytes, file has {file_len}")
                }
                other => other.context("parsing WAV header")?,
            };
            let rate = check_rate(h.rate, "input")?;
            let codec = match h.encoding {
                WavEncoding::Pcm16 => Codec::L16 { rate },
                WavEncoding::Ulaw | WavEncoding::Alaw if rate != 8000 => {
                    bail!("G.711 WAV at {rate} Hz: G.711 is 8000 Hz only")
                }
                WavEncoding::Ulaw => Codec::Pcmu,
                WavEncoding::Alaw => Codec::Pcma,
            };
            let available = file_len - h.data_offset as u64;
            let len = match h.data_len {
                Some(n) if n as u64 > available => {
                    bail!("truncated WAV: header says {n} data bytes, file has {available}")
                }
                Some(n) => n as u64,
                None => available,
            };
            Input {
                codec,
                offset: h.data_offset as u64,
                len,
            }
        }
    };
    if matches!(input.codec, Codec::L16 { .. }) && input.len % 2 != 0 {
        bail!("odd byte count {} in PCM16 input: samples are 2 bytes", input.len);
    }
    Ok(input)
}

fn output_codec(args: &Args, input: Codec) -> Result<(Codec, Option<WavEncoding>)> {
    let fmt = args
        .to
        .or(format_from_ext(&args.output).map(|e| e.0))
        .with_context(|| {
            format!(
                "cannot tell the format of {} from its extension; pass --to",
                args.output.display()
            )
        })?;
    let fixed = |codec: Codec, wav: Option<WavEncoding>| -> Result<(Codec, Option<WavEncoding>)> {
        if let Some(r) = args.to_rate {
            if r != codec.pcm_rate() {
                bail!(
                    "--to-rate {r}: this output format is {} Hz only",
                    codec.pcm_rate()
                );
            }
        }
        Ok((codec, wav))
    };
    let ext_rate = format_from_ext(&args.output).and_then(|e| e.1);
    match fmt {
        Format::OggOpus => bail!("an Ogg Opus output is encoded after this (a bug)"),
        Format::Ulaw => fixed(Codec::Pcmu, None),
        Format::Alaw => fixed(Codec::Pcma, None),
        Format::G722 => fixed(Codec::G722, None),
        Format::WavUlaw => fixed(Codec::Pcmu, Some(WavEncoding::Ulaw)),
        Format::WavAlaw => fixed(Codec::Pcma, Some(WavEncoding::Alaw)),
        Format::Pcm16 | Format::Wav => {
            let rate = check_rate(args.to_rate.or(ext_rate).unwrap_or(input.pcm_rate()), "output")?;
            let wav = (fmt == Format::Wav).then_some(WavEncoding::Pcm16);
            Ok((Codec::L16 { rate }, wav))
        }
    }
}

/// Bytes one PCM sample takes in the encoded output, as (numerator, denominator).
fn bytes_per_sample(codec: Codec) -> (u64, u64) {
    match codec {
        Codec::Pcmu | Codec::Pcma => (1, 1),
        Codec::G722 => (1, 2),
        _ => (2, 1),
    }
}

/// Refuses an output that is the input under another name: the same file
/// (device and inode, so symlinks, hard links and other spellings of the
/// path are caught), or, when the output does not exist yet, the same
/// canonical path.
fn refuse_same_file(input: &Path, output: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let same = match (std::fs::metadata(input), std::fs::metadata(output)) {
        (Ok(i), Ok(o)) => i.dev() == o.dev() && i.ino() == o.ino(),
        _ => match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
            (Ok(i), Ok(o)) => i == o,
            _ => false,
        },
    };
    if same {
        bail!(
            "the output {} is the input {}: refusing to overwrite it (write to another file)",
            output.display(),
            input.display()
        );
    }
    Ok(())
}

/// A temporary file beside `output` (same directory, so the final rename
/// is atomic), removed on drop unless kept.
struct TempOutput {
    path: PathBuf,
    kept: bool,
}

impl TempOutput {
    fn create(output: &Path) -> Result<(TempOutput, File)> {
        let path = beside(output, "tmp")?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok((TempOutput { path, kept: false }, file))
    }

    /// Renames the finished file over `output`.
    fn commit(mut self, output: &Path) -> Result<()> {
        std::fs::rename(&self.path, output)
            .with_context(|| format!("renaming {} to {}", self.path.display(), output.display()))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A hidden path beside `output` (same directory, so a rename is atomic):
/// `.<name>.voxbridge-<pid>.<tag>`.
fn beside(output: &Path, tag: &str) -> Result<PathBuf> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .with_context(|| format!("{} names no file", output.display()))?
        .to_string_lossy();
    Ok(dir.join(format!(".{name}.voxbridge-{}.{tag}", std::process::id())))
}

/// A temporary path beside `output` for an intermediate file, removed on drop.
fn intermediate(output: &Path, tag: &str) -> Result<TempOutput> {
    Ok(TempOutput {
        path: beside(output, tag)?,
        kept: false,
    })
}

/// Runs the conversion.
pub fn run(args: Args) -> Result<()> {
    use crate::transcode_ogg::{decode, encode, is_opus_rate, starts_with_ogg};
    refuse_same_file(&args.input, &args.output)?;
    let in_ogg = starts_with_ogg(&args.input)?;
    let declared = args.from.or(format_from_ext(&args.input).map(|e| e.0));
    if !in_ogg && declared == Some(Format::OggOpus) {
        bail!(
            "{} does not start with an Ogg page: not Ogg Opus",
            args.input.display()
        );
    }
    let out_ogg = args.to.or(format_from_ext(&args.output).map(|e| e.0)) == Some(Format::OggOpus);
    if !in_ogg && !out_ogg {
        return run_frames(args);
    }
    // An Ogg Opus input becomes PCM16 at 48 kHz first.
    let decoded = if in_ogg {
        let temp = intermediate(&args.output, "decoded")?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.path)
            .with_context(|| format!("creating {}", temp.path.display()))?;
        decode(&args.input, f, 48000)?;
        Some(temp)
    } else {
        None
    };
    let (source, from, from_rate) = match &decoded {
        Some(t) => (t.path.clone(), Some(Format::Pcm16), Some(48000)),
        None => (args.input.clone(), args.from, args.from_rate),
    };
    if !out_ogg {
        return run_frames(Args {
            input: source,
            from,
            from_rate,
            ..args
        });
    }
    // An Ogg Opus output is encoded from PCM16 at a rate Opus takes.
    let in_rate = match &decoded {
        Some(_) => 48000,
        None => {
            let probe = Args {
                input: args.input.clone(),
                output: args.output.clone(),
                from: args.from,
                from_rate: args.from_rate,
                to: None,
                to_rate: None,
                quiet: true,
            };
            let mut file =
                File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
            open_input(&probe, &mut file)?.codec.pcm_rate()
        }
    };
    let rate = match args.to_rate {
        Some(r) if is_opus_rate(r) => r,
        Some(r) => bail!("--to-rate {r}: Opus takes 8000, 12000, 16000, 24000 or 48000 Hz"),
        None if is_opus_rate(in_rate) => in_rate,
        None => 48000,
    };
    // What the encoder reads: the decoded input as it is, or the frame
    // chain's output at `rate` (each removed when done).
    let converted;
    let pcm: &Path = match &decoded {
        Some(t) if rate == 48000 => &t.path,
        _ => {
            converted = intermediate(&args.output, "pcm")?;
            run_frames(Args {
                input: source,
                output: converted.path.clone(),
                from,
                from_rate,
                to: Some(Format::Pcm16),
                to_rate: Some(rate),
                quiet: args.quiet,
            })?;
            &converted.path
        }
    };
    let (temp, out_file) = TempOutput::create(&args.output)?;
    encode(pcm, rate, out_file)?;
    temp.commit(&args.output)
}

/// The conversion of formats with fixed frames (all but Ogg Opus).
fn run_frames(args: Args) -> Result<()> {
    refuse_same_file(&args.input, &args.output)?;
    let mut file = File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let input = open_input(&args, &mut file)?;
    let (out_codec, out_wav) = output_codec(&args, input.codec)?;
    let mut chain = Transcoder::new(input.codec, out_codec).context("setting up the conversion")?;

    // Frames are 20 ms; for L16 at 11,025 Hz their byte counts alternate, so
    // the longest and shortest bound the buffers and the chain says each one.
    let in_frame = input
        .codec
        .frame_bytes()
        .context("input codec has no fixed frame size")?;
    let in_frame_min = match input.codec {
        Codec::L16 { rate } => voxbridge_codecs::frame_len(rate) * 2,
        _ => in_frame,
    };
    let out_frame = out_codec
        .frame_bytes()
        .context("output codec has no fixed frame size")?;
    let in_bps = bytes_per_sample(input.codec);
    let out_bps = bytes_per_sample(out_codec);
    let in_samples = input.len * in_bps.1 / in_bps.0;
    let out_samples = in_samples * out_codec.pcm_rate() as u64 / input.codec.pcm_rate() as u64;
    let out_total = out_samples * out_bps.0 / out_bps.1;
    // Leading output to drop: the resampler's delay, rounded to whole encoded bytes.
    let delay_samples = (chain.delay_seconds() * out_codec.pcm_rate() as f64).round() as u64;
    let skip = delay_samples * out_bps.0 / out_bps.1;

    file.seek(SeekFrom::Start(input.offset))
        .context("seeking to audio data")?;
    let mut reader = file.take(input.len);
    let (temp, out_file) = TempOutput::create(&args.output)?;
    convert(
        &args,
        &mut chain,
        &mut reader,
        out_file,
        out_wav,
        Plan {
            in_frame,
            in_frame_min,
            out_frame,
            frames: input.len.div_ceil(in_frame_min as u64),
            skip,
            out_total,
        },
    )?;
    // Only a complete output replaces what was there (a failed run leaves
    // no half-written file: the temporary one is removed on drop).
    temp.commit(&args.output)
}

/// Sizes of one conversion, worked out before any sample moves.
struct Plan {
    /// Bytes of the longest and the shortest input frame.
    in_frame: usize,
    in_frame_min: usize,
    /// Bytes of the longest output frame.
    out_frame: usize,
    frames: u64,
    /// Leading output bytes to drop (the resampler's delay).
    skip: u64,
    /// Output bytes to write in all.
    out_total: u64,
}

fn convert(
    args: &Args,
    chain: &mut Transcoder,
    reader: &mut impl Read,
    out_file: File,
    out_wav: Option<WavEncoding>,
    plan: Plan,
) -> Result<()> {
    let Plan {
        in_frame,
        in_frame_min,
        out_frame,
        frames,
        mut skip,
        mut out_total,
    } = plan;
    let out_codec = chain.to_codec();
    let mut writer = BufWriter::with_capacity(1 << 20, out_file);
    if let Some(enc) = out_wav {
        let len = u32::try_from(out_total).context("output too long for a WAV file (over 4 GiB)")?;
        writer.write_all(&wav::write_header(enc, out_codec.pcm_rate(), len))?;
    }

    let bar = if !args.quiet && frames >= PROGRESS_MIN_FRAMES {
        let b = ProgressBar::new(frames);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {percent:>3}% {pos}/{len} frames, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };

    // Frames of silence that push the resampler's delay out after the last input frame.
    let flush_frames = (skip as usize).div_ceil(out_frame) + 1;
    let mut in_buf = vec![0u8; in_frame * BLOCK_FRAMES];
    // Frames one block can hold (more than BLOCK_FRAMES when lengths vary).
    let block_frames = in_buf.len().div_ceil(in_frame_min);
    let mut out_buf = vec![0u8; out_frame * (block_frames + flush_frames)];
    // Input bytes carried over from the last block (less than one frame).
    let mut held = 0;
    let mut done = false;
    while !done {
        let got = read_full(reader, &mut in_buf[held..]).context("reading input")?;
        let avail = held + got;
        // A short read is the end of the input; a partial last frame is
        // decoded as it is and padded with silence by the chain.
        done = avail < in_buf.len();
        let mut at = 0;
        let mut produced = 0;
        let mut frames_now = 0;
        while at < avail {
            let want = chain.next_input_bytes().unwrap_or(in_frame);
            if avail - at < want && !done {
                break;
            }
            let take = want.min(avail - at);
            produced += chain
                .process(&in_buf[at..at + take], &mut out_buf[produced..])
                .context("converting a frame")?;
            at += take;
            frames_now += 1;
        }
        in_buf.copy_within(at..avail, 0);
        held = avail - at;
        if done {
            for _ in 0..flush_frames {
                produced += chain.flush(&mut out_buf[produced..]).context("flushing")?;
            }
        }
        let mut slice = &out_buf[..produced];
        let drop = (skip as usize).min(slice.len());
        slice = &slice[drop..];
        skip -= drop as u64;
        let keep = (out_total as usize).min(slice.len());
        writer.write_all(&slice[..keep]).context("writing output")?;
        out_total -= keep as u64;
        if let Some(b) = &bar {
            b.inc(frames_now as u64);
        }
    }
    writer.flush().context("writing output")?;
    writer.get_ref().sync_all().context("writing output to disk")?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
