//! A call's per-frame work allocates nothing in steady state: 1,000 frames of
//! the whole sans-IO path (AudioSocket frame decoded from the read buffer,
//! 8 kHz -> 16 kHz resampling, bot message encoded, bot audio message
//! decoded, resampled back and queued, one paced frame written, latency
//! observed) make zero heap allocations, for both bot protocols; and 1,000
//! frames of an RTP leg (packet in, jitter buffer, decode, encode, packet
//! out) for PCMU, G.722 and Opus. Counted by a
//! global allocator that counts this thread's allocations only.

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Duration;
use voxbridge_media::botcodec::{BotCodec, BotInput, Outgoing};
use voxbridge_media::config::{BotProtocolKind, TwilioEncoding};
use voxbridge_media::metrics::{CallCounters, LATENCY_BUCKETS};
use voxbridge_media::pipeline::Pipeline;
use voxbridge_media::rtp::receiver::{FrameSource, RtpReceiver};
use voxbridge_media::rtp::sender::RtpSender;
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};

#[path = "../../tests/support/alloc_count.rs"]
mod alloc_count;

#[global_allocator]
static GLOBAL: alloc_count::ThreadCounting = alloc_count::ThreadCounting;

struct Call {
    asc: AudioSocketCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    pipeline: Pipeline,
    codec: BotCodec,
    outbox: Vec<Outgoing>,
    counters: CallCounters,
    /// What the bot sends back for each frame (an echo of a 16 kHz frame).
    bot_reply: Bytes,
    text_reply: String,
    caller_frame: Vec<u8>,
}

impl Call {
    fn frame(&mut self) {
        // Caller bytes arrive in the read buffer.
        self.rbuf.extend_from_slice(&self.caller_frame);
        while let Ok(Some(f)) = self.asc.decode_frame(&mut self.rbuf) {
            if let Frame::Audio { pcm, .. } = f {
                let codec = &mut self.codec;
                let outbox = &mut self.outbox;
                self.pipeline.caller_audio(&pcm, |f| outbox.push(codec.audio(f)));
            }
        }
        // The socket copies them out; the Bytes are dropped.
        self.outbox.clear();
        self.counters
            .to_bot
            .observe(&LATENCY_BUCKETS, Duration::from_micros(80));
        // The bot's answer.
        let input = if self.text_reply.is_empty() {
            self.codec.decode_binary(self.bot_reply.clone())
        } else {
            self.codec.decode_text(&self.text_reply)
        };
        if let Ok(BotInput::Audio { pcm, rate }) = input {
            self.pipeline.bot_audio(pcm, rate).expect("supported rate");
        }
        // The tick.
        let (frame, _) = self.pipeline.tick();
        self.wbuf.clear();
        self.wbuf.put_u8(0x10);
        self.wbuf.put_u16((frame.len() * 2) as u16);
        for s in frame {
            self.wbuf.put_i16_le(*s);
        }
        self.counters.frames_out += 1;
        self.counters
            .to_caller
            .observe(&LATENCY_BUCKETS, Duration::from_micros(300));
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(4096);
        }
    }
}

fn call(kind: BotProtocolKind) -> Call {
    let mut caller_frame = vec![0x10, 0x01, 0x40];
    for i in 0..160 {
        caller_frame.extend_from_slice(&(((i as f32 * 0.3).sin() * 5000.0) as i16).to_le_bytes());
    }
    let mut codec = BotCodec::new(kind, TwilioEncoding::L16, 16000, "5a5a5a5a-0000");
    let pcm16 = [1200i16; 320];
    let (bot_reply, text_reply) = match codec.audio(&pcm16) {
        // A pipecat echo bot sends the AudioRawFrame back unchanged.
        Outgoing::Binary(b) => (b, String::new()),
        // A Twilio-style bot answers with a media command carrying the same payload.
        Outgoing::Text(t) => {
            let s = String::from_utf8(t.to_vec()).expect("utf-8");
            let v: serde_json::Value = serde_json::from_str(&s).expect("json");
            let payload = v["media"]["payload"].as_str().expect("payload");
            (
                Bytes::new(),
                format!(r#"{{"event":"media","streamSid":"MZ","media":{{"payload":"{payload}"}}}}"#),
            )
        }
    };
    Call {
        asc: AudioSocketCodec::default(),
        rbuf: BytesMut::with_capacity(4096),
        wbuf: BytesMut::with_capacity(1024),
        pipeline: Pipeline::new(8000, 16000, 60_000).expect("pipeline"),
        codec,
        outbox: Vec::with_capacity(8),
        counters: CallCounters::default(),
        bot_reply,
        text_reply,
        caller_frame,
    }
}

#[test]
fn a_thousand_frames_of_a_call_allocate_nothing() {
    // The counter sees allocations at all (so a zero below means something).
    assert!(alloc_count::allocations_in(|| drop(std::hint::black_box(vec![1u8; 64]))) >= 1);
    for kind in [BotProtocolKind::Pipecat, BotProtocolKind::Twilio] {
        let mut c = call(kind);
        // Warm-up: arenas reach their steady size, buffers their capacity.
        for _ in 0..200 {
            c.frame();
        }
        let n = alloc_count::allocations_in(|| {
            for _ in 0..1000 {
                c.frame();
            }
        });
        assert_eq!(n, 0, "{kind:?}: allocations per 1,000 frames");
        assert_eq!(c.counters.frames_out, 1200);
        assert!(c.pipeline.stats().frames_down >= 1000, "the bot audio was played");
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
