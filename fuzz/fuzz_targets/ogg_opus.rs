#![no_main]
//! Ogg Opus reading of arbitrary bytes (`voxbridge transcode` inputs): the
//! headers and every packet, never a panic; a head that parses is mono or
//! stereo.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = voxbridge_proto::ogg_opus::OggOpusReader::new(std::io::Cursor::new(data)) {
        assert!((1..=2).contains(&r.head().channels));
        for _ in 0..10_000 {
            match r.next_packet() {
                Ok(Some(p)) => assert!(p.data.len() <= data.len()),
                _ => break,
            }
        }
    }
});
