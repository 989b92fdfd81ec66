//! `voxbridge transcode` end to end: conversions checked against FFmpeg, and
//! bad input answered with one clear line and a non-zero exit, never a panic.

mod common;

use common::{correlation, ffmpeg, read_pcm, run, snr_db, speech, tempdir, write_pcm};
use std::path::Path;
use std::process::Command;

fn voxbridge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_voxbridge"))
        .args(args)
        .output()
        .expect("run voxbridge")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn ulaw_to_16k_matches_ffmpeg_and_keeps_length_and_alignment() {
    let dir = tempdir("tc-up");
    let raw8 = speech(&dir, 8000);
    let ul = dir.join("in.ul");
    ffmpeg(&format!(
        "-f s16le -ar 8000 -ac 1 -i {} -f mulaw {}",
        s(&raw8),
        s(&ul)
    ));
    let ours = dir.join("out.sln16");
    let out = voxbridge(&["transcode", "--quiet", s(&ul), s(&ours)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs = dir.join("ff.raw");
    ffmpeg(&format!(
        "-f mulaw -ar 8000 -ac 1 -i {} -ar 16000 -f s16le {}",
        s(&ul),
        s(&theirs)
    ));
    let (a, b) = (read_pcm(&ours), read_pcm(&theirs));
    let ul_len = std::fs::metadata(&ul).expect("size").len() as usize;
    assert_eq!(
        a.len(),
        ul_len * 2,
        "output must be exactly twice as many samples"
    );
    // Same timing as FFmpeg (delay compensated) and close in value; the rest is
    // the different passband edge (ours is flat to 3.4 kHz and rolls off to 4).
    let snr = snr_db(&b, &a, 0);
    println!("u-law 8k -> PCM16 16k vs FFmpeg: SNR {snr:.1} dB");
    assert!(snr > 35.0, "SNR vs FFmpeg {snr:.1} dB");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wav_in_g722_out_decodes_in_ffmpeg_and_wav_out_parses() {
    let dir = tempdir("tc-g722");
    let raw16 = speech(&dir, 16000);
    let wav = dir.join("in.wav");
    ffmpeg(&format!("-f s16le -ar 16000 -ac 1 -i {} {}", s(&raw16), s(&wav)));
    let g722 = dir.join("out.g722");
    let out = voxbridge(&["transcode", "--quiet", s(&wav), s(&g722)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dec = dir.join("dec.raw");
    ffmpeg(&format!("-f g722 -i {} -f s16le {}", s(&g722), s(&dec)));
    let back = read_pcm(&dec);
    let input = read_pcm(&raw16);
    let snr = snr_db(&input, &back[22..], 0);
    assert!(
        snr > 20.0,
        "G.722 via transcode, decoded by FFmpeg: SNR {snr:.1} dB"
    );

    // And back to a 48 kHz WAV that FFmpeg reads with the right rate and length.
    let wav48 = dir.join("out48.wav");
    let out = voxbridge(&["transcode", "--quiet", "--to-rate", "48000", s(&g722), s(&wav48)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=sample_rate,channels,duration_ts",
            "-of",
            "csv=p=0",
            s(&wav48),
        ],
    );
    let text = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    let expect = format!(
        "48000,1,{}",
        std::fs::metadata(&g722).expect("size").len() * 2 * 3
    );
    assert_eq!(text, expect);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rule: any rate from 8 to 48 kHz converts, the rates TTS engines speak at
/// included: espeak-ng's own 22,050 Hz WAV and 11,025 Hz (220.5 samples per
/// 20 ms), in and out, at the exact length and close to FFmpeg's result.
#[test]
fn tts_rates_22050_and_11025_convert_like_ffmpeg_at_exact_length() {
    let dir = tempdir("tc-tts");
    let raw16 = speech(&dir, 16000); // also leaves espeak-ng's own espeak.wav
    let tts = dir.join("espeak.wav");
    let probe_rate = |f: &Path| {
        let out = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "stream=sample_rate,duration_ts",
                "-of",
                "csv=p=0",
                s(f),
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(
        probe_rate(&tts).starts_with("22050,"),
        "espeak-ng speaks at 22,050 Hz"
    );
    let tts11 = dir.join("tts11.wav");
    ffmpeg(&format!("-i {} -ar 11025 {}", s(&tts), s(&tts11)));

    for (input, rate, to) in [
        (&tts, 22050u64, 8000u64),
        (&tts, 22050, 16000),
        (&tts11, 11025, 8000),
        (&tts11, 11025, 16000),
    ] {
        let in_samples: u64 = probe_rate(input)
            .split(',')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("ffprobe gives the sample count");
        let ours = dir.join(format!("ours_{rate}_{to}.raw"));
        let out = voxbridge(&[
            "transcode",
            "--quiet",
            "--to",
            "pcm16",
            "--to-rate",
            &to.to_string(),
            s(input),
            s(&ours),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let theirs = dir.join(format!("ff_{rate}_{to}.raw"));
        ffmpeg(&format!("-i {} -ar {to} -f s16le {}", s(input), s(&theirs)));
        let (a, b) = (read_pcm(&ours), read_pcm(&theirs));
        assert_eq!(
            a.len() as u64,
            in_samples * to / rate,
            "{rate} -> {to}: exact length"
        );
        let snr = snr_db(&b, &a, 0);
        println!("{rate} -> {to} Hz vs FFmpeg: SNR {snr:.1} dB");
        assert!(snr > 30.0, "{rate} -> {to} Hz vs FFmpeg: SNR {snr:.1} dB");
    }

    // And out at 11,025 Hz: a WAV FFmpeg reads at that rate and length.
    let wav11 = dir.join("out11.wav");
    let out = voxbridge(&[
        "transcode",
        "--quiet",
        "--from-rate",
        "16000",
        "--to-rate",
        "11025",
        s(&raw16),
        s(&wav11),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n16 = std::fs::metadata(&raw16).expect("size").len() / 2;
    assert_eq!(probe_rate(&wav11), format!("11025,{}", n16 * 11025 / 16000));
    let theirs = dir.join("ff11.raw");
    ffmpeg(&format!(
        "-f s16le -ar 16000 -ac 1 -i {} -ar 11025 -f s16le {}",
        s(&raw16),
        s(&theirs)
    ));
    let back = dir.join("ours11.raw");
    ffmpeg(&format!("-i {} -f s16le {}", s(&wav11), s(&back)));
    let snr = snr_db(&read_pcm(&theirs), &read_pcm(&back), 0);
    println!("16000 -> 11025 Hz vs FFmpeg: SNR {snr:.1} dB");
    assert!(snr > 30.0, "16000 -> 11025 Hz vs FFmpeg: SNR {snr:.1} dB");
    let _ = std::fs::remove_dir_all(&dir);
}

fn fails_cleanly(args: &[&str], expect: &str) {
    let out = voxbridge(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(err.contains(expect), "{args:?}: stderr {err:?} lacks {expect:?}");
}

#[test]
fn bad_input_gets_one_clear_line_and_a_nonzero_exit() {
    let dir = tempdir("tc-bad");
    let p = |n: &str| dir.join(n).to_str().expect("utf-8").to_string();
    // Truncated WAV: header claims more data than the file has.
    let mut wav =
        voxbridge_proto::wav::write_header(voxbridge_proto::wav::WavEncoding::Pcm16, 8000, 64000).to_vec();
    wav.extend_from_slice(&[0u8; 100]);
    std::fs::write(p("trunc.wav"), &wav).expect("write");
    fails_cleanly(&["transcode", &p("trunc.wav"), &p("o.ul")], "truncated WAV");
    // A header cut short.
    std::fs::write(p("short.wav"), &wav[..30]).expect("write");
    fails_cleanly(
        &["transcode", &p("short.wav"), &p("o.ul")],
        "truncated WAV header",
    );
    // Not a WAV at all.
    std::fs::write(p("junk.wav"), b"this is not a wav file, just text").expect("write");
    fails_cleanly(&["transcode", &p("junk.wav"), &p("o.ul")], "not a WAV file");
    // Odd byte count in PCM16.
    std::fs::write(p("odd.sln"), [0u8; 321]).expect("write");
    fails_cleanly(&["transcode", &p("odd.sln"), &p("o.ul")], "odd byte count");
    // Wrong format flag.
    fails_cleanly(
        &["transcode", "--from", "mp3", &p("odd.sln"), &p("o.ul")],
        "invalid value 'mp3'",
    );
    // Unknown extension without a flag.
    std::fs::write(p("odd.xyz"), [0u8; 4]).expect("write");
    fails_cleanly(&["transcode", &p("odd.xyz"), &p("o.ul")], "pass --from");
    // Rates out of range, and a ratio too fine to build a filter for.
    write_pcm(&dir.join("a.raw"), &[0; 320]);
    fails_cleanly(
        &["transcode", "--from-rate", "7000", &p("a.raw"), &p("o.ul")],
        "7000 Hz is not supported",
    );
    fails_cleanly(
        &["transcode", "--from-rate", "96000", &p("a.raw"), &p("o.ul")],
        "96000 Hz is not supported",
    );
    fails_cleanly(
        &["transcode", "--from-rate", "8001", &p("a.raw"), &p("o.ul")],
        "needs 8000 filter phases",
    );
    // Raw PCM without a rate.
    fails_cleanly(&["transcode", &p("a.raw"), &p("o.ul")], "needs --from-rate");
    // u-law output at another rate.
    fails_cleanly(
        &[
            "transcode",
            "--from-rate",
            "8000",
            "--to-rate",
            "16000",
            &p("a.raw"),
            &p("o.ul"),
        ],
        "8000 Hz only",
    );
    // Missing input file.
    fails_cleanly(&["transcode", &p("missing.ul"), &p("o.sln")], "opening");
    // Stereo WAV.
    let mut stereo =
        voxbridge_proto::wav::write_header(voxbridge_proto::wav::WavEncoding::Pcm16, 8000, 4).to_vec();
    stereo[22] = 2;
    stereo.extend_from_slice(&[0u8; 4]);
    std::fs::write(p("stereo.wav"), &stereo).expect("write");
    fails_cleanly(&["transcode", &p("stereo.wav"), &p("o.ul")], "2 channels");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn odd_lengths_are_padded_to_whole_frames_and_trimmed_back() {
    let dir = tempdir("tc-odd");
    let ul = dir.join("in.ul");
    std::fs::write(&ul, vec![0xFFu8; 1234]).expect("write");
    let out = dir.join("out.sln48");
    let r = voxbridge(&["transcode", "--quiet", s(&ul), s(&out)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::metadata(&out).expect("size").len(), 1234 * 6 * 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rules: the input is never the output (same path, another spelling, a
/// symlink or a hard link), a failed run leaves the old output as it was
/// and no temporary file, and a RIFF/WAVE header wins over the extension.
#[test]
fn the_input_is_never_overwritten_and_a_riff_header_wins_over_the_extension() {
    let dir = tempdir("tc-same");
    let p = |n: &str| dir.join(n).to_str().expect("utf-8").to_string();
    let mut wav =
        voxbridge_proto::wav::write_header(voxbridge_proto::wav::WavEncoding::Pcm16, 8000, 3200).to_vec();
    wav.extend((0..1600i16).flat_map(|i| ((i % 200) * 50).to_le_bytes()));
    std::fs::write(p("in.wav"), &wav).expect("write");
    std::os::unix::fs::symlink(p("in.wav"), p("link.ul")).expect("symlink");
    std::fs::hard_link(p("in.wav"), p("hard.wav")).expect("hard link");
    for out in [
        p("in.wav"),
        format!("{}/./in.wav", s(&dir)),
        p("link.ul"),
        p("hard.wav"),
    ] {
        fails_cleanly(&["transcode", &p("in.wav"), &out], "is the input");
        assert_eq!(
            std::fs::read(p("in.wav")).expect("read"),
            wav,
            "input intact after {out}"
        );
    }

    // A WAV named .ulaw: read as WAV (its 44-byte header is not audio).
    std::fs::write(p("speech.ulaw"), &wav).expect("write");
    let out = voxbridge(&["transcode", "--quiet", &p("speech.ulaw"), &p("out.sln")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RIFF/WAVE header"), "says so: {err:?}");
    assert_eq!(
        std::fs::read(p("out.sln")).expect("read"),
        wav[44..],
        "8 kHz PCM16 in, the same out"
    );

    // A failed run leaves the earlier output and no temporary file.
    std::fs::write(p("trunc.wav"), &wav[..100]).expect("write");
    fails_cleanly(&["transcode", &p("trunc.wav"), &p("out.sln")], "truncated WAV");
    assert_eq!(std::fs::read(p("out.sln")).expect("read"), wav[44..]);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ogg Opus both ways, checked against FFmpeg: what voxbridge writes FFmpeg
/// decodes to exactly the input's length (pre-skip and end trimming
/// right) and to the same speech; a stereo file FFmpeg's libopus wrote
/// voxbridge decodes to FFmpeg's own decoding's length and signal (mixed
/// down); a damaged file is one clear line and no output.
#[test]
fn ogg_opus_round_trips_with_ffmpeg_at_exact_length() {
    let dir = tempdir("tc-opus");
    let raw16 = speech(&dir, 16000);
    let wav = dir.join("in.wav");
    ffmpeg(&format!("-f s16le -ar 16000 -ac 1 -i {} {}", s(&raw16), s(&wav)));
    let input = read_pcm(&raw16);
    // Ours -> FFmpeg.
    let ours = dir.join("ours.opus");
    let out = voxbridge(&["transcode", "--quiet", s(&wav), s(&ours)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,channels",
            "-of",
            "csv=p=0",
            s(&ours),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "opus,1");
    let by_ffmpeg = dir.join("by_ffmpeg.raw");
    ffmpeg(&format!("-i {} -ar 16000 -f s16le {}", s(&ours), s(&by_ffmpeg)));
    let decoded = read_pcm(&by_ffmpeg);
    assert_eq!(
        decoded.len(),
        input.len(),
        "FFmpeg plays exactly the input's length"
    );
    let c = correlation(&input, &decoded);
    println!("voxbridge Ogg Opus decoded by FFmpeg vs the input: correlation {c:.3}");
    assert!(c > 0.9, "correlation {c:.3}");
    // FFmpeg's stereo -> ours.
    let theirs = dir.join("theirs.opus");
    ffmpeg(&format!("-i {} -ac 2 -c:a libopus {}", s(&wav), s(&theirs)));
    let back = dir.join("back.wav");
    let out = voxbridge(&["transcode", "--quiet", s(&theirs), s(&back), "--to-rate", "16000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ffmpeg_own = dir.join("ffmpeg_own.raw");
    ffmpeg(&format!(
        "-i {} -ac 1 -ar 16000 -f s16le {}",
        s(&theirs),
        s(&ffmpeg_own)
    ));
    let ours_back = std::fs::read(&back).expect("wav");
    let ours_back: Vec<i16> = ours_back[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let reference = read_pcm(&ffmpeg_own);
    assert_eq!(
        ours_back.len(),
        input.len(),
        "the input's length, as FFmpeg's encoder kept it"
    );
    assert_eq!(reference.len(), input.len());
    let c = correlation(&reference, &ours_back);
    println!("FFmpeg's stereo Ogg Opus decoded by voxbridge vs by FFmpeg: correlation {c:.3}");
    assert!(c > 0.9, "correlation {c:.3}");
    // A damaged file: a clear error, nothing written.
    let mut bytes = std::fs::read(&ours).expect("ours");
    bytes.truncate(60);
    let broken = dir.join("broken.opus");
    std::fs::write(&broken, &bytes).expect("write");
    let never = dir.join("never.wav");
    fails_cleanly(&["transcode", "--quiet", s(&broken), s(&never)], "Ogg");
    assert!(!never.exists(), "no output from a failed run");
    // Named .opus, not Ogg at all.
    let fake = dir.join("fake.opus");
    std::fs::write(&fake, b"not an ogg file at all").expect("write");
    fails_cleanly(&["transcode", "--quiet", s(&fake), s(&never)], "not Ogg Opus");
    assert!(!never.exists(), "no output from a failed run");
    let _ = std::fs::remove_dir_all(&dir);
}
