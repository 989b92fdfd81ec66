#![no_main]
//! RFC 4733 packet trains: (timestamp, 4-byte payload) records through the receiver.
use voxbridge_proto::dtmf::DtmfReceiver;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut rx = DtmfReceiver::default();
    for rec in data.chunks(6) {
        let ts = u32::from(rec[0]) << 8 | u32::from(*rec.get(1).unwrap_or(&0));
        let _ = rx.handle(ts, rec.get(2..).unwrap_or(&[]));
        while rx.poll_event().is_some() {}
    }
});
