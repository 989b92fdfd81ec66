//! Shared setup of the control sidecar's load tools (`control_load`,
//! `consumers_load`): a fresh PostgreSQL schema per run, the calls they
//! write, and histogram read-outs.

use hdrhistogram::Histogram;
use voxbridge_control::model::NewCall;
use voxbridge_control::state::{CallStatus, Direction};
use voxbridge_control::time::Millis;

/// The error type of the load tools.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Creates a fresh schema in the database at `pg` and returns a URL whose
/// connections use it, so a run never sees another run's rows.
pub async fn fresh_schema(pg: &str) -> Res<String> {
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(pg, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await?;
    let sep = if pg.contains('?') { '&' } else { '?' };
    Ok(format!("{pg}{sep}options=-c%20search_path%3D{schema}"))
}

/// A ringing incoming call of `customer`.
pub fn call(id: String, customer: &str) -> NewCall {
    NewCall {
        id,
        customer_id: customer.into(),
        status: CallStatus::Ringing,
        direction: Direction::Incoming,
        source: "+15550100".into(),
        destination: "+15550199".into(),
        route: "default".into(),
        ingress: "rtp".into(),
        at: Millis::now(),
    }
}

/// Quantile `q` of a histogram of microseconds, in milliseconds.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// One keep-alive HTTP/1.1 connection sending every GET with one
/// authentication header; returns each response's status (the body is read
/// and dropped).
pub struct Http {
    r: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    auth: String,
}

impl Http {
    /// Connects to `addr`; `auth` is the header line (`x-access-key: ...`).
    pub async fn connect(addr: &str, auth: &str) -> Res<Http> {
        let sock = tokio::net::TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let (r, w) = sock.into_split();
        Ok(Http {
            r: tokio::io::BufReader::new(r),
            w,
            auth: auth.to_owned(),
        })
    }

    /// `GET path`, its status.
    pub async fn get(&mut self, path: &str) -> Res<u16> {
        Ok(self.fetch(path).await?.0)
    }

    /// `GET path`, its status and body.
    pub async fn fetch(&mut self, path: &str) -> Res<(u16, Vec<u8>)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let req = format!("GET {path} HTTP/1.1\r\nhost: bench\r\n{}\r\n\r\n", self.auth);
        self.w.write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.r.read_line(&mut line).await?;
        let status: u16 = line.split_whitespace().nth(1).ok_or("no status")?.parse()?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// One connection's share of an open-loop schedule: requests `first`,
/// `first + step`, ... below `total`, request `i` due at `start + i / rate`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// When request 0 is due.
    pub start: std::time::Instant,
    /// Requests per second, all connections together.
    pub rate: u64,
    /// Requests, all connections together.
    pub total: u64,
    /// This connection's first request.
    pub first: u64,
    /// Requests between two of this connection's (the connection count).
    pub step: u64,
}

/// tokio's timer resolution, and a little.
const TIMER_TICK: std::time::Duration = std::time::Duration::from_micros(1100);

/// Sends `GET path(i)` on `http` for each of `schedule`'s requests at its
/// time and tells `done` its status (`None` when the connection failed)
/// and latency in microseconds. Latency counts from the due time, so a
/// request held back by a slow previous one counts its wait; but tokio's
/// timer wakes up to a millisecond late, so a request that slept counts
/// from its wake-up when that came within the timer's tick (no server made
/// it late).
pub async fn open_loop(
    http: &mut Http,
    schedule: Schedule,
    path: impl Fn(u64) -> String,
    mut done: impl FnMut(Option<u16>, u64),
) {
    use std::time::{Duration, Instant};
    let mut i = schedule.first;
    while i < schedule.total {
        let due = schedule.start + Duration::from_nanos(i * 1_000_000_000 / schedule.rate.max(1));
        let slept = Instant::now() < due;
        tokio::time::sleep_until(due.into()).await;
        let woke = Instant::now();
        let from = if slept && woke.duration_since(due) < TIMER_TICK {
            woke
        } else {
            due
        };
        let status = http.get(&path(i)).await.ok();
        done(status, (from.elapsed().as_micros() as u64).max(1));
        i += schedule.step.max(1);
    }
}
