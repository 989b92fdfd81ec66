//! G.711 against FFmpeg's `pcm_mulaw`/`pcm_alaw` on all 65,536 inputs and 256 codes
//! (vectors in `tests/data`, see its README for how they were made).
//!
//! Decoding is bit-exact. Encoding follows the ITU-T G.191 reference, which
//! truncates negative inputs in one's complement; FFmpeg builds its encoder
//! table from midpoints instead, and the two disagree on exactly 964 inputs per
//! law, each time by one quantisation step (checked here, so any other change
//! shows up).

use voxbridge_codecs::g711;

const ULAW_ENC: &[u8] = include_bytes!("data/g711_ulaw_enc_all.bin");
const ALAW_ENC: &[u8] = include_bytes!("data/g711_alaw_enc_all.bin");
const ULAW_DEC: &[u8] = include_bytes!("data/g711_ulaw_dec_all.bin");
const ALAW_DEC: &[u8] = include_bytes!("data/g711_alaw_dec_all.bin");

fn pcm(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[test]
fn decoders_are_bit_exact_on_all_256_codes() {
    let (u, a) = (pcm(ULAW_DEC), pcm(ALAW_DEC));
    assert_eq!(u.len(), 256);
    for code in 0..=255u8 {
        assert_eq!(g711::ulaw_to_linear(code), u[code as usize], "ulaw {code:#04x}");
        assert_eq!(g711::alaw_to_linear(code), a[code as usize], "alaw {code:#04x}");
    }
}

fn encoder_differences(reference: &[u8], encode: fn(i16) -> u8, decode: fn(u8) -> i16) -> usize {
    assert_eq!(reference.len(), 65536);
    // Reconstruction levels in order, to tell neighbouring codes apart from far ones.
    let mut levels: Vec<i16> = (0..=255u8).map(decode).collect();
    levels.sort_unstable();
    levels.dedup();
    let rank = |code: u8| levels.binary_search(&decode(code)).unwrap_or(usize::MAX);
    let mut differ = 0;
    for (i, &theirs) in reference.iter().enumerate() {
        let x = (i as i32 - 32768) as i16;
        let ours = encode(x);
        if ours != theirs {
            differ += 1;
            assert_eq!(
                rank(ours).abs_diff(rank(theirs)),
                1,
                "x={x}: ours {ours:#04x} theirs {theirs:#04x} not neighbours"
            );
        }
    }
    differ
}

#[test]
fn ulaw_encoder_matches_ffmpeg_except_at_the_g191_truncation_points() {
    let n = encoder_differences(ULAW_ENC, g711::linear_to_ulaw, g711::ulaw_to_linear);
    assert_eq!(n, 964, "u-law: {n} inputs differ from FFmpeg");
}

#[test]
fn alaw_encoder_matches_ffmpeg_except_at_the_g191_truncation_points() {
    let n = encoder_differences(ALAW_ENC, g711::linear_to_alaw, g711::alaw_to_linear);
    assert_eq!(n, 964, "A-law: {n} inputs differ from FFmpeg");
}

#[test]
fn the_law_is_symmetric_around_minus_half() {
    // G.191: x and -x-1 get the same magnitude code with opposite signs.
    for x in 0..=i16::MAX {
        let neg = -x - 1;
        assert_eq!(
            g711::linear_to_ulaw(x) ^ 0x80,
            g711::linear_to_ulaw(neg),
            "ulaw {x}"
        );
        assert_eq!(
            g711::linear_to_alaw(x) ^ 0x80,
            g711::linear_to_alaw(neg),
            "alaw {x}"
        );
    }
}
