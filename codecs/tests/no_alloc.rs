//! The hot path allocates nothing: after one warm-up frame, 1,000 frames of
//! every codec and of the bridge resampler pairs make zero heap allocations
//! (counted by a global allocator that counts this thread's allocations only).

use voxbridge_codecs::g722::{G722Decoder, G722Encoder};
use voxbridge_codecs::opus::{OpusDecoder, OpusEncoder, OpusSettings};
use voxbridge_codecs::{g711, Codec, Concealer, Resampler, Transcoder};

#[path = "../../tests/support/alloc_count.rs"]
mod alloc_count;

#[global_allocator]
static GLOBAL: alloc_count::ThreadCounting = alloc_count::ThreadCounting;

/// Heap allocations and reallocations made by `f` on this thread.
fn count(f: impl FnMut()) -> usize {
    alloc_count::allocations_in(f) as usize
}

#[test]
fn steady_state_frames_allocate_nothing() {
    let pcm8: Vec<i16> = (0..160)
        .map(|i| ((i as f32 * 0.3).sin() * 5000.0) as i16)
        .collect();
    let pcm16: Vec<i16> = (0..320)
        .map(|i| ((i as f32 * 0.2).sin() * 5000.0) as i16)
        .collect();
    let pcm24: Vec<i16> = (0..480)
        .map(|i| ((i as f32 * 0.1).sin() * 5000.0) as i16)
        .collect();
    let mut up = Resampler::new(8000, 16000).expect("pair");
    let mut down = Resampler::new(24000, 8000).expect("pair");
    let mut odd = Resampler::new(44100, 16000).expect("pair");
    let pcm441 = vec![100i16; 882];
    let mut g722e = G722Encoder::new();
    let mut g722d = G722Decoder::new();
    let mut opus_e = OpusEncoder::new(OpusSettings {
        rate: 16000,
        ..OpusSettings::default()
    })
    .expect("opus");
    let mut opus_d = OpusDecoder::new(16000).expect("opus");
    let mut plc = Concealer::new(8000);
    let mut chain = Transcoder::new(Codec::Pcmu, Codec::L16 { rate: 16000 }).expect("chain");

    let mut o160 = [0i16; 160];
    let mut o320 = [0i16; 320];
    let mut codes = [0u8; 160];
    let mut packet = [0u8; 1275];
    let mut bytes = [0u8; 640];
    let mut frame = |i: usize| {
        g711::encode_ulaw(&pcm8, &mut codes);
        g711::decode_ulaw(&codes, &mut o160);
        up.process(&o160, &mut o320).expect("frame");
        down.process(&pcm24, &mut o160).expect("frame");
        odd.process(&pcm441, &mut o320).expect("frame");
        g722e.encode(&pcm16, &mut codes);
        g722d.decode(&codes, &mut o320);
        let n = opus_e.encode(&pcm16, &mut packet).expect("opus");
        opus_d.decode(&packet[..n], &mut o320).expect("opus");
        let mut f = o160;
        if i % 7 == 3 {
            plc.conceal(&mut f);
            chain.conceal(&mut bytes).expect("plc");
        } else {
            plc.good(&mut f);
            chain.process(&codes, &mut bytes).expect("frame");
        }
    };
    // The counter sees allocations at all (so a zero below means something).
    assert!(count(|| drop(std::hint::black_box(vec![1u8; 64]))) >= 1);
    frame(0); // warm-up: the resampler's per-thread scratch is sized here, once
    let n = count(|| {
        for i in 1..=1000 {
            frame(i);
        }
    });
    assert_eq!(n, 0, "{n} heap allocations in 1,000 steady-state frames");
}
