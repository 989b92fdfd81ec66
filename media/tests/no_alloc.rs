//! A call's per-frame work allocates nothing in steady state: 1,000 frames of
//! the real sans-IO `Call` (AudioSocket frame decoded from the read buffer,
//! 8 kHz -> 16 kHz resampling, bot message encoded and taken off the queue
//! toward the bot, bot audio message decoded, resampled back and queued, one
//! paced tick and its frame encoded for the caller, latency observed) make
//! zero heap allocations, for both bot protocols; and 1,000 frames of an RTP
//! leg (packet in, jitter buffer, decode, encode, packet out) for PCMU,
//! G.722 and Opus. Counted by a global allocator that counts this thread's
//! allocations only.

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use voxbridge_media::config::{BotProtocolKind, Route, TwilioEncoding};
use voxbridge_media::events::CallInfo;
use voxbridge_media::metrics::Metrics;
use voxbridge_media::sansio::botcodec::{BotCodec, Outgoing};
use voxbridge_media::sansio::call::{BotMessage, Call, FrameOutcome, LinkRequest};
use voxbridge_media::sansio::rtp::receiver::{FrameSource, RtpReceiver};
use voxbridge_media::sansio::rtp::sender::RtpSender;
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};

#[path = "../../tests/support/alloc_count.rs"]
mod alloc_count;

#[global_allocator]
static GLOBAL: alloc_count::ThreadCounting = alloc_count::ThreadCounting;

/// The real call, its AudioSocket leg's codec and buffers, and a bot that
/// answers each frame with 20 ms of audio.
struct Bench {
    call: Call,
    now: Instant,
    asc: AudioSocketCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// What the bot sends back for each frame (a 16 kHz frame).
    bot_reply: Bytes,
    text_reply: String,
    caller_frame: Vec<u8>,
    to_bot: u64,
    frames_out: u64,
}

impl Bench {
    fn frame(&mut self) {
        // Caller bytes arrive in the read buffer; the leg hands each frame in.
        self.rbuf.extend_from_slice(&self.caller_frame);
        while let Ok(Some(f)) = self.asc.decode_frame(&mut self.rbuf) {
            if let Frame::Audio { rate, pcm } = f {
                self.call.caller_audio_le(rate, &pcm, self.now);
            }
        }
        // The link driver writes what is queued (the socket copies it; the Bytes are dropped).
        while self.call.next_to_bot().is_some() {
            self.call.sent_to_bot();
            self.to_bot += 1;
        }
        self.call.forwarded(Duration::from_micros(80));
        // The bot's answer.
        if self.text_reply.is_empty() {
            self.call
                .bot_message(BotMessage::Binary(&self.bot_reply), self.now);
        } else {
            self.call
                .bot_message(BotMessage::Text(&self.text_reply), self.now);
        }
        // The tick.
        self.now += Duration::from_millis(20);
        let tick = self.call.handle_timeout(self.now).expect("a tick is due");
        let rate = self.call.caller_rate();
        self.wbuf.clear();
        let frame = self.call.take_caller_frame();
        self.asc
            .encode_audio(rate, frame, &mut self.wbuf)
            .expect("encode");
        self.call.caller_frame_done(FrameOutcome::Sent, tick);
        self.frames_out += 1;
        while self.call.poll_event().is_some() {}
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(4096);
        }
    }
}

/// A call of `kind`; with `listen`, its route also runs noise suppression, voice activity
/// (both directions, echo gate) and answering-machine detection.
fn bench(kind: BotProtocolKind, listen: bool) -> Bench {
    let mut caller_frame = vec![0x10, 0x01, 0x40];
    for i in 0..160 {
        caller_frame.extend_from_slice(&(((i as f32 * 0.3).sin() * 5000.0) as i16).to_le_bytes());
    }
    let mut codec = BotCodec::new(kind, TwilioEncoding::L16, 16000, "5a5a5a5a-0000");
    let pcm16 = [1200i16; 320];
    let (bot_reply, text_reply) = match codec.audio(&pcm16) {
        // A pipecat echo bot sends the AudioRawFrame back unchanged.
        Outgoing::Binary(b) => (b, String::new()),
        // A JSON-dialect bot answers with its dialect's media command
        // carrying the same payload.
        Outgoing::Text(t) => {
            let s = String::from_utf8(t.to_vec()).expect("utf-8");
            let v: serde_json::Value = serde_json::from_str(&s).expect("json");
            let payload = v["media"]["payload"].as_str().expect("payload");
            let media = voxbridge_proto::telephony::BotCommand::Media {
                payload: payload.into(),
                encoding: Some(voxbridge_proto::telephony::Encoding::L16),
                sample_rate: Some(16000),
            };
            (
                Bytes::new(),
                media
                    .write(kind.dialect().expect("a JSON dialect"), "MZ")
                    .expect("JSON audio"),
            )
        }
    };
    let route = Route {
        protocol: kind,
        twilio_encoding: Some(TwilioEncoding::L16),
        sample_rate: 16000,
        vad: listen.then(voxbridge_media::config::Vad::default),
        amd: listen.then(|| voxbridge_media::config::AnsweringMachine {
            calls: voxbridge_media::config::AmdCalls::All,
            ..Default::default()
        }),
        noise_suppression: listen,
        ..Route::default()
    };
    let info = CallInfo {
        call_id: "5a5a5a5a-0000".into(),
        ingress: "audiosocket",
        ..CallInfo::default()
    };
    let now = Instant::now();
    let mut call = Call::new(
        info,
        Arc::new(route),
        Arc::new(Metrics::default()),
        8000,
        now,
        SystemTime::now(),
    )
    .expect("call");
    assert_eq!(call.poll_link(), Some(LinkRequest::Connect));
    call.bot_connected(Duration::from_millis(5), now);
    Bench {
        call,
        now,
        asc: AudioSocketCodec::default(),
        rbuf: BytesMut::with_capacity(4096),
        wbuf: BytesMut::with_capacity(1024),
        bot_reply,
        text_reply,
        caller_frame,
        to_bot: 0,
        frames_out: 0,
    }
}

#[test]
fn a_thousand_frames_of_a_call_allocate_nothing() {
    // The counter sees allocations at all (so a zero below means something).
    assert!(alloc_count::allocations_in(|| drop(std::hint::black_box(vec![1u8; 64]))) >= 1);
    let listening = [(BotProtocolKind::Pipecat, true), (BotProtocolKind::Twilio, true)];
    for (kind, listen) in BotProtocolKind::ALL
        .map(|k| (k, false))
        .into_iter()
        .chain(listening)
    {
        let mut c = bench(kind, listen);
        // Warm-up: arenas reach their steady size, buffers their capacity.
        for _ in 0..200 {
            c.frame();
        }
        let n = alloc_count::allocations_in(|| {
            for _ in 0..1000 {
                c.frame();
            }
        });
        assert_eq!(
            n, 0,
            "{kind:?} (listening: {listen}): allocations per 1,000 frames"
        );
        assert_eq!(c.frames_out, 1200);
        assert!(c.to_bot >= 1200, "every caller frame went to the bot");
        assert!(
            c.call.pipeline().stats().frames_down >= 1000,
            "the bot audio was played"
        );
    }
    // RTP legs: the far end's packet built, received into the jitter buffer,
    // the tick's frame decoded, and the answer encoded into one datagram.
    for (codec, clock, pt) in [
        (voxbridge_codecs::Codec::Pcmu, 8000u32, 0u8),
        (voxbridge_codecs::Codec::G722, 8000, 9),
        (voxbridge_codecs::Codec::Opus { rate: 16000 }, 48000, 96),
    ] {
        let mut far = RtpSender::new(codec, clock, pt, Some(101), 1).expect("far end");
        let mut tx = RtpSender::new(codec, clock, pt, Some(101), 2).expect("sender");
        let mut rx = RtpReceiver::new(codec, clock, pt, Some(101)).expect("receiver");
        let n = codec.frame_samples();
        let pcm: Vec<i16> = (0..n).map(|i| ((i as f32 * 0.3).sin() * 5000.0) as i16).collect();
        let (mut wire, mut out, mut frame) =
            (Vec::with_capacity(2048), Vec::with_capacity(2048), vec![0i16; n]);
        let step = clock as u64 / 50;
        let mut k = 0u64;
        let mut tick = |k: u64, wire: &mut Vec<u8>, out: &mut Vec<u8>, frame: &mut Vec<i16>| {
            far.frame(&pcm, wire).expect("encode");
            rx.datagram(wire, k * step).expect("valid");
            let src = rx.frame(k * step + step / 2, frame);
            tx.frame(frame, out).expect("encode");
            src.expect("the packet goes at once")
        };
        for _ in 0..200 {
            tick(k, &mut wire, &mut out, &mut frame);
            k += 1;
        }
        let mut audio = 0;
        let n = alloc_count::allocations_in(|| {
            for _ in 0..1000 {
                audio += (tick(k, &mut wire, &mut out, &mut frame) == FrameSource::Audio) as u32;
                k += 1;
            }
        });
        assert_eq!(n, 0, "RTP {codec:?}: allocations per 1,000 frames");
        assert_eq!(audio, 1000, "{codec:?}: every tick played a packet");
    }
}
