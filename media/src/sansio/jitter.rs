//! Adaptive jitter buffer for one RTP stream, sans-IO.
//!
//! Packets go in with their extended sequence number, extended timestamp and
//! arrival time (all in the stream's RTP clock units, so no clock is read
//! here). The consumer is the bot link, which needs every frame in order but
//! no smooth playout clock, so the buffer releases a packet as soon as every
//! earlier one has been released or given up on: on a clean network each
//! packet leaves when it arrives, with no deliberate delay.
//!
//! The deliberate delay, `target`, is how long a gap is waited for. A
//! missing packet's *deadline* is `ts + base + target`, where `base` is the
//! smallest transit delay seen recently (arrival - timestamp). `target`
//! follows measured jitter: every 16 packets it becomes the spread between
//! the fastest and the 95th-percentile transit of the last 128 packets
//! (plus half a frame), clamped to `[min_ms, max_ms]`.
//!
//! [`JitterBuffer::pop`] is asked whenever something may have changed (a
//! packet arrived, or the 20 ms tick) and returns what can go now: the next
//! packet when it is here; a missing one that a later packet proves was sent
//! is declared lost once its deadline passed (the caller conceals it); with
//! nothing buffered and the next packet overdue, one underrun per 20 ms past
//! its deadline (conceal, keep waiting: the stream is either late, and the
//! packet plays when it comes, or silent, DTX). Duplicates and packets
//! older than the release point are counted and dropped. Payloads are copied
//! into slots that are reused: each slot's storage is made by the first
//! packet it holds, at that packet's size (160 bytes for 20 ms of G.711, not
//! a worst case reserved up front), and grows only for a longer one, so
//! steady state never allocates.

/// Slots (packets) held at most; 32 x 20 ms = 640 ms, well above `max_ms`.
const SLOTS: usize = 32;
/// Transit samples the target is computed from.
const WINDOW: usize = 128;
/// Packets between target updates.
const RETARGET_EVERY: u32 = 16;
/// Underruns released at once after a stall at most (the rest of a long
/// silence is skipped, not sent as a burst of silence).
const MAX_CATCHUP: u64 = 5;

/// Jitter-buffer parameters.
#[derive(Debug, Clone, Copy)]
pub struct JitterConfig {
    /// RTP clock rate, Hz.
    pub clock: u32,
    /// Smallest deliberate delay, ms.
    pub min_ms: u32,
    /// Largest deliberate delay, ms.
    pub max_ms: u32,
    /// The delay until the first estimate from measured jitter (after
    /// 16 packets), ms, clamped to `[min_ms, max_ms]`.
    pub initial_ms: u32,
}

impl JitterConfig {
    /// 20-200 ms at `clock`, 60 ms until the jitter is measured: a gap is
    /// waited for only when a packet is missing (on a clean network nothing
    /// is delayed), and a stream that starts jittery is not concealed and
    /// then played late in its first 16 packets (benches/quality.sh, 40 ms
    /// of jitter).
    pub fn new(clock: u32) -> Self {
        JitterConfig {
            clock,
            min_ms: 20,
            max_ms: 200,
            initial_ms: 60,
        }
    }
}

/// What became of an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Buffered.
    Queued,
    /// Already buffered or played (dropped, counted).
    Duplicate,
    /// Older than the playout point (dropped, counted).
    Late,
    /// So far from the playout point that the stream restarted there
    /// (buffer flushed; the sender jumped without changing SSRC).
    Resynced,
}

/// What [`JitterBuffer::insert_direct`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// It is released now: the caller plays it (its duration, timestamp units).
    Play {
        /// Timestamp units until the next packet's timestamp (as far as known).
        duration: u32,
    },
    /// It was inserted (or dropped) as [`JitterBuffer::insert`] says.
    Inserted(Inserted),
}

/// What can be released now.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop<'a> {
    /// Nothing: no packet yet, or waiting for a missing one.
    Idle,
    /// The next packet.
    Packet {
        /// Payload type.
        pt: u8,
        /// Payload.
        payload: &'a [u8],
        /// Timestamp units until the next packet's timestamp (its duration, as far as known).
        duration: u32,
    },
    /// A packet that was sent but did not arrive in time: conceal one frame.
    Lost,
    /// Nothing buffered and the next packet 20 ms further overdue: conceal
    /// (late or silent stream).
    Underrun,
}

/// Counters of one buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets inserted (duplicates and late ones included).
    pub received: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Packets that came after their playout point (dropped).
    pub late: u64,
    /// Packets declared lost at playout.
    pub lost: u64,
    /// Frames with nothing to release (stream late or silent).
    pub underruns: u64,
    /// Packets that arrived out of order (played in order).
    pub reordered: u64,
    /// Stream restarts (sequence jumps).
    pub resyncs: u64,
}

#[derive(Debug)]
struct Slot {
    seq: u64,
    ts: u64,
    pt: u8,
    data: Vec<u8>,
    full: bool,
    /// Released (a copy arriving later is a duplicate, not a late packet).
    released: bool,
}

/// The buffer (see the module docs).
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    slots: Vec<Slot>,
    held: usize,
    /// Next sequence number to release; `None` before the first packet.
    play_seq: Option<u64>,
    /// Timestamp of the next packet to release (its expected value).
    play_ts: u64,
    /// Duration of one packet, timestamp units (learned; 20 ms until known).
    packet_ts: u32,
    highest_seq: Option<u64>,
    /// When the first underrun may go (clock units): the next packet's
    /// deadline, or a target after its expected arrival if the stream runs
    /// later than its timestamps say.
    fill_at: i64,
    /// Underruns released since the last packet.
    dry: u64,
    transits: [i64; WINDOW],
    transit_n: usize,
    since_retarget: u32,
    base: i64,
    target: u64,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(cfg: JitterConfig) -> Self {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                seq: 0,
                ts: 0,
                pt: 0,
                data: Vec::new(),
                full: false,
                released: false,
            })
            .collect();
        JitterBuffer {
            cfg,
            slots,
            held: 0,
            play_seq: None,
            play_ts: 0,
            packet_ts: cfg.clock / 50,
            highest_seq: None,
            fill_at: 0,
            dry: 0,
            transits: [0; WINDOW],
            transit_n: 0,
            since_retarget: 0,
            base: i64::MAX,
            target: ms_to_ts(cfg.initial_ms.clamp(cfg.min_ms, cfg.max_ms), cfg.clock),
            stats: JitterStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The current deliberate delay, ms.
    pub fn target_ms(&self) -> u32 {
        (self.target * 1000 / self.cfg.clock.max(1) as u64) as u32
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Forgets the stream (SSRC change): the next packet is released as it
    /// comes. Counters and the learned target are kept.
    pub fn reset(&mut self) {
        for s in &mut self.slots {
            s.full = false;
            s.released = false;
        }
        self.held = 0;
        self.play_seq = None;
        self.dry = 0;
        self.highest_seq = None;
        self.transit_n = 0;
        self.base = i64::MAX;
    }

    /// The stream goes on at another RTP clock (a codec change in the call):
    /// forgotten as by [`JitterBuffer::reset`], the learned target kept in
    /// milliseconds. The slots stay (nothing is allocated).
    pub fn set_clock(&mut self, clock: u32) {
        let target_ms = self.target_ms();
        self.reset();
        self.cfg.clock = clock;
        self.packet_ts = clock / 50;
        self.fill_at = 0;
        self.target = ms_to_ts(target_ms, clock);
    }

    /// Adds a packet. `arrival` is in clock units on any monotonic origin
    /// that stays the same for the stream.
    pub fn insert(&mut self, seq: u64, ts: u64, pt: u8, payload: &[u8], arrival: u64) -> Inserted {
        self.stats.received += 1;
        let mut result = Inserted::Queued;
        if let Some(play) = self.play_seq {
            if seq + SLOTS as u64 <= play {
                // Far behind: the sender restarted lower without a new SSRC.
                self.reset();
                self.stats.resyncs += 1;
                result = Inserted::Resynced;
            } else if seq < play {
                let s = &self.slots[(seq % SLOTS as u64) as usize];
                if s.released && s.seq == seq {
                    self.stats.duplicates += 1;
                    return Inserted::Duplicate;
                }
                self.stats.late += 1;
                return Inserted::Late;
            }
            if seq >= play + SLOTS as u64 {
                // Far ahead: the sender restarted its numbering; follow it.
                self.reset();
                self.stats.resyncs += 1;
                result = Inserted::Resynced;
            }
        } else if let Some(h) = self.highest_seq {
            if seq.abs_diff(h) >= SLOTS as u64 {
                self.reset();
                self.stats.resyncs += 1;
                result = Inserted::Resynced;
            }
        }
        let i = (seq % SLOTS as u64) as usize;
        let slot = &mut self.slots[i];
        if slot.full {
            if slot.seq == seq {
                self.stats.duplicates += 1;
                return Inserted::Duplicate;
            }
            // An old packet that was never played (a gap we skipped past).
            self.held -= 1;
        }
        slot.seq = seq;
        slot.ts = ts;
        slot.pt = pt;
        slot.data.clear();
        slot.data.extend_from_slice(payload);
        slot.full = true;
        slot.released = false;
        self.held += 1;
        match self.highest_seq {
            Some(h) if seq < h => self.stats.reordered += 1,
            _ => self.highest_seq = Some(seq),
        }
        self.observe_transit(arrival as i64 - ts as i64);
        result
    }

    /// [`JitterBuffer::insert`] for a packet that may go at once: when it is
    /// the one to play next (or the first) and nothing is held, it is
    /// recorded as inserted and released at `now` (what [`JitterBuffer::pop`]
    /// would do next) without being copied, and the caller plays `payload`
    /// itself ([`Direct::Play`]). Otherwise it is inserted as usual. On a
    /// clean network every packet takes the first way, so the slots' storage
    /// is never made.
    pub fn insert_direct(
        &mut self,
        seq: u64,
        ts: u64,
        pt: u8,
        payload: &[u8],
        arrival: u64,
        now: u64,
    ) -> Direct {
        let next = self.held == 0
            && match self.play_seq {
                Some(play) => seq == play,
                // The first packet goes at once unless it restarts the
                // stream (insert's resync rule), which insert handles.
                None => self.highest_seq.is_none_or(|h| seq.abs_diff(h) < SLOTS as u64),
            };
        if !next {
            return Direct::Inserted(self.insert(seq, ts, pt, payload, arrival));
        }
        self.stats.received += 1;
        let slot = &mut self.slots[(seq % SLOTS as u64) as usize];
        slot.seq = seq;
        slot.ts = ts;
        slot.pt = pt;
        slot.full = false;
        // A copy arriving later is a duplicate, as for a released slot.
        slot.released = true;
        match self.highest_seq {
            Some(h) if seq < h => self.stats.reordered += 1,
            _ => self.highest_seq = Some(seq),
        }
        self.observe_transit(arrival as i64 - ts as i64);
        self.released(seq, ts, now);
        Direct::Play {
            duration: self.packet_ts,
        }
    }

    fn observe_transit(&mut self, transit: i64) {
        self.transits[self.transit_n % WINDOW] = transit;
        self.transit_n += 1;
        self.base = self.base.min(transit);
        self.since_retarget += 1;
        if self.since_retarget >= RETARGET_EVERY {
            self.since_retarget = 0;
            let n = self.transit_n.min(WINDOW);
            let mut w = self.transits;
            let w = &mut w[..n];
            w.sort_unstable();
            let min = w[0];
            let p95 = w[(n * 95 / 100).min(n - 1)];
            self.base = min;
            let spread = (p95 - min).max(0) as u64 + self.packet_ts as u64 / 2;
            let lo = ms_to_ts(self.cfg.min_ms, self.cfg.clock);
            let hi = ms_to_ts(self.cfg.max_ms, self.cfg.clock);
            self.target = spread.clamp(lo, hi);
        }
    }

    fn due(&self, ts: u64, now: u64) -> bool {
        (ts as i64)
            .saturating_add(self.base)
            .saturating_add(self.target as i64)
            <= now as i64
    }

    fn slot_of(&self, seq: u64) -> Option<usize> {
        let i = (seq % SLOTS as u64) as usize;
        let s = &self.slots[i];
        (s.full && s.seq == seq).then_some(i)
    }

    /// The payload of the packet to be played next, if it is already here
    /// (after [`Pop::Lost`]: the packet whose FEC can rebuild the lost one).
    pub fn peek_next(&self) -> Option<&[u8]> {
        let i = self.slot_of(self.play_seq?)?;
        Some(&self.slots[i].data)
    }

    /// The earliest held packet (sequence order).
    fn earliest(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.full)
            .min_by_key(|(_, s)| s.seq)
            .map(|(i, _)| i)
    }

    /// What can be released at `now` (clock units; see the module docs).
    /// Call until it returns [`Pop::Idle`].
    pub fn pop(&mut self, now: u64) -> Pop<'_> {
        loop {
            let Some(play) = self.play_seq else {
                // The first packet (or the first after a restart) goes at once.
                return match self.earliest() {
                    Some(i) => self.take(i, now),
                    None => Pop::Idle,
                };
            };
            if let Some(i) = self.slot_of(play) {
                return self.take(i, now);
            }
            if self.held == 0 {
                break;
            }
            // Something later is held, so `play` was sent: lost once its
            // deadline passed.
            if self.dry == 0 && !self.due(self.play_ts, now) {
                return Pop::Idle;
            }
            self.stats.lost += 1;
            self.play_seq = Some(play + 1);
            self.play_ts += self.packet_ts as u64;
            if self.dry == 0 {
                return Pop::Lost;
            }
            // An underrun already stood in for it while nothing was held:
            // concealing it again would put one frame too many into the
            // stream (everything after it heard 20 ms late).
            self.dry -= 1;
        }
        // Nothing held: one underrun per frame the stream is overdue.
        let frame = self.packet_ts as u64;
        let overdue = (now as i64).saturating_sub(self.fill_at);
        if overdue < 0 {
            return Pop::Idle;
        }
        let owed = overdue as u64 / frame.max(1) + 1;
        if owed <= self.dry {
            return Pop::Idle;
        }
        self.dry = self.dry.max(owed.saturating_sub(MAX_CATCHUP)) + 1;
        self.stats.underruns += 1;
        Pop::Underrun
    }

    fn take(&mut self, i: usize, now: u64) -> Pop<'_> {
        let seq = self.slots[i].seq;
        let ts = self.slots[i].ts;
        // Learn the packet duration from the next packet when it is here.
        if let Some(j) = self.slot_of(seq + 1) {
            let d = self.slots[j].ts.saturating_sub(ts);
            if d > 0 && d <= self.cfg.clock as u64 / 5 {
                self.packet_ts = d as u32;
            }
        }
        self.released(seq, ts, now);
        self.held -= 1;
        let s = &mut self.slots[i];
        s.full = false;
        s.released = true;
        Pop::Packet {
            pt: s.pt,
            payload: &s.data,
            duration: self.packet_ts,
        }
    }
}

impl JitterBuffer {
    /// The release point moves past the packet `seq` (timestamp `ts`), released at `now`.
    fn released(&mut self, seq: u64, ts: u64, now: u64) {
        self.play_seq = Some(seq + 1);
        self.play_ts = ts + self.packet_ts as u64;
        self.dry = 0;
        // A late packet says the stream runs late: the next one is waited
        // for as long after its expected arrival, not declared overdue at once.
        let deadline = (self.play_ts as i64)
            .saturating_add(self.base)
            .saturating_add(self.target as i64);
        let late_next = (now as i64).saturating_add((self.packet_ts as u64 + self.target) as i64);
        self.fill_at = deadline.max(late_next);
    }
}

fn ms_to_ts(ms: u32, clock: u32) -> u64 {
    ms as u64 * clock as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const F: u64 = 160; // 20 ms at 8 kHz

    fn payload(seq: u64) -> [u8; 4] {
        (seq as u32).to_be_bytes()
    }

    /// Everything released at `now`, as packet numbers (`None` for a
    /// concealment: lost or underrun).
    fn drain(jb: &mut JitterBuffer, now: u64) -> Vec<Option<u32>> {
        let mut out = Vec::new();
        loop {
            match jb.pop(now) {
                Pop::Idle => return out,
                Pop::Packet { payload, .. } => {
                    out.push(Some(u32::from_be_bytes(payload.try_into().expect("4 bytes"))))
                }
                Pop::Lost | Pop::Underrun => out.push(None),
            }
        }
    }

    #[test]
    fn in_order_packets_leave_as_they_arrive() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        for s in 0..10 {
            jb.insert(s, s * F, 0, &payload(s), s * F + 3);
            assert_eq!(
                drain(&mut jb, s * F + 3),
                vec![Some(s as u32)],
                "no deliberate delay"
            );
        }
        assert!(jb.is_empty());
        assert_eq!(jb.stats().lost + jb.stats().duplicates + jb.stats().late, 0);
    }

    fn waiting(min_ms: u32) -> JitterBuffer {
        JitterBuffer::new(JitterConfig {
            clock: 8000,
            min_ms,
            max_ms: 200,
            initial_ms: min_ms,
        })
    }

    #[test]
    fn reordered_and_duplicated_packets_leave_once_in_order() {
        let mut jb = waiting(60);
        let mut out = Vec::new();
        for s in [0u64, 2, 1, 1, 3, 5, 4, 4] {
            jb.insert(s, s * F, 0, &payload(s), s * F);
            out.extend(drain(&mut jb, s * F));
        }
        assert_eq!(out, (0..6).map(Some).collect::<Vec<_>>());
        assert_eq!(
            (jb.stats().duplicates, jb.stats().late),
            (2, 0),
            "the second 1 and 4"
        );
        assert!(jb.stats().reordered >= 2);
    }

    #[test]
    fn a_gap_holds_later_packets_until_its_deadline_then_is_lost() {
        let mut jb = waiting(40);
        for s in [0u64, 1] {
            jb.insert(s, s * F, 0, &payload(s), s * F);
            drain(&mut jb, s * F);
        }
        // 2 is missing; 3 arrives on time and waits for it.
        jb.insert(3, 3 * F, 0, &payload(3), 3 * F);
        assert_eq!(drain(&mut jb, 3 * F), vec![]);
        assert_eq!(
            drain(&mut jb, 4 * F - 1),
            vec![],
            "2's deadline: 40 ms + the 40 ms target"
        );
        // At 2's deadline it is lost and 3 follows at once.
        assert_eq!(drain(&mut jb, 4 * F), vec![None, Some(3)]);
        jb.insert(2, 2 * F, 0, &payload(2), 4 * F + 1);
        assert_eq!(jb.stats().late, 1, "2 came after it was given up on");
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn a_late_packet_is_waited_for_and_released_when_it_comes() {
        let mut jb = waiting(20);
        jb.insert(0, 0, 0, &payload(0), 0);
        assert_eq!(drain(&mut jb, 0), vec![Some(0)]);
        // 1 was due at 20 ms: the target (20 ms) is waited, then one
        // underrun per 20 ms overdue.
        assert_eq!(drain(&mut jb, 2 * F - 1), vec![]);
        assert_eq!(drain(&mut jb, 2 * F), vec![None]);
        assert_eq!(drain(&mut jb, 2 * F + 10), vec![], "one per frame, not per call");
        assert_eq!(drain(&mut jb, 3 * F), vec![None]);
        jb.insert(1, F, 0, &payload(1), 3 * F + 5);
        assert_eq!(drain(&mut jb, 3 * F + 5), vec![Some(1)], "late, not lost");
        // The stream runs 45 ms late now: 2 is waited for as long after
        // its expected arrival (65 ms + target), not concealed at once.
        assert_eq!(drain(&mut jb, 5 * F + 4), vec![]);
        assert_eq!(drain(&mut jb, 5 * F + 5), vec![None]);
        assert_eq!((jb.stats().underruns, jb.stats().lost), (3, 0));
    }

    #[test]
    fn packets_lost_while_underruns_stood_in_are_not_concealed_twice() {
        let mut jb = waiting(20);
        jb.insert(0, 0, 0, &payload(0), 0);
        assert_eq!(drain(&mut jb, 0), vec![Some(0)]);
        // 1 and 2 are lost. Nothing is held, so underruns stand in for
        // them at their deadlines (40 and 60 ms).
        assert_eq!(drain(&mut jb, 2 * F), vec![None]);
        assert_eq!(drain(&mut jb, 3 * F), vec![None]);
        // 3 comes on time: 1 and 2 are lost, and already played as
        // those two underruns, so 3 follows them directly.
        jb.insert(3, 3 * F, 0, &payload(3), 3 * F + 5);
        assert_eq!(drain(&mut jb, 3 * F + 5), vec![Some(3)]);
        assert_eq!((jb.stats().lost, jb.stats().underruns), (2, 2));
        // One frame out per packet sent: the stream is not shifted.
        jb.insert(4, 4 * F, 0, &payload(4), 4 * F + 5);
        assert_eq!(drain(&mut jb, 4 * F + 5), vec![Some(4)]);
    }

    #[test]
    fn a_stream_that_starts_jittery_is_waited_for_before_it_is_measured() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        jb.insert(0, 0, 0, &payload(0), 0);
        assert_eq!(drain(&mut jb, 0), vec![Some(0)]);
        // 1 arrives 50 ms after its time: within the 60 ms initial wait.
        assert_eq!(drain(&mut jb, F + 400 - 1), vec![]);
        jb.insert(1, F, 0, &payload(1), F + 400);
        assert_eq!(drain(&mut jb, F + 400), vec![Some(1)]);
        assert_eq!((jb.stats().underruns, jb.stats().lost), (0, 0));
    }

    #[test]
    fn a_long_stall_releases_a_few_underruns_not_a_burst() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        jb.insert(0, 0, 0, &payload(0), 0);
        drain(&mut jb, 0);
        let out = drain(&mut jb, 500 * F);
        assert_eq!(out.len() as u64, MAX_CATCHUP, "{out:?}");
        assert_eq!(drain(&mut jb, 501 * F), vec![None], "then one per frame again");
    }

    #[test]
    fn target_follows_jitter_within_bounds() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        // Transit alternates 0 and 60 ms: target ~60 ms + half a frame.
        for s in 0..128u64 {
            let extra = if s % 2 == 0 { 0 } else { 480 };
            jb.insert(s, s * F, 0, &payload(s), s * F + extra);
            let _ = drain(&mut jb, s * F);
        }
        assert!((60..=80).contains(&jb.target_ms()), "{}", jb.target_ms());
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        for s in 0..128u64 {
            let extra = if s % 2 == 0 { 0 } else { 8000 };
            jb.insert(s, s * F, 0, &payload(s), s * F + extra);
        }
        assert_eq!(jb.target_ms(), 200, "clamped at max");
    }

    #[test]
    fn sequence_jump_resyncs() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        jb.insert(10, 10 * F, 0, &payload(10), 0);
        assert_eq!(drain(&mut jb, 0), vec![Some(10)]);
        assert_eq!(
            jb.insert(5000, 5000 * F, 0, &payload(5000), 2 * F),
            Inserted::Resynced
        );
        assert_eq!(
            drain(&mut jb, 2 * F),
            vec![Some(5000)],
            "the new stream goes on at once"
        );
    }

    proptest! {
        /// Any arrival order, duplicates and drops: every packet plays at
        /// most once, in increasing sequence order, and nothing panics.
        #[test]
        fn plays_each_packet_at_most_once_in_order(
            events in proptest::collection::vec((0u64..30, 0u64..2000, any::<bool>()), 0..300)
        ) {
            let mut jb = JitterBuffer::new(JitterConfig::new(8000));
            let mut now = 0u64;
            let mut last: Option<u32> = None;
            for (seq, jitter, tick) in events {
                jb.insert(seq, seq * F, 0, &payload(seq), seq * F + jitter);
                if tick {
                    now += F;
                }
                for s in drain(&mut jb, now).into_iter().flatten() {
                    prop_assert!(last.is_none_or(|l| s > l), "{s} after {last:?}");
                    last = Some(s);
                }
            }
            prop_assert!(jb.len() <= SLOTS);
        }

        /// Releasing the next packet straight from the datagram
        /// (`insert_direct`) plays the same packets, in the same order, with
        /// the same counters, as copying it in and popping it.
        #[test]
        fn direct_release_is_the_same_as_insert_and_pop(
            events in proptest::collection::vec((0u64..40, 0u64..2000, any::<bool>()), 0..300)
        ) {
            let (mut copied, mut direct) = (JitterBuffer::new(JitterConfig::new(8000)), JitterBuffer::new(JitterConfig::new(8000)));
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let mut now = 0u64;
            for (seq, jitter, tick) in events {
                if tick {
                    now += F;
                }
                copied.insert(seq, seq * F, 0, &payload(seq), seq * F + jitter);
                a.extend(drain(&mut copied, now));
                if let Direct::Play { .. } = direct.insert_direct(seq, seq * F, 0, &payload(seq), seq * F + jitter, now) {
                    b.push(Some(seq as u32));
                }
                b.extend(drain(&mut direct, now));
            }
            prop_assert_eq!(a, b);
            prop_assert_eq!(copied.stats(), direct.stats());
            prop_assert_eq!(copied.target_ms(), direct.target_ms());
        }
    }

    #[test]
    fn a_clean_stream_is_never_copied() {
        let mut jb = JitterBuffer::new(JitterConfig::new(8000));
        for s in 0..100 {
            let got = jb.insert_direct(s, s * F, 0, &[0x55; 160], s * F + 2, s * F + 2);
            assert!(matches!(got, Direct::Play { duration: 160 }), "{s}: {got:?}");
            assert_eq!(drain(&mut jb, s * F + 2), Vec::new());
        }
        assert!(
            jb.slots.iter().all(|s| s.data.capacity() == 0),
            "no slot storage made"
        );
        // A gap: the packet after it waits in a slot until the gap's deadline.
        assert!(matches!(
            jb.insert_direct(101, 101 * F, 0, &[1; 160], 101 * F, 101 * F),
            Direct::Inserted(Inserted::Queued)
        ));
        assert_eq!(jb.len(), 1);
    }
}
