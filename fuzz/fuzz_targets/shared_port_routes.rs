#![no_main]
//! Shared-port routing: arbitrary datagrams from a few hosts against a table
//! with sessions; never a panic, and a datagram only reaches a session made
//! for its own host.
use std::net::SocketAddr;
use voxbridge_media::net::shared_port::Routes;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut r = Routes::default();
    let _a = r.add(SocketAddr::from(([10, 0, 0, 1], 4000)));
    let _b = r.add(SocketAddr::from(([10, 0, 0, 1], 4000)));
    let _c = r.add(SocketAddr::from(([10, 0, 0, 2], 5000)));
    // Each record: host byte, port byte, length byte, then that many bytes.
    let mut rest = data;
    while let [h, p, n, tail @ ..] = rest {
        let n = usize::from(*n).min(tail.len());
        let from = SocketAddr::from(([10, 0, 0, h % 4], 4000 + u16::from(p % 3)));
        if let Some(s) = r.datagram(&tail[..n], from) {
            assert_eq!(s.expected().ip(), from.ip());
        }
        rest = &tail[n..];
    }
});
