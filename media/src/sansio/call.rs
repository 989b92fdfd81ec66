//! One call as a state machine: everything a call decides, with no socket,
//! no task and no clock of its own.
//!
//! A leg (AudioSocket, RTP, and every later ingress) hands in what the caller
//! sent ([`Call::caller_audio_le`], [`Call::caller_pcm`],
//! [`Call::caller_digit`], [`Call::hang_up`]); the bot link's driver hands in
//! what happened to the link ([`Call::bot_connected`], [`Call::bot_failed`])
//! and each message ([`Call::bot_message`]); the driver hands in the time
//! ([`Call::handle_timeout`] at [`Call::poll_timeout`]). Out come the frame
//! to play to the caller on each tick ([`Call::take_caller_frame`]), the
//! messages for the bot ([`Call::next_to_bot`]: the one queue toward the bot),
//! requests to connect or close the link ([`Call::poll_link`]), key presses
//! to play ([`Call::poll_digit_out`]), events for the sink
//! ([`Call::poll_event`]) and, once it is over, why ([`Call::ended`]).
//! The same inputs in the same order give the same outputs, so the
//! simulator (`media/tests/sim`) runs a minute of a bad network in
//! milliseconds.

use super::bot_policy::{AfterFailure, BotPolicy};
use super::botcodec::{BotCodec, BotInput, Outgoing};
use super::listen::{AfterVerdict, CallAmd, CallVad};
use super::pacer::Pacer;
use super::pipeline::Pipeline;
use super::playout::PlayoutStats;
use super::tap::{Chunk, Tap, TapDirection};
use super::voicemail::Voicemail;
use crate::config::Route;
use crate::error::{BotLinkError, MediaError};
use crate::events::{CallEvent, CallInfo, HangupCause, RtpCallStats, SipCause, Speaker};
use crate::metrics::{CallCounters, Metrics, LATENCY_BUCKETS};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use voxbridge_proto::telephony::RecordingAction;

/// One egress frame period.
pub const FRAME: Duration = Duration::from_millis(20);
/// A paced frame later than this against its tick counts as late.
pub const LATE: Duration = Duration::from_millis(2);
/// Most messages the queue toward the bot holds: 5 s of 20 ms frames.
/// While the link first comes up the route's connect timeout sets a smaller
/// bound (oldest dropped, counted); once it is up a bot that lets the queue
/// reach this has stopped reading and fails ([`BotLinkError::Stalled`]).
pub const BOT_QUEUE_MAX: usize = 250;
/// Counters are folded into the shared metrics every this many ticks (1 s).
const FOLD_TICKS: u64 = 50;

/// A message the bot sent, as its link read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotMessage<'a> {
    /// A binary message.
    Binary(&'a Bytes),
    /// A text message.
    Text(&'a str),
    /// A close frame: its code and reason, if it had any.
    Close(Option<(u16, &'a str)>),
}

/// What the call asks of its bot link's driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRequest {
    /// Start connecting to the route's bot.
    Connect,
    /// Drop the link now (it failed; the policy decides what comes next).
    Disconnect,
    /// The call is over: send what is queued, then `last` (the protocol's
    /// stop message, if the bot did not end the call itself), then close.
    Close {
        /// The last message.
        last: Option<Outgoing>,
    },
}

/// A tick that is due: the leg plays one frame ([`Call::take_caller_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Counters are folded into the shared metrics on this tick (once a
    /// second): the leg folds its own too.
    pub fold: bool,
}

/// What became of a tick's frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOutcome {
    /// The caller's socket took it.
    Sent,
    /// It could not be built or the socket could not take it: lost, counted.
    Lost,
    /// The leg has nowhere to send yet (symmetric RTP before the caller's
    /// first packet): nothing sent, nothing lost.
    NoAddress,
}

/// What the call asks of a leg that can act on its far end's playout
/// queue (Asterisk's WebSocket channel); legs opt in with
/// [`Call::enable_leg_requests`], the others never see these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegRequest {
    /// The bot interrupted its audio: drop what the far end still queues.
    Flush,
    /// A bot mark whose audio has now gone to the caller: the far end says
    /// when it has played it, then the leg calls [`Call::mark_played`].
    Mark(String),
}

/// Where the bot link stands, as far as the queue toward it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Not up: what the caller says waits (first connect) or is dropped.
    NotUp,
    /// Up: the driver drains the queue into the socket.
    Up,
}

/// One call (see the module docs).
pub struct Call {
    info: CallInfo,
    metrics: Arc<Metrics>,
    started: Instant,
    wall_start: SystemTime,
    pipeline: Pipeline,
    codec: BotCodec,
    policy: BotPolicy,
    link: LinkState,
    /// When the dialect's next keepalive goes out (Genesys's `ping`), while
    /// the link is up.
    next_keepalive: Option<Instant>,
    /// The one queue toward the bot (see [`BOT_QUEUE_MAX`]).
    to_bot: VecDeque<Outgoing>,
    /// Bound of `to_bot` before the first link is up.
    backlog_cap: usize,
    pacer: Pacer,
    counters: CallCounters,
    ticks: u64,
    last_playout: PlayoutStats,
    bot_errors_logged: bool,
    events: VecDeque<CallEvent>,
    link_requests: VecDeque<LinkRequest>,
    digits_out: VecDeque<char>,
    /// Transfers the bot asked for, for the ingress's signalling.
    transfers: VecDeque<String>,
    /// What the bot asked of the call's recording, for the driver.
    recording_requests: VecDeque<RecordingAction>,
    /// `Some` once the leg asked for [`LegRequest`]s.
    leg_requests: Option<VecDeque<LegRequest>>,
    ended: Option<HangupCause>,
    /// What the SIP signalling said when it ended the call.
    sip_cause: Option<SipCause>,
    finished: bool,
    /// The latest time an input carried (a failure is timed by it).
    now: Instant,
    /// Audio taps for transcription (see [`Call::enable_tap`]).
    tap: Option<Box<Tap>>,
    /// Audio taps for the recording (see [`Call::enable_recording`]).
    rec: Option<Box<Tap>>,
    /// Voice activity of both directions (a route's `vad`).
    vad: Option<Box<CallVad>>,
    /// Answering-machine detection (a route's `amd`, on a call voxbridge placed).
    amd: Option<Box<CallAmd>>,
    /// The route's message being left on an answering machine: the bot's
    /// audio is held back meanwhile.
    voicemail: Option<Box<Voicemail>>,
}

impl Call {
    /// A call starting at `now` (wall-clock `wall`, for event timestamps)
    /// whose caller sends `caller_rate` Hz: it asks for a bot link at once
    /// and its first tick is one frame later. Counted active until
    /// [`Call::finish`]. Fails only for a rate pair the route's validation
    /// lets through and the resampler does not support.
    pub fn new(
        info: CallInfo,
        route: Arc<Route>,
        metrics: Arc<Metrics>,
        caller_rate: u32,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Self, MediaError> {
        let mut pipeline = Pipeline::new(caller_rate, route.bot_rate(), route.playout_cap_ms)?
            .with_bot_cushion(route.bot_cushion_ms);
        if route.noise_suppression {
            pipeline = pipeline.with_noise_suppression()?;
        }
        let codec = BotCodec::new(route.protocol, route.encoding(), route.bot_rate(), &info.call_id);
        let vad = match &route.vad {
            Some(v) => Some(Box::new(CallVad::new(v, route.bot_rate(), caller_rate)?)),
            None => None,
        };
        let amd = match &route.amd {
            Some(a) if a.listens_to(&info.params) => Some(Box::new(CallAmd::new(a, route.bot_rate())?)),
            _ => None,
        };
        metrics.active_calls.fetch_add(1, Relaxed);
        let mut events = VecDeque::with_capacity(4);
        events.push_back(CallEvent::Created {
            info: info.clone(),
            at: wall,
        });
        Ok(Call {
            backlog_cap: (route.connect_timeout_ms / 20).clamp(1, BOT_QUEUE_MAX as u64) as usize,
            policy: BotPolicy::new(&route),
            info,
            metrics,
            started: now,
            wall_start: wall,
            pipeline,
            codec,
            link: LinkState::NotUp,
            next_keepalive: None,
            to_bot: VecDeque::with_capacity(16),
            pacer: Pacer::new(now + FRAME, FRAME),
            counters: CallCounters::default(),
            ticks: 0,
            last_playout: PlayoutStats::default(),
            bot_errors_logged: false,
            events,
            link_requests: VecDeque::from([LinkRequest::Connect]),
            digits_out: VecDeque::new(),
            transfers: VecDeque::new(),
            recording_requests: VecDeque::new(),
            leg_requests: None,
            ended: None,
            sip_cause: None,
            finished: false,
            now,
            tap: None,
            rec: None,
            vad,
            amd,
            voicemail: None,
        })
    }

    /// The call's metadata.
    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// The call id.
    pub fn call_id(&self) -> &str {
        &self.info.call_id
    }

    /// Why the call is over, once it is; the driver then calls [`Call::finish`].
    pub fn ended(&self) -> Option<HangupCause> {
        self.ended
    }

    /// Ends the call (a leg's hangup, a timeout, a command). The first cause wins.
    pub fn hang_up(&mut self, cause: HangupCause) {
        self.ended.get_or_insert(cause);
    }

    /// What the SIP signalling said as it ends the call (before
    /// [`Call::hang_up`]); it goes on the hangup event. The first one wins,
    /// and none once the call has ended otherwise.
    pub fn set_sip_cause(&mut self, sip: SipCause) {
        if self.ended.is_none() && self.sip_cause.is_none() {
            self.sip_cause = Some(sip);
        }
    }

    /// Time since the call was created.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    fn wall(&self, now: Instant) -> SystemTime {
        self.wall_start + now.saturating_duration_since(self.started)
    }

    // ----- the caller leg's inputs -----

    /// The caller's rate (PCM at the pipeline's caller side).
    pub fn caller_rate(&self) -> u32 {
        self.pipeline.caller_rate()
    }

    /// The caller's audio comes at `rate` from now on (the caller's leg
    /// changed codec): the caller side of the pipeline is rebuilt, and bot
    /// audio queued at the old rate is dropped. A rate the call cannot take
    /// ends it (`unsupported_audio`) and returns `false`.
    pub fn set_caller_rate(&mut self, rate: u32) -> bool {
        match self.pipeline.set_caller_rate(rate) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(call_id = self.info.call_id, rate, error = %e, "unsupported caller audio");
                self.hang_up(HangupCause::UnsupportedAudio);
                false
            }
        }
    }

    /// The bot's PCM rate (fixed for the call by its route).
    pub fn bot_rate(&self) -> u32 {
        self.pipeline.bot_rate()
    }

    /// One frame of caller audio as little-endian PCM16 at `rate` (a rate
    /// other than the current one switches the caller side; one the call
    /// cannot take ends it, `unsupported_audio`). Every finished 20 ms frame
    /// is queued for the bot.
    pub fn caller_audio_le(&mut self, rate: u32, le: &[u8], now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.now = self.now.max(now);
        self.counters.frames_in += 1;
        if rate != self.pipeline.caller_rate() && !self.set_caller_rate(rate) {
            return;
        }
        self.forward_caller(now, |p, emit| p.caller_audio(le, emit));
    }

    /// One frame of caller audio as decoded samples at the caller rate;
    /// `concealed` when the leg made it up for a lost packet.
    pub fn caller_pcm(&mut self, pcm: &[i16], concealed: bool, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.now = self.now.max(now);
        self.counters.frames_in += 1;
        self.counters.frames_concealed += concealed as u64;
        self.forward_caller(now, |p, emit| p.caller_pcm(pcm, emit));
    }

    /// The caller's audio through the pipeline (`feed` runs its caller
    /// side, handing each finished frame at the bot's rate to `emit`):
    /// each frame to the taps, the listeners and the queue toward the bot.
    fn forward_caller(
        &mut self,
        now: Instant,
        feed: impl FnOnce(&mut Pipeline, &mut dyn FnMut(&[i16])) -> usize,
    ) {
        let bot_rate = self.pipeline.bot_rate();
        let offset_ms = self.age(now).as_millis() as u64;
        let (codec, to_bot, mut taps, vad, amd, voicemail) = (
            &mut self.codec,
            &mut self.to_bot,
            [&mut self.tap, &mut self.rec],
            &mut self.vad,
            &mut self.amd,
            &mut self.voicemail,
        );
        let mut emit = |f: &[i16]| {
            tap_in(&mut taps, bot_rate, f);
            if let Some(v) = vad.as_mut() {
                v.inbound(f, offset_ms);
            }
            if let Some(a) = amd.as_mut() {
                a.inbound(f);
            }
            if let Some(v) = voicemail.as_mut() {
                v.inbound(f);
            }
            to_bot.push_back(codec.audio(f))
        };
        let n = feed(&mut self.pipeline, &mut emit);
        self.counters.frames_to_bot += n as u64;
        self.tell_what_was_heard();
        self.bound_queue();
    }

    /// Voice activity's starts and stops since the last call, and the
    /// answering-machine decision once made: to the bot and to control, as
    /// the route asks, and on a machine what the route does with one.
    fn tell_what_was_heard(&mut self) {
        while let Some(change) = self.vad.as_mut().and_then(|v| v.take_change()) {
            let Some(vad) = self.vad.as_ref() else { break };
            let (to_bot, to_control) = (vad.to_bot, vad.to_control);
            if to_bot {
                let direction = match change.speaker {
                    Speaker::Caller => "in",
                    Speaker::Bot => "out",
                };
                if let Some(o) = self.codec.vad(direction, change.started, change.offset_ms) {
                    self.to_bot.push_back(o);
                }
            }
            if to_control {
                self.events.push_back(CallEvent::Speech {
                    call_id: self.info.call_id.clone(),
                    speaker: change.speaker,
                    started: change.started,
                    offset_ms: change.offset_ms,
                    at: self.wall_start + Duration::from_millis(change.offset_ms),
                });
            }
        }
        let Some(amd) = self.amd.as_mut() else { return };
        let Some(d) = amd.take_decision() else { return };
        let (to_bot, to_control, after) = (amd.to_bot, amd.to_control, amd.after(&d));
        if to_bot {
            if let Some(o) = self
                .codec
                .amd(d.verdict.as_str(), d.cause.as_str(), d.after_ms.into())
            {
                self.to_bot.push_back(o);
            }
        }
        if to_control {
            self.events.push_back(CallEvent::AnsweredBy {
                call_id: self.info.call_id.clone(),
                answered_by: d.verdict.as_str().to_owned(),
                cause: d.cause.as_str().to_owned(),
                after_ms: d.after_ms.into(),
                at: self.wall(self.now),
            });
        }
        match after {
            AfterVerdict::Continue => {}
            AfterVerdict::HangUp => self.hang_up(HangupCause::AnsweringMachine),
            AfterVerdict::LeaveMessage(voicemail) => {
                // The bot stops talking to the machine: what it queued
                // goes, and its marks come back cleared, never played.
                self.drop_bot_audio();
                self.release_cleared_marks();
                self.voicemail = Some(voicemail);
            }
        }
    }

    /// The bot's audio queued for the caller is dropped, here and in the
    /// far end's queue (barge-in, a message left on a machine).
    fn drop_bot_audio(&mut self) {
        self.pipeline.clear();
        if let Some(q) = &mut self.leg_requests {
            q.push_back(LegRequest::Flush);
        }
    }

    /// On a tick while a message is being left: the next piece of it to the
    /// playout, and the hangup once the callee has heard all of it.
    fn leave_message(&mut self) {
        let Some(vm) = self.voicemail.as_mut() else { return };
        if let Some((piece, rate)) = vm.tick(self.pipeline.buffered_ms()) {
            if self.pipeline.bot_audio(piece, rate).is_err() {
                // A rate the route's validation let through: cannot happen;
                // the call ends rather than waits for nothing.
                self.hang_up(HangupCause::MessageLeft);
            }
        } else if vm.all_queued() && !self.pipeline.has_pending_audio() {
            self.hang_up(HangupCause::MessageLeft);
        }
    }

    /// A key press from the caller: an event and a message to the bot.
    pub fn caller_digit(&mut self, digit: char, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.now = self.now.max(now);
        self.events.push_back(CallEvent::Dtmf {
            call_id: self.info.call_id.clone(),
            digit,
        });
        self.to_bot.push_back(self.codec.dtmf(digit));
        self.bound_queue();
    }

    /// A transfer of this call failed at the far end (a refused REFER, or
    /// a failure in its NOTIFY): the call goes on, and the bot is told in
    /// the dialects that have a word for it
    /// ([`BotCodec::transfer_failed`](super::botcodec::BotCodec::transfer_failed)).
    pub fn transfer_failed(&mut self, target: &str, sip: &SipCause, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.now = self.now.max(now);
        if let Some(o) = self.codec.transfer_failed(target, sip.code, &sip.reason) {
            self.to_bot.push_back(o);
            self.bound_queue();
        }
    }

    /// The caller side took `took` from reading to handing its audio to the
    /// bot link (the driver's measure of the forward).
    pub fn forwarded(&mut self, took: Duration) {
        self.counters.to_bot.observe(&LATENCY_BUCKETS, took);
    }

    /// Keeps the queue toward the bot within its bound for the link's state.
    fn bound_queue(&mut self) {
        match self.link {
            LinkState::Up if self.to_bot.len() > BOT_QUEUE_MAX => {
                let unsent = self.to_bot.iter().map(outgoing_len).sum();
                self.metrics.bot_stalls.fetch_add(1, Relaxed);
                self.bot_failed(BotLinkError::Stalled { unsent }, self.now);
            }
            LinkState::Up => {}
            LinkState::NotUp if !self.policy.ever_connected() => {
                while self.to_bot.len() > self.backlog_cap {
                    self.to_bot.pop_front();
                    self.counters.frames_lost += 1;
                }
            }
            // Between a drop and a reconnect the caller's words go nowhere.
            LinkState::NotUp => {
                self.counters.frames_lost += self.to_bot.len() as u64;
                self.to_bot.clear();
            }
        }
    }

    // ----- the bot link's inputs -----

    /// The link is up after `took`: the protocol's start messages go first,
    /// then what the caller said meanwhile.
    pub fn bot_connected(&mut self, took: Duration, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.now = self.now.max(now);
        let (attempt, first) = self.policy.connected();
        self.link = LinkState::Up;
        self.next_keepalive = self.codec.keepalive_schedule().map(|(first, _)| now + first);
        self.metrics.bot_connect_seconds.observe(took);
        self.events.push_back(CallEvent::BotConnected {
            call_id: self.info.call_id.clone(),
            connect_time: took,
            attempt,
        });
        if first {
            self.events.push_back(CallEvent::Answered {
                call_id: self.info.call_id.clone(),
                at: self.wall(now),
            });
        }
        for m in self.codec.start(&self.info).into_iter().rev() {
            self.to_bot.push_front(m);
        }
    }

    /// The link failed to come up, dropped, was closed with a failure code
    /// or stopped reading: the route's `on_bot_failure` says whether the
    /// call waits and reconnects or ends. What was queued for the lost link
    /// is counted lost.
    pub fn bot_failed(&mut self, error: BotLinkError, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.now = self.now.max(now);
        let cause = match &error {
            BotLinkError::ConnectTimeout { .. } | BotLinkError::Connect { .. } => {
                self.metrics.bot_connect_failures.fetch_add(1, Relaxed);
                HangupCause::BotUnavailable
            }
            // Overloaded (1013) or restarting (1012): the bot is not there for this call.
            BotLinkError::Closed {
                code: 1012 | 1013, ..
            } => {
                self.metrics.bot_drops.fetch_add(1, Relaxed);
                HangupCause::BotUnavailable
            }
            _ => {
                self.metrics.bot_drops.fetch_add(1, Relaxed);
                HangupCause::BotDropped
            }
        };
        if self.link == LinkState::Up {
            self.counters.frames_lost += self.to_bot.len() as u64;
            self.to_bot.clear();
            self.link_requests.push_back(LinkRequest::Disconnect);
        }
        self.link = LinkState::NotUp;
        self.next_keepalive = None;
        let after = self.policy.failed(self.now);
        self.events.push_back(CallEvent::BotFailed {
            call_id: self.info.call_id.clone(),
            reason: error.to_string(),
            will_retry: matches!(after, AfterFailure::RetryAt { .. }),
        });
        if after == AfterFailure::HangUp {
            self.hang_up(cause);
        }
    }

    /// A message from the bot.
    pub fn bot_message(&mut self, message: BotMessage<'_>, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.now = self.now.max(now);
        let decoded = match message {
            BotMessage::Binary(b) => self.codec.decode_binary(b.clone()),
            BotMessage::Text(t) => self.codec.decode_text(t),
            BotMessage::Close(close) => return self.bot_closed(close),
        };
        let input = match decoded {
            // A message is being left on a machine: the bot's audio, and
            // its interruptions, wait until the call ends.
            Ok(BotInput::Audio { .. } | BotInput::Clear) if self.voicemail.is_some() => return,
            Ok(i) => i,
            Err(e) => {
                self.counters.bot_protocol_errors += 1;
                if !self.bot_errors_logged {
                    self.bot_errors_logged = true;
                    tracing::warn!(call_id = self.info.call_id, error = %e, "unusable bot message dropped (further ones on this call are only counted)");
                }
                return;
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
                self.drop_bot_audio();
                if let Some(o) = self.codec.cleared() {
                    self.to_bot.push_back(o);
                    self.bound_queue();
                }
                self.release_cleared_marks();
            }
            BotInput::ClearMarks => self.pipeline.forget_marks(),
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
                self.events.push_back(CallEvent::Transcript {
                    call_id: self.info.call_id.clone(),
                    speaker,
                    text,
                    user_id,
                    offset_ms: None,
                    transcribe_id: None,
                })
            }
            BotInput::Dtmf(d) => self.digits_out.push_back(d),
            BotInput::Hangup => self.hang_up(HangupCause::BotHangup),
            BotInput::Transfer(target) => self.transfers.push_back(target),
            BotInput::Recording(action) => self.recording_requests.push_back(action),
            BotInput::Ignored => {}
        }
    }

    /// The bot closed its WebSocket. A normal close (1000, or no code) is the
    /// bot ending the call; any other code means it failed (1011 internal
    /// error, 1013 try again later as pipecat's server answers a second
    /// client, 1001 going away, ...), which goes through the route's
    /// `on_bot_failure` policy like a dropped link.
    fn bot_closed(&mut self, close: Option<(u16, &str)>) {
        match close {
            None | Some((1000, _)) => self.hang_up(HangupCause::BotHangup),
            Some((code, reason)) => self.bot_failed(
                BotLinkError::Closed {
                    code,
                    reason: reason.to_string(),
                },
                self.now,
            ),
        }
    }

    /// Echoes every mark whose audio has been played (or, with leg
    /// requests, hands it to the leg to learn when the far end played it).
    fn release_marks(&mut self) {
        let before = self.to_bot.len();
        while let Some(name) = self.pipeline.poll_mark() {
            self.release_mark(name);
        }
        if self.to_bot.len() != before {
            self.bound_queue();
        }
    }

    /// After a barge-in: the marks it released never played. A dialect
    /// that says so (jambonz's `cleared`) hears it at once; the others
    /// hear them as played, as Twilio answers marks on `clear`.
    fn release_cleared_marks(&mut self) {
        let before = self.to_bot.len();
        while let Some(name) = self.pipeline.poll_mark() {
            match self.codec.mark_cleared(&name) {
                Some(o) => self.to_bot.push_back(o),
                None => self.release_mark(name),
            }
        }
        if self.to_bot.len() != before {
            self.bound_queue();
        }
    }

    fn release_mark(&mut self, name: String) {
        if let Some(q) = &mut self.leg_requests {
            q.push_back(LegRequest::Mark(name));
        } else if let Some(o) = self.codec.mark_played(&name) {
            self.to_bot.push_back(o);
        }
    }

    // ----- time -----

    /// When the call next needs [`Call::handle_timeout`]: the next tick, or
    /// a reconnect or keepalive if that comes first.
    pub fn poll_timeout(&self) -> Instant {
        let tick = self.pacer.next_deadline();
        [self.policy.poll_timeout(), self.next_keepalive]
            .into_iter()
            .flatten()
            .fold(tick, Instant::min)
    }

    /// The time is `now`: a reconnect may start ([`Call::poll_link`]) and,
    /// when a tick is due, the leg plays one frame
    /// ([`Call::take_caller_frame`], then [`Call::caller_frame_done`]).
    /// A wake-up more than a frame late skips the missed ticks (counted
    /// lost) instead of bursting them.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Tick> {
        if self.ended.is_some() {
            return None;
        }
        self.now = self.now.max(now);
        if self.policy.handle_timeout(now) {
            self.link_requests.push_back(LinkRequest::Connect);
        }
        self.keepalive(now);
        let tick = self.pacer.poll(now)?;
        self.counters.frames_lost += tick.skipped;
        self.counters.to_caller.observe(&LATENCY_BUCKETS, tick.lateness);
        if tick.lateness > LATE {
            self.counters.frames_late += 1;
        }
        self.ticks += 1;
        self.leave_message();
        Some(Tick {
            fold: self.ticks % FOLD_TICKS == 0,
        })
    }

    /// The dialect's keepalive, when one is due on an up link.
    fn keepalive(&mut self, now: Instant) {
        let Some(due) = self.next_keepalive else { return };
        let Some((_, every)) = self.codec.keepalive_schedule().filter(|_| now >= due) else {
            return;
        };
        // One ping however late the wake-up; the next a whole period on.
        self.next_keepalive = Some(now + every);
        if let Some(o) = self.codec.keepalive() {
            self.to_bot.push_back(o);
            self.bound_queue();
        }
    }

    /// The tick's frame for the caller, at [`Call::caller_rate`]: bot audio,
    /// or silence. Call once per [`Tick`].
    pub fn take_caller_frame(&mut self) -> &[i16] {
        let rate = self.pipeline.caller_rate();
        let frame = self.pipeline.tick().0;
        for tap in [&mut self.tap, &mut self.rec].into_iter().flatten() {
            tap.push(TapDirection::Out, rate, frame);
        }
        if let Some(vad) = self.vad.as_mut() {
            let offset_ms = self.now.saturating_duration_since(self.started).as_millis() as u64;
            vad.outbound(rate, frame, offset_ms);
            self.tell_what_was_heard();
        }
        self.pipeline.last_tick()
    }

    /// For a leg whose far end paces playback (Asterisk's queue): the next
    /// whole frame of bot audio queued, or `None`; never silence. The first
    /// call after each [`Tick`] passes `at_tick` (a paused bot's last
    /// partial frame then comes too, shorter than a frame). Each frame
    /// taken is reported with [`Call::ready_frame_done`], each tick with
    /// [`Call::tick_done`], instead of [`Call::take_caller_frame`].
    pub fn take_ready_frame(&mut self, at_tick: bool) -> Option<&[i16]> {
        let rate = self.pipeline.caller_rate();
        let frame = self.pipeline.ready_frame(at_tick);
        if let Some(f) = frame.as_ref() {
            for tap in [&mut self.tap, &mut self.rec].into_iter().flatten() {
                tap.push(TapDirection::Out, rate, f);
            }
        }
        // No voice activity for what Asterisk paces: when it plays these
        // frames is Asterisk's to know (the route's `out` goes unwatched).
        frame
    }

    /// Taps the call's audio for transcription: `inbound` the caller's
    /// speech at the bot's rate, `outbound` what the caller hears at the
    /// caller's rate (see [`crate::sansio::tap`]). Allocates the buffers once.
    pub fn enable_tap(&mut self, inbound: bool, outbound: bool) {
        if inbound || outbound {
            self.tap = Some(Box::new(Tap::new(inbound, outbound)));
        }
    }

    /// Ends the taps (a transcribe stopped): what is staged becomes a last
    /// chunk, to be taken with [`Call::poll_tap`] before the tap goes with
    /// [`Call::drop_tap`].
    pub fn flush_tap(&mut self) {
        if let Some(tap) = self.tap.as_mut() {
            tap.flush();
        }
    }

    /// Removes the taps (after [`Call::flush_tap`] and the last chunks are
    /// taken); their drops are counted.
    pub fn drop_tap(&mut self) {
        if let Some(tap) = self.tap.take() {
            self.metrics
                .transcribe_dropped_ms
                .fetch_add(tap.dropped_ms(), Relaxed);
        }
    }

    /// The next whole chunk of tapped audio, if any; release it with
    /// [`Call::tap_taken`] once handed on.
    pub fn poll_tap(&self) -> Option<Chunk<'_>> {
        self.tap.as_ref()?.take()
    }

    /// Taps both directions for a recording: the caller's speech at the
    /// bot's rate, what the caller hears at the caller's rate. Allocates
    /// the buffers once.
    pub fn enable_recording(&mut self) {
        self.rec = Some(Box::new(Tap::new(true, true)));
    }

    /// Whether a recording taps the call.
    pub fn recording(&self) -> bool {
        self.rec.is_some()
    }

    /// Pauses the recording's taps (silence in place of the audio) or
    /// resumes them; `false` when no recording runs or it already is so.
    pub fn pause_recording(&mut self, paused: bool) -> bool {
        match self.rec.as_mut() {
            Some(rec) if rec.paused() != paused => {
                rec.set_paused(paused);
                true
            }
            _ => false,
        }
    }

    /// Ends the recording's taps: what is staged becomes a last chunk, to
    /// be taken with [`Call::poll_recording`] before [`Call::drop_recording`].
    pub fn flush_recording(&mut self) {
        if let Some(rec) = self.rec.as_mut() {
            rec.flush();
        }
    }

    /// Removes the recording's taps; their drops are counted.
    pub fn drop_recording(&mut self) {
        if let Some(rec) = self.rec.take() {
            self.metrics
                .recording_dropped_ms
                .fetch_add(rec.dropped_ms(), Relaxed);
        }
    }

    /// The next whole chunk for the recording, if any; release it with
    /// [`Call::recording_taken`] once handed on.
    pub fn poll_recording(&self) -> Option<Chunk<'_>> {
        self.rec.as_ref()?.take()
    }

    /// The chunk from [`Call::poll_recording`] was handed on (or dropped).
    pub fn recording_taken(&mut self, direction: TapDirection) {
        if let Some(rec) = self.rec.as_mut() {
            rec.taken(direction);
        }
    }

    /// The chunk from [`Call::poll_tap`] was handed on (or dropped).
    pub fn tap_taken(&mut self, direction: TapDirection) {
        if let Some(tap) = self.tap.as_mut() {
            tap.taken(direction);
        }
    }

    /// What became of a frame from [`Call::take_ready_frame`]; marks whose
    /// audio it carried become leg requests.
    pub fn ready_frame_done(&mut self, outcome: FrameOutcome) {
        match outcome {
            FrameOutcome::Sent => self.counters.frames_out += 1,
            FrameOutcome::Lost => self.counters.frames_lost += 1,
            FrameOutcome::NoAddress => {}
        }
        self.release_marks();
    }

    /// Marks whose audio has gone out become leg requests now (before a
    /// leg that takes [`Call::take_ready_frame`]s sends newer audio).
    pub fn settle_marks(&mut self) {
        self.release_marks();
    }

    /// Whether bot audio is still on its way to the caller.
    pub fn bot_audio_pending(&self) -> bool {
        self.pipeline.has_pending_audio()
    }

    /// Whether a leg request ([`Call::poll_leg_request`]) waits.
    pub fn has_leg_requests(&self) -> bool {
        self.leg_requests.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// The end of a tick for a leg that takes [`Call::take_ready_frame`]s.
    pub fn tick_done(&mut self, tick: Tick) {
        self.release_marks();
        if tick.fold {
            self.fold();
        }
    }

    /// What became of the tick's frame (a full socket loses it, counted).
    /// Marks whose audio has now been played go back to the bot, and on a
    /// fold tick the counters reach the shared metrics. Call once per [`Tick`].
    pub fn caller_frame_done(&mut self, outcome: FrameOutcome, tick: Tick) {
        match outcome {
            FrameOutcome::Sent => self.counters.frames_out += 1,
            FrameOutcome::Lost => self.counters.frames_lost += 1,
            FrameOutcome::NoAddress => {}
        }
        self.release_marks();
        if tick.fold {
            self.fold();
        }
    }

    /// RTP figures from the leg, for the sink (every RTCP interval and at the end).
    pub fn rtp_stats(&mut self, stats: RtpCallStats) {
        self.events.push_back(CallEvent::RtpStats {
            call_id: self.info.call_id.clone(),
            stats,
        });
    }

    // ----- outputs -----

    /// The next message for the bot, while the link is up. The driver
    /// writes it and calls [`Call::sent_to_bot`]; one the link cannot take
    /// now stays first in the queue for the next try.
    pub fn next_to_bot(&self) -> Option<&Outgoing> {
        match self.link {
            LinkState::Up => self.to_bot.front(),
            LinkState::NotUp => None,
        }
    }

    /// The message [`Call::next_to_bot`] showed went out.
    pub fn sent_to_bot(&mut self) {
        self.to_bot.pop_front();
    }

    /// Messages waiting for the bot.
    pub fn queued_to_bot(&self) -> usize {
        self.to_bot.len()
    }

    /// The next request for the bot link's driver.
    pub fn poll_link(&mut self) -> Option<LinkRequest> {
        self.link_requests.pop_front()
    }

    /// Opts the leg in to [`LegRequest`]s (see there).
    pub fn enable_leg_requests(&mut self) {
        self.leg_requests.get_or_insert_with(VecDeque::new);
    }

    /// The next request for the leg (none unless it opted in).
    pub fn poll_leg_request(&mut self) -> Option<LegRequest> {
        self.leg_requests.as_mut()?.pop_front()
    }

    /// The far end played the audio up to the mark `name` (a
    /// [`LegRequest::Mark`]): the mark goes back to the bot.
    pub fn mark_played(&mut self, name: &str) {
        if self.ended.is_some() {
            return;
        }
        if let Some(o) = self.codec.mark_played(name) {
            self.to_bot.push_back(o);
            self.bound_queue();
        }
    }

    /// The next key press the bot asked to play to the caller.
    pub fn poll_digit_out(&mut self) -> Option<char> {
        self.digits_out.pop_front()
    }

    /// The next transfer the bot asked for (a number or a `sip:` URI), for
    /// the ingress's signalling to carry out (SIP: REFER); the call goes
    /// on until that signalling ends it.
    pub fn poll_transfer(&mut self) -> Option<String> {
        self.transfers.pop_front()
    }

    /// The next thing the bot asked of the call's recording (start, stop,
    /// pause, resume), for the driver that owns the recording's writer.
    pub fn poll_recording_request(&mut self) -> Option<RecordingAction> {
        self.recording_requests.pop_front()
    }

    /// The next event for the sink.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// Whether events or link requests wait (the driver drains them until
    /// none do; the queue toward the bot may stay non-empty while the link
    /// cannot take more).
    pub fn has_events_or_requests(&self) -> bool {
        !self.events.is_empty() || !self.link_requests.is_empty()
    }

    /// The counters not yet folded into the shared metrics.
    pub fn counters(&self) -> &CallCounters {
        &self.counters
    }

    /// The pipeline (what it buffered and played), for tests and the simulator.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn fold(&mut self) {
        let stats = self.pipeline.playout_stats();
        let c = &mut self.counters;
        c.overflow_samples += stats.overflow_samples - self.last_playout.overflow_samples;
        c.frames_bot_gap += stats.gap_frames - self.last_playout.gap_frames;
        c.frames_cushion += stats.cushion_frames - self.last_playout.cushion_frames;
        self.last_playout = stats;
        self.metrics.absorb(&mut self.counters);
    }

    /// Ends the call at `now` with `cause` (or the cause it ended with):
    /// the caller's last partial frame joins the queue toward the bot, the
    /// link is asked to close after it (with the protocol's stop message
    /// unless the bot hung up), the counters are folded, and `Hungup` is
    /// the last event. Call once; later calls do nothing.
    pub fn finish(&mut self, cause: HangupCause, now: Instant) -> HangupCause {
        let cause = *self.ended.get_or_insert(cause);
        if self.finished {
            return cause;
        }
        self.finished = true;
        self.now = self.now.max(now);
        let bot_rate = self.pipeline.bot_rate();
        let (codec, to_bot, mut taps) = (&mut self.codec, &mut self.to_bot, [&mut self.tap, &mut self.rec]);
        let n = self.pipeline.flush_caller(|f| {
            tap_in(&mut taps, bot_rate, f);
            to_bot.push_back(codec.audio(f))
        });
        self.counters.frames_to_bot += n as u64;
        if let Some(tap) = self.tap.as_mut() {
            tap.flush();
            self.metrics
                .transcribe_dropped_ms
                .fetch_add(tap.dropped_ms(), Relaxed);
        }
        if let Some(rec) = self.rec.as_mut() {
            rec.flush();
            self.metrics
                .recording_dropped_ms
                .fetch_add(rec.dropped_ms(), Relaxed);
        }
        if self.link == LinkState::Up {
            let last = if cause == HangupCause::BotHangup {
                None
            } else {
                self.codec.stop(cause)
            };
            self.link_requests.push_back(LinkRequest::Close { last });
        } else {
            self.counters.frames_lost += self.to_bot.len() as u64;
            self.to_bot.clear();
        }
        self.fold();
        self.metrics.hangup(cause);
        self.metrics.active_calls.fetch_sub(1, Relaxed);
        self.events.push_back(CallEvent::Hungup {
            call_id: self.info.call_id.clone(),
            cause,
            duration: self.now.saturating_duration_since(self.started),
            at: self.wall(self.now),
            sip: self.sip_cause.take(),
        });
        cause
    }
}

/// Bytes of one queued message.
fn outgoing_len(o: &Outgoing) -> usize {
    match o {
        Outgoing::Text(b) | Outgoing::Binary(b) => b.len(),
    }
}

/// A caller frame at the bot's rate into the `in` tap, when there is one.
fn tap_in(taps: &mut [&mut Option<Box<Tap>>; 2], bot_rate: u32, frame: &[i16]) {
    for tap in taps.iter_mut().filter_map(|t| t.as_mut()) {
        tap.push(TapDirection::In, bot_rate, frame);
    }
}
