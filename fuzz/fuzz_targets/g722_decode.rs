#![no_main]
//! G.722 decoding of arbitrary bytes, fed in arbitrary chunk sizes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut dec = voxbridge_codecs::g722::G722Decoder::new();
    let mut out = [0i16; 640];
    let chunk = data.first().map_or(160, |b| (*b as usize % 320) + 1);
    for part in data.chunks(chunk) {
        let n = dec.decode(part, &mut out);
        assert_eq!(n, 2 * part.len().min(320));
    }
});
