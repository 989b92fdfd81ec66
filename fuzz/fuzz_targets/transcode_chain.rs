#![no_main]
//! The whole decode -> resample -> encode chain on arbitrary payloads and rate pairs.
use voxbridge_codecs::{Codec, Transcoder, STANDARD_RATES};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let codecs = [
        Codec::Pcmu,
        Codec::Pcma,
        Codec::G722,
        Codec::L16 {
            rate: STANDARD_RATES[(sel as usize) % STANDARD_RATES.len()],
        },
    ];
    let from = codecs[(sel as usize >> 3) % 4];
    let to = codecs[(sel as usize >> 5) % 4];
    let Ok(mut t) = Transcoder::new(from, to) else {
        return;
    };
    let mut out = vec![0u8; 2048];
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let frame = t.next_input_bytes().unwrap_or(160).min(rest.len());
        let (chunk, tail) = rest.split_at(frame);
        if i % 5 == 4 {
            let _ = t.conceal(&mut out);
        } else {
            let _ = t.process(chunk, &mut out);
        }
        rest = tail;
        i += 1;
    }
});
