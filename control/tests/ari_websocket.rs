//! The ARI originator with `media = "websocket"` against a stand-in for
//! Asterisk's ARI: its REST requests (originate into the application,
//! bridge, `externalMedia` in WebSocket server mode, `addChannel`), the
//! events WebSocket (`StasisStart` answers, a `Dial` status reports busy,
//! `ChannelDestroyed` hangups), and the media plane asked to connect to
//! `/media/<MEDIA_WEBSOCKET_CONNECTION_ID>`. The request shapes are the
//! ones Asterisk's rest-api/api-docs describe.

use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};
use voxbridge_contract::commands::{AsteriskMediaDial, CallCommands, DialDone};
use voxbridge_control::originate::ari::{AriConfig, AriMediaKind, AriOriginator};
use voxbridge_control::originate::{DialOutcome, DialRequest, Originator};

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
}

#[derive(Clone)]
struct Fake {
    seen: mpsc::UnboundedSender<Seen>,
    events: broadcast::Sender<String>,
    /// The events WebSocket's query and `Authorization` header.
    events_query: Arc<Mutex<Option<(String, String)>>>,
    /// Closes the events WebSockets (Asterisk restarting, a network cut).
    kick: broadcast::Sender<()>,
    /// What `GET /ari/channels` lists.
    live: Arc<Mutex<Vec<String>>>,
}

fn destroyed(channel: &str, cause: i64, text: &str) -> String {
    serde_json::json!({"type": "ChannelDestroyed", "cause": cause, "cause_txt": text,
        "channel": {"id": channel, "name": "PJSIP/trunk-00000001", "state": "Down"},
        "application": "voxbridge"})
    .to_string()
}

async fn rest(
    State(f): State<Fake>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> impl IntoResponse {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let path = format!("/{rest}");
    let _ = f.seen.send(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
    });
    match (method, path.as_str()) {
        (Method::POST, "/ari/channels") => {
            // The callee answers, or is busy, once the originate is taken.
            let id = get("channelId");
            let event = if get("endpoint").contains("busy") {
                // What a real Asterisk sends for a busy callee (its Local
                // channels report cause 0; the dial status says BUSY).
                serde_json::json!({"type": "Dial", "dialstatus": "BUSY", "dialstring": "busy@probe",
                    "peer": {"id": id, "name": "Local/busy@probe-00000007;1", "state": "Down"},
                    "application": "voxbridge"})
                .to_string()
            } else {
                serde_json::json!({"type": "StasisStart", "args": [id.clone()],
                    "channel": {"id": id, "name": "PJSIP/trunk-00000001", "state": "Up"},
                    "application": "voxbridge"})
                .to_string()
            };
            let tx = f.events.clone();
            tokio::spawn(async move {
                let _ = tx.send(event);
            });
            r#"{"id":"x","state":"Down"}"#.to_string().into_response()
        }
        (Method::GET, "/ari/channels") => {
            let live: Vec<serde_json::Value> = f
                .live
                .lock()
                .expect("lock")
                .iter()
                .map(|id| serde_json::json!({"id": id, "name": "PJSIP/trunk-00000001", "state": "Up"}))
                .collect();
            serde_json::Value::Array(live).to_string().into_response()
        }
        (Method::POST, "/ari/channels/externalMedia") => serde_json::json!({
            "id": get("channelId"), "name": "WebSocket/INCOMING-00000001", "state": "Down",
            "channelvars": {"MEDIA_WEBSOCKET_CONNECTION_ID": "4f8a2c1e-7d3b-4c2a-9e1f-0a1b2c3d4e5f",
                            "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": "640"}})
        .to_string()
        .into_response(),
        _ => "{}".to_string().into_response(),
    }
}

async fn events(
    State(f): State<Fake>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    *f.events_query.lock().expect("lock") = Some((q.unwrap_or_default(), auth));
    let mut rx = f.events.subscribe();
    let mut kick = f.kick.subscribe();
    ws.on_upgrade(move |mut socket| async move {
        loop {
            tokio::select! {
                e = rx.recv() => {
                    let Ok(e) = e else { return };
                    if socket.send(AxMessage::Text(e.into())).await.is_err() {
                        return;
                    }
                }
                _ = kick.recv() => return,
            }
        }
    })
}

async fn fake_ari() -> (String, Fake, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let fake = Fake {
        seen: tx,
        events: broadcast::channel(16).0,
        events_query: Arc::default(),
        kick: broadcast::channel(4).0,
        live: Arc::default(),
    };
    let app = Router::new()
        .route("/ari/events", get(events))
        .route("/{*rest}", any(rest))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, fake, rx)
}

fn stasis_start(id: &str) -> String {
    serde_json::json!({"type": "StasisStart", "args": [],
        "channel": {"id": id, "name": "WebSocket/INCOMING/0x7f4fa4002ea0", "state": "Up"},
        "application": "voxbridge"})
    .to_string()
}

/// A media plane that records what it is asked to dial; its connection
/// answers the media channel, which enters the application (as Asterisk
/// does once the WebSocket is up).
struct FakeMedia {
    dials: Mutex<Vec<AsteriskMediaDial>>,
    events: broadcast::Sender<String>,
}

impl CallCommands for FakeMedia {
    fn hangup(&self, _call_id: &str) -> bool {
        false
    }
    fn dial_asterisk_media(&self, dial: AsteriskMediaDial, done: DialDone) -> Result<(), String> {
        let _ = self.events.send(stasis_start(&format!("{}-media", dial.call_id)));
        self.dials.lock().expect("lock").push(dial);
        done(Ok(()));
        Ok(())
    }
}

fn request(call_id: &str, destination: &str) -> DialRequest {
    let mut vars = serde_json::Map::new();
    vars.insert("name".into(), "Ann Lee".into());
    DialRequest {
        call_id: call_id.into(),
        customer_id: "default".into(),
        destination: destination.into(),
        source: "+15559999".into(),
        route: "sales".into(),
        audiosocket: None,
        vars,
        attempt: 1,
    }
}

fn originator(url: &str, fake: &Fake) -> (AriOriginator, Arc<FakeMedia>) {
    let ari = AriOriginator::new(&AriConfig {
        url: url.into(),
        username: "vox".into(),
        password: "s3cret".into(),
        media: AriMediaKind::Websocket,
        ..AriConfig::default()
    })
    .expect("config");
    let media = Arc::new(FakeMedia {
        dials: Mutex::default(),
        events: fake.events.clone(),
    });
    ari.attach_media(media.clone());
    (ari, media)
}

/// The next three requests are the teardown of `call_id`: both channels
/// hung up, then the bridge removed.
async fn expect_teardown(seen: &mut mpsc::UnboundedReceiver<Seen>, call_id: &str) {
    let mut deleted = Vec::new();
    while deleted.len() < 3 {
        let r = seen.recv().await.expect("teardown");
        assert_eq!(r.method, Method::DELETE, "{r:?}");
        deleted.push(r.path);
    }
    assert_eq!(
        deleted,
        vec![
            format!("/ari/channels/{call_id}"),
            format!("/ari/channels/{call_id}-media"),
            format!("/ari/bridges/{call_id}"),
        ]
    );
}

fn pairs(s: &Seen) -> Vec<(&str, &str)> {
    s.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn an_answered_callee_is_bridged_to_a_media_websocket_the_media_plane_dials() {
    let (url, fake, mut seen) = fake_ari().await;
    let (ari, media) = originator(&url, &fake);
    assert!(!ari.needs_audiosocket(), "no AudioSocket listener is needed");
    assert_eq!(ari.ingress(), "chanws", "stored calls say how their media comes");
    let outcome = ari.originate(&request("c-1", "+15550100")).await;
    assert_eq!(outcome, DialOutcome::Accepted);

    let (q, auth) = fake
        .events_query
        .lock()
        .expect("lock")
        .clone()
        .unwrap_or_default();
    assert_eq!(q, "app=voxbridge", "no credentials in the URL");
    // base64("vox:s3cret")
    assert_eq!(auth, "Basic dm94OnMzY3JldA==");

    let originate = seen.recv().await.expect("originate");
    assert_eq!(
        (originate.method.clone(), originate.path.as_str()),
        (Method::POST, "/ari/channels")
    );
    assert_eq!(
        pairs(&originate),
        vec![
            ("endpoint", "PJSIP/+15550100@trunk"),
            ("app", "voxbridge"),
            ("appArgs", "c-1"),
            ("callerId", "+15559999"),
            ("timeout", "30"),
            ("channelId", "c-1"),
        ]
    );
    let bridge = seen.recv().await.expect("bridge");
    assert_eq!(bridge.path, "/ari/bridges");
    assert_eq!(
        pairs(&bridge),
        vec![("type", "mixing"), ("bridgeId", "c-1"), ("name", "voxbridge-c-1")]
    );
    let ext = seen.recv().await.expect("externalMedia");
    assert_eq!(ext.path, "/ari/channels/externalMedia");
    assert_eq!(
        pairs(&ext),
        vec![
            ("app", "voxbridge"),
            ("channelId", "c-1-media"),
            ("external_host", "INCOMING"),
            ("transport", "websocket"),
            ("encapsulation", "none"),
            ("connection_type", "server"),
            ("format", "slin16"),
            ("direction", "both"),
        ]
    );
    // The media plane connected (the media channel entered the
    // application) before the channels are bridged.
    let add = seen.recv().await.expect("addChannel");
    assert_eq!(add.path, "/ari/bridges/c-1/addChannel");
    assert_eq!(pairs(&add), vec![("channel", "c-1,c-1-media")]);

    let dials = media.dials.lock().expect("lock").clone();
    assert_eq!(dials.len(), 1);
    let url_host = url.trim_start_matches("http://");
    assert_eq!(
        dials[0].url,
        format!("ws://{url_host}/media/4f8a2c1e-7d3b-4c2a-9e1f-0a1b2c3d4e5f")
    );
    assert_eq!(
        (dials[0].call_id.as_str(), dials[0].route.as_str()),
        ("c-1", "sales")
    );
    assert_eq!(dials[0].params["name"], "Ann Lee");
    assert_eq!(dials[0].params["callee"], "+15550100");
    assert_eq!(dials[0].params["caller"], "+15559999");

    // The callee hangs up: the media channel (so the bot's WebSocket) and
    // the bridge go too.
    let _ = fake.events.send(destroyed("c-1", 16, "Normal Clearing"));
    expect_teardown(&mut seen, "c-1").await;
}

#[tokio::test]
async fn a_busy_callee_is_reported_busy_and_nothing_is_bridged() {
    let (url, fake, mut seen) = fake_ari().await;
    let (ari, media) = originator(&url, &fake);
    let outcome = ari.originate(&request("c-2", "busy-line")).await;
    assert_eq!(outcome, DialOutcome::Busy);
    let originate = seen.recv().await.expect("originate");
    assert_eq!(originate.path, "/ari/channels");
    assert!(seen.try_recv().is_err(), "no bridge, no externalMedia");
    assert!(media.dials.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn without_a_media_plane_or_with_bad_settings_it_refuses() {
    let (url, _fake, _seen) = fake_ari().await;
    let ari = AriOriginator::new(&AriConfig {
        url: url.clone(),
        media: AriMediaKind::Websocket,
        ..AriConfig::default()
    })
    .expect("config");
    match ari.originate(&request("c-3", "+15550100")).await {
        DialOutcome::Failed(why) => assert!(why.contains("media plane"), "{why}"),
        other => panic!("no media plane attached: {other:?}"),
    }
    for (media_url, format) in [(Some("http://x:8088"), "slin16"), (None, "mp3")] {
        let e = AriOriginator::new(&AriConfig {
            url: url.clone(),
            media: AriMediaKind::Websocket,
            media_url: media_url.map(str::to_owned),
            format: format.into(),
            ..AriConfig::default()
        })
        .expect_err("refused");
        assert!(e.to_string().contains("[control.originate.ari]"), "{e}");
    }
}

#[tokio::test]
async fn a_hangup_missed_while_the_events_websocket_was_down_is_found_on_reconnect() {
    let (url, fake, mut seen) = fake_ari().await;
    let (ari, _media) = originator(&url, &fake);
    assert_eq!(
        ari.originate(&request("c-4", "+15550100")).await,
        DialOutcome::Accepted
    );
    let mut setup = Vec::new();
    while setup.len() < 4 {
        setup.push(seen.recv().await.expect("setup").path);
    }
    assert_eq!(
        setup.last().map(String::as_str),
        Some("/ari/bridges/c-4/addChannel")
    );

    // The events WebSocket drops; meanwhile the callee hangs up, and its
    // ChannelDestroyed is never seen. Only the media channel is left.
    *fake.live.lock().expect("lock") = vec!["c-4-media".into(), "other-call".into()];
    let _ = fake.kick.send(());

    // On reconnect the originator lists the channels and ends the call.
    let list = seen.recv().await.expect("channel list");
    assert_eq!((list.method, list.path.as_str()), (Method::GET, "/ari/channels"));
    expect_teardown(&mut seen, "c-4").await;
}
