//! The driver task of one call: the only place a call's sockets, clock and
//! sans-IO [`Call`] meet.
//!
//! One task per call owns the caller leg's I/O (a [`Leg`]), the bot
//! WebSocket and the `Call`, and waits on the caller's input, the bot link
//! and one timer set to [`Call::poll_timeout`]. Each wake-up hands what
//! happened to the `Call` and then does what it asks ([`service`]): events
//! to the sink, connect or drop the bot link, write the queued messages to
//! the bot. No call logic lives here. Writes never wait for a peer: what
//! the bot link cannot take now stays in the call's queue toward the bot,
//! which is also where a bot that stops reading is found out.

use super::audiosocket::AudioSocketLeg;
use super::botlink::{self, Connecting, Queued};
use super::chanws::ChanWsLeg;
use super::recorder::Recorder;
use super::rtp::RtpLeg;
use super::stt;
use super::wsconn::WsSocket;
use crate::commands::{CallInput, RecordCommand};
use crate::config::Route;
use crate::error::BotLinkError;
use crate::events::{CallEvent, CallInfo, EventSink, HangupCause};
use crate::metrics::Metrics;
use crate::sansio::call::{BotMessage, Call, LinkRequest, Tick};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use voxbridge_proto::websocket::Message;

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
    /// Where the bot's transfer requests go (`(call id, target)`): the
    /// signalling that can carry them out (SIP), none for other ingresses.
    pub transfers: Option<tokio::sync::mpsc::UnboundedSender<(String, String)>>,
    /// The daemon's tasks: a call's recognizer streams run on it, so a
    /// shutdown waits for their last results.
    pub tracker: tokio_util::task::TaskTracker,
    /// Where recordings go.
    pub recording: Arc<crate::config::RecordingConfig>,
    /// Tenants' own speech recognizers, by customer id.
    pub tenant_recognizers: Arc<std::collections::BTreeMap<String, crate::config::Transcribe>>,
}

impl CallContext {
    /// The speech recognizer of a call: its tenant's (`[tenants.<id>.transcribe]`
    /// for the call's `customer_id`) or its route's.
    fn recognizer(&self, call: &Call) -> Option<&crate::config::Transcribe> {
        call.info()
            .params
            .get("customer_id")
            .and_then(|tenant| self.tenant_recognizers.get(tenant))
            .or(self.route.transcribe.as_ref())
    }
}

/// The bot link's I/O; when to connect is the call's to say.
enum Link {
    Connecting(Connecting),
    Up(Box<WsSocket>),
    /// No link (not asked for, failed, or closed).
    Down,
}

enum BotWake {
    Connected(Box<WsSocket>, Duration),
    Failed(BotLinkError),
    Msg(Message),
}

async fn bot_wake(link: &mut Link) -> BotWake {
    match link {
        Link::Up(ws) => match ws.next().await {
            Ok(m) => BotWake::Msg(m),
            Err(e) => BotWake::Failed(BotLinkError::Dropped(e.to_string())),
        },
        Link::Connecting(fut) => match fut.as_mut().await {
            Ok((ws, took)) => BotWake::Connected(Box::new(ws), took),
            Err(e) => BotWake::Failed(e),
        },
        Link::Down => std::future::pending().await,
    }
}

/// The caller side of a call: its I/O, and the leg's own protocol state.
pub(crate) enum Leg {
    AudioSocket(AudioSocketLeg),
    Rtp(Box<RtpLeg>),
    ChanWs(Box<ChanWsLeg>),
}

impl Leg {
    /// Waits until the caller has sent something (cancel-safe).
    async fn ready(&mut self) -> Result<(), HangupCause> {
        match self {
            Leg::AudioSocket(l) => l.ready().await,
            Leg::Rtp(l) => l.ready().await,
            Leg::ChanWs(l) => l.ready().await,
        }
    }

    /// Hands everything received to the call.
    fn input(&mut self, call: &mut Call, now: Instant) -> Result<(), HangupCause> {
        match self {
            Leg::AudioSocket(l) => l.input(call, now),
            Leg::Rtp(l) => l.input(call, now),
            Leg::ChanWs(l) => l.input(call, now),
        }
    }

    /// The caller's part of a tick: plays the call's frame.
    fn tick(&mut self, call: &mut Call, tick: Tick, now: Instant) -> Result<(), HangupCause> {
        match self {
            Leg::AudioSocket(l) => l.tick(call, tick, now),
            Leg::Rtp(l) => l.tick(call, tick, now),
            Leg::ChanWs(l) => l.tick(call, tick, now),
        }
    }

    /// The caller held or resumed the call (only the RTP leg has SDP).
    fn set_hold(&mut self, held: bool, now: Instant) {
        match self {
            Leg::Rtp(l) => l.set_hold(held, now),
            Leg::AudioSocket(_) | Leg::ChanWs(_) => {}
        }
    }

    /// The call's media changed codec (only the RTP leg has SDP).
    fn set_format(&mut self, call: &mut Call, format: crate::sansio::rtp::RtpFormat) {
        match self {
            Leg::Rtp(l) => l.set_format(call, format),
            Leg::AudioSocket(_) | Leg::ChanWs(_) => {}
        }
    }

    /// After a bot message: what the call asked of a leg that acts on its
    /// far end's queue (barge-in, marks). Only the chan_websocket leg does.
    fn after_bot(&mut self, call: &mut Call) -> Result<(), HangupCause> {
        match self {
            Leg::ChanWs(l) => l.service(call),
            Leg::AudioSocket(_) | Leg::Rtp(_) => Ok(()),
        }
    }

    fn finish(&mut self, call: &mut Call, cause: HangupCause) {
        match self {
            Leg::AudioSocket(l) => l.finish(cause),
            Leg::Rtp(l) => l.finish(call),
            Leg::ChanWs(l) => l.finish(cause),
        }
    }
}

/// A call about to run: `None` when its pipeline cannot be built (the call
/// is then reported created and hung up, `unsupported_audio`).
///
/// The call is boxed: it is most of a call's state, and a call task's
/// future would otherwise hold it (and, as rustc lays futures out, copies
/// of it) inline.
pub(crate) fn start_call(info: CallInfo, ctx: &CallContext, caller_rate: u32) -> Option<Box<Call>> {
    let now = Instant::now();
    let wall = SystemTime::now();
    match Call::new(
        info.clone(),
        ctx.route.clone(),
        ctx.metrics.clone(),
        caller_rate,
        now,
        wall,
    ) {
        Ok(call) => Some(Box::new(call)),
        Err(e) => {
            // Config validation makes this unreachable; end the call cleanly anyway.
            tracing::error!(call_id = info.call_id, error = %e, "cannot build the pipeline");
            let call_id = info.call_id.clone();
            ctx.sink.emit(CallEvent::Created { info, at: wall });
            ctx.metrics.hangup(HangupCause::UnsupportedAudio);
            ctx.sink.emit(CallEvent::Hungup {
                call_id,
                cause: HangupCause::UnsupportedAudio,
                duration: Duration::ZERO,
                at: wall,
                sip: None,
            });
            None
        }
    }
}

/// Runs a call to its end; `stop` hangs it up early (API hangup) with its cause.
pub(crate) async fn drive(
    mut call: Box<Call>,
    mut leg: Leg,
    ctx: CallContext,
    stop: Option<crate::commands::CallControl>,
) {
    let mut link = Link::Down;
    let mut taps = Taps::default();
    let recognizer = ctx.recognizer(&call).filter(|t| t.auto).cloned();
    if ctx.route.record || recognizer.is_some() {
        // The call's `Created` goes first: a transcribe or a recording
        // belongs to a call control already knows.
        while let Some(event) = call.poll_event() {
            ctx.sink.emit(event);
        }
    }
    if let Some(t) = recognizer {
        let session = stt::Session {
            id: uuid::Uuid::new_v4().to_string(),
            language: t.language.clone(),
            directions: t.direction_set(),
            base_ms: 0,
        };
        taps.transcriber = Some(start_transcriber(&mut call, &ctx, &t, session));
    }
    if ctx.route.record {
        let id = uuid::Uuid::new_v4().to_string();
        if let Err(why) = start_recorder(&mut call, &ctx, &mut taps, id, None) {
            tracing::warn!(call_id = call.call_id(), "recording not started: {why}");
        }
    }
    let cause = drive_loop(&mut call, &mut leg, &mut link, &ctx, stop, &mut taps).await;
    leg.finish(&mut call, cause);
    call.finish(cause, Instant::now());
    service(&mut call, &mut link, &ctx, &taps);
    // Dropping the transcriber closes its queues: its tasks send what is
    // queued, then the recognizer's last results come as events. Dropping
    // the recorder lets its writer complete the file.
}

/// Recordings one call may make (a bot that starts and stops its
/// recording in a loop makes no more files than this).
const MAX_RECORDINGS_PER_CALL: u32 = 64;

/// What taps a call's audio off the pipeline: its transcribe and its
/// recording, each while it runs.
#[derive(Default)]
struct Taps {
    transcriber: Option<stt::Transcriber>,
    recorder: Option<Recorder>,
    /// Recordings started on this call so far.
    recordings: u32,
}

async fn drive_loop(
    call: &mut Call,
    leg: &mut Leg,
    link: &mut Link,
    ctx: &CallContext,
    stop: Option<crate::commands::CallControl>,
    taps: &mut Taps,
) -> HangupCause {
    // Whatever arrived before the call started (AudioSocket: with the UUID).
    if let Err(cause) = leg.input(call, Instant::now()) {
        call.hang_up(cause);
    }
    service(call, link, ctx, taps);
    let mut armed = call.poll_timeout();
    let sleep = tokio::time::sleep_until(armed.into());
    tokio::pin!(sleep);
    // One future for the whole call (building a `changed()` future per
    // loop turn costs a waiter registration each time). The flag only
    // ever goes from false to true, so any change means hang up.
    let mut hangup_rx = ctx.hangup_now.clone();
    if *hangup_rx.borrow_and_update() {
        call.hang_up(HangupCause::Shutdown);
    }
    let hangup_now = hangup_rx.changed();
    tokio::pin!(hangup_now);
    let (stop, mut inputs) = match stop {
        Some(c) => (Some(c.stop), Some(c.inputs)),
        None => (None, None),
    };
    // A hangup by command that came before a bot's close must win over it
    // even when both are ready at one wake-up (`select!` picks at random).
    let stop_peek = stop.clone();
    let api_stop = async move {
        match stop {
            Some(mut rx) => {
                let stop = rx.wait_for(|c| c.is_some()).await.map(|c| c.clone());
                match stop {
                    Ok(c) => c.unwrap_or((HangupCause::ApiHangup, None)),
                    // The registry is gone; only the other ends apply.
                    Err(_) => std::future::pending().await,
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(api_stop);
    loop {
        if let Some(cause) = call.ended() {
            return cause;
        }
        let mut fired = false;
        let from_caller = tokio::select! {
            r = leg.ready() => {
                let t0 = Instant::now();
                if let Err(cause) = r.and_then(|()| leg.input(call, t0)) {
                    call.hang_up(cause);
                }
                Some(t0)
            }
            w = bot_wake(link) => {
                let link_ends = matches!(w, BotWake::Msg(Message::Close(_)) | BotWake::Failed(_));
                let stopped = stop_peek.as_ref().filter(|_| link_ends).and_then(|rx| rx.borrow().clone());
                if let Some((cause, sip)) = stopped {
                    if let Some(sip) = sip {
                        call.set_sip_cause(sip);
                    }
                    call.hang_up(cause);
                }
                bot_event(call, link, w, Instant::now());
                if let Err(cause) = leg.after_bot(call) {
                    call.hang_up(cause);
                }
                None
            }
            () = &mut sleep => {
                fired = true;
                let now = Instant::now();
                if let Some(tick) = call.handle_timeout(now) {
                    if let Err(cause) = leg.tick(call, tick, now) {
                        call.hang_up(cause);
                    }
                }
                None
            }
            // Grace period over, or the daemon is gone.
            _ = &mut hangup_now => {
                call.hang_up(HangupCause::Shutdown);
                None
            }
            (cause, sip) = &mut api_stop => {
                if let Some(sip) = sip {
                    call.set_sip_cause(sip);
                }
                call.hang_up(cause);
                None
            }
            Some(input) = next_input(&mut inputs) => {
                match input {
                    CallInput::Digit(digit) => call.caller_digit(digit, Instant::now()),
                    CallInput::Hold(held) => leg.set_hold(held, Instant::now()),
                    CallInput::Format(format) => leg.set_format(call, format),
                    CallInput::Transcribe(start, done) => done(transcribe(call, ctx, &mut taps.transcriber, start)),
                    CallInput::StopTranscribe(done) => done(stop_transcribe(call, link, ctx, taps)),
                    CallInput::Record(command, done) => record(call, link, ctx, taps, command, done),
                    CallInput::TransferFailed { target, sip } => call.transfer_failed(&target, &sip, Instant::now()),
                }
                None
            }
        };
        bot_recording(call, link, ctx, taps);
        let sent = service(call, link, ctx, taps);
        end_given_up(call, taps);
        if let (Some(t0), true) = (from_caller, sent > 0) {
            call.forwarded(t0.elapsed());
        }
        // The timer is re-armed only when it fired or the call's next
        // deadline moved (a reconnect), not on every wake-up.
        let next = call.poll_timeout();
        if fired || next != armed {
            armed = next;
            sleep.as_mut().reset(armed.into());
        }
    }
}

/// Starts a transcribe of `call` with the route's recognizer and taps the
/// call for it.
fn start_transcriber(
    call: &mut Call,
    ctx: &CallContext,
    cfg: &crate::config::Transcribe,
    session: stt::Session,
) -> stt::Transcriber {
    let tr = stt::Transcriber::start(
        cfg,
        session,
        call.call_id(),
        ctx.sink.clone(),
        ctx.metrics.clone(),
        &ctx.tracker,
    );
    let (inbound, outbound) = tr.directions();
    call.enable_tap(inbound, outbound);
    tr
}

/// Ends a transcribe whose every direction gave up, and a recording whose
/// writer ended (a full disk): their taps stop, and the API may start
/// another.
fn end_given_up(call: &mut Call, taps: &mut Taps) {
    if taps.transcriber.as_ref().is_some_and(stt::Transcriber::gave_up) {
        taps.transcriber = None;
        call.drop_tap();
    }
    if taps.recorder.as_ref().is_some_and(Recorder::closed) {
        taps.recorder = None;
        call.drop_recording();
    }
}

/// A transcribe asked for by the API: started unless one runs or the
/// route names no recognizer.
fn transcribe(
    call: &mut Call,
    ctx: &CallContext,
    transcriber: &mut Option<stt::Transcriber>,
    start: crate::commands::TranscribeStart,
) -> Result<crate::commands::TranscribeRunning, String> {
    let Some(cfg) = ctx.recognizer(call).cloned() else {
        return Err(format!(
            "route {:?} names no speech recognizer ([routes.{}.transcribe]) and the call's tenant has none ([tenants.<id>.transcribe])",
            ctx.route_name, ctx.route_name
        ));
    };
    let cfg = &cfg;
    if transcriber.as_ref().is_some_and(stt::Transcriber::gave_up) {
        *transcriber = None;
        call.drop_tap();
    }
    if transcriber.is_some() {
        return Err("a transcribe already runs on this call; stop it first".into());
    }
    if call.ended().is_some() {
        return Err("the call is ending".into());
    }
    let session = stt::Session {
        id: start.transcribe_id,
        language: start.language.unwrap_or_else(|| cfg.language.clone()),
        directions: start.directions.unwrap_or_else(|| cfg.direction_set()),
        base_ms: call.age(Instant::now()).as_millis() as u64,
    };
    let running = crate::commands::TranscribeRunning {
        language: session.language.clone(),
        directions: session.directions,
    };
    *transcriber = Some(start_transcriber(call, ctx, cfg, session));
    Ok(running)
}

/// Stops the running transcribe: the staged audio goes out as a last
/// chunk, then the queues close (the streams send what is queued, wait for
/// the last results and end the transcribe).
fn stop_transcribe(
    call: &mut Call,
    link: &mut Link,
    ctx: &CallContext,
    taps: &mut Taps,
) -> Result<(), String> {
    end_given_up(call, taps);
    if taps.transcriber.is_none() {
        return Err("no transcribe runs on this call".into());
    }
    call.flush_tap();
    service(call, link, ctx, taps);
    taps.transcriber = None;
    call.drop_tap();
    Ok(())
}

/// Starts the call's recording `id` (its writer answers `done` once the
/// file is made) and taps the call for it.
fn start_recorder(
    call: &mut Call,
    ctx: &CallContext,
    taps: &mut Taps,
    id: String,
    done: Option<crate::commands::RecordDone>,
) -> Result<(), String> {
    let recorder = Recorder::start(
        &ctx.recording,
        id,
        call.call_id(),
        call.bot_rate(),
        ctx.sink.clone(),
        ctx.metrics.clone(),
        &ctx.tracker,
        done,
    )?;
    call.enable_recording();
    taps.recorder = Some(recorder);
    taps.recordings += 1;
    Ok(())
}

/// What the bot asked of the recording, carried out as the API's commands
/// are (a refusal is logged: the bot has no answer channel).
fn bot_recording(call: &mut Call, link: &mut Link, ctx: &CallContext, taps: &mut Taps) {
    use voxbridge_proto::telephony::RecordingAction;
    while let Some(action) = call.poll_recording_request() {
        let command = match action {
            RecordingAction::Start => RecordCommand::Start {
                recording_id: uuid::Uuid::new_v4().to_string(),
            },
            RecordingAction::Stop => RecordCommand::Stop,
            RecordingAction::Pause => RecordCommand::Pause,
            RecordingAction::Resume => RecordCommand::Resume,
        };
        let call_id = call.call_id().to_owned();
        let done: crate::commands::RecordDone = Box::new(move |r| {
            if let Err(why) = r {
                tracing::info!(%call_id, action = action.as_str(), "the bot's recording request: {why}");
            }
        });
        record(call, link, ctx, taps, command, done);
    }
}

/// A recording command from the API: start (unless one runs), stop (the
/// staged audio goes to the writer, which completes the file), pause or
/// resume (silence recorded meanwhile; `RecordingPaused` tells).
fn record(
    call: &mut Call,
    link: &mut Link,
    ctx: &CallContext,
    taps: &mut Taps,
    command: RecordCommand,
    done: crate::commands::RecordDone,
) {
    end_given_up(call, taps);
    let paused = match command {
        RecordCommand::Start { recording_id } => {
            if let Some(r) = &taps.recorder {
                return done(Err(format!(
                    "recording {} runs on this call; stop it first",
                    r.id()
                )));
            }
            if call.ended().is_some() {
                return done(Err("the call is ending".into()));
            }
            if taps.recordings >= MAX_RECORDINGS_PER_CALL {
                return done(Err(format!(
                    "this call has made {MAX_RECORDINGS_PER_CALL} recordings, the most one call may"
                )));
            }
            if !super::recorder::is_recording_id(&recording_id) {
                return done(Err(format!(
                    "recording id {recording_id:?}: 1-64 letters, digits, '-' and '_'"
                )));
            }
            // `done` goes to the writer: it answers once the file is made.
            if let Err(why) = start_recorder(call, ctx, taps, recording_id, Some(done)) {
                tracing::warn!(call_id = call.call_id(), "recording not started: {why}");
            }
            return;
        }
        RecordCommand::Stop => {
            if taps.recorder.is_none() {
                return done(Err("no recording runs on this call".into()));
            }
            call.flush_recording();
            service(call, link, ctx, taps);
            let Some(r) = taps.recorder.take() else {
                return done(Err("no recording runs on this call".into()));
            };
            let info = r.info(false);
            r.stop();
            call.drop_recording();
            return done(Ok(info));
        }
        RecordCommand::Pause => true,
        RecordCommand::Resume => false,
    };
    let Some(r) = taps.recorder.as_ref() else {
        return done(Err("no recording runs on this call".into()));
    };
    if call.pause_recording(paused) {
        ctx.sink.emit(CallEvent::RecordingPaused {
            call_id: call.call_id().to_owned(),
            recording_id: r.id().to_owned(),
            paused,
            at: SystemTime::now(),
        });
    }
    done(Ok(r.info(paused)))
}

/// The next out-of-band caller digit; never, for a call without a queue
/// (or once its sender is gone).
async fn next_input(inputs: &mut Option<tokio::sync::mpsc::Receiver<CallInput>>) -> Option<CallInput> {
    match inputs {
        Some(rx) => match rx.recv().await {
            Some(input) => Some(input),
            None => {
                *inputs = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Hands a bot link wake-up to the call.
fn bot_event(call: &mut Call, link: &mut Link, w: BotWake, now: Instant) {
    match w {
        BotWake::Connected(ws, took) => {
            *link = Link::Up(ws);
            call.bot_connected(took, now);
        }
        BotWake::Failed(e) => {
            *link = Link::Down;
            call.bot_failed(e, now);
        }
        BotWake::Msg(m) => match m {
            Message::Binary(b) => call.bot_message(BotMessage::Binary(&b), now),
            ref m @ Message::Text(_) => call.bot_message(BotMessage::Text(m.text().unwrap_or_default()), now),
            Message::Close(frame) => {
                let close = frame.as_ref().map(|(code, reason)| (*code, reason.as_str()));
                call.bot_message(BotMessage::Close(close), now)
            }
            // A ping was answered by the link; the pong goes out with the
            // next flush.
            Message::Ping(_) | Message::Pong(_) => {}
        },
    }
}

/// Does what the call asks: events to the sink, link requests, the queue
/// toward the bot written into the link. Returns how many messages went to
/// the bot.
fn service(call: &mut Call, link: &mut Link, ctx: &CallContext, taps: &Taps) -> usize {
    if let Some(t) = &taps.transcriber {
        while let Some(chunk) = call.poll_tap() {
            let direction = chunk.direction;
            t.offer(&chunk);
            call.tap_taken(direction);
        }
    }
    if let Some(r) = &taps.recorder {
        while let Some(chunk) = call.poll_recording() {
            let direction = chunk.direction;
            r.offer(&chunk);
            call.recording_taken(direction);
        }
    }
    let mut sent = 0;
    loop {
        while let Some(event) = call.poll_event() {
            ctx.sink.emit(event);
        }
        while let Some(target) = call.poll_transfer() {
            let call_id = &call.info().call_id;
            match &ctx.transfers {
                Some(tx) if tx.send((call_id.clone(), target.clone())).is_ok() => {
                    tracing::info!(%call_id, %target, "the bot asks for a transfer");
                }
                _ => {
                    tracing::warn!(%call_id, %target, "the bot asks for a transfer; this ingress cannot transfer (SIP calls can)")
                }
            }
        }
        if let Some(request) = call.poll_link() {
            match request {
                LinkRequest::Connect => *link = Link::Connecting(botlink::connect(&ctx.route)),
                LinkRequest::Disconnect => *link = Link::Down,
                LinkRequest::Close { last } => {
                    sent += write_to_bot(call, link);
                    if let Link::Up(ws) = std::mem::replace(link, Link::Down) {
                        botlink::close_with(*ws, last);
                    }
                }
            }
            continue;
        }
        sent += write_to_bot(call, link);
        // A failed write queues an event and a request: one more turn.
        if !call.has_events_or_requests() {
            return sent;
        }
    }
}

/// Moves the call's queue toward the bot into the link's write buffer and
/// flushes once. What the link cannot take stays queued in the call.
fn write_to_bot(call: &mut Call, link: &mut Link) -> usize {
    let Link::Up(ws) = link else {
        return 0;
    };
    let mut sent = 0;
    while let Some(o) = call.next_to_bot() {
        match ws.queue(o).map_err(BotLinkError::Dropped) {
            Ok(Queued::Taken) => {
                call.sent_to_bot();
                sent += 1;
            }
            Ok(Queued::Full) => break,
            Err(e) => {
                call.bot_failed(e, Instant::now());
                return sent;
            }
        }
    }
    if sent > 0 || call.next_to_bot().is_some() || ws.has_unsent() {
        if let Err(e) = ws.flush() {
            call.bot_failed(BotLinkError::Dropped(format!("flush: {e}")), Instant::now());
        }
    }
    sent
}
