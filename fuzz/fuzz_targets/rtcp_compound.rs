#![no_main]
//! RTCP compound datagrams from the network.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = voxbridge_proto::rtcp::parse_compound(&bytes::Bytes::copy_from_slice(data));
});
