//! Load tool for `benches/cache.sh` (issue 27): the API's read cache
//! against no cache, in one run, on the same data and the same traffic.
//!
//! A fresh PostgreSQL schema is seeded with 2,000 calls of one customer and
//! an access key. Then, for each cache setting (`off`, `redis`, `memory`),
//! `--nodes` daemons (`voxbridge serve`, one tokio worker each, their own
//! node ids) run on that database and share `--rate` requests/s for
//! `--seconds`, open-loop (latency counts from each request's scheduled
//! time): half `GET /v1/calls/{id}` with the access key, a quarter the same
//! with a JWT (its customer's being active is the cached read), a quarter
//! `GET /v1/calls?limit=20` (a list: the key is cached, the list is not).
//!
//! `--rounds N` alternates the three settings N times and takes each
//! setting's median run. Per run it prints the latency (per kind too), the PostgreSQL statements per request
//! (from each node's `voxbridge_control_store_statements_total`) and the
//! share of cached reads that went to PostgreSQL (cache misses over cache
//! reads, each miss being one statement). Ends with
//! `LOAD api_p99_ms_off=.. api_p99_ms_redis=.. api_p99_ms_memory=..
//! p99_ratio_redis=.. p99_ratio_memory=.. pg_per_cached_read_redis=..
//! pg_per_cached_read_memory=.. statements_per_request_off=..
//! statements_per_request_redis=.. rps=.. nodes=.. loadgen_cpu_pct=..`.

use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voxbridge_benches::control_setup::{call, fresh_schema, ms, open_loop, Http, Res, Schedule};
use voxbridge_control::model::Actor;
use voxbridge_control::store::Store;

const JWT_SECRET: &str = "cache-bench-hs256-secret-0123456789";

struct Args {
    pg: String,
    redis: String,
    bin: String,
    rate: u64,
    seconds: u64,
    nodes: usize,
    conns: usize,
    rounds: usize,
}

fn args() -> Res<Args> {
    let mut a = Args {
        pg: "postgres://postgres@127.0.0.1:5432/test".into(),
        redis: "redis://127.0.0.1:6379".into(),
        bin: "target/release/voxbridge".into(),
        rate: 2000,
        seconds: 20,
        nodes: 2,
        conns: 32,
        rounds: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--pg" => a.pg = v,
            "--redis" => a.redis = v,
            "--bin" => a.bin = v,
            "--rate" => a.rate = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            "--nodes" => a.nodes = v.parse()?,
            "--conns" => a.conns = v.parse()?,
            "--rounds" => a.rounds = v.parse()?,
            _ => return Err(format!("unknown argument {k}").into()),
        }
    }
    if a.nodes == 0 || a.conns < a.nodes || a.rounds == 0 {
        return Err("--nodes and --rounds must be at least 1 and --conns at least --nodes".into());
    }
    Ok(a)
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An HS256 JWT for `customer`, valid for an hour.
fn jwt(customer: &str) -> Res<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let head = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = base64url(format!(r#"{{"customer_id":"{customer}","exp":{exp}}}"#).as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(JWT_SECRET.as_bytes())?;
    mac.update(format!("{head}.{claims}").as_bytes());
    Ok(format!(
        "{head}.{claims}.{}",
        base64url(&mac.finalize().into_bytes())
    ))
}

/// One daemon: its process, API and metrics addresses.
struct Node {
    child: std::process::Child,
    api: String,
    metrics: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(a: &Args, url: &str, cache: &str, id: &str) -> Res<Node> {
    let mut cmd = std::process::Command::new(&a.bin);
    cmd.arg("serve")
        .env("VOXBRIDGE_STORE_URL", url)
        .env("VOXBRIDGE_CONTROL_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_AUDIOSOCKET_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_METRICS_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_WORKERS", "1")
        .env("VOXBRIDGE_NODE_ID", id)
        .env("VOXBRIDGE_JWT_HS256_SECRET", JWT_SECRET)
        .env("VOXBRIDGE_CACHE", cache)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped());
    if cache == "redis" {
        cmd.env("VOXBRIDGE_REDIS_URL", &a.redis);
    }
    let mut child = cmd.spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_owned)
            .ok_or(format!("no {name} in {line:?}"))
    };
    Ok(Node {
        api: field("control=")?,
        metrics: field("metrics=")?,
        child,
    })
}

/// The sum over `nodes` of the named counters (exact sample names).
async fn counters(nodes: &[Node], names: &[&str]) -> Res<Vec<f64>> {
    let mut sums = vec![0.0; names.len()];
    for n in nodes {
        let (_, body) = Http::connect(&n.metrics, "x-bench: 1")
            .await?
            .fetch("/metrics")
            .await?;
        for line in String::from_utf8_lossy(&body).lines() {
            for (i, name) in names.iter().enumerate() {
                if let Some(v) = line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')) {
                    sums[i] += v.trim().parse::<f64>()?;
                }
            }
        }
    }
    Ok(sums)
}

const STATEMENTS: &str = "voxbridge_control_store_statements_total";
const HITS: &str = "voxbridge_control_cache_reads_total{result=\"hit\"}";
const MISSES: &str = "voxbridge_control_cache_reads_total{result=\"miss\"}";

/// The run with the median p99 of `runs` (not empty).
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.p99.total_cmp(&b.p99));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

struct Run {
    p50: f64,
    p99: f64,
    requests: f64,
    statements_per_request: f64,
    pg_per_cached_read: f64,
    rps: f64,
}

async fn run(a: &Args, url: &str, cache: &str, key: &str, token: &str, calls: &[String]) -> Res<Run> {
    let nodes = (0..a.nodes)
        .map(|n| start_node(a, url, cache, &format!("bench-{cache}-{n}")))
        .collect::<Res<Vec<_>>>()?;
    // Warm-up: every call read once through each node (fills the caches;
    // the same for the uncached setting, whose pools and statements warm).
    for n in &nodes {
        let mut http = Http::connect(&n.api, &format!("x-access-key: {key}")).await?;
        for id in calls {
            http.get(&format!("/v1/calls/{id}")).await?;
        }
    }
    let before = counters(&nodes, &[STATEMENTS, HITS, MISSES]).await?;
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    // Per kind of request: a call by key, a list, a call by JWT.
    let kinds: Arc<[Mutex<Histogram<u64>>; 3]> = Arc::new([
        Mutex::new(Histogram::new(3)?),
        Mutex::new(Histogram::new(3)?),
        Mutex::new(Histogram::new(3)?),
    ]);
    let errors = Arc::new(Mutex::new(0u64));
    let total = a.rate * a.seconds;
    let start = Instant::now() + Duration::from_millis(200);
    let calls = Arc::new(calls.to_vec());
    let mut tasks = Vec::new();
    for c in 0..a.conns {
        let node = &nodes[c % nodes.len()];
        // Connections alternate between the key and the JWT (3 of 4 by key).
        let auth = if c % 4 == 3 {
            format!("authorization: Bearer {token}")
        } else {
            format!("x-access-key: {key}")
        };
        let mut http = Http::connect(&node.api, &auth).await?;
        let (hist, errors, calls, kinds) = (hist.clone(), errors.clone(), calls.clone(), kinds.clone());
        let kind = match c % 4 {
            2 => 1,
            3 => 2,
            _ => 0,
        };
        let schedule = Schedule {
            start,
            rate: a.rate,
            total,
            first: c as u64,
            step: a.conns as u64,
        };
        tasks.push(tokio::spawn(async move {
            // A third of the key's requests are lists.
            let path = |i: u64| {
                if c % 4 == 2 {
                    "/v1/calls?limit=20".to_string()
                } else {
                    format!("/v1/calls/{}", calls[((i * 7919) % calls.len() as u64) as usize])
                }
            };
            open_loop(&mut http, schedule, path, |status, us| {
                if status == Some(200) {
                    let _ = hist.lock().map(|mut h| h.record(us));
                    let _ = kinds[kind].lock().map(|mut h| h.record(us));
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
    let after = counters(&nodes, &[STATEMENTS, HITS, MISSES]).await?;
    drop(nodes);
    let h = hist.lock().map_err(|_| "lock")?;
    let errs = *errors.lock().map_err(|_| "lock")?;
    if errs > 0 {
        return Err(format!("cache={cache}: {errs} API requests failed").into());
    }
    let requests = h.len() as f64;
    let p99_of = |k: usize| kinds[k].lock().map(|h| ms(&h, 0.99)).unwrap_or(f64::NAN);
    println!(
        "cache={cache}: p99 by kind: call by key {:.2} ms, list {:.2} ms, call by JWT {:.2} ms",
        p99_of(0),
        p99_of(1),
        p99_of(2)
    );
    let statements = after[0] - before[0];
    let (hits, misses) = (after[1] - before[1], after[2] - before[2]);
    let r = Run {
        p50: ms(&h, 0.5),
        p99: ms(&h, 0.99),
        requests,
        statements_per_request: statements / requests.max(1.0),
        pg_per_cached_read: if hits + misses > 0.0 {
            misses / (hits + misses)
        } else {
            f64::NAN
        },
        rps: requests / elapsed,
    };
    println!(
        "cache={cache}: {} requests in {elapsed:.1}s on {} nodes ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; \
         PostgreSQL statements per request {:.2}; cache reads {} ({} hits), PostgreSQL per cached read {:.3}",
        r.requests,
        a.nodes,
        r.rps,
        r.p50,
        r.p99,
        ms(&h, 0.999),
        r.statements_per_request,
        hits + misses,
        hits,
        r.pg_per_cached_read
    );
    Ok(r)
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (clock ticks of 100 Hz).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let t = rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
            Some(t / 100.0)
        })
        .unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Res<()> {
    let a = args()?;
    let url = fresh_schema(&a.pg).await?;
    let store = Store::connect(&url).await?;
    store.ensure_customer("bench", "Bench").await?;
    // Ids of this run only: a Redis shared with earlier runs has none of them.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut calls = Vec::new();
    for i in 0..2000 {
        let id = format!("{}-{i}", &run_id[..8]);
        store.create_call(&call(id.clone(), "bench")).await?;
        calls.push(id);
    }
    let (_, key) = store
        .create_access_key(&Actor { id: "bench".into() }, "bench", "bench", None)
        .await?;
    let token = jwt("bench")?;
    let cpu0 = (cpu_seconds(), Instant::now());
    // `--rounds` alternations of the three settings; each setting's figures
    // are the median of its rounds (the VM's noise moves single runs).
    let mut rounds: [Vec<Run>; 3] = Default::default();
    for _ in 0..a.rounds {
        for (k, cache) in ["off", "redis", "memory"].iter().enumerate() {
            rounds[k].push(run(&a, &url, cache, &key, &token, &calls).await?);
        }
    }
    let [off, redis, memory] = rounds.map(median);
    let loadgen_cpu_pct = 100.0 * (cpu_seconds() - cpu0.0) / cpu0.1.elapsed().as_secs_f64();
    println!(
        "LOAD api_p99_ms_off={:.2} api_p99_ms_redis={:.2} api_p99_ms_memory={:.2} p99_ratio_redis={:.2} p99_ratio_memory={:.2} \
         pg_per_cached_read_redis={:.3} pg_per_cached_read_memory={:.3} statements_per_request_off={:.2} \
         statements_per_request_redis={:.2} statements_per_request_memory={:.2} api_p50_ms_off={:.2} api_p50_ms_redis={:.2} \
         rps={:.0} nodes={} loadgen_cpu_pct={loadgen_cpu_pct:.1}",
        off.p99,
        redis.p99,
        memory.p99,
        redis.p99 / off.p99,
        memory.p99 / off.p99,
        redis.pg_per_cached_read,
        memory.pg_per_cached_read,
        off.statements_per_request,
        redis.statements_per_request,
        memory.statements_per_request,
        off.p50,
        redis.p50,
        off.rps.min(redis.rps),
        a.nodes
    );
    Ok(())
}
