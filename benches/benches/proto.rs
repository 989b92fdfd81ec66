//! Per-frame wire-format costs: RTP parse + payload slice, AudioSocket frame
//! decode from a connection buffer, pipecat audio frame encode (20 ms, 16 kHz).
//! `benches/proto.sh` runs this and prints the RESULT line.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};
use voxbridge_proto::pipecat;
use voxbridge_proto::rtp::{RtpHeader, RtpPacket};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("proto");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));

    let mut dgram = Vec::new();
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: 1,
        timestamp: 160,
        ssrc: 7,
    }
    .write(&[0xFF; 160], &mut dgram);
    let dgram = Bytes::from(dgram);
    g.bench_function("rtp_parse_payload", |b| {
        b.iter(|| {
            let p = RtpPacket::parse(black_box(dgram.clone())).expect("valid");
            black_box(p.payload())
        })
    });

    // A connection buffer holding many 20 ms 8 kHz frames; refilled when drained
    // (the refill copies frames in, as a socket read would, and is included).
    let codec = AudioSocketCodec::default();
    let mut wire = BytesMut::new();
    for _ in 0..4096 {
        codec
            .encode_frame(
                &Frame::Audio {
                    rate: 8000,
                    pcm: Bytes::from_static(&[1; 320]),
                },
                &mut wire,
            )
            .expect("encodable");
    }
    let mut conn = BytesMut::with_capacity(wire.len());
    g.bench_function("audiosocket_decode", |b| {
        b.iter(|| {
            if conn.is_empty() {
                conn.extend_from_slice(&wire);
            }
            black_box(codec.decode_frame(&mut conn).expect("valid"))
        })
    });

    let pcm = Bytes::from(vec![0u8; 640]);
    let mut out = BytesMut::with_capacity(1024);
    g.bench_function("pb_audio_encode", |b| {
        b.iter(|| {
            out.clear();
            pipecat::encode_audio(pcm.clone(), 16000, &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
