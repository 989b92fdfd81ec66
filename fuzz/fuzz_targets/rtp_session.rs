#![no_main]
//! The receive side of a live RTP session: arbitrary datagrams (length
//! prefixed; the codec is picked by the first byte) through the receiver and
//! its jitter buffer, 20 ms apart, each followed by every frame the receiver
//! releases. Nothing on the wire may panic the session, change the size of
//! the frame the bot gets, or make the receiver release frames without end.
use voxbridge_codecs::Codec;
use voxbridge_media::sansio::rtp::receiver::RtpReceiver;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let (codec, clock) = match mode % 4 {
        0 => (Codec::Pcmu, 8000),
        1 => (Codec::Pcma, 8000),
        2 => (Codec::G722, 8000),
        _ => (Codec::Opus { rate: 16000 }, 48000),
    };
    let Ok(mut rx) = RtpReceiver::new(codec, clock, mode & 0x7F, Some(101)) else {
        return;
    };
    let mut out = vec![0i16; codec.frame_samples()];
    let mut now = 0u64;
    while rest.len() >= 2 {
        let len = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let _ = rx.datagram(&rest[2..2 + len], now);
        rest = &rest[2 + len..];
        now += clock as u64 / 50;
        out.fill(1);
        let mut n = 0;
        while rx.frame(now, &mut out).is_some() {
            n += 1;
            assert!(n <= 64, "the receiver keeps releasing frames");
        }
        while rx.poll_digit().is_some() {}
    }
    let _ = rx.report(0, 0);
});
