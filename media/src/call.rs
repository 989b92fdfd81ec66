//! The driver task of one AudioSocket call: the only place a call's sockets,
//! clock and sans-IO state meet.
//!
//! One task owns everything of the call (caller socket, bot link, pipeline,
//! codec, pacer, counters) as plain `&mut` state and waits on three things:
//! caller bytes (every frame already received is handled in one wake-up and
//! forwarded to the bot in one flush), bot messages, and the next 20 ms tick.
//! Writes to the caller are non-blocking `try_write`s of one whole frame; a
//! frame the kernel cannot take is dropped and counted, so a stalled caller
//! never stalls the clock. Nothing here is shared with other calls except
//! the metrics it folds in once a second.

use crate::botcodec::{BotCodec, BotInput, Outgoing};
use crate::botlink::{self, Connecting, Ws};
use crate::config::{BotFailurePolicy, Route};
use crate::error::MediaError;
use crate::events::{CallEvent, CallInfo, EventSink, HangupCause};
use crate::metrics::{CallCounters, Metrics, LATENCY_BUCKETS};
use crate::pacer::Pacer;
use crate::pipeline::Pipeline;
use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use voxbridge_proto::audiosocket::{audio_kind, AudioSocketCodec, Frame, HEADER_LEN};

/// One egress frame period.
pub const FRAME: Duration = Duration::from_millis(20);
/// A paced frame later than this against its tick counts as late.
pub const LATE: Duration = Duration::from_millis(2);
/// Most caller audio kept while the bot link first comes up (5 s of frames);
/// the route's connect timeout sets the actual bound.
const BACKLOG_MAX_FRAMES: usize = 250;
/// Counters are folded into the shared metrics every this many ticks (1 s).
const FOLD_TICKS: u64 = 50;
/// A caller whose socket has taken nothing for this many ticks is gone.
const STALLED_TICKS: u32 = 100;

/// What a call needs from the daemon.
#[derive(Clone)]
pub struct CallContext {
    /// Route name.
    pub route_name: String,
    /// Route.
    pub route: Arc<Route>,
    /// Event sink.
    pub sink: Arc<dyn EventSink>,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    /// Becomes `true` when the shutdown grace period is over.
    pub hangup_now: watch::Receiver<bool>,
    /// Largest AudioSocket payload accepted.
    pub max_frame_bytes: usize,
}

enum Bot {
    Connecting { fut: Connecting, attempt: u32 },
    Up(Box<Ws>),
    Waiting { until: Instant, attempt: u32 },
}

enum BotWake {
    Connected(Box<Ws>, Duration),
    ConnectFailed(MediaError),
    Msg(Message),
    Dropped(String),
    Retry,
}

async fn bot_wake(bot: &mut Bot) -> BotWake {
    match bot {
        Bot::Up(ws) => match ws.next().await {
            Some(Ok(m)) => BotWake::Msg(m),
            Some(Err(e)) => BotWake::Dropped(e.to_string()),
            None => BotWake::Dropped("connection closed".into()),
        },
        Bot::Connecting { fut, .. } => match fut.as_mut().await {
            Ok((ws, took)) => BotWake::Connected(Box::new(ws), took),
            Err(e) => BotWake::ConnectFailed(e),
        },
        Bot::Waiting { until, .. } => {
            tokio::time::sleep_until((*until).into()).await;
            BotWake::Retry
        }
    }
}

/// The state of one call while it runs.
struct Call {
    info: CallInfo,
    ctx: CallContext,
    started: Instant,
    sock: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes of a frame the caller socket took only partly (kept so framing survives).
    wpending: usize,
    stalled_ticks: u32,
    asc: AudioSocketCodec,
    pipeline: Pipeline,
    codec: BotCodec,
    bot: Bot,
    ever_connected: bool,
    outbox: Vec<Outgoing>,
    backlog: VecDeque<Outgoing>,
    pacer: Pacer,
    counters: CallCounters,
    ticks: u64,
    last_overflow: u64,
    bot_errors_logged: bool,
}

/// Runs one call to its end. `rbuf` holds whatever followed the UUID frame.
pub async fn run(sock: TcpStream, rbuf: BytesMut, call_id: String, ctx: CallContext) {
    let route = ctx.route.clone();
    let info = CallInfo {
        call_id: call_id.clone(),
        route: ctx.route_name.clone(),
        caller: None,
        callee: None,
        ingress: "audiosocket",
        params: route.params.clone(),
    };
    let now = Instant::now();
    ctx.metrics
        .active_calls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ctx.sink.emit(CallEvent::Created {
        info: info.clone(),
        at: SystemTime::now(),
    });
    // Asterisk's AudioSocket starts at 8 kHz signed linear; a different
    // audio type in the first frame switches the caller side.
    let pipeline = match Pipeline::new(8000, route.bot_rate(), route.playout_cap_ms) {
        Ok(p) => p,
        Err(e) => {
            // Config validation makes this unreachable; end the call cleanly anyway.
            tracing::error!(call_id, error = %e, "cannot build the pipeline");
            finish_early(&ctx, &call_id, now, HangupCause::UnsupportedAudio);
            return;
        }
    };
    let mut call = Call {
        codec: BotCodec::new(route.protocol, route.twilio_encoding, route.bot_rate(), &call_id),
        info,
        started: now,
        sock,
        rbuf,
        wbuf: BytesMut::with_capacity(4096),
        wpending: 0,
        stalled_ticks: 0,
        asc: AudioSocketCodec::new(ctx.max_frame_bytes),
        pipeline,
        bot: Bot::Connecting {
            fut: botlink::connect(&route),
            attempt: 0,
        },
        ever_connected: false,
        outbox: Vec::with_capacity(8),
        backlog: VecDeque::new(),
        pacer: Pacer::new(now + FRAME, FRAME),
        counters: CallCounters::default(),
        ticks: 0,
        last_overflow: 0,
        bot_errors_logged: false,
        ctx,
    };
    let cause = call.drive().await;
    call.finish(cause);
}

fn finish_early(ctx: &CallContext, call_id: &str, started: Instant, cause: HangupCause) {
    ctx.metrics.hangup(cause);
    ctx.metrics
        .active_calls
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    ctx.sink.emit(CallEvent::Hungup {
        call_id: call_id.to_string(),
        cause,
        duration: started.elapsed(),
        at: SystemTime::now(),
    });
}

impl Call {
    async fn drive(&mut self) -> HangupCause {
        // Handles whatever arrived together with the UUID.
        if let Err(cause) = self.caller_bytes(Instant::now()) {
            return cause;
        }
        let sleep = tokio::time::sleep_until(self.pacer.next_deadline().into());
        tokio::pin!(sleep);
        // One future for the whole call (building a `changed()` future per
        // loop turn costs a waiter registration each time). The flag only
        // ever goes from false to true, so any change means hang up.
        let mut hangup_rx = self.ctx.hangup_now.clone();
        if *hangup_rx.borrow_and_update() {
            return HangupCause::Shutdown;
        }
        let hangup_now = hangup_rx.changed();
        tokio::pin!(hangup_now);
        loop {
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                // Reclaims the buffer in place once earlier frames are dropped.
                self.rbuf.reserve(4096);
            }
            let step = tokio::select! {
                r = self.sock.read_buf(&mut self.rbuf) => match r {
                    Ok(0) | Err(_) => Err(HangupCause::CallerGone),
                    Ok(_) => self.caller_bytes(Instant::now()),
                },
                w = bot_wake(&mut self.bot) => self.bot_event(w),
                () = &mut sleep => {
                    let r = self.tick(Instant::now());
                    sleep.as_mut().reset(self.pacer.next_deadline().into());
                    r
                }
                // Grace period over, or the daemon is gone.
                _ = &mut hangup_now => Err(HangupCause::Shutdown),
            };
            if let Err(cause) = step {
                return cause;
            }
        }
    }

    /// Every complete frame in the read buffer, then one flush to the bot.
    fn caller_bytes(&mut self, t0: Instant) -> Result<(), HangupCause> {
        loop {
            match self.asc.decode_frame(&mut self.rbuf) {
                Ok(Some(frame)) => self.caller_frame(frame)?,
                Ok(None) => break,
                Err(e) => {
                    self.ctx
                        .metrics
                        .caller_protocol_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(call_id = self.info.call_id, error = %e, "malformed AudioSocket frame; closing");
                    return Err(HangupCause::Malformed);
                }
            }
        }
        if !self.outbox.is_empty() {
            self.send_outbox();
            self.counters.to_bot.observe(&LATENCY_BUCKETS, t0.elapsed());
        }
        Ok(())
    }

    fn caller_frame(&mut self, frame: Frame) -> Result<(), HangupCause> {
        match frame {
            Frame::Audio { rate, pcm } => {
                self.counters.frames_in += 1;
                if rate != self.pipeline.caller_rate() {
                    if let Err(e) = self.pipeline.set_caller_rate(rate) {
                        tracing::warn!(call_id = self.info.call_id, rate, error = %e, "unsupported caller audio");
                        return Err(HangupCause::UnsupportedAudio);
                    }
                }
                let codec = &mut self.codec;
                let outbox = &mut self.outbox;
                let n = self.pipeline.caller_audio(&pcm, |f| outbox.push(codec.audio(f)));
                self.counters.frames_to_bot += n as u64;
            }
            Frame::Dtmf(d) => {
                let digit = d as char;
                self.ctx.sink.emit(CallEvent::Dtmf {
                    call_id: self.info.call_id.clone(),
                    digit,
                });
                self.outbox.push(self.codec.dtmf(digit));
            }
            Frame::Hangup => return Err(HangupCause::CallerHangup),
            Frame::Error(code) => {
                tracing::warn!(call_id = self.info.call_id, code = ?&code[..], "caller sent an error frame");
                return Err(HangupCause::CallerError);
            }
            // A repeated UUID or a silence indication carries nothing to forward.
            Frame::Uuid(_) | Frame::Silence(_) => {}
        }
        Ok(())
    }

    /// Sends queued messages to the bot (or keeps them while it first connects).
    fn send_outbox(&mut self) {
        match &mut self.bot {
            Bot::Up(ws) => {
                let mut failed = false;
                for o in self.outbox.drain(..) {
                    if !failed && botlink::queue(ws, o).is_err() {
                        failed = true;
                    }
                }
                if failed || botlink::flush(ws).is_err() {
                    // The read side sees the same broken socket and reports the drop.
                    tracing::debug!(call_id = self.info.call_id, "bot send failed");
                }
            }
            _ if !self.ever_connected => {
                for o in self.outbox.drain(..) {
                    let cap =
                        (self.ctx.route.connect_timeout_ms / 20).clamp(1, BACKLOG_MAX_FRAMES as u64) as usize;
                    if self.backlog.len() >= cap {
                        self.backlog.pop_front();
                        self.counters.frames_lost += 1;
                    }
                    self.backlog.push_back(o);
                }
            }
            _ => {
                self.counters.frames_lost += self.outbox.len() as u64;
                self.outbox.clear();
            }
        }
    }

    fn bot_event(&mut self, w: BotWake) -> Result<(), HangupCause> {
        match w {
            BotWake::Connected(ws, took) => {
                let attempt = match &self.bot {
                    Bot::Connecting { attempt, .. } => *attempt,
                    _ => 0,
                };
                self.bot = Bot::Up(ws);
                self.ctx.metrics.bot_connect_seconds.observe(took);
                self.ctx.sink.emit(CallEvent::BotConnected {
                    call_id: self.info.call_id.clone(),
                    connect_time: took,
                    attempt,
                });
                if !self.ever_connected {
                    self.ever_connected = true;
                    self.ctx.sink.emit(CallEvent::Answered {
                        call_id: self.info.call_id.clone(),
                        at: SystemTime::now(),
                    });
                }
                let mut first = self.codec.start(&self.info);
                first.extend(self.backlog.drain(..));
                first.append(&mut self.outbox);
                self.outbox = first;
                self.send_outbox();
                Ok(())
            }
            BotWake::ConnectFailed(e) => {
                self.ctx
                    .metrics
                    .bot_connect_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let attempt = match &self.bot {
                    Bot::Connecting { attempt, .. } => *attempt,
                    _ => 0,
                };
                self.bot_down(e.to_string(), attempt, HangupCause::BotUnavailable)
            }
            BotWake::Dropped(reason) => {
                self.ctx
                    .metrics
                    .bot_drops
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.bot_down(reason, 0, HangupCause::BotDropped)
            }
            BotWake::Retry => {
                let attempt = match &self.bot {
                    Bot::Waiting { attempt, .. } => *attempt,
                    _ => 0,
                };
                self.bot = Bot::Connecting {
                    fut: botlink::connect(&self.ctx.route),
                    attempt,
                };
                Ok(())
            }
            BotWake::Msg(m) => self.bot_message(m),
        }
    }

    /// The link failed: hang up or wait and reconnect, per the route's policy.
    fn bot_down(&mut self, reason: String, attempt: u32, cause: HangupCause) -> Result<(), HangupCause> {
        let route = &self.ctx.route;
        let retry = route.on_bot_failure == BotFailurePolicy::Silence && attempt < route.max_reconnects;
        self.ctx.sink.emit(CallEvent::BotFailed {
            call_id: self.info.call_id.clone(),
            reason,
            will_retry: retry,
        });
        if !retry {
            return Err(cause);
        }
        self.bot = Bot::Waiting {
            until: Instant::now() + Duration::from_millis(route.reconnect_interval_ms),
            attempt: attempt + 1,
        };
        Ok(())
    }

    fn bot_message(&mut self, m: Message) -> Result<(), HangupCause> {
        let decoded = match m {
            Message::Binary(b) => self.codec.decode_binary(b),
            Message::Text(t) => self.codec.decode_text(t.as_str()),
            Message::Close(_) => return Err(HangupCause::BotHangup),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(()),
        };
        let input = match decoded {
            Ok(i) => i,
            Err(e) => {
                self.counters.bot_protocol_errors += 1;
                if !self.bot_errors_logged {
                    self.bot_errors_logged = true;
                    tracing::warn!(call_id = self.info.call_id, error = %e, "unusable bot message dropped (further ones on this call are only counted)");
                }
                return Ok(());
            }
        };
        match input {
            BotInput::Audio { pcm, rate } => {
                self.counters.frames_from_bot += 1;
                if self.pipeline.bot_audio(pcm, rate).is_err() {
                    self.counters.bot_protocol_errors += 1;
                }
            }
            BotInput::Clear => {
                self.pipeline.clear();
                self.release_marks();
            }
            BotInput::Mark(name) => {
                self.pipeline.mark(name);
                self.release_marks();
            }
            BotInput::Transcript {
                speaker,
                text,
                user_id,
            } => self.ctx.sink.emit(CallEvent::Transcript {
                call_id: self.info.call_id.clone(),
                speaker,
                text,
                user_id,
            }),
            BotInput::Hangup => return Err(HangupCause::BotHangup),
            BotInput::Ignored => {}
        }
        Ok(())
    }

    /// Echoes every mark whose audio has played.
    fn release_marks(&mut self) {
        let mut any = false;
        while let Some(name) = self.pipeline.poll_mark() {
            if let Some(o) = self.codec.mark_played(&name) {
                self.outbox.push(o);
                any = true;
            }
        }
        if any {
            self.send_outbox();
        }
    }

    /// One 20 ms tick: exactly one frame to the caller.
    fn tick(&mut self, now: Instant) -> Result<(), HangupCause> {
        let Some(tick) = self.pacer.poll(now) else {
            return Ok(());
        };
        self.counters.frames_lost += tick.skipped;
        self.counters.to_caller.observe(&LATENCY_BUCKETS, tick.lateness);
        if tick.lateness > LATE {
            self.counters.frames_late += 1;
        }
        if self.wpending > 0 {
            // Finish the frame the socket took only partly before anything new.
            let start = self.wbuf.len() - self.wpending;
            match self.sock.try_write(&self.wbuf[start..]) {
                Ok(n) => self.wpending -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(HangupCause::CallerGone),
            }
        }
        let kind = audio_kind(self.pipeline.caller_rate()).unwrap_or(0x10);
        let (frame, _fill) = self.pipeline.tick();
        if self.wpending == 0 {
            self.wbuf.clear();
            self.wbuf.reserve(HEADER_LEN + frame.len() * 2);
            self.wbuf.put_u8(kind);
            self.wbuf.put_u16((frame.len() * 2) as u16);
            for s in frame {
                self.wbuf.put_i16_le(*s);
            }
            match self.sock.try_write(&self.wbuf) {
                Ok(n) => {
                    self.wpending = self.wbuf.len() - n;
                    self.counters.frames_out += 1;
                    self.stalled_ticks = 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.counters.frames_lost += 1;
                    self.stalled_ticks += 1;
                }
                Err(_) => return Err(HangupCause::CallerGone),
            }
        } else {
            self.counters.frames_lost += 1;
            self.stalled_ticks += 1;
        }
        if self.stalled_ticks >= STALLED_TICKS {
            tracing::warn!(call_id = self.info.call_id, "caller stopped reading for 2 s");
            return Err(HangupCause::CallerGone);
        }
        self.release_marks();
        self.ticks += 1;
        if self.ticks % FOLD_TICKS == 0 {
            self.fold();
        }
        Ok(())
    }

    fn fold(&mut self) {
        let overflow = self.pipeline.playout_stats().overflow_samples;
        self.counters.overflow_samples += overflow - self.last_overflow;
        self.last_overflow = overflow;
        self.ctx.metrics.absorb(&mut self.counters);
    }

    fn finish(mut self, cause: HangupCause) {
        if !matches!(cause, HangupCause::CallerHangup | HangupCause::CallerGone) {
            // Tell Asterisk to hang up (best effort; the socket closes right after).
            let _ = self
                .sock
                .try_write(&[voxbridge_proto::audiosocket::kind::HANGUP, 0, 0]);
        }
        if let Bot::Up(ws) = std::mem::replace(
            &mut self.bot,
            Bot::Waiting {
                until: Instant::now(),
                attempt: 0,
            },
        ) {
            let stop = (cause != HangupCause::BotHangup).then(|| self.codec.stop(cause));
            botlink::close_with(*ws, stop);
        }
        self.fold();
        let m = &self.ctx.metrics;
        m.hangup(cause);
        m.active_calls.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.ctx.sink.emit(CallEvent::Hungup {
            call_id: self.info.call_id.clone(),
            cause,
            duration: self.started.elapsed(),
            at: SystemTime::now(),
        });
    }
}
