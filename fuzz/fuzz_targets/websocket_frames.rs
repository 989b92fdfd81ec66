#![no_main]
//! RFC 6455 frames and upgrade heads from a peer (the chan_websocket leg's
//! codec), in both roles: messages or an error, never a panic; the same
//! messages however the bytes are split between reads.
use bytes::BytesMut;
use voxbridge_proto::websocket::{accept, client_confirm, Decoder, Role};

fn drain(role: Role, reads: &[&[u8]]) -> Vec<String> {
    let mut d = Decoder::new(role, 1 << 16);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for r in reads {
        buf.extend_from_slice(r);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => got.push(format!("{m:?}")),
                Ok(None) => break,
                Err(e) => {
                    got.push(format!("error {e}"));
                    return got;
                }
            }
        }
    }
    got
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = accept(data);
    let _ = client_confirm(data, "dGhlIHNhbXBsZSBub25jZQ==");
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let role = if first & 1 == 0 { Role::Server } else { Role::Client };
    let cut = usize::from(first >> 1).min(rest.len());
    assert_eq!(drain(role, &[rest]), drain(role, &[&rest[..cut], &rest[cut..]]));
});
