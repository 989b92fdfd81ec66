//! Load tool for `benches/control.sh`: the control sidecar's two latency
//! goals, measured open-loop (each request or event has a scheduled time;
//! latency counts from it, so a slow server cannot hide its queue).
//!
//! 1. API: a `voxbridge serve` on PostgreSQL (a fresh schema seeded with
//!    calls) gets `GET /v1/calls?limit=20` and `GET /v1/calls/{id}` at
//!    `--rate` requests/s over keep-alive connections.
//! 2. Outbox: calls are created at `--rate` events/s in this process; the
//!    relay publishes them to Kafka; an rdkafka consumer reads them. Latency
//!    is from the write's commit returning to the consumer receiving it.
//!
//! Prints `LOAD api_p99_ms=.. api_rps=.. outbox_p99_ms=.. events_per_s=..
//! payload_bytes=.. record_headers=..` (the mean event size and whether the
//! relay sent record headers, `--record-headers 1`, so the peer can send the
//! same messages)
//! (benches/control.sh adds the peer figures and prints the RESULT line).

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use std::collections::HashMap;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voxbridge_benches::control_setup::{call, fresh_schema, ms, open_loop, Http, Res, Schedule};
use voxbridge_control::model::Actor;
use voxbridge_control::relay::kafka::{KafkaConfig, KafkaPublisher};
use voxbridge_control::relay::{self, RelayStats};
use voxbridge_control::store::Store;

struct Args {
    pg: String,
    kafka: String,
    bin: String,
    rate: u64,
    seconds: u64,
    conns: usize,
    /// The relay's `record_headers` (0 or 1).
    record_headers: bool,
}

fn args() -> Res<Args> {
    let mut a = Args {
        pg: "postgres://postgres@127.0.0.1:5432/test".into(),
        kafka: String::new(),
        bin: "target/release/voxbridge".into(),
        rate: 1000,
        seconds: 10,
        conns: 16,
        record_headers: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--pg" => a.pg = v,
            "--kafka" => a.kafka = v,
            "--bin" => a.bin = v,
            "--rate" => a.rate = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            "--conns" => a.conns = v.parse()?,
            "--record-headers" => a.record_headers = v == "1",
            _ => return Err(format!("unknown argument {k}").into()),
        }
    }
    Ok(a)
}

async fn api(a: &Args) -> Res<(f64, f64, f64)> {
    let url = fresh_schema(&a.pg).await?;
    let store = Store::connect(&url).await?;
    store.ensure_customer("bench", "Bench").await?;
    let n_calls = 2000;
    for i in 0..n_calls {
        store.create_call(&call(format!("call-{i}"), "bench")).await?;
    }
    let (_, key) = store
        .create_access_key(&Actor { id: "bench".into() }, "bench", "bench", None)
        .await?;
    let mut child = std::process::Command::new(&a.bin)
        .arg("serve")
        .env("VOXBRIDGE_STORE_URL", &url)
        .env("VOXBRIDGE_CONTROL_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_AUDIOSOCKET_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_METRICS_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_WORKERS", "1")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("control="))
        .ok_or(format!("no control= in {line:?}"))?
        .to_string();
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let errors = Arc::new(Mutex::new(0u64));
    let total = a.rate * a.seconds;
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..a.conns {
        let mut http = Http::connect(&addr, &format!("x-access-key: {key}")).await?;
        let (hist, errors) = (hist.clone(), errors.clone());
        let schedule = Schedule {
            start,
            rate: a.rate,
            total,
            first: c as u64,
            step: a.conns as u64,
        };
        tasks.push(tokio::spawn(async move {
            let path = |i: u64| {
                if i % 2 == 0 {
                    "/v1/calls?limit=20".to_string()
                } else {
                    format!("/v1/calls/call-{}", (i * 7919) % n_calls)
                }
            };
            open_loop(&mut http, schedule, path, |status, us| {
                if status == Some(200) {
                    let _ = hist.lock().map(|mut h| h.record(us));
                } else {
                    let _ = errors.lock().map(|mut e| *e += 1);
                }
            })
            .await;
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let h = hist.lock().map_err(|_| "lock")?;
    let errs = *errors.lock().map_err(|_| "lock")?;
    println!(
        "api: {} requests in {elapsed:.1}s, {errs} errors, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        h.len(),
        ms(&h, 0.5),
        ms(&h, 0.99),
        ms(&h, 0.999),
        h.max() as f64 / 1000.0
    );
    if errs > 0 {
        return Err(format!("{errs} API requests failed").into());
    }
    Ok((ms(&h, 0.99), h.len() as f64 / elapsed, elapsed))
}

/// The outbox figures: p99 ms, events/s, and the mean payload size in bytes
/// (the peer in `benches/control.sh` sends messages of that size).
async fn outbox(a: &Args) -> Res<(f64, f64, f64)> {
    let store = Store::connect(&fresh_schema(&a.pg).await?).await?;
    let config = KafkaConfig {
        brokers: a.kafka.clone(),
        record_headers: a.record_headers,
        ..KafkaConfig::default()
    };
    let publisher = KafkaPublisher::new(config.clone())?;
    publisher.ensure_topics().await?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &a.kafka)
        .set("group.id", format!("bench-{}", uuid::Uuid::new_v4().simple()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.min.bytes", "1")
        .create()?;
    consumer.subscribe(&[&config.topic("call")])?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let stats = Arc::new(RelayStats::default());
    let relay = tokio::spawn(relay::run(store.clone(), Arc::new(publisher), stats, stop_rx));
    // Warm up: one event through, so the consumer has its partitions.
    store.create_call(&call("warmup".into(), "bench")).await?;
    let mut stream = consumer.stream();
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await?
        .ok_or("consumer ended")??;

    let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = a.rate * a.seconds;
    let writers = 8u64;
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, committed, rate) = (store.clone(), committed.clone(), a.rate);
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < total {
                tokio::time::sleep_until((start + Duration::from_nanos(i * 1_000_000_000 / rate)).into())
                    .await;
                let id = format!("ev-{i}");
                if store.create_call(&call(id.clone(), "bench")).await.is_ok() {
                    let _ = committed.lock().map(|mut m| m.insert(id, Instant::now()));
                }
                i += writers;
            }
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let mut got = 0u64;
    let mut payload_bytes = 0u64;
    let deadline = start + Duration::from_secs(a.seconds + 30);
    while got < total && Instant::now() < deadline {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await else {
            continue;
        };
        let now = Instant::now();
        let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        if let Some(t) = committed.lock().map_err(|_| "lock")?.remove(key) {
            hist.record(now.saturating_duration_since(t).as_micros().max(1) as u64)?;
            got += 1;
            payload_bytes += m.payload().map_or(0, <[u8]>::len) as u64;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        t.await?;
    }
    stop.send_replace(true);
    relay.await?;
    println!(
        "outbox: {got}/{total} events in {elapsed:.1}s, commit->consumer p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(&hist, 0.5),
        ms(&hist, 0.99),
        ms(&hist, 0.999),
        hist.max() as f64 / 1000.0
    );
    if got < total {
        return Err(format!("only {got} of {total} events arrived").into());
    }
    Ok((
        ms(&hist, 0.99),
        got as f64 / elapsed,
        payload_bytes as f64 / got.max(1) as f64,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let a = args()?;
    let (api_p99, api_rps, _) = api(&a).await?;
    let (outbox_p99, eps, payload) = outbox(&a).await?;
    println!(
        "LOAD api_p99_ms={api_p99:.2} api_rps={api_rps:.0} outbox_p99_ms={outbox_p99:.2} events_per_s={eps:.0} payload_bytes={payload:.0} record_headers={}",
        u8::from(a.record_headers)
    );
    Ok(())
}
