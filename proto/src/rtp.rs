//! RTP (RFC 3550) packets: zero-copy parsing, header writing, and the
//! per-stream bookkeeping a receiver needs (64-bit sequence and timestamp
//! unwrapping, SSRC change detection).
//!
//! Own code rather than the `rtp` crate: its `Packet::unmarshal` allocates a
//! `Vec` for CSRCs and one for header extensions on every packet; here a parse
//! is a handful of bounds checks and the payload is a `Bytes` slice of the
//! datagram (a reference count, no copy). The `rtp` crate serves as the oracle
//! in this module's property tests.

use crate::error::ProtoError;
use bytes::{BufMut, Bytes};
use std::ops::Range;

/// Fixed header bytes.
pub const HEADER_LEN: usize = 12;

/// A parsed RTP packet over the received datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    buf: Bytes,
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    csrc_count: u8,
    extension: Option<(u16, Range<usize>)>,
    payload: Range<usize>,
    padding: u8,
}

/// The header fields of an RTP datagram and where its payload lies, parsed
/// from a borrowed buffer (for receivers that copy the payload into their own
/// storage instead of keeping the datagram).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpView {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    csrc_count: u8,
    extension: Option<(u16, Range<usize>)>,
    /// Byte range of the payload in the parsed buffer.
    pub payload: Range<usize>,
    padding: u8,
}

impl RtpView {
    /// Parses a datagram. Checks every length once; never panics.
    pub fn parse(b: &[u8]) -> Result<RtpView, ProtoError> {
        if b.len() < HEADER_LEN {
            return Err(ProtoError::Truncated {
                what: "RTP header",
                len: b.len(),
                needed: HEADER_LEN,
            });
        }
        let version = b[0] >> 6;
        if version != 2 {
            return Err(ProtoError::BadVersion(version));
        }
        let has_padding = b[0] & 0x20 != 0;
        let has_extension = b[0] & 0x10 != 0;
        let csrc_count = b[0] & 0x0F;
        let mut at = HEADER_LEN + 4 * csrc_count as usize;
        if b.len() < at {
            return Err(ProtoError::Truncated {
                what: "RTP CSRC list",
                len: b.len(),
                needed: at,
            });
        }
        let extension = if has_extension {
            if b.len() < at + 4 {
                return Err(ProtoError::Truncated {
                    what: "RTP extension header",
                    len: b.len(),
                    needed: at + 4,
                });
            }
            let profile = u16::from_be_bytes([b[at], b[at + 1]]);
            let words = u16::from_be_bytes([b[at + 2], b[at + 3]]) as usize;
            let start = at + 4;
            let end = start + 4 * words;
            if b.len() < end {
                return Err(ProtoError::Truncated {
                    what: "RTP extension",
                    len: b.len(),
                    needed: end,
                });
            }
            at = end;
            Some((profile, start..end))
        } else {
            None
        };
        let mut end = b.len();
        let mut padding = 0u8;
        if has_padding {
            let pad = b[b.len() - 1] as usize;
            let body = b.len() - at;
            if pad == 0 || pad > body {
                return Err(ProtoError::BadPadding { pad, body });
            }
            end -= pad;
            padding = pad as u8;
        }
        Ok(RtpView {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7F,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            csrc_count,
            extension,
            payload: at..end,
            padding,
        })
    }
}

impl RtpPacket {
    /// Parses a datagram. Checks every length once; never panics.
    pub fn parse(buf: Bytes) -> Result<RtpPacket, ProtoError> {
        let v = RtpView::parse(&buf)?;
        Ok(RtpPacket {
            marker: v.marker,
            payload_type: v.payload_type,
            sequence: v.sequence,
            timestamp: v.timestamp,
            ssrc: v.ssrc,
            csrc_count: v.csrc_count,
            extension: v.extension,
            payload: v.payload,
            padding: v.padding,
            buf,
        })
    }

    /// The payload as a slice of the datagram (no copy).
    pub fn payload(&self) -> Bytes {
        self.buf.slice(self.payload.clone())
    }

    /// The payload bytes, borrowed.
    pub fn payload_bytes(&self) -> &[u8] {
        &self.buf[self.payload.clone()]
    }

    /// Contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.buf[HEADER_LEN..HEADER_LEN + 4 * self.csrc_count as usize]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Header extension: profile id and data (RFC 3550 5.3.1).
    pub fn extension(&self) -> Option<(u16, &[u8])> {
        self.extension.as_ref().map(|(p, r)| (*p, &self.buf[r.clone()]))
    }

    /// Padding bytes at the end (0 when the P bit is clear).
    pub fn padding(&self) -> u8 {
        self.padding
    }
}

/// The fields of a header voxbridge sends (no CSRCs, no extension, no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit (first packet of a talkspurt, start of a DTMF event).
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// The 12 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = 0x80;
        h[1] = (self.payload_type & 0x7F) | if self.marker { 0x80 } else { 0 };
        h[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        h[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        h
    }

    /// Appends header and payload to `dst` (caller-owned buffer).
    pub fn write(&self, payload: &[u8], dst: &mut impl BufMut) {
        dst.put_slice(&self.to_bytes());
        dst.put_slice(payload);
    }
}

/// Extends a `BITS`-wide wrapping counter to 64 bits, choosing the value
/// nearest the highest one seen (so late packets land before the wrap).
#[derive(Debug, Clone, Default)]
pub struct Unwrapper<const BITS: u32> {
    last: Option<u64>,
}

/// 16-bit RTP sequence numbers.
pub type SeqUnwrapper = Unwrapper<16>;
/// 32-bit RTP timestamps.
pub type TsUnwrapper = Unwrapper<32>;

impl<const BITS: u32> Unwrapper<BITS> {
    /// The extended value of `v` (only its low `BITS` bits count).
    pub fn unwrap(&mut self, v: u32) -> u64 {
        let v = extend(self.last, v as u64 & ((1u64 << BITS) - 1), BITS);
        if self.last.is_none_or(|l| v > l) {
            self.last = Some(v);
        }
        v
    }

    /// Forgets history (after an SSRC change).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// The `bits`-wide value `v` placed in the 64-bit cycle nearest `last`.
/// The first value is placed one cycle up so that a step back across zero
/// right after the start still has room below it.
fn extend(last: Option<u64>, v: u64, bits: u32) -> u64 {
    let cycle = 1u64 << bits;
    let Some(last) = last else { return cycle + v };
    let base = last & !(cycle - 1);
    let candidates = [base.wrapping_sub(cycle) + v, base + v, base + cycle + v];
    let mut best = base + v;
    for c in candidates {
        if c.abs_diff(last) < best.abs_diff(last) {
            best = c;
        }
    }
    best
}

/// What [`StreamTracker::observe`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Extended sequence number.
    pub seq: u64,
    /// Extended timestamp.
    pub ts: u64,
    /// The SSRC differs from the previous packet's (not set on the first packet).
    pub ssrc_changed: bool,
}

/// Per-stream receive bookkeeping: unwrapping and SSRC change detection.
#[derive(Debug, Clone, Default)]
pub struct StreamTracker {
    ssrc: Option<u32>,
    seq: SeqUnwrapper,
    ts: TsUnwrapper,
}

impl StreamTracker {
    /// Records a packet's header.
    pub fn observe(&mut self, ssrc: u32, seq: u16, ts: u32) -> Observed {
        let changed = self.ssrc.is_some_and(|s| s != ssrc);
        if changed {
            self.seq.reset();
            self.ts.reset();
        }
        self.ssrc = Some(ssrc);
        Observed {
            seq: self.seq.unwrap(seq as u32),
            ts: self.ts.unwrap(ts),
            ssrc_changed: changed,
        }
    }

    /// The current source, if any packet was seen.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_pcmu_packet_known_answer() {
        // V=2, M=1, PT=0, seq=0x1234, ts=0xDEADBEEF, ssrc=0x01020304, 160 bytes of 0xFF.
        let mut p = vec![0x80, 0x80, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4];
        p.extend_from_slice(&[0xFF; 160]);
        let pkt = RtpPacket::parse(Bytes::from(p)).expect("valid");
        assert!(pkt.marker);
        assert_eq!(
            (pkt.payload_type, pkt.sequence, pkt.timestamp, pkt.ssrc),
            (0, 0x1234, 0xDEADBEEF, 0x01020304)
        );
        assert_eq!(pkt.payload().len(), 160);
    }

    #[test]
    fn csrc_extension_and_padding() {
        let mut p = vec![0xB2, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]; // V2 P X CC=2
        p.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 11]); // CSRCs
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]); // one-byte extension, 1 word
        p.extend_from_slice(b"abc");
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let pkt = RtpPacket::parse(Bytes::from(p)).expect("valid");
        assert_eq!(pkt.csrcs().collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!(pkt.extension(), Some((0xBEDE, &[0x10, 0xAA, 0, 0][..])));
        assert_eq!(pkt.payload_bytes(), b"abc");
        assert_eq!(pkt.padding(), 3);
    }

    #[test]
    fn malformed_packets_are_typed_errors() {
        assert!(matches!(
            RtpPacket::parse(Bytes::from_static(&[0x80; 5])),
            Err(ProtoError::Truncated { .. })
        ));
        assert_eq!(
            RtpPacket::parse(Bytes::from_static(&[0x40; 12])),
            Err(ProtoError::BadVersion(1))
        );
        let huge_cc = [0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            RtpPacket::parse(Bytes::copy_from_slice(&huge_cc)),
            Err(ProtoError::Truncated { .. })
        ));
        let bad_pad = [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        assert!(matches!(
            RtpPacket::parse(Bytes::copy_from_slice(&bad_pad)),
            Err(ProtoError::BadPadding { .. })
        ));
    }

    #[test]
    fn sequence_unwraps_across_wrap_and_reorder() {
        let mut u = SeqUnwrapper::default();
        let a = u.unwrap(65534);
        assert_eq!(u.unwrap(65535), a + 1);
        assert_eq!(u.unwrap(0), a + 2);
        assert_eq!(u.unwrap(65535), a + 1, "late packet from before the wrap");
        assert_eq!(u.unwrap(2), a + 4);
        let mut t = TsUnwrapper::default();
        let x = t.unwrap(u32::MAX - 159);
        assert_eq!(t.unwrap(0), x + 160);
    }

    #[test]
    fn ssrc_change_resets_unwrapping() {
        let mut s = StreamTracker::default();
        assert!(!s.observe(1, 100, 1000).ssrc_changed);
        let o = s.observe(2, 5, 50);
        assert!(o.ssrc_changed);
        assert!(!s.observe(2, 6, 210).ssrc_changed);
    }

    proptest! {
        #[test]
        fn agrees_with_the_rtp_crate(
            marker in any::<bool>(), pt in 0u8..128, seq in any::<u16>(), ts in any::<u32>(), ssrc in any::<u32>(),
            csrcs in prop::collection::vec(any::<u32>(), 0..15),
            payload in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            use webrtc_util::marshal::{Marshal, Unmarshal};
            let pkt = rtp::packet::Packet {
                header: rtp::header::Header {
                    version: 2, padding: false, extension: false, marker, payload_type: pt,
                    sequence_number: seq, timestamp: ts, ssrc, csrc: csrcs.clone(), ..Default::default()
                },
                payload: Bytes::from(payload.clone()),
            };
            let wire = pkt.marshal().expect("marshal");
            let ours = RtpPacket::parse(wire.clone()).expect("valid");
            let mut reader = wire.clone();
            let theirs = rtp::packet::Packet::unmarshal(&mut reader).expect("rtp crate parses");
            prop_assert_eq!(ours.marker, theirs.header.marker);
            prop_assert_eq!(ours.payload_type, theirs.header.payload_type);
            prop_assert_eq!(ours.sequence, theirs.header.sequence_number);
            prop_assert_eq!(ours.timestamp, theirs.header.timestamp);
            prop_assert_eq!(ours.ssrc, theirs.header.ssrc);
            prop_assert_eq!(ours.csrcs().collect::<Vec<_>>(), theirs.header.csrc);
            prop_assert_eq!(ours.payload(), theirs.payload);
            // And our writer produces what we parse.
            let mut out = Vec::new();
            RtpHeader { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc }.write(&payload, &mut out);
            let back = RtpPacket::parse(Bytes::from(out)).expect("valid");
            prop_assert_eq!(back.payload_bytes(), &payload[..]);
        }

        #[test]
        fn arbitrary_datagrams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = RtpPacket::parse(Bytes::from(bytes));
        }

        #[test]
        fn unwrapping_is_monotonic_for_in_order_streams(start in any::<u16>(), n in 1usize..5000) {
            let mut u = SeqUnwrapper::default();
            let first = u.unwrap(start as u32);
            for i in 1..n {
                prop_assert_eq!(u.unwrap(start.wrapping_add(i as u16) as u32), first + i as u64);
            }
        }
    }
}
