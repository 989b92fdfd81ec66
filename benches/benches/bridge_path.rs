//! Bridge path per frame pair over 1,000 call states round-robin (cache-cold,
//! like a busy server) and with one hot state, for voxbridge and the C peers.
//! `benches/bridge_path.sh` runs this and prints the RESULT line.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use voxbridge_benches::bridge::{frame_pair, inputs, CallState, Engine, Scratch};

const CALLS: usize = 1000;
/// Distinct input frames cycled through, so inputs are not all hot in L1.
const INPUT_FRAMES: usize = 1024;

fn bench(c: &mut Criterion) {
    let (ulaw, pcm24) = inputs(INPUT_FRAMES);
    let mut group = c.benchmark_group("bridge_path");
    group
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for (name, engine) in [
        ("ours", Engine::Ours),
        ("soxr_mq", Engine::SoxrMq),
        ("soxr_hq", Engine::SoxrHq),
        ("speex_q3", Engine::SpeexQ3),
    ] {
        for (label, calls) in [("1000_states", CALLS), ("1_state", 1)] {
            let mut states: Vec<CallState> = (0..calls).map(|_| CallState::new(engine)).collect();
            let mut scratch = Scratch::default();
            let mut i = 0usize;
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| {
                    let call = &mut states[i % calls];
                    let f = i % INPUT_FRAMES;
                    frame_pair(
                        call,
                        &ulaw[f * 160..f * 160 + 160],
                        &pcm24[f * 480..f * 480 + 480],
                        &mut scratch,
                    );
                    black_box(&scratch.to_caller);
                    i = i.wrapping_add(1);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
