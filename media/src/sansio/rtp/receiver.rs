//! The receive half of an RTP leg, sans-IO: datagrams in, 20 ms PCM frames
//! out as soon as they can go (see [`crate::sansio::jitter`]), DTMF digits and RTCP
//! receiver statistics on the side.
//!
//! Audio, comfort noise (RFC 3389, PT 13) and telephone-event packets share
//! one sequence space, so all of them go through the jitter buffer (DTMF
//! digits are reported at arrival, once per key press, and their slots play
//! as silence). Released packets are decoded into a staging buffer and
//! frames are cut from it, so packets of any ptime work; a lost packet is
//! rebuilt from the next one's FEC (Opus) or concealed (codec PLC); an
//! overdue stream conceals for three frames and then gives silence, one
//! frame per 20 ms (the sender went quiet, DTX), so the bot's VAD still
//! hears time pass. An SSRC change restarts the stream without a glitch: the
//! jitter buffer and statistics start over, the decoder keeps its history.

use crate::error::MediaError;
use crate::sansio::jitter::{Direct, Inserted, JitterBuffer, JitterConfig, Pop};
use voxbridge_codecs::{Codec, FrameDecoder};
use voxbridge_proto::dtmf::{DtmfEvent, DtmfReceiver};
use voxbridge_proto::rtcp::{ReceiverStats, ReportBlock};
use voxbridge_proto::rtp::{RtpView, StreamTracker};
use voxbridge_proto::sdp::AudioCodec;
use voxbridge_proto::ProtoError;

/// Comfort noise payload type (RFC 3389, static).
pub const CN_PT: u8 = 13;
/// Frames of concealment before an overdue stream gives silence instead.
const CONCEAL_TICKS: u32 = 3;
/// Longest packet decoded whole, ms (longer ones are cut).
const STAGE_MS: u32 = 240;

/// What a frame was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSource {
    /// Decoded audio.
    Audio,
    /// Concealment of a lost or late packet.
    Concealed,
    /// Silence (DTX, comfort noise, DTMF tones in progress).
    Silence,
}

/// Receive counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// Valid RTP packets.
    pub packets: u64,
    /// Datagrams that were not RTP (counted, dropped).
    pub malformed: u64,
    /// RTP with a payload type not negotiated (counted, dropped).
    pub unknown_pt: u64,
    /// Payloads the decoder refused (concealed instead).
    pub decode_errors: u64,
    /// SSRC changes followed.
    pub ssrc_changes: u64,
    /// Frames concealed.
    pub concealed_frames: u64,
}

/// The receive half of one leg.
#[derive(Debug)]
pub struct RtpReceiver {
    dtmf_pt: Option<u8>,
    tracker: StreamTracker,
    jb: JitterBuffer,
    dtmf: DtmfReceiver,
    stats: ReceiverStats,
    stage: Stage,
    counters: RxCounters,
    /// Loss counted on the streams before a codec change.
    lost_before: i64,
}

/// Released packets decoded (or concealed) into PCM, waiting to be cut into
/// frames.
#[derive(Debug)]
struct Stage {
    pt: u8,
    decoder: FrameDecoder,
    frame: usize,
    /// Two frames long at first; a longer packet grows it (once) up to `max`.
    pcm: Vec<i16>,
    max: usize,
    staged: usize,
    /// The worst source in the staged samples.
    source: FrameSource,
    dry_ticks: u32,
    noise: ComfortNoise,
}

/// White noise at an RFC 3389 level (a cheap LCG; not for cryptography).
#[derive(Debug)]
struct ComfortNoise(u32);

impl ComfortNoise {
    /// Fills `out` with noise `level` dB below full scale (silence for `None`
    /// or levels under -90 dBov).
    fn fill(&mut self, out: &mut [i16], level: Option<u8>) {
        let Some(db) = level.filter(|l| *l < 90) else {
            out.fill(0);
            return;
        };
        // Uniform noise in [-amp/2, amp/2) has an RMS of amp / sqrt(12).
        let amp = 32767.0 * 10f32.powf(-(db as f32) / 20.0) * 12f32.sqrt();
        for s in out {
            self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let u = (self.0 >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            *s = (u * amp).clamp(-32768.0, 32767.0) as i16;
        }
    }
}

/// The PCM codec (and its rate) an RTP codec decodes to; Opus decodes straight
/// to `opus_rate` (the bot's rate) so no resampler runs.
pub fn pcm_codec(codec: AudioCodec, opus_rate: u32) -> Codec {
    match codec {
        AudioCodec::Pcmu => Codec::Pcmu,
        AudioCodec::Pcma => Codec::Pcma,
        AudioCodec::G722 => Codec::G722,
        // libopus decodes at 8, 12, 16, 24 or 48 kHz; a bot at another rate
        // (22,050 Hz, say) gets full-band audio resampled from 48 kHz.
        AudioCodec::Opus if [8000, 12000, 16000, 24000, 48000].contains(&opus_rate) => {
            Codec::Opus { rate: opus_rate }
        }
        AudioCodec::Opus => Codec::Opus { rate: 48000 },
    }
}

impl RtpReceiver {
    /// A receiver for `codec` on payload type `pt`, DTMF on `dtmf_pt`.
    pub fn new(codec: Codec, rtp_clock: u32, pt: u8, dtmf_pt: Option<u8>) -> Result<Self, MediaError> {
        let rate = codec.pcm_rate();
        Ok(RtpReceiver {
            dtmf_pt,
            tracker: StreamTracker::default(),
            jb: JitterBuffer::new(JitterConfig::new(rtp_clock)),
            dtmf: DtmfReceiver::default(),
            stats: ReceiverStats::default(),
            stage: Stage {
                pt,
                decoder: FrameDecoder::new(codec)?,
                frame: codec.frame_samples(),
                pcm: vec![0; 2 * codec.frame_samples()],
                max: (rate * STAGE_MS / 1000) as usize + codec.frame_samples(),
                staged: 0,
                source: FrameSource::Audio,
                dry_ticks: 0,
                noise: ComfortNoise(0x1234_5678),
            },
            counters: RxCounters::default(),
            lost_before: 0,
        })
    }

    /// The call changed codec (SIP re-INVITE): what arrives from now on is
    /// `codec` on `pt` at `rtp_clock`, DTMF on `dtmf_pt`. The stream is
    /// followed afresh (what is buffered of the old one is dropped; the far
    /// end may keep or change its SSRC), the counters go on.
    pub fn switch_codec(
        &mut self,
        codec: Codec,
        rtp_clock: u32,
        pt: u8,
        dtmf_pt: Option<u8>,
    ) -> Result<(), MediaError> {
        let decoder = FrameDecoder::new(codec)?;
        let rate = codec.pcm_rate();
        self.dtmf_pt = dtmf_pt;
        self.tracker = StreamTracker::default();
        self.jb.set_clock(rtp_clock);
        self.lost_before += self.stats.lost();
        self.stats = ReceiverStats::default();
        let st = &mut self.stage;
        st.pt = pt;
        st.decoder = decoder;
        st.frame = codec.frame_samples();
        st.pcm = vec![0; 2 * st.frame];
        st.max = (rate * STAGE_MS / 1000) as usize + st.frame;
        st.staged = 0;
        st.source = FrameSource::Audio;
        st.dry_ticks = 0;
        Ok(())
    }

    /// One RTP datagram that arrived at `arrival` (RTP clock units, monotonic).
    /// Malformed input is counted and returned as an error; the stream goes on.
    pub fn datagram(&mut self, data: &[u8], arrival: u64) -> Result<Inserted, ProtoError> {
        let v = match RtpView::parse(data) {
            Ok(v) => v,
            Err(e) => {
                self.counters.malformed += 1;
                return Err(e);
            }
        };
        let is_dtmf = Some(v.payload_type) == self.dtmf_pt;
        if v.payload_type != self.stage.pt && v.payload_type != CN_PT && !is_dtmf {
            self.counters.unknown_pt += 1;
            return Err(ProtoError::UnknownType(v.payload_type));
        }
        let o = self.tracker.observe(v.ssrc, v.sequence, v.timestamp);
        if o.ssrc_changed {
            self.counters.ssrc_changes += 1;
            self.jb.reset();
            self.stats = ReceiverStats::default();
        }
        self.counters.packets += 1;
        let payload = data.get(v.payload.clone()).unwrap_or_default();
        if is_dtmf {
            // Malformed events are dropped; the slot still plays as silence.
            if self.dtmf.handle(v.timestamp, payload).is_err() {
                self.counters.malformed += 1;
            }
        }
        // The next packet on a clean network is decoded here, straight from
        // the datagram, when less than a frame is staged (frames are taken
        // after each batch of datagrams, so in a burst only the first goes
        // this way and the stage stays bounded); one that must wait is copied
        // into the jitter buffer.
        let inserted = if self.stage.staged < self.stage.frame {
            match self
                .jb
                .insert_direct(o.seq, o.ts, v.payload_type, payload, arrival, arrival)
            {
                Direct::Play { .. } => {
                    self.stage.packet(v.payload_type, payload, &mut self.counters);
                    Inserted::Queued
                }
                Direct::Inserted(i) => i,
            }
        } else {
            self.jb.insert(o.seq, o.ts, v.payload_type, payload, arrival)
        };
        // Duplicates are left out of the loss arithmetic, so "lost" is what
        // never arrived (RFC 3550 would let duplicates hide losses).
        if inserted != Inserted::Duplicate {
            self.stats.record(o.seq, o.ts, arrival);
        }
        Ok(inserted)
    }

    /// The next key press the caller made (once per press, at its start).
    pub fn poll_digit(&mut self) -> Option<char> {
        while let Some(e) = self.dtmf.poll_event() {
            if let DtmfEvent::Begin { digit, .. } = e {
                return Some(digit);
            }
        }
        None
    }

    /// The next 20 ms frame of PCM at the codec's rate into `out`
    /// (`out.len()` is one frame), if one can go at `now` (RTP clock units
    /// on the same origin as arrivals). Call until it returns `None`: after
    /// each datagram, and on the 20 ms tick (concealment of an overdue
    /// stream).
    pub fn frame(&mut self, now: u64, out: &mut [i16]) -> Option<FrameSource> {
        let st = &mut self.stage;
        let want = st.frame.min(out.len());
        while st.staged < want {
            match self.jb.pop(now) {
                Pop::Idle => return None,
                Pop::Packet { pt, payload, .. } => st.packet(pt, payload, &mut self.counters),
                Pop::Lost => {
                    let next = self.jb.peek_next();
                    st.lost(next, &mut self.counters);
                }
                Pop::Underrun => st.underrun(&mut self.counters),
            }
        }
        out[..want].copy_from_slice(&st.pcm[..want]);
        st.pcm.copy_within(want..st.staged, 0);
        st.staged -= want;
        Some(std::mem::replace(&mut st.source, FrameSource::Audio))
    }

    /// A reception report block about the current source, if any.
    pub fn report(&mut self, last_sr: u32, delay_since_last_sr: u32) -> Option<ReportBlock> {
        let ssrc = self.tracker.ssrc()?;
        Some(self.stats.report(ssrc, last_sr, delay_since_last_sr))
    }

    /// The remote source, once a packet was seen.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.tracker.ssrc()
    }

    /// Loss (from sequence numbers) and interarrival jitter (clock units).
    pub fn loss_and_jitter(&self) -> (i64, u32) {
        (self.lost_before + self.stats.lost(), self.stats.jitter())
    }

    /// Counters.
    pub fn counters(&self) -> RxCounters {
        self.counters
    }

    /// The jitter buffer's counters and current target.
    pub fn jitter(&self) -> (crate::sansio::jitter::JitterStats, u32) {
        (self.jb.stats(), self.jb.target_ms())
    }
}

impl Stage {
    /// A released packet: decoded audio, or comfort noise at the level it
    /// gives (RFC 3389: first byte is -dBov), or a DTMF slot played as silence.
    fn packet(&mut self, pt: u8, payload: &[u8], counters: &mut RxCounters) {
        self.dry_ticks = 0;
        if pt == self.pt {
            // Room for a frame (concealment needs one) and for the whole
            // packet, up to the cap (a longer one is cut).
            self.room_for_frame();
            let samples = self.decoder.samples_in(payload).unwrap_or(self.frame);
            let need = self.staged + samples;
            if need > self.pcm.len() {
                let cap = self.max.max(self.staged + self.frame);
                self.pcm.resize(need.min(cap), 0);
            }
            let room = self.pcm.len() - self.staged;
            let dst = &mut self.pcm[self.staged..];
            let (n, what) = match self.decoder.decode(payload, dst) {
                Ok(n) if n > 0 => (n.min(room), FrameSource::Audio),
                _ => {
                    counters.decode_errors += 1;
                    (
                        conceal(&mut self.decoder, dst, self.frame),
                        FrameSource::Concealed,
                    )
                }
            };
            self.add(n, what, counters);
        } else {
            self.room_for_frame();
            let level = if pt == CN_PT {
                payload.first().copied()
            } else {
                None
            };
            let frame = self.frame;
            self.noise
                .fill(&mut self.pcm[self.staged..self.staged + frame], level);
            self.add(frame, FrameSource::Silence, counters);
        }
    }

    /// A packet that was sent but is lost: rebuilt from the FEC of `next`
    /// when it is here (Opus), else concealed.
    fn lost(&mut self, next: Option<&[u8]>, counters: &mut RxCounters) {
        self.room_for_frame();
        let frame = self.frame;
        let dst = &mut self.pcm[self.staged..];
        let n = match next {
            Some(next) => self.decoder.recover(next, &mut dst[..frame]).unwrap_or(0),
            None => 0,
        };
        let n = if n == 0 {
            conceal(&mut self.decoder, dst, frame)
        } else {
            n
        };
        self.add(n, FrameSource::Concealed, counters);
    }

    /// The stream is overdue: concealment for a few frames, then silence.
    fn underrun(&mut self, counters: &mut RxCounters) {
        self.room_for_frame();
        self.dry_ticks += 1;
        let frame = self.frame;
        if self.dry_ticks <= CONCEAL_TICKS {
            let n = conceal(&mut self.decoder, &mut self.pcm[self.staged..], frame);
            self.add(n, FrameSource::Concealed, counters);
        } else {
            self.pcm[self.staged..self.staged + frame].fill(0);
            self.add(frame, FrameSource::Silence, counters);
        }
    }

    /// Room for one more frame after what is staged (packets decoded as
    /// they arrive can stage several before a frame is taken).
    fn room_for_frame(&mut self) {
        let need = self.staged + self.frame;
        if need > self.pcm.len() {
            self.pcm.resize(need, 0);
        }
    }

    fn add(&mut self, n: usize, what: FrameSource, counters: &mut RxCounters) {
        if what == FrameSource::Concealed {
            counters.concealed_frames += 1;
        }
        if what != FrameSource::Audio {
            self.source = what;
        }
        let room = self.pcm.len() - self.staged;
        self.staged += n.max(1).min(room);
    }
}

fn conceal(decoder: &mut FrameDecoder, dst: &mut [i16], frame: usize) -> usize {
    let n = frame.min(dst.len());
    let dst = &mut dst[..n];
    match decoder.conceal(dst) {
        Ok(n) if n > 0 => n,
        _ => {
            dst.fill(0);
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxbridge_codecs::g711;
    use voxbridge_proto::rtp::RtpHeader;

    fn packet(seq: u16, ts: u32, ssrc: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
        }
        .write(payload, &mut v);
        v
    }

    fn tone(k: usize) -> Vec<u8> {
        (0..160)
            .map(|i| {
                let s = (8000.0 * ((k * 160 + i) as f64 * 0.1).sin()) as i16;
                g711::linear_to_ulaw(s)
            })
            .collect()
    }

    #[test]
    fn a_burst_of_packets_before_any_frame_is_taken_plays_in_full() {
        // 20 in-order packets (400 ms, within the jitter buffer's 32 slots)
        // and a header-only one arrive before the caller takes a frame:
        // nothing is cut, nothing panics.
        let mut rx = RtpReceiver::new(Codec::Pcmu, 8000, 0, None).expect("rx");
        for k in 0..20u16 {
            rx.datagram(&packet(k, k as u32 * 160, 9, 0, &tone(k as usize)), 0)
                .expect("valid");
        }
        rx.datagram(&packet(20, 20 * 160, 9, 0, &[]), 0)
            .expect("valid header");
        let mut out = vec![0i16; 160];
        let mut frames = 0;
        while rx.frame(0, &mut out).is_some() {
            frames += 1;
        }
        assert_eq!(frames, 21, "every packet played (the empty one concealed)");
        assert_eq!(rx.counters().decode_errors, 1);
    }

    #[test]
    fn pcmu_stream_with_wraps_and_ssrc_change_plays_continuously() {
        let mut rx = RtpReceiver::new(Codec::Pcmu, 8000, 0, Some(101)).expect("rx");
        let mut out = vec![0i16; 160];
        let mut sources = Vec::new();
        // Sequence and timestamp both wrap mid-stream; then a new SSRC starts elsewhere.
        for k in 0..60u32 {
            let (seq, ts, ssrc) = if k < 30 {
                (
                    65520u16.wrapping_add(k as u16),
                    (u32::MAX - 1000).wrapping_add(k * 160),
                    7,
                )
            } else {
                (100 + k as u16, 5_000_000 + k * 160, 9)
            };
            let arrival = k as u64 * 160;
            rx.datagram(&packet(seq, ts, ssrc, 0, &tone(k as usize)), arrival)
                .expect("valid");
            sources.push(rx.frame(arrival, &mut out));
            assert_eq!(rx.frame(arrival, &mut out), None, "one frame per packet");
        }
        assert!(
            sources.iter().all(|s| *s == Some(FrameSource::Audio)),
            "each packet goes at once, no glitch on wrap or SSRC change: {sources:?}"
        );
        assert_eq!(rx.counters().ssrc_changes, 1);
        assert_eq!(rx.loss_and_jitter().0, 0);
    }

    #[test]
    fn dtmf_train_is_one_digit_and_bad_input_is_counted() {
        let mut rx = RtpReceiver::new(Codec::Pcmu, 8000, 0, Some(101)).expect("rx");
        for (i, p) in voxbridge_proto::dtmf::digit_train('7', 1600, 100, 8000, 20, 10)
            .expect("digit")
            .enumerate()
        {
            let pkt = packet(10 + i as u16, p.timestamp, 1, 101, &p.event.to_bytes());
            rx.datagram(&pkt, i as u64 * 160).expect("valid");
        }
        assert_eq!(rx.poll_digit(), Some('7'));
        assert_eq!(rx.poll_digit(), None, "one digit per key press");
        // Comfort noise at -40 dBov plays as quiet noise, not as digital silence.
        let mut rx2 = RtpReceiver::new(Codec::Pcmu, 8000, 0, None).expect("rx");
        rx2.datagram(&packet(1, 0, 1, CN_PT, &[40]), 0).expect("valid");
        let mut out = vec![0i16; 160];
        assert_eq!(rx2.frame(0, &mut out), Some(FrameSource::Silence));
        let rms = (out.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / 160.0).sqrt();
        let dbov = 20.0 * (rms / 32767.0).log10();
        assert!((-44.0..-36.0).contains(&dbov), "{dbov:.1} dBov");
        assert!(rx.datagram(&[0x40, 0, 0], 0).is_err());
        assert!(rx.datagram(&packet(1, 1, 1, 96, &[1, 2]), 0).is_err());
        let c = rx.counters();
        assert_eq!((c.malformed, c.unknown_pt), (1, 1));
    }
}
