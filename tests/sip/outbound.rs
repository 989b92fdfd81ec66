//! Calls voxbridge places on a SIP gateway (the UAC), against sipp as the
//! far end (Debian's `sip-tester`; its own `uas` scenario and the
//! `tests/fixtures/sipp/uas_*.xml` ones): answered and hung up from
//! voxbridge, busy, a digest challenge, no answer within the ring timeout.
//! Each sipp run must end as its scenario says (exit 0), so what voxbridge
//! sends is checked by software no one here wrote.

use crate::harness::sipp::{sipp_done, sipp_uas, sipp_uas_tcp};
use crate::harness::{pipecat_route, within, Daemon, TestBot};
use std::time::Duration;
use tokio::sync::mpsc;
use voxbridge_media::commands::{CallCommands, SipDial, SipDialEvent};
use voxbridge_media::{CallEvent, Config};

/// A daemon with SIP on and one gateway at sipp's `port`.
async fn daemon(bot: &TestBot, port: u16, credentials: bool) -> Daemon {
    daemon_over(bot, port, credentials, "udp").await
}

/// [`daemon`] with the gateway over `transport`.
async fn daemon_over(bot: &TestBot, port: u16, credentials: bool, transport: &str) -> Daemon {
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    let gateway = format!(
        "name = \"carrier\"\naddress = \"127.0.0.1:{port}\"\ndomain = \"trunk.example\"\ntransport = \"{transport}\"\n{}",
        if credentials {
            "username = \"acme\"\npassword = \"gw-secret\"\n"
        } else {
            ""
        }
    );
    config.sip.gateways = vec![toml::from_str(&gateway).expect("a gateway")];
    Daemon::with_config(config).await
}

fn dial(call_id: &str, ring_timeout: Duration) -> SipDial {
    SipDial {
        call_id: call_id.into(),
        route: "default".into(),
        gateway: None,
        destination: "+15550100".into(),
        caller: Some("+15550199".into()),
        params: [("campaign".to_owned(), "spring".to_owned())]
            .into_iter()
            .collect(),
        ring_timeout,
    }
}

/// Places `dial`; its events come on the returned channel.
fn place(d: &Daemon, dial: SipDial) -> mpsc::UnboundedReceiver<SipDialEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    d.commands
        .dial_sip(dial, Box::new(move |e| drop(tx.send(e))))
        .expect("the dial is taken");
    rx
}

async fn next(events: &mut mpsc::UnboundedReceiver<SipDialEvent>, what: &str) -> SipDialEvent {
    within(what, events.recv()).await.expect("the dial reports")
}

#[tokio::test]
async fn sipp_answers_a_placed_call_and_gets_voxbridges_bye() {
    let mut bot = TestBot::start().await;
    let (port, sipp) = sipp_uas("uas");
    let mut d = daemon(&bot, port, false).await;
    let mut events = place(&d, dial("out-answered", Duration::from_secs(30)));
    assert_eq!(next(&mut events, "ringing").await, SipDialEvent::Ringing);
    assert_eq!(next(&mut events, "the answer").await, SipDialEvent::Answered);
    let _conn = bot.accept().await;
    let created = d
        .event("the call's Created", |e| matches!(e, CallEvent::Created { .. }))
        .await;
    let CallEvent::Created { info, .. } = created else {
        unreachable!("matched above")
    };
    assert_eq!(
        (
            info.call_id.as_str(),
            info.ingress,
            info.callee.as_deref(),
            info.caller.as_deref()
        ),
        ("out-answered", "sip", Some("+15550100"), Some("+15550199"))
    );
    assert_eq!(info.params.get("campaign").map(String::as_str), Some("spring"));
    assert!(d.commands.hangup("out-answered"), "the answered call runs");
    d.event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await;
    sipp_done(sipp, "uas (answer, then voxbridge's BYE)").await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.dials, s.dials_answered, s.byes_sent), (1, 1, 1), "{s:?}");
}

/// Over TCP: voxbridge opens the connection to the gateway, and the
/// dialog's requests (the ACK, the BYE) go on it.
#[tokio::test]
async fn a_placed_call_over_tcp() {
    let mut bot = TestBot::start().await;
    let (port, sipp) = sipp_uas_tcp("uas").await;
    let mut d = daemon_over(&bot, port, false, "tcp").await;
    let mut events = place(&d, dial("out-tcp", Duration::from_secs(30)));
    let mut answered = next(&mut events, "the answer").await;
    if answered == SipDialEvent::Ringing {
        answered = next(&mut events, "the answer").await;
    }
    assert_eq!(answered, SipDialEvent::Answered);
    let _conn = bot.accept().await;
    assert!(d.commands.hangup("out-tcp"));
    d.event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await;
    sipp_done(sipp, "uas over TCP (answer, then voxbridge's BYE)").await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(
        (s.dials_answered, s.byes_sent, s.send_failures),
        (1, 1, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_busy_callee_is_reported_with_its_sip_code() {
    let bot = TestBot::start().await;
    let (port, sipp) = sipp_uas("uas_busy.xml");
    let d = daemon(&bot, port, false).await;
    let mut events = place(&d, dial("out-busy", Duration::from_secs(30)));
    assert_eq!(
        next(&mut events, "busy").await,
        SipDialEvent::Failed {
            code: Some(486),
            reason: "Busy Here".into()
        }
    );
    sipp_done(sipp, "uas_busy.xml (486 ACKed)").await;
}

#[tokio::test]
async fn the_gateways_digest_challenge_is_answered_and_its_codec_taken() {
    let mut bot = TestBot::start().await;
    let (port, sipp) = sipp_uas("uas_auth.xml");
    let mut d = daemon(&bot, port, true).await;
    let mut events = place(&d, dial("out-auth", Duration::from_secs(30)));
    assert_eq!(next(&mut events, "ringing").await, SipDialEvent::Ringing);
    assert_eq!(next(&mut events, "the answer").await, SipDialEvent::Answered);
    let _conn = bot.accept().await;
    let sessions = d.rtp.list();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].codec,
        voxbridge_proto::sdp::AudioCodec::Pcma,
        "the answer's codec"
    );
    assert!(d.commands.hangup("out-auth"));
    d.event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await;
    sipp_done(sipp, "uas_auth.xml (credentials verified, BYE)").await;
    assert_eq!(d.metrics.sip.lock().expect("metrics").dial_auth, 1);
}

#[tokio::test]
async fn no_answer_within_the_ring_timeout_cancels_the_call() {
    let bot = TestBot::start().await;
    let (port, sipp) = sipp_uas("uas_no_answer.xml");
    let d = daemon(&bot, port, false).await;
    let mut events = place(&d, dial("out-noanswer", Duration::from_millis(500)));
    // Ringing may come before the timeout or not (sipp may still be
    // starting: the INVITE's retransmission reaches it); the CANCEL waits
    // for the 180 either way.
    let mut failed = next(&mut events, "no answer").await;
    if failed == SipDialEvent::Ringing {
        failed = next(&mut events, "no answer").await;
    }
    assert!(
        matches!(&failed, SipDialEvent::Failed { code: Some(408), .. }),
        "{failed:?}"
    );
    sipp_done(sipp, "uas_no_answer.xml (CANCEL, 487 ACKed)").await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.dials, s.dials_failed, s.dials_cancelled), (1, 1, 1), "{s:?}");
    // Refused before anything is sent: a gateway or route that is not there.
    let mut bad = dial("out-bad", Duration::from_secs(1));
    bad.gateway = Some("nope".into());
    let err = d
        .commands
        .dial_sip(bad, Box::new(|_| {}))
        .expect_err("no such gateway");
    assert!(err.contains("nope"), "{err}");
    let mut bad = dial("out-bad", Duration::from_secs(1));
    bad.destination = "+1 555".into();
    assert!(d.commands.dial_sip(bad, Box::new(|_| {})).is_err());
}

#[tokio::test]
async fn voxbridge_registers_with_sipp_and_refreshes_the_binding() {
    let bot = TestBot::start().await;
    let (port, sipp) = sipp_uas("uas_register.xml");
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    let gateway = format!(
        "name = \"pbx\"\naddress = \"127.0.0.1:{port}\"\ndomain = \"pbx.example\"\n\
         username = \"acme\"\npassword = \"gw-secret\"\nregister = true\nregister_user = \"2001\"\n"
    );
    config.sip.gateways = vec![toml::from_str(&gateway).expect("a gateway")];
    let d = Daemon::with_config(config).await;
    // sipp ends its scenario only after the challenge was answered with
    // credentials it verified and the 2 s binding was refreshed.
    sipp_done(sipp, "uas_register.xml (challenge, binding, refresh)").await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(s.register_failures, 0, "{s:?}");
    assert!(s.registers_sent >= 3, "challenged, answered, refreshed: {s:?}");
}
