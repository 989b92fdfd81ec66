//! Media and control apart (`voxbridge serve --role media` and `--role
//! control`), linked only by a real Kafka-protocol broker (tansu, started by
//! the test): a real AudioSocket call's events reach the control store and
//! come out of its outbox; a hangup through the REST API reaches the running
//! call as a Kafka command; while no control process runs, a second call's
//! events wait in Kafka and are applied, in order and without replaying the
//! first call's, by the next control process; a message that is not a call
//! event is counted and skipped. The outbox goes to Kafka as well: the
//! events this test reads come back from Kafka into each process's bus, and
//! billing charges from its consumer group.

mod harness;

#[path = "../control/tests/common/broker.rs"]
mod broker;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use broker::Broker;
use harness::{
    billed_default_customer, one_listener, pipecat_msg, pipecat_next, pipecat_route, uuid, Caller, TestBot,
};
use http_body_util::BodyExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tower::ServiceExt;
use voxbridge_control::config::{ControlConfig, EventsTo, KafkaSection};
use voxbridge_control::link::media_side::MediaSide;
use voxbridge_control::service::Control;
use voxbridge_media::MediaServer;
use voxbridge_proto::envelope::EventEnvelope;
use voxbridge_proto::pipecat::{Kind, TranscriptionFrame};

/// A consumer group's first join and Kafka round trips take longer than
/// the harness's in-process guard.
async fn soon<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The next event from the control outbox, past the bot link's reports
/// (`bot_connected`, on a topic of their own, in no fixed order with the rest).
async fn next_event(bus: &mut broadcast::Receiver<Arc<EventEnvelope>>) -> Arc<EventEnvelope> {
    loop {
        let e = soon("an event from the control outbox", bus.recv())
            .await
            .expect("bus open");
        if e.resource.kind != "bot_link" {
            return e;
        }
    }
}

/// Starts a control process's worth of sidecar, linked to media over Kafka.
async fn control(cfg: &ControlConfig) -> (Control, axum::Router) {
    let mut control = Control::start(cfg).await.expect("control starts");
    let commands = control.link_media_over_kafka(cfg).await.expect("link to media");
    let api = control.router(commands);
    soon("the bus fed from Kafka", control.events_ready()).await;
    (control, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_and_control_apart_exchange_events_and_commands_over_kafka() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("voxbridge_control=info,warn")
        .with_test_writer()
        .try_init();
    let broker = Broker::new();
    let dir = std::env::temp_dir().join(format!("voxbridge-split-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ccfg = ControlConfig {
        data_dir: dir.clone(),
        kafka: KafkaSection {
            brokers: broker.addr(),
            partitions: 2,
            ..KafkaSection::default()
        },
        // The outbox goes to Kafka too; the bus this test reads is fed back
        // from Kafka, and billing reads call_hungup in its consumer group.
        events: EventsTo::Kafka,
        ..ControlConfig::default()
    };

    // The control process.
    let (control1, api) = control(&ccfg).await;
    let mut bus = control1.bus.subscribe();
    let (secret, _) = billed_default_customer(&control1.store).await;

    // The media process: its only tie to control is the Kafka link.
    let mut bot = TestBot::start().await;
    let config = one_listener(pipecat_route(&bot.url, 16000));
    let mut link = MediaSide::new(ccfg.link_config()).expect("media link");
    let server = MediaServer::bind(config, link.sink.clone())
        .await
        .expect("media binds");
    link.listen(Arc::new(server.commands())).await;
    soon("the media command listener", link.ready()).await;
    let addr = server.audiosocket_addrs()[0];
    let shutdown = server.shutdown_handle();
    let media = tokio::spawn(server.run());

    // Call 1: created and answered in media, stored and published by control.
    let call1 = "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a2a";
    let mut caller = Caller::connect(addr, uuid(42)).await;
    let mut bot1 = soon("the bot link", bot.accept()).await;
    pipecat_next(&mut bot1).await.expect("start message");
    let e = next_event(&mut bus).await;
    assert_eq!(
        (e.event_type.as_str(), e.resource.id.as_str()),
        ("call_created", call1)
    );
    assert_eq!(e.resource.fields["ingress"], "audiosocket");
    assert_eq!(next_event(&mut bus).await.event_type, "call_progressing");
    bot1.send(pipecat_msg(Kind::Transcription(TranscriptionFrame {
        text: "is anybody there".into(),
        user_id: "caller".into(),
        ..Default::default()
    })))
    .await;
    let e = next_event(&mut bus).await;
    assert_eq!(e.event_type, "transcript_created");
    assert_eq!(e.resource.fields["message"], "is anybody there");

    // The API's hangup travels to media as a Kafka command.
    let req = Request::builder()
        .method("POST")
        .uri(format!("/v1/calls/{call1}/hangup"))
        .header("x-access-key", &secret)
        .body(Body::empty())
        .expect("request");
    let resp = api.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes()).expect("json");
    assert_eq!(body["status"], "terminating");
    assert!(
        soon("the hangup at the caller", caller.until_hangup()).await,
        "the caller got a hangup frame"
    );
    assert_eq!(next_event(&mut bus).await.event_type, "call_terminating");
    let e = next_event(&mut bus).await;
    assert_eq!(e.event_type, "call_hungup");
    assert_eq!(e.resource.fields["hangup_cause"], "api_hangup");
    assert_eq!(e.resource.fields["hangup_by"], "local");
    // Billing's consumer group charged it.
    let b = next_event(&mut bus).await;
    assert_eq!(b.event_type, "billing_record_created");
    assert_eq!(b.resource.fields["event_id"], e.event_id.as_str());
    let text = control1.metrics().render();
    assert!(
        text.contains("voxbridge_link_messages_total{kind=\"command\",result=\"sent\"} 1"),
        "{text}"
    );
    assert_eq!(
        link.stats
            .commands_applied
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // No control process runs now.
    soon("control to stop", control1.shutdown()).await;
    drop(bus);

    // Something that is not a call event, on call 2's partition (same key),
    // ahead of its events.
    let call2 = "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a2b";
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(&ccfg.link_config().events_topic())
                .key(call2)
                .payload("{\"type\":\"teleported\"}"),
            Duration::from_secs(10),
        )
        .await
        .expect("garbage sent");

    // Call 2 starts and ends while control is away.
    let mut caller2 = Caller::connect(addr, uuid(43)).await;
    let mut bot2 = soon("the bot link", bot.accept()).await;
    pipecat_next(&mut bot2).await.expect("start message");
    caller2.send_raw(&[0x00, 0x00, 0x00]).await;
    drop(caller2);

    // The next control process picks up where the first left off.
    let (control2, _api) = control(&ccfg).await;
    let mut bus = control2.bus.subscribe();
    // Call events (one topic, keyed by call) arrive in order; other topics
    // (the billing record) may interleave.
    let mut call_events = Vec::new();
    loop {
        let e = next_event(&mut bus).await;
        if e.resource.kind != "call" {
            continue;
        }
        assert_eq!(
            e.resource.id, call2,
            "call 1's events were not replayed as new ones"
        );
        call_events.push(e.event_type.clone());
        if e.event_type == "call_hungup" {
            assert_eq!(e.resource.fields["hangup_cause"], "caller_hangup");
            break;
        }
    }
    assert_eq!(call_events, ["call_created", "call_progressing", "call_hungup"]);
    let text = control2.metrics().render();
    assert!(
        text.contains("voxbridge_link_messages_total{kind=\"event\",result=\"malformed\"} 1"),
        "{text}"
    );
    let stored = control2
        .store
        .get_call("default", call1)
        .await
        .expect("call 1 row");
    assert_eq!(stored.status, voxbridge_control::state::CallStatus::Hangup);
    let transcripts = control2
        .store
        .list_transcripts(
            "default",
            None,
            voxbridge_control::model::PageReq::new(Some(10), None).expect("page"),
        )
        .await
        .expect("transcripts");
    assert_eq!(transcripts.items.len(), 1, "one segment, however often delivered");

    shutdown.shutdown();
    soon("media to stop", media).await.expect("media task");
    soon("the link to flush", link.stop()).await;
    soon("control to stop", control2.shutdown()).await;
    let _ = std::fs::remove_dir_all(&dir);
}
