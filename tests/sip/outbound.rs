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

/// A daemon with SIP on and `gateways` (each a `[[sip.gateways]]` entry in TOML).
async fn daemon_with_gateways(bot: &TestBot, gateways: &[String]) -> Daemon {
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.sip.gateways = gateways
        .iter()
        .map(|g| toml::from_str(g).expect("a gateway"))
        .collect();
    Daemon::with_config(config).await
}

/// [`daemon`] with the gateway over `transport`.
async fn daemon_over(bot: &TestBot, port: u16, credentials: bool, transport: &str) -> Daemon {
    let gateway = format!(
        "name = \"carrier\"\naddress = \"127.0.0.1:{port}\"\ndomain = \"trunk.example\"\ntransport = \"{transport}\"\n{}",
        if credentials {
            "username = \"acme\"\npassword = \"gw-secret\"\n"
        } else {
            ""
        }
    );
    daemon_with_gateways(bot, &[gateway]).await
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
    let gateway = format!(
        "name = \"pbx\"\naddress = \"127.0.0.1:{port}\"\ndomain = \"pbx.example\"\n\
         username = \"acme\"\npassword = \"gw-secret\"\nregister = true\nregister_user = \"2001\"\n"
    );
    let d = daemon_with_gateways(&bot, &[gateway]).await;
    // sipp ends its scenario only after the challenge was answered with
    // credentials it verified and the 2 s binding was refreshed.
    sipp_done(sipp, "uas_register.xml (challenge, binding, refresh)").await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(s.register_failures, 0, "{s:?}");
    assert!(s.registers_sent >= 3, "challenged, answered, refreshed: {s:?}");
}

/// A gateway reached over TLS, played by the test with the fixture
/// certificate (`tests/fixtures/tls/`, for `localhost` and `127.0.0.1`):
/// voxbridge checks it against the fixture CA (`tls_ca`), sends its INVITE
/// with a TLS `Via`, and the ACK and its BYE come on the same connection.
/// The same gateway named otherwise (`tls_server_name`) fails the
/// handshake, and the dial fails: the certificate is really checked.
/// A TLS server with the fixture certificate (for `localhost` and
/// `127.0.0.1`, signed by `tests/fixtures/tls/ca.pem`): the test's gateway.
fn fixture_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(crate::fixture("server.pem"))
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .expect("the fixture certificate");
    let key = PrivateKeyDer::from_pem_file(crate::fixture("server.key")).expect("the fixture key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a TLS identity");
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server))
}

#[tokio::test]
async fn a_placed_call_over_tls_checks_the_gateways_certificate() {
    use tokio::io::AsyncWriteExt;
    use voxbridge_proto::sip::message::{Message, MessageBuilder, Method};

    let acceptor = fixture_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let impostor = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let impostor_port = impostor.local_addr().expect("addr").port();

    let mut bot = TestBot::start().await;
    let ca = crate::fixture("ca.pem");
    let gateway = |name: &str, port: u16, server_name: &str| {
        format!(
            "name = \"{name}\"\naddress = \"127.0.0.1:{port}\"\ndomain = \"trunk.example\"\n\
             transport = \"tls\"\ntls_ca = {:?}\ntls_server_name = \"{server_name}\"\n",
            ca.display().to_string()
        )
    };
    let gateways = [
        gateway("carrier", port, "127.0.0.1"),
        gateway("impostor", impostor_port, "wrong.example"),
    ];
    let mut d = daemon_with_gateways(&bot, &gateways).await;

    let mut events = place(&d, dial("out-tls", Duration::from_secs(30)));
    let (tcp, _) = within("voxbridge's connection", listener.accept())
        .await
        .expect("accept");
    let mut tls = within("the TLS handshake", acceptor.accept(tcp))
        .await
        .expect("voxbridge completes the handshake");
    let mut buf = bytes::BytesMut::new();
    let invite = crate::next_on_stream(&mut tls, &mut buf).await;
    assert_eq!(invite.method(), Some(&Method::Invite));
    let via = invite.top_via().expect("Via");
    assert!(via.transport.eq_ignore_ascii_case("TLS"), "{invite:?}");
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("rtp");
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        media.local_addr().expect("addr").port()
    );
    let ok = MessageBuilder::response_to(&invite, 200, "OK", Some("gw1"), None)
        .header("Contact", format_args!("<sip:gw@127.0.0.1:{port};transport=tls>"))
        .body("application/sdp", answer)
        .build();
    tls.write_all(&ok).await.expect("write");
    let ack = crate::next_on_stream(&mut tls, &mut buf).await;
    assert_eq!(ack.method(), Some(&Method::Ack), "the ACK on the connection");
    let mut answered = next(&mut events, "the answer").await;
    if answered == SipDialEvent::Ringing {
        answered = next(&mut events, "the answer").await;
    }
    assert_eq!(answered, SipDialEvent::Answered);
    let _conn = bot.accept().await;
    assert!(d.commands.hangup("out-tls"));
    let bye: Message = crate::next_on_stream(&mut tls, &mut buf).await;
    assert_eq!(
        bye.method(),
        Some(&Method::Bye),
        "voxbridge's BYE on the connection"
    );
    tls.write_all(&MessageBuilder::response_to(&bye, 200, "OK", None, None).build())
        .await
        .expect("write");
    d.event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await;

    // A certificate that does not carry the name: no call.
    let mut refused = place(
        &d,
        SipDial {
            gateway: Some("impostor".into()),
            ..dial("out-impostor", Duration::from_secs(30))
        },
    );
    let (tcp, _) = within("voxbridge's connection to the impostor", impostor.accept())
        .await
        .expect("accept");
    let handshake = within("the refused handshake", acceptor.accept(tcp)).await;
    assert!(
        handshake.is_err(),
        "voxbridge refuses a certificate without the name"
    );
    assert!(
        matches!(
            next(&mut refused, "the failure").await,
            SipDialEvent::Failed { .. }
        ),
        "the dial fails"
    );
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.dials, s.dials_answered, s.byes_sent), (2, 1, 1), "{s:?}");
}

/// Registration over TLS: voxbridge opens the connection to the registrar
/// (the test, with the fixture certificate checked against `tls_ca`),
/// REGISTERs with a TLS `Via` and Contact, and refreshes the 2 s binding it
/// is granted on the same connection.
#[tokio::test]
async fn voxbridge_registers_over_tls_and_refreshes_on_the_connection() {
    use tokio::io::AsyncWriteExt;
    use voxbridge_proto::sip::message::{HeaderName, MessageBuilder, Method};
    let acceptor = fixture_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bot = TestBot::start().await;
    let gateway = format!(
        "name = \"pbx\"\naddress = \"127.0.0.1:{port}\"\ndomain = \"pbx.example\"\ntransport = \"tls\"\n\
         tls_ca = {:?}\nregister = true\nregister_user = \"2001\"\n",
        crate::fixture("ca.pem").display().to_string()
    );
    let d = daemon_with_gateways(&bot, &[gateway]).await;
    let (tcp, _) = within("voxbridge's connection", listener.accept())
        .await
        .expect("accept");
    let mut tls = within("the TLS handshake", acceptor.accept(tcp))
        .await
        .expect("voxbridge completes the handshake");
    let mut buf = bytes::BytesMut::new();
    for round in ["the registration", "its refresh"] {
        let register = crate::next_on_stream(&mut tls, &mut buf).await;
        assert_eq!(register.method(), Some(&Method::Register), "{round}");
        assert!(
            register
                .top_via()
                .expect("Via")
                .transport
                .eq_ignore_ascii_case("TLS"),
            "{round}: {register:?}"
        );
        assert!(
            register
                .header(HeaderName::Contact)
                .is_some_and(|c| c.contains("transport=tls")),
            "{round}: {register:?}"
        );
        let ok = MessageBuilder::response_to(&register, 200, "OK", None, None)
            .header("Expires", 2)
            .build();
        tls.write_all(&ok).await.expect("write");
    }
    let s = *d.metrics.sip.lock().expect("metrics");
    assert!(s.registers_sent >= 2, "{s:?}");
    assert_eq!(s.register_failures, 0, "{s:?}");
}
