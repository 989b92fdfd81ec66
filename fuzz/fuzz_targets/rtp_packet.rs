#![no_main]
//! RTP datagrams from the network: parse never panics; a parse is self-consistent.
use bytes::Bytes;
use voxbridge_proto::rtp::{RtpPacket, StreamTracker};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(Bytes::copy_from_slice(data)) {
        assert!(p.payload_bytes().len() <= data.len());
        let _ = p.csrcs().count();
        let _ = p.extension();
        let mut t = StreamTracker::default();
        t.observe(p.ssrc, p.sequence, p.timestamp);
    }
});
