//! SDP (RFC 4566) offer parsing and answer writing for one audio stream,
//! with the RFC 3264 codec choice voxbridge makes.
//!
//! Only what an audio-only RTP leg needs is kept: connection address, the
//! first audio `m=` line, its payload types with `rtpmap`/`fmtp`, `ptime`,
//! direction, `rtcp` and `rtcp-mux`. Unknown lines are skipped (SDP is
//! extensible); malformed ones the answer depends on are errors that say
//! which line. The answer takes the first offered codec voxbridge speaks
//! (the offerer's preference), keeps the offer's payload type numbers and
//! adds `telephone-event` at the same clock when offered.

use crate::error::ProtoError;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Largest offer accepted (bytes); real offers are 300-2,000.
pub const MAX_SDP_BYTES: usize = 16 * 1024;

/// An audio codec voxbridge negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// G.711 u-law (`PCMU/8000`, static PT 0).
    Pcmu,
    /// G.711 A-law (`PCMA/8000`, static PT 8).
    Pcma,
    /// G.722 (`G722/8000`, static PT 9; 16 kHz audio).
    G722,
    /// Opus (`opus/48000/2`), sent and received mono.
    Opus,
}

impl AudioCodec {
    /// Every codec, in voxbridge's own order of preference for offers it makes.
    pub const ALL: [AudioCodec; 4] = [
        AudioCodec::Opus,
        AudioCodec::G722,
        AudioCodec::Pcmu,
        AudioCodec::Pcma,
    ];

    /// The `rtpmap` encoding name.
    pub fn encoding_name(self) -> &'static str {
        match self {
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
            AudioCodec::G722 => "G722",
            AudioCodec::Opus => "opus",
        }
    }

    /// The RTP clock rate (what timestamps count).
    pub fn rtp_clock(self) -> u32 {
        match self {
            AudioCodec::Opus => 48000,
            _ => 8000,
        }
    }

    /// The static payload type, if the codec has one.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            AudioCodec::Pcmu => Some(0),
            AudioCodec::Pcma => Some(8),
            AudioCodec::G722 => Some(9),
            AudioCodec::Opus => None,
        }
    }

    /// Parses a name as used in config and the plain-parameters API
    /// (`pcmu`, `pcma`, `g722`, `opus`; case-insensitive).
    pub fn from_name(name: &str) -> Option<AudioCodec> {
        AudioCodec::ALL
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }

    fn matches(self, name: &str, clock: u32, channels: u8) -> bool {
        self.encoding_name().eq_ignore_ascii_case(name)
            && clock == self.rtp_clock()
            && (self != AudioCodec::Opus || channels == 2)
    }
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (the default).
    SendRecv,
    /// The offerer only sends.
    SendOnly,
    /// The offerer only receives.
    RecvOnly,
    /// On hold.
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answer's direction for an offer with this one.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// One `a=rtpmap` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub pt: u8,
    /// Encoding name as written.
    pub name: String,
    /// Clock rate.
    pub clock: u32,
    /// Channels (1 when absent).
    pub channels: u8,
}

/// The first audio stream of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOffer {
    /// Where the offerer receives RTP.
    pub remote: SocketAddr,
    /// Where it receives RTCP (`a=rtcp`, else port + 1; same as `remote` with rtcp-mux).
    pub remote_rtcp: SocketAddr,
    /// `a=rtcp-mux` offered.
    pub rtcp_mux: bool,
    /// Payload types in offer order.
    pub formats: Vec<u8>,
    /// The `rtpmap`s given.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=ptime`, ms.
    pub ptime: Option<u32>,
    /// Direction.
    pub direction: Direction,
}

/// What voxbridge and the offerer agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec.
    pub codec: AudioCodec,
    /// Its payload type (the offer's number).
    pub pt: u8,
    /// `telephone-event` payload type at the codec's clock, when offered.
    pub dtmf_pt: Option<u8>,
    /// Remote RTP address.
    pub remote: SocketAddr,
    /// Remote RTCP address.
    pub remote_rtcp: SocketAddr,
    /// RTCP multiplexed on the RTP port.
    pub rtcp_mux: bool,
    /// Direction of the answer.
    pub direction: Direction,
}

fn bad(line: usize, what: impl Into<String>) -> ProtoError {
    ProtoError::Sdp(format!("line {line}: {}", what.into()))
}

impl AudioOffer {
    /// Parses an offer and keeps its first audio stream.
    pub fn parse(sdp: &str) -> Result<AudioOffer, ProtoError> {
        if sdp.len() > MAX_SDP_BYTES {
            return Err(ProtoError::Sdp(format!(
                "offer of {} bytes is over the {MAX_SDP_BYTES}-byte limit",
                sdp.len()
            )));
        }
        let mut session_conn: Option<IpAddr> = None;
        let mut saw_version = false;
        // State of the first audio m= section, once found.
        let mut audio: Option<(u16, Vec<u8>)> = None;
        let mut media_conn: Option<IpAddr> = None;
        let mut in_audio = false;
        let mut done = false;
        let mut rtpmaps = Vec::new();
        let mut ptime = None;
        let mut media_direction = None;
        let mut session_direction = None;
        let mut rtcp_port: Option<(u16, Option<IpAddr>)> = None;
        let mut rtcp_mux = false;
        for (i, raw) in sdp.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let Some((kind, value)) = line.split_once('=') else {
                return Err(bad(n, format!("{line:?} is not <type>=<value>")));
            };
            if kind.len() != 1 {
                return Err(bad(n, format!("{line:?} is not <type>=<value>")));
            }
            if !saw_version {
                if kind != "v" {
                    return Err(bad(n, "an SDP starts with v=0"));
                }
                if value.trim() != "0" {
                    return Err(bad(n, format!("unsupported SDP version {value:?}")));
                }
                saw_version = true;
                continue;
            }
            match kind {
                "m" => {
                    if audio.is_some() {
                        // Only the first audio stream is used; later sections are ignored.
                        in_audio = false;
                        done = true;
                        continue;
                    }
                    let mut parts = value.split_ascii_whitespace();
                    let media = parts.next().unwrap_or_default();
                    if media != "audio" {
                        in_audio = false;
                        continue;
                    }
                    let port = parts.next().unwrap_or_default();
                    let port: u16 = port
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .parse()
                        .map_err(|_| bad(n, format!("bad port {port:?} in m=audio")))?;
                    let proto = parts.next().unwrap_or_default();
                    if proto.contains("SAVP") {
                        return Err(bad(n, format!("{proto}: SRTP is not supported, offer RTP/AVP")));
                    }
                    if !proto.starts_with("RTP/AVP") {
                        return Err(bad(n, format!("transport {proto:?} is not RTP/AVP")));
                    }
                    let formats = parts
                        .map(|f| {
                            f.parse::<u8>()
                                .ok()
                                .filter(|pt| *pt < 128)
                                .ok_or_else(|| bad(n, format!("bad payload type {f:?}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if formats.is_empty() {
                        return Err(bad(n, "m=audio lists no payload types"));
                    }
                    audio = Some((port, formats));
                    in_audio = true;
                }
                "c" => {
                    let addr = parse_connection(value).map_err(|e| bad(n, e))?;
                    if in_audio {
                        media_conn = Some(addr);
                    } else if audio.is_none() && !done {
                        session_conn = Some(addr);
                    }
                }
                "a" if in_audio || (audio.is_none() && !done) => {
                    let (name, val) = value.split_once(':').unwrap_or((value, ""));
                    match name {
                        "sendrecv" | "sendonly" | "recvonly" | "inactive" => {
                            let d = match name {
                                "sendonly" => Direction::SendOnly,
                                "recvonly" => Direction::RecvOnly,
                                "inactive" => Direction::Inactive,
                                _ => Direction::SendRecv,
                            };
                            if in_audio {
                                media_direction = Some(d);
                            } else {
                                session_direction = Some(d);
                            }
                        }
                        "rtpmap" if in_audio => rtpmaps.push(parse_rtpmap(val).map_err(|e| bad(n, e))?),
                        "ptime" if in_audio => {
                            ptime = Some(
                                val.trim()
                                    .parse::<u32>()
                                    .ok()
                                    .filter(|p| (1..=1000).contains(p))
                                    .ok_or_else(|| bad(n, format!("bad ptime {val:?}")))?,
                            );
                        }
                        "rtcp-mux" if in_audio => rtcp_mux = true,
                        "rtcp" if in_audio => {
                            let mut p = val.split_ascii_whitespace();
                            let port = p
                                .next()
                                .and_then(|x| x.parse::<u16>().ok())
                                .ok_or_else(|| bad(n, format!("bad a=rtcp {val:?}")))?;
                            let addr = match (p.next(), p.next(), p.next()) {
                                (Some(_), Some(_), Some(a)) => Some(
                                    a.parse::<IpAddr>()
                                        .map_err(|_| bad(n, format!("bad a=rtcp address {a:?}")))?,
                                ),
                                _ => None,
                            };
                            rtcp_port = Some((port, addr));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(ProtoError::Sdp("empty SDP".into()));
        }
        let Some((port, formats)) = audio else {
            return Err(ProtoError::Sdp("no m=audio line".into()));
        };
        let ip = media_conn
            .or(session_conn)
            .ok_or_else(|| ProtoError::Sdp("no c= connection address for the audio stream".into()))?;
        let remote = SocketAddr::new(ip, port);
        let remote_rtcp = if rtcp_mux {
            remote
        } else {
            match rtcp_port {
                Some((p, a)) => SocketAddr::new(a.unwrap_or(ip), p),
                None => SocketAddr::new(ip, port.wrapping_add(1)),
            }
        };
        let direction = media_direction
            .or(session_direction)
            .unwrap_or(Direction::SendRecv);
        Ok(AudioOffer {
            remote,
            remote_rtcp,
            rtcp_mux,
            formats,
            rtpmaps,
            ptime,
            direction,
        })
    }

    /// The name, clock and channels of payload type `pt` (rtpmap, else the static table).
    pub fn format(&self, pt: u8) -> Option<(&str, u32, u8)> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.pt == pt) {
            return Some((m.name.as_str(), m.clock, m.channels));
        }
        AudioCodec::ALL
            .into_iter()
            .find(|c| c.static_pt() == Some(pt))
            .map(|c| (c.encoding_name(), c.rtp_clock(), 1))
    }

    /// Chooses the first offered codec in `allowed` and the matching telephone-event.
    pub fn negotiate(&self, allowed: &[AudioCodec]) -> Result<Negotiated, ProtoError> {
        let chosen = self.formats.iter().find_map(|&pt| {
            let (name, clock, ch) = self.format(pt)?;
            allowed
                .iter()
                .find(|c| c.matches(name, clock, ch))
                .map(|c| (*c, pt))
        });
        let Some((codec, pt)) = chosen else {
            let offered: Vec<String> = self
                .formats
                .iter()
                .map(|&pt| match self.format(pt) {
                    Some((name, clock, _)) => format!("{pt} {name}/{clock}"),
                    None => format!("{pt} (no rtpmap)"),
                })
                .collect();
            return Err(ProtoError::Sdp(format!(
                "no common codec: offered [{}], voxbridge speaks {}",
                offered.join(", "),
                allowed
                    .iter()
                    .map(|c| c.encoding_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let dtmf_pt = self.formats.iter().copied().find(|&p| {
            self.format(p).is_some_and(|(name, clock, _)| {
                name.eq_ignore_ascii_case("telephone-event") && clock == codec.rtp_clock()
            })
        });
        Ok(Negotiated {
            codec,
            pt,
            dtmf_pt,
            remote: self.remote,
            remote_rtcp: self.remote_rtcp,
            rtcp_mux: self.rtcp_mux,
            direction: self.direction.answer(),
        })
    }
}

fn parse_connection(value: &str) -> Result<IpAddr, String> {
    let mut p = value.split_ascii_whitespace();
    let (net, family, addr) = (p.next(), p.next(), p.next());
    if net != Some("IN") {
        return Err(format!("c={value:?}: network type must be IN"));
    }
    let addr = addr.ok_or_else(|| format!("c={value:?}: no address"))?;
    // Multicast TTL/count suffixes ("/127") are not for a unicast leg.
    let host = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("c={value:?}: {host:?} is not an IP address"))?;
    match (family, ip) {
        (Some("IP4"), IpAddr::V4(_)) | (Some("IP6"), IpAddr::V6(_)) => Ok(ip),
        _ => Err(format!("c={value:?}: address family does not match the address")),
    }
}

fn parse_rtpmap(val: &str) -> Result<RtpMap, String> {
    let (pt, enc) = val
        .split_once(' ')
        .ok_or_else(|| format!("a=rtpmap:{val:?} is not <pt> <name>/<clock>"))?;
    let pt = pt
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|p| *p < 128)
        .ok_or_else(|| format!("a=rtpmap: bad payload type {pt:?}"))?;
    let mut parts = enc.trim().split('/');
    let name = parts.next().unwrap_or_default();
    let clock = parts
        .next()
        .and_then(|c| c.parse::<u32>().ok())
        .filter(|c| *c > 0)
        .ok_or_else(|| format!("a=rtpmap:{val:?} has no clock rate"))?;
    let channels = match parts.next() {
        Some(c) => c
            .parse::<u8>()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| format!("a=rtpmap:{val:?} has a bad channel count"))?,
        None => 1,
    };
    if name.is_empty() {
        return Err(format!("a=rtpmap:{val:?} has no encoding name"));
    }
    Ok(RtpMap {
        pt,
        name: name.to_string(),
        clock,
        channels,
    })
}

/// voxbridge's side of a session, for writing SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address the peer sends RTP to.
    pub addr: SocketAddr,
    /// Origin session id and version (`o=` line).
    pub session_id: u64,
}

/// Writes the answer to an offer negotiated as `n` (ptime 20).
pub fn write_answer(local: &LocalMedia, n: &Negotiated) -> String {
    let mut pts = vec![n.pt];
    pts.extend(n.dtmf_pt);
    write_sdp(local, n.codec, &pts, n.pt, n.dtmf_pt, n.rtcp_mux, n.direction)
}

/// Writes an SDP describing what voxbridge sends and expects for a plain
/// (non-negotiated) session, e.g. for a peer that reads an SDP file.
pub fn write_description(local: &LocalMedia, codec: AudioCodec, pt: u8, dtmf_pt: Option<u8>) -> String {
    let mut pts = vec![pt];
    pts.extend(dtmf_pt);
    write_sdp(local, codec, &pts, pt, dtmf_pt, false, Direction::SendRecv)
}

/// The payload type voxbridge offers `telephone-event/8000` on.
pub const OFFER_DTMF_PT: u8 = 101;
/// The payload type voxbridge offers `telephone-event/48000` on (with Opus).
pub const OFFER_DTMF_PT_48K: u8 = 102;
/// The payload type voxbridge offers Opus on.
pub const OFFER_OPUS_PT: u8 = 96;

/// Writes an offer of `codecs` in that order (ptime 20, `sendrecv`), each
/// with a `telephone-event` at its clock, for a call voxbridge places. The
/// answer is read back with [`AudioOffer::parse`] and
/// [`AudioOffer::negotiate`] (its first codec is the one both sides use).
pub fn write_offer(local: &LocalMedia, codecs: &[AudioCodec]) -> String {
    let mut s = String::with_capacity(400);
    write_head(&mut s, local);
    let pt_of = |c: AudioCodec| c.static_pt().unwrap_or(OFFER_OPUS_PT);
    let narrow = codecs.iter().any(|c| c.rtp_clock() == 8000);
    let wide = codecs.contains(&AudioCodec::Opus);
    let mut pts: Vec<String> = codecs.iter().map(|c| pt_of(*c).to_string()).collect();
    if narrow {
        pts.push(OFFER_DTMF_PT.to_string());
    }
    if wide {
        pts.push(OFFER_DTMF_PT_48K.to_string());
    }
    let _ = write!(s, "m=audio {} RTP/AVP {}\r\n", local.addr.port(), pts.join(" "));
    for c in codecs {
        write_rtpmap(&mut s, *c, pt_of(*c));
    }
    for (on, pt, clock) in [(narrow, OFFER_DTMF_PT, 8000), (wide, OFFER_DTMF_PT_48K, 48000)] {
        if on {
            let _ = write!(s, "a=rtpmap:{pt} telephone-event/{clock}\r\na=fmtp:{pt} 0-15\r\n");
        }
    }
    let _ = write!(s, "a=ptime:20\r\na=sendrecv\r\n");
    s
}

fn write_head(s: &mut String, local: &LocalMedia) {
    let (family, ip) = match local.addr.ip() {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    let id = local.session_id;
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=voxbridge {id} {id} IN {family} {ip}\r\ns=voxbridge\r\n"
    );
    let _ = write!(s, "c=IN {family} {ip}\r\nt=0 0\r\n");
}

fn write_rtpmap(s: &mut String, codec: AudioCodec, pt: u8) {
    match codec {
        AudioCodec::Opus => {
            let _ = write!(s, "a=rtpmap:{pt} opus/48000/2\r\n");
            let _ = write!(s, "a=fmtp:{pt} useinbandfec=1;minptime=20\r\n");
        }
        c => {
            let _ = write!(s, "a=rtpmap:{pt} {}/{}\r\n", c.encoding_name(), c.rtp_clock());
        }
    }
}

fn write_sdp(
    local: &LocalMedia,
    codec: AudioCodec,
    pts: &[u8],
    pt: u8,
    dtmf_pt: Option<u8>,
    rtcp_mux: bool,
    direction: Direction,
) -> String {
    let mut s = String::with_capacity(320);
    write_head(&mut s, local);
    let list: Vec<String> = pts.iter().map(|p| p.to_string()).collect();
    let _ = write!(s, "m=audio {} RTP/AVP {}\r\n", local.addr.port(), list.join(" "));
    write_rtpmap(&mut s, codec, pt);
    if let Some(d) = dtmf_pt {
        let _ = write!(s, "a=rtpmap:{d} telephone-event/{}\r\n", codec.rtp_clock());
        let _ = write!(s, "a=fmtp:{d} 0-15\r\n");
    }
    let _ = write!(s, "a=ptime:20\r\n");
    if rtcp_mux {
        let _ = write!(s, "a=rtcp-mux\r\n");
    }
    let _ = write!(s, "a={}\r\n", direction.attr());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SBC_OFFER: &str = "v=0\r\n\
o=- 3890 3890 IN IP4 192.0.2.10\r\n\
s=call\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 9 0 8 101\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

    #[test]
    fn our_offer_reads_back_and_an_answer_to_it_negotiates() {
        let local = LocalMedia {
            addr: "192.0.2.5:20000".parse().expect("addr"),
            session_id: 9,
        };
        let offer = write_offer(&local, &[AudioCodec::Opus, AudioCodec::Pcmu, AudioCodec::Pcma]);
        let o = AudioOffer::parse(&offer).expect("our offer parses");
        assert_eq!(o.formats, vec![96, 0, 8, 101, 102]);
        assert_eq!(o.remote, local.addr);
        let n = o.negotiate(&[AudioCodec::Pcma]).expect("PCMA offered");
        assert_eq!((n.codec, n.pt, n.dtmf_pt), (AudioCodec::Pcma, 8, Some(101)));
        let n = o.negotiate(&AudioCodec::ALL).expect("Opus first");
        assert_eq!((n.codec, n.pt, n.dtmf_pt), (AudioCodec::Opus, 96, Some(102)));
        let narrow = write_offer(&local, &[AudioCodec::Pcmu]);
        assert!(narrow.contains("m=audio 20000 RTP/AVP 0 101\r\n") && !narrow.contains("48000"));
    }

    #[test]
    fn takes_the_first_offered_codec_and_its_dtmf() {
        let o = AudioOffer::parse(SBC_OFFER).expect("parses");
        assert_eq!(o.remote, "192.0.2.10:40000".parse().expect("addr"));
        assert_eq!(o.remote_rtcp.port(), 40001);
        let n = o.negotiate(&AudioCodec::ALL).expect("negotiates");
        assert_eq!((n.codec, n.pt, n.dtmf_pt), (AudioCodec::G722, 9, Some(101)));
        let n = o.negotiate(&[AudioCodec::Pcma]).expect("PCMA by static PT");
        assert_eq!((n.codec, n.pt), (AudioCodec::Pcma, 8));
    }

    #[test]
    fn opus_keeps_the_offers_dynamic_pt_and_48k_dtmf() {
        let offer = "v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 ::1\nt=0 0\n\
m=audio 5004 RTP/AVP 111 110 0\na=rtpmap:111 opus/48000/2\na=rtpmap:110 telephone-event/48000\n\
a=rtcp-mux\na=sendonly\n";
        let n = AudioOffer::parse(offer)
            .expect("parses")
            .negotiate(&AudioCodec::ALL)
            .expect("negotiates");
        assert_eq!((n.codec, n.pt, n.dtmf_pt), (AudioCodec::Opus, 111, Some(110)));
        assert!(n.rtcp_mux);
        assert_eq!(n.remote_rtcp, n.remote);
        assert_eq!(n.direction, Direction::RecvOnly);
        let answer = write_answer(
            &LocalMedia {
                addr: "[::1]:30000".parse().expect("addr"),
                session_id: 7,
            },
            &n,
        );
        assert!(answer.contains("m=audio 30000 RTP/AVP 111 110\r\n"), "{answer}");
        assert!(answer.contains("a=rtpmap:111 opus/48000/2\r\n"), "{answer}");
        assert!(
            answer.contains("a=rtpmap:110 telephone-event/48000\r\n"),
            "{answer}"
        );
        assert!(answer.contains("c=IN IP6 ::1\r\n"), "{answer}");
        assert!(
            answer.contains("a=recvonly\r\n") && answer.contains("a=rtcp-mux\r\n"),
            "{answer}"
        );
        // The answer is itself an offer this parser reads back to the same choice.
        let back = AudioOffer::parse(&answer).expect("answer parses");
        assert_eq!(back.negotiate(&AudioCodec::ALL).expect("same").pt, 111);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("o=- 1 1 IN IP4 1.2.3.4\n", "starts with v=0"),
            ("v=0\nc=IN IP4 1.2.3.4\n", "no m=audio"),
            ("v=0\nm=audio 1 RTP/AVP 0\n", "no c= connection"),
            ("v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/SAVP 0\n", "SRTP"),
            ("v=0\nc=IN IP4 1.2.3.4\nm=audio x RTP/AVP 0\n", "bad port"),
            ("v=0\nc=IN IP4 nothost\nm=audio 1 RTP/AVP 0\n", "not an IP"),
            (
                "v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=rtpmap:96 foo\n",
                "no clock",
            ),
        ];
        for (sdp, want) in cases {
            let e = AudioOffer::parse(sdp).expect_err(sdp).to_string();
            assert!(e.contains(want), "{sdp:?}: {e}");
        }
        let o = AudioOffer::parse("v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 18 96\na=rtpmap:96 AMR/8000\n")
            .expect("parses");
        let e = o
            .negotiate(&AudioCodec::ALL)
            .expect_err("no common codec")
            .to_string();
        assert!(e.contains("18 G729") || e.contains("18 (no rtpmap)"), "{e}");
        assert!(e.contains("96 AMR/8000"), "{e}");
    }

    #[test]
    fn only_the_first_audio_stream_counts() {
        let sdp = "v=0\nc=IN IP4 10.0.0.1\nm=video 6000 RTP/AVP 96\nm=audio 7000 RTP/AVP 8\nm=audio 8000 RTP/AVP 0\n";
        let n = AudioOffer::parse(sdp)
            .expect("parses")
            .negotiate(&AudioCodec::ALL)
            .expect("negotiates");
        assert_eq!((n.remote.port(), n.codec), (7000, AudioCodec::Pcma));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,400}") {
            if let Ok(o) = AudioOffer::parse(&s) {
                let _ = o.negotiate(&AudioCodec::ALL);
            }
        }

        #[test]
        fn never_panics_on_line_shaped_noise(lines in proptest::collection::vec(
            ("[vocmat]", "[ -~]{0,40}"), 0..20)) {
            let mut s = String::from("v=0\n");
            for (k, v) in lines {
                s.push_str(&format!("{k}={v}\n"));
            }
            if let Ok(o) = AudioOffer::parse(&s) {
                let _ = o.negotiate(&AudioCodec::ALL);
            }
        }

        #[test]
        fn written_answers_parse_back(codec in 0usize..4, pt in 96u8..128, dtmf in proptest::option::of(96u8..128), port in 1u16..65535) {
            let codec = AudioCodec::ALL[codec];
            let pt = codec.static_pt().unwrap_or(pt);
            let dtmf = dtmf.filter(|d| *d != pt);
            let local = LocalMedia { addr: SocketAddr::from(([10, 1, 2, 3], port)), session_id: 1 };
            let sdp = write_description(&local, codec, pt, dtmf);
            let n = AudioOffer::parse(&sdp).expect("parses").negotiate(&AudioCodec::ALL).expect("negotiates");
            prop_assert_eq!((n.codec, n.pt, n.dtmf_pt, n.remote), (codec, pt, dtmf, local.addr));
        }
    }
}
