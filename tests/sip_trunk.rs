//! The SIP trunk endpoint end to end: a scripted UAC (a UDP socket, or a
//! TLS connection through rustls, in the test, speaking RFC 3261 as a
//! carrier's SBC does) and sipp, a SIP tool no one here wrote (Debian's
//! `sip-tester`, installed by the test command; over UDP and TCP, as
//! Debian builds it without TLS), against the daemon with a scripted
//! pipecat bot.
//!
//! Every wait has the harness's 10 s guard; nothing sleeps to synchronise.

#[path = "sip/baresip.rs"]
mod baresip;
mod harness;
#[path = "sip/outbound.rs"]
mod outbound;

use bytes::Bytes;
use harness::sipp::{sipp, sipp_one_call, sipp_report};
use harness::{pipecat_audio, pipecat_next, pipecat_route, speech_8k, within, Daemon, TestBot};
use std::net::SocketAddr;
use tokio::net::UdpSocket;
use voxbridge_media::{CallEvent, Config, HangupCause};
use voxbridge_proto::pipecat::Kind;
use voxbridge_proto::rtp::RtpHeader;
use voxbridge_proto::sdp::AudioOffer;
use voxbridge_proto::sip::message::{HeaderName, Message, MessageBuilder, Method};
use voxbridge_proto::sip::NameAddr;

async fn daemon(bot: &TestBot) -> Daemon {
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    Daemon::with_config(config).await
}

/// A UAC: one socket for SIP, one for RTP.
struct Uac {
    sip: UdpSocket,
    rtp: UdpSocket,
    daemon: SocketAddr,
    call_id: String,
}

impl Uac {
    async fn new(daemon: SocketAddr, call_id: &str) -> Uac {
        Uac {
            sip: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            rtp: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            daemon,
            call_id: call_id.into(),
        }
    }

    fn offer(&self) -> String {
        let port = self.rtp.local_addr().expect("addr").port();
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
        )
    }

    fn request(&self, method: Method, branch: &str, cseq: u32, to_tag: Option<&str>) -> MessageBuilder {
        let me = self.sip.local_addr().expect("addr");
        let dialog = UacDialog {
            transport: "UDP",
            me,
            daemon: self.daemon,
            call_id: &self.call_id,
        };
        dialog.request(method, branch, cseq, to_tag)
    }

    async fn send(&self, bytes: Bytes) {
        self.sip.send_to(&bytes, self.daemon).await.expect("send");
    }

    async fn recv(&self) -> Message {
        let mut buf = vec![0u8; 65536];
        let (n, _) = within("a SIP message from the daemon", self.sip.recv_from(&mut buf))
            .await
            .expect("recv");
        Message::parse(Bytes::copy_from_slice(&buf[..n])).expect("the daemon sends valid SIP")
    }

    /// The next response with a final code (provisional ones skipped).
    async fn final_response(&self) -> Message {
        loop {
            let m = self.recv().await;
            if m.status().is_some_and(|c| c >= 200) {
                return m;
            }
        }
    }

    /// INVITE -> 200 -> ACK; returns our To tag and where the daemon takes RTP.
    async fn call(&self) -> (String, SocketAddr) {
        let invite = self
            .request(Method::Invite, "inv", 1, None)
            .header("X-Customer", "42")
            .body("application/sdp", self.offer())
            .build();
        self.send(invite).await;
        let first = self.recv().await;
        assert_eq!(first.status(), Some(100), "100 Trying comes first");
        let ok = self.final_response().await;
        assert_eq!(ok.status(), Some(200));
        let tag = NameAddr::parse(ok.header(HeaderName::To).expect("To"))
            .expect("To")
            .tag()
            .expect("the 200 carries our dialog's tag")
            .to_owned();
        let answer = std::str::from_utf8(ok.body()).expect("SDP text");
        let media = AudioOffer::parse(answer).expect("the answer is SDP");
        let rtp = media
            .negotiate(&[voxbridge_proto::sdp::AudioCodec::Pcmu])
            .expect("PCMU");
        self.send(self.request(Method::Ack, "ack", 1, Some(&tag)).build())
            .await;
        (tag, rtp.remote)
    }
}

/// What a UAC's requests are made of.
struct UacDialog<'a> {
    transport: &'a str,
    me: SocketAddr,
    daemon: SocketAddr,
    call_id: &'a str,
}

impl UacDialog<'_> {
    fn request(&self, method: Method, branch: &str, cseq: u32, to_tag: Option<&str>) -> MessageBuilder {
        let (me, daemon) = (self.me, self.daemon);
        let to = match to_tag {
            Some(t) => format!("<sip:+4930123@{daemon}>;tag={t}"),
            None => format!("<sip:+4930123@{daemon}>"),
        };
        let param = self.transport.to_ascii_lowercase();
        MessageBuilder::request(&method, &format!("sip:+4930123@{daemon};transport={param}"))
            .header(
                "Via",
                format_args!("SIP/2.0/{} {me};branch=z9hG4bK{branch};rport", self.transport),
            )
            .header("Max-Forwards", 70)
            .header("From", "\"Alice\" <sip:+15550100@carrier.example>;tag=uac1")
            .header("To", to)
            .header("Call-ID", self.call_id)
            .header("CSeq", format_args!("{cseq} {method}"))
            .header("Contact", format_args!("<sip:alice@{me};transport={param}>"))
    }
}

fn pcmu(seq: u16, pcm: &[i16]) -> Vec<u8> {
    let payload: Vec<u8> = pcm
        .iter()
        .map(|s| voxbridge_codecs::g711::linear_to_ulaw(*s))
        .collect();
    let mut v = Vec::new();
    RtpHeader {
        marker: seq == 0,
        payload_type: 0,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 0x5151,
    }
    .write(&payload, &mut v);
    v
}

/// Sends 200 ms of PCMU speech from `rtp` to `to`, then waits until
/// `frames` frames with sound in them reach the bot.
async fn speech_reaches_the_bot(rtp: &UdpSocket, to: SocketAddr, conn: &mut harness::BotConn, frames: usize) {
    for (i, frame) in speech_8k(10).chunks(160).enumerate() {
        rtp.send_to(&pcmu(i as u16, frame), to).await.expect("rtp");
    }
    let mut heard = 0;
    while heard < frames {
        match within("caller audio at the bot", pipecat_next(conn)).await {
            Some(Kind::Audio(a)) if a.audio.iter().any(|&b| b != 0) => heard += 1,
            Some(_) => {}
            None => panic!("bot link closed"),
        }
    }
}

async fn hangup(d: &mut Daemon) -> (String, HangupCause) {
    match d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await {
        CallEvent::Hungup { call_id, cause, .. } => (call_id, cause),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_trunk_call_reaches_the_bot_and_the_callers_bye_ends_it() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot).await;
    let uac = Uac::new(d.sip.expect("SIP on"), "trunk-1@carrier").await;
    let (tag, rtp_at) = uac.call().await;
    let created = d
        .event("call created", |e| matches!(e, CallEvent::Created { .. }))
        .await;
    let CallEvent::Created { info, .. } = created else {
        unreachable!()
    };
    assert_eq!(info.ingress, "sip");
    assert_eq!(info.caller.as_deref(), Some("+15550100"));
    assert_eq!(info.callee.as_deref(), Some("+4930123"));
    assert_eq!(info.params.get("X-Customer").map(String::as_str), Some("42"));
    let mut conn = bot.accept().await;
    speech_reaches_the_bot(&uac.rtp, rtp_at, &mut conn, 3).await;
    // A key press by SIP INFO (the PBX's DTMF fallback) reaches the call.
    let info = uac
        .request(Method::Info, "info", 2, Some(&tag))
        .body("application/dtmf-relay", "Signal=7\r\nDuration=160\r\n")
        .build();
    uac.send(info).await;
    assert_eq!(uac.final_response().await.status(), Some(200));
    d.event("the INFO digit", |e| {
        matches!(e, CallEvent::Dtmf { digit: '7', .. })
    })
    .await;
    // The carrier's BYE says why (RFC 3326): it reaches the hangup event.
    let q850 = "Q.850;cause=16;text=\"Normal call clearing\"";
    uac.send(
        uac.request(Method::Bye, "bye", 3, Some(&tag))
            .header("Reason", q850)
            .build(),
    )
    .await;
    let ok = uac.final_response().await;
    assert_eq!(
        (ok.status(), ok.cseq().expect("cseq").method),
        (Some(200), Method::Bye)
    );
    let CallEvent::Hungup {
        call_id, cause, sip, ..
    } = d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await
    else {
        unreachable!()
    };
    assert!(call_id.starts_with("sip-"), "{call_id}");
    assert_eq!(cause, HangupCause::CallerHangup);
    let sip = sip.expect("the SIP cause is on the hangup event");
    assert_eq!((sip.code, sip.reason.as_str()), (None, q850));
    // The dialog is gone: a second BYE is for a dialog that does not exist.
    uac.send(uac.request(Method::Bye, "bye2", 4, Some(&tag)).build())
        .await;
    assert_eq!(uac.final_response().await.status(), Some(481));
}

#[tokio::test]
async fn the_bots_hangup_sends_bye_and_options_cancel_and_garbage_are_answered() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot).await;
    let sip = d.sip.expect("SIP on");
    let uac = Uac::new(sip, "trunk-2@carrier").await;
    let (tag, _) = uac.call().await;
    let conn = bot.accept().await;
    drop(conn); // the bot goes away: policy hang up
    let bye = loop {
        let m = uac.recv().await;
        if m.method() == Some(&Method::Bye) {
            break m;
        }
    };
    let from = NameAddr::parse(bye.header(HeaderName::From).expect("From")).expect("From");
    assert_eq!(from.tag(), Some(tag.as_str()), "the BYE is in our dialog");
    uac.send(MessageBuilder::response_to(&bye, 200, "OK", None, None).build())
        .await;
    let (_, cause) = hangup(&mut d).await;
    assert_ne!(cause, HangupCause::CallerHangup);

    // OPTIONS (an SBC's health check), garbage, then a CANCELled INVITE.
    let other = Uac::new(sip, "trunk-3@carrier").await;
    other.send(Bytes::from_static(b"NOT SIP AT ALL\r\n\r\n")).await;
    other
        .send(other.request(Method::Options, "opt", 1, None).build())
        .await;
    let opt = other.final_response().await;
    assert_eq!(opt.status(), Some(200));
    assert!(opt
        .header(HeaderName::Allow)
        .is_some_and(|a| a.contains("INVITE")));
    let invite = other
        .request(Method::Invite, "inv3", 1, None)
        .body("application/sdp", other.offer())
        .build();
    other.send(invite).await;
    assert_eq!(other.recv().await.status(), Some(100));
    other
        .send(other.request(Method::Cancel, "inv3", 1, None).build())
        .await;
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let m = other.final_response().await;
        finals.push((m.status(), m.cseq().expect("cseq").method));
    }
    assert!(finals.contains(&(Some(200), Method::Cancel)), "{finals:?}");
    // Either the CANCEL came in time (487) or the call was already
    // answered (200, which the caller then ends with BYE).
    let invite_final = finals
        .iter()
        .find(|(_, m)| *m == Method::Invite)
        .and_then(|(c, _)| *c);
    assert!(matches!(invite_final, Some(487) | Some(200)), "{finals:?}");
    let sip_stats = *d.metrics.sip.lock().expect("metrics");
    assert!(sip_stats.malformed >= 1, "{sip_stats:?}");
    assert!(sip_stats.byes_sent >= 1, "{sip_stats:?}");
}

/// Zero crossings in `pcm` (a 400 Hz tone at 8 kHz has 16 in a 20 ms frame).
fn crossings(pcm: &[i16]) -> usize {
    pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
}

fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
}

/// A running PCMU call whose caller re-INVITEs with G.722 alone: the
/// answer takes G.722 on the same port, the caller's G.722 (a 16 kHz tone)
/// reaches the bot decoded (its pitch intact at the bot's 8 kHz), and the
/// bot's audio comes back to the caller as G.722.
#[tokio::test]
async fn a_reinvite_with_another_codec_switches_the_call_both_ways() {
    use voxbridge_codecs::{Codec, FrameDecoder, FrameEncoder};
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot).await;
    let uac = Uac::new(d.sip.expect("SIP on"), "trunk-codec@carrier").await;
    let (tag, rtp_at) = uac.call().await;
    let mut conn = bot.accept().await;
    let port = uac.rtp.local_addr().expect("addr").port();
    let offer = format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
    );
    uac.send(
        uac.request(Method::Invite, "reinv", 2, Some(&tag))
            .body("application/sdp", offer)
            .build(),
    )
    .await;
    let ok = uac.final_response().await;
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    let answer = AudioOffer::parse(std::str::from_utf8(ok.body()).expect("SDP text")).expect("SDP");
    let n = answer
        .negotiate(&[voxbridge_proto::sdp::AudioCodec::G722])
        .expect("the answer takes G.722");
    assert_eq!(
        (answer.formats[0], n.remote),
        (9, rtp_at),
        "G.722 on the same port"
    );
    uac.send(uac.request(Method::Ack, "reack", 2, Some(&tag)).build())
        .await;

    // The caller sends a 1 kHz tone as G.722, paced at 20 ms, until the
    // bot has heard it and the caller has heard the bot back.
    let tone16: Vec<i16> = (0..16_000)
        .map(|i| ((f64::from(i) * 1000.0 * std::f64::consts::TAU / 16_000.0).sin() * 8000.0) as i16)
        .collect();
    let bot_tone: Vec<i16> = (0..8000)
        .map(|i| ((f64::from(i) * 400.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let mut encoder = FrameEncoder::new(Codec::G722).expect("G.722 encoder");
    let mut decoder = FrameDecoder::new(Codec::G722).expect("G.722 decoder");
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(20));
    let (mut seq, mut bot_heard, mut caller_heard) = (0u16, None, false);
    let mut loud = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut pcm = vec![0i16; 960];
    within("G.722 both ways after the re-INVITE", async {
        while !caller_heard {
            tokio::select! {
                _ = pace.tick() => {
                    let at = (usize::from(seq) * 320) % (tone16.len() - 320);
                    let mut payload = [0u8; 160];
                    let n = encoder.encode(&tone16[at..at + 320], &mut payload).expect("encode");
                    let mut packet = Vec::new();
                    RtpHeader {
                        marker: seq == 0,
                        payload_type: 9,
                        sequence: seq,
                        timestamp: u32::from(seq) * 160,
                        ssrc: 0x0722,
                    }
                    .write(&payload[..n], &mut packet);
                    uac.rtp.send_to(&packet, rtp_at).await.expect("rtp");
                    seq = seq.wrapping_add(1);
                }
                frame = pipecat_next(&mut conn) => match frame {
                    Some(Kind::Audio(a)) if bot_heard.is_none() => {
                        let got: Vec<i16> = a.audio.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                        if rms(&got) > 1000.0 {
                            loud.push(crossings(&got));
                        }
                        // 1 kHz at the bot's 8 kHz: 40 crossings per 20 ms
                        // (G.722 bytes read as PCMU would be noise); the
                        // median of 5 frames (the first may be half ramp).
                        if loud.len() == 5 {
                            loud.sort_unstable();
                            bot_heard = Some(loud[2]);
                            conn.send(pipecat_audio(&bot_tone, 8000)).await;
                        }
                    }
                    Some(_) => {}
                    None => panic!("bot link closed"),
                },
                got = uac.rtp.recv_from(&mut buf) => {
                    let (n, _) = got.expect("rtp recv");
                    if n > 12 && buf[1] & 0x7f == 9 && bot_heard.is_some() {
                        let k = decoder.decode(&buf[12..n], &mut pcm).expect("voxbridge sends valid G.722");
                        caller_heard = rms(&pcm[..k]) > 1000.0;
                    }
                }
            }
        }
    })
    .await;
    let crossings_at_bot = bot_heard.expect("the bot heard the caller");
    assert!(
        (36..=44).contains(&crossings_at_bot),
        "a 1 kHz tone has 40 crossings per 20 ms frame at 8 kHz: {crossings_at_bot}"
    );
    let sip_stats = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(sip_stats.codec_changes, 1, "{sip_stats:?}");
    uac.send(uac.request(Method::Bye, "bye", 3, Some(&tag)).build())
        .await;
    let (_, cause) = hangup(&mut d).await;
    assert_eq!(cause, HangupCause::CallerHangup);
}

/// sipp's own UAC scenario (INVITE with SDP, ACK, a pause, BYE) for three
/// calls: sipp exits 0 only when every call completed as its scenario says.
#[tokio::test]
async fn sipp_calls_the_trunk() {
    let mut bot = TestBot::start().await;
    let d = daemon(&bot).await;
    let sip = d.sip.expect("SIP on");
    let bots = tokio::spawn(async move {
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(bot.accept().await);
        }
        conns
    });
    let media_port = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let args = format!("-sn uac -s bot -mp {media_port} -m 3 -l 3 -r 10 -d 300 -timeout 8s");
    let out = sipp(
        "sipp to finish its three calls",
        sip,
        args.split(' ').map(String::from).collect(),
    )
    .await;
    assert!(out.status.success(), "sipp failed: {}", sipp_report(&out));
    let conns = within("three bot connections", bots).await.expect("bot task");
    assert_eq!(conns.len(), 3);
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.invites, s.answered, s.byes_received), (3, 3, 3), "{s:?}");
}

/// `[[sip.routes]]`: the number dialled picks the bot.
#[tokio::test]
async fn a_route_rule_picks_the_bot_by_the_number_dialled() {
    let default_bot = TestBot::start().await;
    let mut berlin_bot = TestBot::start().await;
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&default_bot.url, 8000));
    config
        .routes
        .insert("berlin".into(), pipecat_route(&berlin_bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.sip.routes = vec![voxbridge_media::config::SipRouteConfig {
        user: Some("+4930*".into()),
        route: "berlin".into(),
        ..Default::default()
    }];
    let mut d = Daemon::with_config(config).await;
    let uac = Uac::new(d.sip.expect("SIP on"), "trunk-4@carrier").await;
    uac.call().await;
    let CallEvent::Created { info, .. } = d
        .event("call created", |e| matches!(e, CallEvent::Created { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(info.route, "berlin");
    berlin_bot.accept().await;
}

/// Delayed offer: an INVITE without SDP gets voxbridge's offer in the 200,
/// the ACK carries the answer, and the caller's RTP reaches the bot.
#[tokio::test]
async fn a_delayed_offer_call_reaches_the_bot() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot).await;
    let uac = Uac::new(d.sip.expect("SIP on"), "trunk-5@carrier").await;
    uac.send(uac.request(Method::Invite, "dinv", 1, None).build())
        .await;
    let ok = uac.final_response().await;
    assert_eq!(ok.status(), Some(200));
    let offer =
        AudioOffer::parse(std::str::from_utf8(ok.body()).expect("SDP text")).expect("voxbridge offers SDP");
    let ours = offer
        .negotiate(&[voxbridge_proto::sdp::AudioCodec::Pcmu])
        .expect("PCMU offered");
    let tag = NameAddr::parse(ok.header(HeaderName::To).expect("To"))
        .expect("To")
        .tag()
        .expect("tag")
        .to_owned();
    let answer = uac.offer();
    uac.send(
        uac.request(Method::Ack, "dack", 1, Some(&tag))
            .body("application/sdp", answer)
            .build(),
    )
    .await;
    let mut conn = bot.accept().await;
    speech_reaches_the_bot(&uac.rtp, ours.remote, &mut conn, 1).await;
    uac.send(uac.request(Method::Bye, "dbye", 2, Some(&tag)).build())
        .await;
    assert_eq!(uac.final_response().await.status(), Some(200));
    assert_eq!(hangup(&mut d).await.1, HangupCause::CallerHangup);
}

/// Shutdown: new INVITEs get 503 with Retry-After, the call that is up
/// gets its BYE when the grace period ends, and the daemon stops.
#[tokio::test]
async fn shutdown_refuses_new_calls_and_byes_the_ones_up() {
    let mut bot = TestBot::start().await;
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.limits.shutdown_grace_ms = 300;
    let d = Daemon::with_config(config).await;
    let sip = d.sip.expect("SIP on");
    let uac = Uac::new(sip, "trunk-6@carrier").await;
    let (tag, _) = uac.call().await;
    let _conn = bot.accept().await;
    d.shutdown.shutdown();
    let mut attempt = 0;
    let busy = loop {
        attempt += 1;
        let late = Uac::new(sip, &format!("trunk-7-{attempt}@carrier")).await;
        late.send(
            late.request(Method::Invite, &format!("late{attempt}"), 1, None)
                .body("application/sdp", late.offer())
                .build(),
        )
        .await;
        let m = late.final_response().await;
        // The stop may not have reached the endpoint yet: then this call
        // is answered; end it and try again with a new call.
        if m.status() == Some(200) {
            let t = NameAddr::parse(m.header(HeaderName::To).expect("To"))
                .expect("To")
                .tag()
                .expect("tag")
                .to_owned();
            late.send(late.request(Method::Ack, "lack", 1, Some(&t)).build())
                .await;
            late.send(late.request(Method::Bye, "lbye", 2, Some(&t)).build())
                .await;
            continue;
        }
        break m;
    };
    assert_eq!(busy.status(), Some(503));
    assert!(busy.header(HeaderName::RetryAfter).is_some());
    let bye = loop {
        let m = uac.recv().await;
        if m.method() == Some(&Method::Bye) {
            break m;
        }
    };
    assert!(bye.header(HeaderName::From).expect("From").contains(&tag));
    uac.send(MessageBuilder::response_to(&bye, 200, "OK", None, None).build())
        .await;
    within("the daemon to stop", d.task).await.expect("daemon task");
}

/// Digest authentication against sipp's own digest code: sipp answers the
/// 401 (the default order, MD5 first: sipp reads only the first challenge
/// and knows no SHA-256) and its calls go through; with a wrong password
/// they fail.
#[tokio::test]
async fn sipp_answers_the_digest_challenge() {
    let mut bot = TestBot::start().await;
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.sip.auth = Some(voxbridge_media::config::SipAuthConfig {
        realm: "voxbridge".into(),
        users: [("trunk".to_owned(), "s3cret".into())].into_iter().collect(),
        algorithms: vec!["MD5".into(), "SHA-256".into()],
    });
    let d = Daemon::with_config(config).await;
    let sip = d.sip.expect("SIP on");
    let bots = tokio::spawn(async move {
        let mut conns = Vec::new();
        for _ in 0..2 {
            conns.push(bot.accept().await);
        }
        conns
    });
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sipp/uac_auth.xml");
    // Built as a list: the scenario's path may hold spaces.
    let args = |password: &str| {
        let mut a = vec!["-sf".to_owned(), scenario.to_owned()];
        let rest = format!("-s bot -au trunk -ap {password} -m 2 -l 2 -r 10 -timeout 4s");
        a.extend(rest.split(' ').map(String::from));
        a
    };
    let good = sipp("sipp with the right password", sip, args("s3cret")).await;
    assert!(good.status.success(), "sipp failed: {}", sipp_report(&good));
    within("two bot connections", bots).await.expect("bot task");
    let bad = sipp("sipp with a wrong password", sip, args("wrong")).await;
    assert!(
        !bad.status.success(),
        "a wrong password must not get a call through"
    );
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(s.answered, 2, "{s:?}");
    assert!(s.auth_failures >= 1, "{s:?}");
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A daemon with SIP over UDP, TCP and TLS (the fixture certificate).
async fn daemon_with_streams(bot: &TestBot) -> Daemon {
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.sip.tcp_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.sip.tls_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.sip.tls_cert = Some(fixture("server.pem"));
    config.sip.tls_key = Some(fixture("server.key"));
    Daemon::with_config(config).await
}

/// A TLS client that trusts only the fixture CA and checks the daemon's
/// certificate names `localhost`, as a carrier checks its trunk's.
async fn tls_connect(addr: SocketAddr) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("ca.pem")).expect("the fixture CA"))
        .expect("a usable CA");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    within(
        "the TLS handshake",
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the daemon's certificate verifies against the fixture CA")
}

/// Reads the next SIP message off a stream, framed by `Content-Length`.
async fn next_on_stream<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut bytes::BytesMut,
) -> Message {
    use tokio::io::AsyncReadExt;
    within("a SIP message on the stream", async {
        loop {
            if let Some(m) = voxbridge_proto::sip::decode_stream(buf).expect("the daemon frames its messages")
            {
                return m;
            }
            let n = stream.read_buf(buf).await.expect("read");
            assert!(n > 0, "the daemon closed the connection");
        }
    })
    .await
}

/// SIP over TLS (rustls on both ends, the daemon's certificate checked
/// against the fixture CA): a call is answered with a TLS Contact, its
/// audio reaches the bot, the caller's BYE ends it; then a client that
/// breaks the framing on a TCP connection is counted and cut off.
#[tokio::test]
async fn a_call_over_tls_and_a_broken_stream_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bot = TestBot::start().await;
    let mut d = daemon_with_streams(&bot).await;
    let tls_at = d.sip_tls.expect("TLS on");
    let mut tls = tls_connect(tls_at).await;
    let me = tls.get_ref().0.local_addr().expect("addr");
    let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let dialog = UacDialog {
        transport: "TLS",
        me,
        daemon: tls_at,
        call_id: "tls-1@carrier",
    };
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        rtp.local_addr().expect("addr").port()
    );
    let invite = dialog
        .request(Method::Invite, "tinv", 1, None)
        .body("application/sdp", offer)
        .build();
    tls.write_all(&invite).await.expect("write");
    let mut buf = bytes::BytesMut::new();
    assert_eq!(next_on_stream(&mut tls, &mut buf).await.status(), Some(100));
    assert_eq!(next_on_stream(&mut tls, &mut buf).await.status(), Some(180));
    let ok = next_on_stream(&mut tls, &mut buf).await;
    assert_eq!(ok.status(), Some(200));
    let contact = ok.header(HeaderName::Contact).expect("Contact");
    assert!(
        contact.contains("transport=tls") && contact.contains(&format!(":{}", tls_at.port())),
        "the Contact names the TLS listener: {contact}"
    );
    let tag = NameAddr::parse(ok.header(HeaderName::To).expect("To"))
        .expect("To")
        .tag()
        .expect("tag")
        .to_owned();
    let answer = AudioOffer::parse(std::str::from_utf8(ok.body()).expect("SDP")).expect("SDP answer");
    let media = answer
        .negotiate(&[voxbridge_proto::sdp::AudioCodec::Pcmu])
        .expect("PCMU");
    let ack = dialog.request(Method::Ack, "tack", 1, Some(&tag)).build();
    tls.write_all(&ack).await.expect("write");
    let mut conn = bot.accept().await;
    speech_reaches_the_bot(&rtp, media.remote, &mut conn, 1).await;
    let bye = dialog.request(Method::Bye, "tbye", 2, Some(&tag)).build();
    tls.write_all(&bye).await.expect("write");
    let bye_ok = next_on_stream(&mut tls, &mut buf).await;
    assert_eq!(
        (bye_ok.status(), bye_ok.cseq().expect("cseq").method),
        (Some(200), Method::Bye)
    );
    assert_eq!(hangup(&mut d).await.1, HangupCause::CallerHangup);

    // A request without Content-Length cannot be framed on a stream: the
    // daemon answers 400 (the request has what a response needs), counts
    // it and closes the connection (it cannot find the next message's
    // start).
    let mut tcp = tokio::net::TcpStream::connect(d.sip_tcp.expect("TCP on"))
        .await
        .expect("connect");
    tcp.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    within(
        "the daemon to close the broken stream",
        tcp.read_to_end(&mut rest),
    )
    .await
    .expect("a clean close after the 400");
    let mut rest = bytes::BytesMut::from(&rest[..]);
    let r = voxbridge_proto::sip::decode_stream(&mut rest)
        .expect("framed")
        .expect("a 400 before the close");
    assert_eq!((r.status(), r.call_id()), (Some(400), "c"));
    assert!(rest.is_empty(), "nothing after the 400");
    let s = *d.metrics.sip.lock().expect("metrics");
    assert!(s.malformed >= 1, "{s:?}");
    assert_eq!((s.answered, s.byes_received), (1, 1), "{s:?}");
}

/// A caller over TCP whose connection closes while its call goes on (an
/// SBC may do that): the bot's hangup still reaches it, as a BYE on a new
/// connection voxbridge opens to the call's Contact, which the caller
/// answers there.
#[tokio::test]
async fn a_tcp_callers_bye_goes_to_its_contact_once_its_connection_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bot = TestBot::start().await;
    let mut d = daemon_with_streams(&bot).await;
    let daemon = d.sip_tcp.expect("TCP on");
    let contact = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("rtp");
    let dialog = UacDialog {
        transport: "TCP",
        me: contact.local_addr().expect("addr"),
        daemon,
        call_id: "tcp-gone@carrier",
    };
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        rtp.local_addr().expect("addr").port()
    );
    let mut tcp = tokio::net::TcpStream::connect(daemon).await.expect("connect");
    let mut buf = bytes::BytesMut::new();
    tcp.write_all(
        &dialog
            .request(Method::Invite, "ginv", 1, None)
            .body("application/sdp", offer)
            .build(),
    )
    .await
    .expect("write");
    let ok = loop {
        let m = next_on_stream(&mut tcp, &mut buf).await;
        if m.status().is_some_and(|c| c >= 200) {
            break m;
        }
    };
    assert_eq!(ok.status(), Some(200));
    let tag = NameAddr::parse(ok.header(HeaderName::To).expect("To"))
        .expect("To")
        .tag()
        .expect("tag")
        .to_owned();
    tcp.write_all(&dialog.request(Method::Ack, "gack", 1, Some(&tag)).build())
        .await
        .expect("write");
    let conn = bot.accept().await;
    // The caller closes its connection; the daemon's side closes too.
    tcp.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    within("the daemon to close its side", tcp.read_to_end(&mut rest))
        .await
        .expect("a clean close");
    // The bot hangs up: the BYE comes on a connection to the Contact.
    drop(conn);
    let (mut back, _) = within("voxbridge's connection to the Contact", contact.accept())
        .await
        .expect("accept");
    let mut buf = bytes::BytesMut::new();
    let bye = next_on_stream(&mut back, &mut buf).await;
    assert_eq!(bye.method(), Some(&Method::Bye), "{bye:?}");
    assert!(
        bye.header(HeaderName::From).expect("From").contains(&tag),
        "in the call's dialog"
    );
    back.write_all(&MessageBuilder::response_to(&bye, 200, "OK", None, None).build())
        .await
        .expect("write");
    hangup(&mut d).await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.byes_sent, s.send_failures), (1, 0), "{s:?}");
}

/// sipp's own UAC scenario over TCP (`-t t1`: one connection for all its
/// calls): every call completes and each response comes back on it.
#[tokio::test]
async fn sipp_calls_the_trunk_over_tcp() {
    let mut bot = TestBot::start().await;
    let d = daemon_with_streams(&bot).await;
    let bots = tokio::spawn(async move {
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(bot.accept().await);
        }
        conns
    });
    let media_port = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let args = format!("-t t1 -sn uac -s bot -mp {media_port} -m 3 -l 3 -r 10 -d 300 -timeout 8s");
    let out = sipp(
        "sipp to finish its three calls over TCP",
        d.sip_tcp.expect("TCP on"),
        args.split(' ').map(String::from).collect(),
    )
    .await;
    assert!(out.status.success(), "sipp failed: {}", sipp_report(&out));
    within("three bot connections", bots).await.expect("bot task");
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.invites, s.answered, s.byes_received), (3, 3, 3), "{s:?}");
    assert_eq!(s.send_failures, 0, "{s:?}");
}

/// Runs a sipp scenario from tests/fixtures/sipp/ (or, for a name without
/// `.xml`, one of sipp's own) for `calls` calls at `sip`, the bot accepting
/// (and keeping, or with `drop_bot` hanging up) every call; returns sipp's
/// output once every bot connection came.
async fn sipp_scenario(
    bot: TestBot,
    sip: SocketAddr,
    scenario: &str,
    calls: usize,
    drop_bot: bool,
) -> std::process::Output {
    let mut bot = bot;
    let bots = tokio::spawn(async move {
        let mut conns = Vec::new();
        for _ in 0..calls {
            let conn = bot.accept().await;
            if !drop_bot {
                conns.push(conn);
            }
        }
        conns
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sipp")
        .join(scenario);
    let mut args = match scenario.ends_with(".xml") {
        true => vec!["-sf".to_owned(), path.display().to_string()],
        false => vec!["-sn".to_owned(), scenario.to_owned()],
    };
    let rest = format!("-s bot -m {calls} -l {calls} -r 20 -timeout 9s");
    args.extend(rest.split(' ').map(String::from));
    let out = sipp(scenario, sip, args).await;
    assert!(
        out.status.success(),
        "sipp {scenario} failed: {}",
        sipp_report(&out)
    );
    within("the bot connections", bots).await.expect("bot task");
    out
}

/// One call of sipp's `scenario` (in tests/fixtures/sipp) against `sip`,
/// which must pass; the bot side is the caller's to run.
async fn one_sipp_call(sip: SocketAddr, scenario: &'static str) {
    let out = sipp_one_call(sip, scenario).await;
    assert!(
        out.status.success(),
        "sipp {scenario} failed: {}",
        sipp_report(&out)
    );
}

async fn early_media_daemon(bot: &TestBot, early_media_ms: u32) -> Daemon {
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.sip.early_media_ms = early_media_ms;
    Daemon::with_config(config).await
}

/// Early media (`sip.early_media_ms`, a minute here): the SDP answer comes
/// in a `183`, and before any `200` the caller's speech reaches the bot and
/// the bot's audio reaches the caller; the caller's CANCEL then ends the
/// call (`487`).
#[tokio::test]
async fn early_media_flows_both_ways_before_the_answer() {
    let mut bot = TestBot::start().await;
    let mut d = early_media_daemon(&bot, 60_000).await;
    let uac = Uac::new(d.sip.expect("SIP on"), "early-1@carrier").await;
    let invite = uac
        .request(Method::Invite, "einv", 1, None)
        .body("application/sdp", uac.offer())
        .build();
    uac.send(invite).await;
    let progress = loop {
        let m = uac.recv().await;
        match m.status() {
            Some(183) => break m,
            Some(c) if c < 200 => {}
            other => panic!("a 183 before any final response, got {other:?}"),
        }
    };
    let answer =
        AudioOffer::parse(std::str::from_utf8(progress.body()).expect("SDP text")).expect("SDP in the 183");
    let rtp_at = answer
        .negotiate(&[voxbridge_proto::sdp::AudioCodec::Pcmu])
        .expect("PCMU")
        .remote;
    let mut conn = bot.accept().await;
    speech_reaches_the_bot(&uac.rtp, rtp_at, &mut conn, 1).await;
    let tone: Vec<i16> = (0..8000)
        .map(|i| ((f64::from(i) * 400.0 * std::f64::consts::TAU / 8000.0).sin() * 8000.0) as i16)
        .collect();
    conn.send(pipecat_audio(&tone, 8000)).await;
    let mut buf = vec![0u8; 2048];
    within("bot audio at the caller in early media", async {
        loop {
            let (n, _) = uac.rtp.recv_from(&mut buf).await.expect("rtp recv");
            let mut pcm = vec![0i16; n.saturating_sub(12)];
            voxbridge_codecs::g711::decode_ulaw(&buf[12.min(n)..n], &mut pcm);
            if n > 12 && rms(&pcm) > 1000.0 {
                return;
            }
        }
    })
    .await;
    uac.send(uac.request(Method::Cancel, "einv", 1, None).build())
        .await;
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let m = uac.final_response().await;
        finals.push((m.status(), m.cseq().expect("cseq").method));
    }
    assert!(finals.contains(&(Some(200), Method::Cancel)), "{finals:?}");
    assert!(
        finals.contains(&(Some(487), Method::Invite)),
        "no 200 for the INVITE: {finals:?}"
    );
    let (_, cause) = hangup(&mut d).await;
    assert_eq!(cause, HangupCause::CallerHangup);
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.early_media, s.answered, s.cancelled), (1, 0, 1), "{s:?}");
}

/// sipp takes the `183` with the answer, then the `200` (early media of
/// 300 ms), for two calls.
#[tokio::test]
async fn sipp_gets_early_media_then_the_answer() {
    let bot = TestBot::start().await;
    let d = early_media_daemon(&bot, 300).await;
    sipp_scenario(bot, d.sip.expect("SIP on"), "uac_early_media.xml", 2, false).await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.early_media, s.answered, s.byes_received), (2, 2, 2), "{s:?}");
}

/// Hold, resume and a codec change by re-INVITE, checked by sipp: the
/// `sendonly` offer is answered `recvonly`, the resume `sendrecv`, a PCMA
/// offer in a PCMU call PCMA.
#[tokio::test]
async fn sipp_holds_resumes_and_changes_codec() {
    let bot = TestBot::start().await;
    let d = daemon(&bot).await;
    sipp_scenario(bot, d.sip.expect("SIP on"), "uac_hold.xml", 2, false).await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(
        (s.answered, s.reinvites, s.codec_changes, s.byes_received),
        (2, 6, 2, 2),
        "{s:?}"
    );
}

/// `sip.session_expires_s`: sipp supports session timers but asks for
/// none; its scenario checks that the 200 gives it one to refresh (90 s,
/// `refresher=uac`, `Require: timer`) and that its refresh UPDATE is granted.
#[tokio::test]
async fn sipp_is_given_a_session_timer_it_did_not_ask_for() {
    let bot = TestBot::start().await;
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.sip.session_expires_s = 90;
    let d = Daemon::with_config(config).await;
    sipp_scenario(bot, d.sip.expect("SIP on"), "uac_session_timer.xml", 1, false).await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(
        (s.answered, s.byes_received, s.session_expired),
        (1, 1, 0),
        "{s:?}"
    );
}

/// The bot hangs up: voxbridge sends BYE in sipp's dialog, which sipp
/// answers (its scenario fails on anything else).
#[tokio::test]
async fn sipp_gets_voxbridges_bye_when_the_bot_hangs_up() {
    let bot = TestBot::start().await;
    let d = daemon(&bot).await;
    sipp_scenario(bot, d.sip.expect("SIP on"), "uac_bye_from_voxbridge.xml", 2, true).await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.answered, s.byes_sent, s.byes_received), (2, 2, 0), "{s:?}");
}

/// The bot asks to hand its call on to `target` (pipecat `voxbridge.transfer`).
async fn ask_transfer(conn: &mut harness::BotConn, target: &str) {
    let ask = serde_json::json!({"type": "voxbridge.transfer", "target": target});
    conn.send(harness::pipecat_msg(Kind::Message(
        voxbridge_proto::pipecat::MessageFrame {
            data: ask.to_string(),
        },
    )))
    .await;
}

/// The bot hands the call on to a person (pipecat `voxbridge.transfer`):
/// voxbridge sends REFER in sipp's dialog (sipp's scenario checks it and
/// accepts), answers sipp's NOTIFY whose sipfrag says the new call is up,
/// and ends its own call with BYE; the call's events say `transferred`.
#[tokio::test]
async fn the_bot_transfers_a_sipp_call_by_refer() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot).await;
    let sip = d.sip.expect("SIP on");
    let bots = tokio::spawn(async move {
        let mut conn = bot.accept().await;
        ask_transfer(&mut conn, "+15550123").await;
        conn
    });
    one_sipp_call(sip, "uac_transfer.xml").await;
    let _conn = within("the bot connection", bots).await.expect("bot task");
    let transferred = d
        .event("the transfer", |e| matches!(e, CallEvent::Transferred { .. }))
        .await;
    assert!(
        matches!(&transferred, CallEvent::Transferred { target, .. } if target.starts_with("sip:+15550123@")),
        "{transferred:?}"
    );
    let (_, cause) = hangup(&mut d).await;
    assert_eq!(cause, HangupCause::Transferred);
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(
        (s.transfers, s.transfers_completed, s.byes_sent),
        (1, 1, 1),
        "{s:?}"
    );
}

/// A transfer the far end reports failed (sipp's NOTIFY says `486 Busy
/// Here`): the call goes on, the bot gets `voxbridge.transfer_failed` with
/// the target and the status, and the caller's BYE ends the call as usual.
#[tokio::test]
async fn a_failed_transfer_is_told_to_the_bot_and_the_call_goes_on() {
    let mut bot = TestBot::start().await;
    let mut d = daemon(&bot).await;
    let sip = d.sip.expect("SIP on");
    let bots = tokio::spawn(async move {
        let mut conn = bot.accept().await;
        ask_transfer(&mut conn, "+15550123").await;
        // Audio frames and the start message come too; the failure is a message.
        loop {
            let Some(kind) = harness::pipecat_next(&mut conn).await else {
                panic!("the link closed before the bot heard of the failure")
            };
            if let Some(v) = harness::message_json(&kind).filter(|v| v["type"] == "voxbridge.transfer_failed")
            {
                // The link stays up: a bot that hangs up would end the call.
                return (v, conn);
            }
        }
    });
    one_sipp_call(sip, "uac_transfer_busy.xml").await;
    let (told, _conn) = within("the bot hearing of the failure", bots)
        .await
        .expect("bot task");
    assert!(
        told["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("sip:+15550123@")),
        "{told}"
    );
    assert_eq!(
        (told["code"].as_u64(), told["reason"].as_str()),
        (Some(486), Some("Busy Here")),
        "{told}"
    );
    let (_, cause) = hangup(&mut d).await;
    assert_eq!(
        cause,
        HangupCause::CallerHangup,
        "the call went on until the caller's BYE"
    );
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!(
        (s.transfers, s.transfers_completed, s.byes_received),
        (1, 0, 1),
        "{s:?}"
    );
}

/// sipp drops a tenth of its INVITEs, BYEs and the 200s it receives:
/// retransmissions on both sides carry every call through, and a
/// retransmitted INVITE never starts a second call.
#[tokio::test]
async fn sipp_calls_complete_through_retransmissions_when_packets_are_lost() {
    let bot = TestBot::start().await;
    let d = daemon(&bot).await;
    sipp_scenario(bot, d.sip.expect("SIP on"), "uac_lossy.xml", 20, false).await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.invites, s.answered, s.byes_received), (20, 20, 20), "{s:?}");
}

/// A flood of malformed datagrams beside twenty sipp calls: bytes that are
/// not SIP, a request line alone, a response with a broken Via (dropped)
/// and a request with a wrong Content-Length (answered 400), sent until
/// sipp is done. Every call completes and the junk is counted.
#[tokio::test]
async fn a_malformed_flood_beside_twenty_sipp_calls() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let bot = TestBot::start().await;
    let d = daemon(&bot).await;
    let sip = d.sip.expect("SIP on");
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let flood = tokio::spawn(async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let me = socket.local_addr().expect("addr");
        let wrong_length = format!(
            "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKf\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: flood\r\nCSeq: 1 OPTIONS\r\nContent-Length: 99\r\n\r\n"
        );
        let junk: [&[u8]; 4] = [
            b"\x00\x01 not SIP at all",
            b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\n",
            b"SIP/2.0 200 OK\r\nVia: ???\r\n\r\n",
            wrong_length.as_bytes(),
        ];
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for j in junk {
                socket.send_to(j, sip).await.expect("send");
                sent += 1;
            }
            tokio::task::yield_now().await;
        }
        sent
    });
    sipp_scenario(bot, sip, "uac", 20, false).await;
    done.store(true, Ordering::Relaxed);
    let sent = within("the flood to stop", flood).await.expect("flood task");
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.invites, s.answered, s.byes_received), (20, 20, 20), "{s:?}");
    assert!(
        sent >= 4 && s.malformed >= 4 && s.bad_requests >= 1,
        "sent {sent}: {s:?}"
    );
    assert!(s.malformed <= sent, "{s:?}");
}

/// A delayed offer from sipp: its INVITE has no SDP, voxbridge offers PCMU
/// in the 200 (sipp checks it), sipp answers in the ACK, and the call is
/// kept (the answer takes the offer) until sipp's BYE.
#[tokio::test]
async fn sipp_makes_a_delayed_offer_call() {
    let bot = TestBot::start().await;
    let d = daemon(&bot).await;
    sipp_scenario(bot, d.sip.expect("SIP on"), "uac_delayed_offer.xml", 2, false).await;
    let s = *d.metrics.sip.lock().expect("metrics");
    assert_eq!((s.answered, s.bad_answers, s.byes_received), (2, 0, 2), "{s:?}");
}
