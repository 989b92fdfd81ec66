#![no_main]
//! An AudioSocket TCP byte stream cut into arbitrary reads: decode until an
//! error or the end; never panics, never loops, never buffers past the maximum.
use bytes::BytesMut;
use voxbridge_proto::audiosocket::AudioSocketCodec;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let codec = AudioSocketCodec::new(4096);
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(cut as usize + 1) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= 4096 + 3 + 256);
    }
});
