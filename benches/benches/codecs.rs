//! Per-frame (20 ms) costs of every codec and every resampler pair.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use voxbridge_codecs::g722::{G722Decoder, G722Encoder};
use voxbridge_codecs::opus::{OpusDecoder, OpusEncoder, OpusSettings};
use voxbridge_codecs::{frame_len, g711, max_frame_len as r_max, Resampler, STANDARD_RATES};

fn signal(n: usize, rate: u32) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            ((t * 2.0 * std::f32::consts::PI * 200.0).sin() * 5000.0
                + (t * 2.0 * std::f32::consts::PI * 1300.0).sin() * 2000.0) as i16
        })
        .collect()
}

fn g711_and_g722(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec_frame");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let pcm8 = signal(160, 8000);
    let mut codes = [0u8; 160];
    let mut out = [0i16; 160];
    g.bench_function("ulaw_encode_160", |b| {
        b.iter(|| g711::encode_ulaw(black_box(&pcm8), &mut codes))
    });
    g.bench_function("ulaw_decode_160", |b| {
        b.iter(|| g711::decode_ulaw(black_box(&codes), &mut out))
    });
    g.bench_function("alaw_encode_160", |b| {
        b.iter(|| g711::encode_alaw(black_box(&pcm8), &mut codes))
    });
    g.bench_function("alaw_decode_160", |b| {
        b.iter(|| g711::decode_alaw(black_box(&codes), &mut out))
    });
    let pcm16 = signal(320, 16000);
    let mut enc = G722Encoder::new();
    let mut dec = G722Decoder::new();
    let mut out16 = [0i16; 320];
    g.bench_function("g722_encode_320", |b| {
        b.iter(|| enc.encode(black_box(&pcm16), &mut codes))
    });
    g.bench_function("g722_decode_160", |b| {
        b.iter(|| dec.decode(black_box(&codes), &mut out16))
    });
    for rate in [16000u32, 48000] {
        for complexity in [0u8, 5, 10] {
            let pcm = signal(frame_len(rate), rate);
            let mut enc = OpusEncoder::new(OpusSettings {
                rate,
                complexity,
                ..OpusSettings::default()
            })
            .expect("opus");
            let mut pkt = [0u8; 1275];
            g.bench_function(format!("opus_encode_{rate}_c{complexity}"), |b| {
                b.iter(|| enc.encode(black_box(&pcm), &mut pkt).expect("encode"))
            });
        }
        let pcm = signal(frame_len(rate), rate);
        let mut enc = OpusEncoder::new(OpusSettings {
            rate,
            ..OpusSettings::default()
        })
        .expect("opus");
        let mut pkt = [0u8; 1275];
        let n = enc.encode(&pcm, &mut pkt).expect("encode");
        let mut dec = OpusDecoder::new(rate).expect("opus");
        let mut out = vec![0i16; frame_len(rate)];
        g.bench_function(format!("opus_decode_{rate}"), |b| {
            b.iter(|| dec.decode(black_box(&pkt[..n]), &mut out).expect("decode"))
        });
    }
    g.finish();
}

fn resampler_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample_frame");
    g.measurement_time(Duration::from_millis(800))
        .warm_up_time(Duration::from_millis(200));
    for &from in &STANDARD_RATES {
        for &to in &STANDARD_RATES {
            if from == to {
                continue;
            }
            let input = signal(r_max(from), from);
            let mut out = vec![0i16; r_max(to)];
            let mut r = Resampler::new(from, to).expect("pair");
            g.bench_function(format!("{from}_to_{to}"), |b| {
                b.iter(|| {
                    // Frame lengths alternate at 11,025 Hz; one frame per iteration.
                    let (i, o) = (r.input_len(), r.output_len());
                    r.process(black_box(&input[..i]), &mut out[..o]).expect("frame")
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, g711_and_g722, resampler_pairs);
criterion_main!(benches);
