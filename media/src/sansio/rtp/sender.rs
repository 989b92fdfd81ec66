//! The send half of an RTP leg, sans-IO: one PCM frame per tick in, one RTP
//! datagram out, plus RFC 4733 digits and RTCP sender reports.
//!
//! One random SSRC and random initial sequence/timestamp per leg (RFC 3550
//! 5.1); the timestamp advances one frame per tick whether audio or a digit
//! went out, so the media clock never drifts from the pacer. The first packet
//! carries the marker bit. While a digit plays, its telephone-event packets
//! replace audio (RFC 4733 2.5.1.2), then audio resumes.

use crate::error::MediaError;
use std::collections::VecDeque;
use voxbridge_codecs::{Codec, FrameEncoder};
use voxbridge_proto::dtmf::{digit_train, DtmfPacket};
use voxbridge_proto::rtcp::{write_sdes_cname, write_sender_report, ReportBlock, SenderInfo};
use voxbridge_proto::rtp::RtpHeader;

/// A digit's tone length, ms.
pub const DIGIT_MS: u32 = 100;
/// Largest encoded Opus frame (RFC 6716 3.2.1); fixed-rate codecs need
/// only their frame's bytes ([`Codec::frame_bytes`]).
const MAX_OPUS_PAYLOAD: usize = 1275;

/// The encoder for `codec`; Opus at `complexity` (0-10; libopus's cost per
/// frame grows with it, see benches/RESULTS.md), with or without in-band FEC.
/// With FEC on, the encoder starts expecting no loss, so libopus adds no FEC
/// (a second, low-rate encode of each frame) until the caller's RTCP reports
/// say packets are lost ([`RtpSender::set_expected_loss`]), as WebRTC's
/// senders do.
pub fn encoder_for(codec: Codec, complexity: u8, fec: bool) -> Result<FrameEncoder, MediaError> {
    Ok(match codec {
        Codec::Opus { rate } => FrameEncoder::Opus(voxbridge_codecs::opus::OpusEncoder::new(
            voxbridge_codecs::opus::OpusSettings {
                rate,
                complexity,
                fec,
                expected_loss_percent: 0,
                ..Default::default()
            },
        )?),
        c => FrameEncoder::new(c)?,
    })
}

/// What one tick sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// An audio frame.
    Audio,
    /// A telephone-event packet of a digit in progress.
    Digit,
}

/// The send half of one leg.
#[derive(Debug)]
pub struct RtpSender {
    ssrc: u32,
    seq: u16,
    ts: u32,
    ts_per_frame: u32,
    clock: u32,
    pt: u8,
    dtmf_pt: Option<u8>,
    encoder: FrameEncoder,
    payload: Vec<u8>,
    /// Percent, from the far end's last report (0 until one comes).
    expected_loss: u8,
    marker: bool,
    packets: u32,
    octets: u32,
    digits: VecDeque<char>,
    train: Vec<DtmfPacket>,
    train_at: usize,
}

impl RtpSender {
    /// A sender of `codec` on payload type `pt` at `clock`; `seed` gives the
    /// SSRC and initial sequence and timestamp (random in production).
    pub fn new(codec: Codec, clock: u32, pt: u8, dtmf_pt: Option<u8>, seed: u64) -> Result<Self, MediaError> {
        Ok(Self::with_encoder(
            codec,
            FrameEncoder::new(codec)?,
            clock,
            pt,
            dtmf_pt,
            seed,
        ))
    }

    /// As [`RtpSender::new`] with an encoder for `codec` built by the caller
    /// (see [`encoder_for`]).
    pub fn with_encoder(
        codec: Codec,
        encoder: FrameEncoder,
        clock: u32,
        pt: u8,
        dtmf_pt: Option<u8>,
        seed: u64,
    ) -> Self {
        RtpSender {
            ssrc: (seed >> 32) as u32,
            seq: seed as u16,
            ts: (seed as u32).rotate_left(11),
            ts_per_frame: clock / 50,
            clock,
            pt,
            dtmf_pt,
            encoder,
            // Sized to the codec: a G.711 call holds 160 bytes here, not 1,275.
            payload: vec![0; codec.frame_bytes().unwrap_or(MAX_OPUS_PAYLOAD)],
            expected_loss: 0,
            marker: true,
            packets: 0,
            octets: 0,
            digits: VecDeque::new(),
            train: Vec::new(),
            train_at: 0,
        }
    }

    /// The call changed codec (SIP re-INVITE): frames go out as `codec` (by
    /// `encoder`) on `pt` at `clock` from the next one, with the marker bit
    /// set. The sequence goes on; at another clock rate the stream is a new
    /// source (a new SSRC, its counts from zero: RFC 7160 section 4.1), at
    /// the same one it keeps its SSRC and timestamps. A digit still being
    /// sent is cut short.
    pub fn switch_codec(
        &mut self,
        codec: Codec,
        encoder: FrameEncoder,
        clock: u32,
        pt: u8,
        dtmf_pt: Option<u8>,
    ) {
        if clock != self.clock {
            // Another value whatever the old one (a nonzero step).
            self.ssrc = self.ssrc.wrapping_add(0x9E37_79B9);
            self.packets = 0;
            self.octets = 0;
        }
        self.clock = clock;
        self.ts_per_frame = clock / 50;
        self.pt = pt;
        self.dtmf_pt = dtmf_pt;
        self.encoder = encoder;
        self.payload = vec![0; codec.frame_bytes().unwrap_or(MAX_OPUS_PAYLOAD)];
        self.expected_loss = 0;
        self.marker = true;
        self.train.clear();
        self.train_at = 0;
    }

    /// The loss the far end reports (RTCP fraction lost, in 256ths): the
    /// Opus encoder plans its in-band FEC for it. Other codecs ignore it.
    pub fn set_expected_loss(&mut self, fraction_lost: u8) {
        let percent = (fraction_lost as u32 * 100).div_ceil(256) as u8;
        if percent != self.expected_loss {
            self.expected_loss = percent;
            // 0-100 is always accepted; a refusal leaves the old setting.
            let _ = self.encoder.set_expected_loss(percent);
        }
    }

    /// The loss the encoder plans for, percent.
    pub fn expected_loss(&self) -> u8 {
        self.expected_loss
    }

    /// This leg's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Queues a key press for the caller; `false` when no telephone-event
    /// was negotiated or the character is not a DTMF key.
    pub fn queue_digit(&mut self, digit: char) -> bool {
        if self.dtmf_pt.is_none() || voxbridge_proto::dtmf::event_of(digit).is_none() {
            return false;
        }
        self.digits.push_back(digit);
        true
    }

    /// Writes the tick's datagram for `pcm` (one 20 ms frame at the codec's
    /// rate) into `out` (cleared first).
    pub fn frame(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<Sent, MediaError> {
        out.clear();
        if self.train_at >= self.train.len() {
            if let (Some(d), Some(_)) = (self.digits.front().copied(), self.dtmf_pt) {
                self.digits.pop_front();
                self.train.clear();
                self.train_at = 0;
                if let Some(t) = digit_train(d, self.ts, DIGIT_MS, self.clock, 20, 10) {
                    self.train.extend(t);
                }
            }
        }
        let sent = if let (Some(p), Some(dpt)) = (self.train.get(self.train_at).copied(), self.dtmf_pt) {
            self.train_at += 1;
            let body = p.event.to_bytes();
            self.header(p.marker, dpt, p.timestamp).write(&body, out);
            self.octets = self.octets.wrapping_add(body.len() as u32);
            Sent::Digit
        } else {
            let n = self.encoder.encode(pcm, &mut self.payload)?;
            let marker = std::mem::take(&mut self.marker);
            self.header(marker, self.pt, self.ts)
                .write(&self.payload[..n], out);
            self.octets = self.octets.wrapping_add(n as u32);
            Sent::Audio
        };
        self.packets = self.packets.wrapping_add(1);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.ts_per_frame);
        Ok(sent)
    }

    fn header(&self, marker: bool, pt: u8, ts: u32) -> RtpHeader {
        RtpHeader {
            marker,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
        }
    }

    /// An RTCP compound (SR with `report` when given, then SDES CNAME) at NTP time `ntp`.
    pub fn sender_report(&self, ntp: u64, report: Option<ReportBlock>, cname: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let info = SenderInfo {
            ntp,
            rtp_ts: self.ts,
            packets: self.packets,
            octets: self.octets,
        };
        let reports: &[ReportBlock] = match &report {
            Some(r) => std::slice::from_ref(r),
            None => &[],
        };
        write_sender_report(out, self.ssrc, &info, reports);
        write_sdes_cname(out, self.ssrc, cname);
    }

    /// An RTCP BYE (after SDES, as RFC 3550 6.1 wants a compound to start with a report).
    pub fn bye(&self, ntp: u64, cname: &[u8], out: &mut Vec<u8>) {
        self.sender_report(ntp, None, cname, out);
        voxbridge_proto::rtcp::write_bye(out, self.ssrc);
    }

    /// Packets and payload octets sent.
    pub fn sent(&self) -> (u32, u32) {
        (self.packets, self.octets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_loss_follows_the_far_ends_reports() {
        let enc = encoder_for(Codec::Opus { rate: 16000 }, 1, true).expect("opus");
        let mut tx = RtpSender::with_encoder(Codec::Opus { rate: 16000 }, enc, 48000, 96, None, 7);
        assert_eq!(tx.expected_loss(), 0, "no FEC planned before a report");
        let pcm: Vec<i16> = (0..320)
            .map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16)
            .collect();
        let mut out = Vec::new();
        for (fraction, percent) in [(1u8, 1u8), (26, 11), (128, 50), (255, 100), (0, 0)] {
            tx.set_expected_loss(fraction);
            assert_eq!(tx.expected_loss(), percent, "fraction {fraction}/256");
            tx.frame(&pcm, &mut out).expect("encodes at every setting");
            assert!(out.len() > 12, "a packet with a payload");
        }
    }
    use voxbridge_proto::dtmf::TelephoneEvent;
    use voxbridge_proto::rtp::RtpPacket;

    #[test]
    fn audio_packets_advance_seq_and_ts_with_marker_first() {
        let mut tx = RtpSender::new(Codec::Pcmu, 8000, 0, Some(101), 0x1234_5678_0000_fffe).expect("tx");
        let mut out = Vec::new();
        let mut last: Option<RtpPacket> = None;
        for k in 0..4 {
            assert_eq!(tx.frame(&[0; 160], &mut out).expect("encodes"), Sent::Audio);
            let p = RtpPacket::parse(out.clone().into()).expect("parses");
            assert_eq!(p.payload_bytes().len(), 160);
            assert_eq!(p.marker, k == 0);
            assert_eq!(p.ssrc, 0x1234_5678);
            if let Some(l) = &last {
                assert_eq!(p.sequence, l.sequence.wrapping_add(1), "wraps at 65535");
                assert_eq!(p.timestamp, l.timestamp.wrapping_add(160));
            }
            last = Some(p);
        }
    }

    #[test]
    fn a_digit_replaces_audio_with_one_event_train() {
        let mut tx = RtpSender::new(Codec::Pcmu, 8000, 0, Some(101), 42).expect("tx");
        let mut out = Vec::new();
        assert!(tx.queue_digit('5'));
        let mut events = Vec::new();
        for _ in 0..10 {
            if tx.frame(&[0; 160], &mut out).expect("encodes") == Sent::Digit {
                let p = RtpPacket::parse(out.clone().into()).expect("parses");
                assert_eq!(p.payload_type, 101);
                events.push((
                    p.marker,
                    p.timestamp,
                    TelephoneEvent::parse(p.payload_bytes()).expect("event"),
                ));
            }
        }
        // 100 ms: 5 updates (the last one the end) + 2 end repeats, same timestamp.
        assert_eq!(events.len(), 7);
        assert!(events[0].0 && events[1..].iter().all(|e| !e.0));
        assert!(events.iter().all(|e| e.1 == events[0].1 && e.2.event == 5));
        assert!(events[4..].iter().all(|e| e.2.end && e.2.duration == 800));
        let mut tx = RtpSender::new(Codec::Pcmu, 8000, 0, None, 42).expect("tx");
        assert!(!tx.queue_digit('5'), "no telephone-event negotiated");
    }

    #[test]
    fn sender_report_parses() {
        let mut tx = RtpSender::new(Codec::Pcma, 8000, 8, None, 7).expect("tx");
        let mut out = Vec::new();
        tx.frame(&[0; 160], &mut out).expect("encodes");
        tx.bye(1 << 32, b"voxbridge", &mut out);
        let pkts = voxbridge_proto::rtcp::parse_compound(&out.clone().into()).expect("parses");
        assert_eq!(pkts.len(), 3);
        assert!(
            matches!(pkts[0], voxbridge_proto::rtcp::RtcpPacket::SenderReport { info, .. } if info.packets == 1 && info.octets == 160)
        );
    }
}
