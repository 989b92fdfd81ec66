//! The I/O floor of a bridged call: what the kernel charges one core for
//! the datagrams and socket writes a call needs, with no media work, no
//! async runtime, no WebSocket framing and no routing table, so that
//! `benches/capacity.sh` can print the daemon's CPU next to it, measured on
//! the same machine in the same run.
//!
//! Per call and per 20 ms, on loopback, exactly the traffic of the capacity
//! benchmark:
//! - `rtp` (shared port): the caller's 172-byte RTP datagram in (read with
//!   `recvmmsg`), one bot message up its own TCP connection (668 bytes: a
//!   16 kHz pipecat audio frame in a masked WebSocket frame), one bot
//!   message down (664 bytes), one datagram back to the caller (sent with
//!   `sendmmsg`);
//! - `audiosocket`: the same with the caller on a TCP connection of its own
//!   (323-byte AudioSocket audio frames both ways, one write each).
//!
//! The server thread is pinned to core 0 (where capacity.sh pins the
//! daemon) and runs one level-triggered `epoll` loop over every socket,
//! reading each ready socket once per wake-up (as the daemon does). The
//! peer thread (callers and echo bot, core 1) sends each call's frame on its
//! own 20 ms phase, spread over the period like loadgen's ramp, and echoes
//! every bot message at once. The figure is the server thread's own CPU
//! time (its thread CPU clock, which includes the loopback delivery its
//! sends cause, as the daemon's figure does) over a measured window.
//!
//! Three windows are measured. In the first the peer sleeps in `epoll_wait`
//! between frames, as loadgen does, so a server send that wakes it also
//! pays for the wake-up (on a VM an inter-processor interrupt, the largest
//! single cost seen here). In the second the peer spins, so the server pays
//! only for its own system calls and its own wake-ups. In the third the
//! server paces: it keeps each bot message and sends the caller its frame
//! on the call's own 20 ms grid (10 ms after the caller's phase), waking
//! for the next deadline with `epoll_wait`'s millisecond timeout as tokio
//! does, and the sleeping peer measures each frame's lateness against its
//! call's grid exactly as loadgen does (arrival - k x 20 ms, less the
//! call's smallest such offset). That lateness is what this machine's
//! scheduling alone puts on paced audio with nothing but the system calls:
//! the floor under the daemon's `p99_down_ms`.
//!
//! Ends with `FLOOR mode=<m> calls=<n> seconds=<s> cpu_us_per_call_s=<peer
//! sleeping> busy_peer_cpu_us_per_call_s=<peer spinning> delivered=<fraction
//! of the expected frames that made the round trip, the lower window>
//! paced_cpu_us_per_call_s=<..> paced_p99_up_ms=<..> paced_p50_down_ms=<..>
//! paced_p99_down_ms=<..> paced_max_down_ms=<..>`; `paced_p99_up_ms` is the
//! caller->bot time (a caller's send to the bot's receipt of that frame,
//! forwarded at once) in the same window, as loadgen measures it.
//!
//! Linux only (epoll, recvmmsg/sendmmsg). The system calls are made
//! through `libc` directly (hence `unsafe`): the point of the tool is that
//! nothing stands between the loop and the kernel.
#![allow(unsafe_code)]

#[cfg(target_os = "linux")]
fn main() {
    if let Err(e) = linux::main() {
        eprintln!("io_floor: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("io_floor: Linux only (epoll, recvmmsg, sendmmsg)");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{self, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const RTP: usize = 172;
    const AUDIOSOCKET: usize = 323;
    const BOT_UP: usize = 668;
    const BOT_DOWN: usize = 664;
    const BATCH: usize = 32;
    const PERIOD: Duration = Duration::from_millis(20);
    /// Epoll token of the shared UDP socket (calls use their index).
    const UDP: u64 = u64::MAX;
    /// Tokens of the caller connections (audiosocket) start here.
    const CALLER: u64 = 1 << 32;

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Rtp,
        AudioSocket,
    }

    struct Args {
        mode: Mode,
        calls: usize,
        seconds: f64,
        warmup: f64,
    }

    fn args() -> Result<Args, String> {
        let mut a = Args {
            mode: Mode::Rtp,
            calls: 250,
            seconds: 10.0,
            warmup: 2.0,
        };
        let mut it = std::env::args().skip(1);
        while let Some(k) = it.next() {
            let v = it.next().ok_or(format!("{k} needs a value"))?;
            match k.as_str() {
                "--mode" => {
                    a.mode = match v.as_str() {
                        "rtp" | "rtp-pcmu" => Mode::Rtp,
                        "audiosocket" => Mode::AudioSocket,
                        _ => return Err(format!("unknown mode {v} (rtp, audiosocket)")),
                    }
                }
                "--calls" => a.calls = v.parse().map_err(|e| format!("--calls: {e}"))?,
                "--seconds" => a.seconds = v.parse().map_err(|e| format!("--seconds: {e}"))?,
                "--warmup" => a.warmup = v.parse().map_err(|e| format!("--warmup: {e}"))?,
                _ => {
                    return Err(format!(
                        "unknown argument {k}; usage: io_floor [--mode rtp|audiosocket] [--calls N] [--seconds S] [--warmup S]"
                    ))
                }
            }
        }
        if a.calls == 0 || a.calls >= 1 << 31 {
            return Err("--calls must be 1..2^31".into());
        }
        Ok(a)
    }

    fn pin(cpu: usize) {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }

    /// CPU time of a running thread, read from another one (so the measured
    /// loop makes no extra system call).
    fn thread_cpu(t: libc::pthread_t) -> Duration {
        let mut clock: libc::clockid_t = 0;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the thread is alive (joined only after the last read);
        // both out-pointers are valid.
        unsafe {
            libc::pthread_getcpuclockid(t, &mut clock);
            libc::clock_gettime(clock, &mut ts);
        }
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// A level-triggered epoll set.
    struct Epoll(i32);

    impl Epoll {
        fn new() -> io::Result<Epoll> {
            // SAFETY: plain system call.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Epoll(fd))
        }

        fn add(&self, fd: i32, token: u64) -> io::Result<()> {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: token,
            };
            // SAFETY: `ev` outlives the call.
            if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        fn wait(&self, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
            // SAFETY: the buffer is valid for `evs.len()` entries.
            let n = unsafe { libc::epoll_wait(self.0, evs.as_mut_ptr(), evs.len() as i32, timeout_ms) };
            n.max(0) as usize
        }
    }

    impl Drop for Epoll {
        fn drop(&mut self) {
            // SAFETY: the fd is ours.
            unsafe { libc::close(self.0) };
        }
    }

    /// Buffers and headers for one `recvmmsg` / `sendmmsg` of up to BATCH datagrams.
    struct Mmsg {
        bufs: Vec<[u8; 2048]>,
        iov: Vec<libc::iovec>,
        hdr: Vec<libc::mmsghdr>,
        len: usize,
    }

    impl Mmsg {
        fn new() -> Box<Mmsg> {
            let mut m = Box::new(Mmsg {
                bufs: vec![[0; 2048]; BATCH],
                iov: Vec::with_capacity(BATCH),
                // SAFETY: an all-zero mmsghdr is a valid empty header.
                hdr: vec![unsafe { std::mem::zeroed() }; BATCH],
                len: 0,
            });
            for i in 0..BATCH {
                let p = m.bufs[i].as_mut_ptr();
                m.iov.push(libc::iovec {
                    iov_base: p.cast(),
                    iov_len: 2048,
                });
            }
            for i in 0..BATCH {
                let iov = &mut m.iov[i] as *mut libc::iovec;
                m.hdr[i].msg_hdr.msg_iov = iov;
                m.hdr[i].msg_hdr.msg_iovlen = 1;
            }
            m
        }

        /// Receives up to BATCH datagrams (connected peer: no addresses).
        fn recv(&mut self, fd: i32) -> usize {
            for i in 0..BATCH {
                self.iov[i].iov_len = 2048;
            }
            // SAFETY: headers point at our own buffers, sized as declared.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdr.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            n.max(0) as usize
        }

        fn datagram(&self, i: usize) -> &[u8] {
            &self.bufs[i][..self.hdr[i].msg_len as usize]
        }

        /// Queues a datagram of `len` bytes whose bytes 8..12 carry `call`.
        fn push(&mut self, call: u32, len: usize) {
            let i = self.len;
            self.bufs[i][0] = 0x80;
            self.bufs[i][8..12].copy_from_slice(&call.to_be_bytes());
            self.iov[i].iov_len = len;
            self.len += 1;
        }

        fn is_full(&self) -> bool {
            self.len == BATCH
        }

        /// Sends what is queued on a connected socket.
        fn flush(&mut self, fd: i32) {
            let mut off = 0;
            while off < self.len {
                // SAFETY: as in `recv`.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdr[off..].as_mut_ptr(),
                        (self.len - off) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if n <= 0 {
                    break;
                }
                off += n as usize;
            }
            self.len = 0;
        }
    }

    fn call_of(d: &[u8]) -> Option<usize> {
        d.get(8..12)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// Reads what is there (one read, as the daemon does per wake-up) and
    /// returns how many whole `msg`-byte messages completed.
    fn read_msgs(s: &mut TcpStream, buf: &mut [u8], partial: &mut usize, msg: usize) -> usize {
        match s.read(buf) {
            Ok(n) => {
                *partial += n;
                let whole = *partial / msg;
                *partial %= msg;
                whole
            }
            Err(_) => 0,
        }
    }

    fn pair(l: &TcpListener) -> io::Result<(TcpStream, TcpStream)> {
        let a = TcpStream::connect(l.local_addr()?)?;
        let (b, _) = l.accept()?;
        for s in [&a, &b] {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
        }
        Ok((a, b))
    }

    struct Counters {
        up: AtomicU64,
        down: AtomicU64,
        sent: AtomicU64,
    }

    pub fn main() -> Result<(), String> {
        let a = args()?;
        let e = |e: io::Error| e.to_string();
        let l = TcpListener::bind("127.0.0.1:0").map_err(e)?;
        // Server side (core 0) and peer side (core 1) of each connection.
        let (mut bot_s, mut bot_p) = (Vec::new(), Vec::new());
        let (mut caller_s, mut caller_p) = (Vec::new(), Vec::new());
        for _ in 0..a.calls {
            let (s, p) = pair(&l).map_err(e)?;
            bot_s.push(s);
            bot_p.push(p);
            if a.mode == Mode::AudioSocket {
                let (s, p) = pair(&l).map_err(e)?;
                caller_s.push(s);
                caller_p.push(p);
            }
        }
        let udp_s = UdpSocket::bind("127.0.0.1:0").map_err(e)?;
        let udp_p = UdpSocket::bind("127.0.0.1:0").map_err(e)?;
        let (addr_s, addr_p): (SocketAddr, SocketAddr) =
            (udp_s.local_addr().map_err(e)?, udp_p.local_addr().map_err(e)?);
        udp_s.connect(addr_p).map_err(e)?;
        udp_p.connect(addr_s).map_err(e)?;
        for u in [&udp_s, &udp_p] {
            u.set_nonblocking(true).map_err(e)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let spin = Arc::new(AtomicBool::new(false));
        let paced = Arc::new(AtomicBool::new(false));
        let record = Arc::new(AtomicBool::new(false));
        // Arrival times the peer keeps per call in the paced window.
        let per_call = (a.seconds * 1000.0 / PERIOD.as_millis() as f64) as usize + 64;
        let c = Arc::new(Counters {
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        let peer = {
            let (c, mode) = (c.clone(), a.mode);
            let flags = PeerFlags {
                stop: stop.clone(),
                spin: spin.clone(),
                record: record.clone(),
            };
            std::thread::spawn(move || peer(mode, bot_p, caller_p, udp_p, &flags, &c, per_call))
        };
        let (stop_s, paced_s, mode) = (stop.clone(), paced.clone(), a.mode);
        let server = std::thread::spawn(move || server(mode, bot_s, caller_s, udp_s, &stop_s, &paced_s));
        let tid = server.as_pthread_t();
        // Three windows: the peer sleeping in epoll_wait between frames (as
        // loadgen does, so the server's sends also pay for waking it), the
        // peer spinning (only the server's own system calls and wake-ups),
        // then the server pacing its sends to the callers (peer sleeping,
        // recording arrivals).
        let mut figures = [(0.0, 0.0); 3];
        for (i, f) in figures.iter_mut().enumerate() {
            spin.store(i == 1, Relaxed);
            paced.store(i == 2, Relaxed);
            std::thread::sleep(Duration::from_secs_f64(a.warmup));
            record.store(i == 2, Relaxed);
            let (cpu0, up0, t0) = (thread_cpu(tid), c.up.load(Relaxed), Instant::now());
            std::thread::sleep(Duration::from_secs_f64(a.seconds));
            let (cpu1, up1, secs) = (thread_cpu(tid), c.up.load(Relaxed), t0.elapsed().as_secs_f64());
            record.store(false, Relaxed);
            let cpu = cpu1.saturating_sub(cpu0).as_secs_f64();
            let expected = a.calls as f64 * secs / PERIOD.as_secs_f64();
            *f = (cpu * 1e6 / (a.calls as f64 * secs), (up1 - up0) as f64 / expected);
        }
        stop.store(true, Relaxed);
        let rec = peer.join().unwrap_or_default();
        let _ = server.join();
        let late = lateness_us(&rec.down_arrivals);
        let mut up: Vec<u64> = rec.up_latency_ns.iter().map(|ns| ns / 1000).collect();
        up.sort_unstable();
        let q = |v: &[u64], p: f64| {
            v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                .map_or(f64::NAN, |&us| us as f64 / 1000.0)
        };
        eprintln!(
            "io_floor: {} frames sent by the callers, {} round trips back to them",
            c.sent.load(Relaxed),
            c.down.load(Relaxed)
        );
        println!(
            "FLOOR mode={} calls={} seconds={:.1} cpu_us_per_call_s={:.0} busy_peer_cpu_us_per_call_s={:.0} delivered={:.3} paced_cpu_us_per_call_s={:.0} paced_p99_up_ms={:.3} paced_p50_down_ms={:.3} paced_p99_down_ms={:.3} paced_max_down_ms={:.3}",
            match a.mode {
                Mode::Rtp => "rtp",
                Mode::AudioSocket => "audiosocket",
            },
            a.calls,
            a.seconds,
            figures[0].0,
            figures[1].0,
            figures[0].1.min(figures[1].1),
            figures[2].0,
            q(&up, 0.99),
            q(&late, 0.5),
            q(&late, 0.99),
            q(&late, 1.0),
        );
        Ok(())
    }

    /// Each frame's lateness against its call's 20 ms grid, as loadgen
    /// measures it: arrival - k x PERIOD, less the call's smallest such
    /// offset; sorted, in microseconds.
    fn lateness_us(arrivals: &[Vec<u64>]) -> Vec<u64> {
        let period = PERIOD.as_nanos() as i128;
        let mut all = Vec::new();
        for call in arrivals {
            let offsets: Vec<i128> = call
                .iter()
                .enumerate()
                .map(|(k, &t)| t as i128 - k as i128 * period)
                .collect();
            if let Some(&min) = offsets.iter().min() {
                all.extend(offsets.iter().map(|o| ((o - min) / 1000) as u64));
            }
        }
        all.sort_unstable();
        all
    }

    /// What the peer measured in the paced window.
    #[derive(Default)]
    struct Recorded {
        /// Arrival times of the frames back to each caller (ns since the
        /// peer started).
        down_arrivals: Vec<Vec<u64>>,
        /// Caller -> bot: from a caller's send to the bot's receipt of it.
        up_latency_ns: Vec<u64>,
    }

    /// The peer's switches, set by the main thread.
    struct PeerFlags {
        stop: Arc<AtomicBool>,
        spin: Arc<AtomicBool>,
        /// Keep each frame's arrival time (the paced window).
        record: Arc<AtomicBool>,
    }

    /// Call i's deadline in `round`: its own phase of the period (as the
    /// peer spreads the callers) plus half a period, so that the bot's echo
    /// of the caller's frame is always there before it is due.
    fn paced_due(round: u64, i: usize, n: usize) -> Duration {
        PERIOD * (round as u32) + PERIOD * (i as u32) / (n as u32) + PERIOD / 2
    }

    /// One epoll set over every socket of one side (tokens: call index for
    /// the bots, CALLER + index for the callers, UDP for the shared port).
    fn register(bots: &[TcpStream], callers: &[TcpStream], udp: &UdpSocket) -> Option<Epoll> {
        let ep = Epoll::new().ok()?;
        let mut ok = ep.add(udp.as_raw_fd(), UDP).is_ok();
        for (i, b) in bots.iter().enumerate() {
            ok &= ep.add(b.as_raw_fd(), i as u64).is_ok();
        }
        for (i, s) in callers.iter().enumerate() {
            ok &= ep.add(s.as_raw_fd(), CALLER + i as u64).is_ok();
        }
        if !ok {
            eprintln!("io_floor: epoll_ctl failed");
            return None;
        }
        Some(ep)
    }

    fn server(
        mode: Mode,
        mut bots: Vec<TcpStream>,
        mut callers: Vec<TcpStream>,
        udp: UdpSocket,
        stop: &AtomicBool,
        paced: &AtomicBool,
    ) {
        pin(0);
        let Some(ep) = register(&bots, &callers, &udp) else {
            return;
        };
        let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let (mut rx, mut tx) = (Mmsg::new(), Mmsg::new());
        let mut buf = vec![0u8; 4096];
        let up = [0u8; BOT_UP];
        let down = [0u8; AUDIOSOCKET];
        let mut bot_partial = vec![0usize; bots.len()];
        let mut caller_partial = vec![0usize; callers.len()];
        let fd = udp.as_raw_fd();
        let calls = bots.len();
        // Paced window: frames from the bot wait here for their call's slot.
        let mut pending = vec![0u32; calls];
        let (start, mut pacing, mut round, mut next) = (Instant::now(), false, 0u64, 0usize);
        let send_down = |i: usize, tx: &mut Mmsg, callers: &mut [TcpStream]| match mode {
            Mode::Rtp => {
                tx.push(i as u32, RTP);
                if tx.is_full() {
                    tx.flush(fd);
                }
            }
            Mode::AudioSocket => {
                let _ = callers[i].write(&down);
            }
        };
        while !stop.load(Relaxed) {
            if paced.load(Relaxed) != pacing {
                pacing = !pacing;
                pending.fill(0);
                round = (start.elapsed().as_nanos() / PERIOD.as_nanos()) as u64 + 1;
                next = 0;
            }
            let mut timeout_ms = 50;
            if pacing {
                let now = start.elapsed();
                loop {
                    let due = paced_due(round, next, calls);
                    if due > now {
                        // Rounded up to the millisecond, as tokio's timer does.
                        timeout_ms = (due - now).as_micros().div_ceil(1000).min(50) as i32;
                        break;
                    }
                    if pending[next] > 0 {
                        pending[next] -= 1;
                        send_down(next, &mut tx, &mut callers);
                    }
                    next += 1;
                    if next == calls {
                        next = 0;
                        round += 1;
                    }
                }
                tx.flush(fd);
            }
            let n = ep.wait(&mut evs, timeout_ms);
            for ev in &evs[..n] {
                let token = ev.u64;
                if token == UDP {
                    let k = rx.recv(fd);
                    for j in 0..k {
                        if let Some(b) = call_of(rx.datagram(j)).and_then(|i| bots.get_mut(i)) {
                            let _ = b.write(&up);
                        }
                    }
                } else if token >= CALLER {
                    let i = (token - CALLER) as usize;
                    let whole = read_msgs(&mut callers[i], &mut buf, &mut caller_partial[i], AUDIOSOCKET);
                    for _ in 0..whole {
                        let _ = bots[i].write(&up);
                    }
                } else {
                    let i = token as usize;
                    let whole = read_msgs(&mut bots[i], &mut buf, &mut bot_partial[i], BOT_DOWN);
                    if pacing {
                        pending[i] += whole as u32;
                    } else {
                        for _ in 0..whole {
                            send_down(i, &mut tx, &mut callers);
                        }
                    }
                }
            }
            tx.flush(fd);
        }
    }

    fn peer(
        mode: Mode,
        mut bots: Vec<TcpStream>,
        mut callers: Vec<TcpStream>,
        udp: UdpSocket,
        flags: &PeerFlags,
        c: &Counters,
        per_call: usize,
    ) -> Recorded {
        pin(1);
        let Some(ep) = register(&bots, &callers, &udp) else {
            return Recorded::default();
        };
        let calls = bots.len();
        let mut rec = Recorded {
            down_arrivals: (0..calls).map(|_| Vec::with_capacity(per_call)).collect(),
            up_latency_ns: Vec::with_capacity(calls * per_call),
        };
        // Send times of the recorded frames per call, and how many of them
        // the bot has received.
        let mut sent_at: Vec<Vec<u64>> = (0..calls).map(|_| Vec::with_capacity(per_call)).collect();
        let mut at_bot = vec![0usize; calls];
        let n = bots.len();
        let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let (mut rx, mut tx) = (Mmsg::new(), Mmsg::new());
        let mut buf = vec![0u8; 4096];
        let reply = [0u8; BOT_DOWN];
        let frame = [0u8; AUDIOSOCKET];
        let mut bot_partial = vec![0usize; n];
        let mut caller_partial = vec![0usize; callers.len()];
        let fd = udp.as_raw_fd();
        let start = Instant::now();
        // Call i sends at start + (i / n) * PERIOD + k * PERIOD.
        let mut next = 0usize;
        let mut round = 0u64;
        while !flags.stop.load(Relaxed) {
            // Send every frame that is due.
            let now = start.elapsed();
            loop {
                let due = PERIOD * (round as u32) + PERIOD * (next as u32) / (n as u32);
                if due > now {
                    break;
                }
                match mode {
                    Mode::Rtp => {
                        tx.push(next as u32, RTP);
                        if tx.is_full() {
                            tx.flush(fd);
                        }
                    }
                    Mode::AudioSocket => {
                        let _ = callers[next].write(&frame);
                    }
                }
                c.sent.fetch_add(1, Relaxed);
                if flags.record.load(Relaxed) {
                    sent_at[next].push(start.elapsed().as_nanos() as u64);
                }
                next += 1;
                if next == n {
                    next = 0;
                    round += 1;
                }
            }
            tx.flush(fd);
            let due = PERIOD * (round as u32) + PERIOD * (next as u32) / (n as u32);
            let wait_ms = if flags.spin.load(Relaxed) {
                0
            } else {
                due.saturating_sub(start.elapsed())
                    .as_micros()
                    .div_ceil(1000)
                    .min(50) as i32
            };
            let k = ep.wait(&mut evs, wait_ms);
            let recording = flags.record.load(Relaxed);
            for ev in &evs[..k] {
                let token = ev.u64;
                if token == UDP {
                    let got = rx.recv(fd);
                    c.down.fetch_add(got as u64, Relaxed);
                    if recording {
                        let at = start.elapsed().as_nanos() as u64;
                        for j in 0..got {
                            if let Some(a) =
                                call_of(rx.datagram(j)).and_then(|i| rec.down_arrivals.get_mut(i))
                            {
                                a.push(at);
                            }
                        }
                    }
                } else if token >= CALLER {
                    let i = (token - CALLER) as usize;
                    let whole = read_msgs(&mut callers[i], &mut buf, &mut caller_partial[i], AUDIOSOCKET);
                    c.down.fetch_add(whole as u64, Relaxed);
                    if recording {
                        let at = start.elapsed().as_nanos() as u64;
                        rec.down_arrivals[i].extend(std::iter::repeat_n(at, whole));
                    }
                } else {
                    // The echo bot answers every message at once.
                    let i = token as usize;
                    let whole = read_msgs(&mut bots[i], &mut buf, &mut bot_partial[i], BOT_UP);
                    let at = start.elapsed().as_nanos() as u64;
                    for _ in 0..whole {
                        if let Some(&sent) = sent_at[i].get(at_bot[i]) {
                            rec.up_latency_ns.push(at.saturating_sub(sent));
                            at_bot[i] += 1;
                        }
                    }
                    for _ in 0..whole {
                        let _ = bots[i].write(&reply);
                    }
                    c.up.fetch_add(whole as u64, Relaxed);
                }
            }
        }
        rec
    }
}
