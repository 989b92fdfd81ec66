//! Zero heap allocations on the per-frame paths: RTP parse + payload slice,
//! AudioSocket stream decoding (a connection's read buffer, refilled like a
//! socket read), and pipecat audio encoding into a reused buffer. Counted by a
//! global allocator (this thread's allocations only) over 1,000 frames after a warm-up.

use bytes::{Bytes, BytesMut};
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};
use voxbridge_proto::pipecat;
use voxbridge_proto::rtp::{RtpHeader, RtpPacket, StreamTracker};

#[path = "../../tests/support/alloc_count.rs"]
mod alloc_count;

#[global_allocator]
static GLOBAL: alloc_count::ThreadCounting = alloc_count::ThreadCounting;

/// Heap allocations and reallocations made by `f` on this thread.
fn count(f: impl FnMut()) -> usize {
    alloc_count::allocations_in(f) as usize
}

#[test]
fn per_frame_paths_allocate_nothing() {
    assert!(
        count(|| drop(std::hint::black_box(vec![0u8; 32]))) >= 1,
        "counter works"
    );

    // RTP: a 20 ms PCMU datagram.
    let mut dgram = Vec::new();
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: 1,
        timestamp: 160,
        ssrc: 7,
    }
    .write(&[0xFF; 160], &mut dgram);
    // The receive path: datagrams land in one BytesMut (as recv_from would
    // write them) and are split off as Bytes; the payload is a slice of that.
    let mut rx = BytesMut::with_capacity(64 * 1024);
    let mut tracker = StreamTracker::default();
    let mut receive = |i: u16| {
        rx.extend_from_slice(&dgram);
        let p = RtpPacket::parse(rx.split().freeze()).expect("valid");
        tracker.observe(p.ssrc, p.sequence.wrapping_add(i), p.timestamp);
        std::hint::black_box(p.payload());
    };
    for i in 0..10 {
        receive(i); // warm-up: the first split turns the buffer into a shared one, once
    }
    let rtp = count(|| {
        for i in 0..1000u16 {
            receive(i);
        }
    });

    // AudioSocket: a connection buffer fed 20 ms slin16 frames in 1,000-byte reads.
    let codec = AudioSocketCodec::default();
    let mut wire = BytesMut::new();
    for _ in 0..1200 {
        codec
            .encode_frame(
                &Frame::Audio {
                    rate: 16000,
                    pcm: Bytes::from_static(&[1; 640]),
                },
                &mut wire,
            )
            .expect("encodable");
    }
    let mut conn = BytesMut::with_capacity(8192);
    let mut reads = wire.chunks(1000);
    let mut step = |conn: &mut BytesMut| -> usize {
        let mut n = 0;
        if let Some(chunk) = reads.next() {
            conn.extend_from_slice(chunk);
        }
        while let Some(f) = codec.decode_frame(conn).expect("valid") {
            std::hint::black_box(&f);
            n += 1;
        }
        n
    };
    let mut frames = 0;
    while frames < 100 {
        frames += step(&mut conn); // warm-up: the buffer reaches its working shape
    }
    let audiosocket = count(|| {
        let mut n = 0;
        while n < 1000 {
            n += step(&mut conn);
        }
    });

    // pipecat: encode 20 ms of 16 kHz audio into a reused buffer.
    let pcm = Bytes::from(vec![0u8; 640]);
    let mut out = BytesMut::with_capacity(1024);
    drop(pcm.clone()); // warm-up: the first clone makes the Vec-backed Bytes shared, once
    let pb = count(|| {
        for _ in 0..1000 {
            out.clear();
            pipecat::encode_audio(pcm.clone(), 16000, &mut out);
            std::hint::black_box(&out);
        }
    });
    println!("hot_path_allocs rtp={rtp} audiosocket={audiosocket} pipecat_audio={pb}");
    assert_eq!(rtp, 0, "RTP parse allocated");
    assert_eq!(audiosocket, 0, "AudioSocket decode allocated");
    assert_eq!(pb, 0, "pipecat audio encode allocated");
}
