//! RTP sessions against a scripted RTP peer (a UDP socket in the test) and a
//! scripted pipecat bot: impaired networks, garbage on a live session, DTMF
//! both ways, SDP offer/answer, RTCP BYE and the media timeout.
//!
//! Every wait has the harness's 10 s guard; nothing sleeps to synchronise
//! (the impaired sender sleeps to *be* a jittery network, not to wait).

mod harness;

use harness::{
    digit_packets, message_json, pipecat_msg, pipecat_next, pipecat_route, speech_8k, within, Daemon, TestBot,
};
use std::time::Duration;
use tokio::net::UdpSocket;
use voxbridge_media::events::RtpCallStats;
use voxbridge_media::sessions::{PlainSession, SessionRequest};
use voxbridge_media::{CallEvent, Config, HangupCause};
use voxbridge_proto::pipecat::{Kind, MessageFrame};
use voxbridge_proto::rtp::{RtpHeader, RtpPacket};
use voxbridge_proto::sdp::{AudioCodec, AudioOffer};

async fn daemon(bot: &TestBot, tweak: impl FnOnce(&mut Config)) -> Daemon {
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    tweak(&mut config);
    Daemon::with_config(config).await
}

fn pcmu_packet(seq: u16, ts: u32, ssrc: u32, pcm: &[i16]) -> Vec<u8> {
    let payload: Vec<u8> = pcm
        .iter()
        .map(|s| voxbridge_codecs::g711::linear_to_ulaw(*s))
        .collect();
    let mut v = Vec::new();
    RtpHeader {
        marker: seq == 0,
        payload_type: 0,
        sequence: seq,
        timestamp: ts,
        ssrc,
    }
    .write(&payload, &mut v);
    v
}

/// A session whose peer is `peer` (symmetric off, so voxbridge sends there).
async fn session_to(d: &Daemon, peer: &UdpSocket, dtmf_pt: Option<u8>) -> std::net::SocketAddr {
    d.rtp
        .plain(
            PlainSession {
                remote: Some(peer.local_addr().expect("addr")),
                codec: AudioCodec::Pcmu,
                pt: None,
                dtmf_pt,
                symmetric: Some(false),
            },
            SessionRequest::default(),
        )
        .await
        .expect("session")
        .local
}

/// Audio frames at the bot until `n` arrived (other frames skipped); PCM of each.
async fn bot_audio(bot: &mut harness::BotConn, n: usize) -> Vec<Vec<i16>> {
    let mut frames = Vec::new();
    while frames.len() < n {
        match pipecat_next(bot).await {
            Some(Kind::Audio(a)) => frames.push(
                a.audio
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect::<Vec<i16>>(),
            ),
            Some(_) => {}
            None => panic!("bot link closed after {} frames", frames.len()),
        }
    }
    frames
}

/// The cause of the next hangup.
async fn hangup_cause(d: &mut Daemon) -> HangupCause {
    match d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await {
        CallEvent::Hungup { cause, .. } => cause,
        e => unreachable!("{e:?}"),
    }
}

async fn final_stats(d: &mut Daemon) -> RtpCallStats {
    loop {
        if let CallEvent::RtpStats { stats, .. } = d
            .event("RTP stats", |e| matches!(e, CallEvent::RtpStats { .. }))
            .await
        {
            // The one emitted at hangup follows the last periodic one.
            let next = d
                .event("hangup or more stats", |e| {
                    matches!(e, CallEvent::RtpStats { .. } | CallEvent::Hungup { .. })
                })
                .await;
            match next {
                CallEvent::Hungup { .. } => return stats,
                CallEvent::RtpStats { stats, .. } => {
                    d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await;
                    return stats;
                }
                _ => unreachable!(),
            }
        }
    }
}

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impaired_network_gives_the_bot_continuous_frames_and_stats_report_the_loss() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot, |_| {}).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let target = session_to(&d, &peer, None).await;
    let mut conn = bot.accept().await;

    // 5 s of speech: 5% dropped, 3% duplicated, 5% swapped with the next,
    // each packet delayed by 0-60 ms.
    const PACKETS: usize = 250;
    let speech = speech_8k(PACKETS);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let start = tokio::time::Instant::now();
    let mut schedule: Vec<(Duration, Vec<u8>)> = Vec::new();
    let mut dropped = 0;
    for k in 0..PACKETS {
        if rng.percent(5) {
            dropped += 1;
            continue;
        }
        let pkt = pcmu_packet(k as u16, k as u32 * 160, 0xABCD, &speech[k * 160..(k + 1) * 160]);
        let mut at = Duration::from_millis(20 * k as u64 + rng.next() % 61);
        if rng.percent(5) {
            at += Duration::from_millis(25); // lands after its successor
        }
        if rng.percent(3) {
            schedule.push((at + Duration::from_millis(5), pkt.clone()));
        }
        schedule.push((at, pkt));
    }
    schedule.sort_by_key(|(at, _)| *at);
    let sender = tokio::spawn(async move {
        for (at, pkt) in schedule {
            tokio::time::sleep_until(start + at).await;
            peer.send_to(&pkt, target).await.expect("send");
        }
        peer
    });
    // The bot gets every packet in order as it can go, concealment filling
    // the losses and, once the sender stops, one frame per 20 ms: the
    // session's whole length (5 s) arrives, nothing short.
    let frames = within("5 s of frames at the bot", bot_audio(&mut conn, PACKETS + 25)).await;
    assert!(
        frames.iter().all(|f| f.len() == 160),
        "every frame is 20 ms at 8 kHz"
    );
    let _peer = sender.await.expect("sender");
    let got: Vec<i16> = frames.concat();
    // Quality: correlation with the sent speech over voiced 200 ms windows,
    // each aligned on its own (adaptive playout moves the delay).
    let win = 1600;
    let mut corrs = Vec::new();
    for (k, chunk) in speech.chunks(win).enumerate() {
        let e: f64 = chunk.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / win as f64;
        if e < 1e5 {
            continue;
        }
        let best = (0..4000)
            .filter(|l| k * win + l + win <= got.len())
            .map(|l| {
                let g = &got[k * win + l..k * win + l + win];
                let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
                for (a, b) in chunk.iter().zip(g) {
                    xy += *a as f64 * *b as f64;
                    xx += (*a as f64).powi(2);
                    yy += (*b as f64).powi(2);
                }
                xy / (xx * yy).sqrt().max(1e-9)
            })
            .fold(f64::MIN, f64::max);
        corrs.push(best);
    }
    corrs.sort_by(f64::total_cmp);
    let median = corrs[corrs.len() / 2];
    assert!(d.rtp.hangup(&d.rtp.list()[0].call_id));
    let stats = final_stats(&mut d).await;
    println!(
        "IMPAIRED dropped={dropped} median_window_corr={median:.3} windows={} stats={stats:?}",
        corrs.len()
    );
    assert!(median > 0.9, "median window correlation {median:.3}");
    // The last packets' loss cannot show in sequence numbers; all others do.
    assert!(
        (dropped as i64 - 2..=dropped as i64).contains(&stats.packets_lost),
        "loss reported: {stats:?}, dropped {dropped}"
    );
    assert!(stats.duplicates > 0 && stats.concealed_frames > 0, "{stats:?}");
    assert!(
        stats.jitter_buffer_ms > 20,
        "the buffer adapted to the jitter: {stats:?}"
    );
    // The 5 s RTCP interval passed during the 5.5 s call: jitter went to /metrics.
    let m = d.metrics.render();
    let count = m
        .lines()
        .find(|l| l.starts_with("voxbridge_rtp_jitter_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(count.is_some_and(|c| c >= 1), "{m}");
}

#[tokio::test]
async fn garbage_on_a_live_session_is_counted_and_neither_it_nor_others_stop() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot, |_| {}).await;
    let (pa, pb) = (
        UdpSocket::bind("127.0.0.1:0").await.expect("a"),
        UdpSocket::bind("127.0.0.1:0").await.expect("b"),
    );
    let ta = session_to(&d, &pa, Some(101)).await;
    let mut ca = bot.accept().await;
    let tb = session_to(&d, &pb, None).await;
    let mut cb = bot.accept().await;
    let tone: Vec<i16> = (0..160)
        .map(|i| ((i as f64 * 0.3).sin() * 9000.0) as i16)
        .collect();
    let mut rng = Rng(7);
    let mut garbage: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let len = (rng.next() % 300) as usize;
            let mut g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if i % 3 == 0 && g.len() > 2 {
                g[0] = 0x8F; // version 2, 15 CSRCs, then too short
                g.truncate(20);
            }
            g
        })
        .collect();
    garbage.push(vec![0x40; 172]); // RTP version 1
    garbage.push(vec![0x80, 0xC8, 0xFF, 0xFF]); // RTCP SR claiming 256 KiB
    garbage.push(pcmu_packet(1, 1, 1, &tone)[..12].to_vec()); // header only
    for g in &garbage {
        pa.send_to(g, ta).await.expect("send");
    }
    // Real audio after the garbage still reaches the bot on both sessions.
    for k in 0..30u16 {
        pa.send_to(&pcmu_packet(k, k as u32 * 160, 5, &tone), ta)
            .await
            .expect("send");
        pb.send_to(&pcmu_packet(k, k as u32 * 160, 6, &tone), tb)
            .await
            .expect("send");
    }
    for (name, conn) in [("a", &mut ca), ("b", &mut cb)] {
        within(&format!("tone at bot {name}"), async {
            loop {
                let f = bot_audio(conn, 1).await.remove(0);
                if f.iter().map(|s| (*s as i32).abs()).max().unwrap_or(0) > 4000 {
                    break;
                }
            }
        })
        .await;
    }
    assert_eq!(d.rtp.list().len(), 2, "both sessions still up");
    for s in d.rtp.list() {
        assert!(d.rtp.hangup(&s.call_id));
    }
    for _ in 0..2 {
        d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await;
    }
    let malformed = d.metrics.rtp.malformed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        malformed >= 150,
        "garbage counted: {malformed} of {}",
        garbage.len()
    );
}

#[tokio::test]
async fn dtmf_reaches_the_bot_once_per_key_and_the_bot_can_press_keys() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot, |_| {}).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let target = session_to(&d, &peer, Some(101)).await;
    let mut conn = bot.accept().await;
    // RFC 4733 train for '5' (7 packets, the end one three times).
    for v in digit_packets('5', 3) {
        peer.send_to(&v, target).await.expect("send");
    }
    let mut digits = Vec::new();
    within("the digit at the bot", async {
        while digits.is_empty() {
            if let Some(v) = pipecat_next(&mut conn).await.as_ref().and_then(message_json) {
                if v["type"] == "voxbridge.dtmf" {
                    digits.push(v["digit"].as_str().unwrap_or("").to_string());
                }
            }
        }
    })
    .await;
    d.event("dtmf event", |e| matches!(e, CallEvent::Dtmf { digit: '5', .. }))
        .await;
    // The bot asks for '9': the peer gets one telephone-event train.
    conn.send(pipecat_msg(Kind::Message(MessageFrame {
        data: r#"{"type":"voxbridge.dtmf","digit":"9"}"#.into(),
    })))
    .await;
    let mut buf = vec![0u8; 2048];
    let mut events = Vec::new();
    within("telephone-events at the peer", async {
        while events.last().is_none_or(|(_, end): &(bool, bool)| !end) || events.len() < 5 {
            let (n, _) = peer.recv_from(&mut buf).await.expect("recv");
            if let Ok(p) = RtpPacket::parse(bytes::Bytes::copy_from_slice(&buf[..n])) {
                if p.payload_type == 101 {
                    let ev = voxbridge_proto::dtmf::TelephoneEvent::parse(p.payload_bytes()).expect("event");
                    assert_eq!(ev.event, 9);
                    events.push((p.marker, ev.end));
                }
            }
        }
    })
    .await;
    assert!(events[0].0, "first event packet has the marker bit");
    // Later pipecat frames carry no second copy of the caller's digit.
    conn.send(pipecat_msg(Kind::Message(MessageFrame {
        data: r#"{"type":"voxbridge.hangup"}"#.into(),
    })))
    .await;
    d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await;
    assert_eq!(digits, ["5"]);
}

#[tokio::test]
async fn sdp_offer_is_answered_and_rtcp_bye_ends_the_call() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot, |_| {}).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let port = peer.local_addr().expect("addr").port();
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 18 8 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\n"
    );
    let created = d
        .rtp
        .offer(&offer, SessionRequest::default())
        .await
        .expect("answered");
    let answer = AudioOffer::parse(&created.sdp).expect("answer parses");
    let n = answer.negotiate(&[AudioCodec::Pcma]).expect("PCMA");
    assert_eq!((n.pt, n.dtmf_pt, n.rtcp_mux), (8, Some(101), true));
    assert_eq!(answer.remote, created.local);
    let _conn = bot.accept().await;
    // voxbridge sends PCMA to the offered address.
    let mut buf = vec![0u8; 2048];
    let (len, _) = within("RTP at the offerer", peer.recv_from(&mut buf))
        .await
        .expect("recv");
    let p = RtpPacket::parse(bytes::Bytes::copy_from_slice(&buf[..len])).expect("rtp");
    assert_eq!((p.payload_type, p.payload_bytes().len()), (8, 160));
    // RTCP BYE (muxed on the RTP port) hangs up.
    let mut bye = Vec::new();
    voxbridge_proto::rtcp::write_receiver_report(&mut bye, 77, &[]);
    voxbridge_proto::rtcp::write_bye(&mut bye, 77);
    peer.send_to(&bye, created.local).await.expect("send");
    assert_eq!(hangup_cause(&mut d).await, HangupCause::CallerHangup);
    // Offers voxbridge cannot serve are refused with the reason, and counted.
    let e = d
        .rtp
        .offer(&offer.replace(" 8 101", " 101"), SessionRequest::default())
        .await
        .expect_err("no common codec");
    assert!(e.to_string().contains("no common codec"), "{e}");
    assert_eq!(
        d.metrics
            .rtp
            .sessions_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn silence_on_the_wire_ends_the_call_with_media_timeout() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot, |c| c.rtp.media_timeout_ms = 1000).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let _ = session_to(&d, &peer, None).await;
    let _conn = bot.accept().await;
    assert_eq!(hangup_cause(&mut d).await, HangupCause::MediaTimeout);
    within("registry cleanup", async {
        while !d.rtp.list().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn rtcp_on_its_own_port_is_read_and_a_bye_there_ends_the_call() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot, |_| {}).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let target = session_to(&d, &peer, None).await;
    let _conn = bot.accept().await;
    let rtcp_port = std::net::SocketAddr::new(target.ip(), target.port() + 1);
    let mut bye = Vec::new();
    voxbridge_proto::rtcp::write_receiver_report(&mut bye, 77, &[]);
    voxbridge_proto::rtcp::write_bye(&mut bye, 77);
    peer.send_to(&bye, rtcp_port).await.expect("send");
    assert_eq!(hangup_cause(&mut d).await, HangupCause::CallerHangup);
    assert_eq!(
        d.metrics.rtp.rtcp_in.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn symmetric_rtp_ignores_a_bye_from_another_host() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot, |_| {}).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let target = d
        .rtp
        .plain(
            PlainSession {
                remote: None,
                codec: AudioCodec::Pcmu,
                pt: None,
                dtmf_pt: None,
                symmetric: Some(true),
            },
            SessionRequest::default(),
        )
        .await
        .expect("session")
        .local;
    let mut conn = bot.accept().await;
    // The caller's first packet latches the session to 127.0.0.1.
    peer.send_to(&pcmu_packet(0, 0, 9, &[0; 160]), target)
        .await
        .expect("send");
    bot_audio(&mut conn, 1).await;
    let mut bye = Vec::new();
    voxbridge_proto::rtcp::write_receiver_report(&mut bye, 9, &[]);
    voxbridge_proto::rtcp::write_bye(&mut bye, 9);
    // 127.0.0.2 is loopback too, but another host as far as the session knows.
    let spoofer = UdpSocket::bind("127.0.0.2:0").await.expect("spoofer");
    let rtcp_port = std::net::SocketAddr::new(target.ip(), target.port() + 1);
    spoofer.send_to(&bye, rtcp_port).await.expect("send");
    // Audio keeps flowing after the spoofed BYE; then the caller's own BYE ends it.
    peer.send_to(&pcmu_packet(1, 160, 9, &[0; 160]), target)
        .await
        .expect("send");
    bot_audio(&mut conn, 5).await;
    peer.send_to(&bye, rtcp_port).await.expect("send");
    let stats = final_stats(&mut d).await;
    assert_eq!(
        stats.malformed, 1,
        "the spoofed BYE was dropped and counted: {stats:?}"
    );
}
