//! Property tests over outside input to a call: whatever a bot sends, in
//! whatever order, the call keeps handing the caller exactly one frame per
//! tick and never panics; caller audio in any chunking comes out as whole
//! 20 ms bot frames, one per 20 ms of input.

use proptest::prelude::*;
use voxbridge_media::config::{BotProtocolKind, TwilioEncoding};
use voxbridge_media::sansio::botcodec::{BotCodec, BotInput};
use voxbridge_media::sansio::pipeline::Pipeline;

fn feed(kind: BotProtocolKind, msgs: &[Vec<u8>]) {
    let mut codec = BotCodec::new(kind, TwilioEncoding::L16, 16000, "prop");
    let mut p = Pipeline::new(8000, 16000, 500).expect("pipeline");
    for m in msgs {
        let input = match kind {
            BotProtocolKind::Pipecat => codec.decode_binary(bytes::Bytes::copy_from_slice(m)),
            _ => codec.decode_text(&String::from_utf8_lossy(m)),
        };
        match input {
            Ok(BotInput::Audio { pcm, rate }) => {
                let _ = p.bot_audio(pcm, rate);
            }
            Ok(BotInput::Clear) => p.clear(),
            Ok(BotInput::Mark(m)) => p.mark(m),
            _ => {}
        }
        assert_eq!(p.tick().0.len(), 160);
    }
}

fn pipecat_audio(samples: Vec<i16>, rate: u32) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    let le: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    voxbridge_proto::pipecat::encode_audio(le.into(), rate, &mut b);
    b.to_vec()
}

proptest! {
    #[test]
    fn arbitrary_pipecat_bytes_never_break_a_call(msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)) {
        feed(BotProtocolKind::Pipecat, &msgs);
    }

    #[test]
    fn arbitrary_text_never_breaks_a_call_in_any_dialect(msgs in prop::collection::vec(".{0,200}", 0..20)) {
        let msgs: Vec<Vec<u8>> = msgs.into_iter().map(String::into_bytes).collect();
        for kind in BotProtocolKind::ALL.into_iter().filter(|k| k.dialect().is_some()) {
            feed(kind, &msgs);
        }
    }

    #[test]
    fn dialect_shaped_bot_messages_never_break_a_call(
        msgs in prop::collection::vec((prop::sample::select(vec!["media", "playAudio", "clear", "clearAudio", "mark", "checkpoint", "dtmf", "transfer"]),
                                       ".{0,40}", prop::sample::select(vec!["audio/x-mulaw", "audio/x-l16", "audio/x-alaw", "x"]), any::<u32>()), 0..20)
    ) {
        let msgs: Vec<Vec<u8>> = msgs
            .into_iter()
            .map(|(event, text, ct, rate)| {
                serde_json::json!({
                    "event": event, "name": text,
                    "media": {"payload": text, "contentType": ct, "sampleRate": rate % 50_000},
                    "mark": {"name": text}, "dtmf": {"digit": text}, "transfer": {"target": text},
                })
                .to_string()
                .into_bytes()
            })
            .collect();
        for kind in BotProtocolKind::ALL.into_iter().filter(|k| k.dialect().is_some()) {
            feed(kind, &msgs);
        }
    }

    #[test]
    fn valid_audio_at_any_rate_and_length_plays_without_loss(
        chunks in prop::collection::vec((prop::collection::vec(any::<i16>(), 0..2000), prop::sample::select(vec![8000u32, 12000, 16000, 24000, 48000, 11025])), 1..10)
    ) {
        let msgs: Vec<Vec<u8>> = chunks.into_iter().map(|(s, r)| pipecat_audio(s, r)).collect();
        feed(BotProtocolKind::Pipecat, &msgs);
    }

    #[test]
    fn caller_audio_in_any_chunking_leaves_as_whole_bot_frames(cuts in prop::collection::vec(0usize..700, 0..30)) {
        let mut p = Pipeline::new(8000, 16000, 500).expect("pipeline");
        let total: usize = cuts.iter().sum::<usize>() * 2;
        let bytes = vec![7u8; total];
        let mut frames = 0;
        let mut at = 0;
        for c in &cuts {
            p.caller_audio(&bytes[at..at + c * 2], |f| { assert_eq!(f.len(), 320); frames += 1; });
            at += c * 2;
        }
        prop_assert_eq!(frames, total / 320);
    }
}

mod rtp_receive {
    use proptest::prelude::*;
    use voxbridge_codecs::Codec;
    use voxbridge_media::sansio::rtp::receiver::{FrameSource, RtpReceiver};
    use voxbridge_proto::rtp::RtpHeader;

    fn packet(seq: u16, ts: u32, ssrc: u32, pt: u8, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
        }
        .write(&vec![0x55; len], &mut v);
        v
    }

    proptest! {
        /// Any mix of valid packets (any seq/ts/ssrc/length), garbage and
        /// ticks: no panic, a bounded number of frames released each time,
        /// and afterwards a clean stream plays again (the
        /// session is never wedged by what came before).
        #[test]
        fn any_datagram_sequence_leaves_the_receiver_working(
            events in prop::collection::vec(
                prop_oneof![
                    (any::<u16>(), any::<u32>(), 0u32..3, prop::sample::select(vec![0u8, 13, 101, 96]), 0usize..400)
                        .prop_map(|(s, t, ssrc, pt, len)| packet(s, t, ssrc, pt, len)),
                    prop::collection::vec(any::<u8>(), 0..200),
                ],
                0..80),
            g722 in any::<bool>(),
        ) {
            let codec = if g722 { Codec::G722 } else { Codec::Pcmu };
            let mut rx = RtpReceiver::new(codec, 8000, if g722 { 9 } else { 0 }, Some(101)).expect("rx");
            let mut out = vec![0i16; codec.frame_samples()];
            let pt = if g722 { 9 } else { 0 };
            let mut k = 0u64;
            for d in &events {
                let _ = rx.datagram(d, k * 160);
                let mut n = 0;
                while rx.frame(k * 160 + 80, &mut out).is_some() {
                    n += 1;
                    prop_assert!(n <= 64, "the receiver keeps releasing frames");
                }
                k += 1;
            }
            let mut played = 0;
            for i in 0..20u32 {
                let _ = rx.datagram(&packet(i as u16, i * 160, 99, pt, 160), k * 160);
                while let Some(source) = rx.frame(k * 160 + 80, &mut out) {
                    played += (source == FrameSource::Audio) as u32;
                }
                k += 1;
            }
            prop_assert!(played >= 10, "a clean stream after the noise played {played} of 20 frames");
        }
    }
}

mod shared_port_routes {
    use proptest::prelude::*;
    use std::net::SocketAddr;
    use std::time::Instant;
    use voxbridge_media::net::shared_port::Routes;

    fn addr(host: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, host], port))
    }

    proptest! {
        /// Any datagrams from any of a few hosts, sessions coming and going:
        /// no panic, and a datagram only ever reaches a session created for
        /// its own host (never another caller's call).
        #[test]
        fn datagrams_only_reach_sessions_of_their_own_host(
            steps in prop::collection::vec(
                prop_oneof![
                    (0u8..4, 4000u16..4003, prop::collection::vec(any::<u8>(), 0..40))
                        .prop_map(|(h, p, mut d)| { if d.len() > 1 && p != 4002 { d[0] = 0x80; d[1] &= 0x7f; } (0u8, h, p, d) }),
                    (0u8..4, 4000u16..4003).prop_map(|(h, p)| (1u8, h, p, Vec::new())),
                    (0u8..8).prop_map(|i| (2u8, i, 0, Vec::new())),
                ],
                0..120),
        ) {
            let mut r = Routes::default();
            let mut live = Vec::new();
            let now = Instant::now();
            for (op, h, p, d) in steps {
                match op {
                    0 => {
                        let from = addr(h, p);
                        if let Some(s) = r.datagram(&d, from) {
                            prop_assert_eq!(s.expected().ip(), from.ip());
                        }
                    }
                    1 => live.push(r.add(addr(h, p))),
                    _ => {
                        if !live.is_empty() {
                            let s = live.remove(usize::from(h) % live.len());
                            r.remove(&s, now);
                        }
                    }
                }
                prop_assert_eq!(r.len(), live.len());
            }
        }
    }
}
