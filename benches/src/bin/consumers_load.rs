//! Load tool for `benches/consumers.sh`: two of the event stream's
//! consumers, on a real PostgreSQL (a fresh schema per part).
//!
//! 1. Webhooks: `--events` calls are written first, each fanning out to
//!    `--endpoints` endpoints (a delivery row per endpoint, in the call's
//!    transaction). Then the delivery worker starts and drains the backlog
//!    into a local receiver, recording every attempt in PostgreSQL. The
//!    receiver checks each `X-Voxbridge-Signature` with its own HMAC code
//!    (not voxbridge's) and records the event id. Throughput is deliveries
//!    divided by the time from the worker's start until it has stopped after
//!    the last one (so every attempt row is committed); `lost` counts the
//!    (endpoint, event) pairs the receiver never got with a valid signature.
//! 2. WebSocket fan-out: `--subscribers` clients connect to `GET /v1/ws`
//!    with an access key and subscribe to `customer_id:bench:call:*`; calls
//!    are then written at `--ws-rate` per second for `--seconds`. Latency is
//!    open-loop, from the write's scheduled time (before its commit) to a
//!    client parsing the event, for every client and event; `lost` counts
//!    (client, event) pairs that never arrived.
//!
//! The sidecar (store, outbox relay, bus, live hub, API) runs on its own
//! two-thread runtime; the receiver, the clients and the writers on this
//! process's other one. Both share the machine's cores.
//!
//! Prints `LOAD webhooks_per_s=.. webhook_lost=.. ws_fanout_p99_ms=.. subscribers=..`
//! (benches/consumers.sh turns it into the RESULT line).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use voxbridge_benches::control_setup::{call, fresh_schema, ms, Res};
use voxbridge_control::config::ControlConfig;
use voxbridge_control::model::Actor;
use voxbridge_control::service::Control;
use voxbridge_control::store::webhooks::EndpointSpec;
use voxbridge_control::store::{NewCustomer, Store};
use voxbridge_control::webhooks::ssrf::Allow;
use voxbridge_control::webhooks::worker::{self, WebhookStats};
use voxbridge_control::webhooks::WebhookConfig;

struct Args {
    pg: String,
    events: u64,
    endpoints: usize,
    subscribers: usize,
    ws_rate: u64,
    seconds: u64,
}

fn args() -> Res<Args> {
    let mut a = Args {
        pg: "postgres://postgres@127.0.0.1:5432/test".into(),
        events: 5_000,
        endpoints: 4,
        subscribers: 1_000,
        ws_rate: 20,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--pg" => a.pg = v,
            "--events" => a.events = v.parse()?,
            "--endpoints" => a.endpoints = v.parse()?,
            "--subscribers" => a.subscribers = v.parse()?,
            "--ws-rate" => a.ws_rate = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            _ => return Err(format!("unknown argument {k}").into()),
        }
    }
    if a.endpoints == 0 || a.events == 0 || a.subscribers == 0 || a.ws_rate == 0 {
        return Err("--events, --endpoints, --subscribers and --ws-rate must be positive".into());
    }
    Ok(a)
}

/// The sidecar's own runtime, as in `voxbridge serve` (two workers).
fn server_runtime() -> Res<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sidecar")
        .enable_all()
        .build()?)
}

const CUSTOMER: &str = "bench";

fn actor() -> Actor {
    Actor { id: "bench".into() }
}

async fn bench_customer(store: &Store) -> Res<()> {
    store
        .create_customer(
            &actor(),
            NewCustomer {
                id: Some(CUSTOMER.into()),
                name: "Bench".into(),
                email: None,
            },
        )
        .await?;
    Ok(())
}

/// Writes `n` calls (`<prefix>-<i>`) with 8 concurrent writers.
async fn write_calls(store: &Store, prefix: &str, n: u64) -> Res<()> {
    let writers = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, prefix) = (store.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                store
                    .create_call(&call(format!("{prefix}-{i}"), CUSTOMER))
                    .await?;
                i += writers;
            }
            Ok::<_, voxbridge_control::ControlError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// What the webhook receiver saw.
#[derive(Default)]
struct Received {
    /// Endpoint secrets, by the endpoint's number in the URL.
    secrets: OnceLock<Vec<String>>,
    /// (endpoint number, event id) with a valid signature.
    good: Mutex<HashSet<(usize, String)>>,
    bad_signature: AtomicU64,
    duplicates: AtomicU64,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Checks `X-Voxbridge-Signature` independently: `sha256=` and the hex of
/// HMAC-SHA256(secret, timestamp + "." + body), one per secret in use.
fn signed_by(secret: &str, h: &HeaderMap, body: &[u8]) -> bool {
    let (Some(ts), Some(sig)) = (
        header(h, "x-voxbridge-timestamp"),
        header(h, "x-voxbridge-signature"),
    ) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    sig.split(',')
        .any(|s| s.strip_prefix("sha256=") == Some(hex.as_str()))
}

async fn hook(State(r): State<Arc<Received>>, Path(n): Path<usize>, h: HeaderMap, body: Bytes) -> StatusCode {
    let secret = r.secrets.get().and_then(|s| s.get(n));
    let id = header(&h, "webhook-id").unwrap_or_default().to_string();
    if !secret.is_some_and(|s| signed_by(s, &h, &body)) || id.is_empty() {
        r.bad_signature.fetch_add(1, Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let fresh = r.good.lock().map(|mut g| g.insert((n, id))).unwrap_or(false);
    if !fresh {
        r.duplicates.fetch_add(1, Relaxed);
    }
    StatusCode::NO_CONTENT
}

/// Part 1; returns (deliveries per second, lost).
async fn webhooks(a: &Args) -> Res<(f64, u64)> {
    let rt = server_runtime()?;
    let url = fresh_schema(&a.pg).await?;
    let store = {
        let url = url.clone();
        rt.spawn(async move { Store::connect(&url).await }).await??
    };
    bench_customer(&store).await?;

    let received = Arc::new(Received::default());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hook/{n}", axum::routing::post(hook))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut secrets = Vec::new();
    for n in 0..a.endpoints {
        let spec = EndpointSpec {
            url: format!("http://{addr}/hook/{n}"),
            event_types: vec!["call_created".into()],
            enabled: Some(true),
            max_concurrency: Some(16),
            timeout_ms: Some(10_000),
        };
        let (_, secret) = store.create_webhook(&actor(), CUSTOMER, &spec).await?;
        secrets.push(secret);
    }
    let _ = received.secrets.set(secrets);
    let t = Instant::now();
    write_calls(&store, "wh", a.events).await?;
    let expected = a.events * a.endpoints as u64;
    println!(
        "webhooks: {} calls x {} endpoints = {expected} deliveries queued in {:.1}s",
        a.events,
        a.endpoints,
        t.elapsed().as_secs_f64()
    );

    let stats = Arc::new(WebhookStats::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let task = rt.spawn(worker::run(
        store.clone(),
        Allow(vec!["127.0.0.0/8".parse()?]),
        WebhookConfig::default().backoff(),
        stats.clone(),
        stop_rx,
    ));
    // Progress is read every 10 ms; the figure counts to the worker's end.
    let mut last = (0, Instant::now());
    while stats.delivered.load(Relaxed) < expected {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let d = stats.delivered.load(Relaxed);
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            println!("webhooks: no progress for 30 s at {d}/{expected}");
            break;
        }
    }
    stop.send_replace(true);
    task.await?;
    let elapsed = start.elapsed().as_secs_f64();

    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'), \
             (SELECT count(*) FROM webhook_attempts)",
            &[],
        )
        .await?;
    let (rows_delivered, attempt_rows): (i64, i64) = (row.get(0), row.get(1));
    let good = received.good.lock().map(|g| g.len() as u64).unwrap_or(0);
    let lost = expected.saturating_sub(good);
    let per_s = stats.delivered.load(Relaxed) as f64 / elapsed;
    println!(
        "webhooks: {} delivered in {elapsed:.2}s = {per_s:.0}/s; receiver: {good} distinct valid, {} duplicates, {} bad signatures; \
         store: {rows_delivered} deliveries delivered, {attempt_rows} attempt rows; failed attempts {}",
        stats.delivered.load(Relaxed),
        received.duplicates.load(Relaxed),
        received.bad_signature.load(Relaxed),
        stats.failed_attempts.load(Relaxed),
    );
    rt.shutdown_background();
    Ok((per_s, lost))
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects one client and waits for its subscription to be confirmed.
async fn subscriber(url: String) -> Res<Ws> {
    // A small read buffer: tungstenite zero-fills all of it before every
    // read (128 KiB by default), which would make the clients, sharing the
    // cores with the server, the bottleneck.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let sub = format!(r#"{{"type":"subscribe","topics":["customer_id:{CUSTOMER}:call:*"]}}"#);
    ws.send(Message::Text(sub.into())).await?;
    while let Some(m) = ws.next().await {
        if let Message::Text(t) = m? {
            let v: serde_json::Value = serde_json::from_str(t.as_str())?;
            if v["type"] == "subscribed" {
                return Ok(ws);
            }
            return Err(format!("subscribe answered {t}").into());
        }
    }
    Err("closed before subscribing".into())
}

/// `<i>` of the resource id `ws-<i>` in an event's JSON. Only a resource
/// id can hold that value (event ids are UUIDs).
fn call_number(json: &str) -> Option<u64> {
    const KEY: &str = "\"id\":\"ws-";
    let rest = &json[json.find(KEY)? + KEY.len()..];
    rest[..rest.find('"')?].parse().ok()
}

/// Reads events until `total` arrived or the stream ends; latency of call
/// `ws-<i>` is from its scheduled write time `start + i / rate`.
async fn read_events(mut ws: Ws, start: Instant, rate: u64, total: u64) -> Res<(Histogram<u64>, u64)> {
    let mut h = Histogram::<u64>::new(3)?;
    let mut got = 0;
    while got < total {
        let Some(m) = ws.next().await else { break };
        let Message::Text(t) = m? else { continue };
        let now = Instant::now();
        // The call id by a substring search, not a JSON parse: these
        // clients share the two cores with the server, and the figure is
        // meant to be the server's.
        let Some(i) = call_number(t.as_str()) else {
            continue;
        };
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        h.record(now.saturating_duration_since(due).as_micros().max(1) as u64)?;
        got += 1;
    }
    Ok((h, got))
}

/// Part 2; returns (p99 ms, lost).
async fn ws_fanout(a: &Args) -> Res<(f64, u64)> {
    let rt = server_runtime()?;
    let cfg = ControlConfig {
        store: Some(fresh_schema(&a.pg).await?.into()),
        default_customer: CUSTOMER.into(),
        webhooks: WebhookConfig {
            enabled: false,
            ..WebhookConfig::default()
        },
        ..ControlConfig::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (store, _control) = rt
        .spawn(async move {
            let control = Control::start(&cfg).await?;
            let app = control.router(Arc::new(voxbridge_control::api::NoMedia));
            let listener = TcpListener::from_std(listener)?;
            tokio::spawn(async move { axum::serve(listener, app).await });
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((control.store.clone(), control))
        })
        .await??;
    let (_, key) = store.create_access_key(&actor(), CUSTOMER, "ws", None).await?;
    let url = format!("ws://{addr}/v1/ws?accesskey={key}");
    let t = Instant::now();
    let clients: Vec<Res<Ws>> =
        futures_util::stream::iter((0..a.subscribers).map(|_| subscriber(url.clone())))
            .buffer_unordered(50)
            .collect()
            .await;
    let clients = clients.into_iter().collect::<Res<Vec<Ws>>>()?;
    println!(
        "ws: {} clients subscribed in {:.1}s",
        clients.len(),
        t.elapsed().as_secs_f64()
    );

    let total = a.ws_rate * a.seconds;
    let start = Instant::now() + Duration::from_millis(200);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(read_events(ws, start, a.ws_rate, total)))
        .collect();
    let writers = 4;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, rate) = (store.clone(), a.ws_rate);
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                tokio::time::sleep_until(due.into()).await;
                store.create_call(&call(format!("ws-{i}"), CUSTOMER)).await?;
                i += writers;
            }
            Ok::<_, voxbridge_control::ControlError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut all = Histogram::<u64>::new(3)?;
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for r in readers {
        match tokio::time::timeout_at(deadline, r).await {
            Ok(Ok(Ok((h, n)))) => {
                all.add(&h)?;
                got += n;
            }
            Ok(Ok(Err(e))) => println!("ws: a client failed: {e}"),
            Ok(Err(e)) => println!("ws: a client panicked: {e}"),
            Err(_) => println!("ws: a client timed out"),
        }
    }
    let expected = total * a.subscribers as u64;
    println!(
        "ws: {got}/{expected} deliveries ({total} events x {} subscribers), write->client p50 {:.2} ms, \
         p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        a.subscribers,
        ms(&all, 0.5),
        ms(&all, 0.99),
        ms(&all, 0.999),
        all.max() as f64 / 1000.0
    );
    rt.shutdown_background();
    Ok((ms(&all, 0.99), expected.saturating_sub(got)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let a = args()?;
    let (per_s, lost) = webhooks(&a).await?;
    let (p99, ws_lost) = ws_fanout(&a).await?;
    println!(
        "LOAD webhooks_per_s={per_s:.0} webhook_lost={lost} ws_fanout_p99_ms={p99:.2} subscribers={} ws_lost={ws_lost}",
        a.subscribers
    );
    Ok(())
}
