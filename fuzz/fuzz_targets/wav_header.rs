#![no_main]
//! WAV header parsing of arbitrary bytes: never panics; a parse is self-consistent.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(h) = voxbridge_proto::wav::parse_header(data) {
        assert!(h.data_offset <= data.len());
        assert!(h.rate > 0);
    }
});
