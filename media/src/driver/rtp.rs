//! The RTP caller leg's I/O: one UDP socket pair per session (RTP on an
//! even port, RTCP on the next, or one socket with rtcp-mux), or a slot on
//! the shared port (`crate::driver::net::shared_port`). What the session
//! decides (latching, the media timeout, RTCP, the jitter buffer) is the
//! sans-IO [`RtpLeg`](crate::sansio::rtp::leg::RtpLeg); this file reads,
//! stamps, hands in and sends.
//!
//! Own sockets: on readiness every datagram queued on the socket is read in
//! one wake-up (`try_recv_from` until it would block). A separate RTCP
//! socket is drained on the tick (reports come every few seconds). Shared
//! port: the hub has already read and routed the datagrams and wakes the
//! call, which empties the slot's inbox (arrival times as the hub stamped
//! them); outgoing packets go to the hub, which sends many calls' packets
//! in one `sendmmsg`. Either way, caller digits and every frame the jitter
//! buffer releases go up to the bot in the same wake-up.

use super::call_task::{drive, start_call, CallContext, Leg};
use super::net::shared_port::Attachment;
use crate::events::{CallInfo, HangupCause};
use crate::metrics::Metrics;
use crate::sansio::call::{Call, FrameOutcome, Tick};
use crate::sansio::rtp::leg::{RtpLeg as LegState, TickPacket};
use crate::sansio::rtp::receiver::pcm_codec;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

pub use crate::sansio::rtp::leg::RtpLegParams;

/// Receive buffer: one datagram (jumbo frames are not expected on a voice leg).
const DATAGRAM_MAX: usize = 2048;

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
    state: LegState,
    metrics: Arc<Metrics>,
    rbuf: Vec<u8>,
    folded: Folded,
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
    stop: crate::commands::CallControl,
) {
    // Built outside the future's await point, so the task holds the call
    // and the leg once, boxed (see `start_call`).
    let Some((call, leg)) = prepare(io, params, info, &ctx) else {
        return;
    };
    drive(call, leg, ctx, Some(stop)).await;
}

fn prepare(io: LegIo, params: RtpLegParams, info: CallInfo, ctx: &CallContext) -> Option<(Box<Call>, Leg)> {
    let seed = seed_from(&info.call_id);
    let state = match LegState::new(params, seed, &info.call_id, Instant::now(), SystemTime::now()) {
        Ok(l) => l,
        Err(e) => {
            // Codec parameters were validated when the session was created.
            tracing::error!(call_id = info.call_id, error = %e, "cannot build the RTP leg");
            return None;
        }
    };
    let call = start_call(info, ctx, state.pcm_rate())?;
    // Only a leg with its own sockets reads into a buffer of its own; on the
    // shared port the hub's buffers carry the datagrams.
    let rbuf = match io {
        LegIo::Own { .. } => vec![0; DATAGRAM_MAX],
        LegIo::Shared(_) => Vec::new(),
    };
    let leg = RtpLeg {
        io,
        state,
        metrics: ctx.metrics.clone(),
        rbuf,
        folded: Folded::default(),
    };
    Some((call, Leg::Rtp(Box::new(leg))))
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

impl RtpLeg {
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

    pub(super) fn input(&mut self, call: &mut Call, now: Instant) -> Result<(), HangupCause> {
        if matches!(self.io, LegIo::Own { .. }) {
            self.read_own(now);
        } else {
            self.drain(now);
        }
        self.state.forward(call, now);
        match self.state.hung_up() {
            Some(cause) => {
                tracing::info!(call_id = call.call_id(), "RTCP BYE from the caller");
                Err(cause)
            }
            None => Ok(()),
        }
    }

    /// Reads the leg's own RTP socket until it would block.
    fn read_own(&mut self, now: Instant) {
        // Until WouldBlock: all read. Any other error (an ICMP error from an
        // earlier send) is not fatal; the socket stays ready, so what is left
        // is read on the next turn instead of spinning here.
        while let LegIo::Own { rtp, .. } = &self.io {
            let Ok((n, from)) = rtp.try_recv_from(&mut self.rbuf) else {
                break;
            };
            self.state.datagram(&self.rbuf[..n], from, now, now);
        }
    }

    /// What arrived outside `input`: the reports queued on the leg's own
    /// RTCP socket, or everything in the shared port's inbox.
    fn drain(&mut self, now: Instant) {
        loop {
            match &self.io {
                LegIo::Own { rtcp: Some(r), .. } => {
                    let Ok((n, from)) = r.try_recv_from(&mut self.rbuf) else {
                        break;
                    };
                    self.state.rtcp_port_datagram(&self.rbuf[..n], from, now);
                }
                LegIo::Own { rtcp: None, .. } => break,
                LegIo::Shared(slot) => {
                    let Some(p) = slot.pop() else { break };
                    self.state.datagram(p.bytes(), p.from, p.at, now);
                    slot.recycle(p);
                }
            }
        }
    }

    /// The caller held (`true`) or resumed the call (SIP re-INVITE).
    pub(super) fn set_hold(&mut self, held: bool, now: Instant) {
        self.state.set_hold(held, now);
    }

    /// The call's media changed codec (SIP re-INVITE): the leg switches, and
    /// the call takes the new PCM rate. A codec that cannot be set up ends
    /// the call (`unsupported_audio`).
    pub(super) fn set_format(&mut self, call: &mut Call, format: crate::sansio::rtp::RtpFormat) {
        let codec = pcm_codec(format.codec, call.bot_rate());
        match self
            .state
            .switch_codec(codec, format.codec.rtp_clock(), format.pt, format.dtmf_pt)
        {
            Ok(()) => {
                tracing::info!(
                    call_id = call.call_id(),
                    codec = format.codec.encoding_name(),
                    pt = format.pt,
                    "RTP: the call changed codec"
                );
                call.set_caller_rate(codec.pcm_rate());
            }
            Err(e) => {
                tracing::warn!(call_id = call.call_id(), error = %e, "RTP: the new codec cannot be set up");
                call.hang_up(HangupCause::UnsupportedAudio);
            }
        }
    }

    pub(super) fn tick(&mut self, call: &mut Call, tick: Tick, now: Instant) -> Result<(), HangupCause> {
        self.drain(now);
        let outcome = match self.state.tick(call, now)? {
            TickPacket::To(to) => {
                let sent = match &self.io {
                    LegIo::Own { rtp, .. } => rtp.try_send_to(self.state.packet(), to).is_ok(),
                    LegIo::Shared(slot) => slot.send_rtp(self.state.packet(), to),
                };
                self.state.sent(sent);
                // A full socket buffer or send queue drops the frame; the
                // clock goes on.
                if sent {
                    FrameOutcome::Sent
                } else {
                    FrameOutcome::Lost
                }
            }
            // Nothing to send to (no address yet, or the caller holds the
            // call): the frame is not lost, it has no one to go to.
            TickPacket::NoAddress | TickPacket::Held => FrameOutcome::NoAddress,
            TickPacket::Lost => FrameOutcome::Lost,
        };
        call.caller_frame_done(outcome, tick);
        if tick.fold {
            self.fold();
        }
        if let Some(report) = self.state.poll_report(call, now) {
            if let Some(to) = report.to {
                self.send_rtcp(to);
            }
            let m = &self.metrics.rtp;
            if report.stats.packets_received > 0 {
                m.jitter_seconds
                    .observe(Duration::from_millis(report.stats.jitter_ms as u64));
            }
            if let Some(rtt) = report.stats.rtt_ms {
                m.rtt_seconds.observe(Duration::from_millis(rtt as u64));
            }
        }
        Ok(())
    }

    fn send_rtcp(&self, to: std::net::SocketAddr) {
        let packet = self.state.rtcp_packet();
        match &self.io {
            LegIo::Own { rtp, rtcp } => {
                let _ = rtcp.as_ref().unwrap_or(rtp).try_send_to(packet, to);
            }
            LegIo::Shared(slot) => slot.send_rtcp(packet, to, self.state.rtcp_mux()),
        }
    }

    fn fold(&mut self) {
        let s = self.state.stats();
        let jb = self.state.jitter_counters();
        let r = &self.metrics.rtp;
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
        add(&r.rtcp_in, self.state.rtcp_in(), &mut f.rtcp_in);
    }

    pub(super) fn finish(&mut self, call: &mut Call) {
        if let Some(to) = self.state.bye(call, Instant::now()) {
            self.send_rtcp(to);
        }
        self.fold();
    }
}
