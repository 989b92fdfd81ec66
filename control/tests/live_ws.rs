//! `GET /v1/ws` over a real socket: a client sees its own customer's events
//! as the outbox relay publishes them and never another's, cannot subscribe
//! to another customer's topics, needs credentials to connect, and a client
//! that stops reading is closed with code 1008 and a reason instead of
//! growing the server's memory.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxbridge_control::config::ControlConfig;
use voxbridge_control::model::{Actor, NewCall};
use voxbridge_control::relay::bus::Bus;
use voxbridge_control::relay::Publisher;
use voxbridge_control::service::Control;
use voxbridge_control::state::{CallStatus, Direction};
use voxbridge_control::store::{NewCustomer, OutboxRow};
use voxbridge_control::time::Millis;
use voxbridge_proto::envelope::{EventEnvelope, Resource};

type Client = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn serve(app: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("ws://{addr}/v1/ws")
}

async fn connect(url: &str, key: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}?accesskey={key}"))
        .await
        .expect("WebSocket handshake");
    ws
}

async fn send(ws: &mut Client, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("send");
}

async fn next_json(ws: &mut Client) -> Value {
    loop {
        match within("a message", ws.next()).await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).expect("JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// A control sidecar on the embedded store in a fresh directory named `tag`.
async fn start_control(tag: &str) -> (Control, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let control = Control::start(&ControlConfig {
        data_dir: dir.clone(),
        ..ControlConfig::default()
    })
    .await
    .expect("control");
    (control, dir)
}

fn call(id: &str, customer: &str) -> NewCall {
    NewCall {
        id: id.into(),
        customer_id: customer.into(),
        status: CallStatus::Ringing,
        direction: Direction::Incoming,
        source: "100".into(),
        destination: "200".into(),
        route: "default".into(),
        ingress: "rtp".into(),
        at: Millis::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_their_own_events_and_only_theirs() {
    let (control, dir) = start_control("voxbridge-ws").await;
    let store = control.store.clone();
    let actor = Actor { id: "test".into() };
    for c in ["a", "b"] {
        store
            .create_customer(
                &actor,
                NewCustomer {
                    id: Some(c.into()),
                    name: c.into(),
                    email: None,
                },
            )
            .await
            .expect("customer");
    }
    let (_, key_a) = store
        .create_access_key(&actor, "a", "ws", None)
        .await
        .expect("key");
    let url = serve(control.router(Arc::new(voxbridge_control::api::NoMedia))).await;

    // No credentials: the upgrade is refused with the API's 401.
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }

    let mut ws = connect(&url, &key_a).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "topics": ["customer_id:b:call:*"]}),
    )
    .await;
    let r = next_json(&mut ws).await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("forbidden_topic"))
    );
    send(
        &mut ws,
        json!({"type": "subscribe", "topics": ["customer_id:b:call:b-1"]}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "forbidden_topic");
    send(
        &mut ws,
        json!({"type": "subscribe", "topics": ["customer_id:a:call:*"]}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "subscribed", "topics": ["customer_id:a:call:*"]})
    );
    send(&mut ws, json!({"type": "dance"})).await;
    assert_eq!(next_json(&mut ws).await["code"], "invalid_message");

    // b's call commits first: had it leaked, it would arrive first.
    store.create_call(&call("b-1", "b")).await.expect("b's call");
    store.create_call(&call("a-1", "a")).await.expect("a's call");
    let e = next_json(&mut ws).await;
    assert_eq!(e["event_type"], "call_created");
    assert_eq!(e["customer_id"], "a");
    assert_eq!(e["resource"]["id"], "a-1");
    EventEnvelope::parse(&e.to_string()).expect("the envelope as published");

    // Unsubscribed: a's next call does not arrive; a probe topic's does.
    send(
        &mut ws,
        json!({"type": "unsubscribe", "topics": ["customer_id:a:call:*"]}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
    send(
        &mut ws,
        json!({"type": "subscribe", "topics": ["customer_id:a:call:probe"]}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    store.create_call(&call("a-2", "a")).await.expect("a's call");
    store.create_call(&call("probe", "a")).await.expect("probe");
    assert_eq!(next_json(&mut ws).await["resource"]["id"], "probe");

    let metrics = control.metrics().render();
    assert!(metrics.contains("voxbridge_ws_connections 1"), "{metrics}");
    assert!(metrics.contains("voxbridge_ws_events_sent_total 2"), "{metrics}");
    drop(ws);
    control.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_not_buffered() {
    // A bus this test feeds directly, with large events, so that socket
    // buffers fill after a few hundred.
    let (control, dir) = start_control("voxbridge-ws-slow").await;
    let (_, key) = control
        .store
        .create_access_key(&Actor { id: "t".into() }, "default", "ws", None)
        .await
        .expect("key");
    let bus: Bus = control.bus.clone();
    let url = serve(control.router(Arc::new(voxbridge_control::api::NoMedia))).await;
    let mut ws = connect(&url, &key).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "topics": ["customer_id:default:call:*"]}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    let mut fields = serde_json::Map::new();
    fields.insert("padding".into(), "x".repeat(64 * 1024).into());
    let total = 3_000;
    let rows: Vec<OutboxRow> = (0..total)
        .map(|i| OutboxRow {
            seq: i,
            event: EventEnvelope {
                event_id: format!("e{i}"),
                event_type: "call_created".into(),
                timestamp: "2026-11-24T00:00:00Z".into(),
                customer_id: "default".into(),
                resource: Resource {
                    id: format!("c{i}"),
                    kind: "call".into(),
                    fields: fields.clone(),
                },
            },
        })
        .collect();
    // The client reads nothing while all of it is published.
    bus.publish(&rows).await.expect("published");

    let mut events = 0;
    let close = loop {
        match within("the server to close", ws.next()).await {
            Some(Ok(Message::Text(_))) => events += 1,
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected events then a close frame, got {other:?}"),
        }
    };
    println!("slow client: {events} of {total} events arrived before the close");
    let frame = close.expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Policy);
    assert!(frame.reason.starts_with("slow consumer"), "{}", frame.reason);
    assert!(
        events < total,
        "the server dropped what the client could not take ({events} of {total} arrived)"
    );
    let metrics = control.metrics().render();
    assert!(metrics.contains("voxbridge_ws_closed_slow_total 1"), "{metrics}");
    control.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads until the server's close frame; returns its code and reason.
async fn close_of(ws: &mut Client) -> (u16, String) {
    loop {
        match within("the server to close", ws.next()).await {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Rule: revoking a key, or deleting its customer, closes the live sockets
/// opened with it (code 4401), and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_closes_live_sockets() {
    let (control, dir) = start_control("voxbridge-ws-revoke").await;
    let store = control.store.clone();
    let actor = Actor { id: "test".into() };
    store
        .create_customer(
            &actor,
            NewCustomer {
                id: Some("r".into()),
                name: "r".into(),
                email: None,
            },
        )
        .await
        .expect("customer");
    let (k1, key1) = store
        .create_access_key(&actor, "r", "one", None)
        .await
        .expect("key");
    let (_, key2) = store
        .create_access_key(&actor, "r", "two", None)
        .await
        .expect("key");
    let url = serve(control.router(Arc::new(voxbridge_control::api::NoMedia))).await;
    let mut one = connect(&url, &key1).await;
    let mut two = connect(&url, &key2).await;
    for ws in [&mut one, &mut two] {
        send(
            ws,
            json!({"type": "subscribe", "topics": ["customer_id:r:call:*"]}),
        )
        .await;
        assert_eq!(next_json(ws).await["type"], "subscribed");
    }

    store
        .delete_access_key(&actor, "r", &k1.id)
        .await
        .expect("revoke");
    assert_eq!(
        close_of(&mut one).await,
        (4401, "credential revoked: access key deleted".into())
    );
    // The other key's socket stays open: it still gets r's events.
    store.create_call(&call("r-1", "r")).await.expect("call");
    assert_eq!(next_json(&mut two).await["resource"]["id"], "r-1");

    store.delete_customer(&actor, "r").await.expect("delete");
    assert_eq!(
        close_of(&mut two).await,
        (4401, "credential revoked: customer deleted".into())
    );
    let metrics = control.metrics().render();
    assert!(
        metrics.contains("voxbridge_ws_closed_revoked_total 2"),
        "{metrics}"
    );
    control.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rule: a socket opened with a credential that expires is closed when it
/// does (a key that expires a moment after the upgrade).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_key_closes_its_socket() {
    let (control, dir) = start_control("voxbridge-ws-expire").await;
    let expire = Millis(Millis::now().0 + 3_000);
    let (_, key) = control
        .store
        .create_access_key(&Actor { id: "t".into() }, "default", "short", Some(expire))
        .await
        .expect("key");
    let url = serve(control.router(Arc::new(voxbridge_control::api::NoMedia))).await;
    let mut ws = connect(&url, &key).await;
    assert_eq!(close_of(&mut ws).await, (4401, "credential expired".into()));
    control.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
