//! Shared-port mode: every RTP session on one UDP port (RTCP on the next
//! one, or muxed), told apart by the caller's source address and SSRC.
//!
//! One hub task owns the receive side of both sockets. It reads
//! [`BATCH`](super::batch::BATCH) datagrams per system call, finds each one's
//! session in the [`Routes`] table and puts it in that session's inbox, a
//! bounded lock-free queue, stamped with its arrival time, and wakes the
//! call (one wake-up per batch that had datagrams for it), which forwards
//! the audio to its bot at once instead of on its next tick. Calls put their outgoing RTP on the hub's send queue and wake it; the hub
//! first lets the other calls that are due run (`yield_now`), then sends
//! everything queued with `sendmmsg`. RTCP (one packet per call every 5 s)
//! is sent by the call directly.
//!
//! A session is created knowing where the caller sends from (the SDP
//! offer's address or the plain `remote`). The first RTP packet from an
//! address binds its SSRC to the oldest waiting session expecting that
//! address (or, failing that, that host on another port: NAT); a new SSRC
//! from an address that feeds exactly one session is that caller's SSRC
//! change. Anything else is dropped and counted as `unmatched`; a full
//! inbox drops and counts `overflow`.

use super::batch::{RecvBatch, SendBatch, DATAGRAM_MAX};
use crate::metrics::Metrics;
use crossbeam_queue::ArrayQueue;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Notify};

thread_local! {
    // The batches hold raw message headers (not `Send`), so they cannot live
    // in the hub's future across an await; each worker thread the hub runs
    // on makes its pair once.
    static RECV: RefCell<RecvBatch> = RefCell::new(RecvBatch::default());
    static SEND: RefCell<SendBatch> = RefCell::new(SendBatch::default());
}

/// Datagrams a session's inbox holds between two ticks (320 ms of 20 ms
/// packets: a burst after a network stall fits).
const INBOX: usize = 16;
/// Outgoing packets of one session the hub may hold (one per tick is sent;
/// more wait only while the hub is behind).
const OUTBOX: usize = 4;
/// Receive batches handled per wake-up before other tasks get a turn.
const BATCHES_PER_WAKE: usize = 8;

/// A received datagram waiting for its call's tick. Its buffer comes from
/// the session's free list and goes back there ([`Attachment::recycle`]), so
/// only a pointer moves through the queue.
pub struct InPacket {
    /// Source address.
    pub from: SocketAddr,
    /// When the hub read it.
    pub at: Instant,
    len: usize,
    data: Box<[u8]>,
}

impl InPacket {
    /// The datagram.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// An RTP packet for the hub to send; its buffer goes back to `home`.
struct OutPacket {
    to: SocketAddr,
    len: usize,
    data: Box<[u8]>,
    home: Arc<Slot>,
}

/// One session's side of the hub.
#[derive(Debug)]
pub struct Slot {
    inbox: ArrayQueue<InPacket>,
    /// Empty datagram buffers, made as needed up to `INBOX` of them.
    free: ArrayQueue<Box<[u8]>>,
    /// Empty buffers for outgoing packets, made as needed up to `OUTBOX`.
    out_free: ArrayQueue<Box<[u8]>>,
    /// Buffers made so far for `free` and `out_free`. A session in steady
    /// state keeps two or three in circulation each way; making all of them
    /// up front cost 30 KB of resident memory per call.
    made_in: AtomicUsize,
    made_out: AtomicUsize,
    /// Wakes the call when its inbox got datagrams.
    arrived: Notify,
    expected: SocketAddr,
}

/// A free buffer from `free` that holds `len` bytes, or a new one while
/// fewer than `max` were made (so a session's buffers appear as its traffic
/// needs them, then recycle). Buffers are sized to the traffic too: a power
/// of two from 256 bytes (a G.711 packet is 172) up to `DATAGRAM_MAX`; one
/// too small for `len` is replaced by a bigger one, so each grows at most
/// three times.
fn take_buffer(
    free: &ArrayQueue<Box<[u8]>>,
    made: &AtomicUsize,
    max: usize,
    len: usize,
) -> Option<Box<[u8]>> {
    let sized = || vec![0; buffer_size(len)].into_boxed_slice();
    match free.pop() {
        Some(b) if b.len() >= len => Some(b),
        Some(_) => Some(sized()),
        None => made
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| sized()),
    }
}

/// The buffer size for a datagram of `len` bytes (see [`take_buffer`]).
fn buffer_size(len: usize) -> usize {
    len.next_power_of_two().clamp(256, DATAGRAM_MAX)
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which session a datagram belongs to (the hub's table; sans-IO).
#[derive(Default)]
pub struct Routes {
    // foldhash (seeded per map) rather than SipHash: the lookup runs once per
    // datagram, and only bound sessions' keys are ever inserted.
    by_key: FastMap<(SocketAddr, u32), Arc<Slot>>,
    by_host_ssrc: FastMap<(IpAddr, u32), Arc<Slot>>,
    by_source: FastMap<SocketAddr, Vec<Arc<Slot>>>,
    waiting: Vec<Arc<Slot>>,
    /// Keys of ended sessions, for `RETIRED_FOR`: their caller's last
    /// packets are dropped, not taken for another session's SSRC change.
    retired: HashMap<(SocketAddr, u32), Instant>,
    sessions: usize,
}

/// How long an ended session's keys stay retired.
const RETIRED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

impl Slot {
    /// The address the session was created for.
    pub fn expected(&self) -> SocketAddr {
        self.expected
    }
}

impl Routes {
    /// Adds a session that expects RTP from `expected`.
    pub fn add(&mut self, expected: SocketAddr) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            inbox: ArrayQueue::new(INBOX),
            free: ArrayQueue::new(INBOX),
            out_free: ArrayQueue::new(OUTBOX),
            made_in: AtomicUsize::new(0),
            made_out: AtomicUsize::new(0),
            arrived: Notify::new(),
            expected,
        });
        self.waiting.push(slot.clone());
        self.sessions += 1;
        slot
    }

    /// Removes a session and every key bound to it (retired at `now`).
    pub fn remove(&mut self, slot: &Arc<Slot>, now: Instant) {
        let same = |s: &Arc<Slot>| Arc::ptr_eq(s, slot);
        self.waiting.retain(|s| !same(s));
        self.retired
            .retain(|_, at| now.saturating_duration_since(*at) < RETIRED_FOR);
        let retired = &mut self.retired;
        self.by_key.retain(|k, s| {
            if same(s) {
                retired.insert(*k, now);
            }
            !same(s)
        });
        self.by_host_ssrc.retain(|_, s| !same(s));
        self.by_source.retain(|_, v| {
            v.retain(|s| !same(s));
            !v.is_empty()
        });
        self.sessions = self.sessions.saturating_sub(1);
    }

    /// Sessions in the table.
    pub fn len(&self) -> usize {
        self.sessions
    }

    /// `true` when no session is in the table.
    pub fn is_empty(&self) -> bool {
        self.sessions == 0
    }

    /// The session an RTP packet with `ssrc` from `from` belongs to, binding
    /// it on first sight (see the module docs for the rule).
    pub fn rtp(&mut self, from: SocketAddr, ssrc: u32) -> Option<&Arc<Slot>> {
        if !self.by_key.contains_key(&(from, ssrc)) {
            if self.retired.contains_key(&(from, ssrc)) {
                return None;
            }
            let slot = self.bind(from)?;
            self.by_key.insert((from, ssrc), slot.clone());
            self.by_host_ssrc.insert((from.ip(), ssrc), slot.clone());
            let v = self.by_source.entry(from).or_default();
            if !v.iter().any(|s| Arc::ptr_eq(s, &slot)) {
                v.push(slot);
            }
        }
        self.by_key.get(&(from, ssrc))
    }

    fn bind(&mut self, from: SocketAddr) -> Option<Arc<Slot>> {
        let pos = self
            .waiting
            .iter()
            .position(|s| s.expected == from)
            .or_else(|| self.waiting.iter().position(|s| s.expected.ip() == from.ip()));
        if let Some(i) = pos {
            return Some(self.waiting.remove(i));
        }
        // A new SSRC from a source that feeds exactly one session.
        match self.by_source.get(&from).map(Vec::as_slice) {
            Some([only]) => Some(only.clone()),
            _ => None,
        }
    }

    /// The session of one datagram from `from`: RTCP (packet type 200-204)
    /// by sender host and SSRC, RTP by source address and SSRC; `None` for
    /// anything else (too short, not version 2, no session).
    pub fn datagram(&mut self, d: &[u8], from: SocketAddr) -> Option<&Arc<Slot>> {
        if d.len() < 8 || d[0] >> 6 != 2 {
            return None;
        }
        if (200..=204).contains(&d[1]) {
            let ssrc = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            return self.rtcp(from.ip(), ssrc);
        }
        let ssrc = u32::from_be_bytes([*d.get(8)?, *d.get(9)?, *d.get(10)?, *d.get(11)?]);
        self.rtp(from, ssrc)
    }

    /// The session an RTCP packet from `host` whose sender is `ssrc` belongs to.
    pub fn rtcp(&self, host: IpAddr, ssrc: u32) -> Option<&Arc<Slot>> {
        self.by_host_ssrc.get(&(host, ssrc))
    }
}

struct Hub {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    routes: Mutex<Routes>,
    out: ArrayQueue<OutPacket>,
    wake: Notify,
    metrics: Arc<Metrics>,
}

/// The shared port (cheap to clone).
#[derive(Clone)]
pub struct SharedPort(Arc<Hub>);

/// A session's attachment to the shared port; dropping it removes the
/// session's routes.
pub struct Attachment {
    hub: Arc<Hub>,
    slot: Arc<Slot>,
}

impl SharedPort {
    /// Binds `ip:port` for RTP and `ip:port+1` for RTCP and starts the hub,
    /// which ends once `stopping` is true and no session is left.
    pub async fn bind(
        ip: IpAddr,
        port: u16,
        send_queue: usize,
        metrics: Arc<Metrics>,
        stopping: watch::Receiver<bool>,
    ) -> io::Result<SharedPort> {
        let rtp = UdpSocket::bind((ip, port)).await?;
        let rtcp = UdpSocket::bind((ip, port.wrapping_add(1))).await?;
        let hub = Arc::new(Hub {
            rtp,
            rtcp,
            routes: Mutex::new(Routes::default()),
            out: ArrayQueue::new(send_queue.max(64)),
            wake: Notify::new(),
            metrics,
        });
        tokio::spawn(run(hub.clone(), stopping));
        Ok(SharedPort(hub))
    }

    /// The RTP address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.rtp.local_addr()
    }

    /// Registers a session expecting RTP from `expected`.
    pub fn attach(&self, expected: SocketAddr) -> Attachment {
        let slot = self.0.routes().add(expected);
        Attachment {
            hub: self.0.clone(),
            slot,
        }
    }
}

impl Hub {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and routes what is queued on `sock`.
    fn receive(&self, sock: &UdpSocket) {
        RECV.with_borrow_mut(|rb| self.receive_with(sock, rb));
    }

    fn receive_with(&self, sock: &UdpSocket, rb: &mut RecvBatch) {
        for _ in 0..BATCHES_PER_WAKE {
            self.metrics.rtp.recv_batches.fetch_add(1, Relaxed);
            let n = match rb.recv(sock) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pending ICMP error from an earlier send and the like: the
                // socket lives on.
                Err(e) => {
                    tracing::debug!(error = %e, "shared port receive error");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            let at = Instant::now();
            let mut routes = self.routes();
            for i in 0..n {
                let Some((data, from)) = rb.get(i) else { continue };
                let slot = data.and_then(|d| routes.datagram(d, from));
                let (Some(d), Some(slot)) = (data, slot) else {
                    self.metrics.rtp.unmatched.fetch_add(1, Relaxed);
                    continue;
                };
                // No free buffer: the call has not emptied its inbox for
                // INBOX datagrams.
                let Some(mut data) = take_buffer(&slot.free, &slot.made_in, INBOX, d.len()) else {
                    self.metrics.rtp.overflow.fetch_add(1, Relaxed);
                    continue;
                };
                data[..d.len()].copy_from_slice(d);
                let p = InPacket {
                    from,
                    at,
                    len: d.len(),
                    data,
                };
                match slot.inbox.push(p) {
                    // A permit is kept if the call is not waiting: it reads
                    // the inbox on its next turn either way.
                    Ok(()) => slot.arrived.notify_one(),
                    Err(p) => {
                        let _ = slot.free.push(p.data);
                        self.metrics.rtp.overflow.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }

    fn flush(&self) {
        SEND.with_borrow_mut(|sb| self.flush_with(sb));
    }

    fn flush_with(&self, sb: &mut SendBatch) {
        while !self.out.is_empty() {
            while !sb.is_full() {
                let Some(p) = self.out.pop() else { break };
                sb.push(&p.data[..p.len], p.to);
                let _ = p.home.out_free.push(p.data);
            }
            let f = sb.flush(&self.rtp);
            let m = &self.metrics.rtp;
            m.send_batches.fetch_add(f.calls as u64, Relaxed);
            if f.dropped > 0 {
                m.send_dropped.fetch_add(f.dropped as u64, Relaxed);
            }
        }
    }
}

async fn run(hub: Arc<Hub>, mut stopping: watch::Receiver<bool>) {
    let mut stop_seen = *stopping.borrow();
    // Sends only go out once the socket is known to be writable.
    if hub.rtp.writable().await.is_err() {
        tracing::error!("shared RTP socket failed; the hub stops");
        return;
    }
    loop {
        if stop_seen && hub.routes().is_empty() {
            break;
        }
        tokio::select! {
            r = hub.rtp.readable() => {
                if r.is_err() {
                    tracing::error!("shared RTP socket failed; the hub stops");
                    break;
                }
                hub.receive(&hub.rtp);
            }
            r = hub.rtcp.readable() => {
                if r.is_err() {
                    tracing::error!("shared RTCP socket failed; the hub stops");
                    break;
                }
                hub.receive(&hub.rtcp);
            }
            () = hub.wake.notified() => {
                // Let the other calls due at this tick queue theirs first.
                tokio::task::yield_now().await;
                hub.flush();
            }
            r = stopping.changed(), if !stop_seen => {
                stop_seen = r.is_err() || *stopping.borrow();
            }
        }
    }
}

impl Attachment {
    /// Resolves when datagrams for this session arrived since the last
    /// call (at once if some came while nobody waited).
    pub async fn arrived(&self) {
        self.slot.arrived.notified().await
    }

    /// The next datagram waiting for this session; hand it back with
    /// [`Attachment::recycle`] once read.
    pub fn pop(&self) -> Option<InPacket> {
        self.slot.inbox.pop()
    }

    /// Returns a datagram's buffer to the session's free list.
    pub fn recycle(&self, p: InPacket) {
        let _ = self.slot.free.push(p.data);
    }

    /// Queues an RTP packet for the hub to send; `false` when the queue is
    /// full (the packet is dropped).
    pub fn send_rtp(&self, data: &[u8], to: SocketAddr) -> bool {
        if data.len() > DATAGRAM_MAX {
            return false;
        }
        let Some(mut buf) = take_buffer(&self.slot.out_free, &self.slot.made_out, OUTBOX, data.len()) else {
            return false;
        };
        buf[..data.len()].copy_from_slice(data);
        let p = OutPacket {
            to,
            len: data.len(),
            data: buf,
            home: self.slot.clone(),
        };
        let ok = match self.hub.out.push(p) {
            Ok(()) => true,
            Err(p) => {
                let _ = self.slot.out_free.push(p.data);
                false
            }
        };
        self.hub.wake.notify_one();
        ok
    }

    /// Sends an RTCP packet now (from the RTCP port, or the RTP port with rtcp-mux).
    pub fn send_rtcp(&self, data: &[u8], to: SocketAddr, mux: bool) {
        let sock = if mux { &self.hub.rtp } else { &self.hub.rtcp };
        let _ = sock.try_send_to(data, to);
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.hub.routes().remove(&self.slot, Instant::now());
        // The hub may be waiting to stop once the last session is gone.
        self.hub.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_made_to_the_traffic_and_bounded() {
        let free = ArrayQueue::new(4);
        let made = AtomicUsize::new(0);
        let small = take_buffer(&free, &made, 2, 172).expect("first");
        assert_eq!(small.len(), 256, "a G.711 packet gets a small buffer");
        let _ = free.push(small);
        let big = take_buffer(&free, &made, 2, 900).expect("replaced");
        assert_eq!(big.len(), 1024, "too small is replaced by a bigger one");
        assert_eq!(made.load(Relaxed), 1, "a replacement is not a new buffer");
        let second = take_buffer(&free, &made, 2, 1500).expect("second");
        assert_eq!(second.len(), DATAGRAM_MAX);
        assert!(take_buffer(&free, &made, 2, 100).is_none(), "at most `max`");
        let _ = free.push(big);
        assert_eq!(take_buffer(&free, &made, 2, 100).map(|b| b.len()), Some(1024));
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("test")
    }

    #[test]
    fn routing_table() {
        let mut r = Routes::default();
        let s1 = r.add(a("10.0.0.1:4000"));
        let s2 = r.add(a("10.0.0.1:4000"));
        let s3 = r.add(a("10.0.0.2:5000"));
        let s4 = r.add(a("10.0.0.9:6000"));
        let is = |got: Option<&Arc<Slot>>, want: &Arc<Slot>| got.is_some_and(|g| Arc::ptr_eq(g, want));
        // Same source, two SSRCs: the oldest waiting session first.
        assert!(is(r.rtp(a("10.0.0.1:4000"), 11), &s1));
        assert!(is(r.rtp(a("10.0.0.1:4000"), 22), &s2));
        assert!(is(r.rtp(a("10.0.0.1:4000"), 11), &s1));
        // A third SSRC from a source feeding two sessions: ambiguous, dropped.
        assert!(r.rtp(a("10.0.0.1:4000"), 33).is_none());
        // NAT: the expected host on another port.
        assert!(is(r.rtp(a("10.0.0.2:7777"), 44), &s3));
        // SSRC change from a source feeding one session.
        assert!(is(r.rtp(a("10.0.0.2:7777"), 45), &s3));
        // Unknown hosts never bind.
        assert!(r.rtp(a("192.168.1.1:4000"), 1).is_none());
        // RTCP by host and SSRC.
        assert!(is(r.rtcp(a("10.0.0.1:4001").ip(), 22), &s2));
        assert!(r.rtcp(a("10.0.0.1:4001").ip(), 99).is_none());
        assert_eq!(r.len(), 4);
        let t0 = Instant::now();
        r.remove(&s1, t0);
        // The ended call's stragglers are not s2's SSRC change.
        assert!(r.rtp(a("10.0.0.1:4000"), 11).is_none());
        assert!(is(r.rtp(a("10.0.0.1:4000"), 22), &s2));
        r.remove(&s4, t0);
        r.remove(&s2, t0);
        r.remove(&s3, t0 + RETIRED_FOR);
        assert!(r.is_empty());
        assert!(r.by_key.is_empty() && r.by_source.is_empty() && r.waiting.is_empty());
        // Retired keys expire.
        assert_eq!(r.retired.len(), 2, "{:?}", r.retired.keys());
    }

    #[test]
    fn short_or_foreign_datagrams_route_nowhere() {
        let mut r = Routes::default();
        let _s = r.add(a("10.0.0.1:4000"));
        let from = a("10.0.0.1:4000");
        assert!(r.datagram(&[], from).is_none());
        assert!(r.datagram(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0], from).is_none());
        let mut v1 = [0u8; 12];
        v1[0] = 0x40;
        assert!(r.datagram(&v1, from).is_none());
        let mut ok = [0u8; 12];
        ok[0] = 0x80;
        assert!(r.datagram(&ok, from).is_some());
    }
}
