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
//! Two windows are measured. In the first the peer sleeps in `epoll_wait`
//! between frames, as loadgen does, so a server send that wakes it also
//! pays for the wake-up (on a VM an inter-processor interrupt, the largest
//! single cost seen here). In the second the peer spins, so the server pays
//! only for its own system calls and its own wake-ups.
//!
//! Ends with `FLOOR mode=<m> calls=<n> seconds=<s> cpu_us_per_call_s=<peer
//! sleeping> busy_peer_cpu_us_per_call_s=<peer spinning> delivered=<fraction
//! of the expected frames that made the round trip, the lower window>`.
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
        let c = Arc::new(Counters {
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        let peer = {
            let (stop, spin, c, mode) = (stop.clone(), spin.clone(), c.clone(), a.mode);
            std::thread::spawn(move || peer(mode, bot_p, caller_p, udp_p, &stop, &spin, &c))
        };
        let (stop_s, mode) = (stop.clone(), a.mode);
        let server = std::thread::spawn(move || server(mode, bot_s, caller_s, udp_s, &stop_s));
        let tid = server.as_pthread_t();
        // Two windows: the peer sleeping in epoll_wait between frames (as
        // loadgen does, so the server's sends also pay for waking it), then
        // the peer spinning (only the server's own system calls and wake-ups).
        let mut figures = [(0.0, 0.0); 2];
        for (i, f) in figures.iter_mut().enumerate() {
            spin.store(i == 1, Relaxed);
            std::thread::sleep(Duration::from_secs_f64(a.warmup));
            let (cpu0, up0, t0) = (thread_cpu(tid), c.up.load(Relaxed), Instant::now());
            std::thread::sleep(Duration::from_secs_f64(a.seconds));
            let (cpu1, up1, secs) = (thread_cpu(tid), c.up.load(Relaxed), t0.elapsed().as_secs_f64());
            let cpu = cpu1.saturating_sub(cpu0).as_secs_f64();
            let expected = a.calls as f64 * secs / PERIOD.as_secs_f64();
            *f = (cpu * 1e6 / (a.calls as f64 * secs), (up1 - up0) as f64 / expected);
        }
        stop.store(true, Relaxed);
        let _ = peer.join();
        let _ = server.join();
        eprintln!(
            "io_floor: {} frames sent by the callers, {} round trips back to them",
            c.sent.load(Relaxed),
            c.down.load(Relaxed)
        );
        println!(
            "FLOOR mode={} calls={} seconds={:.1} cpu_us_per_call_s={:.0} busy_peer_cpu_us_per_call_s={:.0} delivered={:.3}",
            match a.mode {
                Mode::Rtp => "rtp",
                Mode::AudioSocket => "audiosocket",
            },
            a.calls,
            a.seconds,
            figures[0].0,
            figures[1].0,
            figures[0].1.min(figures[1].1),
        );
        Ok(())
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
        while !stop.load(Relaxed) {
            let n = ep.wait(&mut evs, 50);
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
                    for _ in 0..whole {
                        match mode {
                            Mode::Rtp => {
                                tx.push(i as u32, RTP);
                                if tx.is_full() {
                                    tx.flush(fd);
                                }
                            }
                            Mode::AudioSocket => {
                                let _ = callers[i].write(&down);
                            }
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
        stop: &AtomicBool,
        spin: &AtomicBool,
        c: &Counters,
    ) {
        pin(1);
        let Some(ep) = register(&bots, &callers, &udp) else {
            return;
        };
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
        while !stop.load(Relaxed) {
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
                next += 1;
                if next == n {
                    next = 0;
                    round += 1;
                }
            }
            tx.flush(fd);
            let due = PERIOD * (round as u32) + PERIOD * (next as u32) / (n as u32);
            let wait_ms = if spin.load(Relaxed) {
                0
            } else {
                due.saturating_sub(start.elapsed())
                    .as_micros()
                    .div_ceil(1000)
                    .min(50) as i32
            };
            let k = ep.wait(&mut evs, wait_ms);
            for ev in &evs[..k] {
                let token = ev.u64;
                if token == UDP {
                    let got = rx.recv(fd);
                    c.down.fetch_add(got as u64, Relaxed);
                } else if token >= CALLER {
                    let i = (token - CALLER) as usize;
                    let whole = read_msgs(&mut callers[i], &mut buf, &mut caller_partial[i], AUDIOSOCKET);
                    c.down.fetch_add(whole as u64, Relaxed);
                } else {
                    // The echo bot answers every message at once.
                    let i = token as usize;
                    let whole = read_msgs(&mut bots[i], &mut buf, &mut bot_partial[i], BOT_UP);
                    for _ in 0..whole {
                        let _ = bots[i].write(&reply);
                    }
                    c.up.fetch_add(whole as u64, Relaxed);
                }
            }
        }
    }
}
