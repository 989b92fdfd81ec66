//! The driver task of one call: the only place a call's sockets, clock and
//! sans-IO state meet.
//!
//! One task owns everything of the call (caller leg, bot link, pipeline,
//! codec, pacer, counters) as plain `&mut` state and waits on three things:
//! caller input (everything already received is handled in one wake-up and
//! forwarded to the bot in one flush), bot messages, and the next 20 ms tick.
//! The caller side is a `Leg`: AudioSocket over TCP (`audiosocket`) or
//! RTP over UDP ([`rtp`]); everything else (`Core`) is the same for both.
//! When to connect to the bot, retry or give up is `bot_policy`'s
//! (sans-IO, time in); this task only does what it says.
//! Writes to the caller never block; what the kernel cannot take is dropped
//! and counted, so a stalled caller never stalls the clock. Nothing here is
//! shared with other calls except the metrics it folds in once a second.

mod audiosocket;
mod bot_policy;
pub mod rtp;

use crate::botcodec::{BotCodec, BotInput, Outgoing};
use crate::botlink::{self, Connecting, Ws};
use crate::config::Route;
use crate::error::BotLinkError;
use crate::events::{CallEvent, CallInfo, EventSink, HangupCause};
use crate::metrics::{CallCounters, Metrics, LATENCY_BUCKETS};
use crate::pacer::Pacer;
use crate::pipeline::Pipeline;
use bot_policy::{AfterFailure, BotPolicy};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub use audiosocket::run;

/// One egress frame period.
pub const FRAME: Duration = Duration::from_millis(20);
/// A paced frame later than this against its tick counts as late.
pub const LATE: Duration = Duration::from_millis(2);
/// Most caller audio kept while the bot link first comes up (5 s of frames);
/// the route's connect timeout sets the actual bound.
const BACKLOG_MAX_FRAMES: usize = 250;
/// Counters are folded into the shared metrics every this many ticks (1 s).
const FOLD_TICKS: u64 = 50;

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
    /// AudioSocket: nothing received this long ends the call.
    pub media_timeout: Duration,
    /// AudioSocket: a started frame must complete within this.
    pub frame_timeout: Duration,
}

/// The bot link's I/O; when to connect is [`BotPolicy`]'s to say.
enum Link {
    Connecting(Connecting),
    Up(Box<Ws>),
    /// No link: waiting for the policy's next attempt (or the call's end).
    Down,
}

enum BotWake {
    Connected(Box<Ws>, Duration),
    ConnectFailed(BotLinkError),
    Msg(Message),
    Dropped(BotLinkError),
    Retry,
}

async fn bot_wake(link: &mut Link, policy: &BotPolicy) -> BotWake {
    match link {
        Link::Up(ws) => match ws.next().await {
            Some(Ok(m)) => BotWake::Msg(m),
            Some(Err(e)) => BotWake::Dropped(BotLinkError::Dropped(e.to_string())),
            None => BotWake::Dropped(BotLinkError::Dropped("connection closed".into())),
        },
        Link::Connecting(fut) => match fut.as_mut().await {
            Ok((ws, took)) => BotWake::Connected(Box::new(ws), took),
            Err(e) => BotWake::ConnectFailed(e),
        },
        Link::Down => match policy.poll_timeout() {
            Some(at) => {
                tokio::time::sleep_until(at.into()).await;
                BotWake::Retry
            }
            None => std::future::pending().await,
        },
    }
}

/// The caller side of a call.
enum Leg {
    AudioSocket(audiosocket::AudioSocketLeg),
    Rtp(Box<rtp::RtpLeg>),
}

impl Leg {
    /// Waits until the caller has sent something (cancel-safe).
    async fn ready(&mut self) -> Result<(), HangupCause> {
        match self {
            Leg::AudioSocket(l) => l.ready().await,
            Leg::Rtp(l) => l.ready().await,
        }
    }

    /// Handles everything received.
    fn input(&mut self, core: &mut Core, now: Instant) -> Result<(), HangupCause> {
        match self {
            Leg::AudioSocket(l) => l.input(core, now),
            Leg::Rtp(l) => l.input(core, now),
        }
    }

    /// The caller's part of a tick: (RTP) the jitter buffer's frame goes up,
    /// then the playout frame goes out.
    fn tick(&mut self, core: &mut Core, now: Instant) -> Result<(), HangupCause> {
        match self {
            Leg::AudioSocket(l) => l.tick(core, now),
            Leg::Rtp(l) => l.tick(core, now),
        }
    }

    fn fold(&mut self, core: &Core) {
        if let Leg::Rtp(l) = self {
            l.fold(core);
        }
    }

    fn finish(&mut self, core: &Core, cause: HangupCause) {
        match self {
            Leg::AudioSocket(l) => l.finish(cause),
            Leg::Rtp(l) => l.finish(core),
        }
    }
}

/// Everything of a call but its caller leg.
struct Core {
    info: CallInfo,
    ctx: CallContext,
    started: Instant,
    pipeline: Pipeline,
    codec: BotCodec,
    link: Link,
    policy: BotPolicy,
    outbox: Vec<Outgoing>,
    backlog: VecDeque<Outgoing>,
    pacer: Pacer,
    counters: CallCounters,
    ticks: u64,
    /// Playout counters as last folded into the metrics.
    last_playout: crate::playout::PlayoutStats,
    bot_errors_logged: bool,
    /// Key presses the bot asked to play to the caller.
    digits_out: Vec<char>,
    /// Why the last send to the bot failed (a bot that stopped reading);
    /// the driver turns it into a bot failure after the current step.
    send_failed: Option<BotLinkError>,
}

/// A call about to run: emits `Created` and counts it active. `None` when
/// the pipeline cannot be built (the call is then already reported hung up).
fn start_core(info: CallInfo, ctx: CallContext, caller_rate: u32) -> Option<Core> {
    let route = ctx.route.clone();
    ctx.metrics.active_calls.fetch_add(1, Relaxed);
    ctx.sink.emit(CallEvent::Created {
        info: info.clone(),
        at: SystemTime::now(),
    });
    let now = Instant::now();
    let pipeline = match Pipeline::new(caller_rate, route.bot_rate(), route.playout_cap_ms) {
        Ok(p) => p.with_bot_cushion(route.bot_cushion_ms),
        Err(e) => {
            // Config validation makes this unreachable; end the call cleanly anyway.
            tracing::error!(call_id = info.call_id, error = %e, "cannot build the pipeline");
            finish_early(&ctx, &info.call_id, now, HangupCause::UnsupportedAudio);
            return None;
        }
    };
    Some(Core {
        codec: BotCodec::new(
            route.protocol,
            route.twilio_encoding,
            route.bot_rate(),
            &info.call_id,
        ),
        info,
        started: now,
        pipeline,
        link: Link::Connecting(botlink::connect(&route)),
        policy: BotPolicy::new(&route),
        outbox: Vec::with_capacity(8),
        backlog: VecDeque::new(),
        pacer: Pacer::new(now + FRAME, FRAME),
        counters: CallCounters::default(),
        ticks: 0,
        last_playout: Default::default(),
        bot_errors_logged: false,
        digits_out: Vec::new(),
        send_failed: None,
        ctx,
    })
}

fn finish_early(ctx: &CallContext, call_id: &str, started: Instant, cause: HangupCause) {
    ctx.metrics.hangup(cause);
    ctx.metrics.active_calls.fetch_sub(1, Relaxed);
    ctx.sink.emit(CallEvent::Hungup {
        call_id: call_id.to_string(),
        cause,
        duration: started.elapsed(),
        at: SystemTime::now(),
    });
}

/// Runs a call to its end; `stop` hangs it up early (API hangup) with its cause.
async fn drive(mut core: Core, mut leg: Leg, stop: Option<watch::Receiver<Option<HangupCause>>>) {
    let cause = drive_loop(&mut core, &mut leg, stop).await;
    leg.finish(&core, cause);
    core.finish(cause, &mut leg);
}

async fn drive_loop(
    core: &mut Core,
    leg: &mut Leg,
    stop: Option<watch::Receiver<Option<HangupCause>>>,
) -> HangupCause {
    // Handles whatever arrived before the call started (AudioSocket: with the UUID).
    if let Err(cause) = leg.input(core, Instant::now()) {
        return cause;
    }
    let sleep = tokio::time::sleep_until(core.pacer.next_deadline().into());
    tokio::pin!(sleep);
    // One future for the whole call (building a `changed()` future per
    // loop turn costs a waiter registration each time). The flag only
    // ever goes from false to true, so any change means hang up.
    let mut hangup_rx = core.ctx.hangup_now.clone();
    if *hangup_rx.borrow_and_update() {
        return HangupCause::Shutdown;
    }
    let hangup_now = hangup_rx.changed();
    tokio::pin!(hangup_now);
    let api_stop = async move {
        match stop {
            Some(mut rx) => {
                let cause = rx.wait_for(|c| c.is_some()).await.map(|c| *c);
                match cause {
                    Ok(c) => c.unwrap_or(HangupCause::ApiHangup),
                    // The registry is gone; only the other ends apply.
                    Err(_) => std::future::pending().await,
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(api_stop);
    loop {
        let step = tokio::select! {
            r = leg.ready() => match r {
                Ok(()) => leg.input(core, Instant::now()),
                Err(cause) => Err(cause),
            },
            w = bot_wake(&mut core.link, &core.policy) => core.bot_event(w),
            () = &mut sleep => {
                let r = core.tick(leg, Instant::now());
                sleep.as_mut().reset(core.pacer.next_deadline().into());
                r
            }
            // Grace period over, or the daemon is gone.
            _ = &mut hangup_now => Err(HangupCause::Shutdown),
            cause = &mut api_stop => Err(cause),
        };
        if let Err(cause) = step {
            return cause;
        }
        if let Some(e) = core.send_failed.take() {
            if matches!(e, BotLinkError::Stalled { .. }) {
                core.ctx.metrics.bot_stalls.fetch_add(1, Relaxed);
            }
            if let Err(cause) = core.bot_event(BotWake::Dropped(e)) {
                return cause;
            }
        }
    }
}

impl Core {
    /// Caller PCM at the pipeline's caller rate: each finished 20 ms frame
    /// is queued for the bot (sent by [`Core::flush_up`]).
    fn caller_pcm_le(&mut self, le: &[u8]) {
        let codec = &mut self.codec;
        let outbox = &mut self.outbox;
        let n = self.pipeline.caller_audio(le, |f| outbox.push(codec.audio(f)));
        self.counters.frames_to_bot += n as u64;
    }

    /// As [`Core::caller_pcm_le`] for decoded samples.
    fn caller_pcm(&mut self, pcm: &[i16]) {
        let codec = &mut self.codec;
        let outbox = &mut self.outbox;
        let n = self.pipeline.caller_pcm(pcm, |f| outbox.push(codec.audio(f)));
        self.counters.frames_to_bot += n as u64;
    }

    /// A key press from the caller: an event and a message to the bot.
    fn caller_digit(&mut self, digit: char) {
        self.ctx.sink.emit(CallEvent::Dtmf {
            call_id: self.info.call_id.clone(),
            digit,
        });
        self.outbox.push(self.codec.dtmf(digit));
    }

    /// Sends what the caller side queued, timing the forward from `t0`.
    fn flush_up(&mut self, t0: Instant) {
        if !self.outbox.is_empty() {
            self.send_outbox();
            self.counters.to_bot.observe(&LATENCY_BUCKETS, t0.elapsed());
        }
    }

    /// Sends queued messages to the bot (or keeps them while it first connects).
    fn send_outbox(&mut self) {
        match &mut self.link {
            Link::Up(ws) => {
                let mut failed = None;
                for o in self.outbox.drain(..) {
                    if failed.is_some() {
                        self.counters.frames_lost += 1;
                    } else if let Err(e) = botlink::queue(ws, o) {
                        self.counters.frames_lost += 1;
                        failed = Some(e);
                    }
                }
                if failed.is_none() {
                    failed = botlink::flush(ws).err();
                }
                if let Some(e) = failed {
                    // A bot that stops reading fills the write buffer; it fails
                    // like any other bot (see `drive_loop`), never silently.
                    self.send_failed.get_or_insert(e);
                }
            }
            _ if !self.policy.ever_connected() => {
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
                let (attempt, first) = self.policy.connected();
                self.link = Link::Up(ws);
                self.ctx.metrics.bot_connect_seconds.observe(took);
                self.ctx.sink.emit(CallEvent::BotConnected {
                    call_id: self.info.call_id.clone(),
                    connect_time: took,
                    attempt,
                });
                if first {
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
                self.ctx.metrics.bot_connect_failures.fetch_add(1, Relaxed);
                self.bot_down(e, HangupCause::BotUnavailable)
            }
            BotWake::Dropped(e) => {
                self.ctx.metrics.bot_drops.fetch_add(1, Relaxed);
                self.bot_down(e, HangupCause::BotDropped)
            }
            BotWake::Retry => {
                if self.policy.handle_timeout(Instant::now()) {
                    self.link = Link::Connecting(botlink::connect(&self.ctx.route));
                }
                Ok(())
            }
            BotWake::Msg(m) => self.bot_message(m),
        }
    }

    /// The link failed: hang up or wait and reconnect, as the policy says.
    fn bot_down(&mut self, error: BotLinkError, cause: HangupCause) -> Result<(), HangupCause> {
        self.link = Link::Down;
        let after = self.policy.failed(Instant::now());
        self.ctx.sink.emit(CallEvent::BotFailed {
            call_id: self.info.call_id.clone(),
            reason: error.to_string(),
            will_retry: matches!(after, AfterFailure::RetryAt { .. }),
        });
        match after {
            AfterFailure::HangUp => Err(cause),
            AfterFailure::RetryAt { .. } => Ok(()),
        }
    }

    fn bot_message(&mut self, m: Message) -> Result<(), HangupCause> {
        let decoded = match m {
            Message::Binary(b) => self.codec.decode_binary(b),
            Message::Text(t) => self.codec.decode_text(t.as_str()),
            Message::Close(frame) => return self.bot_closed(frame),
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
            } => {
                // Control characters (a NUL, say) never reach the store.
                let (text, dirty) = crate::text::clean(text);
                let (user_id, dirty_id) = crate::text::clean(user_id);
                if dirty || dirty_id {
                    self.counters.bot_protocol_errors += 1;
                    tracing::warn!(
                        call_id = self.info.call_id,
                        "bot transcript had control characters: removed"
                    );
                }
                self.ctx.sink.emit(CallEvent::Transcript {
                    call_id: self.info.call_id.clone(),
                    speaker,
                    text,
                    user_id,
                })
            }
            BotInput::Dtmf(d) => self.digits_out.push(d),
            BotInput::Hangup => return Err(HangupCause::BotHangup),
            BotInput::Ignored => {}
        }
        Ok(())
    }

    /// The bot closed its WebSocket. A normal close (1000, or no code) is the
    /// bot ending the call; any other code means it failed (1011 internal
    /// error, 1013 try again later as pipecat's server answers a second
    /// client, 1001 going away, ...), which goes through the route's
    /// `on_bot_failure` policy like a dropped link.
    fn bot_closed(&mut self, frame: Option<CloseFrame>) -> Result<(), HangupCause> {
        let Some(frame) = frame.filter(|f| f.code != CloseCode::Normal) else {
            return Err(HangupCause::BotHangup);
        };
        let error = BotLinkError::Closed {
            code: u16::from(frame.code),
            reason: frame.reason.to_string(),
        };
        self.ctx.metrics.bot_drops.fetch_add(1, Relaxed);
        let cause = match frame.code {
            // Overloaded or restarting: the bot is not there for this call.
            CloseCode::Again | CloseCode::Restart => HangupCause::BotUnavailable,
            _ => HangupCause::BotDropped,
        };
        self.bot_down(error, cause)
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

    /// One 20 ms tick: the leg sends exactly one frame to the caller.
    fn tick(&mut self, leg: &mut Leg, now: Instant) -> Result<(), HangupCause> {
        let Some(tick) = self.pacer.poll(now) else {
            return Ok(());
        };
        self.counters.frames_lost += tick.skipped;
        self.counters.to_caller.observe(&LATENCY_BUCKETS, tick.lateness);
        if tick.lateness > LATE {
            self.counters.frames_late += 1;
        }
        leg.tick(self, now)?;
        self.release_marks();
        self.ticks += 1;
        if self.ticks % FOLD_TICKS == 0 {
            leg.fold(self);
            self.fold();
        }
        Ok(())
    }

    fn fold(&mut self) {
        let stats = self.pipeline.playout_stats();
        self.counters.overflow_samples += stats.overflow_samples - self.last_playout.overflow_samples;
        self.counters.frames_bot_gap += stats.gap_frames - self.last_playout.gap_frames;
        self.counters.frames_cushion += stats.cushion_frames - self.last_playout.cushion_frames;
        self.last_playout = stats;
        self.ctx.metrics.absorb(&mut self.counters);
    }

    fn finish(mut self, cause: HangupCause, leg: &mut Leg) {
        // The caller's last partial frame, and whatever its last read queued,
        // go to the bot before the link closes.
        let codec = &mut self.codec;
        let outbox = &mut self.outbox;
        let n = self.pipeline.flush_caller(|f| outbox.push(codec.audio(f)));
        self.counters.frames_to_bot += n as u64;
        if !self.outbox.is_empty() {
            self.send_outbox();
        }
        if let Link::Up(ws) = std::mem::replace(&mut self.link, Link::Down) {
            let stop = (cause != HangupCause::BotHangup).then(|| self.codec.stop(cause));
            botlink::close_with(*ws, stop);
        }
        leg.fold(&self);
        self.fold();
        let m = &self.ctx.metrics;
        m.hangup(cause);
        m.active_calls.fetch_sub(1, Relaxed);
        self.ctx.sink.emit(CallEvent::Hungup {
            call_id: self.info.call_id.clone(),
            cause,
            duration: self.started.elapsed(),
            at: SystemTime::now(),
        });
    }
}
