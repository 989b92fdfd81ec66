//! Many datagrams per system call: `recvmmsg`/`sendmmsg` where the platform
//! has them (Linux, Android, FreeBSD, NetBSD, through nix's safe wrappers),
//! a loop of single `recv_from`/`send_to` elsewhere. Buffers and message
//! headers are allocated once, when the batch is made; a batch call
//! allocates nothing.
//!
//! Written here rather than taken from quinn-udp: quinn-udp batches receives
//! but sends one destination per call (GSO), and a shared RTP port sends each
//! packet to a different caller.

use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram kept (a 20 ms voice packet is far smaller; a longer one
/// is cut here and then refused as malformed).
pub const DATAGRAM_MAX: usize = 1500;

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd"
))]
use mmsg as sys;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
use portable as sys;

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd"
))]
mod mmsg {
    //! recvmmsg / sendmmsg.
    use super::{BATCH, DATAGRAM_MAX};
    use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    pub struct Headers(MultiHeaders<SockaddrStorage>);

    impl Headers {
        pub fn new() -> Self {
            Headers(MultiHeaders::preallocate(BATCH, None))
        }
    }

    fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
        }
        a.as_sockaddr_in6()
            .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
    }

    /// One `recvmmsg`; fills `meta` with (length, source) and returns the count.
    pub fn recv(
        sock: &UdpSocket,
        h: &mut Headers,
        buf: &mut [u8],
        meta: &mut [(usize, Option<SocketAddr>); BATCH],
    ) -> io::Result<usize> {
        sock.try_io(Interest::READABLE, || {
            let mut chunks = buf.chunks_exact_mut(DATAGRAM_MAX);
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
            let res = recvmmsg(
                sock.as_raw_fd(),
                &mut h.0,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            let mut n = 0;
            for (m, r) in meta.iter_mut().zip(res) {
                // A datagram longer than the slot is cut; the length says so.
                let len = if r.flags.contains(MsgFlags::MSG_TRUNC) {
                    DATAGRAM_MAX + 1
                } else {
                    r.bytes
                };
                *m = (len, r.address.as_ref().and_then(to_std));
                n += 1;
            }
            Ok(n)
        })
    }

    /// One `sendmmsg` of `lens[..n]`; returns how many went out (at least
    /// one unless the socket's buffer is full or the first one failed).
    pub fn send(
        sock: &UdpSocket,
        h: &mut Headers,
        buf: &[u8],
        lens: &[usize],
        to: &[SocketAddr],
    ) -> io::Result<usize> {
        let addrs: [Option<SockaddrStorage>; BATCH] =
            std::array::from_fn(|i| to.get(i).map(|a| SockaddrStorage::from(*a)));
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
            let len = lens.get(i).copied().unwrap_or(0).min(DATAGRAM_MAX);
            let start = i * DATAGRAM_MAX;
            [IoSlice::new(buf.get(start..start + len).unwrap_or_default())]
        });
        let n = lens.len().min(to.len()).min(BATCH);
        sock.try_io(Interest::WRITABLE, || {
            let res = sendmmsg(
                sock.as_raw_fd(),
                &mut h.0,
                iovs[..n].iter(),
                &addrs[..n],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)?;
            Ok(res.count())
        })
    }
}

// Compiled everywhere (and unit-tested here) though only used where the
// platform has no `recvmmsg`.
#[cfg_attr(
    any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd"
    ),
    allow(dead_code)
)]
mod portable {
    //! One datagram per system call.
    use super::{BATCH, DATAGRAM_MAX};
    use std::io;
    use std::net::SocketAddr;
    use tokio::net::UdpSocket;

    pub struct Headers;

    impl Headers {
        pub fn new() -> Self {
            Headers
        }
    }

    pub fn recv(
        sock: &UdpSocket,
        _h: &mut Headers,
        buf: &mut [u8],
        meta: &mut [(usize, Option<SocketAddr>); BATCH],
    ) -> io::Result<usize> {
        let mut n = 0;
        for (chunk, m) in buf.chunks_exact_mut(DATAGRAM_MAX).zip(meta.iter_mut()) {
            match sock.try_recv_from(chunk) {
                Ok((len, from)) => {
                    *m = (len, Some(from));
                    n += 1;
                }
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }

    pub fn send(
        sock: &UdpSocket,
        _h: &mut Headers,
        buf: &[u8],
        lens: &[usize],
        to: &[SocketAddr],
    ) -> io::Result<usize> {
        let mut n = 0;
        for (i, (len, to)) in lens.iter().zip(to).enumerate() {
            let start = i * DATAGRAM_MAX;
            let data = buf
                .get(start..start + (*len).min(DATAGRAM_MAX))
                .unwrap_or_default();
            match sock.try_send_to(data, *to) {
                Ok(_) => n += 1,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }
}

/// Received datagrams, read `BATCH` at a time.
pub struct RecvBatch {
    buf: Box<[u8]>,
    meta: [(usize, Option<SocketAddr>); BATCH],
    n: usize,
    headers: sys::Headers,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            buf: vec![0; BATCH * DATAGRAM_MAX].into_boxed_slice(),
            meta: [(0, None); BATCH],
            n: 0,
            headers: sys::Headers::new(),
        }
    }
}

impl RecvBatch {
    /// Reads what is queued on `sock`, up to `BATCH` datagrams, without
    /// waiting; `Err(WouldBlock)` when nothing is queued (and the socket's
    /// readiness is cleared, so `readable()` waits again).
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        self.n = 0;
        self.n = sys::recv(sock, &mut self.headers, &mut self.buf, &mut self.meta)?;
        Ok(self.n)
    }

    /// The `i`th datagram of the last read: its bytes and source. A datagram
    /// longer than `DATAGRAM_MAX` comes back as `None` bytes.
    pub fn get(&self, i: usize) -> Option<(Option<&[u8]>, SocketAddr)> {
        let (len, from) = *self.meta.get(i).filter(|_| i < self.n)?;
        let from = from?;
        let start = i * DATAGRAM_MAX;
        let data = (len <= DATAGRAM_MAX).then(|| &self.buf[start..start + len]);
        Some((data, from))
    }
}

/// Datagrams to send, `BATCH` per system call.
pub struct SendBatch {
    buf: Box<[u8]>,
    lens: [usize; BATCH],
    to: [SocketAddr; BATCH],
    n: usize,
    headers: sys::Headers,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            buf: vec![0; BATCH * DATAGRAM_MAX].into_boxed_slice(),
            lens: [0; BATCH],
            to: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            n: 0,
            headers: sys::Headers::new(),
        }
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped (socket buffer full, unreachable address).
    pub dropped: usize,
    /// System calls made.
    pub calls: usize,
}

impl SendBatch {
    /// `true` when no more fits before a flush.
    pub fn is_full(&self) -> bool {
        self.n == BATCH
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.n
    }

    /// `true` when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Queues one datagram (cut at `DATAGRAM_MAX`); `false` when full.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) -> bool {
        if self.is_full() {
            return false;
        }
        let len = data.len().min(DATAGRAM_MAX);
        let start = self.n * DATAGRAM_MAX;
        self.buf[start..start + len].copy_from_slice(&data[..len]);
        self.lens[self.n] = len;
        self.to[self.n] = to;
        self.n += 1;
        true
    }

    /// Sends everything queued without waiting. A datagram the kernel
    /// refuses is dropped and the rest still go; a full socket buffer drops
    /// what is left (real-time audio is not worth sending late).
    pub fn flush(&mut self, sock: &UdpSocket) -> Flushed {
        let mut f = Flushed::default();
        let mut off = 0;
        while off < self.n {
            f.calls += 1;
            let start = off * DATAGRAM_MAX;
            match sys::send(
                sock,
                &mut self.headers,
                &self.buf[start..],
                &self.lens[off..self.n],
                &self.to[off..self.n],
            ) {
                Ok(0) => {
                    f.dropped += self.n - off;
                    break;
                }
                Ok(k) => {
                    f.sent += k;
                    off += k;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    f.dropped += self.n - off;
                    break;
                }
                Err(_) => {
                    // The first datagram failed (an address the kernel will
                    // not send to): skip it, keep the others.
                    f.dropped += 1;
                    off += 1;
                }
            }
        }
        self.n = 0;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_in_order_with_sources() {
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("test");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("test");
        let to = b.local_addr().expect("test");
        a.writable().await.expect("test");
        let mut sb = SendBatch::default();
        for i in 0..40u8 {
            if sb.is_full() {
                let f = sb.flush(&a);
                assert_eq!(f.sent, BATCH);
            }
            assert!(sb.push(&[i; 100][..usize::from(i) + 1], to));
        }
        let f = sb.flush(&a);
        assert_eq!((f.sent, f.dropped), (40 - BATCH, 0));
        let mut rb = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 40 {
            b.readable().await.expect("test");
            let n = match rb.recv(&b) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            };
            for i in 0..n {
                let (data, from) = rb.get(i).expect("test");
                assert_eq!(from, a.local_addr().expect("test"));
                got.push(data.expect("test").to_vec());
            }
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.len(), i + 1);
            assert!(d.iter().all(|x| usize::from(*x) == i));
        }
        assert!(rb.get(BATCH).is_none());
    }

    #[tokio::test]
    async fn the_fallback_without_mmsg_sends_and_receives_the_same() {
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("test");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("test");
        a.writable().await.expect("test");
        let mut buf = vec![0u8; BATCH * DATAGRAM_MAX];
        for i in 0..3 {
            buf[i * DATAGRAM_MAX..i * DATAGRAM_MAX + 5].fill(i as u8 + 1);
        }
        let to = [b.local_addr().expect("test"); 3];
        let mut h = portable::Headers::new();
        assert_eq!(
            portable::send(&a, &mut h, &buf, &[5, 5, 5], &to).expect("send"),
            3
        );
        let mut meta = [(0, None); BATCH];
        let mut got = 0;
        while got < 3 {
            b.readable().await.expect("test");
            let Ok(n) = portable::recv(&b, &mut h, &mut buf, &mut meta) else {
                continue;
            };
            for (len, from) in &meta[..n] {
                assert_eq!((*len, *from), (5, Some(a.local_addr().expect("test"))));
            }
            got += n;
        }
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn an_oversized_datagram_is_flagged_not_cut_silently() {
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("test");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("test");
        a.send_to(&[7; DATAGRAM_MAX + 100], b.local_addr().expect("test"))
            .await
            .expect("test");
        a.send_to(&[8; 10], b.local_addr().expect("test"))
            .await
            .expect("test");
        let mut rb = RecvBatch::default();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            b.readable().await.expect("test");
            let Ok(n) = rb.recv(&b) else { continue };
            for i in 0..n {
                seen.push(rb.get(i).expect("test").0.map(|d| d.len()));
            }
        }
        assert_eq!(seen, vec![None, Some(10)]);
    }
}
