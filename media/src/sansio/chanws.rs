//! The Asterisk WebSocket channel leg's protocol state, sans-IO.
//!
//! Asterisk's `chan_websocket` plays what we send from a queue of its own,
//! one frame per ptime. voxbridge paces: one 20 ms frame per tick, so that
//! queue holds a frame or two, barge-in is immediate and the bot's marks
//! mean what they say. What the leg adds over the call:
//!
//! - caller media: binary messages in the channel's format (G.711 decoded
//!   here, signed linear handed over as it is);
//! - control text from Asterisk ([`voxbridge_proto::chanws::Event`]):
//!   `DTMF_END` becomes a caller digit; `MEDIA_XOFF` holds our frames (in
//!   order, up to [`HELD_MAX`], counted beyond) until `MEDIA_XON`; `ERROR`
//!   and text that does not parse are counted and returned for the log;
//! - barge-in: the bot's clear ([`LegRequest::Flush`]) drops what we still
//!   hold and sends `FLUSH_MEDIA`, so Asterisk's queue empties too;
//! - marks: a bot mark whose audio has gone out is sent on as
//!   `MARK_MEDIA m<n>` behind that audio, and echoed to the bot only when
//!   Asterisk answers `MEDIA_MARK_PROCESSED m<n>`, i.e. once it played it
//!   (a flush echoes the ones it dropped, as a bot expects after a clear;
//!   a channel that refuses `MARK_MEDIA`, in passthrough mode, gets marks
//!   echoed as their audio goes out).
//!
//! With [`Pacing::Asterisk`] (a route's `chanws_pacing = "asterisk"`)
//! voxbridge does not pace: bot audio goes to Asterisk as soon as it is
//! queued, up to 25 frames per binary message, inside
//! `START_MEDIA_BUFFERING` ... `STOP_MEDIA_BUFFERING` (sent when a tick finds
//! nothing more), and Asterisk's queue plays it one frame per ptime. A
//! paused bot's last partial frame goes as it is (Asterisk keeps partial
//! frames while buffering). Nothing more is taken from the call while
//! messages wait for the socket or while XOFF lasts (the audio stays in
//! the call's playout ring), so Asterisk's queue never overflows its 1,000
//! frames. Barge-in (`FLUSH_MEDIA`) empties Asterisk's queue and ends the
//! buffering; marks work as when voxbridge paces.
//!
//! Everything for Asterisk goes through one ordered queue
//! ([`ChanWsLeg::next_out`]) that the driver writes as its socket takes it;
//! frames are split off one arena, so steady state does not allocate.

use crate::error::MediaError;
use crate::sansio::botcodec::Outgoing;
use crate::sansio::call::{Call, FrameOutcome, LegRequest, Tick};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Instant;
use voxbridge_codecs::g711;
use voxbridge_proto::chanws::{Command, ControlFormat, Event, MediaFormat, MediaStart};
use voxbridge_proto::ProtoError;

/// Frames held during an XOFF at most (10 s); later ones are dropped, counted.
pub const HELD_MAX: usize = 500;
/// Asterisk-paced: frames per binary message at most.
pub const BULK_MESSAGE_FRAMES: usize = 25;
/// Asterisk-paced: frames waiting for the socket at most (1 s); the rest
/// of a burst stays in the call's playout ring until the socket takes them.
pub const BULK_DRAIN_FRAMES: usize = 50;

/// Who paces the bot's audio toward Asterisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// One 20 ms frame per tick (Asterisk's queue holds a frame or two).
    #[default]
    Voxbridge,
    /// Bursts at once inside media buffering; Asterisk's queue paces.
    Asterisk,
}
/// Arena block for outgoing frames (a 48 kHz frame is 1,920 bytes).
const ARENA: usize = 8 * 1024;

/// Counters of one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChanWsCounters {
    /// Text messages from Asterisk that did not parse.
    pub bad_text: u64,
    /// `ERROR` events (Asterisk refused a command).
    pub asterisk_errors: u64,
    /// Events this version does not know.
    pub unknown_events: u64,
    /// `MEDIA_XOFF` received.
    pub xoffs: u64,
    /// Frames dropped because XOFF lasted past [`HELD_MAX`] frames.
    pub held_dropped: u64,
    /// Binary messages with a trailing odd byte (signed linear), dropped.
    pub odd_bytes: u64,
    /// `MEDIA_MARK_PROCESSED` for a mark we did not send.
    pub stray_marks: u64,
}

/// What a text message from Asterisk was, for the driver's log.
#[derive(Debug, PartialEq, Eq)]
pub enum TextOutcome {
    /// Handled.
    Ok,
    /// Asterisk reported an error.
    AsteriskError(String),
    /// It did not parse.
    Bad(ProtoError),
    /// An event this version does not know.
    Unknown(String),
}

/// The leg (see the module docs).
#[derive(Debug)]
pub struct ChanWsLeg {
    format: MediaFormat,
    rate: u32,
    control: ControlFormat,
    channel_id: String,
    xoff: bool,
    /// What goes to Asterisk, in order.
    out: VecDeque<Outgoing>,
    /// Binary frames in `out`.
    out_frames: usize,
    arena: BytesMut,
    pcm: Vec<i16>,
    /// Marks sent as `MARK_MEDIA m<n>` and not yet played: (n, bot's name).
    marks: VecDeque<(u64, String)>,
    next_mark: u64,
    /// Asterisk refused `MARK_MEDIA` (a channel in passthrough mode, dial
    /// option `p`): marks go back to the bot once sent, as on AudioSocket.
    no_marks: bool,
    text: String,
    counters: ChanWsCounters,
    pacing: Pacing,
    /// Bytes of one 20 ms frame in the channel's format.
    frame_bytes: usize,
    /// `START_MEDIA_BUFFERING` sent and not yet stopped (Asterisk-paced).
    buffering: bool,
}

impl ChanWsLeg {
    /// The leg for the channel `start` describes, whose control messages
    /// come (and go) in `control` form. Only formats voxbridge re-frames are
    /// taken: G.711 and signed linear at 8-48 kHz with 20 ms frames (what
    /// Asterisk uses unless told otherwise).
    pub fn new(start: &MediaStart, control: ControlFormat) -> Result<Self, MediaError> {
        let format = start.media_format();
        let rate = match &format {
            MediaFormat::Ulaw | MediaFormat::Alaw => 8000,
            MediaFormat::Slin { rate } if voxbridge_codecs::resample::is_supported_rate(*rate) => *rate,
            other => {
                return Err(MediaError::CallerProtocol(format!(
                    "chan_websocket format {:?} is not supported (use ulaw, alaw or slin at 8-48 kHz)",
                    other.name()
                )))
            }
        };
        let frame = format.bytes_for_ms(20).unwrap_or(0);
        if start.optimal_frame_size == 0 || frame % start.optimal_frame_size != 0 {
            return Err(MediaError::CallerProtocol(format!(
                "chan_websocket frames of {} bytes (ptime {} ms) do not divide 20 ms of {}",
                start.optimal_frame_size, start.ptime, start.format
            )));
        }
        Ok(ChanWsLeg {
            format,
            rate,
            control,
            channel_id: start.channel_id.clone(),
            xoff: false,
            out: VecDeque::new(),
            out_frames: 0,
            arena: BytesMut::with_capacity(ARENA),
            pcm: Vec::new(),
            marks: VecDeque::new(),
            next_mark: 0,
            no_marks: false,
            text: String::new(),
            counters: ChanWsCounters::default(),
            pacing: Pacing::Voxbridge,
            frame_bytes: frame,
            buffering: false,
        })
    }

    /// Sets who paces the bot's audio (voxbridge unless told).
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Who paces the bot's audio.
    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// The caller's sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The channel's unique id (Asterisk's).
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// Counters.
    pub fn counters(&self) -> ChanWsCounters {
        self.counters
    }

    /// Whether Asterisk asked us to stop sending media.
    pub fn xoff(&self) -> bool {
        self.xoff
    }

    /// A binary message from Asterisk: caller audio.
    pub fn binary(&mut self, call: &mut Call, data: &[u8], now: Instant) {
        match self.format {
            MediaFormat::Ulaw | MediaFormat::Alaw => {
                if self.pcm.len() < data.len() {
                    self.pcm.resize(data.len(), 0);
                }
                let pcm = &mut self.pcm[..data.len()];
                if self.format == MediaFormat::Ulaw {
                    g711::decode_ulaw(data, pcm);
                } else {
                    g711::decode_alaw(data, pcm);
                }
                call.caller_pcm(pcm, false, now);
            }
            _ => {
                let even = data.len() & !1;
                if even != data.len() {
                    self.counters.odd_bytes += 1;
                }
                if even > 0 {
                    call.caller_audio_le(self.rate, &data[..even], now);
                }
            }
        }
    }

    /// A text message from Asterisk.
    pub fn text(&mut self, call: &mut Call, text: &str, now: Instant) -> TextOutcome {
        let event = match Event::parse(text) {
            Ok((e, _)) => e,
            Err(e) => {
                self.counters.bad_text += 1;
                return TextOutcome::Bad(e);
            }
        };
        match event {
            Event::DtmfEnd { digit } => call.caller_digit(digit, now),
            Event::MediaXoff => {
                self.xoff = true;
                self.counters.xoffs += 1;
            }
            Event::MediaXon => self.xoff = false,
            Event::MarkProcessed { correlation_id } => self.mark_processed(call, &correlation_id),
            Event::Error { text } => {
                self.counters.asterisk_errors += 1;
                if text.starts_with("MARK_MEDIA") {
                    // Those marks will never be reported played.
                    self.no_marks = true;
                    for (_, name) in std::mem::take(&mut self.marks) {
                        call.mark_played(&name);
                    }
                }
                return TextOutcome::AsteriskError(text);
            }
            Event::Unknown { name } => {
                self.counters.unknown_events += 1;
                return TextOutcome::Unknown(name);
            }
            // A second MEDIA_START, STATUS, QUEUE_DRAINED and buffering
            // reports carry nothing this leg acts on.
            Event::MediaStart(_)
            | Event::Status(_)
            | Event::QueueDrained
            | Event::BufferingCompleted { .. } => {}
        }
        TextOutcome::Ok
    }

    fn mark_processed(&mut self, call: &mut Call, id: &str) {
        let Some(n) = id.strip_prefix('m').and_then(|n| n.parse::<u64>().ok()) else {
            self.counters.stray_marks += 1;
            return;
        };
        if !self.marks.iter().any(|(m, _)| *m == n) {
            self.counters.stray_marks += 1;
            return;
        }
        // Asterisk plays in order: every mark up to this one was played.
        while let Some((m, name)) = self.marks.pop_front() {
            call.mark_played(&name);
            if m == n {
                break;
            }
        }
    }

    /// The caller's part of a tick: the frame goes into the queue for
    /// Asterisk (held while XOFF lasts), then what the call asks of the leg.
    pub fn tick(&mut self, call: &mut Call, tick: Tick) {
        if self.pacing == Pacing::Asterisk {
            self.drain(call, true);
            call.tick_done(tick);
            self.requests(call);
            return;
        }
        let frame = call.take_caller_frame();
        let outcome = if self.xoff && self.out_frames >= HELD_MAX {
            self.counters.held_dropped += 1;
            FrameOutcome::Lost
        } else {
            let bytes = encode(&self.format, frame, &mut self.arena);
            self.out.push_back(Outgoing::Binary(bytes));
            self.out_frames += 1;
            FrameOutcome::Sent
        };
        call.caller_frame_done(outcome, tick);
        self.requests(call);
    }

    /// After a bot message: Asterisk-paced, its audio goes now (voxbridge
    /// paced, it waits for its tick). Then what the call asked of the leg.
    pub fn pump(&mut self, call: &mut Call) {
        if self.pacing == Pacing::Asterisk {
            self.drain(call, false);
        }
        self.requests(call);
    }

    /// Asterisk-paced: moves the bot audio queued in the call into binary
    /// messages (see the module docs); `at_tick` once per tick.
    fn drain(&mut self, call: &mut Call, at_tick: bool) {
        let mut at_tick = at_tick;
        // Marks whose audio went out already go before newer audio.
        call.settle_marks();
        self.requests(call);
        // At most 1 s waiting for the socket, and nothing in XOFF.
        while self.out_frames < BULK_DRAIN_FRAMES && !self.xoff {
            let mut frames = 0;
            let mut short = false;
            while frames < BULK_MESSAGE_FRAMES && !short {
                let Some(pcm) = call.take_ready_frame(at_tick) else {
                    break;
                };
                at_tick = false;
                short = pcm.len() * 1000 < self.rate as usize * 20;
                append(&self.format, pcm, &mut self.arena);
                frames += 1;
                call.ready_frame_done(FrameOutcome::Sent);
                if call.has_leg_requests() {
                    // A mark: MARK_MEDIA goes right behind its audio.
                    break;
                }
            }
            if frames == 0 {
                break;
            }
            if !self.buffering {
                self.buffering = true;
                self.command(Command::StartMediaBuffering);
            }
            self.out.push_back(Outgoing::Binary(self.arena.split().freeze()));
            self.out_frames += frames;
            self.requests(call);
            if short {
                break;
            }
        }
        // A tick with nothing to send and nothing on its way: the burst is over.
        if at_tick && self.buffering && !self.xoff && self.out_frames == 0 && !call.bot_audio_pending() {
            self.buffering = false;
            self.command(Command::StopMediaBuffering { correlation_id: None });
        }
    }

    /// Acts on what the call asked of the leg (after a bot message or a tick).
    pub fn requests(&mut self, call: &mut Call) {
        // Asterisk's channel has no way to play a digit toward the caller.
        while call.poll_digit_out().is_some() {}
        while let Some(r) = call.poll_leg_request() {
            match r {
                LegRequest::Flush => {
                    // What is held goes, and so does Asterisk's queue; the
                    // marks that were waiting in it will never be played.
                    self.out.clear();
                    self.out_frames = 0;
                    // Asterisk ends its media buffering on FLUSH_MEDIA.
                    self.buffering = false;
                    for (_, name) in std::mem::take(&mut self.marks) {
                        call.mark_played(&name);
                    }
                    self.command_front(Command::FlushMedia);
                }
                LegRequest::Mark(name) if self.no_marks => call.mark_played(&name),
                LegRequest::Mark(name) => {
                    self.next_mark += 1;
                    let id = format!("m{}", self.next_mark);
                    self.marks.push_back((self.next_mark, name));
                    self.command(Command::MarkMedia {
                        correlation_id: Some(id),
                    });
                }
            }
        }
    }

    /// Queues `HANGUP` (the call ended on our side).
    pub fn hang_up(&mut self) {
        self.command(Command::Hangup);
    }

    fn command(&mut self, c: Command) {
        if let Some(o) = self.command_text(c) {
            self.out.push_back(o);
        }
    }

    fn command_front(&mut self, c: Command) {
        if let Some(o) = self.command_text(c) {
            self.out.push_front(o);
        }
    }

    fn command_text(&mut self, c: Command) -> Option<Outgoing> {
        // Our commands are short (ids are `m<n>`), so the 128-byte limit holds.
        c.write(self.control, &mut self.text).ok()?;
        Some(Outgoing::Text(Bytes::copy_from_slice(self.text.as_bytes())))
    }

    /// The next message for Asterisk, if one may go now (frames wait while
    /// XOFF lasts, and so does what is queued behind them).
    pub fn next_out(&self) -> Option<&Outgoing> {
        match self.out.front()? {
            Outgoing::Binary(_) if self.xoff => None,
            o => Some(o),
        }
    }

    /// The message [`ChanWsLeg::next_out`] showed went out.
    pub fn sent_out(&mut self) {
        if let Some(Outgoing::Binary(b)) = self.out.pop_front() {
            let frames = b.len().div_ceil(self.frame_bytes.max(1)).max(1);
            self.out_frames = self.out_frames.saturating_sub(frames);
        }
    }

    /// Frames waiting for Asterisk.
    pub fn held_frames(&self) -> usize {
        self.out_frames
    }
}

/// One frame in the channel's format, split off `arena`.
fn encode(format: &MediaFormat, pcm: &[i16], arena: &mut BytesMut) -> Bytes {
    append(format, pcm, arena);
    arena.split().freeze()
}

/// `pcm` in the channel's format, appended to what `arena` holds.
fn append(format: &MediaFormat, pcm: &[i16], arena: &mut BytesMut) {
    let len = match format {
        MediaFormat::Ulaw | MediaFormat::Alaw => pcm.len(),
        _ => pcm.len() * 2,
    };
    if arena.capacity() - arena.len() < len {
        arena.reserve(ARENA.max(len));
    }
    let start = arena.len();
    arena.resize(start + len, 0);
    let dst = &mut arena[start..];
    match format {
        MediaFormat::Ulaw => g711::encode_ulaw(pcm, dst),
        MediaFormat::Alaw => g711::encode_alaw(pcm, dst),
        _ => {
            voxbridge_codecs::frame::write_le(pcm, dst);
        }
    }
}
