//! RTCP (RFC 3550 section 6): compound packets with SR, RR, SDES, BYE, enough
//! for loss, jitter and round-trip statistics, plus the receiver-side
//! arithmetic that produces report blocks.
//!
//! RTCP arrives every few seconds per call, so parsed reports own small
//! vectors; RTP (every 20 ms) is the zero-copy path. Unknown packet types in a
//! compound (feedback, XR, APP) are skipped, not errors.

use crate::error::ProtoError;
use bytes::{BufMut, Bytes};

/// RTCP packet type numbers.
pub mod pt {
    /// Sender report.
    pub const SR: u8 = 200;
    /// Receiver report.
    pub const RR: u8 = 201;
    /// Source description.
    pub const SDES: u8 = 202;
    /// Goodbye.
    pub const BYE: u8 = 203;
    /// Application-defined.
    pub const APP: u8 = 204;
}

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// Sender information of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// NTP timestamp (64-bit fixed point, seconds since 1900).
    pub ntp: u64,
    /// RTP timestamp corresponding to `ntp`.
    pub rtp_ts: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// Sender report.
    SenderReport {
        /// Sender's SSRC.
        ssrc: u32,
        /// Sender information.
        info: SenderInfo,
        /// Reception reports.
        reports: Vec<ReportBlock>,
    },
    /// Receiver report.
    ReceiverReport {
        /// Reporter's SSRC.
        ssrc: u32,
        /// Reception reports.
        reports: Vec<ReportBlock>,
    },
    /// Source description: (ssrc, CNAME) pairs; other items are skipped.
    SourceDescription(Vec<(u32, Bytes)>),
    /// Goodbye from these sources, with an optional reason.
    Bye {
        /// Sources leaving.
        ssrcs: Vec<u32>,
        /// Reason text, if given.
        reason: Option<Bytes>,
    },
    /// A type this module does not interpret (APP, feedback, XR, ...).
    Other {
        /// Packet type.
        packet_type: u8,
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn report_blocks(body: &[u8], count: usize) -> Result<Vec<ReportBlock>, ProtoError> {
    if body.len() < count * 24 {
        return Err(ProtoError::Truncated {
            what: "RTCP report blocks",
            len: body.len(),
            needed: count * 24,
        });
    }
    Ok(body
        .chunks_exact(24)
        .take(count)
        .map(|r| {
            let lost = ((r[5] as u32) << 16) | ((r[6] as u32) << 8) | r[7] as u32;
            // Sign-extend 24 bits.
            let cumulative_lost = ((lost << 8) as i32) >> 8;
            ReportBlock {
                ssrc: be32(r, 0),
                fraction_lost: r[4],
                cumulative_lost,
                highest_seq: be32(r, 8),
                jitter: be32(r, 12),
                last_sr: be32(r, 16),
                delay_since_last_sr: be32(r, 20),
            }
        })
        .collect())
}

/// Parses a compound RTCP datagram.
pub fn parse_compound(buf: &Bytes) -> Result<Vec<RtcpPacket>, ProtoError> {
    let b = &buf[..];
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        if b.len() - at < 4 {
            return Err(ProtoError::Truncated {
                what: "RTCP header",
                len: b.len() - at,
                needed: 4,
            });
        }
        let version = b[at] >> 6;
        if version != 2 {
            return Err(ProtoError::BadVersion(version));
        }
        let padding = b[at] & 0x20 != 0;
        let count = (b[at] & 0x1F) as usize;
        let packet_type = b[at + 1];
        let len = 4 * (u16::from_be_bytes([b[at + 2], b[at + 3]]) as usize + 1);
        if b.len() - at < len {
            return Err(ProtoError::Truncated {
                what: "RTCP packet",
                len: b.len() - at,
                needed: len,
            });
        }
        let mut body = &b[at + 4..at + len];
        if padding {
            let pad = body.last().copied().unwrap_or(0) as usize;
            if pad == 0 || pad > body.len() {
                return Err(ProtoError::BadPadding {
                    pad,
                    body: body.len(),
                });
            }
            body = &body[..body.len() - pad];
        }
        if out.is_empty() && packet_type != pt::SR && packet_type != pt::RR {
            return Err(ProtoError::BadRtcp("compound packet must start with SR or RR"));
        }
        let base = at + 4;
        out.push(match packet_type {
            pt::SR => {
                if body.len() < 24 {
                    return Err(ProtoError::Truncated {
                        what: "RTCP SR",
                        len: body.len(),
                        needed: 24,
                    });
                }
                RtcpPacket::SenderReport {
                    ssrc: be32(body, 0),
                    info: SenderInfo {
                        ntp: ((be32(body, 4) as u64) << 32) | be32(body, 8) as u64,
                        rtp_ts: be32(body, 12),
                        packets: be32(body, 16),
                        octets: be32(body, 20),
                    },
                    reports: report_blocks(&body[24..], count)?,
                }
            }
            pt::RR => {
                if body.len() < 4 {
                    return Err(ProtoError::Truncated {
                        what: "RTCP RR",
                        len: body.len(),
                        needed: 4,
                    });
                }
                RtcpPacket::ReceiverReport {
                    ssrc: be32(body, 0),
                    reports: report_blocks(&body[4..], count)?,
                }
            }
            pt::SDES => RtcpPacket::SourceDescription(parse_sdes(buf, base, body, count)?),
            pt::BYE => {
                if body.len() < 4 * count {
                    return Err(ProtoError::Truncated {
                        what: "RTCP BYE",
                        len: body.len(),
                        needed: 4 * count,
                    });
                }
                let ssrcs = (0..count).map(|i| be32(body, 4 * i)).collect();
                let rest = &body[4 * count..];
                let reason = match rest.first() {
                    Some(&n) if rest.len() > n as usize => {
                        let start = base + 4 * count + 1;
                        Some(buf.slice(start..start + n as usize))
                    }
                    Some(_) => return Err(ProtoError::BadRtcp("BYE reason longer than the packet")),
                    None => None,
                };
                RtcpPacket::Bye { ssrcs, reason }
            }
            other => RtcpPacket::Other { packet_type: other },
        });
        at += len;
    }
    Ok(out)
}

fn parse_sdes(buf: &Bytes, base: usize, body: &[u8], count: usize) -> Result<Vec<(u32, Bytes)>, ProtoError> {
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        if body.len() < at + 4 {
            return Err(ProtoError::Truncated {
                what: "RTCP SDES chunk",
                len: body.len(),
                needed: at + 4,
            });
        }
        let ssrc = be32(body, at);
        at += 4;
        let mut cname = None;
        loop {
            let Some(&item) = body.get(at) else {
                return Err(ProtoError::BadRtcp("SDES chunk without an end item"));
            };
            if item == 0 {
                // End of items; the chunk is padded to a 32-bit boundary.
                at = (at + 4) & !3;
                break;
            }
            let Some(&n) = body.get(at + 1) else {
                return Err(ProtoError::BadRtcp("SDES item without a length"));
            };
            let start = at + 2;
            let end = start + n as usize;
            if end > body.len() {
                return Err(ProtoError::BadRtcp("SDES item longer than the packet"));
            }
            if item == 1 {
                cname = Some(buf.slice(base + start..base + end));
            }
            at = end;
        }
        if let Some(c) = cname {
            out.push((ssrc, c));
        }
    }
    Ok(out)
}

fn put_header(dst: &mut impl BufMut, count: u8, packet_type: u8, body_len: usize) {
    dst.put_u8(0x80 | (count & 0x1F));
    dst.put_u8(packet_type);
    dst.put_u16((body_len / 4) as u16);
}

fn put_block(dst: &mut impl BufMut, r: &ReportBlock) {
    dst.put_u32(r.ssrc);
    dst.put_u8(r.fraction_lost);
    let lost = (r.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0xFF_FFFF;
    dst.put_u8((lost >> 16) as u8);
    dst.put_u16(lost as u16);
    dst.put_u32(r.highest_seq);
    dst.put_u32(r.jitter);
    dst.put_u32(r.last_sr);
    dst.put_u32(r.delay_since_last_sr);
}

/// Appends a sender report (at most 31 report blocks are written).
pub fn write_sender_report(dst: &mut impl BufMut, ssrc: u32, info: &SenderInfo, reports: &[ReportBlock]) {
    let reports = &reports[..reports.len().min(31)];
    put_header(dst, reports.len() as u8, pt::SR, 24 + 24 * reports.len());
    dst.put_u32(ssrc);
    dst.put_u64(info.ntp);
    dst.put_u32(info.rtp_ts);
    dst.put_u32(info.packets);
    dst.put_u32(info.octets);
    for r in reports {
        put_block(dst, r);
    }
}

/// Appends a receiver report (at most 31 report blocks are written).
pub fn write_receiver_report(dst: &mut impl BufMut, ssrc: u32, reports: &[ReportBlock]) {
    let reports = &reports[..reports.len().min(31)];
    put_header(dst, reports.len() as u8, pt::RR, 4 + 24 * reports.len());
    dst.put_u32(ssrc);
    for r in reports {
        put_block(dst, r);
    }
}

/// Appends an SDES packet with one CNAME (truncated to 255 bytes).
pub fn write_sdes_cname(dst: &mut impl BufMut, ssrc: u32, cname: &[u8]) {
    let cname = &cname[..cname.len().min(255)];
    let items = 2 + cname.len() + 1; // CNAME item + end item
    let chunk = (4 + items).div_ceil(4) * 4;
    put_header(dst, 1, pt::SDES, chunk);
    dst.put_u32(ssrc);
    dst.put_u8(1);
    dst.put_u8(cname.len() as u8);
    dst.put_slice(cname);
    for _ in 0..chunk - 4 - 2 - cname.len() {
        dst.put_u8(0);
    }
}

/// Appends a BYE for `ssrc`.
pub fn write_bye(dst: &mut impl BufMut, ssrc: u32) {
    put_header(dst, 1, pt::BYE, 4);
    dst.put_u32(ssrc);
}

/// Middle 32 bits of a 64-bit NTP timestamp (the unit of LSR and of RTT arithmetic).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round-trip time in 1/65536 s from a report block received at `arrival_ntp`
/// (RFC 3550 6.4.1), or `None` when the peer has not yet received an SR.
pub fn round_trip(block: &ReportBlock, arrival_ntp: u64) -> Option<u32> {
    if block.last_sr == 0 {
        return None;
    }
    Some(
        ntp_middle(arrival_ntp)
            .wrapping_sub(block.last_sr)
            .wrapping_sub(block.delay_since_last_sr),
    )
}

/// Receiver statistics for one source: loss and interarrival jitter (RFC 3550 A.3, A.8).
///
/// Time is an argument: arrival times come in the media clock's units.
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    base_seq: Option<u64>,
    max_seq: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    transit: Option<i64>,
    jitter: f64,
}

impl ReceiverStats {
    /// Records one packet: extended sequence, its RTP timestamp (extended), and
    /// its arrival time converted to the same clock.
    pub fn record(&mut self, ext_seq: u64, ext_ts: u64, arrival: u64) {
        if self.base_seq.is_none() {
            self.base_seq = Some(ext_seq);
            self.max_seq = ext_seq;
        }
        self.max_seq = self.max_seq.max(ext_seq);
        self.received += 1;
        let transit = arrival as i64 - ext_ts as i64;
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// Packets expected from the first to the highest sequence seen.
    pub fn expected(&self) -> u64 {
        self.base_seq.map_or(0, |b| self.max_seq - b + 1)
    }

    /// Packets lost so far (negative when duplicates outnumber losses).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter, timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter as u32
    }

    /// A report block for `ssrc`, and resets the interval counters for the fraction lost.
    pub fn report(&mut self, ssrc: u32, last_sr: u32, delay_since_last_sr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: self.max_seq as u32,
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compound_sr_sdes_bye_round_trips() {
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 13,
            cumulative_lost: -3,
            highest_seq: 70_000,
            jitter: 42,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        };
        let info = SenderInfo {
            ntp: 0xE000_0000_8000_0000,
            rtp_ts: 160,
            packets: 50,
            octets: 8000,
        };
        let mut buf = Vec::new();
        write_sender_report(&mut buf, 99, &info, &[block]);
        write_sdes_cname(&mut buf, 99, b"voxbridge@host");
        write_bye(&mut buf, 99);
        let parsed = parse_compound(&Bytes::from(buf)).expect("valid");
        assert_eq!(
            parsed,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 99,
                    info,
                    reports: vec![block]
                },
                RtcpPacket::SourceDescription(vec![(99, Bytes::from_static(b"voxbridge@host"))]),
                RtcpPacket::Bye {
                    ssrcs: vec![99],
                    reason: None
                },
            ]
        );
    }

    #[test]
    fn round_trip_time_from_lsr_and_dlsr() {
        // SR sent at middle-NTP 0x10000 (1 s); peer held it 0.5 s; arrival at 2 s -> RTT 0.5 s.
        let block = ReportBlock {
            last_sr: 0x0001_0000,
            delay_since_last_sr: 0x8000,
            ..ReportBlock::default()
        };
        assert_eq!(round_trip(&block, 2u64 << 32), Some(0x8000));
    }

    #[test]
    fn loss_and_fraction_lost() {
        let mut s = ReceiverStats::default();
        for seq in (1000..1100u64).filter(|s| s % 10 != 5) {
            s.record(seq, seq * 160, seq * 160);
        }
        assert_eq!(s.expected(), 100);
        assert_eq!(s.lost(), 10);
        let r = s.report(5, 0, 0);
        assert_eq!(r.fraction_lost, (10 * 256 / 100) as u8);
        assert_eq!(r.jitter, 0);
    }

    #[test]
    fn malformed_compounds_are_errors() {
        assert!(
            parse_compound(&Bytes::from_static(&[0x80, 202, 0, 0])).is_err(),
            "must start with SR/RR"
        );
        assert!(
            parse_compound(&Bytes::from_static(&[0x81, 201, 0, 1, 0, 0, 0, 1])).is_err(),
            "block missing"
        );
        assert!(
            parse_compound(&Bytes::from_static(&[0x40, 201, 0, 0])).is_err(),
            "version 1"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_compound(&Bytes::from(bytes));
        }

        #[test]
        fn receiver_reports_round_trip(ssrc in any::<u32>(), blocks in prop::collection::vec(
            (any::<u32>(), any::<u8>(), -0x80_0000i32..0x80_0000, any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()), 0..31)) {
            let reports: Vec<ReportBlock> = blocks.iter().map(|b| ReportBlock {
                ssrc: b.0, fraction_lost: b.1, cumulative_lost: b.2, highest_seq: b.3, jitter: b.4, last_sr: b.5, delay_since_last_sr: b.6,
            }).collect();
            let mut buf = Vec::new();
            write_receiver_report(&mut buf, ssrc, &reports);
            let parsed = parse_compound(&Bytes::from(buf)).expect("valid");
            prop_assert_eq!(parsed, vec![RtcpPacket::ReceiverReport { ssrc, reports }]);
        }
    }
}
