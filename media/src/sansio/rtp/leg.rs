//! The RTP leg's protocol state, sans-IO: what a caller's RTP session
//! decides, with the sockets and the clock left to the driver
//! (`crate::driver::rtp`).
//!
//! Datagrams go in with the time they arrived ([`RtpLeg::datagram`]); RTP
//! goes through the [`RtpReceiver`] (jitter buffer, concealment, RFC 4733)
//! and what it releases up to the [`Call`] ([`RtpLeg::forward`]); RTCP is
//! read for round-trip time, the peer's loss and BYE. Symmetric RTP latches
//! the send address to the first valid packet's source; later packets (and
//! RTCP) from elsewhere are dropped and counted. On each tick
//! ([`RtpLeg::tick`]) the leg checks for BYE and the media timeout, sends
//! overdue frames up, and encodes the call's frame (or a telephone-event
//! packet while a digit the bot asked for plays) into one datagram for the
//! driver to send; every 5 s an SR with a report block
//! ([`RtpLeg::poll_report`]) and the leg's figures go out.

use super::receiver::{FrameSource, RtpReceiver};
use super::sender::{encoder_for, RtpSender};
use crate::error::MediaError;
use crate::events::{HangupCause, RtpCallStats};
use crate::sansio::call::Call;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use voxbridge_codecs::Codec;
use voxbridge_proto::rtcp::{self, RtcpPacket};

/// RTCP report interval.
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Seconds from 1900 (NTP era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// Largest datagram built.
const DATAGRAM_MAX: usize = 2048;

/// How one RTP session was set up (from an SDP offer or plain parameters).
#[derive(Debug, Clone)]
pub struct RtpLegParams {
    /// Codec (PCM side: the rate decoded to).
    pub codec: Codec,
    /// RTP clock rate.
    pub clock: u32,
    /// Audio payload type.
    pub pt: u8,
    /// telephone-event payload type.
    pub dtmf_pt: Option<u8>,
    /// Where to send RTP (until latched).
    pub remote: Option<SocketAddr>,
    /// Where to send RTCP.
    pub remote_rtcp: Option<SocketAddr>,
    /// Symmetric RTP.
    pub symmetric: bool,
    /// Hang up when nothing arrives for this long.
    pub media_timeout: Duration,
    /// Opus encoder complexity (0-10).
    pub opus_complexity: u8,
    /// Opus in-band FEC in what voxbridge sends.
    pub opus_fec: bool,
    /// RTCP shares the RTP port (RFC 5761).
    pub rtcp_mux: bool,
}

/// Where the tick's datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickPacket {
    /// Send [`RtpLeg::packet`] to this address.
    To(SocketAddr),
    /// No address yet (symmetric RTP before the caller's first packet).
    NoAddress,
    /// The frame could not be encoded: lost, counted.
    Lost,
    /// On hold: the caller's SDP takes no media from us (`sendonly` or
    /// `inactive`), so nothing is sent (RFC 3264 section 8.4).
    Held,
}

/// A due RTCP report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Where to send [`RtpLeg::rtcp_packet`] (none known yet: not sent).
    pub to: Option<SocketAddr>,
    /// The leg's figures at the report.
    pub stats: RtpCallStats,
}

/// One RTP leg's protocol state (see the module docs).
pub struct RtpLeg {
    params: RtpLegParams,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    latched: bool,
    rx: RtpReceiver,
    tx: RtpSender,
    origin: Instant,
    /// Wall-clock time at `origin`.
    wall_origin: SystemTime,
    pcm: Vec<i16>,
    out: Vec<u8>,
    rtcp_out: Vec<u8>,
    last_rx: Instant,
    next_rtcp: Instant,
    /// LSR (middle 32 bits of the peer's last SR) and when it came.
    last_sr: Option<(u32, Instant)>,
    rtt_ms: Option<u32>,
    remote_fraction_lost: Option<u8>,
    cname: Vec<u8>,
    packets_out: u64,
    bad_source: u64,
    rtcp_in: u64,
    bye: bool,
    /// On hold (see [`RtpLeg::set_hold`]).
    held: bool,
}

/// The NTP timestamp of `wall` (RFC 3550: seconds since 1900, 32.32).
pub fn ntp_of(wall: SystemTime) -> u64 {
    let d = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// RTCP packet types are 200-204 in the second byte (RFC 5761 4).
pub fn is_rtcp(d: &[u8]) -> bool {
    d.len() >= 2 && (200..=204).contains(&d[1])
}

impl RtpLeg {
    /// A leg set up at `now` (wall-clock `wall`: RTCP's NTP times are
    /// `wall` plus the monotonic time since, so no clock is read per packet);
    /// `seed` gives the SSRC, initial sequence and timestamp (random in
    /// production, fixed in tests).
    pub fn new(
        params: RtpLegParams,
        seed: u64,
        call_id: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Self, MediaError> {
        Ok(RtpLeg {
            rx: RtpReceiver::new(params.codec, params.clock, params.pt, params.dtmf_pt)?,
            tx: RtpSender::with_encoder(
                params.codec,
                encoder_for(params.codec, params.opus_complexity, params.opus_fec)?,
                params.clock,
                params.pt,
                params.dtmf_pt,
                seed,
            ),
            remote: params.remote,
            remote_rtcp: params.remote_rtcp,
            latched: false,
            origin: now,
            wall_origin: wall,
            pcm: vec![0; params.codec.frame_samples()],
            // The header and one frame (it grows, once, should a packet need more).
            out: Vec::with_capacity(12 + params.codec.frame_bytes().unwrap_or(DATAGRAM_MAX)),
            rtcp_out: Vec::new(),
            last_rx: now,
            next_rtcp: now + RTCP_INTERVAL,
            last_sr: None,
            rtt_ms: None,
            remote_fraction_lost: None,
            cname: format!("voxbridge-{call_id}").into_bytes(),
            packets_out: 0,
            bad_source: 0,
            rtcp_in: 0,
            bye: false,
            held: false,
            params,
        })
    }

    /// The caller put the call on hold (`true`: its offer was `sendonly` or
    /// `inactive`) or resumed it. On hold nothing is sent to the caller and
    /// the media timeout waits (a held caller may send nothing at all);
    /// on resume the timeout counts from `now`.
    pub fn set_hold(&mut self, held: bool, now: Instant) {
        if self.held && !held {
            self.last_rx = now;
        }
        self.held = held;
    }

    /// The call changed codec (a SIP re-INVITE whose offer the call
    /// answered with another codec): from now on the caller's RTP is read,
    /// and voxbridge's written, as `codec` on `pt` at `clock` with DTMF on
    /// `dtmf_pt` (see [`RtpReceiver::switch_codec`] and
    /// [`RtpSender::switch_codec`]); the leg's figures go on. The call's
    /// PCM rate becomes [`RtpLeg::pcm_rate`]: the driver tells the call.
    /// Fails (and nothing changes) when the codec cannot be set up.
    pub fn switch_codec(
        &mut self,
        codec: Codec,
        clock: u32,
        pt: u8,
        dtmf_pt: Option<u8>,
    ) -> Result<(), MediaError> {
        let encoder = encoder_for(codec, self.params.opus_complexity, self.params.opus_fec)?;
        self.rx.switch_codec(codec, clock, pt, dtmf_pt)?;
        self.tx.switch_codec(codec, encoder, clock, pt, dtmf_pt);
        self.pcm = vec![0; codec.frame_samples()];
        let need = 12 + codec.frame_bytes().unwrap_or(DATAGRAM_MAX);
        self.out.reserve(need.saturating_sub(self.out.len()));
        self.params.codec = codec;
        self.params.clock = clock;
        self.params.pt = pt;
        self.params.dtmf_pt = dtmf_pt;
        Ok(())
    }

    /// True while on hold.
    pub fn held(&self) -> bool {
        self.held
    }

    /// The session's parameters.
    pub fn params(&self) -> &RtpLegParams {
        &self.params
    }

    /// The caller's PCM rate.
    pub fn pcm_rate(&self) -> u32 {
        self.params.codec.pcm_rate()
    }

    /// Wall-clock time at `now`.
    fn wall(&self, now: Instant) -> SystemTime {
        self.wall_origin + now.saturating_duration_since(self.origin)
    }

    /// `at` in RTP clock units since the leg started.
    fn units(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        (d.as_nanos() * self.params.clock as u128 / 1_000_000_000) as u64
    }

    /// One datagram on the RTP port from `from`, arrived at `arrival`:
    /// RTCP (packet type 200-204, RFC 5761) or RTP.
    pub fn datagram(&mut self, d: &[u8], from: SocketAddr, arrival: Instant, now: Instant) {
        if !is_rtcp(d) {
            self.rtp(d, from, arrival, now);
        } else {
            self.rtcp_from(d, from, now);
        }
    }

    /// One datagram on the separate RTCP port: anything but RTCP is counted
    /// and dropped.
    pub fn rtcp_port_datagram(&mut self, d: &[u8], from: SocketAddr, now: Instant) {
        if is_rtcp(d) {
            self.rtcp_from(d, from, now);
        } else {
            self.bad_source += 1;
        }
    }

    fn rtcp_from(&mut self, d: &[u8], from: SocketAddr, now: Instant) {
        if self.foreign(from.ip()) {
            self.bad_source += 1;
            return;
        }
        if self.params.symmetric {
            // Symmetric RTCP: answer where reports come from.
            self.remote_rtcp = Some(from);
        }
        self.rtcp(d, now);
    }

    /// With symmetric RTP latched, RTCP from another host is not the
    /// caller's (a spoofed BYE must not end the call): dropped and counted.
    fn foreign(&self, ip: std::net::IpAddr) -> bool {
        self.params.symmetric && self.latched && self.remote.is_some_and(|r| r.ip() != ip)
    }

    fn rtp(&mut self, d: &[u8], from: SocketAddr, arrival: Instant, now: Instant) {
        if self.params.symmetric && self.latched && Some(from) != self.remote {
            self.bad_source += 1;
            return;
        }
        match self.rx.datagram(d, self.units(arrival)) {
            Ok(_) => {
                self.last_rx = now;
                if self.params.symmetric && !self.latched {
                    self.latched = true;
                    self.remote = Some(from);
                    if self.params.rtcp_mux {
                        // rtcp-mux: RTCP goes where RTP goes.
                        self.remote_rtcp = Some(from);
                    } else if self.remote_rtcp.is_none() {
                        self.remote_rtcp = Some(SocketAddr::new(from.ip(), from.port().wrapping_add(1)));
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "bad RTP datagram dropped");
            }
        }
    }

    fn rtcp(&mut self, d: &[u8], now: Instant) {
        let data = bytes::Bytes::copy_from_slice(d);
        let Ok(pkts) = rtcp::parse_compound(&data) else {
            self.bad_source += 1;
            return;
        };
        self.rtcp_in += 1;
        self.last_rx = now;
        let arrival_ntp = ntp_of(self.wall(now));
        for p in pkts {
            let blocks = match p {
                RtcpPacket::SenderReport { info, reports, .. } => {
                    self.last_sr = Some((rtcp::ntp_middle(info.ntp), now));
                    reports
                }
                RtcpPacket::ReceiverReport { reports, .. } => reports,
                RtcpPacket::Bye { ssrcs, .. } => {
                    if self.rx.remote_ssrc().is_none_or(|s| ssrcs.contains(&s)) {
                        self.bye = true;
                    }
                    continue;
                }
                _ => continue,
            };
            let ours = self.tx.ssrc();
            for b in blocks.iter().filter(|b| b.ssrc == ours) {
                self.remote_fraction_lost = Some(b.fraction_lost);
                self.tx.set_expected_loss(b.fraction_lost);
                if let Some(rtt) = rtcp::round_trip(b, arrival_ntp) {
                    self.rtt_ms = Some((rtt as u64 * 1000 / 65536) as u32);
                }
            }
        }
    }

    /// The caller sent RTCP BYE: the call ends (`caller_hangup`).
    pub fn hung_up(&self) -> Option<HangupCause> {
        self.bye.then_some(HangupCause::CallerHangup)
    }

    /// Sends the call what can go now: the caller's digits, then every frame
    /// the receiver releases (concealment included).
    pub fn forward(&mut self, call: &mut Call, now: Instant) {
        while let Some(d) = self.rx.poll_digit() {
            call.caller_digit(d, now);
        }
        let units = self.units(now);
        while let Some(source) = self.rx.frame(units, &mut self.pcm) {
            call.caller_pcm(&self.pcm, source == FrameSource::Concealed, now);
        }
    }

    /// The leg's part of a tick: BYE or the media timeout end the call;
    /// otherwise what is overdue goes up, the digits the bot asked for are
    /// queued, and the call's frame is encoded into [`RtpLeg::packet`].
    /// The driver sends it and reports with [`RtpLeg::sent`].
    pub fn tick(&mut self, call: &mut Call, now: Instant) -> Result<TickPacket, HangupCause> {
        if let Some(cause) = self.hung_up() {
            return Err(cause);
        }
        if !self.held && now.saturating_duration_since(self.last_rx) > self.params.media_timeout {
            tracing::info!(
                call_id = call.call_id(),
                "no media for {:?}",
                self.params.media_timeout
            );
            return Err(HangupCause::MediaTimeout);
        }
        // Up: what is overdue (a gap given up on, concealment of a late or
        // silent stream); nothing goes up before the caller's first packet.
        self.forward(call, now);
        // Down: one packet to the caller.
        while let Some(d) = call.poll_digit_out() {
            if !self.tx.queue_digit(d) {
                tracing::debug!(call_id = call.call_id(), digit = %d, "no telephone-event negotiated; digit dropped");
            }
        }
        let frame = call.take_caller_frame();
        if self.held {
            return Ok(TickPacket::Held);
        }
        if self.tx.frame(frame, &mut self.out).is_err() {
            return Ok(TickPacket::Lost);
        }
        Ok(match self.remote {
            Some(to) => TickPacket::To(to),
            None => TickPacket::NoAddress,
        })
    }

    /// The tick's datagram.
    pub fn packet(&self) -> &[u8] {
        &self.out
    }

    /// The tick's datagram left (`true`) or the socket could not take it.
    pub fn sent(&mut self, sent: bool) {
        self.packets_out += sent as u64;
    }

    /// Every [`RTCP_INTERVAL`]: an SR with a report block on the caller's
    /// stream in [`RtpLeg::rtcp_packet`], to send where the report says, and
    /// the leg's figures (also given to the call for the sink). `None` when
    /// no report is due.
    pub fn poll_report(&mut self, call: &mut Call, now: Instant) -> Option<Report> {
        if now < self.next_rtcp {
            return None;
        }
        self.next_rtcp += RTCP_INTERVAL;
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (
                lsr,
                (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
            ),
            None => (0, 0),
        };
        let block = self.rx.report(lsr, dlsr);
        self.tx
            .sender_report(ntp_of(self.wall(now)), block, &self.cname, &mut self.rtcp_out);
        let stats = self.stats();
        call.rtp_stats(stats);
        Some(Report {
            to: self.remote_rtcp,
            stats,
        })
    }

    /// The RTCP compound [`RtpLeg::poll_report`] or [`RtpLeg::bye`] built.
    pub fn rtcp_packet(&self) -> &[u8] {
        &self.rtcp_out
    }

    /// The call ends: an RTCP BYE to send to the returned address, and the
    /// leg's last figures (given to the call).
    pub fn bye(&mut self, call: &mut Call, now: Instant) -> Option<SocketAddr> {
        self.tx
            .bye(ntp_of(self.wall(now)), &self.cname, &mut self.rtcp_out);
        call.rtp_stats(self.stats());
        self.remote_rtcp
    }

    /// Where RTCP goes on the shared port: with rtcp-mux on the RTP port.
    pub fn rtcp_mux(&self) -> bool {
        self.params.rtcp_mux
    }

    /// The leg's figures.
    pub fn stats(&self) -> RtpCallStats {
        let c = self.rx.counters();
        let (jb, target) = self.rx.jitter();
        let (lost, jitter) = self.rx.loss_and_jitter();
        RtpCallStats {
            packets_received: c.packets,
            packets_lost: lost,
            jitter_ms: (jitter as u64 * 1000 / self.params.clock.max(1) as u64) as u32,
            jitter_buffer_ms: target,
            late: jb.late,
            duplicates: jb.duplicates,
            concealed_frames: c.concealed_frames,
            malformed: c.malformed + c.unknown_pt + self.bad_source,
            rtt_ms: self.rtt_ms,
            remote_fraction_lost: self.remote_fraction_lost,
            packets_sent: self.packets_out,
        }
    }

    /// Jitter buffer counters (lost, late, duplicates) for the metrics.
    pub fn jitter_counters(&self) -> crate::sansio::jitter::JitterStats {
        self.rx.jitter().0
    }

    /// RTCP packets received.
    pub fn rtcp_in(&self) -> u64 {
        self.rtcp_in
    }
}
