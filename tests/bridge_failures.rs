//! What goes wrong: a bot that never answers or drops mid-call (under both
//! policies), a bot that hangs up or closes with a failure code, a bot that
//! stops reading, malformed caller input (the call ends,
//! counted; other calls are unaffected), connections that never identify,
//! and shutdown with calls in progress.

mod harness;

use harness::*;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use voxbridge_media::config::{BotFailurePolicy, Route};
use voxbridge_media::{CallEvent, Config, HangupCause};
use voxbridge_proto::pipecat::{Kind, MessageFrame};

async fn hung_up_with(d: &mut Daemon, cause: HangupCause) {
    let e = d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await;
    assert!(
        matches!(e, CallEvent::Hungup { cause: c, .. } if c == cause),
        "{e:?}"
    );
}

/// A TCP listener that accepts and then says nothing (a hung bot).
async fn silent_listener() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    url
}

/// A URL nothing listens on.
async fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    format!("ws://{}", l.local_addr().expect("addr"))
}

#[tokio::test]
async fn a_bot_that_never_answers_hangs_the_caller_up_under_the_hangup_policy() {
    let url = silent_listener().await;
    let mut d = Daemon::start(Route {
        connect_timeout_ms: 300,
        ..pipecat_route(&url, 16000)
    })
    .await;
    let mut caller = Caller::connect(d.addr, uuid(20)).await;
    assert!(
        caller.until_hangup().await,
        "the caller gets an AudioSocket hangup"
    );
    let e = d
        .event("bot failed", |e| matches!(e, CallEvent::BotFailed { .. }))
        .await;
    assert!(
        matches!(
            e,
            CallEvent::BotFailed {
                will_retry: false,
                ..
            }
        ),
        "{e:?}"
    );
    hung_up_with(&mut d, HangupCause::BotUnavailable).await;
    assert_eq!(d.metrics.bot_connect_failures.load(Relaxed), 1);
    assert_eq!(
        d.metrics.active_calls.load(Relaxed),
        0,
        "the call's resources are released"
    );
}

#[tokio::test]
async fn under_the_silence_policy_the_caller_hears_silence_while_reconnects_run_out() {
    let url = refused_url().await;
    let mut d = Daemon::start(Route {
        on_bot_failure: BotFailurePolicy::Silence,
        reconnect_interval_ms: 30,
        max_reconnects: 2,
        ..pipecat_route(&url, 16000)
    })
    .await;
    let mut caller = Caller::connect(d.addr, uuid(21)).await;
    for _ in 0..3 {
        assert!(caller.next_audio().await.iter().all(|&s| s == 0));
    }
    for retry in [true, true, false] {
        let e = d
            .event("bot failed", |e| matches!(e, CallEvent::BotFailed { .. }))
            .await;
        assert!(
            matches!(e, CallEvent::BotFailed { will_retry, .. } if will_retry == retry),
            "{e:?}"
        );
    }
    assert!(caller.until_hangup().await);
    hung_up_with(&mut d, HangupCause::BotUnavailable).await;
    assert_eq!(d.metrics.bot_connect_failures.load(Relaxed), 3);
}

#[tokio::test]
async fn a_bot_dropping_mid_call_hangs_up_under_the_hangup_policy() {
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(pipecat_route(&bot.url, 16000)).await;
    let mut caller = Caller::connect(d.addr, uuid(22)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    caller.next_audio().await;
    link.drop_abruptly();
    assert!(caller.until_hangup().await);
    hung_up_with(&mut d, HangupCause::BotDropped).await;
    assert_eq!(d.metrics.bot_drops.load(Relaxed), 1);
}

#[tokio::test]
async fn a_bot_dropping_mid_call_is_reconnected_under_the_silence_policy() {
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(Route {
        on_bot_failure: BotFailurePolicy::Silence,
        reconnect_interval_ms: 20,
        ..pipecat_route(&bot.url, 8000)
    })
    .await;
    let mut caller = Caller::connect(d.addr, uuid(23)).await;
    let mut first = bot.accept().await;
    pipecat_next(&mut first).await.expect("start");
    first.drop_abruptly();
    let mut second = bot.accept().await;
    let start = message_json(&pipecat_next(&mut second).await.expect("start again")).expect("json");
    assert_eq!(start["type"], "voxbridge.start");
    let e = d
        .event("reconnected", |e| {
            matches!(e, CallEvent::BotConnected { attempt: 1, .. })
        })
        .await;
    assert!(matches!(e, CallEvent::BotConnected { .. }));
    // Audio flows to the new link.
    caller.send_audio(&[321i16; 160]).await;
    loop {
        if let Kind::Audio(a) = pipecat_next(&mut second).await.expect("audio") {
            assert_eq!(&a.audio[..2], &321i16.to_le_bytes());
            break;
        }
    }
}

#[tokio::test]
async fn a_bot_can_end_the_call() {
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(pipecat_route(&bot.url, 16000)).await;
    let mut caller = Caller::connect(d.addr, uuid(24)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    link.send(pipecat_msg(Kind::Message(MessageFrame {
        data: r#"{"type":"voxbridge.hangup"}"#.into(),
    })))
    .await;
    assert!(caller.until_hangup().await);
    hung_up_with(&mut d, HangupCause::BotHangup).await;
}

/// Rule: a bot's close code says whether it ended the call or failed. A
/// normal close (1000) is the bot hanging up; 1013 (what pipecat's server
/// answers a second client with, right after the handshake) and 1011 are
/// failures that go through `on_bot_failure`, counted as bot drops.
#[tokio::test]
async fn a_bots_close_code_tells_a_hangup_from_a_failure() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    for (n, code, cause) in [
        (31u8, CloseCode::Normal, HangupCause::BotHangup),
        (32, CloseCode::Again, HangupCause::BotUnavailable),
        (33, CloseCode::Error, HangupCause::BotDropped),
    ] {
        let mut bot = TestBot::start().await;
        let mut d = Daemon::start(pipecat_route(&bot.url, 8000)).await;
        let mut caller = Caller::connect(d.addr, uuid(n)).await;
        let mut link = bot.accept().await;
        link.ws
            .close(Some(CloseFrame {
                code,
                reason: "busy".into(),
            }))
            .await
            .expect("close");
        assert!(caller.until_hangup().await);
        if code != CloseCode::Normal {
            let e = d
                .event("bot failure", |e| matches!(e, CallEvent::BotFailed { .. }))
                .await;
            let CallEvent::BotFailed {
                reason, will_retry, ..
            } = e
            else {
                unreachable!()
            };
            assert!(reason.contains(&u16::from(code).to_string()), "{reason}");
            assert!(!will_retry, "the route's policy is to hang up");
        }
        hung_up_with(&mut d, cause).await;
        let drops = u64::from(code != CloseCode::Normal);
        assert_eq!(d.metrics.bot_drops.load(Relaxed), drops, "{code:?}");
    }
}

/// Rule: a bot that stops reading fails like any other bot. Its link's
/// write buffer fills (4 MiB after the kernel's buffers), the next send is
/// refused, and the call goes through `on_bot_failure` (here: hang up),
/// counted in `voxbridge_bot_stalls_total` and as a bot drop; the frames
/// that could not be queued are counted lost, never dropped unseen.
#[tokio::test]
async fn a_bot_that_stops_reading_fails_like_any_other_bot() {
    use tokio::io::AsyncWriteExt;
    let mut bot = TestBot::start().await;
    // 48 kHz to the bot: each 20 ms is ~1.9 KB on its link, so it fills fast.
    let mut d = Daemon::start(pipecat_route(&bot.url, 48000)).await;
    let caller = Caller::connect(d.addr, uuid(34)).await;
    let _never_read = bot.accept().await;
    let (mut rd, mut wr) = caller.sock.into_split();
    // The caller itself keeps reading what the daemon plays to it.
    let reader = tokio::spawn(async move {
        let mut b = vec![0u8; 1 << 16];
        while matches!(rd.read(&mut b).await, Ok(n) if n > 0) {}
    });
    let frame: Vec<u8> = [0x10, 0x01, 0x40]
        .into_iter()
        .chain((0..160i16).flat_map(|i| (i * 50).to_le_bytes()))
        .collect();
    let second = frame.repeat(50);
    // As fast as the socket takes it (far faster than real time); at most
    // an hour of audio, far more than the buffers hold.
    let writer = tokio::spawn(async move {
        for _ in 0..3600 {
            if wr.write_all(&second).await.is_err() {
                break;
            }
        }
    });
    let e = d
        .event("bot failure", |e| matches!(e, CallEvent::BotFailed { .. }))
        .await;
    let CallEvent::BotFailed { reason, .. } = e else {
        unreachable!()
    };
    assert!(reason.contains("stopped reading"), "{reason}");
    hung_up_with(&mut d, HangupCause::BotDropped).await;
    assert_eq!(d.metrics.bot_stalls.load(Relaxed), 1);
    assert_eq!(d.metrics.bot_drops.load(Relaxed), 1);
    writer.abort();
    reader.abort();
}

#[tokio::test]
async fn a_malformed_frame_ends_that_call_only() {
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(pipecat_route(&bot.url, 8000)).await;
    let mut good = Caller::connect(d.addr, uuid(25)).await;
    let mut good_link = bot.accept().await;
    pipecat_next(&mut good_link).await.expect("start");
    let mut bad = Caller::connect(d.addr, uuid(26)).await;
    let mut bad_link = bot.accept().await;
    pipecat_next(&mut bad_link).await.expect("start");
    // Type 0x42 does not exist.
    bad.send_raw(&[0x42, 0x00, 0x02, 1, 2]).await;
    assert!(bad.until_hangup().await, "told to hang up, then closed");
    hung_up_with(&mut d, HangupCause::Malformed).await;
    assert_eq!(d.metrics.caller_protocol_errors.load(Relaxed), 1);
    // The other call goes on both ways.
    good.send_audio(&[55i16; 160]).await;
    loop {
        if let Kind::Audio(a) = pipecat_next(&mut good_link).await.expect("audio") {
            assert_eq!(&a.audio[..2], &55i16.to_le_bytes());
            break;
        }
    }
    good_link.send(pipecat_audio(&[66i16; 160], 8000)).await;
    loop {
        if good.next_audio().await.iter().all(|&s| s == 66) {
            break;
        }
    }
    assert_eq!(d.metrics.active_calls.load(Relaxed), 1);
}

#[tokio::test]
async fn connections_that_do_not_start_with_a_uuid_are_refused_and_counted() {
    let mut config = Config::default();
    config.limits.uuid_timeout_ms = 200;
    config.routes.get_mut("default").expect("default route").url = refused_url().await;
    let d = Daemon::with_config(config).await;
    // Audio before any UUID.
    let mut c = Caller::connect_raw(d.addr).await;
    c.send_audio(&[0i16; 160]).await;
    assert_eq!(c.next().await, None, "closed without becoming a call");
    // Nothing at all: closed after the UUID timeout.
    let mut quiet = Caller::connect_raw(d.addr).await;
    let mut b = [0u8; 16];
    let n = within("the quiet connection to close", quiet.sock.read(&mut b)).await;
    assert!(matches!(n, Ok(0) | Err(_)));
    assert_eq!(d.metrics.rejected_connections.load(Relaxed), 2);
    assert_eq!(d.metrics.caller_protocol_errors.load(Relaxed), 2);
    assert_eq!(d.metrics.active_calls.load(Relaxed), 0);
}

#[tokio::test]
async fn shutdown_hangs_up_calls_left_after_the_grace_period() {
    let mut bot = TestBot::start().await;
    let mut config = Config::default();
    config.limits.shutdown_grace_ms = 100;
    config.routes.get_mut("default").expect("default route").url = bot.url.clone();
    let mut d = Daemon::with_config(config).await;
    let mut caller = Caller::connect(d.addr, uuid(27)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    d.shutdown.shutdown();
    assert!(caller.until_hangup().await);
    hung_up_with(&mut d, HangupCause::Shutdown).await;
    within("the server to stop", &mut d.task)
        .await
        .expect("server task");
    // No new calls once stopped.
    assert!(tokio::net::TcpStream::connect(d.addr).await.is_err());
}

/// Rule: a call id in use is refused (counted, the connection closed),
/// never merged; a call's record and its media stay the same call.
#[tokio::test]
async fn a_call_id_in_use_is_refused_never_merged() {
    use voxbridge_media::sessions::{PlainSession, SessionRequest};
    use voxbridge_proto::audiosocket::Frame;
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(pipecat_route(&bot.url, 8000)).await;
    let mut first = Caller::connect(d.addr, uuid(30)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    d.event("the first call", |e| matches!(e, CallEvent::Created { .. }))
        .await;

    // The same UUID again (another listener, another tenant's route: the
    // id space is the server's): told to hang up, then closed.
    let mut second = Caller::connect(d.addr, uuid(30)).await;
    assert!(second.until_hangup().await, "the duplicate is hung up");
    // An RTP session cannot take the id either.
    let id = Frame::uuid_string(&uuid(30));
    let rtp = d
        .rtp
        .plain(
            PlainSession {
                remote: Some("127.0.0.1:9".parse().expect("addr")),
                codec: voxbridge_proto::sdp::AudioCodec::Pcmu,
                pt: None,
                dtmf_pt: None,
                symmetric: None,
            },
            SessionRequest {
                call_id: Some(id),
                ..SessionRequest::default()
            },
        )
        .await;
    assert!(
        matches!(&rtp, Err(e) if e.to_string().contains("in use")),
        "{rtp:?}"
    );
    assert_eq!(d.metrics.duplicate_call_ids.load(Relaxed), 2);
    assert_eq!(d.metrics.rejected_connections.load(Relaxed), 1);

    // The first call goes on, and nothing ended it.
    first.send_audio(&[55i16; 160]).await;
    loop {
        if let Kind::Audio(a) = pipecat_next(&mut link).await.expect("audio") {
            assert_eq!(&a.audio[..2], &55i16.to_le_bytes());
            break;
        }
    }
    assert_eq!(d.metrics.active_calls.load(Relaxed), 1);
    while let Ok(e) = d.events.try_recv() {
        assert!(
            !matches!(e, CallEvent::Created { .. } | CallEvent::Hungup { .. }),
            "the refused connection emitted {e:?}"
        );
    }
}

/// The next hangup event's cause.
async fn next_hangup_cause(d: &mut Daemon) -> HangupCause {
    match d
        .event("a hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await
    {
        CallEvent::Hungup { cause, .. } => cause,
        other => panic!("expected a hangup, got {other:?}"),
    }
}

/// Rules: an AudioSocket frame must complete within `frame_timeout_ms`, a
/// caller that sends nothing for `media_timeout_ms` is hung up with that
/// cause, and a caller that never reads is dropped once its socket buffer
/// stays full; all counted.
#[tokio::test]
async fn callers_that_stop_half_way_are_hung_up_and_counted() {
    let mut bot = TestBot::start().await;
    let mut config = one_listener(pipecat_route(&bot.url, 8000));
    config.limits.frame_timeout_ms = 300;
    config.limits.media_timeout_ms = 1000;
    config.limits.send_buffer_bytes = 4096;
    let mut d = Daemon::with_config(config).await;

    // 16,000 bytes announced, 100 sent.
    let mut partial = Caller::connect(d.addr, uuid(40)).await;
    let mut link1 = bot.accept().await;
    pipecat_next(&mut link1).await.expect("start");
    let mut head = vec![0x10, 0x3e, 0x80];
    head.extend_from_slice(&[0u8; 100]);
    partial.send_raw(&head).await;
    assert!(partial.until_hangup().await);
    assert_eq!(next_hangup_cause(&mut d).await, HangupCause::Malformed);
    assert_eq!(d.metrics.caller_protocol_errors.load(Relaxed), 1);

    // A UUID, then nothing.
    let mut mute = Caller::connect(d.addr, uuid(41)).await;
    let mut link2 = bot.accept().await;
    pipecat_next(&mut link2).await.expect("start");
    assert!(mute.until_hangup().await);
    assert_eq!(next_hangup_cause(&mut d).await, HangupCause::MediaTimeout);

    // Keeps sending audio but never reads (a small receive window, so the
    // daemon's send buffer fills within seconds).
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut deaf = sock.connect(d.addr).await.expect("connect");
    let mut hello = vec![0x01, 0x00, 0x10];
    hello.extend_from_slice(&uuid(42));
    tokio::io::AsyncWriteExt::write_all(&mut deaf, &hello)
        .await
        .expect("uuid");
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    let frame: Vec<u8> = [0x10u8, 0x01, 0x40].into_iter().chain([0u8; 320]).collect();
    let hangup = d.event("the deaf caller's hangup", |e| {
        matches!(e, CallEvent::Hungup { .. })
    });
    let feed = async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        loop {
            tick.tick().await;
            if tokio::io::AsyncWriteExt::write_all(&mut deaf, &frame)
                .await
                .is_err()
            {
                std::future::pending::<()>().await;
            }
        }
    };
    let e = tokio::select! {
        e = hangup => e,
        () = feed => unreachable!("the feed never ends"),
    };
    assert!(
        matches!(
            e,
            CallEvent::Hungup {
                cause: HangupCause::CallerGone,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        d.metrics.totals().frames_lost > 0,
        "frames the deaf caller did not take are counted"
    );
}
