//! Media and control in one process, as `voxbridge serve` runs them: a real
//! AudioSocket call with a bot becomes a call row that follows the state
//! machine, its events come out of the outbox on the in-process bus in
//! order, a bot transcript becomes a transcript row, and a hangup through
//! the REST API reaches the running call through media's command interface;
//! billing charges the call from its `call_hungup` event. Bots written for
//! Twilio, Telnyx and Plivo end their calls through the provider-compatible
//! API. A transcribe started and stopped through the API is stored and
//! published once, with its segments, in order.

mod common;
mod harness;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use harness::{
    billed_default_customer, one_listener, pipecat_msg, pipecat_next, pipecat_route, uuid, within, Caller,
    TestBot,
};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;
use voxbridge_control::config::ControlConfig;
use voxbridge_control::service::Control;
use voxbridge_media::MediaServer;
use voxbridge_proto::audiosocket::Frame;
use voxbridge_proto::envelope::EventEnvelope;
use voxbridge_proto::pipecat::{Kind, TranscriptionFrame};

/// The next event on the bus, past the bot link's reports (`bot_connected`).
async fn next_event(bus: &mut tokio::sync::broadcast::Receiver<Arc<EventEnvelope>>) -> Arc<EventEnvelope> {
    loop {
        let e = within("an event on the bus", bus.recv()).await.expect("bus open");
        if e.resource.kind != "bot_link" {
            return e;
        }
    }
}

/// A control sidecar on an embedded store in a fresh directory named
/// `name`, with the default customer billed: its config, the process, a
/// subscription to its bus, and the customer's access key and plan.
async fn control_in(
    name: &str,
) -> (
    ControlConfig,
    Control,
    tokio::sync::broadcast::Receiver<Arc<EventEnvelope>>,
    String,
    voxbridge_control::billing::RatePlan,
) {
    let dir = std::env::temp_dir().join(format!("voxbridge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ccfg = ControlConfig {
        recordings: voxbridge_control::config::RecordingFiles {
            dir: dir.join("recordings"),
            retention_days: 0,
        },
        data_dir: dir,
        ..ControlConfig::default()
    };
    let control = Control::start(&ccfg).await.expect("control starts");
    let bus = control.bus.subscribe();
    let (secret, plan) = billed_default_customer(&control.store).await;
    (ccfg, control, bus, secret, plan)
}

/// The media plane of `config` reporting to `control`, running: its first
/// AudioSocket address, the control API over its commands, its shutdown
/// switch and its task.
async fn media_for(
    control: &Control,
    config: voxbridge_media::Config,
) -> (
    std::net::SocketAddr,
    axum::Router,
    voxbridge_media::ShutdownHandle,
    tokio::task::JoinHandle<()>,
) {
    let server = MediaServer::bind(config, Arc::new(control.sink()))
        .await
        .expect("media binds");
    let addr = server.audiosocket_addrs()[0];
    let api = control.router(Arc::new(server.commands()));
    let shutdown = server.shutdown_handle();
    (addr, api, shutdown, tokio::spawn(server.run()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_flows_through_store_outbox_bus_and_api() {
    let (ccfg, control, mut bus, secret, plan) = control_in("e2e").await;

    let mut bot = TestBot::start().await;
    let config = one_listener(pipecat_route(&bot.url, 16000));
    let (addr, api, shutdown, media) = media_for(&control, config).await;

    let mut caller = Caller::connect(addr, uuid(42)).await;
    let call_id = "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a2a";
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start message");

    let e = next_event(&mut bus).await;
    assert_eq!(
        (e.event_type.as_str(), e.resource.id.as_str()),
        ("call_created", call_id)
    );
    assert_eq!(e.customer_id, "default");
    assert_eq!(e.resource.fields["status"], "ringing");
    assert_eq!(e.resource.fields["ingress"], "audiosocket");
    let e = next_event(&mut bus).await;
    assert_eq!(e.event_type, "call_progressing");

    link.send(pipecat_msg(Kind::Transcription(TranscriptionFrame {
        text: "I'd like to pay my bill".into(),
        user_id: "caller".into(),
        ..Default::default()
    })))
    .await;
    let e = next_event(&mut bus).await;
    assert_eq!(e.event_type, "transcript_created");
    assert_eq!(e.resource.fields["message"], "I'd like to pay my bill");
    assert_eq!(e.resource.fields["direction"], "in");
    assert_eq!(e.resource.fields["call_id"], call_id);

    // DTMF reaches the control plane: stored and published (rule: no media
    // event kind is dropped as "ignored").
    caller
        .send_raw(&[voxbridge_proto::audiosocket::kind::DTMF, 0, 1, b'7'])
        .await;
    let e = next_event(&mut bus).await;
    assert_eq!(e.event_type, "dtmf_received");
    assert_eq!(e.resource.kind, "dtmf");
    assert_eq!(e.resource.fields["digit"], "7");
    assert_eq!(e.resource.fields["call_id"], call_id);
    let digits = control.store.list_dtmfs("default", call_id).await.expect("dtmfs");
    assert_eq!(digits.iter().map(|d| d.digit.as_str()).collect::<Vec<_>>(), ["7"]);

    // This route names no speech recognizer: a transcribe is refused, and
    // nothing is stored.
    let (status, refused) = api_call(
        &api,
        &secret,
        "POST",
        &format!("/v1/calls/{call_id}/transcribes"),
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "not_transcribable");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("names no speech recognizer")),
        "{refused}"
    );

    let req = Request::builder()
        .method("POST")
        .uri(format!("/v1/calls/{call_id}/hangup"))
        .header("x-access-key", &secret)
        .body(Body::empty())
        .expect("request");
    let resp = api.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes()).expect("json");
    assert_eq!(body["status"], "terminating");

    // The running call hears the hangup.
    loop {
        match caller.next().await {
            Some(Frame::Hangup) | None => break,
            Some(_) => continue,
        }
    }
    let e = next_event(&mut bus).await;
    assert_eq!(e.event_type, "call_terminating");
    let e = next_event(&mut bus).await;
    assert_eq!(e.event_type, "call_hungup");
    assert_eq!(e.resource.fields["status"], "hangup");
    assert_eq!(e.resource.fields["hangup_cause"], "api_hangup");
    assert_eq!(e.resource.fields["hangup_by"], "local");
    assert_eq!(e.resource.fields["hangup_reason"], "normal");
    assert!(e.resource.fields["duration_ms"].as_i64().is_some());
    // Billing charged the answered time from the call_hungup event.
    let hungup_id = e.event_id.clone();
    let e = next_event(&mut bus).await;
    assert_eq!(e.event_type, "billing_record_created");
    assert_eq!(e.resource.fields["call_id"], call_id);
    assert_eq!(e.resource.fields["event_id"], hungup_id.as_str());
    let cost = e.resource.fields["cost_micros"].as_i64().expect("cost");
    let answered = e.resource.fields["answered_ms"].as_i64().expect("answered");
    assert_eq!(cost, plan.cost(plan.billable_seconds(answered)));
    let account = control.store.billing_account("default").await.expect("account");
    assert_eq!(account.balance_micros, 1_000_000 - cost);

    let stored = control
        .store
        .get_call("default", call_id)
        .await
        .expect("call row");
    assert_eq!(stored.status, voxbridge_control::state::CallStatus::Hangup);
    shutdown.shutdown();
    within("media to stop", media).await.expect("media task");
    within("control to stop", control.shutdown()).await;
    let reopened = voxbridge_control::store::Store::connect(&ccfg.store_url())
        .await
        .expect("reopen");
    assert_eq!(
        reopened.outbox_backlog().await.expect("backlog"),
        0,
        "every event was relayed"
    );
    let _ = std::fs::remove_dir_all(&ccfg.data_dir);
}

async fn api_call(
    api: &axum::Router,
    key: &str,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-access-key", key);
    let req = match body {
        Some(b) => builder
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request");
    let resp = api.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// The VoIPBIN transcription flow through the API: a call's route names a
/// recognizer speaking voxbridge's own protocol (not started by itself);
/// `POST /v1/calls/{id}/transcribes` starts it with the request's language, a second start is refused while
/// it runs, the caller's audio reaches the recognizer, its segments are
/// stored with the transcribe's id and published, and `.../stop` ends it:
/// the last segment comes, then `transcribe_completed`. Each lifecycle
/// event is published once, final segments between them (the interim one
/// is not stored), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcribe_started_and_stopped_by_the_api_is_saved_and_published_once() {
    use voxbridge_media::config::{Route, SttProtocol, Transcribe, TranscribeDirection};
    let (ccfg, control, mut bus, secret, _) = control_in("transcribes").await;
    let mut recognizer = harness::ScriptedRecognizer::start(false).await;
    let mut bot = TestBot::start().await;
    let route = Route {
        transcribe: Some(Transcribe {
            url: recognizer.url.clone(),
            protocol: SttProtocol::Voxbridge,
            key: Some("k-9".into()),
            language: "en-US".into(),
            directions: vec![TranscribeDirection::In],
            buffer_ms: 10_000,
            max_reconnects: 0,
            auto: false,
        }),
        ..pipecat_route(&bot.url, 16000)
    };
    let (addr, api, shutdown, media) = media_for(&control, one_listener(route)).await;

    let mut caller = Caller::connect(addr, uuid(43)).await;
    let call_id = "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a2b";
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start message");
    assert_eq!(next_event(&mut bus).await.event_type, "call_created");
    assert_eq!(next_event(&mut bus).await.event_type, "call_progressing");

    let start = format!("/v1/calls/{call_id}/transcribes");
    let (status, bad) = api_call(
        &api,
        &secret,
        "POST",
        &start,
        Some(serde_json::json!({"language": "en US"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, t) = api_call(
        &api,
        &secret,
        "POST",
        &start,
        Some(serde_json::json!({"language": "fr-CA"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{t}");
    assert_eq!(
        (&t["status"], &t["source"], &t["language"], &t["directions"]),
        (
            &"running".into(),
            &"recognizer".into(),
            &"fr-CA".into(),
            &"in".into()
        ),
        "{t}"
    );
    let transcribe_id = t["id"].as_str().expect("id").to_owned();
    let (status, again) = api_call(&api, &secret, "POST", &start, Some(serde_json::json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "transcribe_running");

    // A second and a half of the caller's speech: the recognizer hears it
    // at the bot's rate, in the language asked for.
    caller.send_audio(&harness::speech_8k(75)).await;
    let (auth, opening) = within("the recognizer to be opened", recognizer.opened.recv())
        .await
        .expect("opened");
    assert_eq!(auth, "Bearer k-9");
    assert_eq!(
        (
            &opening["type"],
            &opening["language"],
            &opening["sample_rate"],
            &opening["direction"],
            &opening["encoding"]
        ),
        (
            &"start".into(),
            &"fr-CA".into(),
            &16000.into(),
            &"in".into(),
            &"linear16".into()
        ),
        "{opening}"
    );
    assert_eq!(opening["transcribe_id"], transcribe_id.as_str());
    assert_eq!(opening["call_id"], call_id);
    let mut published = Vec::new();
    while published.len() < 2 {
        let e = next_event(&mut bus).await;
        published.push((e.event_type.clone(), e.resource.fields.clone()));
    }
    let (status, _) = api_call(&api, &secret, "POST", &format!("{start}/stop"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    while published.len() < 4 {
        let e = next_event(&mut bus).await;
        published.push((e.event_type.clone(), e.resource.fields.clone()));
    }
    let kinds: Vec<&str> = published.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "transcribe_started",
            "transcript_created",
            "transcript_created",
            "transcribe_completed"
        ]
    );
    assert_eq!(published[1].1["message"], "hello there");
    assert_eq!(published[2].1["message"], "goodbye now");
    for (_, fields) in &published[1..3] {
        assert_eq!(fields["transcribe_id"], transcribe_id.as_str());
        assert_eq!(fields["direction"], "in");
    }
    // Times in the call: the tap started after the call did, and the
    // recognizer's `start` is added to it.
    let first_ms = published[1].1["tm_transcript"].as_i64().expect("tm_transcript");
    let last_ms = published[2].1["tm_transcript"].as_i64().expect("tm_transcript");
    assert!(
        first_ms >= 250 && last_ms - first_ms == 1_250,
        "{first_ms} {last_ms}"
    );
    assert_eq!(published[3].1["status"], "completed");

    let (status, stored) = api_call(
        &api,
        &secret,
        "GET",
        &format!("/v1/transcribes/{transcribe_id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["status"], "completed");
    assert!(stored["tm_end"].is_string(), "{stored}");
    let (status, _) = api_call(&api, &secret, "POST", &format!("{start}/stop"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing runs any more");
    let (_, segments) = api_call(
        &api,
        &secret,
        "GET",
        &format!("/v1/transcripts?transcribe_id={transcribe_id}"),
        None,
    )
    .await;
    assert_eq!(segments["items"].as_array().map(Vec::len), Some(2), "{segments}");

    // A new transcribe may start once the first completed; the call's end
    // completes it.
    let (status, second) = api_call(
        &api,
        &secret,
        "POST",
        &start,
        Some(serde_json::json!({"directions": "in"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second["language"], "en-US", "the route's");
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    let mut after = Vec::new();
    while !after.contains(&"call_hungup".to_owned()) || !after.contains(&"transcribe_completed".to_owned()) {
        after.push(next_event(&mut bus).await.event_type.clone());
    }
    assert_eq!(
        after.iter().filter(|k| *k == "transcribe_started").count(),
        1,
        "{after:?}"
    );
    assert_eq!(
        after.iter().filter(|k| *k == "transcribe_completed").count(),
        1,
        "{after:?}"
    );
    let (_, listed) = api_call(
        &api,
        &secret,
        "GET",
        &format!("/v1/transcribes?call_id={call_id}"),
        None,
    )
    .await;
    let statuses: Vec<&str> = listed["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, ["completed", "completed"], "{listed}");
    let (status, gone) = api_call(&api, &secret, "POST", &start, Some(serde_json::json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{gone}");
    assert_eq!(gone["error"]["code"], "not_live");

    shutdown.shutdown();
    within("media to stop", media).await.expect("media task");
    within("control to stop", control.shutdown()).await;
    let _ = std::fs::remove_dir_all(&ccfg.data_dir);
}

/// Sends 8 kHz speech as Asterisk does, a 20 ms frame every 20 ms (the
/// call's two directions then run with one clock, as in a real call).
async fn send_paced(caller: &mut Caller, pcm: &[i16]) {
    let mut clock = tokio::time::interval(std::time::Duration::from_millis(20));
    for frame in pcm.chunks(160) {
        clock.tick().await;
        caller.send_audio(frame).await;
    }
}

/// Audio samples the bot has heard until `samples` more came.
async fn bot_hears(link: &mut harness::BotConn, samples: usize) {
    let mut heard = 0;
    while heard < samples {
        if let Some(Kind::Audio(a)) = pipecat_next(link).await {
            heard += a.audio.len() / 2;
        }
    }
}

/// The best correlation of `expected` with `got` from an offset below
/// `max_lag` on (over what they share, at least nine tenths of
/// `expected`), and that offset.
fn best_match(got: &[i16], expected: &[i16], max_lag: usize) -> (f64, usize) {
    (0..max_lag)
        .filter(|&lag| (got.len().saturating_sub(lag)) * 10 >= expected.len() * 9)
        .map(|lag| (common::correlation(&got[lag..], expected), lag))
        .fold((f64::MIN, 0), |best, c| if c.0 > best.0 { c } else { best })
}

/// A call recorded through the API: `POST /v1/calls/{id}/recordings`
/// starts it (a second start is refused), `.../pause` and `.../resume`
/// bracket what the caller says meanwhile, `.../stop` completes the file;
/// `recording_started`, `_paused`, `_resumed` and `_finished` are published
/// once each, in order. The file is what the call carried: sox reads it as
/// 16 kHz stereo; its left channel is the caller's speech (correlation
/// with what the caller sent, silence where it was paused), its right
/// channel what the caller heard (correlation with the frames the caller
/// received, the bot's tone among them). `GET /v1/recordings/{id}` serves
/// exactly the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_through_the_api_holds_both_sides_of_the_call_and_its_pause() {
    let (ccfg, control, mut bus, secret, _) = control_in("recordings").await;
    let mut bot = TestBot::start().await;
    let mut config = harness::one_listener(pipecat_route(&bot.url, 16000));
    config.recording.dir = ccfg.recordings.dir.clone();
    let (addr, api, shutdown, media) = media_for(&control, config).await;

    let mut caller = Caller::connect(addr, uuid(44)).await;
    let call_id = "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a2c";
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start message");
    assert_eq!(next_event(&mut bus).await.event_type, "call_created");
    assert_eq!(next_event(&mut bus).await.event_type, "call_progressing");

    let rec = format!("/v1/calls/{call_id}/recordings");
    let (status, r) = api_call(&api, &secret, "POST", &rec, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    assert_eq!(
        (&r["status"], &r["rate"]),
        (&"recording".into(), &16000.into()),
        "{r}"
    );
    let id = r["id"].as_str().expect("id").to_owned();
    let (status, again) = api_call(&api, &secret, "POST", &rec, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "recording_running");

    // The caller says one thing, the bot answers with a tone; the caller
    // says a second thing while the recording is paused, a third after.
    let speech = harness::speech_8k(125);
    let (said, paused_part, after) = (&speech[..8000], &speech[8000..12000], &speech[12000..]);
    send_paced(&mut caller, said).await;
    bot_hears(&mut link, 16000).await;
    let tone: Vec<i16> = (0..16000)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 600.0 * f64::from(i) / 16000.0).sin()) as i16)
        .collect();
    for chunk in tone.chunks(640) {
        link.send(harness::pipecat_audio(chunk, 16000)).await;
    }
    let (status, r) = api_call(&api, &secret, "POST", &format!("{rec}/pause"), None).await;
    assert_eq!(
        (status, &r["status"]),
        (StatusCode::ACCEPTED, &"paused".into()),
        "{r}"
    );
    send_paced(&mut caller, paused_part).await;
    bot_hears(&mut link, 8000).await;
    let (status, r) = api_call(&api, &secret, "POST", &format!("{rec}/resume"), None).await;
    assert_eq!(
        (status, &r["status"]),
        (StatusCode::ACCEPTED, &"recording".into()),
        "{r}"
    );
    send_paced(&mut caller, after).await;
    bot_hears(&mut link, 16000).await;
    // What the caller heard from the call's start until the tone has
    // played and a few quiet frames followed it.
    let (mut heard, mut toned, mut quiet_after) = (Vec::new(), false, 0);
    while !toned || quiet_after < 10 {
        let pcm = caller.next_audio().await;
        if pcm.iter().any(|s| s.abs() > 1000) {
            toned = true;
            quiet_after = 0;
        } else if toned {
            quiet_after += 1;
        }
        heard.extend(pcm);
    }
    let (status, _) = api_call(&api, &secret, "POST", &format!("{rec}/stop"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut published = Vec::new();
    while published
        .last()
        .map(|(k, _): &(String, serde_json::Map<String, serde_json::Value>)| k.as_str())
        != Some("recording_finished")
    {
        let e = next_event(&mut bus).await;
        published.push((e.event_type.clone(), e.resource.fields.clone()));
    }
    let kinds: Vec<&str> = published.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "recording_started",
            "recording_paused",
            "recording_resumed",
            "recording_finished"
        ]
    );
    let finished = &published[3].1;
    assert_eq!(
        (&finished["status"], &finished["end_reason"]),
        (&"completed".into(), &"stopped".into())
    );
    let (status, _) = api_call(&api, &secret, "POST", &format!("{rec}/stop"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing runs any more");

    // The file: what the API serves is what is on disk, and sox reads it.
    let path = ccfg.recordings.dir.join(format!("{id}.wav"));
    let file = std::fs::read(&path).expect("the recording's file");
    assert_eq!(finished["bytes"].as_u64(), Some(file.len() as u64));
    let frames = (file.len() as u64 - 44) / 4;
    assert_eq!(finished["duration_ms"].as_u64(), Some(frames * 1000 / 16000));
    let resp = api
        .clone()
        .oneshot(
            Request::get(format!("/v1/recordings/{id}"))
                .header("x-access-key", &secret)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    let served = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(served == file, "the API serves the file as it is");
    let sox = |flag: &str| {
        let out = std::process::Command::new("sox")
            .args(["--i", flag])
            .arg(&path)
            .output()
            .expect("sox runs (the README's test command installs it)");
        assert!(out.status.success(), "sox reads the file: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!((sox("-c").as_str(), sox("-r").as_str()), ("2", "16000"));

    // Left: the caller's speech, silence where paused. Right: what the
    // caller heard. Both at 16 kHz; taken at 8 kHz to compare.
    let samples: Vec<i16> = file[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let left: Vec<i16> = samples.iter().step_by(4).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(4).copied().collect();
    let mut expected = said.to_vec();
    expected.extend(std::iter::repeat_n(0, paused_part.len()));
    expected.extend_from_slice(after);
    let (corr, lag) = best_match(&left, &expected, 200);
    assert!(
        corr > 0.9,
        "left channel vs the caller's speech: {corr:.3} at {lag}"
    );
    let pause = &left[lag + said.len() + 400..lag + said.len() + paused_part.len() - 400];
    assert!(pause.iter().all(|s| s.abs() < 64), "the paused part is silent");
    let onset = |x: &[i16]| x.iter().position(|s| s.abs() > 4000).expect("the tone");
    let (in_file, at_caller) = (onset(&right), onset(&heard));
    assert!(
        at_caller >= 40 && heard.len() >= at_caller + 4000,
        "{at_caller} of {}",
        heard.len()
    );
    let (corr, _) = best_match(
        &right[in_file.saturating_sub(40)..],
        &heard[at_caller - 40..at_caller + 4000],
        80,
    );
    assert!(corr > 0.9, "right channel vs what the caller heard: {corr:.3}");

    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    shutdown.shutdown();
    within("media to stop", media).await.expect("media task");
    within("control to stop", control.shutdown()).await;
    let _ = std::fs::remove_dir_all(&ccfg.data_dir);
}

/// A bot written for Twilio, Telnyx or Plivo ends its call the way it
/// would with the provider: a real pipecat bot (tests/interop/pipecat_hangup.py:
/// FastAPI WebSocket endpoint, pipecat's runner parsing voxbridge's opening,
/// the provider's serializer with `auto_hang_up` on and the tenant's account
/// id and access key as credentials, a pipeline over pipecat's WebSocket
/// transport) ends its pipeline; the serializer's hang-up request reaches
/// voxbridge's REST API and each call ends with cause `api_hangup`. A Genesys AudioHook bot (pipecat's
/// serializer, which has no REST hang-up) ends its call with `disconnect`
/// over the link: cause `bot_hangup`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecat_bots_hang_up_through_the_provider_compatible_api() {
    use voxbridge_media::config::{AudioSocketListener, BotProtocolKind, Route, TwilioEncoding};
    let (ccfg, control, mut bus, secret, _) = control_in("hangups").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the API");
    let api_url = format!("http://{}", listener.local_addr().expect("addr"));

    let dialects = [
        BotProtocolKind::Twilio,
        BotProtocolKind::Telnyx,
        BotProtocolKind::Plivo,
        BotProtocolKind::Genesys,
    ];
    let (mut bot, port, lines) = common::spawn_listening(
        &common::interop_python(),
        "pipecat_hangup.py",
        &[
            api_url.as_str(),
            "default",
            secret.as_str(),
            &dialects.len().to_string(),
        ],
    );

    let mut config = voxbridge_media::Config {
        metrics_listen: None,
        audiosocket: Vec::new(),
        ..Default::default()
    };
    for kind in dialects {
        let route = Route {
            url: if kind == BotProtocolKind::Genesys {
                format!("ws://127.0.0.1:{port}/genesys")
            } else {
                format!("ws://127.0.0.1:{port}/ws")
            },
            protocol: kind,
            twilio_encoding: Some(TwilioEncoding::Mulaw),
            sample_rate: 8000,
            ..Route::default()
        };
        config.routes.insert(kind.name().into(), route);
        config.audiosocket.push(AudioSocketListener {
            listen: "127.0.0.1:0".parse().expect("addr"),
            route: kind.name().into(),
        });
    }
    let server = MediaServer::bind(config, Arc::new(control.sink()))
        .await
        .expect("media binds");
    let addrs = server.audiosocket_addrs();
    let api = control.router(Arc::new(server.commands()));
    tokio::spawn(async move { axum::serve(listener, api).await });
    let shutdown = server.shutdown_handle();
    let media = tokio::spawn(server.run());

    for (n, kind) in dialects.into_iter().enumerate() {
        let mut caller = Caller::connect(addrs[n], uuid(60 + n as u8)).await;
        // Talk until the bot's hang-up ends the call.
        let speech = harness::speech_8k(1);
        within("the bot's hang-up to end the call", async {
            loop {
                caller.send_audio(&speech).await;
                match caller.next().await {
                    Some(Frame::Hangup) | None => break,
                    Some(_) => {}
                }
            }
        })
        .await;
        let call_id = format!("5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a{:02x}", 60 + n);
        let hungup = loop {
            let e = next_event(&mut bus).await;
            if e.event_type == "call_hungup" && e.resource.id == call_id {
                break e;
            }
        };
        // Genesys bots hang up over the link (AudioHook's `disconnect`).
        let cause = if kind == BotProtocolKind::Genesys {
            "bot_hangup"
        } else {
            "api_hangup"
        };
        assert_eq!(hungup.resource.fields["hangup_cause"], cause, "{kind:?}");
        let row = control
            .store
            .get_call("default", &call_id)
            .await
            .expect("call row");
        assert_eq!(
            row.status,
            voxbridge_control::state::CallStatus::Hangup,
            "{kind:?}"
        );
    }
    let out = bot.wait().expect("the bot ends");
    let said: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        out.success(),
        "the bot saw every link close after its hang-up: {said:?}"
    );
    let hung: Vec<&str> = said.iter().filter_map(|l| l.strip_prefix("HUNG ")).collect();
    assert_eq!(hung.len(), 4, "{said:?}");
    assert!(
        hung[0].starts_with("twilio POST /2010-04-01/Accounts/default/Calls/")
            && hung[0].ends_with(".json 200"),
        "{hung:?}"
    );
    assert!(
        hung[1].starts_with("telnyx POST /v2/calls/") && hung[1].ends_with("/actions/hangup 200"),
        "{hung:?}"
    );
    assert!(
        hung[2].starts_with("plivo DELETE /v1/Account/default/Call/") && hung[2].ends_with("/ 204"),
        "{hung:?}"
    );
    assert_eq!(hung[3], "genesys disconnect - -", "{hung:?}");
    let mut ended: Vec<&str> = said.iter().filter_map(|l| l.strip_prefix("ENDED ")).collect();
    ended.sort_unstable();
    assert_eq!(
        ended,
        ["genesys", "plivo", "telnyx", "twilio"],
        "every pipeline ended with its EndFrame: {said:?}"
    );
    shutdown.shutdown();
    within("media to stop", media).await.expect("media task");
    within("control to stop", control.shutdown()).await;
    let _ = std::fs::remove_dir_all(&ccfg.data_dir);
}

/// A call through control `name` on the route `route_for` makes of the
/// bot's URL, whose caller says half a second of quiet, 400 ms of loud
/// noise (speech to the detectors; a steady tone would be a voicemail's
/// beep), then `quiet_ms` of quiet (all at once; the call counts frames).
struct OneBurst {
    control: Control,
    bus: tokio::sync::broadcast::Receiver<Arc<EventEnvelope>>,
    call_id: String,
    caller: Caller,
    shutdown: voxbridge_media::ShutdownHandle,
    media: tokio::task::JoinHandle<()>,
    _link: harness::BotConn,
}

impl OneBurst {
    async fn start(
        name: &str,
        route_for: impl FnOnce(&str) -> voxbridge_media::config::Route,
        call: u8,
        quiet_ms: usize,
    ) -> OneBurst {
        let (_ccfg, control, bus, _secret, _plan) = control_in(name).await;
        let mut bot = TestBot::start().await;
        let (addr, _api, shutdown, media) = media_for(&control, one_listener(route_for(&bot.url))).await;
        let mut caller = Caller::connect(addr, uuid(call)).await;
        let call_id = format!("5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a{call:02x}");
        let mut link = bot.accept().await;
        pipecat_next(&mut link).await.expect("start message");
        let mut seed = 7u32;
        let voice: Vec<i16> = (0..3200)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (8000.0 * ((seed >> 16) as f32 / 32768.0 - 1.0)) as i16
            })
            .collect();
        caller.send_audio(&vec![0i16; 4000]).await;
        caller.send_audio(&voice).await;
        caller.send_audio(&vec![0i16; quiet_ms * 8]).await;
        OneBurst {
            control,
            bus,
            call_id,
            caller,
            shutdown,
            media,
            _link: link,
        }
    }

    async fn end(mut self) {
        self.caller.send_raw(&[0x00, 0x00, 0x00]).await;
        self.shutdown.shutdown();
        self.media.await.expect("media task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_speech_reaches_the_bus_as_it_starts_and_ends() {
    use voxbridge_media::config::{Route, TranscribeDirection, Vad};
    let route = |bot: &str| Route {
        vad: Some(Vad {
            directions: vec![TranscribeDirection::In],
            ..Vad::default()
        }),
        ..pipecat_route(bot, 8000)
    };
    let mut call = OneBurst::start("vad", route, 45, 1000).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = next_event(&mut call.bus).await;
        if e.resource.kind == "call_speech" {
            assert_eq!(e.resource.id, call.call_id);
            assert_eq!(e.resource.fields["call_id"], call.call_id);
            assert_eq!(e.resource.fields["direction"], "in");
            assert!(
                e.resource.fields["tm_event"].is_string(),
                "{:?}",
                e.resource.fields
            );
            let offset = e.resource.fields["offset_ms"].as_u64().expect("offset_ms");
            seen.push((e.event_type.clone(), offset));
        }
    }
    assert_eq!(
        seen.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["speech_started", "speech_ended"]
    );
    assert!(seen[0].1 <= seen[1].1, "{seen:?}");
    call.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_answered_reaches_the_bus_and_the_call_record() {
    use voxbridge_media::config::{AmdCalls, AnsweringMachine, Route};
    let route = |bot: &str| Route {
        amd: Some(AnsweringMachine {
            calls: AmdCalls::All,
            ..AnsweringMachine::default()
        }),
        ..pipecat_route(bot, 8000)
    };
    // A short "hello" then the silence of someone waiting: a person,
    // decided 800 ms into the silence.
    let mut call = OneBurst::start("amd", route, 46, 2000).await;
    let e = loop {
        let e = next_event(&mut call.bus).await;
        if e.event_type == "call_answered_by" {
            break e;
        }
    };
    assert_eq!(
        (e.resource.kind.as_str(), e.resource.id.as_str()),
        ("call_amd", call.call_id.as_str())
    );
    assert_eq!(e.resource.fields["answered_by"], "human");
    assert_eq!(e.resource.fields["cause"], "human");
    assert_eq!(e.resource.fields["after_ms"], 500 + 400 + 800);
    let record = call
        .control
        .store
        .call_by_id(&call.call_id)
        .await
        .expect("the call");
    assert_eq!(
        (record.answered_by.as_deref(), record.amd_cause.as_deref()),
        (Some("human"), Some("human"))
    );
    call.end().await;
}
