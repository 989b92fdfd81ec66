//! The media plane's HTTP API (`voxbridge::http`) over a real socket: SDP and
//! plain-parameter sessions, listing, hangup, and the errors a client gets;
//! its credentials and the tenant each may act for.

mod harness;

use harness::{pipecat_route, within, Daemon, TestBot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use voxbridge_media::config::MediaApiToken;
use voxbridge_media::{CallEvent, Config, HangupCause};

/// The edge's token (no tenant of its own: the route's).
const EDGE: &str = "edge-token-0123456789abcdef";
/// A tenant's token (customer `acme`).
const ACME: &str = "acme-token-0123456789abcdef";

fn tokens() -> Vec<MediaApiToken> {
    vec![
        MediaApiToken {
            name: "edge".into(),
            token: EDGE.into(),
            customer_id: None,
        },
        MediaApiToken {
            name: "acme".into(),
            token: ACME.into(),
            customer_id: Some("acme".into()),
        },
    ]
}

/// One HTTP/1.1 request with the edge's token; returns (status, headers, body).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    ctype: &str,
    body: &str,
) -> (u16, String, String) {
    request_as(addr, Some(EDGE), method, path, ctype, body).await
}

/// One HTTP/1.1 request with `token` (or none).
async fn request_as(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    ctype: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    within("HTTP response", s.read_to_string(&mut resp))
        .await
        .expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("head and body");
    let status = head[9..12].parse().expect("status");
    (status, head.to_string(), body.to_string())
}

/// A bot, a daemon whose default route uses it, and the media API with
/// [`tokens`] on a free port.
async fn serve_api() -> (TestBot, Daemon, std::net::SocketAddr) {
    let bot = TestBot::start().await;
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 16000));
    let d = Daemon::with_config(config).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = voxbridge::http::router(d.metrics.clone(), d.rtp.clone(), tokens());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (bot, d, addr)
}

#[tokio::test]
async fn sessions_are_created_listed_and_hung_up_over_http() {
    let (mut bot, mut d, addr) = serve_api().await;

    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let (status, head, answer) = request(
        addr,
        "POST",
        "/v1/rtp/sessions?call_id=api-1&caller=%2B15551234",
        "application/sdp",
        offer,
    )
    .await;
    assert_eq!(status, 201, "{head}\n{answer}");
    assert!(head.to_ascii_lowercase().contains("x-call-id: api-1"), "{head}");
    assert!(
        answer.contains("a=rtpmap:0 PCMU/8000") && answer.contains("telephone-event"),
        "{answer}"
    );
    let _bot_conn = bot.accept().await;
    let e = d
        .event("created", |e| matches!(e, CallEvent::Created { .. }))
        .await;
    match e {
        CallEvent::Created { info, .. } => {
            assert_eq!((info.ingress, info.caller.as_deref()), ("rtp", Some("+15551234")));
        }
        _ => unreachable!(),
    }

    let plain = r#"{"remote":"127.0.0.1:9","codec":"g722","call_id":"api-2","symmetric":false}"#;
    let (status, _, body) = request(addr, "POST", "/v1/rtp/sessions", "application/json", plain).await;
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!((v["codec"].as_str(), v["pt"].as_u64()), (Some("G722"), Some(9)));
    let _bot_conn2 = bot.accept().await;

    let (status, _, body) = request(addr, "GET", "/v1/rtp/sessions", "text/plain", "").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["call_id"].as_str())
        .collect();
    assert_eq!(ids, ["api-1", "api-2"]);

    // Errors say what is wrong, with the right status.
    let cases = [
        (
            "POST",
            "application/sdp",
            "v=0\r\nm=audio 1 RTP/AVP 0\r\n",
            400,
            "no c= connection",
        ),
        (
            "POST",
            "application/sdp",
            &offer.replace("RTP/AVP 0 101", "RTP/AVP 18"),
            400,
            "no common codec",
        ),
        (
            "POST",
            "application/json",
            r#"{"codec":"gsm"}"#,
            400,
            "unknown codec",
        ),
        (
            "POST",
            "application/json",
            r#"{"codec":"pcmu","bogus":1}"#,
            400,
            "bogus",
        ),
        ("POST", "text/plain", "hi", 415, "application/sdp"),
    ];
    for (method, ctype, body, want, text) in cases {
        let (status, _, got) = request(addr, method, "/v1/rtp/sessions", ctype, body).await;
        assert_eq!(status, want, "{body:?}: {got}");
        assert!(got.contains(text), "{body:?}: {got}");
    }
    let (status, _, got) = request(
        addr,
        "POST",
        "/v1/rtp/sessions?call_id=api-1",
        "application/sdp",
        offer,
    )
    .await;
    assert_eq!(status, 400, "{got}");
    assert!(got.contains("in use"), "{got}");
    let (status, _, got) = request(
        addr,
        "POST",
        "/v1/rtp/sessions?call_id=a%2Fb",
        "application/sdp",
        offer,
    )
    .await;
    assert_eq!(status, 400, "{got}");
    assert!(got.contains("without '/'"), "{got}");

    let (status, _, _) = request(addr, "DELETE", "/v1/rtp/sessions/api-1", "text/plain", "").await;
    assert_eq!(status, 204);
    let e = d
        .event(
            "api hangup",
            |e| matches!(e, CallEvent::Hungup { call_id, .. } if call_id == "api-1"),
        )
        .await;
    assert!(
        matches!(
            e,
            CallEvent::Hungup {
                cause: HangupCause::ApiHangup,
                ..
            }
        ),
        "{e:?}"
    );
    let (status, _, _) = request(addr, "DELETE", "/v1/rtp/sessions/nope", "text/plain", "").await;
    assert_eq!(status, 404);
    let (_, _, metrics) = request(addr, "GET", "/metrics", "text/plain", "").await;
    assert!(
        metrics.contains("voxbridge_rtp_sessions_created_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("voxbridge_rtp_sessions_refused_total 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("voxbridge_calls_total{cause=\"api_hangup\"} 1"),
        "{metrics}"
    );
}

/// Rule: the media API needs a credential, and a credential cannot choose a
/// tenant it does not own, nor see or hang up another tenant's calls.
#[tokio::test]
async fn the_media_api_needs_a_token_and_keeps_to_its_tenant() {
    let (mut bot, mut d, addr) = serve_api().await;
    let plain = |id: &str, params: &str| {
        format!(
            r#"{{"remote":"127.0.0.1:9","codec":"pcmu","call_id":"{id}","symmetric":false,"params":{params}}}"#
        )
    };
    let json = "application/json";

    for token in [None, Some("wrong-token-0123456789abcdef")] {
        for (method, path) in [("GET", "/v1/rtp/sessions"), ("DELETE", "/v1/rtp/sessions/x")] {
            let (status, head, _) = request_as(addr, token, method, path, "text/plain", "").await;
            assert_eq!(status, 401, "{method} {path} with {token:?}");
            assert!(
                head.to_ascii_lowercase().contains("www-authenticate: bearer"),
                "{head}"
            );
        }
        let (status, _, _) =
            request_as(addr, token, "POST", "/v1/rtp/sessions", json, &plain("x", "{}")).await;
        assert_eq!(status, 401);
    }
    // The metrics stay open.
    let (status, _, metrics) = request_as(addr, None, "GET", "/metrics", "text/plain", "").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("voxbridge_media_api_unauthorized_total 6"),
        "{metrics}"
    );

    // A tenant's token: its calls are its own, whatever the request says.
    let post = |token: &'static str, id: &'static str, params: &'static str| {
        let body = plain(id, params);
        async move { request_as(addr, Some(token), "POST", "/v1/rtp/sessions", json, &body).await }
    };
    let (status, _, got) = post(ACME, "t-1", r#"{"customer_id":"other"}"#).await;
    assert_eq!(status, 403, "{got}");
    let (status, _, got) = post(EDGE, "t-2", r#"{"customer_id":"acme"}"#).await;
    assert_eq!(status, 403, "the edge's token has no tenant to give: {got}");
    let (status, _, got) = post(ACME, "t-3", "{}").await;
    assert_eq!(status, 201, "{got}");
    let _link = bot.accept().await;
    match d
        .event("created", |e| matches!(e, CallEvent::Created { .. }))
        .await
    {
        CallEvent::Created { info, .. } => {
            assert_eq!(info.params.get("customer_id").map(String::as_str), Some("acme"))
        }
        _ => unreachable!(),
    }
    // The edge sees none of acme's sessions and cannot hang them up.
    let (_, _, list) = request_as(addr, Some(EDGE), "GET", "/v1/rtp/sessions", "text/plain", "").await;
    assert_eq!(list.trim(), "[]");
    let (status, _, _) = request_as(
        addr,
        Some(EDGE),
        "DELETE",
        "/v1/rtp/sessions/t-3",
        "text/plain",
        "",
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, list) = request_as(addr, Some(ACME), "GET", "/v1/rtp/sessions", "text/plain", "").await;
    assert!(list.contains("t-3"), "{list}");
    let (status, _, _) = request_as(
        addr,
        Some(ACME),
        "DELETE",
        "/v1/rtp/sessions/t-3",
        "text/plain",
        "",
    )
    .await;
    assert_eq!(status, 204);
    // A NUL in a caller id is refused where it enters.
    let nul = r#"{"remote":"127.0.0.1:9","codec":"pcmu","call_id":"t-4","symmetric":false,"caller":"+1555\u00000100"}"#;
    let (status, _, got) = request_as(addr, Some(EDGE), "POST", "/v1/rtp/sessions", json, nul).await;
    assert_eq!(status, 400, "{got}");
    assert!(got.contains("control character"), "{got}");
}
