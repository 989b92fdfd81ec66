//! The AudioSocket caller leg: Asterisk's TCP stream of typed frames.
//!
//! Every complete frame in the read buffer is handled in one wake-up and the
//! audio forwarded to the bot in one flush. Each tick writes one audio frame
//! with a non-blocking `try_write`; a frame the socket takes only partly is
//! finished first on the next tick so framing survives, and a caller that
//! takes nothing for 2 s is gone.
//!
//! A caller that stops half way is hung up too, checked on every tick: one
//! that sends nothing for `limits.media_timeout_ms` (cause
//! `media_timeout`), and one whose started frame does not complete within
//! `limits.frame_timeout_ms` (cause `malformed`, counted as a caller
//! protocol error).

use super::call_task::{drive, start_call, CallContext, Leg};
use crate::events::{CallInfo, HangupCause};
use crate::metrics::Metrics;
use crate::sansio::call::{Call, FrameOutcome, Tick};
use bytes::BytesMut;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};

/// A caller whose socket has taken nothing for this many ticks is gone.
const STALLED_TICKS: u32 = 100;

pub(crate) struct AudioSocketLeg {
    sock: TcpStream,
    metrics: Arc<Metrics>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes of a frame the caller socket took only partly (kept so framing survives).
    wpending: usize,
    stalled_ticks: u32,
    asc: AudioSocketCodec,
    /// When the caller last sent anything.
    last_rx: Instant,
    /// Since when the read buffer holds the start of a frame that has not
    /// completed.
    partial_since: Option<Instant>,
    media_timeout: Duration,
    frame_timeout: Duration,
}

/// Runs one AudioSocket call to its end. `rbuf` holds whatever followed the
/// UUID frame; `stop` turns `Some(cause)` when the call is hung up by command.
pub async fn run(
    sock: TcpStream,
    rbuf: BytesMut,
    call_id: String,
    ctx: CallContext,
    stop: Option<crate::commands::CallControl>,
) {
    // Built outside the await point (see `start_call`).
    let Some((call, leg)) = prepare(sock, rbuf, call_id, &ctx) else {
        return;
    };
    drive(call, leg, ctx, stop).await;
}

fn prepare(sock: TcpStream, rbuf: BytesMut, call_id: String, ctx: &CallContext) -> Option<(Box<Call>, Leg)> {
    let info = CallInfo {
        call_id,
        route: ctx.route_name.clone(),
        caller: None,
        callee: None,
        ingress: "audiosocket",
        params: ctx.route.params.clone(),
    };
    // Asterisk's AudioSocket starts at 8 kHz signed linear; a different
    // audio type in the first frame switches the caller side.
    let call = start_call(info, ctx, 8000)?;
    let leg = AudioSocketLeg {
        sock,
        metrics: ctx.metrics.clone(),
        rbuf,
        wbuf: BytesMut::with_capacity(4096),
        wpending: 0,
        stalled_ticks: 0,
        asc: AudioSocketCodec::new(ctx.max_frame_bytes),
        last_rx: Instant::now(),
        partial_since: None,
        media_timeout: ctx.media_timeout,
        frame_timeout: ctx.frame_timeout,
    };
    Some((call, Leg::AudioSocket(leg)))
}

impl AudioSocketLeg {
    pub(super) async fn ready(&mut self) -> Result<(), HangupCause> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            // Reclaims the buffer in place once earlier frames are dropped.
            self.rbuf.reserve(4096);
        }
        match self.sock.read_buf(&mut self.rbuf).await {
            Ok(0) | Err(_) => Err(HangupCause::CallerGone),
            Ok(_) => Ok(()),
        }
    }

    /// Every complete frame in the read buffer, handed to the call.
    pub(super) fn input(&mut self, call: &mut Call, t0: Instant) -> Result<(), HangupCause> {
        self.last_rx = t0;
        let mut decoded = false;
        loop {
            match self.asc.decode_frame(&mut self.rbuf) {
                Ok(Some(frame)) => {
                    decoded = true;
                    caller_frame(call, frame, t0)?
                }
                Ok(None) => break,
                Err(e) => {
                    self.metrics.caller_protocol_errors.fetch_add(1, Relaxed);
                    tracing::warn!(call_id = call.call_id(), error = %e, "malformed AudioSocket frame; closing");
                    return Err(HangupCause::Malformed);
                }
            }
        }
        if decoded || self.rbuf.is_empty() {
            self.partial_since = None;
        }
        if !self.rbuf.is_empty() {
            self.partial_since.get_or_insert(t0);
        }
        Ok(())
    }

    /// Whether the caller stopped half way (see the module docs).
    fn check_caller(&self, call: &Call, now: Instant) -> Result<(), HangupCause> {
        if now.saturating_duration_since(self.last_rx) >= self.media_timeout {
            tracing::warn!(call_id = call.call_id(), timeout = ?self.media_timeout, "caller sent nothing: hanging up");
            return Err(HangupCause::MediaTimeout);
        }
        if self
            .partial_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.frame_timeout)
        {
            self.metrics.caller_protocol_errors.fetch_add(1, Relaxed);
            tracing::warn!(
                call_id = call.call_id(),
                buffered = self.rbuf.len(),
                timeout = ?self.frame_timeout,
                "AudioSocket frame not completed in time; closing"
            );
            return Err(HangupCause::Malformed);
        }
        Ok(())
    }

    /// Writes the tick's frame.
    pub(super) fn tick(&mut self, call: &mut Call, tick: Tick, now: Instant) -> Result<(), HangupCause> {
        self.check_caller(call, now)?;
        // AudioSocket has no way to play a digit; the request is dropped.
        while call.poll_digit_out().is_some() {}
        if self.wpending > 0 {
            // Finish the frame the socket took only partly before anything new.
            let start = self.wbuf.len() - self.wpending;
            match self.sock.try_write(&self.wbuf[start..]) {
                Ok(n) => self.wpending -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(HangupCause::CallerGone),
            }
        }
        let rate = call.caller_rate();
        let outcome = if self.wpending == 0 {
            self.wbuf.clear();
            let frame = call.take_caller_frame();
            if let Err(e) = self.asc.encode_audio(rate, frame, &mut self.wbuf) {
                // The caller's rate came from its own frames, so Asterisk
                // takes it back; this is a configuration the call cannot run.
                tracing::warn!(call_id = call.call_id(), rate, error = %e, "cannot send audio to the caller");
                return Err(HangupCause::UnsupportedAudio);
            }
            match self.sock.try_write(&self.wbuf) {
                Ok(n) => {
                    self.wpending = self.wbuf.len() - n;
                    self.stalled_ticks = 0;
                    FrameOutcome::Sent
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.stalled_ticks += 1;
                    FrameOutcome::Lost
                }
                Err(_) => return Err(HangupCause::CallerGone),
            }
        } else {
            // The tick's frame is taken (time goes on) and lost.
            let _ = call.take_caller_frame();
            self.stalled_ticks += 1;
            FrameOutcome::Lost
        };
        call.caller_frame_done(outcome, tick);
        if self.stalled_ticks >= STALLED_TICKS {
            tracing::warn!(call_id = call.call_id(), "caller stopped reading for 2 s");
            return Err(HangupCause::CallerGone);
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, cause: HangupCause) {
        if !matches!(cause, HangupCause::CallerHangup | HangupCause::CallerGone) {
            // Tell Asterisk to hang up (best effort; the socket closes right after).
            let _ = self
                .sock
                .try_write(&[voxbridge_proto::audiosocket::kind::HANGUP, 0, 0]);
        }
    }
}

fn caller_frame(call: &mut Call, frame: Frame, now: Instant) -> Result<(), HangupCause> {
    match frame {
        Frame::Audio { rate, pcm } => call.caller_audio_le(rate, &pcm, now),
        Frame::Dtmf(d) => call.caller_digit(d as char, now),
        Frame::Hangup => return Err(HangupCause::CallerHangup),
        Frame::Error(code) => {
            tracing::warn!(call_id = call.call_id(), code = ?&code[..], "caller sent an error frame");
            return Err(HangupCause::CallerError);
        }
        // A repeated UUID or a silence indication carries nothing to forward.
        Frame::Uuid(_) | Frame::Silence(_) => {}
    }
    // An unsupported rate ends the call inside it.
    match call.ended() {
        Some(cause) => Err(cause),
        None => Ok(()),
    }
}
