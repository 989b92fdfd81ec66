//! `voxbridge loadgen`: N concurrent callers against a daemon, with the
//! built-in echo bot on the other side, measuring what the daemon adds.
//!
//! `--mode audiosocket` (default): each caller is Asterisk-like, sending its
//! UUID, then a 320-byte 8 kHz slin frame every 20 ms (real speech, looped).
//! `--mode chanws`: each caller is Asterisk's WebSocket media channel
//! dialling the daemon (`--target` is its chan_websocket listener), with
//! the same 8 kHz slin frames ([`crate::loadgen_chanws`]).
//! `--mode rtp-pcmu` / `rtp-opus`: each caller creates an RTP session
//! through the media API (`--api`) and sends one RTP packet per 20 ms
//! ([`crate::loadgen_rtp`]); the jitter buffer forwards in-order packets
//! at once, so caller->bot latency has no deliberate delay on a clean
//! network. Callers are spread over 20 phase groups, one timer
//! each, like calls that started at random moments. Measured while all calls
//! are up:
//! - caller->bot: the time from writing frame k to the bot receiving its
//!   k-th audio frame of that call (the daemon forwards 1:1, so counting
//!   matches frames);
//! - bot->caller: each frame's lateness against the call's 20 ms grid
//!   (arrival - k x 20 ms, less the call's smallest such offset);
//! - frames lost both ways, and the daemon's CPU time per call-second from
//!   `/proc/<pid>/stat` when `--daemon-pid` is given.

use crate::bot::{self, Mode, Probe};
use crate::loadgen_rtp::{self as rtp, RtpCaller, RtpCodec};
use anyhow::{bail, Context as _};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use voxbridge_codecs::g711;
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};
use voxbridge_proto::wav;

/// Send times kept per call (frames); the bot must see frame k within 10 s.
const RING: usize = 512;
/// Phase groups of callers (one timer each).
const GROUPS: usize = 20;
const FRAME: Duration = Duration::from_millis(20);

/// How loadgen's callers reach the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CallerMode {
    /// Asterisk AudioSocket over TCP.
    Audiosocket,
    /// Asterisk's WebSocket media channel (chan_websocket), dialling the daemon.
    Chanws,
    /// RTP with G.711 u-law.
    RtpPcmu,
    /// RTP with Opus.
    RtpOpus,
}

/// `voxbridge loadgen` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Caller transport.
    #[arg(long, value_enum, default_value_t = CallerMode::Audiosocket)]
    pub mode: CallerMode,
    /// The daemon's HTTP address (media API), for RTP modes.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub api: SocketAddr,
    /// Bearer token for the media API, for RTP modes (default: env
    /// `VOXBRIDGE_MEDIA_API_TOKEN`, as the daemon reads it).
    #[arg(long)]
    pub api_token: Option<String>,
    /// Daemon AudioSocket address (chan_websocket listener with `--mode chanws`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub target: SocketAddr,
    /// Concurrent calls.
    #[arg(long, default_value_t = 10)]
    pub calls: usize,
    /// Measured seconds (after all calls are up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Spread call setup over this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub ramp_ms: u64,
    /// Where the built-in echo bot listens (the daemon's route must point here).
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub bot_listen: SocketAddr,
    /// Answer with a tone instead of echoing.
    #[arg(long)]
    pub tone: bool,
    /// Caller audio: 8 kHz mono WAV (PCM16) or raw u-law `.ul`; looped.
    #[arg(long, default_value = "samples/hello_8k.ul")]
    pub audio: PathBuf,
    /// Quiet callers: each sends one frame a second instead of fifty (an
    /// established call in which nobody speaks; the daemon still plays 50
    /// frames a second to it). For the daemon's memory at many calls; the
    /// latency and loss figures then cover those frames only.
    #[arg(long)]
    pub quiet: bool,
    /// The daemon's pid, to read its CPU time from /proc.
    #[arg(long)]
    pub daemon_pid: Option<u32>,
    /// Draw the latency histograms into this PNG.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Per-call shared state between the caller side and the bot side.
struct CallProbe {
    sends: Box<[AtomicU64]>,
    bot_frames: AtomicU64,
}

struct Shared {
    base: Instant,
    measuring: AtomicBool,
    calls: Vec<CallProbe>,
    ids: HashMap<String, usize>,
    up: Mutex<Histogram<u64>>,
    sent_measured: AtomicU64,
    bot_measured: AtomicU64,
}

impl Shared {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }
}

struct ProbeImpl(Arc<Shared>);

impl Probe for ProbeImpl {
    fn started(&self, call_id: &str) -> Option<usize> {
        self.0.ids.get(call_id).copied()
    }

    fn audio(&self, h: usize, seq: u64, at: Instant) {
        let s = &self.0;
        let Some(c) = s.calls.get(h) else { return };
        c.bot_frames.fetch_add(1, Relaxed);
        // Slot k is written before frame k is sent; 0 = sent outside the
        // measured window (frames sent inside it count even if they reach
        // the bot just after it closed).
        let sent = c.sends[seq as usize % RING].swap(0, Relaxed);
        if sent != 0 {
            let now = s.ns(at);
            s.bot_measured.fetch_add(1, Relaxed);
            if let Ok(mut h) = s.up.lock() {
                let _ = h.record(now.saturating_sub(sent) / 1000);
            }
        }
    }
}

fn load_audio(path: &PathBuf) -> anyhow::Result<Vec<i16>> {
    let bytes = std::fs::read(path).with_context(|| format!("read caller audio {}", path.display()))?;
    let pcm: Vec<i16> = if wav::looks_like_wav(&bytes) {
        let h = wav::parse_header(&bytes)?;
        if h.rate != 8000 || h.encoding != wav::WavEncoding::Pcm16 {
            bail!("{}: need 8 kHz mono PCM16 WAV", path.display());
        }
        bytes[h.data_offset..]
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect()
    } else {
        bytes.iter().map(|&c| g711::ulaw_to_linear(c)).collect()
    };
    if pcm.len() < 160 {
        bail!("{}: shorter than one 20 ms frame", path.display());
    }
    Ok(pcm)
}

/// Pre-built AudioSocket frames of the looped audio.
fn frames(pcm: &[i16]) -> Vec<Bytes> {
    pcm.chunks_exact(160)
        .map(|c| {
            let mut b = BytesMut::with_capacity(323);
            b.extend_from_slice(&[0x10, 0x01, 0x40]);
            for s in c {
                b.extend_from_slice(&s.to_le_bytes());
            }
            b.freeze()
        })
        .collect()
}

fn uuid(run: u64, i: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&run.to_be_bytes());
    id[8..].copy_from_slice(&(i as u64).to_be_bytes());
    id
}

/// Daemon CPU (user + system) in microseconds, from /proc/<pid>/stat.
fn cpu_us(pid: u32) -> anyhow::Result<u64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    // Fields after the ")" that closes the command name: state is field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).context("utime")?;
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).context("stime")?;
    // USER_HZ is 100 on every Linux ABI voxbridge targets.
    Ok((utime + stime) * 10_000)
}

/// This process's CPU in microseconds: the finer of the kernel's per-thread
/// run times (`/proc/self/task/*/schedstat`, nanoseconds) and its total in
/// 10 ms ticks (`/proc/self/stat`, which also counts threads that ended).
/// A few quiet calls cost less than a tick.
fn own_cpu_us() -> anyhow::Result<u64> {
    let ticks = cpu_us(std::process::id())?;
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Ok(ticks.max(ns / 1000))
}

struct Reader {
    offsets: Vec<i64>,
    received: u64,
    hung_up_by_daemon: bool,
    /// Frames counted so far (the k of the next one on the call's 20 ms grid).
    k: i64,
}

impl Reader {
    fn new() -> Self {
        Reader {
            offsets: Vec::new(),
            received: 0,
            hung_up_by_daemon: false,
            k: 0,
        }
    }

    /// A frame arrived at `now`: its offset against the 20 ms grid, while measuring.
    fn frame(&mut self, shared: &Shared, now: Instant) {
        if shared.measuring.load(Relaxed) {
            self.offsets.push(shared.ns(now) as i64 - self.k * 20_000_000);
            self.received += 1;
            self.k += 1;
        }
    }
}

async fn read_caller(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Reader {
    let codec = AudioSocketCodec::default();
    let mut buf = BytesMut::with_capacity(8192);
    let mut r = Reader::new();
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return r,
            Ok(_) => {}
        }
        let now = Instant::now();
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(Frame::Audio { .. })) => r.frame(&shared, now),
                Ok(Some(Frame::Hangup)) => {
                    if !stop.load(Relaxed) {
                        r.hung_up_by_daemon = true;
                    }
                    return r;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return r,
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8192);
        }
    }
}

/// Runs the load; prints a summary and a `LOADGEN key=value ...` line.
pub fn run(args: Args) -> anyhow::Result<()> {
    let pcm = load_audio(&args.audio)?;
    let frames = Arc::new(match rtp_codec(args.mode) {
        None => frames(&pcm),
        Some(c) => rtp::payloads(&pcm, c)?,
    });
    // Loadgen and its bot share one thread: it is meant to be pinned to one core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(go(args, frames))
}

fn rtp_codec(mode: CallerMode) -> Option<RtpCodec> {
    match mode {
        CallerMode::Audiosocket | CallerMode::Chanws => None,
        CallerMode::RtpPcmu => Some(RtpCodec::Pcmu),
        CallerMode::RtpOpus => Some(RtpCodec::Opus),
    }
}

/// One caller's sending side.
enum CallerTx {
    Tcp(OwnedWriteHalf),
    Rtp(RtpCaller),
    Ws(futures_util::stream::SplitSink<crate::loadgen_chanws::Ws, tokio_tungstenite::tungstenite::Message>),
}

/// Reads one chan_websocket caller's frames until the daemon closes (or
/// says `HANGUP` first: the daemon hung up).
async fn read_ws(
    mut rd: futures_util::stream::SplitStream<crate::loadgen_chanws::Ws>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Reader {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut r = Reader::new();
    while let Some(Ok(m)) = rd.next().await {
        match m {
            Message::Binary(_) => r.frame(&shared, Instant::now()),
            Message::Text(t) if t.as_str() == "HANGUP" => {
                if !stop.load(Relaxed) {
                    r.hung_up_by_daemon = true;
                }
                return r;
            }
            Message::Close(_) => return r,
            _ => {}
        }
    }
    r
}

/// Reads one RTP caller's returned packets until `stop` and a quiet 500 ms.
async fn read_rtp(
    sock: Arc<tokio::net::UdpSocket>,
    codec: RtpCodec,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Reader {
    let mut buf = vec![0u8; 2048];
    let mut r = Reader::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                if rtp::is_audio(&buf[..n], codec) {
                    r.frame(&shared, Instant::now());
                }
            }
            Ok(Err(_)) => return r,
            Err(_) if stop.load(Relaxed) => return r,
            Err(_) => {}
        }
    }
}

async fn go(args: Args, frames: Arc<Vec<Bytes>>) -> anyhow::Result<()> {
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let ids: HashMap<String, usize> = (0..args.calls)
        .map(|i| (Frame::uuid_string(&uuid(run_id, i)), i))
        .collect();
    let shared = Arc::new(Shared {
        base: Instant::now() - Duration::from_secs(1),
        measuring: AtomicBool::new(false),
        calls: (0..args.calls)
            .map(|_| CallProbe {
                sends: (0..RING).map(|_| AtomicU64::new(0)).collect(),
                bot_frames: AtomicU64::new(0),
            })
            .collect(),
        ids,
        up: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        sent_measured: AtomicU64::new(0),
        bot_measured: AtomicU64::new(0),
    });
    let bot_listener = TcpListener::bind(args.bot_listen)
        .await
        .with_context(|| format!("bot listen {}", args.bot_listen))?;
    let mode = if args.tone { Mode::Tone } else { Mode::Echo };
    let probe: Arc<dyn Probe> = Arc::new(ProbeImpl(shared.clone()));
    tokio::spawn(bot::serve(bot_listener, mode, Duration::ZERO, Some(probe)));

    // Connect every caller, spread over the ramp.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers: Vec<Vec<(usize, CallerTx)>> = (0..GROUPS).map(|_| Vec::new()).collect();
    let mut readers = Vec::new();
    let mut rtp_ids = Vec::new();
    let gap = Duration::from_micros(args.ramp_ms * 1000 / args.calls.max(1) as u64);
    for i in 0..args.calls {
        let tx = match rtp_codec(args.mode) {
            None if args.mode == CallerMode::Chanws => {
                let id = Frame::uuid_string(&uuid(run_id, i));
                let (wr, rd) = crate::loadgen_chanws::connect(args.target, &id).await?;
                readers.push(tokio::spawn(read_ws(rd, shared.clone(), stop.clone())));
                CallerTx::Ws(wr)
            }
            None => {
                let sock = TcpStream::connect(args.target)
                    .await
                    .with_context(|| format!("connect to the daemon at {}", args.target))?;
                sock.set_nodelay(true)?;
                let (rd, mut wr) = sock.into_split();
                let mut hello = vec![0x01, 0x00, 0x10];
                hello.extend_from_slice(&uuid(run_id, i));
                wr.write_all(&hello).await?;
                readers.push(tokio::spawn(read_caller(rd, shared.clone(), stop.clone())));
                CallerTx::Tcp(wr)
            }
            Some(codec) => {
                let sock = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
                let id = Frame::uuid_string(&uuid(run_id, i));
                let to =
                    rtp::create_session(args.api, &api_token(&args), sock.local_addr()?, codec, &id).await?;
                rtp_ids.push(id);
                readers.push(tokio::spawn(read_rtp(
                    sock.clone(),
                    codec,
                    shared.clone(),
                    stop.clone(),
                )));
                CallerTx::Rtp(RtpCaller::new(sock, to, codec, i as u32 + 1))
            }
        };
        writers[i % GROUPS].push((i, tx));
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    // Writers: one timer per phase group.
    let start = Instant::now() + FRAME;
    let loadgen_skipped = Arc::new(AtomicU64::new(0));
    let mut writer_tasks = Vec::new();
    for (g, group) in writers.into_iter().enumerate() {
        let (shared, frames, stop, skipped) = (
            shared.clone(),
            frames.clone(),
            stop.clone(),
            loadgen_skipped.clone(),
        );
        let phase = start + FRAME * g as u32 / GROUPS as u32;
        // Quiet: one tick in fifty sends.
        let every: u64 = if args.quiet { 50 } else { 1 };
        writer_tasks.push(tokio::spawn(async move {
            let mut group = group;
            let mut tick = tokio::time::interval_at(phase.into(), FRAME);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut k: u64 = 0;
            let mut expected = phase;
            while !stop.load(Relaxed) {
                let at = tick.tick().await.into_std();
                let behind = at.saturating_duration_since(expected).as_nanos() / FRAME.as_nanos();
                skipped.fetch_add(behind as u64, Relaxed);
                expected = at + FRAME;
                if k % every != 0 {
                    k += 1;
                    continue;
                }
                let measuring = shared.measuring.load(Relaxed);
                let f = &frames[(k as usize) % frames.len()];
                for (i, tx) in group.iter_mut() {
                    let now = Instant::now();
                    let c = &shared.calls[*i];
                    // The bot numbers the frames it gets 0, 1, 2, ...: so do the sends.
                    let n = (k / every) as usize;
                    c.sends[n % RING].store(if measuring { shared.ns(now) } else { 0 }, Relaxed);
                    if measuring {
                        shared.sent_measured.fetch_add(1, Relaxed);
                    }
                    match tx {
                        CallerTx::Rtp(r) => r.send(f),
                        // The AudioSocket frame's payload: 320 bytes of slin.
                        CallerTx::Ws(ws) => {
                            let m = tokio_tungstenite::tungstenite::Message::Binary(f.slice(3..));
                            let _ = futures_util::SinkExt::send(ws, m).await;
                        }
                        CallerTx::Tcp(wr) => match wr.try_write(f) {
                            Ok(n) if n == f.len() => {}
                            Ok(n) => {
                                let _ = wr.write_all(&f[n..]).await;
                            }
                            Err(_) => {
                                let _ = wr.write_all(f).await;
                            }
                        },
                    }
                }
                k += 1;
            }
            // Let the last frames through, then hang up like Asterisk.
            tokio::time::sleep(Duration::from_millis(300)).await;
            for (_, tx) in group.iter_mut() {
                match tx {
                    CallerTx::Tcp(wr) => {
                        let _ = wr.write_all(&[0x00, 0x00, 0x00]).await;
                    }
                    CallerTx::Ws(ws) => {
                        let _ = futures_util::SinkExt::close(ws).await;
                    }
                    CallerTx::Rtp(_) => {}
                }
            }
        }));
    }
    // Warm-up: let every call's bot link come up and its grid settle.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let cpu0 = args.daemon_pid.map(cpu_us).transpose()?;
    let own0 = own_cpu_us()?;
    let t0 = Instant::now();
    shared.measuring.store(true, Relaxed);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    shared.measuring.store(false, Relaxed);
    let measured = t0.elapsed();
    let cpu1 = args.daemon_pid.map(cpu_us).transpose()?;
    let own1 = own_cpu_us()?;
    // Frames sent in the window may still be in flight to the bot: drain.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Relaxed);
    for w in writer_tasks {
        let _ = w.await;
    }
    for id in &rtp_ids {
        rtp::hangup_session(args.api, &api_token(&args), id).await;
    }
    let mut down = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut received = 0u64;
    let mut lost_down = 0u64;
    let mut hung_up = 0u64;
    for r in readers {
        let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), r).await else {
            continue;
        };
        received += r.received;
        hung_up += r.hung_up_by_daemon as u64;
        if let Some(&min) = r.offsets.iter().min() {
            for o in &r.offsets {
                let _ = down.record(((o - min) / 1000) as u64);
            }
            // Each frame missing shifts every later offset by 20 ms.
            let last = r.offsets.last().copied().unwrap_or(min);
            lost_down += ((last - min + 10_000_000) / 20_000_000) as u64;
        }
    }
    let up = shared.up.lock().map(|h| h.clone()).unwrap_or(down.clone());
    let sent = shared.sent_measured.load(Relaxed);
    let at_bot = shared.bot_measured.load(Relaxed);
    let lost_up = sent.saturating_sub(at_bot);
    let call_s = args.calls as f64 * measured.as_secs_f64();
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => format!("{:.0}", (b - a) as f64 / call_s),
        _ => "na".into(),
    };
    // This process: the callers and the echo bot they talk to. It must cost
    // no more per call than the daemon, or it, not the daemon, is measured.
    let own = format!("{:.0}", own1.saturating_sub(own0) as f64 / call_s);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "loadgen: {} calls x {:.1} s measured; daemon hung up {} calls early; loadgen skipped {} ticks",
        args.calls,
        measured.as_secs_f64(),
        hung_up,
        loadgen_skipped.load(Relaxed)
    );
    println!(
        "  caller->bot: {} frames sent, {} at the bot (lost {}), added p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        sent,
        at_bot,
        lost_up,
        ms(&up, 0.5),
        ms(&up, 0.99),
        up.max() as f64 / 1000.0
    );
    println!(
        "  bot->caller: {} frames received (lost {}), lateness p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
        received,
        lost_down,
        ms(&down, 0.5),
        ms(&down, 0.99),
        down.max() as f64 / 1000.0
    );
    println!("  daemon CPU per call-second: {cpu} us; loadgen's own (callers and echo bot): {own} us");
    if let Some(png) = &args.png {
        crate::plot::latency_png(png, &up, &down)?;
        println!("  histogram: {}", png.display());
    }
    println!(
        "LOADGEN mode={} calls={} seconds={:.1} cpu_us_per_call_s={} p50_up_ms={:.3} p99_up_ms={:.3} max_up_ms={:.3} p50_down_ms={:.3} p99_down_ms={:.3} max_down_ms={:.3} frames_lost={} hung_up_early={} loadgen_skipped={} loadgen_cpu_us_per_call_s={}",
        match args.mode {
            CallerMode::Audiosocket => "audiosocket",
            CallerMode::Chanws => "chanws",
            CallerMode::RtpPcmu => "rtp-pcmu",
            CallerMode::RtpOpus => "rtp-opus",
        },
        args.calls,
        measured.as_secs_f64(),
        cpu,
        ms(&up, 0.5),
        ms(&up, 0.99),
        up.max() as f64 / 1000.0,
        ms(&down, 0.5),
        ms(&down, 0.99),
        down.max() as f64 / 1000.0,
        lost_up + lost_down,
        hung_up,
        loadgen_skipped.load(Relaxed),
        own
    );
    Ok(())
}

/// The media API token: `--api-token`, else `VOXBRIDGE_MEDIA_API_TOKEN`.
fn api_token(args: &Args) -> String {
    args.api_token
        .clone()
        .or_else(|| std::env::var("VOXBRIDGE_MEDIA_API_TOKEN").ok())
        .unwrap_or_default()
}
