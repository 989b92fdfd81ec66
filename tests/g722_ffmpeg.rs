//! G.722 interop with FFmpeg's `adpcm_g722`, on real speech from espeak-ng:
//! - FFmpeg-encoded G.722 decodes with ours to exactly FFmpeg's samples;
//! - our encoder emits exactly FFmpeg's bytes for the same input;
//! - what we encode, FFmpeg decodes cleanly (SNR against the input).

mod common;

use common::{ffmpeg, path, read_pcm, snr_db, speech, tempdir};
use std::path::Path;
use voxbridge_codecs::g722::{G722Decoder, G722Encoder};

/// Samples the two QMFs delay G.722 by (encoder + decoder).
const CODEC_DELAY: usize = 22;

#[test]
fn ffmpeg_and_voxbridge_g722_agree_bit_for_bit() {
    let dir = tempdir("g722");
    let raw = speech(&dir, 16000);
    let input = read_pcm(&raw);
    assert!(input.len() > 16000, "espeak produced {} samples", input.len());
    let p = |n: &str| path(&dir, n);

    ffmpeg(&format!(
        "-f s16le -ar 16000 -ac 1 -i {} -c:a g722 -f g722 {}",
        p("speech_16000.raw"),
        p("ff.g722")
    ));
    ffmpeg(&format!(
        "-f g722 -i {} -f s16le {}",
        p("ff.g722"),
        p("ff_dec.raw")
    ));
    let ff_codes = std::fs::read(p("ff.g722")).expect("g722 file");
    let ff_dec = read_pcm(Path::new(&p("ff_dec.raw")));

    // Our decoder on FFmpeg's stream, frame by frame (160 bytes = 20 ms).
    let mut dec = G722Decoder::new();
    let mut ours = vec![0i16; ff_codes.len() * 2];
    for (codes, out) in ff_codes.chunks(160).zip(ours.chunks_mut(320)) {
        dec.decode(codes, out);
    }
    assert_eq!(ours.len(), ff_dec.len());
    let mismatches = ours.iter().zip(&ff_dec).filter(|(a, b)| a != b).count();
    assert_eq!(
        mismatches, 0,
        "decoder differs from FFmpeg on {mismatches} samples"
    );

    // Our encoder on the same input.
    let mut enc = G722Encoder::new();
    let mut our_codes = vec![0u8; input.len() / 2];
    for (pcm, out) in input.chunks(320).zip(our_codes.chunks_mut(160)) {
        enc.encode(pcm, out);
    }
    let n = our_codes.len().min(ff_codes.len());
    let differ = our_codes[..n]
        .iter()
        .zip(&ff_codes[..n])
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differ, 0, "encoder differs from FFmpeg on {differ} of {n} bytes");

    // FFmpeg decodes what we encoded; compare with the input.
    std::fs::write(p("ours.g722"), &our_codes).expect("write");
    ffmpeg(&format!(
        "-f g722 -i {} -f s16le {}",
        p("ours.g722"),
        p("ours_ff_dec.raw")
    ));
    let back = read_pcm(Path::new(&p("ours_ff_dec.raw")));
    let snr = snr_db(&input, &back[CODEC_DELAY..], 0);
    println!("G.722 through FFmpeg's decoder: SNR {snr:.1} dB on espeak-ng speech");
    assert!(snr > 20.0, "SNR {snr:.1} dB");
    let _ = std::fs::remove_dir_all(&dir);
}
