#![no_main]
//! pipecat Protobuf messages from the bot's WebSocket.
use voxbridge_proto::pipecat::{self, Kind};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Kind::Audio(a)) = pipecat::decode(bytes::Bytes::copy_from_slice(data)) {
        if let Ok((pcm, _rate)) = pipecat::audio_pcm(&a) {
            assert!(pcm.len() <= data.len());
        }
    }
});
