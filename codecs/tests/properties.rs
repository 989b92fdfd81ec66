//! Property tests: round trips and frame-size invariants on arbitrary input.

use proptest::prelude::*;
use voxbridge_codecs::g722::{G722Decoder, G722Encoder};
use voxbridge_codecs::opus::OpusDecoder;
use voxbridge_codecs::{
    frame_len_at, g711, max_frame_len, Codec, Concealer, Pcm16Frame, Resampler, Transcoder, MAX_RATE,
    MIN_RATE, STANDARD_RATES,
};

fn rate() -> impl Strategy<Value = u32> {
    prop::sample::select(STANDARD_RATES.to_vec())
}

/// Any rate the resampler takes: the standard ones, or any in range.
fn any_rate() -> impl Strategy<Value = u32> {
    prop_oneof![rate(), MIN_RATE..=MAX_RATE]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn g711_round_trip_error_is_within_the_segment_step(x in -32000i16..=32000) {
        // Logarithmic laws: the step grows with the magnitude, about |x|/16.
        let u = g711::ulaw_to_linear(g711::linear_to_ulaw(x)) as i32;
        let a = g711::alaw_to_linear(g711::linear_to_alaw(x)) as i32;
        let mag = (x as i32).abs();
        prop_assert!((u - x as i32).abs() <= (mag + 132) / 16 + 8, "ulaw {x} -> {u}");
        prop_assert!((a - x as i32).abs() <= (mag / 16).max(16) + 8, "alaw {x} -> {a}");
    }

    #[test]
    fn g722_decoding_is_independent_of_chunking(data in prop::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..400) {
        let mut whole = vec![0i16; data.len() * 2];
        prop_assert_eq!(G722Decoder::new().decode(&data, &mut whole), data.len() * 2);
        let mut dec = G722Decoder::new();
        let mut pieces = Vec::new();
        let mut buf = vec![0i16; chunk * 2];
        for part in data.chunks(chunk) {
            let n = dec.decode(part, &mut buf);
            pieces.extend_from_slice(&buf[..n]);
        }
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn g722_encode_then_decode_keeps_sizes(pcm in prop::collection::vec(any::<i16>(), 0..1000)) {
        let mut codes = vec![0u8; pcm.len() / 2];
        let n = G722Encoder::new().encode(&pcm, &mut codes);
        prop_assert_eq!(n, pcm.len() / 2);
        let mut out = vec![0i16; n * 2];
        prop_assert_eq!(G722Decoder::new().decode(&codes, &mut out), n * 2);
    }

    #[test]
    fn resampler_gives_exact_frames_for_any_input(from in rate(), to in rate(), frames in 1usize..12, seed in any::<u64>()) {
        let mut r = Resampler::new(from, to).expect("supported");
        let mut state = seed | 1;
        let mut out = vec![0i16; max_frame_len(to)];
        for k in 0..frames as u64 {
            prop_assert_eq!(r.output_len(), frame_len_at(to, k));
            let input: Vec<i16> = (0..r.input_len()).map(|_| {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                state as i16
            }).collect();
            let o = r.output_len();
            prop_assert!(r.process(&input, &mut out[..o]).is_ok());
        }
        // Any other length is refused, not resized.
        let o = r.output_len();
        prop_assert!(r.process(&vec![0; r.input_len() + 1], &mut out[..o]).is_err());
    }

    #[test]
    fn any_rate_pair_in_range_is_resampled_or_refused_by_its_ratio(from in any_rate(), to in any_rate()) {
        match Resampler::new(from, to) {
            Ok(mut r) => {
                // Two periods of frames (at most 100): exact lengths, exact time.
                let mut out = vec![0i16; max_frame_len(to)];
                let (mut took, mut gave) = (0u64, 0u64);
                for _ in 0..100 {
                    let (i, o) = (r.input_len(), r.output_len());
                    prop_assert!(r.process(&vec![0; i], &mut out[..o]).is_ok());
                    took += i as u64;
                    gave += o as u64;
                }
                prop_assert_eq!((took, gave), (2 * from as u64, 2 * to as u64));
            }
            Err(voxbridge_codecs::CodecError::UnsupportedRatio { phases, .. }) => {
                prop_assert!(phases > voxbridge_codecs::resample::MAX_PHASES);
            }
            Err(e) => prop_assert!(false, "{from}->{to}: {e}"),
        }
    }

    #[test]
    fn opus_decoder_survives_arbitrary_packets(packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let mut dec = OpusDecoder::new(16000).expect("decoder");
        let mut out = vec![0i16; 5760];
        for p in &packets {
            let _ = dec.decode(p, &mut out);
        }
        // Still usable: concealment gives exactly one frame.
        prop_assert_eq!(dec.conceal(&mut out).expect("plc"), 320);
    }

    #[test]
    fn concealment_keeps_frame_sizes_for_any_loss_pattern(losses in prop::collection::vec(any::<bool>(), 1..40), r in rate()) {
        let mut plc = Concealer::new(r);
        let n = max_frame_len(r);
        for (i, lost) in losses.iter().enumerate() {
            let mut frame: Vec<i16> = (0..n).map(|k| (((i * n + k) as f32 * 0.05).sin() * 8000.0) as i16).collect();
            if *lost { plc.conceal(&mut frame) } else { plc.good(&mut frame) }
            prop_assert_eq!(frame.len(), n);
        }
    }

    #[test]
    fn transcoder_output_is_one_frame_per_frame(payload in prop::collection::vec(any::<u8>(), 160..161), to in rate()) {
        let mut t = Transcoder::new(Codec::Pcmu, Codec::L16 { rate: to }).expect("chain");
        let mut out = vec![0u8; 4096];
        prop_assert_eq!(t.process(&payload, &mut out).expect("frame"), frame_len_at(to, 0) * 2);
        prop_assert_eq!(t.conceal(&mut out).expect("plc"), frame_len_at(to, 1) * 2);
    }

    #[test]
    fn pcm16_frames_read_back_what_was_written(pcm in prop::collection::vec(any::<i16>(), 0..400)) {
        let mut bytes = vec![0u8; pcm.len() * 2];
        voxbridge_codecs::frame::write_le(&pcm, &mut bytes);
        let f = Pcm16Frame::new(bytes.into(), 8000).expect("even");
        let mut back = vec![0i16; pcm.len()];
        prop_assert_eq!(f.read_into(&mut back), pcm.len());
        prop_assert_eq!(back, pcm);
    }
}
