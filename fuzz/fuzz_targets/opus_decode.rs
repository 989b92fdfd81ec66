#![no_main]
//! Opus packets from outside: arbitrary bytes, split into packets by a length prefix.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(mut dec) = voxbridge_codecs::opus::OpusDecoder::new(16000) else {
        return;
    };
    let mut out = [0i16; 5760];
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let take = (len as usize).min(tail.len());
        let (packet, next) = tail.split_at(take);
        if packet.is_empty() {
            let _ = dec.conceal(&mut out);
        } else if len % 7 == 0 {
            let _ = dec.recover(packet, &mut out);
        } else {
            let _ = dec.decode(packet, &mut out);
        }
        rest = next;
    }
});
