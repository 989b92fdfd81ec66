//! `voxbridge demo`: the whole system in one process on the embedded
//! defaults. It starts the control sidecar (SQLite store in `--out`, the
//! in-process bus, the REST API on a free port), the media plane (an
//! AudioSocket listener on loopback), the built-in bot (`bot echo` in demo
//! mode, over pipecat Protobuf on a loopback WebSocket) and the simulated
//! callee, then runs a small campaign whose callees answer, are busy
//! (then answer on the retry), never answer or fail. Answered callees speak
//! real speech (espeak-ng, built in) over AudioSocket.
//!
//! It prints the live event stream and a summary (calls, durations, cost,
//! caller->bot latency p99), writes `transcript.txt` and `call.wav`
//! (stereo: left what the callee said, right what it heard back) of one
//! answered call, and ends with
//! `RESULT calls=<n> answered=<n> events=<n> p99_added_ms=<..>`.

use crate::bot::{self, Mode, Probe};
use anyhow::{bail, Context as _};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use voxbridge_control::campaign::targets_in;
use voxbridge_control::campaign::{CampaignSpec, Retry, RetryPolicy};
use voxbridge_control::config::ControlConfig;
use voxbridge_control::model::Actor;
use voxbridge_control::originate::simulated::{CalleeProbe, SimulatedCallee, SimulatedConfig};
use voxbridge_control::originate::{OriginateConfig, Originator};
use voxbridge_control::service::Control;
use voxbridge_media::config::{AudioSocketListener, Route};
use voxbridge_media::{Config, MediaServer};

/// `voxbridge demo` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory for the store (`data/`, replaced), the transcript and the WAV.
    #[arg(long, default_value = "voxbridge-demo")]
    pub out: PathBuf,
    /// Targets in the campaign (outcomes cycle: answer, busy then answer,
    /// answer, no answer, fail).
    #[arg(long, default_value_t = 10)]
    pub targets: usize,
}

/// Frame timings of one call, from both ends.
#[derive(Default)]
struct CallTrace {
    sent_at: Vec<Instant>,
    bot_at: Vec<Instant>,
    start: Option<Instant>,
    sent: Vec<(Duration, Vec<u8>)>,
    heard: Vec<(Duration, Vec<u8>)>,
}

/// Sees both ends: the callee's frames and their arrival at the bot.
#[derive(Default)]
struct Tracer {
    calls: Mutex<HashMap<String, CallTrace>>,
    handles: Mutex<Vec<String>>,
}

impl Tracer {
    fn with<R>(&self, call_id: &str, f: impl FnOnce(&mut CallTrace) -> R) -> R {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        f(calls.entry(call_id.to_owned()).or_default())
    }
}

impl CalleeProbe for Tracer {
    fn sent(&self, call_id: &str, _seq: u64, pcm: &[u8], at: Instant) {
        self.with(call_id, |t| {
            let start = *t.start.get_or_insert(at);
            t.sent_at.push(at);
            t.sent.push((at - start, pcm.to_vec()));
        });
    }

    fn heard(&self, call_id: &str, pcm: &[u8], at: Instant) {
        self.with(call_id, |t| {
            let start = *t.start.get_or_insert(at);
            t.heard.push((at - start, pcm.to_vec()));
        });
    }

    fn ended(&self, _call_id: &str) {}
}

impl Probe for Tracer {
    fn started(&self, call_id: &str) -> Option<usize> {
        let mut h = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        h.push(call_id.to_owned());
        Some(h.len() - 1)
    }

    fn audio(&self, handle: usize, _seq: u64, at: Instant) {
        let id = self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(handle)
            .cloned();
        if let Some(id) = id {
            self.with(&id, |t| t.bot_at.push(at));
        }
    }
}

/// Runs the demo; exits non-zero if the campaign does not complete.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(demo(args))
}

fn p99(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1]
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    // Only the demo's own store is replaced: `--out` may name a directory
    // that holds other things.
    let _ = std::fs::remove_dir_all(args.out.join("data"));
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let tracer = Arc::new(Tracer::default());

    // The bot.
    let bot_listener = TcpListener::bind("127.0.0.1:0").await?;
    let bot_url = format!("ws://{}", bot_listener.local_addr()?);
    tokio::spawn(bot::serve(
        bot_listener,
        Mode::Demo,
        Duration::ZERO,
        Some(tracer.clone() as Arc<dyn Probe>),
    ));

    // Control, with the simulated callee as originator.
    let sim_cfg = SimulatedConfig {
        answer_delay_ms: 400,
        linger_ms: 1200,
        ..SimulatedConfig::default()
    };
    let callee = Arc::new(SimulatedCallee::new(&sim_cfg)?);
    callee.set_probe(tracer.clone());
    let ccfg = ControlConfig {
        data_dir: args.out.join("data"),
        listen: "127.0.0.1:0".parse()?,
        originate: OriginateConfig {
            ring_timeout_ms: 3000,
            ..OriginateConfig::default()
        },
        ..ControlConfig::default()
    };
    let control = Control::start_with(&ccfg, Some(callee.clone() as Arc<dyn Originator>))
        .await
        .context("control sidecar")?;
    let mut bus = control.bus.subscribe();

    // Media: one AudioSocket listener whose route is the bot.
    let mut config = Config::default();
    config.routes.insert(
        "default".into(),
        Route {
            url: bot_url.clone(),
            sample_rate: 16000,
            ..Route::default()
        },
    );
    config.audiosocket = vec![AudioSocketListener {
        listen: "127.0.0.1:0".parse()?,
        route: "default".into(),
    }];
    config.metrics_listen = None;
    let server = MediaServer::bind(config, Arc::new(control.sink())).await?;
    control.set_media_routes(&server.audiosocket_routes());
    let media_addrs: Vec<String> = server.audiosocket_addrs().iter().map(|a| a.to_string()).collect();
    let media_addrs = media_addrs.join(",");
    let api = TcpListener::bind(ccfg.listen).await?;
    let api_addr = api.local_addr()?;
    let router = control.router(Arc::new(server.commands()));
    tokio::spawn(crate::listener::serve(
        api,
        router,
        crate::listener::HttpLimits::default(),
    ));
    let shutdown = server.shutdown_handle();
    let media = tokio::spawn(server.run());
    println!(
        "voxbridge demo: control API http://{api_addr}/v1 (store {}), AudioSocket {}, bot {bot_url}",
        ccfg.store_url(),
        media_addrs
    );

    // Billing: 0.06 per minute, per second.
    let admin = Actor { id: "demo".into() };
    control
        .store
        .set_rate_plan(
            &admin,
            "default",
            &voxbridge_control::billing::RatePlan {
                price_per_minute_micros: 60_000,
                increment_first_s: 1,
                increment_next_s: 1,
                min_charge_micros: 0,
                low_balance_threshold_micros: 0,
            },
        )
        .await?;
    control.store.credit(&admin, "default", 10_000_000).await?;

    // The campaign.
    let spec = CampaignSpec {
        name: "demo".into(),
        route: None,
        source: Some("+15550000".into()),
        max_concurrent: Some(4),
        calls_per_second: Some(2.0),
        window: None,
        timezone: None,
        retry: Some(RetryPolicy {
            busy: Retry {
                max_tries: 2,
                interval_s: 1,
            },
            no_answer: Retry {
                max_tries: 1,
                interval_s: 0,
            },
            failed: Retry {
                max_tries: 1,
                interval_s: 0,
            },
            ..RetryPolicy::default()
        }),
    };
    let campaign = control.store.create_campaign(&admin, "default", &spec).await?;
    let script = ["answer", "busy,answer", "answer", "no_answer", "fail"];
    let mut csv = String::from("destination,sim\n");
    for i in 0..args.targets.max(1) {
        csv.push_str(&format!("+1555010{i:04},\"{}\"\n", script[i % script.len()]));
    }
    let targets = targets_in::from_csv(csv.as_bytes(), "UTC").map_err(anyhow::Error::msg)?;
    control
        .store
        .add_targets(&admin, "default", &campaign.id, &targets)
        .await?;
    control
        .store
        .set_campaign_status(
            &admin,
            "default",
            &campaign.id,
            voxbridge_control::campaign::CampaignStatus::Running,
        )
        .await?;

    // The live event stream, until the campaign completes and every call is billed.
    let mut events = 0usize;
    let mut hungup = 0usize;
    let mut billed = 0usize;
    let mut completed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(100);
    while !(completed && billed >= hungup) {
        let e = match tokio::time::timeout_at(deadline, bus.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                events += n as usize;
                continue;
            }
            Ok(Err(_)) => bail!("event bus closed"),
            Err(_) => bail!("the campaign did not complete within 100 s"),
        };
        events += 1;
        let f = &e.resource.fields;
        let id: String = e.resource.id.chars().take(8).collect();
        let detail = match e.event_type.as_str() {
            "call_created" => format!("to {}", f["destination"].as_str().unwrap_or_default()),
            "call_hungup" => format!(
                "{} ({}), {} ms",
                f["hangup_reason"].as_str().unwrap_or_default(),
                f["hangup_cause"].as_str().unwrap_or_default(),
                f["duration_ms"]
            ),
            "transcript_created" => format!(
                "{}: {}",
                f["direction"].as_str().unwrap_or_default(),
                f["message"]
            ),
            "billing_record_created" => format!("cost {} micros", f["cost_micros"]),
            "campaign_progress" | "campaign_completed" | "campaign_started" => format!(
                "dialed={} answered={} failed={} active={} remaining={}",
                f["dialed"], f["answered"], f["failed"], f["active"], f["remaining"]
            ),
            _ => String::new(),
        };
        println!(
            "{:>7.2}s {:<24} {id} {detail}",
            t0.elapsed().as_secs_f64(),
            e.event_type
        );
        match e.event_type.as_str() {
            "call_hungup" => hungup += 1,
            "billing_record_created" => billed += 1,
            "campaign_completed" => completed = true,
            _ => {}
        }
    }

    // Summary from the store.
    let stats = control.store.campaign_stats("default", &campaign.id).await?;
    let c = &stats.campaign;
    let calls = control
        .store
        .list_calls(
            "default",
            &voxbridge_control::model::CallFilter::default(),
            voxbridge_control::model::PageReq::new(Some(100), None)?,
        )
        .await?
        .items;
    let answered_calls: Vec<_> = calls.iter().filter(|c| c.tm_progressing.is_some()).collect();
    let durations: Vec<i64> = answered_calls.iter().filter_map(|c| c.duration_ms).collect();
    let records = control
        .store
        .list_billing_records(
            "default",
            None,
            voxbridge_control::model::PageReq::new(Some(100), None)?,
        )
        .await?
        .items;
    let cost: i64 = records.iter().map(|r| r.cost_micros).sum();
    let latencies: Vec<f64> = {
        let traces = tracer.calls.lock().unwrap_or_else(|e| e.into_inner());
        traces
            .values()
            .flat_map(|t| {
                t.sent_at
                    .iter()
                    .zip(&t.bot_at)
                    .map(|(s, b)| b.saturating_duration_since(*s).as_secs_f64() * 1000.0)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let p99_ms = p99(latencies.clone());

    // One answered call's transcript and audio.
    if let Some(call) = answered_calls.first() {
        let transcripts = control
            .store
            .list_transcripts(
                "default",
                None,
                voxbridge_control::model::PageReq::new(Some(100), None)?,
            )
            .await?;
        let mut lines: Vec<String> = transcripts
            .items
            .iter()
            .filter(|t| t.call_id == call.id)
            .rev()
            .map(|t| {
                let who = if t.direction == "in" { "caller" } else { "bot" };
                format!("[{:>6} ms] {who}: {}", t.tm_transcript, t.message)
            })
            .collect();
        lines.insert(0, format!("call {} to {}", call.id, call.destination));
        std::fs::write(args.out.join("transcript.txt"), lines.join("\n") + "\n")?;
        let traces = tracer.calls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = traces.get(&call.id) {
            std::fs::write(args.out.join("call.wav"), stereo_wav(&t.sent, &t.heard, 8000))?;
        }
    }

    println!("\nsummary");
    println!(
        "  campaign {}: {} targets, status {}, results {:?}",
        c.id,
        stats.targets.values().sum::<i64>(),
        c.status,
        stats.results
    );
    println!(
        "  calls {} (answered {}, unanswered {}), answered durations avg {} ms max {} ms",
        calls.len(),
        answered_calls.len(),
        calls.len() - answered_calls.len(),
        durations.iter().sum::<i64>() / (durations.len().max(1) as i64),
        durations.iter().max().copied().unwrap_or(0)
    );
    println!(
        "  cost {:.4} (billed {} calls at 0.06/min, per second)",
        cost as f64 / 1e6,
        records.len()
    );
    println!(
        "  caller->bot latency over {} frames: p99 {p99_ms:.2} ms (callee socket write to bot WebSocket read)",
        latencies.len()
    );
    println!("  events seen on the bus: {events}");
    println!(
        "  wrote {} and {}",
        args.out.join("transcript.txt").display(),
        args.out.join("call.wav").display()
    );
    shutdown.shutdown();
    let _ = media.await;
    control.shutdown().await;
    println!(
        "RESULT calls={} answered={} events={events} p99_added_ms={p99_ms:.2}",
        calls.len(),
        answered_calls.len()
    );
    Ok(())
}

/// A 16-bit stereo WAV: left `a`, right `b`, each frame placed at its offset.
fn stereo_wav(a: &[(Duration, Vec<u8>)], b: &[(Duration, Vec<u8>)], rate: u32) -> Vec<u8> {
    let end = |v: &[(Duration, Vec<u8>)]| {
        v.last().map_or(0, |(at, pcm)| {
            (at.as_millis() as usize * rate as usize / 1000) + pcm.len() / 2
        })
    };
    let samples = end(a).max(end(b));
    let mut ch = [vec![0i16; samples], vec![0i16; samples]];
    for (c, frames) in [a, b].iter().enumerate() {
        let mut next = 0usize;
        for (at, pcm) in frames.iter() {
            // Frames are paced at 20 ms; place each after the previous one
            // unless it arrived later than that.
            let at = (at.as_millis() as usize * rate as usize / 1000).max(next);
            for (i, s) in pcm.chunks_exact(2).enumerate() {
                if let Some(slot) = ch[c].get_mut(at + i) {
                    *slot = i16::from_le_bytes([s[0], s[1]]);
                }
            }
            next = at + pcm.len() / 2;
        }
    }
    let data_len = (samples * 4) as u32;
    let mut out = Vec::with_capacity(44 + samples * 4);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&2u16.to_le_bytes()); // channels
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 4).to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for (l, r) in ch[0].iter().zip(&ch[1]) {
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(&r.to_le_bytes());
    }
    out
}
