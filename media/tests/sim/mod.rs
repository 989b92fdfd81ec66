//! A simulated network for one call: a virtual clock, seeded randomness and
//! no sleeps. It drives the real sans-IO [`Call`] and the RTP leg's real
//! protocol state (`sansio::rtp::leg::RtpLeg`: latching, media timeout,
//! RTCP, its jitter buffer and concealment, its sender) against a far end
//! built from the same `RtpSender`, exactly as the tokio driver does, through scripted conditions: loss (random and in
//! bursts), jitter and with it reordering, duplication, a far-end clock that
//! drifts, a bot whose audio comes early, late, in bursts or not at all, a
//! bot that stops reading, drops and comes back. Everything that reaches the
//! caller and the bot is recorded per frame for the scenarios
//! (`tests/call_sim.rs`) to check.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use voxbridge_media::config::{BotProtocolKind, Route, TwilioEncoding};
use voxbridge_media::events::{CallEvent, CallInfo, HangupCause};
use voxbridge_media::metrics::Metrics;
use voxbridge_media::sansio::botcodec::{BotCodec, Outgoing};
use voxbridge_media::sansio::call::{BotMessage, Call, FrameOutcome, LinkRequest};
use voxbridge_media::sansio::rtp::leg::{RtpLeg, RtpLegParams, TickPacket};
use voxbridge_media::sansio::rtp::sender::RtpSender;
use voxbridge_media::BotLinkError;

pub const MS: Duration = Duration::from_millis(1);

#[path = "../../../tests/support/rng.rs"]
mod rng;
pub use rng::Rng;

/// What the network does to the caller's packets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Network {
    /// Random loss, per packet.
    pub loss: f64,
    /// Chance per packet that a burst of `burst_len` losses starts.
    pub burst: f64,
    pub burst_len: u32,
    /// Each packet is delayed by `base_ms` plus up to `jitter_ms` (packets
    /// overtake each other when the jitter exceeds their spacing).
    pub base_ms: f64,
    pub jitter_ms: f64,
    /// Chance a packet arrives twice.
    pub duplicate: f64,
}

/// The caller: the far end of an RTP leg (PCMU, 8 kHz) sending a tone.
pub struct RtpCaller {
    far: RtpSender,
    net: Network,
    /// The far end's frame period (20 ms, times its clock's drift).
    period: Duration,
    next_send: Instant,
    /// The caller goes quiet (sends nothing) from this time on.
    pub silent_from: Option<Instant>,
    /// Key presses to send and when.
    pub digits: VecDeque<(Instant, char)>,
    burst_left: u32,
    in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    order: u64,
    wire: Vec<u8>,
    tone: Vec<i16>,
    phase: usize,
    /// Samples per frame at the far end's codec.
    frame: usize,
    /// The audio payload type and a decoder of it, for what the caller hears.
    pt: u8,
    decoder: voxbridge_codecs::FrameDecoder,
    /// The leg's protocol state (the one the driver runs).
    pub leg: RtpLeg,
    /// Where the far end sends from.
    pub from: SocketAddr,
    heard_pcm: Vec<i16>,
    /// Packets the far end sent.
    pub sent: u64,
    /// Frames the leg concealed.
    pub concealed: u64,
}

/// A message the bot sends at some time.
#[derive(Debug, Clone)]
pub enum BotSend {
    /// Audio samples at the bot rate, encoded in the route's dialect.
    Audio(Vec<i16>),
    /// A raw text message (Twilio-style JSON).
    Text(String),
    /// A close frame with this code.
    Close(u16),
    /// The connection breaks.
    Drop,
}

/// The bot's side of the link.
pub struct Bot {
    codec: BotCodec,
    rate: u32,
    /// Whether the bot reads what the call sends.
    pub reading: bool,
    /// Connects that fail before one succeeds.
    pub refuse_connects: u32,
    pub connect_delay: Duration,
    connecting_until: Option<Instant>,
    up: bool,
    schedule: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    sends: Vec<BotSend>,
    order: u64,
    /// Everything the bot received, with when.
    pub got: Vec<(Instant, Outgoing)>,
    /// Connect attempts made.
    pub connects: u32,
}

/// What the caller heard on one tick.
#[derive(Debug, Clone, Copy)]
pub struct Heard {
    pub at: Instant,
    pub rms: f64,
}

/// A far end without RTP (the scenario's caller is `None`): what it hears
/// comes back as echo, `gain` of its level `delay_frames` ticks later, and
/// the caller's own speech is added on the ticks it is scheduled for; the
/// sum goes into the call as the caller's audio (8 kHz) on every tick.
pub struct EchoingFarEnd {
    pub gain: f32,
    pub delay_frames: usize,
    played: VecDeque<Vec<i16>>,
    /// The caller's own frames, by tick number.
    pub speech: std::collections::BTreeMap<u64, Vec<i16>>,
}

impl EchoingFarEnd {
    pub fn new(gain: f32, delay_frames: usize) -> Self {
        EchoingFarEnd {
            gain,
            delay_frames,
            played: VecDeque::new(),
            speech: Default::default(),
        }
    }

    /// The caller's audio for tick `tick`, after hearing `frame`.
    fn answer(&mut self, tick: u64, frame: &[i16]) -> Vec<i16> {
        self.played.push_back(frame.to_vec());
        let echo = if self.played.len() > self.delay_frames {
            self.played.pop_front().unwrap_or_default()
        } else {
            vec![0; frame.len()]
        };
        let own = self.speech.get(&tick);
        echo.iter()
            .enumerate()
            .map(|(i, e)| {
                let s = own.and_then(|o| o.get(i)).copied().unwrap_or(0) as f32;
                (*e as f32 * self.gain + s).clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }
}

/// One simulated call.
pub struct Sim {
    pub t0: Instant,
    pub now: Instant,
    pub call: Call,
    pub metrics: Arc<Metrics>,
    pub rng: Rng,
    pub caller: Option<RtpCaller>,
    pub bot: Bot,
    pub heard: Vec<Heard>,
    pub events: Vec<CallEvent>,
    pub ticks: u64,
    pub ended: Option<HangupCause>,
    /// Tick times, to check the pacing.
    pub tick_times: Vec<Instant>,
    /// Without an RTP caller: a far end that echoes what it hears.
    pub far_end: Option<EchoingFarEnd>,
}

/// A route for the simulator: `protocol` at 16 kHz.
pub fn route(protocol: BotProtocolKind) -> Route {
    Route {
        protocol,
        twilio_encoding: Some(TwilioEncoding::L16),
        sample_rate: 16000,
        ..Route::default()
    }
}

/// A tone at the bot rate: `ms` of 440 Hz at amplitude 8000.
pub fn tone(rate: u32, ms: u32) -> Vec<i16> {
    let n = (rate * ms / 1000) as usize;
    (0..n)
        .map(|i| ((i as f64 * 440.0 * std::f64::consts::TAU / rate as f64).sin() * 8000.0) as i16)
        .collect()
}

/// The caller's tick `tick` of a steady `hz` tone at 8 kHz, amplitude 8000
/// (in phase from tick to tick).
pub fn sine_frame(tick: u64, hz: f64) -> Vec<i16> {
    (0..160)
        .map(|i| {
            let n = (tick * 160 + i) as f64;
            ((n * hz * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16
        })
        .collect()
}

/// One second of the caller's 300 Hz tone at `rate`.
fn caller_tone(rate: u32) -> Vec<i16> {
    (0..rate)
        .map(|i| ((i as f64 * 300.0 * std::f64::consts::TAU / rate as f64).sin() * 6000.0) as i16)
        .collect()
}

fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
}

impl RtpCaller {
    /// A PCMU caller whose clock runs `drift` fast (1.0 exact, 1.005 is 0.5 % fast).
    pub fn new(net: Network, drift: f64, start: Instant) -> Self {
        use voxbridge_codecs::Codec;
        let period = Duration::from_secs_f64(0.020 / drift);
        RtpCaller {
            far: RtpSender::new(Codec::Pcmu, 8000, 0, Some(101), 7).expect("far end"),
            net,
            period,
            next_send: start,
            silent_from: None,
            digits: VecDeque::new(),
            burst_left: 0,
            in_flight: BinaryHeap::new(),
            order: 0,
            wire: Vec::with_capacity(256),
            tone: caller_tone(8000),
            phase: 0,
            frame: 160,
            pt: 0,
            decoder: voxbridge_codecs::FrameDecoder::new(Codec::Pcmu).expect("decoder"),
            leg: RtpLeg::new(
                RtpLegParams {
                    codec: Codec::Pcmu,
                    clock: 8000,
                    pt: 0,
                    dtmf_pt: Some(101),
                    remote: None,
                    remote_rtcp: None,
                    symmetric: true,
                    media_timeout: Duration::from_secs(10),
                    opus_complexity: 5,
                    opus_fec: false,
                    rtcp_mux: true,
                },
                9,
                "sim",
                start,
                SystemTime::UNIX_EPOCH,
            )
            .expect("leg"),
            from: "192.0.2.10:40000".parse().expect("address"),
            heard_pcm: vec![0; 960],
            sent: 0,
            concealed: 0,
        }
    }

    /// The far end changes codec (as a SIP re-INVITE makes it): from its
    /// next packet it sends `codec` on `pt` (RTP clock 8 kHz), a new
    /// source, and the caller hears what the leg sends as `codec`.
    pub fn switch_codec(&mut self, codec: voxbridge_codecs::Codec, pt: u8) {
        self.far = RtpSender::new(codec, 8000, pt, Some(101), 8).expect("far end");
        self.tone = caller_tone(codec.pcm_rate());
        self.phase = 0;
        self.frame = codec.frame_samples();
        self.pt = pt;
        self.decoder = voxbridge_codecs::FrameDecoder::new(codec).expect("decoder");
    }

    /// Packets in the network, not arrived yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn next_event(&self) -> Option<Instant> {
        let send = match self.silent_from {
            Some(s) if self.next_send >= s => None,
            _ => Some(self.next_send),
        };
        let arrive = self.in_flight.peek().map(|Reverse((t, ..))| *t);
        match (send, arrive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The far end sends its frame due at `now` into the network.
    fn send_due(&mut self, now: Instant, rng: &mut Rng) {
        while self.next_send <= now && self.silent_from.is_none_or(|s| self.next_send < s) {
            let at = self.next_send;
            self.next_send += self.period;
            if self.digits.front().is_some_and(|(t, _)| *t <= at) {
                let (_, d) = self.digits.pop_front().expect("peeked");
                self.far.queue_digit(d);
            }
            let (start, n) = (self.phase, self.frame);
            self.phase = (self.phase + n) % (self.tone.len() - n);
            self.far
                .frame(&self.tone[start..start + n], &mut self.wire)
                .expect("encode");
            self.sent += 1;
            let lost = if self.burst_left > 0 {
                self.burst_left -= 1;
                true
            } else if rng.chance(self.net.burst) {
                self.burst_left = self.net.burst_len.saturating_sub(1);
                true
            } else {
                rng.chance(self.net.loss)
            };
            if lost {
                continue;
            }
            let copies = 1 + rng.chance(self.net.duplicate) as u32;
            for _ in 0..copies {
                let delay = self.net.base_ms + rng.unit() * self.net.jitter_ms;
                let arrive = at + Duration::from_secs_f64(delay / 1000.0);
                self.order += 1;
                self.in_flight
                    .push(Reverse((arrive, self.order, self.wire.clone())));
            }
        }
    }

    /// An RTCP BYE from the far end.
    pub fn far_bye(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.far.bye(0, b"far", &mut out);
        out
    }

    /// The leg's input: every datagram that arrived by `now`, then every
    /// frame the receiver releases, up to the call (as `driver::rtp` does).
    fn input(&mut self, call: &mut Call, now: Instant) {
        while self.in_flight.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
            let Reverse((at, _, d)) = self.in_flight.pop().expect("peeked");
            self.leg.datagram(&d, self.from, at, now);
        }
        self.leg.forward(call, now);
        self.concealed = self.leg.stats().concealed_frames;
        if let Some(cause) = self.leg.hung_up() {
            call.hang_up(cause);
        }
    }

    /// The leg's tick; returns what became of the frame and how loud the
    /// caller heard it (decoded from the datagram).
    fn tick(&mut self, call: &mut Call, now: Instant) -> (FrameOutcome, f64) {
        let outcome = match self.leg.tick(call, now) {
            Ok(TickPacket::To(to)) => {
                assert_eq!(to, self.from, "sent where the caller is");
                self.leg.sent(true);
                FrameOutcome::Sent
            }
            Ok(TickPacket::NoAddress) => FrameOutcome::NoAddress,
            // On hold: nothing went out, so the caller heard nothing.
            Ok(TickPacket::Held) => return (FrameOutcome::NoAddress, 0.0),
            Ok(TickPacket::Lost) => FrameOutcome::Lost,
            Err(cause) => {
                call.hang_up(cause);
                return (FrameOutcome::Lost, 0.0);
            }
        };
        self.concealed = self.leg.stats().concealed_frames;
        let packet = self.leg.packet();
        // An audio packet from the leg's sender: 12 header bytes, one frame
        // (a telephone-event packet while a digit plays is not audio).
        let heard = match packet.get(12..) {
            Some(payload) if packet[1] & 0x7f == self.pt => {
                match self.decoder.decode(payload, &mut self.heard_pcm) {
                    Ok(n) => rms(&self.heard_pcm[..n]),
                    Err(_) => 0.0,
                }
            }
            _ => 0.0,
        };
        (outcome, heard)
    }
}

impl Bot {
    pub fn new(route: &Route) -> Self {
        Bot {
            codec: BotCodec::new(route.protocol, route.encoding(), route.bot_rate(), "b0b"),
            rate: route.bot_rate(),
            reading: true,
            refuse_connects: 0,
            connect_delay: 50 * MS,
            connecting_until: None,
            up: false,
            schedule: BinaryHeap::new(),
            sends: Vec::new(),
            order: 0,
            got: Vec::new(),
            connects: 0,
        }
    }

    /// Schedules a message at `at` (messages at the same time keep their order).
    pub fn send_at(&mut self, at: Instant, m: BotSend) {
        self.order += 1;
        self.sends.push(m);
        self.schedule
            .push(Reverse((at, self.order, self.sends.len() - 1)));
    }

    /// Schedules `ms` of tone from `start` in `chunk_ms` chunks, the k-th
    /// sent at `start + k * chunk_ms / speed` plus up to +-`jitter_ms`
    /// (never before the one before: a WebSocket keeps order). Returns when
    /// the last chunk is sent.
    pub fn say(
        &mut self,
        rng: &mut Rng,
        start: Instant,
        ms: u32,
        chunk_ms: u32,
        speed: f64,
        jitter_ms: f64,
    ) -> Instant {
        let pcm = tone(self.rate, ms);
        let per = (self.rate * chunk_ms / 1000) as usize;
        let mut last = start;
        for (k, chunk) in pcm.chunks(per).enumerate() {
            let nominal = k as f64 * chunk_ms as f64 / speed + rng.spread(jitter_ms);
            let at = (start + Duration::from_secs_f64(nominal.max(0.0) / 1000.0)).max(last);
            last = at;
            self.send_at(at, BotSend::Audio(chunk.to_vec()));
        }
        last
    }

    fn next_event(&self) -> Option<Instant> {
        let s = if self.up {
            self.schedule.peek().map(|Reverse((t, ..))| *t)
        } else {
            None
        };
        match (s, self.connecting_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// JSON messages the bot received, by kind (`media`, `mark`, ...: their
    /// `event`, or jambonz's `type`).
    pub fn got_events(&self, event: &str) -> Vec<(Instant, serde_json::Value)> {
        self.got
            .iter()
            .filter_map(|(t, o)| match o {
                Outgoing::Text(b) => serde_json::from_slice::<serde_json::Value>(b)
                    .ok()
                    .filter(|v| v["event"] == event || v["type"] == event)
                    .map(|v| (*t, v)),
                Outgoing::Binary(_) => None,
            })
            .collect()
    }

    /// Binary messages the bot got (pipecat frames).
    pub fn got_binary(&self) -> usize {
        self.got
            .iter()
            .filter(|(_, o)| matches!(o, Outgoing::Binary(_)))
            .count()
    }
}

impl Sim {
    /// A call on `route` with an RTP caller behind `net` (or none: the
    /// scenario feeds the call itself), seeded with `seed`.
    pub fn new(route: Route, caller: Option<(Network, f64)>, seed: u64) -> Self {
        let t0 = Instant::now();
        let metrics = Arc::new(Metrics::default());
        let bot = Bot::new(&route);
        let info = CallInfo {
            call_id: "5a5a5a5a-0000-4000-8000-00000000cafe".into(),
            route: "sim".into(),
            ingress: "rtp",
            ..CallInfo::default()
        };
        let call = Call::new(
            info,
            Arc::new(route),
            metrics.clone(),
            8000,
            t0,
            SystemTime::UNIX_EPOCH,
        )
        .expect("call");
        Sim {
            t0,
            now: t0,
            call,
            metrics,
            rng: Rng::new(seed),
            caller: caller.map(|(net, drift)| RtpCaller::new(net, drift, t0)),
            bot,
            heard: Vec::new(),
            events: Vec::new(),
            ticks: 0,
            ended: None,
            tick_times: Vec::new(),
            far_end: None,
        }
    }

    /// `t0 + ms`.
    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Runs until `end` (virtual time) or the call's end.
    pub fn run_until(&mut self, end: Instant) {
        loop {
            self.service();
            if self.ended.is_some() {
                return;
            }
            let mut next = self.call.poll_timeout();
            if let Some(c) = &self.caller {
                next = c.next_event().map_or(next, |t| t.min(next));
            }
            next = self.bot.next_event().map_or(next, |t| t.min(next));
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Ends the call as a driver would and drains its last outputs.
    pub fn finish(&mut self, cause: HangupCause) -> HangupCause {
        let cause = self.call.finish(cause, self.now);
        self.ended = Some(cause);
        self.service();
        cause
    }

    fn step(&mut self) {
        let now = self.now;
        // The caller's packets.
        if let Some(c) = &mut self.caller {
            c.send_due(now, &mut self.rng);
            c.input(&mut self.call, now);
        }
        // The bot link comes up, or fails to.
        if self.bot.connecting_until.is_some_and(|t| t <= now) {
            self.bot.connecting_until = None;
            if self.bot.refuse_connects > 0 {
                self.bot.refuse_connects -= 1;
                self.call.bot_failed(
                    BotLinkError::Connect {
                        url: "ws://bot".into(),
                        reason: "refused".into(),
                    },
                    now,
                );
            } else {
                self.bot.up = true;
                self.call.bot_connected(self.bot.connect_delay, now);
            }
        }
        // The bot's messages.
        while self.bot.up && self.bot.schedule.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
            let Reverse((_, _, i)) = self.bot.schedule.pop().expect("peeked");
            match self.bot.sends[i].clone() {
                BotSend::Audio(pcm) => match self.bot.codec.audio(&pcm) {
                    Outgoing::Binary(b) => self.call.bot_message(BotMessage::Binary(&b), now),
                    Outgoing::Text(t) => {
                        let s = std::str::from_utf8(&t).expect("utf-8");
                        self.call.bot_message(BotMessage::Text(s), now)
                    }
                },
                BotSend::Text(t) => self.call.bot_message(BotMessage::Text(&t), now),
                BotSend::Close(code) => {
                    self.bot.up = false;
                    self.call.bot_message(BotMessage::Close(Some((code, ""))), now)
                }
                BotSend::Drop => {
                    self.bot.up = false;
                    self.call
                        .bot_failed(BotLinkError::Dropped("connection reset".into()), now)
                }
            }
        }
        // The clock.
        if let Some(tick) = self.call.handle_timeout(now) {
            self.ticks += 1;
            self.tick_times.push(now);
            let outcome = match &mut self.caller {
                Some(c) => {
                    let (outcome, heard) = c.tick(&mut self.call, now);
                    self.heard.push(Heard { at: now, rms: heard });
                    outcome
                }
                None => {
                    let frame = self.call.take_caller_frame();
                    self.heard.push(Heard {
                        at: now,
                        rms: rms(frame),
                    });
                    if let Some(far) = &mut self.far_end {
                        let said = far.answer(self.ticks, frame);
                        self.call.caller_pcm(&said, false, now);
                    }
                    FrameOutcome::Sent
                }
            };
            self.call.caller_frame_done(outcome, tick);
        }
    }

    /// Does what the call asks, as `driver::call_task::service` does.
    fn service(&mut self) {
        loop {
            while let Some(e) = self.call.poll_event() {
                self.events.push(e);
            }
            match self.call.poll_link() {
                Some(LinkRequest::Connect) => {
                    self.bot.connects += 1;
                    self.bot.up = false;
                    self.bot.connecting_until = Some(self.now + self.bot.connect_delay);
                }
                Some(LinkRequest::Disconnect) => self.bot.up = false,
                Some(LinkRequest::Close { last }) => {
                    self.drain_to_bot();
                    if let Some(m) = last {
                        self.bot.got.push((self.now, m));
                    }
                    self.bot.up = false;
                }
                None => {
                    self.drain_to_bot();
                    if !self.call.has_events_or_requests() {
                        break;
                    }
                }
            }
        }
        if let (None, Some(cause)) = (self.ended, self.call.ended()) {
            self.finish(cause);
        }
    }

    fn drain_to_bot(&mut self) {
        if !self.bot.reading || !self.bot.up {
            return;
        }
        while let Some(o) = self.call.next_to_bot() {
            self.bot.got.push((self.now, o.clone()));
            self.call.sent_to_bot();
        }
    }

    /// Ticks whose frame was tone (the bot's audio) rather than silence.
    pub fn loud(&self) -> Vec<bool> {
        self.heard.iter().map(|h| h.rms > 1000.0).collect()
    }

    /// Silent ticks between the first and the last loud one.
    pub fn holes(&self) -> usize {
        let loud = self.loud();
        let (Some(a), Some(b)) = (loud.iter().position(|&l| l), loud.iter().rposition(|&l| l)) else {
            return 0;
        };
        loud[a..=b].iter().filter(|&&l| !l).count()
    }

    /// Events of one kind.
    pub fn bot_failures(&self) -> Vec<(String, bool)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                CallEvent::BotFailed {
                    reason, will_retry, ..
                } => Some((reason.clone(), *will_retry)),
                _ => None,
            })
            .collect()
    }

    /// The bytes of a Twilio text message.
    pub fn text(s: &str) -> BotSend {
        BotSend::Text(s.to_string())
    }
}
