//! Shared-port mode (`rtp.shared_port`): several sessions on one UDP port,
//! told apart by the caller's address and SSRC, with batched I/O.
//!
//! Every wait has the harness's 10 s guard; nothing sleeps to synchronise.

mod harness;

use harness::{
    digit_packets, message_json, pipecat_msg, pipecat_next, pipecat_route, within, Daemon, TestBot,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use tokio::net::UdpSocket;
use voxbridge_media::sessions::{PlainSession, SessionRequest};
use voxbridge_media::{CallEvent, Config, MediaError};
use voxbridge_proto::dtmf::TelephoneEvent;
use voxbridge_proto::pipecat::{Kind, MessageFrame};
use voxbridge_proto::rtp::RtpPacket;
use voxbridge_proto::sdp::AudioCodec;

/// A port whose pair (port, port + 1) was free a moment ago.
async fn free_pair() -> u16 {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let p = a.local_addr().expect("addr").port();
        if p % 2 == 0 && p < u16::MAX && UdpSocket::bind(("127.0.0.1", p + 1)).await.is_ok() {
            return p;
        }
    }
}

async fn daemon(bot: &TestBot) -> Daemon {
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.rtp.shared_port = free_pair().await;
    Daemon::with_config(config).await
}

async fn session(
    d: &Daemon,
    remote: Option<SocketAddr>,
    symmetric: bool,
    id: &str,
) -> Result<SocketAddr, MediaError> {
    d.rtp
        .plain(
            PlainSession {
                remote,
                codec: AudioCodec::Pcmu,
                pt: None,
                dtmf_pt: Some(101),
                symmetric: Some(symmetric),
            },
            SessionRequest {
                call_id: Some(id.into()),
                ..SessionRequest::default()
            },
        )
        .await
        .map(|c| c.local)
}

/// The next caller digit the bot connection sees, with the call id it names.
async fn next_digit(conn: &mut harness::BotConn) -> (String, String) {
    loop {
        let Some(v) = pipecat_next(conn).await.as_ref().and_then(message_json) else {
            continue;
        };
        if v["type"] == "voxbridge.dtmf" {
            return (
                v["call_id"].as_str().unwrap_or("").into(),
                v["digit"].as_str().unwrap_or("").into(),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_on_one_address_are_told_apart_by_ssrc_both_ways() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot).await;
    // One SBC address carries both calls.
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let from = peer.local_addr().expect("addr");
    let a = session(&d, Some(from), false, "call-a").await.expect("session a");
    let b = session(&d, Some(from), false, "call-b").await.expect("session b");
    assert_eq!(a, b, "both sessions on the shared port");
    let mut conns = [bot.accept().await, bot.accept().await];
    // A packet from another host first: it matches no session (the hub
    // reads in arrival order, so it is counted before the digits arrive).
    let stranger = UdpSocket::bind("127.0.0.2:0").await.expect("stranger");
    stranger
        .send_to(&digit_packets('0', 9)[0], a)
        .await
        .expect("send");
    // SSRC 111 is seen first: it binds to the older session (call-a).
    for p in digit_packets('1', 111) {
        peer.send_to(&p, a).await.expect("send");
    }
    for p in digit_packets('2', 222) {
        peer.send_to(&p, a).await.expect("send");
    }
    let mut got = BTreeMap::new();
    within("one digit at each bot connection", async {
        for c in conns.iter_mut() {
            let (call, digit) = next_digit(c).await;
            got.insert(call, digit);
        }
    })
    .await;
    assert_eq!(got.get("call-a").map(String::as_str), Some("1"), "{got:?}");
    assert_eq!(got.get("call-b").map(String::as_str), Some("2"), "{got:?}");
    assert!(d.metrics.rtp.unmatched.load(Relaxed) >= 1);
    // Each bot presses a key; both trains come back to the one address, from
    // the shared port, under two SSRCs.
    for (c, digit) in conns.iter_mut().zip(["7", "8"]) {
        c.send(pipecat_msg(Kind::Message(MessageFrame {
            data: format!(r#"{{"type":"voxbridge.dtmf","digit":"{digit}"}}"#),
        })))
        .await;
    }
    let mut by_ssrc: BTreeMap<u32, u8> = BTreeMap::new();
    let mut buf = vec![0u8; 2048];
    within("telephone-events for both calls", async {
        while by_ssrc.len() < 2 {
            let (n, src) = peer.recv_from(&mut buf).await.expect("recv");
            assert_eq!(src.port(), a.port(), "sent from the shared port");
            if let Ok(p) = RtpPacket::parse(bytes::Bytes::copy_from_slice(&buf[..n])) {
                if p.payload_type == 101 {
                    let ev = TelephoneEvent::parse(p.payload_bytes()).expect("event");
                    by_ssrc.insert(p.ssrc, ev.event);
                }
            }
        }
    })
    .await;
    let mut events: Vec<u8> = by_ssrc.values().copied().collect();
    events.sort_unstable();
    assert_eq!(events, [7, 8], "each call's key under its own SSRC");
    let m = &d.metrics.rtp;
    assert!(m.recv_batches.load(Relaxed) > 0 && m.send_batches.load(Relaxed) > 0);
    for c in conns.iter_mut() {
        c.send(pipecat_msg(Kind::Message(MessageFrame {
            data: r#"{"type":"voxbridge.hangup"}"#.into(),
        })))
        .await;
    }
    for _ in 0..2 {
        d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await;
    }
}

#[tokio::test]
async fn a_shared_port_session_without_the_callers_address_is_refused() {
    let bot = TestBot::start().await;
    let d = daemon(&bot).await;
    let err = session(&d, None, true, "no-remote").await.expect_err("refused");
    assert!(err.to_string().contains("caller's address"), "{err}");
    let err = session(&d, Some("0.0.0.0:4000".parse().expect("addr")), true, "any")
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("caller's address"), "{err}");
    assert_eq!(d.metrics.rtp.sessions_refused.load(Relaxed), 2);
}
