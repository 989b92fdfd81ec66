//! Daemon-wide counters and histograms, rendered in Prometheus text format.
//!
//! Calls never touch shared state per frame: each call counts into its own
//! [`CallCounters`] and folds them into the shared [`Metrics`] (relaxed
//! atomic adds, no locks) once a second and when it ends. A scrape therefore
//! lags by up to a second, which is what a 15 s scrape interval needs.

use crate::events::HangupCause;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
];
/// Upper bounds (seconds) of the bot connect-time buckets.
pub const CONNECT_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Upper bounds (seconds) of the RTP jitter and round-trip buckets.
pub const RTP_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5];

/// A fixed-bucket histogram a call keeps locally.
#[derive(Debug, Clone, Copy)]
pub struct LocalHistogram<const N: usize> {
    counts: [u64; N],
    overflow: u64,
    sum_ns: u64,
}

impl<const N: usize> Default for LocalHistogram<N> {
    fn default() -> Self {
        LocalHistogram {
            counts: [0; N],
            overflow: 0,
            sum_ns: 0,
        }
    }
}

impl<const N: usize> LocalHistogram<N> {
    /// Records one observation against `bounds`.
    pub fn observe(&mut self, bounds: &[f64; N], d: Duration) {
        let s = d.as_secs_f64();
        match bounds.iter().position(|&b| s <= b) {
            Some(i) => self.counts[i] += 1,
            None => self.overflow += 1,
        }
        self.sum_ns += d.as_nanos() as u64;
    }
}

/// The shared side of a histogram.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    counts: [AtomicU64; N],
    overflow: AtomicU64,
    sum_ns: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Adds a call's local histogram and zeroes it.
    pub fn absorb(&self, local: &mut LocalHistogram<N>) {
        for (c, l) in self.counts.iter().zip(local.counts.iter()) {
            if *l > 0 {
                c.fetch_add(*l, Relaxed);
            }
        }
        self.overflow.fetch_add(local.overflow, Relaxed);
        self.sum_ns.fetch_add(local.sum_ns, Relaxed);
        *local = LocalHistogram::default();
    }

    /// Records one observation directly (rare events only).
    pub fn observe(&self, d: Duration) {
        let mut l = LocalHistogram::default();
        l.observe(self.bounds, d);
        self.absorb(&mut l);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(self.counts.iter()) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        cum += self.overflow.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cum}");
    }
}

/// What one call counts between folds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallCounters {
    /// Audio frames received from the caller.
    pub frames_in: u64,
    /// 20 ms frames sent to the bot.
    pub frames_to_bot: u64,
    /// Audio messages received from the bot.
    pub frames_from_bot: u64,
    /// 20 ms frames sent to the caller.
    pub frames_out: u64,
    /// Paced frames sent more than 2 ms after their tick.
    pub frames_late: u64,
    /// Frames lost: ticks skipped, caller audio dropped while no bot was up.
    pub frames_lost: u64,
    /// Frames concealed (RTP ingress).
    pub frames_concealed: u64,
    /// Samples of bot audio refused because the playout buffer was full.
    pub overflow_samples: u64,
    /// Frames of silence inserted inside a bot utterance (its audio ran dry).
    pub frames_bot_gap: u64,
    /// Frames of start cushion waited before an utterance played.
    pub frames_cushion: u64,
    /// Bad messages from the bot (dropped, call continues).
    pub bot_protocol_errors: u64,
    /// Caller-to-bot added latency per forwarded batch.
    pub to_bot: LocalHistogram<10>,
    /// Lateness of each paced frame against its tick.
    pub to_caller: LocalHistogram<10>,
}

/// Daemon-wide metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Calls in progress.
    pub active_calls: AtomicI64,
    /// Calls ended, by cause (index of [`HangupCause::ALL`]).
    pub hangups: [AtomicU64; HangupCause::ALL.len()],
    /// Connections refused before becoming calls (no UUID, timeout, limit).
    pub rejected_connections: AtomicU64,
    /// Protocol errors from callers.
    pub caller_protocol_errors: AtomicU64,
    /// Calls refused because their call id was in use by a live call.
    pub duplicate_call_ids: AtomicU64,
    /// `ERROR` events from Asterisk's WebSocket channel (it refused a command).
    pub chanws_errors: AtomicU64,
    /// `MEDIA_XOFF` from Asterisk's WebSocket channel (its queue filled up).
    pub chanws_xoffs: AtomicU64,
    /// Transcription: final segments from the speech recognizer.
    pub transcribe_segments: AtomicU64,
    /// Transcription: tapped audio dropped (the recognizer's queue full, or
    /// transcription given up for the call), ms.
    pub transcribe_dropped_ms: AtomicU64,
    /// Transcription: recognizer connections that failed or dropped.
    pub transcribe_failures: AtomicU64,
    /// Transcription: recognizer messages that were not usable (counted, skipped).
    pub transcribe_bad_messages: AtomicU64,
    /// Recordings: files completed (any end).
    pub recordings_finished: AtomicU64,
    /// Recordings: ended by a write error (a full disk included).
    pub recording_failures: AtomicU64,
    /// Recordings: audio not written (the writer's queue full), ms.
    pub recording_dropped_ms: AtomicU64,
    /// Bot connect attempts that failed.
    pub bot_connect_failures: AtomicU64,
    /// Bot links that dropped mid-call.
    pub bot_drops: AtomicU64,
    /// Of those, bots dropped because they stopped reading (their link's
    /// write buffer full).
    pub bot_stalls: AtomicU64,
    /// Time to connect to the bot.
    pub bot_connect_seconds: Histogram<8>,
    frames_in: AtomicU64,
    frames_to_bot: AtomicU64,
    frames_from_bot: AtomicU64,
    frames_out: AtomicU64,
    frames_late: AtomicU64,
    frames_lost: AtomicU64,
    frames_concealed: AtomicU64,
    frames_bot_gap: AtomicU64,
    frames_cushion: AtomicU64,
    overflow_samples: AtomicU64,
    bot_protocol_errors: AtomicU64,
    to_bot: Histogram<10>,
    to_caller: Histogram<10>,
    /// RTP packet counters (all RTP sessions).
    pub rtp: RtpMetrics,
    /// The SIP endpoint's counters (copied from its UAS after each event).
    pub sip: std::sync::Mutex<crate::sansio::sip::UasStats>,
}

/// RTP figures: packet counters folded in by each RTP call once a second,
/// jitter and RTT observed at each RTCP report.
#[derive(Debug)]
pub struct RtpMetrics {
    /// RTP sessions created through the API.
    pub sessions_created: AtomicU64,
    /// Session requests refused (bad SDP, no codec, no port, shutting down).
    pub sessions_refused: AtomicU64,
    /// Valid RTP packets received.
    pub packets_in: AtomicU64,
    /// RTP packets sent.
    pub packets_out: AtomicU64,
    /// Datagrams that were not usable RTP/RTCP (malformed, unknown payload
    /// type, from an unexpected source).
    pub malformed: AtomicU64,
    /// Packets lost (declared at playout by the jitter buffer).
    pub lost: AtomicU64,
    /// Packets after their playout point.
    pub late: AtomicU64,
    /// Duplicates.
    pub duplicates: AtomicU64,
    /// RTCP packets received.
    pub rtcp_in: AtomicU64,
    /// Shared-port datagrams that matched no session.
    pub unmatched: AtomicU64,
    /// Shared-port datagrams dropped because their session's inbox was full.
    pub overflow: AtomicU64,
    /// Shared-port RTP packets the kernel did not take (dropped).
    pub send_dropped: AtomicU64,
    /// Shared-port receive system calls (`recvmmsg`), each up to 32 datagrams.
    pub recv_batches: AtomicU64,
    /// Shared-port send system calls (`sendmmsg`), each up to 32 datagrams.
    pub send_batches: AtomicU64,
    /// Each RTP call's interarrival jitter (RFC 3550), observed every 5 s.
    pub jitter_seconds: Histogram<8>,
    /// Each RTP call's round-trip time from RTCP, observed every 5 s once known.
    pub rtt_seconds: Histogram<8>,
}

impl Default for RtpMetrics {
    fn default() -> Self {
        RtpMetrics {
            sessions_created: AtomicU64::new(0),
            sessions_refused: AtomicU64::new(0),
            packets_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            late: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rtcp_in: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            send_dropped: AtomicU64::new(0),
            recv_batches: AtomicU64::new(0),
            send_batches: AtomicU64::new(0),
            jitter_seconds: Histogram::new(&RTP_BUCKETS),
            rtt_seconds: Histogram::new(&RTP_BUCKETS),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            active_calls: AtomicI64::new(0),
            hangups: std::array::from_fn(|_| AtomicU64::new(0)),
            rejected_connections: AtomicU64::new(0),
            duplicate_call_ids: AtomicU64::new(0),
            chanws_errors: AtomicU64::new(0),
            chanws_xoffs: AtomicU64::new(0),
            transcribe_segments: AtomicU64::new(0),
            transcribe_dropped_ms: AtomicU64::new(0),
            transcribe_failures: AtomicU64::new(0),
            transcribe_bad_messages: AtomicU64::new(0),
            recordings_finished: AtomicU64::new(0),
            recording_failures: AtomicU64::new(0),
            recording_dropped_ms: AtomicU64::new(0),
            caller_protocol_errors: AtomicU64::new(0),
            bot_connect_failures: AtomicU64::new(0),
            bot_drops: AtomicU64::new(0),
            bot_stalls: AtomicU64::new(0),
            bot_connect_seconds: Histogram::new(&CONNECT_BUCKETS),
            frames_in: AtomicU64::new(0),
            frames_to_bot: AtomicU64::new(0),
            frames_from_bot: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            frames_late: AtomicU64::new(0),
            frames_lost: AtomicU64::new(0),
            frames_concealed: AtomicU64::new(0),
            frames_bot_gap: AtomicU64::new(0),
            frames_cushion: AtomicU64::new(0),
            overflow_samples: AtomicU64::new(0),
            bot_protocol_errors: AtomicU64::new(0),
            to_bot: Histogram::new(&LATENCY_BUCKETS),
            to_caller: Histogram::new(&LATENCY_BUCKETS),
            rtp: RtpMetrics::default(),
            sip: std::sync::Mutex::new(crate::sansio::sip::UasStats::default()),
        }
    }
}

/// A point-in-time copy of the frame counters (for tests and loadgen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameTotals {
    /// See [`CallCounters::frames_in`].
    pub frames_in: u64,
    /// See [`CallCounters::frames_to_bot`].
    pub frames_to_bot: u64,
    /// See [`CallCounters::frames_from_bot`].
    pub frames_from_bot: u64,
    /// See [`CallCounters::frames_out`].
    pub frames_out: u64,
    /// See [`CallCounters::frames_late`].
    pub frames_late: u64,
    /// See [`CallCounters::frames_lost`].
    pub frames_lost: u64,
    /// See [`CallCounters::overflow_samples`].
    pub overflow_samples: u64,
    /// See [`CallCounters::frames_bot_gap`].
    pub frames_bot_gap: u64,
    /// See [`CallCounters::frames_cushion`].
    pub frames_cushion: u64,
    /// See [`CallCounters::bot_protocol_errors`].
    pub bot_protocol_errors: u64,
}

impl Metrics {
    /// Folds a call's counters in and zeroes them.
    pub fn absorb(&self, c: &mut CallCounters) {
        let add = |a: &AtomicU64, v: u64| {
            if v > 0 {
                a.fetch_add(v, Relaxed);
            }
        };
        add(&self.frames_in, c.frames_in);
        add(&self.frames_to_bot, c.frames_to_bot);
        add(&self.frames_from_bot, c.frames_from_bot);
        add(&self.frames_out, c.frames_out);
        add(&self.frames_late, c.frames_late);
        add(&self.frames_lost, c.frames_lost);
        add(&self.frames_concealed, c.frames_concealed);
        add(&self.frames_bot_gap, c.frames_bot_gap);
        add(&self.frames_cushion, c.frames_cushion);
        add(&self.overflow_samples, c.overflow_samples);
        add(&self.bot_protocol_errors, c.bot_protocol_errors);
        self.to_bot.absorb(&mut c.to_bot);
        self.to_caller.absorb(&mut c.to_caller);
        *c = CallCounters::default();
    }

    /// Counts a hangup.
    pub fn hangup(&self, cause: HangupCause) {
        self.hangups[cause.index()].fetch_add(1, Relaxed);
    }

    /// Calls ended with `cause` so far.
    pub fn hangups_with(&self, cause: HangupCause) -> u64 {
        self.hangups[cause.index()].load(Relaxed)
    }

    /// The frame counters now.
    pub fn totals(&self) -> FrameTotals {
        FrameTotals {
            frames_in: self.frames_in.load(Relaxed),
            frames_to_bot: self.frames_to_bot.load(Relaxed),
            frames_from_bot: self.frames_from_bot.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            frames_late: self.frames_late.load(Relaxed),
            frames_lost: self.frames_lost.load(Relaxed),
            overflow_samples: self.overflow_samples.load(Relaxed),
            frames_bot_gap: self.frames_bot_gap.load(Relaxed),
            frames_cushion: self.frames_cushion.load(Relaxed),
            bot_protocol_errors: self.bot_protocol_errors.load(Relaxed),
        }
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let gauge = |o: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        gauge(
            &mut o,
            "voxbridge_active_calls",
            "Calls in progress.",
            self.active_calls.load(Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP voxbridge_calls_total Calls ended, by hangup cause.\n# TYPE voxbridge_calls_total counter"
        );
        for c in HangupCause::ALL {
            let _ = writeln!(
                o,
                "voxbridge_calls_total{{cause=\"{}\"}} {}",
                c.as_str(),
                self.hangups_with(c)
            );
        }
        let t = self.totals();
        let _ = writeln!(
            o,
            "# HELP voxbridge_frames_total Audio frames by direction and fate.\n# TYPE voxbridge_frames_total counter"
        );
        for (kind, v) in [
            ("in", t.frames_in),
            ("to_bot", t.frames_to_bot),
            ("from_bot", t.frames_from_bot),
            ("out", t.frames_out),
            ("late", t.frames_late),
            ("lost", t.frames_lost),
            ("concealed", self.frames_concealed.load(Relaxed)),
            ("bot_gap", self.frames_bot_gap.load(Relaxed)),
            ("cushion", self.frames_cushion.load(Relaxed)),
        ] {
            let _ = writeln!(o, "voxbridge_frames_total{{kind=\"{kind}\"}} {v}");
        }
        counter(
            &mut o,
            "voxbridge_playout_overflow_samples_total",
            "Bot audio samples refused because a call's playout buffer was full.",
            t.overflow_samples,
        );
        let _ = writeln!(
            o,
            "# HELP voxbridge_rtp_packets_total RTP/RTCP packets by kind.\n# TYPE voxbridge_rtp_packets_total counter"
        );
        let r = &self.rtp;
        for (kind, v) in [
            ("in", &r.packets_in),
            ("out", &r.packets_out),
            ("malformed", &r.malformed),
            ("lost", &r.lost),
            ("late", &r.late),
            ("duplicate", &r.duplicates),
            ("rtcp_in", &r.rtcp_in),
            ("unmatched", &r.unmatched),
            ("overflow", &r.overflow),
            ("send_dropped", &r.send_dropped),
        ] {
            let _ = writeln!(
                o,
                "voxbridge_rtp_packets_total{{kind=\"{kind}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP voxbridge_rtp_shared_syscalls_total Shared-port recvmmsg/sendmmsg calls (each up to 32 datagrams).\n# TYPE voxbridge_rtp_shared_syscalls_total counter"
        );
        for (dir, v) in [("recv", &r.recv_batches), ("send", &r.send_batches)] {
            let _ = writeln!(
                o,
                "voxbridge_rtp_shared_syscalls_total{{dir=\"{dir}\"}} {}",
                v.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "voxbridge_rtp_sessions_created_total",
            "RTP sessions created through the media API.",
            r.sessions_created.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_rtp_sessions_refused_total",
            "RTP session requests refused (bad SDP, no common codec, no free port, shutting down).",
            r.sessions_refused.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_rejected_connections_total",
            "Connections refused before becoming calls (no UUID in time, call limit, shutdown).",
            self.rejected_connections.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_duplicate_call_ids_total",
            "Calls refused because their call id (AudioSocket UUID, RTP call_id) belonged to a live call.",
            self.duplicate_call_ids.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_caller_protocol_errors_total",
            "Malformed input from callers.",
            self.caller_protocol_errors.load(Relaxed),
        );
        let sip = *self.sip.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            o,
            "# HELP voxbridge_sip_total What the SIP endpoint saw and did, by event.\n# TYPE voxbridge_sip_total counter"
        );
        for (event, v) in [
            ("invite", sip.invites),
            ("answered", sip.answered),
            ("refused", sip.refused),
            ("cancelled", sip.cancelled),
            ("bye_received", sip.byes_received),
            ("bye_sent", sip.byes_sent),
            ("ack_timeout", sip.ack_timeouts),
            ("malformed", sip.malformed),
            ("bad_request", sip.bad_requests),
            ("unknown_dialog", sip.unknown_dialog),
            ("stray_response", sip.stray_responses),
            ("keepalive", sip.keepalives),
            ("forbidden_source", sip.forbidden_source),
            ("rate_limited", sip.rate_limited),
            ("bad_answer", sip.bad_answers),
            ("early_media", sip.early_media),
            ("reinvite", sip.reinvites),
            ("codec_change", sip.codec_changes),
            ("session_expired", sip.session_expired),
            ("refresh_sent", sip.refreshes_sent),
            ("info_digit", sip.info_digits),
            ("send_failure", sip.send_failures),
            ("overloaded", sip.overloaded),
            ("auth_challenge", sip.auth_challenges),
            ("auth_failure", sip.auth_failures),
            ("dial", sip.dials),
            ("dial_answered", sip.dials_answered),
            ("dial_failed", sip.dials_failed),
            ("dial_auth", sip.dial_auth),
            ("dial_cancel", sip.dials_cancelled),
            ("register_sent", sip.registers_sent),
            ("registered", sip.registrations),
            ("register_failed", sip.register_failures),
            ("transfer", sip.transfers),
            ("transferred", sip.transfers_completed),
            ("transfer_failed", sip.transfers_failed),
            ("transfer_refused", sip.transfers_refused),
        ] {
            let _ = writeln!(o, "voxbridge_sip_total{{event=\"{event}\"}} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP voxbridge_sip_registrations Registrations the registrars hold now ([[sip.gateways]] register = true).\n# TYPE voxbridge_sip_registrations gauge\nvoxbridge_sip_registrations {}",
            sip.registered
        );
        counter(
            &mut o,
            "voxbridge_chanws_errors_total",
            "ERROR events from Asterisk's WebSocket channel (a command it refused).",
            self.chanws_errors.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_chanws_xoff_total",
            "MEDIA_XOFF events from Asterisk's WebSocket channel (its playout queue was full).",
            self.chanws_xoffs.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_transcribe_segments_total",
            "Final transcript segments from the speech recognizer (routes with [routes.<name>.transcribe]).",
            self.transcribe_segments.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_transcribe_dropped_ms_total",
            "Tapped audio not transcribed (the recognizer's queue full, or given up for the call), ms.",
            self.transcribe_dropped_ms.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_transcribe_failures_total",
            "Speech recognizer connections that failed or dropped.",
            self.transcribe_failures.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_transcribe_bad_messages_total",
            "Speech recognizer messages that could not be used (skipped).",
            self.transcribe_bad_messages.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_recordings_finished_total",
            "Call recordings whose file was completed (stopped, the call ended, or a write error).",
            self.recordings_finished.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_recording_failures_total",
            "Call recordings ended by a write error (a full disk included); their calls went on.",
            self.recording_failures.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_recording_dropped_ms_total",
            "Call audio not recorded because the writer's queue was full (silence in its place), ms.",
            self.recording_dropped_ms.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_bot_protocol_errors_total",
            "Malformed or unusable messages from bots (dropped).",
            t.bot_protocol_errors,
        );
        counter(
            &mut o,
            "voxbridge_bot_connect_failures_total",
            "Bot connect attempts that failed or timed out.",
            self.bot_connect_failures.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_bot_drops_total",
            "Bot links that dropped mid-call.",
            self.bot_drops.load(Relaxed),
        );
        counter(
            &mut o,
            "voxbridge_bot_stalls_total",
            "Bot links dropped because the bot stopped reading (write buffer full); also in voxbridge_bot_drops_total.",
            self.bot_stalls.load(Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP voxbridge_added_latency_seconds Latency the daemon adds: caller->bot forwarding time, and lateness of each paced frame to the caller against its 20 ms tick.\n# TYPE voxbridge_added_latency_seconds histogram"
        );
        self.to_bot
            .render(&mut o, "voxbridge_added_latency_seconds", "direction=\"to_bot\"");
        self.to_caller.render(
            &mut o,
            "voxbridge_added_latency_seconds",
            "direction=\"to_caller\"",
        );
        let _ = writeln!(
            o,
            "# HELP voxbridge_bot_connect_seconds Time to bring a bot link up.\n# TYPE voxbridge_bot_connect_seconds histogram"
        );
        self.bot_connect_seconds
            .render(&mut o, "voxbridge_bot_connect_seconds", "");
        let _ = writeln!(
            o,
            "# HELP voxbridge_rtp_jitter_seconds RTP interarrival jitter per call, every 5 s.\n# TYPE voxbridge_rtp_jitter_seconds histogram"
        );
        self.rtp
            .jitter_seconds
            .render(&mut o, "voxbridge_rtp_jitter_seconds", "");
        let _ = writeln!(
            o,
            "# HELP voxbridge_rtp_rtt_seconds RTP round-trip time per call from RTCP, every 5 s.\n# TYPE voxbridge_rtp_rtt_seconds histogram"
        );
        self.rtp
            .rtt_seconds
            .render(&mut o, "voxbridge_rtp_rtt_seconds", "");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text_with_cumulative_buckets() {
        let m = Metrics::default();
        let mut c = CallCounters {
            frames_in: 3,
            ..Default::default()
        };
        c.to_caller.observe(&LATENCY_BUCKETS, Duration::from_micros(300));
        c.to_caller.observe(&LATENCY_BUCKETS, Duration::from_millis(3));
        m.absorb(&mut c);
        m.hangup(HangupCause::CallerHangup);
        let text = m.render();
        assert!(text.contains("voxbridge_frames_total{kind=\"in\"} 3"));
        assert!(text.contains("voxbridge_calls_total{cause=\"caller_hangup\"} 1"));
        assert!(
            text.contains("voxbridge_added_latency_seconds_bucket{direction=\"to_caller\",le=\"0.0005\"} 1")
        );
        assert!(
            text.contains("voxbridge_added_latency_seconds_bucket{direction=\"to_caller\",le=\"0.005\"} 2")
        );
        assert!(text.contains("voxbridge_added_latency_seconds_count{direction=\"to_caller\"} 2"));
        assert_eq!(c.frames_in, 0, "absorbed counters are zeroed");
    }
}
