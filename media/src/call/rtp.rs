//! The RTP caller leg: one UDP socket pair per session (RTP on an even port,
//! RTCP on the next, or one socket with rtcp-mux), or a slot on the shared
//! port (`crate::net::shared_port`).
//!
//! Own sockets: on readiness every datagram queued on the socket is read in
//! one wake-up (`try_recv_from` until it would block) and put into the
//! jitter buffer. A separate RTCP socket is drained on the tick (reports
//! come every few seconds). Shared port: the hub has already read and
//! routed the datagrams and wakes the call, which empties the slot's inbox
//! (arrival times as the hub stamped them); outgoing packets go to the hub,
//! which sends many calls' packets in one `sendmmsg`. Either way, caller
//! digits and every frame the jitter buffer releases go up to the bot in
//! the same wake-up (in-order packets at once, no wait for the tick); the
//! tick conceals what is overdue and sends the playout frame as one RTP
//! packet (or a telephone-event packet while a digit the bot asked for
//! plays). An SR with
//! a report block goes out every 5 s together with a `RtpStats` event.
//! Symmetric RTP latches the send address to the first valid packet's
//! source; later packets from elsewhere are dropped and counted.

use super::{drive, start_core, CallContext, Core, Leg};
use crate::error::MediaError;
use crate::events::{CallEvent, CallInfo, HangupCause, RtpCallStats};
use crate::net::shared_port::Attachment;
use crate::rtp::receiver::{FrameSource, RtpReceiver};
use crate::rtp::sender::{encoder_for, RtpSender};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use voxbridge_codecs::Codec;
use voxbridge_proto::rtcp::{self, RtcpPacket};

/// RTCP report interval.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Receive buffer: one datagram (jumbo frames are not expected on a voice leg).
const DATAGRAM_MAX: usize = 2048;
/// Seconds from 1900 (NTP era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

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

/// Where a leg's datagrams come from and go to.
pub enum LegIo {
    /// Its own RTP socket and, without rtcp-mux, its own RTCP socket.
    Own {
        /// RTP (and muxed RTCP).
        rtp: UdpSocket,
        /// RTCP on the next port.
        rtcp: Option<UdpSocket>,
    },
    /// A slot on the shared port.
    Shared(Attachment),
}

pub(crate) struct RtpLeg {
    io: LegIo,
    params: RtpLegParams,
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    latched: bool,
    rx: RtpReceiver,
    tx: RtpSender,
    origin: Instant,
    rbuf: Vec<u8>,
    pcm: Vec<i16>,
    out: Vec<u8>,
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
    folded: Folded,
    bye: bool,
}

/// Totals already added to the shared metrics.
#[derive(Default)]
struct Folded {
    packets_in: u64,
    packets_out: u64,
    malformed: u64,
    lost: u64,
    late: u64,
    duplicates: u64,
    rtcp_in: u64,
}

/// Runs one RTP call to its end (the sockets are bound, or the slot
/// attached, by the session registry).
pub async fn run(
    io: LegIo,
    params: RtpLegParams,
    info: CallInfo,
    ctx: CallContext,
    stop: watch::Receiver<Option<HangupCause>>,
) {
    let seed = seed_from(&info.call_id);
    let call_id = info.call_id.clone();
    let leg = match build(io, params, seed, &call_id) {
        Ok(l) => l,
        Err(e) => {
            // Codec parameters were validated when the session was created.
            tracing::error!(call_id, error = %e, "cannot build the RTP leg");
            return;
        }
    };
    let Some(core) = start_core(info, ctx, leg.params.codec.pcm_rate()) else {
        return;
    };
    drive(core, Leg::Rtp(Box::new(leg)), Some(stop)).await;
}

fn build(io: LegIo, params: RtpLegParams, seed: u64, call_id: &str) -> Result<RtpLeg, MediaError> {
    let now = Instant::now();
    Ok(RtpLeg {
        rx: RtpReceiver::new(params.codec, params.clock, params.pt, params.dtmf_pt)?,
        tx: RtpSender::with_encoder(
            encoder_for(params.codec, params.opus_complexity, params.opus_fec)?,
            params.clock,
            params.pt,
            params.dtmf_pt,
            seed,
        ),
        io,
        remote: params.remote,
        remote_rtcp: params.remote_rtcp,
        latched: false,
        origin: now,
        rbuf: vec![0; DATAGRAM_MAX],
        pcm: vec![0; params.codec.frame_samples()],
        out: Vec::with_capacity(DATAGRAM_MAX),
        last_rx: now,
        next_rtcp: now + RTCP_INTERVAL,
        last_sr: None,
        rtt_ms: None,
        remote_fraction_lost: None,
        cname: format!("voxbridge-{call_id}").into_bytes(),
        packets_out: 0,
        bad_source: 0,
        rtcp_in: 0,
        folded: Folded::default(),
        bye: false,
        params,
    })
}

/// SSRC, initial sequence and timestamp: random per RFC 3550, from the OS
/// hasher's random keys mixed with the call id and the clock.
fn seed_from(call_id: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(call_id.as_bytes());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

fn ntp_now() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// RTCP packet types are 200-204 in the second byte (RFC 5761 4).
fn is_rtcp(d: &[u8]) -> bool {
    d.len() >= 2 && (200..=204).contains(&d[1])
}

impl RtpLeg {
    /// `now` in RTP clock units since the leg started.
    fn units(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.origin);
        (d.as_nanos() * self.params.clock as u128 / 1_000_000_000) as u64
    }

    /// Waits for RTP on the leg's own socket, or for the hub to put some in
    /// the shared port's inbox. The RTCP socket (reports every few seconds)
    /// is not waited on: the tick drains it, which keeps one readiness future
    /// per call in the hot loop instead of two.
    pub(super) async fn ready(&mut self) -> Result<(), HangupCause> {
        match &self.io {
            LegIo::Own { rtp, .. } => rtp.readable().await.map_err(|_| HangupCause::CallerGone),
            LegIo::Shared(slot) => {
                slot.arrived().await;
                Ok(())
            }
        }
    }

    pub(super) fn input(&mut self, core: &mut Core, now: Instant) -> Result<(), HangupCause> {
        if matches!(self.io, LegIo::Own { .. }) {
            self.read_own(core, now);
        } else {
            self.drain(core, now);
        }
        self.forward(core, now);
        if self.bye {
            return Err(HangupCause::CallerHangup);
        }
        Ok(())
    }

    /// Reads the leg's own RTP socket until it would block.
    fn read_own(&mut self, core: &mut Core, now: Instant) {
        let arrival = self.units(now);
        let mut rbuf = std::mem::take(&mut self.rbuf);
        // Until WouldBlock: all read. Any other error (an ICMP error from an
        // earlier send) is not fatal; the socket stays ready, so what is left
        // is read on the next turn instead of spinning here.
        while let LegIo::Own { rtp, .. } = &self.io {
            let Ok((n, from)) = rtp.try_recv_from(&mut rbuf) else {
                break;
            };
            self.datagram(core, &rbuf[..n], from, arrival, now);
        }
        self.rbuf = rbuf;
    }

    /// Sends the bot what can go now: the caller's digits, then every frame
    /// the receiver releases (concealment included).
    fn forward(&mut self, core: &mut Core, now: Instant) {
        while let Some(d) = self.rx.poll_digit() {
            core.caller_digit(d);
        }
        let units = self.units(now);
        while let Some(source) = self.rx.frame(units, &mut self.pcm) {
            core.counters.frames_in += 1;
            if source == FrameSource::Concealed {
                core.counters.frames_concealed += 1;
            }
            core.caller_pcm(&self.pcm);
        }
        core.flush_up(now);
    }

    /// One datagram from `from`: RTCP (packet type 200-204, RFC 5761) or RTP.
    fn datagram(&mut self, core: &mut Core, d: &[u8], from: SocketAddr, arrival: u64, now: Instant) {
        if !is_rtcp(d) {
            self.rtp(core, d, from, arrival, now);
        } else if self.foreign(from.ip()) {
            self.bad_source += 1;
        } else {
            if self.params.symmetric {
                // Symmetric RTCP: answer where reports come from.
                self.remote_rtcp = Some(from);
            }
            self.rtcp(core, d, now);
        }
    }

    /// With symmetric RTP latched, RTCP from another host is not the
    /// caller's (a spoofed BYE must not end the call): dropped and counted.
    fn foreign(&self, ip: std::net::IpAddr) -> bool {
        self.params.symmetric && self.latched && self.remote.is_some_and(|r| r.ip() != ip)
    }

    /// What arrived outside `input`: the reports queued on the leg's own
    /// RTCP socket, or everything in the shared port's inbox.
    fn drain(&mut self, core: &mut Core, now: Instant) {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        loop {
            match &self.io {
                LegIo::Own { rtcp: Some(r), .. } => {
                    let Ok((n, from)) = r.try_recv_from(&mut rbuf) else {
                        break;
                    };
                    if is_rtcp(&rbuf[..n]) {
                        self.datagram(core, &rbuf[..n], from, 0, now);
                    } else {
                        self.bad_source += 1;
                    }
                }
                LegIo::Own { rtcp: None, .. } => break,
                LegIo::Shared(slot) => {
                    let Some(p) = slot.pop() else { break };
                    let arrival = self.units(p.at);
                    self.datagram(core, p.bytes(), p.from, arrival, now);
                    if let LegIo::Shared(slot) = &self.io {
                        slot.recycle(p);
                    }
                }
            }
        }
        self.rbuf = rbuf;
    }

    fn rtp(&mut self, core: &mut Core, d: &[u8], from: SocketAddr, arrival: u64, now: Instant) {
        if self.params.symmetric && self.latched && Some(from) != self.remote {
            self.bad_source += 1;
            return;
        }
        match self.rx.datagram(d, arrival) {
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
                tracing::debug!(call_id = core.info.call_id, error = %e, "bad RTP datagram dropped");
            }
        }
    }

    fn rtcp(&mut self, core: &mut Core, d: &[u8], now: Instant) {
        let data = bytes::Bytes::copy_from_slice(d);
        let Ok(pkts) = rtcp::parse_compound(&data) else {
            self.bad_source += 1;
            return;
        };
        self.rtcp_in += 1;
        self.last_rx = now;
        let arrival_ntp = ntp_now();
        for p in pkts {
            let blocks = match p {
                RtcpPacket::SenderReport { info, reports, .. } => {
                    self.last_sr = Some((rtcp::ntp_middle(info.ntp), now));
                    reports
                }
                RtcpPacket::ReceiverReport { reports, .. } => reports,
                RtcpPacket::Bye { ssrcs, .. } => {
                    if self.rx.remote_ssrc().is_none_or(|s| ssrcs.contains(&s)) {
                        tracing::info!(call_id = core.info.call_id, "RTCP BYE from the caller");
                        self.bye = true;
                    }
                    continue;
                }
                _ => continue,
            };
            for b in blocks.iter().filter(|b| b.ssrc == self.tx.ssrc()) {
                self.remote_fraction_lost = Some(b.fraction_lost);
                if let Some(rtt) = rtcp::round_trip(b, arrival_ntp) {
                    self.rtt_ms = Some((rtt as u64 * 1000 / 65536) as u32);
                }
            }
        }
    }

    pub(super) fn tick(&mut self, core: &mut Core, now: Instant) -> Result<(), HangupCause> {
        self.drain(core, now);
        if self.bye {
            return Err(HangupCause::CallerHangup);
        }
        if now.saturating_duration_since(self.last_rx) > self.params.media_timeout {
            tracing::info!(
                call_id = core.info.call_id,
                "no media for {:?}",
                self.params.media_timeout
            );
            return Err(HangupCause::MediaTimeout);
        }
        // Up: what is overdue (a gap given up on, concealment of a late or
        // silent stream); nothing goes up before the caller's first packet.
        self.forward(core, now);
        // Down: one packet to the caller.
        for d in core.digits_out.drain(..) {
            if !self.tx.queue_digit(d) {
                tracing::debug!(call_id = core.info.call_id, digit = %d, "no telephone-event negotiated; digit dropped");
            }
        }
        let (frame, _fill) = core.pipeline.tick();
        if self.tx.frame(frame, &mut self.out).is_err() {
            core.counters.frames_lost += 1;
            return Ok(());
        }
        // No address yet: a symmetric session that has not heard from the caller.
        if let Some(to) = self.remote {
            let sent = match &self.io {
                LegIo::Own { rtp, .. } => rtp.try_send_to(&self.out, to).is_ok(),
                LegIo::Shared(slot) => slot.send_rtp(&self.out, to),
            };
            if sent {
                core.counters.frames_out += 1;
                self.packets_out += 1;
            } else {
                // A full socket buffer or send queue drops the frame; the
                // clock goes on.
                core.counters.frames_lost += 1;
            }
        }
        if now >= self.next_rtcp {
            self.next_rtcp += RTCP_INTERVAL;
            self.send_report(core, now);
        }
        Ok(())
    }

    fn send_report(&mut self, core: &Core, now: Instant) {
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (
                lsr,
                (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
            ),
            None => (0, 0),
        };
        let block = self.rx.report(lsr, dlsr);
        self.tx
            .sender_report(ntp_now(), block, &self.cname, &mut self.out);
        self.send_rtcp();
        let stats = self.stats();
        let m = &core.ctx.metrics.rtp;
        if stats.packets_received > 0 {
            m.jitter_seconds
                .observe(Duration::from_millis(stats.jitter_ms as u64));
        }
        if let Some(rtt) = stats.rtt_ms {
            m.rtt_seconds.observe(Duration::from_millis(rtt as u64));
        }
        core.ctx.sink.emit(CallEvent::RtpStats {
            call_id: core.info.call_id.clone(),
            stats,
        });
    }

    fn send_rtcp(&self) {
        if let Some(to) = self.remote_rtcp {
            match &self.io {
                LegIo::Own { rtp, rtcp } => {
                    let _ = rtcp.as_ref().unwrap_or(rtp).try_send_to(&self.out, to);
                }
                LegIo::Shared(slot) => slot.send_rtcp(&self.out, to, self.params.rtcp_mux),
            }
        }
    }

    fn stats(&self) -> RtpCallStats {
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

    pub(super) fn fold(&mut self, core: &Core) {
        let s = self.stats();
        let (jb, _) = self.rx.jitter();
        let r = &core.ctx.metrics.rtp;
        let f = &mut self.folded;
        let add = |a: &std::sync::atomic::AtomicU64, now: u64, before: &mut u64| {
            if now > *before {
                a.fetch_add(now - *before, Relaxed);
                *before = now;
            }
        };
        add(&r.packets_in, s.packets_received, &mut f.packets_in);
        add(&r.packets_out, s.packets_sent, &mut f.packets_out);
        add(&r.malformed, s.malformed, &mut f.malformed);
        add(&r.lost, jb.lost, &mut f.lost);
        add(&r.late, jb.late, &mut f.late);
        add(&r.duplicates, jb.duplicates, &mut f.duplicates);
        add(&r.rtcp_in, self.rtcp_in, &mut f.rtcp_in);
    }

    pub(super) fn finish(&mut self, core: &Core) {
        self.tx.bye(ntp_now(), &self.cname, &mut self.out);
        self.send_rtcp();
        core.ctx.sink.emit(CallEvent::RtpStats {
            call_id: core.info.call_id.clone(),
            stats: self.stats(),
        });
    }
}
